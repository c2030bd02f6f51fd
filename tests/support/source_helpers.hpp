// Test support: draining a byte source, byte patterns that reveal misplaced bytes, and
// temporary files.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>

#include <stdlib.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
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

/// A fresh directory under the system's temporary directory, removed with its contents.
class temp_dir {
public:
    temp_dir()
    {
        std::string t = (std::filesystem::temp_directory_path() / "pipemode-test-XXXXXX").string();
        if (::mkdtemp(t.data()) == nullptr)
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + t);
        path_ = t;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    /// The directory.
    const std::filesystem::path& path() const noexcept { return path_; }

    /// The path of `name` inside the directory, as a string.
    std::string operator/(std::string_view name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

/// Writes `bytes` to a new file at `path` (replacing it).
inline void write_file(const std::string& path, std::span<const std::byte> bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out)
        throw std::runtime_error("cannot write " + path);
}

/// The whole contents of the file at `path`, read with `std::ifstream`.
inline std::vector<std::byte> read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(chars.size());
    if (!chars.empty())
        std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

} // namespace pipemode::test
