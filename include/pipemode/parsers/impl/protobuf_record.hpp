// pipemode: protobuf_record_parser's definitions.
#pragma once

#include <pipemode/parsers/protobuf_record.hpp>

#include <limits>
#include <type_traits>

namespace pipemode {

namespace detail::record_fields {

// Tags of the fields the parser reads (field number << 3 | wire type).
using wire::tag;
inline constexpr std::uint32_t features = tag(1, wire::length_delimited);
inline constexpr std::uint32_t label = tag(2, wire::length_delimited);
inline constexpr std::uint32_t entry_key = tag(1, wire::length_delimited);
inline constexpr std::uint32_t entry_value = tag(2, wire::length_delimited);
inline constexpr std::uint32_t float32_tensor = tag(2, wire::length_delimited);
inline constexpr std::uint32_t float64_tensor = tag(3, wire::length_delimited);
inline constexpr std::uint32_t int32_tensor = tag(7, wire::length_delimited);
inline constexpr std::uint32_t bytes_value = tag(9, wire::length_delimited);
inline constexpr std::uint32_t packed_values = tag(1, wire::length_delimited);
inline constexpr std::uint32_t packed_keys = tag(2, wire::length_delimited);
inline constexpr std::uint32_t key = tag(2, wire::varint);
inline constexpr std::uint32_t packed_shape = tag(3, wire::length_delimited);
inline constexpr std::uint32_t shape = tag(3, wire::varint);
inline constexpr std::uint32_t bytes_item = tag(1, wire::length_delimited);

// The tag of one unpacked value of a tensor of `T`.
template <class T>
inline constexpr std::uint32_t value = std::is_same_v<T, float> ? tag(1, wire::fixed32)
    : std::is_same_v<T, double>                                 ? tag(1, wire::fixed64)
                                                                : tag(1, wire::varint);

} // namespace detail::record_fields

inline bool protobuf_record_parser::parse(const record_view& rec, std::string_view source, batch_builder& out,
                                          error_code& ec)
{
    base_ = rec.payload.data();
    const std::byte* p = rec.payload.data();
    out.begin_record(source, rec);
    auto known = has_layout_ && rec.payload.size() == layout_bytes_.size() ? parse_known_layout(p, out)
                                                                             : layout_match::different;
    if (known == layout_match::parsed) [[likely]] {
        bool full = out.end_record(ec);
        if (ec) [[unlikely]]
            detail_ = out.error_detail();
        return full;
    }
    if (known == layout_match::different && parse_simple(p, p + rec.payload.size(), out)) [[likely]] {
        bool full = out.end_record(ec);
        if (ec) [[unlikely]]
            detail_ = out.error_detail();
        else if (walk_repeatable_)
            remember_layout(rec.payload);
        return full;
    }
    // Anything unusual, including every error, is done again the general way, which alone
    // decides what is an error and which error it is.
    out.abort_record();
    return parse_general(rec, source, out, ec);
}

namespace detail {

/// Whether the `n` bytes at `a` and `b` are equal; the short ranges between the value runs of
/// a record (tags, lengths and a key: some 20 bytes) without a call to memcmp, with
/// overlapping word loads that never read outside either range.
inline bool same_bytes(const std::byte* a, const std::byte* b, std::size_t n) noexcept
{
    auto load64 = [](const std::byte* p) {
        std::uint64_t v;
        std::memcpy(&v, p, sizeof v);
        return v;
    };
    auto load32 = [](const std::byte* p) {
        std::uint32_t v;
        std::memcpy(&v, p, sizeof v);
        return v;
    };
    if (n >= 8) {
        if (n > 32)
            return std::memcmp(a, b, n) == 0;
        std::uint64_t diff = (load64(a) ^ load64(b)) | (load64(a + n - 8) ^ load64(b + n - 8));
        if (n > 16)
            diff |= (load64(a + 8) ^ load64(b + 8)) | (load64(a + n - 16) ^ load64(b + n - 16));
        return diff == 0;
    }
    if (n >= 4)
        return ((load32(a) ^ load32(b)) | (load32(a + n - 4) ^ load32(b + n - 4))) == 0;
    for (std::size_t i = 0; i < n; ++i)
        if (a[i] != b[i])
            return false;
    return true;
}

} // namespace detail

// Parses a record laid out like the remembered one, without walking the wire format again.
//
// parse_simple's path through a record depends on its tags, lengths and keys, never on the
// bytes of a packed float32 run, which it only copies. A record of the remembered size whose
// bytes outside the remembered runs are the same therefore takes the same path, with the same
// builder calls and the same outcome; this makes those calls (find_column, then
// write_tensor, which is begin_tensor, the copy and end_tensor in one) directly. Returns `different`, with nothing written, when the bytes
// differ; `refused`, with the record to be rolled back, when the builder refuses a tensor,
// where parse_simple would have returned false.
inline protobuf_record_parser::layout_match protobuf_record_parser::parse_known_layout(const std::byte* p,
                                                                                        batch_builder& out)
{
    const std::byte* known = layout_bytes_.data();
    for (const auto& [offset, size] : layout_gaps_)
        if (!detail::same_bytes(p + offset, known + offset, size))
            return layout_match::different;
    for (const auto& run : layout_runs_) {
        std::string_view key(reinterpret_cast<const char*>(p + run.key_offset), run.key_size);
        auto column = out.find_column(run.section, key);
        if (column == batch_builder::npos) [[unlikely]]
            return layout_match::refused;
        error_code ec;
        if (!out.write_tensor(column, tensor_type::float32, {p + run.values_offset, run.values_size}, ec)) [[unlikely]]
            return layout_match::refused;
    }
    return layout_match::parsed;
}

// Keeps the layout of `payload`, which parse_simple has just taken whole with every tensor
// one packed float32 run (walk_): its bytes and the gaps between the runs.
inline void protobuf_record_parser::remember_layout(std::span<const std::byte> payload)
{
    layout_bytes_.assign(payload.begin(), payload.end());
    layout_runs_.swap(walk_);
    layout_gaps_.clear();
    std::uint32_t at = 0;
    for (const auto& run : layout_runs_) {
        layout_gaps_.emplace_back(at, run.values_offset - at);
        at = run.values_offset + run.values_size;
    }
    layout_gaps_.emplace_back(at, static_cast<std::uint32_t>(payload.size()) - at);
    has_layout_ = true;
}

// The one-pass fast path for records as SageMaker's writers and libprotobuf lay them out: map
// entries holding a key then a value, each Value exactly one tensor, no unknown fields, every
// key once. Returns false, with the record to be rolled back, as soon as anything differs.
// Notes in walk_ where each packed float32 run is, for remember_layout.
inline bool protobuf_record_parser::parse_simple(const std::byte* p, const std::byte* end, batch_builder& out)
{
    namespace f = detail::record_fields;
    namespace w = detail::wire;
    walk_.clear();
    // Offsets are kept in 32 bits.
    walk_repeatable_ = static_cast<std::size_t>(end - p) <= std::numeric_limits<std::uint32_t>::max();
    while (p != end) {
        auto tag = w::byte_at(p++);
        if (tag != f::features && tag != f::label)
            return false;
        std::size_t n;
        if (!w::read_length(p, end, n))
            return false;
        const std::byte* q = p;
        const std::byte* entry_end = p + n;
        p = entry_end;
        if (q == entry_end || w::byte_at(q++) != f::entry_key)
            return false;
        if (!w::read_length(q, entry_end, n))
            return false;
        std::string_view key(reinterpret_cast<const char*>(q), n);
        q += n;
        if (q == entry_end || w::byte_at(q++) != f::entry_value)
            return false;
        if (!w::read_length(q, entry_end, n) || n != static_cast<std::size_t>(entry_end - q) || n == 0)
            return false;
        tensor_type kind;
        switch (w::byte_at(q++)) {
        case f::float32_tensor: kind = tensor_type::float32; break;
        case f::float64_tensor: kind = tensor_type::float64; break;
        case f::int32_tensor: kind = tensor_type::int32; break;
        case f::bytes_value: kind = tensor_type::bytes; break;
        default: return false;
        }
        if (!w::read_length(q, entry_end, n) || n != static_cast<std::size_t>(entry_end - q))
            return false;
        auto section = tag == f::features ? record_section::features : record_section::label;
        auto column = out.find_column(section, key);
        if (column == batch_builder::npos)
            return false;
        out.begin_tensor(column, kind);
        // The usual float32 tensor is one packed run of values: copy it without the general
        // field loop.
        const std::byte* v = q;
        std::size_t m;
        if (kind == tensor_type::float32 && n != 0 && w::byte_at(v++) == f::packed_values && w::read_length(v, entry_end, m)
            && v + m == entry_end && m % sizeof(float) == 0) [[likely]] {
            if (m != 0)
                std::memcpy(out.extend_values<float>(m / sizeof(float)), v, m);
            if (walk_repeatable_) {
                auto offset = [this](const void* at) {
                    return static_cast<std::uint32_t>(static_cast<const std::byte*>(at) - base_);
                };
                walk_.push_back({offset(key.data()), static_cast<std::uint32_t>(key.size()), offset(v),
                                 static_cast<std::uint32_t>(m), section});
            }
        }
        else if (!decode<true>(kind, {q, n}, &out)) {
            return false;
        }
        else {
            walk_repeatable_ = false;
        }
        error_code ec;
        if (!out.end_tensor(ec))
            return false;
    }
    return true;
}

inline bool protobuf_record_parser::parse_general(const record_view& rec, std::string_view source,
                                                  batch_builder& out, error_code& ec)
{
    out.begin_record(source, rec);
    entries_.clear();
    segments_.clear();
    const std::byte* p = rec.payload.data();

    // Pass 1: walk the record down to its tensor messages. Protobuf map semantics need the
    // whole record before any entry can be used (a later entry with the same key replaces an
    // earlier one), and walking first means structural damage is found before any copying.
    if (!scan_record(p, p + rec.payload.size())) [[unlikely]]
        return malformed(out, ec);

    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
        auto& e = entries_[i];
        e.column = out.find_column(e.section, e.key);
        if (e.column != batch_builder::npos) {
            if (winner_.size() <= e.column) [[unlikely]]
                winner_.resize(e.column + 1);
            winner_[e.column] = i;
        }
    }

