// pipemode: a byte source over a FIFO (named pipe), as SageMaker's Pipe mode provides.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace pipemode {

/// Options of a `fifo_source`. Use designated initializers:
/// `fifo_source_options{.appear_timeout = std::chrono::seconds(30)}`.
struct fifo_source_options {
    /// How long the first `async_next()` waits for the path to exist before it fails with
    /// `errc::timed_out`. SageMaker creates an epoch's FIFO only when the previous one has
    /// been read to its end and starts streaming from S3 after that; five minutes covers a
    /// slow start, yet a misspelt channel name fails instead of hanging the job.
    std::chrono::steady_clock::duration appear_timeout = std::chrono::minutes(5);

    /// How long, once the FIFO is open, to wait for a writer to connect before failing with
    /// `errc::timed_out`. Five minutes for the same reason as `appear_timeout`.
    std::chrono::steady_clock::duration writer_timeout = std::chrono::minutes(5);

    /// How often to look for the path and for a writer while waiting. 20 ms adds at most
    /// 20 ms to the start of an epoch and costs 50 cheap syscalls a second while waiting.
    std::chrono::steady_clock::duration poll_interval = std::chrono::milliseconds(20);

    /// The size of the source's buffer: the most one chunk holds. A read returns what the
    /// pipe holds, so this matches `pipe_size`.
    std::size_t read_size = 1 * mib;

    /// The pipe's capacity to ask the kernel for (`F_SETPIPE_SZ`), so the writer can run up
    /// to 1 MiB ahead of the decoder instead of Linux's default 64 KiB: fewer context
    /// switches between writer and reader on a small machine. Best effort: a size above
    /// `/proc/sys/fs/pipe-max-size` (1 MiB by default) or the user's pipe quota leaves the
    /// capacity as it is. 0 leaves it alone.
    std::size_t pipe_size = 1 * mib;
};

namespace detail {

/// What a FIFO source's coroutine works on; shared so that destroying the source while a
/// call is suspended leaves the coroutine valid objects to wake up to.
struct fifo_state {
    fifo_state(asio::any_io_executor ex, std::string p, const fifo_source_options& o)
        : path(std::move(p)), opts(o), timer(ex), pipe(ex)
    {
    }

    fifo_state(const fifo_state&) = delete;
    fifo_state& operator=(const fifo_state&) = delete;

    enum class phase_t {
        idle,                ///< no call yet
        waiting_for_path,    ///< polling for the path to exist
        waiting_for_writer,  ///< open; no writer has connected yet
        streaming,           ///< a writer has connected: reads of 0 bytes now mean the end
    };

    const std::string path;
    const fifo_source_options opts;
    asio::steady_timer timer;
    asio::posix::stream_descriptor pipe;
    std::unique_ptr<std::byte[]> buffer;
    phase_t phase = phase_t::idle;
    std::chrono::steady_clock::time_point deadline;
    bool cancel_requested = false;  ///< cancel() was called during the current call
    bool destroyed = false;         ///< the source is gone
    error_code final;               ///< eof or the error that ended the source
};

/// Tries to open the FIFO. `missing` is set, with no error, while the path does not exist.
inline error_code fifo_try_open(fifo_state& s, bool& missing)
{
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer on the network
    // thread. O_CLOEXEC: a child process must not keep the pipe open.
    const int fd = ::open(s.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            missing = true;
            return {};
        }
        return {errno, boost::system::system_category()};
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        return {e, boost::system::system_category()};
    }
    if (!S_ISFIFO(st.st_mode)) {
        ::close(fd);
        return errc::not_a_fifo;
    }
#ifdef F_SETPIPE_SZ
    if (s.opts.pipe_size != 0)
        (void)::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(std::min<std::size_t>(s.opts.pipe_size, INT_MAX)));
#endif
    error_code ec;
    s.pipe.assign(fd, ec);
    if (ec) {
        ::close(fd);
        return ec;
    }
    s.buffer = std::make_unique_for_overwrite<std::byte[]>(s.opts.read_size);
    return {};
}

/// What a look at a FIFO with no writer seen yet found.
struct fifo_probe {
    enum kind_t { no_writer, writer, data, failed } kind = no_writer;
    std::size_t size = 0;  ///< bytes read into the buffer, for `data`
    error_code ec = {};    ///< for `failed`
};

