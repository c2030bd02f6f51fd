#include <pipemode/cache/caching_store.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/data_set.hpp>

#include "source_helpers.hpp"

#include "reader_helpers.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;
using test::payloads_by_epoch;
using test::temp_dir;
namespace fs = std::filesystem;

namespace {

/// What a counting store saw, and the ETags its listing reports.
struct counts {
    std::atomic<std::uint64_t> reads{0};
    std::map<std::string, std::string> etags;  ///< by URI
    std::set<std::string> uris_read;
};

/// An object store that counts the items read from it (what the network would carry).
class counting_store final : public object_store {
public:
    counting_store(std::unique_ptr<object_store> inner, std::shared_ptr<counts> c) : inner_(std::move(inner)), c_(std::move(c)) {}

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        auto objects = co_await inner_->async_list(ctx);
        for (auto& e : objects)
            if (auto it = c_->etags.find(e.uri); it != c_->etags.end())
                e.etag = it->second;
        co_return objects;
    }
    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        c_->reads += reads.size();
        for (const auto& r : reads)
            c_->uris_read.insert(r.uri);
        return inner_->open(std::move(reads));
    }
    std::string describe() const override { return "counting " + inner_->describe(); }
    std::size_t reserve_buffers(const reader_options& o) override { return inner_->reserve_buffers(o); }

private:
    std::unique_ptr<object_store> inner_;
    std::shared_ptr<counts> c_;
};

/// `objects` RecordIO files under `dir` of some 20-60 KiB each; returns their sizes.
std::vector<std::uint64_t> make_data_set(const fs::path& dir, std::size_t objects, std::uint64_t seed = 1)
{
    std::mt19937_64 rng(seed);
    std::vector<std::uint64_t> sizes;
    for (std::size_t i = 0; i < objects; ++i) {
        std::string bytes;
        const auto sink = [&](std::span<const std::byte> b) { bytes.append(reinterpret_cast<const char*>(b.data()), b.size()); };
        const std::size_t n = 100 + rng() % 200;
        for (std::size_t j = 0; j < n; ++j) {
            std::string p = "s" + std::to_string(seed) + "o" + std::to_string(i) + "r" + std::to_string(j) + ":";
            p.append(rng() % 300, static_cast<char>('a' + rng() % 26));
            write_recordio(test::bytes_of(p), sink);
        }
        char name[32];
        std::snprintf(name, sizeof name, "part-%04zu.rec", i);
        test::write_file(dir / name, test::bytes_of(bytes));
        sizes.push_back(bytes.size());
    }
    return sizes;
}

reader_options small_batches()
{
    return reader_options{.batch_size = 7, .format = data_format::recordio, .memory_budget = 64 * mib,
                          .max_record_size = 1 * mib, .read_size = 16 * kib};
}

struct directory_use {
    std::uint64_t bytes = 0;
    std::size_t entries = 0;
    std::size_t partials = 0;
};

directory_use use_of(const fs::path& dir)
{
    directory_use u;
    for (const auto& e : fs::directory_iterator(dir)) {
        const auto name = e.path().filename().string();
        if (name.ends_with(".data"))
            ++u.entries;
        else if (name.ends_with(".partial"))
            ++u.partials;
        else
            continue;
        u.bytes += fs::file_size(e.path());
    }
    return u;
}

struct cached_run {
    std::map<std::uint64_t, std::vector<std::string>> payloads;
    cache::cache_stats stats;
};

cached_run run_cached(const fs::path& data, const fs::path& cache_dir, std::uint64_t budget, std::shared_ptr<counts> c,
                      data_set_options options, cache::cache_options extra = {})
{
    auto stats = std::make_shared<cache::cache_stats>();
    extra.directory = cache_dir.string();
    extra.budget_bytes = budget;
    if (!extra.free_space_floor)
        extra.free_space_floor = 0;
    data_set_reader r(cache::caching_store(std::make_unique<counting_store>(local_store({data.string()}), c), extra, stats),
                      options, small_batches());
    cached_run out{payloads_by_epoch(r), {}};
    out.stats = *stats;
    return out;
}

} // namespace

