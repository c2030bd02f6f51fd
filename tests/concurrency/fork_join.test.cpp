// Tests of fork_join_pool: every thread runs each job once, the caller waits for all of them,
// and exceptions come back to the caller after the job is over everywhere.

#include <pipemode/concurrency/fork_join.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using pipemode::fork_join_pool;

TEST_CASE("fork_join_pool: each job runs once on every thread, the caller's as worker 0")
{
    for (const std::size_t threads : {0, 1, 2, 5}) {
        CAPTURE(threads);
        fork_join_pool pool(threads);
        CHECK(pool.size() == (threads == 0 ? 1 : threads));
        for (int round = 0; round < 200; ++round) {
            std::vector<std::atomic<int>> calls(pool.size());
            std::atomic<bool> caller_is_zero{false};
            const auto caller = std::this_thread::get_id();
            auto job = [&](std::size_t w) {
                calls.at(w).fetch_add(1);
                if (w == 0)
                    caller_is_zero = std::this_thread::get_id() == caller;
            };
            pool.run(job);
            // run() returned: every call has ended, so the counts are final.
            for (auto& c : calls)
                CHECK(c.load() == 1);
            CHECK(caller_is_zero);
        }
    }
}

TEST_CASE("fork_join_pool: run() returns only after the slowest thread, and work shared by a counter is done once")
{
    fork_join_pool pool(3);
    for (int round = 0; round < 50; ++round) {
        std::vector<int> done(97, 0);  // each item written by exactly one thread
        std::atomic<std::size_t> next{0};
        auto job = [&](std::size_t w) {
            if (w == 2 && round % 7 == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a straggler
            for (std::size_t k; (k = next.fetch_add(1)) < done.size();)
                done[k] += 1;
        };
        pool.run(job);
        for (int d : done)
            REQUIRE(d == 1);
    }
}

TEST_CASE("fork_join_pool: an exception on any thread reaches the caller once every thread has finished")
{
    fork_join_pool pool(3);
    for (const std::size_t thrower : {0, 1, 2}) {
        CAPTURE(thrower);
        std::atomic<int> finished{0};
        auto job = [&](std::size_t w) {
            if (w == thrower)
                throw std::runtime_error("worker " + std::to_string(w));
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            finished.fetch_add(1);
        };
        CHECK_THROWS_WITH(pool.run(job), "worker " + std::to_string(thrower));
        CHECK(finished.load() == 2);
    }
    // The pool is still usable after a failed job.
    std::atomic<int> ran{0};
    auto job = [&](std::size_t) { ran.fetch_add(1); };
    pool.run(job);
    CHECK(ran.load() == 3);
}
