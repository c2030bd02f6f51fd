// pipemode: a byte source over bytes already in memory.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode {

/// Options of a `memory_source`. Use designated initializers:
/// `memory_source_options{.chunk_size = 7}`.
struct memory_source_options {
    /// Largest chunk `async_next()` hands out; 0 hands out everything in one chunk. Tests use
    /// small sizes (1, 7, ...) to deliver the same bytes split at every position.
    std::size_t chunk_size = 0;

    /// What `start_offset()` reports: the offset of the first byte within a larger object, for
    /// tests of byte ranges.
    std::uint64_t start_offset = 0;
};

/// A `byte_source` over a block of memory: chunks are views into it, never copies.
///
/// Two ways to hold the bytes:
/// - **borrowed**: `memory_source(std::span<const std::byte>, name)`. The caller owns the
///   bytes and keeps them alive and unchanged until the source is destroyed and the last
///   chunk it handed out is no longer used.
/// - **shared**: `memory_source(std::shared_ptr<const std::vector<std::byte>>, name)` (or a
///   `std::vector<std::byte>` moved in, which is put behind such a pointer). The source keeps
///   the vector alive; copies of the pointer may be shared by many sources, e.g. one per
///   epoch.
///
/// `async_next()` completes without suspending. `name()` is `memory:NAME`.
/// Not thread-safe; move-only.
///
/// Example:
/// ```
/// std::vector<std::byte> bytes = ...;
/// memory_source src(bytes, "train", {.chunk_size = 7});
/// for (;;) {
///     auto [ec, chunk] = co_await src.async_next();
///     if (ec == asio::error::eof) break;
///     ...
/// }
/// ```
class memory_source {
public:
    /// A source over bytes the caller owns (see the class comment for their lifetime).
    explicit memory_source(std::span<const std::byte> data, std::string_view name = "bytes",
                           memory_source_options opts = {})
        : data_(data), name_(make_name(name)), opts_(opts)
    {
    }

    /// A source that shares ownership of `data`; a null pointer is an empty source.
    explicit memory_source(std::shared_ptr<const std::vector<std::byte>> data,
                           std::string_view name = "bytes", memory_source_options opts = {})
        : owner_(std::move(data)), name_(make_name(name)), opts_(opts)
    {
        if (owner_)
            data_ = std::span<const std::byte>(*owner_);
    }

    /// A source that owns `data`.
    explicit memory_source(std::vector<std::byte>&& data, std::string_view name = "bytes",
                           memory_source_options opts = {})
        : memory_source(std::make_shared<const std::vector<std::byte>>(std::move(data)), name, opts)
    {
    }

    memory_source(memory_source&&) noexcept = default;
    memory_source& operator=(memory_source&&) noexcept = default;
    memory_source(const memory_source&) = delete;
    memory_source& operator=(const memory_source&) = delete;

    /// The next chunk: up to `chunk_size` bytes following the previous chunk; then
    /// `asio::error::eof` with an empty chunk, on this and every later call.
    asio::awaitable<chunk_result> async_next()
    {
        // Not a coroutine itself: the work is done before the awaitable is created, so the
        // awaitable holds no pointer to this source and never suspends.
        return ready(next_now());
    }

    /// Takes the next chunk synchronously; the same sequence `async_next()` delivers.
    chunk_result next_now() noexcept
    {
        if (position_ == data_.size())
            return {asio::error::eof, {}};
        std::size_t n = data_.size() - position_;
        if (opts_.chunk_size != 0)
            n = std::min(n, opts_.chunk_size);
        auto chunk = data_.subspan(position_, n);
        position_ += n;
        return {error_code{}, chunk};
    }

    /// `memory:NAME`.
    std::string_view name() const noexcept { return name_; }

    /// The `start_offset` option (0 unless a test says otherwise).
    std::uint64_t start_offset() const noexcept { return opts_.start_offset; }

    /// All the bytes the source delivers, including those already delivered.
    std::span<const std::byte> bytes() const noexcept { return data_; }

private:
    static asio::awaitable<chunk_result> ready(chunk_result r) { co_return r; }

    static std::string make_name(std::string_view name)
    {
        std::string s = "memory:";
        s.append(name);
        return s;
    }

    std::shared_ptr<const std::vector<std::byte>> owner_;
    std::span<const std::byte> data_;
    std::size_t position_ = 0;
    std::string name_;
    memory_source_options opts_;
};

static_assert(byte_source<memory_source>);

} // namespace pipemode