namespace {

cached_run run_in_memory(const fs::path& data, std::uint64_t budget, std::shared_ptr<counts> c, data_set_options options)
{
    auto stats = std::make_shared<cache::cache_stats>();
    data_set_reader r(cache::caching_store(std::make_unique<counting_store>(local_store({data.string()}), c),
                                           {.budget_bytes = budget}, stats),
                      options, small_batches());
    cached_run out{payloads_by_epoch(r), {}};
    out.stats = *stats;
    return out;
}

/// Empties the process's memory cache before and after a test, so that tests do not share it.
struct fresh_memory_cache {
    fresh_memory_cache() { cache::clear_memory_cache(); }
    ~fresh_memory_cache() { cache::clear_memory_cache(); }
};

} // namespace

TEST_CASE("epochs after the first read every object from the cache, with the records of an uncached reader")
{
    temp_dir data, cache_dir;
    const auto sizes = make_data_set(data.path(), 6);
    const data_set_options options{.plan = {.shuffle_seed = 5}, .epochs = 3};
    data_set_reader plain(local_store({data.path().string()}), options, small_batches());
    const auto expected = payloads_by_epoch(plain);

    auto c = std::make_shared<counts>();
    const auto run = run_cached(data.path(), cache_dir.path() / "c", 64 * mib, c, options);
    CHECK(run.payloads == expected);
    CHECK(c->reads == 6);  // epoch 0 only
    CHECK(run.stats.admitted == 6);
    CHECK(run.stats.hits == 12);
    CHECK(run.stats.misses == 6);
    const auto use = use_of(cache_dir.path() / "c");
    CHECK(use.entries == 6);
    CHECK(use.partials == 0);
    std::uint64_t total = 0;
    for (auto s : sizes)
        total += s;
    CHECK(use.bytes >= total);
    CHECK(use.bytes < total + 6 * 1024);

    SECTION("a restarted job reads nothing from the store")
    {
        auto again = std::make_shared<counts>();
        const auto second = run_cached(data.path(), cache_dir.path() / "c", 64 * mib, again, options);
        CHECK(second.payloads == expected);
        CHECK(again->reads == 0);
        CHECK(second.stats.hits == 18);
    }
    SECTION("a changed ETag or size is read again, never served, and its old entry goes")
    {
        auto changed = std::make_shared<counts>();
        const std::string etag_uri = (data.path() / "part-0002.rec").string();
        changed->etags[etag_uri] = "\"v2\"";
        // part-0004 rewritten with other records and another size.
        temp_dir other;
        make_data_set(other.path(), 6, 77);
        fs::copy_file(other.path() / "part-0004.rec", data.path() / "part-0004.rec", fs::copy_options::overwrite_existing);
        data_set_reader fresh(local_store({data.path().string()}), options, small_batches());
        const auto now = payloads_by_epoch(fresh);
        REQUIRE(now != expected);
        const auto second = run_cached(data.path(), cache_dir.path() / "c", 64 * mib, changed, options);
        CHECK(second.payloads == now);
        CHECK(changed->reads == 2);
        CHECK(changed->uris_read == std::set<std::string>{etag_uri, (data.path() / "part-0004.rec").string()});
        CHECK(use_of(cache_dir.path() / "c").entries == 6);
    }
}

