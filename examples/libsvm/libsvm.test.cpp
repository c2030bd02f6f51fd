// The example's LIBSVM parser: rows as a training loop sees them (sparse float32 "values" of
// shape {feature_dim}, float32 label "values"), comments, qid, blank lines, explicit zeros,
// both index bases, and every kind of malformed line, each refused with its column named and
// the batch left as it was. The last case reads through pipemode::reader with the skip policy.
#include "libsvm_parser.hpp"

#include <pipemode/core/batch_builder.hpp>
#include <pipemode/framing/lines.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/sources/memory_source.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <span>
#include <string>
#include <vector>

using namespace libsvm;

namespace {

/// One parsed row, as the tests compare them.
struct row {
    float label;
    std::vector<std::uint64_t> keys;
    std::vector<float> values;
    bool operator==(const row&) const = default;
};

/// Parses `lines` (one record each) into one batch; returns its rows. Fails the test on an error.
std::vector<row> parse_all(const std::vector<std::string>& lines, parser_options o = {.feature_dim = 10})
{
    libsvm_parser parser(o);
    pipemode::batch_builder builder(100);
    std::uint64_t index = 0;
    for (const auto& line : lines) {
        pipemode::error_code ec;
        parser.parse({std::as_bytes(std::span(line)), 0, index++}, "test", builder, ec);
        INFO(line << ": " << parser.error_detail());
        REQUIRE(!ec);
    }
    const auto b = builder.take();
    std::vector<row> rows;
    if (b.size() == 0)
        return rows;
    const auto& x = b.feature(values_name);
    REQUIRE(x.is_sparse());
    REQUIRE(x.type() == pipemode::tensor_type::float32);
    REQUIRE(x.shape().size() == 1);
    REQUIRE(x.shape()[0] == o.feature_dim);
    const auto& y = b.label(values_name);
    REQUIRE(y.row_size() == 1);
    for (std::size_t i = 0; i < b.size(); ++i) {
        const auto k = x.row_keys(i);
        const auto v = x.row<float>(i);
        rows.push_back({y.values<float>()[i], {k.begin(), k.end()}, {v.begin(), v.end()}});
    }
    return rows;
}

/// What parsing `line` after one good row does: the error code, the detail, and whether the
/// batch still holds exactly the good row.
struct failure {
    pipemode::error_code ec;
    std::string detail;
};

failure parse_bad(const std::string& line, parser_options o = {.feature_dim = 10})
{
    libsvm_parser parser(o);
    pipemode::batch_builder builder(100);
    pipemode::error_code ec;
    const std::string good = "1 1:1";
    parser.parse({std::as_bytes(std::span(good)), 0, 0}, "test", builder, ec);
    REQUIRE(!ec);
    parser.parse({std::as_bytes(std::span(line)), 6, 1}, "test", builder, ec);
    REQUIRE(builder.size() == 1);  // the bad line left nothing behind
    const std::string after = "2 2:2";
    pipemode::error_code ec2;
    parser.parse({std::as_bytes(std::span(after)), 20, 2}, "test", builder, ec2);
    REQUIRE(!ec2);
    REQUIRE(builder.size() == 2);
    return {ec, std::string(parser.error_detail())};
}

} // namespace

TEST_CASE("rows: label, keys counted from 0, values, in order")
{
    const auto rows = parse_all({"1 1:0.5 3:2 10:-1e-3", "-1 2:+4", "0.25"});
    REQUIRE(rows.size() == 3);
    CHECK(rows[0] == row{1.0f, {0, 2, 9}, {0.5f, 2.0f, -1e-3f}});
    CHECK(rows[1] == row{-1.0f, {1}, {4.0f}});
    CHECK(rows[2] == row{0.25f, {}, {}});  // a label alone is an empty sparse row
}

TEST_CASE("comments, qid, blanks, tabs, carriage returns and explicit zeros")
{
    const auto rows = parse_all({"# a comment line", "   ", "2 qid:7 4:1 # tail comment", "3\t5:0\t6:1e2  \r",
                                 "4 qid:1"});
    REQUIRE(rows.size() == 3);  // the comment line and the blank line give no row
    CHECK(rows[0] == row{2.0f, {3}, {1.0f}});
    CHECK(rows[1] == row{3.0f, {4, 5}, {0.0f, 100.0f}});  // the explicit zero is kept
    CHECK(rows[2] == row{4.0f, {}, {}});
}

