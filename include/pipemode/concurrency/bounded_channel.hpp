// pipemode: the bounded channel, weighted by bytes, between the pipeline and the training loop.
//
// It is in concurrency/, not among the stages: it carries items between threads, whatever
// produces or consumes them, and needs nothing beyond config.hpp and Asio.
#pragma once

#include <pipemode/config.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace pipemode {

namespace detail {

/// The cache line size the channel pads its hot fields to.
///
/// 64 rather than `std::hardware_destructive_interference_size`: GCC 12 warns
/// (-Winterference-size) whenever that constant is used in a header, because its value may
/// change with compiler flags and would then change the layout of types across translation
/// units. 64 is right for x86-64 and for most AArch64 cores.
inline constexpr std::size_t cache_line_size = 64;

/// Bit 63 of the channel's write word says the producer ended the stream; bits 0..62 count
/// the items sent. With the end in the same word as the count, the consumer learns of the end
/// in the same load that tells it how many items there are, so it never sees the end before
/// the last item. 2^63 items do not wrap in any run.
inline constexpr std::uint64_t channel_end_bit = std::uint64_t{1} << 63;

} // namespace detail

/// The two bounds of a `bounded_channel`.
struct channel_limits {
    /// The most items sent and not yet received; exactly this many, at least 1.
    std::size_t items = 1;
    /// The most bytes sent and not yet released (see `bounded_channel::release()`). A lone item
    /// heavier than this is still accepted when nothing else is held.
    std::size_t bytes = std::numeric_limits<std::size_t>::max();
};

/// What `bounded_channel::try_receive()` found.
enum class channel_status {
    item,    ///< an item was moved into the output argument
    empty,   ///< no item now; the stream goes on
    closed,  ///< the producer closed the stream and every item was received (or the consumer
             ///< cancelled)
};

/// A bounded single-producer single-consumer channel of `T`, weighted by bytes, that also
/// carries the end of the stream and the producer's error; lock-free on the fast path.
///
/// Two bounds: at most `limits.items` items sent and not yet received, and at most
/// `limits.bytes` bytes sent and not yet *released*. Each item is sent with its weight; the
/// weight stays held after `receive()` until the consumer calls `release()` for it, so the
/// item the consumer is still working on counts. An item heavier than the whole byte budget is
/// accepted when nothing else is held, or it would wait for ever.
///
/// The producer is a coroutine on any Asio executor: `co_await async_send(item, bytes)`
/// suspends without blocking its thread until there is room; `try_send()` never waits. It ends the
/// stream with `close()` or `fail(e)`. The consumer is a plain thread: `receive()` sleeps until
/// an item or the end arrives; `try_receive()` never waits; `cancel()` tells the producer to
/// stop. The producer's error is rethrown by the consumer after every item sent before it.
///
/// Wake-ups are coalesced: a side makes a system call only when the other side is asleep and
/// has what it waits for (the consumer wakes a waiting producer only once both bounds have
/// room for the item it waits to send), so a steady stream costs at most one wake-up per item
/// on the side that waits, and none when neither waits.
///
/// Thread safety: one producer (one coroutine or thread at a time) and one consumer thread;
/// each method is documented as a producer's or a consumer's. Constructor and destructor need
/// both sides to be done (e.g. the producer's thread joined).
///
/// Layout: the producer's hot fields, the consumer's hot fields and the read-mostly fields each
/// have their own cache line, and each side caches the other side's counters, so a send or a
/// receive touches only its own line (plus the slot) while neither bound is near.
///
/// ```
/// pipemode::bounded_channel<batch> ch({.items = 4, .bytes = 256 << 20});
/// // producer, on an io_context thread:
/// //     if (!co_await ch.async_send(std::move(b), b_bytes)) co_return;  // consumer gone
/// //     ... ch.close();
/// // consumer:
/// while (std::optional<batch> b = ch.receive()) {  // nullopt: clean end; errors are thrown
///     train(*b);
///     ch.release(bytes_of(*b));
/// }
/// ```
template <class T>
class bounded_channel {
    static_assert(std::is_nothrow_destructible_v<T>, "channel items must have a non-throwing destructor");
    static_assert(std::is_move_constructible_v<T>, "channel items must be move-constructible");
    static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
    static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

public:
    /// Makes an empty channel. Throws `std::invalid_argument` when `limits.items` is 0.
    explicit bounded_channel(channel_limits limits)
        : capacity_(limits.items), budget_(limits.bytes)
    {
        if (limits.items == 0)
            throw std::invalid_argument("pipemode::bounded_channel: limits.items is 0; at least one item must be able to wait");
        slots_ = std::make_unique_for_overwrite<slot_storage[]>(capacity_);
    }

