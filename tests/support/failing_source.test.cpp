// Tests of the failing_source fake itself: it must fail exactly where it is told to.
#include "failing_source.hpp"

#include <pipemode/sources/memory_source.hpp>

#include "run_coro.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <boost/system/errc.hpp>

#include <vector>

using namespace pipemode;
using pipemode::test::failing_source;
using pipemode::test::read_all;
using pipemode::test::run_coro;

static_assert(byte_source<failing_source<memory_source>>);

namespace {

const error_code io_error = make_error_code(boost::system::errc::io_error);

} // namespace

TEST_CASE("fails on the Nth chunk after passing the earlier chunks through")
{
    const auto data = test::pattern(1000);
    for (std::size_t fail_at = 0; fail_at < 10; ++fail_at) {
        CAPTURE(fail_at);
        failing_source src(memory_source(data, "f", {.chunk_size = 100}), fail_at, io_error);
        auto got = run_coro(read_all(src));
        CHECK(got.ec == io_error);
        CHECK(got.chunks == fail_at);
        CHECK(got.bytes == std::vector<std::byte>(data.begin(), data.begin() + 100 * fail_at));
        CHECK(src.failed());
        CHECK(src.bytes_delivered() == 100 * fail_at);
    }
}

TEST_CASE("keeps failing after the failure")
{
    const auto data = test::pattern(10);
    failing_source src(memory_source(data, "f", {.chunk_size = 1}), 2, io_error);
    run_coro([&]() -> asio::awaitable<void> {
        for (int i = 0; i < 2; ++i) {
            auto [ec, chunk] = co_await src.async_next();
            CHECK(!ec);
            CHECK(chunk.size() == 1);
        }
        for (int i = 0; i < 3; ++i) {
            auto [ec, chunk] = co_await src.async_next();
            CHECK(ec == io_error);
            CHECK(chunk.empty());
        }
    });
    CHECK(src.calls() == 5);
}

TEST_CASE("passes the inner source's eof through when it ends first")
{
    const auto data = test::pattern(250);
    failing_source src(memory_source(data, "short", {.chunk_size = 100}), 5, io_error);
    auto got = run_coro(read_all(src));
    CHECK(got.ec == asio::error::eof);
    CHECK(got.bytes == data);
    CHECK(!src.failed());
    CHECK(src.name() == "memory:short");
}

TEST_CASE("forwards the start offset")
{
    const auto data = test::pattern(4);
    failing_source src(memory_source(data, "x", {.start_offset = 77}), 0, io_error);
    CHECK(src.start_offset() == 77);
}
