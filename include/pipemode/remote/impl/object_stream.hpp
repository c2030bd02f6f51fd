// pipemode: definitions of object_stream.hpp. Included at the bottom of object_stream.hpp only.
#pragma once

#include <pipemode/detail/page_buffer.hpp>
#include <pipemode/s3/error_response.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <cstring>
#include <exception>
#include <future>

namespace pipemode::remote {

inline http::failure_kind request_builder::classify_error(unsigned status, std::string_view) const
{
    return http::classify_status(status);
}

inline std::string request_builder::describe_error(const object_info& object, unsigned status,
                                                   std::string_view) const
{
    std::string s = object.name + ": HTTP " + std::to_string(status);
    if (const std::string_view reason = http::reason_phrase(status); !reason.empty()) {
        s += ' ';
        s += reason;
    }
    return s;
}

inline http::failure_kind s3_compatible_builder::classify_error(unsigned status, std::string_view body) const
{
    return s3::classify_failure(status, s3::parse_error_response(status, body).code);
}

inline std::string s3_compatible_builder::describe_error(const object_info& object, unsigned status,
                                                         std::string_view body) const
{
    return s3::describe(s3::parse_error_response(status, body), object.name);
}

namespace detail {

/// A part of an object: `length` bytes from `offset`, in a buffer reserved from the window.
/// Fields marked (m) are shared with the consumer and guarded by `stream_core::mutex`; the
/// others belong to the network thread.
struct part_state {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;        ///< final once the object's size is known
    std::size_t reserved = 0;        ///< window bytes held (the buffer's capacity)
    pipemode::detail::page_buffer data;
    std::uint64_t received = 0;
    std::uint64_t published = 0;     ///< (m) bytes the consumer may read
    bool complete = false;           ///< (m) all `length` bytes published
    bool in_flight = false;          ///< a fetch writes into `data` (home)
    /// The consumer gave it back while the fetch still ran (set at home, read by the lane).
    std::atomic<bool> released{false};
    std::size_t lane = 0;            ///< the network thread its transfers run on
    asio::cancellation_signal cancel;       ///< stops its transfer (emitted on its lane)
    asio::cancellation_signal cancel_wait;  ///< stops its backoff wait (emitted at home)
    std::chrono::steady_clock::time_point issued{};  ///< home: when its fetch began

    // A hedge: the rest of a lagging part asked for again on another connection of the same
    // lane, the first answer winning. Both transfers write the part's buffer on the lane's
    // thread, the primary from `received` and the hedge from `hedge_from`, so the bytes
    // [0, max(received, hedge_from + hedge_received)) are always there and never raced for.
    bool hedged = false;                ///< home: a hedge was sent for this part
    bool hedge_in_flight = false;       ///< home
    std::uint64_t hedge_from = 0;       ///< lane: where the hedge's bytes go
    std::uint64_t hedge_received = 0;   ///< lane
    asio::cancellation_signal hedge_cancel;  ///< stops the hedge's transfer (on its lane)
    std::optional<asio::steady_timer> hedge_done;  ///< home: the primary waits on it for the hedge

    /// Bytes from the part's start that are in its buffer (lane, or home when no transfer runs).
    std::uint64_t covered() const noexcept { return std::max(received, hedge_from + hedge_received); }
};

/// An object being streamed. (m) fields are guarded by `stream_core::mutex`; the others belong
/// to the stream's home executor (the scheduler's).
struct object_state {
    object_info info;
    std::deque<std::shared_ptr<part_state>> parts;  ///< (m) planned and not yet released, in order
    bool all_planned = false;                       ///< (m) no part will be added
    error_code error;                               ///< (m) set when the object failed
    std::string error_detail;                       ///< (m)
    std::uint64_t error_offset = 0;                 ///< (m)
    /// The reader let go of the object before its end (a byte range that ended early, a reader
    /// that stopped): plan nothing more of it. Set by the consumer, read by the scheduler.
    std::atomic<bool> abandoned{false};

    std::optional<std::uint64_t> size;  ///< known from the listing or the first response
    std::string etag;
    std::uint64_t next_offset = 0;      ///< first byte not yet planned into a part
    bool sizing = false;                ///< the first GET, which learns the size, is out
    bool nothing_to_fetch = false;      ///< an empty range: done as soon as it is opened
    std::uint64_t seq = 0;              ///< its place in the listing

    /// One past the last byte to deliver, `info.end` clamped to the object (size known).
    std::uint64_t stop() const noexcept { return std::min(info.end.value_or(*size), *size); }
    /// Nothing to read, whatever the object's size: the range ends at or before its start.
    bool empty_range() const noexcept { return info.end && *info.end <= info.first; }
    /// Whether the scheduler has more to plan for it (or must wait for its size).
    bool more_to_plan() const noexcept { return !nothing_to_fetch && (!size || next_offset < stop()); }
};

/// Why a range starting at `first` cannot be read from an object of `size` bytes.
inline std::string past_end_detail(std::uint64_t first, std::uint64_t size)
{
    return "the range to read starts at byte " + std::to_string(first) + ", past the end of the object ("
         + std::to_string(size) + (size == 1 ? " byte)" : " bytes)");
}

/// The most objects opened ahead of the reader. Each holds window bytes for its parts, which
/// bounds them already; this bounds the bookkeeping of empty objects, which hold none.
inline constexpr std::size_t max_objects_ahead = 4096;

/// How often the scheduler's throughput is sampled for the adaptive connection limit: a few
/// parts' time at S3's 50 MB/s per connection, and long against its 20-50 ms first bytes.
inline constexpr std::chrono::milliseconds sample_interval{200};

/// One network thread of a stream: an executor and the client whose transfers run on it.
struct lane {
    asio::any_io_executor executor;
    std::optional<http::client> http;
    std::size_t fetches = 0;  ///< transfers of parts in flight on it (home)
};

/// What the stream's threads and the reader's thread share.
///
/// Threads: the scheduler, the sampler, the fetch coroutines (request building, retries,
/// window accounting) and the lister run on the home executor, `lanes[0]`'s; each transfer
/// runs on the lane its part was given, whose response callbacks write only the part's bytes
/// and post what they learn (an object's size and ETag) home. With one lane, everything runs
/// on one thread.
struct stream_core : std::enable_shared_from_this<stream_core> {
    stream_core(std::unique_ptr<object_lister> l, std::unique_ptr<request_builder> b, stream_options o,
                stream_sizing s)
        : lister(std::move(l)), builder(std::move(b)), options(std::move(o)), sizing(s),
          policy(s.max_connections, options.retry, s.initial_connections)
    {
    }

    // ----- shared, guarded by `mutex` ----------------------------------------------------
    std::mutex mutex;
    std::deque<std::shared_ptr<object_state>> opened;  ///< objects not yet handed to the reader
    bool listing_done = false;
    std::exception_ptr listing_error;
    bool network_alive = true;  ///< false once the stream is being destroyed
    /// The part the reader waits for bytes of, if any. Body bytes of other parts do not wake
    /// the reader: on a fast link they arrive hundreds of times per second for parts it is
    /// not reading yet, and each useless wake-up costs two context switches.
    const part_state* awaited_part = nullptr;
    std::uint64_t awaited_from = 0;  ///< bytes of `awaited_part` the reader had when it began waiting

