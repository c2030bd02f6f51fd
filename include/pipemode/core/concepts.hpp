// pipemode: the concepts the pipeline stages are written against.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/record_view.hpp>

#include <boost/asio/awaitable.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <tuple>

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

/// What a byte source's `async_next()` completes with: an error and a chunk of bytes.
using chunk_result = std::tuple<error_code, std::span<const std::byte>>;

/// An asynchronous, in-order source of one object's bytes (a file, a FIFO, a byte range of an
/// S3 object, memory).
///
/// Semantics:
/// - `co_await s.async_next()` yields the next chunk of bytes. The chunk is owned by the
///   source and stays valid until the next call to `async_next()` or the source's
///   destruction; sources hand out their own buffers so that bytes received from the network
///   reach the decoder without another copy.
/// - End of data is `asio::error::eof` with an empty chunk. A non-eof error ends the source.
///   An empty chunk with no error is allowed and means nothing (callers simply call again).
/// - `name()` names the source in error messages (a path, `s3://bucket/key`, a URL,
///   `memory:NAME`); it never contains credentials.
/// - `start_offset()` is the offset, within the whole object, of the first byte the source
///   delivers (non-zero when it reads a byte range), so decoders report absolute offsets.
/// - Sources run on one executor and are not thread-safe; destroying a source cancels what it
///   has in flight.
/// - Optionally, `error_detail()` returns a sentence about the last error (an HTTP status and
///   the server's message, say) that the error code alone cannot carry; the reader adds it to
///   the `data_error` it raises.
template <class S>
concept byte_source = requires(S& s, const S& cs) {
    { s.async_next() } -> std::same_as<asio::awaitable<chunk_result>>;
    { cs.name() } -> std::convertible_to<std::string_view>;
    { cs.start_offset() } -> std::same_as<std::uint64_t>;
};

} // namespace pipemode
