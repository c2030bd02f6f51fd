// pipemode: writes SageMaker's aialgs.data.Record in the protobuf wire format.
//
// Not a record parser: it encodes rows rather than reading them, for tests, benchmarks, data
// generators and Pipe-mode writers. It lives in parsers/ beside protobuf_record.hpp because
// both are the one Record format: they share the wire primitives in
// parsers/detail/protobuf_wire.hpp, and a writer that disagreed with the parser would be a bug
// in one of them.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/parsers/detail/protobuf_wire.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode {

/// One feature or label to encode into an `aialgs.data.Record`: a view of data the caller
/// keeps alive until `encode_record` returns.
///
/// Build it with the factory functions, which fill in the type and layout:
/// @code
/// std::vector<float> x(50); float y = 1;
/// tensor_entry features[] = {tensor_entry::dense(x)};
/// tensor_entry label[] = {tensor_entry::dense(std::span(&y, 1))};
/// encode_record(out, features, label);
/// @endcode
/// The default name is `"values"`, the name SageMaker's converters give the single feature
/// and the label of a vector data set.
struct tensor_entry {
    /// The key of the entry in the `features` or `label` map.
    std::string_view name = "values";

    /// The element type, and so the `Value` member written.
    tensor_type type = tensor_type::float32;

    /// Numeric values, as the elements of `type` in memory (little-endian).
    std::span<const std::byte> values;

    /// Sparse only: the column index of each value.
    std::span<const std::uint64_t> keys;

    /// Dense only, optional: the tensor's shape (its product must be the number of values).
    std::span<const std::uint64_t> shape;

    /// Sparse only: the number of columns, written as the one-element shape.
    std::uint64_t columns = 0;

    /// Whether the tensor is sparse (keys and a column count are written).
    bool is_sparse = false;

    /// Bytes only: the byte strings.
    std::span<const std::span<const std::byte>> items;

    /// A dense tensor of `values`, with an optional `shape`.
    static tensor_entry dense(std::span<const float> values, std::string_view name = "values",
                              std::span<const std::uint64_t> shape = {})
    {
        return make(name, tensor_type::float32, std::as_bytes(values), shape);
    }

    /// A dense float64 tensor.
    static tensor_entry dense(std::span<const double> values, std::string_view name = "values",
                              std::span<const std::uint64_t> shape = {})
    {
        return make(name, tensor_type::float64, std::as_bytes(values), shape);
    }

    /// A dense int32 tensor.
    static tensor_entry dense(std::span<const std::int32_t> values, std::string_view name = "values",
                              std::span<const std::uint64_t> shape = {})
    {
        return make(name, tensor_type::int32, std::as_bytes(values), shape);
    }

    /// A sparse row of `columns` columns: `values[i]` is at column `keys[i]`.
    static tensor_entry sparse(std::span<const float> values, std::span<const std::uint64_t> keys,
                               std::uint64_t columns, std::string_view name = "values")
    {
        return make_sparse(name, tensor_type::float32, std::as_bytes(values), keys, columns);
    }

    /// A sparse float64 row.
    static tensor_entry sparse(std::span<const double> values, std::span<const std::uint64_t> keys,
                               std::uint64_t columns, std::string_view name = "values")
    {
        return make_sparse(name, tensor_type::float64, std::as_bytes(values), keys, columns);
    }

    /// A sparse int32 row.
    static tensor_entry sparse(std::span<const std::int32_t> values, std::span<const std::uint64_t> keys,
                               std::uint64_t columns, std::string_view name = "values")
    {
        return make_sparse(name, tensor_type::int32, std::as_bytes(values), keys, columns);
    }

    /// A `Bytes` value holding `items`.
    static tensor_entry bytes(std::span<const std::span<const std::byte>> items, std::string_view name = "values")
    {
        tensor_entry e;
        e.name = name;
        e.type = tensor_type::bytes;
        e.items = items;
        return e;
    }

private:
    static tensor_entry make(std::string_view name, tensor_type type, std::span<const std::byte> values,
                             std::span<const std::uint64_t> shape)
    {
        tensor_entry e;
        e.name = name;
        e.type = type;
        e.values = values;
        e.shape = shape;
        return e;
    }

    static tensor_entry make_sparse(std::string_view name, tensor_type type, std::span<const std::byte> values,
                                    std::span<const std::uint64_t> keys, std::uint64_t columns)
    {
        tensor_entry e = make(name, type, values, {});
        e.keys = keys;
        e.columns = columns;
        e.is_sparse = true;
        return e;
    }
};

