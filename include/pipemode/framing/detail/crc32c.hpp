// pipemode: CRC-32C (Castagnoli), as TFRecord framing uses it.
//
// Two implementations that must agree (tests/framing/tfrecord.test.cpp checks they do):
// a portable slicing-by-8 table walk, and on x86-64 the SSE4.2 `crc32` instruction, chosen at
// run time when the CPU has it, three streams at a time on long inputs. The instruction runs
// at up to 8 bytes a cycle that way (8 bytes per 3 cycles on short inputs) against roughly
// 1-2 GB/s for the tables, and TFRecord checks every payload byte.
#pragma once

#include <pipemode/config.hpp>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define PIPEMODE_CRC32C_HW 1
#else
#define PIPEMODE_CRC32C_HW 0
#endif

namespace pipemode::detail {

/// The reflected CRC-32C polynomial.
inline constexpr std::uint32_t crc32c_polynomial = 0x82f63b78U;

/// Slicing-by-8 tables: `t[0]` is the classic byte table, `t[k][b]` is the CRC of byte `b`
/// followed by `k` zero bytes.
inline constexpr auto crc32c_tables = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t b = 0; b < 256; ++b) {
        std::uint32_t c = b;
        for (int i = 0; i < 8; ++i)
            c = (c >> 1) ^ (crc32c_polynomial & (0U - (c & 1U)));
        t[0][b] = c;
    }
    for (std::size_t k = 1; k < 8; ++k)
        for (std::size_t b = 0; b < 256; ++b)
            t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
    return t;
}();

/// Continues a CRC-32C over `n` more bytes with the portable tables. `crc` is the value
/// returned for the bytes before (0 for none); the result is the CRC of all of them.
inline std::uint32_t crc32c_extend_portable(std::uint32_t crc, const std::byte* p, std::size_t n) noexcept
{
    const auto& t = crc32c_tables;
    std::uint32_t c = ~crc;
    while (n >= 8) {
        std::uint32_t lo;
        std::uint32_t hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        if constexpr (std::endian::native == std::endian::big) {
            lo = __builtin_bswap32(lo);
            hi = __builtin_bswap32(hi);
        }
        lo ^= c;
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24]
            ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- != 0)
        c = (c >> 8) ^ t[0][(c ^ static_cast<std::uint8_t>(*p++)) & 0xff];
    return ~c;
}

/// `a * b` modulo the CRC-32C polynomial, in the CRC's bit-reflected representation (the x^0
/// coefficient is bit 31), as zlib's `multmodp`.
constexpr std::uint32_t crc32c_multmodp(std::uint32_t a, std::uint32_t b) noexcept
{
    std::uint32_t m = 1U << 31;
    std::uint32_t p = 0;
    for (;;) {
        if ((a & m) != 0) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = (b & 1) != 0 ? (b >> 1) ^ crc32c_polynomial : b >> 1;
    }
    return p;
}

/// x^(8n) modulo the polynomial: multiplying a CRC register by it is feeding it `n` zero bytes.
constexpr std::uint32_t crc32c_zeros_operator(std::size_t n) noexcept
{
    std::uint32_t result = 1U << 31;  // x^0
    std::uint32_t base = 1U << 23;    // x^8
    for (; n != 0; n >>= 1) {
        if ((n & 1) != 0)
            result = crc32c_multmodp(base, result);
        base = crc32c_multmodp(base, base);
    }
    return result;
}

/// The block length of the three-way interleaved hardware CRC.
inline constexpr std::size_t crc32c_block = 512;

/// Byte-wise tables of "feed `crc32c_block` zero bytes" (`[0]`) and "feed twice that" (`[1]`):
/// `shift(c) = t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ ...`, four loads instead of a
/// carry-less multiplication.
inline constexpr auto crc32c_shift_tables = [] {
    std::array<std::array<std::array<std::uint32_t, 256>, 4>, 2> t{};
    const std::uint32_t ops[2] = {crc32c_zeros_operator(crc32c_block), crc32c_zeros_operator(2 * crc32c_block)};
    for (std::size_t j = 0; j < 2; ++j)
        for (std::size_t k = 0; k < 4; ++k)
            for (std::uint32_t b = 0; b < 256; ++b)
                t[j][k][b] = crc32c_multmodp(ops[j], b << (8 * k));
    return t;
}();

/// Feeds a raw CRC register `c` `crc32c_block` zero bytes (`which` 0) or twice that (1).
inline std::uint32_t crc32c_shift(std::uint32_t c, std::size_t which) noexcept
{
    const auto& t = crc32c_shift_tables[which];
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

#if PIPEMODE_CRC32C_HW
/// Continues a CRC-32C with the SSE4.2 instruction. Call only where `crc32c_has_hw()`.
///
/// The instruction has a latency of 3 cycles and a throughput of 1, so one dependent chain
/// uses a third of it: long inputs are cut into three blocks whose CRCs run side by side and
/// are then combined (the first shifted past the other two, the second past the third).
[[gnu::target("sse4.2")]] inline std::uint32_t crc32c_extend_hw(std::uint32_t crc, const std::byte* p,
                                                                 std::size_t n) noexcept
{
    std::uint64_t c = ~crc;
    const auto load = [](const std::byte* q) {
        std::uint64_t w;
        std::memcpy(&w, q, 8);
        return w;
    };
    while (n >= 3 * crc32c_block) {
        std::uint64_t c0 = c;
        std::uint64_t c1 = 0;
        std::uint64_t c2 = 0;
        for (std::size_t i = 0; i < crc32c_block; i += 8) {
            c0 = _mm_crc32_u64(c0, load(p + i));
            c1 = _mm_crc32_u64(c1, load(p + crc32c_block + i));
            c2 = _mm_crc32_u64(c2, load(p + 2 * crc32c_block + i));
        }
        c = crc32c_shift(static_cast<std::uint32_t>(c0), 1) ^ crc32c_shift(static_cast<std::uint32_t>(c1), 0)
            ^ static_cast<std::uint32_t>(c2);
        p += 3 * crc32c_block;
        n -= 3 * crc32c_block;
    }
    while (n >= 8) {
        c = _mm_crc32_u64(c, load(p));
        p += 8;
        n -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c);
    while (n-- != 0)
        c32 = _mm_crc32_u8(c32, static_cast<std::uint8_t>(*p++));
    return ~c32;
}

/// Whether this CPU has SSE4.2 (asked once).
inline bool crc32c_has_hw() noexcept
{
    static const bool has = __builtin_cpu_supports("sse4.2");
    return has;
}
#else
/// No hardware CRC-32C on this target.
inline bool crc32c_has_hw() noexcept { return false; }
#endif

/// Continues a CRC-32C with the fastest implementation this CPU has.
inline std::uint32_t crc32c_extend(std::uint32_t crc, const std::byte* p, std::size_t n) noexcept
{
#if PIPEMODE_CRC32C_HW
    if (crc32c_has_hw())
        return crc32c_extend_hw(crc, p, n);
#endif
    return crc32c_extend_portable(crc, p, n);
}

/// The CRC-32C of `bytes` (of "123456789": 0xe3069283).
inline std::uint32_t crc32c(std::span<const std::byte> bytes) noexcept
{
    return crc32c_extend(0, bytes.data(), bytes.size());
}

} // namespace pipemode::detail
