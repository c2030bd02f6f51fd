// pipemode: the record sink of pipemode-agent: writes a channel's objects into an epoch's FIFO
// as Pipe mode delivers them, as they are or each wrapped in one RecordIO record.
//
// How the agent composes it (source -> chunk_decoder -> fifo_sink), in docs/agent.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/core/read_position.hpp>
#include <pipemode/core/record_view.hpp>
#include <pipemode/sagemaker/fifo_byte_writer.hpp>
#include <pipemode/sagemaker/recordio_wrapper.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace pipemode::sagemaker {

/// Options of a `fifo_sink`. Use designated initializers:
/// `fifo_sink_options{.wrap_recordio = true, .length = [&](std::uint64_t i) { return sizes[i]; }}`.
struct fifo_sink_options {
    /// `RecordWrapperType: RecordIO`: wrap each object in one RecordIO record
    /// (`recordio_wrapper`); otherwise the bytes pass through unchanged.
    bool wrap_recordio = false;

    /// How much of an object the wrapper holds to cut its record at the aligned magic words in
    /// it (`recordio_wrapper`'s window).
    std::size_t recordio_window = 8 * mib;

    /// The length of the object at `item` (its place in the provider's order, the `item` of the
    /// records' positions) as its source delivers it, when known before it is read: the
    /// listing's size, or nothing for an object inflated from gzip. Asked once per object when
    /// wrapping; without it every length is unknown.
    std::function<std::optional<std::uint64_t>(std::uint64_t item)> length = nullptr;

    /// Reads the object at `item` once more to its end and completes with its length: asked
    /// for only when wrapping an object longer than the window whose length is unknown. Without
    /// it, such an object fails with a `std::runtime_error` naming it.
    std::function<asio::awaitable<std::uint64_t>(std::uint64_t item)> measure = nullptr;
};

/// The record sink (`record_sink`) that writes a Pipe-mode channel's objects into a byte
/// writer (`fifo_byte_writer`, the epoch's FIFO; any `byte_writer` in tests), after a
/// `chunk_decoder`: each record is a read of an object, and an empty record ends the object.
///
/// - Unwrapped, every read is written as it is, without a copy (`put()` asks for a flush per
///   read, and `async_flush()` writes the record's bytes while the pipeline still holds them).
///   The bytes out are the objects' bytes, one after the other.
/// - Wrapped (`wrap_recordio`), each object runs through a `recordio_wrapper` of its own,
///   made at the object's first record with the object's `length` when known, and finished
///   at its end record: an object comes out as exactly one RecordIO record, with the memory
///   the window bounds. An object longer than the window whose length is unknown (gzip) is
///   measured by `measure` (read once more, asynchronously) while the pipeline waits; the
///   objects still stream through the window, never held whole. A payload too long for
///   RecordIO, or shorter or longer than its length, throws `std::runtime_error` naming the
///   source.
///
/// A writer whose reader has gone (false from its `async_write`) makes the flush complete with
/// false, which stops the pipeline: the agent's "reader closed the FIFO early". `async_close()`
/// closes the writer.
///
/// Memory: the wrapper's window per object, nothing when unwrapped. Not thread-safe: the
/// pipeline's thread only.
///
/// \code
/// fifo_writer fifo(ex, data_dir, pipe_path(data_dir, "train", epoch));
/// co_await fifo.async_wait_for_reader();
/// auto result = co_await pipemode::async_run_record_pipeline(
///     *provider, pipemode::chunk_decoder{}, fifo_sink(fifo_byte_writer(fifo), {.wrap_recordio = true}));
/// // result.data_ended: the whole epoch was written; false: the reader closed the FIFO early.
/// \endcode
template <byte_writer Writer = fifo_byte_writer>
class fifo_sink {
public:
    /// A sink writing into `writer`. Throws `std::invalid_argument` for a `recordio_window` of 0.
    explicit fifo_sink(Writer writer, fifo_sink_options options = {})
        : writer_(std::move(writer)), options_(std::move(options))
    {
        if (options_.recordio_window == 0)
            throw std::invalid_argument("pipemode::sagemaker::fifo_sink: the RecordIO window must be at least 1 byte");
    }

    /// Takes the next read of an object (or its end, an empty record); true when there is
    /// something to write before the pipeline lets the record go.
    bool put(const record_view& rec, std::string_view source, const read_position& after)
    {
        if (!in_object_)
            begin_object(source, after.item);
        if (rec.payload.empty()) {
            in_object_ = false;
            if (!wrapper_)
                return false;
            checked([&] { wrapper_->finish(); });
            object_ended_ = true;
            return true;
        }
        if (!wrapper_) {
            pending_ = rec.payload;
            return true;
        }
        checked([&] { wrapper_->put(rec.payload); });
        return true;
    }

    /// Writes what the last `put()` left to write; false when the reader has gone.
    asio::awaitable<bool> async_flush()
    {
        if (!wrapper_) {
            const std::span<const std::byte> bytes = std::exchange(pending_, {});
            if (bytes.empty())
                co_return true;
            const bool wanted = co_await writer_.async_write(bytes);
            co_return wanted;
        }
        bool wanted = co_await this->write_output();
        if (wanted && wrapper_->needs_length()) {
            // The object outgrew the window and its length is unknown: measure it by reading it
            // once more, rather than hold it all.
            if (!options_.measure)
                throw std::runtime_error(source_ + ": the object is longer than the RecordIO window and its length is "
                                         "unknown, so it cannot be wrapped");
            const std::uint64_t length = co_await options_.measure(item_);
            checked([&] { wrapper_->set_length(length); });
            wanted = co_await this->write_output();
        }
        if (object_ended_) {
            wrapper_.reset();
            object_ended_ = false;
        }
        co_return wanted;
    }

    /// Closes the writer: the reader gets the end of the data.
    asio::awaitable<void> async_close() { co_await writer_.async_close(); }

    /// The writer.
    Writer& writer() noexcept { return writer_; }

private:
    void begin_object(std::string_view source, std::uint64_t item)
    {
        in_object_ = true;
        item_ = item;
        source_.assign(source);
        if (!options_.wrap_recordio)
            return;
        const std::optional<std::uint64_t> length = options_.length ? options_.length(item) : std::nullopt;
        checked([&] { wrapper_.emplace(length, options_.recordio_window); });
    }

    // Names the object in the wrapper's length errors.
    template <class F>
    void checked(F&& f)
    {
        try {
            f();
        } catch (const std::length_error& e) {
            throw std::runtime_error(source_ + ": " + e.what());
        }
    }

    asio::awaitable<bool> write_output()
    {
        for (const std::span<const std::byte> piece : wrapper_->output()) {
            if (piece.empty())
                continue;
            const bool wanted = co_await writer_.async_write(piece);
            if (!wanted)
                co_return false;
        }
        co_return true;
    }

    Writer writer_;
    fifo_sink_options options_;
    std::optional<recordio_wrapper> wrapper_;  // the object in progress's, when wrapping
    std::span<const std::byte> pending_;        // unwrapped: the read to write, still the pipeline's
    std::string source_;                        // the object in progress's source, for messages
    std::uint64_t item_ = 0;
    bool in_object_ = false;
    bool object_ended_ = false;
};

template <byte_writer Writer>
fifo_sink(Writer, fifo_sink_options = {}) -> fifo_sink<Writer>;

static_assert(record_sink<fifo_sink<fifo_byte_writer>>);

} // namespace pipemode::sagemaker
