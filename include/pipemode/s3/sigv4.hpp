// pipemode: AWS Signature Version 4 for S3 requests, sans-I/O.
//
// pipemode signs its own requests because libcurl 7.88's CURLOPT_AWS_SIGV4 neither adds
// `x-amz-content-sha256` (which S3 requires) nor encodes paths nor sorts query strings. The
// signer is a pure function of its inputs and the clock reading it is given, so it is tested
// byte for byte against botocore (tests/s3/sigv4_vectors.inc) and AWS's published examples.
// See docs/s3-signing.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/s3/detail/sha256.hpp>
#include <pipemode/s3/uri.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::s3 {

/// The payload hash that tells S3 the body is not signed (the body of a GET has none anyway).
inline constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";

/// The SHA-256 of the empty string: the payload hash of a request without a body, and the
/// one botocore signs GET and HEAD requests with.
inline constexpr std::string_view empty_payload_sha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An AWS access key: the id, its secret and, for temporary credentials, the session token.
///
/// The secret never leaves this struct through the signer: signatures are derived from it, and
/// the only credential text in a signer's output is the key id (in `Authorization`) and the
/// session token (in `X-Amz-Security-Token`, where AWS requires it). Log `redacted()`, never
/// the fields.
struct aws_credentials {
    std::string access_key_id;      ///< e.g. "AKIAIOSFODNN7EXAMPLE"
    std::string secret_access_key;  ///< never logged, never returned
    std::string session_token;      ///< empty for long-term keys

    /// A description safe for logs: the key id masked but for its last 4 characters (all of
    /// it when it is 4 characters or fewer), and neither the secret nor the token.
    ///
    /// Example: `aws_credentials{access_key_id=****************MPLE, secret_access_key=<redacted>, session_token=<none>}`
    std::string redacted() const
    {
        std::string id;
        if (access_key_id.size() > 4)
            id = std::string(access_key_id.size() - 4, '*') + access_key_id.substr(access_key_id.size() - 4);
        else
            id = std::string(access_key_id.size(), '*');
        return "aws_credentials{access_key_id=" + id
             + ", secret_access_key=" + (secret_access_key.empty() ? "<none>" : "<redacted>")
             + ", session_token=" + (session_token.empty() ? "<none>" : "<redacted>") + "}";
    }
};

/// The same as `credentials.redacted()`: so that formatting credentials the obvious way
/// cannot print the secret.
inline std::string to_string(const aws_credentials& credentials)
{
    return credentials.redacted();
}

/// The parts of an HTTP request that SigV4 signs.
///
/// Everything is given unencoded: the signer percent-encodes `path` and the query itself, and
/// the caller must put the same encoding on the wire (`canonical_path()` and
/// `canonical_query()` return it).
struct signing_request {
    std::string method = "GET";  ///< upper-cased when signed
    /// The `Host` header as sent: lowercase, with the port when it is not the scheme's
    /// default ("127.0.0.1:9000"), without it when it is ("s3.amazonaws.com").
    std::string host;
    /// The raw, unencoded path, starting with '/': "/bucket/key with spaces.rec" (path style)
    /// or "/key with spaces.rec" (virtual-hosted style). Empty means "/".
    std::string path = "/";
    /// Query parameters as raw (name, value) pairs; a parameter without a value has an empty
    /// one ("?uploads" is {"uploads", ""}). Order does not matter.
    std::vector<std::pair<std::string, std::string>> query{};
    /// Other headers to send and sign, such as `Range`. Names are case-insensitive; repeated
    /// names are signed as one comma-joined value, in order. `Host`, `Authorization`,
    /// `X-Amz-Date`, `X-Amz-Security-Token` and (for S3) `X-Amz-Content-SHA256` given here are
    /// ignored: the signer sets them. Hop-by-hop headers and `User-Agent` are sent unsigned,
    /// as botocore does, so proxies may change them. A `Date` header is rejected.
    std::vector<std::pair<std::string, std::string>> headers{};
    /// Hex SHA-256 of the body, or `unsigned_payload`.
    std::string payload_sha256 = std::string(empty_payload_sha256);
};

