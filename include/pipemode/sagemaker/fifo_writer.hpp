// pipemode: the producer side of SageMaker's Pipe mode: creates an epoch's FIFO inside the data
// directory, waits for the training program to open it, streams bytes into it with
// backpressure, and gives the reader its end of data. For `pipemode-agent`.
//
// The protocol, the waits, the early-close behaviour and SIGPIPE are described in
// docs/pipe-mode-fifos.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace pipemode::sagemaker {

/// Options of a `fifo_writer`. Use designated initializers:
/// `fifo_writer_options{.reader_timeout = std::chrono::minutes(10)}`.
struct fifo_writer_options {
    /// How long `async_wait_for_reader()` waits for a reader to open the FIFO before it
    /// completes with `errc::timed_out`; nothing (the default) waits for ever, as the agent
    /// does: a training program may spend any time between epochs.
    std::optional<std::chrono::steady_clock::duration> reader_timeout = std::nullopt;

    /// How often to try to connect while no reader has the FIFO open (Linux offers no
    /// notification for that). 20 ms adds at most 20 ms to the start of an epoch.
    std::chrono::steady_clock::duration poll_interval = std::chrono::milliseconds(20);

    /// The pipe capacity to ask the kernel for (`F_SETPIPE_SZ`) once connected: with 1 MiB the
    /// writer can run that far ahead of the reader instead of Linux's default 64 KiB. Best
    /// effort (a size above /proc/sys/fs/pipe-max-size, 1 MiB by default, or the user's pipe
    /// quota leaves the capacity as it is); 0 leaves it alone.
    std::size_t pipe_size = 1 * mib;

    /// Whether `close()` (and the destructor) unlinks the FIFO. True by default: each epoch's
    /// FIFO is read once, and a consumer that opened it again would find a FIFO with no writer
    /// (a blocking `open()` waits for ever); without the path it gets "no such file" instead
    /// (docs/pipe-mode-fifos.md). A reader that has it open keeps reading.
    bool remove_on_close = true;
};

/// How an `async_write()` ended.
enum class write_status {
    written,        ///< every byte is in the pipe
    reader_closed,  ///< the reader closed its end before taking everything: a normal end of epoch
    failed,         ///< an error (see `write_result::error`), `operation_aborted` when cancelled
};

/// What an `async_write()` did.
struct write_result {
    write_status status = write_status::written;
    std::size_t bytes_written = 0;  ///< bytes the pipe took from this call
    error_code error;               ///< set for `write_status::failed` only
};

namespace detail {
struct fifo_writer_state;
} // namespace detail

