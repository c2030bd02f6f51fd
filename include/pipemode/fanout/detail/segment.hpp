// pipemode: the shared-memory segment of a fan-out group, its frames, and waits across processes.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>

namespace pipemode::fanout::detail {

/// "PMFANOUT" read as a little-endian word: the first bytes of every segment.
inline constexpr std::uint64_t segment_magic = 0x54554F4E41464D50ull;
/// Bumped whenever the layout below changes, so processes of two builds refuse each other.
inline constexpr std::uint32_t segment_version = 1;

/// What the leader is doing, as followers see it.
enum class leader_state : std::uint32_t {
    running = 0,    ///< publishing, or waiting for room
    finished = 1,   ///< every frame, the end frame included, is in the ring
    abandoned = 2,  ///< it stopped before the end (its reader went away, or no group formed)
};

/// A follower's slot, as the leader sees it.
enum class slot_state : std::uint32_t {
    active = 0,  ///< reading; its cursor holds the leader back
    left = 1,    ///< its provider was destroyed; no longer waited for
    dead = 2,    ///< its process is gone (found by the leader); no longer waited for
};

/// The words at the start of a segment. Everything is written once by the leader before
/// `ready` is set, except the atomics. The segment is `MAP_SHARED`, so these atomics (all
/// lock-free) are shared by every process that maps it.
struct segment_header {
    std::uint64_t magic = segment_magic;
    std::uint32_t version = segment_version;
    std::uint32_t followers = 0;       ///< slots: members - 1
    std::uint64_t ring_bytes = 0;
    std::uint64_t ring_offset = 0;     ///< of the ring from the segment's start
    std::uint64_t key_digest = 0;      ///< of the plan key and the description: followers compare theirs
    std::int32_t leader_pid = 0;
    std::uint32_t leader_rank = 0;
    char key_text[512] = {};           ///< the leader's plan key, for the refusal's sentence

    /// 1 once the fields above are written; set with release, read with acquire by a joining
    /// follower, which reads the fields only after seeing it.
    std::atomic<std::uint32_t> ready{0};
    /// A `leader_state`; stored with release after the leader's last frame, read with acquire
    /// by a follower that found no frame to read.
    std::atomic<std::uint32_t> state{0};
    /// Slots handed out (fetch_add by joining followers; may exceed `followers` when too many
    /// processes join, which the extra ones refuse).
    std::atomic<std::uint32_t> claimed{0};
    /// Followers that refused to join because their plan key differs (for the leader's message).
    std::atomic<std::uint32_t> refused{0};

    /// Bytes published: the leader stores it with release after writing a frame's bytes; a
    /// follower loads it with acquire before reading them.
    alignas(64) std::atomic<std::uint64_t> write_pos{0};
    /// Futex word followers sleep on: bumped by the leader after every change of `write_pos`
    /// or `state`.
    std::atomic<std::uint32_t> data_seq{0};

    /// Futex word the leader sleeps on: bumped by followers after every change of their cursor,
    /// slot state or `claimed`.
    alignas(64) std::atomic<std::uint32_t> space_seq{0};
};

/// A follower's place in the ring.
struct slot {
    /// Bytes consumed: stored with release by the follower once it no longer uses a frame's
    /// bytes, loaded with acquire by the leader before it overwrites them.
    alignas(64) std::atomic<std::uint64_t> cursor{0};
    /// A `slot_state`: `left` is stored by the follower, `dead` by the leader.
    std::atomic<std::uint32_t> state{0};
    /// Set (release) after `pid` and `rank`, which the leader reads after seeing it (acquire).
    std::atomic<std::uint32_t> joined{0};
    std::int32_t pid = 0;
    std::uint32_t rank = 0;
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "fan-out shares atomics between processes, which only lock-free atomics allow");
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "futex words are 32-bit");

/// Frame types. Every frame is an 8-byte header (type, payload length) and the payload,
/// padded to 8 bytes, so that a header never straddles the ring's end.
enum class frame_type : std::uint32_t {
    pad = 1,           ///< the rest of the ring up to its end is unused: continue at offset 0
    source_begin = 2,  ///< a planned source's metadata, name and start offset
    data = 3,          ///< bytes of the current source
    source_end = 4,    ///< the current source reached its end (or the leader's reader left it)
    source_error = 5,  ///< the current source failed: an error code and the source's detail
    end = 6,           ///< the provider has no more sources
    error = 7,         ///< the leader's provider threw: the exception, to rethrow
};

struct frame_header {
    std::uint32_t type = 0;
    std::uint32_t length = 0;
};
static_assert(sizeof(frame_header) == 8);

inline constexpr std::uint64_t align8(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }

