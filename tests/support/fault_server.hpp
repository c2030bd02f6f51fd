// Test support: an HTTP/1.1 object server on loopback that serves objects from memory with
// Range support, answers like S3 (ETag, If-Match, XML errors, ListObjectsV2), injects faults on
// request, and can shape its link like S3's (per-connection rate cap, first-byte latency,
// several addresses).
#pragma once

#include <pipemode/config.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace pipemode::test {

/// What a `fault` does to the request it hits.
enum class fault_kind {
    none,                  ///< answer normally (a script entry that lets one request through)
    drop_after,            ///< headers and `bytes` body bytes, then close (or reset)
    stall,                 ///< send nothing for `duration` (before the headers, or after `bytes` body bytes)
    status,                ///< an S3 error XML response with `http_status` and `s3_code`
    wrong_content_range,   ///< a 206 whose Content-Range starts at another offset than asked
    missing_content_range, ///< a 206 without Content-Range
    short_body,            ///< Content-Length says the full range; fewer bytes, then close
    change_object,         ///< replace the object (new ETag) just before answering
    trickle,               ///< send the body at `bytes_per_second`
};

/// Number of `fault_kind` values, for arrays indexed by kind.
inline constexpr std::size_t fault_kind_count = 9;

/// The name of `k` ("drop_after", ...), for test messages.
inline std::string_view to_string(fault_kind k) noexcept
{
    static constexpr std::array<std::string_view, fault_kind_count> names{
        "none", "drop_after", "stall", "status", "wrong_content_range",
        "missing_content_range", "short_body", "change_object", "trickle"};
    return names[static_cast<std::size_t>(k)];
}

/// One injected fault: what `fault_server` does to one request instead of answering normally.
///
/// Build it with the factories (`fault::drop_after(100)`, `fault::status(503, "SlowDown")`) and
/// optionally restrict it with `only_path` / `only_from`: a restricted scripted fault waits at
/// the head of the script, letting non-matching requests through untouched, until a matching
/// request comes. Faults that act on the body (drop, short body, stall after bytes, trickle,
/// the Content-Range faults) apply to GET; a HEAD gets its headers and then the close or the
/// stall.
struct fault {
    /// What this fault does.
    fault_kind kind = fault_kind::none;
    /// Body bytes sent before the drop (drop_after), before the stall (stall) or before the
    /// close (short_body; `npos` there means half the body).
    std::size_t bytes = 0;
    /// stall: true to stall before anything, headers included, is sent.
    bool before_headers = false;
    /// drop_after: true to reset the connection (RST) instead of closing it (FIN).
    bool reset = false;
    /// stall: how long nothing is sent.
    std::chrono::milliseconds duration{0};
    /// status: the HTTP status and the S3 error code and message of the XML body.
    int http_status = 0;
    std::string s3_code;
    std::string message;
    /// trickle: the body's sending rate.
    std::size_t bytes_per_second = 0;
    /// change_object: the new content; none keeps the bytes and only makes a new version.
    std::optional<std::string> new_content;
    /// Restriction: only a request for exactly this (decoded) path; empty means any path.
    std::string path;
    /// Restriction: only a request whose Range starts at or after this offset (a request
    /// without a Range starts at 0).
    std::uint64_t min_offset = 0;

    /// "Everything up to here" for `bytes` of short_body.
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

    /// Lets one request through (a script placeholder).
    static fault none() { return {}; }
    /// Sends the headers and `n` body bytes, then closes the connection, with a reset (RST)
    /// if `reset`, else with a plain close.
    static fault drop_after(std::size_t n, bool reset = false)
    {
        fault f;
        f.kind = fault_kind::drop_after;
        f.bytes = n;
        f.reset = reset;
        return f;
    }
    /// Sends nothing, not even the headers, for `t`, then answers normally; closes at once if
    /// the client closes its end meanwhile.
    static fault stall(std::chrono::milliseconds t)
    {
        fault f;
        f.kind = fault_kind::stall;
        f.duration = t;
        f.before_headers = true;
        return f;
    }
    /// Sends the headers and `n` body bytes, then nothing for `t`, then the rest; closes at
    /// once if the client closes its end during the stall.
    static fault stall_after(std::size_t n, std::chrono::milliseconds t)
    {
        fault f;
        f.kind = fault_kind::stall;
        f.bytes = n;
        f.duration = t;
        return f;
    }
    /// An S3 error response: `http_status` with `<Error><Code>s3_code</Code>...` (the
    /// connection stays open).
    static fault status(int http_status, std::string s3_code, std::string message = {})
    {
        fault f;
        f.kind = fault_kind::status;
        f.http_status = http_status;
        f.s3_code = std::move(s3_code);
        f.message = message.empty() ? "Injected " + f.s3_code + " fault." : std::move(message);
        return f;
    }
    /// A 206 whose Content-Range starts one byte after the asked offset (one before when that
    /// would pass the end); the body and Content-Length are those of the asked range.
    static fault wrong_content_range()
    {
        fault f;
        f.kind = fault_kind::wrong_content_range;
        return f;
    }
    /// A 206 without Content-Range (the body is the asked range).
    static fault missing_content_range()
    {
        fault f;
        f.kind = fault_kind::missing_content_range;
        return f;
    }
    /// Content-Length of the full range but only `n` body bytes (`npos`: half), then close.
    static fault short_body(std::size_t n = npos)
    {
        fault f;
        f.kind = fault_kind::short_body;
        f.bytes = n;
        return f;
    }
    /// Replaces the object with `content` (none: the same bytes) under a new ETag just before
    /// answering, so this request's and later requests' If-Match with the old ETag get 412.
    static fault change_object(std::optional<std::string> content = std::nullopt)
    {
        fault f;
        f.kind = fault_kind::change_object;
        f.new_content = std::move(content);
        return f;
    }
    /// Sends the body at `bps` bytes per second (at least 1): the last byte leaves no sooner
    /// than size / bps after the headers.
    static fault trickle(std::size_t bps)
    {
        fault f;
        f.kind = fault_kind::trickle;
        f.bytes_per_second = std::max<std::size_t>(bps, 1);
        return f;
    }

    /// This fault restricted to requests for `p`.
    fault only_path(std::string p) const
    {
        fault f = *this;
        f.path = std::move(p);
        return f;
    }
    /// This fault restricted to requests whose Range starts at or after `offset`.
    fault only_from(std::uint64_t offset) const
    {
        fault f = *this;
        f.min_offset = offset;
        return f;
    }
};

