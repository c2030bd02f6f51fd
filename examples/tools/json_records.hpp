// pipemode-cat's JSON output: records, raw payloads, lines and augmented-manifest rows, one JSON
// object per line.
//
// Kept apart from the tool's main() so that tests/tools/json_records.test.cpp can check the
// exact text. The format is described in docs/tools.md.
#pragma once

#include <pipemode/core/batch.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/json_writer.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace pipemode::tools {

/// Appends `s` as a JSON string: quotes, with `"`, `\` and control characters escaped (as
/// `\"`, `\\`, `\n`, `\t`, ... or `\u00XX`). Other bytes are copied as they are, so a name that
/// is valid UTF-8 stays valid UTF-8.
inline void append_json_string(std::string& out, std::string_view s)
{
    pipemode::detail::json::append_quoted_bytes(out, s);
}

/// The most characters `write_json_number` writes (a double takes at most 24).
inline constexpr std::size_t max_json_number_size = 32;

/// Writes a number at `p` as std::to_chars writes it and returns the end: integers in
/// decimal, floating-point values as the shortest text that reads back to the same value (e.g.
/// `0.1`, `1e+20`, `-0`). NaN and the infinities, which JSON numbers cannot express, are
/// written as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`. Writes at most
/// `max_json_number_size` characters.
template <class T>
    requires std::is_arithmetic_v<T>
char* write_json_number(char* p, T v) noexcept
{
    if constexpr (std::is_floating_point_v<T>) {
        if (!std::isfinite(v)) [[unlikely]] {
            const std::string_view text = std::isnan(v) ? "\"NaN\"" : v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
            return std::copy(text.begin(), text.end(), p);
        }
    }
    return std::to_chars(p, p + max_json_number_size, v).ptr;
}

/// Appends a number as `write_json_number` writes it.
template <class T>
    requires std::is_arithmetic_v<T>
void append_json_number(std::string& out, T v)
{
    char buf[max_json_number_size];
    out.append(buf, write_json_number(buf, v));
}

/// Appends `bytes` as lowercase hex digits, two per byte, without quotes.
inline void append_hex(std::string& out, std::span<const std::byte> bytes)
{
    static constexpr char hex[] = "0123456789abcdef";
    const std::size_t start = out.size();
    out.resize(start + 2 * bytes.size());
    char* p = out.data() + start;
    for (auto b : bytes) {
        const auto c = static_cast<unsigned char>(b);
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }
}

/// Appends a JSON array of numbers: `[1, 2.5, "NaN"]`.
template <class T>
void append_json_array(std::string& out, std::span<const T> values)
{
    // Formatted into a stack buffer and appended in pieces: one std::string append per few
    // hundred values rather than two per value.
    char buf[4096];
    char* p = buf;
    *p++ = '[';
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (static_cast<std::size_t>(buf + sizeof buf - p) < max_json_number_size + 3) {
            out.append(buf, p);
            p = buf;
        }
        if (i != 0) {
            *p++ = ',';
            *p++ = ' ';
        }
        p = write_json_number(p, values[i]);
    }
    *p++ = ']';
    out.append(buf, p);
}

/// Whether pipemode-cat prints the shape of column `c`'s tensors: always for sparse columns
/// (the column count); for dense ones only when the shape says more than the number of values,
/// i.e. when it is not `{row_size()}`. A batch does not record whether a dense record carried a
/// one-dimensional shape `[n]` or none (the reader treats both alike), so neither is printed.
/// Bytes tensors have no shape.
inline bool shows_shape(const column& c) noexcept
{
    if (c.type() == tensor_type::bytes)
        return false;
    if (c.is_sparse())
        return true;
    const auto shape = c.shape();
    return !(shape.size() == 1 && shape[0] == c.row_size());
}

namespace detail {

template <class T>
void append_numeric_tensor(std::string& out, const column& c, std::size_t row)
{
    out += ", \"values\": ";
    append_json_array(out, c.row<T>(row));
    out += ", \"keys\": ";
    if (c.is_sparse())
        append_json_array(out, c.row_keys(row));
    else
        out += "[]";
}

} // namespace detail

