// Tests of the CSV record parser: values, labels, spacing and quotes, NaN and infinities, the
// errors and their details, agreement with the protobuf parser's layout, and CSV read through
// the line decoder at every split point.
#include <pipemode/framing/lines.hpp>
#include <pipemode/parsers/csv.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "decoder_harness.hpp"

#include <catch2/catch.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <limits>
#include <string>
#include <vector>

using namespace pipemode;
using pipemode::test::as_bytes;

namespace {

struct row_result {
    error_code ec;
    std::string detail;
};

// Parses each line as one record into `b`.
std::vector<row_result> parse_lines(csv_record_parser& parser, batch_builder& b, const std::vector<std::string>& lines)
{
    std::vector<row_result> out;
    std::uint64_t index = 0;
    for (const auto& line : lines) {
        error_code ec;
        parser.parse(record_view{as_bytes(line), 0, index++}, "memory:test", b, ec);
        out.push_back({ec, ec ? std::string(parser.error_detail()) : std::string()});
    }
    return out;
}

std::vector<float> values_of(const column& c)
{
    auto v = c.values<float>();
    return {v.begin(), v.end()};
}

} // namespace

TEST_CASE("rows become a dense float32 feature 'values' and a label 'values'")
{
    csv_record_parser parser;  // label_size 1
    batch_builder b(3);
    const auto results = parse_lines(parser, b, {"1,2.5,-3", " 0 , 1e3 ,\t.5 ", "\"7\",\" 8 \",+9"});
    for (const auto& r : results)
        REQUIRE_FALSE(r.ec);
    CHECK(parser.columns() == 3);
    const batch out = b.take();
    REQUIRE(out.size() == 3);
    const column& x = out.feature("values");
    CHECK(x.type() == tensor_type::float32);
    CHECK_FALSE(x.is_sparse());
    CHECK(std::vector<std::uint64_t>(x.shape().begin(), x.shape().end()) == std::vector<std::uint64_t>{2});
    CHECK(values_of(x) == std::vector<float>{2.5f, -3, 1000, 0.5f, 8, 9});
    const column& y = out.label("values");
    CHECK(std::vector<std::uint64_t>(y.shape().begin(), y.shape().end()) == std::vector<std::uint64_t>{1});
    CHECK(values_of(y) == std::vector<float>{1, 0, 7});
}

TEST_CASE("label_size 0 gives features only, label_size 2 a two-column label")
{
    csv_record_parser none(csv_options{.label_size = 0});
    batch_builder b0(2);
    parse_lines(none, b0, {"1,2", "3,4"});
    const batch out0 = b0.take();
    CHECK(out0.labels().empty());
    CHECK(values_of(out0.feature("values")) == std::vector<float>{1, 2, 3, 4});

    csv_record_parser two(csv_options{.label_size = 2});
    batch_builder b2(1);
    parse_lines(two, b2, {"1,2,3"});
    const batch out2 = b2.take();
    CHECK(values_of(out2.label("values")) == std::vector<float>{1, 2});
    CHECK(values_of(out2.feature("values")) == std::vector<float>{3});
}

TEST_CASE("NaN and infinities pass through, out-of-range numbers round as strtof does")
{
    csv_record_parser parser(csv_options{.label_size = 0});
    batch_builder b(1);
    const auto r = parse_lines(parser, b, {"nan,-inf,infinity,1e50,-1e50,1e-50,1e400,-1e-400,3.4028235e38"});
    REQUIRE_FALSE(r[0].ec);
    const auto v = values_of(b.take().feature("values"));
    REQUIRE(v.size() == 9);
    CHECK(std::isnan(v[0]));
    CHECK(v[1] == -std::numeric_limits<float>::infinity());
    CHECK(v[2] == std::numeric_limits<float>::infinity());
    CHECK(v[3] == std::numeric_limits<float>::infinity());
    CHECK(v[4] == -std::numeric_limits<float>::infinity());
    CHECK(v[5] == 0.0f);
    CHECK(v[6] == std::numeric_limits<float>::infinity());
    CHECK(v[7] == 0.0f);
    CHECK(std::signbit(v[7]));
    CHECK(v[8] == std::numeric_limits<float>::max());
}

TEST_CASE("bad fields name their column and quote at most 40 bytes of the field")
{
    csv_record_parser parser;
    batch_builder b(10);
    const std::string long_field(100, 'x');
    const auto r = parse_lines(parser, b,
                               {"1,2,3", "1,,3", "1,2,", "1,abc,3", "1,2.5x,3", "1,\"2,3", "1, \"2\" x,3",
                                "1,2,3," + long_field, "", "1,+,3", "1,+-2,3", "1,2,3"});
    CHECK_FALSE(r[0].ec);
    CHECK(r[1].ec == errc::bad_csv_field);
    CHECK(r[1].detail == "column 2 ('') is empty");
    CHECK(r[2].detail == "column 3 ('') is empty");
    CHECK(r[3].detail == "column 2 ('abc') is not a number");
    CHECK(r[4].detail == "column 2 ('2.5x') is not a number");
    CHECK(r[5].detail == "column 2 ('\"2,3') has an opening quote and no closing one");
    CHECK(r[6].detail == "column 2 ('\"2\" x') is not a number");
    CHECK(r[7].detail == "column 4 ('" + std::string(40, 'x') + "...') is not a number");
    CHECK(r[8].detail == "column 1 ('') is empty");
    CHECK(r[9].detail == "column 2 ('+') is not a number");
    CHECK(r[10].detail == "column 2 ('+-2') is not a number");
    CHECK_FALSE(r[11].ec);
    // Bad rows leave no trace.
    const batch out = b.take();
    CHECK(out.size() == 2);
    CHECK(values_of(out.label("values")) == std::vector<float>{1, 1});
}

