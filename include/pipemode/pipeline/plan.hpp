// pipemode: which part of a data set a reader reads in an epoch, and in what order.
//
// The planner is sans-I/O: given the objects of a data set (listed once), the sharding and
// shuffling options and an epoch number, it says which objects, or byte ranges of objects,
// this rank reads and in which order. Every rank computes every rank's plan from the same
// inputs, so ranks agree without talking to each other, and a reader resumed from a saved
// position recomputes the plan it was following. docs/data-sets.md explains the choices.
#pragma once

#include <pipemode/config.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace pipemode {

/// One object of a data set, as listed.
struct object_entry {
    std::string uri;                        ///< "s3://bucket/key", "https://host/path" or a local path
    std::optional<std::uint64_t> size{};    ///< from the listing; required by byte-based sharding
    /// The object's version as the listing gave it (S3's ETag, quotes included), empty when
    /// unknown; opaque. A cache keys its entries by it, so a replaced object is never served
    /// from the cache. Not part of `listing_fingerprint()`.
    std::string etag{};
};

/// How a data set is divided among the ranks (hosts or workers) of a job.
enum class shard_mode {
    /// Every rank reads everything (SageMaker's `FullyReplicated`).
    replicated,
    /// Whole objects, dealt out in turn after the epoch's shuffle: object i of the order goes
    /// to rank i mod world_size (SageMaker's `ShardedByS3Key`). No rank reads another's bytes.
    by_object,
    /// Whole objects, balanced by size: each object, largest first, goes to the rank with the
    /// fewest bytes so far (ties to the lower rank); each rank then reads its objects in the
    /// epoch's order. For data sets whose objects differ in size.
    by_bytes,
    /// The objects, in the epoch's order, seen as one run of bytes cut into `world_size` equal
    /// ranges; an object that straddles a cut is read by both ranks, each taking the records
    /// that start in its range. Every rank gets work even with fewer objects than ranks.
    /// Needs objects whose records can be found from any byte (not compressed objects, not
    /// one record per object).
    by_byte_range,
};

/// Where in the job a reader stands, and how the data set is divided.
struct shard_options {
    std::size_t rank = 0;
    std::size_t world_size = 1;
    shard_mode mode = shard_mode::replicated;
};

/// What the planner needs besides the objects.
struct plan_options {
    shard_options shard{};
    /// Shuffle the object order at the start of every epoch with this seed (SageMaker's
    /// `ShuffleConfig.Seed`): reproducible, different in every epoch. No shuffle when empty.
    std::optional<std::uint64_t> shuffle_seed{};
    /// Whether records can be found from an arbitrary byte of an object: false for gzip
    /// objects and whole-object records. `shard_mode::by_byte_range` requires it.
    bool splittable = true;
};

/// One unit of a rank's work: the records of one object whose first byte lies in
/// [begin, end), less the first `skip` of them.
struct work_item {
    std::size_t object = 0;                  ///< index into the data set's object list
    std::uint64_t begin = 0;                 ///< records starting before this byte belong to another item
    std::optional<std::uint64_t> end{};      ///< records starting at or after this byte too; empty: the object's end
    std::uint64_t skip = 0;                  ///< records already delivered (a resumed position)

    // How a resumed reader re-creates a record-shuffle block that was partly delivered
    // (see `reader_options::shuffle_records` and docs/data-sets.md):
    bool block_start = false;        ///< a new block starts at the item's first kept record...
    std::uint64_t block_drop = 0;    ///< ...whose first `block_drop` records in shuffled order were delivered
    std::uint64_t group = 0;         ///< the next `group` items held the rest of that block: keep them with this one
    bool block_end_after = false;    ///< end the block in progress at this item's end

    /// True when the item starts inside the object, so decoding must first find a record start.
    bool starts_inside() const noexcept { return begin != 0; }

    friend bool operator==(const work_item&, const work_item&) = default;
};

/// A deterministic pseudo-random generator with the same output on every platform and
/// standard library (`std::uniform_int_distribution` is not: its algorithm is unspecified).
/// SplitMix64: tiny state, full period, passes BigCrush; enough for shuffling.
class stable_random {
public:
    explicit constexpr stable_random(std::uint64_t seed) noexcept : state_(seed) {}

