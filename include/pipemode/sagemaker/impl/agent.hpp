// pipemode: definitions of sagemaker/agent.hpp. Included at the bottom of agent.hpp only.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/framing/chunks.hpp>
#include <pipemode/pipeline/pipeline.hpp>
#include <pipemode/sagemaker/channel_reader.hpp>
#include <pipemode/sagemaker/fifo_byte_writer.hpp>
#include <pipemode/sagemaker/fifo_sink.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
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
    std::vector<fifo_writer*> writers;  // each channel's writer of the moment, or null

    /// Cancels every channel (network thread).
    void cancel_all()
    {
        stop_requested = true;
        for (auto* w : writers)
            if (w != nullptr)
                w->cancel();
        for (auto& c : cancel)
            c->emit(asio::cancellation_type::terminal);
    }
};

/// Thrown inside a channel's coroutine when the agent is stopping: not an error.
struct agent_stopping {};

/// One channel's job: what its coroutine needs; owned by that coroutine.
struct agent_channel_job {
    std::size_t index = 0;
    channel_config channel;
    agent_source source;
    agent_options options;
    data_set_options plan;
    std::shared_ptr<agent_shared> shared;

    void event(agent_event_kind kind, std::uint64_t epoch, std::uint64_t bytes, std::uint64_t objects,
               std::chrono::steady_clock::time_point since = {}) const
    {
        if (!options.on_event)
            return;
        agent_event e{.channel = channel.name, .kind = kind, .epoch = epoch, .bytes = bytes, .objects = objects};
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

/// Makes a channel's writer of the moment reachable by `stop()` for its lifetime. (A class of
/// its own: GCC 12 cannot precompile a class local to a coroutine.)
class agent_writer_registration {
public:
    agent_writer_registration(agent_channel_job& job, fifo_writer& w) : job_(job) { job_.shared->writers[job_.index] = &w; }
    agent_writer_registration(const agent_writer_registration&) = delete;
    agent_writer_registration& operator=(const agent_writer_registration&) = delete;
    ~agent_writer_registration() { job_.shared->writers[job_.index] = nullptr; }

private:
    agent_channel_job& job_;
};

/// The reader options the store's providers size their buffers from.
inline reader_options agent_reader_options(const agent_options& o)
{
    reader_options r;
    r.memory_budget = o.memory_budget;
    r.read_size = o.read_size;
    return r;
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

/// Delivers one epoch of a channel; false when the reader closed its FIFO early.
inline asio::awaitable<bool> agent_epoch(std::shared_ptr<agent_channel_job> job, std::vector<object_entry> objects,
                                         std::uint64_t epoch, source_context ctx)
{
    const std::vector<work_item> plan = plan_epoch(objects, job->plan.plan, epoch);
    std::vector<object_read> reads;
    reads.reserve(plan.size());
    for (const work_item& item : plan) {
        const object_entry& e = objects[item.object];
        reads.push_back(object_read{.uri = e.uri, .size = e.size});  // whole objects
    }

    fifo_writer w(ctx.executor, job->options.data_dir, pipe_path(job->options.data_dir, job->channel.name, epoch),
                  job->options.fifo);
    const agent_writer_registration registered(*job, w);

    job->update([&](channel_progress& p) {
        p.epoch = epoch;
        p.epoch_bytes = 0;
        p.waiting = true;
    });
    job->event(agent_event_kind::waiting, epoch, 0, plan.size());
    if (const error_code ec = co_await w.async_wait_for_reader()) {
        job->check_stop();
        throw std::runtime_error("no reader opened " + w.path().string() + ": " + ec.message());
    }
    job->check_stop();
    const auto start = std::chrono::steady_clock::now();
    job->update([&](channel_progress& p) {
        p.waiting = false;
        p.epoch_start = start;
    });
    job->event(agent_event_kind::streaming, epoch, 0, plan.size(), start);

    const auto bytes_now = [&] {
        const std::lock_guard lock(job->shared->mutex);
        return job->shared->progress[job->index].epoch_bytes;
    };
    bool whole = true;
    if (!reads.empty()) {
        // The epoch is a pipeline: the objects' reads, each handed on as it arrives
        // (chunk_decoder), into the FIFO as they are or each wrapped in one RecordIO record.
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
        fifo_byte_writer fifo(w, [job](std::size_t n) {
            job->update([&](channel_progress& p) {
                p.epoch_bytes += n;
                p.total_bytes += n;
            });
            job->check_stop();
        });
        const pipeline_result r = co_await async_run_record_pipeline(
            *provider, chunk_decoder{}, fifo_sink(std::move(fifo), std::move(sink_options)),
            agent_reader_options(job->options), ctx.blocking_executor);
        whole = r.data_ended;
    }
    w.close();  // the reader's end of file; the FIFO is removed
    job->event(whole ? agent_event_kind::epoch_done : agent_event_kind::reader_closed, epoch, bytes_now(), plan.size(),
               start);
    co_return whole;
}

/// Delivers every epoch of one channel.
inline asio::awaitable<void> agent_channel(std::shared_ptr<agent_channel_job> job, source_context ctx)
{
    std::uint64_t epoch = 0;
    try {
        std::vector<object_entry> objects = co_await job->source.store->async_list(ctx);
        job->check_stop();
        if (objects.empty())
            throw std::runtime_error(job->source.store->describe() + ": the listing found no objects");
        job->event(agent_event_kind::listed, 0, 0, objects.size());
        for (; job->options.epochs == 0 || epoch < job->options.epochs; ++epoch)
            (void)co_await agent_epoch(job, objects, epoch, ctx);
        job->update([](channel_progress& p) { p.done = true; });
        job->event(agent_event_kind::finished, epoch - 1, 0, 0);
    } catch (const agent_stopping&) {
        co_return;
    } catch (const std::exception& e) {
        if (job->shared->stop_requested)
            co_return;  // a wait or a read cut short by stop()
        throw std::runtime_error("pipemode-agent: channel '" + job->channel.name + "', epoch " + std::to_string(epoch)
                                 + ": " + e.what());
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
    for (const fs::path& dir : {options_.data_dir, options_.config_dir}) {
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
    shared.writers.assign(streamed_.size(), nullptr);
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