/// Which of SigV4's two canonicalizations of the path to apply.
enum class sigv4_rules {
    /// S3's: each path byte percent-encoded once, the path otherwise as given (".", ".." and
    /// "//" are key bytes), and an `X-Amz-Content-SHA256` header added and signed.
    s3,
    /// Every other service's: "." and ".." segments and empty segments removed, then the path
    /// encoded twice; no `X-Amz-Content-SHA256` header. Used for AWS's generic test suite.
    generic,
};

/// The headers a signature adds to a request, with the names botocore gives them.
struct signed_headers {
    std::string authorization;   ///< "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
    std::string amz_date;        ///< `X-Amz-Date`: "20130524T000000Z"
    std::string content_sha256;  ///< `X-Amz-Content-SHA256`; empty under `sigv4_rules::generic`
    std::string security_token;  ///< `X-Amz-Security-Token`; empty without a session token

    /// The headers as (name, value) pairs in the order botocore adds them, leaving out the
    /// empty ones: X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-SHA256, Authorization.
    std::vector<std::pair<std::string, std::string>> fields() const
    {
        std::vector<std::pair<std::string, std::string>> out;
        out.emplace_back("X-Amz-Date", amz_date);
        if (!security_token.empty())
            out.emplace_back("X-Amz-Security-Token", security_token);
        if (!content_sha256.empty())
            out.emplace_back("X-Amz-Content-SHA256", content_sha256);
        out.emplace_back("Authorization", authorization);
        return out;
    }
};

namespace detail {

/// RFC 3986's "remove dot segments", plus the removal of empty segments that AWS's generic
/// services require; a trailing '/' survives when something is left before it.
inline std::string remove_dot_segments(std::string_view path)
{
    if (path.empty())
        return {};
    std::vector<std::string_view> kept;
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string_view::npos)
            end = path.size();
        const std::string_view segment = path.substr(start, end - start);
        if (segment == "..") {
            if (!kept.empty())
                kept.pop_back();
        } else if (!segment.empty() && segment != ".") {
            kept.push_back(segment);
        }
        start = end + 1;
    }
    std::string out = path.front() == '/' ? "/" : "";
    for (std::size_t i = 0; i < kept.size(); ++i) {
        if (i != 0)
            out.push_back('/');
        out.append(kept[i]);
    }
    if (path.back() == '/' && !kept.empty())
        out.push_back('/');
    return out;
}

inline std::string to_lower(std::string_view in)
{
    std::string out(in);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

/// The whitespace botocore's value trimming splits on (Python's `str.split()` for ASCII).
inline bool is_header_space(char c) noexcept
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
        || (c >= '\x1c' && c <= '\x1f');
}

/// SigV4's Trimall: leading and trailing whitespace removed, inner runs turned into one space.
inline std::string trim_all(std::string_view value)
{
    std::string out;
    bool pending_space = false;
    for (char c : value) {
        if (is_header_space(c)) {
            pending_space = !out.empty();
        } else {
            if (pending_space)
                out.push_back(' ');
            pending_space = false;
            out.push_back(c);
        }
    }
    return out;
}

/// Headers that are never signed: hop-by-hop ones a proxy may rewrite, and `user-agent` and
/// `x-amzn-trace-id`, which tooling adds after signing. The list is botocore's.
inline bool is_unsigned_header(std::string_view lower_name) noexcept
{
    constexpr std::string_view names[] = {
        "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"};
    return std::find(std::begin(names), std::end(names), lower_name) != std::end(names);
}

