// pipemode: a byte writer (`byte_writer`) into an epoch's Pipe-mode FIFO, over a `fifo_writer`.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/sagemaker/fifo_writer.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

namespace pipemode::sagemaker {

/// A `byte_writer` into the FIFO of a `fifo_writer` the caller owns and has connected
/// (`async_wait_for_reader()`), so that record sinks (`fifo_sink`, `recordio_writer_sink`) can
/// write Pipe mode's FIFOs.
///
/// `async_write` completes with true once the pipe took every byte, false when the FIFO's
/// reader closed its end (a training loop leaving an epoch early: not an error), and throws
/// `std::runtime_error` naming the FIFO for any other failure, `operation_aborted` from
/// `fifo_writer::cancel()` included. `on_written`, when given, is called after every write
/// with the bytes the pipe took (also when the reader closed in the middle): the agent's
/// progress counters. An exception from it ends the write (the agent stops that way).
/// `async_close()` closes the `fifo_writer` (the reader gets the end of data).
///
/// Holds a pointer to the writer, which must outlive it; not thread-safe (the writer's
/// executor only).
class fifo_byte_writer {
public:
    /// A byte writer into `writer`'s FIFO.
    explicit fifo_byte_writer(fifo_writer& writer, std::function<void(std::size_t)> on_written = nullptr)
        : writer_(&writer), on_written_(std::move(on_written))
    {
    }

    /// Writes all of `bytes` into the pipe; false when the reader has closed its end.
    asio::awaitable<bool> async_write(std::span<const std::byte> bytes)
    {
        if (bytes.empty())
            co_return !writer_->reader_closed();
        const write_result r = co_await writer_->async_write(bytes);
        if (on_written_)
            on_written_(r.bytes_written);
        if (r.status == write_status::reader_closed)
            co_return false;
        if (r.status == write_status::failed)
            throw std::runtime_error("writing " + writer_->path().string() + " failed: " + r.error.message());
        co_return true;
    }

    /// Closes the FIFO's write end: the reader sees the end of the data.
    asio::awaitable<void> async_close()
    {
        writer_->close();
        co_return;
    }

private:
    fifo_writer* writer_;
    std::function<void(std::size_t)> on_written_;
};

static_assert(byte_writer<fifo_byte_writer>);

} // namespace pipemode::sagemaker
