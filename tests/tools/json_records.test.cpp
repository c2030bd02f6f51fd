// pipemode-cat's JSON lines: exact text for every tensor type and layout, the values JSON
// cannot express, names that need escaping, and raw payloads.
#include "../../examples/tools/json_records.hpp"

#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "record_encode.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using namespace pipemode;
using namespace pipemode::tools;

namespace {

using payload = std::vector<std::byte>;

using test::encode;

/// Decodes records of one schema into a single batch.
batch decode(const std::vector<payload>& records)
{
    protobuf_record_parser parser;
    batch_builder builder(records.size() + 1);
    std::uint64_t index = 0;
    for (const auto& r : records) {
        error_code ec;
        parser.parse(record_view{r, 0, index++}, "memory:json", builder, ec);
        INFO(parser.error_detail());
        REQUIRE(!ec);
    }
    return builder.take();
}

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string record_json(const batch& b, std::size_t row)
{
    std::string s;
    append_record_json(s, b, row);
    return s;
}

constexpr float nan32 = std::numeric_limits<float>::quiet_NaN();
constexpr float inf32 = std::numeric_limits<float>::infinity();

} // namespace

TEST_CASE("json_records: every tensor type and layout, exactly")
{
    const std::array<float, 7> x0{1, 0.1f, nan32, -inf32, inf32, -0.0f, 1e20f};
    const std::array<float, 7> x1{2.5f, -3, 0, 1e-7f, 3.4028235e38f, 1.17549435e-38f, 100};
    const std::array<std::int32_t, 4> m0{1, -2, 3, std::numeric_limits<std::int32_t>::min()};
    const std::array<std::int32_t, 4> m1{0, 0, 0, std::numeric_limits<std::int32_t>::max()};
    const std::array<std::uint64_t, 2> m_shape{2, 2};
    const std::array<double, 2> s0{0.3, 1e300};
    const std::array<std::uint64_t, 2> s0_keys{0, 9};
    const std::array<std::span<const std::byte>, 2> b0{bytes_of(std::string_view("\x00\xff" "A", 3)), bytes_of("")};
    const std::array<float, 1> y0{1}, y1{0};

    const auto b = decode({
        encode({tensor_entry::dense(std::span<const float>(x0), "x"),
                tensor_entry::dense(std::span<const std::int32_t>(m0), "m", m_shape),
                tensor_entry::sparse(std::span<const double>(s0), s0_keys, 10, "s"),
                tensor_entry::bytes(b0, "b")},
               {tensor_entry::dense(std::span<const float>(y0), "y")}),
        // A sparse row with no non-zeros and a bytes value with no items.
        encode({tensor_entry::dense(std::span<const float>(x1), "x"),
                tensor_entry::dense(std::span<const std::int32_t>(m1), "m", m_shape),
                tensor_entry::sparse(std::span<const double>(), {}, 10, "s"),
                tensor_entry::bytes({}, "b")},
               {tensor_entry::dense(std::span<const float>(y1), "y")}),
    });
    REQUIRE(b.size() == 2);

    CHECK(record_json(b, 0)
          == R"({"features": {)"
             R"("x": {"tensor": "float32", "values": [1, 0.1, "NaN", "-Infinity", "Infinity", -0, 1e+20], "keys": [], "shape": []}, )"
             R"("m": {"tensor": "int32", "values": [1, -2, 3, -2147483648], "keys": [], "shape": [2, 2]}, )"
             R"("s": {"tensor": "float64", "values": [0.3, 1e+300], "keys": [0, 9], "shape": [10]}, )"
             R"("b": {"tensor": "bytes", "values": ["00ff41", ""], "keys": [], "shape": []}}, )"
             R"("label": {"y": {"tensor": "float32", "values": [1], "keys": [], "shape": []}}})");

    CHECK(record_json(b, 1)
          == R"({"features": {)"
             R"("x": {"tensor": "float32", "values": [2.5, -3, 0, 1e-07, 3.4028235e+38, 1.1754944e-38, 100], "keys": [], "shape": []}, )"
             R"("m": {"tensor": "int32", "values": [0, 0, 0, 2147483647], "keys": [], "shape": [2, 2]}, )"
             R"("s": {"tensor": "float64", "values": [], "keys": [], "shape": [10]}, )"
             R"("b": {"tensor": "bytes", "values": [], "keys": [], "shape": []}}, )"
             R"("label": {"y": {"tensor": "float32", "values": [0], "keys": [], "shape": []}}})");
}