    /// The reader's waker, on the reader's executor; reset (under `waker_mutex`) when the
    /// stream is destroyed, since the stream's coroutines may outlive it on a caller's executor.
    std::mutex waker_mutex;
    std::optional<pipemode::detail::async_waker> consumer_waker;

    // ----- fixed after `reserve_buffers` ----------------------------------------------------
    std::unique_ptr<object_lister> lister;
    std::unique_ptr<request_builder> builder;
    const stream_options options;
    stream_sizing sizing;
    std::string description;

    // ----- the threads ----------------------------------------------------------------------
    /// io_contexts and threads the stream runs itself (none when the caller gave executors).
    /// Destroyed explicitly by ~object_stream: the coroutines queued in them hold references
    /// to this core.
    std::vector<std::unique_ptr<asio::io_context>> owned_io;
    /// Keeps each owned io_context running while it has nothing to do (a lane waits for
    /// transfers posted to it later); dropped only by ~object_stream, which stops them.
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> owned_work;
    std::vector<std::thread> threads;
    std::deque<lane> lanes;  ///< lanes[0] is home
    bool started = false;

    lane& home() noexcept { return lanes.front(); }

    // ----- home only ------------------------------------------------------------------------
    http::retry_policy policy;
    std::size_t window_used = 0;
    std::atomic<std::size_t> window_peak{0};
    std::size_t active = 0;  ///< ranged GETs in flight
    std::atomic<std::size_t> active_peak{0};
    std::atomic<std::size_t> limit_now{0};  ///< policy's limit, for other threads to read
    std::vector<pipemode::detail::page_buffer> free_buffers;  ///< of `part_size` bytes
    std::optional<asio::steady_timer> wake;  ///< the scheduler sleeps on it; cancelled to wake it
    std::optional<asio::steady_timer> sample_timer;
    bool stop_scheduling = false;  ///< nothing more may be issued (a failed listing, destruction)
    /// Parts being fetched, for the hedging check.
    std::unordered_map<const part_state*, std::pair<std::weak_ptr<part_state>, std::shared_ptr<object_state>>> flights;
    /// Throughput of recently completed parts (bytes per second), for the hedging check.
    std::deque<double> recent_rates;
    std::atomic<std::size_t> hedges_sent{0};
    /// The earliest object that failed: the reader stops there, so nothing of it or after it
    /// is fetched any more, while the objects before it are fetched to their end.
    std::optional<std::uint64_t> failed_from;
    std::uint64_t objects_opened = 0;
    bool scheduler_done = false;
    bool stopping = false;  ///< being destroyed: every coroutine ends at its next step
    /// Time the scheduler had a part ready but no free connection, for throughput samples.
    std::chrono::steady_clock::duration connection_wait{};
    std::optional<std::chrono::steady_clock::time_point> connection_wait_since;

    // ----- any thread -----------------------------------------------------------------------
    std::atomic<std::uint64_t> bytes_received{0};  ///< body bytes of all parts, for throughput samples

    void notify_consumer()
    {
        std::lock_guard lock(waker_mutex);
        if (consumer_waker)
            consumer_waker->notify();
    }

    /// Home only.
    void wake_scheduler()
    {
        if (wake)
            wake->cancel();
    }

    /// Runs `f` at home, unless the stream is being destroyed.
    template <class F>
    void post_home(F f)
    {
        std::lock_guard lock(mutex);
        if (network_alive)
            asio::post(home().executor, std::move(f));
    }

    /// The consumer gives a part back (home). Its window bytes return at once unless a fetch
    /// still writes into its buffer: then that fetch is cancelled and returns them when it
    /// ends, so that the window counts every buffer that holds memory.
    void release(const std::shared_ptr<part_state>& part)
    {
        if (part->in_flight) {
            part->released.store(true, std::memory_order_relaxed);
            part->cancel_wait.emit(asio::cancellation_type::terminal);
            asio::post(lanes[part->lane].executor,
                       [part] { part->cancel.emit(asio::cancellation_type::terminal); });
            return;
        }
        give_back(*part);
    }

    /// Returns a part's window bytes, and its buffer to the pool when it is a whole one (home).
    void give_back(part_state& part)
    {
        if (part.data && part.received == part.length && part.reserved == options.part_size
            && free_buffers.size() * options.part_size < sizing.window)
            free_buffers.push_back(std::move(part.data));
        part.data.reset();
        window_used -= part.reserved;
        part.reserved = 0;
        wake_scheduler();
    }

    pipemode::detail::page_buffer allocate(std::size_t bytes)
    {
        if (bytes == options.part_size && !free_buffers.empty()) {
            auto b = std::move(free_buffers.back());
            free_buffers.pop_back();
            return b;
        }
        return pipemode::detail::page_buffer(bytes);
    }

    /// Home only.
    void fail_object(const std::shared_ptr<object_state>& obj, error_code ec, std::string detail, std::uint64_t offset)
    {
        {
            std::lock_guard lock(mutex);
            if (!obj->error) {
                obj->error = ec;
                obj->error_detail = std::move(detail);
                obj->error_offset = offset;
            }
        }
        failed_from = std::min(failed_from.value_or(obj->seq), obj->seq);
        notify_consumer();
        wake_scheduler();
    }

    /// Starts or ends a period in which the scheduler waits for a connection (home).
    void waiting_for_connection(bool waiting)
    {
        const auto now = std::chrono::steady_clock::now();
        if (waiting && !connection_wait_since)
            connection_wait_since = now;
        else if (!waiting && connection_wait_since) {
            connection_wait += now - *connection_wait_since;
            connection_wait_since.reset();
        }
    }

