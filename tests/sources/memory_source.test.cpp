// Tests of memory_source: exact bytes at every chunk size, eof, ownership.
#include <pipemode/sources/memory_source.hpp>

#include "run_coro.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <vector>

using namespace pipemode;
using pipemode::test::read_all;
using pipemode::test::run_coro;

static_assert(byte_source<memory_source>);
static_assert(!byte_source<int>);
static_assert(!std::is_copy_constructible_v<memory_source>);

TEST_CASE("delivers the exact bytes at every chunk size, then eof")
{
    const auto data = test::pattern(97);
    for (std::size_t chunk_size = 0; chunk_size <= data.size() + 1; ++chunk_size) {
        CAPTURE(chunk_size);
        memory_source src(data, "pattern", {.chunk_size = chunk_size});
        auto got = run_coro(read_all(src));
        CHECK(got.ec == asio::error::eof);
        CHECK(got.bytes == data);
        const std::size_t effective = chunk_size == 0 ? data.size() : chunk_size;
        CHECK(got.chunks == (data.size() + effective - 1) / effective);
        CHECK(got.largest_chunk == std::min(effective, data.size()));
    }
}

TEST_CASE("chunks are views into the caller's bytes, not copies")
{
    const auto data = test::pattern(10);
    memory_source src(data, "view", {.chunk_size = 4});
    auto [ec, chunk] = src.next_now();
    REQUIRE(!ec);
    CHECK(chunk.data() == data.data());
    auto [ec2, chunk2] = src.next_now();
    REQUIRE(!ec2);
    CHECK(chunk2.data() == data.data() + 4);
}

TEST_CASE("eof is repeated on every call after the end")
{
    const auto data = test::pattern(5);
    memory_source src(data, "x", {.chunk_size = 5});
    run_coro([&]() -> asio::awaitable<void> {
        auto [ec1, c1] = co_await src.async_next();
        CHECK(!ec1);
        CHECK(c1.size() == 5);
        for (int i = 0; i < 3; ++i) {
            auto [ec, c] = co_await src.async_next();
            CHECK(ec == asio::error::eof);
            CHECK(c.empty());
        }
    });
}

TEST_CASE("an empty source ends at once")
{
    memory_source borrowed(std::span<const std::byte>{}, "empty");
    auto a = run_coro(read_all(borrowed));
    CHECK(a.ec == asio::error::eof);
    CHECK(a.chunks == 0);

    memory_source null_owner(std::shared_ptr<const std::vector<std::byte>>{}, "null");
    auto b = run_coro(read_all(null_owner));
    CHECK(b.ec == asio::error::eof);
    CHECK(b.bytes.empty());
}

TEST_CASE("an owning source keeps its bytes alive")
{
    auto data = test::pattern(1000);
    const auto expected = data;
    memory_source owned(std::move(data), "owned", {.chunk_size = 333});
    // Moving the source must not move the bytes out from under the span.
    memory_source moved = std::move(owned);
    auto got = run_coro(read_all(moved));
    CHECK(got.bytes == expected);
    CHECK(got.chunks == 4);

    auto shared = std::make_shared<const std::vector<std::byte>>(expected);
    memory_source a(shared, "a", {.chunk_size = 10});
    memory_source b(shared, "b");
    shared.reset();
    CHECK(run_coro(read_all(a)).bytes == expected);
    CHECK(run_coro(read_all(b)).bytes == expected);
}

TEST_CASE("names itself memory:NAME and reports its start offset")
{
    const auto data = test::pattern(3);
    memory_source src(data, "train/part-0", {.start_offset = 4096});
    CHECK(src.name() == "memory:train/part-0");
    CHECK(src.start_offset() == 4096);
    CHECK(memory_source(data).name() == "memory:bytes");
    CHECK(memory_source(data).start_offset() == 0);
}
