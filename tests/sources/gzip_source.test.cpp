// Tests of gzip_source: decompressed chunks over memory sources delivering 1-byte and larger
// chunks, bounded chunk size, multi-member streams, truncation, corruption and inner errors.
#include <pipemode/sources/any_source.hpp>
#include <pipemode/sources/gzip_source.hpp>
#include <pipemode/sources/memory_source.hpp>

#include "decoder_harness.hpp"
#include "failing_source.hpp"
#include "run_coro.hpp"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <random>
#include <string>
#include <vector>

using namespace pipemode;

static_assert(byte_source<gzip_source<memory_source>>);
static_assert(byte_source<gzip_source<any_byte_source>>);

namespace {

#include "gzip_vectors.inc"

struct drained {
    std::string text;
    error_code ec;  // the error that ended it (eof when all went well)
    std::string detail;
    std::size_t largest_chunk = 0;
};

template <class Source>
asio::awaitable<drained> drain(Source src)
{
    drained d;
    for (;;) {
        auto [ec, chunk] = co_await src.async_next();
        if (ec) {
            d.ec = ec;
            d.detail = std::string(src.error_detail());
            // An ended source stays ended.
            auto [again, rest] = co_await src.async_next();
            if (again != ec || !rest.empty())
                d.detail = "the source did not stay ended";
            co_return d;
        }
        CHECK_FALSE(chunk.empty());
        d.largest_chunk = std::max(d.largest_chunk, chunk.size());
        d.text += test::as_string(chunk);
    }
}

memory_source memory(const std::string& bytes, std::size_t chunk)
{
    return memory_source(test::as_bytes(bytes), "x.gz", memory_source_options{.chunk_size = chunk});
}

// Gzip of `text` made with zlib's deflate, for data larger than the vectors.
std::string deflate_gzip(const std::string& text)
{
    z_stream z{};
    REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, text.size()), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    z.avail_in = static_cast<uInt>(text.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

} // namespace

TEST_CASE("decompresses Python's and the gzip tool's members, inner chunks of any size")
{
    const std::string multi = python_gz + empty_gz + cli_gz;
    for (std::size_t inner_chunk : {1U, 2U, 13U, 0U}) {
        INFO("inner chunks of " << inner_chunk);
        const auto d = test::run_coro(drain(gzip_source(memory(multi, inner_chunk))));
        CHECK(d.ec == asio::error::eof);
        CHECK(d.text == python_text + cli_text);
    }
    // Through any_byte_source, as the pipeline holds sources.
    const auto d = test::run_coro(drain(gzip_source<any_byte_source>(any_byte_source(memory(cli_gz, 5)))));
    CHECK(d.text == cli_text);
    gzip_source<memory_source> named(memory(cli_gz, 0));
    CHECK(named.name() == "memory:x.gz");
    CHECK(named.start_offset() == 0);
}

TEST_CASE("chunks never exceed chunk_size, and the memory bound says so")
{
    std::mt19937 rng(1);
    std::string text;
    for (int i = 0; i < 20000; ++i)
        text += std::to_string(rng() % 1000) + (i % 10 == 9 ? "\n" : ",");
    const std::string gz = deflate_gzip(text);
    for (std::size_t chunk_size : {1U, 100U, 4096U}) {
        const gzip_source_options opt{.chunk_size = chunk_size};
        const auto d = test::run_coro(drain(gzip_source(memory(gz, 1000), opt)));
        CHECK(d.ec == asio::error::eof);
        CHECK(d.text == text);
        CHECK(d.largest_chunk <= chunk_size);
        if (chunk_size <= 100)
            CHECK(d.largest_chunk == chunk_size);
    }
    CHECK(gzip_source<memory_source>::buffer_bytes({.chunk_size = 1024}) == 1024 + gzip_inflater::memory_bytes);
}

TEST_CASE("a truncated stream ends with truncated_gzip, never with a short eof")
{
    const std::string multi = cli_gz + python_gz;
    for (std::size_t n = 0; n < multi.size(); ++n) {
        if (n == cli_gz.size())
            continue;  // a whole first member: a valid stream
        INFO("truncated to " << n);
        const std::string cut = multi.substr(0, n);
        const auto d = test::run_coro(drain(gzip_source(memory(cut, 7))));
        REQUIRE(d.ec == errc::truncated_gzip);
        REQUIRE_FALSE(d.detail.empty());
    }
}

TEST_CASE("corrupt data is corrupt_gzip with zlib's message, and inner errors pass through")
{
    std::string bad = python_gz;
    bad[python_gz.size() - 8] = static_cast<char>(bad[python_gz.size() - 8] ^ 1);
    auto d = test::run_coro(drain(gzip_source(memory(bad, 3))));
    CHECK(d.ec == errc::corrupt_gzip);
    CHECK(d.detail == "incorrect data check");

    const auto io = make_error_code(boost::system::errc::io_error);
    d = test::run_coro(drain(gzip_source(test::failing_source(memory(python_gz, 10), 3, io))));
    CHECK(d.ec == io);

    CHECK_THROWS_AS(gzip_source(memory_source(test::as_bytes(cli_gz), "x", memory_source_options{.start_offset = 5})),
                    std::invalid_argument);
    CHECK_THROWS_AS(gzip_source(memory(cli_gz, 0), gzip_source_options{.chunk_size = 0}), std::invalid_argument);
}
