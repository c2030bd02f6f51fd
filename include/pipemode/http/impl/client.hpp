// pipemode: definitions of client.hpp. Included at the bottom of client.hpp only.
#pragma once

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

#include <poll.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <mutex>
#include <stdexcept>

namespace pipemode::http {

namespace detail {

class curl_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "curl"; }
    std::string message(int ev) const override { return curl_easy_strerror(static_cast<CURLcode>(ev)); }
};

inline bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i]))
            return false;
    }
    return true;
}

inline std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

inline bool parse_u64(std::string_view s, std::uint64_t& out) noexcept
{
    if (s.empty())
        return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

/// libcurl's process-wide initialisation, done once before the first handle is made.
inline void global_init()
{
    static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        throw std::runtime_error(std::string("pipemode::http: libcurl failed to initialise: ")
                                 + curl_easy_strerror(rc));
}

/// A host's addresses as `--resolve` wants them: IPv6 in brackets.
inline std::string resolve_form(const asio::ip::address& a)
{
    return a.is_v6() ? '[' + a.to_string() + ']' : a.to_string();
}

/// An entry of `client_options::resolve`, checked.
struct fixed_addresses {
    std::string host;
    std::string port;
    std::vector<std::string> addresses;  ///< in resolve_form
};

/// Parses "HOST:PORT:ADDR[,ADDR...]"; throws `std::invalid_argument` saying the expected form.
inline fixed_addresses parse_resolve_entry(std::string_view entry)
{
    const auto refuse = [&](std::string_view why) {
        throw std::invalid_argument("pipemode::http: client_options::resolve entry \"" + std::string(entry)
                                    + "\" " + std::string(why)
                                    + "; the form is HOST:PORT:ADDR[,ADDR...], for example "
                                      "\"s3.test:9000:127.0.0.1,127.0.0.2\"");
    };
    const auto c1 = entry.find(':');
    const auto c2 = c1 == std::string_view::npos ? c1 : entry.find(':', c1 + 1);
    if (c2 == std::string_view::npos)
        refuse("has fewer than three fields");
    fixed_addresses out;
    out.host = std::string(entry.substr(0, c1));
    if (out.host.empty())
        refuse("has no host name");
    const std::string_view port = entry.substr(c1 + 1, c2 - c1 - 1);
    std::uint64_t n = 0;
    if (!parse_u64(port, n) || n == 0 || n > 65535)
        refuse("has no port number from 1 to 65535");
    out.port = std::to_string(n);
    std::string_view rest = entry.substr(c2 + 1);
    for (;;) {
        const auto comma = rest.find(',');
        std::string_view text = rest.substr(0, comma);
        if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
            text = text.substr(1, text.size() - 2);
        error_code ec;
        const auto address = asio::ip::make_address(std::string(text), ec);
        if (ec)
            refuse("has \"" + std::string(text) + "\" where an IP address belongs");
        out.addresses.push_back(resolve_form(address));
        if (comma == std::string_view::npos)
            break;
        rest.remove_prefix(comma + 1);
    }
    return out;
}

/// The host (as written, brackets removed from IPv6) and port (the scheme's default when
/// absent) of an absolute URL, by libcurl's own parser; nothing when it cannot tell, and
/// libcurl then reports the URL's fault when the transfer starts.
inline std::optional<std::pair<std::string, std::string>> url_host_port(const std::string& url)
{
    CURLU* u = curl_url();
    if (!u)
        return std::nullopt;
    char* host = nullptr;
    char* port = nullptr;
    std::optional<std::pair<std::string, std::string>> out;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        std::string_view h(host);
        if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
            h = h.substr(1, h.size() - 2);
        out.emplace(std::string(h), std::string(port));
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}

/// The address book's key: host names are case-blind.
inline std::string host_key(std::string_view host, std::string_view port)
{
    std::string key;
    key.reserve(host.size() + port.size() + 1);
    for (char c : host)
        key += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
    key += ':';
    key += port;
    return key;
}

} // namespace detail

