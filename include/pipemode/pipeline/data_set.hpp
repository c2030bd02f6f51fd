// pipemode: a data set read over epochs, sharded across ranks, shuffled, and resumable.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/plan.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode {

/// A byte range of one object to read: bytes [first, end) (to the object's end when `end` is
/// empty).
struct object_read {
    std::string uri;
    std::optional<std::uint64_t> size{};  ///< when the listing gave it
    std::uint64_t first = 0;
    std::optional<std::uint64_t> end{};
};

/// Where a data set's objects live: lists them and reads byte ranges of them.
///
/// Implementations: `local_store` (files and directories), `remote::http_store` and
/// `s3::s3_store`. A store is used by one reader, from that reader's network thread.
class object_store {
public:
    virtual ~object_store() = default;

    /// Lists the data set's objects, in a stable order (sorted keys or paths, or the
    /// manifest's order). Called once per reader, however many epochs it reads.
    virtual asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) = 0;

    /// A provider whose sources are `reads`, in order, one source per read; it may fetch ahead
    /// (concurrently, within the memory the reader granted it through `reserve_buffers()`).
    virtual std::unique_ptr<source_provider> open(std::vector<object_read> reads) = 0;

    /// The data set for messages ("s3://bucket/prefix/", "/data/train (3 paths)").
    virtual std::string describe() const = 0;

    /// The bytes of buffers the providers of `open()` hold at most; see
    /// `source_provider::reserve_buffers()`.
    virtual std::size_t reserve_buffers(const reader_options& options) { return 2 * options.read_size; }

    /// Whether objects can be read from the middle (false for compressed objects).
    virtual bool splittable() const noexcept { return true; }
};

/// A store over local paths. A directory stands for every regular file or FIFO below it
/// (recursively, in path order), a file for itself, and any other path for the files whose
/// paths start with it (an S3-style prefix: "data/part-" matches "data/part-0001.rec").
/// `file://` URIs are accepted. Listing fails, naming the path, when a path matches nothing.
std::unique_ptr<object_store> local_store(std::vector<std::string> paths, std::size_t read_size = 4 * mib);

/// A store holding the objects of `parts`, in order: the first store's listing, then the
/// second's, and so on (for data sets spread over several places, such as a command line
/// mixing local paths, URLs and S3 prefixes). Reads go to the store that listed the object;
/// only one part's provider is open at a time.
std::unique_ptr<object_store> concat_stores(std::vector<std::unique_ptr<object_store>> parts);

/// What a reader saves with a checkpoint to continue later exactly where it stopped.
///
/// The state is small (a few numbers, plus one pair per rank for each time the current epoch
/// was resumed with another world size) and serialises to one line of JSON.
struct data_set_state {
    std::uint64_t epoch = 0;               ///< the epoch in progress
    plan_cursor cursor{};                  ///< in this rank's plan of that epoch
    std::size_t rank = 0;
    std::size_t world_size = 1;
    std::vector<interrupted_run> history;  ///< earlier runs of `epoch` resumed with another world size
    std::uint64_t objects = 0;             ///< objects listed: a changed data set is refused
    std::uint64_t fingerprint = 0;         ///< of the listing's URIs and sizes

    /// One line of JSON.
    std::string to_json() const;
    /// Parses `to_json()`'s output; throws `std::invalid_argument` naming what is wrong.
    static data_set_state from_json(std::string_view json);

    friend bool operator==(const data_set_state&, const data_set_state&) = default;
};

/// The state for rank `rank` of a new run of `world_size` ranks that continues the run whose
/// ranks saved `every_rank` (one state per old rank, any order): every record not yet
/// delivered by any old rank is delivered exactly once by the new ranks. With the same world
/// size this is simply the old state of the same rank (its order is kept exactly).
///
/// Throws `std::invalid_argument` when the states do not belong together (different epochs,
/// data sets or world sizes, or a rank missing).
data_set_state resume_state(std::span<const data_set_state> every_rank, std::size_t rank, std::size_t world_size);

/// How a data set is read.
struct data_set_options {
    /// Sharding across ranks and the object-order shuffle.
    plan_options plan{};
    /// Epochs to read; 0 reads until the consumer stops.
    std::uint64_t epochs = 1;
    /// The first epoch to read, with that epoch's plan and shuffle: `{.epochs = e + 1,
    /// .first_epoch = e}` reads epoch e alone (a program that opens a reader per epoch).
    /// Ignored when resuming (the state says where to start).
    std::uint64_t first_epoch = 0;
    /// Continue from a saved state (see `data_set_reader::state()` and `resume_state()`);
    /// its rank and world size must be those of `plan.shard`.
    std::optional<data_set_state> resume{};
};

namespace detail {
struct data_set_shared;
} // namespace detail

/// The provider behind `data_set_reader`: lists the store once, then hands out the sources of
/// each epoch's plan. Exposed for readers built by hand; most code uses `data_set_reader`.
std::unique_ptr<source_provider> planned_epochs(std::unique_ptr<object_store> store, data_set_options options,
                                                std::shared_ptr<detail::data_set_shared> shared = nullptr);

/// A reader over a data set in an object store, for one rank of a job, over several epochs.
///
/// Each epoch the object order is shuffled (with `plan.shuffle_seed`) and the rank's share
/// planned (`plan.shard`); batches carry their epoch (`batch::epoch()`), and no batch spans two
/// epochs. `state()` says where the consumer stands; a reader made with that state in
/// `options.resume` continues with the next record.
///
/// Example:
/// \code
/// pipemode::data_set_reader r(pipemode::local_store({"/data/train/"}),
///                             {.plan = {.shard = {.rank = rank, .world_size = size, .mode = pipemode::shard_mode::by_object},
///                                       .shuffle_seed = 42},
///                              .epochs = 3},
///                             {.batch_size = 256});
/// for (auto& batch : r) {
///     train(batch);
///     if (time_to_checkpoint()) save(r.state().to_json());
/// }
/// \endcode
class data_set_reader {
public:
    data_set_reader(std::unique_ptr<object_store> store, data_set_options options, reader_options reader_opts = {});

    data_set_reader(data_set_reader&&) noexcept = default;
    data_set_reader& operator=(data_set_reader&&) noexcept = default;

    /// See `reader::next()`.
    std::optional<batch> next() { return reader_.next(); }
    /// See `reader::begin()`.
    reader::iterator begin() { return reader_.begin(); }
    std::default_sentinel_t end() const noexcept { return {}; }

    /// Where the consumer stands, after the last batch it was given.
    data_set_state state() const;

    reader_stats stats() const noexcept { return reader_.stats(); }
    const reader_options& options() const noexcept { return reader_.options(); }

private:
    std::shared_ptr<detail::data_set_shared> shared_;
    reader reader_;
};

/// A 64-bit FNV-1a fingerprint of a listing (URIs and sizes), to recognise the same data set.
std::uint64_t listing_fingerprint(std::span<const object_entry> objects) noexcept;

} // namespace pipemode

#include <pipemode/pipeline/impl/data_set.hpp>
