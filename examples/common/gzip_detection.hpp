// Gzip recognised by its magic bytes, per object, for tools that are not told whether their
// data is compressed (pipemode-cat without --compression).
//
// A user who points a tool at `part-0.rec.gz` should not have to know that it needs a flag:
// each object whose first two bytes are gzip's magic number (1f 8b) is decompressed, any other
// is read as it is. The first chunk of every object is peeked, whatever the source (a file, a
// FIFO, an HTTP or S3 stream), so no extra request or open is made. Needs zlib (pipemode::gzip).
#pragma once

#include <pipemode/core/concepts.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/sources/any_source.hpp>
#include <pipemode/sources/gzip_source.hpp>

#include <boost/asio/awaitable.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::tools {

/// gzip's magic number: the first two bytes of every gzip member (RFC 1952).
inline constexpr std::array<std::byte, 2> gzip_magic{std::byte{0x1f}, std::byte{0x8b}};

/// A `byte_source` that can look at the first two bytes of its inner source before handing
/// them out: `async_peek()` reads as few chunks as it needs, and `async_next()` then delivers
/// every byte, the peeked ones included, in order.
///
/// Chunks keep the inner source's contract (valid until the next `async_next()`): a peek that
/// needed two chunks (a first chunk of one byte) copies that one byte, nothing else is copied.
template <byte_source Source>
class peekable_source {
public:
    explicit peekable_source(Source inner) : inner_(std::move(inner)) {}

    peekable_source(peekable_source&&) noexcept = default;
    peekable_source& operator=(peekable_source&&) noexcept = default;

    /// The object's first bytes, at most two: fewer when the object is shorter, none when its
    /// first read failed (the error then comes from `async_next()`). Call once, before any
    /// `async_next()`.
    asio::awaitable<std::span<const std::byte>> async_peek()
    {
        auto [ec, chunk] = co_await inner_.async_next();
        held_ = chunk_result{ec, chunk};
        if (ec || chunk.size() != 1) {
            peeked_size_ = ec ? 0 : std::min<std::size_t>(chunk.size(), 2);
            std::copy_n(chunk.begin(), peeked_size_, peeked_.begin());
            co_return std::span<const std::byte>(peeked_.data(), peeked_size_);
        }
        // A chunk of one byte (a read size of 1, a tiny object): keep that byte and look at the
        // next chunk, which the inner source keeps valid until we call it again.
        head_[0] = peeked_[0] = chunk[0];
        head_size_ = peeked_size_ = 1;
        auto [ec2, chunk2] = co_await inner_.async_next();
        held_ = chunk_result{ec2, chunk2};
        if (!ec2 && !chunk2.empty())
            peeked_[peeked_size_++] = chunk2[0];
        co_return std::span<const std::byte>(peeked_.data(), peeked_size_);
    }

    /// The next chunk: the peeked chunks first, then the inner source's.
    asio::awaitable<chunk_result> async_next()
    {
        if (head_size_ != 0) {
            const std::size_t n = std::exchange(head_size_, 0);
            co_return chunk_result{error_code{}, std::span<const std::byte>(head_.data(), n)};
        }
        if (held_)
            co_return *std::exchange(held_, std::nullopt);
        co_return co_await inner_.async_next();
    }

    /// The inner source's name.
    std::string_view name() const noexcept { return inner_.name(); }

    /// The inner source's start offset.
    std::uint64_t start_offset() const noexcept { return inner_.start_offset(); }

    /// The inner source's description of its last error.
    std::string error_detail() const
    {
        if constexpr (requires { inner_.error_detail(); })
            return std::string(inner_.error_detail());
        else
            return {};
    }

private:
    Source inner_;
    std::optional<chunk_result> held_;  // the last chunk the peek read, not yet handed out
    std::array<std::byte, 1> head_{};   // a first chunk of one byte, copied
    std::size_t head_size_ = 0;
    std::array<std::byte, 2> peeked_{};
    std::size_t peeked_size_ = 0;
};

/// Called with a source's name when it turned out to be gzip-compressed (for --verbose).
using gzip_found_handler = std::function<void(std::string_view name)>;

/// A `byte_source` that decompresses its inner source when it starts with `gzip_magic` and
/// passes it through unchanged otherwise (or, with `decompress` false, only reports it, so
/// that a tool told the data is not compressed can explain the decoding error to come). Only a source that starts at its object's first byte
/// is looked at: a byte range from the middle of an object is passed through (a gzip stream
/// cannot be entered there anyway, and its bytes may look like the magic by chance).
class gzip_detecting_source {
public:
    gzip_detecting_source(any_byte_source inner, gzip_source_options options, gzip_found_handler on_gzip,
                          bool decompress = true)
        : raw_(std::move(inner)), options_(options), on_gzip_(std::move(on_gzip)), name_(raw_->name()),
          decompress_(decompress)
    {
    }

