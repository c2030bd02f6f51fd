// protobuf_record_parser and encode_record, checked against libprotobuf: whatever libprotobuf
// reads from a byte string, the parser must read the same (or reject it as libprotobuf does).
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "record.pb.h"
#include "record_gen.hpp"

#include <catch2/catch.hpp>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/logging.h>

#include <bit>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace pipemode;
using aialgs::data::Record;
using aialgs::data::Value;
using pipemode::test::wire_writer;

namespace {

// ---------------------------------------------------------------------------------------------
// What pipemode should make of a message libprotobuf has read (the rules of
// docs/formats/protobuf-record.md, written again independently of the builder).

template <class Tensor>
bool is_sparse_tensor(const Tensor& t)
{
    if (t.keys_size() != 0)
        return true;
    if (t.values_size() == 0 && t.shape_size() != 0) {
        for (auto d : t.shape())
            if (d == 0)
                return false;
        return true;
    }
    return false;
}

template <class Tensor>
bool tensor_supported(const Tensor& t)
{
    if (is_sparse_tensor(t)) {
        if (t.shape_size() != 1 || t.keys_size() != t.values_size())
            return false;
        for (auto k : t.keys())
            if (k >= t.shape(0))
                return false;
        return true;
    }
    if (t.shape_size() == 0)
        return true;
    auto n = static_cast<std::uint64_t>(t.values_size());
    for (auto d : t.shape())
        if (d == 0)
            return n == 0;
    std::uint64_t product = 1;  // never above n, so it cannot overflow
    for (auto d : t.shape()) {
        if (d > n / product)
            return false;
        product *= d;
    }
    return product == n;
}

bool value_supported(const Value& v)
{
    switch (v.value_case()) {
    case Value::kFloat32Tensor: return tensor_supported(v.float32_tensor());
    case Value::kFloat64Tensor: return tensor_supported(v.float64_tensor());
    case Value::kInt32Tensor: return tensor_supported(v.int32_tensor());
    case Value::kBytes: return true;
    case Value::VALUE_NOT_SET: return false;
    }
    return false;
}

bool record_supported(const Record& r)
{
    for (const auto& [name, v] : r.features())
        if (!value_supported(v))
            return false;
    for (const auto& [name, v] : r.label())
        if (!value_supported(v))
            return false;
    return true;
}

std::string hex(std::string_view s)
{
    static const char* digits = "0123456789abcdef";
    std::string r;
    for (unsigned char c : s) {
        r += digits[c >> 4];
        r += digits[c & 15];
        r += ' ';
    }
    return r;
}

// Row `row` of `c` holds tensor `t`, values bit for bit.
template <class T, class Tensor>
void check_tensor(const Tensor& t, const column& c, std::size_t row)
{
    REQUIRE(c.type() == tensor_type_of_v<T>);
    bool sparse = is_sparse_tensor(t);
    REQUIRE(c.is_sparse() == sparse);
    auto values = c.row<T>(row);
    REQUIRE(values.size() == static_cast<std::size_t>(t.values_size()));
    if (!values.empty())
        CHECK(std::memcmp(values.data(), t.values().data(), values.size_bytes()) == 0);
    std::vector<std::uint64_t> shape(c.shape().begin(), c.shape().end());
    if (sparse) {
        auto keys = c.row_keys(row);
        CHECK(std::vector<std::uint64_t>(keys.begin(), keys.end())
              == std::vector<std::uint64_t>(t.keys().begin(), t.keys().end()));
        CHECK(shape == std::vector<std::uint64_t>{t.shape(0)});
    }
    else {
        std::vector<std::uint64_t> expected(t.shape().begin(), t.shape().end());
        if (expected.empty())
            expected.push_back(static_cast<std::uint64_t>(t.values_size()));
        CHECK(shape == expected);
        CHECK(c.row_size() == static_cast<std::size_t>(t.values_size()));
    }
}

void check_value(const Value& v, const column& c, std::size_t row)
{
    switch (v.value_case()) {
    case Value::kFloat32Tensor: return check_tensor<float>(v.float32_tensor(), c, row);
    case Value::kFloat64Tensor: return check_tensor<double>(v.float64_tensor(), c, row);
    case Value::kInt32Tensor: return check_tensor<std::int32_t>(v.int32_tensor(), c, row);
    case Value::kBytes: {
        REQUIRE(c.type() == tensor_type::bytes);
        const auto& items = v.bytes().value();
        REQUIRE(c.item_count(row) == static_cast<std::size_t>(items.size()));
        for (int j = 0; j < items.size(); ++j) {
            auto item = c.item(row, static_cast<std::size_t>(j));
            CHECK(std::string(reinterpret_cast<const char*>(item.data()), item.size()) == items[j]);
        }
        return;
    }
    case Value::VALUE_NOT_SET: FAIL("a Value with no tensor cannot be in a batch");
    }
}

// Row `row` of `b` holds record `r`: the same features and labels, each the same tensor.
void check_record(const Record& r, const batch& b, std::size_t row)
{
    REQUIRE(b.features().size() == static_cast<std::size_t>(r.features_size()));
    REQUIRE(b.labels().size() == static_cast<std::size_t>(r.label_size()));
    for (const auto& [name, v] : r.features()) {
        INFO("feature '" << name << "'");
        const auto* c = b.find_feature(name);
        REQUIRE(c != nullptr);
        check_value(v, *c, row);
    }
    for (const auto& [name, v] : r.label()) {
        INFO("label '" << name << "'");
        const auto* c = b.find_label(name);
        REQUIRE(c != nullptr);
        check_value(v, *c, row);
    }
}

struct parse_result {
    error_code ec;
    std::string detail;
    batch b;
};

// Parses `bytes` as the only record of a fresh builder (so the record is its own schema), from
// a heap copy of exactly its size so that a sanitizer sees any read past the end.
parse_result parse_alone(std::string_view bytes)
{
    std::vector<std::byte> copy(bytes.size());
    if (!bytes.empty())
        std::memcpy(copy.data(), bytes.data(), bytes.size());
    protobuf_record_parser parser;
    batch_builder builder(1);
    parse_result r;
    bool full = parser.parse({copy, 5, 7}, "memory:test", builder, r.ec);
    r.detail = parser.error_detail();
    if (!r.ec) {
        CHECK(full);
        r.b = builder.take();
    }
    else {
        CHECK(!full);
        CHECK(builder.empty());
        CHECK(!r.detail.empty());
    }
    return r;
}

// The parser agrees with libprotobuf on `bytes`: both reject it, or both read the same record
// (which pipemode then rejects as unsupported exactly when the rules say so).
void check_against_libprotobuf(std::string_view bytes)
{
    Record m;
    bool accepted = m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    auto r = parse_alone(bytes);
    INFO("bytes: " << hex(bytes));
    INFO("libprotobuf " << (accepted ? "accepts" : "rejects") << "; pipemode: " << r.ec.message() << " ("
                        << r.detail << ")");
    if (!accepted) {
        REQUIRE(r.ec == errc::malformed_protobuf);
        return;
    }
    if (!record_supported(m)) {
        REQUIRE(r.ec == errc::unsupported_value);
        return;
    }
    REQUIRE(!r.ec);
    REQUIRE(r.b.size() == 1);
    check_record(m, r.b, 0);
    REQUIRE(r.b.origins().size() == 1);
    CHECK(r.b.location(0).to_string() == "memory:test, byte 5, record 7");
}

// libprotobuf's encoding of `r`, with map entries sorted by key: its default order changes from
// run to run, and the tests that damage these bytes must hit the same bytes every run.
std::string serialize(const Record& r)
{
    std::string s;
    {
        google::protobuf::io::StringOutputStream stream(&s);
        google::protobuf::io::CodedOutputStream out(&stream);
        out.SetSerializationDeterministic(true);
        r.ByteSizeLong();  // caches the sizes of nested messages, which the next call writes
        r.SerializeWithCachedSizes(&out);
    }
    return s;
}

// A byte-exact rendering of a message, for comparing messages with NaNs in them.
std::string canonical(const Record& r)
{
    return serialize(r);
}

struct quiet_protobuf_logs {
    // Random map keys are not always valid UTF-8, which debug builds of generated code log.
    quiet_protobuf_logs() { google::protobuf::SetLogHandler(nullptr); }
};
const quiet_protobuf_logs quiet;

std::string field(std::uint32_t number, std::string_view body)
{
    wire_writer w;
    w.bytes(number, body);
    return w.out;
}

std::string entry(std::string_view key, std::string_view value)
{
    return field(1, key) + field(2, value);
}

std::string le_floats(std::initializer_list<float> v)
{
    std::string s;
    for (float f : v)
        s.append(reinterpret_cast<const char*>(&f), 4);
    return s;
}

} // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("reads every random record as libprotobuf serializes it")
{
    std::mt19937_64 rng(20240611);
    test::record_gen_options o;
    o.unsupported_probability = 0.05;
    int unsupported = 0;
    for (int i = 0; i < 3000; ++i) {
        auto r = test::random_record(rng, o);
        INFO("record " << i << ": " << r.ShortDebugString());
        unsupported += !record_supported(r);
        check_against_libprotobuf(serialize(r));
    }
    // The generator does produce records pipemode must refuse, and mostly ones it must read.
    CHECK(unsupported > 30);
    CHECK(unsupported < 1000);
}

