// Test support: a byte source wrapper that fails on the Nth chunk.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <tuple>
#include <utility>

namespace pipemode::test {

/// Wraps a `byte_source` and makes call number `fail_at` (counted from 0) of `async_next()`
/// complete with `error` and an empty chunk, as a disk or a connection failing mid-stream
/// would. Every later call completes with the same error (a non-eof error ends a source).
///
/// Calls before `fail_at` are passed to the inner source unchanged, so exactly the bytes of
/// its first `fail_at` chunks reach the consumer; give the inner source a fixed chunk size
/// (`memory_source_options::chunk_size`) to know how many bytes that is. If the inner source
/// ends first, its eof is passed through and `failed()` stays false. Empty chunks without an
/// error count as chunks.
///
/// Example: `failing_source src(memory_source(bytes, "x", {.chunk_size = 100}), 3,
///                              make_error_code(boost::system::errc::io_error));`
/// delivers bytes [0, 300) and then fails.
template <byte_source Source>
class failing_source {
public:
    /// Fails call `fail_at` with `error`.
    failing_source(Source inner, std::size_t fail_at, error_code error)
        : inner_(std::move(inner)), fail_at_(fail_at), error_(error)
    {
    }

    /// The inner source's next chunk, or the error from call `fail_at` on.
    asio::awaitable<chunk_result> async_next()
    {
        // A member coroutine keeps `this`: acceptable for a test fake whose owner outlives
        // every call, unlike the library's sources.
        if (failed_ || calls_ == fail_at_) {
            failed_ = true;
            ++calls_;
            co_return chunk_result{error_, {}};
        }
        ++calls_;
        auto result = co_await inner_.async_next();
        if (!std::get<0>(result))
            bytes_delivered_ += std::get<1>(result).size();
        co_return result;
    }

    /// The inner source's name, so messages read as they would without the fake.
    std::string_view name() const noexcept { return inner_.name(); }

    /// The inner source's start offset.
    std::uint64_t start_offset() const noexcept { return inner_.start_offset(); }

    /// Whether the injected error has been delivered.
    bool failed() const noexcept { return failed_; }

    /// Calls of `async_next()` so far.
    std::size_t calls() const noexcept { return calls_; }

    /// Bytes handed out before the failure (or in all, if it never failed).
    std::uint64_t bytes_delivered() const noexcept { return bytes_delivered_; }

    /// The wrapped source.
    Source& inner() noexcept { return inner_; }

private:
    Source inner_;
    std::size_t fail_at_;
    error_code error_;
    std::size_t calls_ = 0;
    std::uint64_t bytes_delivered_ = 0;
    bool failed_ = false;
};

} // namespace pipemode::test
