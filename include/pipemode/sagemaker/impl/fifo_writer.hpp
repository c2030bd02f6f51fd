// pipemode: definitions of sagemaker/fifo_writer.hpp. Included at the bottom of fifo_writer.hpp only.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace pipemode::sagemaker {
namespace detail {

/// What a writer's coroutines work on; shared so that destroying the writer while a call is
/// suspended leaves the coroutine valid objects to wake up to.
struct fifo_writer_state {
    fifo_writer_state(asio::any_io_executor ex, const fifo_writer_options& o) : opts(o), timer(ex), pipe(ex) {}

    fifo_writer_state(const fifo_writer_state&) = delete;
    fifo_writer_state& operator=(const fifo_writer_state&) = delete;

    ~fifo_writer_state()
    {
        if (dir_fd >= 0)
            ::close(dir_fd);
    }

    const fifo_writer_options opts;
    std::filesystem::path path;  ///< canonical directory / file name
    std::string name;            ///< the file name within the directory
    int dir_fd = -1;             ///< the FIFO's directory, opened once: every access is relative to it
    ::dev_t dev = 0;             ///< identity of the FIFO created or reused
    ::ino_t ino = 0;
    asio::steady_timer timer;
    asio::posix::stream_descriptor pipe;
    bool connected = false;
    bool reader_gone = false;
    bool closed = false;
    bool cancel_requested = false;  ///< cancel() was called during the current call
};

[[noreturn]] inline void refuse_fifo_path(const std::filesystem::path& path, const std::string& why)
{
    throw std::invalid_argument("pipemode: fifo_writer: refusing " + path.string() + ": " + why);
}

[[noreturn]] inline void throw_fifo_errno(int e, const std::string& what)
{
    throw std::system_error(e, std::generic_category(), "pipemode: fifo_writer: " + what);
}

/// Creates or reuses the FIFO (see fifo_writer's constructor) and fills in `s`.
inline void create_fifo(fifo_writer_state& s, const std::filesystem::path& data_dir, const std::filesystem::path& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path dir = fs::canonical(data_dir, ec);
    if (ec || !fs::is_directory(dir))
        refuse_fifo_path(data_dir, "the data directory does not exist or is not a directory; create it first");
    const fs::path full = path.is_absolute() ? path : data_dir / path;
    const fs::path name = full.filename();
    if (name.empty() || name == "." || name == "..")
        refuse_fifo_path(full, "it does not end in a file name");
    const fs::path parent = fs::canonical(full.parent_path(), ec);
    if (ec)
        refuse_fifo_path(full, "its directory does not exist (" + ec.message() + ")");
    const fs::path rel = parent.lexically_relative(dir);
    if (rel.empty() || *rel.begin() == "..")
        refuse_fifo_path(full, "it is outside the data directory " + dir.string());

    s.name = name.string();
    s.path = parent / name;
    // Opened once: a directory swapped for a symbolic link after the checks above cannot
    // redirect the FIFO's creation, opening or removal.
    s.dir_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s.dir_fd < 0)
        throw_fifo_errno(errno, "cannot open the directory " + parent.string());

    for (int attempt = 0;; ++attempt) {
        struct ::stat st {};
        if (::fstatat(s.dir_fd, s.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISLNK(st.st_mode))
                refuse_fifo_path(s.path, "it is a symbolic link, which a FIFO writer never follows; remove it");
            if (!S_ISFIFO(st.st_mode))
                refuse_fifo_path(s.path, std::string(S_ISREG(st.st_mode) ? "it is a regular file" : "it exists")
                                             + " and is not a FIFO; it is never overwritten: remove it or choose "
                                               "another data directory");
            if (st.st_uid != ::geteuid())
                refuse_fifo_path(s.path, "it is a FIFO of another user");
            s.dev = st.st_dev;
            s.ino = st.st_ino;
            return;
        }
        if (errno != ENOENT)
            throw_fifo_errno(errno, "cannot look at " + s.path.string());
        if (::mkfifoat(s.dir_fd, s.name.c_str(), 0600) == 0)
            continue;  // look at what was created, for its identity
        // EEXIST: created by someone else since the look above; look again, once.
        if (errno != EEXIST || attempt > 0)
            throw_fifo_errno(errno, "cannot create the FIFO " + s.path.string());
    }
}

