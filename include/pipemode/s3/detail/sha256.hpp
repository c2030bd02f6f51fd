// pipemode: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the SigV4 signer.
//
// Written here rather than taken from OpenSSL so that the signer stays sans-I/O and free of
// any library beyond the standard one. The signer hashes a few hundred bytes per request and
// pipemode issues one request per multi-MiB range, so this code favours plainness over speed.
#pragma once

#include <pipemode/config.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pipemode::s3::detail {

/// A SHA-256 digest: 32 bytes.
using sha256_digest = std::array<std::uint8_t, 32>;

/// An incremental SHA-256 hash (FIPS 180-4, section 6.2).
///
/// Feed bytes with `update()` any number of times, then call `finish()` once. Not thread-safe.
class sha256 {
public:
    /// Absorbs `data`.
    void update(std::string_view data) noexcept
    {
        for (char c : data) {
            block_[block_size_++] = static_cast<std::uint8_t>(c);
            if (block_size_ == block_.size()) {
                compress();
                block_size_ = 0;
            }
        }
        length_ += data.size();
    }

    /// Pads the message and returns its digest. The object must not be used afterwards.
    sha256_digest finish() noexcept
    {
        // The message length in bits, taken before the padding is absorbed.
        const std::uint64_t bit_length = length_ * 8;
        block_[block_size_++] = 0x80;
        if (block_size_ > 56) {
            while (block_size_ < 64)
                block_[block_size_++] = 0;
            compress();
            block_size_ = 0;
        }
        while (block_size_ < 56)
            block_[block_size_++] = 0;
        for (int i = 7; i >= 0; --i)
            block_[block_size_++] = static_cast<std::uint8_t>(bit_length >> (8 * i));
        compress();

        sha256_digest out{};
        for (std::size_t i = 0; i < 8; ++i)
            for (std::size_t b = 0; b < 4; ++b)
                out[4 * i + b] = static_cast<std::uint8_t>(state_[i] >> (24 - 8 * b));
        return out;
    }

private:
    static constexpr std::uint32_t rotr(std::uint32_t x, int n) noexcept
    {
        return (x >> n) | (x << (32 - n));
    }

    // FIPS 180-4, 6.2.2: one 512-bit block into the eight working words.
    void compress() noexcept
    {
        static constexpr std::array<std::uint32_t, 64> k = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
            0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
            0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
            0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
            0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
            0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
            0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
            0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
            0xc67178f2};

        std::array<std::uint32_t, 64> w{};
        for (std::size_t t = 0; t < 16; ++t)
            w[t] = std::uint32_t{block_[4 * t]} << 24 | std::uint32_t{block_[4 * t + 1]} << 16
                 | std::uint32_t{block_[4 * t + 2]} << 8 | std::uint32_t{block_[4 * t + 3]};
        for (std::size_t t = 16; t < 64; ++t) {
            const std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
            const std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }

        std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
        std::uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
        for (std::size_t t = 0; t < 64; ++t) {
            const std::uint32_t big_s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            const std::uint32_t ch = (e & f) ^ (~e & g);
            const std::uint32_t t1 = h + big_s1 + ch + k[t] + w[t];
            const std::uint32_t big_s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            const std::uint32_t t2 = big_s0 + maj;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state_[0] += a;
        state_[1] += b;
        state_[2] += c;
        state_[3] += d;
        state_[4] += e;
        state_[5] += f;
        state_[6] += g;
        state_[7] += h;
    }

    // FIPS 180-4, 5.3.3: the initial hash value.
    std::array<std::uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<std::uint8_t, 64> block_{};
    std::size_t block_size_ = 0;
    std::uint64_t length_ = 0;
};

/// The SHA-256 digest of `data`.
inline sha256_digest sha256_of(std::string_view data) noexcept
{
    sha256 h;
    h.update(data);
    return h.finish();
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104 with a 64-byte block).
inline sha256_digest hmac_sha256(std::string_view key, std::string_view message) noexcept
{
    constexpr std::size_t block = 64;
    std::array<char, block> key_block{};
    if (key.size() > block) {
        const sha256_digest hashed = sha256_of(key);
        for (std::size_t i = 0; i < hashed.size(); ++i)
            key_block[i] = static_cast<char>(hashed[i]);
    } else {
        for (std::size_t i = 0; i < key.size(); ++i)
            key_block[i] = key[i];
    }

    std::array<char, block> inner_pad{};
    std::array<char, block> outer_pad{};
    for (std::size_t i = 0; i < block; ++i) {
        inner_pad[i] = static_cast<char>(key_block[i] ^ 0x36);
        outer_pad[i] = static_cast<char>(key_block[i] ^ 0x5c);
    }

    sha256 inner;
    inner.update({inner_pad.data(), inner_pad.size()});
    inner.update(message);
    const sha256_digest inner_digest = inner.finish();

    sha256 outer;
    outer.update({outer_pad.data(), outer_pad.size()});
    outer.update({reinterpret_cast<const char*>(inner_digest.data()), inner_digest.size()});
    return outer.finish();
}

/// HMAC-SHA256 keyed by an earlier digest: the step of SigV4's signing-key chain.
inline sha256_digest hmac_sha256(const sha256_digest& key, std::string_view message) noexcept
{
    return hmac_sha256(std::string_view{reinterpret_cast<const char*>(key.data()), key.size()},
                       message);
}

/// `digest` as 64 lowercase hexadecimal digits.
inline std::string to_hex(const sha256_digest& digest)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * digest.size());
    for (std::uint8_t byte : digest) {
        out.push_back(digits[byte >> 4]);
        out.push_back(digits[byte & 0x0f]);
    }
    return out;
}

/// The hexadecimal SHA-256 of `data`, as SigV4 writes payload and canonical-request hashes.
inline std::string sha256_hex(std::string_view data)
{
    return to_hex(sha256_of(data));
}

} // namespace pipemode::s3::detail
