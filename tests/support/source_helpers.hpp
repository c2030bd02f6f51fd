// Test support: draining a byte source, and byte patterns that reveal misplaced bytes.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace pipemode::test {

/// Everything a source delivered, and how it ended.
struct drained {
    std::vector<std::byte> bytes;  ///< the chunks, concatenated
    error_code ec;                 ///< the error that ended the source (`eof` when it ended well)
    std::size_t chunks = 0;        ///< non-empty chunks received
    std::size_t largest_chunk = 0; ///< size of the largest chunk
};

/// Reads `source` until it completes with an error (eof included), concatenating the chunks.
///
/// Takes the source by reference (unlike library coroutines): the caller keeps it alive
/// while awaiting, and may look at it afterwards.
template <byte_source Source>
asio::awaitable<drained> read_all(Source& source)
{
    drained out;
    for (;;) {
        auto [ec, chunk] = co_await source.async_next();
        if (ec) {
            if (!chunk.empty())
                throw std::logic_error("read_all: a chunk came with an error");
            out.ec = ec;
            co_return out;
        }
        if (!chunk.empty()) {
            ++out.chunks;
            if (chunk.size() > out.largest_chunk)
                out.largest_chunk = chunk.size();
        }
        out.bytes.insert(out.bytes.end(), chunk.begin(), chunk.end());
    }
}

/// `n` bytes in which byte `i` depends on `i` and `seed` without repeating every 256 bytes,
/// so a chunk delivered twice, skipped or out of order shows up as a mismatch.
inline std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed = 1)
{
    std::vector<std::byte> v(n);
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = static_cast<std::byte>(x >> 24);
    }
    return v;
}

/// The bytes of a string, for sources in tests.
inline std::span<const std::byte> bytes_of(std::string_view s) noexcept
{
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

} // namespace pipemode::test