    /// An answer told an object's size and ETag (home): checks them against what is known,
    /// fixes the planning of the object and gives back the window its first part does not
    /// need. `length` is the part's length, already clamped to the object by the lane.
    void learned(const std::shared_ptr<object_state>& obj, const std::shared_ptr<part_state>& part,
                 std::optional<std::uint64_t> size, const std::string& etag)
    {
        if (!etag.empty()) {
            if (obj->etag.empty())
                obj->etag = etag;
            else if (obj->etag != etag)
                return fail_object(obj, make_error_code(errc::object_changed),
                                   "its ETag changed from " + obj->etag + " to " + etag, part->offset);
        }
        if (!size)
            return;
        if (obj->size) {
            if (*obj->size != *size)
                fail_object(obj, make_error_code(errc::object_changed),
                            "its size changed from " + std::to_string(*obj->size) + " to " + std::to_string(*size) + " bytes",
                            part->offset);
            return;
        }
        obj->size = size;
        std::uint64_t length = 0;
        {
            std::lock_guard lock(mutex);
            length = part->length;
        }
        obj->next_offset = part->offset + length;
        if (length < part->reserved) {
            // A short object: keep the buffer (it is in use) but not the window bytes beyond
            // it. The buffer goes back to the allocator, not the pool, on release.
            window_used -= part->reserved - static_cast<std::size_t>(length);
            part->reserved = static_cast<std::size_t>(length);
        }
        wake_scheduler();
    }
};

/// Receives one ranged GET of a part, checking the response against the request.
///
/// Runs inside libcurl's callbacks on the part's lane: no client calls, no blocking. It reads
/// only what the home executor fixed before the transfer began (the object's `info`, and the
/// size and ETag known then, copied in) and writes only the part; what the answer tells about
/// the object (its size, its ETag) is posted home (`stream_core::learned`).
class part_receiver final : public http::response_handler {
public:
    part_receiver(stream_core* core, std::shared_ptr<object_state> obj, std::shared_ptr<part_state> part,
                  std::uint64_t first, std::optional<std::uint64_t> known_size, std::string etag, bool hedge = false)
        : core_(core), obj_(std::move(obj)), part_(std::move(part)), first_(first), size_(known_size),
          etag_(std::move(etag)), hedge_(hedge)
    {
    }

    bool on_head(const http::response_head& h) override
    {
        const bool ok = check_head(h);
        if (ok && (learned_size_ || !learned_etag_.empty())) {
            auto core = core_->shared_from_this();
            core_->post_home([core, obj = obj_, part = part_, size = learned_size_, etag = learned_etag_] {
                core->learned(obj, part, size, etag);
            });
        }
        return ok;
    }

private:
    /// Checks the response head against the request and learns what it tells; false refuses it.
    bool check_head(const http::response_head& h)
    {
        status_ = h.status;
        auto& obj = *obj_;
        auto& part = *part_;
        // The first request of an object whose size is not known yet: its answer tells the size.
        const bool sizing = !size_ && first_ == obj.info.first && part.offset == obj.info.first;
        if (h.status == 206 && h.range && !h.range->unsatisfied) {
            const auto total = h.range->complete;
            if (h.range->first != first_)
                return refuse(errc::bad_http_response, "the server sent bytes from " + std::to_string(h.range->first)
                                                           + " when asked for bytes from " + std::to_string(first_));
            if (total && *total <= first_)
                return refuse(errc::bad_http_response, "the server sent bytes from " + std::to_string(first_)
                                                           + " of an object of " + std::to_string(*total) + " bytes");
            if (size_ && total && *total != *size_)
                return refuse(errc::object_changed, "its size changed from " + std::to_string(*size_) + " to "
                                                        + std::to_string(*total) + " bytes");
            if (!size_) {
                if (!total)
                    return refuse(errc::bad_http_response, "the response gives no object size (Content-Range ends in /*)");
                learn_size(*total);
            }
        } else if (h.status == 200) {
            // The whole object from byte 0: the server ignored the range (or the object is
            // empty: nginx answers ranges on empty files this way). Usable only for a range
            // starting at 0 whose wanted bytes all fit this part; bytes past them are dropped.
            if (first_ != 0 || part.offset != 0 || part.received != 0 || !h.content_length
                || (size_ && *h.content_length != *size_)
                || std::min(obj.info.end.value_or(*h.content_length), *h.content_length) > part.length)
                return refuse(errc::range_not_supported,
                              "the server answered a range request with the whole object (HTTP 200); "
                              "use a server that supports Range requests");
            whole_object_ = true;
            whole_length_ = *h.content_length;
            if (!size_)
                learn_size(*h.content_length);
        } else if (h.status == 416 && sizing) {
            // The range starts at or past the object's end (S3 says InvalidRange): the object
            // is empty, or as large as `first` (an empty read), or smaller (an error).
            // `Content-Range: bytes */SIZE` tells which; without it only first == 0 is clear.
            std::optional<std::uint64_t> size;
            if (h.range && h.range->unsatisfied && h.range->complete)
                size = h.range->complete;
            else if (first_ == 0)
                size = 0;
            if (!size)
                return refuse(errc::range_past_end, "the range to read starts at byte " + std::to_string(first_)
                                                        + ", at or past the end of the object (HTTP 416 "
                                                          "without the object's size)");
            if (*size > first_)
                return refuse(errc::bad_http_response, "HTTP 416 for a range from byte " + std::to_string(first_)
                                                           + " of an object of " + std::to_string(*size) + " bytes");
            if (*size < first_)
                return refuse(errc::range_past_end, past_end_detail(first_, *size));
            discard_body_ = true;
            learn_size(*size);
            return true;
        } else if (h.status < 300) {
            return refuse(errc::bad_http_response, "unexpected HTTP status " + std::to_string(h.status)
                                                       + " to a range request");
        } else {
            error_response_ = true;
            return true;
        }
        if (!h.etag.empty()) {
            if (etag_.empty())
                learned_etag_ = h.etag;  // checked against the other parts' at home
            else if (etag_ != h.etag)
                return refuse(errc::object_changed, "its ETag changed from " + etag_ + " to " + h.etag);
        }
        return true;
    }

public:
    bool on_body(std::span<const std::byte> bytes) override
    {
        if (discard_body_)
            return true;
        if (error_response_) {
            const std::size_t room = error_body_limit - std::min(error_body_limit, error_body_.size());
            error_body_.append(reinterpret_cast<const char*>(bytes.data()), std::min(room, bytes.size()));
            return true;
        }
        auto& part = *part_;
        if (whole_object_)  // the bytes past the range wanted are not the stream's
            bytes = bytes.first(static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), part.length - part.received)));
        if (part.released.load(std::memory_order_relaxed))
            return false;  // the reader let go of the part: stop the transfer
        if (part.covered() == part.length)
            return false;  // the hedge (or the transfer it hedged) has brought every byte
        if (hedge_ && !hedge_started_) {
            part.hedge_from = first_ - part.offset;
            hedge_started_ = true;
        }
        std::uint64_t& written = hedge_ ? part.hedge_received : part.received;
        const std::uint64_t at = hedge_ ? part.hedge_from + written : written;
        if (at + bytes.size() > part.length)
            return refuse(errc::bad_http_response, "the server sent more bytes than the range asked for");
        std::memcpy(part.data.get() + at, bytes.data(), bytes.size());
        written += bytes.size();
        core_->bytes_received.fetch_add(bytes.size(), std::memory_order_relaxed);
        bool awaited = false;
        {
            std::lock_guard lock(core_->mutex);
            part.published = part.covered();
            part.complete = part.published == part.length;
            // Wake the reader for the first bytes of a part (the first batch must not wait),
            // for its end, and otherwise once enough has gathered to be worth a context
            // switch: a reader faster than the network would wake per receive otherwise.
            awaited = core_->awaited_part == &part
                   && (part.complete || core_->awaited_from == 0
                       || part.published - core_->awaited_from >= wake_threshold);
        }
        if (awaited)
            core_->notify_consumer();
        // A whole object sent for a shorter range: stop receiving once the range is in.
        return !(whole_object_ && part.received == part.length && whole_length_ > part.length);
    }

    unsigned status() const noexcept { return status_; }
    /// The response was cut short on purpose: the part is complete, the rest was not wanted.
    bool cut_short() const noexcept
    {
        return whole_object_ && part_->received == part_->length && whole_length_ > part_->length;
    }
    bool error_response() const noexcept { return error_response_; }
    const std::string& error_body() const noexcept { return error_body_; }
    /// A fatal problem found in the response (not retried), with its description.
    const error_code& refusal() const noexcept { return refusal_; }
    const std::string& refusal_detail() const noexcept { return refusal_detail_; }

