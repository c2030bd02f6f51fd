// Tests of file_source: contents at sizes around the read size, byte ranges, errors, the
// read-ahead, cancellation and destruction with a read in flight.
#include <pipemode/sources/file_source.hpp>

#include "run_coro.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/errc.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;
using pipemode::test::read_all;
using pipemode::test::run_coro;

static_assert(byte_source<file_source>);
static_assert(!std::is_copy_constructible_v<file_source>);

namespace {

constexpr std::size_t small_read = 4096;

/// Reads the whole source at `path` with the given options, on a fresh io_context.
test::drained read_path(const std::string& path, file_source_options opts)
{
    return run_coro([&]() -> asio::awaitable<test::drained> {
        file_source src(co_await asio::this_coro::executor, path, opts);
        co_return co_await read_all(src);
    });
}

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::size_t offset, std::size_t length)
{
    return {v.begin() + static_cast<std::ptrdiff_t>(offset), v.begin() + static_cast<std::ptrdiff_t>(offset + length)};
}

} // namespace

TEST_CASE("reads whole files of sizes around the read size exactly")
{
    test::temp_dir dir;
    asio::thread_pool pool(2);
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, small_read - 1, small_read, small_read + 1,
                             3 * small_read + 5}) {
        CAPTURE(size);
        const std::string path = dir / ("f" + std::to_string(size));
        test::write_file(path, test::pattern(size, static_cast<std::uint32_t>(size)));
        const auto expected = test::read_file(path);
        REQUIRE(expected.size() == size);

        auto got = read_path(path, {.read_size = small_read, .blocking_executor = pool.get_executor()});
        CHECK(got.ec == asio::error::eof);
        CHECK(got.bytes == expected);
        CHECK(got.chunks == (size + small_read - 1) / small_read);
        CHECK(got.largest_chunk == std::min(size, small_read));
    }
}

TEST_CASE("reads byte ranges at every alignment")
{
    test::temp_dir dir;
    asio::thread_pool pool(2);
    const std::string path = dir / "ranges";
    const auto data = test::pattern(3 * small_read + 5, 7);
    test::write_file(path, data);

    const std::size_t size = data.size();
    for (std::size_t offset : {std::size_t{0}, std::size_t{1}, small_read - 1, small_read, small_read + 1,
                               2 * small_read + 3, size - 1, size}) {
        for (std::size_t length : {std::size_t{0}, std::size_t{1}, small_read - 1, small_read, small_read + 1,
                                   2 * small_read + 7}) {
            if (offset + length > size)
                continue;
            CAPTURE(offset, length);
            auto got = read_path(path, {.offset = offset, .length = length, .read_size = small_read,
                                        .blocking_executor = pool.get_executor()});
            CHECK(got.ec == asio::error::eof);
            CHECK(got.bytes == slice(data, offset, length));
        }
        // No length: to the end of the file.
        CAPTURE(offset);
        auto rest = read_path(path, {.offset = offset, .read_size = small_read, .blocking_executor = pool.get_executor()});
        CHECK(rest.ec == asio::error::eof);
        CHECK(rest.bytes == slice(data, offset, size - offset));
    }
}

TEST_CASE("reports the range's offset as its start offset and the path as its name")
{
    asio::io_context ctx;
    file_source src(ctx.get_executor(), "/data/train.rec", {.offset = 12345, .length = 10});
    CHECK(src.start_offset() == 12345);
    CHECK(src.name() == "/data/train.rec");
    file_source whole(ctx.get_executor(), "x");
    CHECK(whole.start_offset() == 0);
}

TEST_CASE("a range past the end of the file is an error, not a short range")
{
    test::temp_dir dir;
    const std::string path = dir / "short";
    test::write_file(path, test::pattern(100));
    auto exact = read_path(path, {.offset = 40, .length = 60});
    CHECK(exact.ec == asio::error::eof);
    CHECK(exact.bytes.size() == 60);

    auto too_long = read_path(path, {.offset = 40, .length = 61});
    CHECK(too_long.ec == errc::range_past_end);
    CHECK(too_long.bytes.empty());

    auto past = read_path(path, {.offset = 101});
    CHECK(past.ec == errc::range_past_end);

    auto at_end = read_path(path, {.offset = 100});
    CHECK(at_end.ec == asio::error::eof);
    CHECK(at_end.bytes.empty());
}

