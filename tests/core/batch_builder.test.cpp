// batch_builder: rows into columns, the schema the first record fixes, rollback, take and pad.
#include <pipemode/core/batch_builder.hpp>

#include "counting_new.hpp"
#include "counting_resource.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

// Heap allocations (counting_new.hpp), to check that a builder in steady state allocates
// nothing while a batch fills.
namespace {
auto& allocations = pipemode::test::heap_allocations;
}

using namespace pipemode;
using test::counting_resource;

namespace {

constexpr auto features = record_section::features;
constexpr auto label = record_section::label;

template <class T>
void put(batch_builder& b, record_section s, std::string_view name, std::vector<T> values,
         std::vector<std::uint64_t> shape = {})
{
    b.begin_tensor(s, name, tensor_type_of_v<T>);
    b.append_values(std::as_bytes(std::span(values)));
    for (auto d : shape)
        b.append_shape(d);
}

template <class T>
void put_sparse(batch_builder& b, record_section s, std::string_view name, std::vector<T> values,
                std::vector<std::uint64_t> keys, std::uint64_t columns)
{
    b.begin_tensor(s, name, tensor_type_of_v<T>);
    auto* v = b.extend_values<T>(values.size());
    std::copy(values.begin(), values.end(), v);
    auto* k = b.extend_keys(keys.size());
    std::copy(keys.begin(), keys.end(), k);
    b.append_shape(columns);
}

void put_bytes(batch_builder& b, record_section s, std::string_view name, std::vector<std::string> items)
{
    b.begin_tensor(s, name, tensor_type::bytes);
    for (const auto& i : items)
        b.append_item(std::as_bytes(std::span(i.data(), i.size())));
}

void end_tensor_ok(batch_builder& b)
{
    error_code ec;
    INFO(b.error_detail());
    REQUIRE(b.end_tensor(ec));
    REQUIRE(!ec);
}

// One record of the schema the tests use: dense float32 "d" of shape [2, 3], sparse float64
// "s" of 10 columns, int32 "i" of 2, bytes "b", and a float32 label "y".
struct row {
    float base = 0;
    std::vector<std::uint64_t> keys;
    std::vector<std::string> items;
};

bool add_row(batch_builder& b, const row& r, std::uint64_t index, std::string_view source = "src")
{
    b.begin_record(source, {{}, 100 + index, index});
    put<float>(b, features, "d", {r.base, r.base + 1, r.base + 2, r.base + 3, r.base + 4, r.base + 5}, {2, 3});
    end_tensor_ok(b);
    std::vector<double> sv;
    for (auto k : r.keys)
        sv.push_back(r.base + static_cast<double>(k) / 10);
    put_sparse<double>(b, features, "s", sv, r.keys, 10);
    end_tensor_ok(b);
    b.begin_tensor(features, "i", tensor_type::int32);
    auto* iv = b.extend_values<std::int32_t>(2);
    iv[0] = static_cast<std::int32_t>(index);
    iv[1] = -static_cast<std::int32_t>(index);
    end_tensor_ok(b);
    put_bytes(b, features, "b", r.items);
    end_tensor_ok(b);
    put<float>(b, label, "y", {r.base * 2});
    end_tensor_ok(b);
    error_code ec;
    bool full = b.end_record(ec);
    INFO(b.error_detail());
    REQUIRE(!ec);
    return full;
}

template <class T>
std::vector<T> vec(std::span<const T> s)
{
    return {s.begin(), s.end()};
}

// Two batches hold the same rows, column by column, down to offsets and origins.
void check_same(const batch& a, const batch& b)
{
    REQUIRE(a.size() == b.size());
    CHECK(a.padding() == b.padding());
    CHECK(a.epoch() == b.epoch());
    REQUIRE(a.origins().size() == b.origins().size());
    for (std::size_t i = 0; i < a.origins().size(); ++i)
        CHECK(a.location(i).to_string() == b.location(i).to_string());
    auto same_columns = [](std::span<const column> x, std::span<const column> y) {
        REQUIRE(x.size() == y.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            const auto& p = x[i];
            const auto& q = y[i];
            INFO("column " << p.name());
            CHECK(p.name() == q.name());
            REQUIRE(p.type() == q.type());
            CHECK(p.is_sparse() == q.is_sparse());
            CHECK(vec(p.shape()) == vec(q.shape()));
            CHECK(p.rows() == q.rows());
            CHECK(p.row_size() == q.row_size());
            CHECK(vec(p.keys()) == vec(q.keys()));
            CHECK(vec(p.row_offsets()) == vec(q.row_offsets()));
            CHECK(vec(p.item_offsets()) == vec(q.item_offsets()));
            switch (p.type()) {
            case tensor_type::float32: CHECK(vec(p.values<float>()) == vec(q.values<float>())); break;
            case tensor_type::float64: CHECK(vec(p.values<double>()) == vec(q.values<double>())); break;
            case tensor_type::int32: CHECK(vec(p.values<std::int32_t>()) == vec(q.values<std::int32_t>())); break;
            case tensor_type::bytes: CHECK(vec(p.values<std::byte>()) == vec(q.values<std::byte>())); break;
            }
        }
    };
    same_columns(a.features(), b.features());
    same_columns(a.labels(), b.labels());
}

std::string item_string(const column& c, std::size_t row, std::size_t j)
{
    auto s = c.item(row, j);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
}

// A record of fixed shape written from static arrays, so that only the builder could allocate.
// Returns whether it was written without error, and whether the batch is full.
std::pair<bool, bool> add_static(batch_builder& b, std::uint64_t index, std::string_view source = "f")
{
    static const float d[6] = {1, 2, 3, 4, 5, 6};
    static const double sv[3] = {0.1, 0.5, 0.8};
    static const std::uint64_t keys[3] = {1, 5, 8};
    static const char text[] = "abcde";
    static const float y[1] = {1};
    error_code ec;
    bool ok = true;
    b.begin_record(source, {{}, index, index});
    b.begin_tensor(b.find_column(features, "d"), tensor_type::float32);
    b.append_values(std::as_bytes(std::span(d)));
    b.append_shape(2);
    b.append_shape(3);
    ok &= b.end_tensor(ec);
    b.begin_tensor(b.find_column(features, "s"), tensor_type::float64);
    b.append_values(std::as_bytes(std::span(sv)));
    std::copy(std::begin(keys), std::end(keys), b.extend_keys(3));
    b.append_shape(10);
    ok &= b.end_tensor(ec);
    b.begin_tensor(b.find_column(features, "b"), tensor_type::bytes);
    b.append_item(std::as_bytes(std::span(text, 3)));
    b.append_item(std::as_bytes(std::span(text + 3, 2)));
    ok &= b.end_tensor(ec);
    b.begin_tensor(b.find_column(label, "y"), tensor_type::float32);
    b.append_values(std::as_bytes(std::span(y)));
    ok &= b.end_tensor(ec);
    bool full = b.end_record(ec);
    return std::pair(ok && !ec, full);
}

} // namespace