private:
    static constexpr std::size_t error_body_limit = 64 * kib;
    static constexpr std::uint64_t wake_threshold = 256 * kib;

    bool refuse(errc e, std::string why)
    {
        refusal_ = make_error_code(e);
        refusal_detail_ = std::move(why);
        return false;
    }

    /// The first response told the object's size (at least the range's first byte): fix this
    /// part's length here; the object's planning and the window follow at home.
    void learn_size(std::uint64_t size)
    {
        auto& obj = *obj_;
        auto& part = *part_;
        size_ = size;
        learned_size_ = size;
        const std::uint64_t stop = std::min(obj.info.end.value_or(size), size);
        const std::uint64_t length = std::min<std::uint64_t>(part.length, stop - part.offset);
        {
            std::lock_guard lock(core_->mutex);
            part.length = length;
            part.complete = part.received == length;
        }
        core_->notify_consumer();
    }

    stream_core* core_;
    std::shared_ptr<object_state> obj_;
    std::shared_ptr<part_state> part_;
    std::uint64_t first_;
    unsigned status_ = 0;
    bool error_response_ = false;
    bool discard_body_ = false;
    bool whole_object_ = false;  ///< a 200 answer: the object from byte 0, maybe past the range
    std::uint64_t whole_length_ = 0;  ///< its Content-Length
    std::string error_body_;
    error_code refusal_;
    std::string refusal_detail_;
    std::optional<std::uint64_t> size_;          ///< the object's size as known to this transfer
    std::string etag_;                           ///< the ETag known when the transfer began
    std::optional<std::uint64_t> learned_size_;  ///< told by this answer
    std::string learned_etag_;                   ///< told by this answer, when none was known
    bool hedge_ = false;                         ///< writes from `hedge_from`, not `received`
    bool hedge_started_ = false;
};

/// Frees a fetch's connection slot however the fetch ends, and the part's window bytes when the
/// reader gave the part back while it was being fetched. (At namespace scope: GCC 12 fails to
/// mangle a class local to a coroutine when it writes a precompiled header.)
struct active_slot {
    stream_core* core;
    part_state* part;
    ~active_slot()
    {
        --core->active;
        --core->lanes[part->lane].fetches;
        core->flights.erase(part);
        part->in_flight = false;
        if (part->released.load(std::memory_order_relaxed))
            core->give_back(*part);
        core->wake_scheduler();
    }
};

/// Performs `req` with `l`'s client, on `l`'s executor; completes on the caller's (home).
/// Cancellation: emit `cancel` on `l`'s executor.
inline asio::awaitable<std::tuple<error_code, http::transfer_info>> perform_on(lane& l, http::request req, http::response_handler& handler,
                                                                         asio::cancellation_signal& cancel)
{
    auto token = asio::bind_cancellation_slot(cancel.slot(), asio::as_tuple(asio::use_awaitable));
    co_return co_await asio::async_initiate<decltype(token), void(error_code, http::transfer_info)>(
        [&l](auto completion, http::request r, http::response_handler* h) {
            // The completion keeps its associated executor (home), where the client posts it.
            asio::post(l.executor, [&l, r = std::move(r), h, completion = std::move(completion)]() mutable {
                if (!l.http) {  // the stream is being destroyed
                    auto ex = asio::get_associated_executor(completion);
                    asio::post(ex, [c = std::move(completion)]() mutable {
                        std::move(c)(make_error_code(asio::error::operation_aborted), http::transfer_info{});
                    });
                    return;
                }
                l.http->async_perform(std::move(r), *h, std::move(completion));
            });
        },
        token, std::move(req), &handler);
}

/// Fetches one part, retrying from the first byte not received. Runs at home; the transfers
/// run on the part's lane.
inline asio::awaitable<void> fetch_part(std::shared_ptr<stream_core> core, std::shared_ptr<object_state> obj,
                                        std::shared_ptr<part_state> part)
{
    active_slot slot{core.get(), part.get()};
    http::retry_policy::request_state attempt;
    asio::steady_timer backoff(core->home().executor);
    for (;;) {
        const std::uint64_t first = part->offset + part->received;
        const std::uint64_t last = part->offset + part->length - 1;
        if (part->length == part->received && part->length > 0)
            break;
        if (part->released.load(std::memory_order_relaxed) || core->stopping)
            co_return;
        http::request req = co_await core->builder->async_make(*core->home().http, obj->info, first, last, obj->etag);
        part_receiver receiver(core.get(), obj, part, first, obj->size, obj->etag);
        const std::uint64_t before = part->received;
        core->policy.begin_attempt(attempt);
        if (part->issued == std::chrono::steady_clock::time_point{})
            part->issued = std::chrono::steady_clock::now();
        auto [ec, info] = co_await perform_on(core->lanes[part->lane], std::move(req), receiver, part->cancel);
        if (part->hedge_in_flight) {
            // The hedge may still bring the rest: let it finish (cancelled at once if this
            // transfer completed the part), then go on from whatever both brought.
            bool complete = false;
            {
                std::lock_guard lock(core->mutex);
                complete = part->complete;
            }
            if (complete)
                asio::post(core->lanes[part->lane].executor,
                           [part] { part->hedge_cancel.emit(asio::cancellation_type::terminal); });
            part->hedge_done->expires_at(asio::steady_timer::time_point::max());
            co_await part->hedge_done->async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (part->hedged && !part->hedge_in_flight) {
            part->received = part->covered();  // no transfer runs now: home may touch these
            part->hedge_from = part->hedge_received = 0;
        }
        if (part->released.load(std::memory_order_relaxed) || core->stopping)
            co_return;  // given back by the reader, or the stream is going: nobody wants the rest
        if (info.exception)
            std::rethrow_exception(info.exception);  // the receiver failed: co_spawn's handler fails the object

        if (receiver.refusal()) {
            core->fail_object(obj, receiver.refusal(), receiver.refusal_detail(), first);
            co_return;
        }
        if (receiver.cut_short() || (part->length > 0 && part->received == part->length)) {
            core->policy.on_success(attempt);  // done, by this transfer or by its hedge
            break;
        }
        http::failure_kind kind{};
        std::string why;
        error_code final_ec = make_error_code(errc::retries_exhausted);
        if (receiver.error_response() && !ec) {
            const unsigned status = receiver.status();
            kind = core->builder->classify_error(status, receiver.error_body());
            why = core->builder->describe_error(obj->info, status, receiver.error_body());
            if (kind == http::failure_kind::object_changed)
                final_ec = make_error_code(errc::object_changed);
            else if (!http::is_retryable(kind))
                final_ec = make_error_code(errc::http_error);
        } else if (ec) {
            kind = http::classify_transport(ec);
            why = ec.message() + (info.detail.empty() ? "" : ": " + info.detail);
            if (!http::is_retryable(kind))
                final_ec = ec;
        } else if (part->received == part->length) {
            core->policy.on_success(attempt);
            break;
        } else {
            kind = http::failure_kind::connection_lost;
            why = "the response ended after " + std::to_string(part->received - before) + " of "
                + std::to_string(last - first + 1) + " bytes";
        }
        if (part->received > before)
            attempt.attempts = 0;  // progress: a connection that drops every few MiB still gets through
        const auto delay = core->policy.next_delay(attempt, kind);
        if (!delay) {
            if (attempt.refusal == http::retry_refusal::attempts_exhausted)
                why += " (after " + std::to_string(attempt.attempts) + " attempts)";
            else if (attempt.refusal == http::retry_refusal::budget_exhausted)
                why += " (the retry budget is spent: the server keeps failing)";
            core->fail_object(obj, final_ec, why, part->offset + part->received);
            co_return;
        }
        backoff.expires_after(*delay);
        co_await backoff.async_wait(asio::as_tuple(asio::bind_cancellation_slot(part->cancel_wait.slot(), asio::use_awaitable)));
    }
    // A whole part's pace, for telling a lagging part from a slow link (the hedging check).
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - part->issued).count();
    if (part->length >= core->options.part_size / 2 && seconds > 0) {
        core->recent_rates.push_back(static_cast<double>(part->length) / seconds);
        if (core->recent_rates.size() > 32)
            core->recent_rates.pop_front();
    }
}

