// Tests of the single-producer single-consumer ring: order and completeness across threads,
// edge cases of the indices, the end of the stream and errors, cancellation and every wake-up
// path (blocking, armed callback), and the lifetime of the items.
#include <pipemode/concurrency/spsc_ring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pipemode::detail {

/// Starts a fresh ring's counters at `start` (an empty ring), to exercise the 2^31 wrap.
struct ring_test_access {
    template <class T>
    static void start_counters_at(ring_producer<T>& p, ring_word start)
    {
        spsc_ring<T>& r = *p.ring_;
        r.write_word_.store(start);
        r.read_word_.store(start);
        r.write_ = r.cached_read_ = r.read_ = r.cached_write_ = start;
    }
};

} // namespace pipemode::detail

namespace {

using namespace std::chrono_literals;
using pipemode::make_spsc_ring;
using pipemode::pop_status;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

bool long_tests()
{
    const char* v = std::getenv("PIPEMODE_LONG_TESTS");
    return v && *v && *v != '0';
}

// Items per stress run: enough for the ordinary test run to catch a lost wake-up within a
// few seconds per capacity on a shared 2-core machine (ThreadSanitizer runs ~20x slower, so
// it gets fewer); PIPEMODE_LONG_TESTS=1 (scripts/test.sh --long) multiplies them by ten.
const std::uint64_t stress_items = (long_tests() ? 10 : 1) * (sanitized ? 200'000 : 500'000);

/// How long one stress run may push before it closes the ring early. At capacity 1 every item
/// is a hand-off between threads that costs a scheduler wake-up; with other jobs on both cores
/// a wake-up takes milliseconds, and 500k of them outlast any test timeout (seen: > 300 s).
/// So a run ends at the item count or at this deadline, whichever comes first, and checks
/// exactly the items the producer pushed; a hang is still caught by `hang_watchdog`.
class stress_deadline {
public:
    stress_deadline() : end_(std::chrono::steady_clock::now() + (long_tests() ? 120s : 5s)) {}
    /// True while the producer should go on to item `i` of at most `limit`; reads the clock
    /// once per 256 items.
    bool more(std::uint64_t i, std::uint64_t limit = stress_items) const
    {
        return i < limit && (i % 256 != 0 || std::chrono::steady_clock::now() < end_);
    }

private:
    std::chrono::steady_clock::time_point end_;
};

/// Aborts the test program with a message if `progress` stops moving for 30 seconds: a lost
/// wake-up leaves both threads asleep, and this turns that hang into a prompt failure.
class hang_watchdog {
public:
    explicit hang_watchdog(const std::atomic<std::uint64_t>& progress)
        : thread_([&progress, this] {
            std::uint64_t last = progress.load();
            auto since = std::chrono::steady_clock::now();
            while (!stop_.load()) {
                std::this_thread::sleep_for(20ms);
                const std::uint64_t now = progress.load();
                if (now != last) {
                    last = now;
                    since = std::chrono::steady_clock::now();
                } else if (std::chrono::steady_clock::now() - since > 30s) {
                    std::fprintf(stderr, "spsc_ring test: no progress for 30 s after %llu items: lost wake-up\n",
                                 static_cast<unsigned long long>(now));
                    std::abort();
                }
            }
        })
    {
    }
    hang_watchdog(const hang_watchdog&) = delete;
    hang_watchdog& operator=(const hang_watchdog&) = delete;
    ~hang_watchdog()
    {
        stop_ = true;
        thread_.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// Counts live objects and, per value, how often the owning instance was destroyed; a moved-
/// from instance owns nothing.
struct tracked {
    static inline std::atomic<long> live{0};
    static inline std::vector<int>* destroyed = nullptr;  // indexed by value; single-threaded tests

    int value;
    bool owner = true;

    explicit tracked(int v) : value(v) { ++live; }
    tracked(tracked&& o) noexcept : value(o.value), owner(std::exchange(o.owner, false)) { ++live; }
    tracked& operator=(tracked&&) = delete;
    ~tracked()
    {
        --live;
        if (owner && destroyed)
            ++(*destroyed)[static_cast<std::size_t>(value)];
    }
};

/// Installs a fresh per-value destruction tally for one test section.
struct destruction_tally {
    std::vector<int> counts;
    explicit destruction_tally(std::size_t n) : counts(n, 0) { tracked::destroyed = &counts; }
    ~destruction_tally() { tracked::destroyed = nullptr; }
};

struct test_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Only move-constructible: no assignment, no default constructor.
struct move_only_ctor {
    std::unique_ptr<int> p;
    explicit move_only_ctor(int v) : p(std::make_unique<int>(v)) {}
    move_only_ctor(move_only_ctor&&) = default;
    move_only_ctor& operator=(move_only_ctor&&) = delete;
};

/// Throws from its constructor when asked to.
struct may_throw {
    int value;
    explicit may_throw(int v, bool fail = false) : value(v)
    {
        if (fail)
            throw test_error("construction failed");
    }
};

} // namespace

TEST_CASE("capacity is rounded up to a power of two with at least one usable slot", "[spsc_ring]")
{
    const std::pair<std::size_t, std::size_t> cases[] = {
        {0, 1}, {1, 1}, {2, 2}, {3, 4}, {5, 8}, {64, 64}, {65, 128}, {1000, 1024}};
    for (auto [asked, expected] : cases) {
        auto [p, c] = make_spsc_ring<int>(asked);
        CHECK(p.capacity() == expected);
        CHECK(c.capacity() == expected);
        // The reported capacity is really usable, and not one more.
        for (std::size_t i = 0; i < expected; ++i)
            REQUIRE(p.try_push(static_cast<int>(i)));
        CHECK(p.full());
        CHECK_FALSE(p.try_push(-1));
        CHECK(c.size_approx() == expected);
        p.close();
    }
    CHECK_THROWS_AS(make_spsc_ring<int>((std::size_t{1} << 30) + 1), std::length_error);
}

TEST_CASE("try_push and try_pop at the full and empty edges", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<std::unique_ptr<int>>(4);
    std::unique_ptr<int> out;
    CHECK(c.try_pop(out) == pop_status::empty);
    CHECK_FALSE(p.full());
    CHECK(c.size_approx() == 0);

    for (int i = 0; i < 4; ++i)
        REQUIRE(p.try_push(std::make_unique<int>(i)));
    CHECK(p.full());
    CHECK(p.size_approx() == 4);

    auto rejected = std::make_unique<int>(99);
    CHECK_FALSE(p.try_push(std::move(rejected)));
    REQUIRE(rejected != nullptr);  // a failed push leaves the value alone
    CHECK(*rejected == 99);
    CHECK_FALSE(p.try_emplace(nullptr));  // full: nothing constructed...

    REQUIRE(c.try_pop(out) == pop_status::item);
    CHECK(*out == 0);
    CHECK_FALSE(p.full());
    REQUIRE(p.try_push(std::move(rejected)));  // ...and the freed slot is usable at once
    CHECK(rejected == nullptr);

    for (int expected : {1, 2, 3, 99}) {
        REQUIRE(c.try_pop(out) == pop_status::item);
        CHECK(*out == expected);
    }
    CHECK(c.try_pop(out) == pop_status::empty);
    p.close();
    CHECK(c.try_pop(out) == pop_status::closed);
    CHECK(c.try_pop(out) == pop_status::closed);
}

TEST_CASE("order survives many laps of the ring with uneven push and pop runs", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<int>(4);
    int next_in = 0;
    int next_out = 0;
    for (int lap = 0; lap < 5000; ++lap) {
        const int pushes = 1 + lap % 4;
        const int pops = 1 + (lap * 7) % 4;
        for (int i = 0; i < pushes; ++i) {
            if (!p.try_push(int{next_in}))
                break;
            ++next_in;
        }
        int v = -1;
        for (int i = 0; i < pops && c.try_pop(v) == pop_status::item; ++i)
            REQUIRE(v == next_out++);
    }
    int v = -1;
    while (c.try_pop(v) == pop_status::item)
        REQUIRE(v == next_out++);
    CHECK(next_out == next_in);
    CHECK(next_in > 10000);
}

TEST_CASE("the counters wrap at 2^31 without losing or reordering items", "[spsc_ring]")
{
    for (std::size_t cap : {1, 3, 8}) {
        auto [p, c] = make_spsc_ring<int>(cap);
        pipemode::detail::ring_test_access::start_counters_at(p, pipemode::detail::ring_counter_mask - 5);
        int next_in = 0;
        int next_out = 0;
        for (int round = 0; round < 40; ++round) {
            while (p.try_push(int{next_in}))
                ++next_in;
            CHECK(p.full());
            CHECK(c.size_approx() == p.capacity());
            int v = -1;
            REQUIRE(c.try_pop(v) == pop_status::item);
            REQUIRE(v == next_out++);
        }
        p.close();
        while (std::optional<int> v = c.pop())
            REQUIRE(*v == next_out++);
        CHECK(next_out == next_in);
    }
}

TEST_CASE("close after N items: the consumer gets exactly N, then the end", "[spsc_ring]")
{
    constexpr int n = 1000;
    for (std::size_t cap : {1, 8}) {
        auto [p, c] = make_spsc_ring<std::string>(cap);
        bool all_pushed = true;  // read after join; Catch2 assertions stay on this thread
        std::thread producer([p = std::move(p), &all_pushed]() mutable {
            for (int i = 0; i < n; ++i)
                all_pushed = p.push(std::to_string(i)) && all_pushed;
            p.close();
            p.close();  // a second close changes nothing
            p.fail(std::make_exception_ptr(test_error("too late")));  // neither does a late fail
        });
        int got = 0;
        while (std::optional<std::string> s = c.pop())
            REQUIRE(*s == std::to_string(got++));
        producer.join();
        CHECK(all_pushed);
        CHECK(got == n);
        CHECK_FALSE(c.pop().has_value());  // the end is sticky
        std::string out;
        CHECK(c.try_pop(out) == pop_status::closed);
    }
}

TEST_CASE("fail after N items: N items, then the producer's own exception object", "[spsc_ring]")
{
    constexpr int n = 500;
    const std::exception_ptr error = std::make_exception_ptr(test_error("decode failed at byte 42"));
    const void* original = nullptr;
    try {
        std::rethrow_exception(error);
    } catch (const test_error& e) {
        original = &e;
    }

    auto [p, c] = make_spsc_ring<int>(4);
    bool all_pushed = true;
    std::thread producer([p = std::move(p), error, &all_pushed]() mutable {
        for (int i = 0; i < n; ++i)
            all_pushed = p.push(int{i}) && all_pushed;
        p.fail(error);
    });
    int got = 0;
    bool caught = false;
    try {
        while (std::optional<int> v = c.pop())
            REQUIRE(*v == got++);
    } catch (const test_error& e) {
        caught = true;
        CHECK(std::string(e.what()) == "decode failed at byte 42");
        CHECK(&e == original);
    }
    producer.join();
    CHECK(all_pushed);
    CHECK(caught);
    CHECK(got == n);
    // Every later pop rethrows too: an error never turns into a clean end.
    int out = 0;
    CHECK_THROWS_AS(c.try_pop(out), test_error);
    CHECK_THROWS_WITH(c.pop(), "decode failed at byte 42");
}

TEST_CASE("a producer destroyed without closing ends the stream with an error", "[spsc_ring]")
{
    SECTION("items first, then the error")
    {
        auto [p, c] = make_spsc_ring<int>(8);
        REQUIRE(p.try_push(1));
        REQUIRE(p.try_push(2));
        { auto dying = std::move(p); }
        CHECK_FALSE(static_cast<bool>(p));
        CHECK(c.pop() == 1);
        CHECK(c.pop() == 2);
        CHECK_THROWS_AS(c.pop(), pipemode::ring_producer_abandoned);
        int out = 0;
        CHECK_THROWS_AS(c.try_pop(out), pipemode::ring_producer_abandoned);
    }
    SECTION("a consumer sleeping in pop() wakes with the error")
    {
        auto [p, c] = make_spsc_ring<int>(8);
        std::atomic<bool> consumer_done{false};
        bool got_error = false;
        std::thread consumer([&consumer_done, &got_error, c = std::move(c)]() mutable {
            try {
                c.pop();
            } catch (const pipemode::ring_producer_abandoned&) {
                got_error = true;
            }
            consumer_done = true;
        });
        std::this_thread::sleep_for(50ms);  // let it fall asleep
        CHECK_FALSE(consumer_done.load());
        p = {};  // move-assigning an empty handle ends the old stream
        consumer.join();
        CHECK(got_error);
    }
    SECTION("a consumer in pop_for() sees the error")
    {
        auto [p, c] = make_spsc_ring<int>(8);
        std::thread killer([p = std::move(p)]() mutable {
            std::this_thread::sleep_for(20ms);
            p = {};
        });
        int out = 0;
        CHECK_THROWS_AS(c.pop_for(out, 10s), pipemode::ring_producer_abandoned);
        killer.join();
    }
}

TEST_CASE("cancel tells the producer to stop and wakes it however it waits", "[spsc_ring]")
{
    SECTION("non-blocking pushes fail and consumer_gone() says why")
    {
        auto [p, c] = make_spsc_ring<int>(8);
        REQUIRE(p.try_push(1));
        CHECK_FALSE(p.consumer_gone());
        c.cancel();
        CHECK(p.consumer_gone());
        CHECK_FALSE(p.try_push(2));
        CHECK_FALSE(p.push(3));
        CHECK(c.size_approx() == 0);  // cancel dropped the item
        CHECK_FALSE(c.pop().has_value());
        int out = 0;
        CHECK(c.try_pop(out) == pop_status::closed);
        p.fail(std::make_exception_ptr(test_error("ignored")));
        CHECK(c.try_pop(out) == pop_status::closed);  // a cancelled consumer rethrows nothing
    }
    SECTION("a producer asleep in push() on a full ring returns false")
    {
        auto [p, c] = make_spsc_ring<int>(2);
        std::atomic<int> result{-1};
        bool saw_gone = false;
        std::thread producer([&result, &saw_gone, p = std::move(p)]() mutable {
            int pushed = 0;
            while (p.push(int{pushed}))
                ++pushed;
            saw_gone = p.consumer_gone();
            result = pushed;
        });
        while (c.size_approx() < 2)
            std::this_thread::yield();
        std::this_thread::sleep_for(50ms);  // let it fall asleep on the full ring
        CHECK(result.load() == -1);
        c.cancel();
        producer.join();
        CHECK(result.load() == 2);
        CHECK(saw_gone);
    }
    SECTION("destroying the consumer fires an armed space notification")
    {
        auto [p, c] = make_spsc_ring<int>(1);
        auto woken = std::make_shared<std::counting_semaphore<1024>>(0);
        p.set_space_callback([woken] { woken->release(); });
        REQUIRE(p.try_push(1));
        REQUIRE(p.arm_space_notification());
        std::thread consumer([c = std::move(c)]() mutable { std::this_thread::sleep_for(20ms); });
        consumer.join();  // the consumer handle dies with the thread's lambda
        REQUIRE(woken->try_acquire_for(5s));
        CHECK(p.consumer_gone());
        CHECK_FALSE(p.arm_space_notification());  // gone: do not wait
        CHECK_FALSE(p.try_push(2));
    }
    SECTION("an armed producer's callback does not fire for nothing")
    {
        auto [p, c] = make_spsc_ring<int>(1);
        auto woken = std::make_shared<std::atomic<int>>(0);
        p.set_space_callback([woken] { ++*woken; });
        REQUIRE(p.try_push(1));
        REQUIRE(p.arm_space_notification());
        CHECK(woken->load() == 0);
        CHECK(c.pop() == 1);  // frees the slot: one call
        CHECK(woken->load() == 1);
        REQUIRE(p.try_push(2));
        CHECK(c.pop() == 2);  // not armed: no call
        CHECK(woken->load() == 1);
        CHECK_FALSE(p.arm_space_notification());  // space already: no wait, no call
        REQUIRE(p.try_push(3));
        c.cancel();  // not armed: no call
        CHECK(woken->load() == 1);
    }
}

TEST_CASE("arm_space_notification() and set_space_callback() reject misuse", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<int>(1);
    CHECK_THROWS_AS(p.arm_space_notification(), std::logic_error);
    CHECK_THROWS_AS(p.set_space_callback(nullptr), std::invalid_argument);
    p.set_space_callback([] {});
    CHECK_THROWS_AS(p.set_space_callback([] {}), std::logic_error);
    CHECK_FALSE(p.arm_space_notification());  // empty ring: there is space
}

TEST_CASE("pushing after close() is a logic error", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<int>(4);
    REQUIRE(p.try_push(1));
    p.close();
    CHECK_THROWS_AS(p.try_push(2), std::logic_error);
    CHECK_THROWS_AS(p.push(2), std::logic_error);
    CHECK(c.pop() == 1);
    CHECK_FALSE(c.pop().has_value());
}

TEST_CASE("a throwing constructor publishes nothing", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<may_throw>(2);
    REQUIRE(p.try_emplace(1));
    CHECK_THROWS_AS(p.try_emplace(2, true), test_error);
    REQUIRE(p.try_emplace(3));
    CHECK(p.full());
    p.close();
    std::optional<may_throw> out;
    REQUIRE(c.try_pop(out) == pop_status::item);
    CHECK(out->value == 1);
    REQUIRE(c.try_pop(out) == pop_status::item);
    CHECK(out->value == 3);
    CHECK(c.try_pop(out) == pop_status::closed);
}

TEST_CASE("a T that is only move-constructible goes through", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<move_only_ctor>(2);
    REQUIRE(p.try_emplace(7));
    REQUIRE(p.push(move_only_ctor(8)));
    p.close();
    std::optional<move_only_ctor> out;
    REQUIRE(c.try_pop(out) == pop_status::item);
    CHECK(*out->p == 7);
    std::optional<move_only_ctor> second = c.pop();
    REQUIRE(second.has_value());
    CHECK(*second->p == 8);
    CHECK(c.pop_for(out, 1ms) == pop_status::closed);
}

TEST_CASE("every item is destroyed exactly once, wherever it ends up", "[spsc_ring]")
{
    constexpr int n = 10;
    destruction_tally tally(n);
    const long live_before = tracked::live.load();

    SECTION("some consumed, the rest left in the ring; producer handle dies first")
    {
        auto [p, c] = make_spsc_ring<tracked>(16);
        for (int i = 0; i < n; ++i)
            REQUIRE(p.try_emplace(i));
        { auto dying = std::move(p); }
        for (int i = 0; i < 4; ++i) {
            std::optional<tracked> t = c.pop();
            REQUIRE(t.has_value());
            CHECK(t->value == i);
        }
        CHECK(tally.counts[0] == 1);
        CHECK(tally.counts[4] == 0);  // still in the ring
    }
    SECTION("consumer handle dies first; the producer pushes on afterwards")
    {
        auto [p, c] = make_spsc_ring<tracked>(16);
        for (int i = 0; i < 5; ++i)
            REQUIRE(p.push(tracked(i)));
        { auto dying = std::move(c); }  // cancels: drops items 0..4 now
        CHECK(tally.counts[4] == 1);
        CHECK(p.consumer_gone());
        CHECK_FALSE(p.try_emplace(5));  // refused, nothing constructed
        CHECK(tally.counts[5] == 0);
        for (int i = 5; i < n; ++i)
            CHECK_FALSE(p.push(tracked(i)));  // refused values die with the call
        p.close();
    }
    SECTION("cancel drops what is in the ring at once")
    {
        auto [p, c] = make_spsc_ring<tracked>(16);
        for (int i = 0; i < n; ++i)
            REQUIRE(p.try_emplace(i));
        CHECK(tracked::live.load() == live_before + n);
        c.cancel();
        CHECK(tracked::live.load() == live_before);  // before either handle dies
    }
    SECTION("items popped through try_pop(T&) into an existing object")
    {
        auto [p, c] = make_spsc_ring<std::shared_ptr<tracked>>(4);
        for (int i = 0; i < n; ++i) {
            REQUIRE(p.try_push(std::make_shared<tracked>(i)));
            std::shared_ptr<tracked> out;
            REQUIRE(c.try_pop(out) == pop_status::item);
            CHECK(out->value == i);
        }
    }
    CHECK(tracked::live.load() == live_before);
    for (int i = 0; i < n; ++i) {
        INFO("value " << i);
        CHECK(tally.counts[static_cast<std::size_t>(i)] == 1);
    }
}

TEST_CASE("pop_for waits for an item, the end, or the timeout", "[spsc_ring]")
{
    auto [p, c] = make_spsc_ring<int>(4);
    int out = 0;
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(c.pop_for(out, 30ms) == pop_status::empty);
    CHECK(std::chrono::steady_clock::now() - t0 >= 30ms);

    std::thread producer([p = std::move(p)]() mutable {
        std::this_thread::sleep_for(20ms);
        p.push(5);
        std::this_thread::sleep_for(20ms);
        p.close();
    });
    CHECK(c.pop_for(out, 10s) == pop_status::item);
    CHECK(out == 5);
    CHECK(c.pop_for(out, 10s) == pop_status::closed);
    producer.join();
}

TEST_CASE("two threads: every item arrives once and in order, at every capacity", "[spsc_ring][stress]")
{
    const std::size_t cap = GENERATE(1, 2, 3, 64, 1024);
    INFO("capacity " << cap);
    auto [p, c] = make_spsc_ring<std::uint64_t>(cap);

    const stress_deadline deadline;
    std::uint64_t pushed = 0;  // read after join()
    SECTION("blocking push and pop")
    {
        std::thread producer([p = std::move(p), &deadline, &pushed]() mutable {
            for (; deadline.more(pushed); ++pushed)
                if (!p.push(std::uint64_t{pushed}))
                    return;
            p.close();
        });
        std::atomic<std::uint64_t> progress{0};
        hang_watchdog watchdog(progress);
        std::uint64_t expected = 0;
        bool in_order = true;
        while (std::optional<std::uint64_t> v = c.pop()) {
            in_order = in_order && *v == expected++;
            progress.store(expected, std::memory_order_relaxed);
        }
        producer.join();
        INFO(pushed << " items pushed");
        CHECK(in_order);
        CHECK(expected == pushed);
        CHECK(pushed > 0);
    }
    SECTION("non-blocking try_push and try_pop, spinning")
    {
        std::thread producer([p = std::move(p), &deadline, &pushed]() mutable {
            for (; deadline.more(pushed, stress_items / 4); ++pushed)
                while (!p.try_push(std::uint64_t{pushed}))
                    std::this_thread::yield();
            p.close();
        });
        std::uint64_t expected = 0;
        bool in_order = true;
        std::uint64_t v = 0;
        for (pop_status s; (s = c.try_pop(v)) != pop_status::closed;) {
            if (s == pop_status::item)
                in_order = in_order && v == expected++;
            else
                std::this_thread::yield();
        }
        producer.join();
        INFO(pushed << " items pushed");
        CHECK(in_order);
        CHECK(expected == pushed);
        CHECK(pushed > 0);
    }
}

TEST_CASE("two threads: move-only items", "[spsc_ring][stress]")
{
    auto [p, c] = make_spsc_ring<std::unique_ptr<std::uint64_t>>(16);
    const stress_deadline deadline;
    std::uint64_t pushed = 0;  // read after join()
    std::thread producer([p = std::move(p), &deadline, &pushed]() mutable {
        for (; deadline.more(pushed, stress_items / 4); ++pushed)
            if (!p.push(std::make_unique<std::uint64_t>(pushed)))
                return;
        p.close();
    });
    std::atomic<std::uint64_t> progress{0};
    hang_watchdog watchdog(progress);
    std::uint64_t expected = 0;
    bool in_order = true;
    while (std::optional<std::unique_ptr<std::uint64_t>> v = c.pop()) {
        in_order = in_order && **v == expected++;
        progress.store(expected, std::memory_order_relaxed);
    }
    producer.join();
    INFO(pushed << " items pushed");
    CHECK(in_order);
    CHECK(expected == pushed);
    CHECK(pushed > 0);
}

// The asynchronous producer's protocol: it never blocks in the ring, only on a semaphore that
// the space callback releases. A lost wake-up would hang this test; a wake-up without space
// only costs a retry.
TEST_CASE("two threads: a producer driven only by armed space notifications", "[spsc_ring][stress]")
{
    const std::size_t cap = GENERATE(1, 2, 64);
    INFO("capacity " << cap);
    auto [p, c] = make_spsc_ring<std::uint64_t>(cap);
    auto woken = std::make_shared<std::counting_semaphore<(1 << 30)>>(0);
    p.set_space_callback([woken] { woken->release(); });

    struct counts {
        std::uint64_t armed = 0;
        std::uint64_t not_armed = 0;
    } seen;
    const stress_deadline deadline;
    std::uint64_t pushed = 0;  // read after join()
    std::thread producer([p = std::move(p), woken, &seen, &deadline, &pushed]() mutable {
        for (; deadline.more(pushed); ++pushed) {
            while (!p.try_push(std::uint64_t{pushed})) {
                if (p.consumer_gone())
                    return;
                if (p.arm_space_notification()) {
                    ++seen.armed;
                    woken->acquire();
                } else {
                    ++seen.not_armed;
                }
            }
        }
        p.close();
    });
    std::atomic<std::uint64_t> progress{0};
    hang_watchdog watchdog(progress);
    std::uint64_t expected = 0;
    bool in_order = true;
    while (std::optional<std::uint64_t> v = c.pop()) {
        in_order = in_order && *v == expected++;
        progress.store(expected, std::memory_order_relaxed);
    }
    producer.join();
    INFO(pushed << " items pushed, armed waits " << seen.armed << ", arms that found space " << seen.not_armed);
    CHECK(in_order);
    CHECK(expected == pushed);
    CHECK(seen.armed > 0);  // the test did exercise the armed path
}

TEST_CASE("two threads: cancelling mid-stream always stops an armed or blocked producer", "[spsc_ring][stress]")
{
    const int rounds = sanitized ? 200 : 2000;
    const long live_before = tracked::live.load();
    std::atomic<std::uint64_t> progress{0};
    hang_watchdog watchdog(progress);
    for (int round = 0; round < rounds; ++round) {
        progress.store(static_cast<std::uint64_t>(round), std::memory_order_relaxed);
        const bool armed_producer = round % 2 == 0;
        auto [p, c] = make_spsc_ring<tracked>(1 + round % 3);
        auto woken = std::make_shared<std::counting_semaphore<(1 << 30)>>(0);
        p.set_space_callback([woken] { woken->release(); });
        std::thread producer([p = std::move(p), woken, armed_producer]() mutable {
            for (int i = 0;; ++i) {
                if (armed_producer) {
                    while (!p.try_emplace(i)) {
                        if (p.consumer_gone())
                            return;
                        if (p.arm_space_notification())
                            woken->acquire();
                    }
                } else if (!p.push(tracked(i))) {
                    return;
                }
            }
        });
        const int stop_after = round % 17;
        bool in_order = true;
        for (int expected = 0; expected < stop_after; ++expected) {
            std::optional<tracked> t = c.pop();
            in_order = in_order && t && t->value == expected;
        }
        REQUIRE(in_order);
        if (round % 4 < 2)
            c.cancel();
        else
            c = {};
        producer.join();  // a lost wake-up hangs here
    }
    // Items pushed while cancel() ran died with their rings: nothing leaked, nothing twice.
    CHECK(tracked::live.load() == live_before);
}