    bounded_channel(const bounded_channel&) = delete;
    bounded_channel& operator=(const bounded_channel&) = delete;

    /// Destroys the items still in the channel. Both sides must be done with it.
    ~bounded_channel()
    {
        // Both sides are done (the owner's join gave us happens-before with them): plain
        // reads of their private counters are enough. Items a producer sent after cancel()
        // lie between the consumer's count and the producer's.
        for (std::uint64_t i = read_; i != write_; ++i)
            std::destroy_at(slot(i));
    }

    // ---- producer ------------------------------------------------------------------------

    /// Producer: sends `item` weighing `bytes` if both bounds have room and the consumer is
    /// still there; never waits.
    ///
    /// Returns false, leaving `item` untouched, when it cannot (tell "full" from "gone" with
    /// `consumer_gone()`). Throws `std::logic_error` after `close()`/`fail()`, and whatever
    /// `T`'s move constructor throws (nothing is sent then).
    bool try_send(T&& item, std::size_t bytes)
    {
        if (ended_)
            throw std::logic_error("pipemode::bounded_channel: send after close() or fail()");
        // Relaxed: only a hint that stops a producer promptly; sending to a channel whose
        // consumer is gone is harmless (the item is destroyed with the channel).
        if (consumer_gone_.load(std::memory_order_relaxed))
            return false;
        if (write_ - cached_read_ >= capacity_) {
            // Acquire pairs with the consumer's (seq_cst, so release) store of read_word_ in
            // try_receive_into(): the consumer destroyed the item in the slot before freeing
            // it, so our construction below happens after that destruction.
            cached_read_ = read_word_.load(std::memory_order_acquire);
            if (write_ - cached_read_ >= capacity_)
                return false;
        }
        if (cached_released_ < released_needed(bytes)) {
            // Acquire pairs with the consumer's store of released_word_ in release(). Only a
            // count: nothing else is read on the strength of it.
            cached_released_ = released_word_.load(std::memory_order_acquire);
            if (cached_released_ < released_needed(bytes))
                return false;
        }
        // If the constructor throws, nothing has been published and the slot stays free.
        std::construct_at(slot(write_), std::move(item));
        ++write_;
        sent_ += bytes;
        publish_write(write_);
        return true;
    }

    /// Producer: sends `item` weighing `bytes`, suspending the calling coroutine (never its
    /// thread) until both bounds have room. Returns true once sent, false (dropping `item`)
    /// when the consumer has gone away.
    ///
    /// Works on any executor: a wait holds no I/O object, only the coroutine's handler, which
    /// is resumed through its own executor (and keeps that executor's loop running meanwhile).
    /// Honours cancellation: a cancelled wait throws `boost::system::system_error` with
    /// `asio::error::operation_aborted`. The channel must outlive the call. Throws
    /// `std::logic_error` after `close()`/`fail()`.
    asio::awaitable<bool> async_send(T item, std::size_t bytes)
    {
        for (;;) {
            if (try_send(std::move(item), bytes))
                co_return true;
            if (consumer_gone())
                co_return false;
            // Completes at once (through the executor) when the re-check finds room; a wake-up
            // that raced with a wait the producer re-checked its way out of is spurious, and the
            // loop goes round again.
            co_await asio::async_initiate<decltype(asio::use_awaitable), void(error_code)>(
                [this, bytes](auto handler) { this->start_wait(std::move(handler), bytes); }, asio::use_awaitable);
        }
    }

    /// Producer: true once the consumer called `cancel()`: stop producing.
    bool consumer_gone() const noexcept
    {
        // Acquire pairs with the consumer's store in cancel().
        return consumer_gone_.load(std::memory_order_acquire);
    }

