// pipemode: the concepts the pipeline stages are written against.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/read_position.hpp>
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

/// Where a pipeline's finished batches go: the reader's channel to the training loop, a
/// callback, a writer of one's own. The last stage of `run_pipeline` (pipeline/pipeline.hpp);
/// docs/stages.md is the reference.
///
/// Semantics:
/// - `co_await s.async_write(std::move(b), after)` takes one finished batch, in order, with
///   the position a consumer stands at once it has it (`read_position`: the data set's epoch,
///   item and record after the batch's last record, for resuming). It completes with true to
///   ask for the next batch, false when whoever consumes the batches has gone away (a reader
///   destroyed, a callback that has seen enough): the pipeline then stops at once, without
///   reading further and without `async_close()`. Take the batch by value (coroutines must
///   not hold references to their caller's objects); its storage returns to the pipeline's
///   pool when the last copy of it is let go. Suspending is how a sink pushes back: the
///   pipeline reads nothing more until the write completes.
/// - `co_await s.async_close()` says the data has ended after the last batch, whatever was
///   written: write out what is held and end the output (close a channel, flush a file).
///   It is called once, only when the data ended; after an error the pipeline's exception
///   reaches its caller instead (the reader's channel carries it to the training loop).
/// - Called on the pipeline's thread only, one call at a time; a sink need not be
///   thread-safe. It is moved into the pipeline, which owns it.
///
/// One call per batch, a template argument of the pipeline: no virtual call per batch.
template <class S>
concept batch_sink = std::move_constructible<S> && requires(S& s, batch b, const read_position& after) {
    { s.async_write(std::move(b), after) } -> std::same_as<asio::awaitable<bool>>;
    { s.async_close() } -> std::same_as<asio::awaitable<void>>;
};

/// Where a pipeline's framed records go when nothing parses them: tools that move records
/// (a RecordIO writer, Pipe mode's FIFO), not batches. Follows the framing decoder directly
/// (`run_record_pipeline`, pipeline/pipeline.hpp); docs/stages.md is the reference.
///
/// Semantics:
/// - `s.put(rec, source, after)` takes one record, in order (`source` names its byte
///   source; `after` is the position once it is consumed). It is a plain call, made for
///   every record however small, so it must be cheap; it returns true when the sink needs
///   `async_flush()` before the next record (its buffer is full, or it wants to write this
///   record's bytes as they are). The pipeline then calls `async_flush()` at once, before it
///   releases the record: `rec.payload` is valid during `put()` and, when `put()` returned
///   true, until that `async_flush()` completes; a sink that keeps bytes longer copies them.
/// - `co_await s.async_flush()` writes what the sink holds and completes with true, or false
///   when whoever consumes the output has gone away (the reader of a FIFO closed it): the
///   pipeline then stops at once, without `async_close()`.
/// - `co_await s.async_close()`: the data has ended after the last record; write what is
///   held and end the output. Called once, only when the data ended (not after an error or a
///   false from `async_flush()`).
/// - Called on the pipeline's thread only, one call at a time; moved into the pipeline.
///
/// The coroutine suspends only when a sink asks for it, so a sink of 100-byte records costs a
/// function call per record, not a coroutine resumption.
template <class S>
concept record_sink = std::move_constructible<S>
    && requires(S& s, const record_view& rec, std::string_view source, const read_position& after) {
           { s.put(rec, source, after) } -> std::same_as<bool>;
           { s.async_flush() } -> std::same_as<asio::awaitable<bool>>;
           { s.async_close() } -> std::same_as<asio::awaitable<void>>;
       };

/// An asynchronous, in-order destination of bytes for the sinks that write a byte stream
/// (`recordio_writer_sink`): a file descriptor (`descriptor_writer`), Pipe mode's FIFO
/// (`sagemaker::fifo_byte_writer`), memory in a test.
///
/// Semantics:
/// - `co_await w.async_write(bytes)` writes all of `bytes`, which stay valid until it
///   completes, and completes with true; false when the reader has gone away (a pipe or FIFO
///   closed by its reader): nothing more is wanted, and that is not an error. Other failures
///   throw (`std::system_error` naming what was written).
/// - `co_await w.async_close()` ends the stream (the reader sees the end of data).
/// - One executor, not thread-safe.
template <class W>
concept byte_writer = requires(W& w, std::span<const std::byte> bytes) {
    { w.async_write(bytes) } -> std::same_as<asio::awaitable<bool>>;
    { w.async_close() } -> std::same_as<asio::awaitable<void>>;
};

} // namespace pipemode