    gzip_detecting_source(gzip_detecting_source&&) noexcept = default;
    gzip_detecting_source& operator=(gzip_detecting_source&&) noexcept = default;

    /// The next chunk, decompressed when the object is gzip.
    asio::awaitable<chunk_result> async_next()
    {
        if (!decided_) {
            decided_ = true;
            if (raw_->start_offset() == 0) {
                const auto head = co_await raw_->async_peek();
                if (head.size() == 2 && head[0] == gzip_magic[0] && head[1] == gzip_magic[1]) {
                    if (on_gzip_)
                        on_gzip_(name_);
                    if (decompress_) {
                        gzip_.emplace(std::move(*raw_), options_);
                        raw_.reset();
                    }
                }
            }
        }
        if (gzip_)
            co_return co_await gzip_->async_next();
        co_return co_await raw_->async_next();
    }

    /// The object's name (as the inner source gives it).
    std::string_view name() const noexcept { return name_; }

    /// The inner source's start offset; 0 once decompressing (offsets then count decompressed
    /// bytes).
    std::uint64_t start_offset() const noexcept { return gzip_ ? 0 : raw_->start_offset(); }

    /// The last error's description: zlib's sentence, or the inner source's.
    std::string error_detail() const { return gzip_ ? std::string(gzip_->error_detail()) : raw_->error_detail(); }

private:
    std::optional<peekable_source<any_byte_source>> raw_;
    std::optional<gzip_source<peekable_source<any_byte_source>>> gzip_;
    gzip_source_options options_;
    gzip_found_handler on_gzip_;
    std::string name_;
    bool decompress_ = true;
    bool decided_ = false;
};

static_assert(byte_source<peekable_source<any_byte_source>>);
static_assert(byte_source<gzip_detecting_source>);

namespace detail {

class gzip_detecting_provider final : public wrapping_provider {
public:
    gzip_detecting_provider(std::unique_ptr<source_provider> inner, gzip_source_options options,
                            gzip_found_handler on_gzip, bool decompress)
        : wrapping_provider(std::move(inner)), options_(options), on_gzip_(std::move(on_gzip)), decompress_(decompress)
    {
    }

    std::string describe() const override { return inner().describe(); }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        // Any source may turn out to be gzip, and one is open at a time.
        return inner().reserve_buffers(o) + (decompress_ ? gzip_source<any_byte_source>::buffer_bytes(options_) : 0);
    }

private:
    any_byte_source wrap(any_byte_source source) const override
    {
        return any_byte_source(gzip_detecting_source(std::move(source), options_, on_gzip_, decompress_));
    }

    gzip_source_options options_;
    gzip_found_handler on_gzip_;
    bool decompress_;
};

class gzip_detecting_store final : public object_store {
public:
    gzip_detecting_store(std::unique_ptr<object_store> inner, gzip_source_options options, gzip_found_handler on_gzip,
                         bool decompress)
        : inner_(std::move(inner)), options_(options), on_gzip_(std::move(on_gzip)), decompress_(decompress)
    {
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        co_return co_await inner_->async_list(ctx);
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        return std::make_unique<gzip_detecting_provider>(inner_->open(std::move(reads)), options_, on_gzip_,
                                                         decompress_);
    }

    std::string describe() const override { return inner_->describe(); }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        return inner_->reserve_buffers(o) + (decompress_ ? gzip_source<any_byte_source>::buffer_bytes(options_) : 0);
    }

    // Whether an object is gzip is known only once it is read, so byte ranges stay allowed;
    // a range from the middle of a gzip object is then read undecoded and fails to decode.
    bool splittable() const noexcept override { return inner_->splittable(); }

private:
    std::unique_ptr<object_store> inner_;
    gzip_source_options options_;
    gzip_found_handler on_gzip_;
    bool decompress_;
};

} // namespace detail

/// `inner`'s sources, each decompressed when its first bytes are `gzip_magic` (unless
/// `decompress` is false); `on_gzip` (may be empty) is called, on the reader's network thread,
/// with the name of each source found compressed.
inline std::unique_ptr<source_provider> detect_gzip(std::unique_ptr<source_provider> inner,
                                                    gzip_found_handler on_gzip = {}, gzip_source_options options = {},
                                                    bool decompress = true)
{
    return std::make_unique<detail::gzip_detecting_provider>(std::move(inner), options, std::move(on_gzip), decompress);
}

/// `inner`'s objects, each decompressed when its first bytes are `gzip_magic` (unless
/// `decompress` is false); `on_gzip` as for providers.
inline std::unique_ptr<object_store> detect_gzip(std::unique_ptr<object_store> inner, gzip_found_handler on_gzip = {},
                                                 gzip_source_options options = {}, bool decompress = true)
{
    return std::make_unique<detail::gzip_detecting_store>(std::move(inner), options, std::move(on_gzip), decompress);
}

} // namespace pipemode::tools
