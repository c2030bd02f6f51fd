// pipemode: definitions of data_set.hpp. Included at the bottom of data_set.hpp only.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/sources/fifo_source.hpp>
#include <pipemode/sources/file_source.hpp>

#include <sys/stat.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

namespace pipemode {

inline std::uint64_t listing_fingerprint(std::span<const object_entry> objects) noexcept
{
    std::uint64_t h = 0xcbf29ce484222325ULL;
    const auto mix = [&h](const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i)
            h = (h ^ b[i]) * 0x100000001b3ULL;
    };
    for (const auto& o : objects) {
        mix(o.uri.data(), o.uri.size());
        const std::uint64_t size = o.size.value_or(~std::uint64_t{0});
        mix(&size, sizeof size);
    }
    return h;
}

namespace detail {

/// What a `data_set_reader` and its provider share. Written by the provider on the network
/// thread before it hands out its first source, so before the consumer sees any batch (the
/// channel orders the two); read by the consumer only after it has a batch.
struct data_set_shared {
    data_set_state start;  ///< the state before the first batch (without the listing's numbers)

    /// Records the listing's numbers (network thread).
    void listed(std::uint64_t n, std::uint64_t fp)
    {
        const std::lock_guard lock(mutex);
        objects = n;
        fingerprint = fp;
    }

    /// `s` with the listing's numbers, once known (any thread).
    data_set_state with_listing(data_set_state s) const
    {
        const std::lock_guard lock(mutex);
        if (objects != 0) {
            s.objects = objects;
            s.fingerprint = fingerprint;
        }
        return s;
    }

private:
    mutable std::mutex mutex;
    std::uint64_t objects = 0;
    std::uint64_t fingerprint = 0;
};

[[noreturn]] inline void state_error(const std::string& s)
{
    throw std::invalid_argument("pipemode: data_set_state: " + s);
}

/// Bytes before a range's first byte the decoder needs to find the range's first record: a
/// line starts at `begin` only if the byte before it is a newline.
constexpr std::uint64_t framing_lead(data_format f) noexcept
{
    return f == data_format::lines || f == data_format::csv ? 1 : 0;
}

class planned_epochs_provider final : public source_provider {
public:
    planned_epochs_provider(std::unique_ptr<object_store> store, data_set_options o,
                            std::shared_ptr<data_set_shared> shared)
        : store_(std::move(store)), options_(std::move(o)), shared_(std::move(shared))
    {
        check_plan_options(options_.plan);
        epoch_ = options_.first_epoch;
        if (options_.resume) {
            const auto& r = *options_.resume;
            if (r.rank != options_.plan.shard.rank || r.world_size != options_.plan.shard.world_size)
                throw std::invalid_argument(
                    "pipemode: the resume state is rank " + std::to_string(r.rank) + " of " + std::to_string(r.world_size)
                    + " but the reader is rank " + std::to_string(options_.plan.shard.rank) + " of "
                    + std::to_string(options_.plan.shard.world_size)
                    + "; to continue with another world size, make each rank's state with resume_state()");
            if (options_.epochs != 0 && r.epoch >= options_.epochs)
                throw std::invalid_argument("pipemode: the resume state is in epoch " + std::to_string(r.epoch)
                                            + " but the reader reads only " + std::to_string(options_.epochs)
                                            + " epochs");
            epoch_ = r.epoch;
        }
    }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        reader_options_ = o;
        lead_ = framing_lead(o.format);
        if (!splittable(o.format) || !store_->splittable()) {
            options_.plan.splittable = false;
            check_plan_options(options_.plan);
        }
        // A range's last record may run past the range's end by up to a whole record
        // (reassembled from parts, each with a header).
        slack_ = 2 * std::uint64_t{o.max_record_size} + 64;
        return store_->reserve_buffers(o);
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        auto planned = co_await async_next_planned(ctx);
        if (!planned)
            co_return std::nullopt;
        co_return std::move(planned->source);
    }

    asio::awaitable<std::optional<planned_source>> async_next_planned(source_context ctx) override
    {
        if (!listed_) {
            objects_ = co_await store_->async_list(ctx);
            listed_ = true;
            on_listed();
        }
        for (;;) {
            if (!inner_) {
                if (options_.epochs != 0 && epoch_ >= options_.epochs)
                    co_return std::nullopt;
                start_epoch();
            }
            auto source = co_await inner_->async_next_source(ctx);
            if (source) {
                const work_item& w = plan_[next_item_];
                planned_source out{std::move(*source), source_plan{.epoch = epoch_,
                                                                   .item = next_item_,
                                                                   .begin = w.begin,
                                                                   .end = w.end,
                                                                   .skip = w.skip,
                                                                   .object = w.object,
                                                                   .block_start = w.block_start,
                                                                   .block_drop = w.block_drop,
                                                                   .block_end_after = w.block_end_after}};
                ++next_item_;
                co_return out;
            }
            inner_.reset();
            ++epoch_;
        }
    }

