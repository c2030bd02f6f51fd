// Tests of sagemaker::fifo_writer against real FIFOs and reader threads: exact bytes and the end
// of data, a reader leaving early (no SIGPIPE, `reader_closed`), backpressure against a slow
// reader, the wait for a reader (timeout, never blocking the io_context), and the paths it
// refuses.
#include <pipemode/sagemaker/fifo_writer.hpp>

#include "run_coro.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;
using namespace pipemode::sagemaker;
using namespace std::chrono_literals;
using pipemode::test::pattern;
using pipemode::test::run_coro;
using pipemode::test::temp_dir;
namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;

/// What a test reader thread does and what it saw.
struct reader_plan {
    std::string path = {};
    std::size_t piece = 64 * kib;                  ///< bytes per read()
    std::size_t stop_after = SIZE_MAX;             ///< close after this many bytes
    std::chrono::microseconds pause{0};            ///< sleep between reads
    std::chrono::milliseconds start_delay{0};      ///< before opening

    std::atomic<std::size_t> total{0};  ///< bytes read so far (updated after each read)
    std::vector<std::byte> bytes = {};
    bool eof = false;
    int error = 0;
};

/// Reads the FIFO as a training program would, on its own thread (a `std::jthread`, so that a
/// failing test still joins it); every wait is bounded (10 s) so that a broken writer fails the
/// test instead of hanging it.
void run_reader(reader_plan& p)
{
    std::this_thread::sleep_for(p.start_delay);
    // The writer may not have created the FIFO yet.
    int fd = -1;
    for (int i = 0; i < 1000 && fd < 0; ++i) {
        fd = ::open(p.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
            break;
        if (fd < 0)
            std::this_thread::sleep_for(10ms);
    }
    if (fd < 0) {
        p.error = errno;
        return;
    }
    std::vector<std::byte> buf(p.piece);
    while (p.bytes.size() < p.stop_after) {
        // Without a writer yet, poll() waits (no POLLHUP before a writer has come and gone).
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 10'000) <= 0) {
            p.error = ETIMEDOUT;
            break;
        }
        const auto n = ::read(fd, buf.data(), std::min(p.piece, p.stop_after - p.bytes.size()));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            p.error = errno;
            break;
        }
        if (n == 0) {
            p.eof = true;
            break;
        }
        p.bytes.insert(p.bytes.end(), buf.begin(), buf.begin() + n);
        p.total.store(p.bytes.size(), std::memory_order_release);
        if (p.pause.count() != 0)
            std::this_thread::sleep_for(p.pause);
    }
    ::close(fd);
}

/// A data directory with a sibling directory outside it.
struct dirs {
    temp_dir root;
    fs::path data = root.path() / "data";
    fs::path outside = root.path() / "outside";
    dirs()
    {
        fs::create_directory(data);
        fs::create_directory(outside);
    }
};

std::atomic<int> sigpipes{0};

extern "C" void count_sigpipe(int) { sigpipes.fetch_add(1); }

/// The message of the `std::invalid_argument` that constructing a writer for `path` throws.
std::string refusal(const fs::path& data_dir, const fs::path& path)
{
    asio::io_context io;
    try {
        fifo_writer w(io.get_executor(), data_dir, path);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("the writer accepted " << path);
    return {};
}

} // namespace

static_assert(!std::is_copy_constructible_v<fifo_writer>);
static_assert(std::is_nothrow_move_constructible_v<fifo_writer>);