/// Ends a hedge however it ends: the slot, and the primary's wait.
struct hedge_slot {
    stream_core* core;
    part_state* part;
    ~hedge_slot()
    {
        --core->active;
        --core->lanes[part->lane].fetches;
        part->hedge_in_flight = false;
        if (part->hedge_done)
            part->hedge_done->cancel();
        core->wake_scheduler();
    }
};

/// One attempt at the rest of a lagging part, from the first byte the reader does not have yet,
/// on a new connection of the part's lane. If it brings the last byte first, the primary
/// transfer is cancelled; if it fails, the primary goes on as if nothing happened.
inline asio::awaitable<void> hedge_part(std::shared_ptr<stream_core> core, std::shared_ptr<object_state> obj,
                                        std::shared_ptr<part_state> part)
{
    hedge_slot slot{core.get(), part.get()};
    std::uint64_t from = 0;
    {
        std::lock_guard lock(core->mutex);
        from = part->published;
    }
    if (from >= part->length || part->released.load(std::memory_order_relaxed) || core->stopping)
        co_return;
    http::request req = co_await core->builder->async_make(*core->home().http, obj->info, part->offset + from,
                                                     part->offset + part->length - 1, obj->etag);
    part_receiver receiver(core.get(), obj, part, part->offset + from, obj->size, obj->etag, true);
    auto [ec, info] = co_await perform_on(core->lanes[part->lane], std::move(req), receiver, part->hedge_cancel);
    bool complete = false;
    {
        std::lock_guard lock(core->mutex);
        complete = part->complete;
    }
    if (complete && !core->stopping)  // the hedge won: the primary transfer is not needed
        asio::post(core->lanes[part->lane].executor, [part] { part->cancel.emit(asio::cancellation_type::terminal); });
}

/// Sends a hedge for the part the reader waits on if it lags far behind its peers: in flight
/// for over a second at under a quarter of the median pace of recent whole parts, with no
/// hedge yet. A stalled connection then costs a second or two, not the low-speed timeout, and
/// a slow link (every part slow alike) sends none.
inline void maybe_hedge(const std::shared_ptr<stream_core>& core)
{
    const part_state* awaited = nullptr;
    std::uint64_t published = 0;
    {
        std::lock_guard lock(core->mutex);
        awaited = core->awaited_part;
        if (awaited)
            published = awaited->published;
    }
    if (!awaited || core->recent_rates.size() < 3)
        return;
    const auto it = core->flights.find(awaited);
    if (it == core->flights.end())
        return;
    auto part = it->second.first.lock();
    const auto& obj = it->second.second;
    if (!part || part->hedged || !part->in_flight || !obj->size || part->released.load(std::memory_order_relaxed)
        || published >= part->length)
        return;
    const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - part->issued).count();
    std::vector<double> rates(core->recent_rates.begin(), core->recent_rates.end());
    std::nth_element(rates.begin(), rates.begin() + static_cast<std::ptrdiff_t>(rates.size() / 2), rates.end());
    const double median = rates[rates.size() / 2];
    if (age < 1.0 || static_cast<double>(published) / age >= median / 4)
        return;
    part->hedged = true;
    part->hedge_in_flight = true;
    if (!part->hedge_done)
        part->hedge_done.emplace(core->home().executor);
    ++core->active;
    ++core->lanes[part->lane].fetches;
    core->hedges_sent.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(core->home().executor, hedge_part(core, obj, part), [core, obj](std::exception_ptr e) {
        (void)e;  // a hedge that fails changes nothing: the primary transfer goes on
    });
}

/// A part the scheduler could issue next: where it starts, how long it is, what it reserves.
struct part_candidate {
    std::shared_ptr<object_state> object;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    bool first_of_unknown = false;  ///< the GET that learns the object's size
};

/// The next part of `obj`, if one can be planned now.
inline std::optional<part_candidate> next_part_of(const stream_core& core, const std::shared_ptr<object_state>& obj)
{
    if (obj->nothing_to_fetch)
        return std::nullopt;
    if (obj->size) {
        if (obj->next_offset >= obj->stop())
            return std::nullopt;
        return part_candidate{obj, obj->next_offset,
                              std::min<std::uint64_t>(core.options.part_size, obj->stop() - obj->next_offset), false};
    }
    if (obj->sizing)
        return std::nullopt;  // the first answer will tell the size
    // Unknown size: the first GET asks for a short first part (or the whole range, if
    // shorter) and learns the size from its answer.
    const std::uint64_t wanted = obj->info.end ? *obj->info.end - obj->info.first : std::uint64_t{core.options.part_size};
    const std::uint64_t first = std::min(core.options.first_request_size, core.options.part_size);
    return part_candidate{obj, obj->info.first, std::min<std::uint64_t>(first, wanted), true};
}

/// Suspends the scheduler until `wake_scheduler()`. Only the network thread changes what the
/// scheduler waits for, and the scheduler re-checks it before sleeping again, so no wake-up
/// can be lost.
inline asio::awaitable<void> sleep_until_woken(stream_core* core)
{
    core->wake->expires_at(asio::steady_timer::time_point::max());
    co_await core->wake->async_wait(asio::as_tuple(asio::use_awaitable));
}