/// `now` as SigV4's basic ISO 8601 timestamp, "YYYYMMDDTHHMMSSZ", in UTC.
inline std::string amz_timestamp(std::chrono::system_clock::time_point now)
{
    using namespace std::chrono;
    const auto seconds = floor<std::chrono::seconds>(now);
    const auto day = floor<days>(seconds);
    const year_month_day date{day};
    const hh_mm_ss time{seconds - day};
    const auto put = [](std::string& out, long value, int width) {
        std::string digits(static_cast<std::size_t>(width), '0');
        for (int i = width - 1; i >= 0 && value > 0; --i, value /= 10)
            digits[static_cast<std::size_t>(i)] = static_cast<char>('0' + value % 10);
        out += digits;
    };
    std::string out;
    put(out, static_cast<int>(date.year()), 4);
    put(out, static_cast<long>(static_cast<unsigned>(date.month())), 2);
    put(out, static_cast<long>(static_cast<unsigned>(date.day())), 2);
    out.push_back('T');
    put(out, time.hours().count(), 2);
    put(out, time.minutes().count(), 2);
    put(out, static_cast<long>(time.seconds().count()), 2);
    out.push_back('Z');
    return out;
}

/// The canonical request's header block and signed-header list.
struct canonical_header_set {
    std::string block;   ///< "name:value\n" lines, sorted by name
    std::string signed_names;  ///< "name;name;..."
};

inline canonical_header_set canonical_headers(const signing_request& request,
                                              const aws_credentials& credentials,
                                              std::string_view timestamp, sigv4_rules rules)
{
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& [name, value] : request.headers) {
        std::string lower = to_lower(name);
        if (lower == "date")
            throw std::invalid_argument(
                "pipemode::s3::sign_request: remove the Date header; SigV4 signs the time as "
                "X-Amz-Date, which the signer adds.");
        const bool signer_owned = lower == "host" || lower == "authorization"
                               || lower == "x-amz-date" || lower == "x-amz-security-token"
                               || (rules == sigv4_rules::s3 && lower == "x-amz-content-sha256");
        if (signer_owned || is_unsigned_header(lower))
            continue;
        headers.emplace_back(std::move(lower), trim_all(value));
    }
    headers.emplace_back("host", trim_all(request.host));
    headers.emplace_back("x-amz-date", std::string(timestamp));
    if (!credentials.session_token.empty())
        headers.emplace_back("x-amz-security-token", trim_all(credentials.session_token));
    if (rules == sigv4_rules::s3)
        headers.emplace_back("x-amz-content-sha256", trim_all(request.payload_sha256));

    // Stable, so that a repeated name keeps its values in the order given.
    std::stable_sort(headers.begin(), headers.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });

    canonical_header_set out;
    for (std::size_t i = 0; i < headers.size(); ++i) {
        const bool repeat = i != 0 && headers[i].first == headers[i - 1].first;
        if (repeat) {
            out.block.pop_back();  // the previous line's '\n': this value joins it
            out.block += ',' + headers[i].second + '\n';
            continue;
        }
        out.block += headers[i].first + ':' + headers[i].second + '\n';
        if (!out.signed_names.empty())
            out.signed_names.push_back(';');
        out.signed_names += headers[i].first;
    }
    return out;
}

} // namespace detail

/// The path as it goes into the canonical request under `rules`. Under `sigv4_rules::s3` it is
/// also exactly what to put on the request line.
inline std::string canonical_path(std::string_view raw_path, sigv4_rules rules = sigv4_rules::s3)
{
    if (raw_path.empty())
        raw_path = "/";
    const std::string once = s3::uri_encode(raw_path, true);
    if (rules == sigv4_rules::s3)
        return once;
    std::string normalized = detail::remove_dot_segments(once);
    if (normalized.empty())
        normalized = "/";
    return s3::uri_encode(normalized, true);
}

/// The canonical query string: names and values percent-encoded (including '/'), sorted by
/// encoded name and then value, joined as "a=1&b=2". It is also a valid query to send.
inline std::string
canonical_query(const std::vector<std::pair<std::string, std::string>>& query)
{
    std::vector<std::pair<std::string, std::string>> encoded;
    encoded.reserve(query.size());
    for (const auto& [name, value] : query)
        encoded.emplace_back(s3::uri_encode(name, false), s3::uri_encode(value, false));
    std::sort(encoded.begin(), encoded.end());
    std::string out;
    for (const auto& [name, value] : encoded) {
        if (!out.empty())
            out.push_back('&');
        out += name + '=' + value;
    }
    return out;
}

