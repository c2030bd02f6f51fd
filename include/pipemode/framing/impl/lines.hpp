// pipemode: definitions for framing/lines.hpp (included at its bottom).
#pragma once

#include <pipemode/framing/lines.hpp>

namespace pipemode {

inline std::size_t line_decoder::put_slow(std::span<const std::byte> in, error_code& ec)
{
    ec = {};
    const std::byte* const begin = in.data();
    const std::byte* p = begin;
    const std::byte* const end = begin + in.size();
    const std::size_t max = options_.max_record_size;

    while (p != end || state_ == state::failed) {
        switch (state_) {
        case state::ready:
            goto done;

        case state::failed:
            ec = errc::line_too_long;
            goto done;

        case state::discard: {
            const auto* nl = static_cast<const std::byte*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
            if (nl == nullptr) {
                p = end;
                goto done;
            }
            p = nl + 1;
            state_ = state::line;
            break;
        }

        case state::line: {
            if (buffer_.empty())
                record_offset_ = position_ + static_cast<std::uint64_t>(p - begin);
            const auto* nl = static_cast<const std::byte*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
            const std::byte* stop = nl != nullptr ? nl : end;
            const auto take = static_cast<std::size_t>(stop - p);
            // Too long already, or (with its end in sight) too long once a "\r" is dropped:
            // the bytes seen are dropped, never buffered beyond max + 1.
            const std::size_t seen = buffer_.size() + take;
            bool too_long = seen > max + 1;
            if (!too_long && nl != nullptr && seen == max + 1) {
                const std::byte last = take != 0 ? stop[-1] : buffer_.back();
                too_long = last != std::byte{'\r'};
            }
            if (too_long) {
                buffer_.clear();
                line_open_ = nl == nullptr;
                p = nl != nullptr ? nl + 1 : end;
                state_ = state::failed;
                ec = errc::line_too_long;
                goto done;
            }
            if (nl == nullptr) {
                buffer_.insert(buffer_.end(), p, end);
                p = end;
                goto done;
            }
            std::span<const std::byte> line;
            if (buffer_.empty()) {
                line = {p, take};
            } else {
                buffer_.insert(buffer_.end(), p, nl);
                line = buffer_;
            }
            p = nl + 1;
            if (!line.empty() && line.back() == std::byte{'\r'})
                line = line.first(line.size() - 1);
            if (line.empty() && options_.skip_empty) {
                buffer_.clear();
                break;
            }
            view_ = line;
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

inline void line_decoder::finish(error_code& ec)
{
    ec = {};
    switch (state_) {
    case state::ready:
        return;
    case state::failed:
        ec = errc::line_too_long;
        return;
    case state::discard:
        // The rest of a line already reported, or of a line owned by the previous piece.
        state_ = state::line;
        return;
    case state::line:
        break;
    }
    if (buffer_.empty())
        return;
    std::span<const std::byte> line(buffer_);
    if (line.back() == std::byte{'\r'})
        line = line.first(line.size() - 1);
    if (line.empty() && options_.skip_empty) {
        buffer_.clear();
        return;
    }
    if (line.size() > options_.max_record_size) {
        // max + 1 bytes were gathered in the hope of a "\r\n".
        buffer_.clear();
        line_open_ = false;
        state_ = state::failed;
        ec = errc::line_too_long;
        return;
    }
    view_ = line;
    state_ = state::ready;
}

inline void line_decoder::reset(std::uint64_t start_offset) noexcept
{
    state_ = state::line;
    line_open_ = false;
    position_ = start_offset;
    record_offset_ = start_offset;
    index_ = 0;
    view_ = {};
    buffer_.clear();
}

inline void line_decoder::resync() noexcept
{
    switch (state_) {
    case state::ready:
    case state::discard:
        return;
    case state::failed:
        ++index_;
        state_ = line_open_ ? state::discard : state::line;
        line_open_ = false;
        return;
    case state::line:
        buffer_.clear();
        state_ = state::discard;
        return;
    }
}

} // namespace pipemode