TEST_CASE("reads scrambled encodings (unpacked, split, reordered, unknown fields) as libprotobuf does")
{
    std::mt19937_64 rng(7);
    test::scrambler scramble(rng);
    test::record_gen_options o;
    o.unsupported_probability = 0.03;
    for (int i = 0; i < 3000; ++i) {
        auto r = test::random_record(rng, o);
        auto bytes = scramble.encode(r);
        INFO("record " << i << ": " << r.ShortDebugString());
        // The scrambler's promise: the same message, however it is written.
        Record back;
        REQUIRE(back.ParseFromString(bytes));
        back.DiscardUnknownFields();  // libprotobuf keeps them; pipemode skips them
        REQUIRE(canonical(back) == canonical(r));
        check_against_libprotobuf(bytes);
    }
}

TEST_CASE("accepts what libprotobuf accepts and refuses what it refuses, byte by byte")
{
    std::mt19937_64 rng(99);
    test::scrambler scramble(rng);
    test::record_gen_options o;
    o.max_features = 2;
    o.max_dense = 6;
    o.unsupported_probability = 0.05;

    SECTION("every truncation of valid records")
    {
        for (int i = 0; i < 40; ++i) {
            auto r = test::random_record(rng, o);
            auto bytes = i % 2 ? scramble.encode(r) : serialize(r);
            for (std::size_t n = 0; n <= bytes.size(); ++n)
                check_against_libprotobuf(std::string_view(bytes).substr(0, n));
        }
    }
    SECTION("random bit flips")
    {
        for (int i = 0; i < 20000; ++i) {
            auto r = test::random_record(rng, o);
            auto bytes = i % 2 ? scramble.encode(r) : serialize(r);
            if (bytes.empty())
                continue;
            auto flips = 1 + test::detail::below(rng, 3);
            for (std::uint64_t f = 0; f < flips; ++f)
                bytes[test::detail::below(rng, bytes.size())] ^= static_cast<char>(1 << test::detail::below(rng, 8));
            check_against_libprotobuf(bytes);
        }
    }
    SECTION("random byte overwrites, insertions and deletions")
    {
        for (int i = 0; i < 10000; ++i) {
            auto r = test::random_record(rng, o);
            auto bytes = scramble.encode(r);
            if (bytes.empty())
                continue;
            auto at = test::detail::below(rng, bytes.size());
            switch (test::detail::below(rng, 3)) {
            case 0: bytes[at] = static_cast<char>(rng()); break;
            case 1: bytes.insert(at, 1, static_cast<char>(rng())); break;
            default: bytes.erase(at, 1); break;
            }
            check_against_libprotobuf(bytes);
        }
    }
}