/// What `fault_server` saw of one request, in arrival order.
struct request_record {
    /// "GET", "HEAD", ...
    std::string method;
    /// The request target as sent (percent-encoded, query included).
    std::string target;
    /// The target's path, percent-decoded, without the query.
    std::string path;
    /// The Range header's value, empty if absent.
    std::string range;
    /// The If-Match header's value, empty if absent.
    std::string if_match;
    /// Every header as sent (names in their original case), in order.
    std::vector<std::pair<std::string, std::string>> headers;
    /// The fault applied to this request (`none` if answered normally).
    fault_kind fault = fault_kind::none;
    /// The server address the request arrived on ("127.0.0.2").
    std::string local_address;

    /// The value of header `name` (case-insensitive), empty if absent.
    std::string header(std::string_view name) const
    {
        for (const auto& [n, v] : headers)
            if (n.size() == name.size()
                && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
                       return std::tolower(static_cast<unsigned char>(a))
                           == std::tolower(static_cast<unsigned char>(b));
                   }))
                return v;
        return {};
    }
};

/// How a `fault_server` starts. Every field but `addresses` can also be changed while it
/// serves, with the setter of the same name (`set_rate_limit`, ...).
///
/// Example, a link shaped like S3's (50 MB/s per connection, 30 ms to the first byte, four
/// addresses): `fault_server server({.addresses = 4, .rate_limit = 50'000'000,
/// .first_byte_latency = 30ms});`
struct fault_server_options {
    /// How many loopback addresses to listen on, all on one port: 127.0.0.1, 127.0.0.2, ...
    /// (Linux answers on all of 127/8), standing in for the many addresses S3's DNS returns.
    /// 1 to 254.
    std::size_t addresses = 1;
    /// The most response body bytes per second each connection sends, across its requests
    /// (S3 gives 50-90 MB/s per connection); 0 for no cap.
    std::size_t rate_limit = 0;
    /// How long every request waits before its response headers are sent (S3 answers after
    /// 20-50 ms); the waits of different connections overlap. As in a stall, a client that
    /// closes (or half-closes) its end meanwhile gets no answer.
    std::chrono::milliseconds first_byte_latency{0};
    /// The most keys (and common prefixes) in one ListObjectsV2 page, whatever max-keys asks;
    /// lower it to force small pages. 1 to 1000.
    std::size_t list_page_cap = 1000;
    /// false: a 206's Content-Range gives no total (`bytes a-b/*`), as servers that do not know
    /// the size may answer.
    bool content_range_total = true;
    /// true: Range headers are ignored and every GET of an object gets all of it with 200, as
    /// servers without range support answer.
    bool ignore_ranges = false;
};

/// An HTTP/1.1 object server on 127.0.0.1 (and optionally 127.0.0.2, ...; ephemeral port) for
/// network tests: objects from memory with single byte ranges, ETag, If-Match and S3-style XML
/// errors, ListObjectsV2, keep-alive, faults injected from a script and/or at random, and a
/// link shaped like S3's.
///
/// It runs on its own thread with its own `io_context`; every member function may be called
/// from any thread while it runs. The destructor closes every connection (stalled ones
/// included) and joins the thread promptly.
///
/// Answers: GET/HEAD of an object: 200 (no Range), 206 with `Content-Range: bytes a-b/size`
/// (`Range: bytes=a-b`, `bytes=a-`, `bytes=-n`; an end past the object is clamped), 416 with
/// `Content-Range: bytes */size` and an `InvalidRange` XML body for a start at or past the
/// end. A Range it cannot parse, or several ranges, is ignored (200), as RFC 9110 allows.
/// `If-Match` other than the current ETag (or `*`): 412 `PreconditionFailed`. Unknown path:
/// 404 `NoSuchKey`. Other methods: 405 `MethodNotAllowed`. Every object response carries
/// `ETag`, `Content-Length` and `Accept-Ranges: bytes`. Other headers (Authorization, ...)
/// are recorded and ignored.
///
/// ListObjectsV2, path-style: `GET /BUCKET?list-type=2` (or `/BUCKET/?...`) lists the objects
/// stored at `/BUCKET/KEY` in the byte order of their keys, as S3 does, with `prefix`,
/// `delimiter` (CommonPrefixes), `start-after`, `max-keys` (default and most 1000, further
/// capped by `list_page_cap`: MaxKeys still shows what was asked, as S3 may also return fewer),
/// `continuation-token` (opaque base64, which holds `+`, `/` and `=`, so a client must
/// percent-encode it) and `encoding-type=url`. Each Contents has Key, LastModified, ETag (quoted
/// and XML-escaped, as S3 sends it), Size and StorageClass. Query values are form-decoded, as
/// S3 does (`+` is a space). A bucket with no object: 404 `NoSuchBucket`; a bad max-keys or
/// token: 400 `InvalidArgument`; max-keys=0: an empty page, not truncated. Listings count as
/// requests, and faults that act on a body apply to the listing's.
///
/// The link can be shaped like S3's (see `fault_server_options`): a per-connection rate cap
/// on bodies, a first-byte latency before every response's headers, and several loopback
/// addresses on one port, with counters per address.
///
/// Example:
/// ```
/// fault_server server;
/// server.put("/bucket/key", bytes);
/// server.script({fault::none(), fault::drop_after(1000)});  // the 2nd request is cut
/// ... read server.url() + "/bucket/key" ...
/// CHECK(server.faults_injected(fault_kind::drop_after) == 1);
/// ```
class fault_server {
public:
    /// Body bytes written per write: large bodies stream without copies in these slices.
    static constexpr std::size_t write_chunk = 256 * 1024;

    /// Body bytes per write when a rate cap applies: small enough that the pacing is smooth,
    /// large enough that a fast cap costs little CPU.
    static constexpr std::size_t paced_chunk = 64 * 1024;

    /// Starts listening on 127.0.0.1, port 0, and serving on a new thread.
    fault_server() : fault_server(fault_server_options{}) {}

    /// Starts listening on `options.addresses` loopback addresses (127.0.0.1 first) on one
    /// ephemeral port, and serving on a new thread; throws std::invalid_argument for options
    /// out of range.
    explicit fault_server(fault_server_options options)
    {
        if (options.addresses < 1 || options.addresses > 254)
            throw std::invalid_argument("fault_server: addresses must be 1 to 254 (127.0.0.1 to 127.0.0.254)");
        rate_limit_ = options.rate_limit;
        first_byte_latency_ = options.first_byte_latency;
        list_page_cap_ = checked_page_cap(options.list_page_cap);
        content_range_total_ = options.content_range_total;
        ignore_ranges_ = options.ignore_ranges;
        listen(options.addresses);
        connections_by_address_.resize(acceptors_.size());
        requests_by_address_.resize(acceptors_.size());
        for (std::size_t i = 0; i < acceptors_.size(); ++i)
            asio::co_spawn(io_, accept_loop(i), [this](std::exception_ptr e) { note_exception(e); });
        thread_ = std::thread([this] { io_.run(); });
    }