/// Opens the next object of the listing: registers it for the reader and says whether it has
/// anything to fetch. Returns nothing at the end of the listing.
inline asio::awaitable<std::optional<std::shared_ptr<object_state>>> open_next_object(std::shared_ptr<stream_core> core)
{
    auto next = co_await core->lister->async_next(*core->home().http);
    if (!next) {
        {
            std::lock_guard lock(core->mutex);
            core->listing_done = true;
        }
        core->notify_consumer();
        co_return std::nullopt;
    }
    auto obj = std::make_shared<object_state>();
    obj->seq = core->objects_opened++;
    obj->info = std::move(*next);
    obj->size = obj->info.size;
    obj->etag = obj->info.etag;
    obj->next_offset = obj->info.first;
    // With the size known, a range past the object's end fails and an empty one is done
    // before anything is sent.
    const bool past_end = !obj->empty_range() && obj->size && obj->info.first > *obj->size;
    const bool nothing = obj->empty_range() || (obj->size && obj->info.first == *obj->size);
    if (past_end)  // failed before the reader can see it
        core->fail_object(obj, make_error_code(errc::range_past_end), past_end_detail(obj->info.first, *obj->size),
                          obj->info.first);
    {
        std::lock_guard lock(core->mutex);
        core->opened.push_back(obj);
        if (nothing)
            obj->all_planned = true;
    }
    core->notify_consumer();
    obj->nothing_to_fetch = nothing;
    co_return obj;
}

/// Issues ranged GETs while the window and the connection limit allow.
///
/// Parts are planned in delivery order: the earliest object with a part to plan goes first,
/// and objects whose size is not known yet do not hold back the objects after them, whose
/// first GETs go out while the first answers are awaited. A part of any object but the
/// earliest one still being planned (the front) is admitted only if it leaves room for one
/// more part in the window, so that the part the reader needs next can always be reserved:
/// without that headroom, the window could fill with later objects' parts while the reader
/// waits for the front object, and no part would ever be released.
inline asio::awaitable<void> run_scheduler(std::shared_ptr<stream_core> core)
{
    core->wake.emplace(core->home().executor);
    std::deque<std::shared_ptr<object_state>> planning;  // opened, with more to plan, in order
    bool listed_all = false;

    for (;;) {
        if (core->stop_scheduling || core->stopping)
            break;
        // Objects at or after a failed one are not fetched: the reader stops at the failure.
        while (core->failed_from && !planning.empty() && planning.back()->seq >= *core->failed_from)
            planning.pop_back();
        // Objects planned to their end, or let go by the reader, leave the planning list.
        while (!planning.empty()
               && (planning.front()->abandoned.load(std::memory_order_acquire) || !planning.front()->more_to_plan())) {
            {
                std::lock_guard lock(core->mutex);
                planning.front()->all_planned = true;
            }
            core->notify_consumer();
            planning.pop_front();
        }
        std::optional<part_candidate> candidate;
        for (const auto& obj : planning) {
            if (obj->abandoned.load(std::memory_order_acquire))
                continue;
            if ((candidate = next_part_of(*core, obj)))
                break;
        }
        if (!candidate && !listed_all && !core->failed_from) {
            std::size_t ahead = 0;
            {
                std::lock_guard lock(core->mutex);
                ahead = core->opened.size();
            }
            if (planning.size() + ahead < max_objects_ahead) {
                auto obj = co_await open_next_object(core);
                if (!obj) {
                    listed_all = true;
                    continue;
                }
                planning.push_back(std::move(*obj));
                continue;
            }
        }
        if (!candidate) {
            if ((listed_all || core->failed_from) && planning.empty())
                break;
            co_await sleep_until_woken(core.get());
            continue;
        }
        const std::size_t reserve = static_cast<std::size_t>(candidate->length);
        const bool front = candidate->object == planning.front();
        const std::size_t headroom = front ? 0 : core->options.part_size;
        const bool connection_free = core->active < core->policy.concurrency().current();
        core->waiting_for_connection(!connection_free);
        if (!connection_free || core->window_used + reserve + headroom > core->sizing.window) {
            co_await sleep_until_woken(core.get());
            continue;
        }

        auto& obj = candidate->object;
        auto part = std::make_shared<part_state>();
        part->offset = candidate->offset;
        part->length = candidate->length;
        part->reserved = reserve;
        obj->next_offset = part->offset + part->length;  // for a first GET: fixed by learn_size
        if (candidate->first_of_unknown)
            obj->sizing = true;
        core->window_used += reserve;
        if (core->window_used > core->window_peak.load(std::memory_order_relaxed))
            core->window_peak.store(core->window_used, std::memory_order_relaxed);
        part->data = core->allocate(reserve);
        part->in_flight = true;
        // The lane with the fewest transfers (the first on a tie, so one lane runs alone).
        for (std::size_t i = 1; i < core->lanes.size(); ++i)
            if (core->lanes[i].fetches < core->lanes[part->lane].fetches)
                part->lane = i;
        ++core->lanes[part->lane].fetches;
        core->flights.emplace(part.get(), std::pair{std::weak_ptr<part_state>(part), obj});
        {
            std::lock_guard lock(core->mutex);
            obj->parts.push_back(part);
        }
        ++core->active;
        if (core->active > core->active_peak.load(std::memory_order_relaxed))
            core->active_peak.store(core->active, std::memory_order_relaxed);
        asio::co_spawn(core->home().executor, fetch_part(core, obj, part),
                       [core, obj](std::exception_ptr e) {
                           if (!e)
                               return;
                           try {
                               std::rethrow_exception(e);
                           } catch (const std::exception& ex) {
                               core->fail_object(obj, make_error_code(errc::http_error), ex.what(), 0);
                           }
                       });
        core->notify_consumer();
    }
    core->waiting_for_connection(false);
    core->scheduler_done = true;
}

/// Samples the stream's throughput every `sample_interval` for the adaptive connection limit,
/// until the scheduler is done and no GET is in flight.
inline asio::awaitable<void> run_sampler(std::shared_ptr<stream_core> core)
{
    core->sample_timer.emplace(core->home().executor);
    auto& timer = *core->sample_timer;
    auto last_time = std::chrono::steady_clock::now();
    std::uint64_t last_bytes = core->bytes_received;
    auto last_wait = core->connection_wait;
    while (!core->stopping && !core->stop_scheduling && !(core->scheduler_done && core->active == 0)) {
        timer.expires_after(sample_interval);
        auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec)
            co_return;
        const auto now = std::chrono::steady_clock::now();
        auto wait = core->connection_wait;
        if (core->connection_wait_since)
            wait += now - *core->connection_wait_since;
        const double seconds = std::chrono::duration<double>(now - last_time).count();
        const double rate = static_cast<double>(core->bytes_received - last_bytes) / seconds;
        const bool saturated = std::chrono::duration<double>(wait - last_wait).count() >= 0.5 * seconds;
        if (core->policy.on_throughput_sample(rate, saturated))
            core->wake_scheduler();
        maybe_hedge(core);
        core->limit_now.store(core->policy.concurrency().current(), std::memory_order_relaxed);
        last_time = now;
        last_bytes = core->bytes_received;
        last_wait = wait;
    }
}

