// pipemode: TFRecord framing (TensorFlow's tf.data.TFRecordDataset), a sans-I/O decoder and a
// writer.
//
// The format and the decoder's error and resynchronisation policy are described in
// docs/formats/tfrecord.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>
#include <pipemode/framing/detail/crc32c.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace pipemode {

/// The constant TFRecord adds to a rotated CRC-32C ("masking", so that a CRC of data that
/// itself holds CRCs does not look like one).
inline constexpr std::uint32_t tfrecord_mask_delta = 0xa282ead8U;

/// Masks a CRC-32C the way TFRecord stores it: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
constexpr std::uint32_t tfrecord_mask_crc(std::uint32_t crc) noexcept
{
    return ((crc >> 15) | (crc << 17)) + tfrecord_mask_delta;
}

/// The masked CRC-32C of `bytes`, as a TFRecord header or footer holds it.
inline std::uint32_t tfrecord_masked_crc(std::span<const std::byte> bytes) noexcept
{
    return tfrecord_mask_crc(detail::crc32c(bytes));
}

namespace detail {

/// Reads a little-endian 64-bit word from possibly unaligned memory.
inline std::uint64_t tfrecord_le64(const std::byte* p) noexcept
{
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    if constexpr (std::endian::native == std::endian::big)
        v = __builtin_bswap64(v);
    return v;
}

/// Reads a little-endian 32-bit word from possibly unaligned memory.
inline std::uint32_t tfrecord_le32(const std::byte* p) noexcept
{
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    if constexpr (std::endian::native == std::endian::big)
        v = __builtin_bswap32(v);
    return v;
}

/// Whether the 12 bytes at `p` are a plausible TFRecord header: the masked CRC of the length
/// matches and the length is at most `max`.
inline bool tfrecord_plausible_header(const std::byte* p, std::uint64_t max) noexcept
{
    return tfrecord_le64(p) <= max && tfrecord_mask_crc(crc32c_extend(0, p, 8)) == tfrecord_le32(p + 8);
}

} // namespace detail

/// Options of a `tfrecord_decoder`. Use designated initializers:
/// `tfrecord_options{.max_record_size = 1 * mib, .verify_data_crc = false}`.
struct tfrecord_options {
    /// The largest payload accepted. A header that declares more is `errc::record_too_large`,
    /// detected (after the header's own CRC has been checked) before any payload byte is read
    /// or any memory is reserved for it.
    std::size_t max_record_size = std::size_t{64} * 1024 * 1024;

    /// Whether to check each payload's CRC. The length CRC is always checked (it is what keeps
    /// a damaged length from swallowing the stream), and so is the data CRC of the first record
    /// `resync()` finds; skipping it elsewhere saves one pass over the payload (14-17 GB/s
    /// with SSE4.2 on long payloads, 1-2 GB/s without).
    bool verify_data_crc = true;
};

/// A sans-I/O decoder of TFRecord framing: bytes in, record payloads out. Models
/// `record_decoder`.
///
/// Every record is `uint64 length | uint32 masked_crc32c(length bytes) | data[length] |
/// uint32 masked_crc32c(data)`, all little-endian. A record that lies inside the span given to
/// one `put()` is handed out without a copy; one that straddles `put()` calls is reassembled in
/// an internal buffer that grows only with the bytes actually received (never beyond
/// `max_record_size + 16`, a whole record with its framing) and is reused for the following
/// records.
///
/// Errors (`errc::crc_mismatch` for a bad length or data CRC, `errc::record_too_large` from
/// `put()`, `errc::truncated_record` from `finish()`) are sticky until `resync()` or
/// `reset()`. While an error is pending, `offset()` is the offset of the bad record's header
/// and `records_started()` its index.
///
/// `resync()` discards bytes until the next offset where a record starts: a plausible header
/// (a length within `max_record_size` whose masked CRC matches the 4 bytes after it) followed by
/// data whose CRC matches too. A candidate is gathered whole (that first record is copied) and
/// judged; a false start, a window inside some payload that only looks like a header, is
/// passed over silently and the search goes on from its second byte, through the bytes already
/// gathered. `resync()` serves two purposes:
/// - after an error: the search starts one byte after the bad header (a header error), or
///   right after the bad record (a data CRC mismatch: the length was verified, so the record's
///   end is known), or, for a record too large, right after that record (skipped, not
///   buffered);
/// - without an error pending, to start in the middle of an object: after `reset(b)` and
///   `resync()` the decoder yields the records whose header starts at or after offset `b`.
/// A false start must pass two independent 32-bit checks; see docs/formats/tfrecord.md for the
/// one case a reader cannot tell apart (a payload that holds a whole TFRecord) and for input
/// that ends inside a candidate (`errc::truncated_record`, as a real truncated record).
///
/// Not thread-safe; one decoder per stream.
///
/// @code
/// tfrecord_decoder d;
/// error_code ec;
/// while (!in.empty() || d.has_record()) {
///     in = in.subspan(d.put(in, ec));
///     if (ec) throw data_error(ec, {name, d.offset(), d.records_started()});
///     if (!d.has_record()) break;
///     use(d.record().payload);
///     d.pop();
/// }
/// d.finish(ec);
/// @endcode
class tfrecord_decoder {
public:
    /// Bytes of framing before a record's data: the length and its CRC.
    static constexpr std::size_t header_size = 12;

