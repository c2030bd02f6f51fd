// Throughput of the bounded channel between two threads (the reader's channel between its
// network thread and the training loop), next to a bounded mutex + condition_variable queue
// measured in the same run on the same machine.
//
// Usage: ring [items=1000000]
// For each capacity, moves `items` 64-bit integers from a producer to a consumer thread (which
// checks their order and releases each item's 8 bytes at once, so only the item count bounds)
// and prints items/s, best of three passes, and the ratio to the mutex queue. The channel is
// measured as the reader uses it, a coroutine on an io_context thread co_awaiting async_send()
// against a consumer sleeping in receive(), and with try_send()/try_receive() plus yield
// (never sleeps).
#include <pipemode/concurrency/bounded_channel.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
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

/// The channel as the reader uses it: an async producer on an io_context thread, a blocking
/// consumer that releases each item's bytes once it has it.
double channel_async_pass(std::size_t capacity, std::uint64_t items)
{
    pipemode::bounded_channel<item> ch({.items = capacity, .bytes = capacity * sizeof(item)});
    return timed_pass(
        items,
        [&ch, items] {
            boost::asio::io_context io(1);
            boost::asio::co_spawn(
                io,
                [](pipemode::bounded_channel<item>* ch, std::uint64_t items) -> boost::asio::awaitable<void> {
                    // As the reader's deliver() does: try first, suspend only when full.
                    for (item i = 0; i < items; ++i)
                        if (!ch->try_send(item{i}, sizeof(item)) && !co_await ch->async_send(item{i}, sizeof(item)))
                            co_return;
                    ch->close();
                }(&ch, items),
                [](std::exception_ptr e) {
                    if (e)
                        std::rethrow_exception(e);  // out of io.run(): a loud end, not a wrong number
                });
            io.run();
        },
        [&ch] {
            std::uint64_t expected = 0;
            while (std::optional<item> v = ch.receive()) {
                ch.release(sizeof(item));
                if (*v != expected)
                    break;
                ++expected;
            }
            return expected;
        });
}

double channel_polling_pass(std::size_t capacity, std::uint64_t items)
{
    pipemode::bounded_channel<item> ch({.items = capacity, .bytes = capacity * sizeof(item)});
    return timed_pass(
        items,
        [&ch, items] {
            for (item i = 0; i < items; ++i)
                while (!ch.try_send(item{i}, sizeof(item)))
                    std::this_thread::yield();
            ch.close();
        },
        [&ch] {
            std::uint64_t expected = 0;
            item v = 0;
            for (;;) {
                const pipemode::channel_status s = ch.try_receive(v);
                if (s == pipemode::channel_status::closed)
                    break;
                if (s == pipemode::channel_status::empty) {
                    std::this_thread::yield();
                    continue;
                }
                ch.release(sizeof(item));
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
        const double blocking = best_rate(channel_async_pass, capacity, items);
        const double polling = best_rate(channel_polling_pass, capacity, items);
        std::printf("%8zu  %-28s %14.0f %9.2fx\n", capacity, "mutex + condition_variable", base, 1.0);
        std::printf("%8zu  %-28s %14.0f %9.2fx\n", capacity, "channel async_send/receive", blocking, blocking / base);
        std::printf("%8zu  %-28s %14.0f %9.2fx\n", capacity, "channel try_* + yield", polling, polling / base);
    }
    return 0;
}
