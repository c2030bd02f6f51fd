// pipemode: the lock-free single-producer single-consumer ring between the pipeline and the
// training loop.
//
// It is in concurrency/, not among the stages: it carries batches between threads, whatever
// produces or consumes them, and needs nothing beyond config.hpp.
#pragma once

#include <pipemode/config.hpp>

#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

namespace pipemode {

namespace detail {

/// The cache line size the ring pads its hot fields to.
///
/// 64 rather than `std::hardware_destructive_interference_size`: GCC 12 warns
/// (-Winterference-size) whenever that constant is used in a header, because its value may
/// change with compiler flags and would then change the layout of types across translation
/// units. 64 is right for x86-64 and for most AArch64 cores.
inline constexpr std::size_t cache_line_size = 64;

/// The type of the ring's index words and wait words: 4 bytes, because libstdc++ 12
/// (bits/atomic_wait.h) waits on a futex directly only for 4-byte scalars. Its `notify_one()`
/// on such a word first loads (seq_cst) a waiter count kept in a 16-entry process-wide table
/// indexed by address bits 2..5 (so every 64-byte-aligned atomic shares entry 0) and skips the
/// FUTEX_WAKE system call when it is zero; `wait()` raises that count with a seq_cst RMW before
/// it re-checks the value. For 8-byte atomics every `notify_one()` would also do a seq_cst
/// fetch_add on the shared entry and wake all its waiters. So notifying is cheap when nobody
/// sleeps, but a sleeper anywhere in the process makes every notify a system call: the ring
/// therefore keeps its own wait words and notifies only when one says the peer may sleep.
using ring_word = std::uint32_t;

/// Bit 31 of an index word is a flag (write word: the producer ended the stream; read word:
/// the consumer went away); bits 0..30 are a free-running counter of pushes or pops, modulo
/// 2^31. With the end of the stream in the same word as the counter, the consumer learns of
/// the end in the same load that tells it how many items there are, so it can never see the
/// end before the last item.
inline constexpr ring_word ring_flag_bit = ring_word{1} << 31;
inline constexpr ring_word ring_counter_mask = ring_flag_bit - 1;

/// The largest usable capacity: half the counter range, so that `write - read` (mod 2^31)
/// is unambiguous.
inline constexpr std::size_t ring_max_capacity = std::size_t{1} << 30;

/// Bits of the producer's wait word (`spsc_ring::producer_wait_`).
inline constexpr ring_word producer_blocked = 1;  ///< the producer sleeps in `push()`
inline constexpr ring_word producer_armed = 2;    ///< the producer armed a space notification

/// Declared only: the ring's tests define it to start the counters near their wrap point,
/// which real traffic reaches only after 2^31 items.
struct ring_test_access;

} // namespace detail

template <class T>
class spsc_ring;
template <class T>
class ring_producer;
template <class T>
class ring_consumer;

/// What a non-blocking or timed pop found.
enum class pop_status {
    item,    ///< an item was delivered into the output argument
    empty,   ///< no item is available now; the stream goes on
    closed,  ///< the producer closed the stream and every item has been delivered (or the
             ///< consumer cancelled)
};

/// The error the consumer sees when the producer handle was destroyed without `close()` or
/// `fail()`: the stream may be incomplete, so it must not look like a clean end.
class ring_producer_abandoned : public std::runtime_error {
public:
    ring_producer_abandoned()
        : std::runtime_error(
            "pipemode: ring producer destroyed without closing the stream (the data may be incomplete)")
    {
    }
};

/// Makes a ring of at least `capacity` slots and returns its two handles.
///
/// The capacity is rounded up to a power of two (and to at least 1); `capacity()` on either
/// handle reports the usable count. Throws `std::length_error` above 2^30 slots.
///
/// ```
/// auto [producer, consumer] = pipemode::make_spsc_ring<batch>(8);
/// ```
template <class T>
std::pair<ring_producer<T>, ring_consumer<T>> make_spsc_ring(std::size_t capacity);

/// A bounded, lock-free, single-producer single-consumer FIFO of `T` that also carries the end
/// of the stream and the producer's error.
///
/// The ring itself has no public operations: it is shared by one `ring_producer<T>` and one
/// `ring_consumer<T>` made together by `make_spsc_ring<T>()`, and it lives until both are gone,
/// so either handle may be destroyed first. Items are constructed in place in raw slots, so
/// `T` need only be move-constructible; items still in the ring when it dies are destroyed.
///
/// Ending: the producer calls `close()` (clean end after the items already pushed) or
/// `fail(e)` (the consumer rethrows `e` after those items). A producer destroyed without
/// either ends the stream with `ring_producer_abandoned`. The consumer calls `cancel()` (or is
/// destroyed) to tell the producer to stop; the producer sees `consumer_gone()`.
///
/// Thread safety: at any time at most one thread uses the producer handle and at most one
/// (other or the same) thread uses the consumer handle. Handing a handle to another thread
/// needs the usual synchronization (e.g. starting the thread).
///
/// Layout: the producer's hot fields, the consumer's hot fields and the read-mostly fields
/// each have their own cache line, and each side caches the other side's counter, so in the
/// common case a push or a pop touches only its own line (plus the slot).
///
/// ```
/// std::jthread worker;  // declared first, so it is joined after the consumer has cancelled
/// auto [producer, consumer] = pipemode::make_spsc_ring<std::string>(16);
/// worker = std::jthread([p = std::move(producer)]() mutable {
///     for (int i = 0; i < 100; ++i)
///         if (!p.push(std::to_string(i)))
///             return;  // the consumer went away (e.g. use() threw)
///     p.close();
/// });
/// while (std::optional<std::string> s = consumer.pop())
///     use(*s);
/// ```
template <class T>
class spsc_ring {
    static_assert(std::is_nothrow_destructible_v<T>, "ring items must have a non-throwing destructor");
    static_assert(std::is_move_constructible_v<T>, "ring items must be move-constructible");
    static_assert(std::atomic<detail::ring_word>::is_always_lock_free);

public:
    spsc_ring(const spsc_ring&) = delete;
    spsc_ring& operator=(const spsc_ring&) = delete;