    fault_server(const fault_server&) = delete;
    fault_server& operator=(const fault_server&) = delete;

    /// Closes the acceptor and every connection, cancels every stall, and joins the thread.
    ~fault_server()
    {
        asio::post(io_, [this] { close_all(); });
        thread_.join();
    }

    /// The listening port.
    unsigned short port() const noexcept { return port_; }

    /// "http://127.0.0.1:PORT", without a trailing slash.
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    /// "http://127.0.0.N:PORT" for the `i`th address (`url(0) == url()`); throws
    /// std::out_of_range past the last.
    std::string url(std::size_t i) const { return "http://" + addresses_.at(i) + ":" + std::to_string(port_); }

    /// The addresses listened on, "127.0.0.1" first, all on `port()`.
    const std::vector<std::string>& addresses() const noexcept { return addresses_; }

    /// Sets the per-connection cap on body bytes per second (0: none); applies from the next
    /// body chunk each connection sends, bodies already under way included.
    void set_rate_limit(std::size_t bytes_per_second)
    {
        std::lock_guard lock(mutex_);
        rate_limit_ = bytes_per_second;
    }

    /// Sets the wait before the headers of each response; applies to requests received from now.
    void set_first_byte_latency(std::chrono::milliseconds latency)
    {
        std::lock_guard lock(mutex_);
        first_byte_latency_ = latency;
    }

    /// Sets the most keys per ListObjectsV2 page (1 to 1000); throws std::invalid_argument
    /// otherwise.
    void set_list_page_cap(std::size_t keys)
    {
        std::size_t cap = checked_page_cap(keys);
        std::lock_guard lock(mutex_);
        list_page_cap_ = cap;
    }

    /// true: 206 answers give the object's size in Content-Range; false: `bytes a-b/*`.
    void set_content_range_total(bool on)
    {
        std::lock_guard lock(mutex_);
        content_range_total_ = on;
    }

    /// true: Range headers are ignored (every object GET gets 200 and the whole object).
    void set_ignore_ranges(bool on)
    {
        std::lock_guard lock(mutex_);
        ignore_ranges_ = on;
    }

    /// Stores `bytes` at `path` ("/bucket/key", matched exactly against the decoded request
    /// path), replacing any object there under a new ETag.
    void put(std::string path, std::string bytes)
    {
        std::lock_guard lock(mutex_);
        store(std::move(path), std::move(bytes));
    }

    /// Removes the object at `path` (later requests get 404); no effect if absent.
    void remove(const std::string& path)
    {
        std::lock_guard lock(mutex_);
        objects_.erase(path);
    }

    /// The current ETag of the object at `path`, quoted ("\"v3-1000\""); empty if absent.
    std::string etag(const std::string& path) const
    {
        std::lock_guard lock(mutex_);
        auto it = objects_.find(path);
        return it == objects_.end() ? std::string() : it->second.etag;
    }

    /// Replaces the fault script: the next requests take these faults in order, one each (a
    /// restricted fault waits for a matching request). Random faults apply only to requests
    /// the script leaves alone.
    void script(std::vector<fault> faults)
    {
        std::lock_guard lock(mutex_);
        script_ = std::move(faults);
        script_next_ = 0;
    }

    /// Script entries not yet consumed.
    std::size_t script_remaining() const
    {
        std::lock_guard lock(mutex_);
        return script_.size() - script_next_;
    }

    /// Each request the script leaves alone gets, with `probability`, one of `kinds` chosen
    /// uniformly (if its restriction matches). The draws come from a generator seeded with
    /// `seed`, the same on every machine, so a given order of requests always gets the same
    /// faults. Probability 0 (or no kinds) turns random faults off.
    void random_faults(double probability, std::vector<fault> kinds, std::uint64_t seed)
    {
        std::lock_guard lock(mutex_);
        random_probability_ = probability;
        random_kinds_ = std::move(kinds);
        rng_.seed(seed);
    }

    /// How many faults of kind `k` were applied (`none`: how many requests were answered
    /// without a fault).
    std::size_t faults_injected(fault_kind k) const
    {
        std::lock_guard lock(mutex_);
        return fault_counts_[static_cast<std::size_t>(k)];
    }

    /// How many faults of any kind but `none` were applied.
    std::size_t faults_injected() const
    {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (std::size_t k = 1; k < fault_kind_count; ++k)
            n += fault_counts_[k];
        return n;
    }

    /// How many requests were received and answered (or faulted).
    std::size_t requests_served() const
    {
        std::lock_guard lock(mutex_);
        return requests_.size();
    }

    /// How many connections were accepted.
    std::size_t connections_accepted() const
    {
        std::lock_guard lock(mutex_);
        return connections_accepted_;
    }

    /// How many connections were accepted on `address` (one of `addresses()`); throws
    /// std::invalid_argument for another.
    std::size_t connections_accepted(std::string_view address) const
    {
        std::size_t i = address_index(address);
        std::lock_guard lock(mutex_);
        return connections_by_address_[i];
    }

    /// How many requests arrived on `address` (one of `addresses()`); throws
    /// std::invalid_argument for another.
    std::size_t requests_served(std::string_view address) const
    {
        std::size_t i = address_index(address);
        std::lock_guard lock(mutex_);
        return requests_by_address_[i];
    }

    /// Requests received whose response is not yet wholly sent (first-byte latency and
    /// stalls included).
    std::size_t requests_in_flight() const
    {
        std::lock_guard lock(mutex_);
        return in_flight_;
    }

    /// The most requests that were in flight at once since the server started.
    std::size_t peak_requests_in_flight() const
    {
        std::lock_guard lock(mutex_);
        return peak_in_flight_;
    }

    /// Response body bytes written to sockets so far (objects, listings and error documents;
    /// headers not counted). A write is counted when it completes, which can be just after
    /// the client has read its bytes.
    std::uint64_t body_bytes_sent() const
    {
        std::lock_guard lock(mutex_);
        return body_bytes_sent_;
    }

    /// How many connections are open now.
    std::size_t open_connections() const
    {
        std::lock_guard lock(mutex_);
        return open_connections_;
    }

    /// Exceptions that escaped a connection (a defect of the server; tests can check 0).
    std::size_t internal_errors() const
    {
        std::lock_guard lock(mutex_);
        return internal_errors_;
    }

    /// A copy of every request received so far, in arrival order.
    std::vector<request_record> requests() const
    {
        std::lock_guard lock(mutex_);
        return requests_;
    }

private:
    using tcp = asio::ip::tcp;

    struct object {
        std::shared_ptr<const std::string> bytes;
        std::string etag;
    };

