// pipemode: definitions of sagemaker/agent.hpp. Included at the bottom of agent.hpp only.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/framing/chunks.hpp>
#include <pipemode/pipeline/pipeline.hpp>
#include <pipemode/sagemaker/channel_reader.hpp>
#include <pipemode/sagemaker/fanout_byte_writer.hpp>
#include <pipemode/sagemaker/fifo_byte_writer.hpp>
#include <pipemode/sagemaker/fifo_sink.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <fstream>
#include <optional>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace pipemode::sagemaker {
namespace detail {

/// What `run()`, `stop()`, `progress()` and the channels' coroutines share.
struct agent_shared {
    asio::io_context io;
    std::atomic<bool> stop_requested{false};  // stop() was called, or a channel failed
    std::atomic<bool> stop_called{false};

    std::mutex mutex;  // guards progress and first_error
    std::vector<channel_progress> progress;
    std::exception_ptr first_error;

    // Network thread only.
    std::vector<std::unique_ptr<asio::cancellation_signal>> cancel;
    std::vector<std::vector<fifo_writer*>> writers;  // each channel's writers of the moment

    /// Cancels every channel (network thread).
    void cancel_all()
    {
        stop_requested = true;
        for (auto& channel : writers)
            for (auto* w : channel)
                w->cancel();
        for (auto& c : cancel)
            c->emit(asio::cancellation_type::terminal);
    }
};

/// Thrown inside a channel's coroutine when the agent is stopping: not an error.
struct agent_stopping {};

/// A channel's failure, already naming the channel, epoch (and consumer): passed on as it is.
struct agent_channel_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One pipeline's part of a channel: the consumers it writes to, the plan it reads, and its
/// read-ahead. A replicated channel (or one consumer) is one stream to every consumer; a
/// sharded channel with several consumers one stream per consumer, each its own share.
struct agent_stream {
    std::vector<std::size_t> consumers;
    plan_options plan;
    std::size_t memory_budget = 0;
};

/// One channel's job: what its coroutine needs; owned by that coroutine.
struct agent_channel_job {
    std::size_t index = 0;
    channel_config channel;
    agent_source source;
    agent_options options;
    data_set_options plan;
    std::shared_ptr<agent_shared> shared;

    void event(agent_event_kind kind, std::uint64_t epoch, std::uint64_t bytes, std::uint64_t objects,
               std::chrono::steady_clock::time_point since = {}, std::size_t consumer = 0) const
    {
        if (!options.on_event)
            return;
        agent_event e{.channel = channel.name, .kind = kind, .epoch = epoch, .bytes = bytes, .objects = objects,
                      .consumer = consumer};
        if (since != std::chrono::steady_clock::time_point{})
            e.elapsed = std::chrono::steady_clock::now() - since;
        options.on_event(e);
    }

    template <class F>
    void update(F&& f) const
    {
        const std::lock_guard lock(shared->mutex);
        f(shared->progress[index]);
    }