/// Tries to connect to a reader. `no_reader` is set, with no error, while none has the FIFO open.
inline error_code fifo_try_connect(fifo_writer_state& s, bool& no_reader)
{
    const auto sys = [](int e) { return error_code(e, boost::system::system_category()); };
    // O_NONBLOCK: the open fails with ENXIO instead of blocking while there is no reader, and
    // the writes below are non-blocking too. O_NOFOLLOW: never through a symbolic link.
    const int fd = ::openat(s.dir_fd, s.name.c_str(), O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENXIO) {
            no_reader = true;
            return {};
        }
        return sys(errno);
    }
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        return sys(e);
    }
    // Something else put at the path since it was created (a FIFO of its own included).
    if (!S_ISFIFO(st.st_mode) || st.st_dev != s.dev || st.st_ino != s.ino) {
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
    s.connected = true;
    return {};
}

/// `write()` that cannot raise SIGPIPE: blocks it in this thread for the call and consumes the
/// one the call raised, if any (see fifo_writer's comment). Returns write()'s result; `err`
/// is its errno.
inline ::ssize_t write_without_sigpipe(int fd, const std::byte* data, std::size_t size, int& err) noexcept
{
    sigset_t pipe_only, previous;
    ::sigemptyset(&pipe_only);
    ::sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
    // A SIGPIPE pending before this write belongs to someone else: leave it for them.
    sigset_t pending;
    ::sigemptyset(&pending);
    const bool was_pending = ::sigpending(&pending) == 0 && ::sigismember(&pending, SIGPIPE) == 1;

    ::ssize_t n;
    do
        n = ::write(fd, data, size);
    while (n < 0 && errno == EINTR);
    err = n < 0 ? errno : 0;

    if (n < 0 && err == EPIPE && !was_pending) {
        // The SIGPIPE the write raised is thread-directed and blocked: take it back.
        const timespec zero{0, 0};
        while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return n;
}

/// The body of `fifo_writer::async_wait_for_reader()`; takes the state by value.
inline asio::awaitable<error_code> fifo_wait_for_reader(std::shared_ptr<fifo_writer_state> s)
{
    using clock = std::chrono::steady_clock;
    s->cancel_requested = false;
    if (s->closed)
        co_return asio::error::operation_aborted;
    const auto deadline = s->opts.reader_timeout ? std::optional(clock::now() + *s->opts.reader_timeout) : std::nullopt;
    while (!s->connected) {
        bool no_reader = false;
        if (auto ec = fifo_try_connect(*s, no_reader))
            co_return ec;
        if (!no_reader)
            break;
        auto wait = s->opts.poll_interval;
        if (deadline) {
            const auto left = *deadline - clock::now();
            if (left <= clock::duration::zero())
                co_return errc::timed_out;
            wait = std::min(wait, left);
        }
        s->timer.expires_after(wait);
        auto [ec] = co_await s->timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec || s->cancel_requested || s->closed)
            co_return asio::error::operation_aborted;
    }
    co_return error_code{};
}

