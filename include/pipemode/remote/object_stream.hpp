// pipemode: a data set of HTTP objects read as a sliding window of concurrent ranged GETs.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/http/client.hpp>
#include <pipemode/http/retry.hpp>
#include <pipemode/http/status.hpp>
#include <pipemode/pipeline/detail/async_waker.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace pipemode::remote {

/// One object of a data set: where it is, when a listing said so its size and ETag, and the
/// byte range [first, end) of it to read (all of it by default).
///
/// The stream delivers exactly the bytes [first, min(end, size)) of the object, and its byte
/// source's `start_offset()` is `first`, so decoders report offsets within the object. A
/// range starting at the object's end (`first == size`) or ending at or before its start
/// (`end <= first`) is empty; one starting past the object's end fails with
/// `errc::range_past_end`.
struct object_info {
    std::string url;     ///< what `request_builder` needs to address it (a URL, or "bucket/key")
    std::string name;    ///< for messages: "s3://bucket/key" or the URL
    std::optional<std::uint64_t> size{};  ///< known from a listing; else learnt from the first response
    std::string etag{};  ///< opaque; empty when unknown
    std::uint64_t first = 0;              ///< the first byte to read
    std::optional<std::uint64_t> end{};   ///< one past the last byte to read; empty: the object's end
};

/// Hands out the objects of a data set in order, on the network thread (an S3 listing, a
/// manifest, a fixed list). Errors are thrown, naming what failed.
class object_lister {
public:
    virtual ~object_lister() = default;
    /// The next object, or nothing at the end. `c` is the stream's client, for listings.
    virtual asio::awaitable<std::optional<object_info>> async_next(http::client& c) = 0;
    /// The data set for messages ("s3://bucket/prefix/", "3 URLs").
    virtual std::string describe() const = 0;
};

/// Makes the request for bytes [first, last] of an object (adding signatures for S3), and
/// says what a failed response means. Runs on the network thread.
///
/// The defaults of `classify_error` and `describe_error` read the status line alone, as
/// `http::classify_status` does; a store whose error bodies say more overrides them (S3 and
/// S3-compatible endpoints: derive from `s3_compatible_builder`).
class request_builder {
public:
    virtual ~request_builder() = default;
    /// The request, with `Range` and, when `if_match` is not empty, `If-Match`.
    /// `c` is the stream's client (for fetching credentials).
    virtual asio::awaitable<http::request> async_make(http::client& c, const object_info& object, std::uint64_t first,
                                                      std::uint64_t last, std::string if_match) = 0;
    /// How an error response with status `status` and body `body` counts for retrying:
    /// whether it is worth another attempt, and whether it is throttling (which lowers the
    /// stream's concurrency). Default: `http::classify_status(status)`, the body unread.
    virtual http::failure_kind classify_error(unsigned status, std::string_view body) const;
    /// One line for an error response to a request for `object`. Must not include
    /// credentials. Default: the object's name and the status line, e.g.
    /// "http://host/a.rec: HTTP 404 Not Found".
    virtual std::string describe_error(const object_info& object, unsigned status, std::string_view body) const;
};

/// A `request_builder` for S3 and S3-compatible endpoints, whose error responses are S3
/// `<Error>` documents: the document's `Code` decides (a 400 `SlowDown` is throttling, a 500
/// `AccessDenied` is not retried; see `s3::classify_failure`), and the message names the code,
/// S3's message and the request id (`s3::describe`). A body that is not such a document is
/// classified by its status, as `request_builder` does.
class s3_compatible_builder : public request_builder {
public:
    http::failure_kind classify_error(unsigned status, std::string_view body) const override;
    std::string describe_error(const object_info& object, unsigned status, std::string_view body) const override;
};

