// pipemode: definitions of caching_store.hpp.
#pragma once

#include <pipemode/cache/detail/memory_cache.hpp>
#include <pipemode/sources/file_source.hpp>
#include <pipemode/sources/memory_source.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace pipemode::cache {

namespace detail {

/// What a caching store shares with its providers and the sources they hand out. Touched on
/// the reader's network thread only; blocking work gets copies.
struct store_state {
    std::string directory;   ///< empty: the process's memory cache
    std::string store_name;  ///< the inner store's describe(), part of every key
    std::uint64_t budget = 0;
    std::optional<std::uint64_t> floor_option;
    std::uint64_t floor = 0;
    space_function space;
    process_tag self;
    std::unordered_map<std::string, entry_info> index;  ///< committed entries, by stem
    std::uint64_t used_seen = 0;  ///< bytes in use at the last look; only grows between crashes
    std::size_t read_size = 4 * mib;
    std::unordered_map<std::string, object_entry> listed;  ///< by URI
    std::shared_ptr<cache_stats> stats;
};

/// Runs `f` on the blocking pool and resumes with its result. Spawned without the caller's
/// cancellation slot, as local_store's listing is: the call cannot be interrupted, and Boost
/// 1.81's co_spawn forwards a cancellation through state that may be gone by then.
template <class F>
asio::awaitable<std::invoke_result_t<F&>> blocking_body(F f)
{
    co_return f();
}

template <class F>
auto on_blocking(const asio::any_io_executor& blocking, F f)
{
    return asio::co_spawn(blocking, blocking_body(std::move(f)),
                          asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
}

/// A source read from a cache entry (its file, or its bytes in memory), named and placed as
/// the object it holds.
template <class Source>
class entry_source {
public:
    entry_source(Source source, std::string uri, std::uint64_t first)
        : source_(std::move(source)), uri_(std::move(uri)), first_(first)
    {
    }
    asio::awaitable<chunk_result> async_next() { return source_.async_next(); }
    std::string_view name() const noexcept { return uri_; }
    std::uint64_t start_offset() const noexcept { return first_; }

private:
    Source source_;
    std::string uri_;
    std::uint64_t first_;
};

/// What a tee source shares with its writes on the blocking pool (which co-own it, so a
/// source dropped with writes in flight leaves them a live file descriptor).
struct tee_state {
    tee_state(any_byte_source s, asio::any_io_executor net, asio::any_io_executor blk, std::shared_ptr<store_state> st,
              std::string key, std::uint64_t bytes)
        : source(std::move(s))
        , network(std::move(net))
        , blocking(std::move(blk))
        , store(std::move(st))
        , key_text(std::move(key))
        , item_bytes(bytes)
        , wake(network)
    {
    }
    tee_state(const tee_state&) = delete;
    tee_state& operator=(const tee_state&) = delete;
    ~tee_state()
    {
        if (res && res->fd >= 0)
            ::close(res->fd);
    }

    enum class phase { unreserved, writing, done };

    any_byte_source source;
    const asio::any_io_executor network;
    const asio::any_io_executor blocking;
    const std::shared_ptr<store_state> store;
    const std::string key_text;
    const std::uint64_t item_bytes;
    asio::steady_timer wake;  ///< cancelled by each write's completion

    // The network thread's side.
    phase step = phase::unreserved;
    std::optional<reservation> res;
    std::uint64_t offset = 0;   ///< bytes handed to writes
    std::uint64_t pending = 0;  ///< bytes handed to writes not yet written
    bool write_failed = false;
    bool reading = false;       ///< an async_next() is in progress
    bool left_behind = false;   ///< dropped between reads while writing: the provider reads the rest
    /// The source is gone: set on the network thread, read by the reservation on the pool.
    std::atomic<bool> dropped{false};
};

/// Bytes of chunks copied for the disk and not yet written, beyond which the source waits
/// (asynchronously) before it reads on: the disk is rarely the slower side, and this bounds
/// the copies when it is.
inline std::uint64_t tee_backlog(const tee_state& s) { return 2 * std::uint64_t{s.store->read_size}; }

/// Stops caching the item: its partial file goes (its bytes were never served).
inline void tee_abandon(const std::shared_ptr<tee_state>& s)
{
    if (s->step != tee_state::phase::writing) {
        s->step = tee_state::phase::done;
        return;
    }
    s->step = tee_state::phase::done;
    if (s->store->stats)
        ++s->store->stats->abandoned;
    auto work = asio::prefer(s->network, asio::execution::outstanding_work.tracked);
    std::shared_ptr<tee_state> owner = s;
    asio::post(s->blocking, [s = std::move(owner), work = std::move(work)]() mutable {
        ::unlink(s->res->partial.c_str());
        // The state dies on the network thread, with its timer.
        asio::post(work, [s = std::move(s)] {});
    });
}

/// Copies `chunk` and writes it at its place in the partial file, on the blocking pool.
inline void tee_write(const std::shared_ptr<tee_state>& s, std::span<const std::byte> chunk)
{
    const std::size_t n = chunk.size();
    std::shared_ptr<std::byte[]> copy(new std::byte[n]);
    std::memcpy(copy.get(), chunk.data(), n);
    const std::uint64_t at = s->offset;
    s->offset += n;
    s->pending += n;
    auto work = asio::prefer(s->network, asio::execution::outstanding_work.tracked);
    std::shared_ptr<tee_state> owner = s;
    asio::post(s->blocking, [s = std::move(owner), work = std::move(work), copy = std::move(copy), at, n]() mutable {
        bool ok = true;
        for (std::size_t done = 0; ok && done < n;) {
            const ssize_t r = ::pwrite(s->res->fd, copy.get() + done, n - done, static_cast<off_t>(at + done));
            if (r > 0)
                done += static_cast<std::size_t>(r);
            else if (r < 0 && errno == EINTR)
                continue;
            else
                ok = false;
        }
        copy.reset();
        asio::post(work, [s = std::move(s), ok, n] {
            s->pending -= n;
            if (!ok)
                s->write_failed = true;
            s->wake.cancel();
        });
    });
}

/// Waits until at most `limit` bytes of writes are pending; false when the source was dropped.
inline asio::awaitable<bool> tee_drain(std::shared_ptr<tee_state> s, std::uint64_t limit)
{
    while (s->pending > limit) {
        s->wake.expires_at(std::chrono::steady_clock::time_point::max());
        co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
        if (s->dropped)
            co_return false;
    }
    co_return true;
}

inline asio::awaitable<chunk_result> tee_next_body(std::shared_ptr<tee_state> s);

/// The body of `tee_source::async_next()`; takes the state by value, so a source destroyed
/// while this is suspended leaves it valid.
inline asio::awaitable<chunk_result> tee_next(std::shared_ptr<tee_state> s)
{
    s->reading = true;
    auto out = co_await tee_next_body(s);
    s->reading = false;
    co_return out;
}

inline asio::awaitable<chunk_result> tee_next_body(std::shared_ptr<tee_state> s)
{
    using phase = tee_state::phase;
    if (s->step == phase::unreserved) {
        store_state& st = *s->store;
        if (st.used_seen + entry_file_bytes(s->item_bytes, s->key_text.size()) > st.budget) {
            // Nothing is evicted, so an item that did not fit before does not fit now.
            s->step = phase::done;
            if (st.stats)
                ++st.stats->refused;
        } else {
            struct outcome {
                std::optional<reservation> res;
                refusal why = refusal::none;
                std::uint64_t used = 0;
            };
            // A named function object, not a temporary inside the co_await: GCC 12 destroys
            // such temporaries twice.
            auto job = [s, dir = st.directory, budget = st.budget, floor = st.floor, space = st.space, self = st.self] {
                    outcome out;
                    try {
                        out.res = reserve(dir, s->key_text, s->item_bytes, budget, floor, space, self, out.why, out.used);
                    } catch (const std::exception&) {
                        out.why = refusal::io;  // a cache that cannot be used leaves the read to the network
                    }
                    if (out.res && s->dropped) {
                        ::close(out.res->fd);
                        ::unlink(out.res->partial.c_str());
                        out.res.reset();
                    }
                    return out;
                };
            outcome o = co_await on_blocking(s->blocking, std::move(job));
            st.used_seen = std::max(st.used_seen, o.used);
            if (s->dropped)
                co_return chunk_result{asio::error::operation_aborted, {}};
            if (o.res) {
                s->res = std::move(o.res);
                s->step = phase::writing;
            } else {
                s->step = phase::done;
                if (st.stats && o.why != refusal::present)
                    ++st.stats->refused;
            }
        }
    }
    if (s->step == phase::writing && !co_await tee_drain(s, tee_backlog(*s)))
        co_return chunk_result{asio::error::operation_aborted, {}};
    auto [ec, chunk] = co_await s->source.async_next();
    if (s->step != phase::writing || ec == asio::error::operation_aborted)
        co_return chunk_result{ec, chunk};
    if (s->write_failed) {
        tee_abandon(s);
    } else if (!ec) {
        if (s->offset + chunk.size() > s->item_bytes)
            tee_abandon(s);  // longer than listed: the read will fail or the listing was wrong
        else if (!chunk.empty())
            tee_write(s, chunk);
    } else if (ec == asio::error::eof && s->offset == s->item_bytes) {
        if (!co_await tee_drain(s, 0))
            co_return chunk_result{asio::error::operation_aborted, {}};
        if (s->write_failed) {
            tee_abandon(s);
        } else {
            auto job = [s, dir = s->store->directory] { return commit(dir, *s->res, s->key_text, s->item_bytes); };
            const bool ok = co_await on_blocking(s->blocking, std::move(job));
            s->step = phase::done;
            store_state& st = *s->store;
            if (ok) {
                st.index[entry_stem(s->key_text)] =
                    entry_info{s->key_text, s->item_bytes, entry_file_bytes(s->item_bytes, s->key_text.size())};
                if (st.stats)
                    ++st.stats->admitted;
            } else if (st.stats) {
                ++st.stats->abandoned;
            }
        }
    } else {
        tee_abandon(s);  // an error, or an end before the item's last byte
    }
    co_return chunk_result{ec, chunk};
}

/// A source that passes another's chunks on unchanged and writes them into the cache.
class tee_source {
public:
    explicit tee_source(std::shared_ptr<tee_state> s) : s_(std::move(s)), name_(s_->source.name()), first_(s_->source.start_offset()) {}
    tee_source(tee_source&&) noexcept = default;
    tee_source& operator=(tee_source&&) noexcept = delete;
    ~tee_source()
    {
        if (!s_)
            return;
        if (s_->step == tee_state::phase::writing && !s_->reading) {
            // Dropped between reads: a byte range's reader stops after the first record past
            // the range's end. The provider reads the item's rest (at most the plan's slack)
            // before it hands out the next source, or abandons it.
            s_->left_behind = true;
            return;
        }
        s_->dropped = true;
        s_->wake.cancel();
        // Dropped before its end: what was written is not the whole item.
        if (s_->step == tee_state::phase::writing)
            tee_abandon(s_);
    }

    asio::awaitable<chunk_result> async_next() { return tee_next(s_); }
    std::string_view name() const noexcept { return name_; }
    std::uint64_t start_offset() const noexcept { return first_; }

private:
    std::shared_ptr<tee_state> s_;
    std::string name_;
    std::uint64_t first_;
};

/// What a memory tee source shares with its `async_next()` bodies, which co-own it.
struct memory_tee_state {
    memory_tee_state(any_byte_source s, std::shared_ptr<store_state> st, entry_key k)
        : source(std::move(s)), store(std::move(st)), key(std::move(k)), key_text(key.text())
    {
    }
    any_byte_source source;
    const std::shared_ptr<store_state> store;
    const entry_key key;
    const std::string key_text;
    enum class phase { unreserved, writing, done } step = phase::unreserved;
    std::shared_ptr<std::vector<std::byte>> bytes;  ///< the item so far, allocated at the reservation
    bool reading = false;      ///< an async_next() is in progress
    bool left_behind = false;  ///< dropped between reads while writing: the provider reads the rest

    std::uint64_t charge() const noexcept { return memory_charge(key.bytes(), key_text.size()); }
};

/// Stops keeping the item in memory and gives its reservation back.
inline void memory_tee_abandon(memory_tee_state& s)
{
    if (s.step == memory_tee_state::phase::writing) {
        memory_cache::process().abandon(s.key_text, s.charge());
        s.bytes.reset();
        if (s.store->stats)
            ++s.store->stats->abandoned;
    }
    s.step = memory_tee_state::phase::done;
}

/// The body of `memory_tee_source::async_next()`; takes the state by value, so a source
/// destroyed while this is suspended leaves it valid. Everything but the inner read completes
/// without suspending: a chunk's copy is a memcpy on the network thread.
inline asio::awaitable<chunk_result> memory_tee_next(std::shared_ptr<memory_tee_state> s)
{
    using phase = memory_tee_state::phase;
    store_state& st = *s->store;
    s->reading = true;
    struct reading_done {
        memory_tee_state& s;
        ~reading_done() { s.reading = false; }
    } done_guard{*s};
    if (s->step == phase::unreserved) {
        std::uint64_t used = 0;
        const refusal why = memory_cache::process().reserve(s->key_text, s->charge(), st.budget, used);
        s->step = phase::done;
        if (why == refusal::none) {
            try {
                // Allocated whole at the reservation, as a directory's partial file is.
                s->bytes = std::make_shared<std::vector<std::byte>>();
                s->bytes->reserve(s->key.bytes());
                s->step = phase::writing;
            } catch (const std::bad_alloc&) {
                s->bytes.reset();
                memory_cache::process().abandon(s->key_text, s->charge());
                if (st.stats)
                    ++st.stats->refused;
            }
        } else if (st.stats && why != refusal::present) {
            ++st.stats->refused;
        }
    }
    auto [ec, chunk] = co_await s->source.async_next();
    if (s->step != phase::writing || ec == asio::error::operation_aborted)
        co_return chunk_result{ec, chunk};
    if (!ec) {
        if (s->bytes->size() + chunk.size() > s->key.bytes())
            memory_tee_abandon(*s);  // longer than listed: the read will fail or the listing was wrong
        else
            s->bytes->insert(s->bytes->end(), chunk.begin(), chunk.end());
    } else if (ec == asio::error::eof && s->bytes->size() == s->key.bytes()) {
        memory_cache::process().commit(s->key, s->key_text, std::move(s->bytes));
        s->step = phase::done;
        if (st.stats)
            ++st.stats->admitted;
    } else {
        memory_tee_abandon(*s);  // an error, or an end before the item's last byte
    }
    co_return chunk_result{ec, chunk};
}

/// A source that passes another's chunks on unchanged and keeps a copy in the memory cache.
class memory_tee_source {
public:
    explicit memory_tee_source(std::shared_ptr<memory_tee_state> s)
        : s_(std::move(s)), name_(s_->source.name()), first_(s_->source.start_offset())
    {
    }
    memory_tee_source(memory_tee_source&&) noexcept = default;
    memory_tee_source& operator=(memory_tee_source&&) noexcept = delete;
    ~memory_tee_source()
    {
        if (!s_)
            return;
        if (s_->step == memory_tee_state::phase::writing && !s_->reading)
            s_->left_behind = true;  // as tee_source: the provider reads the rest of a byte range's item
        else
            memory_tee_abandon(*s_);  // dropped in a read: what was copied is not the whole item
    }

    asio::awaitable<chunk_result> async_next() { return memory_tee_next(s_); }
    std::string_view name() const noexcept { return name_; }
    std::uint64_t start_offset() const noexcept { return first_; }

private:
    std::shared_ptr<memory_tee_state> s_;
    std::string name_;
    std::uint64_t first_;
};

/// One read of a plan, as the cache sees it.
struct planned_read {
    object_read read;
    std::optional<entry_key> key;  ///< empty: not cacheable (size unknown)
    std::optional<entry_info> hit;
    std::string hit_path;
    std::shared_ptr<const std::vector<std::byte>> memory_hit;  ///< a hit in the memory cache
};

class caching_provider final : public source_provider {
public:
    caching_provider(std::vector<planned_read> reads, std::unique_ptr<source_provider> inner, std::shared_ptr<store_state> state)
        : reads_(std::move(reads)), inner_(std::move(inner)), state_(std::move(state))
    {
    }

    caching_provider(const caching_provider&) = delete;
    caching_provider& operator=(const caching_provider&) = delete;
    ~caching_provider() override
    {
        // The reader stopped before asking for another source: an item left behind stays
        // partial and goes.
        if (behind_ && behind_->left_behind && behind_->step == tee_state::phase::writing) {
            behind_->dropped = true;
            tee_abandon(behind_);
        }
        if (memory_behind_ && memory_behind_->left_behind)
            memory_tee_abandon(*memory_behind_);
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        // The reader asks for the next source once it is done with the previous one.
        if (auto s = std::exchange(behind_, nullptr); s && s->left_behind)
            co_await finish_item(std::move(s));
        if (auto s = std::exchange(memory_behind_, nullptr); s && s->left_behind)
            co_await finish_item(std::move(s));
        behind_.reset();
        memory_behind_.reset();
        if (next_ == reads_.size())
            co_return std::nullopt;
        planned_read& r = reads_[next_++];
        store_state& st = *state_;
        if (r.memory_hit) {
            if (st.stats) {
                ++st.stats->hits;
                st.stats->hit_bytes += r.memory_hit->size();
            }
            memory_source bytes(std::move(r.memory_hit), r.read.uri, {.chunk_size = st.read_size, .start_offset = r.read.first});
            co_return any_byte_source(entry_source<memory_source>(std::move(bytes), r.read.uri, r.read.first));
        }
        if (r.hit) {
            if (st.stats) {
                ++st.stats->hits;
                st.stats->hit_bytes += r.hit->item_bytes;
            }
            file_source file(ctx.executor, r.hit_path,
                             {.offset = 0, .length = r.hit->item_bytes, .read_size = st.read_size, .blocking_executor = ctx.blocking_executor});
            co_return any_byte_source(entry_source<file_source>(std::move(file), r.read.uri, r.read.first));
        }
        if (!inner_)
            throw std::logic_error("pipemode::cache: a miss without an inner provider");
        auto source = co_await inner_->async_next_source(ctx);
        if (!source)
            throw std::logic_error("pipemode::cache: the inner store handed out fewer sources than reads");
        if (st.stats) {
            ++st.stats->misses;
            if (r.key)
                st.stats->miss_bytes += r.key->bytes();
        }
        if (!r.key)
            co_return std::move(*source);
        if (st.directory.empty()) {
            memory_behind_ = std::make_shared<memory_tee_state>(std::move(*source), state_, *r.key);
            co_return any_byte_source(memory_tee_source(memory_behind_));
        }
        behind_ = std::make_shared<tee_state>(std::move(*source), ctx.executor, ctx.blocking_executor, state_, r.key->text(),
                                              r.key->bytes());
        co_return any_byte_source(tee_source(behind_));
    }

    std::string describe() const override { return inner_ ? inner_->describe() : state_->store_name; }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        // The inner stream's window stays allocated while an entry is read; an entry's file
        // source holds two buffers, and a miss at most a backlog of copies for the disk.
        return (inner_ ? inner_->reserve_buffers(o) : 0) + 4 * o.read_size;
    }

private:
    /// Reads the rest of an item the reader dropped between reads (a byte range it stopped
    /// after the first record past the range's end) and commits it, so that the range hits in
    /// later epochs. The rest is at most the plan's slack past the range's end (two records),
    /// and mostly in the inner stream's window already. A failure only loses the entry.
    template <class State>
    static asio::awaitable<void> finish_item(std::shared_ptr<State> s)
    {
        try {
            while (s->step == State::phase::writing) {
                auto [ec, chunk] = co_await next_of(s);
                if (ec)
                    break;
            }
        } catch (const std::exception&) {
        }
        if (s->step == State::phase::writing) {
            if constexpr (std::is_same_v<State, tee_state>) {
                s->dropped = true;
                tee_abandon(s);
            } else {
                memory_tee_abandon(*s);
            }
        }
    }
    static asio::awaitable<chunk_result> next_of(std::shared_ptr<tee_state> s) { return tee_next(std::move(s)); }
    static asio::awaitable<chunk_result> next_of(std::shared_ptr<memory_tee_state> s) { return memory_tee_next(std::move(s)); }

    std::vector<planned_read> reads_;
    std::unique_ptr<source_provider> inner_;
    std::shared_ptr<store_state> state_;
    std::size_t next_ = 0;
    std::shared_ptr<tee_state> behind_;                ///< the last miss handed out, to the disk
    std::shared_ptr<memory_tee_state> memory_behind_;  ///< the last miss handed out, to memory
};

/// What the listing's blocking part finds: the entries, after removing those of changed objects.
inline scan_result open_directory(const std::string& dir, const std::string& store_name,
                                  const std::unordered_map<std::string, object_entry>& listed)
{
    make_directory(dir);
    directory_lock lock(dir);
    scan_result s = scan(dir);
    for (auto it = s.entries.begin(); it != s.entries.end();) {
        const auto key = entry_key::parse(it->second.key_text);
        bool stale = !key;
        if (key && key->store == store_name) {
            const auto l = listed.find(key->uri);
            stale = l != listed.end() && (l->second.size != key->size || l->second.etag != key->etag);
        }
        if (stale) {
            ::unlink((dir + "/" + it->first + ".data").c_str());
            s.used -= it->second.file_bytes;
            it = s.entries.erase(it);
        } else {
            ++it;
        }
    }
    return s;
}

class caching_object_store final : public object_store {
public:
    caching_object_store(std::unique_ptr<object_store> inner, cache_options options, std::shared_ptr<cache_stats> stats)
        : inner_(std::move(inner)), state_(std::make_shared<store_state>())
    {
        if (!inner_)
            throw std::invalid_argument("pipemode::cache::caching_store: no object store given");
        if (options.budget_bytes == 0)
            throw std::invalid_argument("pipemode::cache::caching_store: the budget is 0; give the cache a size (--cache-size 20G)");
        while (options.directory.size() > 1 && options.directory.back() == '/')
            options.directory.pop_back();
        state_->directory = std::move(options.directory);
        state_->store_name = inner_->describe();
        state_->budget = options.budget_bytes;
        state_->floor_option = options.free_space_floor;
        state_->space = std::move(options.free_space);
        state_->self = this_process();
        state_->stats = std::move(stats);
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        std::vector<object_entry> objects = co_await inner_->async_list(ctx);
        store_state& st = *state_;
        const object_entry* largest = nullptr;
        st.listed.clear();
        for (const auto& e : objects) {
            if (e.size && (!largest || *e.size > *largest->size))
                largest = &e;
            st.listed.emplace(e.uri, e);
        }
        if (largest && *largest->size > st.budget)
            throw std::invalid_argument("pipemode::cache: the cache budget (" + std::to_string(st.budget) + " bytes) is smaller than '"
                                        + largest->uri + "' (" + std::to_string(*largest->size)
                                        + " bytes), the largest object of " + st.store_name
                                        + "; give a budget of at least that object's size, or run without the cache");
        if (st.directory.empty()) {
            // In memory: the process's entries, less those of changed objects.
            memory_cache::process().remove_changed(st.store_name, st.listed);
            co_return objects;
        }
        // Named function objects, not temporaries inside the co_await: GCC 12 destroys such
        // temporaries twice.
        auto open_job = [dir = st.directory, name = st.store_name, listed = st.listed] { return open_directory(dir, name, listed); };
        scan_result s = co_await on_blocking(ctx.blocking_executor, std::move(open_job));
        st.index = std::move(s.entries);
        st.used_seen = s.used;
        if (st.floor_option) {
            st.floor = *st.floor_option;
        } else {
            auto measure = [dir = st.directory, space = st.space] { return space ? space(dir) : statvfs_space(dir); };
            const file_system_space fs = co_await on_blocking(ctx.blocking_executor, std::move(measure));
            st.floor = std::min<std::uint64_t>(fs.total / 20, gib);
        }
        co_return objects;
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        store_state& st = *state_;
        std::vector<planned_read> planned;
        std::vector<object_read> misses;
        planned.reserve(reads.size());
        for (auto& r : reads) {
            planned_read p{r, {}, {}, {}, {}};
            const auto l = st.listed.find(r.uri);
            const std::optional<std::uint64_t> size = r.size ? r.size : (l != st.listed.end() ? l->second.size : std::nullopt);
            if (size && r.first <= r.end.value_or(*size) && r.end.value_or(*size) <= *size) {
                p.key = entry_key{st.store_name, r.uri, *size, l != st.listed.end() ? l->second.etag : std::string(), r.first,
                                  r.end.value_or(*size)};
                const std::string text = p.key->text();
                const std::string stem = entry_stem(text);
                if (st.directory.empty())
                    p.memory_hit = memory_cache::process().find(text);
                else if (const auto it = st.index.find(stem); it != st.index.end() && it->second.key_text == text) {
                    p.hit = it->second;
                    p.hit_path = st.directory + "/" + stem + ".data";
                }
            }
            if (!p.hit && !p.memory_hit)
                misses.push_back(std::move(r));
            planned.push_back(std::move(p));
        }
        std::unique_ptr<source_provider> inner = misses.empty() ? nullptr : inner_->open(std::move(misses));
        return std::make_unique<caching_provider>(std::move(planned), std::move(inner), state_);
    }

