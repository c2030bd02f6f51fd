#include <pipemode/pipeline/plan.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

using namespace pipemode;

namespace {

std::vector<object_entry> objects_of(std::vector<std::uint64_t> sizes)
{
    std::vector<object_entry> out;
    for (std::size_t i = 0; i < sizes.size(); ++i)
        out.push_back({"s3://b/part-" + std::to_string(i), sizes[i]});
    return out;
}

/// For every object, the byte ranges the ranks' plans cover, checked to tile [0, size)
/// exactly once; returns the bytes each rank covers.
std::vector<std::uint64_t> check_tiling(const std::vector<object_entry>& objects,
                                        const std::vector<std::vector<work_item>>& plans)
{
    std::map<std::size_t, std::map<std::uint64_t, std::uint64_t>> ranges;  // object -> begin -> end
    std::vector<std::uint64_t> bytes(plans.size(), 0);
    for (std::size_t r = 0; r < plans.size(); ++r) {
        for (const auto& w : plans[r]) {
            const std::uint64_t end = w.end.value_or(*objects[w.object].size);
            REQUIRE(w.begin <= end);
            REQUIRE(w.skip == 0);
            REQUIRE(ranges[w.object].emplace(w.begin, end).second);  // no two items start at the same byte
            bytes[r] += end - w.begin;
            if (w.begin != 0)
                CHECK(w.begin % 4 == 0);  // RecordIO records start on 4-byte boundaries
        }
    }
    REQUIRE(ranges.size() == objects.size());
    for (const auto& [object, rs] : ranges) {
        std::uint64_t at = 0;
        for (const auto& [b, e] : rs) {
            REQUIRE(b == at);  // no gap, no overlap
            at = e;
        }
        REQUIRE(at == *objects[object].size);
    }
    return bytes;
}

} // namespace

TEST_CASE("stable_random and stable_shuffle give the same sequence everywhere")
{
    // Golden values: a change here changes every shuffled job's order, on every machine.
    stable_random r(42);
    CHECK(r.next() == 0xbdd732262feb6e95ULL);
    std::vector<int> v(10);
    std::iota(v.begin(), v.end(), 0);
    stable_shuffle(std::span(v), 7);
    const std::vector<int> golden = v;
    std::vector<int> again(10);
    std::iota(again.begin(), again.end(), 0);
    stable_shuffle(std::span(again), 7);
    CHECK(again == golden);
    CHECK(std::set<int>(v.begin(), v.end()).size() == 10);

    stable_random b(1);
    for (int i = 0; i < 10000; ++i)
        REQUIRE(b.below(7) < 7);
}

TEST_CASE("stable_random.below is unbiased enough to shuffle")
{
    stable_random r(3);
    std::vector<int> counts(6, 0);
    for (int i = 0; i < 60000; ++i)
        ++counts[r.below(6)];
    for (int c : counts)
        CHECK(std::abs(c - 10000) < 500);  // about 5 standard deviations
}

TEST_CASE("epoch_order: the identity without a seed, a reproducible permutation per epoch with one")
{
    const auto plain = epoch_order(50, std::nullopt, 3);
    for (std::size_t i = 0; i < plain.size(); ++i)
        REQUIRE(plain[i] == i);
    const auto e0 = epoch_order(50, 1234, 0);
    const auto e1 = epoch_order(50, 1234, 1);
    CHECK(e0 == epoch_order(50, 1234, 0));
    CHECK(e0 != e1);
    CHECK(e0 != plain);
    CHECK(e0 != epoch_order(50, 1235, 0));
    CHECK(std::set<std::size_t>(e1.begin(), e1.end()).size() == 50);
}

TEST_CASE("by_object and by_bytes give every object to exactly one rank")
{
    const auto objects = objects_of({100, 5, 7, 300, 40, 40, 40, 1, 0, 64, 1000, 12, 13});
    for (auto mode : {shard_mode::by_object, shard_mode::by_bytes}) {
        for (std::size_t world : {1u, 2u, 3u, 7u}) {
            for (std::optional<std::uint64_t> seed : {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{9}}) {
                CAPTURE(int(mode), world, seed.has_value());
                const auto plans = plan_all_ranks(objects, {.shard = {.world_size = world, .mode = mode}, .shuffle_seed = seed}, 2);
                REQUIRE(plans.size() == world);
                std::multiset<std::size_t> seen;
                for (const auto& p : plans)
                    for (const auto& w : p) {
                        seen.insert(w.object);
                        CHECK(w.begin == 0);
                        CHECK(!w.end);
                    }
                REQUIRE(seen.size() == objects.size());
                REQUIRE(std::set<std::size_t>(seen.begin(), seen.end()).size() == objects.size());
                for (std::size_t r = 0; r < world; ++r) {
                    shard_options s{.rank = r, .world_size = world, .mode = mode};
                    CHECK(plan_epoch(objects, {.shard = s, .shuffle_seed = seed}, 2) == plans[r]);
                }
            }
        }
    }
}

