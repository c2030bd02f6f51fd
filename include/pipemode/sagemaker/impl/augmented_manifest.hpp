// pipemode: definitions of augmented_manifest.hpp. Included at the bottom of augmented_manifest.hpp only.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/json_writer.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/detail/async_waker.hpp>
#include <pipemode/s3/uri.hpp>
#include <pipemode/sources/memory_source.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace pipemode::sagemaker {
namespace detail {

namespace json = pipemode::detail::json;

/// Appends `v` to `out` as compact JSON.
inline void append_compact_json(std::string& out, const json::value& v)
{
    if (v.is_null())
        out += "null";
    else if (v.is_bool())
        out += v.as_bool() ? "true" : "false";
    else if (v.is_number())
        out += v.as_number().text;
    else if (v.is_string())
        json::append_quoted(out, v.as_string());
    else if (v.is_array()) {
        out += '[';
        bool first = true;
        for (const auto& e : v.as_array()) {
            if (!std::exchange(first, false))
                out += ',';
            append_compact_json(out, e);
        }
        out += ']';
    } else {
        out += '{';
        bool first = true;
        for (const auto& [name, member] : v.as_object()) {
            if (!std::exchange(first, false))
                out += ',';
            json::append_quoted(out, name);
            out += ':';
            append_compact_json(out, member);
        }
        out += '}';
    }
}

/// Whether the attribute `name` names an object ("-ref" suffix, as SageMaker decides).
inline bool is_ref_attribute(std::string_view name) noexcept { return name.ends_with("-ref"); }

/// Appends one attribute's bytes to a line's stream, framed or not.
inline void append_attribute(std::vector<std::byte>& out, std::span<const std::byte> bytes, bool recordio)
{
    if (recordio)
        append_recordio(out, bytes);
    else
        out.insert(out.end(), bytes.begin(), bytes.end());
}

/// The bytes one framed (or unframed) attribute of `n` bytes adds to a line's stream.
inline std::uint64_t attribute_weight(std::span<const std::byte> bytes, bool recordio)
{
    if (!recordio)
        return bytes.size();
    std::uint64_t n = 0;
    write_recordio(bytes, [&n](std::span<const std::byte> piece) { n += piece.size(); });
    return n;
}

/// A manifest, fetched and indexed: the text and where each non-empty line is.
struct manifest_data {
    struct line {
        std::uint64_t number = 0;  ///< from 1, counting every line of the file
        std::size_t begin = 0;     ///< in `text`
        std::size_t size = 0;
    };
    std::string uri;             ///< as the user gave it
    std::filesystem::path base;  ///< a local manifest's folder, for relative `-ref` paths
    bool local = false;
    std::string text;
    std::vector<line> lines;
    std::vector<std::string> names;

    std::string line_uri(const line& l) const { return uri + "#line " + std::to_string(l.number); }

    std::string_view line_text(const line& l) const { return std::string_view(text).substr(l.begin, l.size); }

    /// The line a `line_uri()` names; throws `std::invalid_argument` for anything else.
    std::size_t line_index(std::string_view object_uri) const
    {
        const std::string_view mark = "#line ";
        const std::uint64_t* found = nullptr;
        std::uint64_t number = 0;
        if (object_uri.size() > uri.size() + mark.size() && object_uri.starts_with(uri)
            && object_uri.substr(uri.size(), mark.size()) == mark) {
            const auto digits = object_uri.substr(uri.size() + mark.size());
            const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), number);
            if (r.ec == std::errc{} && r.ptr == digits.data() + digits.size())
                found = &number;
        }
        if (found) {
            const auto it = std::lower_bound(lines.begin(), lines.end(), number,
                                             [](const line& l, std::uint64_t n) { return l.number < n; });
            if (it != lines.end() && it->number == number)
                return static_cast<std::size_t>(it - lines.begin());
        }
        throw std::invalid_argument("pipemode: augmented manifest " + uri + ": '" + std::string(object_uri)
                                    + "' is not one of its lines");
    }
};

/// A local file that cannot be read whole: its error code and a sentence naming the path.
struct local_read_error : std::runtime_error {
    local_read_error(errc c, const std::string& what) : std::runtime_error(what), code(c) {}
    errc code;
};