TEST_CASE("malformed records are refused with malformed_protobuf and a byte offset")
{
    auto tensor = field(1, le_floats({1}));
    auto good = field(1, entry("a", field(2, tensor)));
    auto check_malformed = [](const std::string& bytes) {
        Record m;
        CHECK_FALSE(m.ParseFromString(bytes));  // the premise: libprotobuf refuses it too
        auto r = parse_alone(bytes);
        CHECK(r.ec == errc::malformed_protobuf);
        CHECK(r.detail.find(" at byte ") != std::string::npos);
        return r.detail;
    };

    SECTION("a varint of 11 bytes, as a value, an unknown field and a packed element")
    {
        std::string eleven("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
        check_malformed(good + "\x30" + eleven);  // unknown varint field 6
        check_malformed(field(1, entry("a", field(7, "\x08" + eleven))));
        check_malformed(field(1, entry("a", field(7, field(1, eleven)))));
        check_malformed(field(1, entry("a", field(2, "\x10" + eleven))));  // an unpacked key
    }
    SECTION("tags and lengths longer than libprotobuf reads")
    {
        check_malformed(good + std::string("\x88\x80\x80\x80\x80\x00\x00", 7));  // 6-byte tag
        check_malformed(good + std::string("\x1a\x80\x80\x80\x80\x80\x00", 7));  // 6-byte length
    }
    SECTION("lengths past the end, at every level")
    {
        auto detail = check_malformed(good + "\x0a\x05" + "abc");
        CHECK(detail.find("byte " + std::to_string(good.size())) != std::string::npos);
        check_malformed(field(1, "\x0a\x05" "ab"));
        check_malformed(field(1, entry("a", "\x12\x09" + tensor)));
        check_malformed(field(1, entry("a", field(2, "\x0a\x09" + le_floats({1})))));
        check_malformed(field(1, entry("a", field(2, field(1, le_floats({1})).substr(0, 5) + "\x0a\x05\x00"))));
    }
    SECTION("wire types 6 and 7, field number 0, stray end-group tags")
    {
        check_malformed(good + "\x0e");
        check_malformed(good + "\x0f");
        check_malformed(good + std::string("\x00\x01", 2));
        check_malformed(good + std::string("\x02\x00", 2));
        check_malformed(good + "\x0c");
        check_malformed(field(1, entry("a", field(2, tensor + "\x0c"))));
        check_malformed(good + "\x53\x08\x01\x5c");  // group 10 closed by field 11's end tag
        check_malformed(good + "\x53\x08\x01");      // group never closed
    }
    SECTION("packed numbers that do not fill their field")
    {
        check_malformed(field(1, entry("a", field(2, field(1, std::string("\0\0\0", 3))))));
        check_malformed(field(1, entry("a", field(3, field(1, std::string(12, '\0'))))));
        check_malformed(field(1, entry("a", field(7, field(1, "\x01\x80")))));  // last varint cut
        check_malformed(field(1, entry("a", field(2, field(2, "\x81")))));
        check_malformed(field(1, entry("a", field(2, field(3, "\x81")))));
    }
    SECTION("damage inside an entry that a later entry replaces")
    {
        check_malformed(field(1, entry("a", field(2, field(1, "xyz")))) + good);
    }
    SECTION("damage inside a tensor that a later oneof member replaces")
    {
        check_malformed(field(1, entry("a", field(7, field(1, "\x80")) + field(2, tensor))));
    }
}

TEST_CASE("groups nest as deep as protobuf's recursion limit and no deeper")
{
    auto groups = [](int n) {
        std::string s;
        for (int i = 0; i < n; ++i)
            s += "\x53";
        for (int i = 0; i < n; ++i)
            s += "\x54";
        return s;
    };
    auto in_tensor = [&](int n) { return field(1, entry("a", field(2, field(1, le_floats({2})) + groups(n)))); };
    for (int n : {1, 96, 97, 98, 99, 100, 101, 5000}) {
        INFO(n << " nested groups");
        check_against_libprotobuf(groups(n));
        check_against_libprotobuf(in_tensor(n));
    }
    CHECK(parse_alone(in_tensor(97)).ec == error_code{});
    CHECK(parse_alone(in_tensor(98)).ec == errc::malformed_protobuf);
}

TEST_CASE("unpacked, mixed and split repeated fields concatenate in wire order")
{
    wire_writer t;
    t.tag(1, 5);
    t.fixed32(std::bit_cast<std::uint32_t>(1.0f));
    t.bytes(1, le_floats({2, 3}));
    t.tag(3, 0);  // shape, unpacked, between the values
    t.varint(2);
    t.tag(3, 0);
    t.varint(2);
    t.tag(1, 5);
    t.fixed32(std::bit_cast<std::uint32_t>(4.0f));
    t.bytes(99, "unknown");
    auto bytes = field(1, entry("m", field(2, t.out)));
    check_against_libprotobuf(bytes);
    auto r = parse_alone(bytes);
    REQUIRE(!r.ec);
    const auto& c = r.b.feature("m");
    CHECK(std::vector<float>(c.values<float>().begin(), c.values<float>().end()) == std::vector<float>{1, 2, 3, 4});
    CHECK(std::vector<std::uint64_t>(c.shape().begin(), c.shape().end()) == std::vector<std::uint64_t>{2, 2});

    SECTION("int32: negative numbers are 10-byte varints, packed or not; wider varints are truncated")
    {
        wire_writer v;
        v.varint(static_cast<std::uint64_t>(std::int64_t{-1}));
        v.varint(300);
        v.varint(static_cast<std::uint64_t>(std::int64_t{-2147483647 - 1}));
        v.varint((std::uint64_t{1} << 40) + 5);  // libprotobuf keeps the low 32 bits
        wire_writer t2;
        t2.bytes(1, v.out);
        t2.tag(1, 0);
        t2.varint(static_cast<std::uint64_t>(std::int64_t{-7}));
        auto b = field(1, entry("i", field(7, t2.out)));
        check_against_libprotobuf(b);
        auto ri = parse_alone(b);
        REQUIRE(!ri.ec);
        auto got = ri.b.feature("i").values<std::int32_t>();
        CHECK(std::vector<std::int32_t>(got.begin(), got.end())
              == std::vector<std::int32_t>{-1, 300, -2147483647 - 1, 5, -7});
    }
    SECTION("a known field with a wire type it does not have is an unknown field, as in libprotobuf")
    {
        wire_writer t3;
        t3.bytes(1, le_floats({5}));
        t3.tag(1, 0);  // float values as a varint: not a float
        t3.varint(9);
        auto b = field(1, entry("w", field(2, t3.out)));
        check_against_libprotobuf(b);
        auto rw = parse_alone(b);
        REQUIRE(!rw.ec);
        CHECK(rw.b.feature("w").values<float>().size() == 1);
    }
}

TEST_CASE("map semantics: missing keys and values, repeated keys, oneof members set twice")
{
    auto f32 = [](std::initializer_list<float> v) { return field(2, field(1, le_floats(v))); };
    auto i32 = field(7, field(1, "\x07"));

    SECTION("an entry without a key is the feature \"\"")
    {
        auto b = field(1, field(2, f32({1})));
        check_against_libprotobuf(b);
        auto r = parse_alone(b);
        REQUIRE(!r.ec);
        CHECK(r.b.feature("").values<float>()[0] == 1);
    }
    SECTION("an entry without a value is an empty Value: unsupported")
    {
        auto b = field(1, field(1, "v"));
        check_against_libprotobuf(b);
        auto r = parse_alone(b);
        CHECK(r.ec == errc::unsupported_value);
        CHECK(r.detail.find("feature 'v'") != std::string::npos);
    }
    SECTION("the last entry of a key wins, whole")
    {
        auto b = field(1, entry("k", f32({1, 2}))) + field(1, entry("z", f32({9}))) + field(1, entry("k", i32));
        check_against_libprotobuf(b);
        auto r = parse_alone(b);
        REQUIRE(!r.ec);
        REQUIRE(r.b.features().size() == 2);
        CHECK(r.b.feature("k").type() == tensor_type::int32);
        CHECK(r.b.feature("k").values<std::int32_t>()[0] == 7);
    }
    SECTION("the last key field of an entry wins")
    {
        auto b = field(1, field(1, "old") + field(2, f32({1})) + field(1, "new"));
        check_against_libprotobuf(b);
        auto r = parse_alone(b);
        REQUIRE(!r.ec);
        CHECK(r.b.find_feature("old") == nullptr);
        CHECK(r.b.find_feature("new") != nullptr);
    }
    SECTION("value fields of one entry merge; another oneof member replaces, the same one merges")
    {
        auto b = field(1, field(1, "m") + field(2, f32({1})) + field(2, f32({2}) + i32 + f32({3}) + f32({4})));
        check_against_libprotobuf(b);
        auto r = parse_alone(b);
        REQUIRE(!r.ec);
        auto v = r.b.feature("m").values<float>();
        CHECK(std::vector<float>(v.begin(), v.end()) == std::vector<float>{3, 4});
    }
}

TEST_CASE("NaN and infinity pass through bit for bit")
{
    const std::uint32_t floats[] = {0x7fc00001u, 0xffbfffffu, 0x7f800001u, 0x7f800000u, 0xff800000u, 0x80000000u, 1u};
    const std::uint64_t doubles[] = {0x7ff8000000000001ull, 0xfff4000000000000ull, 0x7ff0000000000000ull,
                                     0xfff0000000000000ull, 0x8000000000000000ull, 1ull};
    std::string f, d;
    for (auto b : floats)
        f.append(reinterpret_cast<const char*>(&b), 4);
    for (auto b : doubles)
        d.append(reinterpret_cast<const char*>(&b), 8);
    auto bytes = field(1, entry("f", field(2, field(1, f)))) + field(2, entry("d", field(3, field(1, d))));
    check_against_libprotobuf(bytes);
    auto r = parse_alone(bytes);
    REQUIRE(!r.ec);
    auto fv = r.b.feature("f").values<float>();
    auto dv = r.b.label("d").values<double>();
    REQUIRE(fv.size() == std::size(floats));
    REQUIRE(dv.size() == std::size(doubles));
    for (std::size_t i = 0; i < fv.size(); ++i)
        CHECK(std::bit_cast<std::uint32_t>(fv[i]) == floats[i]);
    for (std::size_t i = 0; i < dv.size(); ++i)
        CHECK(std::bit_cast<std::uint64_t>(dv[i]) == doubles[i]);
}

TEST_CASE("records of one schema fill batches row by row")
{
    // 2500 records of one schema (dense float32 with a shape, sparse float64, int32, bytes,
    // and a label) in batches of 1000: 1000, 1000, 500 rows, each row the record it came from.
    std::mt19937_64 rng(3);
    std::vector<Record> records;
    for (int i = 0; i < 2500; ++i) {
        Record r;
        auto& dense = *(*r.mutable_features())["pixels"].mutable_float32_tensor();
        for (int j = 0; j < 6; ++j)
            dense.add_values(std::bit_cast<float>(test::detail::random_float_bits(rng)));
        dense.add_shape(2);
        dense.add_shape(3);
        auto& sparse = *(*r.mutable_features())["words"].mutable_float64_tensor();
        for (std::uint64_t k = 0; k < 100; ++k) {
            if (test::detail::chance(rng, 0.05)) {
                sparse.add_keys(k);
                sparse.add_values(static_cast<double>(k) / 3);
            }
        }
        sparse.add_shape(100);
        (*r.mutable_features())["id"].mutable_int32_tensor()->add_values(i);
        auto& blob = *(*r.mutable_features())["blob"].mutable_bytes();
        for (int j = 0; j < i % 4; ++j)
            blob.add_value(std::string(static_cast<std::size_t>(j), static_cast<char>('a' + i % 26)));
        (*r.mutable_label())["values"].mutable_float32_tensor()->add_values(static_cast<float>(i % 2));
        records.push_back(r);
    }

    protobuf_record_parser parser;
    batch_builder builder(1000);
    std::vector<batch> batches;
    std::vector<std::string> payloads;
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < records.size(); ++i) {
        auto bytes = serialize(records[i]);
        error_code ec;
        bool full = parser.parse({std::as_bytes(std::span(bytes.data(), bytes.size())), offset, i},
                                 i < 1200 ? "s3://bucket/a" : "s3://bucket/b", builder, ec);
        INFO(parser.error_detail());
        REQUIRE(!ec);
        offset += bytes.size();
        if (full)
            batches.push_back(builder.take(2));
    }
    batches.push_back(builder.take(2));
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].size() == 1000);
    CHECK(batches[1].size() == 1000);
    CHECK(batches[2].size() == 500);
    std::size_t i = 0;
    for (const auto& b : batches) {
        CHECK(b.epoch() == 2);
        CHECK(b.padding() == 0);
        // Columns in the order of the first record's entries on the wire.
        REQUIRE(b.features().size() == 4);
        for (std::size_t row = 0; row < b.size(); ++row, ++i) {
            INFO("record " << i);
            check_record(records[i], b, row);
            CHECK(b.location(row).record_index == i);
            CHECK(b.location(row).source == (i < 1200 ? "s3://bucket/a" : "s3://bucket/b"));
        }
    }
    CHECK(batches[1].sources().size() == 2);
    CHECK(batches[2].sources().size() == 1);
}

