// Tests of fifo_source against real FIFOs and real writers (threads and child processes):
// waiting for the path and for a writer, exact bytes, the end of data, early close, cancel.
#include <pipemode/sources/fifo_source.hpp>

#include "run_coro.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;
using namespace std::chrono_literals;
using pipemode::test::read_all;
using pipemode::test::run_coro;

static_assert(byte_source<fifo_source>);
static_assert(!std::is_copy_constructible_v<fifo_source>);

namespace {

using clock_type = std::chrono::steady_clock;

void sleep_ms(long ms) noexcept
{
    timespec t{ms / 1000, (ms % 1000) * 1'000'000L};
    while (::nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/// What a test writer does. Its `run()` uses only async-signal-safe calls and allocates
/// nothing, so it may run in a child forked from a multi-threaded test process.
struct writer_plan {
    const char* path = nullptr;
    bool create = false;              ///< mkfifo the path (after `create_delay_ms`)
    long create_delay_ms = 0;
    long open_delay_ms = 0;           ///< after creating, before opening
    const std::byte* data = nullptr;
    std::size_t size = 0;
    const std::size_t* pieces = nullptr;  ///< write sizes, used in turn
    std::size_t piece_count = 0;
    long pause_every = 0;             ///< sleep 1-3 ms after every Nth write (0: never)
    bool repeat_until_epipe = false;  ///< write `data` over and over until EPIPE

    /// 0 when it went as planned, else an errno value (or -1: no EPIPE when one was expected).
    int run() const noexcept
    {
        if (create) {
            sleep_ms(create_delay_ms);
            if (::mkfifo(path, 0600) != 0)
                return errno;
        }
        sleep_ms(open_delay_ms);
        const int fd = ::open(path, O_WRONLY | O_CLOEXEC);  // blocks until a reader opens
        if (fd < 0)
            return errno;
        std::size_t written = 0, piece = 0, writes = 0;
        int result = 0;
        for (;;) {
            if (written == size) {
                if (!repeat_until_epipe)
                    break;
                written = 0;
            }
            std::size_t n = piece_count ? pieces[piece++ % piece_count] : size;
            if (n > size - written)
                n = size - written;
            const ssize_t w = ::write(fd, data + written, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                result = errno;
                break;
            }
            written += static_cast<std::size_t>(w);
            if (pause_every && ++writes % static_cast<std::size_t>(pause_every) == 0)
                sleep_ms(1 + static_cast<long>(writes % 3));
        }
        ::close(fd);
        if (repeat_until_epipe)
            return result == EPIPE ? 0 : (result ? result : -1);
        return result;
    }
};

/// A writer in a child process, reaped (with a time bound) by `wait()` or the destructor.
class child_writer {
public:
    explicit child_writer(const writer_plan& plan)
    {
        pid_ = ::fork();
        if (pid_ < 0)
            throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // The child must see EPIPE rather than die of SIGPIPE.
            ::signal(SIGPIPE, SIG_IGN);
            ::_exit(plan.run() & 0xff);
        }
    }
    child_writer(const child_writer&) = delete;
    child_writer& operator=(const child_writer&) = delete;
    ~child_writer()
    {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    /// The child's exit status, or -1 if it has not exited within `limit`.
    int wait(std::chrono::milliseconds limit)
    {
        const auto until = clock_type::now() + limit;
        for (;;) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                reaped_ = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            if (clock_type::now() >= until)
                return -1;
            sleep_ms(5);
        }
    }

private:
    pid_t pid_ = -1;
    bool reaped_ = false;
};

/// Irregular write sizes: single bytes, odd sizes, more than the default pipe capacity.
const std::vector<std::size_t> irregular_pieces{1, 7, 4096, 65536 + 3, 13, 100000, 2, 999, 262144, 5};

fifo_source_options quick_options()
{
    return {.appear_timeout = 5s, .writer_timeout = 5s, .poll_interval = 10ms, .read_size = 64 * 1024};
}

test::drained read_fifo(const std::string& path, fifo_source_options opts)
{
    return run_coro([&]() -> asio::awaitable<test::drained> {
        fifo_source src(co_await asio::this_coro::executor, path, opts);
        co_return co_await read_all(src);
    });
}

} // namespace

TEST_CASE("waits for the FIFO to appear, then reads a writer thread's bytes exactly")
{
    test::temp_dir dir;
    const std::string path = dir / "train_0";
    const auto data = test::pattern(3 * 1024 * 1024 + 17);
    writer_plan plan{.path = path.c_str(), .create = true, .create_delay_ms = 150, .data = data.data(),
                     .size = data.size(), .pieces = irregular_pieces.data(),
                     .piece_count = irregular_pieces.size(), .pause_every = 3};
    std::atomic<int> writer_result{-100};
    std::jthread writer([&] { writer_result = plan.run(); });

    auto got = read_fifo(path, quick_options());
    writer.join();
    CHECK(writer_result == 0);
    CHECK(got.ec == asio::error::eof);
    CHECK(got.bytes.size() == data.size());
    CHECK(got.bytes == data);
    CHECK(got.largest_chunk <= 64 * 1024);
}

TEST_CASE("reads a child process's bytes exactly, with the default read size")
{
    test::temp_dir dir;
    const std::string path = dir / "train_1";
    const auto data = test::pattern(5 * 1024 * 1024 + 3, 9);
    writer_plan plan{.path = path.c_str(), .create = true, .create_delay_ms = 100, .data = data.data(),
                     .size = data.size(), .pieces = irregular_pieces.data(),
                     .piece_count = irregular_pieces.size(), .pause_every = 5};
    child_writer child(plan);

    auto got = read_fifo(path, {.appear_timeout = 5s, .writer_timeout = 5s, .poll_interval = 10ms});
    CHECK(child.wait(5000ms) == 0);
    CHECK(got.ec == asio::error::eof);
    CHECK(got.bytes == data);
    CHECK(got.largest_chunk <= 1 * mib);
}

TEST_CASE("a FIFO that never appears times out, naming no other cause")
{
    test::temp_dir dir;
    const std::string path = dir / "never";
    const auto start = clock_type::now();
    run_coro([&]() -> asio::awaitable<void> {
        fifo_source src(co_await asio::this_coro::executor, path, {.appear_timeout = 200ms, .poll_interval = 20ms});
        auto [ec, chunk] = co_await src.async_next();
        CHECK(ec == errc::timed_out);
        CHECK(chunk.empty());
        CHECK(src.name() == path);
        auto [again, chunk2] = co_await src.async_next();
        CHECK(again == errc::timed_out);
    });
    const auto elapsed = clock_type::now() - start;
    CHECK(elapsed >= 200ms);
    CHECK(elapsed < 2000ms);
}

TEST_CASE("a FIFO with no writer is not mistaken for an empty one")
{
    // Linux's read() returns 0 on a FIFO nobody has opened for writing; that must not end
    // the data. With no writer ever, the source times out instead.
    test::temp_dir dir;
    const std::string path = dir / "no_writer";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const auto start = clock_type::now();
    auto got = read_fifo(path, {.writer_timeout = 200ms, .poll_interval = 10ms});
    CHECK(got.ec == errc::timed_out);
    CHECK(clock_type::now() - start >= 200ms);
}

TEST_CASE("a writer that connects late, after the reader opened, still delivers every byte")
{
    test::temp_dir dir;
    const std::string path = dir / "late";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const auto data = test::pattern(300000, 4);
    writer_plan plan{.path = path.c_str(), .open_delay_ms = 300, .data = data.data(), .size = data.size(),
                     .pieces = irregular_pieces.data(), .piece_count = irregular_pieces.size()};
    child_writer child(plan);
    auto got = read_fifo(path, quick_options());
    CHECK(child.wait(5000ms) == 0);
    CHECK(got.ec == asio::error::eof);
    CHECK(got.bytes == data);
}

TEST_CASE("a writer that connects and leaves without writing ends the data at once")
{
    test::temp_dir dir;
    const std::string path = dir / "empty";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    // The writer opens as soon as the reader has (a non-blocking open fails with ENXIO until
    // then) and closes at once, likely before the reader's next look: only POLLHUP says a
    // writer came and went.
    std::jthread writer([&] {
        for (int i = 0; i < 5000; ++i) {
            const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd >= 0) {
                ::close(fd);
                return;
            }
            sleep_ms(1);
        }
    });
    const auto start = clock_type::now();
    auto got = read_fifo(path, {.writer_timeout = 3s, .poll_interval = 50ms});
    CHECK(got.ec == asio::error::eof);
    CHECK(got.bytes.empty());
    CHECK(clock_type::now() - start < 2s);
}

