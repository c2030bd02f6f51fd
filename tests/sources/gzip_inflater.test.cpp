// Tests of the sans-I/O gzip inflater: streams from Python's gzip module and the gzip tool,
// multi-member streams, padding, every split and truncation point, corrupt bytes, and tiny
// output buffers.
#include <pipemode/sources/gzip_inflater.hpp>

#include "decoder_harness.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pipemode;
using pipemode::test::as_bytes;

namespace {

#include "gzip_vectors.inc"

struct outcome {
    std::string text;
    error_code ec;        // from inflate() or finish()
    bool at_finish = false;

    friend bool operator==(const outcome&, const outcome&) = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o)
{
    return os << "{" << o.text.size() << " bytes, " << o.ec.message() << (o.at_finish ? " at finish" : "") << "}";
}

// Inflates `input` cut at `cuts`, with an output buffer of `out_size` bytes.
outcome inflate_all(gzip_inflater& z, std::string_view input, const std::vector<std::size_t>& cuts, std::size_t out_size)
{
    z.reset();
    outcome o;
    std::vector<std::byte> out(out_size);
    std::size_t from = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        const std::size_t to = i < cuts.size() ? cuts[i] : input.size();
        auto in = as_bytes(input.substr(from, to - from));
        from = to;
        while (!in.empty() || z.has_pending_output()) {
            auto [used, made] = z.inflate(in, out, o.ec);
            in = in.subspan(used);
            o.text += test::as_string(std::span(out).first(made));
            if (o.ec)
                return o;
            REQUIRE((used != 0 || made != 0 || in.empty()));
        }
    }
    z.finish(o.ec);
    o.at_finish = static_cast<bool>(o.ec);
    return o;
}

outcome ok(std::string text) { return {std::move(text), {}, false}; }

} // namespace

TEST_CASE("inflates Python's and the gzip tool's streams at every split point")
{
    gzip_inflater z;
    for (const auto& [gz, text] : {std::pair{python_gz, python_text}, std::pair{cli_gz, cli_text}}) {
        for (const auto& cuts : test::split_points(gz.size()))
            REQUIRE(inflate_all(z, gz, cuts, 4096) == ok(text));
        for (std::size_t out_size : {1U, 2U, 7U, 100U})
            REQUIRE(inflate_all(z, gz, {gz.size() / 2}, out_size) == ok(text));
        CHECK(z.members() == 1);
    }
}

TEST_CASE("concatenated members, empty members and zero padding form one stream")
{
    gzip_inflater z;
    const std::string multi = python_gz + empty_gz + cli_gz + empty_gz;
    for (std::size_t out_size : {1U, 3U, 4096U})
        REQUIRE(inflate_all(z, multi, {}, out_size) == ok(python_text + cli_text));
    CHECK(z.members() == 4);
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < multi.size(); ++i)
        every.push_back(i);
    REQUIRE(inflate_all(z, multi, every, 5) == ok(python_text + cli_text));

    const std::string padded = cli_gz + std::string(5, '\0') + python_gz + std::string(512, '\0');
    for (const auto& cuts : test::split_points(cli_gz.size() + 10))
        REQUIRE(inflate_all(z, padded, cuts, 64) == ok(cli_text + python_text));
    REQUIRE(inflate_all(z, empty_gz, {}, 16) == ok(""));
}

TEST_CASE("truncation at every position is truncated_gzip, except between members")
{
    gzip_inflater z;
    const std::string multi = cli_gz + python_gz;
    for (std::size_t n = 0; n <= multi.size(); ++n) {
        INFO("truncated to " << n << " bytes");
        const auto got = inflate_all(z, std::string_view(multi).substr(0, n), {n / 2}, 300);
        if (n == cli_gz.size()) {
            REQUIRE(got == ok(cli_text));
        } else if (n == multi.size()) {
            REQUIRE(got == ok(cli_text + python_text));
        } else {
            REQUIRE(got.ec == errc::truncated_gzip);
            REQUIRE(got.at_finish);
            // The output so far is a prefix of the real one.
            REQUIRE((cli_text + python_text).starts_with(got.text));
            CHECK_FALSE(z.error_detail().empty());
        }
    }
    const auto zeros = inflate_all(z, std::string(10, '\0'), {}, 16);
    CHECK(zeros.ec == errc::truncated_gzip);
    CHECK(std::string(z.error_detail()) == "the input holds no gzip member (an empty or all-zero file)");
}

TEST_CASE("a damaged byte is corrupt_gzip or truncated_gzip, never silently wrong output")
{
    gzip_inflater z;
    std::size_t errors = 0;
    // Past the 10-byte header: compressed data and the trailer (CRC-32, length).
    for (std::size_t at = 10; at < cli_gz.size(); ++at) {
        for (char mask : {'\x01', '\x80'}) {
            std::string damaged = cli_gz;
            damaged[at] = static_cast<char>(damaged[at] ^ mask);
            INFO("byte " << at << " ^ " << int(static_cast<unsigned char>(mask)));
            const auto got = inflate_all(z, damaged, {at}, 64);
            if (!got.ec) {
                // Only bits that deflate ignores (padding after the last block) may change.
                REQUIRE(got.text == cli_text);
                continue;
            }
            ++errors;
            REQUIRE((got.ec == errc::corrupt_gzip || got.ec == errc::truncated_gzip));
        }
    }
    CHECK(errors > cli_gz.size());

    // Header, data and trailer damage with zlib's own words.
    const auto check = [&](std::string damaged, std::string_view message) {
        const auto got = inflate_all(z, damaged, {}, 64);
        CHECK(got.ec == errc::corrupt_gzip);
        CHECK(std::string(z.error_detail()) == message);
        // The error is sticky.
        error_code ec;
        std::byte out[8];
        z.inflate(as_bytes("x"), out, ec);
        CHECK(ec == errc::corrupt_gzip);
    };
    std::string bad = cli_gz;
    bad[0] = 'x';
    check(bad, "incorrect header check");
    bad = cli_gz;
    bad[cli_gz.size() - 8] = static_cast<char>(bad[cli_gz.size() - 8] ^ 1);
    check(bad, "incorrect data check");
    bad = cli_gz;
    bad[cli_gz.size() - 4] = static_cast<char>(bad[cli_gz.size() - 4] ^ 1);
    check(bad, "incorrect length check");
    // Garbage after a complete member that is not zero padding.
    check(cli_gz + "trailing text", "incorrect header check");
}

TEST_CASE("an inflater moves with its state")
{
    gzip_inflater a;
    error_code ec;
    std::vector<std::byte> out(4096);
    auto [used, made] = a.inflate(as_bytes(cli_gz).first(20), out, ec);
    CHECK(used == 20);
    std::string text = test::as_string(std::span(out).first(made));
    gzip_inflater b(std::move(a));
    auto r = b.inflate(as_bytes(cli_gz).subspan(20), out, ec);
    text += test::as_string(std::span(out).first(r.produced));
    b.finish(ec);
    CHECK_FALSE(ec);
    CHECK(text == cli_text);
    gzip_inflater c;
    c = std::move(b);
    CHECK(c.members() == 1);
}