TEST_CASE("a record that differs from the first is a schema mismatch naming the feature")
{
    auto f32 = [](int n) {
        std::string v;
        for (int i = 0; i < n; ++i)
            v += le_floats({static_cast<float>(i)});
        return field(2, field(1, v));
    };
    auto f64 = [](int n) { return field(3, field(1, std::string(8 * static_cast<std::size_t>(n), '\0'))); };
    protobuf_record_parser parser;
    batch_builder builder(10);
    auto parse = [&](const std::string& bytes, error_code& ec) {
        return parser.parse({std::as_bytes(std::span(bytes.data(), bytes.size()))}, "f", builder, ec);
    };
    error_code ec;
    parse(field(1, entry("values", f32(50))) + field(2, entry("values", f32(1))), ec);
    REQUIRE(!ec);

    parse(field(1, entry("values", f64(49))) + field(2, entry("values", f32(1))), ec);
    CHECK(ec == errc::schema_mismatch);
    CHECK(parser.error_detail() == "feature 'values': expected float32 dense of shape [50], got float64 dense of shape [49]");

    parse(field(1, entry("values", f32(50))), ec);
    CHECK(ec == errc::schema_mismatch);
    CHECK(parser.error_detail() == "label 'values' is missing (the first record had it)");

    parse(field(1, entry("values", f32(50))) + field(2, entry("values", f32(1))) + field(1, entry("extra", f32(1))), ec);
    CHECK(ec == errc::schema_mismatch);
    CHECK(parser.error_detail().find("feature 'extra'") != std::string_view::npos);

    // Entries in another order are the same record: maps have no order.
    parse(field(2, entry("values", f32(1))) + field(1, entry("values", f32(50))), ec);
    CHECK(!ec);

    // Damage after a mismatch still reads as damage.
    parse(field(1, entry("values", f64(49))) + field(2, entry("values", f32(1))) + "\x0f", ec);
    CHECK(ec == errc::malformed_protobuf);

    CHECK(builder.size() == 2);
    auto b = builder.take();
    CHECK(b.feature("values").values<float>()[49] == 49);
}

