// pipemode: one record per source (an image, a JSON document, a whole file), a sans-I/O
// decoder.
//
// See docs/formats/whole-object.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace pipemode {

/// Options of a `whole_object_decoder`. Use designated initializers:
/// `whole_object_options{.max_record_size = 16 * mib}`.
struct whole_object_options {
    /// The largest object accepted. One byte more is `errc::record_too_large`, detected as it
    /// arrives: the decoder never holds more than this.
    std::size_t max_record_size = std::size_t{64} * 1024 * 1024;
};

/// A sans-I/O decoder for which the whole stream is one record. Models `record_decoder`.
///
/// `put()` copies every byte into an internal buffer and never completes a record; `finish()`
/// does, and `has_record()` is then true: the caller takes the record after `finish()` as it
/// takes any other (a caller that handles `line_decoder`'s last line already does). An empty
/// stream is one empty record. The record's offset is the stream's start offset and its index
/// is 0.
///
/// The bytes are copied because a source's chunk is only valid until its next `async_next()`,
/// and the end of the stream is only known from that call. The buffer grows with the bytes
/// received (it is reused, with its capacity, for the next stream).
///
/// Errors: `errc::record_too_large` from `put()`, sticky until `resync()` or `reset()`.
/// `resync()` after it drops the rest of the stream (`finish()` then hands out nothing).
/// With no error pending `resync()` does nothing: an object has no record boundaries to
/// search for, so a whole object cannot be split into byte ranges; read each from its start.
///
/// Not thread-safe; one decoder per stream.
///
/// @code
/// whole_object_decoder d;
/// for (each chunk) d.put(chunk, ec);   // always consumes all of it, or fails
/// d.finish(ec);
/// if (d.has_record()) { use(d.record().payload); d.pop(); }
/// @endcode
class whole_object_decoder {
public:
    /// Makes a decoder positioned at offset 0 of a new stream.
    explicit whole_object_decoder(whole_object_options options = {}) noexcept : options_(options) {}

    /// Copies all of `in` and returns its size; or, if that would make the object larger than
    /// `max_record_size`, sets `errc::record_too_large` and consumes nothing (as it does on
    /// every later call until `resync()` or `reset()`). After `resync()` it consumes and drops
    /// everything; after `finish()` (and before `reset()`) it consumes nothing.
    std::size_t put(std::span<const std::byte> in, error_code& ec)
    {
        ec = {};
        switch (state_) {
        case state::gathering:
            if (in.size() > options_.max_record_size - buffer_.size()) {
                state_ = state::failed;
                ec = errc::record_too_large;
                return 0;
            }
            if (buffer_.capacity() - buffer_.size() < in.size())
                grow(buffer_.size() + in.size());
            buffer_.insert(buffer_.end(), in.begin(), in.end());
            return in.size();
        case state::failed:
            ec = errc::record_too_large;
            return 0;
        case state::discard:
            return in.size();
        case state::ready:
        case state::done:
            return 0;
        }
        return 0;
    }

    /// True after `finish()` until `pop()`: the object is waiting.
    bool has_record() const noexcept { return state_ == state::ready; }

    /// The object. Requires `has_record()`. The payload stays valid until the next call to
    /// `put()`, `pop()`, `finish()` or `reset()`.
    record_view record() const noexcept { return {buffer_, start_, 0}; }

    /// Releases the object. Requires `has_record()`.
    void pop() noexcept
    {
        state_ = state::done;
        buffer_.clear();
    }

    /// Says that the stream has ended: the object gathered so far becomes the waiting record.
    /// Sets `ec` only to repeat a pending error.
    void finish(error_code& ec) noexcept
    {
        ec = {};
        if (state_ == state::gathering)
            state_ = state::ready;
        else if (state_ == state::failed)
            ec = errc::record_too_large;
        else if (state_ == state::discard)
            state_ = state::done;
    }

    /// Starts a new stream whose first byte is at `start_offset`; the buffer keeps its
    /// capacity.
    void reset(std::uint64_t start_offset = 0) noexcept
    {
        state_ = state::gathering;
        start_ = start_offset;
        buffer_.clear();
    }

    /// The stream's start offset: where the object, or the object too large, begins.
    std::uint64_t offset() const noexcept { return start_; }

    /// 0 until the object has been taken or dropped, then 1.
    std::uint64_t records_started() const noexcept
    {
        return state_ == state::done || state_ == state::discard ? 1 : 0;
    }

    /// After `errc::record_too_large`: drops the object and the rest of the stream. Does
    /// nothing otherwise.
    void resync() noexcept
    {
        if (state_ == state::failed) {
            buffer_.clear();
            state_ = state::discard;
        }
    }

    /// Capacity of the internal buffer in bytes (for memory accounting and tests).
    std::size_t buffer_capacity() const noexcept { return buffer_.capacity(); }

private:
    enum class state : std::uint8_t { gathering, ready, done, failed, discard };

    // Doubles as std::vector would, but never past the cap: the memory held is at most
    // max_record_size (after the first object, the largest object's size).
    void grow(std::size_t need)
    {
        std::size_t want = std::max(need, buffer_.capacity() * 2);
        buffer_.reserve(std::min(want, std::max(need, options_.max_record_size)));
    }

    state state_ = state::gathering;
    std::uint64_t start_ = 0;
    whole_object_options options_;
    std::vector<std::byte> buffer_;
};

static_assert(record_decoder<whole_object_decoder>);

} // namespace pipemode
