// pipemode: content digests of records and data sets, to prove that every record arrived
// exactly once and byte-identical.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/batch_builder.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode {

namespace detail {

/// The increment of the digest's state after every mix: the odd 64-bit integer nearest to
/// 2^64 divided by the golden ratio. Adding it after the mix keeps a zero state followed by
/// zero words from staying zero (the mix maps 0 to 0).
inline constexpr std::uint64_t digest_increment = 0x9e3779b97f4a7c15ULL;

/// The digest's 64-bit mixing function: a splitmix64-style finalizer (xor-shift, multiply,
/// xor-shift, multiply, xor-shift). It is a bijection on 64-bit words in which every input bit
/// affects every output bit with probability close to 1/2. Not cryptographic: it catches lost,
/// repeated and damaged records, not an adversary.
constexpr std::uint64_t digest_mix(std::uint64_t z) noexcept
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/// One step of the digest: absorbs `word` into `state`.
constexpr std::uint64_t digest_step(std::uint64_t state, std::uint64_t word) noexcept
{
    return digest_mix(state ^ word) + digest_increment;
}

/// The running state of a content hash: words and length-prefixed byte strings go in, one
/// 64-bit value comes out.
///
/// A byte string is absorbed as its length, then its bytes as little-endian 64-bit words (the
/// last one zero-padded; the length prefix makes the padding unambiguous). Strings of 64 bytes
/// or more are hashed in four interleaved lanes of 8-byte words, whose final states are then
/// absorbed in order: the lanes' mixes do not wait on one another, so long tensors hash at
/// several bytes a cycle.
///
/// Values are hashed as their bytes in memory, which are their little-endian bit patterns on
/// the little-endian hosts pipemode runs on (its decoders copy wire bytes into values as they
/// are, so they assume one too).
class digest_state {
public:
    /// A state started from `seed`.
    constexpr explicit digest_state(std::uint64_t seed) noexcept : state_(seed) {}

    /// Absorbs one word.
    constexpr void word(std::uint64_t w) noexcept { state_ = digest_step(state_, w); }

    /// Absorbs the length of `b` and then its bytes.
    void bytes(std::span<const std::byte> b) noexcept
    {
        word(b.size());
        const std::byte* p = b.data();
        std::size_t n = b.size();
        if (n >= 64) {
            std::uint64_t l0 = state_ ^ 0x243f6a8885a308d3ULL;  // digits of pi: four different starts
            std::uint64_t l1 = state_ ^ 0x13198a2e03707344ULL;
            std::uint64_t l2 = state_ ^ 0xa4093822299f31d0ULL;
            std::uint64_t l3 = state_ ^ 0x082efa98ec4e6c89ULL;
            do {
                l0 = digest_step(l0, load(p));
                l1 = digest_step(l1, load(p + 8));
                l2 = digest_step(l2, load(p + 16));
                l3 = digest_step(l3, load(p + 24));
                p += 32;
                n -= 32;
            } while (n >= 32);
            word(l0);
            word(l1);
            word(l2);
            word(l3);
        }
        for (; n >= 8; p += 8, n -= 8)
            word(load(p));
        if (n != 0) {
            std::uint64_t tail = 0;
            std::memcpy(&tail, p, n);
            word(tail);
        }
    }

    /// Absorbs the length of `s` and then its characters.
    void bytes(std::string_view s) noexcept { bytes(std::as_bytes(std::span(s.data(), s.size()))); }

    /// The hash of everything absorbed so far (the state itself is left as it is).
    constexpr std::uint64_t finish() const noexcept { return digest_mix(state_ + digest_increment); }

private:
    static std::uint64_t load(const std::byte* p) noexcept
    {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        return w;
    }

    std::uint64_t state_;
};

/// Seeds of the two kinds of hash the digest computes, so that neither can be mistaken for
/// the other.
inline constexpr std::uint64_t record_digest_seed = 0x7265636f72642d31ULL;      // "record-1"
inline constexpr std::uint64_t descriptor_digest_seed = 0x74656e736f722d31ULL;  // "tensor-1"

} // namespace detail