/// Reads a whole local file of at most `limit` bytes; throws `local_read_error`.
inline asio::awaitable<std::string> read_local_file(std::string path, std::size_t limit)
{
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw local_read_error(errc::not_a_regular_file, path + " is not a regular file (or does not exist)");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec)
        throw local_read_error(errc::not_a_regular_file, path + ": " + ec.message());
    if (size > limit)
        throw local_read_error(errc::record_too_large, path + " has " + std::to_string(size)
                                                           + " bytes, more than the limit of " + std::to_string(limit));
    std::string out(static_cast<std::size_t>(size), '\0');
    std::ifstream in(path, std::ios::binary);
    if (!in.read(out.data(), static_cast<std::streamsize>(out.size())))
        throw local_read_error(errc::not_a_regular_file, "reading " + path + " failed");
    co_return out;
}

/// `read_local_file` run on `blocking`, so the network thread never waits for a disk.
inline asio::awaitable<std::string> read_local_file_on(asio::any_io_executor blocking, std::string path,
                                                       std::size_t limit)
{
    // Without the caller's cancellation slot: Boost 1.81's co_spawn forwards a cancellation to
    // another executor by a posted call that may outlive the spawned coroutine (see local_store).
    co_return co_await asio::co_spawn(blocking, read_local_file(std::move(path), limit),
                                      asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
}

/// Indexes the lines of `d.text` and checks each one; throws `data_error` naming the line.
/// Returns the listing.
inline std::vector<object_entry> index_manifest(manifest_data& d, bool recordio)
{
    std::vector<object_entry> out;
    const std::string_view text = d.text;
    std::uint64_t number = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        ++number;
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos)
            end = text.size();
        std::size_t size = end - pos;
        if (size != 0 && text[pos + size - 1] == '\r')
            --size;  // a file written on Windows
        const manifest_data::line l{number, pos, size};
        pos = end + 1;
        const std::string_view body = text.substr(l.begin, l.size);
        if (body.find_first_not_of(" \t") == std::string_view::npos)
            continue;
        const auto fail = [&](const std::string& why) {
            throw data_error(errc::malformed_manifest, {d.uri, l.begin, out.size()},
                             "line " + std::to_string(number) + ": " + why);
        };
        pipemode::detail::parse_error err;
        const auto doc = json::parse(body, err);
        if (!doc)
            fail("not valid JSON: " + err.to_string());
        if (!doc->is_object())
            fail("not a JSON object (each line of an augmented manifest is one object)");
        std::optional<std::uint64_t> weight = 0;
        for (const auto& name : d.names) {
            const json::value* v = doc->find(name);
            if (!v)
                fail("the attribute '" + name + "' is missing (AttributeNames lists it)");
            if (is_ref_attribute(name)) {
                if (!v->is_string() || v->as_string().empty())
                    fail("the attribute '" + name + "' ends in -ref but is not a URI string");
                const std::string& ref = v->as_string();
                if (ref.starts_with("s3://")) {
                    try {
                        (void)s3::parse_s3_uri(ref);
                    } catch (const std::exception& e) {
                        fail("the attribute '" + name + "' is not a valid S3 URI: " + e.what());
                    }
                } else if (ref.find("://") != std::string::npos && !ref.starts_with("file://")) {
                    fail("the attribute '" + name + "' = " + ref
                         + ": a -ref value must be an s3:// URI or a local path (file:// accepted)");
                }
                weight.reset();  // the object's size is known only once it is fetched
            } else if (weight) {
                std::string json_text;
                append_compact_json(json_text, *v);
                *weight += attribute_weight(std::as_bytes(std::span(json_text)), recordio);
            }
        }
        d.lines.push_back(l);
        out.push_back(object_entry{.uri = d.line_uri(l), .size = weight});
    }
    return out;
}

