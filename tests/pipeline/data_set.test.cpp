#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/data_set.hpp>

#include "reader_helpers.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace pipemode;
using test::payloads_by_epoch;
using test::payloads_of;
using test::temp_dir;

namespace {

/// A data set of `objects` RecordIO files under `dir`, record j of object i carrying the
/// payload "o<i>r<j>" padded to a pseudo-random length (some hundreds of bytes, some past a
/// read, some holding aligned RecordIO magic words, which the writer splits into parts).
/// Returns every payload in file order.
std::vector<std::string> make_data_set(const temp_dir& dir, std::size_t objects, std::size_t records_per_object,
                                       std::uint64_t seed = 1)
{
    std::mt19937_64 rng(seed);
    std::vector<std::string> all;
    for (std::size_t i = 0; i < objects; ++i) {
        std::string bytes;
        const auto sink = [&](std::span<const std::byte> b) { bytes.append(reinterpret_cast<const char*>(b.data()), b.size()); };
        const std::size_t n = records_per_object == 0 ? 0 : records_per_object + rng() % records_per_object;
        for (std::size_t j = 0; j < n; ++j) {
            std::string p = "o" + std::to_string(i) + "r" + std::to_string(j) + ":";
            const std::size_t len = rng() % 8 == 0 ? 2000 + rng() % 6000 : rng() % 300;
            while (p.size() < len)
                p += static_cast<char>('a' + rng() % 26);
            if (rng() % 5 == 0) {  // an aligned magic word inside the payload: a split record
                p.resize((p.size() + 3) & ~std::size_t{3});
                const std::uint32_t magic = recordio_magic;
                p.append(reinterpret_cast<const char*>(&magic), 4);
                p += "tail";
            }
            write_recordio(test::bytes_of(p), sink);
            all.push_back(p);
        }
        char name[32];
        std::snprintf(name, sizeof name, "part-%04zu.rec", i);
        test::write_file(dir / name, test::bytes_of(bytes));
    }
    return all;
}

reader_options small_batches(std::size_t n = 7, std::size_t shuffle_records = 0)
{
    return reader_options{.batch_size = n, .format = data_format::recordio, .memory_budget = 64 * mib,
                          .max_record_size = 1 * mib, .read_size = 64 * kib, .shuffle_records = shuffle_records,
                          .shuffle_seed = 99, .shuffle_buffer_bytes = 1 * mib};
}

std::multiset<std::string> as_multiset(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

} // namespace

TEST_CASE("local_store lists directories recursively in path order, files, prefixes and file:// URIs")
{
    temp_dir dir;
    std::filesystem::create_directories(dir.path() / "a" / "b");
    for (const char* f : {"a/b/z.rec", "a/x.rec", "a/y.rec", "top-1.rec", "top-2.rec", "other.rec"})
        test::write_file(dir / f, test::bytes_of(std::string(std::strlen(f), 'x')));
    const auto list = [&](std::vector<std::string> paths) {
        auto store = local_store(std::move(paths));
        asio::io_context io;
        asio::thread_pool pool(1);
        std::vector<object_entry> out;
        asio::co_spawn(io, store->async_list({io.get_executor(), pool.get_executor()}),
                       [&](std::exception_ptr e, std::vector<object_entry> v) {
                           if (e)
                               std::rethrow_exception(e);
                           out = std::move(v);
                       });
        io.run();
        std::vector<std::string> names;
        for (const auto& o : out) {
            names.push_back(std::filesystem::relative(o.uri, dir.path()).string());
            CHECK(o.size == names.back().size());
        }
        return names;
    };
    CHECK(list({dir / "a"}) == std::vector<std::string>{"a/b/z.rec", "a/x.rec", "a/y.rec"});
    CHECK(list({dir / "top-"}) == std::vector<std::string>{"top-1.rec", "top-2.rec"});
    CHECK(list({"file://" + (dir / "other.rec"), dir / "a/x.rec"}) == std::vector<std::string>{"other.rec", "a/x.rec"});
    CHECK_THROWS_WITH(list({dir / "nothing-"}), Catch::Contains("nothing-") && Catch::Contains("no file"));
}

TEST_CASE("a data set reader reads every record once per epoch, reshuffling objects each epoch, and tags batches with their epoch")
{
    temp_dir dir;
    const auto all = make_data_set(dir, 9, 20);
    data_set_reader r(local_store({dir.path().string()}), {.plan = {.shuffle_seed = 11}, .epochs = 3}, small_batches());
    std::size_t batches = 0;
    std::map<std::uint64_t, std::vector<std::string>> epochs;
    for (auto& b : r) {
        ++batches;
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto bytes = b.feature("payload").item(i, 0);
            epochs[b.epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
    }
    REQUIRE(epochs.size() == 3);
    for (const auto& [e, records] : epochs)
        CHECK(as_multiset(records) == as_multiset(all));
    CHECK(epochs[0] != all);  // shuffled
    CHECK(epochs[0] != epochs[1]);
    CHECK(epochs[1] != epochs[2]);
    // The same seed gives the same orders.
    data_set_reader again(local_store({dir.path().string()}), {.plan = {.shuffle_seed = 11}, .epochs = 3}, small_batches());
    CHECK(payloads_by_epoch(again) == epochs);
    // Without a seed, every epoch is the listing's order.
    data_set_reader plain(local_store({dir.path().string()}), {.epochs = 2}, small_batches());
    const auto p = payloads_by_epoch(plain);
    CHECK(p.at(0) == all);
    CHECK(p.at(1) == all);
}

TEST_CASE("no batch spans two epochs, and last_batch applies to each epoch")
{
    temp_dir dir;
    const auto all = make_data_set(dir, 2, 10);
    for (auto policy : {last_batch::keep_short, last_batch::drop, last_batch::pad}) {
        auto o = small_batches(8);
        o.last_batch = policy;
        data_set_reader r(local_store({dir.path().string()}), {.epochs = 3}, o);
        std::map<std::uint64_t, std::size_t> rows;
        for (auto& b : r)
            rows[b.epoch()] += b.size() - b.padding();
        const std::size_t full = all.size() / 8 * 8;
        for (std::uint64_t e = 0; e < 3; ++e)
            CHECK(rows[e] == (policy == last_batch::drop ? full : all.size()));
    }
}

TEST_CASE("shards are disjoint and together hold every record exactly once, for 1, 2, 3 and 7 ranks in every mode")
{
    temp_dir dir;
    const auto all = make_data_set(dir, 5, 40);
    for (auto mode : {shard_mode::by_object, shard_mode::by_bytes, shard_mode::by_byte_range}) {
        for (std::size_t world : {1u, 2u, 3u, 7u}) {
            if (mode != shard_mode::by_byte_range && world > 5)
                continue;  // more ranks than objects: only byte ranges give every rank work
            CAPTURE(int(mode), world);
            std::vector<std::string> union_of_shards;
            for (std::size_t rank = 0; rank < world; ++rank) {
                data_set_reader r(local_store({dir.path().string()}),
                                  {.plan = {.shard = {.rank = rank, .world_size = world, .mode = mode}, .shuffle_seed = 3}},
                                  small_batches());
                const auto mine = payloads_of(r);
                if (world > 1)
                    CHECK(mine.size() < all.size());
                union_of_shards.insert(union_of_shards.end(), mine.begin(), mine.end());
            }
            CHECK(as_multiset(union_of_shards) == as_multiset(all));
        }
    }
}

TEST_CASE("byte-range shards start and stop at record boundaries inside objects, with split records and tiny objects")
{
    temp_dir dir;
    auto all = make_data_set(dir, 2, 300, 5);
    // A tiny object and an empty one among them.
    std::string tiny;
    write_recordio(test::bytes_of(std::string("tiny")), [&](std::span<const std::byte> b) { tiny.append(reinterpret_cast<const char*>(b.data()), b.size()); });
    test::write_file(dir / "part-0002.rec", test::bytes_of(tiny));
    test::write_file(dir / "part-0003.rec", {});
    all.push_back("tiny");
    for (std::size_t world : {2u, 3u, 7u, 16u, 61u}) {
        CAPTURE(world);
        std::vector<std::string> union_of_shards;
        for (std::size_t rank = 0; rank < world; ++rank) {
            data_set_reader r(local_store({dir.path().string()}),
                              {.plan = {.shard = {.rank = rank, .world_size = world, .mode = shard_mode::by_byte_range}}},
                              small_batches());
            const auto mine = payloads_of(r);
            union_of_shards.insert(union_of_shards.end(), mine.begin(), mine.end());
        }
        // Without a shuffle, rank order is file order: the concatenation is the data set itself.
        CHECK(union_of_shards == all);
    }
}

TEST_CASE("shards in separate processes, as ranks of a job run them, cover every record exactly once")
{
    temp_dir dir;
    temp_dir results;  // not in the data set's directory, which the ranks list
    const auto all = make_data_set(dir, 6, 30);
    for (auto mode : {shard_mode::by_object, shard_mode::by_byte_range}) {
        const std::size_t world = 3;
        std::vector<pid_t> children;
        for (std::size_t rank = 0; rank < world; ++rank) {
            const pid_t pid = ::fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                // The child: read this rank's shard, write one payload per line (payloads hold
                // no newline), exit 0 on success.
                int status = 1;
                try {
                    data_set_reader r(local_store({dir.path().string()}),
                                      {.plan = {.shard = {.rank = rank, .world_size = world, .mode = mode}, .shuffle_seed = 8},
                                       .epochs = 2},
                                      small_batches());
                    std::ofstream out(results / ("rank-" + std::to_string(rank) + ".txt"));
                    for (const auto& [e, records] : payloads_by_epoch(r))
                        for (const auto& p : records)
                            out << e << ' ' << p.substr(0, p.find(':')) << '\n';
                    status = out ? 0 : 1;
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "rank %zu: %s\n", rank, e.what());
                }
                ::_exit(status);
            }
            children.push_back(pid);
        }
        for (const pid_t pid : children) {
            int status = 0;
            REQUIRE(::waitpid(pid, &status, 0) == pid);
            REQUIRE(WIFEXITED(status));
            REQUIRE(WEXITSTATUS(status) == 0);
        }
        std::map<std::uint64_t, std::multiset<std::string>> seen;
        std::vector<std::set<std::string>> per_rank(world);
        for (std::size_t rank = 0; rank < world; ++rank) {
            std::ifstream in(results / ("rank-" + std::to_string(rank) + ".txt"));
            std::uint64_t e;
            std::string id;
            while (in >> e >> id) {
                seen[e].insert(id);
                if (e == 0)
                    per_rank[rank].insert(id);
            }
            std::filesystem::remove(results / ("rank-" + std::to_string(rank) + ".txt"));
        }
        std::multiset<std::string> want;
        for (const auto& p : all)
            want.insert(p.substr(0, p.find(':')));
        CHECK(seen[0] == want);
        CHECK(seen[1] == want);
        for (std::size_t a = 0; a < world; ++a) {
            CHECK(!per_rank[a].empty());
            for (std::size_t b = a + 1; b < world; ++b)
                for (const auto& id : per_rank[a])
                    REQUIRE(per_rank[b].count(id) == 0);
        }
    }
}

