// pipemode: a sans-I/O gzip decompressor (zlib), for gzip_source and for tests and fuzzing
// without Asio. Needs zlib (the pipemode::gzip target).
//
// It sits in sources/ beside gzip_source.hpp, its only user in the library: it turns bytes
// into bytes before any framing, so it is part of a byte source, not a framing decoder.
//
// The accepted input (members, padding, what is an error) is described in docs/formats/gzip.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pipemode {

/// Decompresses a gzip stream incrementally: compressed bytes in, decompressed bytes out,
/// with no I/O of its own.
///
/// Accepts what `gzip -d` accepts without complaint:
/// - one or more concatenated members (`cat a.gz b.gz`, and what parallel and appending
///   writers produce), decompressed one after the other into one stream; empty members too;
/// - zero bytes after a member (padding, as some writers leave up to a block boundary) are
///   skipped.
///
/// Errors, sticky until `reset()`:
/// - `errc::corrupt_gzip` from `inflate()`: a bad header, bad compressed data, a CRC-32 or
///   length mismatch in a member's trailer, or bytes after a member that neither start a new
///   member nor are zero; `error_detail()` holds zlib's message ("incorrect header check",
///   "invalid distance too far back", "incorrect data check", ...);
/// - `errc::truncated_gzip` from `finish()`: the input ended inside a member, or held no
///   member at all. A damaged stream is never a silently short one.
///
/// Memory: zlib's inflate state and its 32 KiB window, at most `memory_bytes` in all; the
/// caller provides the output space.
///
/// Not thread-safe. Move-only (zlib's state points back at its stream, so the stream lives on
/// the heap and moves with the pointer).
///
/// @code
/// gzip_inflater z;
/// std::vector<std::byte> out(64 * 1024);
/// while (!in.empty()) {
///     auto [used, made] = z.inflate(in, out, ec);
///     if (ec) throw data_error(ec, {...}, z.error_detail());
///     in = in.subspan(used);
///     consume(std::span(out).first(made));
/// }
/// z.finish(ec);  // may have output left: call inflate({}, out, ec) while has_pending_output()
/// @endcode
class gzip_inflater {
public:
    /// An upper bound of the memory one inflater holds (zlib's state, about 7 KiB, and its
    /// 32 KiB window), for memory budgets.
    static constexpr std::size_t memory_bytes = 48 * 1024;

    /// What one `inflate()` call did.
    struct result {
        std::size_t consumed = 0;  ///< bytes of input used
        std::size_t produced = 0;  ///< bytes of output written
    };

    /// Makes an inflater at the start of a stream. Throws `std::bad_alloc` if zlib cannot
    /// allocate its state.
    gzip_inflater() : stream_(std::make_unique<z_stream>())
    {
        *stream_ = {};
        // 16 + MAX_WBITS: a gzip wrapper (not zlib's, not raw deflate), with the full window.
        const int r = inflateInit2(stream_.get(), 16 + MAX_WBITS);
        if (r == Z_MEM_ERROR)
            throw std::bad_alloc();
        if (r != Z_OK)
            throw std::runtime_error("pipemode: zlib's inflateInit2 failed (" + std::to_string(r)
                                     + "); is the zlib library older than its header?");
    }

    gzip_inflater(gzip_inflater&&) noexcept = default;
    gzip_inflater& operator=(gzip_inflater&& other) noexcept
    {
        if (this != &other) {
            end();
            stream_ = std::move(other.stream_);
            state_ = other.state_;
            members_ = other.members_;
            pending_ = other.pending_;
            error_ = other.error_;
            detail_ = std::move(other.detail_);
        }
        return *this;
    }
    gzip_inflater(const gzip_inflater&) = delete;
    gzip_inflater& operator=(const gzip_inflater&) = delete;

    ~gzip_inflater() { end(); }

    /// Decompresses from `in` into `out` until `in` is used up, `out` is full or an error
    /// occurs. Consuming all of `in` and producing nothing is "need more input".
    ///
    /// When `out` fills up, zlib may still hold output for input already consumed:
    /// `has_pending_output()` is then true, and the caller calls again (with more input or
    /// none) before `finish()`.
    result inflate(std::span<const std::byte> in, std::span<std::byte> out, error_code& ec);

    /// Whether the last `inflate()` filled its output, so that more output may come without
    /// more input.
    bool has_pending_output() const noexcept { return pending_; }

