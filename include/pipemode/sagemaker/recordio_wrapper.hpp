// pipemode: wraps a stream of bytes (one object, read chunk by chunk) as ONE RecordIO record
// without holding the whole object, for `RecordWrapperType: RecordIO` in `pipemode-agent`.
// Sans-I/O: bytes in, framed bytes out.
//
// The framing, and why a writer cuts a record at every aligned magic word, are described in
// docs/formats/recordio.md; how the agent uses this, in docs/agent.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/framing/recordio.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipemode::sagemaker {

/// Frames one record whose payload arrives in pieces, producing what `write_recordio` would
/// produce for the whole payload wherever it can, with memory bounded by `window`.
///
/// A RecordIO part header carries the part's length, and the reader joins consecutive parts
/// with the magic word it assumes the writer cut out there (docs/formats/recordio.md). So a
/// record can be cut into parts only where its payload holds a 4-byte-aligned magic word, and
/// each part's length must be known before its first byte is written. The wrapper therefore:
///
/// - keeps the bytes of the part in progress (up to `window` of them), cutting a part at every
///   aligned magic word it finds there, exactly as `write_recordio` does, and frames the last
///   part when `finish()` says the payload has ended. A payload with no magic-free stretch
///   longer than `window` comes out byte for byte as `write_recordio` writes it;
/// - when the part in progress outgrows `window`, commits to it being the last part: its
///   header says "the rest of the payload" (so the payload's length must be known: given at
///   construction, or through `set_length()` when `needs_length()` asks for it), and every
///   later byte passes through uncopied. Aligned magic words after that point stay inside the
///   payload, as the SageMaker Python SDK's writer leaves them: every RecordIO reader decodes
///   that; only resynchronisation after damage is weaker inside such a record.
///
/// Call `put()` with each piece of the payload in order, then `finish()`; after each call
/// write `output()`, in order, before the next call. A payload of `recordio_max_part_length`
/// bytes or more is refused with `std::length_error`, as `write_recordio` refuses it (before
/// anything is output when the length is known). A payload that does not have the length it
/// was said to have is `std::length_error` too; the bytes already output then end in a cut
/// record, which the consumer reports as truncated.
///
/// Not thread-safe; one wrapper per record.
///
/// Example:
/// \code
/// recordio_wrapper w(object_size);
/// while (auto chunk = next_chunk()) {
///     w.put(*chunk);
///     for (auto piece : w.output()) write(piece);
/// }
/// w.finish();
/// for (auto piece : w.output()) write(piece);
/// \endcode
class recordio_wrapper {
public:
    /// A wrapper for a payload of `length` bytes (nothing when unknown, e.g. an object inflated
    /// from gzip), holding at most about `window` bytes of it. Throws `std::length_error` when
    /// `length` is too long for one RecordIO record, `std::invalid_argument` for a `window` of 0.
    explicit recordio_wrapper(std::optional<std::uint64_t> length = std::nullopt, std::size_t window = 8 * mib)
        : window_(window)
    {
        if (window_ == 0)
            throw std::invalid_argument("pipemode: recordio_wrapper: the window must be at least 1 byte");
        if (length)
            set_length(*length);
    }

    /// Takes the next piece of the payload. Requires `!needs_length()` and no `finish()` yet.
    void put(std::span<const std::byte> piece)
    {
        out_.clear();
        through_ = {};
        if (needs_length_ || finished_)
            throw std::logic_error(finished_ ? "pipemode: recordio_wrapper: put() after finish()"
                                             : "pipemode: recordio_wrapper: set_length() must be called first");
        check_total(received_ + piece.size());
        if (length_ && received_ + piece.size() > *length_)
            throw std::length_error("pipemode: the object is longer than the " + std::to_string(*length_)
                                    + " bytes its listing gave (it changed while it was read?)");
        if (committed_) {
            through_ = piece;
            received_ += piece.size();
            return;
        }
        held_.insert(held_.end(), piece.begin(), piece.end());
        received_ += piece.size();
        cut_at_magic_words();
        if (held_.size() - part_begin_ > window_) {
            if (length_)
                commit();
            else
                needs_length_ = true;
        }
        compact();
    }

    /// Says the payload has ended and frames what is left. Throws `std::length_error` when fewer
    /// bytes came than the length given.
    void finish()
    {
        out_.clear();
        through_ = {};
        if (length_ && received_ != *length_)
            throw std::length_error("pipemode: the object ended after " + std::to_string(received_) + " of the "
                                    + std::to_string(*length_)
                                    + " bytes its listing gave (it changed while it was read?)");
        if (!committed_) {
            // The rest of the held bytes is the last part (a whole record when nothing was cut).
            header(split_ ? recordio_cflag::last : recordio_cflag::whole, held_.size() - part_begin_);
            out_.insert(out_.end(), held_.begin() + static_cast<std::ptrdiff_t>(part_begin_), held_.end());
            held_.clear();
            part_begin_ = scan_ = 0;
        }
        static constexpr std::byte zeros[4]{};
        out_.insert(out_.end(), zeros, zeros + (pipemode::detail::recordio_padded(received_) - received_));
        finished_ = true;
    }

