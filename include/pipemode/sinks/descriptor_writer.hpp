// pipemode: a byte writer over a file descriptor (a file, a pipe, a FIFO, a socket).
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstdint>
#include <span>
#include <system_error>
#include <utility>

namespace pipemode {

/// A `byte_writer` that writes into a file descriptor it owns, without blocking its executor
/// (the descriptor is made non-blocking; a regular file, which is always ready, is written
/// directly). A pipe or FIFO whose reader has gone (EPIPE) ends a write with false, not an
/// error; other failures throw `std::system_error`. `async_close()` closes the descriptor, as
/// does the destructor. A `write()` to a pipe without a reader raises SIGPIPE: a program that
/// writes to pipes ignores or blocks it (pipemode-agent's `fifo_writer` handles it itself).
///
/// Not thread-safe; move-only.
class descriptor_writer {
public:
    /// Takes ownership of `fd`, to be written on `ex`.
    descriptor_writer(asio::any_io_executor ex, int fd) : descriptor_(std::move(ex), fd) {}

    /// Writes all of `bytes`; false when the reader has gone away.
    asio::awaitable<bool> async_write(std::span<const std::byte> bytes)
    {
        auto [ec, n] = co_await asio::async_write(descriptor_, asio::buffer(bytes.data(), bytes.size()),
                                                  asio::as_tuple(asio::use_awaitable));
        written_ += n;
        if (ec == asio::error::broken_pipe)
            co_return false;
        if (ec)
            throw std::system_error(ec, "pipemode::descriptor_writer: writing");
        co_return true;
    }

    /// Closes the descriptor: the reader sees the end of the data.
    asio::awaitable<void> async_close()
    {
        error_code ignored;
        descriptor_.close(ignored);
        co_return;
    }

    /// Bytes written so far.
    std::uint64_t bytes_written() const noexcept { return written_; }

private:
    asio::posix::stream_descriptor descriptor_;
    std::uint64_t written_ = 0;
};

static_assert(byte_writer<descriptor_writer>);

} // namespace pipemode