/// Looks, without blocking, whether a writer has connected since the FIFO was opened.
///
/// Linux reports a FIFO with no writer as readable-at-end-of-file (`read()` returns 0) both
/// before any writer has connected and after the last one has left; `poll()` tells them
/// apart: POLLHUP is raised only once a writer has connected and gone. With a writer
/// connected and nothing written, `read()` fails with EAGAIN.
inline fifo_probe fifo_look_for_writer(fifo_state& s)
{
    const int fd = s.pipe.native_handle();
    pollfd p{fd, POLLIN, 0};
    for (;;) {
        const int r = ::poll(&p, 1, 0);
        if (r >= 0)
            break;
        if (errno != EINTR)
            return {fifo_probe::failed, 0, {errno, boost::system::system_category()}};
    }
    // Data, or a writer that came and went (maybe leaving data): the ordinary reads take
    // it from here, and their 0 is the real end.
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        return {fifo_probe::writer};
    // Nothing yet. The read tells "no writer" (0) from "a writer that has not written"
    // (EAGAIN); data written since the poll() is simply taken. A writer that connects and
    // leaves between the poll() and the read() shows up as POLLHUP on the next look.
    for (;;) {
        const ssize_t n = ::read(fd, s.buffer.get(), s.opts.read_size);
        if (n > 0)
            return {fifo_probe::data, static_cast<std::size_t>(n)};
        if (n == 0)
            return {fifo_probe::no_writer};
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return {fifo_probe::writer};
        if (errno != EINTR)
            return {fifo_probe::failed, 0, {errno, boost::system::system_category()}};
    }
}

/// Sleeps one poll interval (or until the deadline, if sooner). False when cancelled.
inline asio::awaitable<bool> fifo_pause(std::shared_ptr<fifo_state> s)
{
    const auto left = s->deadline - std::chrono::steady_clock::now();
    s->timer.expires_after(std::clamp(left, std::chrono::steady_clock::duration::zero(), s->opts.poll_interval));
    auto [ec] = co_await s->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return !ec && !s->cancel_requested && !s->destroyed;
}

/// Ends the source with `ec` (eof or an error). The read end closes at once, so the writer
/// (SageMaker's agent) sees the reader go as soon as the data has ended, and the buffer is
/// freed even if the source is kept a while.
inline chunk_result fifo_finish(fifo_state& s, error_code ec)
{
    s.final = ec;
    error_code ignored;
    s.pipe.close(ignored);
    s.buffer.reset();
    return {ec, {}};
}

/// The body of `fifo_source::async_next()`; takes the state by value and never touches the
/// source object, so destroying the source while this is suspended is safe.
inline asio::awaitable<chunk_result> fifo_next(std::shared_ptr<fifo_state> s)
{
    using phase_t = fifo_state::phase_t;
    using clock = std::chrono::steady_clock;
    const chunk_result aborted{asio::error::operation_aborted, {}};

    if (s->final)
        co_return chunk_result{s->final, {}};
    s->cancel_requested = false;  // a cancel() between calls cancels nothing

    if (s->phase == phase_t::idle) {
        s->phase = phase_t::waiting_for_path;
        s->deadline = clock::now() + s->opts.appear_timeout;
    }
    while (s->phase == phase_t::waiting_for_path) {
        bool missing = false;
        if (auto ec = fifo_try_open(*s, missing))
            co_return fifo_finish(*s, ec);
        if (!missing) {
            s->phase = phase_t::waiting_for_writer;
            s->deadline = clock::now() + s->opts.writer_timeout;
            break;
        }
        if (clock::now() >= s->deadline)
            co_return fifo_finish(*s, errc::timed_out);
        if (!co_await fifo_pause(s))
            co_return aborted;
    }
    while (s->phase == phase_t::waiting_for_writer) {
        const fifo_probe probe = fifo_look_for_writer(*s);
        switch (probe.kind) {
        case fifo_probe::data:
            s->phase = phase_t::streaming;
            co_return chunk_result{error_code{}, std::span<const std::byte>(s->buffer.get(), probe.size)};
        case fifo_probe::writer:
            s->phase = phase_t::streaming;
            break;
        case fifo_probe::failed:
            co_return fifo_finish(*s, probe.ec);
        case fifo_probe::no_writer:
            if (clock::now() >= s->deadline)
                co_return fifo_finish(*s, errc::timed_out);
            if (!co_await fifo_pause(s))
                co_return aborted;
            break;
        }
    }

    // A writer has connected since the FIFO was opened, so from here a read of 0 bytes
    // (Asio's eof) means every writer has closed its end: the end of the data.
    auto [ec, n] = co_await s->pipe.async_read_some(asio::buffer(s->buffer.get(), s->opts.read_size),
                                                    asio::as_tuple(asio::use_awaitable));
    // After the source's destruction, not even a completed read's chunk: it would outlive
    // the source.
    if (ec == asio::error::operation_aborted || s->destroyed)
        co_return aborted;
    if (ec)
        co_return fifo_finish(*s, ec);
    co_return chunk_result{error_code{}, std::span<const std::byte>(s->buffer.get(), n)};
}

} // namespace detail