TEST_CASE("dense, sparse, int32 and bytes tensors land in their columns")
{
    batch_builder b(3);
    CHECK(b.empty());
    CHECK(!b.has_schema());
    CHECK(!add_row(b, {0, {1, 7}, {}}, 0));
    CHECK(b.has_schema());
    CHECK(!add_row(b, {10, {}, {"x"}}, 1, "other"));  // an empty sparse row
    CHECK(add_row(b, {20, {0, 3, 9}, {"", "yz"}}, 2));
    CHECK(b.full());
    CHECK(b.size() == 3);
    auto x = b.take(7);
    CHECK(b.empty());

    CHECK(x.size() == 3);
    CHECK(x.epoch() == 7);
    REQUIRE(x.features().size() == 4);
    CHECK(x.features()[0].name() == "d");
    CHECK(x.features()[3].name() == "b");
    REQUIRE(x.labels().size() == 1);

    const auto& d = x.feature("d");
    CHECK(!d.is_sparse());
    CHECK(vec(d.shape()) == std::vector<std::uint64_t>{2, 3});
    CHECK(d.row_size() == 6);
    CHECK(d.rows() == 3);
    CHECK(vec(d.row<float>(2)) == std::vector<float>{20, 21, 22, 23, 24, 25});

    const auto& s = x.feature("s");
    CHECK(s.is_sparse());
    CHECK(vec(s.shape()) == std::vector<std::uint64_t>{10});
    CHECK(vec(s.row_offsets()) == std::vector<std::uint64_t>{0, 2, 2, 5});
    CHECK(vec(s.keys()) == std::vector<std::uint64_t>{1, 7, 0, 3, 9});
    CHECK(vec(s.row<double>(0)) == std::vector<double>{0.1, 0.7});
    CHECK(s.row<double>(1).empty());
    CHECK(vec(s.row_keys(2)) == std::vector<std::uint64_t>{0, 3, 9});

    const auto& i = x.feature("i");
    CHECK(vec(i.values<std::int32_t>()) == std::vector<std::int32_t>{0, 0, 1, -1, 2, -2});
    CHECK(vec(i.shape()) == std::vector<std::uint64_t>{2});

    const auto& by = x.feature("b");
    CHECK(by.type() == tensor_type::bytes);
    CHECK(vec(by.row_offsets()) == std::vector<std::uint64_t>{0, 0, 1, 3});
    CHECK(by.item_count(0) == 0);
    CHECK(item_string(by, 1, 0) == "x");
    CHECK(item_string(by, 2, 0).empty());
    CHECK(item_string(by, 2, 1) == "yz");

    CHECK(vec(x.label("y").values<float>()) == std::vector<float>{0, 20, 40});

    REQUIRE(x.sources().size() == 2);
    CHECK(x.location(0).to_string() == "src, byte 100, record 0");
    CHECK(x.location(1).to_string() == "other, byte 101, record 1");
    CHECK(x.location(2).to_string() == "src, byte 102, record 2");
}