TEST_CASE("by_object deals the epoch's order out in turn, as ShardedByS3Key does")
{
    const auto objects = objects_of({1, 1, 1, 1, 1, 1, 1});
    const auto plans = plan_all_ranks(objects, {.shard = {.world_size = 3, .mode = shard_mode::by_object}}, 0);
    CHECK(plans[0] == std::vector<work_item>{{.object = 0}, {.object = 3}, {.object = 6}});
    CHECK(plans[1] == std::vector<work_item>{{.object = 1}, {.object = 4}});
    CHECK(plans[2] == std::vector<work_item>{{.object = 2}, {.object = 5}});
}

TEST_CASE("by_bytes balances sizes that by_object would not")
{
    // One large object and many small ones: dealing in turn puts the large one plus its share
    // of small ones on rank 0.
    const auto objects = objects_of({900, 100, 100, 100, 100, 100, 100, 100, 100, 100});
    const auto load = [&](shard_mode m) {
        const auto plans = plan_all_ranks(objects, {.shard = {.world_size = 2, .mode = m}}, 0);
        std::vector<std::uint64_t> bytes;
        for (const auto& p : plans) {
            std::uint64_t b = 0;
            for (const auto& w : p)
                b += *objects[w.object].size;
            bytes.push_back(b);
        }
        return bytes;
    };
    CHECK(load(shard_mode::by_object) == std::vector<std::uint64_t>{1300, 500});
    CHECK(load(shard_mode::by_bytes) == std::vector<std::uint64_t>{900, 900});
    // Each rank still reads its objects in the epoch's order.
    const auto plans = plan_all_ranks(objects, {.shard = {.world_size = 2, .mode = shard_mode::by_bytes}, .shuffle_seed = 5}, 1);
    const auto order = epoch_order(objects.size(), 5, 1);
    for (const auto& p : plans) {
        std::vector<std::size_t> positions;
        for (const auto& w : p)
            positions.push_back(std::size_t(std::find(order.begin(), order.end(), w.object) - order.begin()));
        CHECK(std::is_sorted(positions.begin(), positions.end()));
    }
}

TEST_CASE("by_byte_range tiles every object and balances bytes, even with more ranks than objects")
{
    const std::vector<std::vector<std::uint64_t>> cases = {
        {1000}, {1000, 3}, {4096, 4096, 4096}, {17, 0, 4001, 999, 12, 64000}, {8, 8},
    };
    for (const auto& sizes : cases) {
        const auto objects = objects_of(sizes);
        const std::uint64_t total = std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0});
        for (std::size_t world : {1u, 2u, 3u, 7u, 16u}) {
            for (std::optional<std::uint64_t> seed : {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{77}}) {
                CAPTURE(sizes, world, seed.has_value());
                const auto plans = plan_all_ranks(objects, {.shard = {.world_size = world, .mode = shard_mode::by_byte_range}, .shuffle_seed = seed}, 1);
                const auto bytes = check_tiling(objects, plans);
                for (std::size_t r = 0; r < world; ++r) {
                    // Within a 4-byte word of the exact share on each side.
                    CHECK(bytes[r] + 8 * world >= total / world);
                    CHECK(bytes[r] <= total / world + 8);
                }
            }
        }
    }
}

