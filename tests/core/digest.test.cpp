// record_digest and data_set_digest: the same value from decoded batches and from the data a
// writer encodes; order independence; every kind of change, loss and repetition detected.
#include <pipemode/core/digest.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "record_encode.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace pipemode;

namespace {

using payload = std::vector<std::byte>;

using test::encode;

/// Decodes records (all of one schema) into batches of `batch_size` rows; pads the last one
/// when `pad` is set.
std::vector<batch> decode(const std::vector<payload>& records, std::size_t batch_size = 1000, bool pad = false)
{
    protobuf_record_parser parser;
    batch_builder builder(batch_size);
    std::vector<batch> out;
    std::uint64_t index = 0;
    for (const auto& r : records) {
        error_code ec;
        const bool full = parser.parse(record_view{r, index * 100, index}, "memory:test", builder, ec);
        INFO(parser.error_detail());
        REQUIRE(!ec);
        ++index;
        if (full)
            out.push_back(builder.take());
    }
    if (!builder.empty()) {
        if (pad)
            builder.pad();
        out.push_back(builder.take());
    }
    return out;
}

data_set_digest digest_of(const std::vector<payload>& records, std::size_t batch_size = 1000, bool pad = false)
{
    data_set_digest d;
    for (const auto& b : decode(records, batch_size, pad))
        d.add(b);
    return d;
}

/// The hash of a single decoded record.
std::uint64_t hash_of(const payload& record)
{
    auto batches = decode({record});
    REQUIRE(batches.size() == 1);
    REQUIRE(batches[0].size() == 1);
    return record_digest::of(batches[0], 0);
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

float with_flipped_bit(float f, int bit)
{
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) ^ (std::uint32_t{1} << bit));
}

/// Ten records of a dense float32 feature of `dim` values and a scalar label; record `i`'s
/// values depend on `i` and `salt`.
std::vector<payload> dense_records(std::size_t n, std::size_t dim, float salt = 0)
{
    std::vector<payload> out;
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<float> x(dim);
        for (std::size_t j = 0; j < dim; ++j)
            x[j] = static_cast<float>(i) * 0.5f + static_cast<float>(j) + salt;
        const float y = static_cast<float>(i % 3);
        out.push_back(encode({tensor_entry::dense(std::span<const float>(x))},
                             {tensor_entry::dense(std::span<const float>(&y, 1))}));
    }
    return out;
}

} // namespace

TEST_CASE("digest: a decoded record and the data it was encoded from hash alike")
{
    // Every layout and type, with long tensors (the four-lane path), short ones and odd tails.
    std::vector<float> dense(37);
    for (std::size_t j = 0; j < dense.size(); ++j)
        dense[j] = static_cast<float>(j) * 0.25f - 3;
    dense[5] = std::numeric_limits<float>::quiet_NaN();
    dense[6] = -0.0f;
    const std::array<std::int32_t, 6> matrix{-1, 2, -3, 4, 5, std::numeric_limits<std::int32_t>::min()};
    const std::array<std::uint64_t, 2> matrix_shape{2, 3};
    const std::array<double, 3> sparse_values{1.5, -2.25, 1e300};
    const std::array<std::uint64_t, 3> sparse_keys{0, 7, 99};
    const std::string item0 = "hello", item1, item2 = std::string(70, 'x');
    const std::array<std::span<const std::byte>, 3> items{bytes_of(item0), bytes_of(item1), bytes_of(item2)};
    const std::array<double, 1> label{4};

    const auto record = encode(
        {tensor_entry::dense(std::span<const float>(dense), "dense"),
         tensor_entry::dense(std::span<const std::int32_t>(matrix), "matrix", matrix_shape),
         tensor_entry::sparse(std::span<const double>(sparse_values), sparse_keys, 100, "sparse"),
         tensor_entry::bytes(items, "blob")},
        {tensor_entry::dense(std::span<const double>(label), "y")});

    record_digest expected;
    const std::array<std::uint64_t, 1> dense_shape{dense.size()};
    expected.add_dense<float>(record_section::features, "dense", dense_shape, dense);
    expected.add_dense<std::int32_t>(record_section::features, "matrix", matrix_shape, matrix);
    expected.add_sparse<double>(record_section::features, "sparse", 100, sparse_keys, sparse_values);
    expected.add_bytes(record_section::features, "blob", items);
    const std::array<std::uint64_t, 1> label_shape{1};
    expected.add_dense<double>(record_section::label, "y", label_shape, label);

    CHECK(hash_of(record) == expected.value());

    // The batch path, which hashes descriptors once a batch, agrees with the row path.
    const auto batches = decode({record, record});
    data_set_digest whole;
    whole.add(batches[0]);
    data_set_digest by_hash;
    by_hash.add_record_hash(expected.value());
    by_hash.add_record_hash(expected.value());
    CHECK(whole == by_hash);
}

