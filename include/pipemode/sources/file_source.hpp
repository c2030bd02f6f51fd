// pipemode: a byte source over a local file, or a byte range of one.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace pipemode {

/// Options of a `file_source`. Use designated initializers:
/// `file_source_options{.offset = 4096, .length = 1 << 20, .blocking_executor = pool.get_executor()}`.
struct file_source_options {
    /// Offset of the first byte to read.
    std::uint64_t offset = 0;

    /// How many bytes to read from `offset`; empty reads to the end of the file as it is when
    /// the source opens it. A range that reaches past the end of the file is an error
    /// (`errc::range_past_end`), never a silently short range.
    std::optional<std::uint64_t> length = std::nullopt;

    /// Bytes per read, and the size of each of the source's two buffers. Large sequential
    /// reads keep the syscall count low; 4 MiB costs 8 MiB per open source (less for smaller
    /// ranges: buffers never exceed the range).
    std::size_t read_size = 4 * mib;

    /// Where the blocking `open()` and `pread()` calls run: the executor of an
    /// `asio::thread_pool` the caller owns. Empty means `default_blocking_pool()`.
    asio::any_io_executor blocking_executor = {};
};

/// A process-wide pool of two threads for blocking file I/O, used by file sources whose
/// options name no executor of their own. Created on first use, joined at exit.
///
/// Convenient in tests and small programs; a reader owns its own pool instead, so that it
/// controls when the threads stop.
inline asio::thread_pool& default_blocking_pool()
{
    static asio::thread_pool pool(2);
    return pool;
}

namespace detail {

/// What a file source shares with its reads on the blocking pool.
///
/// A read task co-owns this state, so a source destroyed while a read is in flight leaves
/// the buffer alive until the read has finished and its result has been handed back.
struct file_state {
    file_state(asio::any_io_executor network_ex, std::string p, const file_source_options& o)
        : path(std::move(p))
        , offset(o.offset)
        , length(o.length)
        , read_size(o.read_size)
        , network(std::move(network_ex))
        , blocking(o.blocking_executor ? o.blocking_executor
                                       : asio::any_io_executor(default_blocking_pool().get_executor()))
        , wake(network)
    {
    }

    file_state(const file_state&) = delete;
    file_state& operator=(const file_state&) = delete;

    ~file_state()
    {
        if (fd >= 0)
            ::close(fd);
    }

    // Set at construction, then only read (from both threads).
    const std::string path;
    const std::uint64_t offset;
    const std::optional<std::uint64_t> length;
    const std::size_t read_size;
    const asio::any_io_executor network;
    const asio::any_io_executor blocking;

    // Written by the opening task on the pool, then read by later tasks and the network
    // thread. Each hand-over goes through a post (pool -> network thread -> pool), which
    // orders the accesses.
    int fd = -1;
    std::uint64_t end = 0;                  ///< absolute offset one past the range
    std::unique_ptr<std::byte[]> buffers[2];

