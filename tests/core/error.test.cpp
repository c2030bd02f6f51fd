// Tests for include/pipemode/core/error.hpp: the errc codes and the data_error exception.
#include <pipemode/core/error.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <system_error>

using pipemode::errc;

TEST_CASE("errc converts implicitly to an error_code in the pipemode category")
{
    pipemode::error_code ec = errc::truncated_record;
    CHECK(ec);
    CHECK(ec.value() == static_cast<int>(errc::truncated_record));
    CHECK(std::string(ec.category().name()) == "pipemode");
    CHECK(ec.message() == "input ends inside a record");
    CHECK(ec == errc::truncated_record);
    CHECK(ec != errc::bad_magic);
    CHECK(&ec.category() == &pipemode::error_category());
}

TEST_CASE("every errc has its own message and no code is zero")
{
    // The enumerators run from 1 without gaps; walking values until the category answers
    // "unknown" covers codes added after this test was written. (A new enumerator without a
    // message trips -Wswitch in the category's switch, an error in the dev build.)
    const auto& cat = pipemode::error_category();
    std::set<std::string> messages;
    int ev = 1;
    for (; ev < 1000 && cat.message(ev) != "unknown pipemode error"; ++ev) {
        INFO("errc value " << ev);
        CHECK_FALSE(cat.message(ev).empty());
        messages.insert(cat.message(ev));
    }
    CHECK(cat.message(0) == "unknown pipemode error");  // 0 must read as success, never as a pipemode error
    // At least the codes that existed when this test was written, through range_past_end.
    CHECK(ev - 1 >= static_cast<int>(errc::range_past_end));
    CHECK(make_error_code(errc::empty_data_set).message() == "the data set is empty");
    CHECK(messages.size() == static_cast<std::size_t>(ev - 1));
    CHECK(cat.message(9999) == "unknown pipemode error");
}

TEST_CASE("a pipemode error_code keeps its category name and message as a std::error_code")
{
    pipemode::error_code ec = errc::crc_mismatch;
    std::error_code sec = ec;
    CHECK(sec);
    CHECK(sec.value() == static_cast<int>(errc::crc_mismatch));
    CHECK(std::string(sec.category().name()) == "pipemode");
    CHECK(sec.message() == "TFRecord CRC mismatch");
}

TEST_CASE("data_error names the source, byte offset and record index")
{
    pipemode::data_error e(errc::bad_magic, {"s3://bucket/train/part-00007.rec", 123456789012ULL, 4242});

    const std::string what = e.what();
    CHECK(what.find("s3://bucket/train/part-00007.rec") != std::string::npos);
    CHECK(what.find("byte 123456789012") != std::string::npos);
    CHECK(what.find("record 4242") != std::string::npos);
    CHECK(what.find("bad RecordIO magic number") != std::string::npos);
    CHECK(what == "s3://bucket/train/part-00007.rec, byte 123456789012, record 4242: bad RecordIO magic number");

    CHECK(e.code() == errc::bad_magic);
    CHECK(e.where().source == "s3://bucket/train/part-00007.rec");
    CHECK(e.where().byte_offset == 123456789012ULL);
    CHECK(e.where().record_index == 4242);
}

TEST_CASE("data_error appends its detail in parentheses")
{
    pipemode::data_error e(errc::record_too_large, {"/data/train.rec", 8, 0}, "length 2147483648, cap 67108864");
    CHECK(std::string(e.what())
          == "/data/train.rec, byte 8, record 0: record larger than the configured maximum "
             "(length 2147483648, cap 67108864)");
}

TEST_CASE("data_error is caught as std::runtime_error with the same message")
{
    try {
        throw pipemode::data_error(errc::timed_out, {"memory:fifo", 0, 0});
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "memory:fifo, byte 0, record 0: timed out");
        return;
    }
    FAIL("data_error was not caught as std::runtime_error");
}