TEST_CASE("records laid out like the one before read what the full walk reads, and any difference outside the values is seen")
{
    // The parser remembers the layout of a record of packed float32 runs and parses records of
    // the same layout by comparing the bytes between the runs. Every record here has the same
    // size; each differs from the remembered layout in one place outside the values, or not at
    // all, and must read exactly as a fresh parser (which has no layout to remember) reads it.
    auto f32 = [](std::vector<float> v) {
        std::string bytes(v.size() * sizeof(float), '\0');
        if (!v.empty())  // an empty vector's data() may be null, which memcpy must not get
            std::memcpy(bytes.data(), v.data(), bytes.size());
        return field(2, field(1, bytes));
    };
    auto floats = [](int n, float base) {
        std::vector<float> v;
        for (int i = 0; i < n; ++i)
            v.push_back(base + static_cast<float>(i));
        return v;
    };
    auto record = [&](std::string_view feature, int n, std::string_view label, int m, float base) {
        return field(1, entry(feature, f32(floats(n, base)))) + field(2, entry(label, f32(floats(m, -base))));
    };
    const std::vector<std::string> records = {
        record("values", 50, "values", 1, 0),
        record("values", 50, "values", 1, 100),
        record("values", 50, "valuez", 1, 200),  // a key differs: an unknown label
        record("values", 50, "values", 1, 300),
        record("values", 51, "values", 0, 400),  // lengths differ, the size does not
        record("values", 50, "values", 1, 500),
        record("values", 50, "values", 1, 600),
    };
    for (const auto& r : records)
        REQUIRE(r.size() == records[0].size());

    protobuf_record_parser remembering;
    batch_builder built(100);
    batch_builder expected(100);
    for (std::size_t i = 0; i < records.size(); ++i) {
        INFO("record " << i);
        std::span<const std::byte> payload = std::as_bytes(std::span(records[i].data(), records[i].size()));
        error_code ec, fresh_ec;
        remembering.parse({payload, 0, i}, "f", built, ec);
        protobuf_record_parser fresh;
        fresh.parse({payload, 0, i}, "f", expected, fresh_ec);
        CHECK(ec == fresh_ec);
        if (ec)
            CHECK(remembering.error_detail() == fresh.error_detail());
        CHECK(ec == (i == 2 || i == 4 ? make_error_code(errc::schema_mismatch) : error_code{}));
    }
    REQUIRE(built.size() == 5);
    auto b = built.take();
    auto e = expected.take();
    auto values = b.feature("values").values<float>();
    REQUIRE(values.size() == 250);
    auto expected_values = e.feature("values").values<float>();
    CHECK(std::vector<float>(values.begin(), values.end())
          == std::vector<float>(expected_values.begin(), expected_values.end()));
    std::size_t row = 0;
    for (float base : {0.f, 100.f, 300.f, 500.f, 600.f}) {
        CHECK(values[row * 50] == base);
        CHECK(values[row * 50 + 49] == base + 49);
        CHECK(b.label("values").values<float>()[row] == -base);
        ++row;
    }
}