TEST_CASE("digest: a sparse row with no non-zeros hashes as one")
{
    const std::array<float, 2> v{1, 2};
    const std::array<std::uint64_t, 2> k{3, 4};
    const std::vector<payload> records{
        encode({tensor_entry::sparse(std::span<const float>(v), k, 10)}),
        encode({tensor_entry::sparse(std::span<const float>(), {}, 10)}),
    };
    const auto batches = decode(records);
    REQUIRE(batches.size() == 1);
    record_digest empty;
    empty.add_sparse<float>(record_section::features, "values", 10, {}, {});
    CHECK(record_digest::of(batches[0], 1) == empty.value());
    CHECK(record_digest::of(batches[0], 0) != empty.value());
}

TEST_CASE("digest: independent of record order and batch boundaries")
{
    auto records = dense_records(50, 20);
    const auto in_order = digest_of(records);
    CHECK(in_order.count() == 50);

    auto reversed = records;
    std::reverse(reversed.begin(), reversed.end());
    CHECK(digest_of(reversed) == in_order);

    auto rotated = records;
    std::rotate(rotated.begin(), rotated.begin() + 17, rotated.end());
    CHECK(digest_of(rotated, 7) == in_order);
    CHECK(digest_of(records, 1) == in_order);
}

TEST_CASE("digest: any change to a record changes its hash")
{
    std::vector<float> x(40);
    for (std::size_t j = 0; j < x.size(); ++j)
        x[j] = static_cast<float>(j) + 0.5f;
    const float y = 1;
    auto make = [&](const std::vector<float>& v, std::string_view name = "values", std::string_view label = "values") {
        return encode({tensor_entry::dense(std::span<const float>(v), name)},
                      {tensor_entry::dense(std::span<const float>(&y, 1), label)});
    };
    const auto base = hash_of(make(x));
    std::set<std::uint64_t> seen{base};

    SECTION("every bit of every value")
    {
        for (std::size_t j = 0; j < x.size(); ++j) {
            for (int bit = 0; bit < 32; ++bit) {
                auto changed = x;
                changed[j] = with_flipped_bit(changed[j], bit);
                const auto h = hash_of(make(changed));
                INFO("value " << j << " bit " << bit);
                CHECK(seen.insert(h).second);
            }
        }
    }
    SECTION("two values swapped, in and across the hash's lanes")
    {
        for (auto [a, b] : {std::pair{0, 1}, std::pair{0, 2}, std::pair{3, 35}, std::pair{8, 16}}) {
            auto changed = x;
            std::swap(changed[a], changed[b]);
            INFO("swap " << a << " and " << b);
            CHECK(seen.insert(hash_of(make(changed))).second);
        }
    }
    SECTION("-0.0 is not 0.0")
    {
        auto a = x, b = x;
        a[0] = 0.0f;
        b[0] = -0.0f;
        CHECK(hash_of(make(a)) != hash_of(make(b)));
    }
    SECTION("names of features and labels")
    {
        CHECK(seen.insert(hash_of(make(x, "valuez"))).second);
        CHECK(seen.insert(hash_of(make(x, "values", "label"))).second);
        CHECK(seen.insert(hash_of(make(x, ""))).second);
    }
    SECTION("a feature that becomes a label")
    {
        const auto as_feature = encode({tensor_entry::dense(std::span<const float>(x)),
                                        tensor_entry::dense(std::span<const float>(&y, 1), "y")});
        const auto as_label = encode({tensor_entry::dense(std::span<const float>(x))},
                                     {tensor_entry::dense(std::span<const float>(&y, 1), "y")});
        CHECK(hash_of(as_feature) != hash_of(as_label));
    }
    SECTION("the same bits as another type or shape")
    {
        std::vector<std::int32_t> ints(x.size());
        std::memcpy(ints.data(), x.data(), x.size() * sizeof(float));
        const auto as_int = encode({tensor_entry::dense(std::span<const std::int32_t>(ints))},
                                   {tensor_entry::dense(std::span<const float>(&y, 1))});
        CHECK(seen.insert(hash_of(as_int)).second);
        const std::array<std::uint64_t, 2> shape{4, 10};
        const auto reshaped = encode({tensor_entry::dense(std::span<const float>(x), "values", shape)},
                                     {tensor_entry::dense(std::span<const float>(&y, 1))});
        CHECK(seen.insert(hash_of(reshaped)).second);
    }
    SECTION("a value moved from one tensor to the next")
    {
        const std::array<float, 3> abc{1, 2, 3};
        auto split = [&](std::size_t at) {
            return hash_of(encode({tensor_entry::dense(std::span<const float>(abc).first(at), "a"),
                                   tensor_entry::dense(std::span<const float>(abc).subspan(at), "b")}));
        };
        CHECK(split(1) != split(2));
    }
}

