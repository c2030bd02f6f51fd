// pipemode: newline-delimited records (text/csv, JSON Lines, plain text), a sans-I/O decoder.
//
// The rules (line ends, empty lines, long lines, which piece of a split object owns a line)
// are described in docs/formats/lines.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace pipemode {

/// Options of a `line_decoder`. Use designated initializers:
/// `line_options{.max_record_size = 1 * mib, .skip_empty = false}`.
struct line_options {
    /// The longest line accepted, not counting its `"\n"` or `"\r\n"`. A longer line is
    /// `errc::line_too_long`, detected as soon as more bytes than that have arrived without a
    /// line end, so the decoder never holds more than `max_record_size + 1` bytes.
    std::size_t max_record_size = std::size_t{64} * 1024 * 1024;

    /// Whether empty lines (nothing, or only `"\r"`, before the `"\n"`) are dropped. They get
    /// no record index. True by default, as SageMaker's CSV readers skip them.
    bool skip_empty = true;
};

/// A sans-I/O decoder of newline-delimited records. Models `record_decoder`.
///
/// A record is the bytes of one line without its `"\n"` and without one `"\r"` just before it,
/// so both Unix and Windows line ends work. The last line of the input is a record even without
/// a `"\n"`: `finish()` hands it out (`has_record()` is then true, and the caller takes it as
/// any other record). The record's offset is that of its first byte.
///
/// A line inside the span given to one `put()` is handed out without a copy; a line that
/// straddles `put()` calls is gathered in an internal buffer (at most `max_record_size + 1`
/// bytes). The search for line ends is `memchr`.
///
/// Errors: `errc::line_too_long` from `put()`, sticky until `resync()` or `reset()`; while it
/// is pending, `offset()` is the offset of the long line's first byte and `records_started()`
/// its index. A line is never truncated, so `finish()` has no `errc::truncated_record`.
///
/// `resync()` discards bytes through the next `"\n"`: after a long line, the rest of that line
/// (counted as one record index); with no error pending, the line the decoder is in, which is
/// how a byte range of a larger object starts: **a line belongs to the piece holding its first
/// byte.** A piece `[b, e)` with `b > 0` is read from `b - 1` with `reset(b - 1)` and
/// `resync()`; the decoder then yields exactly the lines that start at offsets `>= b` (the
/// byte at `b - 1` is either that line's `"\n"` or inside a line that began earlier). The
/// reader of the piece keeps reading past `e` until the line that started before `e` ends.
///
/// Not thread-safe; one decoder per stream.
///
/// @code
/// line_decoder d;
/// error_code ec;
/// while (!in.empty() || d.has_record()) {
///     in = in.subspan(d.put(in, ec));
///     if (ec) { report(d.offset()); d.resync(); continue; }
///     if (!d.has_record()) break;
///     use(d.record().payload);
///     d.pop();
/// }
/// d.finish(ec);
/// if (d.has_record()) { use(d.record().payload); d.pop(); }  // a last line without "\n"
/// @endcode
class line_decoder {
public:
    /// Makes a decoder positioned at offset 0 of a new stream.
    explicit line_decoder(line_options options = {}) noexcept : options_(options) {}

    /// Consumes a prefix of `in` and returns its length; stops right after completing one
    /// line. Never reads past `in`. Consuming all of `in` without a line is "need more".
    ///
    /// On a line too long sets `ec` and consumes the bytes of that line it has seen; later
    /// calls consume nothing and repeat the error until `resync()` or `reset()`.
    std::size_t put(std::span<const std::byte> in, error_code& ec)
    {
        // The hot path: no partial line pending, and a line end in `in`.
        if (state_ == state::line && buffer_.empty()) {
            const std::byte* const begin = in.data();
            const std::byte* p = begin;
            const std::byte* const end = begin + in.size();
            while (p != end) {
                const auto* nl = static_cast<const std::byte*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
                if (nl == nullptr)
                    break;
                std::size_t n = static_cast<std::size_t>(nl - p);
                if (n != 0 && nl[-1] == std::byte{'\r'})
                    --n;
                if (n > options_.max_record_size)
                    break;  // put_slow() reports it
                if (n == 0 && options_.skip_empty) {
                    p = nl + 1;
                    continue;
                }
                ec = {};
                view_ = {p, n};
                record_offset_ = position_ + static_cast<std::uint64_t>(p - begin);
                state_ = state::ready;
                const auto consumed = static_cast<std::size_t>(nl + 1 - begin);
                position_ += consumed;
                return consumed;
            }
            const auto skipped = static_cast<std::size_t>(p - begin);
            position_ += skipped;
            return skipped + put_slow(in.subspan(skipped), ec);
        }
        return put_slow(in, ec);
    }

    /// True when a complete line is waiting to be taken with `record()` and `pop()`.
    bool has_record() const noexcept { return state_ == state::ready; }

    /// The waiting line. Requires `has_record()`. The payload stays valid until the next call
    /// to `put()`, `pop()`, `finish()` or `reset()` (and, when it points into the input, while
    /// the caller keeps that input alive).
    record_view record() const noexcept { return {view_, record_offset_, index_}; }

    /// Releases the waiting line; the next line gets the next index. Requires `has_record()`.
    void pop() noexcept
    {
        state_ = state::line;
        buffer_.clear();
        ++index_;
    }

    /// Says that the input has ended. A last line without `"\n"` becomes the waiting record
    /// (unless it is empty and `skip_empty` is set). Sets `ec` only for a pending error or a
    /// last line one byte too long (`max_record_size + 1` bytes that did not end in `"\r"`).
    void finish(error_code& ec);

    /// Starts a new stream whose first byte is at `start_offset`. Line indices restart at 0;
    /// the buffer keeps its capacity.
    void reset(std::uint64_t start_offset = 0) noexcept;

    /// The offset of the current line's first byte: the waiting line, the line being gathered,
    /// the long line after an error, or else the next byte to be read.
    std::uint64_t offset() const noexcept
    {
        if (state_ == state::line)
            return buffer_.empty() ? position_ : record_offset_;
        return state_ == state::discard ? position_ : record_offset_;
    }

    /// The index of the current line in the same sense as `offset()`; equivalently, the
    /// number of lines handed out or discarded before it (empty lines skipped by `skip_empty`
    /// do not count).
    std::uint64_t records_started() const noexcept { return index_; }

    /// Discards bytes through the next `"\n"`; see the class comment. After an error, the rest
    /// of the long line (nothing if its `"\n"` was already consumed), counted as one index;
    /// with none pending, the line gathered so far and the rest of it. Does nothing while a
    /// line is waiting.
    void resync() noexcept;

    /// Capacity of the internal buffer in bytes (for memory accounting and tests).
    std::size_t buffer_capacity() const noexcept { return buffer_.capacity(); }

private:
    enum class state : std::uint8_t {
        line,     // gathering a line; buffer_ holds its bytes so far (record_offset_ is its start)
        ready,    // a line is waiting
        failed,   // a line too long; line_open_ says whether its "\n" is still to come
        discard,  // resync(): dropping bytes through the next "\n"
    };

    std::size_t put_slow(std::span<const std::byte> in, error_code& ec);

    state state_ = state::line;
    bool line_open_ = false;
    std::uint64_t position_ = 0;       // absolute offset of the next byte put() will consume
    std::uint64_t record_offset_ = 0;
    std::uint64_t index_ = 0;
    std::span<const std::byte> view_;
    line_options options_;
    std::vector<std::byte> buffer_;
};

static_assert(record_decoder<line_decoder>);

} // namespace pipemode

#include <pipemode/framing/impl/lines.hpp>