TEST_CASE("fifo_writer: a reader gets exactly the bytes, then the end of data, the FIFO is removed")
{
    dirs d;
    const auto path = d.data / "train_0";
    const auto data = pattern(3 * mib + 123, 7);
    reader_plan rp{.path = path.string(), .piece = 10'000, .start_delay = 200ms};

    const auto result = run_coro([&]() -> asio::awaitable<write_result> {
        const auto ex = co_await asio::this_coro::executor;
        fifo_writer w(ex, d.data, "train_0");
        // Created at construction, a FIFO of mode 0600, before any reader came.
        struct ::stat st {};
        REQUIRE(::lstat(path.c_str(), &st) == 0);
        CHECK(S_ISFIFO(st.st_mode));
        CHECK((st.st_mode & 0777) == 0600);
        CHECK(w.path() == fs::canonical(d.data) / "train_0");

        // While the writer waits for its reader, the io_context keeps running other work.
        std::jthread reader([&] { run_reader(rp); });
        auto ticks = std::make_shared<int>(0);
        auto ticker = std::make_shared<asio::steady_timer>(ex);
        std::function<void()> tick = [ticks, ticker, &tick] {
            ticker->expires_after(10ms);
            ticker->async_wait([ticks, &tick](error_code ec) {
                if (!ec) {
                    ++*ticks;
                    tick();
                }
            });
        };
        tick();
        const auto waited = co_await w.async_wait_for_reader();
        ticker->cancel();
        CHECK(!waited);
        CHECK(*ticks >= 5);  // the reader came after 200 ms; 10 ms ticks ran meanwhile
        CHECK(w.connected());
        CHECK(w.pipe_capacity() >= 64 * kib);

        // Irregular pieces, the last one of a single byte.
        write_result total{write_status::written, 0, {}};
        std::size_t at = 0, step = 1;
        while (at < data.size()) {
            const auto n = std::min(step, data.size() - at);
            const auto r = co_await w.async_write(std::span(data).subspan(at, n));
            if (r.status != write_status::written) {
                total = r;
                break;
            }
            total.bytes_written += r.bytes_written;
            at += n;
            step = step * 7 % 300'007 + 1;
        }
        w.close();
        CHECK(!w.connected());
        CHECK(!fs::exists(fs::symlink_status(path)));  // removed once closed
        reader.join();
        co_return total;
    });
    CHECK(result.status == write_status::written);
    CHECK(result.bytes_written == data.size());
    CHECK(rp.error == 0);
    CHECK(rp.eof);
    CHECK(rp.bytes == data);
}

TEST_CASE("fifo_writer: a reader that leaves early is reader_closed, and no SIGPIPE is delivered")
{
    // The default disposition would kill the test; a handler would count a delivery.
    struct sigaction sa {}, old {};
    sa.sa_handler = count_sigpipe;
    ::sigemptyset(&sa.sa_mask);
    REQUIRE(::sigaction(SIGPIPE, &sa, &old) == 0);
    sigpipes = 0;

    dirs d;
    const auto data = pattern(16 * mib, 3);
    reader_plan rp{.path = (d.data / "train_0").string(), .stop_after = 300'000};
    std::jthread reader;
    const auto [first, second] = run_coro([&]() -> asio::awaitable<std::pair<write_result, write_result>> {
        fifo_writer w(co_await asio::this_coro::executor, d.data, d.data / "train_0");
        reader = std::jthread([&] { run_reader(rp); });
        // One write of more than the pipe and the reader take together: it must end early.
        const auto a = co_await w.async_write(data);
        const auto b = co_await w.async_write(std::span(data).first(10));
        CHECK(w.reader_closed());
        co_return std::pair(a, b);
    });
    reader.join();

    CHECK(first.status == write_status::reader_closed);
    CHECK(!first.error);
    CHECK(first.bytes_written >= 300'000);
    CHECK(first.bytes_written < data.size());
    CHECK(second.status == write_status::reader_closed);
    CHECK(second.bytes_written == 0);
    // What the reader took is the data's start.
    REQUIRE(rp.bytes.size() == 300'000);
    CHECK(std::equal(rp.bytes.begin(), rp.bytes.end(), data.begin()));
    // The SIGPIPE the failed write raised was consumed, neither delivered nor left pending.
    CHECK(sigpipes == 0);
    sigset_t pending;
    ::sigemptyset(&pending);
    ::sigpending(&pending);
    CHECK(::sigismember(&pending, SIGPIPE) == 0);
    ::sigaction(SIGPIPE, &old, nullptr);
}

TEST_CASE("fifo_writer: backpressure: a slow reader is never more than the pipe behind")
{
    dirs d;
    const auto data = pattern(4 * mib, 11);
    // 16 KiB a millisecond at most: the writer could fill any buffer of its own much faster.
    reader_plan rp{.path = (d.data / "train_0").string(), .piece = 16 * kib, .pause = 1000us};
    std::jthread reader([&] { run_reader(rp); });
    std::size_t capacity = 0, worst_lead = 0, writes = 0;
    run_coro([&]() -> asio::awaitable<void> {
        fifo_writer w(co_await asio::this_coro::executor, d.data, d.data / "train_0");
        REQUIRE(!co_await w.async_wait_for_reader());
        capacity = w.pipe_capacity();
        constexpr std::size_t piece = 64 * kib;
        for (std::size_t at = 0; at < data.size(); at += piece) {
            const auto r = co_await w.async_write(std::span(data).subspan(at, piece));
            REQUIRE(r.status == write_status::written);
            // Everything written is either read or in the pipe; the reader's count lags its
            // read() by at most one piece.
            const auto lead = at + piece - rp.total.load(std::memory_order_acquire);
            worst_lead = std::max(worst_lead, lead);
            ++writes;
        }
        w.close();
    });
    reader.join();
    REQUIRE(capacity >= 64 * kib);
    CHECK(worst_lead <= capacity + rp.piece);
    CHECK(worst_lead >= capacity / 2);  // the pipe did fill: the reader really was the slow one
    CHECK(writes == 64);
    CHECK(rp.eof);
    CHECK(rp.bytes == data);
}

TEST_CASE("fifo_writer: the wait for a reader times out, is cancellable, and ends at close")
{
    dirs d;
    SECTION("reader_timeout")
    {
        const auto start = clock_type::now();
        const auto ec = run_coro([&]() -> asio::awaitable<error_code> {
            fifo_writer w(co_await asio::this_coro::executor, d.data, "train_0",
                          {.reader_timeout = 150ms, .poll_interval = 10ms});
            co_return co_await w.async_wait_for_reader();
        });
        const auto elapsed = clock_type::now() - start;
        CHECK(ec == errc::timed_out);
        CHECK(elapsed >= 150ms);
        CHECK(elapsed < 3s);
        CHECK(!fs::exists(d.data / "train_0"));  // the destructor removed it
    }
    SECTION("cancel, then a reader after all")
    {
        reader_plan rp{.path = (d.data / "train_0").string(), .start_delay = 100ms};
        std::jthread reader;
        const auto [cancelled, later] = run_coro([&]() -> asio::awaitable<std::pair<error_code, write_result>> {
            const auto ex = co_await asio::this_coro::executor;
            fifo_writer w(ex, d.data, "train_0");
            asio::steady_timer t(ex, 50ms);
            t.async_wait([&](error_code) { w.cancel(); });
            const auto a = co_await w.async_wait_for_reader();
            reader = std::jthread([&] { run_reader(rp); });
            const std::array<std::byte, 3> abc{std::byte{'a'}, std::byte{'b'}, std::byte{'c'}};
            const auto b = co_await w.async_write(abc);  // waits for the reader itself
            co_return std::pair(a, b);
        });
        reader.join();
        CHECK(cancelled == asio::error::operation_aborted);
        CHECK(later.status == write_status::written);
        CHECK(later.bytes_written == 3);
        CHECK(rp.eof);
        CHECK(rp.bytes.size() == 3);
    }
    SECTION("close")
    {
        const auto ec = run_coro([&]() -> asio::awaitable<error_code> {
            const auto ex = co_await asio::this_coro::executor;
            fifo_writer w(ex, d.data, "train_0", {.remove_on_close = false});
            asio::steady_timer t(ex, 50ms);
            t.async_wait([&](error_code) { w.close(); });
            co_return co_await w.async_wait_for_reader();
        });
        CHECK(ec == asio::error::operation_aborted);
        CHECK(fs::is_fifo(d.data / "train_0"));  // kept: remove_on_close = false
    }
}

TEST_CASE("fifo_writer: refuses paths outside the data directory, symbolic links and other files")
{
    dirs d;
    CHECK_THAT(refusal(d.data, d.outside / "train_0"), Catch::Contains("outside the data directory"));
    CHECK_THAT(refusal(d.data, d.data / ".." / "outside" / "train_0"), Catch::Contains("outside the data directory"));
    CHECK_THAT(refusal(d.data, "../train_0"), Catch::Contains("outside the data directory"));
    CHECK(!fs::exists(d.root.path() / "train_0"));
    CHECK(fs::is_empty(d.outside));

    // A directory inside that is a symbolic link to one outside.
    fs::create_directory_symlink(d.outside, d.data / "sub");
    CHECK_THAT(refusal(d.data, d.data / "sub" / "train_0"), Catch::Contains("outside the data directory"));
    CHECK(fs::is_empty(d.outside));

    // A symbolic link at the path: neither followed nor replaced, whether its target exists or not.
    fs::create_symlink(d.outside / "target", d.data / "train_0");
    CHECK_THAT(refusal(d.data, d.data / "train_0"), Catch::Contains("symbolic link"));
    CHECK(!fs::exists(d.outside / "target"));
    CHECK(fs::is_symlink(d.data / "train_0"));
    test::write_file((d.outside / "target").string(), test::bytes_of("keep"));
    CHECK_THAT(refusal(d.data, d.data / "train_0"), Catch::Contains("symbolic link"));
    CHECK(test::read_file((d.outside / "target").string()).size() == 4);

    // A regular file and a directory are never overwritten.
    test::write_file((d.data / "train_1").string(), test::bytes_of("data"));
    CHECK_THAT(refusal(d.data, d.data / "train_1"), Catch::Contains("regular file"));
    CHECK(test::read_file((d.data / "train_1").string()).size() == 4);
    fs::create_directory(d.data / "train_2");
    CHECK_THAT(refusal(d.data, d.data / "train_2"), Catch::Contains("not a FIFO"));

    // No data directory, or a path with no file name.
    CHECK_THAT(refusal(d.root.path() / "missing", "train_0"), Catch::Contains("data directory does not exist"));
    CHECK_THAT(refusal(d.data, d.data / "."), Catch::Contains("file name"));

    // A FIFO already there (a restarted agent's) is reused, not replaced.
    REQUIRE(::mkfifo((d.data / "train_3").c_str(), 0600) == 0);
    struct ::stat before {}, after {};
    REQUIRE(::stat((d.data / "train_3").c_str(), &before) == 0);
    {
        asio::io_context io;
        fifo_writer w(io.get_executor(), d.data, "train_3", {.remove_on_close = false});
        REQUIRE(::stat((d.data / "train_3").c_str(), &after) == 0);
        CHECK(after.st_ino == before.st_ino);
    }
    // And a subdirectory of the data directory is inside it.
    fs::create_directory(d.data / "nested");
    asio::io_context io;
    CHECK_NOTHROW(fifo_writer(io.get_executor(), d.data, d.data / "nested" / "train_0"));
}
