// pipemode: policies and the reader's tuning options.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode {

/// What to do with the last batch of an epoch when it has fewer than `batch_size` records.
enum class last_batch {
    keep_short,  ///< deliver it as it is
    drop,        ///< do not deliver it
    pad,         ///< pad it to `batch_size` rows and say how many are padding (`batch::padding()`)
};

/// What to do with a record that cannot be decoded.
enum class bad_record_policy {
    fail,           ///< stop: the training loop gets a `data_error`
    skip,           ///< skip it and count it in the stats
    skip_and_warn,  ///< skip it, count it, and report it to the warning handler
};

/// The kind of data a reader decodes.
enum class data_format {
    recordio_protobuf,  ///< RecordIO-framed `aialgs.data.Record` (SageMaker's application/x-recordio-protobuf)
    recordio,           ///< RecordIO-framed opaque payloads, delivered as a `bytes` feature
    csv,                ///< text/csv as SageMaker's algorithms read it: label column(s) first, then features
    tfrecord,           ///< TFRecord-framed payloads (CRCs checked), delivered as a `bytes` feature
    lines,              ///< newline-delimited text records (JSON Lines, text), as a `bytes` feature
    whole_object,       ///< each object (source) is one record, as a `bytes` feature (images, documents)
    augmented_manifest, ///< RecordIO records grouped `attribute_names.size()` at a time into one row (SageMaker augmented manifests)
};

/// Whether records of `f` can be found from an arbitrary byte of an object, so that an object
/// can be read in byte ranges (sharding by byte range, resuming mid-object).
constexpr bool splittable(data_format f) noexcept { return f != data_format::whole_object; }

inline constexpr std::size_t kib = 1024;
inline constexpr std::size_t mib = 1024 * kib;
inline constexpr std::size_t gib = 1024 * mib;

/// Options of a `reader`. Use designated initializers:
/// `reader_options{.batch_size = 512, .bad_records = bad_record_policy::skip}`.
struct reader_options {
    /// Records per batch.
    std::size_t batch_size = 1000;

    /// How the short last batch of an epoch is delivered.
    pipemode::last_batch last_batch = last_batch::keep_short;

    /// What happens to records that cannot be decoded.
    bad_record_policy bad_records = bad_record_policy::fail;

    /// Under a skip policy, the most bad records skipped before the reader gives up with the
    /// error of the next one (a corrupt-record budget: a few damaged records are tolerable, a
    /// data set that is mostly damaged is not). Counted over the reader's whole life.
    std::uint64_t max_bad_records = std::numeric_limits<std::uint64_t>::max();

    /// How the bytes are decoded.
    data_format format = data_format::recordio_protobuf;

    /// With `data_format::csv`: how many leading columns are the label (SageMaker's
    /// `text/csv;label_size=N`); 0 for none.
    std::size_t csv_label_size = 1;

    /// With `data_format::augmented_manifest`: the attributes of each line, in record order;
    /// each becomes a `bytes` feature of that name (see `grouped_record_parser`).
    std::vector<std::string> attribute_names{};

    /// Decoded batches that may wait for the training loop, exactly (the channel between the
    /// threads holds this many, not a power of two). Besides them, the training loop holds one batch and the
    /// reader fills one, and a full one may wait for a place.
    std::size_t prefetch_batches = 4;

    /// Upper bound on the memory the reader holds: source buffers plus decoded batches that
    /// wait for the consumer. The reader never issues a read it cannot fit in the budget.
    /// 1 GiB lets an S3 stream keep a large instance's link busy (about 60 parts of 8 MiB in
    /// flight, docs/http.md "Sizing"); buffers are allocated as they are needed, so a reader
    /// of local files or a slow link holds far less. Lower it for many readers per host.
    std::size_t memory_budget = 1 * gib;

    /// The largest record accepted; a larger declared length is an error (never an allocation).
    /// It is reserved out of `memory_budget` (a record that straddles reads is reassembled in
    /// a buffer of up to this size). SageMaker's records are kilobytes; 16 MiB leaves room for
    /// images and long documents without eating a small budget.
    std::size_t max_record_size = 16 * mib;

    /// Size of one read from a local file or FIFO.
    std::size_t read_size = 4 * mib;

    /// Threads that parse records into batches at once, the reader's own thread
    /// included; 0 (the default) is half the machine's cores (at least 1, at most 16), leaving
    /// the rest to the training loop and the network threads. 1 parses on the reader's thread
    /// alone.
    ///
    /// The batches are the same whatever the count: the records of each read (or of each
    /// shuffle block) are cut into whole batches, the workers fill one each, and they are
    /// delivered in order; a batch a worker could not fill exactly (a bad record) is made
    /// again on the reader's thread. So ordering, resume positions and the bad-record policy
    /// behave as with one worker. A read holds as many batches as workers can share, so with
    /// many workers give files a `read_size` of several batches each (docs/architecture.md,
    /// "Decode workers"). Parsers that join records (augmented manifests) and parsers of one's
    /// own that do not declare `independent_records` run on one thread (`parses_independently_v`).
    std::size_t decode_workers = 0;

    /// Record-level shuffle: records are gathered in blocks of this many, and each block is
    /// delivered in an order drawn from `shuffle_seed`, the epoch and the block's first record
    /// (so a resumed reader draws the same order). 0 delivers records in the order read. A
    /// block also ends at the end of an epoch and when it holds `shuffle_buffer_bytes`.
    /// Combine with the object-order shuffle of a data set reader for a thorough shuffle.
    std::size_t shuffle_records = 0;

    /// The seed of the record-level shuffle.
    std::uint64_t shuffle_seed = 0;

    /// The most payload bytes one shuffle block holds; reserved out of `memory_budget` when
    /// `shuffle_records` is not 0.
    std::size_t shuffle_buffer_bytes = 32 * mib;

    /// Where the storage of decoded batches comes from: every column's values, keys and
    /// offsets and every batch's record origins. nullptr (the default) is `new` and `delete`.
    ///
    /// The use case is memory a device copies from directly: pinned (page-locked) host memory,
    /// from which a GPU copy runs at full speed without a staging copy (for example a resource
    /// over `cudaHostAlloc`, or an arena carved from one such block). The reader recycles batch
    /// storage (at most `prefetch_batches + 3` batches are in circulation: those waiting, the
    /// training loop's, one waiting for a slot and the one being filled; two more per decode
    /// worker when there are several), so the resource is
    /// asked for memory until each of them exists and then only when records grow.
    ///
    /// The resource must outlive the reader and every batch it handed out (a batch kept after
    /// the reader is gone still returns its memory there). It is called from the reader's
    /// thread (which fills batches) and from the training loop's thread (which lets them go,
    /// and whose batches may be freed there), so it must be thread-safe:
    /// `std::pmr::synchronized_pool_resource` is, `unsynchronized_pool_resource` and
    /// `monotonic_buffer_resource` are not.
    std::pmr::memory_resource* batch_memory = nullptr;

    /// Called, on the reader's thread, with a one-line message for every record skipped under
    /// `bad_record_policy::skip_and_warn`. Defaults to printing on stderr.
    std::function<void(std::string_view)> on_warning = nullptr;
};

} // namespace pipemode