    // Pass 2: decode the winning entries into the builder. The others are still checked,
    // because libprotobuf rejects a record whose replaced entries are damaged. After a schema
    // or value error the rest is only checked, so that damage still reads as damage.
    error_code first;
    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
        const auto& e = entries_[i];
        bool wins = e.column == batch_builder::npos || winner_[e.column] == i;
        if (!wins || first || !e.has_kind) [[unlikely]] {
            if (!check_segments(e, e.first, e.count))
                return malformed(out, ec);
            if (wins && !first && !e.has_kind) {
                first = make_error_code(errc::unsupported_value);
                detail_ = std::string(to_string(e.section)) + " '" + std::string(e.key)
                    + "' has no tensor of a kind pipemode reads (float32, float64, int32 or bytes)";
            }
            continue;
        }
        if (e.column != batch_builder::npos)
            out.begin_tensor(e.column, e.kind);
        else
            out.begin_tensor(e.section, e.key, e.kind);
        for (std::uint32_t s = e.first; s < e.first + e.count; ++s)
            if (!decode<true>(e.kind, segments_[s], &out)) [[unlikely]]
                return malformed(out, ec);
        error_code tec;
        if (!out.end_tensor(tec)) [[unlikely]] {
            first = tec;
            detail_ = out.error_detail();
        }
    }
    if (first) [[unlikely]] {
        out.abort_record();
        ec = first;
        return false;
    }
    bool full = out.end_record(ec);
    if (ec) [[unlikely]]
        detail_ = out.error_detail();
    return full;
}