    std::string describe() const override { return store_->describe(); }

private:
    void on_listed()
    {
        if (objects_.empty())
            throw data_error(errc::empty_data_set, {store_->describe(), 0, 0}, "the listing found no objects");
        const auto fp = listing_fingerprint(objects_);
        // A state saved before the listing was known (objects == 0) is the start of an epoch,
        // which any listing can continue.
        const auto& r = options_.resume;
        if (r && r->objects != 0 && (r->objects != objects_.size() || r->fingerprint != fp))
            throw data_error(errc::object_changed, {store_->describe(), 0, 0},
                             "the data set is not the one the resume state was saved from ("
                                 + std::to_string(options_.resume->objects) + " objects then, "
                                 + std::to_string(objects_.size())
                                 + " now, or other names or sizes); start a new run instead of resuming");
        if (shared_)
            shared_->listed(objects_.size(), fp);
    }

    void start_epoch()
    {
        const bool resumed = options_.resume && options_.resume->epoch == epoch_;
        if (resumed) {
            plan_ = plan_all_ranks_resumed(objects_, options_.plan, epoch_, options_.resume->history)
                        [options_.plan.shard.rank];
            const plan_cursor& at = options_.resume->cursor;
            first_item_ = at.item;
            // The items keep their numbers, so later positions mean the same plan.
            if (at.item < plan_.size())
                plan_[at.item] = remaining_work(plan_, at).front();
        } else {
            plan_ = plan_epoch(objects_, options_.plan, epoch_);
            first_item_ = 0;
            if (plan_.empty())
                throw data_error(errc::empty_data_set, {store_->describe(), 0, 0},
                                 "rank " + std::to_string(options_.plan.shard.rank) + " of "
                                     + std::to_string(options_.plan.shard.world_size) + " has nothing to read: the data set has "
                                     + std::to_string(objects_.size())
                                     + " objects; shard by byte range (shard_mode::by_byte_range) or run fewer ranks");
        }
        next_item_ = first_item_;
        std::vector<object_read> reads;
        for (std::size_t i = std::min<std::size_t>(first_item_, plan_.size()); i < plan_.size(); ++i) {
            const work_item& w = plan_[i];
            const object_entry& e = objects_[w.object];
            object_read r{.uri = e.uri, .size = e.size};
            if (w.begin != 0)
                r.first = w.begin - std::min(w.begin, lead_);
            if (w.end) {
                r.end = *w.end + slack_;
                if (e.size)
                    r.end = std::min(*r.end, *e.size);
            }
            reads.push_back(std::move(r));
        }
        inner_ = store_->open(std::move(reads));
        (void)inner_->reserve_buffers(reader_options_);  // sizes its buffers (an HTTP stream's window)
    }

    std::unique_ptr<object_store> store_;
    data_set_options options_;
    std::shared_ptr<data_set_shared> shared_;
    reader_options reader_options_{};
    std::uint64_t lead_ = 0;
    std::uint64_t slack_ = 0;

    bool listed_ = false;
    std::vector<object_entry> objects_;
    std::uint64_t epoch_ = 0;
    std::vector<work_item> plan_;
    std::uint64_t first_item_ = 0;
    std::uint64_t next_item_ = 0;
    std::unique_ptr<source_provider> inner_;
};

