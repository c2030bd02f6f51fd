// pipemode: the producer side of SageMaker's Pipe mode outside SageMaker: streams the channels
// of a training job into `<data_dir>/<channel>_<epoch>` FIFOs the way SageMaker does (sharding,
// per-epoch object shuffle, gzip inflation, RecordIO wrapping), and writes the container-side
// configuration files. The engine of `pipemode-agent`; usage and field mapping in docs/agent.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/cache/caching_store.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/plan.hpp>
#include <pipemode/s3/data_set.hpp>
#include <pipemode/sagemaker/channel.hpp>
#include <pipemode/sagemaker/cluster.hpp>
#include <pipemode/sagemaker/fifo_writer.hpp>
#include <pipemode/sagemaker/pipe_channel.hpp>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::sagemaker {

/// Where SageMaker puts the container's configuration files (inputdataconfig.json,
/// resourceconfig.json, hyperparameters.json).
inline constexpr std::string_view default_config_dir = "/opt/ml/input/config";

/// What happened to a channel; see `agent_options::on_event`.
enum class agent_event_kind {
    listed,          ///< the channel's objects were listed (`objects` says how many)
    waiting,         ///< the epoch's FIFO exists; waiting for the training program to open it
    streaming,       ///< a reader opened the FIFO; bytes are flowing
    epoch_done,      ///< the whole epoch was written and the FIFO closed (the reader gets EOF)
    reader_closed,   ///< the reader closed the FIFO before the end of the epoch: next epoch
    finished,        ///< every epoch was delivered
};

/// One event of one channel, reported through `agent_options::on_event`.
struct agent_event {
    std::string channel;
    agent_event_kind kind = agent_event_kind::listed;
    std::uint64_t epoch = 0;
    std::uint64_t bytes = 0;    ///< bytes written into this epoch's FIFO so far
    std::uint64_t objects = 0;  ///< `listed`: objects in the channel; otherwise this host's objects this epoch
    std::chrono::steady_clock::duration elapsed{};  ///< since the epoch's reader connected (0 before)
    /// The consumer whose FIFO this is (`agent_options::consumers`); 0 with one consumer, and
    /// for `listed` and `finished`, which are the channel's.
    std::size_t consumer = 0;
};

/// Where a channel stands; see `agent::progress()`.
struct channel_progress {
    std::string channel;
    std::uint64_t epoch = 0;        ///< the epoch being delivered (or the last one, once done)
    std::uint64_t epoch_bytes = 0;  ///< bytes written into this epoch's FIFO (every consumer's, added up)
    std::uint64_t total_bytes = 0;  ///< bytes written into all of the channel's FIFOs
    bool waiting = true;            ///< no reader has this epoch's FIFO open yet
    bool done = false;              ///< every epoch was delivered
    std::chrono::steady_clock::time_point epoch_start{};  ///< when this epoch's reader connected
};

/// How the agent streams a job's channels. Use designated initializers:
/// `agent_options{.data_dir = dir, .epochs = 3, .cluster = {.rank = 0, .world_size = 2}}`.
struct agent_options {
    /// Where the FIFOs `<channel>_<epoch>` are created (SageMaker's /opt/ml/input/data).
    std::filesystem::path data_dir = std::filesystem::path(default_data_dir);

    /// Where `write_config_files()` writes inputdataconfig.json and resourceconfig.json.
    std::filesystem::path config_dir = std::filesystem::path(default_config_dir);

    /// Epochs to deliver per channel; 0 delivers epoch after epoch until `stop()`.
    std::uint64_t epochs = 1;

    /// The training processes of this host that each read every channel from a FIFO of their
    /// own (a FIFO's bytes are split between its readers, never copied, so each needs one).
    /// With more than 1, consumer `i`'s FIFOs are `<data_dir>/consumer-<i>/<channel>_<epoch>`
    /// (`consumer_data_dir()`): each process keeps SageMaker's layout with its own data
    /// directory. A `FullyReplicated` channel is downloaded and decoded once and each chunk
    /// written into every consumer's FIFO, at the pace of the slowest (nothing dropped); a
    /// consumer that closes its FIFO early leaves the epoch alone, the others go on. A
    /// `ShardedByS3Key` channel is dealt over hosts x consumers: consumer `i` of the host of
    /// rank `r` gets the share of rank `r * consumers + i` of `world_size * consumers`, each
    /// read on its own (with `memory_budget / consumers` of read-ahead). docs/agent.md.
    std::size_t consumers = 1;