    /// Producer: bytes sent and not yet released, at the moment of the call.
    std::size_t held_bytes() const noexcept
    {
        // Relaxed: a statistic (the reader's peak_batch_bytes).
        return static_cast<std::size_t>(sent_ - released_word_.load(std::memory_order_relaxed));
    }

    /// Producer: ends the stream cleanly after the items already sent. Later `close()` and
    /// `fail()` do nothing; later sends throw `std::logic_error`.
    void close() noexcept { end_stream(nullptr); }

    /// Producer: ends the stream with `error` after the items already sent: the consumer
    /// receives those items, then `error` is rethrown (the same exception object) by every
    /// later receive. A null `error` is a clean close. Later `close()` and `fail()` do nothing.
    void fail(std::exception_ptr error) noexcept { end_stream(std::move(error)); }

    // ---- consumer ------------------------------------------------------------------------

    /// Consumer: the next item, sleeping (on a futex, no spinning) while the channel is empty;
    /// `nullopt` at the clean end of the stream or after `cancel()`. Rethrows the producer's
    /// error after the items sent before it. The item's bytes stay held until `release()`.
    std::optional<T> receive()
    {
        std::optional<T> out;
        for (;;) {
            switch (try_receive_into([&out](T&& v) { out.emplace(std::move(v)); })) {
            case channel_status::item: return out;
            case channel_status::closed: return std::nullopt;
            case channel_status::empty: wait_for_items(); break;
            }
        }
    }

    /// Consumer: moves the next item into `out` if there is one; never waits. Returns `item`,
    /// `empty` or `closed` (clean end, or after `cancel()`), and rethrows the producer's error
    /// after the items sent before it.
    channel_status try_receive(T& out)
        requires std::is_move_assignable_v<T>
    {
        return try_receive_into([&out](T&& v) { out = std::move(v); });
    }

    /// Consumer: gives back `bytes` of the byte budget, those of an item it is done with, and
    /// wakes the producer if it waits for them.
    void release(std::size_t bytes) noexcept
    {
        released_ += bytes;
        // Release half: pairs with the producer's acquire reload in try_send().
        // seq_cst half: the notifier's store of the producer's wake-up protocol (see
        // wake_producer_if_ready()).
        released_word_.store(released_, std::memory_order_seq_cst);
        wake_producer_if_ready();
    }

    /// Consumer: tells the producer to stop, wakes it if it waits, and destroys the items in
    /// the channel. Afterwards receives return `nullopt`/`closed` without rethrowing; items
    /// the producer sends meanwhile are destroyed with the channel. Idempotent.
    void cancel() noexcept
    {
        if (cancelled_)
            return;
        cancelled_ = true;
        // The notifier's store of the producer's wake-up protocol; pairs with the producer's
        // seq_cst re-load in start_wait() (and, as a release, with the acquire load in
        // consumer_gone()).
        consumer_gone_.store(true, std::memory_order_seq_cst);
        // Items are large (whole batches): free them now. Acquire pairs with the producer's
        // store in publish_write().
        const std::uint64_t w = write_word_.load(std::memory_order_acquire) & ~detail::channel_end_bit;
        for (; read_ != w; ++read_)
            std::destroy_at(slot(read_));
        read_word_.store(read_, std::memory_order_seq_cst);
        // Whatever the producer waits for, it must see that nobody will receive it.
        // The notifier's load; pairs with the producer's seq_cst store in start_wait().
        if (producer_wait_.load(std::memory_order_seq_cst) != 0)
            wake_producer();
    }

private:
    struct slot_storage {
        alignas(T) std::byte bytes[sizeof(T)];
    };

    T* slot(std::uint64_t counter) noexcept
    {
        return std::launder(reinterpret_cast<T*>(slots_[counter % capacity_].bytes));
    }