namespace detail {

/// The canonical request, given its already computed header set.
inline std::string canonical_request(const signing_request& request,
                                     const canonical_header_set& headers, sigv4_rules rules)
{
    std::string method = request.method;
    for (char& c : method)
        if (c >= 'a' && c <= 'z')
            c = static_cast<char>(c - 'a' + 'A');
    return method + '\n' + canonical_path(request.path, rules) + '\n'
         + canonical_query(request.query) + '\n' + headers.block + '\n' + headers.signed_names
         + '\n' + request.payload_sha256;
}

} // namespace detail

/// SigV4's canonical request for `request` at `timestamp` ("YYYYMMDDTHHMMSSZ").
///
/// Exposed for diagnostics: compare it with the `CanonicalRequest` in an S3
/// `SignatureDoesNotMatch` error. It contains the session token (a signed header) but never
/// the secret.
inline std::string canonical_request(const signing_request& request,
                                     const aws_credentials& credentials,
                                     std::string_view timestamp,
                                     sigv4_rules rules = sigv4_rules::s3)
{
    return detail::canonical_request(
        request, detail::canonical_headers(request, credentials, timestamp, rules), rules);
}

/// Signs `request` with SigV4 for `service` in `region` at time `now`, and returns the headers
/// to add to it.
///
/// Pure: no I/O, no clock, no global state; safe to call from any thread. Throws
/// `std::invalid_argument` when the request carries a `Date` header.
///
/// \code
/// s3::signing_request r{.method = "GET", .host = "bucket.s3.eu-west-3.amazonaws.com",
///                       .path = "/train/part 0001.rec", .headers = {{"Range", "bytes=0-8388607"}}};
/// for (auto& [name, value] : s3::sign_s3_request(r, creds, "eu-west-3", clock::now()).fields())
///     add_header(name, value);
/// \endcode
inline signed_headers sign_request(const signing_request& request,
                                   const aws_credentials& credentials, std::string_view region,
                                   std::string_view service, sigv4_rules rules,
                                   std::chrono::system_clock::time_point now)
{
    const std::string timestamp = detail::amz_timestamp(now);
    const std::string_view date = std::string_view{timestamp}.substr(0, 8);
    const std::string scope =
        std::string(date) + '/' + std::string(region) + '/' + std::string(service) + "/aws4_request";

    const detail::canonical_header_set headers =
        detail::canonical_headers(request, credentials, timestamp, rules);
    const std::string canonical = detail::canonical_request(request, headers, rules);
    const std::string string_to_sign = "AWS4-HMAC-SHA256\n" + timestamp + '\n' + scope + '\n'
                                     + detail::sha256_hex(canonical);

    const detail::sha256_digest date_key =
        detail::hmac_sha256("AWS4" + credentials.secret_access_key, date);
    const detail::sha256_digest region_key = detail::hmac_sha256(date_key, region);
    const detail::sha256_digest service_key = detail::hmac_sha256(region_key, service);
    const detail::sha256_digest signing_key = detail::hmac_sha256(service_key, "aws4_request");
    const std::string signature = detail::to_hex(detail::hmac_sha256(signing_key, string_to_sign));

    signed_headers out;
    out.authorization = "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + '/' + scope
                      + ", SignedHeaders=" + headers.signed_names + ", Signature=" + signature;
    out.amz_date = timestamp;
    if (rules == sigv4_rules::s3)
        out.content_sha256 = request.payload_sha256;
    out.security_token = credentials.session_token;
    return out;
}

/// Signs an S3 request: `sign_request` with service "s3" and `sigv4_rules::s3`, the headers
/// botocore's `S3SigV4Auth` produces.
inline signed_headers sign_s3_request(const signing_request& request,
                                      const aws_credentials& credentials, std::string_view region,
                                      std::chrono::system_clock::time_point now)
{
    return sign_request(request, credentials, region, "s3", sigv4_rules::s3, now);
}

} // namespace pipemode::s3