    // The io-thread state of one connection, reachable from close_all() so the destructor
    // can end stalled connections at once.
    struct connection {
        connection(tcp::socket s, std::size_t address)
            : socket(std::move(s)), timer(socket.get_executor()), address_index(address)
        {
        }
        tcp::socket socket;
        asio::steady_timer timer;
        // Which of addresses_ the connection was accepted on.
        std::size_t address_index;
        // The rate cap's schedule: when the body bytes sent so far on this connection are due.
        // Later bodies start from here (or from now, if the connection was idle), so the cap
        // holds across keep-alive requests.
        std::chrono::steady_clock::time_point paced_until{};
    };

    // A parsed request (what the response depends on).
    struct parsed_request {
        request_record record;
        std::string version;
        bool close = false;
        std::size_t content_length = 0;
        bool bad = false;
    };

    // The answer decided under the mutex, sent without it.
    struct answer {
        std::string head;
        std::shared_ptr<const std::string> body;
        std::size_t body_offset = 0;
        std::size_t body_length = 0;
        fault applied;
        bool close = false;
        // The link's shape when the request arrived.
        std::chrono::milliseconds first_byte_latency{0};
        std::size_t rate_limit = 0;
    };

    // Binds the acceptors: 127.0.0.1 on an ephemeral port, then 127.0.0.2, ... on the same
    // port. Another program may hold that port on a later address, so a few ports are tried.
    void listen(std::size_t count)
    {
        for (int attempt = 0;; ++attempt) {
            acceptors_.clear();
            addresses_.clear();
            try {
                for (std::size_t i = 0; i < count; ++i) {
                    std::string address = "127.0.0." + std::to_string(i + 1);
                    acceptors_.emplace_back(io_, tcp::endpoint(asio::ip::make_address_v4(address), i == 0 ? 0 : port_));
                    if (i == 0)
                        port_ = acceptors_.front().local_endpoint().port();
                    addresses_.push_back(std::move(address));
                }
                return;
            } catch (const boost::system::system_error& e) {
                if (e.code() != asio::error::address_in_use || attempt == 20)
                    throw;
            }
        }
    }

    std::size_t address_index(std::string_view address) const
    {
        for (std::size_t i = 0; i < addresses_.size(); ++i)
            if (addresses_[i] == address)
                return i;
        throw std::invalid_argument("fault_server: not listening on " + std::string(address));
    }

    static std::size_t checked_page_cap(std::size_t keys)
    {
        if (keys < 1 || keys > 1000)
            throw std::invalid_argument("fault_server: list_page_cap must be 1 to 1000 (S3's largest page)");
        return keys;
    }

    // Requires mutex_.
    void store(std::string path, std::string bytes)
    {
        ++version_;
        std::string etag = "\"v" + std::to_string(version_) + "-" + std::to_string(bytes.size()) + "\"";
        objects_[std::move(path)] = object{std::make_shared<const std::string>(std::move(bytes)), std::move(etag)};
    }

    void note_exception(std::exception_ptr e)
    {
        if (!e)
            return;
        std::lock_guard lock(mutex_);
        ++internal_errors_;
    }

    // Runs on the io thread.
    void close_all()
    {
        stopping_ = true;
        error_code ignored;
        for (auto& acceptor : acceptors_)
            acceptor.close(ignored);
        for (connection* c : connections_) {
            c->timer.cancel();
            c->socket.close(ignored);
        }
    }