TEST_CASE("closes the read end as soon as the data ends")
{
    test::temp_dir dir;
    const std::string path = dir / "close_at_end";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const auto data = test::pattern(5000);
    writer_plan plan{.path = path.c_str(), .data = data.data(), .size = data.size()};
    std::atomic<int> writer_result{-100};
    std::jthread writer([&] { writer_result = plan.run(); });
    run_coro([&]() -> asio::awaitable<void> {
        fifo_source src(co_await asio::this_coro::executor, path, quick_options());
        auto got = co_await read_all(src);
        CHECK(got.ec == asio::error::eof);
        CHECK(got.bytes == data);
        // The source is still alive, but no reader holds the FIFO: a writer cannot connect.
        const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        CHECK(fd < 0);
        CHECK(errno == ENXIO);
        if (fd >= 0)
            ::close(fd);
    });
    writer.join();
    CHECK(writer_result == 0);
}

TEST_CASE("asks the kernel for a larger pipe")
{
    std::ifstream max_file("/proc/sys/fs/pipe-max-size");
    std::size_t max_size = 0;
    max_file >> max_size;
    if (max_size < 1 * mib)
        return;  // this machine caps pipes below the default request; nothing to check

    test::temp_dir dir;
    const std::string path = dir / "big_pipe";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const auto data = test::pattern(1000);
    writer_plan plan{.path = path.c_str(), .open_delay_ms = 100, .data = data.data(), .size = data.size()};
    child_writer child(plan);
    run_coro([&]() -> asio::awaitable<void> {
        fifo_source src(co_await asio::this_coro::executor, path, quick_options());
        auto [ec, chunk] = co_await src.async_next();
        REQUIRE(!ec);
        // Another read end, only to ask the pipe's capacity.
        const int probe = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(probe >= 0);
        CHECK(::fcntl(probe, F_GETPIPE_SZ) == static_cast<int>(1 * mib));
        ::close(probe);
        auto rest = co_await read_all(src);
        CHECK(rest.ec == asio::error::eof);
    });
    CHECK(child.wait(5000ms) == 0);
}

