#include <pipemode/cache/caching_store.hpp>
#include <pipemode/fanout/shared_provider.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/data_set.hpp>

#include "failing_source.hpp"
#include "source_helpers.hpp"

#include "reader_helpers.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;
using test::payloads_by_epoch;
using test::temp_dir;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using epochs_of_payloads = std::map<std::uint64_t, std::vector<std::string>>;

/// `objects` RecordIO files under `dir` of some 100-250 KiB each, larger than the smallest
/// ring, so that a source streams through the ring in several laps.
void make_data_set(const fs::path& dir, std::size_t objects, std::uint64_t seed = 1)
{
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < objects; ++i) {
        std::string bytes;
        const auto sink = [&](std::span<const std::byte> b) { bytes.append(reinterpret_cast<const char*>(b.data()), b.size()); };
        const std::size_t n = 400 + rng() % 400;
        for (std::size_t j = 0; j < n; ++j) {
            std::string p = "o" + std::to_string(i) + "r" + std::to_string(j) + ":";
            p.append(rng() % 500, static_cast<char>('a' + rng() % 26));
            write_recordio(test::bytes_of(p), sink);
        }
        char name[32];
        std::snprintf(name, sizeof name, "part-%04zu.rec", i);
        test::write_file(dir / name, test::bytes_of(bytes));
    }
}

reader_options small_reads()
{
    return reader_options{.batch_size = 13, .format = data_format::recordio, .memory_budget = 64 * mib,
                          .max_record_size = 1 * mib, .read_size = 48 * kib};
}

/// A provider that counts the sources it hands out: what the network would carry.
class counting_provider final : public wrapping_provider {
public:
    counting_provider(std::unique_ptr<source_provider> inner, std::atomic<std::uint64_t>& count)
        : wrapping_provider(std::move(inner)), count_(&count)
    {
    }
    std::string describe() const override { return inner().describe(); }
    std::size_t reserve_buffers(const reader_options& o) override { return inner().reserve_buffers(o); }

protected:
    any_byte_source wrap(any_byte_source source) const override
    {
        ++*count_;
        return source;
    }

private:
    std::atomic<std::uint64_t>* count_;
};

/// A provider that throws `data_error` instead of its `fail_at`-th source (counted from 0).
class throwing_provider final : public source_provider {
public:
    throwing_provider(std::unique_ptr<source_provider> inner, std::size_t fail_at) : inner_(std::move(inner)), fail_at_(fail_at) {}

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        auto p = co_await async_next_planned(ctx);
        if (!p)
            co_return std::nullopt;
        co_return std::move(p->source);
    }
    asio::awaitable<std::optional<planned_source>> async_next_planned(source_context ctx) override
    {
        if (given_++ == fail_at_)
            throw data_error(errc::object_changed, {"s3://bucket/part-0002.rec", 0, 0}, "the ETag moved from \"a\" to \"b\"");
        auto next = co_await inner_->async_next_planned(ctx);
        co_return next;
    }
    std::string describe() const override { return inner_->describe(); }

private:
    std::unique_ptr<source_provider> inner_;
    std::size_t fail_at_;
    std::size_t given_ = 0;
};

/// A provider whose `nth` source (counted from 0) fails at its `fail_at`-th read.
class failing_provider final : public wrapping_provider {
public:
    failing_provider(std::unique_ptr<source_provider> inner, std::size_t nth, std::size_t fail_at)
        : wrapping_provider(std::move(inner)), nth_(nth), fail_at_(fail_at)
    {
    }
    std::string describe() const override { return inner().describe(); }

protected:
    any_byte_source wrap(any_byte_source source) const override
    {
        if (seen_++ != nth_)
            return source;
        return test::failing_source<any_byte_source>(std::move(source), fail_at_,
                                                     make_error_code(boost::system::errc::connection_reset));
    }

private:
    std::size_t nth_;
    std::size_t fail_at_;
    mutable std::size_t seen_ = 0;
};

/// A group name no other test run on this machine uses.
std::string unique_group(std::string_view what)
{
    static std::atomic<int> n{0};
    return "test-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "-" + std::string(what);
}

data_set_options replicated(std::uint64_t epochs = 2, std::uint64_t seed = 7)
{
    return {.plan = {.shuffle_seed = seed}, .epochs = epochs};
}

std::unique_ptr<source_provider> direct(const fs::path& data, data_set_options d)
{
    return planned_epochs(local_store({data.string()}, 48 * kib), d);
}

