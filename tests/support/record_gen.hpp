// Test support: random aialgs.data.Record messages (protoc-generated classes), and encodings
// of them written byte by byte with every liberty the protobuf wire format allows, for checking
// pipemode's hand-written parser against libprotobuf.
#pragma once

#include "record.pb.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::test {

// ---------------------------------------------------------------------------------------------
// Wire bytes by hand

/// Appends protobuf wire-format pieces to a string, optionally in non-canonical (padded)
/// varint encodings that parsers must still accept.
struct wire_writer {
    std::string out;

    /// Appends `v` as a varint of at least `min_bytes` bytes (padded with 0x80 bytes).
    void varint(std::uint64_t v, int min_bytes = 1)
    {
        int n = 0;
        while (v >= 0x80 || n + 1 < min_bytes) {
            out += static_cast<char>((v & 0x7f) | 0x80);
            v >>= 7;
            ++n;
        }
        out += static_cast<char>(v);
    }

    void tag(std::uint32_t field, std::uint32_t wire_type, int min_bytes = 1)
    {
        varint(std::uint64_t{field} << 3 | wire_type, min_bytes);
    }

    void fixed32(std::uint32_t v)
    {
        char b[4];
        std::memcpy(b, &v, 4);
        out.append(b, 4);
    }

    void fixed64(std::uint64_t v)
    {
        char b[8];
        std::memcpy(b, &v, 8);
        out.append(b, 8);
    }

    /// A length-delimited field.
    void bytes(std::uint32_t field, std::string_view body, int tag_bytes = 1, int length_bytes = 1)
    {
        tag(field, 2, tag_bytes);
        varint(body.size(), length_bytes);
        out.append(body);
    }
};

// ---------------------------------------------------------------------------------------------
// Random records

/// How `random_record` draws records.
struct record_gen_options {
    int max_features = 4;
    int max_labels = 2;
    double label_probability = 0.6;
    int max_dense = 20;
    std::uint64_t max_columns = 60;
    /// Probability of a Value that breaks pipemode's layout rules (no tensor, keys outside the
    /// columns, a shape that does not hold the values...): valid protobuf all the same.
    double unsupported_probability = 0.0;
};

namespace detail {

inline bool chance(std::mt19937_64& rng, double p)
{
    return std::uniform_real_distribution<double>(0, 1)(rng) < p;
}

inline std::uint64_t below(std::mt19937_64& rng, std::uint64_t n)
{
    return n == 0 ? 0 : std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng);
}

inline std::string random_name(std::mt19937_64& rng)
{
    static const char* const common[] = {"values", "", "a", "b", "x1", "pixels", "\xc3\xa9t\xc3\xa9", "label"};
    if (chance(rng, 0.7))
        return common[below(rng, std::size(common))];
    std::string s;
    auto n = 1 + below(rng, 12);
    for (std::uint64_t i = 0; i < n; ++i)
        s += static_cast<char>('a' + below(rng, 26));
    return s;
}

/// Float bit patterns with the awkward ones overrepresented: NaNs with payloads, infinities,
/// signed zeros, denormals.
inline std::uint32_t random_float_bits(std::mt19937_64& rng)
{
    switch (below(rng, 8)) {
    case 0: return 0x7fc00000u | static_cast<std::uint32_t>(below(rng, 1u << 22));  // quiet NaN, payload
    case 1: return 0x7f800001u + static_cast<std::uint32_t>(below(rng, (1u << 22) - 1));  // signalling NaN
    case 2: return chance(rng, 0.5) ? 0x7f800000u : 0xff800000u;                       // +-inf
    case 3: return chance(rng, 0.5) ? 0u : 0x80000000u;                                 // +-0
    case 4: return static_cast<std::uint32_t>(below(rng, 1u << 23));                    // denormal
    default: return static_cast<std::uint32_t>(rng());
    }
}