    // The network thread's side. A read's result (error, bytes read) travels from the pool
    // to the network thread through a post, which stores it in `result` and cancels `wake`,
    // the timer a waiting async_next() sleeps on. The result lives here, not in the waiter,
    // so a waiter cancelled just before the result arrives loses nothing: the next call
    // finds it. (Asio 1.81's experimental channel drops a value sent right after a
    // cancelled receive, which rules it out here.)
    asio::steady_timer wake;
    std::optional<std::pair<error_code, std::size_t>> result;
    bool started = false;
    bool in_flight = false;
    int reading = 0;                 ///< the buffer the read in flight fills
    std::uint64_t next_offset = 0;   ///< where the read in flight (or the next read) starts
    bool destroyed = false;          ///< the source is gone: a suspended call must not return a chunk
    error_code final;                ///< eof or the error that ended the source
};

/// Opens the file and checks the range; runs on the blocking pool.
inline error_code file_open(file_state& s)
{
    int fd = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return {errno, boost::system::system_category()};
    s.fd = fd;
    // O_NONBLOCK kept a FIFO or device from blocking the open; it means nothing for a
    // regular file, which is all this source reads.
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return {errno, boost::system::system_category()};
    if (S_ISDIR(st.st_mode))
        return make_error_code(boost::system::errc::is_a_directory);
    if (!S_ISREG(st.st_mode))
        return errc::not_a_regular_file;
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (s.offset > size || (s.length && *s.length > size - s.offset))
        return errc::range_past_end;
    s.end = s.length ? s.offset + *s.length : size;
    const std::uint64_t range = s.end - s.offset;
    if (range == 0)
        return {};
    // Tells the kernel to read ahead aggressively; advice only, so failure is not an error.
    ::posix_fadvise(fd, static_cast<off_t>(s.offset), static_cast<off_t>(range), POSIX_FADV_SEQUENTIAL);
    const std::size_t buffer_size = static_cast<std::size_t>(std::min<std::uint64_t>(s.read_size, range));
    s.buffers[0] = std::make_unique_for_overwrite<std::byte[]>(buffer_size);
    if (range > s.read_size)
        s.buffers[1] = std::make_unique_for_overwrite<std::byte[]>(buffer_size);
    return {};
}

/// Reads `size` bytes at `offset` into buffer `buf`; runs on the blocking pool.
inline error_code file_read(file_state& s, int buf, std::uint64_t offset, std::size_t size)
{
    std::byte* p = s.buffers[buf].get();
    std::size_t got = 0;
    while (got < size) {
        const ssize_t r = ::pread(s.fd, p + got, size - got, static_cast<off_t>(offset + got));
        if (r > 0)
            got += static_cast<std::size_t>(r);
        else if (r == 0)
            return errc::object_changed;  // the file shrank below the size seen at open
        else if (errno != EINTR)
            return {errno, boost::system::system_category()};
    }
    return {};
}

/// Starts the next read (or the open and first read) on the blocking pool.
inline void file_launch(const std::shared_ptr<file_state>& s, bool open, int buf, std::uint64_t offset,
                        std::size_t size)
{
    s->in_flight = true;
    s->reading = buf;
    // Outstanding work keeps the network io_context's run() from returning while a read is
    // in flight, so the result always finds a live io_context to be posted to.
    auto work = asio::prefer(s->network, asio::execution::outstanding_work.tracked);
    // A non-const copy: capturing the const reference `s` would make a const member that
    // the std::move below could only copy.
    std::shared_ptr<file_state> owner = s;
    asio::post(s->blocking, [s = std::move(owner), work = std::move(work), open, buf, offset, size]() mutable {
        error_code ec;
        std::size_t n = size;
        if (open) {
            ec = file_open(*s);
            n = ec ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(s->read_size, s->end - offset));
        }
        if (!ec && n != 0)
            ec = file_read(*s, buf, offset, n);
        if (ec)
            n = 0;
        // The state moves into the network thread's handler so that the pool thread never
        // holds the last reference: the state (and its timer) dies on the network thread.
        asio::post(work, [s = std::move(s), ec, n]() {
            s->result.emplace(ec, n);
            s->wake.cancel();
        });
    });
}

/// Ends the source with `ec` (eof or an error): the descriptor and buffers go at once, not
/// when the source is destroyed, since a finished source may be kept a while. Only called
/// with no read in flight, so no pool thread is using them.
inline chunk_result file_finish(file_state& s, error_code ec)
{
    s.final = ec;
    if (s.fd >= 0) {
        ::close(s.fd);
        s.fd = -1;
    }
    s.buffers[0].reset();
    s.buffers[1].reset();
    return {ec, {}};
}

/// The body of `file_source::async_next()`; takes the state by value and never touches the
/// source object, so destroying the source while this is suspended is safe.
inline asio::awaitable<chunk_result> file_next(std::shared_ptr<file_state> s)
{
    if (s->final)
        co_return chunk_result{s->final, {}};
    if (!s->started) {
        s->started = true;
        s->next_offset = s->offset;
        file_launch(s, true, 0, s->offset, 0);
    }
    if (!s->in_flight)
        co_return file_finish(*s, asio::error::eof);
    if (!s->result) {
        s->wake.expires_at(std::chrono::steady_clock::time_point::max());
        co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
        if (!s->result || s->destroyed)
            // Woken by cancel() (or per-operation cancellation), not by the read: it goes
            // on, and the next call collects its result.
            co_return chunk_result{asio::error::operation_aborted, {}};
    }
    const auto [ec, n] = *s->result;
    s->result.reset();
    s->in_flight = false;
    if (ec)
        co_return file_finish(*s, ec);
    const int current = s->reading;
    s->next_offset += n;
    if (s->next_offset < s->end) {
        // Read ahead into the other buffer while the caller works on this one.
        const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(s->read_size, s->end - s->next_offset));
        file_launch(s, false, 1 - current, s->next_offset, size);
    }
    if (n == 0)
        co_return file_finish(*s, asio::error::eof);  // an empty range
    co_return chunk_result{error_code{}, std::span<const std::byte>(s->buffers[current].get(), n)};
}

} // namespace detail