TEST_CASE("same_schema: two builders agree exactly when their first records had the same tensors")
{
    // A record of one dense tensor "v" of `type`, with `values` values in a row of that shape.
    auto one_tensor = [](batch_builder& b, tensor_type type, std::size_t values) {
        b.begin_record("src", {{}, 0, 0});
        b.begin_tensor(features, "v", type);
        if (type == tensor_type::float32)
            std::fill_n(b.extend_values<float>(values), values, 1.0f);
        else
            std::fill_n(b.extend_values<double>(values), values, 1.0);
        end_tensor_ok(b);
        error_code ec;
        (void)b.end_record(ec);
        REQUIRE(!ec);
    };
    batch_builder a(4), b(4), other_shape(4), other_type(4), full_schema(4);
    CHECK(!a.same_schema(b));  // neither has one yet
    one_tensor(a, tensor_type::float32, 3);
    CHECK(!a.same_schema(b));  // b has none yet
    one_tensor(b, tensor_type::float32, 3);
    CHECK(a.same_schema(b));
    CHECK(b.same_schema(a));
    one_tensor(other_shape, tensor_type::float32, 4);
    CHECK(!a.same_schema(other_shape));
    one_tensor(other_type, tensor_type::float64, 3);
    CHECK(!a.same_schema(other_type));
    add_row(full_schema, {1, {2}, {"x"}}, 0);  // more columns
    CHECK(!a.same_schema(full_schema));
    // The schema outlives the batches: the same after take().
    (void)a.take();
    CHECK(a.same_schema(b));
}

