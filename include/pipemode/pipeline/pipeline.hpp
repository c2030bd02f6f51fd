// pipemode: runs a pipeline composed of the caller's stages, without a reader's thread.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/detail/pipeline_run.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/pipeline/stats.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

namespace pipemode {

/// What a pipeline run did.
struct pipeline_result {
    /// True when every source was read and the sink closed (`async_close()`); false when the
    /// sink stopped the pipeline (a write or flush completed with false).
    bool data_ended = false;
    /// The counters: bytes read, records and batches written to the sink, bad records
    /// skipped, sources read. The stalls and `peak_batch_bytes` are the reader's and stay 0.
    reader_stats stats;
};

namespace detail {

/// Counts what a batch sink accepted, as the reader's channel counts what it delivers.
template <batch_sink Sink>
class counting_sink {
public:
    counting_sink(Sink sink, stats_counters* stats) : sink_(std::move(sink)), stats_(stats) {}

    asio::awaitable<bool> async_write(batch b, read_position after)
    {
        const auto records = static_cast<std::uint64_t>(b.size() - b.padding());
        if (!co_await sink_.async_write(std::move(b), after))
            co_return false;
        stats_counters::add(stats_->records, records);
        stats_counters::add(stats_->batches, std::uint64_t{1});
        co_return true;
    }