TEST_CASE("open errors come through the first async_next, and again on later calls")
{
    test::temp_dir dir;
    const std::string missing = dir / "no-such-file";
    run_coro([&]() -> asio::awaitable<void> {
        file_source src(co_await asio::this_coro::executor, missing);
        auto [ec, chunk] = co_await src.async_next();
        CHECK(ec == boost::system::errc::no_such_file_or_directory);
        CHECK(ec.category() == boost::system::system_category());
        CHECK(chunk.empty());
        CHECK(src.name() == missing);
        auto [again, chunk2] = co_await src.async_next();
        CHECK(again == boost::system::errc::no_such_file_or_directory);
    });

    CHECK(read_path(dir.path().string(), {}).ec == boost::system::errc::is_a_directory);

    // A FIFO must not block the open (nobody writes to it) and is rejected.
    const std::string fifo = dir / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(read_path(fifo, {}).ec == errc::not_a_regular_file);
}

TEST_CASE("rejects a zero read size at construction")
{
    asio::io_context ctx;
    CHECK_THROWS_AS(file_source(ctx.get_executor(), "x", {.read_size = 0}), std::invalid_argument);
    CHECK_THROWS_AS(file_source(ctx.get_executor(), "x", {.offset = 10, .length = ~std::uint64_t{0}}),
                    std::invalid_argument);
}

TEST_CASE("reads the next chunk ahead into the other of two buffers")
{
    test::temp_dir dir;
    asio::thread_pool pool(1);
    const std::string path = dir / "ahead";
    const auto data = test::pattern(4 * small_read);
    test::write_file(path, data);

    run_coro([&]() -> asio::awaitable<void> {
        file_source src(co_await asio::this_coro::executor, path,
                        {.read_size = small_read, .blocking_executor = pool.get_executor()});
        CHECK(!src.read_in_flight());
        std::vector<const std::byte*> buffers;
        for (std::size_t i = 0; i < 4; ++i) {
            auto [ec, chunk] = co_await src.async_next();
            REQUIRE(!ec);
            CHECK(chunk.size() == small_read);
            CHECK(std::vector<std::byte>(chunk.begin(), chunk.end()) == slice(data, i * small_read, small_read));
            buffers.push_back(chunk.data());
            // While the caller holds chunk i, chunk i+1 is being read (unless i is the last).
            CHECK(src.read_in_flight() == (i < 3));
        }
        CHECK(buffers[0] != buffers[1]);
        CHECK(buffers[0] == buffers[2]);
        CHECK(buffers[1] == buffers[3]);
        auto [ec, chunk] = co_await src.async_next();
        CHECK(ec == asio::error::eof);
    });
}

TEST_CASE("cancel() aborts a waiting async_next, and the next call gets the chunk")
{
    test::temp_dir dir;
    const std::string path = dir / "cancel-once";
    const auto data = test::pattern(3 * small_read + 2);
    test::write_file(path, data);

    // The "pool" is an io_context nobody runs until the cancel has been seen, so the read
    // cannot win the race.
    asio::io_context blocking;
    std::jthread blocking_thread;  // joins on the way out, even when a check throws
    run_coro([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        file_source src(ex, path, {.read_size = small_read, .blocking_executor = blocking.get_executor()});
        asio::post(ex, [&src] { src.cancel(); });
        auto [ec, chunk] = co_await src.async_next();
        CHECK(ec == asio::error::operation_aborted);
        CHECK(chunk.empty());
        CHECK(src.read_in_flight());

        auto work = asio::make_work_guard(blocking);
        blocking_thread = std::jthread([&blocking] { blocking.run(); });
        auto got = co_await read_all(src);
        CHECK(got.ec == asio::error::eof);
        CHECK(got.bytes == data);
    });
}

TEST_CASE("cancel() at any moment loses no bytes")
{
    test::temp_dir dir;
    asio::thread_pool pool(1);
    const std::string path = dir / "cancel";
    const auto data = test::pattern(16 * small_read + 1);
    test::write_file(path, data);

    // Cancels land at different moments relative to the pool's reads (before the result
    // is posted back, after, while it is queued); whatever the timing, every byte arrives.
    for (int round = 0; round < 20; ++round) {
        CAPTURE(round);
        run_coro([&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            file_source src(ex, path, {.read_size = small_read, .blocking_executor = pool.get_executor()});
            std::vector<std::byte> got;
            for (int call = 0; call < 1000; ++call) {
                // Queued before the read is started, so it runs while async_next waits for it
                // (or, if the chunk was already there, after async_next has returned it).
                if (call % 2 == 0 || call % 3 == round % 3)
                    asio::post(ex, [&src] { src.cancel(); });
                auto [ec, chunk] = co_await src.async_next();
                if (ec == asio::error::operation_aborted)
                    continue;
                if (ec == asio::error::eof)
                    break;
                REQUIRE(!ec);
                got.insert(got.end(), chunk.begin(), chunk.end());
            }
            // Let a cancel() queued for a call that completed without waiting run while the
            // source is still alive.
            co_await asio::post(ex, asio::use_awaitable);
            CHECK(got == data);
        });
    }
}

