// pipemode: a byte source that decompresses another byte source's gzip stream. Needs zlib (the
// pipemode::gzip target).
//
// See docs/formats/gzip.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/sources/gzip_inflater.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode {

/// Options of a `gzip_source`. Use designated initializers:
/// `gzip_source_options{.chunk_size = 256 * 1024}`.
struct gzip_source_options {
    /// The most decompressed bytes one `async_next()` hands out, and the size of the output
    /// buffer the source allocates once. At least 1.
    std::size_t chunk_size = std::size_t{1024} * 1024;
};

/// A `byte_source` that reads a gzip-compressed stream from an inner `byte_source` and hands
/// out the decompressed bytes.
///
/// Decompression is a `gzip_inflater` (multi-member streams, zero padding, and what is an
/// error, are described there). Chunks are at most `chunk_size` bytes and point into the
/// source's own output buffer: valid until the next `async_next()`, as the concept says.
///
/// - `name()` is the inner source's name (the compressed object's path or URL).
/// - `start_offset()` is 0, and every offset a decoder reports refers to the decompressed
///   stream: a gzip stream cannot be entered in the middle, so the inner source must start at
///   the object's first byte (the constructor throws `std::invalid_argument` otherwise).
/// - Errors: the inner source's errors pass through unchanged (with its `error_detail()`);
///   `errc::corrupt_gzip` and `errc::truncated_gzip` come with the inflater's sentence in
///   `error_detail()`. An error ends the source: later calls repeat it.
///
/// Memory: at most `buffer_bytes(options)` of its own (the output buffer and zlib's state),
/// plus what the inner source holds. The inner source's chunk is kept (not copied) until it
/// is used up.
///
/// Not thread-safe; move-only.
///
/// @code
/// gzip_source src(file_source(...), {.chunk_size = 256 * 1024});
/// for (;;) {
///     auto [ec, chunk] = co_await src.async_next();
///     if (ec == asio::error::eof) break;
///     if (ec) throw data_error(ec, {std::string(src.name()), ...}, src.error_detail());
///     decoder.put(chunk, ...);
/// }
/// @endcode
template <byte_source Source>
class gzip_source {
public:
    /// The memory one source with `options` holds at most, besides its inner source: the
    /// output buffer and zlib's state.
    static constexpr std::size_t buffer_bytes(const gzip_source_options& options) noexcept
    {
        return options.chunk_size + gzip_inflater::memory_bytes;
    }

    /// Decompresses `inner`, which must start at its object's first byte. Throws
    /// `std::invalid_argument` for a `chunk_size` of 0 or an inner source with a non-zero
    /// `start_offset()`.
    explicit gzip_source(Source inner, gzip_source_options options = {})
        : inner_(std::move(inner)), out_(check(options, inner_).chunk_size)
    {
    }

    gzip_source(gzip_source&&) noexcept = default;
    gzip_source& operator=(gzip_source&&) noexcept = default;

    /// The next chunk of decompressed bytes (never empty without an error), then
    /// `asio::error::eof` once the input has ended after a complete member.
    asio::awaitable<chunk_result> async_next()
    {
        for (;;) {
            if (error_) {
                chunk_result r{error_, {}};
                co_return r;
            }
            if (!input_.empty() || inflater_.has_pending_output()) {
                error_code ec;
                const auto [used, made] = inflater_.inflate(input_, out_, ec);
                input_ = input_.subspan(used);
                if (ec) {
                    error_ = ec;
                    detail_ = inflater_.error_detail();
                    continue;
                }
                if (made != 0) {
                    chunk_result r{error_code{}, std::span<const std::byte>(out_.data(), made)};
                    co_return r;
                }
                if (used == 0 && !input_.empty()) {
                    // zlib always progresses with room on both sides; never spin if it did not.
                    error_ = errc::corrupt_gzip;
                    detail_ = "zlib made no progress";
                }
                continue;  // input used up without output (a header, say): read more
            }
            auto [ec, chunk] = co_await inner_.async_next();
            if (ec == asio::error::eof) {
                error_code fec;
                inflater_.finish(fec);
                if (fec) {
                    error_ = fec;
                    detail_ = inflater_.error_detail();
                } else {
                    error_ = asio::error::eof;
                }
                continue;
            }
            if (ec) {
                error_ = ec;
                if constexpr (requires { inner_.error_detail(); })
                    detail_ = std::string(inner_.error_detail());
                continue;
            }
            input_ = chunk;
        }
    }

    /// The inner source's name.
    std::string_view name() const noexcept { return inner_.name(); }

    /// Always 0: offsets refer to the decompressed stream.
    std::uint64_t start_offset() const noexcept { return 0; }

    /// A sentence about the last error: zlib's message, why the stream is truncated, or the
    /// inner source's own detail.
    std::string_view error_detail() const noexcept { return detail_; }

    /// The gzip members completed so far.
    std::uint64_t members() const noexcept { return inflater_.members(); }

private:
    static const gzip_source_options& check(const gzip_source_options& options, const Source& inner)
    {
        if (options.chunk_size == 0)
            throw std::invalid_argument("pipemode: gzip_source_options::chunk_size must be at least 1");
        if (inner.start_offset() != 0)
            throw std::invalid_argument("pipemode: a gzip stream must be read from its first byte, but source '"
                                        + std::string(inner.name()) + "' starts at byte "
                                        + std::to_string(inner.start_offset())
                                        + "; read compressed objects whole, not in byte ranges");
        return options;
    }

    Source inner_;
    std::vector<std::byte> out_;
    gzip_inflater inflater_;
    std::span<const std::byte> input_;  // the rest of the inner source's last chunk
    error_code error_;                  // once set (eof included), every call returns it
    std::string detail_;
};

} // namespace pipemode
