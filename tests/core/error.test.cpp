// Tests for include/pipemode/core/error.hpp: the errc codes and the data_error exception.
#include <pipemode/core/error.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <system_error>

namespace {

using pipemode::errc;

// Every enumerator, first to last: a new one must be added here (and get a message).
constexpr errc all_codes[] = {
    errc::bad_magic,         errc::record_too_large, errc::truncated_record, errc::bad_continuation,
    errc::crc_mismatch,      errc::malformed_protobuf, errc::unsupported_value, errc::schema_mismatch,
    errc::bad_csv_field,     errc::ragged_csv_row,   errc::corrupt_gzip,     errc::timed_out,
    errc::object_changed,    errc::empty_data_set,
};

} // namespace

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
    std::set<std::string> messages;
    for (auto e : all_codes) {
        pipemode::error_code ec = make_error_code(e);
        INFO("errc value " << static_cast<int>(e));
        CHECK(ec.value() != 0);  // 0 would read as success
        CHECK(ec.message() != "unknown pipemode error");
        CHECK_FALSE(ec.message().empty());
        messages.insert(ec.message());
    }
    CHECK(messages.size() == std::size(all_codes));
    CHECK(pipemode::error_category().message(9999) == "unknown pipemode error");
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