epochs_of_payloads read_all(std::unique_ptr<source_provider> p)
{
    reader r(std::move(p), small_reads());
    return payloads_by_epoch(r);
}

/// A digest of every epoch's records in order: what a member reports to the test.
std::uint64_t digest_of(const epochs_of_payloads& e)
{
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const auto& [epoch, records] : e) {
        h = fanout::detail::fnv1a(std::to_string(epoch) + "|", h);
        for (const auto& r : records) {
            h = fanout::detail::fnv1a(r, h);
            h = fanout::detail::fnv1a("|", h);
        }
    }
    return h;
}

/// Waits for `pid` for at most `limit`; kills it (and fails) if it is still running.
int wait_or_kill(pid_t pid, std::chrono::seconds limit)
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            FAIL("process " << pid << " hung and was killed by the watchdog");
        }
        std::this_thread::sleep_for(5ms);
    }
    return status;
}

/// Whether some process holds the one lock file in `dir` (the group's leader).
bool someone_leads(const fs::path& dir)
{
    for (const auto& e : fs::directory_iterator(dir)) {
        const int fd = ::open(e.path().c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0)
            continue;
        const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
        if (!held)
            ::flock(fd, LOCK_UN);
        ::close(fd);
        if (held)
            return true;
    }
    return false;
}

// Exit codes of forked members.
constexpr int member_equal_follower = 10;  ///< records equal to the direct read, inner never read
constexpr int member_equal_leader = 11;    ///< records equal to the direct read, inner read
constexpr int member_wrong = 12;           ///< records differ from the direct read
constexpr int member_leader_died = 13;     ///< a fanout_error saying the leader died, after a prefix of the records
constexpr int member_other_error = 14;

} // namespace

TEST_CASE("members on threads read exactly the records of a direct read, and the inner provider is read once")
{
    temp_dir data, locks;
    make_data_set(data.path(), 6);
    const auto expected = read_all(direct(data.path(), replicated()));
    REQUIRE(expected.size() == 2);
    REQUIRE(expected.at(0) != expected.at(1));  // the shuffle makes the epochs differ

    for (const std::size_t ring : {std::size_t{64 * kib}, std::size_t{4 * mib}}) {
        DYNAMIC_SECTION("ring of " << ring << " bytes") {
            constexpr std::size_t members = 4;
            const std::string group = unique_group("threads");
            std::vector<std::atomic<std::uint64_t>> opened(members);
            std::vector<epochs_of_payloads> got(members);
            std::vector<std::string> errors(members);
            std::vector<std::thread> threads;
            for (std::size_t i = 0; i < members; ++i)
                threads.emplace_back([&, i] {
                    try {
                        got[i] = read_all(fanout::shared_provider(
                            std::make_unique<counting_provider>(direct(data.path(), replicated()), opened[i]),
                            {.group = group, .members = members, .rank_in_group = i, .ring_bytes = ring,
                             .join_timeout = 20s, .lock_dir = locks.path(), .plan_key = "seed=7"}));
                    } catch (const std::exception& e) {
                        errors[i] = e.what();
                    }
                });
            for (auto& t : threads)
                t.join();
            std::size_t leaders = 0;
            std::uint64_t sources = 0;
            for (std::size_t i = 0; i < members; ++i) {
                INFO("member " << i);
                CHECK(errors[i] == "");
                CHECK(got[i] == expected);
                leaders += opened[i] != 0;
                sources += opened[i];
            }
            CHECK(leaders == 1);
            CHECK(sources == 12);  // 6 objects, 2 epochs, once
            // The group complete, its name and lock file are gone: nothing is left in /dev/shm.
            CHECK(fs::is_empty(locks.path()));
        }
    }
}

TEST_CASE("one member alone reads directly, without shared memory")
{
    temp_dir data, locks;
    make_data_set(data.path(), 2);
    std::atomic<std::uint64_t> opened{0};
    const auto got = read_all(fanout::shared_provider(std::make_unique<counting_provider>(direct(data.path(), replicated()), opened),
                                                      {.group = unique_group("alone"), .members = 1, .lock_dir = locks.path()}));
    CHECK(got == read_all(direct(data.path(), replicated())));
    CHECK(opened == 4);
    CHECK(fs::is_empty(locks.path()));
}

