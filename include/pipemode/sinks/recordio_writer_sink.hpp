// pipemode: a record sink that writes each record as RecordIO into a byte stream.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/core/read_position.hpp>
#include <pipemode/core/record_view.hpp>
#include <pipemode/framing/recordio.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode {

/// Options of a `recordio_writer_sink`. Use designated initializers.
struct recordio_writer_sink_options {
    /// Framed bytes gathered before they are written: one write per this many bytes (and one
    /// per record larger than it), so that records of 100 bytes do not cost a write each.
    std::size_t buffer_size = 1 * mib;
};

/// A record sink (`record_sink`) that frames each record as RecordIO, exactly as
/// `write_recordio` does (cut at aligned magic words, padded to 4 bytes), and writes the
/// framed bytes into `Writer`, a `byte_writer` (a file descriptor, a FIFO).
///
/// Framed bytes are gathered up to `buffer_size` and written when the buffer is full and at
/// the end (`async_close()`, which then closes the writer). A writer whose reader went away
/// (false from its `async_write`) stops the pipeline. A payload too long for RecordIO
/// (`recordio_max_part_length`) throws `std::length_error` naming its source.
///
/// Memory: the buffer, plus one record beyond it at most (a record is framed whole).
///
/// \code
/// // Any framing to RecordIO: a JSON Lines file copied as one RecordIO record per line.
/// pipemode::run_record_pipeline(pipemode::local_files({"in.jsonl"}), pipemode::line_decoder{},
///     pipemode::recordio_writer_sink(pipemode::descriptor_writer(ex, fd)));
/// \endcode
template <byte_writer Writer>
class recordio_writer_sink {
public:
    /// A sink writing into `writer`.
    explicit recordio_writer_sink(Writer writer, recordio_writer_sink_options options = {})
        : writer_(std::move(writer)), options_(options)
    {
        if (options_.buffer_size == 0)
            throw std::invalid_argument("pipemode::recordio_writer_sink: buffer_size must be at least 1 byte");
    }

    /// Frames `rec` into the buffer; true when the buffer is full and must be written.
    bool put(const record_view& rec, std::string_view source, const read_position& /*after*/)
    {
        try {
            append_recordio(buffer_, rec.payload);
        } catch (const std::length_error& e) {
            throw std::length_error(std::string(source) + ": record " + std::to_string(rec.index) + ": " + e.what());
        }
        return buffer_.size() >= options_.buffer_size;
    }

    /// Writes the buffer; false when the writer's reader has gone away.
    asio::awaitable<bool> async_flush()
    {
        if (buffer_.empty())
            co_return true;
        const bool wanted = co_await writer_.async_write(std::span<const std::byte>(buffer_));
        buffer_.clear();
        co_return wanted;
    }

    /// Writes what is left and closes the writer.
    asio::awaitable<void> async_close()
    {
        // Not `if (co_await async_flush())`: GCC 12 miscompiles that form here (the call's
        // implicit `this` reads uninitialised in the coroutine frame).
        const bool wanted = co_await this->async_flush();
        if (wanted)
            co_await writer_.async_close();
    }

    /// The writer, for what it knows (bytes written, its reader's state).
    Writer& writer() noexcept { return writer_; }

private:
    Writer writer_;
    recordio_writer_sink_options options_;
    std::vector<std::byte> buffer_;
};

} // namespace pipemode
