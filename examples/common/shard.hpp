// The plain rank/size split of a data set's objects that the MPI training examples use until
// the library's sharding (ShardedByS3Key) replaces it.
#pragma once

#include <cstddef>
#include <vector>

namespace pipemode::tools {

/// The part of `objects` that process `rank` of `size` reads: object i goes to rank i % size,
/// in order. Every object goes to exactly one rank; a rank may get none when there are fewer
/// objects than ranks, and `size` 0 gives nothing. A prefix or manifest on a command line
/// counts as one object (it is not listed here).
template <class T>
std::vector<T> shard_objects(const std::vector<T>& objects, std::size_t rank, std::size_t size)
{
    std::vector<T> mine;
    for (std::size_t i = rank; size != 0 && i < objects.size(); i += size)
        mine.push_back(objects[i]);
    return mine;
}

} // namespace pipemode::tools