TEST_CASE("a parser shared by two builders of different schemas reads each record against its own builder")
{
    auto f32 = [](int n) { return field(2, field(1, std::string(4 * static_cast<std::size_t>(n), '\x01'))); };
    // Same size and layout, different keys.
    const auto a = field(1, entry("values", f32(4)));
    const auto b = field(1, entry("others", f32(4)));
    auto bytes = [](const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); };
    protobuf_record_parser parser;
    batch_builder builder_a(10);
    batch_builder builder_b(10);
    error_code ec;
    parser.parse({bytes(a)}, "a", builder_a, ec);
    REQUIRE(!ec);
    parser.parse({bytes(b)}, "b", builder_b, ec);
    REQUIRE(!ec);
    parser.parse({bytes(a)}, "a", builder_a, ec);
    REQUIRE(!ec);
    // Layout `a` is remembered now; builder_b's schema has no feature "values".
    parser.parse({bytes(a)}, "b", builder_b, ec);
    CHECK(ec == errc::schema_mismatch);
    CHECK(parser.error_detail().find("feature 'values'") != std::string_view::npos);
    parser.parse({bytes(b)}, "b", builder_b, ec);
    CHECK(!ec);
    CHECK(builder_a.size() == 2);
    CHECK(builder_b.size() == 2);
    CHECK(builder_b.take().feature("others").values<float>().size() == 8);
}

