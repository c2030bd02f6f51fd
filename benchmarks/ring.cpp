// Throughput of the single-producer single-consumer ring between two threads, next to a
// bounded mutex + condition_variable queue measured in the same run on the same machine.
//
// Usage: ring [items=1000000]
// For each capacity, moves `items` 64-bit integers from a producer thread to a consumer thread
// (which checks their order) and prints items/s, best of three passes, and the ratio to the
// mutex queue. The ring is measured with its blocking push()/pop() (which sleep on a futex
// when full/empty) and with try_push()/try_pop() plus yield (never sleeps).
#include <pipemode/concurrency/spsc_ring.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using item = std::uint64_t;

/// The baseline: what one would write without a lock-free ring. Bounded, FIFO, with a close
/// flag so the consumer can tell the end of the stream.
class mutex_queue {
public:
    explicit mutex_queue(std::size_t capacity) : slots_(capacity) {}

    void push(item v)
    {
        std::unique_lock lock(mutex_);
        not_full_.wait(lock, [&] { return size_ < slots_.size(); });
        slots_[(head_ + size_) % slots_.size()] = v;
        ++size_;
        lock.unlock();
        not_empty_.notify_one();
    }

    void close()
    {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        not_empty_.notify_one();
    }

    std::optional<item> pop()
    {
        std::unique_lock lock(mutex_);
        not_empty_.wait(lock, [&] { return size_ > 0 || closed_; });
        if (size_ == 0)
            return std::nullopt;
        const item v = slots_[head_];
        head_ = (head_ + 1) % slots_.size();
        --size_;
        lock.unlock();
        not_full_.notify_one();
        return v;
    }

private:
    std::mutex mutex_;
    std::condition_variable not_full_;
    std::condition_variable not_empty_;
    std::vector<item> slots_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    bool closed_ = false;
};

/// Times one pass; exits if an item is lost or out of order (a broken queue must not look fast).
template <class Producer, class Consumer>
double timed_pass(std::uint64_t items, Producer produce, Consumer consume)
{
    const auto t0 = clock_type::now();
    std::thread producer(std::move(produce));
    const std::uint64_t received = consume();
    producer.join();
    const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (received != items) {
        std::fprintf(stderr, "error: %llu of %llu items arrived in order\n",
                     static_cast<unsigned long long>(received), static_cast<unsigned long long>(items));
        std::exit(1);
    }
    return seconds;
}

double mutex_pass(std::size_t capacity, std::uint64_t items)
{
    mutex_queue q(capacity);
    return timed_pass(
        items,
        [&q, items] {
            for (item i = 0; i < items; ++i)
                q.push(i);
            q.close();
        },
        [&q] {
            std::uint64_t expected = 0;
            while (std::optional<item> v = q.pop()) {
                if (*v != expected)
                    break;
                ++expected;
            }
            return expected;
        });
}

double ring_blocking_pass(std::size_t capacity, std::uint64_t items)
{
    auto [p, c] = pipemode::make_spsc_ring<item>(capacity);
    return timed_pass(
        items,
        [p = std::move(p), items]() mutable {
            for (item i = 0; i < items; ++i)
                if (!p.push(item{i}))
                    return;
            p.close();
        },
        [&c] {
            std::uint64_t expected = 0;
            while (std::optional<item> v = c.pop()) {
                if (*v != expected)
                    break;
                ++expected;
            }
            return expected;
        });
}

double ring_polling_pass(std::size_t capacity, std::uint64_t items)
{
    auto [p, c] = pipemode::make_spsc_ring<item>(capacity);
    return timed_pass(
        items,
        [p = std::move(p), items]() mutable {
            for (item i = 0; i < items; ++i)
                while (!p.try_push(item{i}))
                    std::this_thread::yield();
            p.close();
        },
        [&c] {
            std::uint64_t expected = 0;
            item v = 0;
            for (;;) {
                const pipemode::pop_status s = c.try_pop(v);
                if (s == pipemode::pop_status::closed)
                    break;
                if (s == pipemode::pop_status::empty) {
                    std::this_thread::yield();
                    continue;
                }
                if (v != expected)
                    break;
                ++expected;
            }
            return expected;
        });
}

template <class Pass>
double best_rate(Pass pass, std::size_t capacity, std::uint64_t items)
{
    double best = 1e300;
    for (int i = 0; i < 3; ++i)
        best = std::min(best, pass(capacity, items));
    return static_cast<double>(items) / best;
}

} // namespace

int main(int argc, char** argv)
{
    const std::uint64_t items = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
    if (items == 0) {
        std::fprintf(stderr, "usage: %s [items=1000000]\n", argv[0]);
        return 2;
    }
    std::printf("%llu items of 8 bytes, producer thread -> consumer thread, best of 3 passes\n\n",
                static_cast<unsigned long long>(items));
    std::printf("%8s  %-28s %14s %10s\n", "capacity", "queue", "items/s", "vs mutex");
    for (std::size_t capacity : {1, 16, 1024}) {
        const double base = best_rate(mutex_pass, capacity, items);
        const double blocking = best_rate(ring_blocking_pass, capacity, items);
        const double polling = best_rate(ring_polling_pass, capacity, items);
        std::printf("%8zu  %-28s %14.0f %9.2fx\n", capacity, "mutex + condition_variable", base, 1.0);
        std::printf("%8zu  %-28s %14.0f %9.2fx\n", capacity, "spsc_ring push/pop", blocking, blocking / base);
        std::printf("%8zu  %-28s %14.0f %9.2fx\n", capacity, "spsc_ring try_* + yield", polling, polling / base);
    }
    return 0;
}