inline client_share::client_share()
{
    detail::global_init();
    share_ = curl_share_init();
    if (!share_)
        throw std::runtime_error("pipemode::http: curl_share_init failed");
    CURLSHcode rc = CURLSHE_OK;
    auto set = [&](CURLSHoption opt, auto value) {
        if (rc == CURLSHE_OK)
            rc = curl_share_setopt(share_, opt, value);
    };
    set(CURLSHOPT_LOCKFUNC, &client_share::lock);
    set(CURLSHOPT_UNLOCKFUNC, &client_share::unlock);
    set(CURLSHOPT_USERDATA, static_cast<void*>(this));
    set(CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    set(CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    if (rc != CURLSHE_OK) {
        (void)curl_share_cleanup(share_);  // unused yet, so it cannot be in use
        throw std::runtime_error(std::string("pipemode::http: configuring libcurl's share failed: ")
                                 + curl_share_strerror(rc));
    }
}

inline client_share::~client_share()
{
    // Every client holds the share by shared_ptr and frees its easy handles before letting
    // go, so the share is no longer in use here. Were it still (CURLSHE_IN_USE), libcurl keeps
    // it, and leaking it is safer than freeing what a handle still points to.
    const CURLSHcode rc = curl_share_cleanup(share_);
    (void)rc;
    assert(rc == CURLSHE_OK);
}

// A lock callback cannot report a failure to libcurl; std::mutex::lock only throws on a
// misuse such as locking twice from one thread, which noexcept turns into std::terminate.
inline void client_share::lock(CURL*, curl_lock_data data, curl_lock_access, void* userp) noexcept
{
    static_cast<client_share*>(userp)->locks_[static_cast<std::size_t>(data)].lock();
}

inline void client_share::unlock(CURL*, curl_lock_data data, void* userp) noexcept
{
    static_cast<client_share*>(userp)->locks_[static_cast<std::size_t>(data)].unlock();
}

inline const boost::system::error_category& curl_category() noexcept
{
    static const detail::curl_category_impl instance;
    return instance;
}

inline failure_kind classify_transport(const error_code& ec) noexcept
{
    if (ec.category() != curl_category())
        return failure_kind::connection_lost;
    switch (static_cast<CURLcode>(ec.value())) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return failure_kind::connect;
    case CURLE_OPERATION_TIMEDOUT:
        return failure_kind::timeout;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
        return failure_kind::client_error;  // permanent: retrying cannot help
    default:
        return failure_kind::connection_lost;  // reset, closed early, bad chunking, ...
    }
}

inline std::optional<content_range> parse_content_range(std::string_view value) noexcept
{
    value = detail::trim(value);
    constexpr std::string_view unit = "bytes ";
    if (value.size() < unit.size() || !detail::iequals(value.substr(0, unit.size()), unit))
        return std::nullopt;
    value.remove_prefix(unit.size());
    const auto slash = value.find('/');
    if (slash == std::string_view::npos)
        return std::nullopt;
    const std::string_view span = value.substr(0, slash);
    const std::string_view total = value.substr(slash + 1);
    content_range r;
    if (total != "*") {
        std::uint64_t n = 0;
        if (!detail::parse_u64(total, n))
            return std::nullopt;
        r.complete = n;
    }
    if (span == "*") {
        if (!r.complete)
            return std::nullopt;  // "bytes */*" says nothing
        r.unsatisfied = true;
        return r;
    }
    const auto dash = span.find('-');
    if (dash == std::string_view::npos || !detail::parse_u64(span.substr(0, dash), r.first)
        || !detail::parse_u64(span.substr(dash + 1), r.last) || r.last < r.first
        || (r.complete && r.last >= *r.complete))
        return std::nullopt;
    return r;
}

/// The client's state. Owned by `client` through a shared_ptr so that Asio handlers still
/// queued when the client goes away can tell (they hold a weak_ptr and do nothing).
struct client::impl : std::enable_shared_from_this<client::impl> {
    /// A socket curl uses: opened by us through curl's open-socket callback (an Asio TCP
    /// socket), or, rarely, one curl made itself (a resolver's wake-up pipe), which we only
    /// watch and never close.
    struct socket_entry {
        curl_socket_t fd = CURL_SOCKET_BAD;
        std::optional<asio::ip::tcp::socket> owned;
        std::optional<asio::posix::stream_descriptor> foreign;
        int want = 0;  ///< CURL_POLL_IN / CURL_POLL_OUT bits curl asked for
        bool read_pending = false;
        bool write_pending = false;
        bool closed = false;

        template <class Handler>
        void async_wait(bool read, Handler&& h)
        {
            if (owned)
                owned->async_wait(read ? asio::socket_base::wait_read : asio::socket_base::wait_write,
                                  std::forward<Handler>(h));
            else
                foreign->async_wait(read ? asio::posix::descriptor_base::wait_read
                                         : asio::posix::descriptor_base::wait_write,
                                    std::forward<Handler>(h));
        }

        /// Closes (owned) or lets go of (foreign) the descriptor; pending waits complete with
        /// `operation_aborted` and see `closed`.
        void close() noexcept
        {
            closed = true;
            error_code ignored;
            if (owned)
                owned->close(ignored);
            if (foreign) {
                foreign->cancel(ignored);
                (void)foreign->release();
            }
        }
    };

    /// One transfer in flight.
    struct transfer {
        CURL* easy = nullptr;
        curl_slist* headers = nullptr;
        /// The `CURLOPT_RESOLVE` line that puts this transfer's host on its turn of addresses;
        /// libcurl reads it when the transfer starts.
        curl_slist* resolve = nullptr;
        response_handler* handler = nullptr;
        completion_ptr completion;
        asio::cancellation_slot slot;
        response_head head;
        bool head_delivered = false;
        transfer_info info;
        /// What a callback of this transfer threw (it then failed the transfer).
        std::exception_ptr exception;
        std::array<char, CURL_ERROR_SIZE> error_buffer{};

        ~transfer()
        {
            if (easy)
                curl_easy_cleanup(easy);
            if (headers)
                curl_slist_free_all(headers);
            if (resolve)
                curl_slist_free_all(resolve);
        }
    };

    /// What the client knows of one host name and port: the addresses to spread connections
    /// over, and whose turn is next.
    struct host_entry {
        std::string host;  ///< as the URL spells it: libcurl matches the resolve line on it
        std::string port;
        std::vector<std::string> addresses;  ///< in detail::resolve_form; empty before the first answer
        std::size_t next = 0;
        bool fixed = false;  ///< from client_options::resolve: never looked up
        bool resolving = false;
        std::chrono::steady_clock::time_point resolved_at{};
        /// Destroyed with the client, which cancels a lookup in progress.
        std::optional<asio::ip::tcp::resolver> resolver;
    };

    /// A transfer that waits for its host's first DNS answer before it goes to libcurl.
    struct waiting_transfer {
        std::unique_ptr<transfer> t;
        std::string key;
    };

    impl(asio::any_io_executor ex, client_options o) : executor(ex), options(std::move(o)), timer(ex)
    {
        detail::global_init();
        for (const auto& line : options.resolve) {
            auto fixed = detail::parse_resolve_entry(line);
            auto e = std::make_shared<host_entry>();
            e->host = fixed.host;
            e->port = fixed.port;
            e->addresses = std::move(fixed.addresses);
            e->fixed = true;
            hosts[detail::host_key(fixed.host, fixed.port)] = std::move(e);
        }
        multi = curl_multi_init();
        if (!multi)
            throw std::runtime_error("pipemode::http: curl_multi_init failed");
        CURLMcode rc = CURLM_OK;
        auto set = [&](CURLMoption opt, auto value) {
            if (rc == CURLM_OK)
                rc = curl_multi_setopt(multi, opt, value);
        };
        set(CURLMOPT_SOCKETFUNCTION, &impl::on_socket);
        set(CURLMOPT_SOCKETDATA, static_cast<void*>(this));
        set(CURLMOPT_TIMERFUNCTION, &impl::on_timer);
        set(CURLMOPT_TIMERDATA, static_cast<void*>(this));
        set(CURLMOPT_MAXCONNECTS, static_cast<long>(options.max_idle_connections));
        // One request per connection at a time: ranged GETs run in parallel on separate
        // connections, never queued behind each other on one.
        set(CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_NOTHING));
        if (rc != CURLM_OK) {
            curl_multi_cleanup(multi);
            throw std::runtime_error(std::string("pipemode::http: configuring libcurl's multi handle failed: ")
                                     + curl_multi_strerror(rc));
        }
    }

    ~impl()
    {
        // Every transfer still in flight completes with operation_aborted (posted, so no
        // handler runs inside this destructor).
        auto in_flight = std::move(transfers);
        for (auto& [easy, t] : in_flight) {
            curl_multi_remove_handle(multi, easy);
            finish(std::move(t), asio::error::operation_aborted);
        }
        for (auto& w : std::exchange(waiting, {}))
            finish(std::move(w.t), asio::error::operation_aborted);
        timer.cancel();
        // Closes the cached connections through on_close_socket, which needs `sockets`.
        curl_multi_cleanup(multi);
        for (auto& [fd, entry] : sockets)
            entry->close();
        sockets.clear();
    }

    // ----- starting, finishing and cancelling transfers -----------------------------------

    void start(request req, response_handler& handler, completion_ptr completion, asio::cancellation_slot slot)
    {
        auto t = std::make_unique<transfer>();
        t->completion = std::move(completion);
        t->handler = &handler;
        t->easy = curl_easy_init();
        if (!t->easy) {
            finish(std::move(t), make_curl_error(CURLE_OUT_OF_MEMORY));
            return;
        }
        if (const CURLcode rc = configure(*t, req); rc != CURLE_OK) {
            finish(std::move(t), make_curl_error(rc));
            return;
        }
        CURL* easy = t->easy;
        if (slot.is_connected()) {
            t->slot = slot;
            slot.assign([weak = weak_from_this(), easy](asio::cancellation_type) {
                if (auto self = weak.lock())
                    self->cancel(easy);
            });
        }
        route(std::move(t), req.url);
    }

    // ----- addresses --------------------------------------------------------------------------

    /// Sends `t` to libcurl on its host's next address, or parks it until the host's first
    /// DNS answer. IP literals, URLs libcurl's parser refuses (it then says why) and hosts
    /// with one looked-up address go as they are.
    void route(std::unique_ptr<transfer> t, const std::string& url)
    {
        const auto host_port = detail::url_host_port(url);
        if (!host_port) {
            add(std::move(t));
            return;
        }
        const auto& [host, port] = *host_port;
        std::string key = detail::host_key(host, port);
        auto it = hosts.find(key);
        if (it == hosts.end()) {
            error_code not_literal;
            (void)asio::ip::make_address(host, not_literal);
            if (!not_literal) {
                add(std::move(t));
                return;
            }
            auto e = std::make_shared<host_entry>();
            e->host = host;
            e->port = port;
            it = hosts.emplace(key, std::move(e)).first;
        }
        auto entry = it->second;
        if (!entry->fixed && !entry->resolving
            && (entry->addresses.empty()
                || std::chrono::steady_clock::now() - entry->resolved_at >= options.address_refresh))
            look_up(key, entry);
        if (entry->addresses.empty()) {
            waiting.push_back({std::move(t), std::move(key)});
            return;
        }
        assign_address(std::move(t), *entry);
    }

    /// Resolves `entry`'s host on the client's executor (Asio's resolver runs getaddrinfo
    /// off this thread), then sends the transfers that waited for it.
    ///
    /// The handler holds the key, not the entry: the entry owns the resolver, and a handler
    /// that kept the entry alive would keep the lookup from being cancelled with the client.
    /// Only `resolved` removes an entry, so the key still names this one when it runs.
    /// AI_ADDRCONFIG is left out: it hides loopback addresses on a host with no other network.
    void look_up(const std::string& key, const std::shared_ptr<host_entry>& entry)
    {
        entry->resolving = true;
        if (!entry->resolver)
            entry->resolver.emplace(executor);
        entry->resolver->async_resolve(
            entry->host, entry->port, asio::ip::resolver_base::numeric_service,
            [weak = weak_from_this(), key](error_code ec, asio::ip::tcp::resolver::results_type results) {
                if (ec == asio::error::operation_aborted)
                    return;  // the client is going away
                if (auto self = weak.lock())
                    if (auto it = self->hosts.find(key); it != self->hosts.end())
                        self->resolved(key, it->second, ec, results);
            });
    }

    void resolved(const std::string& key, std::shared_ptr<host_entry> held, error_code ec,
                  const asio::ip::tcp::resolver::results_type& results)
    {
        host_entry& entry = *held;  // `held` keeps it alive past hosts.erase below
        entry.resolving = false;
        entry.resolved_at = std::chrono::steady_clock::now();
        std::vector<std::string> addresses;
        if (!ec)
            for (const auto& r : results) {
                std::string a = detail::resolve_form(r.endpoint().address());
                // getaddrinfo repeats an address once per socket type it could serve.
                if (std::find(addresses.begin(), addresses.end(), a) == addresses.end())
                    addresses.push_back(std::move(a));
            }
        // A failed refresh keeps the addresses it had; a failed first lookup leaves the waiting
        // transfers to libcurl's own resolver, which reports the failure as it always did.
        if (!addresses.empty())
            entry.addresses = std::move(addresses);
        std::vector<std::unique_ptr<transfer>> ready;
        for (auto it = waiting.begin(); it != waiting.end();) {
            if (it->key == key) {
                ready.push_back(std::move(it->t));
                it = waiting.erase(it);
            } else {
                ++it;
            }
        }
        const bool known = !entry.addresses.empty();
        if (!known)
            hosts.erase(key);  // the next transfer asks again
        for (auto& t : ready) {
            if (known)
                assign_address(std::move(t), entry);
            else
                add(std::move(t));
        }
    }

    /// Gives `t` the entry's next address first and the others after it, in turn, so that a
    /// new connection goes to that address and falls back to the rest if it refuses. libcurl
    /// matches idle connections by host name, not address, so reuse is unaffected. One
    /// looked-up address is left to libcurl, as before; a fixed one must be given.
    void assign_address(std::unique_ptr<transfer> t, host_entry& entry)
    {
        const std::size_t n = entry.addresses.size();
        if (n < 2 && !entry.fixed) {
            add(std::move(t));
            return;
        }
        const std::size_t first = entry.next++ % n;
        std::string line = entry.host + ':' + entry.port + ':';
        for (std::size_t i = 0; i < n; ++i) {
            if (i > 0)
                line += ',';
            line += entry.addresses[(first + i) % n];
        }
        t->resolve = curl_slist_append(nullptr, line.c_str());
        const CURLcode rc = t->resolve ? curl_easy_setopt(t->easy, CURLOPT_RESOLVE, t->resolve) : CURLE_OUT_OF_MEMORY;
        if (rc != CURLE_OK) {
            finish(std::move(t), make_curl_error(rc));
            return;
        }
        add(std::move(t));
    }

    /// Hands `t` to the multi handle.
    void add(std::unique_ptr<transfer> t)
    {
        CURL* easy = t->easy;
        transfers.emplace(easy, std::move(t));
        ++in_curl;
        const CURLMcode mrc = curl_multi_add_handle(multi, easy);
        --in_curl;
        if (mrc != CURLM_OK) {
            auto node = transfers.extract(easy);
            node.mapped()->info.detail = curl_multi_strerror(mrc);
            finish(std::move(node.mapped()), make_curl_error(CURLE_FAILED_INIT));
        }
        if (callback_error)  // the timer callback failed inside curl_multi_add_handle
            fail_all(make_curl_error(CURLE_ABORTED_BY_CALLBACK), "a libcurl callback failed",
                     std::exchange(callback_error, nullptr));
        // curl_multi_add_handle asked for a zero timeout through on_timer; the transfer starts
        // when that timer fires, outside any curl call.
    }

    CURLcode configure(transfer& t, const request& req)
    {
        CURL* e = t.easy;
        CURLcode rc = CURLE_OK;
        auto set = [&](CURLoption opt, auto value) {
            if (rc == CURLE_OK)
                rc = curl_easy_setopt(e, opt, value);
        };
        set(CURLOPT_URL, req.url.c_str());
        set(CURLOPT_PRIVATE, static_cast<void*>(&t));
        set(CURLOPT_ERRORBUFFER, t.error_buffer.data());
        set(CURLOPT_NOSIGNAL, 1L);
        set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
        set(CURLOPT_PROTOCOLS_STR, "http,https");
        set(CURLOPT_FOLLOWLOCATION, 0L);
        set(CURLOPT_BUFFERSIZE, static_cast<long>(options.receive_buffer));
        set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
        set(CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options.low_speed_limit));
        set(CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.low_speed_time.count()));
        if (req.timeout.count() > 0)
            set(CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
        set(CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
        set(CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
        if (!options.ca_file.empty())
            set(CURLOPT_CAINFO, options.ca_file.c_str());
        set(CURLOPT_HEADERFUNCTION, &impl::on_header);
        set(CURLOPT_HEADERDATA, static_cast<void*>(&t));
        set(CURLOPT_WRITEFUNCTION, &impl::on_write);
        set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
        set(CURLOPT_OPENSOCKETFUNCTION, &impl::on_open_socket);
        set(CURLOPT_OPENSOCKETDATA, static_cast<void*>(this));
        set(CURLOPT_CLOSESOCKETFUNCTION, &impl::on_close_socket);
        set(CURLOPT_CLOSESOCKETDATA, static_cast<void*>(this));
        if (options.share)
            set(CURLOPT_SHARE, options.share->native_handle());
        if (req.method == "HEAD") {
            set(CURLOPT_NOBODY, 1L);
        } else if (req.method != "GET") {
            set(CURLOPT_CUSTOMREQUEST, req.method.c_str());
            if (req.body.empty()) {
                // An empty body, sent with Content-Length: 0 (the metadata service's token PUT).
                set(CURLOPT_POSTFIELDS, "");
                set(CURLOPT_POSTFIELDSIZE, 0L);
            } else {
                // Copied: `req` does not outlive this call. The size first, so that curl copies
                // exactly that many bytes (a body may hold '\0').
                set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
                set(CURLOPT_COPYPOSTFIELDS, req.body.data());
            }
        }
        for (const auto& [name, value] : req.headers) {
            // "Name;" is curl's way to send a header with an empty value.
            const std::string line = value.empty() ? name + ';' : name + ": " + value;
            curl_slist* next = curl_slist_append(t.headers, line.c_str());
            if (!next)
                return CURLE_OUT_OF_MEMORY;
            t.headers = next;
        }
        // No "Expect: 100-continue" round trip, and no Accept header curl would invent.
        for (const char* line : {"Expect:", "Accept:"}) {
            curl_slist* next = curl_slist_append(t.headers, line);
            if (!next)
                return CURLE_OUT_OF_MEMORY;
            t.headers = next;
        }
        set(CURLOPT_HTTPHEADER, t.headers);
        return rc;
    }

    /// Completes `t` (already out of the multi handle) with `ec`, on the client's executor.
    void finish(std::unique_ptr<transfer> t, error_code ec)
    {
        if (t->slot.is_connected())
            t->slot.clear();
        if (ec && ec != asio::error::operation_aborted && t->info.detail.empty() && t->error_buffer[0] != '\0')
            t->info.detail = t->error_buffer.data();
        if (t->exception)
            t->info.exception = t->exception;
        auto completion = std::move(t->completion);
        auto info = std::move(t->info);
        t.reset();  // curl_easy_cleanup, before anyone can start a new transfer in its place
        completion->post(ec, std::move(info));
    }

    void cancel(CURL* easy)
    {
        if (in_curl > 0) {
            // Cancelled from inside a libcurl callback (a response handler emitted the
            // signal): removing the handle now would re-enter libcurl.
            asio::post(executor, [weak = weak_from_this(), easy] {
                if (auto self = weak.lock())
                    self->cancel(easy);
            });
            return;
        }
        if (auto w = std::find_if(waiting.begin(), waiting.end(), [&](auto& x) { return x.t->easy == easy; });
            w != waiting.end()) {
            auto t = std::move(w->t);
            waiting.erase(w);
            finish(std::move(t), asio::error::operation_aborted);
            return;
        }
        auto node = transfers.extract(easy);
        if (node.empty())
            return;  // already finished
        remove_handle(*node.mapped());
        finish(std::move(node.mapped()), asio::error::operation_aborted);
    }

    /// Takes a transfer's handle out of the multi handle. A failure (which would mean a bug in
    /// the client's bookkeeping) is kept in the transfer's details, not lost.
    void remove_handle(transfer& t) noexcept
    {
        ++in_curl;
        const CURLMcode rc = curl_multi_remove_handle(multi, t.easy);
        --in_curl;
        if (rc != CURLM_OK && t.info.detail.empty())
            t.info.detail = std::string("curl_multi_remove_handle: ") + curl_multi_strerror(rc);
    }

    /// Fails every transfer in flight with `ec`: what a multi handle whose state can no longer
    /// be trusted (a failed curl_multi_socket_action, or a callback that threw outside any
    /// transfer) leaves to do. The exception, if any, goes with each transfer's completion.
    void fail_all(error_code ec, const std::string& detail, std::exception_ptr e)
    {
        auto in_flight = std::move(transfers);
        transfers.clear();
        for (auto& [easy, t] : in_flight) {
            remove_handle(*t);
            if (t->info.detail.empty())
                t->info.detail = detail;
            if (!t->exception)
                t->exception = e;
            finish(std::move(t), ec);
        }
    }

    /// Hands completed transfers back to their owners.
    void collect_done()
    {
        std::vector<std::pair<CURL*, CURLcode>> done;
        int queued = 0;
        while (CURLMsg* m = curl_multi_info_read(multi, &queued))
            if (m->msg == CURLMSG_DONE)
                done.emplace_back(m->easy_handle, m->data.result);
        for (auto [easy, code] : done) {
            auto node = transfers.extract(easy);
            if (node.empty())
                continue;
            remove_handle(*node.mapped());
            finish(std::move(node.mapped()), code == CURLE_OK ? error_code{} : make_curl_error(code));
        }
    }

    void socket_action(curl_socket_t fd, int events)
    {
        int running = 0;
        ++in_curl;
        const CURLMcode rc = curl_multi_socket_action(multi, fd, events, &running);
        --in_curl;
        collect_done();
        if (rc != CURLM_OK || callback_error) {
            auto e = std::exchange(callback_error, nullptr);
            fail_all(make_curl_error(CURLE_ABORTED_BY_CALLBACK),
                     rc != CURLM_OK ? std::string("curl_multi_socket_action: ") + curl_multi_strerror(rc)
                                    : std::string("a libcurl callback failed"),
                     e);
        }
    }

    // ----- readiness ------------------------------------------------------------------------

    /// Starts the waits curl wants on `e` and does not have yet.
    ///
    /// Asio's reactor is edge-triggered: a socket that became readable while no wait was
    /// queued raises no new event. After curl has handled an event it has read the socket
    /// dry, so re-arming is safe; but when curl starts wanting a direction it did not want
    /// before (`probe`), readiness may already be there, so it is checked with a zero-timeout
    /// poll and handled at once rather than waited for.
    void arm(const std::shared_ptr<socket_entry>& e, bool probe)
    {
        for (const bool read : {true, false}) {
            const int bit = read ? CURL_POLL_IN : CURL_POLL_OUT;
            bool& pending = read ? e->read_pending : e->write_pending;
            if (!(e->want & bit) || pending || e->closed)
                continue;
            pending = true;
            if (probe) {
                pollfd p{e->fd, static_cast<short>(read ? POLLIN : POLLOUT), 0};
                if (::poll(&p, 1, 0) > 0) {
                    asio::post(executor, [weak = weak_from_this(), e, read] {
                        (read ? e->read_pending : e->write_pending) = false;
                        if (auto self = weak.lock(); self && !e->closed)
                            self->on_ready(e, read, error_code{});
                    });
                    continue;
                }
            }
            e->async_wait(read, [weak = weak_from_this(), e, read](error_code ec) {
                (read ? e->read_pending : e->write_pending) = false;
                if (e->closed)
                    return;
                if (auto self = weak.lock())
                    self->on_ready(e, read, ec);
            });
        }
    }

    void on_ready(const std::shared_ptr<socket_entry>& e, bool read, error_code ec)
    {
        const int bit = read ? CURL_POLL_IN : CURL_POLL_OUT;
        if (ec == asio::error::operation_aborted || !(e->want & bit)) {
            arm(e, true);  // curl may want the socket again by now
            return;
        }
        socket_action(e->fd, ec ? CURL_CSELECT_ERR : (read ? CURL_CSELECT_IN : CURL_CSELECT_OUT));
        if (!e->closed)
            arm(e, false);
    }

    // ----- libcurl callbacks: record, never call back into libcurl -----------------------------

    // Every callback is noexcept: an exception must not unwind through libcurl's C frames. A
    // transfer's callback keeps what it caught in the transfer and fails it (returning 0 bytes
    // handled); the socket and timer callbacks keep it in `callback_error`, return libcurl's
    // error value, and `socket_action` then fails every transfer with it.

    static int on_socket(CURL*, curl_socket_t fd, int what, void* userp, void*) noexcept
    {
        auto* self = static_cast<impl*>(userp);
        try {
            return self->socket_changed(fd, what);
        } catch (...) {
            self->callback_error = std::current_exception();
            return -1;
        }
    }

    int socket_changed(curl_socket_t fd, int what)
    {
        auto* self = this;
        auto it = self->sockets.find(fd);
        if (what == CURL_POLL_REMOVE) {
            if (it != self->sockets.end()) {
                it->second->want = 0;
                if (it->second->foreign) {  // curl closes it itself, without telling us
                    it->second->close();
                    self->sockets.erase(it);
                }
            }
            return 0;
        }
        std::shared_ptr<socket_entry> e;
        if (it != self->sockets.end()) {
            e = it->second;
        } else {
            e = std::make_shared<socket_entry>();
            e->fd = fd;
            error_code ec;
            e->foreign.emplace(self->executor);
            e->foreign->assign(fd, ec);
            if (ec)
                return -1;
            self->sockets.emplace(fd, e);
        }
        const int before = e->want;
        e->want = what;
        self->arm(e, (what & ~before) != 0);
        return 0;
    }

    static int on_timer(CURLM*, long timeout_ms, void* userp) noexcept
    {
        auto* self = static_cast<impl*>(userp);
        try {
            self->timer_changed(timeout_ms);
            return 0;
        } catch (...) {
            self->callback_error = std::current_exception();
            return -1;
        }
    }

    void timer_changed(long timeout_ms)
    {
        auto* self = this;
        if (timeout_ms < 0) {
            self->timer.cancel();
            return;
        }
        self->timer.expires_after(std::chrono::milliseconds(timeout_ms));
        self->timer.async_wait([weak = self->weak_from_this()](error_code ec) {
            if (ec == asio::error::operation_aborted)
                return;  // replaced by a newer timeout, or the client is gone
            if (auto s = weak.lock())
                s->socket_action(CURL_SOCKET_TIMEOUT, 0);
        });
    }

    static curl_socket_t on_open_socket(void* clientp, curlsocktype purpose, curl_sockaddr* address) noexcept
    {
        auto* self = static_cast<impl*>(clientp);
        try {
            return self->open_socket(purpose, address);
        } catch (...) {
            // curl fails this connection attempt; the exception fails every transfer after.
            self->callback_error = std::current_exception();
            return CURL_SOCKET_BAD;
        }
    }

    curl_socket_t open_socket(curlsocktype purpose, curl_sockaddr* address)
    {
        auto* self = this;
        if (purpose != CURLSOCKTYPE_IPCXN || address->socktype != SOCK_STREAM
            || (address->family != AF_INET && address->family != AF_INET6))
            return CURL_SOCKET_BAD;
        auto e = std::make_shared<socket_entry>();
        e->owned.emplace(self->executor);
        error_code ec;
        e->owned->open(address->family == AF_INET ? asio::ip::tcp::v4() : asio::ip::tcp::v6(), ec);
        if (ec)
            return CURL_SOCKET_BAD;
        e->fd = e->owned->native_handle();
        self->sockets[e->fd] = e;
        return e->fd;
    }

    static int on_close_socket(void* clientp, curl_socket_t fd) noexcept
    {
        auto* self = static_cast<impl*>(clientp);
        auto it = self->sockets.find(fd);
        if (it == self->sockets.end())
            return ::close(fd);
        it->second->close();  // noexcept
        self->sockets.erase(it);
        return 0;
    }

    static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* userp) noexcept
    {
        auto* t = static_cast<transfer*>(userp);
        try {
            return header_line(*t, data, size * count);
        } catch (...) {
            t->exception = std::current_exception();
            return 0;  // fails the transfer with CURLE_WRITE_ERROR
        }
    }

    static std::size_t header_line(transfer& tr, char* data, std::size_t n)
    {
        auto* t = &tr;
        const std::string_view line(data, n);
        if (t->head_delivered)
            return n;  // trailers
        if (line.starts_with("HTTP/")) {
            // A new status line: an interim 1xx response's fields are forgotten.
            t->head = response_head{};
            const auto sp = line.find(' ');
            std::uint64_t status = 0;
            if (sp != std::string_view::npos)
                detail::parse_u64(line.substr(sp + 1, 3), status);
            t->head.status = static_cast<unsigned>(status);
            return n;
        }
        const std::string_view trimmed = detail::trim(line);
        if (trimmed.empty()) {
            if (t->head.status >= 200) {
                t->head_delivered = true;
                if (!t->handler->on_head(t->head))
                    return 0;
            }
            return n;
        }
        const auto colon = trimmed.find(':');
        if (colon == std::string_view::npos)
            return n;
        const std::string_view name = trimmed.substr(0, colon);
        const std::string_view value = detail::trim(trimmed.substr(colon + 1));
        if (detail::iequals(name, "etag")) {
            t->head.etag.assign(value);
        } else if (detail::iequals(name, "content-length")) {
            std::uint64_t v = 0;
            if (detail::parse_u64(value, v))
                t->head.content_length = v;
        } else if (detail::iequals(name, "content-range")) {
            t->head.range = parse_content_range(value);
        } else if (detail::iequals(name, "content-type")) {
            t->head.content_type.assign(value);
        } else if (detail::iequals(name, "x-amz-request-id")) {
            t->head.request_id.assign(value);
        }
        return n;
    }

    static std::size_t on_write(char* data, std::size_t size, std::size_t count, void* userp) noexcept
    {
        auto* t = static_cast<transfer*>(userp);
        const std::size_t n = size * count;
        if (!t->head_delivered)
            return 0;  // a body without a final status line: not HTTP we understand
        t->info.body_bytes += n;
        try {
            if (!t->handler->on_body(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), n)))
                return 0;
        } catch (...) {
            t->exception = std::current_exception();
            return 0;  // fails the transfer with CURLE_WRITE_ERROR
        }
        return n;
    }

    asio::any_io_executor executor;
    client_options options;
    CURLM* multi = nullptr;
    asio::steady_timer timer;
    std::unordered_map<curl_socket_t, std::shared_ptr<socket_entry>> sockets;
    std::unordered_map<CURL*, std::unique_ptr<transfer>> transfers;
    /// Addresses of host names, by detail::host_key.
    std::unordered_map<std::string, std::shared_ptr<host_entry>> hosts;
    /// Transfers that wait for a lookup, in the order they were started.
    std::vector<waiting_transfer> waiting;
    int in_curl = 0;  ///< >0 while a curl_multi_* call runs (callbacks may be on the stack)
    /// What a socket, timer or open-socket callback threw; `socket_action` fails every
    /// transfer with it once libcurl has returned.
    std::exception_ptr callback_error;
};

inline client::client(asio::any_io_executor executor, client_options options)
    : impl_(std::make_shared<impl>(executor, std::move(options)))
{
}

inline client::~client() = default;

inline void client::start(request req, response_handler& handler, completion_ptr completion,
                          asio::cancellation_slot slot)
{
    impl_->start(std::move(req), handler, std::move(completion), slot);
}

inline std::size_t client::active_transfers() const noexcept
{
    return impl_->transfers.size() + impl_->waiting.size();
}

inline std::size_t client::open_sockets() const noexcept { return impl_->sockets.size(); }

inline asio::any_io_executor client::get_executor() const noexcept { return impl_->executor; }

} // namespace pipemode::http