    /// Destroys the items still in the ring.
    ~spsc_ring()
    {
        // Both handles are gone: the shared_ptr's reference count decrement gave us
        // happens-before with everything either side did, so plain reads are enough.
        for (detail::ring_word i = read_; i != write_; i = (i + 1) & detail::ring_counter_mask)
            std::destroy_at(slot(i));
    }

    /// The number of items the ring holds when full.
    std::size_t capacity() const noexcept { return capacity_; }

    /// The number of items in the ring at some recent moment (exact when neither side is
    /// working). Callable from either side.
    std::size_t size_approx() const noexcept
    {
        // Relaxed: a statistic, nothing is read on the strength of it.
        const detail::ring_word w = write_word_.load(std::memory_order_relaxed);
        const detail::ring_word r = read_word_.load(std::memory_order_relaxed);
        const std::size_t n = (w - r) & detail::ring_counter_mask;
        return n > capacity_ ? capacity_ : n;  // the two loads are not one snapshot
    }

private:
    friend class ring_producer<T>;
    friend class ring_consumer<T>;
    friend struct detail::ring_test_access;
    template <class U>
    friend std::pair<ring_producer<U>, ring_consumer<U>> make_spsc_ring(std::size_t);

    struct slot_storage {
        alignas(T) std::byte bytes[sizeof(T)];
    };

    explicit spsc_ring(std::size_t requested)
    {
        if (requested > detail::ring_max_capacity)
            throw std::length_error("pipemode: ring capacity above 2^30 slots; ask for fewer (batches are large, a few dozen slots are plenty)");
        capacity_ = std::bit_ceil(requested < 1 ? std::size_t{1} : requested);
        slot_mask_ = static_cast<detail::ring_word>(capacity_ - 1);
        slots_ = std::make_unique_for_overwrite<slot_storage[]>(capacity_);
    }

    T* slot(detail::ring_word counter) noexcept
    {
        return std::launder(reinterpret_cast<T*>(slots_[counter & slot_mask_].bytes));
    }