TEST_CASE("a slow member with a ring smaller than an object loses nothing: the leader waits")
{
    temp_dir data, locks;
    make_data_set(data.path(), 3);
    const auto expected = read_all(direct(data.path(), replicated(1)));
    const std::string group = unique_group("slow");
    std::vector<epochs_of_payloads> got(3);
    std::vector<std::string> errors(3);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 3; ++i)
        threads.emplace_back([&, i] {
            try {
                reader r(fanout::shared_provider(direct(data.path(), replicated(1)),
                                                 {.group = group, .members = 3, .rank_in_group = i, .ring_bytes = 64 * kib,
                                                  .join_timeout = 20s, .lock_dir = locks.path()}),
                         small_reads());
                for (auto& b : r) {
                    const auto& col = b.feature("payload");
                    for (std::size_t k = 0; k < b.size(); ++k) {
                        const auto bytes = col.item(k, 0);
                        got[i][b.epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                    }
                    if (i == 2)
                        std::this_thread::sleep_for(1ms);  // the slow one
                }
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads)
        t.join();
    for (std::size_t i = 0; i < 3; ++i) {
        INFO("member " << i);
        CHECK(errors[i] == "");
        CHECK(got[i] == expected);
    }
}

namespace {

/// Runs `members` members on threads, each reading the provider `make()` gives it through the
/// group with reader options `ro`; returns what each read, and fails on any error.
template <class Make>
std::vector<epochs_of_payloads> read_as_group(std::size_t members, const fs::path& locks, Make make, reader_options ro)
{
    const std::string group = unique_group("crossing");
    std::vector<epochs_of_payloads> got(members);
    std::vector<std::string> errors(members);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < members; ++i)
        threads.emplace_back([&, i] {
            try {
                reader r(fanout::shared_provider(make(), {.group = group, .members = members, .rank_in_group = i,
                                                          .ring_bytes = 64 * kib, .join_timeout = 20s, .lock_dir = locks}),
                         ro);
                got[i] = payloads_by_epoch(r);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads)
        t.join();
    for (std::size_t i = 0; i < members; ++i) {
        INFO("member " << i);
        CHECK(errors[i] == "");
    }
    return got;
}

} // namespace

TEST_CASE("fan-out crossed with byte-range shards, record shuffling, a resumed plan and the cache")
{
    temp_dir data, locks;
    make_data_set(data.path(), 4);

    SECTION("a byte-range shard, whose reader leaves each source before its end")
    {
        // Two processes of one rank read the same shard: the leader's reader stops after the
        // first record past each range, and the followers must stop at the same record.
        const data_set_options d{.plan = {.shard = {.rank = 0, .world_size = 2, .mode = shard_mode::by_byte_range}, .shuffle_seed = 3},
                                 .epochs = 2};
        const auto expected = read_all(direct(data.path(), d));
        REQUIRE(!expected.empty());
        for (const auto& got : read_as_group(3, locks.path(), [&] { return direct(data.path(), d); }, small_reads()))
            CHECK(got == expected);
    }
    SECTION("records shuffled in blocks by each member")
    {
        auto ro = small_reads();
        ro.shuffle_records = 100;
        reader plain(direct(data.path(), replicated()), ro);
        const auto expected = payloads_by_epoch(plain);
        for (const auto& got : read_as_group(3, locks.path(), [&] { return direct(data.path(), replicated()); }, ro))
            CHECK(got == expected);
    }
    SECTION("a plan resumed mid-epoch")
    {
        data_set_options d = replicated();
        data_set_state at;
        at.cursor.item = 2;
        at.cursor.records = 5;
        d.resume = at;
        const auto expected = read_all(direct(data.path(), d));
        REQUIRE(expected.at(0).size() > 5);
        for (const auto& got : read_as_group(2, locks.path(), [&] { return direct(data.path(), d); }, small_reads()))
            CHECK(got == expected);
    }
    SECTION("a leader reading through the cache")
    {
        temp_dir cache_dir;
        const auto expected = read_all(direct(data.path(), replicated()));
        const auto cached = [&] {
            return planned_epochs(cache::caching_store(local_store({data.path().string()}, 48 * kib),
                                                       {.directory = cache_dir.path().string(), .budget_bytes = 64 * mib,
                                                        .free_space_floor = 0}),
                                  replicated());
        };
        for (const auto& got : read_as_group(3, locks.path(), cached, small_reads()))
            CHECK(got == expected);
        // The leader alone wrote the cache: one entry per object, none twice.
        std::size_t entries = 0;
        for (const auto& e : fs::directory_iterator(cache_dir.path()))
            entries += e.path().extension() == ".data";
        CHECK(entries == 4);
    }
}

TEST_CASE("members in forked processes read exactly the records of a direct read")
{
    temp_dir data, locks;
    make_data_set(data.path(), 5);
    const auto expected = digest_of(read_all(direct(data.path(), replicated())));
    const std::string group = unique_group("processes");
    constexpr int members = 4;
    std::vector<pid_t> pids;
    for (int i = 0; i < members; ++i) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int code = member_other_error;
            try {
                std::atomic<std::uint64_t> opened{0};
                const auto got = read_all(fanout::shared_provider(
                    std::make_unique<counting_provider>(direct(data.path(), replicated()), opened),
                    {.group = group, .members = members, .rank_in_group = std::size_t(i), .ring_bytes = 128 * kib,
                     .join_timeout = 20s, .lock_dir = locks.path()}));
                code = digest_of(got) != expected ? member_wrong : opened != 0 ? member_equal_leader : member_equal_follower;
            } catch (...) {
            }
            ::_exit(code);
        }
        pids.push_back(pid);
    }
    int leaders = 0, followers = 0;
    for (const pid_t pid : pids) {
        const int status = wait_or_kill(pid, 60s);
        REQUIRE(WIFEXITED(status));
        const int code = WEXITSTATUS(status);
        CHECK((code == member_equal_leader || code == member_equal_follower));
        leaders += code == member_equal_leader;
        followers += code == member_equal_follower;
    }
    CHECK(leaders == 1);
    CHECK(followers == 3);
}

namespace {

/// Forks a member that reads the data set through the group. After its first batch it writes
/// a byte to `signal_fd` and then, when `stall` is set, waits to be killed; otherwise it
/// pauses `pause_after_first` and reads on. Exits with one of the member codes.
pid_t fork_member(const fs::path& data, const fs::path& locks, const std::string& group, int members, int rank,
                  std::uint64_t expected_digest, const epochs_of_payloads* expected, int signal_fd, bool stall,
                  std::chrono::milliseconds pause_after_first)
{
    const pid_t pid = ::fork();
    if (pid != 0)
        return pid;
    int code = member_other_error;
    epochs_of_payloads got;
    std::atomic<std::uint64_t> opened{0};
    try {
        reader r(fanout::shared_provider(std::make_unique<counting_provider>(direct(data, replicated()), opened),
                                         {.group = group, .members = std::size_t(members), .rank_in_group = std::size_t(rank),
                                          .ring_bytes = 64 * kib, .join_timeout = 20s, .lock_dir = locks}),
                 small_reads());
        bool first = true;
        for (auto& b : r) {
            const auto& col = b.feature("payload");
            for (std::size_t k = 0; k < b.size(); ++k) {
                const auto bytes = col.item(k, 0);
                got[b.epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
            }
            if (first && signal_fd >= 0) {
                first = false;
                (void)!::write(signal_fd, "x", 1);
                if (stall)
                    for (;;)
                        ::pause();
                std::this_thread::sleep_for(pause_after_first);
            }
        }
        code = digest_of(got) != expected_digest ? member_wrong : opened != 0 ? member_equal_leader : member_equal_follower;
    } catch (const fanout::fanout_error& e) {
        // What was delivered before the error must be a prefix of the direct read: no wrong data.
        bool prefix = expected != nullptr;
        for (const auto& [epoch, records] : got) {
            if (!prefix)
                break;
            const auto& want = expected->at(epoch);
            prefix = records.size() <= want.size() && std::equal(records.begin(), records.end(), want.begin());
        }
        code = prefix && std::string(e.what()).find("died before the end of the data") != std::string::npos
            ? member_leader_died
            : member_other_error;
    } catch (...) {
    }
    ::_exit(code);
}

/// Waits until the one member started so far has taken the group's lock, so that it leads.
void wait_for_leader(const fs::path& locks, pid_t leader)
{
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!someone_leads(locks)) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(leader, SIGKILL);
            ::waitpid(leader, nullptr, 0);
            FAIL("the first member never took the group's lock");
        }
        std::this_thread::sleep_for(2ms);
    }
}

} // namespace

