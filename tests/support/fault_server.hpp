// Test support: an HTTP/1.1 object server on 127.0.0.1 that serves objects from memory with
// Range support, answers like S3 (ETag, If-Match, XML errors) and injects faults on request.
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

/// An HTTP/1.1 object server on 127.0.0.1 (ephemeral port) for network tests: objects from
/// memory with single byte ranges, ETag, If-Match and S3-style XML errors, keep-alive, and
/// faults injected from a script and/or at random.
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

    /// Starts listening on 127.0.0.1, port 0, and serving on a new thread.
    fault_server()
        : acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0))
    {
        port_ = acceptor_.local_endpoint().port();
        asio::co_spawn(io_, accept_loop(), [this](std::exception_ptr e) { note_exception(e); });
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
        explicit connection(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
        tcp::socket socket;
        asio::steady_timer timer;
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
    };

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
        acceptor_.close(ignored);
        for (connection* c : connections_) {
            c->timer.cancel();
            c->socket.close(ignored);
        }
    }

    // Member coroutines use `this`: the destructor joins the thread only after every
    // coroutine has ended, so the server outlives them all.
    asio::awaitable<void> accept_loop()
    {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (stopping_ || ec == asio::error::operation_aborted)
                    co_return;
                continue; // e.g. too many open files: keep listening
            }
            {
                std::lock_guard lock(mutex_);
                ++connections_accepted_;
                ++open_connections_;
            }
            asio::co_spawn(io_, serve(std::move(socket)), [this](std::exception_ptr e) { note_exception(e); });
        }
    }

    asio::awaitable<void> serve(tcp::socket socket)
    {
        auto conn = std::make_shared<connection>(std::move(socket));
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
            answer a = decide(std::move(req));
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
    answer decide(parsed_request req)
    {
        std::lock_guard lock(mutex_);
        const std::size_t id = requests_.size() + 1;
        request_record& rec = requests_.emplace_back(std::move(req.record));
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
        if (obj_it == objects_.end())
            return error(404, "NoSuchKey", "The specified key does not exist.");

        const object& obj = obj_it->second;
        const std::uint64_t size = obj.bytes->size();
        std::string common = "ETag: " + obj.etag + "\r\nAccept-Ranges: bytes\r\n";
        if (!rec.if_match.empty() && rec.if_match != "*" && rec.if_match != obj.etag)
            return error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                         common);

        byte_range r = resolve_range(rec.range, size);
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
                    + std::to_string(size) + "\r\n";
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
            auto [wec, wn] = co_await asio::async_write(conn->socket, asio::buffer(data + sent, n),
                                                       asio::as_tuple(asio::use_awaitable));
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
    tcp::acceptor acceptor_;
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

    std::thread thread_;
};

} // namespace pipemode::test
