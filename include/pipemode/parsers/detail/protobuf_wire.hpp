// pipemode: protobuf wire-format primitives shared by the Record parser and writer.
//
// The readers follow libprotobuf's limits exactly, because the parser must accept and refuse
// the same inputs as libprotobuf does (its tests use libprotobuf as the oracle):
// - a tag is at most 5 bytes and taken modulo 2^32;
// - a length is at most 5 bytes and below 2^31;
// - any other varint is at most 10 bytes and taken modulo 2^64.
#pragma once

#include <pipemode/config.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pipemode::detail::wire {

static_assert(std::endian::native == std::endian::little,
              "pipemode copies protobuf's little-endian fixed-width numbers as they are");

/// Wire types.
inline constexpr std::uint32_t varint = 0;
inline constexpr std::uint32_t fixed64 = 1;
inline constexpr std::uint32_t length_delimited = 2;
inline constexpr std::uint32_t start_group = 3;
inline constexpr std::uint32_t end_group = 4;
inline constexpr std::uint32_t fixed32 = 5;

/// The tag of field `number` with wire type `type`.
constexpr std::uint32_t tag(std::uint32_t number, std::uint32_t type) noexcept
{
    return number << 3 | type;
}

inline std::uint8_t byte_at(const std::byte* p) noexcept
{
    return static_cast<std::uint8_t>(*p);
}

/// Reads a tag at `p`; false when it is longer than 5 bytes or runs past `end`.
[[gnu::noinline]] inline bool read_tag_slow(const std::byte*& p, const std::byte* end, std::uint32_t& out) noexcept
{
    std::uint32_t v = 0;
    for (int i = 0; i < 5; ++i) {
        if (p + i == end)
            return false;
        auto b = byte_at(p + i);
        v |= static_cast<std::uint32_t>(b & 0x7f) << (7 * i);  // bits past 32 fall off
        if (b < 0x80) {
            p += i + 1;
            out = v;
            return true;
        }
    }
    return false;
}

/// Reads a tag at `p` (precondition: `p != end`).
[[gnu::always_inline]] inline bool read_tag(const std::byte*& p, const std::byte* end, std::uint32_t& out) noexcept
{
    auto b = byte_at(p);
    if (b < 0x80) [[likely]] {
        out = b;
        ++p;
        return true;
    }
    return read_tag_slow(p, end, out);
}

/// Reads a varint of at most 10 bytes; false when it is longer or runs past `end`.
[[gnu::noinline]] inline bool read_varint_slow(const std::byte*& p, const std::byte* end, std::uint64_t& out) noexcept
{
    std::uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
        if (p + i == end)
            return false;
        auto b = byte_at(p + i);
        v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);  // bits past 64 fall off
        if (b < 0x80) {
            p += i + 1;
            out = v;
            return true;
        }
    }
    return false;
}

/// Decodes a varint of 1 to 5 bytes at `p` from one 8-byte load, without a branch per byte:
/// the first byte below 0x80 gives the length, and the 7-bit groups are gathered with shifts
/// and masks. Returns the length, or 0 when none of the first 5 bytes ends the varint (a
/// longer one, or damage: the caller then takes `read_varint_slow`). Requires 8 readable
/// bytes at `p`; the varint itself must end before the caller's limit, which only the caller
/// can know.
[[gnu::always_inline]] inline std::size_t decode_varint_word(const std::byte* p, std::uint64_t& out) noexcept
{
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);
    // The high bit of each of the first 5 bytes, set where that byte ends the varint.
    const std::uint64_t ends = ~w & 0x0000008080808080ULL;
    if (ends == 0) [[unlikely]]
        return 0;
    const auto length = static_cast<std::size_t>(std::countr_zero(ends) + 1) / 8;
    const std::uint64_t v = (w & 0x7f) | (w >> 1 & 0x3f80) | (w >> 2 & 0x1fc000) | (w >> 3 & 0xfe00000)
        | (w >> 4 & 0x7f0000000ULL);
    // Keep the groups of the varint's own bytes; the ones after it belong to what follows.
    out = v & ((std::uint64_t{1} << (7 * length)) - 1);
    return length;
}

