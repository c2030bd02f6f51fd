// pipemode: when to retry a failed HTTP request, how long to wait first, and how many
// ranged GETs may run at once. Sans-I/O: plain classes the network code consults after every
// failed or finished request, deterministic under a seed and testable without a socket.
//
// The pieces, each usable alone:
//   failure_kind / classify_status   what went wrong, and whether a retry can help
//   backoff                          full-jitter exponential delays
//   retry_budget                     a token bucket shared by a reader's requests
//   concurrency_limit                halve on throttling (once per window), add one back slowly
//   retry_policy                     the four above, tied together per request
#pragma once

#include <pipemode/config.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pipemode::http {

/// Why a request failed, as far as retrying is concerned. Transport errors are mapped onto these
/// by `classify_transport` (http/client.hpp), HTTP responses by `classify_status`, and S3 error
/// documents by `s3::classify_failure`.
enum class failure_kind {
    connect,          ///< no connection: refused, DNS failure, TLS handshake failure
    timeout,          ///< connect or transfer timed out, or HTTP 408 (S3: `RequestTimeout`)
    connection_lost,  ///< the connection broke mid-transfer (reset, short body)
    server_error,     ///< 500, 502, 504 and other 5xx except 503 (S3: `InternalError`, `OperationAborted`)
    throttled,        ///< 503, 429 (S3: `SlowDown` and the other throttling codes): also lowers concurrency
    object_changed,   ///< 412 (S3: `PreconditionFailed`): the ETag moved; the reader restarts or fails
    client_error,     ///< other 4xx (and redirects): credentials, permissions, missing object
    protocol,         ///< the response was not what was asked for, e.g. a wrong `Content-Range`
};

/// Whether a failure of this kind is worth another attempt of the same request.
///
/// `object_changed` is not: repeating the request with the same `If-Match` fails the same way,
/// and the decision to restart the object belongs to the reader. `protocol` is not either: a
/// server that answers a range request with the wrong range (or a 200 with the whole object)
/// does it again, so failing at once names the problem instead of after ten attempts.
constexpr bool is_retryable(failure_kind k) noexcept
{
    switch (k) {
    case failure_kind::connect:
    case failure_kind::timeout:
    case failure_kind::connection_lost:
    case failure_kind::server_error:
    case failure_kind::throttled:
        return true;
    case failure_kind::object_changed:
    case failure_kind::client_error:
    case failure_kind::protocol:
        return false;
    }
    return false;
}

/// Classifies a failed HTTP response by its status alone: 503 and 429 are `throttled`, 408 is
/// `timeout`, 412 is `object_changed`, every other 5xx is `server_error`, and the rest is
/// `client_error`, redirects included (pipemode does not follow them, so the same request
/// would fail again).
///
/// A protocol whose error bodies say more refines this one layer up: S3's error codes (a 400
/// `SlowDown` is throttling, a 500 `AccessDenied` is not worth a retry) are classified by
/// `s3::classify_failure`, which agrees with this function whenever the body has no code.
constexpr failure_kind classify_status(unsigned http_status) noexcept
{
    if (http_status == 503 || http_status == 429)
        return failure_kind::throttled;
    if (http_status == 408)
        return failure_kind::timeout;
    if (http_status == 412)
        return failure_kind::object_changed;
    if (http_status >= 500 && http_status <= 599)
        return failure_kind::server_error;
    return failure_kind::client_error;
}

