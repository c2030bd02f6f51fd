// pipemode: definitions for framing/recordio.hpp (included at its bottom).
#pragma once

#include <pipemode/framing/recordio.hpp>

#include <algorithm>
#include <cerrno>
#include <ios>
#include <stdexcept>
#include <system_error>

namespace pipemode {

inline std::size_t recordio_decoder::put_slow(std::span<const std::byte> in, error_code& ec)
{
    ec = {};
    const std::byte* const begin = in.data();
    const std::byte* p = begin;
    const std::byte* const end = begin + in.size();
    const auto here = [&] { return position_ + static_cast<std::uint64_t>(p - begin); };
    const auto available = [&] { return static_cast<std::size_t>(end - p); };

    for (;;) {
        switch (state_) {
        case state::ready:
            goto done;

        case state::failed:
            ec = error_;
            goto done;

        case state::header:
        case state::part_header:
        case state::scan: {
            std::uint32_t magic;
            std::uint32_t word;
            bool from_input = false;
            if (have_ == 0) {
                if (state_ == state::scan) {
                    // Record starts are 4-byte aligned, so the search steps a word at a time and
                    // only stops on the magic word.
                    while (available() >= 4 && detail::load_le32(p) != recordio_magic)
                        p += 4;
                }
                header_offset_ = here();
                if (available() >= header_size) {
                    magic = detail::load_le32(p);
                    word = detail::load_le32(p + 4);
                    p += header_size;
                    from_input = true;
                } else {
                    // A header cut by the end of the input: keep its bytes for the next put().
                    have_ = static_cast<std::uint8_t>(available());
                    if (have_ != 0)
                        std::memcpy(header_, p, have_);
                    p = end;
                    goto done;
                }
            } else {
                const std::size_t take = std::min<std::size_t>(header_size - have_, available());
                if (take != 0)
                    std::memcpy(header_ + have_, p, take);
                have_ = static_cast<std::uint8_t>(have_ + take);
                p += take;
                if (have_ < header_size)
                    goto done;
                magic = detail::load_le32(header_);
                word = detail::load_le32(header_ + 4);
                have_ = 0;
            }

            const std::uint32_t cflag = word >> 29;
            const std::uint32_t length = word & recordio_max_part_length;

            if (state_ == state::scan) {
                // A record start is a magic word followed by "whole" or "first" and a length the
                // cap allows. A "first" part is followed by at least the re-inserted magic word.
                const bool start = magic == recordio_magic && cflag <= 1
                    && std::uint64_t{length} + (cflag == 1 ? 4 : 0) <= max_record_size_;
                if (!start) {
                    // Not a start. Its second word may itself be the next candidate's magic word;
                    // if not, both words are passed.
                    header_offset_ += 4;
                    if (word == recordio_magic) {
                        if (from_input) {
                            p -= 4;
                        } else {
                            detail::store_le32(header_, word);
                            have_ = 4;
                        }
                    }
                    continue;
                }
                state_ = state::header;
            }

            std::uint64_t needed;  // the least the reassembled record can weigh
            if (state_ == state::header) {
                record_offset_ = header_offset_;
                if (magic != recordio_magic) {
                    fail(errc::bad_magic, magic, word, ec);
                    goto done;
                }
                if (cflag > 1) {
                    fail(errc::bad_continuation, magic, word, ec);
                    goto done;
                }
                needed = std::uint64_t{length} + (cflag == 1 ? 4 : 0);
                if (needed > max_record_size_) {
                    fail(errc::record_too_large, magic, word, ec);
                    goto done;
                }
                buffer_.clear();
                last_part_ = cflag == 0;
                if (last_part_ && available() >= detail::recordio_padded(length)) {
                    // Header cut from the input, payload not: the payload is still handed out
                    // in place.
                    view_ = {p, length};
                    p += detail::recordio_padded(length);
                    state_ = state::ready;
                    goto done;
                }
            } else {
                if (magic != recordio_magic) {
                    fail(errc::bad_magic, magic, word, ec);
                    goto done;
                }
                if (cflag != 2 && cflag != 3) {
                    fail(errc::bad_continuation, magic, word, ec);
                    goto done;
                }
                needed = buffer_.size() + 4 + std::uint64_t{length} + (cflag == 2 ? 4 : 0);
                if (needed > max_record_size_) {
                    fail(errc::record_too_large, magic, word, ec);
                    goto done;
                }
                // The writer dropped an aligned magic word from the payload where it split.
                std::byte m[4];
                detail::store_le32(m, recordio_magic);
                buffer_.insert(buffer_.end(), m, m + 4);
                last_part_ = cflag == 3;
            }
            part_left_ = length;
            pad_left_ = static_cast<std::uint32_t>(detail::recordio_padded(length) - length);
            state_ = state::payload;
            break;
        }

        case state::payload: {
            // Grows only with bytes received: a hostile length costs nothing until its bytes
            // actually arrive (and the cap was checked against the header already).
            const std::size_t take = std::min<std::size_t>(part_left_, available());
            buffer_.insert(buffer_.end(), p, p + take);
            p += take;
            part_left_ -= static_cast<std::uint32_t>(take);
            if (part_left_ != 0)
                goto done;
            state_ = state::padding;
            break;
        }

        case state::padding: {
            // Padding content is not checked, as the dmlc reader does not check it either.
            const std::size_t take = std::min<std::size_t>(pad_left_, available());
            p += take;
            pad_left_ -= static_cast<std::uint32_t>(take);
            if (pad_left_ != 0)
                goto done;
            if (last_part_) {
                view_ = {buffer_.data(), buffer_.size()};
                state_ = state::ready;
                goto done;
            }
            state_ = state::part_header;
            break;
        }
        }
    }

done:
    const auto consumed = static_cast<std::size_t>(p - begin);
    position_ += consumed;
    return consumed;
}

inline void recordio_decoder::fail(errc e, std::uint32_t magic, std::uint32_t word, error_code& ec) noexcept
{
    // The offending header is kept: resync() starts its search there.
    detail::store_le32(header_, magic);
    detail::store_le32(header_ + 4, word);
    have_ = header_size;
    error_ = e;
    state_ = state::failed;
    ec = e;
}

inline void recordio_decoder::finish(error_code& ec)
{
    ec = {};
    switch (state_) {
    case state::header:
        if (have_ == 0)
            return;
        record_offset_ = header_offset_;
        break;
    case state::part_header:
    case state::payload:
    case state::padding:
        break;
    case state::ready:
        return;
    case state::failed:
        ec = error_;
        return;
    case state::scan:
        // Leftover bytes of a search belong to a record that was already reported.
        have_ = 0;
        header_offset_ = position_;
        state_ = state::header;
        return;
    }
    have_ = 0;
    error_ = errc::truncated_record;
    state_ = state::failed;
    ec = error_;
}

inline void recordio_decoder::reset(std::uint64_t start_offset) noexcept
{
    state_ = state::header;
    have_ = 0;
    last_part_ = false;
    position_ = start_offset;
    record_offset_ = start_offset;
    header_offset_ = start_offset;
    index_ = 0;
    view_ = {};
    part_left_ = 0;
    pad_left_ = 0;
    error_ = {};
    buffer_.clear();
}

inline void recordio_decoder::resync()
{
    if (state_ == state::header && have_ == 0 && position_ == header_offset_ && index_ == 0) {
        // Fresh from reset(): search for the first record start.
        state_ = state::scan;
        return;
    }
    if (state_ != state::failed)
        return;
    ++index_;
    buffer_.clear();
    if (error_ == errc::truncated_record) {
        // The input has ended: there is nothing to search.
        have_ = 0;
        header_offset_ = position_;
        state_ = state::header;
        return;
    }
    // fail() kept the offending header (at header_offset_): it is the first candidate, and
    // it is judged now, so that a record start there is not lost if the input ends here.
    state_ = state::scan;
    error_code ignored;  // the search never fails
    put_slow({}, ignored);
}

template <class ByteSink>
    requires std::invocable<ByteSink&, std::span<const std::byte>>
void write_recordio(std::span<const std::byte> payload, ByteSink&& sink)
{
    if (payload.size() > recordio_max_part_length)
        throw std::length_error("pipemode: a RecordIO record must be shorter than 2^29 bytes (512 MiB); "
                                "split the data into smaller records");
    const auto length = static_cast<std::uint32_t>(payload.size());
    const std::byte* const data = payload.data();

    std::byte header[8];
    const auto put_header = [&](recordio_cflag cflag, std::uint32_t part_length) {
        detail::store_le32(header, recordio_magic);
        detail::store_le32(header + 4, (std::uint32_t{static_cast<std::uint8_t>(cflag)} << 29) | part_length);
        sink(std::span<const std::byte>(header, sizeof header));
    };

    // Every aligned magic word in the payload ends a part and is dropped; the reader puts it
    // back between parts. Parts before the last are multiples of 4 long, so need no padding.
    std::uint32_t part_begin = 0;
    bool split = false;
    const std::uint32_t aligned_end = length & ~3U;
    for (std::uint32_t i = 0; i < aligned_end; i += 4) {
        if (detail::load_le32(data + i) != recordio_magic)
            continue;
        put_header(split ? recordio_cflag::middle : recordio_cflag::first, i - part_begin);
        if (i != part_begin)
            sink(payload.subspan(part_begin, i - part_begin));
        part_begin = i + 4;
        split = true;
    }
    put_header(split ? recordio_cflag::last : recordio_cflag::whole, length - part_begin);
    if (length != part_begin)
        sink(payload.subspan(part_begin));
    static constexpr std::byte zeros[4]{};
    if (const auto pad = detail::recordio_padded(length) - length; pad != 0)
        sink(std::span<const std::byte>(zeros, pad));
}

inline void append_recordio(std::vector<std::byte>& out, std::span<const std::byte> payload)
{
    write_recordio(payload, [&out](std::span<const std::byte> piece) {
        out.insert(out.end(), piece.begin(), piece.end());
    });
}

inline void recordio_writer::write(std::span<const std::byte> payload)
{
    write_recordio(payload, [this](std::span<const std::byte> piece) { emit(piece); });
    ++records_;
}

inline void recordio_writer::emit(std::span<const std::byte> bytes)
{
    if (stream_ != nullptr) {
        stream_->write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!*stream_)
            throw std::ios_base::failure("pipemode: recordio_writer could not write to its stream");
    } else if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
        throw std::system_error(errno, std::generic_category(), "pipemode: recordio_writer could not write to its file");
    }
    bytes_ += bytes.size();
}

} // namespace pipemode