/// The byte source of one object: hands out its bytes as they arrive, part after part.
/// Runs on the reader's thread.
class object_source {
public:
    object_source(std::shared_ptr<stream_core> core, std::shared_ptr<object_state> obj)
        : core_(std::move(core)), obj_(std::move(obj)), name_(obj_->info.name), first_(obj_->info.first)
    {
    }
    object_source(object_source&&) noexcept = default;
    object_source& operator=(object_source&&) noexcept = default;

    /// Gives back every part still held: a source destroyed before its end (a byte range
    /// that ended early, a reader that stopped) must not keep window bytes, or the stream
    /// would run out of window and never issue a GET again.
    ~object_source()
    {
        if (!core_)
            return;
        obj_->abandoned.store(true, std::memory_order_release);
        std::deque<std::shared_ptr<part_state>> left;
        {
            std::lock_guard lock(core_->mutex);
            left.swap(obj_->parts);
            if (core_->awaited_part == part_.get())
                core_->awaited_part = nullptr;
        }
        if (part_ && (left.empty() || left.front() != part_))
            left.push_front(std::move(part_));
        if (left.empty())
            return;
        auto core = core_;
        core_->post_home([core, left = std::move(left)] {
            for (const auto& p : left)
                core->release(p);
            core->wake_scheduler();
        });
    }

    std::string_view name() const noexcept { return name_; }
    /// The object's offset of the first byte delivered (`object_info::first`).
    std::uint64_t start_offset() const noexcept { return first_; }
    const std::string& error_detail() const noexcept { return error_detail_; }

    asio::awaitable<chunk_result> async_next()
    {
        auto& waker = *core_->consumer_waker;
        for (;;) {
            waker.arm();
            if (auto r = try_next()) {
                waker.disarm();
                co_return std::move(*r);
            }
            co_await waker.async_wait();
        }
    }

private:
    /// A chunk, the end, or an error if one is ready; nothing when it must wait.
    std::optional<chunk_result> try_next()
    {
        for (;;) {
            std::unique_lock lock(core_->mutex);
            if (!part_) {
                if (obj_->parts.empty()) {
                    if (obj_->all_planned && !obj_->error)
                        return chunk_result{asio::error::eof, {}};
                    return waiting();
                }
                part_ = obj_->parts.front();
                delivered_ = 0;
            }
            if (part_->published > delivered_) {
                const std::span<const std::byte> chunk(part_->data.get() + delivered_,
                                                       static_cast<std::size_t>(part_->published - delivered_));
                delivered_ = part_->published;
                core_->awaited_part = nullptr;
                return chunk_result{error_code{}, chunk};
            }
            if (!part_->complete)
                return waiting();
            lock.unlock();
            release_part();
        }
    }

    /// Nothing to hand out: wait, unless the object has failed, which the reader learns only
    /// now, after every byte that arrived before the failure. Called with the mutex held.
    std::optional<chunk_result> waiting()
    {
        core_->awaited_part = part_.get();  // nullptr: waiting for the next part to be planned
        core_->awaited_from = delivered_;
        if (!obj_->error)
            return std::nullopt;
        error_detail_ = obj_->error_detail + " (at byte " + std::to_string(obj_->error_offset) + " of the object)";
        return chunk_result{obj_->error, {}};
    }

    /// Gives the current (fully read) part back to the network thread.
    void release_part()
    {
        std::shared_ptr<part_state> part = std::move(part_);
        {
            std::lock_guard lock(core_->mutex);
            if (!obj_->parts.empty() && obj_->parts.front() == part)
                obj_->parts.pop_front();
        }
        auto core = core_;
        core_->post_home([core, part] { core->release(part); });
    }

    std::shared_ptr<stream_core> core_;
    std::shared_ptr<object_state> obj_;
    std::string name_;
    std::uint64_t first_ = 0;
    std::shared_ptr<part_state> part_;
    std::uint64_t delivered_ = 0;
    std::string error_detail_;
};

} // namespace detail

inline stream_sizing size_stream(const stream_options& s, std::size_t memory_budget, std::size_t cores)
{
    auto fail = [](const std::string& why) { throw std::invalid_argument("pipemode::remote::object_stream: " + why); };
    if (s.part_size == 0)
        fail("part_size is 0; 8 MiB suits S3.");
    if (s.first_request_size == 0)
        fail("first_request_size is 0; 1 MiB suits objects of unknown size.");
    if (!(s.throughput_target_gbps > 0))
        fail("throughput_target_gbps must be above 0; the instance's network bandwidth in Gb/s suits.");
    if (s.connection_throughput == 0)
        fail("connection_throughput is 0; S3 gives about 50 MB/s per connection.");
    const std::size_t part = s.part_size;
    stream_sizing z;
    const double target = s.throughput_target_gbps * 1e9 / 8;
    const auto from_target = static_cast<std::size_t>(
        std::ceil(std::min(target / static_cast<double>(s.connection_throughput), 65536.0)));
    z.max_connections = s.max_connections != 0 ? s.max_connections : std::max<std::size_t>(1, from_target);
    if (s.window_bytes != 0) {
        z.window = std::max(s.window_bytes, part);
    } else {
        // One part per connection keeps every connection busy; two more absorb a decoder
        // that lags for a moment. Half the budget is the most, the rest is for batches.
        const std::size_t want = (std::min<std::size_t>(z.max_connections, 65536) + 2) * part;
        const std::size_t most = memory_budget / 2 / part * part;
        z.window = std::max(part, std::min(want, most));
    }
    if (s.max_connections == 0) {
        // libcurl's receive buffers are memory too: at most a quarter of the window's worth.
        const std::size_t buffer = std::max<std::size_t>(1, s.client.receive_buffer);
        z.max_connections = std::clamp<std::size_t>(z.window / 4 / buffer, 1, z.max_connections);
    }
    z.initial_connections = std::min(z.max_connections, s.initial_connections != 0 ? s.initial_connections : 32);
    z.receive_buffers = z.max_connections * s.client.receive_buffer;
    if (!s.executors.empty())
        z.network_threads = s.executors.size();
    else if (s.network_threads != 0)
        z.network_threads = s.network_threads;
    else {
        // Receiving costs CPU on the thread that reads the socket: the kernel's copy, TLS and
        // the copy into the part buffer. Enough threads for the target at that cost, and at
        // most half the cores, since the other half decode and train.
        const double gb_per_second = s.throughput_target_gbps / 8.0;
        const auto wanted = static_cast<std::size_t>(std::ceil(gb_per_second * receive_cpu_seconds_per_gb));
        z.network_threads = std::clamp<std::size_t>(wanted, 1, std::max<std::size_t>(1, cores / 2));
    }
    z.network_threads = std::min(z.network_threads, z.max_connections);
    return z;
}

