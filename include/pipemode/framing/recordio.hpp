// pipemode: RecordIO framing (MXNet/dmlc-core and SageMaker), a sans-I/O decoder and a writer.
//
// The format and the decoder's error and resynchronisation policy are described in
// docs/formats/recordio.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <span>
#include <vector>

namespace pipemode {

/// The word that starts every RecordIO part header, as a little-endian `uint32_t`.
inline constexpr std::uint32_t recordio_magic = 0xced7230aU;

/// The largest length one RecordIO part header can carry (the length field has 29 bits).
inline constexpr std::uint32_t recordio_max_part_length = (1U << 29) - 1;

/// The continuation flag of a RecordIO part header (the upper 3 bits of its length word).
enum class recordio_cflag : std::uint8_t {
    whole = 0,   ///< the part is a whole record
    first = 1,   ///< the first part of a split record
    middle = 2,  ///< a middle part of a split record
    last = 3,    ///< the last part of a split record
};

namespace detail {

/// Reads a little-endian 32-bit word from possibly unaligned memory.
inline std::uint32_t load_le32(const std::byte* p) noexcept
{
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    if constexpr (std::endian::native == std::endian::big)
        v = (v >> 24) | ((v >> 8) & 0xff00U) | ((v << 8) & 0xff0000U) | (v << 24);
    return v;
}

/// Writes a little-endian 32-bit word to possibly unaligned memory.
inline void store_le32(std::byte* p, std::uint32_t v) noexcept
{
    if constexpr (std::endian::native == std::endian::big)
        v = (v >> 24) | ((v >> 8) & 0xff00U) | ((v << 8) & 0xff0000U) | (v << 24);
    std::memcpy(p, &v, sizeof v);
}

/// Hints the CPU to bring the cache line at `p` in for reading; does nothing where the compiler
/// has no such hint.
inline void prefetch_read(const void* p) noexcept
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

/// How far ahead of a record header the decoder prefetches. Finding the next header needs the
/// current header's length, so without a prefetch every record waits for its own cache miss;
/// measured on dense 220-byte records out of cache this triples framing throughput.
inline constexpr std::size_t recordio_prefetch_distance = 2048;

/// Rounds a part length up to the 4-byte boundary RecordIO pads to.
constexpr std::uint64_t recordio_padded(std::uint64_t n) noexcept { return (n + 3) & ~std::uint64_t{3}; }

} // namespace detail

/// Options of a `recordio_decoder`. Use designated initializers:
/// `recordio_options{.max_record_size = 1 * mib}`.
struct recordio_options {
    /// The largest record accepted, counting the whole reassembled payload of a split record.
    /// A header that declares more is `errc::record_too_large`, detected before any payload
    /// byte is read or any memory is reserved for it.
    std::size_t max_record_size = std::size_t{64} * 1024 * 1024;
};

/// A sans-I/O decoder of RecordIO framing: bytes in, record payloads out. Models
/// `record_decoder`.
///
/// A whole (unsplit) record that lies inside the span given to one `put()` is handed out
/// without a copy: `record().payload` points into that span. A record that straddles `put()`
/// calls, or that was split by the writer, is reassembled in an internal buffer that grows
/// only with the bytes actually received and is reused for the following records.
///
/// Errors (`errc::bad_magic`, `errc::bad_continuation`, `errc::record_too_large` from
/// `put()`, `errc::truncated_record` from `finish()`) are sticky until `resync()` or
/// `reset()`. While an error is pending, `offset()` is the offset of the header where the bad
/// record began and `records_started()` is that record's index. `resync()` discards the bad
/// record and looks for the next record start at a 4-byte-aligned magic word; see
/// docs/formats/recordio.md for why that is reliable.
///
/// Not thread-safe; one decoder per stream.
///
/// @code
/// recordio_decoder d;
/// error_code ec;
/// while (!in.empty()) {
///     in = in.subspan(d.put(in, ec));
///     if (ec) throw data_error(ec, {name, d.offset(), d.records_started()});
///     if (d.has_record()) { use(d.record().payload); d.pop(); }
/// }
/// d.finish(ec);
/// @endcode
class recordio_decoder {
public:
    /// Makes a decoder positioned at offset 0 of a new stream.
    explicit recordio_decoder(recordio_options options = {}) noexcept
        : max_record_size_(options.max_record_size)
    {
    }