inline std::uint64_t random_double_bits(std::mt19937_64& rng)
{
    switch (below(rng, 8)) {
    case 0: return 0x7ff8000000000000ull | below(rng, 1ull << 51);
    case 1: return 0xfff0000000000001ull + below(rng, (1ull << 51) - 1);
    case 2: return chance(rng, 0.5) ? 0x7ff0000000000000ull : 0xfff0000000000000ull;
    case 3: return chance(rng, 0.5) ? 0ull : 0x8000000000000000ull;
    case 4: return below(rng, 1ull << 52);
    default: return rng();
    }
}

inline std::int32_t random_int32(std::mt19937_64& rng)
{
    switch (below(rng, 4)) {
    case 0: return static_cast<std::int32_t>(below(rng, 300)) - 150;
    case 1: return chance(rng, 0.5) ? std::numeric_limits<std::int32_t>::min() : std::numeric_limits<std::int32_t>::max();
    default: return static_cast<std::int32_t>(static_cast<std::uint32_t>(rng()));
    }
}

template <class Tensor>
void add_random_value(Tensor& t, std::mt19937_64& rng)
{
    using element = std::remove_cvref_t<decltype(t.values(0))>;
    if constexpr (std::is_same_v<element, float>)
        t.add_values(std::bit_cast<float>(random_float_bits(rng)));
    else if constexpr (std::is_same_v<element, double>)
        t.add_values(std::bit_cast<double>(random_double_bits(rng)));
    else
        t.add_values(random_int32(rng));
}

template <class Tensor>
void fill_tensor(Tensor& t, std::mt19937_64& rng, const record_gen_options& o, bool unsupported)
{
    if (chance(rng, 0.5)) {
        // Dense, with or without a shape.
        auto n = below(rng, o.max_dense + 1);
        for (std::uint64_t i = 0; i < n; ++i)
            add_random_value(t, rng);
        switch (below(rng, 4)) {
        case 0: t.add_shape(n); break;
        case 1:
            if (n % 2 == 0 && n != 0) {
                t.add_shape(2);
                t.add_shape(n / 2);
            }
            break;
        case 2:
            t.add_shape(n);
            t.add_shape(1);
            break;
        default: break;
        }
        if (unsupported) {
            t.clear_shape();
            t.add_shape(n + 1);  // a shape that does not hold the values
            if (n + 1 > 1 && chance(rng, 0.5))
                t.add_shape(3);
        }
        return;
    }
    // Sparse: distinct keys below the column count, in random order, possibly none.
    auto columns = 1 + below(rng, o.max_columns);
    auto nnz = below(rng, std::min<std::uint64_t>(columns, 12) + 1);
    if (chance(rng, 0.2))
        nnz = 0;
    std::vector<std::uint64_t> keys;
    for (std::uint64_t k = 0; k < columns; ++k)
        keys.push_back(k);
    std::shuffle(keys.begin(), keys.end(), rng);
    keys.resize(nnz);
    if (chance(rng, 0.5))
        std::sort(keys.begin(), keys.end());
    for (auto k : keys) {
        t.add_keys(k);
        add_random_value(t, rng);
    }
    t.add_shape(columns);
    if (unsupported) {
        switch (below(rng, 3)) {
        case 0:  // a key outside the columns
            t.add_keys(columns + below(rng, 5));
            add_random_value(t, rng);
            break;
        case 1:  // more keys than values
            t.add_keys(0);
            break;
        default:  // a two-dimensional sparse shape
            t.add_shape(2);
            t.add_keys(0);
            add_random_value(t, rng);
            break;
        }
    }
}