class local_object_store final : public object_store {
public:
    local_object_store(std::vector<std::string> paths, std::size_t read_size)
        : paths_(std::move(paths)), read_size_(read_size)
    {
        if (paths_.empty())
            throw std::invalid_argument("pipemode::local_store: no paths given");
        for (auto& p : paths_)
            if (p.starts_with("file://"))
                p.erase(0, 7);
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        // Directory walks block (and may be slow on network file systems): not on the network
        // thread. The walk cannot be interrupted, so it is spawned without the caller's
        // cancellation slot: Boost 1.81's co_spawn forwards a cancellation to the other
        // executor by a posted call that uses the spawned coroutine's state even after it has
        // finished (a crash when a reader is destroyed while listing).
        co_return co_await asio::co_spawn(ctx.blocking_executor, list(paths_),
                                          asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
    }

    static asio::awaitable<std::vector<object_entry>> list(std::vector<std::string> paths)
    {
        namespace fs = std::filesystem;
        std::vector<object_entry> out;
        for (const auto& p : paths) {
            const auto before = out.size();
            std::error_code ec;
            const auto status = fs::status(p, ec);
            if (fs::is_directory(status)) {
                std::vector<fs::path> found;
                for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator();
                     it.increment(ec))
                    if (it->is_regular_file() || it->is_fifo())
                        found.push_back(it->path());
                if (ec)
                    throw data_error(errc::empty_data_set, {p, 0, 0}, "listing the directory failed: " + ec.message());
                std::sort(found.begin(), found.end());
                for (const auto& f : found)
                    out.push_back(entry(f));
            } else if (fs::exists(status)) {
                out.push_back(entry(p));
            } else {
                // A prefix: the files of the parent directory whose paths start with it.
                const fs::path prefix(p);
                const fs::path dir = prefix.has_parent_path() ? prefix.parent_path() : fs::path(".");
                std::vector<fs::path> found;
                for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
                    const std::string name = (dir / it->path().filename()).string();
                    if (name.starts_with(prefix.string()) && (it->is_regular_file() || it->is_fifo()))
                        found.push_back(dir / it->path().filename());
                }
                std::sort(found.begin(), found.end());
                for (const auto& f : found)
                    out.push_back(entry(f));
            }
            if (out.size() == before)
                throw data_error(errc::empty_data_set, {p, 0, 0},
                                 "no file, directory or files with that prefix");
        }
        co_return out;
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        std::vector<source_maker> makers;
        makers.reserve(reads.size());
        const std::size_t read_size = read_size_;
        for (auto& r : reads) {
            makers.push_back([r = std::move(r), read_size](const source_context& ctx) {
                struct ::stat st {};
                if (::stat(r.uri.c_str(), &st) == 0 && S_ISFIFO(st.st_mode))
                    return any_byte_source(fifo_source(ctx.executor, r.uri, fifo_source_options{.read_size = read_size}));
                file_source_options fo{.offset = r.first, .read_size = read_size, .blocking_executor = ctx.blocking_executor};
                if (r.end)
                    fo.length = *r.end > r.first ? *r.end - r.first : 0;
                return any_byte_source(file_source(ctx.executor, r.uri, fo));
            });
        }
        return source_list(std::move(makers), describe());
    }

    std::string describe() const override
    {
        return paths_.size() == 1 ? paths_.front() : paths_.front() + " (and " + std::to_string(paths_.size() - 1) + " more paths)";
    }

    std::size_t reserve_buffers(const reader_options&) override { return 2 * read_size_; }

private:
    static object_entry entry(const std::filesystem::path& p)
    {
        std::error_code ec;
        object_entry e{.uri = p.string()};
        if (std::filesystem::is_regular_file(p, ec)) {
            const auto n = std::filesystem::file_size(p, ec);
            if (!ec)
                e.size = n;
        }
        return e;
    }

    std::vector<std::string> paths_;
    std::size_t read_size_;
};

/// The sources of several providers, one provider after the other.
class chained_provider final : public source_provider {
public:
    explicit chained_provider(std::vector<std::unique_ptr<source_provider>> parts) : parts_(std::move(parts))
    {
        for (const auto& p : parts_)
            description_ += (description_.empty() ? "" : " + ") + p->describe();
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        for (; current_ < parts_.size(); ++current_) {
            if (auto source = co_await parts_[current_]->async_next_source(ctx))
                co_return source;
            parts_[current_].reset();  // its buffers go before the next part fetches
        }
        co_return std::nullopt;
    }

    std::string describe() const override { return description_; }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        // One part is open at a time: the largest reservation, not the sum.
        std::size_t most = 0;
        for (const auto& p : parts_)
            most = std::max(most, p->reserve_buffers(o));
        return most;
    }

private:
    std::vector<std::unique_ptr<source_provider>> parts_;
    std::size_t current_ = 0;
    std::string description_;
};

class concatenated_store final : public object_store {
public:
    explicit concatenated_store(std::vector<std::unique_ptr<object_store>> parts) : parts_(std::move(parts))
    {
        if (parts_.empty())
            throw std::invalid_argument("pipemode::concat_stores: no stores given");
        for (const auto& p : parts_)
            if (!p)
                throw std::invalid_argument("pipemode::concat_stores: a store is null");
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        std::vector<object_entry> all;
        owner_.clear();
        for (std::size_t k = 0; k < parts_.size(); ++k) {
            auto listed = co_await parts_[k]->async_list(ctx);
            for (auto& e : listed) {
                owner_[e.uri] = k;
                all.push_back(std::move(e));
            }
        }
        co_return all;
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        // Consecutive reads of one store become one of its providers; the providers are
        // chained in order.
        std::vector<std::unique_ptr<source_provider>> providers;
        std::vector<object_read> run;
        std::size_t run_owner = 0;
        const auto flush = [&] {
            if (!run.empty())
                providers.push_back(parts_[run_owner]->open(std::exchange(run, {})));
        };
        for (auto& r : reads) {
            const auto it = owner_.find(r.uri);
            if (it == owner_.end())
                throw std::logic_error("pipemode: '" + r.uri + "' was not in the listing");
            if (it->second != run_owner)
                flush();
            run_owner = it->second;
            run.push_back(std::move(r));
        }
        flush();
        return std::make_unique<chained_provider>(std::move(providers));
    }