inline object_stream::object_stream(std::unique_ptr<object_lister> lister, std::unique_ptr<request_builder> builder,
                                    stream_options options)
{
    const auto sizing = size_stream(options, reader_options{}.memory_budget);
    core_ = std::make_shared<detail::stream_core>(std::move(lister), std::move(builder), std::move(options), sizing);
    core_->description = core_->lister->describe();
}

inline object_stream::~object_stream()
{
    auto core = core_;
    {
        std::lock_guard lock(core->mutex);
        core->network_alive = false;
    }
    {
        // Nothing may wake the reader's executor once its reader is gone.
        std::lock_guard lock(core->waker_mutex);
        core->consumer_waker.reset();
    }
    if (!core->started)
        return;
    if (!core->owned_io.empty()) {
        for (auto& io : core->owned_io)
            io->stop();
        for (auto& t : core->threads)
            t.join();
        // Transfers still in flight are removed and their sockets closed here, with the
        // io_contexts (stopped) still alive; then the io_contexts destroy the coroutines that
        // waited for them, which releases their references to the core.
        for (auto& l : core->lanes)
            l.http.reset();
        core->wake.reset();
        core->sample_timer.reset();
        core->owned_work.clear();
        core->owned_io.clear();
        return;
    }
    // The caller's executors run on: stop every coroutine where it runs. Home stops first, so
    // that nothing it posts to a lane can come after that lane's teardown; each lane's client
    // then aborts its transfers (their completions go home), and the fetches end there. Every
    // lane is kept busy (tracked work) until its teardown has run, so that a caller who stops
    // its io_contexts as soon as they run out of work does not strand a transfer in a queue
    // nobody runs. The coroutines hold the core until they end.
    using tracked_executor = decltype(asio::prefer(std::declval<asio::any_io_executor>(),
                                                   asio::execution::outstanding_work.tracked));
    std::vector<tracked_executor> keep;
    for (auto& l : core->lanes)
        keep.push_back(asio::prefer(l.executor, asio::execution::outstanding_work.tracked));
    asio::post(core->home().executor, [core, keep = std::move(keep)]() mutable {
        core->stopping = true;
        core->stop_scheduling = true;
        core->wake_scheduler();
        if (core->sample_timer)
            core->sample_timer->cancel();
        for (std::size_t i = 1; i < core->lanes.size(); ++i)
            asio::post(core->lanes[i].executor, [core, i, work = std::move(keep[i])] { core->lanes[i].http.reset(); });
        core->home().http.reset();
    });
}

inline std::size_t object_stream::reserve_buffers(const reader_options& o)
{
    if (core_->started)
        throw std::logic_error("pipemode::remote::object_stream: reserve_buffers after the stream started");
    core_->sizing = size_stream(core_->options, o.memory_budget);
    core_->policy = http::retry_policy(core_->sizing.max_connections, core_->options.retry, core_->sizing.initial_connections);
    return core_->sizing.reserved();
}

inline std::string object_stream::describe() const { return core_->description; }

inline std::size_t object_stream::peak_window_bytes() const noexcept
{
    return core_->window_peak.load(std::memory_order_relaxed);
}

inline std::size_t object_stream::window_bytes() const noexcept { return core_->sizing.window; }

inline stream_sizing object_stream::sizing() const noexcept { return core_->sizing; }

inline std::size_t object_stream::peak_connections() const noexcept
{
    return core_->active_peak.load(std::memory_order_relaxed);
}

inline std::size_t object_stream::hedges_sent() const noexcept
{
    return core_->hedges_sent.load(std::memory_order_relaxed);
}

inline std::size_t object_stream::connection_limit() const noexcept
{
    const auto now = core_->limit_now.load(std::memory_order_relaxed);
    return now != 0 ? now : core_->sizing.initial_connections;
}

inline asio::awaitable<std::optional<any_byte_source>> object_stream::async_next_source(source_context ctx)
{
    auto core = core_;
    if (!core->started) {
        core->consumer_waker.emplace(ctx.executor);
        if (!core->options.executors.empty()) {
            for (const auto& ex : core->options.executors)
                core->lanes.emplace_back().executor = ex;
        } else {
            for (std::size_t i = 0; i < core->sizing.network_threads; ++i) {
                core->owned_io.push_back(std::make_unique<asio::io_context>(1));
                core->owned_work.push_back(asio::make_work_guard(*core->owned_io.back()));
                core->lanes.emplace_back().executor = core->owned_io.back()->get_executor();
            }
        }
        // Each client is made on its own executor's thread before anything runs there (the
        // client's rule), or here before the threads start. The lanes share one DNS and TLS
        // session cache unless the caller gave one.
        auto client_options = core->options.client;
        if (!client_options.share)
            client_options.share = std::make_shared<http::client_share>();
        for (auto& l : core->lanes)
            l.http.emplace(l.executor, client_options);
        // A coroutine that fails (only bad_alloc is possible past the lister) stops the stream
        // and hands its exception to the reader, as a failed listing does.
        auto on_failure = [core](std::exception_ptr e) {
            if (!e)
                return;
            core->scheduler_done = true;
            core->stop_scheduling = true;
            {
                std::lock_guard lock(core->mutex);
                if (!core->listing_error)
                    core->listing_error = e;
            }
            core->notify_consumer();
        };
        asio::co_spawn(core->home().executor, detail::run_sampler(core), on_failure);
        asio::co_spawn(core->home().executor, detail::run_scheduler(core), on_failure);
        core->started = true;
        for (auto& io : core->owned_io)
            core->threads.emplace_back([io = io.get()] { io->run(); });
    }
    auto& waker = *core->consumer_waker;  // reset only by ~object_stream, after the reader's last call
    for (;;) {
        waker.arm();
        {
            std::unique_lock lock(core->mutex);
            if (!core->opened.empty()) {
                waker.disarm();
                auto obj = std::move(core->opened.front());
                core->opened.pop_front();
                lock.unlock();
                // The scheduler may have stopped opening objects at `max_objects_ahead`.
                core->post_home([core] { core->wake_scheduler(); });
                co_return any_byte_source(detail::object_source(core, std::move(obj)));
            }
            if (core->listing_error) {
                waker.disarm();
                std::rethrow_exception(core->listing_error);
            }
            if (core->listing_done) {
                waker.disarm();
                co_return std::nullopt;
            }
        }
        co_await waker.async_wait();
    }
}

inline std::unique_ptr<object_stream> http_objects(std::vector<std::string> urls, stream_options options)
{
    std::vector<object_info> objects;
    objects.reserve(urls.size());
    for (auto& url : urls) {
        object_info o;
        o.name = url;
        o.url = std::move(url);
        objects.push_back(std::move(o));
    }
    const auto n = objects.size();
    auto lister = std::make_unique<object_list>(std::move(objects), std::to_string(n) + (n == 1 ? " URL" : " URLs"));
    return std::make_unique<object_stream>(std::move(lister), std::make_unique<plain_http_requests>(),
                                           std::move(options));
}

} // namespace pipemode::remote
