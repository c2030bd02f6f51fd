// The few MPI operations the example algorithms need, behind one class that also works without
// MPI: a target built with PIPEMODE_EXAMPLES_WITH_MPI=1 (CMake found MPI) runs them through
// MPI when an MPI launcher started it; otherwise the program is one process of one, and every
// collective is the identity.
#pragma once

#ifndef PIPEMODE_EXAMPLES_WITH_MPI
#define PIPEMODE_EXAMPLES_WITH_MPI 0
#endif

#if PIPEMODE_EXAMPLES_WITH_MPI
#include <mpi.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipemode::examples {

/// MPI_Init/MPI_Finalize and the collectives over MPI_COMM_WORLD; a single process without MPI.
///
/// Every collective must be called by all ranks in the same order (as in MPI). Not
/// thread-safe: call from the main thread only.
class mpi_context {
public:
    /// Initialises MPI when built with it and started by an MPI launcher (`mpirun`, `srun`:
    /// see `launched_by_mpi`); `argc`/`argv` as given to `main`. A program started on its own
    /// skips MPI_Init, whose singleton start-up (spawning Open MPI's runtime daemon) costs about
    /// 0.35 s before the first byte is read.
    mpi_context([[maybe_unused]] int* argc, [[maybe_unused]] char*** argv)
    {
#if PIPEMODE_EXAMPLES_WITH_MPI
        if (!launched_by_mpi())
            return;
        initialized_ = true;
        MPI_Init(argc, argv);
        int r = 0, s = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        MPI_Comm_size(MPI_COMM_WORLD, &s);
        rank_ = static_cast<std::size_t>(r);
        size_ = static_cast<std::size_t>(s);
#endif
    }
    mpi_context(const mpi_context&) = delete;
    mpi_context& operator=(const mpi_context&) = delete;

    ~mpi_context()
    {
#if PIPEMODE_EXAMPLES_WITH_MPI
        if (initialized_)
            MPI_Finalize();
#endif
    }

    /// Whether the environment says an MPI launcher started this process: the variables Open
    /// MPI (`OMPI_COMM_WORLD_SIZE`), PMIx (`PMIX_RANK`), PMI-1/2 (`PMI_RANK`, used by MPICH's
    /// Hydra and Slurm) and MVAPICH (`MV2_COMM_WORLD_SIZE`) set for their processes.
    static bool launched_by_mpi() noexcept
    {
        for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_SIZE"})
            if (std::getenv(name) != nullptr)
                return true;
        return false;
    }

    /// This process's rank, from 0.
    std::size_t rank() const noexcept { return rank_; }

    /// Number of processes.
    std::size_t size() const noexcept { return size_; }

    /// Whether this build can run under MPI at all.
    static constexpr bool available() noexcept { return PIPEMODE_EXAMPLES_WITH_MPI != 0; }

    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    void sum(std::span<double> values) const
    {
#if PIPEMODE_EXAMPLES_WITH_MPI
        if (size_ > 1)
            check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM,
                                MPI_COMM_WORLD));
#else
        (void)values;
#endif
    }

    /// The sum of `value` over all ranks.
    std::uint64_t sum(std::uint64_t value) const
    {
#if PIPEMODE_EXAMPLES_WITH_MPI
        if (size_ > 1) {
            unsigned long long v = value;
            check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD));
            return v;
        }
#endif
        return value;
    }

    /// Every rank's `mine`, concatenated in rank order (lengths may differ).
    std::vector<double> gather_all(std::span<const double> mine) const
    {
#if PIPEMODE_EXAMPLES_WITH_MPI
        if (size_ > 1) {
            int n = static_cast<int>(mine.size());
            std::vector<int> counts(size_), offsets(size_);
            check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD));
            int total = 0;
            for (std::size_t r = 0; r < size_; ++r) {
                offsets[r] = total;
                total += counts[r];
            }
            std::vector<double> all(static_cast<std::size_t>(total));
            check(MPI_Allgatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
                                 MPI_COMM_WORLD));
            return all;
        }
#endif
        return {mine.begin(), mine.end()};
    }

    /// Ends every rank with `code` (MPI_Abort) when there are several, so that no rank waits
    /// forever in a collective for one that failed; returns `code` otherwise.
    int abort(int code) const
    {
#if PIPEMODE_EXAMPLES_WITH_MPI
        if (size_ > 1)
            MPI_Abort(MPI_COMM_WORLD, code);
#endif
        return code;
    }

private:
#if PIPEMODE_EXAMPLES_WITH_MPI
    static void check(int rc)
    {
        if (rc != MPI_SUCCESS)
            throw std::runtime_error("an MPI collective failed (error " + std::to_string(rc) + ")");
    }
#endif

    std::size_t rank_ = 0;
    std::size_t size_ = 1;
    bool initialized_ = false;  // MPI_Init was called
};

} // namespace pipemode::examples