inline void fill_value(aialgs::data::Value& v, std::mt19937_64& rng, const record_gen_options& o)
{
    bool unsupported = chance(rng, o.unsupported_probability);
    switch (below(rng, 9)) {
    case 0:
    case 1:
    case 2: fill_tensor(*v.mutable_float32_tensor(), rng, o, unsupported); break;
    case 3:
    case 4: fill_tensor(*v.mutable_float64_tensor(), rng, o, unsupported); break;
    case 5:
    case 6: fill_tensor(*v.mutable_int32_tensor(), rng, o, unsupported); break;
    default: {
        if (unsupported)
            return;  // a Value with no tensor at all
        auto& b = *v.mutable_bytes();
        auto items = below(rng, 4);
        for (std::uint64_t i = 0; i < items; ++i) {
            std::string s;
            auto n = below(rng, 21);
            for (std::uint64_t j = 0; j < n; ++j)
                s += static_cast<char>(rng());
            b.add_value(s);
        }
        if (chance(rng, 0.3))
            b.set_content_type("image/jpeg");
        break;
    }
    }
}

} // namespace detail

/// A random Record: 0 to `max_features` features and, with `label_probability`, 1 to
/// `max_labels` labels, each a random dtype and layout (dense with or without a shape,
/// sparse with 0 or more non-zeros, or 0 to 3 byte strings), with awkward float bit patterns.
inline aialgs::data::Record random_record(std::mt19937_64& rng, const record_gen_options& o = {})
{
    aialgs::data::Record r;
    auto nf = detail::below(rng, o.max_features + 1);
    for (std::uint64_t i = 0; i < nf; ++i) {
        auto& v = (*r.mutable_features())[detail::random_name(rng)];
        v.Clear();  // a name drawn twice: the second draw replaces the first
        detail::fill_value(v, rng, o);
    }
    if (detail::chance(rng, o.label_probability)) {
        auto nl = 1 + detail::below(rng, o.max_labels);
        for (std::uint64_t i = 0; i < nl; ++i) {
            auto& v = (*r.mutable_label())[detail::random_name(rng)];
            v.Clear();
            detail::fill_value(v, rng, o);
        }
    }
    if (detail::chance(rng, 0.2))
        r.set_uid("uid-" + std::to_string(rng() % 1000));
    if (detail::chance(rng, 0.1))
        r.set_metadata("{}");
    return r;
}

// ---------------------------------------------------------------------------------------------
// Scrambled encodings

/// Writes a Record the long way round: each choice below is one a conforming parser must
/// accept and that leaves the message libprotobuf reads unchanged.
///
/// - map entries in random order, with the key and value fields in random order; an entry
///   whose key is "" may omit its key, one whose Value is empty may omit its value;
/// - decoys a later field overrides: an earlier entry with the same key and other content, an
///   earlier key field within an entry, an earlier Value kind that a later one replaces;
/// - a tensor's repeated fields split into runs, each packed (sometimes empty) or unpacked,
///   runs of different fields interleaved; a Value split into several value fields (merged);
/// - unknown fields of every wire type (groups nested in groups included) at every level,
///   known field numbers with a wire type they do not have, uid/metadata/configuration;
/// - tags and lengths in padded (non-canonical) varint encodings.
class scrambler {
public:
    explicit scrambler(std::mt19937_64& rng) : rng_(rng) {}

    std::string encode(const aialgs::data::Record& r)
    {
        std::vector<std::string> items;
        auto add_map = [&](const auto& map, std::uint32_t field) {
            // In key order: protobuf's map iterates in an order that changes from run to run,
            // and the draws below must not, so that a failing case can be run again.
            std::vector<const std::string*> keys;
            for (const auto& kv : map)
                keys.push_back(&kv.first);
            std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) { return *a < *b; });
            for (const auto* k : keys) {
                const auto& key = *k;
                const auto& value = map.at(key);
                if (chance(0.15)) {
                    // A decoy entry for the same key, replaced by the real one that follows.
                    aialgs::data::Value decoy;
                    record_gen_options o;
                    detail::fill_value(decoy, rng_, o);
                    items.push_back(field_bytes(field, entry(key, decoy)) + field_bytes(field, entry(key, value)));
                }
                else {
                    items.push_back(field_bytes(field, entry(key, value)));
                }
            }
        };
        add_map(r.features(), 1);
        add_map(r.label(), 2);
        if (r.has_uid())
            items.push_back(field_bytes(3, r.uid()));
        if (r.has_metadata())
            items.push_back(field_bytes(4, r.metadata()));
        if (r.has_configuration())
            items.push_back(field_bytes(5, r.configuration()));
        add_unknowns(items, 1, 0b111110, 20);
        if (chance(0.05))
            items.push_back(wrong_wire_type(1 + static_cast<std::uint32_t>(below(2)), 1u << 2));
        std::shuffle(items.begin(), items.end(), rng_);
        std::string out;
        for (const auto& s : items)
            out += s;
        return out;
    }