    std::string describe() const override
    {
        std::string s;
        for (const auto& p : parts_)
            s += (s.empty() ? "" : " + ") + p->describe();
        return s;
    }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        std::size_t most = 0;
        for (const auto& p : parts_)
            most = std::max(most, p->reserve_buffers(o));
        return most;
    }

    bool splittable() const noexcept override
    {
        return std::all_of(parts_.begin(), parts_.end(), [](const auto& p) { return p->splittable(); });
    }

private:
    std::vector<std::unique_ptr<object_store>> parts_;
    std::unordered_map<std::string, std::size_t> owner_;  ///< URI -> the store that listed it
};

} // namespace detail

inline std::unique_ptr<object_store> concat_stores(std::vector<std::unique_ptr<object_store>> parts)
{
    if (parts.size() == 1)
        return std::move(parts.front());
    return std::make_unique<detail::concatenated_store>(std::move(parts));
}

inline std::unique_ptr<object_store> local_store(std::vector<std::string> paths, std::size_t read_size)
{
    return std::make_unique<detail::local_object_store>(std::move(paths), read_size);
}

inline std::unique_ptr<source_provider> planned_epochs(std::unique_ptr<object_store> store, data_set_options options,
                                                       std::shared_ptr<detail::data_set_shared> shared)
{
    if (!store)
        throw std::invalid_argument("pipemode: planned_epochs: no object store given");
    return std::make_unique<detail::planned_epochs_provider>(std::move(store), std::move(options), std::move(shared));
}

inline data_set_reader::data_set_reader(std::unique_ptr<object_store> store, data_set_options options,
                                        reader_options reader_opts)
    : shared_(std::make_shared<detail::data_set_shared>())
    , reader_([&] {
        data_set_state start = options.resume.value_or(data_set_state{});
        if (!options.resume) {
            start.epoch = options.first_epoch;
            start.rank = options.plan.shard.rank;
            start.world_size = options.plan.shard.world_size;
        }
        shared_->start = start;
        return planned_epochs(std::move(store), std::move(options), shared_);
    }(), std::move(reader_opts))
{
}

inline data_set_state data_set_reader::state() const
{
    const auto pos = reader_.position();
    data_set_state s = shared_->with_listing(shared_->start);
    if (!pos)
        return s;
    if (pos->epoch != s.epoch)
        s.history.clear();  // the history describes how the resumed epoch was divided only
    s.epoch = pos->epoch;
    s.cursor = {pos->item, pos->records, pos->in_block, pos->block_end_item};
    return s;
}

inline data_set_state resume_state(std::span<const data_set_state> every_rank, std::size_t rank, std::size_t world_size)
{
    if (every_rank.empty())
        detail::state_error("no saved states given");
    if (world_size == 0 || rank >= world_size)
        detail::state_error("rank " + std::to_string(rank) + " is not below world_size " + std::to_string(world_size));
    const data_set_state& first = every_rank.front();
    const std::size_t old_world = first.world_size;
    for (const auto& s : every_rank) {
        if (s.epoch != first.epoch)
            detail::state_error("the saved states are in different epochs (" + std::to_string(first.epoch) + " and "
                                + std::to_string(s.epoch)
                                + "); save the states of every rank at the same step, after the same number of batches");
        if (s.world_size != old_world || s.objects != first.objects || s.fingerprint != first.fingerprint
            || s.history != first.history)
            detail::state_error("the saved states do not come from the same run of the same data set");
    }
    if (world_size == old_world) {
        for (const auto& s : every_rank)
            if (s.rank == rank)
                return s;
        detail::state_error("no saved state of rank " + std::to_string(rank) + " among those given");
    }
    interrupted_run run{.world_size = old_world, .cursors = std::vector<plan_cursor>(old_world)};
    std::vector<bool> seen(old_world, false);
    for (const auto& s : every_rank) {
        if (s.rank >= old_world || seen[s.rank])
            detail::state_error("rank " + std::to_string(s.rank) + " appears twice or is not below world_size "
                                + std::to_string(old_world));
        seen[s.rank] = true;
        run.cursors[s.rank] = s.cursor;
    }
    if (std::find(seen.begin(), seen.end(), false) != seen.end())
        detail::state_error("continuing with another world size needs the saved state of every one of the "
                            + std::to_string(old_world) + " old ranks; " + std::to_string(every_rank.size())
                            + " given");
    data_set_state out = first;
    out.rank = rank;
    out.world_size = world_size;
    out.cursor = {};
    out.history.push_back(std::move(run));
    return out;
}