TEST_CASE("a follower killed mid-epoch does not hold the others back")
{
    temp_dir data, locks;
    make_data_set(data.path(), 5);
    const auto expected = read_all(direct(data.path(), replicated()));
    const auto digest = digest_of(expected);
    const std::string group = unique_group("follower-killed");
    int sig[2];
    REQUIRE(::pipe(sig) == 0);
    const pid_t leader = fork_member(data.path(), locks.path(), group, 3, 0, digest, &expected, -1, false, 0ms);
    wait_for_leader(locks.path(), leader);
    const pid_t victim = fork_member(data.path(), locks.path(), group, 3, 1, digest, &expected, sig[1], true, 0ms);
    const pid_t other = fork_member(data.path(), locks.path(), group, 3, 2, digest, &expected, -1, false, 0ms);
    char byte = 0;
    REQUIRE(::read(sig[0], &byte, 1) == 1);  // the victim holds the ring: it has read one batch and stalls
    ::close(sig[0]);
    ::close(sig[1]);
    ::kill(victim, SIGKILL);
    ::waitpid(victim, nullptr, 0);
    const int leader_status = wait_or_kill(leader, 60s);
    const int other_status = wait_or_kill(other, 60s);
    REQUIRE(WIFEXITED(leader_status));
    REQUIRE(WIFEXITED(other_status));
    CHECK(WEXITSTATUS(leader_status) == member_equal_leader);
    CHECK(WEXITSTATUS(other_status) == member_equal_follower);
}

