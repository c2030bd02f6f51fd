// Test support: a framing decoder and a record parser written the way a user outside the
// library writes them, against the concepts alone (core/concepts.hpp), to check that a reader
// built from such a pair behaves as one built from a data_format.
#pragma once

#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::test {

/// Records that end with ';' (the last one too: a source that ends after bytes with no ';' is
/// a truncated record). A record held within one `put()` is handed out without a copy; one that
/// straddles calls is gathered in a buffer. `resync()` drops bytes through the next ';', which
/// is how a byte range of a larger object finds its first record.
class semicolon_decoder {
public:
    std::size_t put(std::span<const std::byte> in, error_code& ec)
    {
        ec = {};
        if (ready_)
            return 0;
        const auto* begin = in.data();
        const auto* end = begin + in.size();
        const auto* semi = std::find(begin, end, std::byte{';'});
        const auto consumed = static_cast<std::size_t>(semi - begin) + (semi != end ? 1 : 0);
        if (discarding_) {
            discarding_ = semi == end;
            position_ += consumed;
            return consumed;
        }
        if (buffer_.empty())
            start_ = position_;
        if (semi == end) {
            buffer_.insert(buffer_.end(), begin, end);
            position_ += consumed;
            return consumed;
        }
        if (buffer_.empty()) {
            view_ = {begin, semi};
        }
        else {
            buffer_.insert(buffer_.end(), begin, semi);
            view_ = buffer_;
        }
        ready_ = true;
        position_ += consumed;
        return consumed;
    }

    bool has_record() const noexcept { return ready_; }
    record_view record() const noexcept { return {view_, start_, index_}; }

    void pop() noexcept
    {
        ready_ = false;
        buffer_.clear();
        ++index_;
    }

    void finish(error_code& ec)
    {
        ec = {};
        if (!ready_ && !buffer_.empty())
            ec = make_error_code(errc::truncated_record);
    }

    void reset(std::uint64_t offset) noexcept
    {
        position_ = start_ = offset;
        index_ = 0;
        ready_ = discarding_ = false;
        buffer_.clear();
    }

    std::uint64_t offset() const noexcept { return ready_ || !buffer_.empty() ? start_ : position_; }
    std::uint64_t records_started() const noexcept { return index_; }

    void resync() noexcept
    {
        if (ready_)
            return;
        discarding_ = true;
        buffer_.clear();
    }

private:
    std::uint64_t position_ = 0;  // offset of the next byte put() consumes
    std::uint64_t start_ = 0;     // of the record being gathered or waiting
    std::uint64_t index_ = 0;
    bool ready_ = false;
    bool discarding_ = false;
    std::span<const std::byte> view_;
    std::vector<std::byte> buffer_;
};

/// The feature `length_parser` writes: the record's length in bytes.
inline constexpr std::string_view length_feature = "length";

/// One row per record: the dense int32 feature "length" of shape {1}, the payload's size. A
/// record that starts with '!' is bad content (`errc::unsupported_value`, "record starts with
/// '!'"), and leaves the builder as it was.
class length_parser {
public:
    bool parse(const record_view& rec, std::string_view source, batch_builder& out, error_code& ec)
    {
        if (!rec.payload.empty() && rec.payload[0] == std::byte{'!'}) {
            detail_ = "the record starts with '!'";
            ec = make_error_code(errc::unsupported_value);
            return false;
        }
        out.begin_record(source, rec);
        out.begin_tensor(record_section::features, length_feature, tensor_type::int32);
        *out.extend_values<std::int32_t>(1) = static_cast<std::int32_t>(rec.payload.size());
        bool full = false;
        if (out.end_tensor(ec))
            full = out.end_record(ec);
        else
            out.abort_record();
        if (ec)
            detail_ = out.error_detail();
        return full;
    }

    std::string_view error_detail() const noexcept { return detail_; }

private:
    std::string detail_;
};

static_assert(record_decoder<semicolon_decoder>);
static_assert(record_parser<length_parser>);

} // namespace pipemode::test