    /// Says that the input has ended. Sets `errc::truncated_gzip` if it ended inside a member
    /// or before any member; repeats a pending error. Call it only once no output is pending
    /// (output still inside zlib belongs to a complete member only if its trailer was read).
    void finish(error_code& ec);

    /// Starts a new stream; keeps zlib's allocations.
    void reset() noexcept
    {
        inflateReset(stream_.get());
        state_ = state::between;
        members_ = 0;
        pending_ = false;
        error_ = {};
        detail_.clear();
    }

    /// The members completed so far.
    std::uint64_t members() const noexcept { return members_; }

    /// After an error: zlib's message, or why the input was truncated.
    std::string_view error_detail() const noexcept { return detail_; }

private:
    enum class state : std::uint8_t {
        between,  // before the first member, or after one: zero padding is skipped here
        member,   // inside a member
        failed,   // error_ is pending
    };

    void end() noexcept
    {
        if (stream_)
            inflateEnd(stream_.get());
    }

    [[gnu::cold]] void fail(errc e, std::string detail, error_code& ec)
    {
        state_ = state::failed;
        error_ = e;
        detail_ = std::move(detail);
        ec = e;
    }

    std::unique_ptr<z_stream> stream_;
    state state_ = state::between;
    std::uint64_t members_ = 0;
    bool pending_ = false;
    errc error_{};
    std::string detail_;
};

inline gzip_inflater::result gzip_inflater::inflate(std::span<const std::byte> in, std::span<std::byte> out,
                                                    error_code& ec)
{
    ec = {};
    result r;
    if (state_ == state::failed) {
        ec = error_;
        return r;
    }
    z_stream& z = *stream_;
    // zlib counts in uInt: hand it at most UINT_MAX at a time.
    const auto clamp = [](std::size_t n) { return static_cast<uInt>(std::min<std::size_t>(n, UINT_MAX)); };
    pending_ = false;
    for (;;) {
        if (state_ == state::between) {
            // Padding between or after members: zero bytes, which cannot start a member (a
            // member starts with 0x1f 0x8b).
            while (r.consumed != in.size() && in[r.consumed] == std::byte{0})
                ++r.consumed;
            if (r.consumed == in.size())
                return r;
            state_ = state::member;
        }
        if (r.produced == out.size()) {
            pending_ = true;
            return r;
        }
        z.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data() + r.consumed));
        z.avail_in = clamp(in.size() - r.consumed);
        z.next_out = reinterpret_cast<Bytef*>(out.data() + r.produced);
        z.avail_out = clamp(out.size() - r.produced);
        const uInt avail_in = z.avail_in;
        const uInt avail_out = z.avail_out;
        const int rc = ::inflate(&z, Z_NO_FLUSH);
        const std::size_t used = avail_in - z.avail_in;
        const std::size_t made = avail_out - z.avail_out;
        r.consumed += used;
        r.produced += made;
        switch (rc) {
        case Z_STREAM_END:
            // The member's trailer (CRC-32 and length) has been checked.
            ++members_;
            inflateReset(&z);
            state_ = state::between;
            continue;
        case Z_OK:
            if (used == 0 && made == 0)
                return r;  // cannot happen with room on both sides; never spin
            if (r.consumed == in.size() && z.avail_out != 0)
                return r;  // all input used, and zlib had no more output for it
            continue;
        case Z_BUF_ERROR:
            // No progress possible: the input is used up (more is needed) or the output is full.
            pending_ = r.produced == out.size();
            return r;
        case Z_NEED_DICT:
            fail(errc::corrupt_gzip, "the stream asks for a preset dictionary, which gzip never uses", ec);
            return r;
        case Z_MEM_ERROR:
            throw std::bad_alloc();
        default:  // Z_DATA_ERROR, Z_STREAM_ERROR
            fail(errc::corrupt_gzip, z.msg != nullptr ? z.msg : "zlib error " + std::to_string(rc), ec);
            return r;
        }
    }
}

inline void gzip_inflater::finish(error_code& ec)
{
    ec = {};
    switch (state_) {
    case state::failed:
        ec = error_;
        return;
    case state::member:
        fail(errc::truncated_gzip,
             "the input ends inside gzip member " + std::to_string(members_ + 1)
                 + " (a partial download or an unfinished write)", ec);
        return;
    case state::between:
        if (members_ == 0)
            fail(errc::truncated_gzip, "the input holds no gzip member (an empty or all-zero file)", ec);
        return;
    }
}

} // namespace pipemode