    // How each side sleeps and is woken. The "waiter" found the channel full (producer) or
    // empty (consumer); the "notifier" has just changed what the waiter waits for.
    //   waiter:   stores its wait word (seq_cst), re-loads the notifier's counters (seq_cst)
    //             and, only if there is still nothing to do, sleeps: the consumer on its wait
    //             word (a futex); the producer's coroutine stays suspended with its handler
    //             stored in the channel. Woken, it goes round again.
    //   notifier: stores its counter (seq_cst), loads the waiter's wait word (seq_cst); only
    //             if it is set (and, for the producer, the counters now meet what it waits
    //             for), exchanges it to 0 and wakes the waiter (futex notify; for the
    //             producer, a post of its handler to its executor).
    // The marked operations are seq_cst, so they fall in one total order: either the
    // notifier's load sees the wait word set, or the waiter's re-load sees the new counter. A
    // wake-up that comes before the waiter is actually asleep is not lost: the futex word no
    // longer holds the value waited on, and the producer's handler was stored before its word
    // was set, so whoever takes the word (the consumer, or the producer whose re-check found
    // room) completes it. At most one wake-up is sent per wait.
    // seq_cst stores rather than release stores plus fences: ThreadSanitizer does not model
    // fences.
    // No spinning before sleeping: a spinning consumer faster than its producer takes items
    // one by one and bounces the producer's cache line on every send, and the spinning core
    // is taken from the decoders. Items are whole batches: a wake-up's microseconds do not
    // matter.

    /// The released-bytes count at which an item of `bytes` fits: nothing held at all, or the
    /// held bytes plus `bytes` within the budget.
    std::uint64_t released_needed(std::size_t bytes) const noexcept
    {
        if (bytes > budget_)
            return sent_;  // only alone
        const std::uint64_t after = sent_ + bytes;
        return after > budget_ ? after - budget_ : 0;
    }

    /// The producer's suspended wait. Whoever resets `producer_wait_` from 1 to 0 owns it and
    /// completes it, exactly once: the consumer when the producer has room (or the consumer
    /// goes away), the producer when its re-check finds room, or the cancellation slot.
    struct pending_wait {
        asio::any_completion_handler<void(error_code)> handler;
        asio::any_io_executor work;  ///< the handler's executor, counting as work until it runs
        asio::cancellation_slot slot;
    };