    /// Bytes of framing after a record's data: its CRC.
    static constexpr std::size_t footer_size = 4;

    /// Makes a decoder positioned at offset 0 of a new stream.
    explicit tfrecord_decoder(tfrecord_options options = {}) noexcept : options_(options) {}

    /// Consumes a prefix of `in` and returns its length; stops right after completing one
    /// record. Never reads past `in`. Consuming all of `in` without a record is "need more".
    ///
    /// On an error sets `ec`; later calls consume nothing and repeat the error until
    /// `resync()` or `reset()`.
    std::size_t put(std::span<const std::byte> in, error_code& ec)
    {
        // The hot path: a whole record inside `in`, handed out in place.
        if (state_ == state::header && have_ == 0 && in.size() >= header_size) {
            const std::byte* p = in.data();
            const std::uint64_t length = detail::tfrecord_le64(p);
            if (length <= options_.max_record_size && length + header_size + footer_size <= in.size()
                && tfrecord_mask_crc(detail::crc32c_extend(0, p, 8)) == detail::tfrecord_le32(p + 8)) {
                const std::byte* data = p + header_size;
                const auto n = static_cast<std::size_t>(length);
                if (!options_.verify_data_crc
                    || tfrecord_mask_crc(detail::crc32c_extend(0, data, n)) == detail::tfrecord_le32(data + n)) {
                    ec = {};
                    view_ = {data, n};
                    record_offset_ = position_;
                    position_ += n + header_size + footer_size;
                    state_ = state::ready;
                    return n + header_size + footer_size;
                }
            }
        }
        return put_slow(in, ec);
    }

    /// True when a complete record is waiting to be taken with `record()` and `pop()`.
    bool has_record() const noexcept { return state_ == state::ready; }

    /// The waiting record; `offset` is that of its header. Requires `has_record()`. The payload
    /// stays valid until the next call to `put()`, `pop()`, `finish()` or `reset()` (and, when
    /// it points into the input, while the caller keeps that input alive).
    record_view record() const noexcept { return {view_, record_offset_, index_}; }