TEST_CASE("followers of a leader killed mid-epoch get an error, not a hang and not wrong data")
{
    temp_dir data, locks;
    make_data_set(data.path(), 5);
    const auto expected = read_all(direct(data.path(), replicated()));
    const auto digest = digest_of(expected);
    const std::string group = unique_group("leader-killed");
    int sig[2];
    REQUIRE(::pipe(sig) == 0);
    const pid_t leader = fork_member(data.path(), locks.path(), group, 3, 0, digest, &expected, -1, false, 0ms);
    wait_for_leader(locks.path(), leader);
    std::vector<pid_t> followers;
    for (int rank = 1; rank < 3; ++rank)
        followers.push_back(fork_member(data.path(), locks.path(), group, 3, rank, digest, &expected, sig[1], false, 300ms));
    char byte = 0;
    REQUIRE(::read(sig[0], &byte, 1) == 1);  // a follower has records: the leader is mid-epoch
    ::kill(leader, SIGKILL);
    ::waitpid(leader, nullptr, 0);
    ::close(sig[0]);
    ::close(sig[1]);
    for (const pid_t pid : followers) {
        const int status = wait_or_kill(pid, 60s);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == member_leader_died);
    }
}

TEST_CASE("an exception of the leader's provider reaches every follower with the same message")
{
    temp_dir data, locks;
    make_data_set(data.path(), 4);
    const std::string group = unique_group("inner-error");
    std::vector<std::string> errors(3);
    std::vector<std::size_t> records(3);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 3; ++i)
        threads.emplace_back([&, i] {
            try {
                reader r(fanout::shared_provider(std::make_unique<throwing_provider>(direct(data.path(), replicated(1)), 2),
                                                 {.group = group, .members = 3, .rank_in_group = i, .ring_bytes = 64 * kib,
                                                  .join_timeout = 20s, .lock_dir = locks.path()}),
                         small_reads());
                for (auto& b : r)
                    records[i] += b.size();
            } catch (const data_error& e) {
                errors[i] = e.what();
            } catch (const std::exception& e) {
                errors[i] = std::string("not a data_error: ") + e.what();
            }
        });
    for (auto& t : threads)
        t.join();
    CHECK(errors[0].find("s3://bucket/part-0002.rec, byte 0, record 0") != std::string::npos);
    CHECK(errors[0].find("the ETag moved") != std::string::npos);
    CHECK(errors[1] == errors[0]);
    CHECK(errors[2] == errors[0]);
    CHECK(records[1] == records[0]);
    CHECK(records[2] == records[0]);
}

