// pipemode: lets another thread wake a coroutine on the network thread.
#pragma once

#include <pipemode/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>

namespace pipemode::detail {

/// One coroutine (the producer, on the network thread) waits for a condition that another
/// thread (the consumer) makes true, without ever blocking the network thread.
///
/// Protocol, which makes lost wake-ups impossible:
/// - waiter: `arm()`, then re-check the condition; if it holds, `disarm()` and go on,
///   otherwise `co_await async_wait()` and re-check after waking;
/// - notifier: change the state the condition reads, then `notify()`.
/// Both sides put a sequentially consistent fence between their store and their load (the
/// waiter's store of `armed_` and its re-check; the notifier's state change and its exchange
/// of `armed_`), so at least one of them sees the other's store: either the waiter's re-check
/// sees the new state, or the notifier sees `armed_` and sends a token. A stale token only
/// causes one spurious wake-up, which the waiter's loop absorbs.
class async_waker {
public:
    explicit async_waker(asio::any_io_executor ex) : channel_(std::move(ex), 1) {}

    /// Waiter: announces that it is about to wait. Call before re-checking the condition.
    void arm() noexcept
    {
        armed_.store(true, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the fence in notify()
    }

    /// Waiter: the re-check found the condition true; no wait needed.
    void disarm() noexcept { armed_.store(false, std::memory_order_relaxed); }

    /// Waiter: waits for a `notify()` (or returns at once if one is pending).
    /// Throws `boost::system::system_error` when the coroutine is cancelled.
    asio::awaitable<void> async_wait() { co_await channel_.async_receive(asio::use_awaitable); }

    /// Notifier (any thread): wakes the waiter if it is armed. Call after changing the state.
    void notify() noexcept
    {
        std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the fence in arm()
        if (armed_.exchange(false, std::memory_order_relaxed))
            channel_.try_send(error_code{});
    }

private:
    std::atomic<bool> armed_{false};
    asio::experimental::concurrent_channel<void(error_code)> channel_;
};

} // namespace pipemode::detail