inline bool protobuf_record_parser::scan_record(const std::byte* p, const std::byte* end)
{
    namespace f = detail::record_fields;
    while (p != end) {
        std::uint32_t tag;
        const std::byte* at = p;
        if (!detail::wire::read_tag(p, end, tag)) [[unlikely]]
            return fail(at, "truncated or over-long tag");
        if (tag == f::features || tag == f::label) [[likely]] {
            std::size_t n;
            if (!detail::wire::read_length(p, end, n)) [[unlikely]]
                return fail(at, "map entry length runs past the end of the record");
            if (!scan_entry(p, p + n, tag == f::features ? record_section::features : record_section::label))
                return false;
            p += n;
        }
        else if (!skip_field(tag, p, end, 100)) {
            return false;
        }
    }
    return true;
}

inline bool protobuf_record_parser::scan_entry(const std::byte* p, const std::byte* end, record_section section)
{
    namespace f = detail::record_fields;
    entry e;
    e.section = section;
    e.first = static_cast<std::uint32_t>(segments_.size());
    while (p != end) {
        std::uint32_t tag;
        const std::byte* at = p;
        if (!detail::wire::read_tag(p, end, tag)) [[unlikely]]
            return fail(at, "truncated or over-long tag");
        if (tag == f::entry_key) {
            std::size_t n;
            if (!detail::wire::read_length(p, end, n)) [[unlikely]]
                return fail(at, "map key length runs past the end of its entry");
            e.key = {reinterpret_cast<const char*>(p), n};
            p += n;
        }
        else if (tag == f::entry_value) {
            std::size_t n;
            if (!detail::wire::read_length(p, end, n)) [[unlikely]]
                return fail(at, "Value length runs past the end of its map entry");
            if (!scan_value(p, p + n, e))
                return false;
            p += n;
        }
        else if (!skip_field(tag, p, end, entry_depth)) {
            return false;
        }
    }
    e.count = static_cast<std::uint32_t>(segments_.size()) - e.first;
    entries_.push_back(e);
    return true;
}