    // How a side sleeps and is woken (the same on both sides; the "waiter" found the ring
    // full or empty, the "notifier" has just changed it):
    //   waiter:   sets its wait word (seq_cst), re-loads the peer's index word (seq_cst)
    //             and, if there is still nothing to do, waits while its wait word keeps the
    //             value it set; then clears its bit.
    //   notifier: publishes its index word (seq_cst store), then loads the waiter's wait word
    //             (seq_cst); only if that is non-zero, exchanges it to 0 and notifies (or, for
    //             an armed producer, calls the space callback).
    // The four marked operations are seq_cst, so they fall in one total order: either the
    // notifier's load sees the wait word set, or the waiter's re-load sees the new index.
    // The waiter sleeps on its wait word, not on the index: a wake-up that comes before the
    // waiter is actually asleep stays recorded in the word (it no longer holds the value
    // waited for), so it is never lost, and each sleep costs at most one notify. (Sleeping on
    // the index word instead loses wake-ups: the notifier may clear a flag that was set for a
    // wait keyed on the very index value the notifier has just stored, and the waiter then
    // sleeps on a value nobody will change.)
    // seq_cst stores rather than release stores plus atomic_thread_fence: ThreadSanitizer
    // does not model fences.
    // No spinning of our own before sleeping (libstdc++'s wait() polls 16 times first): with
    // a spin, a consumer faster than its producer hands items over one by one and the
    // producer's cache line bounces on every push (measured: about 3 M items/s at capacity
    // 1024 against over 20 M without it), and the spinning core is taken from the decoders.
    // Sleeping lets the producer fill the ring while the consumer wakes, then drain it in a
    // run. The items are whole batches, so a wake-up's few microseconds do not matter.

    // ---- producer side (called only from the producer's thread) ----

    /// The number of items in the ring by the producer's count, given a read counter.
    std::size_t used_given(detail::ring_word read) const noexcept
    {
        return (write_ - read) & detail::ring_counter_mask;
    }

    template <class... Args>
    bool try_emplace(Args&&... args)
    {
        if (ended_)
            throw std::logic_error("pipemode: push into a ring whose producer already called close() or fail()");
        // Relaxed: only a hint that stops a producer promptly; the read word (loaded with
        // acquire below) is the authority. Pushing into a ring whose consumer is gone is
        // harmless: the item is destroyed with the ring.
        if (consumer_gone_.load(std::memory_order_relaxed))
            return false;
        if (used_given(cached_read_) == capacity_) {
            // Acquire pairs with the consumer's release (seq_cst) store of read_word_ in
            // publish_read(): the consumer destroyed the item in the slot before releasing
            // it, so our construction below happens after that destruction.
            const detail::ring_word r = read_word_.load(std::memory_order_acquire);
            cached_read_ = r & detail::ring_counter_mask;
            if ((r & detail::ring_flag_bit) || used_given(cached_read_) == capacity_)
                return false;
        }
        // If the constructor throws, nothing has been published and the slot stays free.
        std::construct_at(slot(write_), std::forward<Args>(args)...);
        write_ = (write_ + 1) & detail::ring_counter_mask;
        publish_write(write_);
        return true;
    }

    /// Publishes the write word and wakes the consumer if it may be asleep.
    void publish_write(detail::ring_word word) noexcept
    {
        // Release half: pairs with the consumer's acquire loads of write_word_ in
        // try_pop_into() and cancel(); the item (or error_/abandoned_) written before this
        // store is visible to a consumer that sees the new word.
        // seq_cst half: the notifier's store of the wake-up protocol; pairs with the
        // consumer's seq_cst store to consumer_wait_ and re-load of write_word_ in
        // wait_for_items().
        write_word_.store(word, std::memory_order_seq_cst);
        // The notifier's load; pairs with the consumer's seq_cst store of 1 in
        // wait_for_items(). Normally 0: a load from our own cache line.
        if (consumer_wait_.load(std::memory_order_seq_cst) != 0) {
            // Pairs with the consumer's consumer_wait_.wait(1) in wait_for_items(): the
            // changed value is what releases it, the notify only ends a futex sleep.
            if (consumer_wait_.exchange(0, std::memory_order_seq_cst) != 0) {
                // Pairs with consumer_wait_.wait() in wait_for_items().
                consumer_wait_.notify_one();
            }
        }
    }

    void end_stream(std::exception_ptr error, bool abandoned) noexcept
    {
        if (ended_)
            return;
        ended_ = true;
        // Plain writes, published by the release half of the store in publish_write(); the
        // consumer reads them only after seeing the flag bit.
        error_ = std::move(error);
        abandoned_ = abandoned;
        // An armed notification is pointless now, and its callback may capture state that
        // dies with the producer (a call the consumer has already started cannot be stopped,
        // hence the capture rule in set_space_callback()). Relaxed: it only saves a call;
        // pairs with the consumer's exchange in wake_producer().
        producer_wait_.fetch_and(~detail::producer_armed, std::memory_order_relaxed);
        publish_write(write_ | detail::ring_flag_bit);
    }

