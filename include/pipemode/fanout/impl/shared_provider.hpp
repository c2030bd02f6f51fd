// pipemode: definitions of fanout/shared_provider.hpp.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/fanout/detail/segment.hpp>
#include <pipemode/sources/file_source.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <span>
#include <string_view>

namespace pipemode::fanout {

inline std::optional<local_group> local_group_from_environment()
{
    const auto number = [](const char* name) -> std::optional<std::size_t> {
        const char* v = std::getenv(name);
        if (!v || !*v)
            return std::nullopt;
        char* end = nullptr;
        const unsigned long long n = std::strtoull(v, &end, 10);
        if (*end != '\0')
            return std::nullopt;
        return static_cast<std::size_t>(n);
    };
    const std::pair<const char*, const char*> launchers[] = {
        {"OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
        {"LOCAL_WORLD_SIZE", "LOCAL_RANK"},
        {"MPI_LOCALNRANKS", "MPI_LOCALRANKID"},
    };
    for (const auto& [size, rank] : launchers)
        if (const auto members = number(size); members && *members > 0)
            return local_group{*members, number(rank).value_or(0)};
    return std::nullopt;
}

namespace detail {

using namespace std::chrono_literals;

/// How long one blocking wait lasts at most before liveness is checked again.
inline constexpr std::chrono::milliseconds liveness_period = 100ms;

/// A frame a follower reads: its type and payload, a view into the ring that stays valid
/// until the follower's next frame.
struct frame {
    frame_type type{};
    std::span<const std::byte> payload;
    std::string_view text() const noexcept
    {
        return {reinterpret_cast<const char*>(payload.data()), payload.size()};
    }
};

/// What the provider and its sources share: the segment, the role and the position in the
/// frame sequence. Used from the reader's network thread only; the blocking waits touch only
/// the segment's atomics, which the mapping (owned here, kept alive by the wait's copy of the
/// pointer) holds.
struct group_state {
    enum class role { undecided, alone, leader, follower };

    group_state(fanout_options o, std::string description) : options(std::move(o)), description(std::move(description))
    {
        // NUL separators: no two (group, description, epoch) triples give the same text.
        std::string named = options.group;
        named += '\0';
        named += this->description;
        named += '\0';
        named += std::to_string(options.first_epoch);
        const std::uint64_t name_hash = fnv1a(named);
        shm_name = "/pipemode-fanout-" + hex16(name_hash);
        lock_path = options.lock_dir / ("pipemode-fanout-" + hex16(name_hash) + ".lock");
        key_digest = fnv1a(options.plan_key, fnv1a(this->description));
    }

    group_state(const group_state&) = delete;
    group_state& operator=(const group_state&) = delete;

    ~group_state()
    {
        if (r == role::leader && map) {
            if (!finished) {
                map.header().state.store(static_cast<std::uint32_t>(leader_state::abandoned), std::memory_order_release);
                bump(map.header().data_seq);
            }
            if (!name_unlinked)
                ::shm_unlink(shm_name.c_str());
        }
        if (r == role::follower && map && slot_index < map.header().followers) {
            map.slots()[slot_index].state.store(static_cast<std::uint32_t>(slot_state::left), std::memory_order_release);
            bump(map.header().space_seq);
        }
    }

    /// "group 'G' (data set D)", for messages.
    std::string who() const { return "fan-out group '" + options.group + "' (" + description + ")"; }

    const fanout_options options;
    const std::string description;
    std::string shm_name;
    std::filesystem::path lock_path;
    std::uint64_t key_digest = 0;

    role r = role::undecided;
    unique_fd lock;
    mapping map;
    asio::any_io_executor blocking;  ///< where waits run (the reader's blocking pool)
    bool finished = false;           ///< the end (or an error frame) was published / read

    // The leader's side.
    bool name_unlinked = false;  ///< the segment's name and the lock file are gone: the group is complete
    bool source_open = false;    ///< a source_begin was published without its end

    // The follower's side.
    std::size_t slot_index = 0;
    std::uint64_t cursor = 0;         ///< the next frame's position
    std::uint64_t release_to = 0;     ///< where the cursor goes once the current frame is let go
    bool holding = false;             ///< a frame's bytes are still in use
    bool in_source = false;           ///< between a source_begin and its end
    std::uint64_t source_number = 0;  ///< sources begun so far; a source reads only while it is current
};

using state_ptr = std::shared_ptr<group_state>;

/// Waits on the blocking executor until `word` moves from `seen` or the liveness period ends.
inline asio::awaitable<void> async_wait_word(state_ptr s, std::atomic<std::uint32_t>* word, std::uint32_t seen)
{
    // The lambda keeps the state (and so the mapping that holds `word`) alive until it returns.
    // A named variable, not a lambda built inside the co_await: GCC 12 destroys such a
    // temporary twice (docs/reliability.md, "Compiler traps").
    auto wait = [s, word, seen] { futex_wait(*word, seen, liveness_period); };
    co_await async_run_blocking(s->blocking, std::move(wait));
}

inline asio::awaitable<void> async_sleep(std::chrono::milliseconds d)
{
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

// ---------------------------------------------------------------- the leader's side

/// Creates the segment; called holding the lock, so any segment of this name is a dead
/// leader's and is replaced.
inline void create_segment(group_state& s)
{
    ::shm_unlink(s.shm_name.c_str());
    unique_fd fd(::shm_open(s.shm_name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    if (!fd)
        throw fanout_error("pipemode: cannot create the shared memory of the " + s.who() + " (" + s.shm_name
                           + "): " + std::strerror(errno));
    const std::size_t followers = s.options.members - 1;
    const std::size_t ring = (std::max<std::size_t>(s.options.ring_bytes, 64 * kib) + 4095) & ~std::size_t{4095};
    const std::size_t ring_offset = (mapping::slots_offset() + followers * sizeof(slot) + 4095) & ~std::size_t{4095};
    const std::size_t size = ring_offset + ring;
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
        throw fanout_error("pipemode: cannot size the shared memory of the " + s.who() + " to "
                           + std::to_string(size) + " bytes: " + std::strerror(errno));
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED)
        throw fanout_error("pipemode: cannot map the shared memory of the " + s.who() + ": " + std::strerror(errno));
    s.map = mapping(base, size);
    auto* h = new (base) segment_header{};
    h->followers = static_cast<std::uint32_t>(followers);
    h->ring_bytes = ring;
    h->ring_offset = ring_offset;
    h->key_digest = s.key_digest;
    h->leader_pid = static_cast<std::int32_t>(::getpid());
    h->leader_rank = static_cast<std::uint32_t>(s.options.rank_in_group);
    const std::string key = s.options.plan_key.substr(0, sizeof h->key_text - 1);
    std::memcpy(h->key_text, key.data(), key.size());
    for (std::size_t i = 0; i < followers; ++i)
        new (s.map.slots() + i) slot{};
    // Pairs with the acquire load of a joining follower, which reads the fields only after it.
    h->ready.store(1, std::memory_order_release);
}

/// How many followers have joined.
inline std::size_t joined_followers(const group_state& s) noexcept
{
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.map.header().followers; ++i)
        n += s.map.slots()[i].joined.load(std::memory_order_acquire);  // pairs with the follower's release store
    return n;
}

/// Waits until every member has joined; then the segment's name and the lock file go, so
/// nothing is left in /dev/shm whatever happens later.
inline asio::awaitable<void> async_wait_for_members(state_ptr s)
{
    const auto deadline = std::chrono::steady_clock::now() + s->options.join_timeout;
    auto& h = s->map.header();
    for (;;) {
        const std::uint32_t seen = h.space_seq.load(std::memory_order_seq_cst);
        if (joined_followers(*s) == h.followers)
            break;
        if (std::chrono::steady_clock::now() >= deadline) {
            std::string msg = "pipemode: the " + s->who() + " has " + std::to_string(joined_followers(*s) + 1)
                + " of its " + std::to_string(s->options.members) + " members after "
                + std::to_string(s->options.join_timeout.count()) + " ms (the leader is pid "
                + std::to_string(::getpid()) + ", rank " + std::to_string(s->options.rank_in_group)
                + "); start every process of the group, or set the number of members (fanout_options::members, "
                  "--fanout-members) to the processes of this host that read this data set";
            if (const auto refused = h.refused.load(std::memory_order_relaxed); refused != 0)
                msg += "; " + std::to_string(refused)
                    + " process(es) refused to join because their plan (seed, sharding or epochs) differs";
            throw fanout_error(msg);
        }
        co_await async_wait_word(s, &h.space_seq, seen);
    }
    ::shm_unlink(s->shm_name.c_str());
    std::error_code ignored;
    std::filesystem::remove(s->lock_path, ignored);
    s->name_unlinked = true;
}

/// Waits until `need` bytes past `write_pos` are free in every live follower's view.
inline asio::awaitable<void> async_wait_for_room(state_ptr s, std::uint64_t need)
{
    auto& h = s->map.header();
    for (;;) {
        const std::uint32_t seen = h.space_seq.load(std::memory_order_seq_cst);
        const std::uint64_t pos = h.write_pos.load(std::memory_order_relaxed);  // written by this thread only
        std::uint64_t slowest = pos;
        for (std::size_t i = 0; i < h.followers; ++i) {
            slot& f = s->map.slots()[i];
            if (f.state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(slot_state::active))
                // Pairs with the follower's release store: its reads of the bytes before the
                // cursor are done before the leader overwrites them.
                slowest = std::min(slowest, f.cursor.load(std::memory_order_acquire));
        }
        if (pos + need - slowest <= h.ring_bytes)
            co_return;
        // About to wait: a follower whose process is gone would hold the leader forever.
        bool dropped = false;
        for (std::size_t i = 0; i < h.followers; ++i) {
            slot& f = s->map.slots()[i];
            if (f.state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(slot_state::active)
                && process_gone(f.pid)) {
                f.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
                dropped = true;
            }
        }
        if (!dropped)
            co_await async_wait_word(s, &h.space_seq, seen);
    }
}

/// Publishes one frame whose payload is `a`, waiting for room first.
inline asio::awaitable<void> async_publish(state_ptr s, frame_type type, std::span<const std::byte> a)
{
    auto& h = s->map.header();
    const std::uint64_t length = a.size();
    const std::uint64_t size = align8(sizeof(frame_header) + length);
    const std::uint64_t pos = h.write_pos.load(std::memory_order_relaxed);
    const std::uint64_t offset = pos % h.ring_bytes;
    // A frame is never split at the ring's end: the rest of the lap is padding.
    const std::uint64_t pad = offset + size > h.ring_bytes ? h.ring_bytes - offset : 0;
    co_await async_wait_for_room(s, pad + size);
    std::byte* ring = s->map.ring();
    if (pad != 0) {
        const frame_header ph{static_cast<std::uint32_t>(frame_type::pad), static_cast<std::uint32_t>(pad - sizeof(frame_header))};
        std::memcpy(ring + offset, &ph, sizeof ph);
    }
    std::byte* out = ring + (pos + pad) % h.ring_bytes;
    const frame_header fh{static_cast<std::uint32_t>(type), static_cast<std::uint32_t>(length)};
    std::memcpy(out, &fh, sizeof fh);
    if (!a.empty())
        std::memcpy(out + sizeof fh, a.data(), a.size());
    // Pairs with the follower's acquire load: the frame's bytes are visible before its end.
    h.write_pos.store(pos + pad + size, std::memory_order_release);
    bump(h.data_seq);
}

inline std::span<const std::byte> bytes_of(const std::string& s) noexcept
{
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

/// The largest data frame's payload: a quarter of the ring, so that a frame always fits
/// beside the padding of a lap's end.
inline std::size_t max_data_payload(const group_state& s) noexcept
{
    return static_cast<std::size_t>(s.map.header().ring_bytes / 4 - sizeof(frame_header));
}

inline asio::awaitable<void> async_publish_data(state_ptr s, std::span<const std::byte> chunk)
{
    const std::size_t piece = max_data_payload(*s);
    while (!chunk.empty()) {
        const std::size_t n = std::min(piece, chunk.size());
        co_await async_publish(s, frame_type::data, chunk.first(n));
        chunk = chunk.subspan(n);
    }
}

/// The leader's view of a source: the inner source's chunks, each published before it is
/// handed to the leader's own reader.
class tee_source {
public:
    tee_source(state_ptr s, any_byte_source inner, std::uint64_t number)
        : s_(std::move(s)), inner_(std::make_shared<any_byte_source>(std::move(inner))), number_(number)
    {
    }

    asio::awaitable<chunk_result> async_next() { return next(s_, inner_, number_); }
    std::string_view name() const noexcept { return inner_->name(); }
    std::uint64_t start_offset() const noexcept { return inner_->start_offset(); }
    std::string error_detail() const { return inner_->error_detail(); }

private:
    static asio::awaitable<chunk_result> next(state_ptr s, std::shared_ptr<any_byte_source> inner, std::uint64_t number)
    {
        auto result = co_await inner->async_next();
        const auto& [ec, chunk] = result;
        // Only the current source publishes; one the reader has left behind reads on alone.
        if (number != s->source_number || !s->source_open)
            co_return result;
        if (ec == asio::error::eof) {
            s->source_open = false;
            const std::span<const std::byte> none;
            co_await async_publish(s, frame_type::source_end, none);
        } else if (ec) {
            s->source_open = false;
            payload_writer w;
            w.u64(static_cast<std::uint64_t>(kind_of(ec)));
            w.u64(static_cast<std::uint64_t>(static_cast<std::int64_t>(ec.value())));
            std::string detail = inner->error_detail();
            if (kind_of(ec) == category_kind::other)
                detail = ec.message() + (detail.empty() ? "" : ": " + detail);
            w.str(detail.substr(0, max_data_payload(*s) - 64));
            const auto payload = bytes_of(w.bytes());
            co_await async_publish(s, frame_type::source_error, payload);
        } else {
            co_await async_publish_data(s, chunk);
        }
        co_return result;
    }

    state_ptr s_;
    std::shared_ptr<any_byte_source> inner_;
    std::uint64_t number_;
};

/// The payload of a `source_begin` frame.
inline std::string describe_source(const planned_source& p)
{
    payload_writer w;
    const source_plan& plan = p.plan;
    w.u64(plan.epoch);
    w.u64(plan.item);
    w.u64(plan.begin);
    w.u64(plan.end ? 1 : 0);
    w.u64(plan.end.value_or(0));
    w.u64(plan.skip);
    w.u64(plan.object);
    w.u64(plan.block_start ? 1 : 0);
    w.u64(plan.block_drop);
    w.u64(plan.block_end_after ? 1 : 0);
    w.u64(p.source.start_offset());
    w.str(p.source.name());
    return w.bytes();
}

/// The payload of an `error` frame: the exception the leader's provider threw.
inline std::string describe_exception(std::exception_ptr e, std::size_t limit)
{
    payload_writer w;
    try {
        std::rethrow_exception(e);
    } catch (const data_error& d) {
        w.u64(1);
        w.u64(static_cast<std::uint64_t>(kind_of(d.code())));
        w.u64(static_cast<std::uint64_t>(static_cast<std::int64_t>(d.code().value())));
        w.str(d.where().source.substr(0, limit / 2));
        w.u64(d.where().byte_offset);
        w.u64(d.where().record_index);
        w.str(std::string(d.what()).substr(0, limit / 2));
    } catch (const std::exception& x) {
        w.u64(0);
        w.u64(0);
        w.u64(0);
        w.str("");
        w.u64(0);
        w.u64(0);
        w.str(std::string(x.what()).substr(0, limit / 2));
    } catch (...) {
        w.u64(0);
        w.u64(0);
        w.u64(0);
        w.str("");
        w.u64(0);
        w.u64(0);
        w.str("pipemode: the fan-out leader's provider failed with an exception that is not a std::exception");
    }
    return w.bytes();
}

/// Rethrows in a follower what `describe_exception` wrote: a `data_error` with the leader's
/// message when its code is one every process knows, otherwise a `fanout_error` with it.
[[noreturn]] inline void rethrow_relayed(std::string_view payload)
{
    payload_reader r(payload);
    const bool is_data_error = r.u64() != 0;
    const auto kind = static_cast<category_kind>(r.u64());
    const int value = static_cast<int>(static_cast<std::int64_t>(r.u64()));
    data_location where;
    where.source = r.str();
    where.byte_offset = r.u64();
    where.record_index = r.u64();
    const std::string what = r.str();
    if (is_data_error && kind != category_kind::other) {
        const error_code ec = code_of(kind, value);
        // data_error's message is "WHERE: MESSAGE" or "WHERE: MESSAGE (DETAIL)": recover the
        // detail so that the rebuilt error's message is the leader's, character for character.
        const std::string prefix = where.to_string() + ": " + ec.message();
        if (what == prefix)
            throw data_error(ec, std::move(where));
        if (what.starts_with(prefix + " (") && what.ends_with(")")) {
            const std::string detail = what.substr(prefix.size() + 2, what.size() - prefix.size() - 3);
            throw data_error(ec, std::move(where), detail);
        }
    }
    throw fanout_error(what);
}

// ---------------------------------------------------------------- the follower's side

/// Tries once to join the group as a follower. Returns false when there is no segment to
/// join yet (or only a dead leader's); throws when joining is refused.
inline bool try_join(group_state& s)
{
    unique_fd fd(::shm_open(s.shm_name.c_str(), O_RDWR | O_CLOEXEC, 0));
    if (!fd)
        return false;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || static_cast<std::size_t>(st.st_size) < mapping::slots_offset())
        return false;  // the leader is still sizing it
    const auto size = static_cast<std::size_t>(st.st_size);
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED)
        return false;
    mapping map(base, size);
    auto& h = map.header();
    // Pairs with the leader's release store after it wrote the fields read below.
    if (h.ready.load(std::memory_order_acquire) == 0 || h.magic != segment_magic)
        return false;
    if (h.version != segment_version)
        throw fanout_error("pipemode: the " + s.who() + " is led by a process of another pipemode version (segment layout "
                           + std::to_string(h.version) + ", this process has " + std::to_string(segment_version)
                           + "); run one build of the program in every member");
    if (size < h.ring_offset + h.ring_bytes)
        return false;
    if (process_gone(h.leader_pid))
        return false;  // a dead leader's segment: the next leader replaces it
    if (h.key_digest != s.key_digest) {
        h.refused.fetch_add(1, std::memory_order_relaxed);
        bump(h.space_seq);
        const std::string theirs(h.key_text, ::strnlen(h.key_text, sizeof h.key_text));
        throw fanout_error("pipemode: this process (rank " + std::to_string(s.options.rank_in_group)
                           + ") plans another order of sources than the leader (pid " + std::to_string(h.leader_pid)
                           + ") of the " + s.who() + ": its plan is '" + s.options.plan_key + "', the leader's '"
                           + theirs
                           + "' (or the data sets differ); fan-out is for replicated data read in one order by every "
                             "member: give every member the same seed and no sharding, or read sharded data without fan-out");
    }
    if (h.followers + 1 != s.options.members)
        throw fanout_error("pipemode: the " + s.who() + " has " + std::to_string(h.followers + 1)
                           + " members for its leader (pid " + std::to_string(h.leader_pid) + ") but "
                           + std::to_string(s.options.members) + " for this process; give every member the same number");
    const std::uint32_t index = h.claimed.fetch_add(1, std::memory_order_relaxed);
    if (index >= h.followers)
        throw fanout_error("pipemode: the " + s.who() + " already has its " + std::to_string(s.options.members)
                           + " members (leader pid " + std::to_string(h.leader_pid)
                           + "); this process is one too many: check the number of members");
    slot& mine = map.slots()[index];
    mine.pid = static_cast<std::int32_t>(::getpid());
    mine.rank = static_cast<std::uint32_t>(s.options.rank_in_group);
    mine.cursor.store(0, std::memory_order_relaxed);
    mine.state.store(static_cast<std::uint32_t>(slot_state::active), std::memory_order_relaxed);
    // Pairs with the leader's acquire load in joined_followers().
    mine.joined.store(1, std::memory_order_release);
    bump(h.space_seq);
    s.map = std::move(map);
    s.slot_index = index;
    return true;
}

/// Lets go of the frame last read: the leader may overwrite it.
inline void release_frame(group_state& s) noexcept
{
    if (!s.holding)
        return;
    s.holding = false;
    s.cursor = s.release_to;
    // Pairs with the leader's acquire load in async_wait_for_room().
    s.map.slots()[s.slot_index].cursor.store(s.cursor, std::memory_order_release);
    bump(s.map.header().space_seq);
}

/// The next frame, waiting for the leader as long as it lives.
inline asio::awaitable<frame> async_next_frame(state_ptr s)
{
    release_frame(*s);
    auto& h = s->map.header();
    for (;;) {
        const std::uint32_t seen = h.data_seq.load(std::memory_order_seq_cst);
        // Pairs with the leader's release store after it wrote the frame.
        if (h.write_pos.load(std::memory_order_acquire) > s->cursor) {
            const std::uint64_t offset = s->cursor % h.ring_bytes;
            frame_header fh;
            std::memcpy(&fh, s->map.ring() + offset, sizeof fh);
            const std::uint64_t size = align8(sizeof fh + fh.length);
            if (static_cast<frame_type>(fh.type) == frame_type::pad) {
                s->cursor += size;
                continue;
            }
            if (offset + size > h.ring_bytes || fh.type < 2 || fh.type > 7)
                throw fanout_error("pipemode: the " + s->who() + " has a damaged frame at byte "
                                   + std::to_string(s->cursor) + " of its ring; the segment was written by something else");
            s->holding = true;
            s->release_to = s->cursor + size;
            co_return frame{static_cast<frame_type>(fh.type),
                            std::span<const std::byte>(s->map.ring() + offset + sizeof fh, fh.length)};
        }
        const auto state = static_cast<leader_state>(h.state.load(std::memory_order_acquire));
        const bool gone = state == leader_state::running && process_gone(h.leader_pid);
        if (state != leader_state::running || gone) {
            // The leader's last frames were stored before its state (or before it died).
            if (h.write_pos.load(std::memory_order_acquire) > s->cursor)
                continue;
            const std::string who = "the leader (pid " + std::to_string(h.leader_pid) + ", rank "
                + std::to_string(h.leader_rank) + ") of the " + s->who();
            if (gone)
                throw fanout_error("pipemode: " + who + " died before the end of the data, after "
                                   + std::to_string(s->cursor) + " bytes of frames; no records past them were delivered");
            throw fanout_error("pipemode: " + who + " stopped reading before the end of the data (its reader was "
                               "closed or failed), after " + std::to_string(s->cursor) + " bytes of frames");
        }
        co_await async_wait_word(s, &h.data_seq, seen);
    }
}

/// A follower's view of a source: the chunks of its data frames, views into the ring.
class ring_source {
public:
    ring_source(state_ptr s, std::uint64_t number, std::string name, std::uint64_t start_offset)
        : s_(std::move(s)), number_(number), name_(std::move(name)), start_offset_(start_offset), detail_(std::make_shared<std::string>())
    {
    }

    asio::awaitable<chunk_result> async_next() { return next(s_, number_, detail_); }
    std::string_view name() const noexcept { return name_; }
    std::uint64_t start_offset() const noexcept { return start_offset_; }
    std::string error_detail() const { return *detail_; }

private:
    static asio::awaitable<chunk_result> next(state_ptr s, std::uint64_t number, std::shared_ptr<std::string> detail)
    {
        if (number != s->source_number || !s->in_source)
            co_return chunk_result{asio::error::eof, {}};
        const frame f = co_await async_next_frame(s);
        switch (f.type) {
        case frame_type::data: co_return chunk_result{error_code{}, f.payload};
        case frame_type::source_end: s->in_source = false; co_return chunk_result{asio::error::eof, {}};
        case frame_type::source_error: {
            s->in_source = false;
            payload_reader r(f.text());
            const auto kind = static_cast<category_kind>(r.u64());
            const int value = static_cast<int>(static_cast<std::int64_t>(r.u64()));
            *detail = r.str();
            co_return chunk_result{code_of(kind, value), {}};
        }
        default:
            throw fanout_error("pipemode: the " + s->who() + " sent a frame of type "
                               + std::to_string(static_cast<unsigned>(f.type)) + " inside a source");
        }
    }

    state_ptr s_;
    std::uint64_t number_;
    std::string name_;
    std::uint64_t start_offset_;
    std::shared_ptr<std::string> detail_;
};

// ---------------------------------------------------------------- the provider

class shared_provider_impl final : public source_provider {
public:
    shared_provider_impl(std::unique_ptr<source_provider> inner, fanout_options o)
        : inner_(std::move(inner))
    {
        if (!inner_)
            throw std::invalid_argument("pipemode::fanout::shared_provider: no inner provider to share");
        if (o.group.empty())
            throw std::invalid_argument(
                "pipemode::fanout::shared_provider: the group has no name; give every member the same fanout_options::group");
        if (o.members == 0)
            throw std::invalid_argument("pipemode::fanout::shared_provider: 0 members; give the number of processes of this "
                                        "host that read the data set (1 to read directly)");
        if (o.ring_bytes < 64 * kib)
            throw std::invalid_argument("pipemode::fanout::shared_provider: a ring of " + std::to_string(o.ring_bytes)
                                        + " bytes is too small; give at least 64 KiB (the default is 64 MiB)");
        if (o.rank_in_group >= o.members)
            throw std::invalid_argument("pipemode::fanout::shared_provider: rank " + std::to_string(o.rank_in_group)
                                        + " in a group of " + std::to_string(o.members)
                                        + " members; ranks count from 0 to members - 1");
        s_ = std::make_shared<group_state>(std::move(o), inner_->describe());
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        auto planned = co_await async_next_planned(std::move(ctx));
        if (!planned)
            co_return std::nullopt;
        co_return std::move(planned->source);
    }

    asio::awaitable<std::optional<planned_source>> async_next_planned(source_context ctx) override
    {
        if (s_->r == group_state::role::undecided)
            co_await start(ctx);
        // Awaited into a named variable, never `co_return co_await`, which GCC 12 miscompiles
        // in some coroutines (docs/reliability.md, "Compiler traps").
        std::optional<planned_source> next;
        if (s_->r == group_state::role::leader)
            next = co_await next_as_leader(ctx);
        else if (s_->r == group_state::role::follower)
            next = co_await next_as_follower();
        else
            next = co_await inner_->async_next_planned(ctx);
        co_return next;
    }

    std::string describe() const override { return s_->description; }

    std::size_t reserve_buffers(const reader_options& options) override { return inner_->reserve_buffers(options); }

private:
    /// Decides the role: the lock's holder leads; the others join its segment.
    asio::awaitable<void> start(source_context ctx)
    {
        group_state& s = *s_;
        s.blocking = ctx.blocking_executor ? ctx.blocking_executor : asio::any_io_executor(default_blocking_pool().get_executor());
        if (s.options.members == 1) {
            s.r = group_state::role::alone;
            co_return;
        }
        s.lock = unique_fd(::open(s.lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
        if (!s.lock)
            throw fanout_error("pipemode: cannot open the lock file " + s.lock_path.string() + " of the " + s.who()
                               + ": " + std::strerror(errno) + "; fanout_options::lock_dir must be a writable local directory");
        const auto deadline = std::chrono::steady_clock::now() + s.options.join_timeout;
        auto pause = 1ms;
        for (;;) {
            if (::flock(s.lock.get(), LOCK_EX | LOCK_NB) == 0) {
                s.r = group_state::role::leader;
                create_segment(s);
                co_await async_wait_for_members(s_);
                co_return;
            }
            if (errno != EWOULDBLOCK && errno != EINTR)
                throw fanout_error("pipemode: cannot lock " + s.lock_path.string() + " for the " + s.who() + ": "
                                   + std::strerror(errno));
            if (try_join(s)) {
                s.r = group_state::role::follower;
                s.lock.reset();
                co_return;
            }
            if (std::chrono::steady_clock::now() >= deadline)
                throw fanout_error("pipemode: no leader of the " + s.who() + " appeared within "
                                   + std::to_string(s.options.join_timeout.count())
                                   + " ms, though another process holds its lock " + s.lock_path.string()
                                   + "; check that every member reads the same data set with the same options");
            co_await async_sleep(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(50));
        }
    }

    asio::awaitable<std::optional<planned_source>> next_as_leader(source_context ctx)
    {
        if (s_->finished)
            co_return std::nullopt;
        if (s_->source_open) {
            // The reader left the source before its end (a byte range's last record was read):
            // the followers' readers, reading the same bytes, stop at the same record.
            s_->source_open = false;
            const std::span<const std::byte> none;
            co_await async_publish(s_, frame_type::source_end, none);
        }
        std::optional<planned_source> planned;
        std::exception_ptr failure;
        try {
            planned = co_await inner_->async_next_planned(ctx);
        } catch (...) {
            failure = std::current_exception();
        }
        if (failure) {
            s_->finished = true;
            const std::string text = describe_exception(failure, max_data_payload(*s_));
            const auto payload = bytes_of(text);
            co_await async_publish(s_, frame_type::error, payload);
            s_->map.header().state.store(static_cast<std::uint32_t>(leader_state::finished), std::memory_order_release);
            bump(s_->map.header().data_seq);
            std::rethrow_exception(failure);
        }
        if (!planned) {
            s_->finished = true;
            const std::span<const std::byte> none;
            co_await async_publish(s_, frame_type::end, none);
            // Pairs with the follower's acquire load when it finds no frame.
            s_->map.header().state.store(static_cast<std::uint32_t>(leader_state::finished), std::memory_order_release);
            bump(s_->map.header().data_seq);
            co_return std::nullopt;
        }
        const std::string text = describe_source(*planned);
        const auto payload = bytes_of(text);
        co_await async_publish(s_, frame_type::source_begin, payload);
        s_->source_open = true;
        const std::uint64_t number = ++s_->source_number;
        planned->source = any_byte_source(tee_source(s_, std::move(planned->source), number));
        co_return planned;
    }

    asio::awaitable<std::optional<planned_source>> next_as_follower()
    {
        if (s_->finished)
            co_return std::nullopt;
        // Frames of a source the reader left before its end are passed over.
        while (s_->in_source) {
            const frame f = co_await async_next_frame(s_);
            if (f.type == frame_type::source_end || f.type == frame_type::source_error)
                s_->in_source = false;
        }
        const frame f = co_await async_next_frame(s_);
        switch (f.type) {
        case frame_type::source_begin: {
            payload_reader r(f.text());
            planned_source out{any_byte_source(memory_placeholder()), {}};
            source_plan& p = out.plan;
            p.epoch = r.u64();
            p.item = r.u64();
            p.begin = r.u64();
            const bool has_end = r.u64() != 0;
            const std::uint64_t end = r.u64();
            if (has_end)
                p.end = end;
            p.skip = r.u64();
            p.object = r.u64();
            p.block_start = r.u64() != 0;
            p.block_drop = r.u64();
            p.block_end_after = r.u64() != 0;
            const std::uint64_t start_offset = r.u64();
            std::string name = r.str();
            s_->in_source = true;
            const std::uint64_t number = ++s_->source_number;
            out.source = any_byte_source(ring_source(s_, number, std::move(name), start_offset));
            co_return out;
        }
        case frame_type::end:
            s_->finished = true;
            release_frame(*s_);
            co_return std::nullopt;
        case frame_type::error: {
            s_->finished = true;
            const std::string payload(f.text());
            release_frame(*s_);
            rethrow_relayed(payload);
        }
        default:
            throw fanout_error("pipemode: the " + s_->who() + " sent a frame of type "
                               + std::to_string(static_cast<unsigned>(f.type)) + " between sources");
        }
    }

    /// A source that is replaced before use (planned_source has no default constructor).
    struct memory_placeholder {
        asio::awaitable<chunk_result> async_next() { co_return chunk_result{asio::error::eof, {}}; }
        std::string_view name() const noexcept { return {}; }
        std::uint64_t start_offset() const noexcept { return 0; }
    };

    std::unique_ptr<source_provider> inner_;
    state_ptr s_;
};

} // namespace detail

inline std::unique_ptr<source_provider> shared_provider(std::unique_ptr<source_provider> inner, fanout_options options)
{
    return std::make_unique<detail::shared_provider_impl>(std::move(inner), std::move(options));
}

} // namespace pipemode::fanout