TEST_CASE("destroying the source with a read in flight is safe")
{
    // Under AddressSanitizer this would report a use after free if the pool thread wrote
    // into a buffer the source had freed.
    test::temp_dir dir;
    const std::string path = dir / "big";
    const auto data = test::pattern(64 * small_read);
    test::write_file(path, data);

    for (int round = 0; round < 20; ++round) {
        asio::thread_pool pool(2);
        auto first = run_coro([&]() -> asio::awaitable<std::vector<std::byte>> {
            file_source src(co_await asio::this_coro::executor, path,
                            {.read_size = 16 * small_read, .blocking_executor = pool.get_executor()});
            auto [ec, chunk] = co_await src.async_next();
            REQUIRE(!ec);
            CHECK(src.read_in_flight());
            co_return std::vector<std::byte>(chunk.begin(), chunk.end());
            // The source dies here with the read of the second chunk in flight.
        });
        CHECK(first == slice(data, 0, 16 * small_read));
        pool.join();
    }
}

TEST_CASE("destroying a file source while async_next waits is safe")
{
    test::temp_dir dir;
    const std::string path = dir / "waiting";
    const auto data = test::pattern(8 * small_read);
    test::write_file(path, data);
    asio::thread_pool pool(1);

    auto ec = run_coro([&]() -> asio::awaitable<error_code> {
        auto ex = co_await asio::this_coro::executor;
        auto src = std::make_unique<file_source>(ex, path,
                                                 file_source_options{.read_size = small_read,
                                                                     .blocking_executor = pool.get_executor()});
        // Runs while the coroutine below waits for the open and first read.
        asio::post(ex, [&src] { src.reset(); });
        auto [ec, chunk] = co_await src->async_next();
        CHECK(chunk.empty());
        co_return ec;
    });
    CHECK(ec == asio::error::operation_aborted);
}

TEST_CASE("closes the file as soon as the data ends")
{
    test::temp_dir dir;
    const std::string path = dir / "close_at_end";
    test::write_file(path, test::pattern(3 * small_read));
    asio::thread_pool pool(1);
    const auto open_descriptors = [] {
        return std::distance(std::filesystem::directory_iterator("/proc/self/fd"), std::filesystem::directory_iterator{});
    };
    run_coro([&]() -> asio::awaitable<void> {
        file_source src(co_await asio::this_coro::executor, path,
                        {.read_size = small_read, .blocking_executor = pool.get_executor()});
        // Counted after the construction, which may open the io_context's reactor's own.
        const auto before = open_descriptors();
        auto [ec, chunk] = co_await src.async_next();
        REQUIRE(!ec);
        CHECK(open_descriptors() == before + 1);
        auto rest = co_await read_all(src);
        CHECK(rest.ec == asio::error::eof);
        CHECK(open_descriptors() == before);  // while the source still exists
    });
}

TEST_CASE("uses the default blocking pool when given no executor")
{
    test::temp_dir dir;
    const std::string path = dir / "default";
    const auto data = test::pattern(3 * small_read + 1);
    test::write_file(path, data);
    auto got = read_path(path, {.read_size = small_read});
    CHECK(got.ec == asio::error::eof);
    CHECK(got.bytes == data);
}

TEST_CASE("reads a large file with the default read size")
{
    test::temp_dir dir;
    const std::string path = dir / "large";
    const auto data = test::pattern(9 * mib + 123, 3);
    test::write_file(path, data);
    asio::thread_pool pool(1);
    auto got = read_path(path, {.blocking_executor = pool.get_executor()});
    CHECK(got.ec == asio::error::eof);
    CHECK(got.chunks == 3);
    CHECK(got.largest_chunk == 4 * mib);
    CHECK(got.bytes == data);
}