/// The body of `fifo_writer::async_write()`; takes the state by value, and the span's bytes
/// stay the caller's: nothing is copied.
inline asio::awaitable<write_result> fifo_write(std::shared_ptr<fifo_writer_state> s, std::span<const std::byte> data)
{
    if (!s->connected && !s->closed && !s->reader_gone) {
        if (auto ec = co_await fifo_wait_for_reader(s))
            co_return write_result{write_status::failed, 0, ec};
    }
    s->cancel_requested = false;
    if (s->reader_gone)
        co_return write_result{write_status::reader_closed, 0, {}};
    if (s->closed)
        co_return write_result{write_status::failed, 0, asio::error::operation_aborted};

    std::size_t done = 0;
    while (done < data.size()) {
        int err = 0;
        const auto n = write_without_sigpipe(s->pipe.native_handle(), data.data() + done, data.size() - done, err);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (err == EPIPE) {
            s->reader_gone = true;
            co_return write_result{write_status::reader_closed, done, {}};
        }
        if (n == 0 || (err != EAGAIN && err != EWOULDBLOCK))
            co_return write_result{write_status::failed, done, error_code(n == 0 ? EIO : err, boost::system::system_category())};
        // The pipe is full: wait for the reader to make room (or to go, which wakes this too).
        auto [ec] = co_await s->pipe.async_wait(asio::posix::descriptor_base::wait_write,
                                                asio::as_tuple(asio::use_awaitable));
        if (ec || s->cancel_requested || s->closed)
            co_return write_result{write_status::failed, done, asio::error::operation_aborted};
    }
    co_return write_result{write_status::written, done, {}};
}

/// Closes the write end and, under `remove_on_close`, unlinks the FIFO if the path still names it.
inline void fifo_close(fifo_writer_state& s) noexcept
{
    if (s.closed)
        return;
    s.closed = true;
    s.connected = false;
    s.timer.cancel();
    error_code ignored;
    s.pipe.close(ignored);
    if (s.opts.remove_on_close && s.dir_fd >= 0) {
        struct ::stat st {};
        if (::fstatat(s.dir_fd, s.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(st.st_mode)
            && st.st_dev == s.dev && st.st_ino == s.ino)
            (void)::unlinkat(s.dir_fd, s.name.c_str(), 0);
    }
}

} // namespace detail

inline fifo_writer::fifo_writer(asio::any_io_executor ex, const std::filesystem::path& data_dir,
                                const std::filesystem::path& path, fifo_writer_options options)
{
    if (options.poll_interval <= std::chrono::steady_clock::duration::zero())
        throw std::invalid_argument("pipemode: fifo_writer: poll_interval must be positive, e.g. 20 ms");
    if (options.reader_timeout && *options.reader_timeout <= std::chrono::steady_clock::duration::zero())
        throw std::invalid_argument(
            "pipemode: fifo_writer: reader_timeout must be positive; leave it empty to wait for ever");
    auto s = std::make_shared<detail::fifo_writer_state>(std::move(ex), options);
    detail::create_fifo(*s, data_dir, path);
    state_ = std::move(s);
}

inline fifo_writer& fifo_writer::operator=(fifo_writer&& other) noexcept
{
    if (this != &other) {
        close();
        state_ = std::move(other.state_);
    }
    return *this;
}

inline fifo_writer::~fifo_writer() { close(); }

inline asio::awaitable<error_code> fifo_writer::async_wait_for_reader() { return detail::fifo_wait_for_reader(state_); }

inline asio::awaitable<write_result> fifo_writer::async_write(std::span<const std::byte> data)
{
    return detail::fifo_write(state_, data);
}

inline void fifo_writer::close() noexcept
{
    if (state_)
        detail::fifo_close(*state_);
}

inline void fifo_writer::cancel() noexcept
{
    if (!state_)
        return;
    state_->cancel_requested = true;
    state_->timer.cancel();
    error_code ignored;
    state_->pipe.cancel(ignored);
}

inline bool fifo_writer::connected() const noexcept { return state_ && state_->connected; }

inline bool fifo_writer::reader_closed() const noexcept { return state_ && state_->reader_gone; }

inline std::size_t fifo_writer::pipe_capacity() const noexcept
{
#ifdef F_GETPIPE_SZ
    if (state_ && state_->connected) {
        const int n = ::fcntl(state_->pipe.native_handle(), F_GETPIPE_SZ);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }
#endif
    return 0;
}

inline const std::filesystem::path& fifo_writer::path() const noexcept { return state_->path; }

inline asio::any_io_executor fifo_writer::get_executor() noexcept { return state_->pipe.get_executor(); }

} // namespace pipemode::sagemaker
