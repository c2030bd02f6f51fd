// pipemode: one download per host: a source provider whose bytes every local process shares.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace pipemode::fanout {

/// How a process joins a fan-out group. Use designated initializers:
/// `fanout_options{.group = "train", .members = 4}`.
///
/// Every member of a group must give the same `group`, `members`, `plan_key` and
/// `first_epoch`, and wrap a provider with the same `describe()`; see `shared_provider`.
struct fanout_options {
    /// The group's name, the same in every member (a job id and a channel name, say). Part of
    /// the shared-memory segment's name, so two channels of one job need two names only if
    /// their data sets describe themselves alike.
    std::string group{};

    /// How many processes of this host read the data set through the group, the leader
    /// included. 1 reads directly (no segment). `local_group_from_environment()` gives it
    /// under mpirun and torchrun.
    std::size_t members = 1;

    /// This process's rank among the members, for messages only (leader election does not use it).
    std::size_t rank_in_group = 0;

    /// Bytes of the ring the leader publishes into (shared memory, one per group). The
    /// leader never gets further ahead of the slowest member than this; a source larger
    /// than the ring is fine (it streams through). Rounded up to a multiple of 4 KiB; at
    /// least 64 KiB.
    std::size_t ring_bytes = 64 * mib;

    /// How long the leader waits for every member to join before it publishes anything, and
    /// a member for a leader to appear. Past it: a `fanout_error` naming the group and how
    /// many joined.
    std::chrono::milliseconds join_timeout{60'000};

    /// Where the leader-election lock files live (`flock`ed; one per group, data set and
    /// epoch). Must be on a local file system every member sees; `/dev/shm` suits.
    std::filesystem::path lock_dir = "/dev/shm";

    /// Everything besides the data set that decides the planned order of sources: the
    /// shuffle seed, the sharding, the epochs (e.g. "seed=42 shard=0/1 epochs=0..2"). A
    /// process whose key differs from the leader's is refused at join with a sentence that
    /// says so, instead of being handed another plan's records.
    std::string plan_key{};

    /// The first epoch the wrapped provider reads: part of the segment's name, so that a
    /// program making one provider per epoch forms a new group each epoch.
    std::uint64_t first_epoch = 0;
};

/// What a fan-out group could not do: form (join timeout, a mismatched plan, too many
/// members) or finish (the leader died or stopped). Failures of the leader's own reading
/// reach the followers as the leader's exception (a `data_error` with the same message).
class fanout_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The processes of this host that a launcher started together, from its environment.
struct local_group {
    std::size_t members = 1;  ///< processes on this host
    std::size_t rank = 0;     ///< this process's place among them
};

/// The local group of the launcher that started this process, if any: Open MPI's
/// `OMPI_COMM_WORLD_LOCAL_SIZE` / `OMPI_COMM_WORLD_LOCAL_RANK`, then torchrun's
/// `LOCAL_WORLD_SIZE` / `LOCAL_RANK`, then MPICH/Hydra's `MPI_LOCALNRANKS` / `MPI_LOCALRANKID`.
/// Empty when none is set (a process started by hand: give `members` yourself).
///
/// Example:
/// \code
/// auto local = pipemode::fanout::local_group_from_environment().value_or(pipemode::fanout::local_group{});
/// auto p = pipemode::fanout::shared_provider(std::move(provider),
///                                             {.group = "job-17/train", .members = local.members, .rank_in_group = local.rank});
/// \endcode
std::optional<local_group> local_group_from_environment();

/// A provider that reads `inner` once per host and hands its sources to every member of the
/// group (docs/fanout.md has the protocol).
///
/// The first member to take the group's lock leads: it waits until all `members` have joined,
/// then reads `inner` for itself and publishes every source (its plan, name and start
/// offset, then its chunks, then its end) into a ring in shared memory. The others
/// (followers) present the same sequence of planned sources, whose chunks they read from the
/// ring; their own `inner` is never opened (only its `describe()` and `reserve_buffers()`
/// are used). Each process then frames, parses and shuffles its records itself, so records and
/// resume positions are those of a direct read. The leader waits for the slowest live follower
/// (nothing is dropped); a follower whose process died is no longer waited for; a follower
/// whose leader died or stopped gets a `fanout_error`, never wrong data. An exception from
/// the leader's `inner`, and a source's read error, reach every follower with the same message.
///
/// For replicated data only: every member must read the whole data set in the same planned
/// order (same seed, no sharding between them), which `fanout_options::plan_key` checks.
///
/// Blocking waits (for room, for bytes, for members) run on the reader's blocking executor,
/// with a timeout of 100 ms so that liveness is checked; the network thread never blocks.
///
/// Throws `std::invalid_argument` for an empty group name, 0 members or a ring below 64 KiB.
///
/// Example (4 processes on a host reading one replicated data set):
/// \code
/// pipemode::reader r(pipemode::fanout::shared_provider(
///                        pipemode::planned_epochs(pipemode::local_store({"/data/val/"}), {.epochs = 2}),
///                        {.group = "job-17/val", .members = 4, .plan_key = "epochs=2"}),
///                    {.batch_size = 256});
/// \endcode
std::unique_ptr<source_provider> shared_provider(std::unique_ptr<source_provider> inner, fanout_options options);

} // namespace pipemode::fanout

#include <pipemode/fanout/impl/shared_provider.hpp>