/// Retry settings of a reader's HTTP/S3 requests. Use designated initializers:
/// `retry_options{.max_attempts = 5, .seed = 42}`.
struct retry_options {
    /// Attempts per request, the first included; 1 disables retries. 10 because, with the
    /// delays below, nine retries wait up to 45 s in all (23 s on average): enough to ride out
    /// a burst of S3 503s or a load balancer restart, which for a training job costs far less
    /// than a failed epoch, while a dead endpoint still fails within a minute.
    unsigned max_attempts = 10;
    /// The cap of the first retry's delay, doubled for each further retry. 100 ms is a few
    /// round trips to S3 within a region: quick enough for an isolated connection reset.
    std::chrono::milliseconds base_delay{100};
    /// The largest delay cap. 20 s, as in the AWS SDKs' standard retry mode: longer waits
    /// stall the reader's other work more than they relieve the server.
    std::chrono::milliseconds max_delay{20'000};
    /// Tokens in the reader's retry budget when full (see `retry_budget`). 500, 5 and 10 are
    /// the AWS SDKs' standard-mode values: 100 retries in a burst absorb every in-flight range
    /// failing once or twice, but a sustained failure rate drains the bucket in seconds.
    unsigned budget_capacity = 500;
    /// Tokens a retry takes from the budget.
    unsigned retry_cost = 5;
    /// Tokens a retry after a `timeout` takes: a timeout has already tied a connection up for
    /// long, and usually means an overloaded or unreachable server, so it drains faster.
    unsigned timeout_retry_cost = 10;
    /// Tokens returned when a request succeeds at its first attempt. 1, so the bucket refills
    /// only at a fifth of the pace failures drain it: a mostly failing endpoint stays cut off.
    unsigned success_refund = 1;
    /// Seed of the jitter generator. Empty (the default) draws one from `std::random_device`,
    /// so that the hosts of a distributed job do not retry in step against the same bucket; set
    /// it to make a run's delays reproducible (the sequence is the same on every platform).
    std::optional<std::uint64_t> seed{};
};

/// Full-jitter exponential backoff: the delay before retry `n` (1 for the first retry) is
/// uniform over whole milliseconds in [0, min(max_delay, base_delay * 2^(n-1))].
///
/// Full jitter spreads the retries of requests that failed together over the whole window, so
/// they do not return together. The generator is `std::mt19937_64` (fully specified by the
/// standard) mapped onto the range by pipemode itself rather than by a
/// `std::uniform_int_distribution`, whose algorithm differs between standard libraries: a seed
/// gives the same delays on every machine.
///
/// Not thread-safe: use from one thread (the network thread).
class backoff {
public:
    /// Throws `std::invalid_argument` for a negative delay.
    backoff(std::chrono::milliseconds base_delay, std::chrono::milliseconds max_delay, std::uint64_t seed)
        : base_(checked(base_delay, "base_delay")), max_(checked(max_delay, "max_delay")), engine_(seed)
    {
    }

    /// The largest delay of retry `n`: min(max_delay, base_delay * 2^(n-1)), without overflow
    /// for any `n`. `n = 0` counts as 1.
    std::chrono::milliseconds cap(unsigned n) const noexcept
    {
        unsigned shift = n == 0 ? 0 : n - 1;
        if (base_ == 0)
            return std::chrono::milliseconds{0};
        // base << shift > max exactly when base > max >> shift; checking that first means the
        // shift is only done when its result fits.
        if (shift >= 63 || base_ > (max_ >> shift))
            return std::chrono::milliseconds{static_cast<std::int64_t>(max_)};
        return std::chrono::milliseconds{static_cast<std::int64_t>(std::min(max_, base_ << shift))};
    }

    /// A random delay for retry `n`, uniform in [0, cap(n)]. Advances the generator.
    std::chrono::milliseconds delay(unsigned n) noexcept
    {
        auto c = static_cast<std::uint64_t>(cap(n).count());
        return std::chrono::milliseconds{static_cast<std::int64_t>(uniform_below(c + 1))};
    }

private:
    static std::uint64_t checked(std::chrono::milliseconds d, const char* name)
    {
        if (d.count() < 0)
            throw std::invalid_argument(std::string("pipemode::http::backoff: ") + name
                                        + " is negative; give a delay of 0 ms or more.");
        return static_cast<std::uint64_t>(d.count());
    }

    // Uniform in [0, range) for 1 <= range: rejecting the few draws below 2^64 mod range
    // leaves a whole number of copies of [0, range), so the remainder has no bias.
    std::uint64_t uniform_below(std::uint64_t range) noexcept
    {
        std::uint64_t threshold = (0 - range) % range;
        for (;;) {
            std::uint64_t r = engine_();
            if (r >= threshold)
                return r % range;
        }
    }