TEST_CASE("a reader resumed from a saved state continues exactly where the old one stopped, mid-object and across epochs")
{
    temp_dir dir;
    make_data_set(dir, 4, 25);
    for (auto [mode, shuffle] : {std::pair{shard_mode::replicated, 0u}, std::pair{shard_mode::by_object, 0u},
                                 std::pair{shard_mode::by_byte_range, 0u}, std::pair{shard_mode::replicated, 13u},
                                 std::pair{shard_mode::by_byte_range, 50u}}) {
        const std::size_t world = mode == shard_mode::replicated ? 1 : 2;
        for (std::size_t stop_after : {0u, 1u, 5u, 13u, 30u}) {
            CAPTURE(int(mode), shuffle, stop_after);
            const data_set_options options{
                .plan = {.shard = {.rank = world - 1, .world_size = world, .mode = mode}, .shuffle_seed = 21}, .epochs = 3};
            data_set_reader whole(local_store({dir.path().string()}), options, small_batches(7, shuffle));
            const auto uninterrupted = payloads_by_epoch(whole);

            std::map<std::uint64_t, std::vector<std::string>> got;
            std::string saved;
            {
                data_set_reader first(local_store({dir.path().string()}), options, small_batches(7, shuffle));
                for (std::size_t b = 0; b < stop_after; ++b) {
                    auto batch = first.next();
                    if (!batch)
                        break;  // stopped after the end: the resumed reader has nothing left
                    for (std::size_t i = 0; i < batch->size(); ++i) {
                        const auto bytes = batch->feature("payload").item(i, 0);
                        got[batch->epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                    }
                }
                saved = first.state().to_json();
            }  // the old reader is destroyed mid-stream
            auto resumed_options = options;
            resumed_options.resume = data_set_state::from_json(saved);
            data_set_reader second(local_store({dir.path().string()}), resumed_options, small_batches(7, shuffle));
            for (auto& [e, records] : payloads_by_epoch(second))
                got[e].insert(got[e].end(), records.begin(), records.end());
            for (auto& [e, recs] : uninterrupted) {
                const auto& g = got[e];
                std::size_t i = 0;
                while (i < g.size() && i < recs.size() && g[i] == recs[i]) ++i;
                if (i != recs.size() || g.size() != recs.size())
                    FAIL_CHECK("epoch " << e << ": " << g.size() << " vs " << recs.size() << " records, first difference at " << i << " saved " << saved);
            }
            CHECK(got == uninterrupted);
        }
    }
}

TEST_CASE("resuming with another world size delivers every remaining record of the epoch exactly once")
{
    temp_dir dir;
    const auto all = make_data_set(dir, 7, 20);
    for (auto [mode, shuffle] : {std::pair{shard_mode::by_object, 0u}, std::pair{shard_mode::by_bytes, 0u},
                                 std::pair{shard_mode::by_byte_range, 0u}, std::pair{shard_mode::by_object, 11u},
                                 std::pair{shard_mode::by_byte_range, 40u}}) {
        for (std::size_t new_world : {1u, 2u, 5u}) {
            CAPTURE(int(mode), shuffle, new_world);
            const std::size_t old_world = 3;
            const auto options_for = [&](std::size_t rank, std::size_t world) {
                return data_set_options{
                    .plan = {.shard = {.rank = rank, .world_size = world, .mode = mode}, .shuffle_seed = 4}, .epochs = 2};
            };
            std::map<std::uint64_t, std::vector<std::string>> got;
            std::vector<data_set_state> states;
            for (std::size_t rank = 0; rank < old_world; ++rank) {
                data_set_reader r(local_store({dir.path().string()}), options_for(rank, old_world), small_batches(7, shuffle));
                for (std::size_t b = 0; b < 2 + rank; ++b)  // ranks stop at different places
                    if (auto batch = r.next())
                        for (std::size_t i = 0; i < batch->size(); ++i) {
                            const auto bytes = batch->feature("payload").item(i, 0);
                            got[batch->epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                        }
                states.push_back(data_set_state::from_json(r.state().to_json()));
            }
            std::vector<data_set_state> second_states;
            for (std::size_t rank = 0; rank < new_world; ++rank) {
                auto o = options_for(rank, new_world);
                o.resume = resume_state(states, rank, new_world);
                data_set_reader r(local_store({dir.path().string()}), o, small_batches(7, shuffle));
                // Stop the first new rank once more, mid-epoch, and resume it at the same size.
                if (rank == 0) {
                    if (auto batch = r.next())
                        for (std::size_t i = 0; i < batch->size(); ++i) {
                            const auto bytes = batch->feature("payload").item(i, 0);
                            got[batch->epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                        }
                    o.resume = data_set_state::from_json(r.state().to_json());
                    data_set_reader again(local_store({dir.path().string()}), o, small_batches(7, shuffle));
                    for (auto& [e, records] : payloads_by_epoch(again))
                        got[e].insert(got[e].end(), records.begin(), records.end());
                    continue;
                }
                for (auto& [e, records] : payloads_by_epoch(r))
                    got[e].insert(got[e].end(), records.begin(), records.end());
            }
            // Epoch 0 was shared by both runs; epoch 1 was read by the new ranks alone, each
            // with its own shard of a fresh plan.
            for (int e = 0; e < 2; ++e) {
                auto g = as_multiset(got[e]);
                std::string diff;
                for (const auto& p : all) {
                    auto it = g.find(p);
                    if (it == g.end())
                        diff += " missing " + p.substr(0, p.find(':'));
                    else
                        g.erase(it);
                }
                for (const auto& p : g)
                    diff += " extra " + p.substr(0, p.find(':'));
                if (!diff.empty())
                    FAIL_CHECK("epoch " << e << ":" << diff);
            }
            CHECK(as_multiset(got[0]) == as_multiset(all));
            CHECK(as_multiset(got[1]) == as_multiset(all));
        }
    }
}

TEST_CASE("resume states are checked: another data set, other ranks, missing ranks, mixed epochs")
{
    temp_dir dir;
    make_data_set(dir, 3, 10);
    data_set_reader r(local_store({dir.path().string()}), {.plan = {.shard = {.rank = 0, .world_size = 2, .mode = shard_mode::by_object}}}, small_batches());
    REQUIRE(r.next());
    const auto s = r.state();
    CHECK(s.objects == 3);

    // Another rank or world size than the state's.
    CHECK_THROWS_WITH(data_set_reader(local_store({dir.path().string()}),
                                      {.plan = {.shard = {.rank = 1, .world_size = 2, .mode = shard_mode::by_object}}, .resume = s},
                                      small_batches()),
                      Catch::Contains("resume_state()"));
    // A rank's state missing when the world size changes.
    const std::vector<data_set_state> one = {s};
    CHECK_THROWS_WITH(resume_state(one, 0, 3), Catch::Contains("every one of the 2 old ranks"));
    auto later = s;
    later.rank = 1;
    later.epoch = 1;
    const std::vector<data_set_state> mixed = {s, later};
    CHECK_THROWS_WITH(resume_state(mixed, 0, 3), Catch::Contains("different epochs"));
    // The data set changed since the state was saved.
    test::write_file(dir / "part-0009.rec", {});
    data_set_reader changed(local_store({dir.path().string()}),
                            {.plan = {.shard = {.rank = 0, .world_size = 2, .mode = shard_mode::by_object}}, .resume = s},
                            small_batches());
    CHECK_THROWS_WITH(changed.next(), Catch::Contains("not the one the resume state was saved from"));
    // Malformed JSON states.
    CHECK_THROWS_WITH(data_set_state::from_json("{\"version\":1}"), Catch::Contains("'epoch' is missing"));
    CHECK_THROWS_WITH(data_set_state::from_json("[1]"), Catch::Contains("not a JSON object"));
    CHECK(data_set_state::from_json(s.to_json()) == s);
}

TEST_CASE("a rank with nothing to read, or an empty listing, is an error that says what to change")
{
    temp_dir dir;
    make_data_set(dir, 2, 5);
    data_set_reader r(local_store({dir.path().string()}),
                      {.plan = {.shard = {.rank = 2, .world_size = 3, .mode = shard_mode::by_object}}}, small_batches());
    CHECK_THROWS_WITH(r.next(), Catch::Contains("rank 2 of 3 has nothing to read") && Catch::Contains("by_byte_range"));
}

TEST_CASE("the record-level shuffle delivers a reproducible permutation, different in every epoch")
{
    temp_dir dir;
    const auto all = make_data_set(dir, 3, 30);
    const auto read = [&](std::size_t block, std::uint64_t seed) {
        auto o = small_batches(5, block);
        o.shuffle_seed = seed;
        data_set_reader r(local_store({dir.path().string()}), {.epochs = 2}, o);
        return payloads_by_epoch(r);
    };
    const auto a = read(16, 1);
    CHECK(as_multiset(a.at(0)) == as_multiset(all));
    CHECK(as_multiset(a.at(1)) == as_multiset(all));
    CHECK(a.at(0) != all);
    CHECK(a.at(0) != a.at(1));
    CHECK(read(16, 1) == a);
    CHECK(read(16, 2) != a);
    // A block holds at most `shuffle_records` records: no record moves further than a block.
    const auto& e0 = a.at(0);
    for (std::size_t i = 0; i < e0.size(); ++i) {
        const auto home = std::size_t(std::find(all.begin(), all.end(), e0[i]) - all.begin());
        CHECK(home / 16 == i / 16);
    }
    // A block large enough for the whole data set mixes records of every object.
    const auto whole = read(100000, 1).at(0);
    CHECK(as_multiset(whole) == as_multiset(all));
    CHECK(whole.front().substr(0, 2) != whole[1].substr(0, 2));
}

TEST_CASE("every splittable format reads byte-range shards exactly, and whole objects refuse byte ranges")
{
    temp_dir dir;
    std::mt19937_64 rng(12);
    std::vector<std::string> lines_all;
    std::vector<std::string> tf_all;
    std::vector<float> labels_all;
    std::filesystem::create_directories(dir.path() / "lines");
    std::filesystem::create_directories(dir.path() / "tf");
    std::filesystem::create_directories(dir.path() / "csv");
    for (int f = 0; f < 3; ++f) {
        std::string lines, csv;
        std::vector<std::byte> tf;
        for (int r = 0; r < 40 + f * 7; ++r) {
            std::string text = "f" + std::to_string(f) + "r" + std::to_string(r) + std::string(rng() % 90, 'z');
            lines += text + (r % 3 ? "\n" : "\r\n");
            lines_all.push_back(text);
            append_tfrecord(tf, test::bytes_of(text));
            tf_all.push_back(text);
            const float label = float(f * 1000 + r);
            csv += std::to_string(int(label)) + ", 1.5,-2e3, " + std::to_string(rng() % 100) + "\n";
            labels_all.push_back(label);
        }
        test::write_file(dir / ("lines/" + std::to_string(f) + ".txt"), test::bytes_of(lines));
        test::write_file(dir / ("tf/" + std::to_string(f) + ".tfrecord"), tf);
        test::write_file(dir / ("csv/" + std::to_string(f) + ".csv"), test::bytes_of(csv));
    }
    const auto sharded = [&](const std::string& sub, data_format format, std::size_t world) {
        std::vector<std::string> out;
        std::vector<float> labels;
        for (std::size_t rank = 0; rank < world; ++rank) {
            auto o = small_batches(5);
            o.format = format;
            data_set_reader r(local_store({dir / sub}),
                              {.plan = {.shard = {.rank = rank, .world_size = world, .mode = shard_mode::by_byte_range}}}, o);
            for (auto& b : r) {
                if (format == data_format::csv) {
                    const auto l = b.label("values").values<float>();
                    labels.insert(labels.end(), l.begin(), l.end());
                    CHECK(b.feature("values").row_size() == 3);
                    continue;
                }
                for (std::size_t i = 0; i < b.size(); ++i) {
                    const auto bytes = b.feature("payload").item(i, 0);
                    out.emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                }
            }
        }
        return std::pair{out, labels};
    };
    for (std::size_t world : {1u, 2u, 5u, 11u}) {
        CAPTURE(world);
        CHECK(sharded("lines", data_format::lines, world).first == lines_all);
        CHECK(sharded("tf", data_format::tfrecord, world).first == tf_all);
        CHECK(sharded("csv", data_format::csv, world).second == labels_all);
    }
    // Whole objects: one record per file, by object; byte ranges are refused up front.
    auto o = small_batches(2);
    o.format = data_format::whole_object;
    data_set_reader whole(local_store({dir / "lines"}), {}, o);
    const auto objects = payloads_of(whole);
    REQUIRE(objects.size() == 3);
    CHECK(objects[0] == std::string(reinterpret_cast<const char*>(test::read_file(dir / "lines/0.txt").data()),
                                    test::read_file(dir / "lines/0.txt").size()));
    CHECK_THROWS_WITH(data_set_reader(local_store({dir / "lines"}),
                                      {.plan = {.shard = {.world_size = 2, .mode = shard_mode::by_byte_range}}}, o),
                      Catch::Contains("by_bytes instead"));
}

TEST_CASE("concat_stores reads several stores as one data set, sharded and resumable across their boundary")
{
    temp_dir a, b;
    const auto first = make_data_set(a, 2, 15, 3);
    const auto second = make_data_set(b, 3, 15, 4);
    auto all = first;
    all.insert(all.end(), second.begin(), second.end());
    const auto both = [&] {
        std::vector<std::unique_ptr<object_store>> parts;
        parts.push_back(local_store({a.path().string()}));
        parts.push_back(local_store({b.path().string()}));
        return concat_stores(std::move(parts));
    };
    data_set_reader whole(both(), {}, small_batches());
    CHECK(payloads_of(whole) == all);
    std::vector<std::string> shards;
    for (std::size_t rank = 0; rank < 3; ++rank) {
        data_set_reader r(both(), {.plan = {.shard = {.rank = rank, .world_size = 3, .mode = shard_mode::by_byte_range}}},
                          small_batches());
        for (auto& p : payloads_of(r))
            shards.push_back(p);
    }
    CHECK(shards == all);
    CHECK_THROWS_AS(concat_stores({}), std::invalid_argument);
}

TEST_CASE("first_epoch reads one epoch alone with the plan and shuffle a multi-epoch reader gives it")
{
    temp_dir dir;
    make_data_set(dir, 6, 10);
    const plan_options plan{.shard = {.rank = 1, .world_size = 2, .mode = shard_mode::by_object}, .shuffle_seed = 17};
    data_set_reader all(local_store({dir.path().string()}), {.plan = plan, .epochs = 3}, small_batches());
    const auto epochs = payloads_by_epoch(all);
    for (std::uint64_t e = 0; e < 3; ++e) {
        data_set_reader one(local_store({dir.path().string()}), {.plan = plan, .epochs = e + 1, .first_epoch = e},
                            small_batches());
        CHECK(one.state().epoch == e);
        const auto got = payloads_by_epoch(one);
        REQUIRE(got.size() == 1);
        CHECK(got.begin()->first == e);
        CHECK(got.begin()->second == epochs.at(e));
    }
}
