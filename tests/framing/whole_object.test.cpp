// Tests of the whole-object decoder: one record per stream at finish(), every split point, the
// cap, and reuse across streams.
#include <pipemode/framing/whole_object.hpp>

#include "decoder_harness.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pipemode;
using pipemode::test::error_event;
using pipemode::test::record_event;
using pipemode::test::split_points;
using pipemode::test::transcript;

static_assert(record_decoder<whole_object_decoder>);

TEST_CASE("the whole stream is one record, handed out by finish()")
{
    whole_object_decoder d;
    const std::string object = "{\"json\": true}\n\x00\xff binary too";
    for (const auto& cuts : split_points(object.size()))
        REQUIRE(transcript(d, object, cuts) == std::vector<std::string>{record_event(0, 0, object)});
    CHECK(transcript(d, "") == std::vector<std::string>{record_event(0, 0, "")});
    CHECK(transcript(d, "abc", test::feed_options{.start_offset = 100}) == std::vector<std::string>{record_event(100, 0, "abc")});

    // Nothing before finish(); records_started() counts the object once taken.
    error_code ec;
    d.reset();
    CHECK(d.put(test::as_bytes(object), ec) == object.size());
    CHECK_FALSE(d.has_record());
    CHECK(d.records_started() == 0);
    d.finish(ec);
    REQUIRE(d.has_record());
    CHECK(test::as_string(d.record().payload) == object);
    d.pop();
    CHECK(d.records_started() == 1);
    d.finish(ec);
    CHECK_FALSE(d.has_record());
    CHECK(d.put(test::as_bytes("more"), ec) == 0);
}

TEST_CASE("an object above the cap is record_too_large, and resync drops the rest")
{
    whole_object_decoder d(whole_object_options{.max_record_size = 5});
    for (const auto& cuts : split_points(9))
        REQUIRE(transcript(d, "abcdefghi", cuts) == std::vector<std::string>{error_event('E', errc::record_too_large, 0, 0)});
    CHECK(d.buffer_capacity() <= 5);
    for (const auto& cuts : split_points(5))
        REQUIRE(transcript(d, "abcde", cuts) == std::vector<std::string>{record_event(0, 0, "abcde")});
    CHECK(d.buffer_capacity() <= 5);
}