/// The 64-bit content hash of one record: what the reader would decode it into, tensor by
/// tensor.
///
/// The canonical content is, for each feature and then each label in the schema's order (the
/// batch's column order): a *descriptor* (the section, name, element type, layout and the
/// column's shape, hashed on their own into one word, so that a batch hashes each column's
/// descriptor once rather than once a row) followed by the tensor's contents:
/// - dense: its values;
/// - sparse: its number of non-zeros, its keys (as 64-bit integers), its values;
/// - bytes: its number of items, then each item with its length.
/// Values are hashed as bit patterns, so -0.0 differs from 0.0 and NaNs differ by payload.
/// Every variable-length part carries its length, so no two different records share a
/// canonical content. The shape is the column's (`column::shape()`): `{n}` for a dense tensor
/// of n values written without a shape, `{columns}` for a sparse one, empty for bytes.
///
/// Two ways to compute it that give the same value: `of(batch, row)` from decoded data, and
/// the `add_*` functions from the data a writer encodes (in the same order as the schema), so
/// a generator can state the digest of what it wrote without decoding it.
///
/// @code
/// record_digest d;
/// d.add_dense<float>(record_section::features, "values", std::array<std::uint64_t, 1>{x.size()}, x);
/// d.add_dense<float>(record_section::label, "values", std::array<std::uint64_t, 1>{1}, std::span(&y, 1));
/// digest.add_record_hash(d.value());
/// @endcode
class record_digest {
public:
    /// A digest of a record with no tensors yet.
    constexpr record_digest() noexcept = default;

    /// Adds a dense tensor of `values` whose column has shape `shape`.
    template <class T>
        requires(is_element_type_v<T> && !std::is_same_v<T, std::byte>)
    void add_dense(record_section section, std::string_view name, std::span<const std::uint64_t> shape,
                   std::span<const T> values) noexcept
    {
        state_.word(descriptor(section, name, tensor_type_of_v<T>, layout_dense, shape));
        state_.bytes(std::as_bytes(values));
    }

    /// Adds a sparse tensor of `columns` columns: `values[i]` at column `keys[i]`.
    template <class T>
        requires(is_element_type_v<T> && !std::is_same_v<T, std::byte>)
    void add_sparse(record_section section, std::string_view name, std::uint64_t columns,
                    std::span<const std::uint64_t> keys, std::span<const T> values) noexcept
    {
        state_.word(descriptor(section, name, tensor_type_of_v<T>, layout_sparse, std::span(&columns, 1)));
        add_sparse_contents(keys, std::as_bytes(values));
    }

    /// Adds a bytes tensor holding `items`.
    void add_bytes(record_section section, std::string_view name,
                   std::span<const std::span<const std::byte>> items) noexcept
    {
        state_.word(descriptor(section, name, tensor_type::bytes, layout_bytes, {}));
        state_.word(items.size());
        for (auto item : items)
            state_.bytes(item);
    }

    /// Adds row `row` of column `c` of a batch (`section` says whether it is a label).
    void add_column(record_section section, const column& c, std::size_t row) noexcept
    {
        state_.word(descriptor(section, c));
        add_row(c, row);
    }

    /// The record's hash.
    constexpr std::uint64_t value() const noexcept { return state_.finish(); }

    /// The hash of row `row` of `b` (every feature, then every label).
    static std::uint64_t of(const batch& b, std::size_t row) noexcept
    {
        record_digest d;
        for (const auto& c : b.features())
            d.add_column(record_section::features, c, row);
        for (const auto& c : b.labels())
            d.add_column(record_section::label, c, row);
        return d.value();
    }

private:
    friend class data_set_digest;

    static constexpr std::uint64_t layout_dense = 0;
    static constexpr std::uint64_t layout_sparse = 1;
    static constexpr std::uint64_t layout_bytes = 2;

    static std::uint64_t descriptor(record_section section, std::string_view name, tensor_type type,
                                    std::uint64_t layout, std::span<const std::uint64_t> shape) noexcept
    {
        detail::digest_state h(detail::descriptor_digest_seed);
        h.word(static_cast<std::uint64_t>(section) << 16 | layout << 8 | static_cast<std::uint64_t>(type));
        h.bytes(name);
        h.word(shape.size());
        for (auto d : shape)
            h.word(d);
        return h.finish();
    }

    static std::uint64_t descriptor(record_section section, const column& c) noexcept
    {
        const auto layout = c.type() == tensor_type::bytes ? layout_bytes : c.is_sparse() ? layout_sparse : layout_dense;
        return descriptor(section, c.name(), c.type(), layout, c.shape());
    }

    void add_descriptor(std::uint64_t d) noexcept { state_.word(d); }

    void add_sparse_contents(std::span<const std::uint64_t> keys, std::span<const std::byte> values) noexcept
    {
        state_.word(keys.size());
        state_.bytes(std::as_bytes(keys));
        state_.bytes(values);
    }