inline bool protobuf_record_parser::scan_value(const std::byte* p, const std::byte* end, entry& e)
{
    namespace f = detail::record_fields;
    while (p != end) {
        std::uint32_t tag;
        const std::byte* at = p;
        if (!detail::wire::read_tag(p, end, tag)) [[unlikely]]
            return fail(at, "truncated or over-long tag");
        tensor_type kind;
        switch (tag) {
        case f::float32_tensor: kind = tensor_type::float32; break;
        case f::float64_tensor: kind = tensor_type::float64; break;
        case f::int32_tensor: kind = tensor_type::int32; break;
        case f::bytes_value: kind = tensor_type::bytes; break;
        default:
            if (!skip_field(tag, p, end, value_depth))
                return false;
            continue;
        }
        std::size_t n;
        if (!detail::wire::read_length(p, end, n)) [[unlikely]]
            return fail(at, "tensor length runs past the end of its Value");
        // Setting another member of the oneof discards what the Value held; setting the same
        // one again merges into it, so its tensor is the concatenation of these segments.
        if (!e.has_kind || e.kind != kind) {
            auto first = e.first;
            auto count = static_cast<std::uint32_t>(segments_.size()) - first;
            if (count != 0) [[unlikely]] {
                if (!check_segments(e, first, count))
                    return false;
                segments_.resize(first);
            }
            e.has_kind = true;
            e.kind = kind;
        }
        segments_.emplace_back(p, n);
        p += n;
    }
    return true;
}

inline bool protobuf_record_parser::check_segments(const entry& e, std::uint32_t first, std::uint32_t count)
{
    for (auto s = first; s < first + count; ++s)
        if (!decode<false>(e.kind, segments_[s], nullptr))
            return false;
    return true;
}