TEST_CASE("closing the reader early gives the writer EPIPE, not a hang")
{
    test::temp_dir dir;
    const std::string path = dir / "early";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const auto data = test::pattern(1 * mib, 5);
    writer_plan plan{.path = path.c_str(), .data = data.data(), .size = data.size(),
                     .pieces = irregular_pieces.data(), .piece_count = irregular_pieces.size(),
                     .repeat_until_epipe = true};
    child_writer child(plan);
    run_coro([&]() -> asio::awaitable<void> {
        fifo_source src(co_await asio::this_coro::executor, path, quick_options());
        std::vector<std::byte> got;
        while (got.size() < 200000) {
            auto [ec, chunk] = co_await src.async_next();
            REQUIRE(!ec);
            got.insert(got.end(), chunk.begin(), chunk.end());
        }
        CHECK(std::equal(got.begin(), got.begin() + 200000, data.begin()));
        // The source is destroyed here, mid-stream.
    });
    // 0: the child's write failed with EPIPE, as a writer should see it.
    CHECK(child.wait(5000ms) == 0);
}

TEST_CASE("rejects a path that is not a FIFO")
{
    test::temp_dir dir;
    const std::string file = dir / "regular";
    test::write_file(file, test::pattern(10));
    CHECK(read_fifo(file, quick_options()).ec == errc::not_a_fifo);
    CHECK(read_fifo(dir.path().string(), quick_options()).ec == errc::not_a_fifo);
    CHECK(read_fifo("/dev/null", quick_options()).ec == errc::not_a_fifo);
}