    // The contents of row `row` of `c`, after its descriptor.
    void add_row(const column& c, std::size_t row) noexcept
    {
        switch (c.type()) {
        case tensor_type::bytes: {
            const auto n = c.item_count(row);
            state_.word(n);
            for (std::size_t j = 0; j < n; ++j)
                state_.bytes(c.item(row, j));
            return;
        }
        case tensor_type::float32: return add_numeric_row<float>(c, row);
        case tensor_type::float64: return add_numeric_row<double>(c, row);
        case tensor_type::int32: return add_numeric_row<std::int32_t>(c, row);
        }
    }

    template <class T>
    void add_numeric_row(const column& c, std::size_t row) noexcept
    {
        const auto values = std::as_bytes(c.row<T>(row));
        if (c.is_sparse())
            add_sparse_contents(c.row_keys(row), values);
        else
            state_.bytes(values);
    }

    detail::digest_state state_{detail::record_digest_seed};
};

/// The digest of a data set: the number of records, and the sum (mod 2^64) and the xor of
/// their `record_digest` hashes.
///
/// Independent of record order, so shards and shuffles can be compared with the data set read
/// in order, yet a lost, repeated or changed record changes it: a lost or extra record changes
/// the count; a repeated record in place of a lost one changes the sum (and, unless the two
/// happen to share a hash, the xor).
///
/// @code
/// data_set_digest d;
/// for (auto& b : reader) d.add(b);
/// std::cout << "digest: " << d.to_string() << '\n';   // digest: count=1000 hash=3f0c...
/// @endcode
///
/// A value type; not thread-safe, but digests of shards taken on separate threads combine
/// with `+=`.
class data_set_digest {
public:
    /// Adds every record of `b`, skipping its padding rows.
    void add(const batch& b)
    {
        const std::size_t rows = b.size() - b.padding();
        if (rows == 0)
            return;
        // A column's descriptor is the same for every row: hash it once a batch.
        descriptors_.clear();
        for (const auto& c : b.features())
            descriptors_.push_back(record_digest::descriptor(record_section::features, c));
        for (const auto& c : b.labels())
            descriptors_.push_back(record_digest::descriptor(record_section::label, c));
        for (std::size_t row = 0; row < rows; ++row) {
            record_digest d;
            std::size_t i = 0;
            for (const auto& c : b.features()) {
                d.add_descriptor(descriptors_[i++]);
                d.add_row(c, row);
            }
            for (const auto& c : b.labels()) {
                d.add_descriptor(descriptors_[i++]);
                d.add_row(c, row);
            }
            add_record_hash(d.value());
        }
    }

    /// Adds one record by its hash (`record_digest::value()`).
    constexpr void add_record_hash(std::uint64_t h) noexcept
    {
        ++count_;
        sum_ += h;
        xor_ ^= h;
    }

    /// Combines the digest of another part of the data set (a shard) into this one.
    constexpr data_set_digest& operator+=(const data_set_digest& other) noexcept
    {
        count_ += other.count_;
        sum_ += other.sum_;
        xor_ ^= other.xor_;
        return *this;
    }

    /// The digest of the union of two disjoint parts.
    friend constexpr data_set_digest operator+(data_set_digest a, const data_set_digest& b) noexcept
    {
        return a += b;
    }

    /// Whether two digests agree (same count, sum and xor).
    friend constexpr bool operator==(const data_set_digest& a, const data_set_digest& b) noexcept
    {
        return a.count_ == b.count_ && a.sum_ == b.sum_ && a.xor_ == b.xor_;
    }

    /// Number of records added.
    constexpr std::uint64_t count() const noexcept { return count_; }

    /// Sum of the record hashes, mod 2^64.
    constexpr std::uint64_t sum() const noexcept { return sum_; }

    /// Xor of the record hashes.
    constexpr std::uint64_t xor_of_hashes() const noexcept { return xor_; }

    /// "count=N hash=H": N in decimal, H the sum and then the xor as 32 lowercase hex digits.
    std::string to_string() const
    {
        std::string s = "count=" + std::to_string(count_) + " hash=";
        append_hex(s, sum_);
        append_hex(s, xor_);
        return s;
    }

private:
    static void append_hex(std::string& s, std::uint64_t v)
    {
        static constexpr char digits[] = "0123456789abcdef";
        for (int shift = 60; shift >= 0; shift -= 4)
            s += digits[(v >> shift) & 0xf];
    }

    std::uint64_t count_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t xor_ = 0;
    std::vector<std::uint64_t> descriptors_;  // scratch for add(batch), not part of the value
};

} // namespace pipemode