/// Options of an `object_stream`. The defaults size a stream for a large training instance
/// reading from S3 (docs/http.md, "Sizing"): set `throughput_target_gbps` for a bigger or
/// smaller link and leave the rest alone.
struct stream_options {
    /// The throughput the stream is sized for, in gigabits per second, as the instance's
    /// network offers it (the AWS CRT takes the same setting). It sets the most connections
    /// (`throughput_target_gbps / connection_throughput`) and, through them, the window.
    /// 25 Gb/s is a large training instance's share for its data: more than one process
    /// decodes on a core, and the adaptive limit stops short of it on a slower link.
    double throughput_target_gbps = 25.0;
    /// What one connection to the store is expected to carry, in bytes per second: S3 gives
    /// 50-90 MB/s per connection, so 50 MB/s sizes for the slow end.
    std::size_t connection_throughput = 50'000'000;
    /// Bytes per ranged GET. AWS recommends 8-16 MiB parts for S3: large enough that the
    /// 20-50 ms before the first byte costs little of each part.
    std::size_t part_size = 8 * mib;
    /// Bytes asked for by the first GET of an object whose size is not known in advance (URL
    /// lists, manifests): its answer tells the size. Smaller than a part, so that many such
    /// objects (images, documents) can start together within the window; the rest of a
    /// larger object follows in parts.
    std::size_t first_request_size = 1 * mib;
    /// Ranged GETs in flight at most. 0 (the default) derives it from the target:
    /// `throughput_target_gbps / connection_throughput`, and no more than a quarter of the
    /// window spent on libcurl's receive buffers allows.
    std::size_t max_connections = 0;
    /// Where the adaptive connection limit starts; 0: 32, or the maximum if lower. The limit
    /// grows by half while throughput grows with it and the connections are what holds it
    /// back, stops growing when it does not, and halves when the store throttles
    /// (`concurrency_limit`).
    std::size_t initial_connections = 0;
    /// Bytes of part buffers (in flight and waiting for the decoder) at most. 0 chooses from
    /// the connections and the reader's memory budget: one part per connection plus two, and
    /// at most half the budget.
    std::size_t window_bytes = 0;
    /// Network threads the stream runs itself, each with its own libcurl multi handle; 0: as
    /// many as receiving the target costs at `receive_cpu_seconds_per_gb` (one per 5.7 Gb/s),
    /// at most half the cores. Ignored when `executors` is given.
    std::size_t network_threads = 0;
    /// The caller's executors to run on instead of threads of the stream's own: the first runs
    /// the scheduler and the retries, and every one runs transfers. Each must run its handlers
    /// one at a time (an `io_context` run by one thread, or a strand), and must keep running
    /// until the stream's coroutines have ended, which happens shortly after the stream is
    /// destroyed (its transfers are aborted then).
    std::vector<asio::any_io_executor> executors{};
    /// Backoff, attempts and retry budget.
    http::retry_options retry{};
    /// Connection settings (timeouts, TLS).
    http::client_options client{};
};

/// What a stream's options come to for a given memory budget (see `size_stream`).
struct stream_sizing {
    std::size_t max_connections = 0;      ///< ranged GETs in flight at most
    std::size_t initial_connections = 0;  ///< where the adaptive limit starts
    std::size_t window = 0;               ///< bytes of part buffers at most
    /// libcurl's receive buffers at most: `max_connections x client.receive_buffer`.
    std::size_t receive_buffers = 0;
    /// Network threads (or the caller's executors).
    std::size_t network_threads = 1;
    /// All the memory the stream holds at most, which the reader keeps out of its budget.
    std::size_t reserved() const noexcept { return window + receive_buffers; }
};

/// CPU seconds that receiving one GB over HTTPS costs the thread reading the socket: the
/// kernel's copy and libcurl (0.45-0.65), OpenSSL's AES-GCM (0.55-0.85) and the stream's copy
/// into its part buffer (0.15-0.25), measured over loopback (docs/http.md, "Per-stage CPU
/// costs"). Plain HTTP costs about half; the sizing assumes TLS, S3's default.
inline constexpr double receive_cpu_seconds_per_gb = 1.4;

/// Sizes a stream with options `s` for a reader whose memory budget is `memory_budget`, on a
/// machine of `cores` cores. Sans-I/O; throws `std::invalid_argument` for options that cannot
/// work (a zero part size, target or connection throughput).
stream_sizing size_stream(const stream_options& s, std::size_t memory_budget,
                          std::size_t cores = std::thread::hardware_concurrency());

namespace detail {
struct stream_core;
} // namespace detail