    std::uint64_t base_;
    std::uint64_t max_;
    std::mt19937_64 engine_;
};

/// A token bucket shared by all requests of a reader that pays for their retries, as in the
/// AWS SDKs' standard retry mode. When a dead or overloaded endpoint makes every request
/// fail, the bucket empties after a burst of retries and further failures are reported at
/// once instead of each request retrying `max_attempts` times against it.
///
/// Accounting: a retry takes `retry_cost` tokens (`timeout_retry_cost` after a timeout). A
/// request that succeeds at its first attempt returns `success_refund`; one that succeeds after
/// retrying returns the cost of its last retry only (the retry that worked, as the AWS SDKs
/// do), so a request that needed several retries still leaves the bucket poorer: a degraded
/// endpoint keeps draining it. The bucket never holds more than its capacity.
///
/// Not thread-safe: use from one thread (the network thread).
class retry_budget {
public:
    /// A full bucket with the capacity, costs and refund of `o`.
    explicit retry_budget(const retry_options& o = {}) noexcept
        : capacity_(o.budget_capacity), available_(o.budget_capacity), retry_cost_(o.retry_cost),
          timeout_cost_(o.timeout_retry_cost), success_refund_(o.success_refund)
    {
    }

    /// Tokens when full.
    unsigned capacity() const noexcept { return capacity_; }
    /// Tokens now.
    unsigned available() const noexcept { return available_; }

    /// Tokens a retry after a failure of kind `k` costs.
    unsigned cost(failure_kind k) const noexcept { return k == failure_kind::timeout ? timeout_cost_ : retry_cost_; }

    /// Takes `cost(k)` tokens and returns true, or returns false and takes nothing when fewer
    /// are left: the caller then fails the request with its last error.
    bool try_acquire(failure_kind k) noexcept
    {
        unsigned c = cost(k);
        if (available_ < c)
            return false;
        available_ -= c;
        return true;
    }

    /// Records a request that succeeded at its first attempt: returns `success_refund` tokens.
    void on_success() noexcept { refund(success_refund_); }

    /// Records a request that succeeded after retrying: returns what its last retry took (the
    /// value `cost` gave for it).
    void on_success_after_retry(unsigned last_retry_cost) noexcept { refund(last_retry_cost); }

private:
    void refund(unsigned n) noexcept { available_ = capacity_ - available_ < n ? capacity_ : available_ + n; }

    unsigned capacity_;
    unsigned available_;
    unsigned retry_cost_;
    unsigned timeout_cost_;
    unsigned success_refund_;
};

/// How many requests may run at once: raised while throughput grows with it, lowered when the
/// server throttles (multiplicative decrease, additive increase, as TCP does with its
/// congestion window).
///
/// - **Probing.** The limit starts at `initial` and the caller reports the throughput of
///   regular intervals (`on_sample`), saying whether the limit was what held it back (the
///   caller had a request ready and no free connection for most of the interval). While it
///   was, the limit grows by half (up to `max()`) and the next interval is skipped while new
///   connections open; the interval after that is compared with the one before the raise. A
///   raise that gained less than `probe_gain` ends the probing for good: a slow link, a busy
///   client or a throttling store gets no more connections than help.
/// - `on_throttled` halves the limit (rounding down, never below 1) and ends the probing, but
///   at most once per window: each request takes a `ticket` when it starts (`begin_request`),
///   and a throttle from a request that started before the last decrease is ignored. Such
///   requests were sent under the old, higher load, which the decrease has already answered;
///   without this rule one burst of `SlowDown`s from 64 concurrent requests would cut the
///   limit to 1.
/// - `on_success` counts consecutive successes; after `current()` of them (about one round of
///   requests at the current limit) a limit below its `ceiling()` (the highest it reached)
///   grows by one. A counted throttle restarts the count.
///
/// The caller starts a new request only while fewer than `current()` are running; requests
/// already running are not cancelled when the limit drops.
///
/// Not thread-safe: use from one thread (the network thread).
class concurrency_limit {
public:
    /// What a request holds from its start, to tell which window its throttle belongs to.
    struct ticket {
        std::uint64_t generation = 0;  ///< the number of decreases before the request started
    };

