// pipemode: definitions of plan.hpp. Included at the bottom of plan.hpp only.
#pragma once

namespace pipemode {
namespace detail {

[[noreturn]] inline void plan_error(const std::string& s)
{
    throw std::invalid_argument("pipemode: " + s);
}

inline std::uint64_t size_of(std::span<const object_entry> objects, std::size_t i, const char* mode)
{
    if (!objects[i].size)
        plan_error(std::string("sharding ") + mode + " needs every object's size, and '" + objects[i].uri
                   + "' has none (S3 prefix listings and local files have sizes; manifests do not): "
                     "use shard_mode::by_object, or list the data set by prefix");
    return *objects[i].size;
}

/// The bytes an item covers, as far as the plan knows (for balancing).
inline std::uint64_t item_bytes(const work_item& w, std::span<const object_entry> objects)
{
    const auto size = objects[w.object].size;
    if (!size)
        return 0;
    const std::uint64_t end = std::min(w.end.value_or(*size), *size);
    return end > w.begin ? end - w.begin : 0;
}

inline std::vector<std::vector<work_item>> deal_by_object(std::span<const std::size_t> order, std::size_t world)
{
    std::vector<std::vector<work_item>> plans(world);
    for (std::size_t i = 0; i < order.size(); ++i)
        plans[i % world].push_back(work_item{.object = order[i]});
    return plans;
}

inline std::vector<std::vector<work_item>> deal_by_bytes(std::span<const object_entry> objects,
                                                         std::span<const std::size_t> order, std::size_t world)
{
    // Longest-processing-time-first: within 4/3 of the best possible balance, deterministic.
    std::vector<std::size_t> by_size(order.size());
    std::iota(by_size.begin(), by_size.end(), std::size_t{0});  // positions in `order`
    for (std::size_t i = 0; i < order.size(); ++i)
        (void)size_of(objects, order[i], "by bytes");
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](std::size_t a, std::size_t b) { return *objects[order[a]].size > *objects[order[b]].size; });
    std::vector<std::uint64_t> load(world, 0);
    std::vector<std::size_t> owner(order.size());
    for (const std::size_t pos : by_size) {
        const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
        owner[pos] = r;
        load[r] += *objects[order[pos]].size;
    }
    std::vector<std::vector<work_item>> plans(world);
    for (std::size_t pos = 0; pos < order.size(); ++pos)
        plans[owner[pos]].push_back(work_item{.object = order[pos]});
    return plans;
}

inline std::vector<std::vector<work_item>> deal_by_byte_range(std::span<const object_entry> objects,
                                                              std::span<const std::size_t> order, std::size_t world)
{
    std::uint64_t total = 0;
    for (const std::size_t i : order)
        total += size_of(objects, i, "by byte range");
    // Cut c (0 < c < world) at byte floor(c * total / world) of the run of all objects. A cut
    // inside an object is moved down to a multiple of 4 of that object (RecordIO records start
    // on such offsets); both neighbours use the same moved cut, so nothing falls between.
    const auto cut = [&](std::size_t c) -> std::uint64_t {
        // floor(total * c / world) without overflow: total = q * world + r.
        return total / world * c + total % world * c / world;
    };
    std::vector<std::vector<work_item>> plans(world);
    std::uint64_t start = 0;  // of the current object in the run
    std::size_t rank = 0;
    for (const std::size_t i : order) {
        const std::uint64_t size = *objects[i].size;
        std::uint64_t begin = 0;
        // Every cut inside this object ends one rank's piece and starts the next rank's.
        while (rank + 1 < world && cut(rank + 1) < start + size) {
            std::uint64_t at = cut(rank + 1) > start ? (cut(rank + 1) - start) & ~std::uint64_t{3} : 0;
            at = std::max(at, begin);
            if (at > begin)
                plans[rank].push_back(work_item{.object = i, .begin = begin, .end = at});
            begin = at;
            ++rank;
        }
        if (size == 0 || begin < size)
            plans[rank].push_back(work_item{.object = i, .begin = begin});
        start += size;
    }
    return plans;
}

} // namespace detail

inline void check_plan_options(const plan_options& o)
{
    if (o.shard.world_size == 0)
        detail::plan_error("world_size is 0; a job has at least one rank");
    if (o.shard.rank >= o.shard.world_size)
        detail::plan_error("rank " + std::to_string(o.shard.rank) + " is not below world_size "
                           + std::to_string(o.shard.world_size) + "; ranks count from 0");
    if (o.shard.mode == shard_mode::by_byte_range && !o.splittable)
        detail::plan_error("sharding by byte range needs objects whose records can be found from any byte; "
                           "compressed objects and one-record-per-object data cannot be cut: use "
                           "shard_mode::by_bytes instead");
}

inline std::vector<std::vector<work_item>> plan_all_ranks(std::span<const object_entry> objects,
                                                          const plan_options& o, std::uint64_t epoch)
{
    check_plan_options(o);
    const auto order = epoch_order(objects.size(), o.shuffle_seed, epoch);
    const std::size_t world = o.shard.world_size;
    switch (o.shard.mode) {
    case shard_mode::replicated: {
        std::vector<work_item> all;
        all.reserve(order.size());
        for (const std::size_t i : order)
            all.push_back(work_item{.object = i});
        return std::vector<std::vector<work_item>>(world, all);
    }
    case shard_mode::by_object: return detail::deal_by_object(order, world);
    case shard_mode::by_bytes: return detail::deal_by_bytes(objects, order, world);
    case shard_mode::by_byte_range: return detail::deal_by_byte_range(objects, order, world);
    }
    detail::plan_error("unknown shard_mode");
}