    /// Releases the waiting record; the next record gets the next index. Requires
    /// `has_record()`.
    void pop() noexcept
    {
        state_ = state::header;
        header_offset_ = position_;
        ++index_;
        if (surplus_) [[unlikely]] {
            // A record found by resync() among bytes gathered for a false start: the bytes after
            // it were received too, and are searched before any new input.
            surplus_ = false;
            const std::size_t end = view_.size() + header_size + footer_size;
            buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(end));
            record_offset_ += end;
            rescan(0);
        }
    }

    /// Says that the input has ended. Sets `errc::truncated_record` if it ended inside a
    /// record (its header, data or data CRC). Ending while `resync()` is still searching is not
    /// an error: the bytes searched belong to a record already reported or to the previous
    /// piece of a split object.
    void finish(error_code& ec);

    /// Starts a new stream whose first byte is at `start_offset`. The stream is expected to
    /// begin at a record header; call `resync()` next if it may not (a byte range of a larger
    /// object). Record indices restart at 0; the reassembly buffer keeps its capacity.
    void reset(std::uint64_t start_offset = 0) noexcept;

    /// The offset of the header where the current record began: the waiting record, the
    /// record being decoded, the bad record after an error, or else the next byte to be read
    /// (the next candidate while searching).
    std::uint64_t offset() const noexcept
    {
        return state_ == state::header || state_ == state::scan ? header_offset_ : record_offset_;
    }

    /// The index of the current record in the same sense as `offset()`; equivalently, the
    /// number of records handed out or discarded before it.
    std::uint64_t records_started() const noexcept { return index_; }

    /// Searches for the next plausible record header: after an error, past the bad record (and
    /// counting it as one record index); with no error pending, from the current position
    /// (which must be between records: right after `reset()` or `pop()`). See the class
    /// comment. Bytes skipped are dropped; the search continues through further `put()` calls.
    void resync();

    /// Capacity of the internal reassembly buffer in bytes (for memory accounting and tests).
    std::size_t buffer_capacity() const noexcept { return buffer_.capacity(); }

private:
    enum class state : std::uint8_t {
        header,   // expecting a header; have_ bytes of it in header_
        payload,  // copying left_ more bytes of data and data CRC into buffer_
        skip,     // dropping left_ bytes of a record too large to keep
        ready,    // a record is waiting
        failed,   // error_ is pending
        scan,     // resync(): have_ bytes of the candidate at header_offset_ are in header_
        verify,   // resync(): gathering the candidate record at record_offset_ into buffer_
    };

    std::size_t put_slow(std::span<const std::byte> in, error_code& ec);
    bool accept_header(const std::byte* h, error_code& ec);
    const std::byte* scan(const std::byte* p, const std::byte* end);
    void verify_candidate();
    void rescan(std::size_t from);
    void fail(errc e, error_code& ec) noexcept;

    state state_ = state::header;
    std::uint8_t have_ = 0;
    std::uint64_t position_ = 0;       // absolute offset of the next byte put() will consume
    std::uint64_t record_offset_ = 0;  // header of the waiting, open or bad record
    std::uint64_t header_offset_ = 0;  // header being gathered (or candidate being judged)
    std::uint64_t index_ = 0;
    std::uint64_t length_ = 0;         // data length of the open record
    std::uint64_t left_ = 0;
    std::span<const std::byte> view_;
    tfrecord_options options_;
    errc error_{};
    bool skip_after_ = false;          // the pending error is a record too large: skip left_ bytes
    bool bad_header_ = false;          // the pending error is a header CRC mismatch
    bool surplus_ = false;             // buffer_ holds received bytes after the waiting record
    std::byte header_[header_size]{};
    std::vector<std::byte> buffer_;
};

static_assert(record_decoder<tfrecord_decoder>);

/// Frames one record as TFRecord and hands the framed bytes, in order, to `sink` as
/// `std::span<const std::byte>` pieces (header, payload, footer).
template <class ByteSink>
    requires std::invocable<ByteSink&, std::span<const std::byte>>
void write_tfrecord(std::span<const std::byte> payload, ByteSink&& sink)
{
    std::byte header[tfrecord_decoder::header_size];
    const std::uint64_t n = payload.size();
    for (int i = 0; i < 8; ++i)
        header[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
    const auto put32 = [](std::byte* p, std::uint32_t v) {
        for (int i = 0; i < 4; ++i)
            p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
    };
    put32(header + 8, tfrecord_masked_crc(std::span<const std::byte>(header, 8)));
    std::byte footer[tfrecord_decoder::footer_size];
    put32(footer, tfrecord_masked_crc(payload));
    sink(std::span<const std::byte>(header, sizeof header));
    if (!payload.empty())
        sink(payload);
    sink(std::span<const std::byte>(footer, sizeof footer));
}

/// Appends one TFRecord-framed record to `out`.
inline void append_tfrecord(std::vector<std::byte>& out, std::span<const std::byte> payload)
{
    write_tfrecord(payload, [&out](std::span<const std::byte> piece) { out.insert(out.end(), piece.begin(), piece.end()); });
}

} // namespace pipemode

#include <pipemode/framing/impl/tfrecord.hpp>
