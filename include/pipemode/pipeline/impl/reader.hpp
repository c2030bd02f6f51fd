// pipemode: definitions of reader.hpp. Included at the bottom of reader.hpp only.
#pragma once

#include <pipemode/concurrency/bounded_channel.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/framing/grouped_record.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/detail/pipeline_run.hpp>
#include <pipemode/pipeline/format_stages.hpp>
#include <pipemode/pipeline/plan.hpp>
#include <pipemode/sources/fifo_source.hpp>
#include <pipemode/sources/file_source.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>

#include <sys/stat.h>

#include <chrono>
#include <iostream>
#include <numeric>
#include <stdexcept>
#include <thread>

namespace pipemode {
namespace detail {

/// A batch in the channel, with the bytes the memory budget charged for it (the consumer
/// releases them when it is done with the batch).
struct queued_batch {
    pipemode::batch batch;
    std::size_t bytes = 0;
    read_position after{};  ///< the position once the consumer has this batch
};

/// Everything a reader shares between the training loop's thread and its network thread.
///
/// Ownership: `reader` owns the core; the pipeline coroutine gets a plain pointer to it, which
/// is safe because the reader joins the network thread before the core is destroyed.
struct reader_core {
    reader_core(std::unique_ptr<source_provider> p, reader_options o, std::size_t batch_budget_bytes)
        : options(std::move(o))
        , batch_budget(batch_budget_bytes)
        , provider(std::move(p))
    {
    }

    const reader_options options;
    const std::size_t batch_budget;  ///< bytes of decoded batches allowed at once
    // Batch storage in circulation: the builder takes from it, batches give back to it from
    // whichever thread lets them go. There are at most prefetch_batches + 3 (the channel's, the
    // consumer's, a full one waiting for room and the one being built), and the builder
    // always holds one, so prefetch_batches + 2 idle ones is never too few. Decode workers add
    // two each: the one a worker's builder holds and the full one it made, waiting its turn
    // (pipeline_pool_size).
    const std::shared_ptr<batch_pool> pool = batch_pool::make(pipeline_pool_size(options), options.batch_memory);
    stats_counters stats;

    // Decoded batches on their way to the training loop: at most `prefetch_batches` wait in
    // it, and those plus the one the consumer holds stay within `batch_budget` bytes. The
    // network thread sends (deliver()), the training loop's thread receives and releases.
    bounded_channel<queued_batch> channel{{.items = options.prefetch_batches, .bytes = batch_budget}};

    // Consumer side.
    batch current;
    std::size_t current_bytes = 0;  ///< budget held by `current` (or by the batch last returned by next())
    std::optional<read_position> position;  ///< after the last batch handed to the consumer
    bool done = false;

    // Declared last so they are destroyed first: the io_context's destructor destroys a
    // suspended pipeline coroutine, whose frame refers to the members above.
    std::thread thread;
    asio::thread_pool blocking_pool{1};
    asio::io_context io{1};
    // Destroyed before the io_context: a provider may hold objects bound to it (an HTTP
    // stream's waker on the reader's executor), and after the pipeline's thread has ended.
    std::unique_ptr<source_provider> provider;
    asio::cancellation_signal cancel;
};

/// Hands a finished batch to the channel, waiting (without blocking the thread) until fewer
/// than `prefetch_batches` batches wait and the batch budget has room for it (a lone batch
/// always fits, or an oversized batch would stall for ever). Returns false when the consumer
/// has gone away.
inline asio::awaitable<bool> deliver(reader_core* core, batch b, read_position after)
{
    const std::size_t bytes = b.byte_size();
    const auto records = static_cast<std::uint64_t>(b.size() - b.padding());
    queued_batch item{std::move(b), bytes, after};
    if (!core->channel.try_send(std::move(item), bytes)) {
        if (core->channel.consumer_gone())
            co_return false;
        const auto stall_start = std::chrono::steady_clock::now();
        const bool sent = co_await core->channel.async_send(std::move(item), bytes);
        stats_counters::add(core->stats.producer_stall_ns,
                            std::int64_t((std::chrono::steady_clock::now() - stall_start).count()));
        if (!sent)
            co_return false;
    }
    // Read after the send: the consumer may have released some since, so this can be low by
    // a batch the consumer has just finished; it is a statistic.
    const auto held = core->channel.held_bytes();
    if (held > core->stats.peak_batch_bytes.load(std::memory_order_relaxed))
        core->stats.peak_batch_bytes.store(held, std::memory_order_relaxed);
    stats_counters::add(core->stats.records, records);
    stats_counters::add(core->stats.batches, std::uint64_t{1});
    co_return true;
}

/// The reader's end of its pipeline: the batch sink that hands each batch to the channel the
/// training loop takes them from (`deliver()`), and closes it at the end of the data. Errors
/// reach the channel through the pipeline's completion handler (`reader::launch`).
class reader_channel_sink {
public:
    explicit reader_channel_sink(reader_core* core) noexcept : core_(core) {}

