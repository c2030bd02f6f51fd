// pipemode: where a consumer stands in a planned data set; what a sink is told with each batch.
#pragma once

#include <pipemode/config.hpp>

#include <cstdint>

namespace pipemode {

/// How far a consumer has got in a planned data set: in `epoch`, the item `item` of the
/// plan, of whose records (numbered from the start of the item's byte range, bad ones
/// included) the first `records` have been delivered.
///
/// With a record-level shuffle (`reader_options::shuffle_records`), `item` and `records` are
/// where the current shuffle block starts, `in_block` how many of the block's records have
/// been delivered, and `block_end_item` the item holding the block's last record.
struct read_position {
    std::uint64_t epoch = 0;
    std::uint64_t item = 0;
    std::uint64_t records = 0;
    std::uint64_t in_block = 0;
    std::uint64_t block_end_item = 0;

    friend bool operator==(const read_position&, const read_position&) = default;
};

} // namespace pipemode