    /// Installed in the waiting coroutine's cancellation slot; runs on the producer's executor.
    struct wait_canceller {
        bounded_channel* channel;
        void operator()(asio::cancellation_type type) const noexcept
        {
            if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial | asio::cancellation_type::total))
                == asio::cancellation_type::none)
                return;
            // Pairs with the store in start_wait() and the consumer's exchange in wake_producer().
            if (channel->producer_wait_.exchange(0, std::memory_order_seq_cst) != 0)
                channel->complete_wait(asio::error::operation_aborted);
        }
    };

    /// Producer (the initiation of async_send's wait, on the producer's executor): stores the
    /// handler, announces the wait for room for an item of `bytes`, and re-checks.
    template <class Handler>
    void start_wait(Handler handler, std::size_t bytes)
    {
        asio::cancellation_slot slot = asio::get_associated_cancellation_slot(handler);
        const asio::any_io_executor ex = asio::get_associated_executor(handler);
        // Plain writes, published by the release half of the store of producer_wait_ below; the
        // owner reads them only after taking that word.
        wait_.emplace(pending_wait{std::move(handler), asio::prefer(ex, asio::execution::outstanding_work.tracked), slot});
        if (slot.is_connected())
            slot.template emplace<wait_canceller>(wait_canceller{this});
        // What the consumer's counters must reach for the item to fit. One free slot is
        // enough, not a low-water mark: the reader promises that a batch waits as soon as the
        // consumer takes one (prefetch_batches exactly). Relaxed: published with the wait
        // below. A consumer may read those of a later wait mixed with these; that later wait
        // re-checks after its own store, so nothing is lost, and a wake-up decided on stale
        // values is only spurious.
        need_read_.store(write_ + 1 > capacity_ ? write_ + 1 - capacity_ : 0, std::memory_order_relaxed);
        need_released_.store(released_needed(bytes), std::memory_order_relaxed);
        // The waiter's store; pairs with the consumer's seq_cst load and exchange in
        // wake_producer_if_ready(), wake_producer() and cancel().
        producer_wait_.store(1, std::memory_order_seq_cst);
        // The waiter's re-loads; pair with the consumer's seq_cst stores of consumer_gone_,
        // read_word_ and released_word_.
        const bool gone = consumer_gone_.load(std::memory_order_seq_cst);
        cached_read_ = read_word_.load(std::memory_order_seq_cst);
        cached_released_ = released_word_.load(std::memory_order_seq_cst);
        if (gone || (write_ - cached_read_ < capacity_ && cached_released_ >= released_needed(bytes))) {
            // No need to wait. If the consumer took the word meanwhile, it completes the wait.
            if (producer_wait_.exchange(0, std::memory_order_seq_cst) != 0)
                complete_wait(error_code{});
        }
    }

    /// Completes the producer's wait with `ec` through its executor; called by the one side
    /// that reset `producer_wait_` from 1.
    void complete_wait(error_code ec) noexcept
    {
        pending_wait w = std::move(*wait_);
        wait_.reset();
        const asio::any_io_executor ex = w.work;
        // Never run inline: the consumer's thread must not resume the producer's coroutine.
        asio::post(ex, [w = std::move(w), ec]() mutable {
            // On the producer's executor, after any canceller call has returned (they run there
            // too): the slot may be cleared now, and must be, since the channel may be gone by
            // the time the coroutine's next operation is cancelled.
            if (w.slot.is_connected())
                w.slot.clear();
            auto handler = std::move(w.handler);
            std::move(handler)(ec);
        });
    }

    /// Producer: publishes the write word and wakes the consumer if it may be asleep.
    void publish_write(std::uint64_t word) noexcept
    {
        // Release half: pairs with the consumer's acquire loads of write_word_ in
        // try_receive_into() and cancel(): the item (or error_) written before this store is
        // visible to a consumer that sees the new word.
        // seq_cst half: the notifier's store; pairs with the consumer's seq_cst store to
        // consumer_wait_ and re-load of write_word_ in wait_for_items().
        write_word_.store(word, std::memory_order_seq_cst);
        // The notifier's load; pairs with the consumer's seq_cst store of 1 in
        // wait_for_items(). Normally 0: no system call while the consumer is busy.
        if (consumer_wait_.load(std::memory_order_seq_cst) != 0
            && consumer_wait_.exchange(0, std::memory_order_seq_cst) != 0) {
            // Pairs with consumer_wait_.wait(1) in wait_for_items(): the changed value is
            // what releases it; the notify only ends a futex sleep.
            consumer_wait_.notify_one();
        }
    }

    void end_stream(std::exception_ptr error) noexcept
    {
        if (ended_)
            return;
        ended_ = true;
        // A plain write, published by the release half of the store in publish_write(); the
        // consumer reads it only after seeing the end bit.
        error_ = std::move(error);
        publish_write(write_ | detail::channel_end_bit);
    }

    /// Consumer: wakes the producer if it waits and the consumer's counters now give it room.
    void wake_producer_if_ready() noexcept
    {
        // The notifier's load; pairs with the producer's seq_cst store in
        // start_wait(). Normally 0: a load from the consumer's own cache line.
        if (producer_wait_.load(std::memory_order_seq_cst) == 0)
            return;
        // Relaxed: made visible by the acquire half of the load above (see start_wait()).
        // A producer waiting for a slot is not woken by a release, nor one waiting for bytes
        // by a receive: one wake-up per wait.
        if (read_ < need_read_.load(std::memory_order_relaxed) || released_ < need_released_.load(std::memory_order_relaxed))
            return;
        wake_producer();
    }

    /// Consumer: takes the producer's wait word and, if it was still set, resumes the producer.
    void wake_producer() noexcept
    {
        // seq_cst, so acquire: reads the producer's store of 1, after which wait_ holds its
        // handler. Pairs with the store in start_wait() (and the other exchanges of the word,
        // of which only one takes the 1).
        if (producer_wait_.exchange(0, std::memory_order_seq_cst) != 0)
            complete_wait(error_code{});
    }

    /// Consumer: delivers the next item to `sink(T&&)` if there is one.
    template <class Sink>
    channel_status try_receive_into(Sink&& sink)
    {
        if (cancelled_)
            return channel_status::closed;
        if (read_ == (cached_write_ & ~detail::channel_end_bit)) {
            // Acquire pairs with the release half of the producer's store in publish_write():
            // the item constructed (or error_ written) before that store is visible now.
            cached_write_ = write_word_.load(std::memory_order_acquire);
            if (read_ == (cached_write_ & ~detail::channel_end_bit)) {
                if (!(cached_write_ & detail::channel_end_bit))
                    return channel_status::empty;
                if (error_)
                    std::rethrow_exception(error_);
                return channel_status::closed;
            }
        }
        T* item = slot(read_);
        // If the sink throws (T's move), the item stays in the channel.
        std::forward<Sink>(sink)(std::move(*item));
        std::destroy_at(item);
        ++read_;
        // Release half: pairs with the producer's acquire reload in try_send(); the slot's
        // item was destroyed before this store. seq_cst half: the notifier's store of the
        // producer's wake-up protocol.
        read_word_.store(read_, std::memory_order_seq_cst);
        wake_producer_if_ready();
        return channel_status::item;
    }

    /// Consumer: sleeps until the producer may have published something since
    /// try_receive_into() last looked (an item or the end).
    void wait_for_items() noexcept
    {
        const std::uint64_t seen = cached_write_;
        // The waiter's store; pairs with the producer's seq_cst load and exchange of
        // consumer_wait_ in publish_write().
        consumer_wait_.store(1, std::memory_order_seq_cst);
        // The waiter's re-load; pairs with the producer's seq_cst store in publish_write().
        if (write_word_.load(std::memory_order_seq_cst) == seen) {
            // Returns once the producer has exchanged the word to 0. seq_cst: libstdc++
            // re-checks the value after registering as a waiter, and that re-check must be
            // ordered after the registration for the notifier's skip of FUTEX_WAKE (its
            // waiter count is zero) to be safe. Pairs with the exchange and notify_one() in
            // publish_write().
            consumer_wait_.wait(1, std::memory_order_seq_cst);
        }
        // Already 0 if the producer woke us. Relaxed: a stale 1 costs the producer one
        // needless exchange and notify, nothing more.
        consumer_wait_.store(0, std::memory_order_relaxed);
    }

    // ---- read-mostly: written at construction, once by each side, or at the end ----
    alignas(detail::cache_line_size) const std::uint64_t capacity_;
    const std::uint64_t budget_;
    std::unique_ptr<slot_storage[]> slots_;
    std::atomic<bool> consumer_gone_{false};
    std::exception_ptr error_;  ///< written by fail(); read after the end bit
    /// The producer's suspended wait, owned by whoever takes `producer_wait_` (see pending_wait).
    std::optional<pending_wait> wait_;

    // ---- the producer's line: written by each send, read by the consumer when it runs dry ----
    alignas(detail::cache_line_size) std::atomic<std::uint64_t> write_word_{0};
    std::uint64_t write_ = 0;            ///< items sent
    std::uint64_t sent_ = 0;             ///< bytes sent
    std::uint64_t cached_read_ = 0;      ///< the producer's last view of read_word_
    std::uint64_t cached_released_ = 0;  ///< the producer's last view of released_word_
    bool ended_ = false;                 ///< close() or fail() was called
    /// 1 while the consumer may sleep. 4 bytes: libstdc++ 12 waits on a futex directly only
    /// for 4-byte atomics, and skips FUTEX_WAKE in notify_one() when nobody sleeps on it.
    std::atomic<std::uint32_t> consumer_wait_{0};

    // ---- the consumer's line: written by each receive and release, read by the producer
    //      when a bound is reached ----
    alignas(detail::cache_line_size) std::atomic<std::uint64_t> read_word_{0};
    std::atomic<std::uint64_t> released_word_{0};
    std::uint64_t read_ = 0;          ///< items received
    std::uint64_t released_ = 0;      ///< bytes released
    std::uint64_t cached_write_ = 0;  ///< the consumer's last view of write_word_
    bool cancelled_ = false;
    std::atomic<std::uint32_t> producer_wait_{0};     ///< 1 while the producer may wait
    std::atomic<std::uint64_t> need_read_{0};         ///< what the waiting producer needs
    std::atomic<std::uint64_t> need_released_{0};
};

} // namespace pipemode