/// A `byte_source` over a FIFO (named pipe): SageMaker's Pipe mode, which streams a channel's
/// data for epoch E through `/opt/ml/input/data/<channel>_<E>`.
///
/// The first `async_next()` waits for the path to appear (polling every `poll_interval`, up
/// to `appear_timeout`), opens it without blocking, and waits for a writer to connect (up to
/// `writer_timeout`); a FIFO with no writer yet is never mistaken for an empty one. Then it
/// reads with `asio::posix::stream_descriptor`: each chunk is what the pipe held, up to
/// `read_size` bytes, in the source's own buffer. The data ends (`asio::error::eof`) when
/// every writer has closed its end; more writers connecting later are not waited for.
///
/// Only FIFOs are read: any other kind of file at the path fails with `errc::not_a_fifo`
/// (read a regular file with `file_source`). Other errors: `errc::timed_out` from the waits,
/// errno's code from `open()`/`read()`. `name()` is the path; the pipeline puts it in the
/// message.
///
/// Closing early (destroying the source before the end) closes the read end: the writer's
/// next `write()` fails with EPIPE (or raises SIGPIPE); writers handle that.
///
/// Not thread-safe: use one source from one thread (its executor's). Move-only.
///
/// Example:
/// ```
/// fifo_source src(co_await asio::this_coro::executor, "/opt/ml/input/data/train_0");
/// for (;;) {
///     auto [ec, chunk] = co_await src.async_next();
///     if (ec == asio::error::eof) break;
///     if (ec) throw data_error(ec, {std::string(src.name()), offset, 0});
///     offset += chunk.size();
/// }
/// ```
class fifo_source {
public:
    /// A source over the FIFO at `path` (nothing is opened until the first `async_next()`).
    /// Throws `std::invalid_argument` for a zero `read_size` or `poll_interval`.
    fifo_source(asio::any_io_executor ex, std::string path, fifo_source_options opts = {})
    {
        if (opts.read_size == 0)
            throw std::invalid_argument("fifo_source: read_size is 0; give it a positive size such as 1 MiB");
        if (opts.poll_interval <= std::chrono::steady_clock::duration::zero())
            throw std::invalid_argument("fifo_source: poll_interval must be positive, e.g. 20 ms");
        state_ = std::make_shared<detail::fifo_state>(std::move(ex), std::move(path), opts);
    }

    fifo_source(fifo_source&&) noexcept = default;
    fifo_source& operator=(fifo_source&& other) noexcept
    {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    fifo_source(const fifo_source&) = delete;
    fifo_source& operator=(const fifo_source&) = delete;

    /// Closes the FIFO; a pending `async_next()` completes with
    /// `asio::error::operation_aborted` (even if its read has just completed: the chunk would
    /// outlive the source).
    ~fifo_source() { close(); }

    /// The next chunk; then `asio::error::eof` with an empty chunk on this and every later
    /// call. The chunk stays valid until the next call or the source's destruction. After an
    /// error other than `operation_aborted`, every call returns it.
    asio::awaitable<chunk_result> async_next() { return detail::fifo_next(state_); }

    /// Makes a pending `async_next()` complete with `asio::error::operation_aborted`; the
    /// source stays usable, and the waits keep their deadlines. Bytes already read are
    /// never dropped: a read that completed before the cancel returns its chunk. Call on the
    /// source's executor.
    void cancel()
    {
        if (!state_)
            return;
        state_->cancel_requested = true;
        state_->timer.cancel();
        error_code ignored;
        state_->pipe.cancel(ignored);
    }

    /// The path.
    std::string_view name() const noexcept { return state_ ? std::string_view(state_->path) : std::string_view(); }

    /// Always 0: a FIFO is read from its beginning.
    std::uint64_t start_offset() const noexcept { return 0; }

    /// The executor the source runs on.
    asio::any_io_executor get_executor() noexcept { return state_->pipe.get_executor(); }

private:
    void close() noexcept
    {
        if (!state_)
            return;
        state_->destroyed = true;
        state_->timer.cancel();
        error_code ignored;
        state_->pipe.close(ignored);
    }

    std::shared_ptr<detail::fifo_state> state_;
};

static_assert(byte_source<fifo_source>);

} // namespace pipemode