    /// True when the part in progress has outgrown the window and the payload's length is not
    /// known: call `set_length()` (e.g. after measuring the object) before the next `put()`.
    bool needs_length() const noexcept { return needs_length_; }

    /// Gives the payload's whole length (counting the bytes already put). When `needs_length()`
    /// was true, the held part is framed now: write `output()` before the next `put()`.
    /// Throws `std::length_error` for a length too long for one record or shorter than what
    /// was put.
    void set_length(std::uint64_t length)
    {
        check_total(length);
        if (length < received_)
            throw std::length_error("pipemode: recordio_wrapper: the length given (" + std::to_string(length)
                                    + ") is less than the " + std::to_string(received_) + " bytes already put");
        length_ = length;
        if (needs_length_) {
            out_.clear();
            through_ = {};
            needs_length_ = false;
            commit();
            compact();
        }
    }

    /// The framed bytes the last call produced, to be written in this order before the next
    /// call: bytes the wrapper holds, then (while committed) the caller's piece itself. Either
    /// may be empty.
    std::array<std::span<const std::byte>, 2> output() const noexcept { return {std::span(out_), through_}; }

    /// Payload bytes put so far.
    std::uint64_t payload_bytes() const noexcept { return received_; }

    /// True once the wrapper stopped cutting at magic words (see the class comment).
    bool committed() const noexcept { return committed_; }

private:
    static void check_total(std::uint64_t n)
    {
        if (n > recordio_max_part_length)
            throw std::length_error("pipemode: a RecordIO record must be shorter than 2^29 bytes (512 MiB), and this "
                                    "object is longer; RecordWrapperType RecordIO cannot wrap it");
    }

    void header(recordio_cflag flag, std::uint64_t part_length)
    {
        std::byte h[8];
        pipemode::detail::store_le32(h, recordio_magic);
        pipemode::detail::store_le32(h + 4, (std::uint32_t{static_cast<std::uint8_t>(flag)} << 29)
                                      | static_cast<std::uint32_t>(part_length));
        out_.insert(out_.end(), h, h + 8);
    }

    // Cuts a part at every aligned magic word in the held bytes not yet looked at, as
    // write_recordio does. held_[0] is at an aligned payload offset (see compact()), so aligned
    // payload offsets are aligned indices.
    void cut_at_magic_words()
    {
        for (; scan_ + 4 <= held_.size(); scan_ += 4) {
            if (pipemode::detail::load_le32(held_.data() + scan_) != recordio_magic)
                continue;
            header(split_ ? recordio_cflag::middle : recordio_cflag::first, scan_ - part_begin_);
            out_.insert(out_.end(), held_.begin() + static_cast<std::ptrdiff_t>(part_begin_),
                        held_.begin() + static_cast<std::ptrdiff_t>(scan_));
            part_begin_ = scan_ + 4;
            split_ = true;
        }
    }

    // The held part becomes the last one, running to the end of the payload.
    void commit()
    {
        const std::uint64_t before = received_ - (held_.size() - part_begin_);  // payload offset of the part
        header(split_ ? recordio_cflag::last : recordio_cflag::whole, *length_ - before);
        out_.insert(out_.end(), held_.begin() + static_cast<std::ptrdiff_t>(part_begin_), held_.end());
        held_.clear();
        part_begin_ = scan_ = 0;
        committed_ = true;
    }

    // Drops the held bytes already framed, keeping the first held byte at an aligned payload
    // offset (part_begin_ and scan_ are multiples of 4 apart from it).
    void compact()
    {
        if (part_begin_ == 0)
            return;
        held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(part_begin_));
        scan_ -= part_begin_;
        part_begin_ = 0;
    }

    std::size_t window_;
    std::optional<std::uint64_t> length_;
    std::uint64_t received_ = 0;
    std::vector<std::byte> held_;   // payload bytes not yet framed, from part_begin_ on
    std::size_t part_begin_ = 0;    // index in held_ of the part in progress
    std::size_t scan_ = 0;          // index in held_ of the next aligned word to look at
    bool split_ = false;
    bool committed_ = false;
    bool needs_length_ = false;
    bool finished_ = false;
    std::vector<std::byte> out_;
    std::span<const std::byte> through_;
};

} // namespace pipemode::sagemaker
