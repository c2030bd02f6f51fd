// pipemode: a byte writer that writes the same bytes into several byte writers at once, so that
// pipemode-agent can serve one download of a channel to several FIFO consumers.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/sagemaker/fifo_byte_writer.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace pipemode::sagemaker {

/// A `byte_writer` that copies every write into each of several byte writers (one
/// `fifo_byte_writer` per consumer of a channel), so that bytes read and decoded once reach
/// every consumer.
///
/// - `async_write(bytes)` writes `bytes` into every writer still wanted, all at once, and
///   completes when each has taken all of them: the stream goes at the pace of the slowest
///   consumer (backpressure; nothing is dropped, nothing is copied: the writers read the
///   caller's bytes).
/// - A writer whose reader has gone (false from its `async_write`, a consumer that closed its
///   FIFO early) is not written again, and `on_reader_closed` is called with its index; the
///   others go on. `async_write` completes with false only once every writer's reader has gone.
/// - A writer that throws makes `async_write` throw that exception, after the other writes in
///   flight have been cancelled (a failed FIFO fails the channel, as with one consumer).
/// - `async_close()` closes every writer, the gone ones included.
///
/// One executor, not thread-safe (the pipeline's thread only), as every `byte_writer`.
///
/// \code
/// std::vector<fifo_byte_writer> each{fifo_byte_writer(fifo0), fifo_byte_writer(fifo1)};
/// co_await async_run_record_pipeline(*provider, chunk_decoder{},
///                                    fifo_sink(fanout_byte_writer(std::move(each))));
/// \endcode
template <byte_writer Writer = fifo_byte_writer>
class fanout_byte_writer {
public:
    /// A writer into each of `writers` (at least one; `std::invalid_argument` otherwise).
    explicit fanout_byte_writer(std::vector<Writer> writers, std::function<void(std::size_t)> on_reader_closed = nullptr)
        : writers_(std::move(writers)), wanted_(writers_.size(), true), on_reader_closed_(std::move(on_reader_closed))
    {
        if (writers_.empty())
            throw std::invalid_argument("pipemode::sagemaker::fanout_byte_writer: needs at least one writer");
    }

    /// Writes all of `bytes` into every writer still wanted; false when none is.
    asio::awaitable<bool> async_write(std::span<const std::byte> bytes)
    {
        std::vector<std::size_t> targets;
        for (std::size_t i = 0; i < writers_.size(); ++i)
            if (wanted_[i])
                targets.push_back(i);
        if (targets.empty())
            co_return false;
        if (targets.size() == 1) {
            // No group for one consumer: the single-FIFO agent's cost.
            const bool wanted = co_await writers_[targets[0]].async_write(bytes);
            if (!wanted)
                drop(targets[0]);
            co_return any_wanted();
        }
        const auto ex = co_await asio::this_coro::executor;
        using op_type = decltype(asio::co_spawn(ex, writers_[0].async_write(bytes), asio::deferred));
        std::vector<op_type> ops;
        ops.reserve(targets.size());
        for (const std::size_t i : targets)
            ops.push_back(asio::co_spawn(ex, writers_[i].async_write(bytes), asio::deferred));
        // One failed write cancels the others: the channel fails as a whole. (The condition is
        // a named variable: GCC 12 destroys a temporary built inside a co_await twice.)
        auto group = asio::experimental::make_parallel_group(std::move(ops));
        const asio::experimental::wait_for_one_error condition;
        auto outcome = co_await group.async_wait(condition, asio::use_awaitable);
        auto& [order, errors, results] = outcome;
        for (const std::size_t k : order)
            if (errors[k])
                std::rethrow_exception(errors[k]);
        for (std::size_t k = 0; k < targets.size(); ++k)
            if (!results[k])
                drop(targets[k]);
        co_return any_wanted();
    }

    /// Closes every writer: each reader sees the end of the data.
    asio::awaitable<void> async_close()
    {
        for (Writer& w : writers_)
            co_await w.async_close();
    }

    /// The writers, in the order given.
    std::vector<Writer>& writers() noexcept { return writers_; }

    /// Whether the writer at `index` is still wanted (its reader has not gone).
    bool wanted(std::size_t index) const noexcept { return wanted_.at(index); }

private:
    void drop(std::size_t i)
    {
        wanted_[i] = false;
        if (on_reader_closed_)
            on_reader_closed_(i);
    }

    bool any_wanted() const noexcept
    {
        for (const bool w : wanted_)
            if (w)
                return true;
        return false;
    }

    std::vector<Writer> writers_;
    std::vector<bool> wanted_;
    std::function<void(std::size_t)> on_reader_closed_;
};

template <byte_writer Writer>
fanout_byte_writer(std::vector<Writer>, std::function<void(std::size_t)> = nullptr) -> fanout_byte_writer<Writer>;

static_assert(byte_writer<fanout_byte_writer<fifo_byte_writer>>);

} // namespace pipemode::sagemaker