TEST_CASE("a budget smaller than the data set keeps the first objects read and reads the rest every epoch")
{
    temp_dir data, cache_dir;
    const auto sizes = make_data_set(data.path(), 8);
    std::uint64_t total = 0;
    for (auto s : sizes)
        total += s;
    const std::uint64_t budget = total / 2;
    const data_set_options options{.plan = {.shuffle_seed = 9}, .epochs = 3};
    data_set_reader plain(local_store({data.path().string()}), options, small_batches());
    const auto expected = payloads_by_epoch(plain);

    auto c = std::make_shared<counts>();
    const auto run = run_cached(data.path(), cache_dir.path(), budget, c, options);
    CHECK(run.payloads == expected);
    const auto use = use_of(cache_dir.path());
    CHECK(use.bytes <= budget);
    CHECK(use.entries == run.stats.admitted);
    CHECK(run.stats.admitted >= 2);
    CHECK(run.stats.admitted < 8);
    // Fill then freeze: every later epoch hits exactly the admitted objects.
    CHECK(run.stats.hits == 2 * run.stats.admitted);
    CHECK(c->reads == 8 + 2 * (8 - run.stats.admitted));
    CHECK(run.stats.hit_bytes >= 2 * (budget - 8 * 1024 - 60 * 1024));
}

TEST_CASE("a budget smaller than the largest object is refused at the listing, naming both sizes")
{
    temp_dir data, cache_dir;
    const auto sizes = make_data_set(data.path(), 3);
    const auto largest = *std::max_element(sizes.begin(), sizes.end());
    auto c = std::make_shared<counts>();
    CHECK_THROWS_WITH(run_cached(data.path(), cache_dir.path(), largest - 1, c, {}),
                      Catch::Contains("budget (" + std::to_string(largest - 1) + " bytes) is smaller than")
                          && Catch::Contains("(" + std::to_string(largest) + " bytes), the largest object"));
    CHECK_THROWS_WITH(cache::caching_store(local_store({data.path().string()}), {.directory = cache_dir.path().string()}),
                      Catch::Contains("budget is 0"));
}

TEST_CASE("byte-range shards are cached as their ranges, read to their ends, and read back with the same records")
{
    const bool memory = GENERATE(false, true);
    INFO((memory ? "in memory" : "in a directory"));
    fresh_memory_cache fresh;
    temp_dir data, cache_dir;
    make_data_set(data.path(), 5);
    const auto options_of = [](std::size_t rank) {
        return data_set_options{.plan = {.shard = {.rank = rank, .world_size = 2, .mode = shard_mode::by_byte_range},
                                         .shuffle_seed = 3},
                                .epochs = 2};
    };
    const auto run = [&](std::size_t rank, std::shared_ptr<counts> c) {
        return memory ? run_in_memory(data.path(), 64 * mib, c, options_of(rank))
                      : run_cached(data.path(), cache_dir.path(), 64 * mib, c, options_of(rank));
    };
    std::map<std::uint64_t, std::vector<std::string>> expected[2];
    for (std::size_t rank = 0; rank < 2; ++rank) {
        data_set_reader plain(local_store({data.path().string()}), options_of(rank), small_batches());
        expected[rank] = payloads_by_epoch(plain);
        auto c = std::make_shared<counts>();
        const auto first = run(rank, c);
        CHECK(first.payloads == expected[rank]);
        // The reader stops a range's source after the first record past the range's end; the
        // cache reads the item's rest and commits it, so no item is abandoned and every item
        // read is admitted (the ranks' items differ, so none is present already).
        CHECK(first.stats.abandoned == 0);
        CHECK(first.stats.admitted == first.stats.misses);
        CHECK(first.stats.hits >= 1);
        if (!memory)
            CHECK(use_of(cache_dir.path()).partials == 0);
    }
    // Every range of both epochs of both ranks has been read once: a second run reads nothing.
    for (std::size_t rank = 0; rank < 2; ++rank) {
        auto c = std::make_shared<counts>();
        const auto again = run(rank, c);
        CHECK(again.payloads == expected[rank]);
        CHECK(c->reads == 0);
        CHECK(again.stats.misses == 0);
        CHECK(again.stats.hits >= 2);
    }
}

