// pipemode: an HTTP client on libcurl's multi-socket API, driven by an Asio io_context.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/http/retry.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <curl/curl.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pipemode::http {

/// The error category of libcurl's `CURLcode`s; messages are `curl_easy_strerror`'s.
const boost::system::error_category& curl_category() noexcept;

/// Makes an `error_code` from a `CURLcode`.
inline error_code make_curl_error(CURLcode code) noexcept { return {static_cast<int>(code), curl_category()}; }

/// How a transport error counts for retrying: no connection (refused, DNS, TLS handshake) is
/// `connect`, a timeout is `timeout`, a certificate, URL or set-up problem that a retry cannot
/// fix is `client_error`, and anything else (a reset, a connection closed early, bad chunking,
/// and errors of categories other than `curl_category`) is `connection_lost`.
failure_kind classify_transport(const error_code& ec) noexcept;

/// A DNS cache and a TLS session cache shared by several clients (libcurl's `CURLSH`).
///
/// Clients that hold the same share look a host name up once between them and resume each
/// other's TLS sessions, so a new connection from any of them skips the full handshake.
/// Connections themselves stay with each client's multi handle: a share never hands one
/// client's connection to another.
///
/// Thread safety: the clients may run on different threads; libcurl takes one mutex per kind
/// of shared data (DNS, TLS sessions, the share's own bookkeeping) around every access.
/// Hold it by `shared_ptr` (`client_options::share`): every client keeps it alive, and it
/// must outlive every transfer that uses it.
///
/// Example:
/// \code
/// auto share = std::make_shared<pipemode::http::client_share>();
/// pipemode::http::client_options o;
/// o.share = share;
/// pipemode::http::client a(io_a.get_executor(), o), b(io_b.get_executor(), o);
/// \endcode
class client_share {
public:
    /// Makes the share; throws `std::runtime_error` naming libcurl's error if it cannot.
    client_share();
    client_share(const client_share&) = delete;
    client_share& operator=(const client_share&) = delete;
    ~client_share();

    /// libcurl's handle, for `CURLOPT_SHARE`.
    CURLSH* native_handle() const noexcept { return share_; }

private:
    static void lock(CURL*, curl_lock_data data, curl_lock_access, void* userp) noexcept;
    static void unlock(CURL*, curl_lock_data data, void* userp) noexcept;

    CURLSH* share_ = nullptr;
    /// One mutex per kind of data, so a DNS lookup never waits for a TLS session store.
    std::array<std::mutex, CURL_LOCK_DATA_LAST> locks_;
};

