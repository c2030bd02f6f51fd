// pipemode-cat: reads a data set (local files and FIFOs, http(s):// URLs, s3:// objects,
// prefixes and manifests) through pipemode::reader and prints a summary with the data set's
// digest, every record as a line of JSON, or every raw RecordIO payload.
//
// Built without pipemode::http (CMake's PIPEMODE_WITH_CURL=OFF defines PIPEMODE_TOOLS_NO_HTTP),
// it reads local paths only and refuses URLs with a sentence saying so.
//
// Usage and output formats: `pipemode-cat --help` and docs/tools.md.
#include "command_line.hpp"
#include "json_records.hpp"

#include <pipemode/core/digest.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/decoders/raw_record.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#ifndef PIPEMODE_TOOLS_NO_HTTP
#include <pipemode/http/object_stream.hpp>
#include <pipemode/s3/data_set.hpp>
#endif

#include <boost/asio/awaitable.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

using namespace pipemode::tools;

constexpr std::string_view usage_text = R"(Usage: pipemode-cat [options] SOURCE...
       pipemode-cat [options] --manifest s3://BUCKET/MANIFEST [SOURCE...]

Reads RecordIO-protobuf data, in the order given, through pipemode::reader. A SOURCE is a
local file or FIFO, an http:// or https:// URL, an S3 object s3://BUCKET/KEY, or every
object under an S3 prefix s3://BUCKET/PREFIX/ (in key order). By default prints a summary:
records, batches, bytes, seconds, MB/s, records/s, time to the first batch, bad records
skipped, and the data set's digest.

Options:
  --json                 print every record as one line of JSON instead of the summary
  --raw                  read the RecordIO framing only and print every payload as
                         {"length": N, "hex": "..."}, one per line
  --batch-size N         records per batch (default 1000)
  --bad-records POLICY   fail (default), skip, or warn (skip and report on stderr)
  --limit N              stop after N records
  --read-size BYTES      size of one read from a file or FIFO (default 4M; suffixes K, M, G
                         are powers of 1024)
  --memory-budget BYTES  memory the reader may hold (default 256M); URL sources fetch ahead
                         within half of it
  -h, --help             print this help