    /// Consumes a prefix of `in` and returns its length; stops right after completing one
    /// record. Never reads past `in`. Consuming all of `in` without a record is "need more".
    ///
    /// On a framing error sets `ec` and consumes up to and including the offending header;
    /// later calls consume nothing and repeat the error until `resync()` or `reset()`.
    std::size_t put(std::span<const std::byte> in, error_code& ec)
    {
        // The hot path: a whole unsplit record, header to padding, inside `in`. It is handed
        // out in place, so framing a dense stream costs a few loads and compares per record.
        if (state_ == state::header && have_ == 0 && in.size() >= header_size) {
            const std::byte* p = in.data();
            if (in.size() > detail::recordio_prefetch_distance)
                detail::prefetch_read(p + detail::recordio_prefetch_distance);
            const std::uint32_t word = detail::load_le32(p + 4);
            const std::uint64_t padded = detail::recordio_padded(word);
            if (detail::load_le32(p) == recordio_magic && (word >> 29) == 0 && word <= max_record_size_
                && padded <= in.size() - header_size) {
                ec = {};
                view_ = {p + header_size, word};
                record_offset_ = position_;
                position_ += header_size + padded;
                state_ = state::ready;
                return static_cast<std::size_t>(header_size + padded);
            }
        }
        return put_slow(in, ec);
    }

    /// True when a complete record is waiting to be taken with `record()` and `pop()`.
    bool has_record() const noexcept { return state_ == state::ready; }

    /// The waiting record. Requires `has_record()`. The payload stays valid until the next
    /// call to `put()`, `pop()`, `finish()` or `reset()` (and, when it points into the input,
    /// while the caller keeps that input alive).
    record_view record() const noexcept { return {view_, record_offset_, index_}; }

    /// Releases the waiting record; the next record gets the next index. Requires
    /// `has_record()`.
    void pop() noexcept
    {
        state_ = state::header;
        header_offset_ = position_;
        ++index_;
    }

    /// Says that the input has ended. Sets `errc::truncated_record` if it ended inside a
    /// record: in a header, a payload, the padding after a payload (RecordIO writers always
    /// pad), or between the parts of a split record. Ending while `resync()` is still looking
    /// for a record start is not an error: those bytes belong to a record already reported.
    void finish(error_code& ec);

    /// Starts a new stream whose first byte is at `start_offset` (non-zero when the stream is
    /// a byte range of a larger object; the range must begin at a record header). Record
    /// indices restart at 0; the reassembly buffer keeps its capacity.
    void reset(std::uint64_t start_offset = 0) noexcept;

    /// The offset of the header where the current record began: the waiting record, the
    /// record being decoded, the bad record after an error, or else the next byte to be read.
    std::uint64_t offset() const noexcept
    {
        return state_ == state::header || state_ == state::scan ? header_offset_ : record_offset_;
    }

    /// The index of the current record in the same sense as `offset()`; equivalently, the
    /// number of records handed out or discarded before it.
    std::uint64_t records_started() const noexcept { return index_; }

    /// Recovers from a pending framing error (does nothing otherwise): discards the bad record,
    /// counts it as one record index, and resumes decoding at the next 4-byte-aligned magic
    /// word (aligned relative to the stream start) that is followed by a header with flag
    /// "whole" or "first" and a length within `max_record_size`. The search begins at the
    /// offending header itself, so a valid record start that broke an open split record is
    /// kept. Bytes skipped are dropped; decoding continues through further `put()` calls.
    ///
    /// Called right after `reset()`, it starts decoding in the middle of a stream (a reader of
    /// one byte range of an object): the bytes before the first record start are skipped and
    /// no record index is used up. Because writers split a record at every aligned magic word
    /// in its payload, an aligned magic word is always a header and the start found is exact.
    void resync();