    void check_stop() const
    {
        if (shared->stop_requested)
            throw agent_stopping{};
    }
};

/// Makes a stream's writers of the moment reachable by `stop()` for their lifetime. (A class
/// of its own: GCC 12 cannot precompile a class local to a coroutine.)
class agent_writer_registration {
public:
    agent_writer_registration(agent_channel_job& job, std::vector<fifo_writer>& ws) : job_(job)
    {
        for (auto& w : ws)
            mine_.push_back(&w);
        auto& all = job_.shared->writers[job_.index];
        all.insert(all.end(), mine_.begin(), mine_.end());
    }
    agent_writer_registration(const agent_writer_registration&) = delete;
    agent_writer_registration& operator=(const agent_writer_registration&) = delete;
    ~agent_writer_registration()
    {
        auto& all = job_.shared->writers[job_.index];
        std::erase_if(all, [&](fifo_writer* w) { return std::find(mine_.begin(), mine_.end(), w) != mine_.end(); });
    }

private:
    agent_channel_job& job_;
    std::vector<fifo_writer*> mine_;
};

/// The reader options the store's providers size their buffers from.
inline reader_options agent_reader_options(const agent_options& o, std::size_t memory_budget = 0)
{
    reader_options r;
    r.memory_budget = memory_budget != 0 ? memory_budget : o.memory_budget;
    r.read_size = o.read_size;
    return r;
}

/// The streams of a channel (see `agent_stream`).
inline std::vector<agent_stream> agent_streams(const agent_channel_job& job)
{
    const std::size_t n = job.options.consumers;
    const plan_options& base = job.plan.plan;
    std::vector<agent_stream> streams;
    if (n == 1 || base.shard.mode == shard_mode::replicated) {
        agent_stream all{.consumers = {}, .plan = base, .memory_budget = job.options.memory_budget};
        for (std::size_t i = 0; i < n; ++i)
            all.consumers.push_back(i);
        streams.push_back(std::move(all));
        return streams;
    }
    // Sharded: the host's consumers are dealt shares as further hosts would be, so that the
    // job's processes together read each object once per epoch, whatever the host count.
    for (std::size_t i = 0; i < n; ++i) {
        agent_stream one{.consumers = {i}, .plan = base, .memory_budget = std::max<std::size_t>(job.options.memory_budget / n, 1)};
        one.plan.shard.rank = base.shard.rank * n + i;
        one.plan.shard.world_size = base.shard.world_size * n;
        streams.push_back(std::move(one));
    }
    return streams;
}

/// The length of an object as its source delivers it (inflated, for a gzip channel): read once
/// to its end. For RecordIO wrapping of an object longer than the window whose length the
/// listing cannot give.
inline asio::awaitable<std::uint64_t> agent_measure(std::shared_ptr<agent_channel_job> job, object_read read,
                                                    source_context ctx)
{
    std::vector<object_read> reads{std::move(read)};
    auto provider = job->source.store->open(std::move(reads));
    (void)provider->reserve_buffers(agent_reader_options(job->options));
    auto source = co_await provider->async_next_source(ctx);
    if (!source)
        throw std::logic_error("pipemode: agent: a store opened for one object gave no source");
    std::uint64_t n = 0;
    for (;;) {
        auto [ec, chunk] = co_await source->async_next();
        job->check_stop();
        if (ec == asio::error::eof)
            co_return n;
        if (ec) {
            const std::string detail = source->error_detail();
            throw data_error(ec, {std::string(source->name()), n, 0}, detail.empty() ? "reading the source failed" : detail);
        }
        n += chunk.size();
    }
}

/// Delivers one epoch of a stream of a channel into its consumers' FIFOs; false when every
/// reader closed its FIFO early.
inline asio::awaitable<bool> agent_epoch(std::shared_ptr<agent_channel_job> job, std::vector<object_entry> objects,
                                         std::uint64_t epoch, agent_stream stream, source_context ctx)
{
    const std::vector<work_item> plan = plan_epoch(objects, stream.plan, epoch);
    std::vector<object_read> reads;
    reads.reserve(plan.size());
    for (const work_item& item : plan) {
        const object_entry& e = objects[item.object];
        reads.push_back(object_read{.uri = e.uri, .size = e.size});  // whole objects
    }

    const std::size_t n = stream.consumers.size();
    std::vector<fifo_writer> writers;
    writers.reserve(n);  // registered by address below: never reallocated
    for (const std::size_t c : stream.consumers) {
        const std::filesystem::path dir = consumer_data_dir(job->options.data_dir, c, job->options.consumers);
        if (dir != job->options.data_dir) {
            // Not recursive: a data directory that is missing is refused by fifo_writer, as
            // with one consumer.
            std::error_code ignored;
            std::filesystem::create_directory(dir, ignored);
        }
        writers.emplace_back(ctx.executor, dir, pipe_path(dir, job->channel.name, epoch), job->options.fifo);
    }
    const agent_writer_registration registered(*job, writers);

    job->update([&](channel_progress& p) {
        p.epoch = epoch;
        p.epoch_bytes = 0;
        p.waiting = true;
    });
    for (std::size_t k = 0; k < n; ++k)
        job->event(agent_event_kind::waiting, epoch, 0, plan.size(), {}, stream.consumers[k]);
    // Every consumer's reader before the first byte: the stream goes at the pace of the slowest.
    for (fifo_writer& w : writers) {
        const error_code ec = co_await w.async_wait_for_reader();
        job->check_stop();
        if (ec)
            throw std::runtime_error("no reader opened " + w.path().string() + ": " + ec.message());
    }
    const auto start = std::chrono::steady_clock::now();
    job->update([&](channel_progress& p) {
        p.waiting = false;
        p.epoch_start = start;
    });
    for (std::size_t k = 0; k < n; ++k)
        job->event(agent_event_kind::streaming, epoch, 0, plan.size(), start, stream.consumers[k]);

    const auto consumer_bytes = std::make_shared<std::vector<std::uint64_t>>(n, 0);
    bool whole = true;
    if (!reads.empty()) {
        // The epoch is a pipeline: the objects' reads, each handed on as it arrives
        // (chunk_decoder), into the FIFO as they are or each wrapped in one RecordIO record;
        // with several consumers, the same bytes into each consumer's FIFO (fanout_byte_writer).
        auto provider = job->source.store->open(reads);
        const auto planned = std::make_shared<const std::vector<object_read>>(std::move(reads));
        const bool sizes_exact = job->source.sizes_exact;
        fifo_sink_options sink_options{
            .wrap_recordio = job->source.wrap_recordio,
            .recordio_window = job->options.recordio_window,
            .length = [planned, sizes_exact](std::uint64_t item) -> std::optional<std::uint64_t> {
                if (!sizes_exact || item >= planned->size())
                    return std::nullopt;
                return (*planned)[item].size;
            },
            .measure = [job, planned, ctx](std::uint64_t item) { return agent_measure(job, planned->at(item), ctx); },
        };
        std::vector<fifo_byte_writer> each;
        each.reserve(n);
        for (std::size_t k = 0; k < n; ++k)
            each.emplace_back(writers[k], [job, consumer_bytes, k](std::size_t bytes) {
                (*consumer_bytes)[k] += bytes;
                job->update([&](channel_progress& p) {
                    p.epoch_bytes += bytes;
                    p.total_bytes += bytes;
                });
                job->check_stop();
            });
        const reader_options ro = agent_reader_options(job->options, stream.memory_budget);
        if (n == 1) {
            const pipeline_result r = co_await async_run_record_pipeline(
                *provider, chunk_decoder{}, fifo_sink(std::move(each.front()), std::move(sink_options)), ro,
                ctx.blocking_executor);
            whole = r.data_ended;
        }
        else {
            // Named first: GCC 12 destroys a temporary built inside a co_await twice.
            fifo_sink sink(fanout_byte_writer(std::move(each)), std::move(sink_options));
            const chunk_decoder decoder{};
            const pipeline_result r =
                co_await async_run_record_pipeline(*provider, decoder, std::move(sink), ro, ctx.blocking_executor);
            whole = r.data_ended;
        }
    }
    for (fifo_writer& w : writers)
        w.close();  // each reader's end of file; the FIFOs are removed
    for (std::size_t k = 0; k < n; ++k) {
        const bool done = whole && !writers[k].reader_closed();
        job->event(done ? agent_event_kind::epoch_done : agent_event_kind::reader_closed, epoch, (*consumer_bytes)[k],
                   plan.size(), start, stream.consumers[k]);
    }
    co_return whole;
}

/// Delivers every epoch of one stream of a channel. Throws `agent_channel_error` naming the
/// channel, the epoch and (with several consumers) the consumer.
inline asio::awaitable<void> agent_stream_epochs(std::shared_ptr<agent_channel_job> job,
                                                 std::shared_ptr<const std::vector<object_entry>> objects,
                                                 agent_stream stream, source_context ctx)
{
    std::uint64_t epoch = 0;
    try {
        for (; job->options.epochs == 0 || epoch < job->options.epochs; ++epoch)
            (void)co_await agent_epoch(job, *objects, epoch, stream, ctx);
    } catch (const agent_stopping&) {
        throw;
    } catch (const std::exception& e) {
        if (job->shared->stop_requested)
            throw agent_stopping{};  // a wait or a read cut short by stop()
        std::string where = "pipemode-agent: channel '" + job->channel.name + "', epoch " + std::to_string(epoch);
        if (job->options.consumers > 1 && stream.consumers.size() == 1)
            where += ", consumer " + std::to_string(stream.consumers.front());
        throw agent_channel_error(where + ": " + e.what());
    }
}

/// Delivers every epoch of one channel: its streams at once.
inline asio::awaitable<void> agent_channel(std::shared_ptr<agent_channel_job> job, source_context ctx)
{
    try {
        std::vector<object_entry> listed = co_await job->source.store->async_list(ctx);
        job->check_stop();
        if (listed.empty())
            throw std::runtime_error(job->source.store->describe() + ": the listing found no objects");
        job->event(agent_event_kind::listed, 0, 0, listed.size());
        const auto objects = std::make_shared<const std::vector<object_entry>>(std::move(listed));
        std::vector<agent_stream> streams = agent_streams(*job);
        if (streams.size() == 1)
            co_await agent_stream_epochs(job, objects, std::move(streams.front()), ctx);
        else {
            // The consumers of a sharded channel go through their epochs independently; the
            // first failure cancels the others (the agent stops anyway).
            using op_type = decltype(asio::co_spawn(ctx.executor, agent_stream_epochs(job, objects, streams.front(), ctx),
                                                    asio::deferred));
            std::vector<op_type> ops;
            for (agent_stream& st : streams)
                ops.push_back(asio::co_spawn(ctx.executor, agent_stream_epochs(job, objects, std::move(st), ctx), asio::deferred));
            auto group = asio::experimental::make_parallel_group(std::move(ops));
            const asio::experimental::wait_for_one_error condition;
            auto outcome = co_await group.async_wait(condition, asio::use_awaitable);
            auto& [order, errors] = outcome;
            for (const std::size_t k : order)
                if (errors[k])
                    std::rethrow_exception(errors[k]);
        }
        job->update([](channel_progress& p) { p.done = true; });
        job->event(agent_event_kind::finished, job->options.epochs == 0 ? 0 : job->options.epochs - 1, 0, 0);
    } catch (const agent_stopping&) {
        co_return;
    } catch (const agent_channel_error&) {
        throw;
    } catch (const std::exception& e) {
        if (job->shared->stop_requested)
            co_return;  // a wait or a read cut short by stop()
        throw std::runtime_error("pipemode-agent: channel '" + job->channel.name + "', epoch 0: " + e.what());
    }
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
inline void write_file_atomically(const std::filesystem::path& path, const std::string& text)
{
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text << '\n';
        out.close();
        if (!out)
            throw std::system_error(errno ? errno : EIO, std::generic_category(), "pipemode-agent: cannot write " + tmp.string());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec)
        throw std::system_error(ec, "pipemode-agent: cannot rename " + tmp.string() + " to " + path.string());
}

} // namespace detail

