// pipemode: definitions for framing/tfrecord.hpp (included at its bottom).
#pragma once

#include <pipemode/framing/tfrecord.hpp>

#include <algorithm>
#include <limits>

namespace pipemode {

inline std::size_t tfrecord_decoder::put_slow(std::span<const std::byte> in, error_code& ec)
{
    ec = {};
    const std::byte* const begin = in.data();
    const std::byte* p = begin;
    const std::byte* const end = begin + in.size();
    const auto available = [&] { return static_cast<std::size_t>(end - p); };

    for (;;) {
        switch (state_) {
        case state::ready:
            goto done;

        case state::failed:
            ec = error_;
            goto done;

        case state::skip: {
            const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, available()));
            p += take;
            left_ -= take;
            if (left_ != 0)
                goto done;
            // The next header should follow, but it is searched for, not trusted.
            header_offset_ = position_ + static_cast<std::uint64_t>(p - begin);
            have_ = 0;
            state_ = state::scan;
            break;
        }

        case state::scan:
            p = scan(p, end);
            if (state_ == state::scan)
                goto done;
            // A candidate is in header_: it is a record start only if its data CRC matches too.
            have_ = 0;
            record_offset_ = header_offset_;
            length_ = detail::tfrecord_le64(header_);
            buffer_.assign(header_, header_ + header_size);
            state_ = state::verify;
            break;

        case state::verify: {
            // Gather the candidate record whole (header included), then judge it.
            const std::size_t need = static_cast<std::size_t>(length_) + header_size + footer_size;
            const std::size_t take = std::min(need - buffer_.size(), available());
            buffer_.insert(buffer_.end(), p, p + take);
            p += take;
            if (buffer_.size() < need)
                goto done;
            verify_candidate();
            if (state_ == state::ready)
                goto done;
            break;  // another candidate to gather, or the search goes on in the input
        }

        case state::header: {
            const std::byte* h;
            if (have_ == 0 && available() >= header_size) {
                h = p;
                p += header_size;
            } else {
                const std::size_t take = std::min<std::size_t>(header_size - have_, available());
                if (take != 0)
                    std::memcpy(header_ + have_, p, take);
                have_ = static_cast<std::uint8_t>(have_ + take);
                p += take;
                if (have_ < header_size)
                    goto done;
                h = header_;
                have_ = 0;
            }
            record_offset_ = header_offset_;
            if (!accept_header(h, ec))
                goto done;
            if (available() >= length_ + footer_size) {
                // Header cut from the input, data not: the data is still handed out in place.
                const auto n = static_cast<std::size_t>(length_);
                const std::byte* data = p;
                p += n + footer_size;
                if (options_.verify_data_crc
                    && tfrecord_mask_crc(detail::crc32c_extend(0, data, n)) != detail::tfrecord_le32(data + n)) {
                    fail(errc::crc_mismatch, ec);
                    goto done;
                }
                view_ = {data, n};
                state_ = state::ready;
                goto done;
            }
            buffer_.clear();
            left_ = length_ + footer_size;
            state_ = state::payload;
            break;
        }

        case state::payload: {
            // Grows only with bytes received: a hostile length costs nothing until its bytes
            // actually arrive (and the cap was checked against the header already).
            const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, available()));
            buffer_.insert(buffer_.end(), p, p + take);
            p += take;
            left_ -= take;
            if (left_ != 0)
                goto done;
            const auto n = static_cast<std::size_t>(length_);
            if (options_.verify_data_crc
                && tfrecord_mask_crc(detail::crc32c_extend(0, buffer_.data(), n))
                    != detail::tfrecord_le32(buffer_.data() + n)) {
                fail(errc::crc_mismatch, ec);
                goto done;
            }
            view_ = {buffer_.data(), n};
            state_ = state::ready;
            goto done;
        }
        }
    }

done:
    const auto consumed = static_cast<std::size_t>(p - begin);
    position_ += consumed;
    return consumed;
}

inline bool tfrecord_decoder::accept_header(const std::byte* h, error_code& ec)
{
    const std::uint64_t length = detail::tfrecord_le64(h);
    if (tfrecord_mask_crc(detail::crc32c_extend(0, h, 8)) != detail::tfrecord_le32(h + 8)) {
        // Kept so that resync() can search from the byte after this header's first.
        if (h != header_)
            std::memcpy(header_, h, header_size);
        skip_after_ = false;
        bad_header_ = true;
        fail(errc::crc_mismatch, ec);
        return false;
    }
    if (length > options_.max_record_size) {
        // The length is CRC-checked, so the record is real: resync() skips it without reading it
        // into memory.
        constexpr auto most = std::numeric_limits<std::uint64_t>::max();
        left_ = length > most - footer_size ? most : length + footer_size;
        skip_after_ = true;
        bad_header_ = false;
        fail(errc::record_too_large, ec);
        return false;
    }
    length_ = length;
    skip_after_ = false;
    bad_header_ = false;
    return true;
}