    /// Capacity of the internal reassembly buffer in bytes (for memory accounting and tests).
    std::size_t buffer_capacity() const noexcept { return buffer_.capacity(); }

private:
    static constexpr std::size_t header_size = 8;

    enum class state : std::uint8_t {
        header,       // expecting a record's first header; have_ bytes of it in header_
        part_header,  // expecting the next part header of an open split record
        payload,      // copying part_left_ payload bytes into buffer_
        padding,      // skipping pad_left_ padding bytes
        ready,        // a record is waiting
        failed,       // error_ is pending
        scan,         // resync(): looking for an aligned record start
    };

    std::size_t put_slow(std::span<const std::byte> in, error_code& ec);
    void fail(errc e, std::uint32_t magic, std::uint32_t word, error_code& ec) noexcept;

    // Hot fields first.
    state state_ = state::header;
    std::uint8_t have_ = 0;         // header bytes gathered in header_
    bool last_part_ = false;        // the part being read ends the record
    std::uint64_t position_ = 0;    // absolute offset of the next byte put() will consume
    std::uint64_t record_offset_ = 0;
    std::uint64_t header_offset_ = 0;  // absolute offset of the header being gathered
    std::uint64_t index_ = 0;
    std::span<const std::byte> view_;
    std::size_t max_record_size_;

    std::uint32_t part_left_ = 0;
    std::uint32_t pad_left_ = 0;
    errc error_{};
    std::byte header_[header_size]{};
    std::vector<std::byte> buffer_;
};

static_assert(record_decoder<recordio_decoder>);

/// Frames one record and hands the framed bytes, in order, to `sink` as one or more
/// `std::span<const std::byte>` pieces (headers, payload slices, padding).
///
/// Splits the record exactly as dmlc-core does: at every 4-byte-aligned offset of the payload
/// where the magic word occurs, those 4 bytes are dropped and a new part begins, so the output
/// never holds an aligned magic word except at a header. Throws `std::length_error` for a
/// payload longer than `recordio_max_part_length` (the dmlc readers reject those too).
template <class ByteSink>
    requires std::invocable<ByteSink&, std::span<const std::byte>>
void write_recordio(std::span<const std::byte> payload, ByteSink&& sink);

/// Appends one framed record to `out`; see `write_recordio` for the splitting rule.
///
/// @code
/// std::vector<std::byte> file;
/// append_recordio(file, std::as_bytes(std::span(text)));
/// @endcode
void append_recordio(std::vector<std::byte>& out, std::span<const std::byte> payload);

/// Writes RecordIO records to a `std::ostream` or a `std::FILE*` (for example a data
/// generator writing training files).
///
/// The writer does no buffering of its own (streams and stdio already buffer); it neither
/// flushes nor closes the stream. A failed write throws `std::system_error` (`std::FILE*`) or
/// `std::ios_base::failure` (`std::ostream`). Not thread-safe.
///
/// @code
/// std::ofstream file("train.rec", std::ios::binary);
/// recordio_writer w(file);
/// for (auto& r : records) w.write(r);
/// @endcode
class recordio_writer {
public:
    /// Writes to `os`, which must outlive the writer.
    explicit recordio_writer(std::ostream& os) noexcept : stream_(&os) {}

    /// Writes to `file`, which must outlive the writer; the writer does not close it.
    explicit recordio_writer(std::FILE* file) noexcept : file_(file) {}

    /// Frames and writes one record.
    void write(std::span<const std::byte> payload);

    /// Records written so far.
    std::uint64_t records_written() const noexcept { return records_; }

    /// Bytes written so far, framing included.
    std::uint64_t bytes_written() const noexcept { return bytes_; }

private:
    void emit(std::span<const std::byte> bytes);

    std::ostream* stream_ = nullptr;
    std::FILE* file_ = nullptr;
    std::uint64_t records_ = 0;
    std::uint64_t bytes_ = 0;
};

} // namespace pipemode

#include <pipemode/framing/impl/recordio.hpp>