inline agent_source agent_source_for(const channel_config& channel, const agent_options& options)
{
    agent_source s;
    // The hook and the cache go below the inflation of a gzip channel: the cache keeps the
    // objects as listed (compressed, of the listing's sizes), which is what it can check.
    channel_config raw = channel;
    if (channel.data_type != s3_data_type::augmented_manifest_file)
        raw.compression = compression::none;
    s.store = channel_store(raw, options.s3, options.read_size);
    if (options.wrap_store)
        s.store = options.wrap_store(channel, std::move(s.store));
    if (options.cache)
        s.store = cache::caching_store(std::move(s.store), *options.cache);
    if (raw.compression != channel.compression)
        s.store = gunzip(std::move(s.store));
    if (channel.data_type == s3_data_type::augmented_manifest_file) {
        // Each object is one manifest line whose bytes are already what Pipe mode writes for
        // it: one RecordIO record per attribute (unframed under RecordWrapperType None).
        s.wrap_recordio = false;
        return s;
    }
    s.wrap_recordio = channel.record_wrapper == record_wrapper::recordio;
    s.sizes_exact = channel.compression == compression::none;
    return s;
}

inline agent::agent(std::vector<channel_config> job, agent_options options, const std::vector<std::string>& only)
    : job_(std::move(job)), options_(std::move(options)), shared_(std::make_shared<detail::agent_shared>())
{
    if (job_.empty())
        throw std::invalid_argument("pipemode-agent: the configuration has no channels");
    // Absolute, so that a FIFO's path means the same to the writer and in messages.
    options_.data_dir = std::filesystem::absolute(options_.data_dir);
    options_.config_dir = std::filesystem::absolute(options_.config_dir);
    std::string names;
    for (const auto& c : job_) {
        validate_channel_name(c.name);
        names += (names.empty() ? "" : ", ") + c.name;
    }
    for (const auto& n : only)
        if (std::none_of(job_.begin(), job_.end(), [&](const channel_config& c) { return c.name == n; }))
            throw std::invalid_argument("pipemode-agent: the configuration has no channel '" + n
                                        + "'; its channels are: " + names);
    for (const auto& c : job_) {
        if (!only.empty() && std::find(only.begin(), only.end(), c.name) == only.end())
            continue;
        if (c.mode != input_mode::pipe)
            throw std::invalid_argument("pipemode-agent: channel '" + c.name + "' has InputMode "
                                        + std::string(to_string(c.mode))
                                        + "; the agent streams Pipe-mode channels only (set InputMode to Pipe, or "
                                          "leave the channel out with --channel)");
        if (c.distribution == distribution::sharded_by_s3_key && options_.sharded_mode == shard_mode::by_byte_range)
            throw std::invalid_argument("pipemode-agent: channel '" + c.name
                                        + "' is ShardedByS3Key, and the agent writes whole objects, so it cannot "
                                          "shard by byte range (that needs the records' boundaries); shard by object "
                                          "or by bytes, or read the channel directly with open_channel()");
        streamed_.push_back(c);
    }
    if (options_.cluster.world_size == 0 || options_.cluster.rank >= options_.cluster.world_size)
        throw std::invalid_argument("pipemode-agent: this host's rank must be below the number of hosts");
    if (options_.consumers == 0)
        throw std::invalid_argument("pipemode-agent: the number of consumers must be at least 1");
    if (options_.recordio_window == 0)
        throw std::invalid_argument("pipemode-agent: the RecordIO window must be at least 1 byte");
    // A channel that cannot be read at all (an empty URI, a manifest that is not on S3) fails
    // here, before any file or FIFO exists.
    for (const auto& c : streamed_)
        sources_.push_back(agent_source_for(c, options_));
}