    std::string describe() const override { return inner_->describe(); }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        state_->read_size = o.read_size;
        return inner_->reserve_buffers(o) + 4 * o.read_size;
    }

    bool splittable() const noexcept override { return inner_->splittable(); }

private:
    std::unique_ptr<object_store> inner_;
    std::shared_ptr<store_state> state_;
};

} // namespace detail

inline std::unique_ptr<object_store> caching_store(std::unique_ptr<object_store> inner, cache_options options,
                                                   std::shared_ptr<cache_stats> stats)
{
    return std::make_unique<detail::caching_object_store>(std::move(inner), std::move(options), std::move(stats));
}

inline std::uint64_t memory_cache_bytes() { return detail::memory_cache::process().bytes(); }

inline void clear_memory_cache() { detail::memory_cache::process().clear(); }

inline std::uint64_t parse_size(const std::string& text)
{
    std::size_t used = 0;
    double value = 0;
    try {
        value = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    std::uint64_t unit = 1;
    std::string rest = text.substr(used);
    if (rest.size() == 2 && (rest[1] == 'B' || rest[1] == 'b'))
        rest.pop_back();
    if (rest.size() == 1) {
        switch (rest[0]) {
        case 'k': case 'K': unit = kib; break;
        case 'm': case 'M': unit = mib; break;
        case 'g': case 'G': unit = gib; break;
        case 't': case 'T': unit = 1024ull * gib; break;
        default: used = 0;
        }
    } else if (!rest.empty()) {
        used = 0;
    }
    if (used == 0 || !(value > 0) || !std::isfinite(value) || value * static_cast<double>(unit) > 1.8e19)
        throw std::invalid_argument("pipemode::cache: '" + text + "' is not a size; write bytes or a number with K, M, G or T, such as 20G");
    return static_cast<std::uint64_t>(value * static_cast<double>(unit));
}

} // namespace pipemode::cache