/// Connection settings of a client, shared by all its transfers.
struct client_options {
    /// Give up on a connection attempt after this long (`CURLOPT_CONNECTTIMEOUT_MS`).
    std::chrono::milliseconds connect_timeout{10'000};
    /// A transfer slower than `low_speed_limit` bytes per second for `low_speed_time` fails
    /// with a timeout, so that a stalled connection is retried instead of hanging the reader.
    /// An S3 connection carries tens of MB/s and answers within 50 ms, and transfers are never
    /// paused (backpressure holds requests back, not connections), so 16 KiB/s over 5 s
    /// means a stall, found in seconds. Lower both for a link slower than about 1 MB/s per
    /// connection.
    std::size_t low_speed_limit = 16 * kib;
    std::chrono::seconds low_speed_time{5};
    /// libcurl's receive buffer per transfer (`CURLOPT_BUFFERSIZE`). Large buffers mean fewer
    /// callbacks per megabyte; 512 KiB is libcurl's historical maximum and what measurements
    /// here favour (docs/http.md).
    std::size_t receive_buffer = 512 * kib;
    /// Verify the server's TLS certificate and host name. On by default; turning it off is
    /// for test servers only.
    bool verify_tls = true;
    /// A PEM file of CA certificates to trust instead of the system's (`CURLOPT_CAINFO`).
    std::string ca_file{};
    /// Connections kept open for reuse (`CURLMOPT_MAXCONNECTS`).
    std::size_t max_idle_connections = 64;
    /// Fixed addresses of host names, in curl's `--resolve` form `HOST:PORT:ADDR[,ADDR...]`
    /// (an IPv6 address with or without brackets), used instead of DNS for that host and
    /// port and spread over like resolved ones. For tests and benchmarks that make a name
    /// such as "s3.test" stand for 127.0.0.1, 127.0.0.2 and 127.0.0.3. A malformed entry is
    /// a `std::invalid_argument` at construction.
    std::vector<std::string> resolve{};
    /// A host's addresses are looked up again, in the background, once they are older than
    /// this: S3's DNS answers live for seconds and rotate over its front ends.
    std::chrono::seconds address_refresh{60};
    /// A DNS and TLS session cache shared with other clients; none: the client's own.
    std::shared_ptr<client_share> share{};
};

/// What a request asks for. Only requests without a body are supported: GET, HEAD, and PUT or
/// DELETE with an empty body (what the instance metadata service wants for its token).
struct request {
    std::string method = "GET";
    std::string url;
    /// Header fields as (name, value) pairs, sent in order.
    std::vector<std::pair<std::string, std::string>> headers{};
    /// The request body, sent with any method other than GET and HEAD (and ignored with them);
    /// its `Content-Type` goes in `headers`. Empty: no body (`Content-Length: 0`).
    std::string body{};
    /// The whole transfer must finish within this (`CURLOPT_TIMEOUT_MS`); none when zero.
    /// Bulk transfers rely on the client's low-speed limit instead.
    std::chrono::milliseconds timeout{0};
};

/// A `Content-Range: bytes FIRST-LAST/COMPLETE` header (`complete` absent for "*").
struct content_range {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::optional<std::uint64_t> complete;
    /// Set for the "bytes */COMPLETE" form a 416 response carries: no range, just the size.
    bool unsatisfied = false;
};

/// Parses the value of a `Content-Range` header; nothing when it is malformed.
std::optional<content_range> parse_content_range(std::string_view value) noexcept;

/// The status line and the headers pipemode uses, as the server sent them.
struct response_head {
    unsigned status = 0;
    /// Opaque: compared and echoed back byte for byte, never interpreted (servers differ on
    /// what goes into an ETag, and S3's are MD5 sums only for some uploads).
    std::string etag;
    std::optional<std::uint64_t> content_length;
    std::optional<content_range> range;
    std::string content_type;
    std::string request_id;  ///< `x-amz-request-id`, for error messages
};

/// Receives one response, on the client's thread, from inside libcurl's callbacks.
///
/// Contract: implementations must not call back into the client (or libcurl) and must not
/// block; they copy or inspect what they are given and return. Returning false aborts the
/// transfer, which then completes with `CURLE_WRITE_ERROR` (or `CURLE_ABORTED_BY_CALLBACK`).
class response_handler {
public:
    virtual ~response_handler() = default;
    /// Called once the final response's header block is complete, before any body byte.
    virtual bool on_head(const response_head& head) = 0;
    /// Called with body bytes as they arrive; the span is valid only during the call.
    virtual bool on_body(std::span<const std::byte> bytes) = 0;
};

/// How a transfer went, beyond its error code.
struct transfer_info {
    /// libcurl's own description of a failure (its error buffer), else empty.
    std::string detail;
    /// Body bytes handed to the response handler.
    std::uint64_t body_bytes = 0;
    /// An exception thrown by the response handler (or by the client inside a libcurl
    /// callback), which failed the transfer; the caller rethrows it. Nothing ever unwinds
    /// through libcurl.
    std::exception_ptr exception{};
};

/// An HTTP/1.1 client on libcurl's multi-socket interface, run by an Asio `io_context`.
///
/// Asio owns every socket (libcurl opens and closes them through the client, which creates
/// them as Asio sockets and waits for readiness with `async_wait`), libcurl's single timeout
/// is one `steady_timer`, and the client never calls libcurl from inside libcurl's callbacks:
/// readiness, timer expiry and cancellation all reach libcurl from ordinary Asio handlers.
/// Connections are reused across transfers (one multi handle holds the connection cache), and
/// every transfer is HTTP/1.1 without signals.
///
/// Addresses: a host name is resolved once, asynchronously (and again in the background every
/// `client_options::address_refresh`), and when it has several addresses each new transfer is
/// told a different one first (`CURLOPT_RESOLVE` with the list rotated by one), so that new
/// connections spread over all of them while idle connections are still reused whatever
/// their address. Transfers that start before the first answer wait for it. IP literals and
/// hosts with one address go to libcurl unchanged.
///
/// Thread safety: one client per network thread. Its executor must run handlers on one
/// thread (an `io_context` run by one thread, or a strand); construct the client, start
/// transfers, cancel them and destroy it there (or before that thread starts).
///
/// Cancellation: a transfer's completion handler may carry a cancellation slot; any
/// cancellation type removes the transfer and completes it with `operation_aborted`.
/// Destroying the client does the same for every transfer still in flight, closes its sockets
/// and cancels its timer.
///
/// Example (inside a coroutine on the client's io_context):
/// \code
/// pipemode::http::client client(io.get_executor());
/// my_handler handler;   // a response_handler that keeps what it needs
/// pipemode::http::request req{.url = "http://127.0.0.1:8080/a"};
/// auto [ec, info] = co_await client.async_perform(req, handler, asio::as_tuple(asio::use_awaitable));
/// \endcode
///
/// GCC 12 destroys brace-initialised temporaries inside a `co_await` expression twice: build
/// the request (and any `{}` argument) in a named variable first, as above.
class client {
public:
    explicit client(asio::any_io_executor executor, client_options options = {});
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client();