/// What the fetches of one provider share. Lives on the reader's network thread.
struct fetch_core {
    std::shared_ptr<const manifest_data> data;
    s3::s3_options s3_options;
    std::shared_ptr<s3::s3_context> s3;  ///< made on the first s3:// object
    std::optional<http::client> http;
    asio::any_io_executor blocking;
    std::size_t max_object = 16 * mib;
    bool recordio = true;
    std::optional<pipemode::detail::async_waker> waker;  ///< wakes the provider when a line is fetched
};

/// One line being fetched (or fetched).
struct line_fetch {
    std::size_t line = 0;
    bool done = false;
    std::vector<std::byte> bytes;
    std::exception_ptr error;
    asio::cancellation_signal cancel;
};

/// The bytes of the object a `-ref` attribute names.
inline asio::awaitable<std::string> fetch_ref(std::shared_ptr<fetch_core> core, std::string where, std::string attribute,
                                              std::string uri)
{
    const manifest_data& d = *core->data;
    const std::string what = "attribute '" + attribute + "' = " + uri;
    if (uri.starts_with("s3://")) {
        std::string failure;
        try {
            const s3::s3_uri parsed = s3::parse_s3_uri(uri);
            if (!core->s3)
                core->s3 = std::make_shared<s3::s3_context>(core->s3_options);
            std::vector<std::pair<std::string, std::string>> no_query;  // not `{}`: GCC 12, see s3_requests
            // The fetch's messages start with `what`: "attribute 'x-ref' = s3://b/k: HTTP 404 NoSuchKey: ...".
            co_return co_await s3::async_fetch_s3_document(*core->http, core->s3, parsed.bucket, parsed.key,
                                                           std::move(no_query), what, core->max_object);
        } catch (const boost::system::system_error& e) {
            if (e.code() == asio::error::operation_aborted)
                throw;  // cancelled: the reader is going away
            failure = e.what();
        } catch (const std::exception& e) {
            failure = e.what();
        }
        if (!failure.starts_with(what))
            failure = what + ": " + failure;
        throw data_error(errc::http_error, {where, 0, 0}, failure);
    }
    // Anything else is a local path (URI schemes were checked when the manifest was listed).
    std::filesystem::path path(uri.starts_with("file://") ? uri.substr(7) : uri);
    if (path.is_relative() && d.local)
        path = d.base / path;
    try {
        co_return co_await read_local_file_on(core->blocking, path.string(), core->max_object);
    } catch (const local_read_error& e) {
        throw data_error(e.code, {where, 0, 0}, what + ": " + e.what());
    }
}

/// The stream of one line: its attributes' records, in `AttributeNames` order.
inline asio::awaitable<std::vector<std::byte>> fetch_line(std::shared_ptr<fetch_core> core, std::size_t index)
{
    const manifest_data& d = *core->data;
    const manifest_data::line& l = d.lines[index];
    const std::string where = d.line_uri(l);
    pipemode::detail::parse_error err;
    const auto doc = json::parse(d.line_text(l), err);  // checked when listed
    std::vector<std::byte> out;
    for (const auto& name : d.names) {
        const json::value& v = *doc->find(name);
        if (is_ref_attribute(name)) {
            const std::string body = co_await fetch_ref(core, where, name, v.as_string());
            append_attribute(out, std::as_bytes(std::span(body)), core->recordio);
        } else {
            std::string text;
            append_compact_json(text, v);
            append_attribute(out, std::as_bytes(std::span(text)), core->recordio);
        }
    }
    co_return out;
}

/// A line's bytes as a byte source named after the line ("MANIFEST#line N").
class line_source {
public:
    line_source(std::vector<std::byte> bytes, std::string name) : bytes_(std::move(bytes)), name_(std::move(name)) {}

    asio::awaitable<chunk_result> async_next() { return bytes_.async_next(); }
    std::string_view name() const noexcept { return name_; }
    std::uint64_t start_offset() const noexcept { return 0; }

private:
    memory_source bytes_;
    std::string name_;
};

/// The sources of some lines of a manifest, fetched ahead of the reader.
class augmented_lines_provider final : public source_provider {
public:
    augmented_lines_provider(std::shared_ptr<const manifest_data> data, std::vector<std::size_t> lines,
                             const augmented_manifest_options& o, std::size_t max_object)
        : data_(std::move(data)), lines_(std::move(lines)), fetch_ahead_(std::max<std::size_t>(1, o.fetch_ahead)),
          window_(o.window), core_(std::make_shared<fetch_core>())
    {
        core_->data = data_;
        core_->s3_options = o.s3;
        core_->max_object = max_object;
        core_->recordio = o.recordio;
    }