TEST_CASE("the free-space floor keeps objects out of the cache")
{
    temp_dir data, cache_dir;
    make_data_set(data.path(), 4);
    auto c = std::make_shared<counts>();
    cache::cache_options o{.free_space_floor = 10 * mib,
                           .free_space = [](const std::string&) { return cache::file_system_space{10 * mib + 1000, 100 * mib}; }};
    const auto run = run_cached(data.path(), cache_dir.path(), 64 * mib, c, {.epochs = 2}, o);
    CHECK(run.stats.admitted == 0);
    CHECK(run.stats.refused == 8);
    CHECK(c->reads == 8);
    CHECK(use_of(cache_dir.path()).entries == 0);

    cache::cache_options roomy{.free_space_floor = 10 * mib,
                               .free_space = [](const std::string&) { return cache::file_system_space{11 * mib, 100 * mib}; }};
    temp_dir cache2;
    const auto second = run_cached(data.path(), cache2.path(), 64 * mib, c, {.epochs = 1}, roomy);
    CHECK(second.stats.admitted == 4);
}

TEST_CASE("a writer killed mid-write leaves a partial file that is removed and never served")
{
    temp_dir data, cache_dir;
    make_data_set(data.path(), 3);
    const std::string dir = cache_dir.path().string();
    // The key the store will use for part-0001, so that the dead writer's file would be the
    // entry if it were ever taken for one.
    const auto uri = (data.path() / "part-0001.rec").string();
    const auto size = fs::file_size(uri);
    const cache::detail::entry_key key{"counting " + data.path().string(), uri, size, "", 0, size};
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        cache::detail::refusal why{};
        std::uint64_t used = 0;
        auto r = cache::detail::reserve(dir, key.text(), key.bytes(), 64 * mib, 0, {}, cache::detail::this_process(), why, used);
        if (r) {
            const std::string half(size / 2, 'x');
            (void)!::pwrite(r->fd, half.data(), half.size(), 0);
        }
        (void)!::write(ready[1], "x", 1);
        ::pause();
        ::_exit(0);
    }
    char byte;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    ::close(ready[0]);
    ::close(ready[1]);
    CHECK(use_of(cache_dir.path()).partials == 1);
    // A live writer's partial is counted and left alone.
    {
        cache::detail::directory_lock lock(dir);
        const auto s = cache::detail::scan(dir);
        CHECK(s.writing.size() == 1);
        CHECK(s.used >= size);
    }
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    // A torn entry (a rename of a file without its trailer) is not served either.
    test::write_file(cache_dir.path() / "0123456789abcdef.data", test::bytes_of(std::string(100, 'y')));

    data_set_reader plain(local_store({data.path().string()}), {.epochs = 2}, small_batches());
    const auto expected = payloads_by_epoch(plain);
    auto c = std::make_shared<counts>();
    const auto run = run_cached(data.path(), cache_dir.path(), 64 * mib, c, {.epochs = 2});
    CHECK(run.payloads == expected);
    CHECK(run.stats.admitted == 3);
    CHECK(run.stats.hits == 3);
    const auto use = use_of(cache_dir.path());
    CHECK(use.partials == 0);
    CHECK(use.entries == 3);
}