/// A `source_provider` that streams the objects an `object_lister` names through ranged GETs.
///
/// Each object is read as parts of `part_size` bytes, fetched by concurrent GETs (up to an
/// adaptive limit, see `stream_options`) into buffers reserved within the window before the
/// GET is sent: that reservation is the backpressure (a slow decoder means fewer ranges
/// issued, never paused connections). Parts are delivered strictly in order, each byte as soon
/// as it has arrived, and the window runs ahead across object boundaries, so the next objects
/// are fetched while the current one is decoded. Objects whose size is not known in advance
/// start together: their first GETs go out concurrently and each answer tells the size. An
/// object may be read in part (`object_info::first` and `end`): only that byte range is
/// requested. The first response gives an object's size and ETag (no HEAD); later ranges
/// carry `If-Match`, so an object replaced mid-read fails with `errc::object_changed` rather
/// than mixing versions. A failed range is retried with full-jitter backoff from the first
/// byte it did not get; a part the reader waits on that lags far behind its peers is hedged on
/// another connection.
///
/// Threads: the scheduler and the retries run on one home executor and the transfers on one
/// or more network threads of the stream's own (`network_threads`) or on the caller's
/// executors (`executors`), never on the reader's thread, so receiving and decoding overlap
/// (docs/http.md, "Threads"). Destroy the stream while the reader's executor still runs.
class object_stream final : public source_provider {
public:
    object_stream(std::unique_ptr<object_lister> lister, std::unique_ptr<request_builder> builder,
                  stream_options options = {});
    ~object_stream() override;

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override;
    std::string describe() const override;
    std::size_t reserve_buffers(const reader_options& o) override;

    /// Bytes of the window actually in use (for tests and benchmarks: never above the window).
    std::size_t peak_window_bytes() const noexcept;
    /// The window chosen (after `reserve_buffers`).
    std::size_t window_bytes() const noexcept;
    /// The sizing chosen (after `reserve_buffers`).
    stream_sizing sizing() const noexcept;
    /// The most ranged GETs that were in flight at once so far.
    std::size_t peak_connections() const noexcept;
    /// The adaptive connection limit now.
    std::size_t connection_limit() const noexcept;
    /// Hedges sent so far: parts the reader waited on that lagged far behind their peers and
    /// were asked for again on another connection.
    std::size_t hedges_sent() const noexcept;

private:
    std::shared_ptr<detail::stream_core> core_;
};

/// A lister over a fixed list of objects, in the given order.
class object_list final : public object_lister {
public:
    object_list(std::vector<object_info> objects, std::string description)
        : objects_(std::move(objects)), description_(std::move(description))
    {
    }
    asio::awaitable<std::optional<object_info>> async_next(http::client&) override
    {
        if (next_ == objects_.size())
            co_return std::nullopt;
        co_return std::move(objects_[next_++]);
    }
    std::string describe() const override { return description_; }

private:
    std::vector<object_info> objects_;
    std::string description_;
    std::size_t next_ = 0;
};

/// Requests for plain `http://` and `https://` URLs: a GET of `object_info::url` with `Range`
/// and `If-Match`. Error responses are read as S3 documents when they are such: plain URLs are
/// often S3-compatible endpoints or presigned S3 URLs, whose errors say what went wrong.
class plain_http_requests final : public s3_compatible_builder {
public:
    asio::awaitable<http::request> async_make(http::client&, const object_info& object, std::uint64_t first,
                                              std::uint64_t last, std::string if_match) override
    {
        http::request r;
        r.url = object.url;
        r.headers.emplace_back("Range", "bytes=" + std::to_string(first) + '-' + std::to_string(last));
        if (!if_match.empty())
            r.headers.emplace_back("If-Match", std::move(if_match));
        co_return r;
    }
};

/// Streams the objects at plain `http(s)://` URLs, in order.
///
/// Example:
/// \code
/// pipemode::reader reader(pipemode::remote::http_objects({"http://127.0.0.1:8080/train/part-0.rec"}));
/// \endcode
std::unique_ptr<object_stream> http_objects(std::vector<std::string> urls, stream_options options = {});

} // namespace pipemode::remote

#include <pipemode/remote/impl/object_stream.hpp>