    ~augmented_lines_provider() override
    {
        // Fetches still running stop at their next wait; the client goes now, with the
        // reader's io_context still alive (the reader destroys its provider first).
        for (auto& f : ahead_)
            if (!f->done)
                f->cancel.emit(asio::cancellation_type::terminal);
        core_->http.reset();
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        if (!core_->waker) {
            core_->waker.emplace(ctx.executor);
            // One client for s3:// and https:// references: it trusts the CA the S3 settings
            // give (AWS_CA_BUNDLE, the profile's ca_bundle), as the S3 context's clients do.
            core_->http.emplace(ctx.executor, s3::client_options_for(core_->s3_options));
            core_->blocking = ctx.blocking_executor;
        }
        fill(ctx);
        if (ahead_.empty())
            co_return std::nullopt;
        const std::shared_ptr<line_fetch> f = ahead_.front();
        try {
            for (;;) {
                core_->waker->arm();
                if (f->done) {
                    core_->waker->disarm();
                    break;
                }
                co_await core_->waker->async_wait();
            }
        } catch (...) {
            // The reader is stopping: so do the fetches.
            for (auto& a : ahead_)
                if (!a->done)
                    a->cancel.emit(asio::cancellation_type::terminal);
            throw;
        }
        ahead_.pop_front();
        if (f->error) {
            for (auto& a : ahead_)
                if (!a->done)
                    a->cancel.emit(asio::cancellation_type::terminal);
            std::rethrow_exception(f->error);
        }
        fill(ctx);
        co_return any_byte_source(line_source(std::move(f->bytes), data_->line_uri(data_->lines[f->line])));
    }

    std::string describe() const override { return data_->uri; }

    std::size_t reserve_buffers(const reader_options&) override { return window_; }

private:
    /// Starts fetches while fewer than `fetch_ahead_` are in the queue and the fetched ones
    /// hold less than the window. Always leaves at least one line in the queue while lines
    /// remain, so that an empty queue means the end.
    void fill(const source_context& ctx)
    {
        for (;;) {
            if (next_ == lines_.size() || ahead_.size() >= fetch_ahead_)
                return;
            std::size_t held = 0;
            for (const auto& a : ahead_)
                if (a->done)
                    held += a->bytes.size();
            if (!ahead_.empty() && held >= window_)
                return;
            auto f = std::make_shared<line_fetch>();
            f->line = lines_[next_++];
            ahead_.push_back(f);
            auto core = core_;
            asio::co_spawn(ctx.executor, fetch_line(core, f->line),
                           asio::bind_cancellation_slot(f->cancel.slot(), [f, core](std::exception_ptr e,
                                                                                     std::vector<std::byte> bytes) {
                               f->done = true;
                               f->error = e;
                               f->bytes = std::move(bytes);
                               if (core->waker)
                                   core->waker->notify();
                           }));
        }
    }

    std::shared_ptr<const manifest_data> data_;
    std::vector<std::size_t> lines_;
    std::size_t fetch_ahead_;
    std::size_t window_;
    std::shared_ptr<fetch_core> core_;
    std::deque<std::shared_ptr<line_fetch>> ahead_;
    std::size_t next_ = 0;  ///< the next of `lines_` to start fetching
};