// Skips the field whose tag has just been read, as libprotobuf keeps an unknown field: field
// number 0, wire types 6 and 7 and an end-group without its group are errors, and groups
// nest at most `depth` levels.
inline bool protobuf_record_parser::skip_field(std::uint32_t tag, const std::byte*& p, const std::byte* end,
                                               int depth)
{
    namespace w = detail::wire;
    const std::byte* at = p;
    if ((tag >> 3) == 0) [[unlikely]]
        return fail(at, "field number 0");
    switch (tag & 7) {
    case w::varint: {
        std::uint64_t v;
        if (!w::read_varint(p, end, v))
            return fail(at, "truncated or over-long varint");
        return true;
    }
    case w::fixed64:
        if (end - p < 8)
            return fail(at, "truncated fixed64");
        p += 8;
        return true;
    case w::length_delimited: {
        std::size_t n;
        if (!w::read_length(p, end, n))
            return fail(at, "length runs past the end of its message");
        p += n;
        return true;
    }
    case w::fixed32:
        if (end - p < 4)
            return fail(at, "truncated fixed32");
        p += 4;
        return true;
    case w::start_group:
        if (depth == 0)
            return fail(at, "groups nested deeper than protobuf's recursion limit");
        while (p != end) {
            std::uint32_t inner;
            const std::byte* inner_at = p;
            if (!w::read_tag(p, end, inner))
                return fail(inner_at, "truncated or over-long tag");
            if ((inner & 7) == w::end_group) {
                if (inner == tag + 1)
                    return true;
                return fail(inner_at, "end-group tag of another group");
            }
            if (!skip_field(inner, p, end, depth - 1))
                return false;
        }
        return fail(at, "group without its end-group tag");
    case w::end_group: return fail(at, "end-group tag outside a group");
    default: return fail(at, "invalid wire type");
    }
}

template <bool Store>
bool protobuf_record_parser::decode(tensor_type kind, std::span<const std::byte> message, batch_builder* out)
{
    const std::byte* p = message.data();
    const std::byte* end = p + message.size();
    switch (kind) {
    case tensor_type::float32: return decode_numeric<float, Store>(p, end, out);
    case tensor_type::float64: return decode_numeric<double, Store>(p, end, out);
    case tensor_type::int32: return decode_numeric<std::int32_t, Store>(p, end, out);
    case tensor_type::bytes: return decode_bytes<Store>(p, end, out);
    }
    return false;
}

template <class T, bool Store>
bool protobuf_record_parser::decode_numeric(const std::byte* p, const std::byte* end, batch_builder* out)
{
    namespace f = detail::record_fields;
    namespace w = detail::wire;
    constexpr bool fixed = !std::is_same_v<T, std::int32_t>;
    while (p != end) {
        std::uint32_t tag;
        const std::byte* at = p;
        if (!w::read_tag(p, end, tag)) [[unlikely]]
            return fail(at, "truncated or over-long tag");
        switch (tag) {
        case f::packed_values: {
            std::size_t n;
            if (!w::read_length(p, end, n)) [[unlikely]]
                return fail(at, "packed values run past the end of their tensor");
            if constexpr (fixed) {
                if (n % sizeof(T) != 0) [[unlikely]]
                    return fail(at, "packed values of a length that is not a whole number of elements");
                if constexpr (Store)
                    out->append_values({p, n});
            }
            else {
                auto write = [out](std::size_t count) {
                    if constexpr (Store)
                        return out->extend_values<std::int32_t>(count);
                    else {
                        (void)out;  // used only when storing (clang's -Wunused-lambda-capture)
                        return static_cast<std::int32_t*>(nullptr);
                    }
                };
                if (!decode_packed_varints<Store>(p, n, end, write))
                    return false;
            }
            p += n;
            break;
        }
        case f::value<T>:
            if constexpr (fixed) {
                if (static_cast<std::size_t>(end - p) < sizeof(T)) [[unlikely]]
                    return fail(at, "truncated value");
                if constexpr (Store)
                    out->append_values({p, sizeof(T)});
                p += sizeof(T);
            }
            else {
                std::uint64_t v;
                if (!w::read_varint(p, end, v)) [[unlikely]]
                    return fail(at, "truncated or over-long varint");
                if constexpr (Store)
                    *out->extend_values<std::int32_t>(1) = static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
            }
            break;
        case f::packed_keys: {
            std::size_t n;
            if (!w::read_length(p, end, n)) [[unlikely]]
                return fail(at, "packed keys run past the end of their tensor");
            auto write = [out](std::size_t count) {
                if constexpr (Store)
                    return out->extend_keys(count);
                else {
                    (void)out;  // used only when storing (clang's -Wunused-lambda-capture)
                    return static_cast<std::uint64_t*>(nullptr);
                }
            };
            if (!decode_packed_varints<Store>(p, n, end, write))
                return false;
            p += n;
            break;
        }
        case f::key: {
            std::uint64_t v;
            if (!w::read_varint(p, end, v)) [[unlikely]]
                return fail(at, "truncated or over-long varint");
            if constexpr (Store)
                *out->extend_keys(1) = v;
            break;
        }
        case f::packed_shape: {
            std::size_t n;
            if (!w::read_length(p, end, n)) [[unlikely]]
                return fail(at, "packed shape runs past the end of its tensor");
            const std::byte* q = p;
            const std::byte* shape_end = p + n;
            while (q != shape_end) {
                std::uint64_t v;
                const std::byte* vat = q;
                // A varint may not run past the packed field: that is damage, as in libprotobuf.
                if (!w::read_varint(q, shape_end, v))
                    return fail(vat, "truncated or over-long varint in packed shape");
                if constexpr (Store)
                    out->append_shape(v);
            }
            p = shape_end;
            break;
        }
        case f::shape: {
            std::uint64_t v;
            if (!w::read_varint(p, end, v)) [[unlikely]]
                return fail(at, "truncated or over-long varint");
            if constexpr (Store)
                out->append_shape(v);
            break;
        }
        default:
            if (!skip_field(tag, p, end, tensor_depth))
                return false;
        }
    }
    return true;
}