    asio::awaitable<void> async_close() { co_await sink_.async_close(); }

private:
    Sink sink_;
    stats_counters* stats_;
};

/// The checks and the provider's reservation every batch pipeline starts with.
inline void start_pipeline(source_provider& provider, const reader_options& options, std::string_view who)
{
    (void)checked_batch_budget(options, provider.reserve_buffers(options), who);
}

/// The checks and the provider's reservation a record pipeline starts with. There is no
/// budget for batches to check: a record pipeline makes none, and `memory_budget` only sizes
/// the provider's buffers (an HTTP or S3 stream's window, which may take all of a small budget).
inline void start_record_pipeline(source_provider& provider, const reader_options& options, std::string_view who)
{
    check_pipeline_options(options, who);
    (void)provider.reserve_buffers(options);
}

/// Runs `pipeline` (which completes with a `pipeline_result`) on a fresh event loop on this
/// thread, with a one-thread pool for blocking reads, until it ends; rethrows its error.
template <class MakePipeline>
pipeline_result run_on_this_thread(std::unique_ptr<source_provider> given, MakePipeline make)
{
    if (!given)
        throw std::invalid_argument("pipemode::run_pipeline: no source provider given.");
    asio::io_context io{1};
    asio::thread_pool blocking{1};
    // Declared after the io_context so that it goes first: a provider may hold objects bound
    // to the loop (an HTTP stream's waker).
    std::unique_ptr<source_provider> provider = std::move(given);
    std::optional<pipeline_result> result;
    std::exception_ptr error;
    asio::co_spawn(io, make(*provider, blocking.get_executor()),
                   [&](std::exception_ptr e, pipeline_result r) {
                       error = e;
                       result = r;
                       // Whatever the provider still has in flight (sources opened ahead) is
                       // cancelled now, so that the loop ends with the pipeline.
                       provider.reset();
                   });
    io.run();
    blocking.join();
    if (error)
        std::rethrow_exception(error);
    return *result;
}

} // namespace detail

/// Runs `provider`'s sources through `framing`, `parser` and `sink` on the calling coroutine's
/// executor: the awaitable form of `run_pipeline`, for programs that run their own event loop.
///
/// The stages are template arguments (no virtual call per record, chunk or batch), and the
/// pipeline is the reader's own (a reader is this with its channel as the sink): batching,
/// `last_batch`, the bad-record policies, the record-level shuffle, positions, decode workers
/// (`decode_workers`, for parsers that opt in) and the stats behave as for a reader.
/// `options.format`, `csv_label_size` and `attribute_names` are ignored, as the stages decide;
/// `prefetch_batches` only sizes the batch pool, and `memory_budget` is checked against the
/// provider's buffers but does not bound batches, which the sink takes one at a time.
///
/// `provider` must outlive the operation; its `reserve_buffers()` is called here, once.
/// Sources that block (local files) use `blocking_executor`, or the coroutine's executor when
/// it is empty. Completes when the data has ended (`data_ended`) or the sink stopped the run;
/// throws what a source, a policy or a stage throws, and `std::invalid_argument` for options
/// that cannot work.
template <record_decoder Framing, record_parser Parser, batch_sink Sink>
asio::awaitable<pipeline_result> async_run_pipeline(source_provider& provider, Framing framing, Parser parser,
                                                    Sink sink, reader_options options = {},
                                                    asio::any_io_executor blocking_executor = {})
{
    detail::start_pipeline(provider, options, "pipemode::run_pipeline");
    detail::stats_counters stats;
    const detail::pipeline_context ctx{&options, &stats, &provider, std::move(blocking_executor),
                                       batch_pool::make(detail::pipeline_pool_size(options), options.batch_memory)};
    const bool ended = co_await detail::run_batch_pipeline(
        ctx, std::move(framing), std::move(parser), detail::counting_sink<Sink>(std::move(sink), &stats));
    co_return pipeline_result{ended, stats.snapshot()};
}

/// Runs `provider`'s sources through `framing` and `sink`, with no parser: each framed record
/// goes to the record sink as it is (a RecordIO writer, Pipe mode's FIFO). The same pipeline
/// as `async_run_pipeline` up to the parser: sources, framing, the bad-record policies for
/// framing errors, the record-level shuffle and positions. `stats.records` counts the records
/// put; there are no batches. `memory_budget` is given to the provider's `reserve_buffers()`
/// (an HTTP stream's window is sized from it) and bounds nothing else: what the pipeline holds
/// is the sources' buffers, the framing's largest record, the shuffle block and the sink's own.
template <record_decoder Framing, record_sink Sink>
asio::awaitable<pipeline_result> async_run_record_pipeline(source_provider& provider, Framing framing, Sink sink,
                                                           reader_options options = {},
                                                           asio::any_io_executor blocking_executor = {})
{
    detail::start_record_pipeline(provider, options, "pipemode::run_record_pipeline");
    detail::stats_counters stats;
    const detail::pipeline_context ctx{&options, &stats, &provider, std::move(blocking_executor), nullptr};
    const bool ended = co_await detail::run_record_pipeline(ctx, std::move(framing), std::move(sink));
    co_return pipeline_result{ended, stats.snapshot()};
}

/// Runs a pipeline composed of the caller's stages on the calling thread, until the data ends
/// or the sink stops it, and rethrows its error: source -> `framing` -> `parser` -> batches ->
/// `sink`. See `async_run_pipeline` for what the options mean here.
///
/// An event loop (and a one-thread pool for blocking file reads) runs on this thread for the
/// call; the sink is called on it. Use `pipemode::reader` instead to decode on a thread of
/// its own while the training loop works.
///
/// \code
/// std::uint64_t rows = 0;
/// auto result = pipemode::run_pipeline(
///     pipemode::local_files({"train.rec"}), pipemode::recordio_decoder{}, pipemode::protobuf_record_parser{},
///     pipemode::callback_sink([&](pipemode::batch& b) { rows += b.size(); }), {.batch_size = 256});
/// \endcode
template <record_decoder Framing, record_parser Parser, batch_sink Sink>
pipeline_result run_pipeline(std::unique_ptr<source_provider> provider, Framing framing, Parser parser, Sink sink,
                             reader_options options = {})
{
    return detail::run_on_this_thread(std::move(provider), [&](source_provider& p, asio::any_io_executor blocking) {
        return async_run_pipeline(p, std::move(framing), std::move(parser), std::move(sink), std::move(options),
                                  std::move(blocking));
    });
}

/// Runs a record pipeline (source -> `framing` -> record `sink`) on the calling thread, until
/// the data ends or the sink stops it, and rethrows its error. See `async_run_record_pipeline`.
template <record_decoder Framing, record_sink Sink>
pipeline_result run_record_pipeline(std::unique_ptr<source_provider> provider, Framing framing, Sink sink,
                                    reader_options options = {})
{
    return detail::run_on_this_thread(std::move(provider), [&](source_provider& p, asio::any_io_executor blocking) {
        return async_run_record_pipeline(p, std::move(framing), std::move(sink), std::move(options),
                                         std::move(blocking));
    });
}

} // namespace pipemode