    /// The smallest relative gain that justifies a raise: 10 %.
    static constexpr double probe_gain = 0.10;

    /// Starts at `initial` requests (0: at `max`), never more than `max`. Throws
    /// `std::invalid_argument` when `max` is 0.
    explicit concurrency_limit(std::size_t max, std::size_t initial = 0)
        : max_(max), limit_(initial == 0 ? max : std::min(initial, max)), ceiling_(limit_)
    {
        if (max == 0)
            throw std::invalid_argument(
                "pipemode::http::concurrency_limit: the maximum is 0; allow at least one connection.");
        probing_ = limit_ < max_;
    }

    /// The configured maximum (the reader's connections).
    std::size_t max() const noexcept { return max_; }
    /// The limit now, in [1, max()].
    std::size_t current() const noexcept { return limit_; }
    /// The highest limit reached so far; additive increase never goes past it.
    std::size_t ceiling() const noexcept { return ceiling_; }
    /// Whether throughput samples may still raise the limit.
    bool probing() const noexcept { return probing_; }

    /// Call when a request (or a retry of it) is sent; keep the ticket with it.
    ticket begin_request() const noexcept { return ticket{generation_}; }

    /// Records the throughput of one interval, in bytes per second, and whether the limit was
    /// what held it back (`saturated`). Returns true when the limit was raised.
    bool on_sample(double bytes_per_second, bool saturated) noexcept
    {
        if (!probing_ || !saturated)
            return false;  // a sample the limit did not shape says nothing about it
        if (settling_) {
            settling_ = false;  // the new connections were still opening
            return false;
        }
        if (before_raise_ > 0 && bytes_per_second < before_raise_ * (1 + probe_gain)) {
            probing_ = false;  // the last raise did not pay: keep it, stop raising
            return false;
        }
        if (limit_ >= max_) {
            probing_ = false;
            return false;
        }
        before_raise_ = bytes_per_second;
        limit_ = std::min(max_, limit_ + std::max<std::size_t>(1, limit_ / 2));
        ceiling_ = std::max(ceiling_, limit_);
        settling_ = true;
        return true;
    }

    /// Records a throttling response to the request holding `t`. Returns true when it counted
    /// (the limit was halved, or is 1 already, and a new window began); false when `t` is from
    /// before the last decrease and the throttle was ignored.
    bool on_throttled(ticket t) noexcept
    {
        if (t.generation < generation_)
            return false;
        limit_ = std::max<std::size_t>(1, limit_ / 2);
        ++generation_;
        successes_ = 0;
        probing_ = false;
        return true;
    }

    /// Records a successful request.
    void on_success() noexcept
    {
        if (limit_ >= ceiling_)
            return;
        if (++successes_ >= limit_) {
            ++limit_;
            successes_ = 0;
        }
    }

private:
    std::size_t max_;
    std::size_t limit_;
    std::size_t ceiling_;
    std::size_t successes_ = 0;
    std::uint64_t generation_ = 0;
    bool probing_ = false;
    bool settling_ = false;
    double before_raise_ = 0;  ///< throughput of the last interval before the latest raise
};

/// Why `retry_policy::next_delay` said no.
enum class retry_refusal {
    none,                ///< it did not (or has not been asked)
    not_retryable,       ///< the failure is permanent (`is_retryable` is false)
    attempts_exhausted,  ///< the request has made `max_attempts` attempts
    budget_exhausted,    ///< the reader's retry budget is empty
};

/// The retry decisions of one reader: backoff, retry budget and concurrency limit together.
///
/// Each request keeps a `request_state`: call `begin_attempt` when sending it (first attempt
/// and every retry), then either `on_success` or `next_delay` after a failure, which returns
/// how long to wait before the retry, or empty when the request must fail with its error
/// (`state.refusal` says why). A throttled failure also lowers the concurrency limit.
///
/// ```
/// retry_policy policy(16, {.seed = 42});
/// retry_policy::request_state r;
/// for (;;) {
///     policy.begin_attempt(r);
///     auto result = send(...);
///     if (result.ok()) { policy.on_success(r); break; }
///     auto wait = policy.next_delay(r, result.kind);
///     if (!wait) throw ...;  // after r.attempts attempts, because of r.refusal
///     sleep(*wait);
/// }
/// ```
///
/// Not thread-safe: use from one thread (the network thread), as the requests it serves are.
class retry_policy {
public:
    /// What a request carries between attempts.
    struct request_state {
        unsigned attempts = 0;                      ///< attempts begun so far
        unsigned last_retry_cost = 0;               ///< tokens the latest retry took; 0 before any
        concurrency_limit::ticket ticket{};         ///< from the latest `begin_attempt`
        retry_refusal refusal = retry_refusal::none;  ///< why the latest `next_delay` said no
    };

