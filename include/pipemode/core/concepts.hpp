// pipemode: the concepts the pipeline stages are written against.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <boost/asio/awaitable.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>

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

/// A record parser: one framed record in, at most one row of a batch out. The stage between a
/// framing decoder (`record_decoder`) and the batch the training loop sees; docs/stages.md is
/// the reference, with an example.
///
/// Semantics:
/// - `p.parse(rec, source, out, ec)` reads `rec.payload` and appends at most one row to `out`
///   through `out.begin_record(source, rec)`, the row's tensors (`begin_tensor` ... `end_tensor`)
///   and `out.end_record(ec)`. It returns whether the batch is now full (what `end_record`
///   returned): the caller then takes the batch before the next call. A parser may take a
///   record without appending a row yet (`grouped_record_parser` joins several records into
///   one row); it then returns false.
/// - The caller passes a cleared `ec` and a builder that is not full. Content the parser cannot
///   accept sets `ec` (the library's `errc`, or a code of the parser's own category), leaves
///   `out` exactly as it was before the call (`out.abort_record()`) and returns false; the
///   caller applies its bad-record policy, so the parser never throws for bad data.
/// - `error_detail()`, after a failure, is one sentence saying what was wrong and where in the
///   record (a column, a field); the reader adds it to the `data_error` or the skip warning. It
///   stays valid until the next `parse()`.
/// - `rec.payload` is valid only during the call: a parser copies whatever it keeps.
/// - `source` names the record's source for the row's origin; pass it to `begin_record`.
/// - Not thread-safe. A pipeline owns its parser (moved in), so it must be cheap to construct
///   and move; each pipeline has its own.
template <class P>
concept record_parser = std::move_constructible<P>
    && requires(P& p, const P& cp, const record_view& rec, std::string_view source, batch_builder& out,
                error_code& ec) {
           { p.parse(rec, source, out, ec) } -> std::same_as<bool>;
           { cp.error_detail() } -> std::convertible_to<std::string_view>;
       };

/// Whether a reader may parse records with several copies of parser `P` at once, each copy
/// filling its own batches on a decode worker's thread (`reader_options::decode_workers`).
///
/// A parser opts in with `static constexpr bool independent_records = true;` and must be
/// copyable. The promise it makes: once it has accepted one record, the row it makes of a
/// record (or its refusal) depends only on that record and on what it had learnt by then, not
/// on which records it saw since. (`csv_record_parser` learns the column count from its first
/// row and then checks every row against it; `protobuf_record_parser` learns nothing.) The
/// reader then gets exactly the batches one parser would have made: the workers start from
/// copies of the reader's own parser after its first record, and a batch a worker could not
/// fill exactly (a bad record, another schema) is made again by the reader's parser, in order,
/// with the bad-record policy applied once. A parser that joins records (such as
/// `grouped_record_parser`) does not opt in and is always run on one thread.
template <class P>
inline constexpr bool parses_independently_v = record_parser<P> && std::copy_constructible<P>
    && std::is_copy_assignable_v<P> && requires { requires P::independent_records; };

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