TEST_CASE("zero-based data, when declared")
{
    const auto rows = parse_all({"1 0:1 9:2"}, {.feature_dim = 10, .base = index_base::zero});
    CHECK(rows == std::vector<row>{{1.0f, {0, 9}, {1.0f, 2.0f}}});
    const auto f = parse_bad("1 10:1", {.feature_dim = 10, .base = index_base::zero});
    CHECK(f.ec == make_error_code(errc::index_out_of_range));
    CHECK_THAT(f.detail, Catch::Contains("column 2 ('10:1')"));
}

TEST_CASE("a large index and large, tiny and special values")
{
    const auto rows = parse_all({"1 1000000:1e38 1000001:1e-40 1000002:inf 1000003:nan 1000004:1e39"},
                                {.feature_dim = 2000000});
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].keys == std::vector<std::uint64_t>{999999, 1000000, 1000001, 1000002, 1000003});
    CHECK(rows[0].values[0] == 1e38f);
    CHECK(rows[0].values[1] > 0.0f);  // a subnormal, not 0
    CHECK(std::isinf(rows[0].values[2]));
    CHECK(std::isnan(rows[0].values[3]));
    CHECK(std::isinf(rows[0].values[4]));  // beyond float's range rounds to infinity
}

TEST_CASE("malformed lines are refused with the column named and the batch untouched")
{
    struct bad_case {
        std::string line;
        errc code;
        const char* detail;
    };
    const bad_case cases[] = {
        {"1 3:", errc::bad_feature, "column 2 ('3:'): the value is not a number"},
        {"1 :1", errc::bad_feature, "column 2 (':1'): the index is not a whole number"},
        {"1 a:1", errc::bad_feature, "column 2 ('a:1'): the index is not a whole number"},
        {"1 2:1 -3:1", errc::bad_feature, "column 3 ('-3:1'): the index is not a whole number"},
        {"1 2:x", errc::bad_feature, "column 2 ('2:x'): the value is not a number"},
        {"1 2", errc::bad_feature, "column 2 ('2'): a feature needs the form index:value"},
        {"1 2:1 5:1 4:1", errc::unsorted_indices, "column 4 ('4:1'): the index is not above"},
        {"1 2:1 2:3", errc::unsorted_indices, "column 3 ('2:3')"},
        {"one 1:1", errc::bad_label, "column 1 ('one'): the label is not a number"},
        {"1,2 1:1", errc::bad_label, "column 1 ('1,2')"},
        {"1 0:1", errc::index_out_of_range, "column 2 ('0:1'): index 0 in one-based data"},
        {"1 11:1", errc::index_out_of_range, "column 2 ('11:1'): the index is beyond the 10 features"},
        {"1 qid:x 1:1", errc::bad_feature, "column 2 ('qid:x'): the query id is not a whole number"},
        {"1 1:1 qid:2", errc::bad_feature, "column 3 ('qid:2')"},  // qid comes first or not at all
        {"1 1:1 " + std::string(60, '9'), errc::bad_feature, "999...'): a feature needs"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        const auto f = parse_bad(c.line);
        CHECK(f.ec == make_error_code(c.code));
        CHECK_THAT(f.detail, Catch::Contains(c.detail));
        CHECK(f.ec.category().name() == std::string("libsvm"));
    }
}

TEST_CASE("through pipemode::reader: line framing, a skipped bad line, origins as line numbers")
{
    const std::string text = "1 1:1\n# comment\n2 x:1\n3 2:3\r\n4 3:4";  // no "\n" after the last line
    const auto bytes = std::as_bytes(std::span(text));
    std::vector<std::string> warnings;
    // The parser declares independent_records: two decode workers must change nothing.
    const std::size_t workers = GENERATE(1, 2);
    CAPTURE(workers);
    pipemode::reader r(pipemode::source_list({[&](const pipemode::source_context&) {
                           return pipemode::any_byte_source(pipemode::memory_source(bytes, "svm"));
                       }}),
                       pipemode::line_decoder{}, libsvm_parser({.feature_dim = 4}),
                       {.batch_size = 2, .bad_records = pipemode::bad_record_policy::skip_and_warn,
                        .decode_workers = workers,
                        .on_warning = [&](std::string_view w) { warnings.emplace_back(w); }});
    std::vector<float> labels;
    std::vector<std::uint64_t> lines;
    for (auto& b : r) {
        for (std::size_t i = 0; i < b.size(); ++i) {
            labels.push_back(b.label(values_name).values<float>()[i]);
            lines.push_back(b.location(i).record_index);
        }
    }
    CHECK(labels == std::vector<float>{1, 3, 4});
    CHECK(lines == std::vector<std::uint64_t>{0, 3, 4});
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains("memory:svm") && Catch::Contains("record 2")
                                && Catch::Contains("column 2 ('x:1'): the index is not a whole number"));
    CHECK(r.stats().bad_records == 1);
}
