// pipemode: the concepts the pipeline stages are written against.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/record_view.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

namespace pipemode {

/// A sans-I/O framing decoder: bytes in, records out.
///
/// Semantics:
/// - `put(in, ec)` consumes a prefix of `in` and returns how many bytes it consumed. It never
///   reads past `in`. It stops as soon as one record is complete (`has_record()` is then
///   true), so a caller takes records one at a time. Consuming all of `in` without completing
///   a record means "need more bytes": that is not an error.
/// - While `has_record()` is true, `put()` consumes nothing; `record()` returns the record and
///   `pop()` releases it.
/// - `finish(ec)` says the input has ended. If the input ended inside a record, `ec` is set
///   (`errc::truncated_record`): the decoder never hands out a silently short record.
/// - `reset(offset)` starts a new source whose first byte has the given offset (non-zero when
///   a source is a byte range of a larger object).
/// - After an error, `offset()` and `records_started()` say where; `resync(ec)` follows the
///   decoder's documented policy for finding the next record (used by the skip policies).
template <class D>
concept record_decoder = requires(D& d, const D& cd, std::span<const std::byte> in, error_code& ec,
                                  std::uint64_t offset) {
    { d.put(in, ec) } -> std::same_as<std::size_t>;
    { cd.has_record() } -> std::same_as<bool>;
    { cd.record() } -> std::same_as<record_view>;
    d.pop();
    d.finish(ec);
    d.reset(offset);
    { cd.offset() } -> std::same_as<std::uint64_t>;
    { cd.records_started() } -> std::same_as<std::uint64_t>;
    d.resync();
};

} // namespace pipemode