/// 64-bit FNV-1a, to name segments and compare plans.
inline std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) noexcept
{
    for (const char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

inline std::string hex16(std::uint64_t v)
{
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

/// Sleeps until `*word` differs from `seen`, a `futex_wake` on it, or `timeout`. Shared (not
/// `FUTEX_PRIVATE_FLAG`) because the word sits in memory other processes map; this is why
/// `std::atomic::wait`, whose libstdc++ implementation uses private futexes, cannot be used.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t seen, std::chrono::milliseconds timeout) noexcept
{
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    ts.tv_nsec = static_cast<long>((timeout.count() % 1000) * 1000000);
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

/// Wakes every process sleeping on `word` in `futex_wait`.
inline void futex_wake(std::atomic<std::uint32_t>& word) noexcept
{
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

/// Bumps a futex word and wakes its sleepers. Paired with the load of `seen` before a
/// `futex_wait`: a change made before the bump is seen by a waiter whose `seen` predates it,
/// because the kernel compares the word before it sleeps.
inline void bump(std::atomic<std::uint32_t>& word) noexcept
{
    word.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(word);
}

/// Whether the process `pid` is gone: no such process, or a zombie nobody has reaped yet.
inline bool process_gone(std::int32_t pid) noexcept
{
    if (pid <= 0)
        return true;
    if (::kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    // "pid (comm) S ...": the state follows the last ')', since comm may hold one.
    const char* close_paren = std::strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

/// Runs `f()` (a call that blocks: a futex wait) on `blocking` and completes with its result
/// on the awaiting coroutine's executor, so the network thread never blocks.
template <class F>
asio::awaitable<void> async_run_blocking(asio::any_io_executor blocking, F f)
{
    return asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [](auto handler, asio::any_io_executor pool, F fn) {
            auto ex = asio::get_associated_executor(handler);
            asio::post(pool, [fn = std::move(fn), ex = std::move(ex), handler = std::move(handler)]() mutable {
                fn();
                asio::post(ex, std::move(handler));
            });
        },
        asio::use_awaitable, std::move(blocking), std::move(f));
}

/// A mapped segment: unmapped and closed on destruction.
class mapping {
public:
    mapping() = default;
    mapping(void* base, std::size_t size) noexcept : base_(base), size_(size) {}
    mapping(mapping&& o) noexcept : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    mapping& operator=(mapping&& o) noexcept
    {
        if (this != &o) {
            reset();
            base_ = std::exchange(o.base_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~mapping() { reset(); }

    void reset() noexcept
    {
        if (base_)
            ::munmap(base_, size_);
        base_ = nullptr;
        size_ = 0;
    }

    explicit operator bool() const noexcept { return base_ != nullptr; }
    std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }
    std::size_t size() const noexcept { return size_; }
    segment_header& header() const noexcept { return *static_cast<segment_header*>(base_); }
    slot* slots() const noexcept { return reinterpret_cast<slot*>(data() + slots_offset()); }
    std::byte* ring() const noexcept { return data() + header().ring_offset; }

    static constexpr std::size_t slots_offset() noexcept { return (sizeof(segment_header) + 63) & ~std::size_t{63}; }

private:
    void* base_ = nullptr;
    std::size_t size_ = 0;
};

/// A file descriptor closed on destruction.
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept
    {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~unique_fd() { reset(); }
    void reset() noexcept
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }
    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

/// Appends fixed-width integers and length-prefixed strings: the payloads of frames.
class payload_writer {
public:
    void u64(std::uint64_t v) { bytes_.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void str(std::string_view s)
    {
        u64(s.size());
        bytes_.append(s);
    }
    const std::string& bytes() const noexcept { return bytes_; }

private:
    std::string bytes_;
};

/// Reads what `payload_writer` wrote; a short payload reads as zeros and empty strings
/// (never past its end).
class payload_reader {
public:
    explicit payload_reader(std::string_view bytes) noexcept : bytes_(bytes) {}
    std::uint64_t u64() noexcept
    {
        std::uint64_t v = 0;
        if (bytes_.size() >= sizeof v) {
            std::memcpy(&v, bytes_.data(), sizeof v);
            bytes_.remove_prefix(sizeof v);
        }
        return v;
    }
    std::string str()
    {
        const std::uint64_t n = std::min<std::uint64_t>(u64(), bytes_.size());
        std::string s(bytes_.substr(0, static_cast<std::size_t>(n)));
        bytes_.remove_prefix(static_cast<std::size_t>(n));
        return s;
    }

private:
    std::string_view bytes_;
};

/// How an `error_code`'s category travels between processes: categories are objects of one
/// process, so only the ones every process has are named; any other arrives as a generic I/O
/// error whose detail carries the original message.
enum class category_kind : std::uint64_t { other = 0, system = 1, generic = 2, pipemode = 3, asio_misc = 4 };

inline category_kind kind_of(const error_code& ec) noexcept
{
    const auto& c = ec.category();
    if (c == boost::system::system_category())
        return category_kind::system;
    if (c == boost::system::generic_category())
        return category_kind::generic;
    if (c == pipemode::error_category())
        return category_kind::pipemode;
    if (c == asio::error::get_misc_category())
        return category_kind::asio_misc;
    return category_kind::other;
}

inline error_code code_of(category_kind kind, int value) noexcept
{
    switch (kind) {
    case category_kind::system: return {value, boost::system::system_category()};
    case category_kind::generic: return {value, boost::system::generic_category()};
    case category_kind::pipemode: return {value, pipemode::error_category()};
    case category_kind::asio_misc: return {value, asio::error::get_misc_category()};
    case category_kind::other: break;
    }
    return make_error_code(boost::system::errc::io_error);
}

} // namespace pipemode::fanout::detail