URL and S3 options:
  --manifest S3URI       read the objects a SageMaker manifest file lists (may be repeated)
  --endpoint-url URL     an S3-compatible endpoint (e.g. http://127.0.0.1:9000); default:
                         AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's, else AWS
  --region REGION        the signing region; default: AWS_REGION, AWS_DEFAULT_REGION, profile
  --profile NAME         the AWS profile for credentials, region and endpoint
  --path-style           address buckets as ENDPOINT/BUCKET/KEY (the default for endpoints
                         other than AWS's)
  --no-sign-request      send unsigned requests (public buckets); no credentials are looked up
  --part-size SIZE       bytes per ranged GET: MiB, or with a suffix K, M, G (default 8)
  --connections N        ranged GETs in flight at most (default 8)
  --ca-file PATH         a PEM file of CA certificates to trust instead of the system's
  --no-verify-tls        DANGEROUS, for test servers only: accept any TLS certificate and
                         host name, so anyone on the path can read and alter the data

Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
See docs/tools.md for the output formats.
)";

enum class output_mode { summary, json, raw };

/// A source named on the command line: a path or URL, or the S3 URI of a manifest.
struct source_arg {
    std::string text;
    bool manifest = false;
};

struct cat_options {
    output_mode mode = output_mode::summary;
    std::size_t batch_size = 1000;
    pipemode::bad_record_policy bad_records = pipemode::bad_record_policy::fail;
    std::optional<std::uint64_t> limit;
    std::size_t read_size = 4 * pipemode::mib;
    std::size_t memory_budget = pipemode::reader_options{}.memory_budget;
    std::vector<source_arg> sources;
    bool help = false;
    // URL and S3 sources
    std::string endpoint_url;
    std::string region;
    std::string profile;
    bool path_style = false;
    bool anonymous = false;
    std::optional<std::size_t> part_size;
    std::optional<std::size_t> connections;
    std::string ca_file;
    bool verify_tls = true;
};

cat_options parse_command_line(int argc, char** argv)
{
    cat_options o;
    bool raw = false, json = false;
    for (option_cursor c(argc, argv); c.next();) {
        const auto name = c.name();
        if (c.positional())
            o.sources.push_back({std::string(c.arg())});
        else if (name == "-h" || name == "--help")
            o.help = true;
        else if (name == "--json")
            json = true;
        else if (name == "--raw")
            raw = true;
        else if (name == "--batch-size") {
            o.batch_size = parse_count(name, c.value());
            if (o.batch_size == 0)
                throw usage_error("--batch-size must be at least 1");
        }
        else if (name == "--bad-records") {
            const auto v = c.value();
            if (v == "fail")
                o.bad_records = pipemode::bad_record_policy::fail;
            else if (v == "skip")
                o.bad_records = pipemode::bad_record_policy::skip;
            else if (v == "warn")
                o.bad_records = pipemode::bad_record_policy::skip_and_warn;
            else
                throw usage_error("--bad-records is fail, skip or warn, not '" + std::string(v) + "'");
        }
        else if (name == "--limit")
            o.limit = parse_count(name, c.value());
        else if (name == "--read-size") {
            o.read_size = parse_bytes(name, c.value());
            if (o.read_size == 0)
                throw usage_error("--read-size must be at least 1 byte");
        }
        else if (name == "--memory-budget") {
            o.memory_budget = parse_bytes(name, c.value());
            if (o.memory_budget == 0)
                throw usage_error("--memory-budget must be at least 1 byte");
        }
        else if (name == "--manifest")
            o.sources.push_back({std::string(c.value()), true});
        else if (name == "--endpoint-url")
            o.endpoint_url = c.value();
        else if (name == "--region")
            o.region = c.value();
        else if (name == "--profile")
            o.profile = c.value();
        else if (name == "--path-style")
            o.path_style = true;
        else if (name == "--no-sign-request")
            o.anonymous = true;
        else if (name == "--part-size") {
            // A bare number is MiB, as part sizes are usually quoted; a suffix gives any size.
            const auto v = c.value();
            const bool suffixed = !v.empty() && std::isalpha(static_cast<unsigned char>(v.back()));
            const auto n = suffixed ? parse_bytes(name, v) : parse_count(name, v);
            if (n == 0)
                throw usage_error("--part-size must be at least 1 byte");
            if (!suffixed && n > SIZE_MAX / pipemode::mib)
                throw usage_error("--part-size is too large");
            o.part_size = static_cast<std::size_t>(suffixed ? n : n * pipemode::mib);
        }
        else if (name == "--connections") {
            o.connections = parse_count(name, c.value());
            if (*o.connections == 0)
                throw usage_error("--connections must be at least 1");
        }
        else if (name == "--ca-file")
            o.ca_file = c.value();
        else if (name == "--no-verify-tls")
            o.verify_tls = false;
        else
            c.unknown();
    }
    if (raw && json)
        throw usage_error("--json and --raw cannot be used together");
    o.mode = raw ? output_mode::raw : json ? output_mode::json : output_mode::summary;
    if (!o.help && o.sources.empty())
        throw usage_error("no SOURCE given");
    return o;
}

// ---------------------------------------------------------------------------------------------
// Sources

/// Reads the sources of several providers one after the other, so that the command line can
/// mix kinds of sources (local paths, URLs, S3 prefixes and manifests) in one data set.
class chained_provider final : public pipemode::source_provider {
public:
    explicit chained_provider(std::vector<std::unique_ptr<pipemode::source_provider>> parts)
        : parts_(std::move(parts))
    {
    }

    pipemode::asio::awaitable<std::optional<pipemode::any_byte_source>>
    async_next_source(pipemode::source_context ctx) override
    {
        for (; current_ < parts_.size(); ++current_) {
            if (auto source = co_await parts_[current_]->async_next_source(ctx))
                co_return source;
        }
        co_return std::nullopt;
    }

    std::string describe() const override
    {
        std::string s;
        for (const auto& p : parts_)
            s += (s.empty() ? "" : " + ") + p->describe();
        return s;
    }

    /// The largest of the parts' reservations, not their sum: a part starts fetching only when
    /// the reader first asks it for a source, which is after the previous part has ended, so
    /// their buffers are not held at the same time. Every part is told the options (an object
    /// stream sizes its window here).
    std::size_t reserve_buffers(const pipemode::reader_options& options) override
    {
        std::size_t most = 0;
        for (const auto& p : parts_)
            most = std::max(most, p->reserve_buffers(options));
        return most;
    }

private:
    std::vector<std::unique_ptr<pipemode::source_provider>> parts_;
    std::size_t current_ = 0;
};

/// The URL scheme of `arg` ("s3" for "s3://bucket/key"), or empty for a local path.
std::string_view scheme_of(std::string_view arg)
{
    const auto sep = arg.find("://");
    if (sep == std::string_view::npos || sep == 0)
        return {};
    for (char c : arg.substr(0, sep))
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'))
            return {};
    return arg.substr(0, sep);
}

/// What reads a command-line source.
enum class source_kind { local, http, s3, manifest };

source_kind kind_of(const source_arg& a)
{
    const auto scheme = scheme_of(a.text);
    if (a.manifest) {
        if (scheme != "s3")
            throw usage_error("--manifest needs an s3:// URI, not '" + a.text + "'");
        return source_kind::manifest;
    }
    if (scheme.empty())
        return source_kind::local;
    if (scheme == "http" || scheme == "https")
        return source_kind::http;
    if (scheme == "s3")
        return source_kind::s3;
    throw usage_error("'" + a.text + "': " + std::string(scheme) +
                      ":// is not a source pipemode-cat reads (it reads paths, http://, https:// and s3://)");
}

#ifndef PIPEMODE_TOOLS_NO_HTTP

pipemode::http::stream_options stream_options_of(const cat_options& o)
{
    pipemode::http::stream_options s;
    if (o.part_size)
        s.part_size = *o.part_size;
    if (o.connections)
        s.max_connections = *o.connections;
    s.client.ca_file = o.ca_file;
    s.client.verify_tls = o.verify_tls;
    return s;  // window_bytes stays 0: the window follows --memory-budget
}

pipemode::s3::s3_options s3_options_of(const cat_options& o)
{
    pipemode::s3::s3_options s;
    s.endpoint_url = o.endpoint_url;
    s.region = o.region;
    s.profile = o.profile;
    if (o.path_style)
        s.addressing_style = pipemode::s3::addressing::path;
    s.anonymous = o.anonymous;
    s.stream = stream_options_of(o);
    return s;
}

#endif

/// The one place that turns command-line arguments into the reader's sources. Each run of
/// consecutive arguments of one kind becomes one provider (local paths one `local_files`,
/// URLs one `http_objects` stream, s3:// URIs one `s3_objects` stream, each manifest its own
/// `s3_manifest` stream), chained in argument order.
std::unique_ptr<pipemode::source_provider> make_provider(const cat_options& o)
{
    std::vector<std::unique_ptr<pipemode::source_provider>> parts;
    std::vector<std::string> run;
    source_kind run_kind = source_kind::local;
    auto flush = [&] {
        if (run.empty())
            return;
        auto texts = std::exchange(run, {});
        switch (run_kind) {
        case source_kind::local:
            parts.push_back(pipemode::local_files(std::move(texts), o.read_size));
            return;
#ifndef PIPEMODE_TOOLS_NO_HTTP
        case source_kind::http:
            parts.push_back(pipemode::http::http_objects(std::move(texts), stream_options_of(o)));
            return;
        case source_kind::s3:
            parts.push_back(pipemode::s3::s3_objects(texts, s3_options_of(o)));
            return;
        case source_kind::manifest:
            parts.push_back(pipemode::s3::s3_manifest(texts.front(), s3_options_of(o)));
            return;
#else
        default:
            throw usage_error("'" + texts.front() +
                              "': this pipemode-cat was built without pipemode::http (PIPEMODE_WITH_CURL=OFF), so it "
                              "reads local paths only");
#endif
        }
    };
    for (const auto& arg : o.sources) {
        const auto kind = kind_of(arg);
        if (kind != run_kind || kind == source_kind::manifest)
            flush();
        run_kind = kind;
        run.push_back(arg.text);
    }
    flush();
    if (parts.size() == 1)
        return std::move(parts.front());
    return std::make_unique<chained_provider>(std::move(parts));
}

// ---------------------------------------------------------------------------------------------
// Output

/// Buffers stdout in large blocks: the JSON modes print millions of values, and a write(2) per
/// few MiB costs nothing next to formatting them.
class output_buffer {
public:
    static constexpr std::size_t flush_at = 1 << 20;

    output_buffer() { text_.reserve(flush_at + 64 * pipemode::kib); }
    output_buffer(const output_buffer&) = delete;
    output_buffer& operator=(const output_buffer&) = delete;
    ~output_buffer() { flush_quietly(); }

    /// The text to append to; call `maybe_flush()` after each line.
    std::string& text() noexcept { return text_; }

    void maybe_flush()
    {
        if (text_.size() >= flush_at)
            flush();
    }

    /// Writes everything buffered; throws `std::system_error` when stdout fails.
    void flush()
    {
        const char* p = text_.data();
        std::size_t n = text_.size();
        while (n != 0) {
            const auto w = ::write(STDOUT_FILENO, p, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                text_.clear();
                throw std::system_error(errno, std::generic_category(), "writing to stdout");
            }
            p += w;
            n -= static_cast<std::size_t>(w);
        }
        text_.clear();
    }

private:
    void flush_quietly() noexcept
    {
        try {
            flush();
        } catch (...) {
        }
    }

    std::string text_;
};

// ---------------------------------------------------------------------------------------------
// Reading

struct run_result {
    std::uint64_t records = 0;
    std::uint64_t batches = 0;
    std::optional<std::chrono::steady_clock::duration> first_batch;
    std::chrono::steady_clock::duration elapsed{};
    pipemode::data_set_digest digest;
    pipemode::reader_stats stats;
};

run_result run(const cat_options& o, output_buffer& out)
{
    using clock = std::chrono::steady_clock;
    run_result result;
    const auto start = clock::now();
    pipemode::reader reader(make_provider(o),
                            pipemode::reader_options{
                                .batch_size = o.batch_size,
                                .bad_records = o.bad_records,
                                .format = o.mode == output_mode::raw ? pipemode::data_format::recordio
                                                                     : pipemode::data_format::recordio_protobuf,
                                .memory_budget = o.memory_budget,
                                .read_size = o.read_size,
                            });
    const std::uint64_t limit = o.limit.value_or(UINT64_MAX);
    if (limit != 0) {
        for (auto& b : reader) {
            if (!result.first_batch)
                result.first_batch = clock::now() - start;
            ++result.batches;
            std::size_t rows = b.size() - b.padding();
            if (rows > limit - result.records)
                rows = static_cast<std::size_t>(limit - result.records);
            switch (o.mode) {
            case output_mode::summary:
                if (rows == b.size() - b.padding()) {
                    result.digest.add(b);
                }
                else {
                    for (std::size_t r = 0; r < rows; ++r)
                        result.digest.add_record_hash(pipemode::record_digest::of(b, r));
                }
                break;
            case output_mode::json:
                for (std::size_t r = 0; r < rows; ++r) {
                    pipemode::tools::append_record_json(out.text(), b, r);
                    out.text() += '\n';
                    out.maybe_flush();
                }
                break;
            case output_mode::raw: {
                const auto& payload = b.feature(pipemode::raw_payload_feature);
                for (std::size_t r = 0; r < rows; ++r) {
                    pipemode::tools::append_raw_json(out.text(), payload.item(r, 0));
                    out.text() += '\n';
                    out.maybe_flush();
                }
                break;
            }
            }
            result.records += rows;
            if (result.records >= limit)
                break;  // leaving the loop early: the reader cancels what is in flight
        }
    }
    result.elapsed = clock::now() - start;
    result.stats = reader.stats();
    return result;
}

void print_summary(const run_result& r, std::string& out)
{
    const double seconds = std::chrono::duration<double>(r.elapsed).count();
    const double per_second = seconds > 0 ? 1 / seconds : 0;
    append_field(out, "records", std::to_string(r.records));
    append_field(out, "batches", std::to_string(r.batches));
    append_field(out, "bytes", std::to_string(r.stats.bytes));
    append_field(out, "seconds", format("%.3f", seconds));
    append_field(out, "MB/s", format("%.1f", static_cast<double>(r.stats.bytes) / 1e6 * per_second));
    append_field(out, "records/s", format("%.0f", static_cast<double>(r.records) * per_second));
    append_field(out, "first batch ms",
                 r.first_batch ? format("%.1f", std::chrono::duration<double, std::milli>(*r.first_batch).count())
                               : std::string("-"));
    append_field(out, "bad records", std::to_string(r.stats.bad_records));
    append_field(out, "digest", r.digest.to_string());
}

} // namespace

int main(int argc, char** argv)
{
    cat_options options;
    try {
        options = parse_command_line(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-cat: %s\nTry 'pipemode-cat --help'.\n", e.what());
        return 2;
    }
    if (options.help) {
        std::fwrite(usage_text.data(), 1, usage_text.size(), stdout);
        return 0;
    }

    output_buffer out;
    try {
        const auto result = run(options, out);
        if (options.mode == output_mode::summary)
            print_summary(result, out.text());
        out.flush();
        return 0;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-cat: %s\nTry 'pipemode-cat --help'.\n", e.what());
        return 2;
    } catch (const std::invalid_argument& e) {
        // The reader refuses options that cannot work, with a sentence on what to change.
        std::fprintf(stderr, "pipemode-cat: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        // A data_error names the source, byte offset and record index; I/O errors name the source.
        try {
            out.flush();  // the records before the error are worth having
        } catch (...) {
        }
        std::fprintf(stderr, "pipemode-cat: %s\n", e.what());
        return 1;
    }
}
