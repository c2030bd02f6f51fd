// pipemode: the framing of tools that move bytes rather than records: each read of a source is
// handed on as one record, and each source's end as an empty record. A sans-I/O decoder.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace pipemode {

/// A sans-I/O decoder that frames nothing: every span given to `put()` comes out as one
/// record, unchanged and uncopied, and `finish()` hands out one empty record that marks the
/// end of the source. Models `record_decoder`.
///
/// It lets a pipeline pass an object's bytes through as they arrive (pipemode-agent writes a
/// channel's objects into a FIFO this way, docs/agent.md) while its record sink still sees
/// where each object ends: the empty record after the last read of every source, an empty
/// source included, is the only empty record there is (the pipeline never puts an empty span).
///
/// The bytes of the records of a source, in order, are the source's bytes, however they were
/// cut into reads. A record's offset is its first byte's offset in the object; its index counts
/// the reads of the source from 0, and the end record's index is the number of reads. There is
/// nothing to get wrong: no errors, and `resync()` does nothing (any byte can start a record).
///
/// Not thread-safe; one decoder per stream.
///
/// @code
/// chunk_decoder d;
/// d.put(chunk, ec);        // consumes all of chunk: d.record().payload is chunk
/// d.pop();
/// d.finish(ec);            // d.record().payload is empty: the source has ended
/// d.pop();
/// @endcode
class chunk_decoder {
public:
    /// Makes `in` the waiting record and returns its size; consumes nothing while a record is
    /// waiting, when `in` is empty, or after `finish()`. Never sets `ec`.
    std::size_t put(std::span<const std::byte> in, error_code& ec) noexcept
    {
        ec = {};
        if (waiting_ || ended_ || in.empty())
            return 0;
        record_ = {in, offset_, index_};
        offset_ += in.size();
        waiting_ = true;
        return in.size();
    }

    /// True from a `put()` or `finish()` until `pop()`.
    bool has_record() const noexcept { return waiting_; }

    /// The waiting record: the span given to `put()` (valid as long as the caller keeps it), or
    /// the empty end record. Requires `has_record()`.
    record_view record() const noexcept { return record_; }

    /// Releases the waiting record. Requires `has_record()`.
    void pop() noexcept
    {
        waiting_ = false;
        ++index_;
    }

    /// Says that the source has ended: the empty end record is waiting (once; a second call
    /// does nothing). Never sets `ec`.
    void finish(error_code& ec) noexcept
    {
        ec = {};
        if (ended_ || waiting_)
            return;
        ended_ = true;
        record_ = {{}, offset_, index_};
        waiting_ = true;
    }

    /// Starts a new source whose first byte is at `start_offset`.
    void reset(std::uint64_t start_offset = 0) noexcept
    {
        offset_ = start_offset;
        index_ = 0;
        waiting_ = false;
        ended_ = false;
    }

    /// The offset of the next byte to come (or of the waiting record's first byte, after it).
    std::uint64_t offset() const noexcept { return waiting_ ? record_.offset : offset_; }

    /// Records handed out so far, the waiting one included.
    std::uint64_t records_started() const noexcept { return index_ + (waiting_ ? 1 : 0); }

    /// Does nothing: every byte may start a record.
    void resync() noexcept {}

private:
    record_view record_{};
    std::uint64_t offset_ = 0;
    std::uint64_t index_ = 0;
    bool waiting_ = false;
    bool ended_ = false;
};

static_assert(record_decoder<chunk_decoder>);

} // namespace pipemode