    bool push_blocking(T& value)
    {
        for (;;) {
            if (try_emplace(std::move(value)))
                return true;
            if (consumer_gone())
                return false;
            // The waiter's store of the wake-up protocol: pairs with the consumer's seq_cst
            // load and exchange of producer_wait_ in publish_read()/wake_producer().
            const detail::ring_word waiting =
                producer_wait_.fetch_or(detail::producer_blocked, std::memory_order_seq_cst) | detail::producer_blocked;
            // The waiter's re-load: pairs with the consumer's seq_cst store of read_word_ in
            // publish_read() (and cancel()).
            const detail::ring_word r = read_word_.load(std::memory_order_seq_cst);
            if (!(r & detail::ring_flag_bit) && used_given(r & detail::ring_counter_mask) == capacity_) {
                // Returns once the consumer has exchanged the word to 0 (after a pop or a
                // cancel). seq_cst: libstdc++ re-checks the value after registering as a
                // waiter, and that re-check must be ordered after the registration for the
                // notifier's skip of FUTEX_WAKE to be safe. Pairs with the consumer's
                // exchange and notify_one() in wake_producer().
                producer_wait_.wait(waiting, std::memory_order_seq_cst);
            }
            // Already 0 if the consumer woke us. Relaxed: a stale bit costs the consumer one
            // needless exchange and notify, nothing more.
            producer_wait_.fetch_and(~detail::producer_blocked, std::memory_order_relaxed);
        }
    }

    bool arm_space_notification()
    {
        if (!space_callback_)
            throw std::logic_error("pipemode: arm_space_notification() needs set_space_callback() first");
        // The waiter's side of the wake-up protocol, with the callback instead of a futex:
        // the consumer calls the callback after any pop (or cancel) that finds the armed bit,
        // so a callback always follows an arm that returned true. A call may also follow an
        // arm that returned false or come for a pop this producer had already seen; that is a
        // spurious wake, which the contract allows (the producer retries and re-arms).
        // seq_cst: pairs with the consumer's seq_cst load and exchange of producer_wait_ in
        // publish_read()/wake_producer(); it also makes space_callback_ (set before the first
        // arm) visible to the consumer that reads it after the exchange.
        producer_wait_.fetch_or(detail::producer_armed, std::memory_order_seq_cst);
        // The waiter's re-load: pairs with the consumer's seq_cst store of read_word_ in
        // publish_read() (and cancel()).
        const detail::ring_word r = read_word_.load(std::memory_order_seq_cst);
        cached_read_ = r & detail::ring_counter_mask;
        if ((r & detail::ring_flag_bit) || used_given(cached_read_) < capacity_) {
            // No need to wait. Relaxed: if the consumer exchanged the bit meanwhile it calls
            // the callback once anyway; if not, this saves it a call.
            producer_wait_.fetch_and(~detail::producer_armed, std::memory_order_relaxed);
            return false;
        }
        return true;
    }

    bool full() const noexcept
    {
        // Acquire, like the reload in try_emplace(); pairs with the store in publish_read().
        // The answer may be stale by the time the caller acts on it.
        const detail::ring_word r = read_word_.load(std::memory_order_acquire);
        return used_given(r & detail::ring_counter_mask) == capacity_;
    }

    bool consumer_gone() const noexcept
    {
        // Acquire pairs with the release store in cancel(). Nothing is read on the strength
        // of it, but it keeps "gone" meaningful for callers that do.
        return consumer_gone_.load(std::memory_order_acquire);
    }

    // ---- consumer side (called only from the consumer's thread) ----

    /// Delivers the next item to `sink(T&&)` if there is one.
    template <class Sink>
    pop_status try_pop_into(Sink&& sink)
    {
        if (cancelled_)
            return pop_status::closed;
        if (read_ == (cached_write_ & detail::ring_counter_mask)) {
            // Acquire pairs with the release half of the producer's store in publish_write():
            // the item constructed (or error_ written) before that store is visible now.
            cached_write_ = write_word_.load(std::memory_order_acquire);
            if (read_ == (cached_write_ & detail::ring_counter_mask))
                return (cached_write_ & detail::ring_flag_bit) ? end_of_stream() : pop_status::empty;
        }
        T* item = slot(read_);
        // If the sink throws (e.g. T's move constructor), the item stays in the ring.
        std::forward<Sink>(sink)(std::move(*item));
        std::destroy_at(item);
        read_ = (read_ + 1) & detail::ring_counter_mask;
        publish_read(read_);
        return pop_status::item;
    }

