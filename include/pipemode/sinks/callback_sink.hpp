// pipemode: a batch sink that hands every batch to a function of the caller's.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/read_position.hpp>

#include <boost/asio/awaitable.hpp>

#include <concepts>
#include <type_traits>
#include <utility>

namespace pipemode {

/// A batch sink that calls `f` with each batch, on the pipeline's thread, in order: the
/// simplest way to consume a pipeline without a reader's thread and channel (a tool that
/// prints or hashes records, a test).
///
/// `f` is called as `f(batch&, const read_position&)` or, when it does not take a position,
/// `f(batch&)`. It may return `void` (every batch is wanted) or something convertible to
/// `bool`: false stops the pipeline after this batch (the rest of the data is not read, and
/// `run_pipeline` reports `data_ended == false`). It may move the batch out to keep it; a
/// batch left in place goes back to the pipeline's pool when `f` returns. An exception from
/// `f` ends the pipeline and reaches the caller of `run_pipeline`.
///
/// The pipeline waits while `f` runs: a slow `f` is the pipeline's backpressure.
///
/// \code
/// std::uint64_t rows = 0;
/// pipemode::run_pipeline(pipemode::local_files({"train.rec"}), pipemode::recordio_decoder{},
///                        pipemode::protobuf_record_parser{},
///                        pipemode::callback_sink([&](pipemode::batch& b) { rows += b.size(); }));
/// \endcode
template <class F>
class callback_sink {
public:
    /// A sink calling `f`.
    explicit callback_sink(F f) noexcept(std::is_nothrow_move_constructible_v<F>) : f_(std::move(f)) {}

    /// Calls the function with `b`; completes with what it returned (true for `void`).
    asio::awaitable<bool> async_write(batch b, read_position after)
    {
        co_return call(b, after);
    }

    /// Nothing to close: the pipeline's return says the data ended.
    asio::awaitable<void> async_close() { co_return; }

private:
    bool call(batch& b, const read_position& after)
    {
        if constexpr (std::is_invocable_v<F&, batch&, const read_position&>)
            return result(f_, b, after);
        else
            return result(f_, b);
    }

    template <class... Args>
    static bool result(F& f, Args&... args)
    {
        using R = std::invoke_result_t<F&, Args&...>;
        if constexpr (std::is_void_v<R>) {
            f(args...);
            return true;
        }
        else {
            static_assert(std::convertible_to<R, bool>, "pipemode::callback_sink: the function returns void or bool");
            return static_cast<bool>(f(args...));
        }
    }

    F f_;
};

template <class F>
callback_sink(F) -> callback_sink<F>;

} // namespace pipemode