inline const std::byte* tfrecord_decoder::scan(const std::byte* p, const std::byte* end)
{
    const std::uint64_t max = options_.max_record_size;
    if (have_ != 0) {
        // Candidates that start in the bytes carried over from earlier input: judge them on a
        // copy joined with the start of this input.
        std::byte joined[2 * header_size - 1];
        const std::size_t k = have_;
        const std::size_t more = std::min<std::size_t>(header_size - 1, static_cast<std::size_t>(end - p));
        std::memcpy(joined, header_, k);
        if (more != 0)
            std::memcpy(joined + k, p, more);
        const std::size_t n = k + more;
        for (std::size_t i = 0; i < k; ++i) {
            if (i + header_size > n) {
                // All of this input was joined and is still too short to judge candidate i.
                have_ = static_cast<std::uint8_t>(n - i);
                std::memmove(header_, joined + i, have_);
                header_offset_ += i;
                return end;
            }
            if (detail::tfrecord_plausible_header(joined + i, max)) {
                std::memcpy(header_, joined + i, header_size);
                have_ = header_size;
                header_offset_ += i;
                state_ = state::header;
                return p + (i + header_size - k);
            }
        }
        header_offset_ += k;
        have_ = 0;
    }
    while (static_cast<std::size_t>(end - p) >= header_size) {
        if (detail::tfrecord_plausible_header(p, max)) {
            std::memcpy(header_, p, header_size);
            have_ = header_size;
            state_ = state::header;
            return p + header_size;
        }
        ++p;
        ++header_offset_;
    }
    have_ = static_cast<std::uint8_t>(end - p);
    if (have_ != 0)
        std::memcpy(header_, p, have_);
    return end;
}

inline void tfrecord_decoder::verify_candidate()
{
    // buffer_ holds a whole candidate record (header, data, data CRC) found by scan(), at
    // record_offset_. A false start (a 12-byte window that only looks like a header) fails the
    // data CRC; the search then resumes at the candidate's second byte.
    const auto n = static_cast<std::size_t>(length_);
    const std::byte* data = buffer_.data() + header_size;
    if (tfrecord_mask_crc(detail::crc32c_extend(0, data, n)) == detail::tfrecord_le32(data + n)) {
        view_ = {data, n};
        state_ = state::ready;
        return;
    }
    rescan(1);
}

inline void tfrecord_decoder::rescan(std::size_t from)
{
    // The search goes on through bytes already received, which buffer_ holds (from offset
    // record_offset_); they may hold the next candidate, partly or whole, and more after it.
    for (;;) {
        have_ = 0;
        header_offset_ = record_offset_ + from;
        state_ = state::scan;
        const std::byte* q = scan(buffer_.data() + from, buffer_.data() + buffer_.size());
        if (state_ == state::scan) {
            // No candidate in them; scan() kept their last few in header_.
            buffer_.clear();
            return;
        }
        const auto at = static_cast<std::size_t>(q - buffer_.data()) - header_size;
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(at));
        have_ = 0;
        record_offset_ = header_offset_;
        length_ = detail::tfrecord_le64(header_);
        state_ = state::verify;
        const std::size_t need = static_cast<std::size_t>(length_) + header_size + footer_size;
        if (buffer_.size() < need)
            return;  // the rest of this candidate is still to come
        const std::byte* data = buffer_.data() + header_size;
        if (tfrecord_mask_crc(detail::crc32c_extend(0, data, static_cast<std::size_t>(length_)))
            == detail::tfrecord_le32(data + length_)) {
            view_ = {data, static_cast<std::size_t>(length_)};
            state_ = state::ready;
            surplus_ = buffer_.size() > need;  // pop() searches on through the rest
            return;
        }
        from = 1;
    }
}

inline void tfrecord_decoder::fail(errc e, error_code& ec) noexcept
{
    error_ = e;
    state_ = state::failed;
    ec = e;
}

inline void tfrecord_decoder::finish(error_code& ec)
{
    ec = {};
    switch (state_) {
    case state::header:
        if (have_ == 0)
            return;
        record_offset_ = header_offset_;
        break;
    case state::payload:
    case state::verify:
        break;
    case state::ready:
        return;
    case state::failed:
        ec = error_;
        return;
    case state::skip:
    case state::scan:
        // What a search or a skip leaves belongs to a record already reported (or to the
        // previous piece of a split object).
        have_ = 0;
        header_offset_ = position_;
        state_ = state::header;
        return;
    }
    have_ = 0;
    buffer_.clear();
    error_ = errc::truncated_record;
    state_ = state::failed;
    ec = error_;
}

inline void tfrecord_decoder::reset(std::uint64_t start_offset) noexcept
{
    state_ = state::header;
    have_ = 0;
    position_ = start_offset;
    record_offset_ = start_offset;
    header_offset_ = start_offset;
    index_ = 0;
    length_ = 0;
    left_ = 0;
    view_ = {};
    error_ = {};
    skip_after_ = false;
    bad_header_ = false;
    surplus_ = false;
    buffer_.clear();
}

inline void tfrecord_decoder::resync()
{
    if (state_ == state::header) {
        // No error: search from here (the start of a byte range, say), keeping any header
        // bytes already gathered as the first candidate's.
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
    if (skip_after_) {
        state_ = state::skip;
        return;
    }
    if (bad_header_) {
        // accept_header() kept the bad header: the search starts at its second byte.
        std::memmove(header_, header_ + 1, header_size - 1);
        have_ = header_size - 1;
        header_offset_ = record_offset_ + 1;
    } else {
        // A data CRC mismatch under a verified length: the record's end is known.
        have_ = 0;
        header_offset_ = position_;
    }
    state_ = state::scan;
}

} // namespace pipemode