inline std::string data_set_state::to_json() const
{
    const auto n = [](std::uint64_t v) { return std::to_string(v); };
    std::string s = "{\"version\":1,\"epoch\":" + n(epoch) + ",\"item\":" + n(cursor.item) + ",\"records\":"
                    + n(cursor.records) + ",\"in_block\":" + n(cursor.in_block) + ",\"block_end_item\":"
                    + n(cursor.block_end_item) + ",\"rank\":" + n(rank) + ",\"world_size\":" + n(world_size)
                    + ",\"objects\":" + n(objects) + ",\"fingerprint\":\"" + n(fingerprint) + "\",\"history\":[";
    for (std::size_t g = 0; g < history.size(); ++g) {
        if (g)
            s += ',';
        s += "{\"world_size\":" + n(history[g].world_size) + ",\"cursors\":[";
        for (std::size_t r = 0; r < history[g].cursors.size(); ++r) {
            if (r)
                s += ',';
            const plan_cursor& c = history[g].cursors[r];
            s += '[' + n(c.item) + ',' + n(c.records) + ',' + n(c.in_block) + ',' + n(c.block_end_item) + ']';
        }
        s += "]}";
    }
    s += "]}";
    return s;
}

inline data_set_state data_set_state::from_json(std::string_view text)
{
    detail::parse_error err;
    const auto doc = detail::json::parse(text, err);
    if (!doc)
        detail::state_error("not valid JSON: " + err.to_string());
    if (!doc->is_object())
        detail::state_error("not a JSON object");
    const auto uint = [](const detail::json::value* v, const char* name) -> std::uint64_t {
        if (!v)
            detail::state_error(std::string("the field '") + name + "' is missing");
        if (v->is_string()) {  // the fingerprint: a string, as JSON numbers lose 64-bit precision elsewhere
            std::uint64_t out = 0;
            const auto& t = v->as_string();
            const auto r = std::from_chars(t.data(), t.data() + t.size(), out);
            if (r.ec == std::errc{} && r.ptr == t.data() + t.size() && !t.empty())
                return out;
        } else if (v->is_number()) {
            if (const auto u = v->as_number().as_uint64())
                return *u;
        }
        detail::state_error(std::string("the field '") + name + "' is not a non-negative integer");
    };
    const auto field = [&](const char* name) { return uint(doc->find(name), name); };
    if (field("version") != 1)
        detail::state_error("unknown version (this pipemode reads version 1)");
    data_set_state s;
    s.epoch = field("epoch");
    s.cursor = {field("item"), field("records"), field("in_block"), field("block_end_item")};
    s.rank = static_cast<std::size_t>(field("rank"));
    s.world_size = static_cast<std::size_t>(field("world_size"));
    s.objects = field("objects");
    s.fingerprint = field("fingerprint");
    if (s.world_size == 0 || s.rank >= s.world_size)
        detail::state_error("rank " + std::to_string(s.rank) + " is not below world_size " + std::to_string(s.world_size));
    const auto* history = doc->find("history");
    if (!history || !history->is_array())
        detail::state_error("the field 'history' is missing or not an array");
    for (const auto& g : history->as_array()) {
        if (!g.is_object())
            detail::state_error("a history entry is not an object");
        interrupted_run run;
        run.world_size = static_cast<std::size_t>(uint(g.find("world_size"), "world_size"));
        const auto* cursors = g.find("cursors");
        if (!cursors || !cursors->is_array() || cursors->as_array().size() != run.world_size || run.world_size == 0)
            detail::state_error("a history entry's 'cursors' must list one cursor per rank");
        for (const auto& c : cursors->as_array()) {
            if (!c.is_array() || c.as_array().size() != 4)
                detail::state_error("a history cursor is not an [item, records, in_block, block_end_item] array");
            const auto& a = c.as_array();
            run.cursors.push_back({uint(&a[0], "item"), uint(&a[1], "records"), uint(&a[2], "in_block"),
                                   uint(&a[3], "block_end_item")});
        }
        s.history.push_back(std::move(run));
    }
    return s;
}

} // namespace pipemode