inline std::vector<work_item> plan_epoch(std::span<const object_entry> objects, const plan_options& o,
                                         std::uint64_t epoch)
{
    check_plan_options(o);
    if (o.shard.mode == shard_mode::replicated) {
        std::vector<work_item> all;
        for (const std::size_t i : epoch_order(objects.size(), o.shuffle_seed, epoch))
            all.push_back(work_item{.object = i});
        return all;
    }
    return std::move(plan_all_ranks(objects, o, epoch)[o.shard.rank]);
}

inline std::vector<work_item> remaining_work(std::span<const work_item> plan, plan_cursor at)
{
    std::vector<work_item> left;
    if (at.item >= plan.size())
        return left;
    left.assign(plan.begin() + static_cast<std::ptrdiff_t>(at.item), plan.end());
    // The cursor counts the item's records from its start, earlier skipped ones included.
    work_item& first = left.front();
    const bool item_started = at.records > first.skip;  // records of this item were delivered
    first.skip = std::max(first.skip, at.records);
    if (at.in_block != 0) {
        // A shuffle block was partly delivered: it must be re-read whole, from its first
        // record to its last, and the records already delivered dropped from its order.
        first.block_start = true;
        first.block_drop = at.in_block;
        const std::uint64_t last = std::max(at.block_end_item, at.item);
        first.group = std::min<std::uint64_t>(last - at.item, left.size() - 1);
        left[first.group].block_end_after = true;
    } else if (item_started) {
        // Past the item's first records: a block the item was to re-create is delivered.
        first.block_start = false;
        first.block_drop = 0;
        first.group = 0;
    }
    return left;
}

inline std::vector<std::vector<work_item>> redistribute(std::span<const std::vector<work_item>> left,
                                                        std::span<const object_entry> objects, std::size_t new_world)
{
    if (new_world == 0)
        detail::plan_error("world_size is 0; a job has at least one rank");
    std::vector<std::vector<work_item>> plans(new_world);
    std::vector<std::uint64_t> load(new_world, 0);
    const bool sized = std::all_of(objects.begin(), objects.end(), [](const object_entry& e) { return e.size.has_value(); });
    // Interleave the old ranks' lists so each new rank continues a mix of them, in order. A
    // unit is an item with the items grouped with it (a shuffle block to re-create), which go
    // to the same rank, together.
    std::vector<std::size_t> next(left.size(), 0);
    for (bool more = true; more;) {
        more = false;
        for (std::size_t o = 0; o < left.size(); ++o) {
            const auto& l = left[o];
            if (next[o] >= l.size())
                continue;
            more = true;
            const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
            const std::size_t unit_end = std::min<std::size_t>(l.size(), next[o] + 1 + l[next[o]].group);
            for (; next[o] < unit_end; ++next[o]) {
                plans[r].push_back(l[next[o]]);
                load[r] += sized ? std::max<std::uint64_t>(detail::item_bytes(l[next[o]], objects), 1) : 1;
            }
        }
    }
    return plans;
}

inline std::vector<std::vector<work_item>> plan_all_ranks_resumed(std::span<const object_entry> objects,
                                                                  const plan_options& o, std::uint64_t epoch,
                                                                  std::span<const interrupted_run> history)
{
    check_plan_options(o);
    if (history.empty())
        return plan_all_ranks(objects, o, epoch);
    if (o.shard.mode == shard_mode::replicated) {
        // Every rank reads everything: in each run, rank r continued where rank r (modulo the
        // world size) of the run before stopped.
        std::vector<std::vector<work_item>> plans(history.front().world_size, plan_all_ranks(objects, o, epoch).front());
        for (std::size_t g = 0; g < history.size(); ++g) {
            const interrupted_run& run = history[g];
            if (run.cursors.size() != plans.size())
                detail::plan_error("a resumed reader's history names " + std::to_string(run.cursors.size())
                                   + " ranks for a run of " + std::to_string(plans.size())
                                   + "; pass the saved state of every rank of the interrupted run");
            const std::size_t next_world = g + 1 < history.size() ? history[g + 1].world_size : o.shard.world_size;
            std::vector<std::vector<work_item>> next(next_world);
            for (std::size_t r = 0; r < next_world; ++r)
                next[r] = remaining_work(plans[r % plans.size()], run.cursors[r % plans.size()]);
            plans = std::move(next);
        }
        return plans;
    }
    plan_options first = o;
    first.shard.world_size = history.front().world_size;
    first.shard.rank = 0;
    auto plans = plan_all_ranks(objects, first, epoch);
    for (std::size_t g = 0; g < history.size(); ++g) {
        const interrupted_run& run = history[g];
        if (run.cursors.size() != plans.size())
            detail::plan_error("a resumed reader's history names " + std::to_string(run.cursors.size())
                               + " ranks for a run of " + std::to_string(plans.size())
                               + "; pass the saved state of every rank of the interrupted run");
        std::vector<std::vector<work_item>> left(plans.size());
        for (std::size_t r = 0; r < plans.size(); ++r)
            left[r] = remaining_work(plans[r], run.cursors[r]);
        const std::size_t next_world = g + 1 < history.size() ? history[g + 1].world_size : o.shard.world_size;
        plans = redistribute(left, objects, next_world);
    }
    return plans;
}

} // namespace pipemode