TEST_CASE("digest: changes to sparse keys and bytes items")
{
    const std::array<float, 3> v{1, 2, 3};
    auto sparse = [&](std::array<std::uint64_t, 3> keys, std::uint64_t columns = 100) {
        return hash_of(encode({tensor_entry::sparse(std::span<const float>(v), keys, columns)}));
    };
    const auto base = sparse({1, 2, 3});
    CHECK(sparse({1, 2, 4}) != base);
    CHECK(sparse({0, 2, 3}) != base);
    CHECK(sparse({1, 2, 3}, 101) != base);
    CHECK(sparse({1, 2, 3}) == base);

    auto items = [](std::vector<std::string> strings) {
        std::vector<std::span<const std::byte>> spans;
        for (const auto& s : strings)
            spans.push_back(bytes_of(s));
        return hash_of(encode({tensor_entry::bytes(spans)}));
    };
    const auto ab_c = items({"ab", "c"});
    CHECK(items({"a", "bc"}) != ab_c);
    CHECK(items({"abc"}) != ab_c);
    CHECK(items({"ab", "c", ""}) != ab_c);
    CHECK(items({"ab", "d"}) != ab_c);
    CHECK(items({"ab", "c"}) == ab_c);
    CHECK(items({""}) != items({}));
}

TEST_CASE("digest: a lost, repeated or replaced record changes the data set's digest")
{
    const auto records = dense_records(10, 8);
    const auto whole = digest_of(records);

    auto lost = records;
    lost.erase(lost.begin() + 4);
    CHECK(digest_of(lost) != whole);
    CHECK(digest_of(lost).count() == 9);

    auto repeated = records;
    repeated.push_back(records[4]);
    CHECK(digest_of(repeated) != whole);

    // Same count: one record in place of another.
    auto replaced = records;
    replaced[4] = records[5];
    const auto d = digest_of(replaced);
    CHECK(d.count() == whole.count());
    CHECK(d.sum() != whole.sum());
    CHECK(d.xor_of_hashes() != whole.xor_of_hashes());
    CHECK(d != whole);

    // Two duplicates for two lost records: still caught by the sum.
    auto twice = records;
    twice[4] = records[6];
    twice[5] = records[6];
    CHECK(digest_of(twice) != whole);

    // The same records read from a changed data set.
    CHECK(digest_of(dense_records(10, 8, 0.001f)) != whole);
}

TEST_CASE("digest: padding rows are not records")
{
    const auto records = dense_records(10, 3);
    const auto unpadded = digest_of(records, 4, false);
    const auto padded = digest_of(records, 4, true);
    const auto batches = decode(records, 4, true);
    REQUIRE(batches.back().padding() == 2);
    CHECK(padded == unpadded);
    CHECK(padded.count() == 10);
}

TEST_CASE("digest: shards combine into the whole")
{
    const auto records = dense_records(30, 6);
    const auto whole = digest_of(records);
    const std::vector<payload> a(records.begin(), records.begin() + 11), b(records.begin() + 11, records.begin() + 19),
        c(records.begin() + 19, records.end());
    auto sum = digest_of(a);
    sum += digest_of(b);
    sum += digest_of(c);
    CHECK(sum == whole);
    CHECK(digest_of(c) + digest_of(a) + digest_of(b) == whole);
    CHECK(digest_of(a) + digest_of(b) != whole);
    CHECK(data_set_digest{} + whole == whole);
}

TEST_CASE("digest: printed as a count and 32 hex digits")
{
    const auto d = digest_of(dense_records(3, 2));
    const auto s = d.to_string();
    CHECK(std::regex_match(s, std::regex("count=3 hash=[0-9a-f]{32}")));
    CHECK(data_set_digest{}.to_string() == "count=0 hash=00000000000000000000000000000000");

    data_set_digest one;
    one.add_record_hash(0x0123456789abcdefULL);
    CHECK(one.to_string() == "count=1 hash=0123456789abcdef0123456789abcdef");
}

TEST_CASE("digest: the mixing function is a fixed, documented function")
{
    // Pinned values: a change here changes every digest ever printed, which must be deliberate.
    STATIC_REQUIRE(detail::digest_mix(0) == 0);
    STATIC_REQUIRE(detail::digest_mix(1) == 0x5692161d100b05e5ULL);
    STATIC_REQUIRE(detail::digest_mix(detail::digest_increment) == 0xe220a8397b1dcdafULL);
    record_digest empty;
    CHECK(empty.value() == detail::digest_mix(detail::record_digest_seed + detail::digest_increment));
}