    /// This host's place in the cluster: `ShardedByS3Key` channels deliver this rank's share.
    /// When `hosts` is not empty, `write_config_files()` also writes resourceconfig.json.
    cluster_position cluster{};

    /// How `ShardedByS3Key` deals the objects: `by_object` is SageMaker's rule; `by_bytes`
    /// balances objects of different sizes (needs sizes from the listing). The agent writes
    /// whole objects, so `by_byte_range` is refused.
    shard_mode sharded_mode = shard_mode::by_object;

    /// Endpoint, region, credentials and stream tuning for `s3://` and `http(s)://` channels.
    s3::s3_options s3{};

    /// The memory each channel's store may hold for read-ahead (an HTTP or S3 stream's window).
    std::size_t memory_budget = 1 * gib;

    /// Size of one read from a local file.
    std::size_t read_size = 4 * mib;

    /// `RecordWrapperType: RecordIO`: how much of an object is held to cut its record at the
    /// aligned magic words in it, as RecordIO writers do (see `recordio_wrapper`).
    std::size_t recordio_window = 8 * mib;

    /// How the FIFOs are waited for and written (`reader_timeout`: how long to wait for the
    /// training program to open an epoch's FIFO; for ever by default).
    fifo_writer_options fifo{};

    /// A local cache for the channels' objects (`cache::caching_store`, docs/cache.md), so that
    /// epochs after the first, and a restarted agent, read from local disk (or this process's
    /// memory, with an empty `directory`) what the first epoch downloaded. Each channel's store
    /// is wrapped in its own caching store over these options; several channels and several
    /// agents of a host may share one directory, and the budget holds across all of them.
    /// Empty (the default): no cache, nothing is written to disk.
    std::optional<cache::cache_options> cache = std::nullopt;

    /// Called with each channel's store before the cache wraps it (the store that reads the
    /// network) and returns the store to read: a hook for instrumentation, such as counting
    /// or throttling the reads in a test. Empty leaves the store as it is.
    std::function<std::unique_ptr<object_store>(const channel_config&, std::unique_ptr<object_store>)> wrap_store = nullptr;

    /// Called on the agent's network thread at each event of each channel (a log, a test).
    /// Must not block; must not throw.
    std::function<void(const agent_event&)> on_event = nullptr;
};

/// The object store the agent streams a channel from, and how its objects reach the FIFO.
///
/// This is the single place where the kind of a channel decides how it is read: objects of
/// an `S3Prefix` or `ManifestFile` channel are read through `channel_store()` (gunzipped for
/// `CompressionType: Gzip`) and, under `RecordWrapperType: RecordIO`, each wrapped as one
/// record. An `AugmentedManifestFile` channel's objects are its manifest's lines, each already
/// the RecordIO records of its attributes (`augmented_manifest_store`): written as they are.
struct agent_source {
    std::unique_ptr<object_store> store;
    /// Wrap each object in one RecordIO record (false when the store's objects are framed
    /// already).
    bool wrap_recordio = false;
    /// The listing's sizes are the sizes of the bytes delivered (false for gzip: compressed).
    bool sizes_exact = true;
};

/// The data directory of consumer `consumer` of `consumers` (see `agent_options::consumers`):
/// `data_dir` itself for a single consumer, else `data_dir / "consumer-<consumer>"`.
inline std::filesystem::path consumer_data_dir(const std::filesystem::path& data_dir, std::size_t consumer,
                                               std::size_t consumers)
{
    if (consumers <= 1)
        return data_dir;
    return data_dir / ("consumer-" + std::to_string(consumer));
}

/// The store and delivery of `channel` for the agent (see `agent_source`): `channel_store()`,
/// passed through `options.wrap_store` and wrapped in a `cache::caching_store` under
/// `options.cache`. Throws `std::invalid_argument` naming the channel for what cannot be
/// streamed, and for a cache budget of 0.
agent_source agent_source_for(const channel_config& channel, const agent_options& options);

namespace detail {
struct agent_shared;
} // namespace detail

