// pipemode: a bounded local cache around any object store, so that later epochs (and later
// runs) read from local disk what the first one downloaded.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/cache/detail/cache_directory.hpp>
#include <pipemode/pipeline/data_set.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace pipemode::cache {

/// How a `caching_store` keeps what it reads. Use designated initializers:
/// `{.directory = "/local/cache", .budget_bytes = 50 * gib}`.
struct cache_options {
    /// The cache directory, created when missing. Several readers and processes of one host
    /// may share it: reservations are taken under a lock file in it. Empty: the cache is in
    /// this process's memory, shared by every caching store of the process that has no
    /// directory (the readers of its epochs, or several readers at once), for the process's
    /// lifetime; it does not survive a restart and is not shared with other processes.
    std::string directory{};

    /// The most bytes the cache's files take (items with their keys, and the files being
    /// written), across every process that uses the directory; in memory, the most bytes of
    /// items (with their keys, and those being copied) the process's memory cache holds.
    /// Required, more than 0. Memory held by the memory cache is outside the reader's
    /// `memory_budget`.
    std::uint64_t budget_bytes = 0;

    /// Bytes the file system must keep free: an item whose file would leave less is read
    /// from the network only. Empty: 5 % of the file system or 1 GiB, whichever is smaller.
    /// Not used in memory.
    std::optional<std::uint64_t> free_space_floor{};

    /// Measures the directory's file system; empty uses `statvfs()`. For tests.
    space_function free_space{};
};

/// What a `caching_store` did, for tests, statistics and logs. Counted on the reader's
/// network thread; read it after the reader is done (or from that thread).
struct cache_stats {
    std::uint64_t hits = 0;          ///< items read from the cache
    std::uint64_t misses = 0;        ///< items read from the inner store
    std::uint64_t admitted = 0;      ///< items committed to the cache
    std::uint64_t refused = 0;       ///< misses not admitted (budget, free space, another writer)
    std::uint64_t abandoned = 0;     ///< items whose write stopped (an error, a source dropped early)
    std::uint64_t hit_bytes = 0;
    std::uint64_t miss_bytes = 0;    ///< bytes of the misses' ranges, as planned
};

/// An object store that reads `inner`'s objects through a cache in `options.directory`.
///
/// Policy ("fill then freeze"): an item (a whole object, or the byte range a plan reads of
/// it) is admitted when it is first read and the budget has room; nothing is ever evicted to
/// make room, so with a budget smaller than the data set the first items read stay and every
/// later epoch reads about budget/size of its bytes from disk, whatever its shuffle. A miss
/// streams from `inner` as without the cache and is written, off the network thread, to a
/// partial file that is renamed into place when the item has been read to its end; an item
/// read only in part is dropped. Entries are keyed by the inner store's `describe()`, the
/// URI, the size, the listing's ETag and the byte range: an object that changed is read again
/// (and its old entries removed at the next listing), never served stale. Objects whose size
/// the listing does not give are never cached. With `options.directory` empty the items are
/// kept in the process's memory instead (same policy; see `cache_options::directory`).
///
/// The listing throws `std::invalid_argument` when an object is larger than the budget.
/// Sources read from the cache carry the object's URI and offsets, so records, positions and
/// resume states are the same as without it. `stats`, when given, is updated as items are
/// read. docs/cache.md explains the choices.
///
/// Example:
/// \code
/// pipemode::data_set_reader r(pipemode::cache::caching_store(pipemode::s3::s3_store(...),
///                                                            {.directory = "/mnt/cache", .budget_bytes = 100 * pipemode::gib}),
///                             {.epochs = 3});
/// \endcode
std::unique_ptr<object_store> caching_store(std::unique_ptr<object_store> inner, cache_options options,
                                            std::shared_ptr<cache_stats> stats = nullptr);

/// Bytes the process's memory cache holds (entries and items being copied), across every
/// caching store without a directory. Thread-safe.
std::uint64_t memory_cache_bytes();

/// Forgets every entry of the process's memory cache, so that its memory goes back once no
/// source reads the entries any more (items being copied stay reserved and are committed).
/// For a program that moves on to another data set, and for tests. Thread-safe.
void clear_memory_cache();

/// Parses a size such as "500M", "20G", "1.5T" or "123456" (bytes; K, M, G, T are powers of
/// 1024). Throws `std::invalid_argument` naming the text when it is not a positive size.
std::uint64_t parse_size(const std::string& text);

} // namespace pipemode::cache

#include <pipemode/cache/impl/caching_store.hpp>