class augmented_manifest_object_store final : public object_store {
public:
    augmented_manifest_object_store(std::string manifest, augmented_manifest_options o)
        : uri_(std::move(manifest)), options_(std::move(o))
    {
        const auto fail = [&](const std::string& why) {
            throw std::invalid_argument("pipemode: augmented manifest '" + uri_ + "': " + why);
        };
        if (uri_.empty())
            fail("no manifest given; give an s3:// URI, a file:// URI or a local path");
        if (options_.attribute_names.empty())
            fail("AttributeNames is empty; list the attributes to deliver from each line, e.g. [\"source-ref\", \"class\"]");
        for (std::size_t i = 0; i < options_.attribute_names.size(); ++i)
            for (std::size_t j = 0; j < i; ++j)
                if (options_.attribute_names[i] == options_.attribute_names[j])
                    fail("AttributeNames lists '" + options_.attribute_names[i] + "' twice");
        if (uri_.starts_with("s3://"))
            (void)s3::parse_s3_uri(uri_);  // a malformed URI fails here
        else if (uri_.find("://") != std::string::npos && !uri_.starts_with("file://"))
            fail("an augmented manifest must be an s3:// object, a file:// URI or a local path");
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        auto d = std::make_shared<manifest_data>();
        d->uri = uri_;
        d->names = options_.attribute_names;
        if (uri_.starts_with("s3://")) {
            const s3::s3_uri parsed = s3::parse_s3_uri(uri_);
            auto context = std::make_shared<s3::s3_context>(options_.s3);
            http::client client(ctx.executor, context->stream_options().client);
            std::vector<std::pair<std::string, std::string>> no_query;  // not `{}`: GCC 12
            d->text = co_await s3::async_fetch_s3_document(client, context, parsed.bucket, parsed.key,
                                                           std::move(no_query), uri_, options_.max_manifest_size);
        } else {
            const std::string path = uri_.starts_with("file://") ? uri_.substr(7) : uri_;
            d->local = true;
            d->base = std::filesystem::path(path).parent_path();
            try {
                d->text = co_await read_local_file_on(ctx.blocking_executor, path, options_.max_manifest_size);
            } catch (const local_read_error& e) {
                throw data_error(e.code, {uri_, 0, 0}, e.what());
            }
        }
        auto entries = index_manifest(*d, options_.recordio);
        data_ = std::move(d);
        co_return entries;
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        if (!data_)
            throw std::logic_error("pipemode: augmented manifest " + uri_ + ": open() before async_list()");
        std::vector<std::size_t> lines;
        lines.reserve(reads.size());
        for (const auto& r : reads)
            lines.push_back(data_->line_index(r.uri));
        return std::make_unique<augmented_lines_provider>(data_, std::move(lines), options_,
                                                          options_.max_object_size.value_or(max_record_size_));
    }

    std::string describe() const override { return uri_; }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        if (o.format == data_format::augmented_manifest) {
            if (o.shuffle_records != 0)
                throw std::invalid_argument(
                    "pipemode: augmented manifest " + uri_
                    + ": reader_options::shuffle_records must be 0, since a record-level shuffle would separate a "
                      "line's attributes; the order of the lines is still shuffled every epoch by the data set's "
                      "shuffle (ShuffleConfig.Seed, plan_options::shuffle_seed)");
            if (o.attribute_names != options_.attribute_names)
                throw std::invalid_argument("pipemode: augmented manifest " + uri_
                                            + ": reader_options::attribute_names must be the manifest's AttributeNames, "
                                              "in the same order (they name the features of each row)");
        }
        max_record_size_ = o.max_record_size;
        return options_.window;
    }

    bool splittable() const noexcept override { return false; }

private:
    std::string uri_;
    augmented_manifest_options options_;
    std::shared_ptr<const manifest_data> data_;
    std::size_t max_record_size_ = 16 * mib;
};

} // namespace detail

inline std::unique_ptr<object_store> augmented_manifest_store(std::string manifest, augmented_manifest_options options)
{
    return std::make_unique<detail::augmented_manifest_object_store>(std::move(manifest), std::move(options));
}

inline std::string attribute_json_text(std::string_view line_json, std::string_view attribute)
{
    pipemode::detail::parse_error err;
    const auto doc = detail::json::parse(line_json, err);
    if (!doc || !doc->is_object())
        throw std::invalid_argument("pipemode: attribute_json_text: the line is not a JSON object");
    const auto* v = doc->find(attribute);
    if (!v)
        throw std::invalid_argument("pipemode: attribute_json_text: the line has no attribute '" + std::string(attribute)
                                    + "'");
    std::string out;
    detail::append_compact_json(out, *v);
    return out;
}

} // namespace pipemode::sagemaker