TEST_CASE("a source's read error reaches every follower with the leader's message")
{
    temp_dir data, locks;
    make_data_set(data.path(), 3);
    const std::string group = unique_group("source-error");
    std::vector<std::string> errors(3);
    std::vector<std::size_t> records(3);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 3; ++i)
        threads.emplace_back([&, i] {
            try {
                // The second source fails at its third read, as a connection dropping would.
                reader r(fanout::shared_provider(std::make_unique<failing_provider>(direct(data.path(), replicated(1)), 1, 2),
                                                 {.group = group, .members = 3, .rank_in_group = i, .ring_bytes = 64 * kib,
                                                  .join_timeout = 20s, .lock_dir = locks.path()}),
                         small_reads());
                for (auto& b : r)
                    records[i] += b.size();
            } catch (const data_error& e) {
                errors[i] = e.what();
            } catch (const std::exception& e) {
                errors[i] = std::string("not a data_error: ") + e.what();
            }
        });
    for (auto& t : threads)
        t.join();
    INFO(errors[0] << "\n" << errors[1] << "\n" << errors[2]);
    CHECK_THAT(errors[0], Catch::Contains(", byte 98304, record ") && Catch::Contains("Connection reset by peer"));
    CHECK(errors[1] == errors[0]);
    CHECK(errors[2] == errors[0]);
    CHECK(records[1] == records[0]);
    CHECK(records[2] == records[0]);
}

TEST_CASE("a group that does not form in time fails with the group's name and how many joined")
{
    temp_dir data, locks;
    make_data_set(data.path(), 2);
    const std::string group = unique_group("timeout");
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 2; ++i)
        threads.emplace_back([&, i] {
            try {
                read_all(fanout::shared_provider(direct(data.path(), replicated(1)),
                                                 {.group = group, .members = 3, .rank_in_group = i, .join_timeout = 300ms,
                                                  .lock_dir = locks.path()}));
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads)
        t.join();
    const std::size_t leader = errors[0].find("members after") != std::string::npos ? 0 : 1;
    INFO(errors[0] << "\n" << errors[1]);
    CHECK_THAT(errors[leader], Catch::Contains("fan-out group '" + group + "'") && Catch::Contains("has 2 of its 3 members after 300 ms")
                                   && Catch::Contains("--fanout-members"));
    CHECK_THAT(errors[1 - leader], Catch::Contains("stopped reading before the end of the data"));
}

TEST_CASE("a member whose plan differs from the leader's is refused with a sentence that says so")
{
    temp_dir data, locks;
    make_data_set(data.path(), 2);
    const std::string group = unique_group("mismatch");
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 2; ++i)
        threads.emplace_back([&, i] {
            try {
                read_all(fanout::shared_provider(direct(data.path(), replicated(1, 7 + i)),
                                                 {.group = group, .members = 2, .rank_in_group = i, .join_timeout = 500ms,
                                                  .lock_dir = locks.path(), .plan_key = "seed=" + std::to_string(7 + i)}));
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads)
        t.join();
    INFO(errors[0] << "\n" << errors[1]);
    const std::size_t refused = errors[0].find("plans another order") != std::string::npos ? 0 : 1;
    CHECK_THAT(errors[refused], Catch::Contains("plans another order of sources than the leader")
                                    && Catch::Contains("fan-out is for replicated data"));
    CHECK_THAT(errors[1 - refused], Catch::Contains("1 process(es) refused to join because their plan"));
}

TEST_CASE("local_group_from_environment reads mpirun's and torchrun's variables")
{
    const auto clear = [] {
        for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_RANK",
                              "MPI_LOCALNRANKS", "MPI_LOCALRANKID"})
            ::unsetenv(v);
    };
    clear();
    CHECK_FALSE(fanout::local_group_from_environment());
    ::setenv("LOCAL_WORLD_SIZE", "8", 1);
    ::setenv("LOCAL_RANK", "3", 1);
    auto g = fanout::local_group_from_environment();
    REQUIRE(g);
    CHECK(g->members == 8);
    CHECK(g->rank == 3);
    ::setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
    ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    g = fanout::local_group_from_environment();
    REQUIRE(g);
    CHECK(g->members == 4);
    CHECK(g->rank == 1);
    clear();
}

TEST_CASE("shared_provider refuses options it cannot work with")
{
    const auto make = [](fanout::fanout_options o) { return fanout::shared_provider(direct("/nonexistent", replicated(1)), o); };
    CHECK_THROWS_WITH(make({.group = "", .members = 2}), Catch::Contains("the group has no name"));
    CHECK_THROWS_WITH(make({.group = "g", .members = 0}), Catch::Contains("0 members"));
    CHECK_THROWS_WITH(make({.group = "g", .members = 2, .ring_bytes = 1000}), Catch::Contains("too small"));
    CHECK_THROWS_WITH(make({.group = "g", .members = 2, .rank_in_group = 2}), Catch::Contains("ranks count from 0"));
}