    pop_status end_of_stream()
    {
        if (abandoned_ && !error_) {
            // Made here rather than in the producer's destructor, which must not allocate.
            error_ = std::make_exception_ptr(ring_producer_abandoned());
        }
        if (error_)
            std::rethrow_exception(error_);
        return pop_status::closed;
    }

    /// Publishes the read word and wakes the producer if it waits.
    void publish_read(detail::ring_word word) noexcept
    {
        // Release half: pairs with the producer's acquire loads of read_word_ in
        // try_emplace() and full(); the item in the freed slot was destroyed before this
        // store, so the producer's next construction there happens after the destruction.
        // seq_cst half: the notifier's store of the wake-up protocol; pairs with the
        // producer's seq_cst fetch_or of producer_wait_ and re-load of read_word_ in
        // push_blocking() and arm_space_notification().
        read_word_.store(word, std::memory_order_seq_cst);
        // The notifier's load; pairs with the producer's seq_cst fetch_or in push_blocking()
        // and arm_space_notification(). Normally 0: a load from our own cache line.
        if (producer_wait_.load(std::memory_order_seq_cst) != 0)
            wake_producer();
    }

    void wake_producer() noexcept
    {
        // One-shot: the producer sets a bit again before it waits again. seq_cst: reads the
        // producer's fetch_or, synchronizing with it (so space_callback_, installed before
        // the first arm, is visible here). Pairs with the fetch_or in push_blocking() and
        // arm_space_notification().
        const detail::ring_word bits = producer_wait_.exchange(0, std::memory_order_seq_cst);
        if (bits & detail::producer_blocked) {
            // Pairs with producer_wait_.wait() in push_blocking().
            producer_wait_.notify_one();
        }
        if (bits & detail::producer_armed)
            space_callback_();  // noexcept context: a throwing callback terminates
    }

    /// Sleeps until the producer may have published something since try_pop_into() last
    /// looked (an item, or the end of the stream).
    void wait_for_items() noexcept
    {
        const detail::ring_word seen = cached_write_;
        // The waiter's store of the wake-up protocol: pairs with the producer's seq_cst load
        // and exchange of consumer_wait_ in publish_write().
        consumer_wait_.store(1, std::memory_order_seq_cst);
        // The waiter's re-load: pairs with the producer's seq_cst store in publish_write().
        if (write_word_.load(std::memory_order_seq_cst) == seen) {
            // Returns once the producer has exchanged the word to 0. seq_cst for the reason
            // given in push_blocking(). Pairs with the exchange and notify_one() in
            // publish_write().
            consumer_wait_.wait(1, std::memory_order_seq_cst);
        }
        // Already 0 if the producer woke us. Relaxed: a stale 1 costs the producer one
        // needless exchange and notify, nothing more.
        consumer_wait_.store(0, std::memory_order_relaxed);
    }

    void cancel() noexcept
    {
        if (cancelled_)
            return;
        cancelled_ = true;
        // Release pairs with the producer's acquire load in consumer_gone(); the relaxed load
        // in try_emplace() is only a hint.
        consumer_gone_.store(true, std::memory_order_release);
        // Drop what the producer has published so far (batches are large: free them now).
        // Acquire pairs with the producer's store in publish_write().
        const detail::ring_word w = write_word_.load(std::memory_order_acquire) & detail::ring_counter_mask;
        for (; read_ != w; read_ = (read_ + 1) & detail::ring_counter_mask)
            std::destroy_at(slot(read_));
        // Items pushed after this are destroyed with the ring. publish_read() wakes a blocked
        // producer or calls the space callback of an armed one, so an async producer learns
        // of it too; the flag bit tells a producer that re-loads the read word.
        publish_read(read_ | detail::ring_flag_bit);
    }

    // ---- read-mostly: written once (setup, end of stream, cancel), read by both sides ----
    alignas(detail::cache_line_size) std::size_t capacity_ = 0;
    detail::ring_word slot_mask_ = 0;
    std::unique_ptr<slot_storage[]> slots_;
    std::atomic<bool> consumer_gone_{false};
    std::function<void()> space_callback_;  // set by the producer before its first arm
    std::exception_ptr error_;              // written by fail(); read after the flag bit
    bool abandoned_ = false;                // written by the producer's destructor