    /// Performs `req`, delivering the response to `handler`, which must outlive the
    /// operation. Completes with `void(error_code, transfer_info)`: a `curl_category` error
    /// for transport failures (HTTP error statuses are not errors here: see the head the
    /// handler received), `operation_aborted` when cancelled.
    template <class CompletionToken>
    auto async_perform(request req, response_handler& handler, CompletionToken&& token)
    {
        return asio::async_initiate<CompletionToken, void(error_code, transfer_info)>(
            [this](auto completion, request r, response_handler* h) {
                auto slot = asio::get_associated_cancellation_slot(completion);
                start(std::move(r), *h,
                      std::make_unique<completion_model<decltype(completion)>>(std::move(completion), get_executor()),
                      slot);
            },
            token, std::move(req), &handler);
    }

    /// Transfers in flight, counting those that wait for their host's first DNS answer.
    std::size_t active_transfers() const noexcept;

    /// Sockets open (in use or idle in the connection cache).
    std::size_t open_sockets() const noexcept;

    /// The executor the client runs on.
    asio::any_io_executor get_executor() const noexcept;

private:
    struct impl;

    /// A transfer's completion handler, type-erased. (Asio's own any_completion_handler is
    /// not used: in Boost 1.81 its move assignment recurses and its invocation frees memory
    /// with the wrong allocator.)
    struct completion_base {
        virtual ~completion_base() = default;
        /// Posts the handler to its associated executor with these arguments.
        virtual void post(error_code ec, transfer_info info) = 0;
    };

    template <class Handler>
    struct completion_model final : completion_base {
        completion_model(Handler h, asio::any_io_executor fallback)
            : handler(std::move(h))
            , work(asio::prefer(asio::get_associated_executor(handler, fallback),
                                asio::execution::outstanding_work.tracked))
        {
        }
        void post(error_code ec, transfer_info info) override
        {
            auto ex = std::move(work);
            asio::post(ex, [h = std::move(handler), ec, info = std::move(info)]() mutable {
                std::move(h)(ec, std::move(info));
            });
        }
        Handler handler;
        std::decay_t<decltype(asio::prefer(std::declval<asio::associated_executor_t<Handler, asio::any_io_executor>>(),
                                           asio::execution::outstanding_work.tracked))>
            work;
    };

    using completion_ptr = std::unique_ptr<completion_base>;
    void start(request req, response_handler& handler, completion_ptr completion, asio::cancellation_slot slot);

    std::shared_ptr<impl> impl_;
};

} // namespace pipemode::http

#include <pipemode/http/impl/client.hpp>
