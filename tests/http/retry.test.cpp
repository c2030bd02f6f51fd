// Tests of the retry policy: backoff delays, the retry budget, the concurrency limit, failure
// classification by status and the policy that ties them together. (S3 error codes are
// classified by s3::classify_failure: tests/s3/error_response.test.cpp.)
#include <pipemode/http/retry.hpp>
#include <pipemode/s3/error_response.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <climits>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <vector>

using namespace pipemode::http;
using std::chrono::milliseconds;

namespace {

std::vector<std::int64_t> draws(std::uint64_t seed, unsigned attempt, int count)
{
    backoff b(milliseconds{100}, milliseconds{20'000}, seed);
    std::vector<std::int64_t> v;
    for (int i = 0; i < count; ++i)
        v.push_back(b.delay(attempt).count());
    return v;
}

} // namespace

TEST_CASE("backoff: the cap doubles from base_delay up to max_delay")
{
    backoff b(milliseconds{100}, milliseconds{20'000}, 1);
    CHECK(b.cap(0) == milliseconds{100});  // 0 counts as the first retry
    CHECK(b.cap(1) == milliseconds{100});
    CHECK(b.cap(2) == milliseconds{200});
    CHECK(b.cap(3) == milliseconds{400});
    CHECK(b.cap(8) == milliseconds{12'800});
    CHECK(b.cap(9) == milliseconds{20'000});  // 25 600 capped
    CHECK(b.cap(10) == milliseconds{20'000});
    CHECK(b.cap(63) == milliseconds{20'000});
    CHECK(b.cap(64) == milliseconds{20'000});
    CHECK(b.cap(200) == milliseconds{20'000});
    CHECK(b.cap(UINT_MAX) == milliseconds{20'000});

    backoff zero(milliseconds{0}, milliseconds{20'000}, 1);
    CHECK(zero.cap(5) == milliseconds{0});
    CHECK(zero.delay(5) == milliseconds{0});

    backoff small_max(milliseconds{100}, milliseconds{30}, 1);
    CHECK(small_max.cap(1) == milliseconds{30});
}

TEST_CASE("backoff: no overflow at huge attempts or huge delays")
{
    constexpr std::int64_t big = std::numeric_limits<std::int64_t>::max();
    backoff b(milliseconds{std::int64_t{1} << 62}, milliseconds{big}, 7);
    CHECK(b.cap(1) == milliseconds{std::int64_t{1} << 62});
    CHECK(b.cap(2) == milliseconds{big});  // 2^63 would not fit
    CHECK(b.cap(200) == milliseconds{big});
    for (int i = 0; i < 100; ++i) {
        auto d = b.delay(200).count();
        CHECK(d >= 0);
    }

    backoff d(milliseconds{100}, milliseconds{20'000}, 7);
    for (int i = 0; i < 1000; ++i) {
        auto v = d.delay(200).count();
        REQUIRE(v >= 0);
        REQUIRE(v <= 20'000);
    }
}

TEST_CASE("backoff: every delay lies in [0, cap] and the whole range is used")
{
    backoff b(milliseconds{100}, milliseconds{20'000}, 12345);
    for (unsigned n = 1; n <= 12; ++n) {
        const std::int64_t cap = b.cap(n).count();
        std::int64_t lo = cap, hi = 0;
        for (int i = 0; i < 2000; ++i) {
            auto v = b.delay(n).count();
            REQUIRE(v >= 0);
            REQUIRE(v <= cap);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        INFO("attempt " << n << " cap " << cap);
        CHECK(lo <= cap / 10);
        CHECK(hi >= cap - cap / 10);
    }

    // Both ends are reachable: [0, 1] yields 0 and 1.
    backoff tiny(milliseconds{1}, milliseconds{1}, 3);
    int zeros = 0, ones = 0;
    for (int i = 0; i < 1000; ++i)
        (tiny.delay(1).count() == 0 ? zeros : ones)++;
    CHECK(zeros > 350);
    CHECK(ones > 350);
    CHECK(zeros + ones == 1000);
}

TEST_CASE("backoff: a seed gives the same delays on every machine, another seed others")
{
    // mt19937_64 is specified exactly by the standard (its 10000th output from the default
    // seed is fixed), and pipemode maps it onto the range itself: these numbers are portable.
    std::mt19937_64 e;
    e.discard(9999);
    CHECK(e() == 9981545732273789042ull);

    backoff b(milliseconds{100}, milliseconds{20'000}, 42);
    std::vector<std::int64_t> got;
    for (unsigned n = 1; n <= 10; ++n)
        got.push_back(b.delay(n).count());
    CHECK(got == std::vector<std::int64_t>{32, 131, 258, 132, 1110, 3161, 3927, 7641, 6595, 8545});

    CHECK(draws(42, 10, 100) == draws(42, 10, 100));
    CHECK(draws(42, 10, 100) != draws(43, 10, 100));
}

TEST_CASE("backoff: the mean delay is half the cap")
{
    // Uniform on [0, 20000]: mean 10000, standard deviation 5774, so the mean of 100 000 draws
    // has a standard deviation of 18 ms. 200 ms is 11 of those: with fixed seeds this is
    // deterministic anyway, and would hold for any seed.
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        backoff b(milliseconds{100}, milliseconds{20'000}, seed);
        double sum = 0;
        constexpr int samples = 100'000;
        for (int i = 0; i < samples; ++i)
            sum += static_cast<double>(b.delay(20).count());
        INFO("seed " << seed);
        CHECK(sum / samples == Approx(10'000).margin(200));
    }
}

TEST_CASE("backoff: a negative delay is refused")
{
    CHECK_THROWS_AS(backoff(milliseconds{-1}, milliseconds{20'000}, 1), std::invalid_argument);
    CHECK_THROWS_AS(backoff(milliseconds{100}, milliseconds{-1}, 1), std::invalid_argument);
}

TEST_CASE("retry budget: 100 retries or 50 after timeouts empty the default bucket")
{
    retry_budget b;
    CHECK(b.capacity() == 500);
    CHECK(b.available() == 500);
    CHECK(b.cost(failure_kind::server_error) == 5);
    CHECK(b.cost(failure_kind::throttled) == 5);
    CHECK(b.cost(failure_kind::connect) == 5);
    CHECK(b.cost(failure_kind::timeout) == 10);

    int granted = 0;
    while (b.try_acquire(failure_kind::connection_lost))
        ++granted;
    CHECK(granted == 100);
    CHECK(b.available() == 0);
    CHECK_FALSE(b.try_acquire(failure_kind::server_error));
    CHECK(b.available() == 0);

    retry_budget t;
    granted = 0;
    while (t.try_acquire(failure_kind::timeout))
        ++granted;
    CHECK(granted == 50);
}

TEST_CASE("retry budget: successes refill it, never beyond capacity")
{
    retry_budget b({.budget_capacity = 20, .retry_cost = 5, .timeout_retry_cost = 10, .success_refund = 1});
    b.on_success();
    CHECK(b.available() == 20);  // full stays full

    REQUIRE(b.try_acquire(failure_kind::timeout));
    REQUIRE(b.try_acquire(failure_kind::server_error));
    CHECK(b.available() == 5);
    REQUIRE(b.try_acquire(failure_kind::server_error));
    CHECK(b.available() == 0);
    CHECK_FALSE(b.try_acquire(failure_kind::server_error));

    // First-attempt successes give back one token each: five of them pay for one retry.
    for (int i = 0; i < 4; ++i)
        b.on_success();
    CHECK(b.available() == 4);
    CHECK_FALSE(b.try_acquire(failure_kind::server_error));
    b.on_success();
    CHECK(b.available() == 5);
    CHECK(b.try_acquire(failure_kind::server_error));
    CHECK(b.available() == 0);

    // A request that succeeds after retrying gives back its last retry's cost.
    b.on_success_after_retry(10);
    CHECK(b.available() == 10);
    b.on_success_after_retry(5);
    CHECK(b.available() == 15);
    CHECK(b.try_acquire(failure_kind::timeout));
    CHECK(b.available() == 5);
    // A refused acquisition takes nothing.
    CHECK_FALSE(b.try_acquire(failure_kind::timeout));
    CHECK(b.available() == 5);

    b.on_success_after_retry(10);
    b.on_success_after_retry(10);
    CHECK(b.available() == 20);  // 25 capped
}

TEST_CASE("concurrency limit: throttles from one window halve it once")
{
    concurrency_limit c(16);
    CHECK(c.max() == 16);
    CHECK(c.current() == 16);

    auto a = c.begin_request();
    auto b = c.begin_request();
    CHECK(c.on_throttled(a));
    CHECK(c.current() == 8);
    CHECK_FALSE(c.on_throttled(b));  // started before the decrease: already answered
    CHECK(c.current() == 8);
    CHECK_FALSE(c.on_throttled(a));
    CHECK(c.current() == 8);

    auto d = c.begin_request();  // started after the decrease: a new window
    auto e = c.begin_request();
    CHECK(c.on_throttled(d));
    CHECK(c.current() == 4);
    CHECK_FALSE(c.on_throttled(e));
    CHECK(c.current() == 4);
}

TEST_CASE("concurrency limit: never below 1, odd limits round down")
{
    concurrency_limit c(7);
    std::vector<std::size_t> seen;
    for (int i = 0; i < 5; ++i) {
        CHECK(c.on_throttled(c.begin_request()));
        seen.push_back(c.current());
    }
    CHECK(seen == std::vector<std::size_t>{3, 1, 1, 1, 1});

    concurrency_limit one(1);
    CHECK(one.on_throttled(one.begin_request()));
    CHECK(one.current() == 1);
    one.on_success();
    CHECK(one.current() == 1);

    CHECK_THROWS_AS(concurrency_limit(0), std::invalid_argument);
}

TEST_CASE("concurrency limit: one more after a limit's worth of successes, up to max")
{
    concurrency_limit c(16);
    c.on_throttled(c.begin_request());
    c.on_throttled(c.begin_request());
    REQUIRE(c.current() == 4);

    for (int i = 0; i < 3; ++i)
        c.on_success();
    CHECK(c.current() == 4);
    c.on_success();
    CHECK(c.current() == 5);
    for (int i = 0; i < 4; ++i)
        c.on_success();
    CHECK(c.current() == 5);
    c.on_success();
    CHECK(c.current() == 6);

    // From 6 back to 16 takes 6 + 7 + ... + 15 = 105 successes, and no more growth after.
    int needed = 0;
    while (c.current() < 16) {
        c.on_success();
        ++needed;
    }
    CHECK(needed == 105);
    for (int i = 0; i < 100; ++i)
        c.on_success();
    CHECK(c.current() == 16);
}

TEST_CASE("concurrency limit: probing raises by half while throughput grows, and stops when it does not")
{
    concurrency_limit c(64, 8);
    CHECK(c.current() == 8);
    CHECK(c.ceiling() == 8);
    CHECK(c.probing());

    // A sample the limit did not shape (the window or the reader held throughput back) changes nothing.
    CHECK_FALSE(c.on_sample(100.0, false));
    CHECK(c.current() == 8);

    CHECK(c.on_sample(100.0, true));  // 8 -> 12
    CHECK(c.current() == 12);
    CHECK_FALSE(c.on_sample(50.0, true));  // new connections still opening: skipped
    CHECK(c.on_sample(150.0, true));       // +50 %: 12 -> 18
    CHECK(c.current() == 18);
    CHECK_FALSE(c.on_sample(10.0, true));
    CHECK(c.on_sample(200.0, true));  // +33 %: 18 -> 27
    CHECK(c.current() == 27);
    CHECK_FALSE(c.on_sample(0.0, true));
    CHECK_FALSE(c.on_sample(210.0, true));  // +5 %, under the 10 % a raise must earn: probing ends
    CHECK_FALSE(c.probing());
    CHECK(c.current() == 27);  // the last raise is kept
    CHECK_FALSE(c.on_sample(1000.0, true));
    CHECK(c.current() == 27);
    CHECK(c.ceiling() == 27);

    // After a throttle, additive increase climbs back to the ceiling, not to the maximum.
    CHECK(c.on_throttled(c.begin_request()));
    CHECK(c.current() == 13);
    for (int i = 0; i < 10000; ++i)
        c.on_success();
    CHECK(c.current() == 27);
}

TEST_CASE("concurrency limit: probing stops at the maximum and at the first throttle")
{
    concurrency_limit top(10, 8);
    CHECK(top.on_sample(1.0, true));  // 8 -> 10 (the maximum)
    CHECK(top.current() == 10);
    CHECK_FALSE(top.on_sample(1.0, true));
    CHECK_FALSE(top.on_sample(100.0, true));
    CHECK_FALSE(top.probing());
    CHECK(top.current() == 10);

    concurrency_limit throttled(64, 16);
    CHECK(throttled.on_throttled(throttled.begin_request()));
    CHECK(throttled.current() == 8);
    CHECK_FALSE(throttled.probing());
    CHECK_FALSE(throttled.on_sample(1e9, true));
    for (int i = 0; i < 1000; ++i)
        throttled.on_success();
    CHECK(throttled.current() == 16);  // back to where it was, never higher

    concurrency_limit fixed(16);  // no initial value: starts at the maximum, nothing to probe
    CHECK(fixed.current() == 16);
    CHECK_FALSE(fixed.probing());
    CHECK(concurrency_limit(4, 9).current() == 4);
}

TEST_CASE("concurrency limit: a counted throttle restarts the success count, a stale one does not")
{
    concurrency_limit c(16);
    auto stale = c.begin_request();
    c.on_throttled(c.begin_request());
    c.on_throttled(c.begin_request());
    REQUIRE(c.current() == 4);
    for (int i = 0; i < 3; ++i)
        c.on_success();
    CHECK_FALSE(c.on_throttled(stale));
    c.on_success();  // the 4th in a row: the stale throttle did not reset the count
    CHECK(c.current() == 5);

    for (int i = 0; i < 4; ++i)
        c.on_success();
    CHECK(c.on_throttled(c.begin_request()));
    CHECK(c.current() == 2);
    c.on_success();
    CHECK(c.current() == 2);
    c.on_success();
    CHECK(c.current() == 3);
}

TEST_CASE("classification: statuses alone")
{
    struct row {
        unsigned status;
        failure_kind kind;
    };
    const row rows[] = {
        {500, failure_kind::server_error},   {501, failure_kind::server_error},
        {502, failure_kind::server_error},   {504, failure_kind::server_error},
        {599, failure_kind::server_error},   {503, failure_kind::throttled},
        {429, failure_kind::throttled},      {408, failure_kind::timeout},
        {412, failure_kind::object_changed}, {400, failure_kind::client_error},
        {401, failure_kind::client_error},   {403, failure_kind::client_error},
        {404, failure_kind::client_error},   {416, failure_kind::client_error},
        {301, failure_kind::client_error},   {307, failure_kind::client_error},
    };
    for (const auto& r : rows) {
        INFO("HTTP " << r.status);
        CHECK(classify_status(r.status) == r.kind);
    }
}

TEST_CASE("classification: a bare status classifies as it did when S3 codes were read here")
{
    // Before S3's codes moved to s3::classify_failure, classify_status took the status and an
    // S3 code, empty for a bare status; that function is s3::classify_failure now. For every
    // status without a code, the transport's verdict must be the one it gave then.
    int checked = 0;
    for (unsigned status = 100; status < 600; ++status) {
        INFO("HTTP " << status);
        REQUIRE(classify_status(status) == pipemode::s3::classify_failure(status, ""));
        ++checked;
    }
    CHECK(checked == 500);
}

TEST_CASE("classification: which kinds are retried")
{
    CHECK(is_retryable(failure_kind::connect));
    CHECK(is_retryable(failure_kind::timeout));
    CHECK(is_retryable(failure_kind::connection_lost));
    CHECK(is_retryable(failure_kind::server_error));
    CHECK(is_retryable(failure_kind::throttled));
    CHECK_FALSE(is_retryable(failure_kind::object_changed));
    CHECK_FALSE(is_retryable(failure_kind::client_error));
    CHECK_FALSE(is_retryable(failure_kind::protocol));
    static_assert(is_retryable(failure_kind::throttled) && !is_retryable(failure_kind::protocol));
}

TEST_CASE("retry policy: delays grow per attempt until max_attempts")
{
    retry_policy p(4, {.max_attempts = 4, .seed = 42});
    retry_policy::request_state r;
    std::vector<std::int64_t> delays;
    for (;;) {
        p.begin_attempt(r);
        auto d = p.next_delay(r, failure_kind::server_error);
        if (!d)
            break;
        delays.push_back(d->count());
    }
    CHECK(r.attempts == 4);
    CHECK(r.refusal == retry_refusal::attempts_exhausted);
    // Retries 1, 2, 3 with the seed-42 sequence of the backoff test: caps 100, 200, 400.
    CHECK(delays == std::vector<std::int64_t>{32, 131, 258});
    CHECK(p.budget().available() == 500 - 3 * 5);

    // The same seed, the same delays.
    retry_policy q(4, {.max_attempts = 4, .seed = 42});
    retry_policy::request_state s;
    q.begin_attempt(s);
    CHECK(q.next_delay(s, failure_kind::connect) == milliseconds{32});

    retry_policy no_retries(4, {.max_attempts = 1, .seed = 1});
    retry_policy::request_state t;
    no_retries.begin_attempt(t);
    CHECK_FALSE(no_retries.next_delay(t, failure_kind::timeout));
    CHECK(t.refusal == retry_refusal::attempts_exhausted);
    CHECK(no_retries.budget().available() == 500);
}

TEST_CASE("retry policy: permanent failures fail at once without touching the budget")
{
    retry_policy p(4, {.seed = 1});
    for (auto k : {failure_kind::client_error, failure_kind::object_changed, failure_kind::protocol}) {
        retry_policy::request_state r;
        p.begin_attempt(r);
        CHECK_FALSE(p.next_delay(r, k));
        CHECK(r.refusal == retry_refusal::not_retryable);
    }
    CHECK(p.budget().available() == 500);
}

TEST_CASE("retry policy: an empty budget stops retries of every request")
{
    retry_policy p(8, {.budget_capacity = 12, .seed = 1});
    retry_policy::request_state a, b, c;
    p.begin_attempt(a);
    p.begin_attempt(b);
    p.begin_attempt(c);
    CHECK(p.next_delay(a, failure_kind::connection_lost));
    CHECK(p.next_delay(b, failure_kind::connection_lost));
    CHECK(p.budget().available() == 2);
    CHECK_FALSE(p.next_delay(c, failure_kind::connection_lost));
    CHECK(c.refusal == retry_refusal::budget_exhausted);
    CHECK(c.attempts == 1);

    // b's retry succeeds and returns its cost: c may retry again.
    p.begin_attempt(b);
    p.on_success(b);
    CHECK(p.budget().available() == 7);
    CHECK(p.next_delay(c, failure_kind::server_error));
    CHECK(c.refusal == retry_refusal::none);
    CHECK(p.budget().available() == 2);
}

TEST_CASE("retry policy: success refunds one token, or the last retry's cost")
{
    retry_policy p(4, {.seed = 1});
    retry_policy::request_state r;
    p.begin_attempt(r);
    REQUIRE(p.next_delay(r, failure_kind::timeout));
    p.begin_attempt(r);
    REQUIRE(p.next_delay(r, failure_kind::server_error));
    CHECK(p.budget().available() == 485);
    p.begin_attempt(r);
    p.on_success(r);
    CHECK(p.budget().available() == 490);  // the last retry's 5 back, not all 15

    retry_policy::request_state first;
    p.begin_attempt(first);
    p.on_success(first);
    CHECK(p.budget().available() == 491);
}

TEST_CASE("retry policy: throttling lowers concurrency once per window")
{
    retry_policy p(8, {.seed = 1});
    retry_policy::request_state a, b;
    p.begin_attempt(a);
    p.begin_attempt(b);
    CHECK(p.next_delay(a, failure_kind::throttled));
    CHECK(p.next_delay(b, failure_kind::throttled));
    CHECK(p.concurrency().current() == 4);

    // a's retry was sent after the decrease: its throttle is news.
    p.begin_attempt(a);
    CHECK(p.next_delay(a, failure_kind::throttled));
    CHECK(p.concurrency().current() == 2);

    // Other failures leave the limit alone; successes raise it.
    p.begin_attempt(b);
    CHECK(p.next_delay(b, failure_kind::server_error));
    CHECK(p.concurrency().current() == 2);
    p.begin_attempt(a);
    p.on_success(a);
    p.begin_attempt(b);
    p.on_success(b);
    CHECK(p.concurrency().current() == 3);
}

TEST_CASE("retry policy: misconfiguration is refused at construction")
{
    CHECK_THROWS_AS(retry_policy(4, {.max_attempts = 0}), std::invalid_argument);
    CHECK_THROWS_AS(retry_policy(0, {}), std::invalid_argument);
    CHECK_THROWS_AS(retry_policy(4, {.base_delay = milliseconds{-5}}), std::invalid_argument);
}
