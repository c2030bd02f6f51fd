// Test support for framing decoders: feeds a decoder its input cut at given points and writes
// down everything it says, so that tests compare whole transcripts.
#pragma once

#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::test {

/// `s` as bytes (a view, no copy).
inline std::span<const std::byte> as_bytes(std::string_view s) noexcept
{
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

/// Bytes as a string, for comparisons with readable failure messages.
inline std::string as_string(std::span<const std::byte> b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// One thing a decoder said: a record ("R offset index payload") or an error
/// ("E offset index message"), and for an error at `finish()` an "F" instead of "E".
inline std::string record_event(std::uint64_t offset, std::uint64_t index, std::string_view payload)
{
    return "R " + std::to_string(offset) + " " + std::to_string(index) + " " + std::string(payload);
}

/// The "E"/"F" event of an error.
inline std::string error_event(char kind, const error_code& ec, std::uint64_t offset, std::uint64_t index)
{
    return std::string(1, kind) + " " + std::to_string(offset) + " " + std::to_string(index) + " " + ec.message();
}

/// Options of `transcript`.
struct feed_options {
    std::uint64_t start_offset = 0;  ///< passed to reset()
    bool resync_first = false;       ///< call resync() right after reset(), as for a split piece
    bool call_finish = true;         ///< end with finish()
    std::size_t max_errors = 100;    ///< stop after this many errors (a decoder stuck in a loop)
};

/// Feeds `input` to `d` in pieces that end at each of `cuts` (increasing offsets into
/// `input`; the end is implied), as the pipeline does: every record taken at once, every
/// error followed by resync(). Returns the transcript.
template <record_decoder D>
std::vector<std::string> transcript(D& d, std::string_view input, const std::vector<std::size_t>& cuts,
                                    feed_options opt = {})
{
    std::vector<std::string> out;
    d.reset(opt.start_offset);
    if (opt.resync_first)
        d.resync();
    std::size_t errors = 0;
    std::size_t from = 0;
    // A copy per piece, so that a decoder that keeps a view into a piece after put() returned
    // reads freed memory (which ASan reports).
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        const std::size_t to = i < cuts.size() ? cuts[i] : input.size();
        std::vector<std::byte> piece(to - from);
        if (!piece.empty())
            std::memcpy(piece.data(), input.data() + from, piece.size());
        std::span<const std::byte> chunk(piece);
        from = to;
        while (!chunk.empty() || d.has_record()) {
            error_code ec;
            chunk = chunk.subspan(d.put(chunk, ec));
            if (ec) {
                out.push_back(error_event('E', ec, d.offset(), d.records_started()));
                if (++errors >= opt.max_errors)
                    return out;
                d.resync();
                continue;
            }
            if (!d.has_record())
                break;
            const auto r = d.record();
            out.push_back(record_event(r.offset, r.index, as_string(r.payload)));
            d.pop();
        }
    }
    if (opt.call_finish) {
        error_code ec;
        d.finish(ec);
        if (ec)
            out.push_back(error_event('F', ec, d.offset(), d.records_started()));
        // finish() may complete a last record (a final line without '\n', a whole object).
        if (d.has_record()) {
            const auto r = d.record();
            out.push_back(record_event(r.offset, r.index, as_string(r.payload)));
            d.pop();
        }
    }
    return out;
}

/// The transcript with the input in one piece.
template <record_decoder D>
std::vector<std::string> transcript(D& d, std::string_view input, feed_options opt = {})
{
    return transcript(d, input, std::vector<std::size_t>{}, opt);
}

/// Every way to cut `n` bytes into at most three pieces (n^2/2 of them), plus byte by byte.
inline std::vector<std::vector<std::size_t>> split_points(std::size_t n)
{
    std::vector<std::vector<std::size_t>> all;
    for (std::size_t i = 0; i <= n; ++i)
        for (std::size_t j = i; j <= n; ++j)
            all.push_back({i, j});
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < n; ++i)
        every.push_back(i);
    all.push_back(every);
    return all;
}

} // namespace pipemode::test