    // Member coroutines use `this`: the destructor joins the thread only after every
    // coroutine has ended, so the server outlives them all.
    asio::awaitable<void> accept_loop(std::size_t index)
    {
        for (;;) {
            auto [ec, socket] = co_await acceptors_[index].async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (stopping_ || ec == asio::error::operation_aborted)
                    co_return;
                continue; // e.g. too many open files: keep listening
            }
            {
                std::lock_guard lock(mutex_);
                ++connections_accepted_;
                ++connections_by_address_[index];
                ++open_connections_;
            }
            asio::co_spawn(io_, serve(std::move(socket), index), [this](std::exception_ptr e) { note_exception(e); });
        }
    }

    asio::awaitable<void> serve(tcp::socket socket, std::size_t address)
    {
        auto conn = std::make_shared<connection>(std::move(socket), address);
        connections_.insert(conn.get());
        struct unregister {
            fault_server* self;
            connection* c;
            ~unregister()
            {
                self->connections_.erase(c);
                std::lock_guard lock(self->mutex_);
                --self->open_connections_;
            }
        } guard{this, conn.get()};
        if (stopping_)
            co_return;
        error_code ignored;
        conn->socket.set_option(tcp::no_delay(true), ignored);

        std::string buf;
        for (;;) {
            auto [ec, n] = co_await asio::async_read_until(conn->socket, asio::dynamic_buffer(buf, max_header_bytes),
                                                           "\r\n\r\n", asio::as_tuple(asio::use_awaitable));
            if (ec)
                co_return;
            parsed_request req = parse(std::string_view(buf).substr(0, n));
            buf.erase(0, n);
            if (req.bad) {
                static const std::string bad = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                co_await asio::async_write(conn->socket, asio::buffer(bad), asio::as_tuple(asio::use_awaitable));
                co_return;
            }
            // A request body (not expected for GET/HEAD) is read and discarded to keep the
            // connection in step.
            if (req.content_length > 0) {
                if (buf.size() < req.content_length) {
                    auto [rec, rn] = co_await asio::async_read(
                        conn->socket, asio::dynamic_buffer(buf),
                        asio::transfer_exactly(req.content_length - buf.size()), asio::as_tuple(asio::use_awaitable));
                    if (rec)
                        co_return;
                }
                buf.erase(0, req.content_length);
            }
            answer a = decide(std::move(req), conn->address_index);
            // In flight from decide() until the answer is sent or the connection ends.
            struct in_flight {
                fault_server* self;
                ~in_flight()
                {
                    std::lock_guard lock(self->mutex_);
                    --self->in_flight_;
                }
            } flight{this};
            if (!co_await send(conn, a))
                co_return;
            if (a.close) {
                conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
                co_return;
            }
        }
    }

    // Parses a request line and headers (ending in the blank line).
    static parsed_request parse(std::string_view text)
    {
        parsed_request req;
        auto line_end = text.find("\r\n");
        std::string_view line = text.substr(0, line_end);
        auto sp1 = line.find(' ');
        auto sp2 = line.rfind(' ');
        if (sp1 == std::string_view::npos || sp2 == sp1) {
            req.bad = true;
            return req;
        }
        req.record.method = std::string(line.substr(0, sp1));
        req.record.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
        req.version = std::string(line.substr(sp2 + 1));
        req.close = req.version != "HTTP/1.1";
        req.record.path = percent_decode(std::string_view(req.record.target).substr(0, req.record.target.find('?')));

        std::size_t pos = line_end + 2;
        while (pos < text.size()) {
            auto end = text.find("\r\n", pos);
            if (end == std::string_view::npos || end == pos)
                break;
            std::string_view h = text.substr(pos, end - pos);
            pos = end + 2;
            auto colon = h.find(':');
            if (colon == std::string_view::npos) {
                req.bad = true;
                return req;
            }
            std::string name(h.substr(0, colon));
            std::string value(trim(h.substr(colon + 1)));
            std::string lower = to_lower(name);
            if (lower == "range")
                req.record.range = value;
            else if (lower == "if-match")
                req.record.if_match = value;
            else if (lower == "connection") {
                std::string v = to_lower(value);
                if (v.find("close") != std::string::npos)
                    req.close = true;
                else if (v.find("keep-alive") != std::string::npos)
                    req.close = false;
            } else if (lower == "content-length") {
                try {
                    req.content_length = std::stoull(value);
                } catch (...) {
                    req.bad = true;
                }
            }
            req.record.headers.emplace_back(std::move(name), std::move(value));
        }
        return req;
    }

    static std::string_view trim(std::string_view s)
    {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
            s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
            s.remove_suffix(1);
        return s;
    }

    static std::string to_lower(std::string_view s)
    {
        std::string out(s);
        for (char& c : out)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return out;
    }

    static int hex_value(char c)
    {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    }

    // %XX sequences decoded; a malformed one is kept as it is; '+' stays '+' (S3 paths).
    static std::string percent_decode(std::string_view s)
    {
        std::string out;
        out.reserve(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '%' && i + 2 < s.size()) {
                int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
                if (hi >= 0 && lo >= 0) {
                    out += static_cast<char>(hi * 16 + lo);
                    i += 2;
                    continue;
                }
            }
            out += s[i];
        }
        return out;
    }

    static std::string xml_escape(std::string_view s)
    {
        std::string out;
        for (char c : s) {
            switch (c) {
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '&': out += "&amp;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default: out += c;
            }
        }
        return out;
    }

    // Form decoding, as S3 reads query values: %XX is a byte and '+' a space.
    static std::string form_decode(std::string_view s)
    {
        std::string out;
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '+') {
                out += ' ';
                continue;
            }
            if (s[i] == '%' && i + 2 < s.size()) {
                int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
                if (hi >= 0 && lo >= 0) {
                    out += static_cast<char>(hi * 16 + lo);
                    i += 2;
                    continue;
                }
            }
            out += s[i];
        }
        return out;
    }

    // The decoded name=value pairs of a target's query, in order.
    static std::vector<std::pair<std::string, std::string>> parse_query(std::string_view target)
    {
        std::vector<std::pair<std::string, std::string>> q;
        auto mark = target.find('?');
        if (mark == std::string_view::npos)
            return q;
        std::string_view rest = target.substr(mark + 1);
        while (!rest.empty()) {
            auto amp = rest.find('&');
            std::string_view part = rest.substr(0, amp);
            rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
            if (part.empty())
                continue;
            auto eq = part.find('=');
            q.emplace_back(form_decode(part.substr(0, eq)),
                           eq == std::string_view::npos ? std::string() : form_decode(part.substr(eq + 1)));
        }
        return q;
    }

    // The bucket a ListObjectsV2 request lists: a GET of "/BUCKET" or "/BUCKET/" with
    // list-type=2; none for any other request.
    static std::optional<std::string> listed_bucket(const request_record& rec)
    {
        if (rec.method != "GET" || rec.path.size() < 2 || rec.path[0] != '/')
            return std::nullopt;
        std::string_view b = std::string_view(rec.path).substr(1);
        if (b.back() == '/')
            b.remove_suffix(1);
        if (b.empty() || b.find('/') != std::string_view::npos)
            return std::nullopt;
        for (const auto& [name, value] : parse_query(rec.target))
            if (name == "list-type" && value == "2")
                return std::string(b);
        return std::nullopt;
    }

    // What encoding-type=url gives: unreserved characters and '/' as they are, a space as
    // '+', every other byte as %XX (S3's form of URL encoding in listings).
    static std::string url_encode(std::string_view s)
    {
        static constexpr char hex[] = "0123456789ABCDEF";
        std::string out;
        for (char c : s) {
            auto u = static_cast<unsigned char>(c);
            if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
                out += c;
            } else if (c == ' ') {
                out += '+';
            } else {
                out += '%';
                out += hex[u >> 4];
                out += hex[u & 15];
            }
        }
        return out;
    }

    static constexpr std::string_view base64_alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    static std::string base64_encode(std::string_view in)
    {
        std::string out;
        std::size_t i = 0;
        for (; i + 2 < in.size(); i += 3) {
            std::uint32_t v = (std::uint32_t(std::uint8_t(in[i])) << 16) | (std::uint32_t(std::uint8_t(in[i + 1])) << 8)
                | std::uint8_t(in[i + 2]);
            for (int k = 18; k >= 0; k -= 6)
                out += base64_alphabet[(v >> k) & 63];
        }
        if (i < in.size()) {
            std::uint32_t v = std::uint32_t(std::uint8_t(in[i])) << 16;
            if (i + 1 < in.size())
                v |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
            out += base64_alphabet[(v >> 18) & 63];
            out += base64_alphabet[(v >> 12) & 63];
            out += i + 1 < in.size() ? base64_alphabet[(v >> 6) & 63] : '=';
            out += '=';
        }
        return out;
    }

    static std::optional<std::string> base64_decode(std::string_view in)
    {
        if (in.size() % 4 != 0)
            return std::nullopt;
        std::string out;
        for (std::size_t i = 0; i < in.size(); i += 4) {
            std::uint32_t v = 0;
            int pad = 0;
            for (std::size_t k = 0; k < 4; ++k) {
                char c = in[i + k];
                std::size_t d = 0;
                if (c == '=' && i + 4 == in.size() && k >= 2) {
                    ++pad;
                } else if (pad > 0 || (d = base64_alphabet.find(c)) == std::string_view::npos) {
                    return std::nullopt;
                }
                v = (v << 6) | static_cast<std::uint32_t>(c == '=' ? 0 : d);
            }
            out += static_cast<char>(v >> 16);
            if (pad < 2)
                out += static_cast<char>((v >> 8) & 0xff);
            if (pad < 1)
                out += static_cast<char>(v & 0xff);
        }
        return out;
    }

    // Continuation tokens: the key the next page starts at (inclusive), behind a marker that
    // tells a token of ours from any other string.
    static constexpr std::string_view token_marker = "fault_server:list:";

    // The smallest string after every string that starts with `prefix`; empty if none is.
    static std::string past_prefix(std::string prefix)
    {
        while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff)
            prefix.pop_back();
        if (!prefix.empty())
            prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
        return prefix;
    }

    // A ListObjectsV2 answer: 200 and the XML, or an error status, S3 code and message.
    struct listing {
        int http_status = 200;
        std::string code;
        std::string body;
    };

    // Requires mutex_. One page of the objects under "/bucket/" that `query` asks for.
    listing list_objects(const std::string& bucket, const std::vector<std::pair<std::string, std::string>>& query) const
    {
        auto fail = [](std::string code, std::string message) {
            return listing{code == "NoSuchBucket" ? 404 : 400, std::move(code), std::move(message)};
        };
        std::string prefix, delimiter, start_after, token;
        std::optional<std::string> max_keys_text;
        bool url = false;
        for (const auto& [name, value] : query) {
            if (name == "prefix")
                prefix = value;
            else if (name == "delimiter")
                delimiter = value;
            else if (name == "start-after")
                start_after = value;
            else if (name == "continuation-token")
                token = value;
            else if (name == "max-keys")
                max_keys_text = value;
            else if (name == "encoding-type") {
                if (value != "url")
                    return fail("InvalidArgument", "Invalid Encoding Method specified in Request");
                url = true;
            }
        }
        std::uint64_t max_keys = 1000;
        if (max_keys_text) {
            auto n = parse_number(*max_keys_text);
            if (!n)
                return fail("InvalidArgument", "Provided max-keys not an integer or within integer range");
            max_keys = std::min<std::uint64_t>(*n, 1000);
        }
        const std::string root = "/" + bucket + "/";
        auto first = objects_.lower_bound(root);
        if (first == objects_.end() || first->first.compare(0, root.size(), root) != 0)
            return fail("NoSuchBucket", "The specified bucket does not exist");

        // Where this page starts: after the token's key, else after start-after, and never
        // before the prefix.
        std::string from = root + prefix;
        if (!token.empty()) {
            auto decoded = base64_decode(token);
            if (!decoded || decoded->compare(0, token_marker.size(), token_marker) != 0)
                return fail("InvalidArgument", "The continuation token provided is incorrect");
            from = std::max(from, root + decoded->substr(token_marker.size()));
        } else if (!start_after.empty()) {
            from = std::max(from, root + start_after + '\0');
        }

        const std::size_t page = static_cast<std::size_t>(std::min<std::uint64_t>(max_keys, list_page_cap_));
        auto field = [&](std::string_view s) { return xml_escape(url ? url_encode(s) : std::string(s)); };
        std::string contents, common;
        std::size_t count = 0;
        std::optional<std::string> next; // where the next page starts, if the listing goes on
        for (auto it = objects_.lower_bound(from); it != objects_.end();) {
            const std::string& path = it->first;
            if (path.compare(0, root.size() + prefix.size(), root + prefix) != 0)
                break;
            std::string key = path.substr(root.size());
            std::size_t cut = delimiter.empty() ? std::string::npos : key.find(delimiter, prefix.size());
            if (count == page || max_keys == 0) {
                if (max_keys != 0)
                    next = key;
                break;
            }
            ++count;
            if (cut != std::string::npos) {
                // Every key under this common prefix is rolled into one entry.
                std::string folded = key.substr(0, cut + delimiter.size());
                common += "<CommonPrefixes><Prefix>" + field(folded) + "</Prefix></CommonPrefixes>";
                std::string after = past_prefix(root + folded);
                if (after.empty())
                    break;
                it = objects_.lower_bound(after);
                continue;
            }
            contents += "<Contents><Key>" + field(key)
                + "</Key><LastModified>2000-01-01T00:00:00.000Z</LastModified><ETag>" + xml_escape(it->second.etag)
                + "</ETag><Size>" + std::to_string(it->second.bytes->size())
                + "</Size><StorageClass>STANDARD</StorageClass></Contents>";
            ++it;
        }

        std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>";
        x += xml_escape(bucket);
        x += "</Name><Prefix>" + field(prefix) + "</Prefix>";
        if (!start_after.empty())
            x += "<StartAfter>" + field(start_after) + "</StartAfter>";
        if (!token.empty())
            x += "<ContinuationToken>" + xml_escape(token) + "</ContinuationToken>";
        if (next)
            x += "<NextContinuationToken>" + base64_encode(std::string(token_marker) + *next) + "</NextContinuationToken>";
        x += "<KeyCount>" + std::to_string(count) + "</KeyCount><MaxKeys>" + std::to_string(max_keys) + "</MaxKeys>";
        if (!delimiter.empty())
            x += "<Delimiter>" + field(delimiter) + "</Delimiter>";
        if (url)
            x += "<EncodingType>url</EncodingType>";
        x += next ? "<IsTruncated>true</IsTruncated>" : "<IsTruncated>false</IsTruncated>";
        x += contents + common + "</ListBucketResult>";
        return listing{200, {}, std::move(x)};
    }

    static std::string_view reason(int status)
    {
        switch (status) {
        case 200: return "OK";
        case 206: return "Partial Content";
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 412: return "Precondition Failed";
        case 416: return "Range Not Satisfiable";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
        default: return "Status";
        }
    }

    // A single byte range: [first, last], or the whole object (`whole`), or unsatisfiable.
    struct byte_range {
        bool whole = true;
        bool unsatisfiable = false;
        std::uint64_t first = 0;
        std::uint64_t last = 0;
    };

    static std::optional<std::uint64_t> parse_number(std::string_view s)
    {
        if (s.empty() || s.size() > 19)
            return std::nullopt;
        std::uint64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9')
                return std::nullopt;
            v = v * 10 + static_cast<std::uint64_t>(c - '0');
        }
        return v;
    }

    // The range a Range header asks of an object of `size` bytes; a header it cannot parse
    // (or a multi-range one) means the whole object.
    static byte_range resolve_range(std::string_view header, std::uint64_t size)
    {
        byte_range r;
        header = trim(header);
        if (header.substr(0, 6) != "bytes=")
            return r;
        std::string_view spec = trim(header.substr(6));
        if (spec.find(',') != std::string_view::npos)
            return r;
        auto dash = spec.find('-');
        if (dash == std::string_view::npos)
            return r;
        auto a = trim(spec.substr(0, dash)), b = trim(spec.substr(dash + 1));
        if (a.empty()) { // suffix: the last n bytes
            auto n = parse_number(b);
            if (!n)
                return r;
            r.whole = false;
            if (*n == 0 || size == 0) {
                r.first = size;
                r.unsatisfiable = true;
                return r;
            }
            r.first = size - std::min(*n, size);
            r.last = size - 1;
            return r;
        }
        auto first = parse_number(a);
        if (!first)
            return r;
        std::optional<std::uint64_t> last;
        if (!b.empty()) {
            last = parse_number(b);
            if (!last || *last < *first)
                return r;
        }
        r.whole = false;
        r.first = *first;
        if (*first >= size) {
            r.unsatisfiable = true;
            return r;
        }
        r.first = *first;
        r.last = last ? std::min(*last, size - 1) : size - 1;
        return r;
    }

    // Requires mutex_. The fault for a request: the script's head if it matches, else a
    // random one, else none.
    fault pick_fault(const request_record& rec, std::uint64_t range_start)
    {
        auto matches = [&](const fault& f) {
            return (f.path.empty() || f.path == rec.path) && range_start >= f.min_offset;
        };
        if (script_next_ < script_.size()) {
            if (matches(script_[script_next_]))
                return script_[script_next_++];
            return fault{};
        }
        if (random_probability_ > 0 && !random_kinds_.empty()) {
            // Drawn by hand rather than with std:: distributions, whose results differ between
            // standard libraries: the same seed gives the same faults everywhere.
            double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
            if (u < random_probability_) {
                const fault& f = random_kinds_[rng_() % random_kinds_.size()];
                if (matches(f))
                    return f;
            }
        }
        return fault{};
    }

    static std::string error_xml(std::string_view code, std::string_view message, std::string_view key,
                                 std::size_t request_id)
    {
        std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>";
        body += xml_escape(code);
        body += "</Code><Message>";
        body += xml_escape(message);
        body += "</Message><Key>";
        // S3 names the key without the bucket; a path without a bucket part is given whole.
        std::string_view k = key.substr(key.empty() ? 0 : 1);
        auto slash = k.find('/');
        body += xml_escape(slash == std::string_view::npos ? k : k.substr(slash + 1));
        body += "</Key><RequestId>";
        body += std::to_string(request_id);
        body += "</RequestId></Error>";
        return body;
    }

    // Runs on the io thread, takes the mutex: records the request and decides the answer.
    answer decide(parsed_request req, std::size_t address)
    {
        std::lock_guard lock(mutex_);
        const std::size_t id = requests_.size() + 1;
        request_record& rec = requests_.emplace_back(std::move(req.record));
        rec.local_address = addresses_[address];
        ++requests_by_address_[address];
        peak_in_flight_ = std::max(peak_in_flight_, ++in_flight_);
        const bool head = rec.method == "HEAD";

        auto obj_it = objects_.find(rec.path);
        // Where the request's range starts, for faults restricted by offset (a missing
        // object counts as infinitely large).
        byte_range asked = resolve_range(
            rec.range, obj_it == objects_.end() ? std::numeric_limits<std::uint64_t>::max() : obj_it->second.bytes->size());
        const std::uint64_t range_start = asked.whole ? 0 : asked.first;

        answer a;
        a.applied = pick_fault(rec, range_start);
        a.close = req.close;
        a.first_byte_latency = first_byte_latency_;
        a.rate_limit = rate_limit_;
        rec.fault = a.applied.kind;
        ++fault_counts_[static_cast<std::size_t>(a.applied.kind)];

        auto head_line = [&](int status) {
            std::string h = "HTTP/1.1 " + std::to_string(status) + " ";
            h += reason(status);
            h += "\r\nx-amz-request-id: " + std::to_string(id) + "\r\n";
            return h;
        };
        auto finish = [&](std::string h, std::string_view type, std::size_t length) {
            h += "Content-Type: ";
            h += type;
            h += "\r\nContent-Length: " + std::to_string(length) + "\r\n";
            if (a.close)
                h += "Connection: close\r\n";
            h += "\r\n";
            return h;
        };
        auto error = [&](int status, std::string_view code, std::string_view message, std::string extra = {}) {
            auto body = std::make_shared<const std::string>(error_xml(code, message, rec.path, id));
            a.head = finish(head_line(status) + extra, "application/xml", body->size());
            if (!head) {
                a.body = body;
                a.body_length = body->size();
            }
            return a;
        };

        if (a.applied.kind == fault_kind::change_object && obj_it != objects_.end()) {
            store(rec.path, a.applied.new_content ? *a.applied.new_content : *obj_it->second.bytes);
            obj_it = objects_.find(rec.path);
        }
        if (a.applied.kind == fault_kind::status)
            return error(a.applied.http_status, a.applied.s3_code, a.applied.message);
        if (rec.method != "GET" && !head)
            return error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
        if (auto bucket = listed_bucket(rec); bucket && !head) {
            auto listing = list_objects(*bucket, parse_query(rec.target));
            if (listing.http_status != 200)
                return error(listing.http_status, listing.code, listing.body);
            auto body = std::make_shared<const std::string>(std::move(listing.body));
            a.head = finish(head_line(200), "application/xml", body->size());
            a.body = body;
            a.body_length = body->size();
            return a;
        }
        if (obj_it == objects_.end())
            return error(404, "NoSuchKey", "The specified key does not exist.");

        const object& obj = obj_it->second;
        const std::uint64_t size = obj.bytes->size();
        std::string common = "ETag: " + obj.etag + "\r\nAccept-Ranges: bytes\r\n";
        if (!rec.if_match.empty() && rec.if_match != "*" && rec.if_match != obj.etag)
            return error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                         common);

        byte_range r = ignore_ranges_ ? byte_range{} : resolve_range(rec.range, size);
        if (r.unsatisfiable)
            return error(416, "InvalidRange", "The requested range is not satisfiable",
                         common + "Content-Range: bytes */" + std::to_string(size) + "\r\n");

        const bool range_fault = a.applied.kind == fault_kind::wrong_content_range
            || a.applied.kind == fault_kind::missing_content_range;
        std::uint64_t first = r.whole ? 0 : r.first;
        std::uint64_t length = r.whole ? size : r.last - r.first + 1;
        std::string h;
        if (r.whole && !(range_fault && size > 0)) {
            h = head_line(200) + common;
        } else {
            h = head_line(206) + common;
            if (a.applied.kind != fault_kind::missing_content_range) {
                std::uint64_t shown = first;
                if (a.applied.kind == fault_kind::wrong_content_range)
                    shown = first + length < size ? first + 1 : (first > 0 ? first - 1 : first + 1);
                h += "Content-Range: bytes " + std::to_string(shown) + "-" + std::to_string(shown + length - 1) + "/"
                    + (content_range_total_ ? std::to_string(size) : std::string("*")) + "\r\n";
            }
        }
        h += "Last-Modified: Sat, 01 Jan 2000 00:00:00 GMT\r\n";
        a.head = finish(std::move(h), "application/octet-stream", length);
        if (!head) {
            a.body = obj.bytes;
            a.body_offset = first;
            a.body_length = length;
        }
        return a;
    }

    // Waits `t` on the connection's timer, or less if the client closes its end. Returns
    // false if the connection is to be closed (client gone, or the server stopping).
    asio::awaitable<bool> stall_for(std::shared_ptr<connection> conn, std::chrono::milliseconds t)
    {
        using namespace asio::experimental::awaitable_operators;
        conn->timer.expires_after(t);
        auto r = co_await (conn->timer.async_wait(asio::as_tuple(asio::use_awaitable))
                           || conn->socket.async_wait(tcp::socket::wait_read, asio::as_tuple(asio::use_awaitable)));
        if (r.index() == 0)
            co_return !stopping_;
        auto [ec] = std::get<1>(r);
        error_code avail_ec;
        if (ec || conn->socket.available(avail_ec) == 0 || avail_ec)
            co_return false; // readable with nothing to read: the client closed its end
        // The client sent more (a pipelined request): that is no reason to end the stall.
        co_await conn->timer.async_wait(asio::as_tuple(asio::use_awaitable));
        co_return !stopping_;
    }

    // Sends the head and body of `a`, with its fault. Returns false if the connection ends.
    asio::awaitable<bool> send(std::shared_ptr<connection> conn, const answer& a)
    {
        const fault& f = a.applied;
        error_code ignored;
        // The first-byte latency waits on this connection's own timer, so the waits of
        // concurrent connections overlap instead of queueing.
        if (a.first_byte_latency.count() > 0 && !co_await stall_for(conn, a.first_byte_latency))
            co_return false;
        if (f.kind == fault_kind::stall && f.before_headers && !co_await stall_for(conn, f.duration))
            co_return false;

        // Where the body stops and what then happens.
        std::size_t stop_at = a.body_length;
        if (f.kind == fault_kind::drop_after)
            stop_at = std::min(f.bytes, a.body_length);
        else if (f.kind == fault_kind::short_body)
            stop_at = f.bytes == fault::npos ? a.body_length / 2 : std::min(f.bytes, a.body_length);
        const bool cut = f.kind == fault_kind::drop_after || f.kind == fault_kind::short_body;
        std::optional<std::size_t> stall_at;
        if (f.kind == fault_kind::stall && !f.before_headers)
            stall_at = std::min(f.bytes, a.body_length);
        const std::size_t bps = f.kind == fault_kind::trickle ? f.bytes_per_second : 0;

        auto [hec, hn] = co_await asio::async_write(conn->socket, asio::buffer(a.head), asio::as_tuple(asio::use_awaitable));
        if (hec)
            co_return false;

        const char* data = a.body ? a.body->data() + a.body_offset : nullptr;
        std::size_t sent = 0;
        const auto start = std::chrono::steady_clock::now();
        // Read again after every chunk, so that a cap set while a body is under way applies to it.
        std::size_t cap = a.rate_limit;
        bool paced = false;
        for (;;) {
            if (stall_at && sent == *stall_at) {
                stall_at.reset();
                if (!co_await stall_for(conn, f.duration))
                    co_return false;
            }
            if (sent >= stop_at)
                break;
            std::size_t n = std::min(write_chunk, stop_at - sent);
            if (stall_at)
                n = std::min(n, *stall_at - sent);
            if (bps) {
                // Small slices, each sent no sooner than its last byte is due, so the whole
                // body takes at least size / bps.
                n = std::min(n, std::max<std::size_t>(bps / 50, 1));
                auto due = start + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                       static_cast<double>(sent + n) * 1e9 / static_cast<double>(bps)));
                conn->timer.expires_at(due);
                co_await conn->timer.async_wait(asio::as_tuple(asio::use_awaitable));
                if (stopping_)
                    co_return false;
            }
            if (cap && !paced) {
                // Pacing starts where the connection's schedule left off, or now if it fell
                // idle; from there the schedule is absolute, so timer lateness does not add up.
                conn->paced_until = std::max(conn->paced_until, std::chrono::steady_clock::now());
                paced = true;
            } else if (!cap) {
                paced = false;
            }
            if (cap) {
                // Chunks of at most 1/50 s of the cap, each sent when its last byte is due: a
                // body of size s takes at least s / cap, with one timed wait per chunk.
                n = std::min({n, paced_chunk, std::max<std::size_t>(cap / 50, 1)});
                conn->paced_until += std::chrono::nanoseconds(
                    static_cast<std::int64_t>(static_cast<double>(n) * 1e9 / static_cast<double>(cap)));
                conn->timer.expires_at(conn->paced_until);
                co_await conn->timer.async_wait(asio::as_tuple(asio::use_awaitable));
                if (stopping_)
                    co_return false;
            }
            auto [wec, wn] = co_await asio::async_write(conn->socket, asio::buffer(data + sent, n),
                                                       asio::as_tuple(asio::use_awaitable));
            {
                std::lock_guard lock(mutex_);
                body_bytes_sent_ += wn;
                cap = rate_limit_;
            }
            if (wec)
                co_return false;
            sent += n;
        }
        if (cut) {
            if (f.kind == fault_kind::drop_after && f.reset)
                conn->socket.set_option(asio::socket_base::linger(true, 0), ignored);
            else
                conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
            conn->socket.close(ignored);
            co_return false;
        }
        co_return true;
    }

    static constexpr std::size_t max_header_bytes = 64 * 1024;

    asio::io_context io_;
    std::vector<tcp::acceptor> acceptors_;
    // Set by the constructor, constant after.
    std::vector<std::string> addresses_;
    unsigned short port_ = 0;

    // io-thread only.
    std::set<connection*> connections_;
    bool stopping_ = false;

    mutable std::mutex mutex_;
    // Guarded by mutex_.
    std::map<std::string, object> objects_;
    std::uint64_t version_ = 0;
    std::vector<fault> script_;
    std::size_t script_next_ = 0;
    double random_probability_ = 0;
    std::vector<fault> random_kinds_;
    std::mt19937_64 rng_;
    std::array<std::size_t, fault_kind_count> fault_counts_{};
    std::vector<request_record> requests_;
    std::size_t connections_accepted_ = 0;
    std::size_t open_connections_ = 0;
    std::size_t internal_errors_ = 0;
    std::vector<std::size_t> connections_by_address_;
    std::vector<std::size_t> requests_by_address_;
    std::size_t in_flight_ = 0;
    std::size_t peak_in_flight_ = 0;
    std::uint64_t body_bytes_sent_ = 0;
    std::size_t rate_limit_ = 0;
    std::chrono::milliseconds first_byte_latency_{0};
    std::size_t list_page_cap_ = 1000;
    bool content_range_total_ = true;
    bool ignore_ranges_ = false;

    std::thread thread_;
};

} // namespace pipemode::test