TEST_CASE("json_records: a record without a label has an empty label map")
{
    const std::array<float, 2> x{1, 2};
    const auto b = decode({encode({tensor_entry::dense(std::span<const float>(x))})});
    CHECK(record_json(b, 0)
          == R"({"features": {"values": {"tensor": "float32", "values": [1, 2], "keys": [], "shape": []}}, "label": {}})");
}

TEST_CASE("json_records: a dense tensor's one-dimensional shape is not shown, a longer one is")
{
    const std::array<double, 3> x{1, 2, 3};
    const std::array<std::uint64_t, 1> flat{3};
    const std::array<std::uint64_t, 2> column{3, 1};
    const auto with_flat = decode({encode({tensor_entry::dense(std::span<const double>(x), "values", flat)})});
    const auto without = decode({encode({tensor_entry::dense(std::span<const double>(x))})});
    const auto with_column = decode({encode({tensor_entry::dense(std::span<const double>(x), "values", column)})});
    CHECK(record_json(with_flat, 0) == record_json(without, 0));
    CHECK_FALSE(shows_shape(without.features()[0]));
    CHECK(shows_shape(with_column.features()[0]));
    CHECK(record_json(with_column, 0)
          == R"({"features": {"values": {"tensor": "float64", "values": [1, 2, 3], "keys": [], "shape": [3, 1]}}, "label": {}})");
}

TEST_CASE("json_records: names are escaped")
{
    std::string out;
    append_json_string(out, std::string_view("a\"b\\c\n\t\x01\x1f\x7f" "é"));
    CHECK(out == "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f" "é\"");

    const std::array<float, 1> x{1};
    const auto b = decode({encode({tensor_entry::dense(std::span<const float>(x), "say \"hi\"")})});
    CHECK(record_json(b, 0)
          == R"({"features": {"say \"hi\"": {"tensor": "float32", "values": [1], "keys": [], "shape": []}}, "label": {}})");
}

TEST_CASE("json_records: floating-point text reads back to the same bits")
{
    for (double v : {0.1, 1.0 / 3, 5e-324, 1.7976931348623157e308, -2.5e-10}) {
        std::string s;
        append_json_number(s, v);
        double back = 0;
        REQUIRE(std::from_chars(s.data(), s.data() + s.size(), back).ec == std::errc{});
        CHECK(back == v);
    }
    std::string s;
    append_json_number(s, 1.0 / 3);
    CHECK(s == "0.3333333333333333");
    s.clear();
    append_json_number(s, 1.0f / 3);
    CHECK(s == "0.33333334");
    s.clear();
    append_json_number(s, -std::numeric_limits<double>::quiet_NaN());
    CHECK(s == "\"NaN\"");
}

TEST_CASE("json_records: raw payloads as length and hex")
{
    std::string out;
    append_raw_json(out, bytes_of(std::string_view("\x0a\x23\xd7\xce" "hello", 9)));
    CHECK(out == R"({"length": 9, "hex": "0a23d7ce68656c6c6f"})");
    out.clear();
    append_raw_json(out, {});
    CHECK(out == R"({"length": 0, "hex": ""})");
}

TEST_CASE("json_records: augmented-manifest rows by attribute")
{
    // Two rows of three bytes attributes, as grouped_record_parser delivers them.
    const std::vector<std::array<std::string_view, 3>> rows{
        {std::string_view("\xff\xd8", 2), R"("3")", R"({"x": [1, 2]})"},
        {"{}", "not json", "1\n"},
    };
    batch_builder builder(rows.size() + 1);
    std::uint64_t index = 0;
    for (const auto& row : rows) {
        const payload whole(8);
        builder.begin_record("memory:manifest", record_view{whole, 0, index++});
        const std::array<std::string_view, 3> names{"source-ref", "class", "box"};
        for (std::size_t i = 0; i < 3; ++i) {
            builder.begin_tensor(record_section::features, names[i], tensor_type::bytes);
            builder.append_item(bytes_of(row[i]));
            error_code ec;
            (void)builder.end_tensor(ec);
            REQUIRE(!ec);
        }
        error_code ec;
        (void)builder.end_record(ec);
        REQUIRE(!ec);
    }
    const batch b = builder.take();
    std::string out;
    append_attributes_json(out, b, 0);
    CHECK(out == R"({"source-ref": {"length": 2, "hex": "ffd8"}, "class": "3", "box": {"x": [1, 2]}})");
    out.clear();
    // A -ref is object bytes even when they parse as JSON; text that is not JSON, or that
    // would break the line, is shown as bytes.
    append_attributes_json(out, b, 1);
    CHECK(out == R"({"source-ref": {"length": 2, "hex": "7b7d"}, "class": {"length": 8, "hex": "6e6f74206a736f6e"}, "box": {"length": 2, "hex": "310a"}})");
}