    asio::awaitable<bool> async_write(batch b, read_position after) { return deliver(core_, std::move(b), after); }

    asio::awaitable<void> async_close()
    {
        core_->channel.close();
        co_return;
    }

private:
    reader_core* core_;
};

static_assert(batch_sink<reader_channel_sink>);
static_assert(record_decoder<record_group_decoder<recordio_decoder>>);

/// What the reader's pipeline reads from its core.
inline pipeline_context pipeline_context_of(reader_core& core)
{
    return {&core.options, &core.stats, core.provider.get(), core.blocking_pool.get_executor(), core.pool};
}

} // namespace detail

inline reader::reader(std::unique_ptr<source_provider> provider, reader_options options)
{
    // Each format is a framing decoder and a record parser from the library, started through
    // the same entry as a caller's own pair. The pair is built before `options` is moved
    // into start().
    const std::string who = "pipemode::reader: " + (provider ? provider->describe() : std::string("no provider"));
    const reader_options& given = options;
    visit_format_stages(
        given,
        [&](auto framing, auto parser) {
            start(std::move(provider), std::move(options), std::move(framing), std::move(parser));
        },
        who);
}

template <record_decoder Framing, record_parser Parser>
reader::reader(std::unique_ptr<source_provider> provider, Framing framing, Parser parser, reader_options options)
{
    start(std::move(provider), std::move(options), std::move(framing), std::move(parser));
}

template <record_decoder Framing, record_parser Parser>
void reader::start(std::unique_ptr<source_provider> provider, reader_options options, Framing framing, Parser parser)
{
    detail::reader_core& core = make_core(std::move(provider), std::move(options));
    // The coroutine's frame takes the pair now; it runs once launch() has spawned it. The
    // reader is the batch pipeline with its channel as the sink.
    launch([](detail::pipeline_context ctx, Framing f, Parser p, detail::reader_channel_sink sink) -> asio::awaitable<void> {
        (void)co_await detail::run_batch_pipeline(std::move(ctx), std::move(f), std::move(p), std::move(sink));
    }(detail::pipeline_context_of(core), std::move(framing), std::move(parser), detail::reader_channel_sink(&core)));
}

inline detail::reader_core& reader::make_core(std::unique_ptr<source_provider> provider, reader_options options)
{
    if (!provider)
        throw std::invalid_argument("pipemode::reader: no source provider given.");
    const auto budget = detail::checked_batch_budget(options, provider->reserve_buffers(options));
    core_ = std::make_unique<detail::reader_core>(std::move(provider), std::move(options), budget);
    return *core_;
}

inline void reader::launch(asio::awaitable<void> pipeline)
{
    auto* core = core_.get();
    asio::co_spawn(core->io, std::move(pipeline),
                   asio::bind_cancellation_slot(core->cancel.slot(), [core](std::exception_ptr e) {
                       if (e)
                           core->channel.fail(e);
                   }));
    core->thread = std::thread([core] {
        try {
            core->io.run();
        } catch (...) {
            // Handlers do not throw (the pipeline's completion handler turns exceptions into
            // channel errors); anything else would be a pipemode bug. Make sure the consumer sees it.
            core->channel.fail(std::current_exception());
        }
    });
}

inline reader::reader(std::vector<std::string> paths, reader_options options)
    : reader(local_files(std::move(paths), options.read_size), std::move(options))
{
}

inline reader::reader(reader&&) noexcept = default;
inline reader& reader::operator=(reader&&) noexcept = default;

inline reader::~reader()
{
    if (!core_)
        return;
    auto* core = core_.get();
    // Tell the producer to stop and wake it if it waits for room, then cancel whatever the
    // pipeline awaits (a read, a timer) on its own thread.
    core->channel.cancel();
    asio::post(core->io, [core] { core->cancel.emit(asio::cancellation_type::terminal); });
    // Every operation pipemode awaits honours cancellation, so the thread ends promptly. No
    // time limit: a source that ignored cancellation would be a bug, and a hang shows it where
    // a silent wait of seconds would hide it.
    core->thread.join();
    core->blocking_pool.join();
}

inline void reader::release_current() noexcept
{
    auto& core = *core_;
    core.current = batch{};
    if (core.current_bytes != 0) {
        core.channel.release(core.current_bytes);
        core.current_bytes = 0;
    }
}

inline bool reader::advance()
{
    auto& core = *core_;
    if (core.done)
        return false;
    // Release the batch the consumer is done with before waiting for the next one, so that a
    // budget of one batch cannot deadlock.
    release_current();
    const auto start = std::chrono::steady_clock::now();
    std::optional<detail::queued_batch> item;
    try {
        item = core.channel.receive();
    } catch (...) {
        core.done = true;
        throw;
    }
    detail::stats_counters::add(core.stats.consumer_stall_ns,
                                std::int64_t((std::chrono::steady_clock::now() - start).count()));
    if (!item) {
        core.done = true;
        return false;
    }
    core.current = std::move(item->batch);
    core.current_bytes = item->bytes;
    core.position = item->after;
    return true;
}

inline std::optional<batch> reader::next()
{
    if (!advance())
        return std::nullopt;
    // The caller now owns the batch; its budget is released on the next call.
    return std::move(core_->current);
}

inline bool reader::try_next(batch& out)
{
    auto& core = *core_;
    if (core.done)
        return false;
    detail::queued_batch item;
    channel_status status{};
    try {
        status = core.channel.try_receive(item);
    } catch (...) {
        core.done = true;
        throw;
    }
    if (status == channel_status::closed)
        core.done = true;
    if (status != channel_status::item)
        return false;
    release_current();
    core.current_bytes = item.bytes;
    core.position = item.after;
    out = std::move(item.batch);
    return true;
}

inline bool reader::done() const noexcept { return core_->done; }

inline std::optional<read_position> reader::position() const noexcept { return core_->position; }

inline reader_stats reader::stats() const noexcept { return core_->stats.snapshot(); }

inline const reader_options& reader::options() const noexcept { return core_->options; }

inline reader::iterator reader::begin()
{
    iterator it(this);
    if (advance())
        it.current_ = &core_->current;
    return it;
}

inline reader::iterator& reader::iterator::operator++()
{
    if (!reader_->advance())
        current_ = nullptr;
    return *this;
}

inline std::unique_ptr<source_provider> local_files(std::vector<std::string> paths, std::size_t read_size)
{
    std::vector<source_maker> makers;
    makers.reserve(paths.size());
    for (auto& path : paths) {
        makers.push_back([path = std::move(path), read_size](const source_context& ctx) {
            // Decided when the reader gets to the path, not at construction: a FIFO may be
            // created by its writer only just before it is read.
            struct ::stat st {};
            if (::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode))
                return any_byte_source(fifo_source(ctx.executor, path, fifo_source_options{.read_size = read_size}));
            return any_byte_source(file_source(
                ctx.executor, path,
                file_source_options{.read_size = read_size, .blocking_executor = ctx.blocking_executor}));
        });
    }
    const auto n = makers.size();
    return source_list(std::move(makers), std::to_string(n) + (n == 1 ? " local path" : " local paths"));
}

} // namespace pipemode
