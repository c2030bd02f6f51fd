// pipemode: counters a reader keeps while it runs.
#pragma once

#include <pipemode/config.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace pipemode {

/// A snapshot of a reader's counters.
struct reader_stats {
    std::uint64_t bytes = 0;        ///< bytes read from sources
    std::uint64_t records = 0;      ///< records decoded into batches (padding not counted)
    std::uint64_t batches = 0;      ///< batches handed to the training loop's channel
    std::uint64_t bad_records = 0;  ///< records skipped under a skip policy
    std::uint64_t sources = 0;      ///< sources read to their end
    /// Time decoded batches waited for room in the channel (`prefetch_batches`) or the memory budget: the training
    /// loop was the slower side.
    std::chrono::nanoseconds producer_stall{};
    /// Time the training loop waited for a batch: the data was the slower side.
    std::chrono::nanoseconds consumer_stall{};
    /// The most bytes of decoded batches held at once (in the channel and held by the consumer).
    std::uint64_t peak_batch_bytes = 0;
    /// Batches the decode workers filled (`reader_options::decode_workers`), each delivered as
    /// it was made; the rest were filled on the reader's thread.
    std::uint64_t worker_batches = 0;
    /// Batches a worker filled but could not deliver as it was (a bad record, a record of
    /// another schema), which the reader's thread made again: a high count beside
    /// `worker_batches` means the workers mostly waste their work.
    std::uint64_t worker_batches_redone = 0;
};

namespace detail {

/// The live counters behind `reader_stats`. Each counter has one writer thread; readers on
/// other threads see a value that is at most a little stale, which is all statistics need,
/// hence relaxed atomics throughout.
struct stats_counters {
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> records{0};
    std::atomic<std::uint64_t> batches{0};
    std::atomic<std::uint64_t> bad_records{0};
    std::atomic<std::uint64_t> sources{0};
    std::atomic<std::int64_t> producer_stall_ns{0};
    std::atomic<std::int64_t> consumer_stall_ns{0};
    std::atomic<std::uint64_t> peak_batch_bytes{0};
    std::atomic<std::uint64_t> worker_batches{0};
    std::atomic<std::uint64_t> worker_batches_redone{0};

    /// Adds `n` to a counter that only the calling thread writes.
    template <class T>
    static void add(std::atomic<T>& c, T n) noexcept
    {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }

    reader_stats snapshot() const noexcept
    {
        constexpr auto r = std::memory_order_relaxed;
        return {bytes.load(r),
                records.load(r),
                batches.load(r),
                bad_records.load(r),
                sources.load(r),
                std::chrono::nanoseconds(producer_stall_ns.load(r)),
                std::chrono::nanoseconds(consumer_stall_ns.load(r)),
                peak_batch_bytes.load(r),
                worker_batches.load(r),
                worker_batches_redone.load(r)};
    }
};

} // namespace detail
} // namespace pipemode