TEST_CASE("encode_record writes what libprotobuf reads back, and the parser too")
{
    std::mt19937_64 rng(11);
    for (int i = 0; i < 2000; ++i) {
        auto r = test::random_record(rng);
        if (!record_supported(r))
            continue;
        // The same record as tensor_entry views of the message's own arrays.
        std::vector<std::vector<std::span<const std::byte>>> item_storage;
        auto to_entries = [&](const auto& map) {
            std::vector<tensor_entry> out;
            for (const auto& entry : map) {
                // Named copies rather than structured bindings: clang 14 (the fuzz preset's
                // compiler) cannot capture structured bindings in a lambda.
                const auto& name = entry.first;
                const auto& v = entry.second;
                auto tensor = [&](const auto& t, auto tag) {
                    using T = decltype(tag);
                    std::span<const T> values(t.values().data(), static_cast<std::size_t>(t.values_size()));
                    if (is_sparse_tensor(t)) {
                        std::span<const std::uint64_t> keys(reinterpret_cast<const std::uint64_t*>(t.keys().data()),
                                                            static_cast<std::size_t>(t.keys_size()));
                        out.push_back(tensor_entry::sparse(values, keys, t.shape(0), name));
                    }
                    else {
                        std::span<const std::uint64_t> shape(reinterpret_cast<const std::uint64_t*>(t.shape().data()),
                                                             static_cast<std::size_t>(t.shape_size()));
                        out.push_back(tensor_entry::dense(values, name, shape));
                    }
                };
                switch (v.value_case()) {
                case Value::kFloat32Tensor: tensor(v.float32_tensor(), float{}); break;
                case Value::kFloat64Tensor: tensor(v.float64_tensor(), double{}); break;
                case Value::kInt32Tensor: tensor(v.int32_tensor(), std::int32_t{}); break;
                case Value::kBytes: {
                    auto& items = item_storage.emplace_back();
                    for (const auto& s : v.bytes().value())
                        items.push_back(std::as_bytes(std::span(s.data(), s.size())));
                    out.push_back(tensor_entry::bytes(items, name));
                    break;
                }
                case Value::VALUE_NOT_SET: break;
                }
            }
            return out;
        };
        item_storage.reserve(16);
        auto features = to_entries(r.features());
        auto labels = to_entries(r.label());
        std::vector<std::byte> out{std::byte{0xee}};  // encode_record appends
        encode_record(out, features, labels);
        REQUIRE(out.size() == 1 + encoded_record_size(features, labels));
        CHECK(out[0] == std::byte{0xee});

        Record back;
        REQUIRE(back.ParseFromArray(out.data() + 1, static_cast<int>(out.size() - 1)));
        Record expected = r;
        expected.clear_uid();
        expected.clear_metadata();
        for (auto* map : {expected.mutable_features(), expected.mutable_label()})
            for (auto& [name, v] : *map)
                if (v.has_bytes())
                    v.mutable_bytes()->clear_content_type();
        INFO("record " << i << ": " << r.ShortDebugString());
        CHECK(canonical(back) == canonical(expected));
        check_against_libprotobuf(std::string_view(reinterpret_cast<const char*>(out.data()) + 1, out.size() - 1));
    }
}

TEST_CASE("encode_record refuses tensors it cannot write")
{
    std::vector<std::byte> out;
    float v[2] = {1, 2};
    std::uint64_t keys[1] = {0};
    tensor_entry bad_sparse[] = {tensor_entry::sparse(std::span<const float>(v), keys, 4)};
    CHECK_THROWS_AS(encode_record(out, bad_sparse), std::invalid_argument);
    tensor_entry ragged;
    ragged.values = std::as_bytes(std::span(v)).first(6);
    tensor_entry bad_values[] = {ragged};
    CHECK_THROWS_AS(encode_record(out, bad_values), std::invalid_argument);
    CHECK(out.empty());
}

TEST_CASE("varint_size is the length put_varint writes")
{
    for (int bits = 0; bits <= 64; ++bits) {
        for (std::uint64_t v : {bits == 0 ? 0 : (std::uint64_t{1} << (bits - 1)), bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1}) {
            std::byte buf[10];
            INFO(v);
            CHECK(static_cast<std::size_t>(detail::wire::put_varint(buf, v) - buf) == detail::wire::varint_size(v));
        }
    }
}