namespace detail {

// Sizes of the parts of one encoded entry, computed once for sizing and again for writing.
struct entry_sizes {
    std::size_t values = 0;  // packed payloads
    std::size_t keys = 0;
    std::size_t shape = 0;
    std::size_t tensor = 0;  // the tensor (or Bytes) message
    std::size_t value = 0;   // the Value message
    std::size_t entry = 0;   // the map entry message
};

inline std::size_t field_size(std::size_t payload) noexcept
{
    return 1 + wire::varint_size(payload) + payload;  // every tag here is one byte
}

inline std::size_t packed_size(std::size_t payload) noexcept
{
    return payload == 0 ? 0 : field_size(payload);  // protobuf omits an empty packed field
}

inline std::size_t varints_size(std::span<const std::uint64_t> v) noexcept
{
    std::size_t n = 0;
    for (auto x : v)
        n += wire::varint_size(x);
    return n;
}

inline std::int32_t load_int32(const std::byte* p) noexcept
{
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline entry_sizes measure(const tensor_entry& e)
{
    entry_sizes s;
    if (e.type == tensor_type::bytes) {
        for (auto item : e.items)
            s.tensor += field_size(item.size());
    }
    else {
        std::size_t element = e.type == tensor_type::float32 ? 4 : e.type == tensor_type::float64 ? 8 : 4;
        if (e.values.size() % element != 0)
            throw std::invalid_argument("pipemode: tensor '" + std::string(e.name)
                                        + "' has values of a size that is not a whole number of elements");
        std::size_t count = e.values.size() / element;
        if (e.type == tensor_type::int32) {
            // int32 is a sign-extended 64-bit varint: negative numbers take 10 bytes.
            for (std::size_t i = 0; i < count; ++i)
                s.values += wire::varint_size(static_cast<std::uint64_t>(
                    static_cast<std::int64_t>(load_int32(e.values.data() + 4 * i))));
        }
        else {
            s.values = e.values.size();
        }
        if (e.is_sparse) {
            if (e.keys.size() != count)
                throw std::invalid_argument("pipemode: sparse tensor '" + std::string(e.name) + "' has "
                                            + std::to_string(e.keys.size()) + " keys for " + std::to_string(count)
                                            + " values");
            s.keys = varints_size(e.keys);
            s.shape = wire::varint_size(e.columns);
        }
        else {
            s.shape = varints_size(e.shape);
        }
        s.tensor = packed_size(s.values) + packed_size(s.keys) + packed_size(s.shape);
    }
    s.value = field_size(s.tensor);
    s.entry = field_size(e.name.size()) + field_size(s.value);
    return s;
}

inline std::byte* put_field_header(std::byte* p, std::uint32_t tag, std::size_t size) noexcept
{
    *p++ = static_cast<std::byte>(tag);
    return wire::put_varint(p, size);
}

inline std::byte* put_entry(std::byte* p, std::uint32_t map_tag, const tensor_entry& e, const entry_sizes& s)
{
    using wire::tag;
    p = put_field_header(p, map_tag, s.entry);
    p = put_field_header(p, tag(1, wire::length_delimited), e.name.size());
    if (!e.name.empty())
        std::memcpy(p, e.name.data(), e.name.size());
    p += e.name.size();
    p = put_field_header(p, tag(2, wire::length_delimited), s.value);
    std::uint32_t member = e.type == tensor_type::float32 ? 2 : e.type == tensor_type::float64 ? 3
        : e.type == tensor_type::int32                                                   ? 7
                                                                                         : 9;
    p = put_field_header(p, tag(member, wire::length_delimited), s.tensor);
    if (e.type == tensor_type::bytes) {
        for (auto item : e.items) {
            p = put_field_header(p, tag(1, wire::length_delimited), item.size());
            if (!item.empty())
                std::memcpy(p, item.data(), item.size());
            p += item.size();
        }
        return p;
    }
    if (s.values != 0) {
        p = put_field_header(p, tag(1, wire::length_delimited), s.values);
        if (e.type == tensor_type::int32) {
            for (std::size_t i = 0; i < e.values.size(); i += 4)
                p = wire::put_varint(p, static_cast<std::uint64_t>(static_cast<std::int64_t>(load_int32(e.values.data() + i))));
        }
        else {
            std::memcpy(p, e.values.data(), e.values.size());
            p += e.values.size();
        }
    }
    if (s.keys != 0) {
        p = put_field_header(p, tag(2, wire::length_delimited), s.keys);
        for (auto k : e.keys)
            p = wire::put_varint(p, k);
    }
    if (s.shape != 0) {
        p = put_field_header(p, tag(3, wire::length_delimited), s.shape);
        if (e.is_sparse)
            p = wire::put_varint(p, e.columns);
        else
            for (auto d : e.shape)
                p = wire::put_varint(p, d);
    }
    return p;
}

} // namespace detail

/// The number of bytes `encode_record(out, features, labels)` appends.
inline std::size_t encoded_record_size(std::span<const tensor_entry> features, std::span<const tensor_entry> labels = {})
{
    std::size_t n = 0;
    for (const auto& e : features)
        n += detail::field_size(detail::measure(e).entry);
    for (const auto& e : labels)
        n += detail::field_size(detail::measure(e).entry);
    return n;
}

/// Appends to `out` an `aialgs.data.Record` with `features` and `labels`, in the protobuf wire
/// format (packed numbers, map entries in the order given): the payload of one
/// application/x-recordio-protobuf record, to be framed with `append_recordio`.
///
/// Throws `std::invalid_argument` when a tensor's values are not a whole number of elements or
/// a sparse tensor has a different number of keys and values. The layout rules the reader
/// applies (docs/formats/protobuf-record.md) are the caller's to follow: for example a sparse
/// key must be below `columns`.
inline void encode_record(std::vector<std::byte>& out, std::span<const tensor_entry> features,
                          std::span<const tensor_entry> labels = {})
{
    // Two small arrays of sizes would do, but measuring twice keeps this allocation-free and
    // costs nothing for dense float tensors, whose sizes are arithmetic.
    std::size_t old = out.size();
    out.resize(old + encoded_record_size(features, labels));
    std::byte* p = out.data() + old;
    for (const auto& e : features)
        p = detail::put_entry(p, detail::wire::tag(1, detail::wire::length_delimited), e, detail::measure(e));
    for (const auto& e : labels)
        p = detail::put_entry(p, detail::wire::tag(2, detail::wire::length_delimited), e, detail::measure(e));
}

} // namespace pipemode
