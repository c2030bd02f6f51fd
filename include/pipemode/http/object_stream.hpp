// pipemode: a data set of HTTP objects read as a sliding window of concurrent ranged GETs.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/http/client.hpp>
#include <pipemode/http/retry.hpp>
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
#include <thread>
#include <vector>

namespace pipemode::http {

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
    virtual asio::awaitable<std::optional<object_info>> async_next(client& c) = 0;
    /// The data set for messages ("s3://bucket/prefix/", "3 URLs").
    virtual std::string describe() const = 0;
};

/// Makes the request for bytes [first, last] of an object (adding signatures for S3), and
/// explains error responses. Runs on the network thread.
class request_builder {
public:
    virtual ~request_builder() = default;
    /// The request, with `Range` and, when `if_match` is not empty, `If-Match`.
    /// `c` is the stream's client (for fetching credentials).
    virtual asio::awaitable<request> async_make(client& c, const object_info& object, std::uint64_t first,
                                                std::uint64_t last, std::string if_match) = 0;
    /// One line for an error response to a request for `object` (status, error code and
    /// message from the body when there is one). Must not include credentials.
    virtual std::string describe_error(const object_info& object, unsigned status, std::string_view body) const;
    /// The S3 error code in an error body, if any (drives throttling detection).
    virtual std::string error_code_of(unsigned status, std::string_view body) const;
};

/// Options of an `object_stream`. Defaults come from the loopback benchmark in
/// `benchmarks/http.cpp` (see docs/http.md).
struct stream_options {
    /// Bytes per ranged GET. AWS recommends 8-16 MiB parts for S3; on loopback 4, 8 and 16
    /// MiB perform alike (docs/benchmarks.md), and 8 MiB needs half the window of 16.
    std::size_t part_size = 8 * mib;
    /// Ranged GETs in flight at most (lowered for a while when the server throttles). One
    /// loopback connection already carries GB/s; against S3, where each connection gives tens
    /// to a hundred MB/s, throughput comes from concurrency.
    std::size_t max_connections = 8;
    /// Bytes of part buffers (in flight and waiting for the decoder) at most. 0 chooses from
    /// the reader's memory budget: half of it, at least one part, at most two parts per
    /// connection.
    std::size_t window_bytes = 0;
    /// Backoff, attempts and retry budget.
    retry_options retry{};
    /// Connection settings (timeouts, TLS).
    client_options client{};
};

namespace detail {
struct stream_core;
} // namespace detail

/// A `source_provider` that streams the objects an `object_lister` names through ranged GETs
/// on its own network thread.
///
/// Each object is read as parts of `part_size` bytes, fetched by up to `max_connections`
/// concurrent GETs into buffers reserved within `window_bytes` before the GET is sent: that
/// reservation is the backpressure (a slow decoder means fewer ranges issued, never paused
/// connections). Parts are delivered strictly in order, each byte as soon as it has arrived,
/// and the window runs ahead across object boundaries, so the next objects are fetched while
/// the current one is decoded. An object may be read in part (`object_info::first` and `end`):
/// only that byte range is requested. The first response gives an object's size and ETag (no HEAD);
/// later ranges carry `If-Match`, so an object replaced mid-read fails with
/// `errc::object_changed` rather than mixing versions. A failed range is retried with
/// full-jitter backoff from the first byte it did not get.
///
/// The network thread is separate from the reader's, so receiving and decoding overlap.
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
    asio::awaitable<std::optional<object_info>> async_next(client&) override
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
/// and `If-Match`.
class plain_http_requests final : public request_builder {
public:
    asio::awaitable<request> async_make(client&, const object_info& object, std::uint64_t first,
                                        std::uint64_t last, std::string if_match) override
    {
        request r;
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
/// pipemode::reader reader(pipemode::http::http_objects({"http://127.0.0.1:8080/train/part-0.rec"}));
/// \endcode
std::unique_ptr<object_stream> http_objects(std::vector<std::string> urls, stream_options options = {});

} // namespace pipemode::http

#include <pipemode/http/impl/object_stream.hpp>