    // ---- the producer's line: written by each push, read by the consumer when it runs dry ----
    alignas(detail::cache_line_size) std::atomic<detail::ring_word> write_word_{0};
    detail::ring_word write_ = 0;        // the producer's copy of its counter
    detail::ring_word cached_read_ = 0;  // the producer's last view of the read counter
    bool ended_ = false;                 // close() or fail() was called
    std::atomic<detail::ring_word> consumer_wait_{0};  // 1 while the consumer may sleep

    // ---- the consumer's line: written by each pop, read by the producer when it runs full ----
    alignas(detail::cache_line_size) std::atomic<detail::ring_word> read_word_{0};
    detail::ring_word read_ = 0;          // the consumer's copy of its counter
    detail::ring_word cached_write_ = 0;  // the consumer's last view of the write word
    bool cancelled_ = false;
    std::atomic<detail::ring_word> producer_wait_{0};  // producer_blocked | producer_armed
};

/// The producing end of an `spsc_ring<T>`: pushes items, then ends the stream with `close()`
/// or `fail()`.
///
/// Move-only. Destroying a producer that neither closed nor failed ends the stream with
/// `ring_producer_abandoned`, so the consumer never hangs and never mistakes a crash for a
/// clean end. A default-constructed or moved-from handle is empty: only destruction,
/// assignment and `operator bool` may be used on it.
///
/// Thread safety: one thread at a time; concurrent with the consumer's thread.
///
/// A producer on an Asio thread must not block: it uses `try_push()` and, when that fails
/// because the ring is full, `arm_space_notification()` with a callback that posts back to
/// its executor:
/// ```
/// // ch: shared_ptr to an asio::experimental::concurrent_channel<void(error_code)> with a
/// // buffer of 1 (a wake-up sent while one is pending is redundant and may be dropped)
/// producer.set_space_callback([ch] { ch->try_send(error_code{}); });
/// while (...) {
///     while (!producer.try_push(std::move(b))) {
///         if (producer.consumer_gone()) co_return;
///         if (producer.arm_space_notification())
///             co_await ch->async_receive(asio::deferred);
///     }
/// }
/// producer.close();
/// ```
template <class T>
class ring_producer {
public:
    /// An empty handle.
    ring_producer() noexcept = default;

    ring_producer(ring_producer&&) noexcept = default;

    /// Ends this handle's stream (as the destructor does), then takes over `other`'s.
    ring_producer& operator=(ring_producer&& other) noexcept
    {
        if (this != &other) {
            release();
            ring_ = std::move(other.ring_);
        }
        return *this;
    }

    ring_producer(const ring_producer&) = delete;
    ring_producer& operator=(const ring_producer&) = delete;

    /// Ends the stream with `ring_producer_abandoned` unless `close()` or `fail()` was called.
    ~ring_producer() { release(); }

    /// True unless the handle is empty (default-constructed or moved from).
    explicit operator bool() const noexcept { return ring_ != nullptr; }

    /// Pushes `value` if there is space and the consumer is still there; never blocks.
    ///
    /// Returns false, leaving `value` untouched, when the ring is full or the consumer is
    /// gone (tell the two apart with `consumer_gone()`). Throws `std::logic_error` after
    /// `close()`/`fail()`, and whatever `T`'s move constructor throws (nothing is pushed then).
    bool try_push(T&& value) { return ring_->try_emplace(std::move(value)); }

    /// Constructs an item in place from `args` if there is space and the consumer is still
    /// there; never blocks. Returns false without using `args` when it cannot push.
    template <class... Args>
        requires std::constructible_from<T, Args&&...>
    bool try_emplace(Args&&... args)
    {
        return ring_->try_emplace(std::forward<Args>(args)...);
    }

    /// Pushes `value`, sleeping (`std::atomic::wait`, no spinning beyond the library's) while
    /// the ring is full. Returns false, dropping `value`, if the consumer is gone.
    ///
    /// Never call this on an `io_context` thread: use `try_push()` with
    /// `arm_space_notification()` there.
    bool push(T value) { return ring_->push_blocking(value); }

    /// True when the ring is full at the moment of the call.
    bool full() const noexcept { return ring_->full(); }

    /// The number of items in the ring at some recent moment.
    std::size_t size_approx() const noexcept { return ring_->size_approx(); }

    /// The number of items the ring holds when full.
    std::size_t capacity() const noexcept { return ring_->capacity(); }