/// Writes one epoch of a Pipe-mode channel into its FIFO, without ever blocking the
/// `io_context`.
///
/// - **Construction** creates the FIFO (`mkfifo`, mode 0600) at `path`, which must lie inside
///   `data_dir`: the directory of `path`, resolved with `std::filesystem::canonical` (so `..`
///   and symbolic links in directories are followed first), must be the canonical `data_dir`
///   or a directory below it. An existing FIFO owned by this user is reused; a symbolic link,
///   a regular file or anything else at `path` is refused (never followed, never replaced).
///   Every later access goes through the directory opened here and `O_NOFOLLOW`.
/// - **`async_wait_for_reader()`** waits for a reader: `open(O_WRONLY | O_NONBLOCK)` fails with
///   ENXIO until some process has the FIFO open for reading, so it retries every
///   `poll_interval` on a timer, up to `reader_timeout`.
/// - **`async_write(data)`** puts all of `data` into the pipe, waiting for room when it is full.
///   The writer holds no buffer of its own: the bytes ahead of the reader are at most the
///   pipe's capacity. A reader that closes its end early (a training loop leaving an epoch)
///   ends the write with `write_status::reader_closed`, not an exception.
/// - **`close()`** closes the write end: the reader sees the end of the data once it has read
///   what the pipe holds. Then, with `remove_on_close`, the FIFO is unlinked (only if the path
///   still names the FIFO this writer created or reused).
///
/// SIGPIPE: a `write()` to a pipe whose reader has gone raises SIGPIPE, which kills a process
/// by default. The writer leaves the process's signal dispositions alone: it blocks SIGPIPE
/// in the calling thread around each `write()` and, when that write failed with EPIPE,
/// consumes the SIGPIPE it raised (`sigtimedwait` with a zero timeout), so the signal is never
/// delivered, whatever the program's handlers, and a SIGPIPE the thread already had pending is
/// left alone.
///
/// Not thread-safe: use one writer from one thread (its executor's). Move-only; destroying it
/// closes it, and a suspended call completes with `operation_aborted`.
///
/// Example (the agent's loop over epochs):
/// \code
/// for (std::uint64_t e = 0; e < epochs; ++e) {
///     fifo_writer w(ex, data_dir, pipe_path(data_dir, "train", e));
///     if (auto ec = co_await w.async_wait_for_reader()) throw boost::system::system_error(ec);
///     for (auto chunk : objects) {
///         auto r = co_await w.async_write(chunk);
///         if (r.status == write_status::reader_closed) break;   // the reader has had enough
///         if (r.status == write_status::failed) throw boost::system::system_error(r.error);
///     }
///     w.close();   // the reader's end of data; the FIFO is removed
/// }
/// \endcode
class fifo_writer {
public:
    /// Creates (or reuses) the FIFO at `path`; a relative `path` is taken relative to
    /// `data_dir`. Throws `std::invalid_argument` with a sentence naming the path when it lies
    /// outside `data_dir`, is a symbolic link or an existing file that is not a FIFO (or a FIFO
    /// of another user), or `data_dir` is not a directory; `std::system_error` when the system
    /// refuses (`mkfifo` without permission, say). Also throws `std::invalid_argument` for a
    /// non-positive `poll_interval` or `reader_timeout`.
    fifo_writer(asio::any_io_executor ex, const std::filesystem::path& data_dir, const std::filesystem::path& path,
                fifo_writer_options options = {});

    fifo_writer(fifo_writer&&) noexcept = default;
    fifo_writer& operator=(fifo_writer&& other) noexcept;
    fifo_writer(const fifo_writer&) = delete;
    fifo_writer& operator=(const fifo_writer&) = delete;

    /// Closes (see `close()`); a suspended call completes with `operation_aborted`.
    ~fifo_writer();

    /// Waits until a reader has opened the FIFO, then connects to it. Completes with no error
    /// once connected (at once if already connected), `errc::timed_out` after `reader_timeout`,
    /// `asio::error::operation_aborted` when cancelled or closed, or the `open()` error.
    asio::awaitable<error_code> async_wait_for_reader();

    /// Writes all of `data` (waiting for a reader first if none is connected), waiting for room
    /// in the pipe as the reader takes bytes out. `data` must stay valid until the call
    /// completes. After the reader has closed its end, every call is `reader_closed` at once.
    asio::awaitable<write_result> async_write(std::span<const std::byte> data);

    /// Closes the write end, so the reader gets the end of the data after what the pipe holds,
    /// and unlinks the FIFO under `remove_on_close`. Idempotent; a suspended call completes
    /// with `operation_aborted`.
    void close() noexcept;

    /// Makes a suspended call complete with `asio::error::operation_aborted`; the writer stays
    /// usable. Call on the writer's executor.
    void cancel() noexcept;

    /// Whether a reader is connected (`async_wait_for_reader()` succeeded and `close()` has not
    /// been called).
    bool connected() const noexcept;

    /// Whether a write found the reader gone.
    bool reader_closed() const noexcept;

    /// The pipe's capacity in bytes (`F_GETPIPE_SZ`) while connected, else 0.
    std::size_t pipe_capacity() const noexcept;

    /// The FIFO's path (its directory canonical).
    const std::filesystem::path& path() const noexcept;

    /// The executor the writer runs on.
    asio::any_io_executor get_executor() noexcept;

private:
    std::shared_ptr<detail::fifo_writer_state> state_;
};

} // namespace pipemode::sagemaker

#include <pipemode/sagemaker/impl/fifo_writer.hpp>