TEST_CASE("the first record fixes the schema, and a difference is a mismatch that names the tensor")
{
    batch_builder b(100);
    add_row(b, {1, {2}, {"a"}}, 0);

    struct mismatch {
        const char* what;
        std::function<void(batch_builder&)> write;  // writes a whole record but for the flaw
        std::string detail;
    };
    auto ok_d = [](batch_builder& x) {
        put<float>(x, features, "d", {1, 2, 3, 4, 5, 6}, {2, 3});
        end_tensor_ok(x);
    };
    auto ok_s = [](batch_builder& x) {
        put_sparse<double>(x, features, "s", {1}, {4}, 10);
        end_tensor_ok(x);
    };
    auto ok_i = [](batch_builder& x) {
        put<std::int32_t>(x, features, "i", {1, 2});
        end_tensor_ok(x);
    };
    auto ok_b = [](batch_builder& x) {
        put_bytes(x, features, "b", {});
        end_tensor_ok(x);
    };
    auto ok_y = [](batch_builder& x) {
        put<float>(x, label, "y", {1});
        end_tensor_ok(x);
    };
    std::vector<mismatch> cases = {
        {"element type",
         [&](batch_builder& x) { put<double>(x, features, "d", {1, 2, 3, 4, 5, 6}, {2, 3}); },
         "feature 'd': expected float32 dense of shape [2, 3], got float64 dense of shape [2, 3]"},
        {"dense shape",
         [&](batch_builder& x) { put<float>(x, features, "d", {1, 2, 3, 4, 5, 6}, {3, 2}); },
         "feature 'd': expected float32 dense of shape [2, 3], got float32 dense of shape [3, 2]"},
        {"dense size",
         [&](batch_builder& x) { put<float>(x, features, "d", {1, 2, 3, 4, 5}); },
         "feature 'd': expected float32 dense of shape [2, 3], got float32 dense of shape [5]"},
        {"sparse for dense",
         [&](batch_builder& x) { put_sparse<float>(x, features, "d", {1}, {0}, 6); },
         "feature 'd': expected float32 dense of shape [2, 3], got float32 sparse of 6 columns"},
        {"dense for sparse",
         [&](batch_builder& x) { ok_d(x); put<double>(x, features, "s", {1, 2, 3}); },
         "feature 's': expected float64 sparse of 10 columns, got float64 dense of shape [3]"},
        {"sparse column count",
         [&](batch_builder& x) { ok_d(x); put_sparse<double>(x, features, "s", {1}, {0}, 11); },
         "feature 's': expected float64 sparse of 10 columns, got float64 sparse of 11 columns"},
        {"numbers for bytes",
         [&](batch_builder& x) { ok_d(x); ok_s(x); ok_i(x); put<std::int32_t>(x, features, "b", {1}); },
         "feature 'b': expected bytes, got int32 dense of shape [1]"},
        {"a feature missing",
         [&](batch_builder& x) { ok_d(x); ok_s(x); ok_i(x); ok_y(x); },
         "feature 'b' is missing (the first record had it)"},
        {"a label missing",
         [&](batch_builder& x) { ok_d(x); ok_s(x); ok_i(x); ok_b(x); },
         "label 'y' is missing (the first record had it)"},
        {"a feature too many",
         [&](batch_builder& x) { ok_d(x); put<float>(x, features, "zz", {1}); },
         "feature 'zz' (float32 dense of shape [1]) is not in the first record, whose features are: d, s, i, b"},
        {"a label too many",
         [&](batch_builder& x) { ok_d(x); put<float>(x, label, "d", {1}); },
         "label 'd' (float32 dense of shape [1]) is not in the first record, whose labels are: y"},
        {"a feature twice",
         [&](batch_builder& x) { ok_d(x); put<float>(x, features, "d", {1, 2, 3, 4, 5, 6}, {2, 3}); },
         "feature 'd' appears more than once in the record"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        b.begin_record("bad", {{}, 0, 9});
        c.write(b);
        error_code ec;
        // The flaw shows at its end_tensor (the missing ones at end_record); either way the
        // record cannot be committed.
        bool tensor_failed = false;
        if (c.detail.find("missing") == std::string::npos) {
            tensor_failed = !b.end_tensor(ec);
            CHECK(tensor_failed);
            CHECK(ec == errc::schema_mismatch);
        }
        CHECK(!b.end_record(ec));
        CHECK(ec == errc::schema_mismatch);
        CHECK(b.error_detail() == c.detail);
        CHECK(b.size() == 1);
    }
    // Nothing of the bad records stayed: the batch is the first row and one more good one.
    add_row(b, {5, {3}, {"b"}}, 1);
    auto x = b.take();
    batch_builder fresh(100);
    add_row(fresh, {1, {2}, {"a"}}, 0);
    add_row(fresh, {5, {3}, {"b"}}, 1);
    check_same(x, fresh.take());
}

TEST_CASE("tensors that break the layout rules are unsupported_value")
{
    struct flaw {
        std::function<void(batch_builder&)> write;
        std::string detail;
    };
    std::vector<flaw> flaws = {
        {[](batch_builder& b) {
             b.begin_tensor(features, "s", tensor_type::float32);
             *b.extend_values<float>(1) = 1;
             *b.extend_keys(1) = 0;
         },
         "feature 's': a sparse tensor needs a one-element shape (its column count), got []"},
        {[](batch_builder& b) { put_sparse<float>(b, features, "s", {1, 2}, {0}, 5); },
         "feature 's': a sparse tensor has 1 keys for 2 values"},
        {[](batch_builder& b) { put_sparse<float>(b, features, "s", {1, 2}, {0, 5}, 5); },
         "feature 's': key 5 is outside the tensor's 5 columns"},
        {[](batch_builder& b) {
             put_sparse<float>(b, features, "s", {1}, {0}, 5);
             b.append_shape(2);
         },
         "feature 's': a sparse tensor needs a one-element shape (its column count), got [5, 2]"},
        {[](batch_builder& b) { put<float>(b, label, "d", {1, 2, 3}, {2, 2}); },
         "label 'd': shape [2, 2] does not hold its 3 values"},
        {[](batch_builder& b) { put<float>(b, features, "d", {1}, {4294967296, 4294967296, 0, 1}); },
         "feature 'd': shape [4294967296, 4294967296, 0, 1] does not hold its 1 values"},
    };
    for (const auto& f : flaws) {
        INFO(f.detail);
        batch_builder b(2);
        b.begin_record("x", {});
        f.write(b);
        error_code ec;
        CHECK(!b.end_tensor(ec));
        CHECK(ec == errc::unsupported_value);
        CHECK(b.error_detail() == f.detail);
        CHECK(!b.end_record(ec));
        CHECK(ec == errc::unsupported_value);
        CHECK(!b.has_schema());
        CHECK(b.empty());
    }
}

TEST_CASE("the layout of a tensor follows from its keys, values and shape")
{
    batch_builder b(2);
    b.begin_record("x", {});
    put<float>(b, features, "empty", {});                           // dense of shape [0]
    end_tensor_ok(b);
    put<float>(b, features, "zero_dim", {}, {3, 0});                // dense of shape [3, 0]
    end_tensor_ok(b);
    put<float>(b, features, "empty_sparse", {}, {8});               // sparse, 8 columns, no non-zeros
    end_tensor_ok(b);
    put<double>(b, features, "matrix", {1, 2, 3, 4, 5, 6}, {3, 2});  // dense with a shape
    end_tensor_ok(b);
    error_code ec;
    b.end_record(ec);
    REQUIRE(!ec);
    auto x = b.take();
    CHECK(!x.feature("empty").is_sparse());
    CHECK(vec(x.feature("empty").shape()) == std::vector<std::uint64_t>{0});
    CHECK(!x.feature("zero_dim").is_sparse());
    CHECK(vec(x.feature("zero_dim").shape()) == std::vector<std::uint64_t>{3, 0});
    CHECK(x.feature("empty_sparse").is_sparse());
    CHECK(vec(x.feature("empty_sparse").shape()) == std::vector<std::uint64_t>{8});
    CHECK(vec(x.feature("empty_sparse").row_offsets()) == std::vector<std::uint64_t>{0, 0});
    CHECK(x.feature("matrix").row_size() == 6);
}

TEST_CASE("write_tensor has the outcome of begin_tensor, append_values and end_tensor")
{
    // Two builders take the same records, one through write_tensor and one through the three
    // calls: every record must end alike (error and sentence) and the batches must be equal.
    struct tensor {
        record_section section;
        const char* name;
        tensor_type type;
        std::vector<std::byte> bytes;
    };
    auto f32 = [](std::vector<float> v) { auto b = std::as_bytes(std::span(v)); return std::vector<std::byte>(b.begin(), b.end()); };
    auto f64 = [](std::vector<double> v) { auto b = std::as_bytes(std::span(v)); return std::vector<std::byte>(b.begin(), b.end()); };
    auto i32 = [](std::vector<std::int32_t> v) { auto b = std::as_bytes(std::span(v)); return std::vector<std::byte>(b.begin(), b.end()); };
    auto ok = [&](float base) {
        return std::vector<tensor>{{features, "x", tensor_type::float32, f32({base, base + 1, base + 2})},
                                   {features, "n", tensor_type::int32, i32({int(base), -int(base)})},
                                   {label, "y", tensor_type::float64, f64({base * 2})}};
    };
    std::vector<std::vector<tensor>> records = {ok(1), ok(2)};
    records.push_back({{features, "x", tensor_type::float32, f32({1, 2, 3, 4})}, ok(3)[1], ok(3)[2]});  // 4 values
    records.push_back({{features, "x", tensor_type::float64, f64({1, 2, 3})}, ok(4)[1], ok(4)[2]});     // float64
    records.push_back({ok(5)[0], ok(5)[0], ok(5)[1], ok(5)[2]});                                        // "x" twice
    records.push_back({ok(6)[0], ok(6)[2]});                                                            // "n" missing
    records.push_back({ok(7)[2], ok(7)[1], ok(7)[0]});                                                  // another order
    records.push_back(ok(8));

    batch_builder direct(100);
    batch_builder reference(100);
    for (std::size_t i = 0; i < records.size(); ++i) {
        INFO("record " << i);
        direct.begin_record("src", {{}, i, i});
        reference.begin_record("src", {{}, i, i});
        error_code direct_ec, reference_ec;
        bool direct_ok = true, reference_ok = true;
        for (const auto& t : records[i]) {
            if (direct_ok && !direct.write_tensor(direct.find_column(t.section, t.name), t.type, t.bytes, direct_ec))
                direct_ok = false;
            if (reference_ok) {
                reference.begin_tensor(reference.find_column(t.section, t.name), t.type);
                reference.append_values(t.bytes);
                reference_ok = reference.end_tensor(reference_ec);
            }
        }
        CHECK(direct_ok == reference_ok);
        CHECK(direct_ec == reference_ec);
        if (direct_ok)
            direct.end_record(direct_ec);
        else
            direct.abort_record();
        if (reference_ok)
            reference.end_record(reference_ec);
        else
            reference.abort_record();
        CHECK(direct_ec == reference_ec);
        CHECK(direct.error_detail() == reference.error_detail());
        CHECK(bool(direct_ec) == (i >= 2 && i <= 5));
    }
    REQUIRE(direct.size() == 4);
    auto a = direct.take();
    auto b = reference.take();
    check_same(a, b);
    CHECK(vec(a.feature("x").values<float>()) == std::vector<float>{1, 2, 3, 2, 3, 4, 7, 8, 9, 8, 9, 10});
    CHECK(vec(a.label("y").values<double>()) == std::vector<double>{2, 4, 14, 16});
}

TEST_CASE("abort_record rolls back exactly what the record wrote")
{
    batch_builder b(10);
    add_row(b, {1, {2}, {"a"}}, 0);
    add_row(b, {2, {3, 4}, {"b", "c"}}, 1);

    SECTION("at every stage of a record, under a new source name")
    {
        for (int stage = 0; stage < 6; ++stage) {
            INFO("stage " << stage);
            b.begin_record("never-committed", {{}, 7, 7});
            if (stage > 0)
                put<float>(b, features, "d", {9, 9, 9, 9, 9, 9}, {2, 3}), end_tensor_ok(b);
            if (stage > 1)
                put_sparse<double>(b, features, "s", {9, 9, 9}, {1, 2, 3}, 10), end_tensor_ok(b);
            if (stage > 2)
                put<std::int32_t>(b, features, "i", {9, 9}), end_tensor_ok(b);
            if (stage > 3)
                put_bytes(b, features, "b", {"garbage", "more"});  // left open
            if (stage > 4) {
                end_tensor_ok(b);
                put<float>(b, label, "y", {9});
            }
            b.abort_record();
            CHECK(b.size() == 2);
        }
    }
    SECTION("after a tensor failed")
    {
        b.begin_record("never-committed", {{}, 7, 7});
        put<float>(b, features, "d", {9, 9, 9, 9, 9, 9}, {2, 3});
        end_tensor_ok(b);
        put_sparse<double>(b, features, "s", {9}, {12}, 10);
        error_code ec;
        CHECK(!b.end_tensor(ec));
        b.abort_record();
    }
    SECTION("when end_record finds a tensor missing (it rolls back itself)")
    {
        b.begin_record("never-committed", {{}, 7, 7});
        put<float>(b, features, "d", {9, 9, 9, 9, 9, 9}, {2, 3});
        end_tensor_ok(b);
        error_code ec;
        CHECK(!b.end_record(ec));
        CHECK(ec == errc::schema_mismatch);
        b.abort_record();  // harmless: nothing is open
    }
    add_row(b, {3, {5}, {"d"}}, 2);
    auto got = b.take();
    CHECK(got.sources().size() == 1);

    batch_builder clean(10);
    add_row(clean, {1, {2}, {"a"}}, 0);
    add_row(clean, {2, {3, 4}, {"b", "c"}}, 1);
    add_row(clean, {3, {5}, {"d"}}, 2);
    check_same(got, clean.take());
}

TEST_CASE("an aborted first record leaves no schema behind")
{
    batch_builder b(3);
    b.begin_record("x", {});
    put<float>(b, features, "a", {1, 2});
    end_tensor_ok(b);
    b.abort_record();
    CHECK(!b.has_schema());
    b.begin_record("x", {});
    put<std::int32_t>(b, features, "other", {5});
    end_tensor_ok(b);
    error_code ec;
    b.end_record(ec);
    REQUIRE(!ec);
    auto x = b.take();
    REQUIRE(x.features().size() == 1);
    CHECK(x.features()[0].name() == "other");
    CHECK(x.sources().size() == 1);
}

TEST_CASE("names may come in any order, and columns keep the first record's order")
{
    batch_builder b(2);
    b.begin_record("x", {});
    put<float>(b, features, "first", {1});
    end_tensor_ok(b);
    put<float>(b, label, "first", {2});
    end_tensor_ok(b);
    put<float>(b, features, "second", {3, 4});
    end_tensor_ok(b);
    error_code ec;
    b.end_record(ec);
    b.begin_record("x", {});
    CHECK(b.find_column(features, "second") == 2);
    CHECK(b.find_column(features, "nope") == batch_builder::npos);
    put<float>(b, features, "second", {30, 40});
    end_tensor_ok(b);
    put<float>(b, features, "first", {10});
    end_tensor_ok(b);
    put<float>(b, label, "first", {20});
    end_tensor_ok(b);
    CHECK(b.end_record(ec));
    REQUIRE(!ec);
    auto x = b.take();
    CHECK(x.features()[0].name() == "first");
    CHECK(vec(x.feature("first").values<float>()) == std::vector<float>{1, 10});
    CHECK(vec(x.feature("second").values<float>()) == std::vector<float>{3, 4, 30, 40});
    CHECK(vec(x.label("first").values<float>()) == std::vector<float>{2, 20});
}

TEST_CASE("take() hands the batch out and starts an empty one of the same schema")
{
    batch_builder b(3);
    CHECK(b.take().empty());  // nothing yet: an empty batch
    std::vector<batch> out;
    std::uint64_t index = 0;
    for (int n = 0; n < 8; ++n) {
        if (add_row(b, {static_cast<float>(n), {static_cast<std::uint64_t>(n)}, {std::string(static_cast<std::size_t>(n), 'q')}}, index++, n < 4 ? "one" : "two"))
            out.push_back(b.take(n / 3));
    }
    out.push_back(b.take(9));
    REQUIRE(out.size() == 3);
    CHECK(out[0].size() == 3);
    CHECK(out[2].size() == 2);
    CHECK(out[2].epoch() == 9);
    CHECK(b.empty());
    // Each batch has its own source table and its rows only.
    CHECK(out[1].sources().size() == 2);
    CHECK(out[2].sources().size() == 1);
    CHECK(out[2].location(1).to_string() == "two, byte 107, record 7");
    CHECK(vec(out[2].feature("d").values<float>()) == std::vector<float>{6, 7, 8, 9, 10, 11, 7, 8, 9, 10, 11, 12});
    CHECK(vec(out[2].feature("s").keys()) == std::vector<std::uint64_t>{6, 7});
    CHECK(vec(out[2].feature("s").row_offsets()) == std::vector<std::uint64_t>{0, 1, 2});
    CHECK(item_string(out[2].feature("b"), 1, 0) == "qqqqqqq");
    CHECK(vec(out[1].feature("i").values<std::int32_t>()) == std::vector<std::int32_t>{3, -3, 4, -4, 5, -5});
}

TEST_CASE("in steady state a batch fills without allocating")
{
    batch_builder b(50);
    std::uint64_t index = 0;
    bool all_ok = true;
    auto fill = [&] {
        for (;;) {
            auto [ok, full] = add_static(b, index++);
            all_ok &= ok;
            if (full || !ok)
                return;
        }
    };
    fill();
    auto first = b.take();
    for (int round = 0; round < 3; ++round) {
        auto before = allocations.load();
        fill();
        auto during = allocations.load() - before;
        CHECK(all_ok);
        CHECK(during == 0);
        auto x = b.take();
        CHECK(x.size() == 50);
        CHECK(x.feature("b").item_offsets().size() == 101);
    }
}

TEST_CASE("pad() completes the batch with zero and empty rows")
{
    batch_builder b(5);
    add_row(b, {1, {2}, {"a"}}, 0);
    add_row(b, {2, {3}, {"b"}}, 1);
    // An aborted record leaves values past the columns' ends; padding must not show them.
    b.begin_record("x", {});
    put<float>(b, features, "d", {9, 9, 9, 9, 9, 9}, {2, 3});
    end_tensor_ok(b);
    put_sparse<double>(b, features, "s", {9}, {9}, 10);
    end_tensor_ok(b);
    b.abort_record();
    b.pad();
    CHECK(b.full());
    auto x = b.take();
    CHECK(x.size() == 5);
    CHECK(x.padding() == 3);
    CHECK(x.origins().size() == 2);
    const auto& d = x.feature("d");
    CHECK(d.rows() == 5);
    for (std::size_t r = 2; r < 5; ++r) {
        CHECK(vec(d.row<float>(r)) == std::vector<float>(6, 0.0f));
        CHECK(x.feature("s").row<double>(r).empty());
        CHECK(x.feature("b").item_count(r) == 0);
        CHECK(vec(x.feature("i").row<std::int32_t>(r)) == std::vector<std::int32_t>{0, 0});
        CHECK(x.label("y").row<float>(r)[0] == 0);
    }
    CHECK(vec(x.feature("s").row_offsets()) == std::vector<std::uint64_t>{0, 1, 2, 2, 2, 2});
    CHECK(x.feature("s").keys().size() == 2);

    b.pad();  // nothing to pad in an empty batch
    CHECK(b.empty());
    add_row(b, {3, {}, {}}, 2);
    auto y = b.take();
    CHECK(y.padding() == 0);
    CHECK(y.size() == 1);
}

TEST_CASE("a batch size of 0 is refused")
{
    CHECK_THROWS_AS(batch_builder(0), std::invalid_argument);
}

TEST_CASE("batches from a pool are the batches a fresh builder makes, and their storage comes from the caller's resource")
{
    // Rows whose sparse and bytes parts change size from batch to batch, and sources with long
    // names (heap strings) that change between batches: recycled storage holds stale values,
    // offsets and names of every size, none of which may show.
    auto make_row = [](std::size_t n) {
        row r{static_cast<float>(n), {}, {}};
        for (std::size_t k = 0; k < (n * 7) % 10; ++k)
            r.keys.push_back(k);
        for (std::size_t j = 0; j < n % 4; ++j)
            r.items.push_back(std::string((n + j) % 23, static_cast<char>('a' + j)));
        return r;
    };
    auto source_of = [](std::size_t n) { return "s3://bucket/a/rather/long/key/part-" + std::to_string(n / 7) + ".rec"; };
    auto build = [&](batch_builder& b, std::size_t rows, auto&& on_batch) {
        for (std::size_t n = 0; n < rows; ++n) {
            if (n == 40)  // a failed record between good ones: its source name is rolled back
            {
                b.begin_record("a failed record's long source name", {{}, 0, 0});
                b.abort_record();
            }
            if (add_row(b, make_row(n), n, source_of(n)))
                on_batch(b.take(n / 30));
        }
        if (!b.empty()) {
            b.pad();
            on_batch(b.take(99));
        }
    };

    std::vector<batch> expected;
    batch_builder plain(8);
    build(plain, 100, [&](batch x) { expected.push_back(std::move(x)); });
    REQUIRE(expected.size() == 13);

    counting_resource memory;
    {
        auto pool = batch_pool::make(2, &memory);
        batch_builder pooled(8, pool);
        std::size_t i = 0;
        build(pooled, 100, [&](batch x) {
            INFO("batch " << i);
            REQUIRE(i < expected.size());
            check_same(x, expected[i++]);
            CHECK(vec(x.sources()) == vec(expected[i - 1].sources()));
            // x goes back to the pool here.
        });
        CHECK(i == expected.size());
        CHECK(pool->idle() <= 2);
        CHECK(memory.allocations.load() > 0);  // the storage came from the caller's resource
        CHECK(memory.bytes_held.load() > 0);

        // A batch kept, copied and assigned over goes back too, and the copy's storage comes
        // from the same resource.
        build(pooled, 16, [&](batch x) {
            batch copy = x;
            check_same(copy, x);
            // The copy holds the values in use, not the storage's full capacity.
            CHECK(copy.byte_size() <= x.byte_size());
            x = std::move(copy);
            CHECK(x.feature("d").rows() == x.size());
        });
    }
    // Everything was given back to the resource it came from once the pool and its batches went.
    CHECK(memory.bytes_held.load() == 0);
}

TEST_CASE("a builder with a pool allocates nothing in steady state, from the resource or the heap")
{
    counting_resource memory;
    auto pool = batch_pool::make(2, &memory);
    batch_builder b(50, pool);
    std::uint64_t index = 0;
    const std::string long_source = "a source name longer than a short string's buffer";
    auto one_batch = [&] {
        bool all_ok = true;
        for (;;) {
            auto [ok, full] = add_static(b, index++, long_source);
            all_ok &= ok;
            if (full || !ok)
                break;
        }
        CHECK(all_ok);
        auto x = b.take();
        CHECK(x.size() == 50);
        CHECK(x.sources().size() == 1);
        CHECK(x.feature("s").keys().size() == 150);
        // x gives its storage back here.
    };
    // The first batches allocate: the one being built and one in the training loop's hands.
    for (int i = 0; i < 3; ++i)
        one_batch();
    const auto resource_before = memory.allocations.load();
    const auto heap_before = allocations.load();
    for (int i = 0; i < 20; ++i)
        one_batch();
    CHECK(memory.allocations.load() - resource_before == 0);
    CHECK(allocations.load() - heap_before == 0);
}