TEST_CASE("a row with another column count than the first is ragged")
{
    csv_record_parser parser;
    batch_builder b(10);
    const auto r = parse_lines(parser, b, {"1", "1,2,3", "1,2", "1,2,3,4", "4,5,6"});
    CHECK(r[0].ec == errc::ragged_csv_row);
    CHECK(r[0].detail == "the row has 1 column, but with label_size=1 a row needs at least 2 (the label and at least one feature)");
    CHECK_FALSE(r[1].ec);
    CHECK(r[2].ec == errc::ragged_csv_row);
    CHECK(r[2].detail == "the row has 2 columns, the first row had 3");
    CHECK(r[3].ec == errc::ragged_csv_row);
    CHECK_FALSE(r[4].ec);
    CHECK(b.size() == 2);
}

TEST_CASE("the fast float path gives exactly what std::from_chars gives, or defers to it")
{
    std::mt19937 rng(9);
    const auto check_text = [](const std::string& text) {
        float fast = 0;
        const char* end = detail::csv_fast_float(text.data(), text.data() + text.size(), fast);
        if (end == nullptr)
            return false;
        float slow = 0;
        const auto [q, ec] = std::from_chars(text.data(), text.data() + text.size(), slow);
        INFO(text);
        REQUIRE(ec == std::errc{});
        REQUIRE(q == end);
        REQUIRE(std::memcmp(&fast, &slow, sizeof fast) == 0);
        return true;
    };
    std::size_t fast_ones = 0;
    char buffer[64];
    for (int i = 0; i < 200000; ++i) {
        const float x = std::ldexp(static_cast<float>(rng() % 100000000) / 1e8f, static_cast<int>(rng() % 40) - 20)
            * (rng() % 2 ? 1.0f : -1.0f);
        const char* formats[] = {"%.6g", "%g", "%.9g", "%.3f", "%.8e", "%.1e", "%.0f"};
        std::snprintf(buffer, sizeof buffer, formats[i % 7], static_cast<double>(x));
        fast_ones += check_text(buffer);
        // Random digit strings with a point and an exponent somewhere.
        std::string t;
        if (rng() % 2)
            t += '-';
        for (std::uint32_t k = 0, n = rng() % 12; k < n; ++k)
            t += static_cast<char>('0' + rng() % 10);
        if (rng() % 2)
            t.insert(rng() % (t.size() + 1), ".");
        if (rng() % 3 == 0)
            t += "e" + std::string(rng() % 2 ? "-" : "") + std::to_string(rng() % 14);
        if (rng() % 5 == 0)
            t += "x";
        fast_ones += check_text(t);
    }
    CHECK(fast_ones > 150000);  // the fast path is taken for most of them
    for (const char* s : {"-", ".", "", "nan", "inf", "1e", "1e-", "1e0001", "12345678901", "0.0000000001", "16777217",
                          "1e11"}) {
        INFO(s);
        float v;
        CHECK(detail::csv_fast_float(s, s + std::strlen(s), v) == nullptr);
    }
}

TEST_CASE("a CSV row and the equivalent SageMaker protobuf Record give the same batch layout")
{
    const std::vector<float> x{0.5f, -1, 2, 3.25f};
    const float y = 4;
    std::vector<std::byte> payload;
    const tensor_entry features[] = {tensor_entry::dense(x)};
    const tensor_entry label[] = {tensor_entry::dense(std::span(&y, 1))};
    encode_record(payload, features, label);

    batch_builder from_protobuf(1);
    protobuf_record_parser pb;
    error_code ec;
    pb.parse(record_view{payload, 0, 0}, "pb", from_protobuf, ec);
    REQUIRE_FALSE(ec);
    batch_builder from_csv(1);
    csv_record_parser csv;
    const std::string row = "4,0.5,-1,2,3.25";
    csv.parse(record_view{as_bytes(row), 0, 0}, "csv", from_csv, ec);
    REQUIRE_FALSE(ec);

    const batch a = from_protobuf.take();
    const batch c = from_csv.take();
    REQUIRE(a.features().size() == c.features().size());
    REQUIRE(a.labels().size() == c.labels().size());
    for (std::size_t i = 0; i < a.features().size(); ++i) {
        CHECK(a.features()[i].name() == c.features()[i].name());
        CHECK(a.features()[i].type() == c.features()[i].type());
        CHECK(std::ranges::equal(a.features()[i].shape(), c.features()[i].shape()));
        CHECK(values_of(a.features()[i]) == values_of(c.features()[i]));
    }
    CHECK(a.labels()[0].name() == c.labels()[0].name());
    CHECK(std::ranges::equal(a.labels()[0].shape(), c.labels()[0].shape()));
    CHECK(values_of(a.labels()[0]) == values_of(c.labels()[0]));
}

TEST_CASE("CSV through the line decoder at every split point")
{
    const std::string text = "1,0.5,2\r\n\n0,-1,3e2\n1,\"4\",5";
    for (const auto& cuts : test::split_points(text.size())) {
        line_decoder lines;
        csv_record_parser parser;
        batch_builder b(3);
        std::vector<std::string> records;
        const auto events = test::transcript(lines, text, cuts);
        REQUIRE(events.size() == 3);
        for (const auto& e : events) {
            const std::string payload = e.substr(e.find(' ', e.find(' ', 2) + 1) + 1);
            error_code ec;
            parser.parse(record_view{as_bytes(payload), 0, 0}, "t", b, ec);
            REQUIRE_FALSE(ec);
        }
        const batch out = b.take();
        REQUIRE(values_of(out.feature("values")) == std::vector<float>{0.5f, 2, -1, 300, 4, 5});
        REQUIRE(values_of(out.label("values")) == std::vector<float>{1, 0, 1});
    }
}