TEST_CASE("concurrent writers, threads and processes, never reserve past the budget")
{
    temp_dir cache_dir;
    const std::string dir = cache_dir.path().string();
    const std::uint64_t budget = 1 * mib;
    // Each writer reserves items of 10-50 KiB until refused for the budget, writes and commits
    // half of them and leaves the others as its live partial files.
    const auto writer = [&](int id) {
        std::mt19937_64 rng(static_cast<std::uint64_t>(id));
        const auto self = cache::detail::this_process();
        std::vector<cache::detail::reservation> kept;
        for (int i = 0;; ++i) {
            const std::uint64_t bytes = 10 * kib + rng() % (40 * kib);
            const cache::detail::entry_key key{"s", "w" + std::to_string(id) + "-" + std::to_string(i), bytes, "", 0, bytes};
            cache::detail::refusal why{};
            std::uint64_t used = 0;
            auto r = cache::detail::reserve(dir, key.text(), bytes, budget, 0, {}, self, why, used);
            if (!r) {
                if (why == cache::detail::refusal::budget)
                    break;
                continue;
            }
            if (i % 2 == 0) {
                cache::detail::commit(dir, *r, key.text(), bytes);
                ::close(r->fd);
            } else {
                kept.push_back(*r);
            }
        }
        return kept;
    };
    SECTION("threads")
    {
        std::vector<std::thread> threads;
        for (int t = 0; t < 6; ++t)
            threads.emplace_back([&, t] { (void)writer(t); });
        for (auto& t : threads)
            t.join();
    }
    SECTION("processes")
    {
        std::vector<pid_t> children;
        for (int p = 0; p < 4; ++p) {
            const pid_t pid = ::fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                (void)writer(100 + p);
                ::_exit(0);
            }
            children.push_back(pid);
        }
        for (auto pid : children) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            CHECK(WIFEXITED(status));
        }
    }
    const auto use = use_of(cache_dir.path());
    CHECK(use.bytes <= budget);
    CHECK(use.bytes > budget - 60 * kib);
    cache::detail::directory_lock lock(dir);
    CHECK(cache::detail::scan(dir).used <= budget);
}

TEST_CASE("cache sizes parse with binary units and refuse what is not a size")
{
    CHECK(cache::parse_size("123") == 123);
    CHECK(cache::parse_size("4K") == 4096);
    CHECK(cache::parse_size("20G") == 20 * gib);
    CHECK(cache::parse_size("1.5M") == 3 * mib / 2);
    CHECK(cache::parse_size("2GB") == 2 * gib);
    CHECK_THROWS_WITH(cache::parse_size("lots"), Catch::Contains("'lots' is not a size"));
    CHECK_THROWS(cache::parse_size("0"));
    CHECK_THROWS(cache::parse_size("5X"));
}


TEST_CASE("a cache in memory: epochs after the first and later readers of the process read from it, with the same records")
{
    fresh_memory_cache fresh;
    temp_dir data;
    const auto sizes = make_data_set(data.path(), 6);
    std::uint64_t total = 0;
    for (auto s : sizes)
        total += s;
    const data_set_options options{.plan = {.shuffle_seed = 5}, .epochs = 3};
    data_set_reader plain(local_store({data.path().string()}), options, small_batches());
    const auto expected = payloads_by_epoch(plain);

    auto c = std::make_shared<counts>();
    const auto run = run_in_memory(data.path(), 64 * mib, c, options);
    CHECK(run.payloads == expected);
    CHECK(c->reads == 6);  // epoch 0 only
    CHECK(run.stats.admitted == 6);
    CHECK(run.stats.hits == 12);
    CHECK(run.stats.misses == 6);
    CHECK(run.stats.hit_bytes == 2 * total);
    CHECK(cache::memory_cache_bytes() >= total);
    CHECK(cache::memory_cache_bytes() < total + 6 * 1024);

    SECTION("another reader of the process (a new store, as a trainer makes for each epoch) reads nothing from the store")
    {
        auto again = std::make_shared<counts>();
        const auto second = run_in_memory(data.path(), 64 * mib, again, options);
        CHECK(second.payloads == expected);
        CHECK(again->reads == 0);
        CHECK(second.stats.hits == 18);
    }
    SECTION("a changed ETag is read again, never served, and its old entry goes")
    {
        auto changed = std::make_shared<counts>();
        const std::string uri = (data.path() / "part-0002.rec").string();
        changed->etags[uri] = "\"v2\"";
        const auto before = cache::memory_cache_bytes();
        const auto second = run_in_memory(data.path(), 64 * mib, changed, options);
        CHECK(second.payloads == expected);
        CHECK(changed->reads == 1);
        CHECK(changed->uris_read == std::set<std::string>{uri});
        CHECK(second.stats.admitted == 1);
        CHECK(cache::memory_cache_bytes() == before + 4);  // the same item, its key longer by the ETag
    }
    SECTION("cleared, it is read again")
    {
        cache::clear_memory_cache();
        CHECK(cache::memory_cache_bytes() == 0);
        auto again = std::make_shared<counts>();
        const auto second = run_in_memory(data.path(), 64 * mib, again, {.plan = {.shuffle_seed = 5}, .epochs = 1});
        CHECK(second.payloads.at(0) == expected.at(0));
        CHECK(again->reads == 6);
    }
}