/// Reads a varint of at most 10 bytes at `p`, all of whose bytes up to the first one below
/// 0x80 lie before `end` (the caller knows it: a packed run whose last byte ends a varint), and
/// of which 8 bytes may be loaded when fewer than 8 are left before `readable_end`.
///
/// One and two bytes (every key below 16384) are tested for first, each with one branch: in a
/// run of keys the lengths repeat, so the branches predict well and the CPU runs ahead to the
/// next key instead of waiting for this one's length. Three to five bytes are decoded from one
/// load (`decode_varint_word`); only longer varints take the byte loop.
[[gnu::always_inline]] inline bool read_terminated_varint(const std::byte*& p, const std::byte* end,
                                                          const std::byte* readable_end, std::uint64_t& out) noexcept
{
    const std::uint64_t b0 = byte_at(p);
    if (b0 < 0x80) [[likely]] {
        out = b0;
        p += 1;
        return true;
    }
    const std::uint64_t b1 = byte_at(p + 1);  // before `end`: b0 does not end the varint
    if (b1 < 0x80) [[likely]] {
        out = (b0 & 0x7f) | b1 << 7;
        p += 2;
        return true;
    }
    if (readable_end - p >= 8) {
        if (auto n = decode_varint_word(p, out)) [[likely]] {
            p += n;
            return true;
        }
    }
    return read_varint_slow(p, end, out);
}

/// Reads a varint of at most 10 bytes at `p`; false when it is longer or runs past `end`. The
/// same cases as `read_terminated_varint` inline, with the bounds checks a varint of unknown
/// extent needs.
[[gnu::always_inline]] inline bool read_varint(const std::byte*& p, const std::byte* end, std::uint64_t& out) noexcept
{
    const auto left = end - p;
    if (left >= 8) [[likely]]
        return read_terminated_varint(p, end, end, out);
    if (left >= 1 && byte_at(p) < 0x80) {
        out = byte_at(p);
        ++p;
        return true;
    }
    return read_varint_slow(p, end, out);
}

/// Reads a length of at most 5 bytes and below 2^31, and checks that that many bytes follow.
[[gnu::noinline]] inline bool read_length_slow(const std::byte*& p, const std::byte* end, std::size_t& out) noexcept
{
    std::uint64_t v = 0;
    const std::byte* q = p;
    for (int i = 0;; ++i) {
        if (q == end)
            return false;
        auto b = byte_at(q++);
        if (i == 4 && b >= 8)
            return false;
        v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
        if (b < 0x80)
            break;
    }
    if (v > static_cast<std::size_t>(end - q))
        return false;
    p = q;
    out = static_cast<std::size_t>(v);
    return true;
}

/// Reads a length at `p` and checks that that many bytes follow it.
[[gnu::always_inline]] inline bool read_length(const std::byte*& p, const std::byte* end, std::size_t& out) noexcept
{
    // Lengths of up to 16383 (one or two bytes) inline: a dense row of a few dozen numbers
    // already needs two.
    auto left = static_cast<std::size_t>(end - p);
    if (left >= 2) [[likely]] {
        std::size_t b0 = byte_at(p);
        if (b0 < 0x80) {
            if (b0 > left - 1)
                return false;
            out = b0;
            p += 1;
            return true;
        }
        std::size_t b1 = byte_at(p + 1);
        if (b1 < 0x80) {
            std::size_t v = (b0 & 0x7f) | b1 << 7;
            if (v > left - 2)
                return false;
            out = v;
            p += 2;
            return true;
        }
    }
    return read_length_slow(p, end, out);
}

/// Bytes a varint encoding of `v` takes (1 to 10).
constexpr std::size_t varint_size(std::uint64_t v) noexcept
{
    // One byte per 7 significant bits, at least one; (bits * 9 + 64) / 64 is ceil(bits / 7)
    // for 1..64 bits without a division.
    int bits = 64 - std::countl_zero(v | 1);
    return static_cast<std::size_t>((bits * 9 + 64) / 64);
}

/// Writes `v` as a varint at `p` and returns the end.
inline std::byte* put_varint(std::byte* p, std::uint64_t v) noexcept
{
    while (v >= 0x80) {
        *p++ = static_cast<std::byte>(v | 0x80);
        v >>= 7;
    }
    *p++ = static_cast<std::byte>(v);
    return p;
}

} // namespace pipemode::detail::wire
