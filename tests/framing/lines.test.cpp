// Tests of the line decoder: line ends, empty lines, the last line, long lines, every split
// point, and how a split object's pieces share its lines.
#include <pipemode/framing/lines.hpp>

#include "decoder_harness.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace pipemode;
using pipemode::test::error_event;
using pipemode::test::record_event;
using pipemode::test::split_points;
using pipemode::test::transcript;

static_assert(record_decoder<line_decoder>);

namespace {

void check_every_split(line_decoder& d, const std::string& input, const std::vector<std::string>& expected)
{
    for (const auto& cuts : split_points(input.size())) {
        INFO("cut at " << (cuts.empty() ? 0 : cuts[0]) << " and " << (cuts.size() > 1 ? cuts[1] : 0));
        REQUIRE(transcript(d, input, cuts) == expected);
    }
}

} // namespace

TEST_CASE("lines end at \\n, lose one \\r before it, and the last needs no \\n")
{
    line_decoder d;
    check_every_split(d, "a\nbb\r\n\nc\rc\n\r\nlast",
                      {record_event(0, 0, "a"), record_event(2, 1, "bb"), record_event(7, 2, "c\rc"),
                       record_event(13, 3, "last")});
    check_every_split(d, "x\r\r\n", {record_event(0, 0, "x\r")});
    check_every_split(d, "only\r", {record_event(0, 0, "only")});
    check_every_split(d, "", {});
    check_every_split(d, "\n\n\r\n\r", {});
}

TEST_CASE("empty lines are records when skip_empty is off")
{
    line_decoder d(line_options{.skip_empty = false});
    check_every_split(d, "a\n\n\r\nb\n",
                      {record_event(0, 0, "a"), record_event(2, 1, ""), record_event(3, 2, ""), record_event(5, 3, "b")});
    // A stream that ends with "\n" has no empty last line.
    check_every_split(d, "a\n", {record_event(0, 0, "a")});
    check_every_split(d, "a\n\r", {record_event(0, 0, "a"), record_event(2, 1, "")});
}

TEST_CASE("lines inside one input are handed out in place")
{
    line_decoder d;
    const std::string text = "first\nsecond\n";
    const auto in = test::as_bytes(text);
    error_code ec;
    REQUIRE(d.put(in, ec) == 6);
    REQUIRE(d.has_record());
    CHECK(d.record().payload.data() == in.data());
    d.pop();
    REQUIRE(d.put(in.subspan(6), ec) == 7);
    CHECK(d.record().payload.data() == in.data() + 6);
    d.pop();
    CHECK(d.buffer_capacity() == 0);
}

TEST_CASE("a line longer than the cap is line_too_long, without buffering it, and resync skips it")
{
    line_decoder d(line_options{.max_record_size = 4});
    const std::string input = "abcd\nabcde\nxy\nabcd\r\nabcdefghijklmnop\nz\nabcd\r";
    check_every_split(d, input,
                      {record_event(0, 0, "abcd"), error_event('E', errc::line_too_long, 5, 1), record_event(11, 2, "xy"),
                       record_event(14, 3, "abcd"), error_event('E', errc::line_too_long, 20, 4),
                       record_event(37, 5, "z"), record_event(39, 6, "abcd")});
    // A last line one byte too long, without "\n".
    check_every_split(d, "ab\nabcde", {record_event(0, 0, "ab"), error_event('F', errc::line_too_long, 3, 1)});
    // "abcd\r" then a long wait for the "\n": max + 1 bytes held, no more.
    check_every_split(d, "abcd\r\n", {record_event(0, 0, "abcd")});

    // Byte by byte through a long line: the buffer stays near the cap.
    const std::string longline(10000, 'x');
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < longline.size(); ++i)
        every.push_back(i);
    const auto got = transcript(d, longline + "\nok", every);
    CHECK(got == std::vector<std::string>{error_event('E', errc::line_too_long, 0, 0), record_event(10001, 1, "ok")});
    CHECK(d.buffer_capacity() <= 16);
}

TEST_CASE("a piece starting at b, read from b - 1 after resync(), yields exactly the lines starting at or after b")
{
    std::mt19937 rng(3);
    for (const std::string& text : {std::string("ab\ncd\n\nefg\r\nh\n"), std::string("\n\nx\ny"), std::string("no newline")}) {
        line_decoder d;
        const auto all = transcript(d, text);
        std::vector<std::uint64_t> starts;
        for (const auto& e : all)
            starts.push_back(std::stoull(e.substr(2)));
        for (std::size_t b = 1; b <= text.size(); ++b) {
            INFO("text '" << text << "', piece from " << b);
            std::vector<std::string> expected;
            for (std::size_t i = 0; i < all.size(); ++i) {
                if (starts[i] < b)
                    continue;
                const std::string payload = all[i].substr(all[i].find(' ', all[i].find(' ', 2) + 1) + 1);
                expected.push_back(record_event(starts[i], expected.size(), payload));
            }
            const auto piece = std::string_view(text).substr(b - 1);
            const test::feed_options opt{.start_offset = b - 1, .resync_first = true};
            REQUIRE(transcript(d, piece, opt) == expected);
            for (std::size_t cut = 0; cut <= piece.size(); ++cut)
                REQUIRE(transcript(d, piece, std::vector<std::size_t>{cut}, opt) == expected);
        }
    }
}

TEST_CASE("random text: every line in order at several chunk sizes")
{
    std::mt19937 rng(5);
    std::string text;
    std::vector<std::string> expected;
    for (int i = 0; i < 500; ++i) {
        std::string line(rng() % 40 + 1, 'a');
        for (auto& c : line)
            c = static_cast<char>('a' + rng() % 26);
        expected.push_back(record_event(text.size(), expected.size(), line));
        text += line;
        text += (rng() % 2) ? "\n" : "\r\n";
    }
    line_decoder d;
    for (std::size_t chunk : {1U, 2U, 7U, 64U, 100000U}) {
        std::vector<std::size_t> cuts;
        for (std::size_t i = chunk; i < text.size(); i += chunk)
            cuts.push_back(i);
        REQUIRE(transcript(d, text, cuts) == expected);
    }
}