    /// True once the consumer called `cancel()` or was destroyed: stop producing.
    bool consumer_gone() const noexcept { return ring_->consumer_gone(); }

    /// Ends the stream cleanly after the items already pushed. Later calls to `close()` and
    /// `fail()` do nothing; later pushes throw `std::logic_error`.
    void close() noexcept { ring_->end_stream(nullptr, false); }

    /// Ends the stream with `error` after the items already pushed: the consumer gets those
    /// items, then `error` rethrown (the same exception object) by every later pop.
    /// A null `error` is treated as a clean close. Later calls to `close()` and `fail()` do
    /// nothing.
    void fail(std::exception_ptr error) noexcept { ring_->end_stream(std::move(error), false); }

    /// Installs the callback that `arm_space_notification()` arms; call it once, before the
    /// first arm.
    ///
    /// The callback runs on the consumer's thread (inside a pop, or inside `cancel()` and the
    /// consumer's destructor), so it must be cheap, thread-safe with respect to the producer
    /// and must not throw (a throw terminates). It may run before the producer has started
    /// to wait, so the wake-up it leaves must be remembered: posting to an executor, a
    /// `try_send` on a concurrent channel with a free buffer slot, a semaphore release; not a
    /// condition variable's notify. It is owned by the ring and may run after this handle is
    /// destroyed, so it must capture by shared ownership, not references into the producer's
    /// frame.
    void set_space_callback(std::function<void()> callback)
    {
        if (ring_->space_callback_)
            throw std::logic_error("pipemode: set_space_callback() may be called only once per ring");
        if (!callback)
            throw std::invalid_argument("pipemode: set_space_callback() needs a callable");
        ring_->space_callback_ = std::move(callback);
    }

    /// Asks for one call of the space callback when the consumer next frees a slot (or goes
    /// away). Returns false if there is space already or the consumer is gone (then do not
    /// wait: retry `try_push()`); true if the callback will come.
    ///
    /// The notification is one-shot: arm again after each wake. The callback may also come
    /// once after an arm that returned false (when a pop raced with it), so a woken producer
    /// must simply retry `try_push()` and re-arm if still full. No wake-up is ever lost.
    /// Throws `std::logic_error` if no callback was installed.
    bool arm_space_notification() { return ring_->arm_space_notification(); }

private:
    template <class U>
    friend std::pair<ring_producer<U>, ring_consumer<U>> make_spsc_ring(std::size_t);
    friend struct detail::ring_test_access;

    explicit ring_producer(std::shared_ptr<spsc_ring<T>> ring) noexcept : ring_(std::move(ring)) {}

    void release() noexcept
    {
        if (ring_) {
            ring_->end_stream(nullptr, true);
            ring_.reset();
        }
    }

    std::shared_ptr<spsc_ring<T>> ring_;
};

/// The consuming end of an `spsc_ring<T>`: pops items in order until the end of the stream,
/// and rethrows the producer's error.
///
/// Move-only. Destroying a consumer cancels (see `cancel()`). A default-constructed or
/// moved-from handle is empty: only destruction, assignment and `operator bool` may be used.
///
/// Thread safety: one thread at a time; concurrent with the producer's thread.
///
/// ```
/// while (std::optional<batch> b = consumer.pop())  // nullopt: clean end
///     train(*b);                                    // errors arrive as exceptions
/// ```
template <class T>
class ring_consumer {
public:
    /// An empty handle.
    ring_consumer() noexcept = default;

    ring_consumer(ring_consumer&&) noexcept = default;

    /// Cancels this handle's stream (as the destructor does), then takes over `other`'s.
    ring_consumer& operator=(ring_consumer&& other) noexcept
    {
        if (this != &other) {
            release();
            ring_ = std::move(other.ring_);
        }
        return *this;
    }

    ring_consumer(const ring_consumer&) = delete;
    ring_consumer& operator=(const ring_consumer&) = delete;

    /// Cancels: the producer sees `consumer_gone()`, and is woken if it waits for space.
    ~ring_consumer() { release(); }

    /// True unless the handle is empty (default-constructed or moved from).
    explicit operator bool() const noexcept { return ring_ != nullptr; }