/// Appends row `row` of column `c` as
/// `{"tensor": TYPE, "values": [...], "keys": [...], "shape": [...]}`, TYPE being "float32",
/// "float64", "int32" or "bytes". A bytes tensor's values are its items as strings of lowercase
/// hex; its keys and shape are `[]`. See `shows_shape` for when the shape is printed.
inline void append_tensor_json(std::string& out, const column& c, std::size_t row)
{
    out += "{\"tensor\": \"";
    out += to_string(c.type());
    out += '"';
    switch (c.type()) {
    case tensor_type::float32: detail::append_numeric_tensor<float>(out, c, row); break;
    case tensor_type::float64: detail::append_numeric_tensor<double>(out, c, row); break;
    case tensor_type::int32: detail::append_numeric_tensor<std::int32_t>(out, c, row); break;
    case tensor_type::bytes: {
        out += ", \"values\": [";
        const auto n = c.item_count(row);
        for (std::size_t j = 0; j < n; ++j) {
            if (j != 0)
                out += ", ";
            out += '"';
            append_hex(out, c.item(row, j));
            out += '"';
        }
        out += "], \"keys\": []";
        break;
    }
    }
    out += ", \"shape\": ";
    if (shows_shape(c))
        append_json_array(out, c.shape());
    else
        out += "[]";
    out += '}';
}

/// Appends `{NAME: TENSOR, ...}` for row `row` of `columns`, in column order; `{}` when there
/// are none.
inline void append_tensor_map_json(std::string& out, std::span<const column> columns, std::size_t row)
{
    out += '{';
    for (std::size_t i = 0; i < columns.size(); ++i) {
        if (i != 0)
            out += ", ";
        append_json_string(out, columns[i].name());
        out += ": ";
        append_tensor_json(out, columns[i], row);
    }
    out += '}';
}

/// Appends record `row` of `b` as one line of JSON, without the newline:
/// `{"features": {NAME: TENSOR, ...}, "label": {NAME: TENSOR, ...}}`.
///
/// @code
/// std::string line;
/// append_record_json(line, batch, 0);
/// // {"features": {"values": {"tensor": "float32", "values": [1, 2], "keys": [], "shape": []}}, "label": {}}
/// @endcode
inline void append_record_json(std::string& out, const batch& b, std::size_t row)
{
    out += "{\"features\": ";
    append_tensor_map_json(out, b.features(), row);
    out += ", \"label\": ";
    append_tensor_map_json(out, b.labels(), row);
    out += '}';
}

/// Appends a raw payload (a RecordIO or TFRecord record, a whole object) as
/// `{"length": N, "hex": "..."}`, without the newline. The whole payload is written: the
/// output stays lossless and comparable with `cmp`, and `--limit` keeps it short.
inline void append_raw_json(std::string& out, std::span<const std::byte> payload)
{
    out += "{\"length\": ";
    append_json_number(out, payload.size());
    out += ", \"hex\": \"";
    append_hex(out, payload);
    out += "\"}";
}

/// Appends row `row` of an augmented-manifest batch (one `bytes` feature per attribute, as
/// `grouped_record_parser` delivers them) as `{ATTRIBUTE: VALUE, ...}` in attribute order,
/// without the newline. A value that is a JSON text (what Pipe mode writes for an attribute
/// that is not a `-ref`: `"3"`, `0.5`, `{"x": 1}`) is written as that JSON; anything else
/// (the bytes of a `-ref` object, or text that is not JSON) as `{"length": N, "hex": "..."}`.
///
/// @code
/// // {"source-ref": {"length": 3, "hex": "ffd8ff"}, "class": "3"}
/// @endcode
inline void append_attributes_json(std::string& out, const batch& b, std::size_t row)
{
    out += '{';
    const auto columns = b.features();
    for (std::size_t i = 0; i < columns.size(); ++i) {
        if (i != 0)
            out += ", ";
        append_json_string(out, columns[i].name());
        out += ": ";
        const auto bytes = columns[i].item(row, 0);
        const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        pipemode::detail::parse_error err;
        // "-ref" objects are object bytes even when they happen to parse (a JSON document):
        // SageMaker delivers their bytes, not a value of the manifest.
        // A line break, legal as JSON whitespace, would split the output's line.
        if (!columns[i].name().ends_with("-ref") && text.find_first_of("\r\n") == std::string_view::npos
            && pipemode::detail::json::is_valid_utf8(text) && pipemode::detail::json::parse(text, err))
            out += text;
        else
            append_raw_json(out, bytes);
    }
    out += '}';
}

} // namespace pipemode::tools