TEST_CASE("rejects a zero read size or poll interval at construction")
{
    asio::io_context ctx;
    CHECK_THROWS_AS(fifo_source(ctx.get_executor(), "x", {.read_size = 0}), std::invalid_argument);
    CHECK_THROWS_AS(fifo_source(ctx.get_executor(), "x", {.poll_interval = 0ms}), std::invalid_argument);
    fifo_source ok(ctx.get_executor(), "/opt/ml/input/data/train_0");
    CHECK(ok.name() == "/opt/ml/input/data/train_0");
    CHECK(ok.start_offset() == 0);
}

TEST_CASE("cancel() aborts each kind of wait, and the source carries on")
{
    test::temp_dir dir;
    const std::string path = dir / "cancel";
    const auto data = test::pattern(50000, 6);

    run_coro([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        fifo_source src(ex, path, quick_options());

        // Waiting for the path.
        asio::post(ex, [&src] { src.cancel(); });
        auto [ec1, c1] = co_await src.async_next();
        CHECK(ec1 == asio::error::operation_aborted);

        // Waiting for a writer.
        REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
        asio::post(ex, [&src] { src.cancel(); });
        auto [ec2, c2] = co_await src.async_next();
        CHECK(ec2 == asio::error::operation_aborted);

        // Streaming, with a writer connected that has not written yet.
        const int wfd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(wfd >= 0);
        asio::post(ex, [&src] { src.cancel(); });
        auto [ec3, c3] = co_await src.async_next();
        CHECK(ec3 == asio::error::operation_aborted);

        // None of that lost anything.
        std::jthread writer([&] {
            std::size_t off = 0;
            while (off < data.size()) {
                const ssize_t w = ::write(wfd, data.data() + off, std::min<std::size_t>(7000, data.size() - off));
                if (w > 0)
                    off += static_cast<std::size_t>(w);
                else
                    sleep_ms(1);  // EAGAIN: the descriptor is non-blocking
            }
            ::close(wfd);
        });
        auto got = co_await read_all(src);
        CHECK(got.ec == asio::error::eof);
        CHECK(got.bytes == data);
    });
}

TEST_CASE("destroying a FIFO source while async_next waits is safe")
{
    test::temp_dir dir;
    const std::string path = dir / "destroy";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    for (int stage = 0; stage < 2; ++stage) {
        CAPTURE(stage);
        int wfd = -1;
        auto ec = run_coro([&]() -> asio::awaitable<error_code> {
            auto ex = co_await asio::this_coro::executor;
            auto src = std::make_unique<fifo_source>(ex, path, quick_options());
            if (stage == 1) {
                // Get it streaming first, so the destruction hits a pending read. A
                // non-blocking open for writing needs a reader: a second read end that
                // never reads stands in until the source has opened.
                const int holder = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
                REQUIRE(holder >= 0);
                wfd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                REQUIRE(wfd >= 0);
                REQUIRE(::write(wfd, "abc", 3) == 3);
                auto [ec0, c0] = co_await src->async_next();
                ::close(holder);
                REQUIRE(!ec0);
                CHECK(c0.size() == 3);
            }
            asio::post(ex, [&src] { src.reset(); });
            auto [ec, chunk] = co_await src->async_next();
            CHECK(chunk.empty());
            co_return ec;
        });
        CHECK(ec == asio::error::operation_aborted);
        if (wfd >= 0)
            ::close(wfd);
    }
}