    /// Moves the next item into `out` if there is one; never blocks.
    ///
    /// Returns `item`, `empty` (nothing now, the stream goes on) or `closed` (clean end, all
    /// items delivered, or after `cancel()`). If the producer failed, rethrows its exception
    /// once all items pushed before the failure have been delivered, and on every later call.
    pop_status try_pop(T& out)
        requires std::is_move_assignable_v<T>
    {
        return ring_->try_pop_into([&out](T&& v) { out = std::move(v); });
    }

    /// Like `try_pop(T&)`, for any move-constructible `T`: emplaces the item into `out`.
    pop_status try_pop(std::optional<T>& out)
    {
        return ring_->try_pop_into([&out](T&& v) { out.emplace(std::move(v)); });
    }

    /// Returns the next item, sleeping (`std::atomic::wait`) while the ring is empty; returns
    /// `nullopt` at the clean end of the stream (or after `cancel()`), and rethrows the
    /// producer's error after the items pushed before it.
    std::optional<T> pop()
    {
        std::optional<T> out;
        for (;;) {
            switch (try_pop(out)) {
            case pop_status::item: return out;
            case pop_status::closed: return std::nullopt;
            case pop_status::empty: ring_->wait_for_items(); break;
            }
        }
    }

    /// Like `try_pop(T&)`, but waits up to `timeout` for an item or the end.
    ///
    /// `std::atomic::wait` has no timeout, so this waits by polling with a bounded backoff
    /// (a few pause/yield rounds, then sleeps doubling from 20 us to 1 ms): an item that
    /// arrives during a long wait is seen up to about 1 ms late. Use `pop()` when latency
    /// matters and no timeout is needed.
    template <class Rep, class Period>
    pop_status pop_for(T& out, std::chrono::duration<Rep, Period> timeout)
        requires std::is_move_assignable_v<T>
    {
        return poll_until(deadline_after(timeout), [&] { return try_pop(out); });
    }

    /// Like `pop_for(T&, timeout)`, for any move-constructible `T`.
    template <class Rep, class Period>
    pop_status pop_for(std::optional<T>& out, std::chrono::duration<Rep, Period> timeout)
    {
        return poll_until(deadline_after(timeout), [&] { return try_pop(out); });
    }

    /// Tells the producer to stop and destroys the items in the ring.
    ///
    /// The producer sees `consumer_gone()`; its pushes return false; a producer blocked in
    /// `push()` wakes, and an armed space notification fires (on this thread). Afterwards
    /// pops return `closed`/`nullopt` without rethrowing. Items the producer pushes after this
    /// are destroyed with the ring. Idempotent.
    void cancel() noexcept { ring_->cancel(); }

    /// The number of items in the ring at some recent moment.
    std::size_t size_approx() const noexcept { return ring_->size_approx(); }

    /// The number of items the ring holds when full.
    std::size_t capacity() const noexcept { return ring_->capacity(); }

private:
    template <class U>
    friend std::pair<ring_producer<U>, ring_consumer<U>> make_spsc_ring(std::size_t);

    explicit ring_consumer(std::shared_ptr<spsc_ring<T>> ring) noexcept : ring_(std::move(ring)) {}

    template <class Rep, class Period>
    static std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout)
    {
        return std::chrono::steady_clock::now() + std::chrono::ceil<std::chrono::steady_clock::duration>(timeout);
    }

    template <class TryPop>
    static pop_status poll_until(std::chrono::steady_clock::time_point deadline, TryPop try_once)
    {
        using namespace std::chrono_literals;
        auto nap = std::chrono::steady_clock::duration(20us);
        for (int round = 0;; ++round) {
            const pop_status s = try_once();
            if (s != pop_status::empty)
                return s;
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline)
                return pop_status::empty;
            if (round < 16) {
                std::this_thread::yield();
            } else {
                std::this_thread::sleep_for(std::min(nap, deadline - now));
                nap = std::min<std::chrono::steady_clock::duration>(nap * 2, 1ms);
            }
        }
    }

    void release() noexcept
    {
        if (ring_) {
            ring_->cancel();
            ring_.reset();
        }
    }

    std::shared_ptr<spsc_ring<T>> ring_;
};

template <class T>
std::pair<ring_producer<T>, ring_consumer<T>> make_spsc_ring(std::size_t capacity)
{
    // Not make_shared: the ring's constructor is private to keep the handles its only users.
    std::shared_ptr<spsc_ring<T>> ring(new spsc_ring<T>(capacity));
    return {ring_producer<T>(ring), ring_consumer<T>(ring)};
}

} // namespace pipemode
