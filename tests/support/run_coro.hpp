// Test support: run a coroutine to completion on a fresh io_context, with a time bound.
#pragma once

#include <pipemode/config.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace pipemode::test {

/// How long `run_coro` lets a coroutine run unless told otherwise.
inline constexpr std::chrono::seconds default_run_limit{20};

/// Runs `a` on a fresh `io_context` (on the calling thread) until it completes, and returns
/// its result or rethrows its exception.
///
/// A coroutine still running after `limit` is a test failure: `run_coro` throws
/// `std::runtime_error` instead of hanging the test run. The io_context then runs on until
/// nothing is left in flight (a read on a thread pool, say) or `limit` again has passed, so
/// that the sources' teardown is exercised too.
template <class T>
T run_coro(asio::awaitable<T> a, std::chrono::steady_clock::duration limit = default_run_limit)
{
    asio::io_context ctx;
    std::future<T> done = asio::co_spawn(ctx, std::move(a), asio::use_future);
    ctx.run_for(limit);
    if (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        ctx.stop();
        throw std::runtime_error("run_coro: the coroutine did not finish within "
                                 + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count())
                                 + " ms");
    }
    return done.get();
}

/// Runs the coroutine `make()` returns; `make` (a lambda, often with reference captures)
/// stays alive until the coroutine has finished, so its captures may be used inside.
///
/// Example: `auto bytes = run_coro([&]() -> asio::awaitable<std::vector<std::byte>> { ... });`
template <class F>
    requires std::is_invocable_v<F&>
auto run_coro(F make, std::chrono::steady_clock::duration limit = default_run_limit)
{
    return run_coro(make(), limit);
}

} // namespace pipemode::test