TEST_CASE("a memory budget smaller than the data set keeps the first objects read, and one below the largest object is refused")
{
    fresh_memory_cache fresh;
    temp_dir data;
    const auto sizes = make_data_set(data.path(), 8);
    std::uint64_t total = 0;
    for (auto s : sizes)
        total += s;
    SECTION("fill then freeze")
    {
        const std::uint64_t budget = total / 2;
        const data_set_options options{.plan = {.shuffle_seed = 9}, .epochs = 3};
        data_set_reader plain(local_store({data.path().string()}), options, small_batches());
        const auto expected = payloads_by_epoch(plain);
        auto c = std::make_shared<counts>();
        const auto run = run_in_memory(data.path(), budget, c, options);
        CHECK(run.payloads == expected);
        CHECK(cache::memory_cache_bytes() <= budget);
        CHECK(cache::memory_cache_bytes() > budget - 60 * kib);
        CHECK(run.stats.admitted >= 2);
        CHECK(run.stats.admitted < 8);
        CHECK(run.stats.hits == 2 * run.stats.admitted);
        CHECK(c->reads == 8 + 2 * (8 - run.stats.admitted));
    }
    SECTION("below the largest object")
    {
        const auto largest = *std::max_element(sizes.begin(), sizes.end());
        auto c = std::make_shared<counts>();
        CHECK_THROWS_WITH(run_in_memory(data.path(), largest - 1, c, {}),
                          Catch::Contains("budget (" + std::to_string(largest - 1) + " bytes) is smaller than")
                              && Catch::Contains("(" + std::to_string(largest) + " bytes), the largest object"));
        CHECK(cache::memory_cache_bytes() == 0);
    }
}

TEST_CASE("readers on several threads share the memory cache within its budget, each with its own records")
{
    fresh_memory_cache fresh;
    temp_dir data;
    const auto sizes = make_data_set(data.path(), 8);
    std::uint64_t total = 0;
    for (auto s : sizes)
        total += s;
    const std::uint64_t budget = total * 3 / 4;
    std::vector<std::map<std::uint64_t, std::vector<std::string>>> expected(4), got(4);
    std::vector<cache::cache_stats> stats(4);
    for (std::size_t t = 0; t < 4; ++t) {
        data_set_reader plain(local_store({data.path().string()}), {.plan = {.shuffle_seed = t}, .epochs = 2}, small_batches());
        expected[t] = payloads_by_epoch(plain);
    }
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            const auto run = run_in_memory(data.path(), budget, std::make_shared<counts>(), {.plan = {.shuffle_seed = t}, .epochs = 2});
            got[t] = run.payloads;
            stats[t] = run.stats;
        });
    for (auto& t : threads)
        t.join();
    std::uint64_t admitted = 0, hits = 0;
    for (std::size_t t = 0; t < 4; ++t) {
        CHECK(got[t] == expected[t]);
        admitted += stats[t].admitted;
        hits += stats[t].hits;
    }
    // Each item is admitted once at most, by whichever reader reserved it first.
    CHECK(admitted <= 8);
    CHECK(admitted >= 1);
    CHECK(hits >= 1);
    CHECK(cache::memory_cache_bytes() <= budget);
}