inline agent::~agent() = default;

inline void agent::write_config_files() const
{
    namespace fs = std::filesystem;
    std::error_code ec;
    std::vector<fs::path> dirs{options_.data_dir, options_.config_dir};
    for (std::size_t i = 0; options_.consumers > 1 && i < options_.consumers; ++i)
        dirs.push_back(consumer_data_dir(options_.data_dir, i, options_.consumers));
    for (const fs::path& dir : dirs) {
        fs::create_directories(dir, ec);
        if (ec)
            throw std::system_error(ec, "pipemode-agent: cannot create the directory " + dir.string());
    }
    detail::write_file_atomically(options_.config_dir / "inputdataconfig.json", write_container_input_data_config(job_));
    if (!options_.cluster.hosts.empty())
        detail::write_file_atomically(options_.config_dir / "resourceconfig.json",
                                      write_resource_config(options_.cluster.hosts, options_.cluster.current_host));
}

inline void agent::run()
{
    auto& shared = *shared_;
    asio::thread_pool blocking(2);
    const source_context ctx{shared.io.get_executor(), blocking.get_executor()};
    {
        const std::lock_guard lock(shared.mutex);
        shared.progress.clear();
        for (const auto& c : streamed_)
            shared.progress.push_back(channel_progress{.channel = c.name});
    }
    shared.writers.assign(streamed_.size(), {});
    shared.cancel.clear();
    if (sources_.size() != streamed_.size())
        throw std::logic_error("pipemode-agent: agent::run() may be called once");
    std::vector<std::shared_ptr<detail::agent_channel_job>> jobs;
    for (std::size_t i = 0; i < streamed_.size(); ++i) {
        auto job = std::make_shared<detail::agent_channel_job>();
        job->index = i;
        job->channel = streamed_[i];
        job->source = std::move(sources_[i]);
        job->options = options_;
        channel_read_options ro;
        ro.cluster = options_.cluster;
        ro.sharded_mode = options_.sharded_mode;
        job->plan = channel_data_set_options(streamed_[i], ro);
        job->plan.plan.splittable = false;  // whole objects
        job->shared = shared_;
        jobs.push_back(std::move(job));
    }
    sources_.clear();
    for (auto& job : jobs) {
        shared.cancel.push_back(std::make_unique<asio::cancellation_signal>());
        asio::co_spawn(shared.io, detail::agent_channel(job, ctx),
                       asio::bind_cancellation_slot(shared.cancel.back()->slot(), [s = shared_](std::exception_ptr e) {
                           if (!e)
                               return;
                           {
                               const std::lock_guard lock(s->mutex);
                               if (s->first_error)
                                   return;
                               s->first_error = e;
                           }
                           s->cancel_all();  // one channel failed: the job cannot go on
                       }));
    }
    if (shared.stop_requested)
        shared.cancel_all();
    shared.io.run();
    blocking.join();
    const std::lock_guard lock(shared.mutex);
    if (shared.first_error)
        std::rethrow_exception(shared.first_error);
}

inline void agent::stop()
{
    shared_->stop_called = true;
    shared_->stop_requested = true;
    asio::post(shared_->io, [s = shared_] { s->cancel_all(); });
}

inline bool agent::stopped() const noexcept { return shared_->stop_called; }

inline std::vector<channel_progress> agent::progress() const
{
    const std::lock_guard lock(shared_->mutex);
    return shared_->progress;
}

} // namespace pipemode::sagemaker