TEST_CASE("the planner refuses what it cannot do, with a sentence saying why")
{
    const auto objects = objects_of({10, 20});
    const auto message = [&](plan_options o) {
        try {
            (void)plan_all_ranks(objects, o, 0);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(message({.shard = {.rank = 2, .world_size = 2}}), Catch::Contains("rank 2 is not below world_size 2"));
    CHECK_THAT(message({.shard = {.world_size = 0}}), Catch::Contains("world_size is 0"));
    CHECK_THAT(message({.shard = {.world_size = 2, .mode = shard_mode::by_byte_range}, .splittable = false}),
               Catch::Contains("by_bytes instead"));
    std::vector<object_entry> unsized = {{"s3://b/m/0", std::nullopt}};
    CHECK_THROWS_WITH(plan_all_ranks(unsized, {.shard = {.world_size = 2, .mode = shard_mode::by_bytes}}, 0),
                      Catch::Contains("'s3://b/m/0' has none"));
    CHECK_NOTHROW(plan_all_ranks(unsized, {.shard = {.world_size = 2, .mode = shard_mode::by_object}}, 0));
}

TEST_CASE("remaining_work continues a plan at a cursor, counting skipped records from the item's start")
{
    const std::vector<work_item> plan = {{.object = 4}, {.object = 2, .begin = 8, .end = 100}, {.object = 9}};
    CHECK(remaining_work(plan, {0, 0}) == plan);
    auto left = remaining_work(plan, {1, 5});
    REQUIRE(left.size() == 2);
    CHECK(left[0] == work_item{.object = 2, .begin = 8, .end = 100, .skip = 5});
    CHECK(left[1] == plan[2]);
    CHECK(remaining_work(plan, {3, 0}).empty());
    // A cursor counts the item's own skipped records too, so resuming twice does not add up.
    const auto twice = remaining_work(left, {0, 7});
    CHECK(twice[0].skip == 7);
}

TEST_CASE("plan_all_ranks_resumed hands every remaining item to exactly one new rank")
{
    const auto objects = objects_of({10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110});
    const plan_options old{.shard = {.world_size = 3, .mode = shard_mode::by_object}, .shuffle_seed = 1};
    const auto before = plan_all_ranks(objects, old, 4);
    const interrupted_run run{.world_size = 3, .cursors = {{1, 2}, {0, 0}, {3, 0}}};
    for (std::size_t world : {1u, 2u, 3u, 5u}) {
        CAPTURE(world);
        plan_options now = old;
        now.shard.world_size = world;
        const auto after = plan_all_ranks_resumed(objects, now, 4, std::span(&run, 1));
        REQUIRE(after.size() == world);
        std::map<std::size_t, std::uint64_t> got;  // object -> skip
        for (const auto& p : after)
            for (const auto& w : p)
                REQUIRE(got.emplace(w.object, w.skip).second);
        std::map<std::size_t, std::uint64_t> want;
        for (std::size_t r = 0; r < 3; ++r)
            for (const auto& w : remaining_work(before[r], run.cursors[r]))
                want.emplace(w.object, w.skip);
        CHECK(got == want);
    }
}

TEST_CASE("a partly delivered shuffle block is re-created whole: its items stay together and its order is re-drawn")
{
    const std::vector<work_item> plan = {{.object = 4}, {.object = 2}, {.object = 9}, {.object = 1}};
    // The block started at record 3 of item 1, ran into item 2, and 5 of its records were delivered.
    const auto left = remaining_work(plan, {.item = 1, .records = 3, .in_block = 5, .block_end_item = 2});
    REQUIRE(left.size() == 3);
    CHECK(left[0] == work_item{.object = 2, .skip = 3, .block_start = true, .block_drop = 5, .group = 1});
    CHECK(left[1] == work_item{.object = 9, .block_end_after = true});
    CHECK(left[2] == plan[3]);
    // Resuming again before that item delivered anything keeps the block to re-create...
    CHECK(remaining_work(left, {0, 3}).front().block_start);
    // ...and past it (a plain position further in the item) the block is done.
    CHECK(!remaining_work(left, {0, 9}).front().block_start);

    // Dealt to new ranks, a group is never split.
    const std::vector<object_entry> objects(10, object_entry{"x", 100});
    const std::vector<std::vector<work_item>> olds = {left, remaining_work(plan, {2, 0})};
    for (std::size_t world : {1u, 2u, 3u}) {
        const auto plans = redistribute(olds, objects, world);
        bool found = false;
        for (const auto& p : plans)
            for (std::size_t i = 0; i < p.size(); ++i)
                if (p[i].block_start) {
                    found = true;
                    REQUIRE(i + 1 < p.size());
                    CHECK(p[i + 1].object == 9);
                    CHECK(p[i + 1].block_end_after);
                }
        CHECK(found);
    }
}