template <bool Store>
bool protobuf_record_parser::decode_bytes(const std::byte* p, const std::byte* end, batch_builder* out)
{
    namespace f = detail::record_fields;
    while (p != end) {
        std::uint32_t tag;
        const std::byte* at = p;
        if (!detail::wire::read_tag(p, end, tag)) [[unlikely]]
            return fail(at, "truncated or over-long tag");
        if (tag == f::bytes_item) {
            std::size_t n;
            if (!detail::wire::read_length(p, end, n)) [[unlikely]]
                return fail(at, "byte string runs past the end of its Bytes");
            if constexpr (Store)
                out->append_item({p, n});
            p += n;
        }
        else if (!skip_field(tag, p, end, tensor_depth)) {
            return false;
        }
    }
    return true;
}

// Decodes the `n` bytes of packed varints at `p`, inside a message that may be read up to
// `readable_end`. Counting the terminating bytes first gives the exact number of elements, so
// the builder reserves once and the loop writes in place; and since the last byte ends a
// varint, no varint started inside the run ends past it, so the loop needs no bounds check of
// its own (read_terminated_varint).
template <bool Store, class Write>
bool protobuf_record_parser::decode_packed_varints(const std::byte* p, std::size_t n, const std::byte* readable_end,
                                                   Write write)
{
    namespace w = detail::wire;
    if (n == 0)
        return true;
    if (w::byte_at(p + n - 1) >= 0x80) [[unlikely]]
        return fail(p + n - 1, "packed varints end inside a varint");
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i)
        count += w::byte_at(p + i) < 0x80;
    auto* dst = write(count);
    const std::byte* end = p + n;
    for (std::size_t i = 0; i < count; ++i) {
        std::uint64_t v;
        const std::byte* at = p;
        // Cannot run past `end`: its last byte ends a varint.
        if (!w::read_terminated_varint(p, end, readable_end, v)) [[unlikely]]
            return fail(at, "over-long varint in packed field");
        if constexpr (Store) {
            using element = std::remove_pointer_t<decltype(dst)>;
            if constexpr (std::is_same_v<element, std::int32_t>)
                dst[i] = static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
            else
                dst[i] = v;
        }
    }
    return true;
}

[[gnu::cold]] inline bool protobuf_record_parser::fail(const std::byte* at, const char* what)
{
    detail_ = std::string(what) + " at byte " + std::to_string(at - base_) + " of the record";
    return false;
}

[[gnu::cold]] inline bool protobuf_record_parser::malformed(batch_builder& out, error_code& ec)
{
    out.abort_record();
    ec = make_error_code(errc::malformed_protobuf);
    return false;
}

} // namespace pipemode