/// Streams the Pipe-mode channels of a training job into FIFOs, as SageMaker does for a
/// training container.
///
/// For each channel, every epoch: the objects (listed once) are shuffled with
/// `ShuffleConfig.Seed` (differently each epoch), this host's share is taken (`ShardedByS3Key`),
/// and the FIFO `<data_dir>/<channel>_<epoch>` is created; once the training program opens it,
/// the objects are written into it one after the other, inflated (`CompressionType: Gzip`) and
/// each wrapped in one RecordIO record (`RecordWrapperType: RecordIO`), else as they are. The
/// epoch ends when everything was written (the FIFO is closed: the reader gets EOF) or when the
/// reader closes its end early; the FIFO is then removed and the next epoch's created. All
/// channels stream at once, so a program may open them in any order. An epoch's streaming is
/// a record pipeline of the library's stages (`async_run_record_pipeline`: the store's
/// sources -> `chunk_decoder` -> `fifo_sink` -> `fifo_byte_writer`; docs/agent.md).
///
/// With several consumers on the host (`agent_options::consumers`), each has its FIFOs in its
/// own directory (`consumer_data_dir()`): a replicated channel's epoch is one pipeline whose
/// `fanout_byte_writer` writes every piece into each consumer's FIFO at the pace of the
/// slowest, and a sharded channel gives each consumer its own share, as further hosts would
/// get. With `agent_options::cache`, the stores read through a local cache.
///
/// Memory is bounded per channel: the store's read-ahead (`memory_budget`), the pipe, and for
/// RecordIO wrapping `recordio_window`; nothing grows with object or data set size.
///
/// `run()` blocks until every channel delivered its epochs, `stop()` was called (from any
/// thread), or a channel failed: then the other channels are stopped and `run()` throws a
/// `std::runtime_error` naming the channel and epoch, with the source's error (an S3 error
/// names the bucket, key and S3 error code). FIFOs the agent created are removed in every case.
///
/// Example:
/// \code
/// auto channels = pipemode::sagemaker::read_input_data_config_file("job.json");
/// pipemode::sagemaker::agent a(channels, {.data_dir = "/opt/ml/input/data", .epochs = 3});
/// a.write_config_files();
/// a.run();
/// \endcode
class agent {
public:
    /// An agent for the channels of `job` (all of them, or those named in `only`). Throws
    /// `std::invalid_argument` with a sentence naming the channel for: no channels, a name in
    /// `only` that the job lacks, an invalid channel name, a channel whose mode is not Pipe,
    /// a channel that cannot be streamed (an empty URI, a `ManifestFile` not on S3, an
    /// `AugmentedManifestFile` without `AttributeNames`), a sharded channel with
    /// `shard_mode::by_byte_range`, or 0 consumers. Nothing is read or created yet.
    agent(std::vector<channel_config> job, agent_options options, const std::vector<std::string>& only = {});

    agent(const agent&) = delete;
    agent& operator=(const agent&) = delete;
    ~agent();

    /// Creates the data and configuration directories (and each consumer's data directory,
    /// `consumer_data_dir()`, with several consumers) and writes into the configuration
    /// directory inputdataconfig.json (every channel of the job, in the container-side form)
    /// and, when `options.cluster.hosts` is not empty, resourceconfig.json. Each file is
    /// written under a temporary name and renamed, so a reader never sees half of it. Throws
    /// `std::system_error` naming the path on failure.
    void write_config_files() const;

    /// Streams every channel's epochs; returns when all were delivered or `stop()` was called.
    /// Throws `std::runtime_error` naming the channel for the first failure. Call once.
    void run();

    /// Makes `run()` stop soon and return: waits and writes in flight are cancelled and the
    /// FIFOs removed. Thread-safe and async-signal-unsafe (call it from a thread, not a handler).
    void stop();

    /// Whether `stop()` was called.
    bool stopped() const noexcept;

    /// Where every streamed channel stands. Thread-safe.
    std::vector<channel_progress> progress() const;

    /// The channels streamed, in the job's order.
    const std::vector<channel_config>& channels() const noexcept { return streamed_; }

private:
    std::vector<channel_config> job_;
    std::vector<channel_config> streamed_;
    std::vector<agent_source> sources_;  // of streamed_, taken by run()
    agent_options options_;
    std::shared_ptr<detail::agent_shared> shared_;
};

} // namespace pipemode::sagemaker

#include <pipemode/sagemaker/impl/agent.hpp>