/// A `byte_source` over a local regular file, or the byte range `[offset, offset + length)`
/// of one.
///
/// Reads are large sequential `pread()`s into the source's own two buffers, run on a
/// blocking-I/O executor (see `file_source_options::blocking_executor`) so the network
/// thread never blocks on the disk; the coroutine resumes on the source's executor. One read
/// runs ahead: while the caller decodes chunk N, chunk N+1 is being read.
///
/// Errors come through the `ec` of `async_next()`, never as exceptions: opening (the first
/// call) reports errno's code (`ENOENT`, `EACCES`, ...), `boost::system::errc::is_a_directory`,
/// `errc::not_a_regular_file` or `errc::range_past_end`; a file that shrinks while it is read
/// yields `errc::object_changed`. Codes carry no path: `name()` is the path, and the pipeline
/// puts it in the message. A file that grows is read up to the size it had when opened.
///
/// Lifetime: destroying the source with a read in flight is safe; the read finishes on the
/// pool into buffers it co-owns, and the `io_context` stays busy (outstanding work) until
/// its result has been handed back. Join the blocking pool before destroying the
/// `io_context` (declare the pool after it).
///
/// Not thread-safe: use one source from one thread (its executor's). Move-only.
///
/// Example:
/// ```
/// file_source src(co_await asio::this_coro::executor, "/data/train.rec",
///                 {.read_size = 1 * mib, .blocking_executor = pool.get_executor()});
/// for (;;) {
///     auto [ec, chunk] = co_await src.async_next();
///     if (ec == asio::error::eof) break;
///     if (ec) throw data_error(ec, {std::string(src.name()), offset, 0});
///     offset += chunk.size();
/// }
/// ```
class file_source {
public:
    /// A source over `path` (nothing is opened until the first `async_next()`).
    /// Throws `std::invalid_argument` for a zero `read_size` or a range that overflows.
    file_source(asio::any_io_executor ex, std::string path, file_source_options opts = {})
    {
        if (opts.read_size == 0)
            throw std::invalid_argument("file_source: read_size is 0; give it a positive size such as 4 MiB");
        if (opts.length && *opts.length > std::numeric_limits<std::uint64_t>::max() - opts.offset)
            throw std::invalid_argument("file_source: offset + length overflows; check the byte range of " + path);
        if (opts.length && *opts.length > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
            throw std::invalid_argument("file_source: length exceeds the largest file offset for " + path);
        state_ = std::make_shared<detail::file_state>(std::move(ex), std::move(path), opts);
    }

    file_source(file_source&&) noexcept = default;
    file_source& operator=(file_source&& other) noexcept
    {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    file_source(const file_source&) = delete;
    file_source& operator=(const file_source&) = delete;

    /// A pending `async_next()` completes with `asio::error::operation_aborted` (even if its
    /// read has just finished: the chunk would outlive the source); a read in flight
    /// finishes on the pool and is then dropped.
    ~file_source() { close(); }

    /// The next chunk of the range, in order; then `asio::error::eof` with an empty chunk on
    /// this and every later call. A chunk stays valid until the next call or the source's
    /// destruction. After an error other than `operation_aborted`, every call returns it.
    asio::awaitable<chunk_result> async_next() { return detail::file_next(state_); }

    /// Makes a pending `async_next()` complete at once with `asio::error::operation_aborted`.
    /// The read it was waiting for goes on, and the next call returns its chunk: no byte is
    /// lost. Call on the source's executor.
    void cancel()
    {
        if (state_)
            state_->wake.cancel();
    }

    /// Whether a read is running on the blocking pool: after a chunk that is not the range's
    /// last, the next one is already being read. For tests and statistics.
    bool read_in_flight() const noexcept { return state_ && state_->in_flight; }

    /// The path.
    std::string_view name() const noexcept { return state_ ? std::string_view(state_->path) : std::string_view(); }

    /// `file_source_options::offset`.
    std::uint64_t start_offset() const noexcept { return state_ ? state_->offset : 0; }

    /// The executor the source's coroutine resumes on.
    const asio::any_io_executor& get_executor() const noexcept { return state_->network; }

private:
    void close() noexcept
    {
        if (state_) {
            state_->destroyed = true;
            state_->wake.cancel();
        }
    }

    std::shared_ptr<detail::file_state> state_;
};

static_assert(byte_source<file_source>);

} // namespace pipemode