private:
    bool chance(double p) { return detail::chance(rng_, p); }
    std::uint64_t below(std::uint64_t n) { return detail::below(rng_, n); }

    // A tag or length of 1 byte usually, up to the 5 bytes libprotobuf accepts.
    int pad() { return chance(0.1) ? 1 + static_cast<int>(below(5)) : 1; }

    std::string field_bytes(std::uint32_t field, std::string_view body)
    {
        wire_writer w;
        w.bytes(field, body, pad(), pad());
        return w.out;
    }

    // Unknown fields, appended to `items` as separate pieces. `used` has bit i set when field
    // number i is known at this level (so only numbers outside it are used), `depth` bounds
    // group nesting.
    void add_unknowns(std::vector<std::string>& items, int depth, std::uint32_t used, std::uint32_t max_count)
    {
        auto n = chance(0.5) ? below(max_count / 4 + 1) : 0;
        for (std::uint64_t i = 0; i < n; ++i)
            items.push_back(unknown(depth, used));
    }

    std::string unknown(int depth, std::uint32_t used)
    {
        std::uint32_t field;
        do {
            static const std::uint32_t numbers[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 100, 2047, 2048, 536870911};
            field = numbers[below(std::size(numbers))];
        } while (field < 32 && (used >> field & 1));
        wire_writer w;
        switch (below(depth > 0 ? 5 : 4)) {
        case 0:
            w.tag(field, 0, pad());
            w.varint(chance(0.5) ? below(300) : rng_(), chance(0.1) ? 10 : 1);
            break;
        case 1:
            w.tag(field, 1, pad());
            w.fixed64(rng_());
            break;
        case 2: {
            std::string body;
            auto len = below(12);
            for (std::uint64_t i = 0; i < len; ++i)
                body += static_cast<char>(rng_());
            w.bytes(field, body, pad(), pad());
            break;
        }
        case 3:
            w.tag(field, 5, pad());
            w.fixed32(static_cast<std::uint32_t>(rng_()));
            break;
        default: {
            w.tag(field, 3, pad());
            auto inner = below(4);
            for (std::uint64_t i = 0; i < inner; ++i)
                w.out += unknown(depth - 1, 0);
            w.tag(field, 4, pad());
            break;
        }
        }
        return w.out;
    }

    // A known field number written with a wire type it does not have: protobuf keeps it as an
    // unknown field. `valid` has bit t set for the wire types the field does have.
    std::string wrong_wire_type(std::uint32_t field, std::uint32_t valid)
    {
        std::uint32_t wt;
        do
            wt = static_cast<std::uint32_t>(below(6));
        while ((valid >> wt & 1) || wt == 4);
        wire_writer w;
        switch (wt) {
        case 0: w.tag(field, 0); w.varint(below(1000)); break;
        case 1: w.tag(field, 1); w.fixed64(rng_()); break;
        case 2: w.bytes(field, "zz"); break;
        case 3: w.tag(field, 3); w.tag(field, 4); break;
        default: w.tag(field, 5); w.fixed32(7); break;
        }
        return w.out;
    }

    std::string entry(const std::string& key, const aialgs::data::Value& value)
    {
        std::vector<std::string> key_parts;
        std::vector<std::string> value_parts;
        if (!key.empty() || chance(0.5)) {
            if (chance(0.1))
                key_parts.push_back(field_bytes(1, "decoy-key"));
            key_parts.push_back(field_bytes(1, key));
        }
        if (value.value_case() != aialgs::data::Value::VALUE_NOT_SET || chance(0.5)) {
            // The Value's fields, possibly spread over several value fields that merge.
            auto pieces = value_pieces(value);
            std::size_t splits = pieces.empty() ? 1 : 1 + below(std::min<std::size_t>(pieces.size(), 3));
            std::size_t at = 0;
            for (std::size_t s = 0; s < splits; ++s) {
                std::size_t end = s + 1 == splits ? pieces.size() : at + below(pieces.size() - at + 1);
                std::string body;
                for (; at < end; ++at)
                    body += pieces[at];
                value_parts.push_back(field_bytes(2, body));
            }
        }
        // Key and value fields keep their own order (the last key wins, value fields merge in
        // order); the two sequences interleave at random, with unknown fields anywhere.
        std::vector<std::string> unknowns;
        add_unknowns(unknowns, 2, 0b110, 8);
        if (chance(0.05))
            unknowns.push_back(wrong_wire_type(1, 1u << 2));
        std::string out;
        std::size_t k = 0, v = 0, u = 0;
        while (k < key_parts.size() || v < value_parts.size() || u < unknowns.size()) {
            auto pick = below(3);
            if (pick == 0 && k < key_parts.size())
                out += key_parts[k++];
            else if (pick == 1 && v < value_parts.size())
                out += value_parts[v++];
            else if (pick == 2 && u < unknowns.size())
                out += unknowns[u++];
        }
        return out;
    }

    // The fields of a Value's encoding, in order; concatenated in any grouping they merge to
    // `value`. May start with a tensor of another kind, which the real one replaces.
    std::vector<std::string> value_pieces(const aialgs::data::Value& value)
    {
        std::vector<std::string> pieces;
        using V = aialgs::data::Value;
        if (value.value_case() != V::VALUE_NOT_SET && chance(0.1)) {
            V decoy;
            record_gen_options o;
            do {
                decoy.Clear();
                detail::fill_value(decoy, rng_, o);
            } while (decoy.value_case() == value.value_case() || decoy.value_case() == V::VALUE_NOT_SET);
            auto decoy_pieces = value_pieces(decoy);
            pieces.insert(pieces.end(), decoy_pieces.begin(), decoy_pieces.end());
        }
        std::vector<std::string> unknowns;
        add_unknowns(unknowns, 2, (1u << 2) | (1u << 3) | (1u << 7) | (1u << 9), 8);
        switch (value.value_case()) {
        case V::kFloat32Tensor: append_tensor(pieces, 2, value.float32_tensor(), 5); break;
        case V::kFloat64Tensor: append_tensor(pieces, 3, value.float64_tensor(), 1); break;
        case V::kInt32Tensor: append_tensor(pieces, 7, value.int32_tensor(), 0); break;
        case V::kBytes: append_bytes(pieces, value.bytes()); break;
        case V::VALUE_NOT_SET: break;
        }
        for (auto& u : unknowns)
            pieces.insert(pieces.begin() + static_cast<std::ptrdiff_t>(below(pieces.size() + 1)), u);
        return pieces;
    }

    // Appends the tensor as one or more tensor fields (field number `member` of Value) whose
    // contents concatenate to `t`. `value_wire_type` is how one unpacked value is written.
    template <class Tensor>
    void append_tensor(std::vector<std::string>& pieces, std::uint32_t member, const Tensor& t, std::uint32_t value_wire_type)
    {
        // Each repeated field as runs; a run is packed or unpacked.
        std::vector<std::vector<std::string>> fields(3);
        runs(fields[0], 1, t.values(), value_wire_type);
        runs(fields[1], 2, t.keys(), 0);
        runs(fields[2], 3, t.shape(), 0);
        std::vector<std::string> merged;
        std::size_t at[3] = {0, 0, 0};
        for (;;) {
            std::vector<int> open;
            for (int f = 0; f < 3; ++f)
                if (at[f] < fields[f].size())
                    open.push_back(f);
            if (open.empty())
                break;
            int f = open[below(open.size())];
            merged.push_back(fields[f][at[f]++]);
        }
        std::vector<std::string> unknowns;
        add_unknowns(unknowns, 3, 0b1110, 8);
        if (chance(0.1))
            unknowns.push_back(wrong_wire_type(1, (1u << 2) | (1u << value_wire_type)));
        if (chance(0.1))
            unknowns.push_back(wrong_wire_type(2 + static_cast<std::uint32_t>(below(2)), (1u << 2) | 1u));
        for (auto& u : unknowns)
            merged.insert(merged.begin() + static_cast<std::ptrdiff_t>(below(merged.size() + 1)), u);
        // Split the tensor's fields over several tensor messages (they merge).
        std::size_t splits = 1 + below(std::min<std::size_t>(merged.size(), 2) + 1);
        std::size_t i = 0;
        for (std::size_t s = 0; s < splits; ++s) {
            std::size_t end = s + 1 == splits ? merged.size() : i + below(merged.size() - i + 1);
            std::string body;
            for (; i < end; ++i)
                body += merged[i];
            pieces.push_back(field_bytes(member, body));
        }
    }

    template <class Repeated>
    void runs(std::vector<std::string>& out, std::uint32_t field, const Repeated& values, std::uint32_t unpacked_wire_type)
    {
        auto size = static_cast<std::size_t>(values.size());
        std::size_t i = 0;
        // Now and then an empty packed field too (even after the last run): it adds nothing.
        while (i < size || (chance(0.05) && out.size() < 3)) {
            std::size_t n = std::min<std::size_t>(size - i, 1 + below(size - i + 1));
            wire_writer w;
            if (chance(0.3)) {
                for (std::size_t j = i; j < i + n; ++j) {
                    w.tag(field, unpacked_wire_type, pad());
                    put(w, values[static_cast<int>(j)], unpacked_wire_type);
                }
            }
            else {
                wire_writer body;
                for (std::size_t j = i; j < i + n; ++j)
                    put(body, values[static_cast<int>(j)], unpacked_wire_type);
                w.bytes(field, body.out, pad(), pad());
            }
            out.push_back(w.out);
            i += n;
        }
    }

    template <class T>
    void put(wire_writer& w, T v, std::uint32_t wire_type)
    {
        if (wire_type == 5) {
            w.fixed32(std::bit_cast<std::uint32_t>(static_cast<float>(v)));
        }
        else if (wire_type == 1) {
            w.fixed64(std::bit_cast<std::uint64_t>(static_cast<double>(v)));
        }
        else {
            std::uint64_t u;
            if constexpr (std::is_same_v<T, std::int32_t>)
                u = static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
            else
                u = static_cast<std::uint64_t>(v);
            // Padding a varint is allowed up to 10 bytes; values of int32 keep 10 then.
            w.varint(u, chance(0.05) ? 1 + static_cast<int>(below(10)) : 1);
        }
    }

    void append_bytes(std::vector<std::string>& pieces, const aialgs::data::Bytes& b)
    {
        std::vector<std::string> fields;
        for (const auto& item : b.value())
            fields.push_back(field_bytes(1, item));
        if (b.has_content_type())
            fields.insert(fields.begin() + static_cast<std::ptrdiff_t>(below(fields.size() + 1)),
                          field_bytes(2, b.content_type()));
        add_unknowns(fields, 3, 0b110, 8);
        std::string body;
        for (const auto& f : fields)
            body += f;
        pieces.push_back(field_bytes(9, body));
    }

    std::mt19937_64& rng_;
};

} // namespace pipemode::test