    /// A policy for up to `max_concurrency` requests at once, starting at
    /// `initial_concurrency` (0: at the maximum; see `concurrency_limit`). Throws
    /// `std::invalid_argument` when `max_concurrency` or `o.max_attempts` is 0 or a delay is
    /// negative.
    explicit retry_policy(std::size_t max_concurrency, const retry_options& o = {}, std::size_t initial_concurrency = 0)
        : options_(checked(o)), backoff_(o.base_delay, o.max_delay, o.seed ? *o.seed : random_seed()), budget_(o),
          limit_(max_concurrency, initial_concurrency)
    {
    }

    /// The options it was made with.
    const retry_options& options() const noexcept { return options_; }
    /// The shared retry budget.
    const retry_budget& budget() const noexcept { return budget_; }
    /// The concurrency limit: start a request only while fewer than `concurrency().current()` run.
    const concurrency_limit& concurrency() const noexcept { return limit_; }
    /// Records an interval's throughput (see `concurrency_limit::on_sample`).
    bool on_throughput_sample(double bytes_per_second, bool saturated) noexcept
    {
        return limit_.on_sample(bytes_per_second, saturated);
    }

    /// Records that the request is being sent (again).
    void begin_attempt(request_state& r) noexcept
    {
        ++r.attempts;
        r.ticket = limit_.begin_request();
        r.refusal = retry_refusal::none;
    }

    /// Records a failed attempt of kind `k` and decides: the delay before the next attempt, or
    /// empty when the request must fail now. A retry takes its cost from the budget here.
    std::optional<std::chrono::milliseconds> next_delay(request_state& r, failure_kind k) noexcept
    {
        r.refusal = retry_refusal::none;
        if (k == failure_kind::throttled)
            limit_.on_throttled(r.ticket);
        if (!is_retryable(k)) {
            r.refusal = retry_refusal::not_retryable;
            return std::nullopt;
        }
        if (r.attempts >= options_.max_attempts) {
            r.refusal = retry_refusal::attempts_exhausted;
            return std::nullopt;
        }
        if (!budget_.try_acquire(k)) {
            r.refusal = retry_refusal::budget_exhausted;
            return std::nullopt;
        }
        r.last_retry_cost = budget_.cost(k);
        // After attempt n failed, the next one is retry n.
        return backoff_.delay(r.attempts == 0 ? 1 : r.attempts);
    }

    /// Records that the request succeeded: refunds the budget and may raise the limit.
    void on_success(request_state& r) noexcept
    {
        if (r.attempts > 1)
            budget_.on_success_after_retry(r.last_retry_cost);
        else
            budget_.on_success();
        limit_.on_success();
    }

private:
    static const retry_options& checked(const retry_options& o)
    {
        if (o.max_attempts == 0)
            throw std::invalid_argument(
                "pipemode::http::retry_policy: max_attempts is 0; set it to 1 or more (1 disables retries).");
        return o;
    }

    static std::uint64_t random_seed()
    {
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }

    retry_options options_;
    backoff backoff_;
    retry_budget budget_;
    concurrency_limit limit_;
};

} // namespace pipemode::http