    /// The next 64 random bits.
    constexpr std::uint64_t next() noexcept
    {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    /// A uniform integer in [0, bound), without modulo bias (Lemire's multiply-and-reject).
    /// Requires `bound > 0`.
    constexpr std::uint64_t below(std::uint64_t bound) noexcept
    {
        auto [high, low] = multiply(next(), bound);
        if (low < bound) {
            const std::uint64_t threshold = (0 - bound) % bound;
            while (low < threshold)
                std::tie(high, low) = multiply(next(), bound);
        }
        return high;
    }

private:
    /// The 128-bit product of `a` and `b` as {high, low} words, in portable C++.
    static constexpr std::pair<std::uint64_t, std::uint64_t> multiply(std::uint64_t a, std::uint64_t b) noexcept
    {
        const std::uint64_t a0 = a & 0xffffffffU, a1 = a >> 32, b0 = b & 0xffffffffU, b1 = b >> 32;
        const std::uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
        const std::uint64_t middle = (p00 >> 32) + (p01 & 0xffffffffU) + (p10 & 0xffffffffU);
        return {p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32), (middle << 32) | (p00 & 0xffffffffU)};
    }

    std::uint64_t state_;
};

/// A seed for one use of a base seed: mixes `seed` with `a` and `b` (an epoch, a block
/// number) so related streams do not overlap.
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) noexcept
{
    stable_random r(seed ^ 0x6a09e667f3bcc909ULL);
    r = stable_random(r.next() ^ a);
    r = stable_random(r.next() ^ (b * 0x9e3779b97f4a7c15ULL));
    return r.next();
}

/// Shuffles `items` in place with the Fisher-Yates algorithm driven by `seed`: the same seed
/// gives the same order everywhere.
template <class T>
void stable_shuffle(std::span<T> items, std::uint64_t seed) noexcept
{
    stable_random r(seed);
    for (std::size_t i = items.size(); i > 1; --i)
        std::swap(items[i - 1], items[r.below(i)]);
}

/// The order in which the objects are read in `epoch`: 0..n-1, shuffled with a seed derived
/// from `shuffle_seed` and the epoch when there is one.
inline std::vector<std::size_t> epoch_order(std::size_t n, std::optional<std::uint64_t> shuffle_seed,
                                            std::uint64_t epoch)
{
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    if (shuffle_seed)
        stable_shuffle(std::span(order), derive_seed(*shuffle_seed, epoch));
    return order;
}

/// Throws `std::invalid_argument` when the options cannot describe a job's rank.
void check_plan_options(const plan_options& o);

/// The work of every rank of a job in `epoch`: element r is rank r's items, in reading order.
///
/// Throws `std::invalid_argument` when a mode needs object sizes the listing did not give, or
/// byte-range sharding meets unsplittable objects.
std::vector<std::vector<work_item>> plan_all_ranks(std::span<const object_entry> objects, const plan_options& o,
                                                   std::uint64_t epoch);

/// The work of rank `o.shard.rank` in `epoch`, in reading order.
std::vector<work_item> plan_epoch(std::span<const object_entry> objects, const plan_options& o, std::uint64_t epoch);

/// A position in a rank's plan: the next item to read, and how many of its records (counted
/// from the start of its byte range, records skipped on an earlier resume included) have been
/// delivered already.
///
/// Under a record-level shuffle, `item` and `records` locate the start of the shuffle block in
/// progress, `in_block` counts its records delivered (0: none, the cursor is then an ordinary
/// position) and `block_end_item` is the item holding its last record.
struct plan_cursor {
    std::uint64_t item = 0;
    std::uint64_t records = 0;
    std::uint64_t in_block = 0;
    std::uint64_t block_end_item = 0;

    friend bool operator==(const plan_cursor&, const plan_cursor&) = default;
};

/// The work a rank has left when it stopped at `at` in `plan`.
std::vector<work_item> remaining_work(std::span<const work_item> plan, plan_cursor at);

/// Deals the work left by the ranks of one run (`left[r]` for old rank r, each in its reading
/// order) among `new_world` ranks, so that every remaining record is read exactly once:
/// items go out in turn (old rank 0's first item, old rank 1's first item, ...) to the rank
/// with the least work so far, by bytes when the sizes are known and by items otherwise.
/// Element r of the result is new rank r's work.
std::vector<std::vector<work_item>> redistribute(std::span<const std::vector<work_item>> left,
                                                 std::span<const object_entry> objects, std::size_t new_world);

/// One earlier run of the current epoch, interrupted: its world size and where each of its
/// ranks stopped.
struct interrupted_run {
    std::size_t world_size = 1;
    std::vector<plan_cursor> cursors;  ///< by rank

    friend bool operator==(const interrupted_run&, const interrupted_run&) = default;
};

/// The plan of every rank of the current run in `epoch` when earlier runs of the same epoch
/// were interrupted (`history`, oldest first) and resumed with other world sizes: the first
/// run followed `plan_all_ranks`, every later one the redistributed remainder of the one
/// before. With an empty history this is `plan_all_ranks`.
std::vector<std::vector<work_item>> plan_all_ranks_resumed(std::span<const object_entry> objects,
                                                           const plan_options& o, std::uint64_t epoch,
                                                           std::span<const interrupted_run> history);

} // namespace pipemode

#include <pipemode/pipeline/impl/plan.hpp>
