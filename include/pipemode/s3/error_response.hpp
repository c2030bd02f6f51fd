// pipemode: S3 error responses, sans-I/O: the parsed `<Error>` document, whether a request
// that got it is worth retrying (and how it counts for the transport's retry policy), and a
// one-line message naming the object. See docs/s3-parsing.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/http/retry.hpp>
#include <pipemode/http/status.hpp>
#include <pipemode/s3/xml.hpp>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

namespace pipemode::s3 {

/// An S3 error: the HTTP status and, when the body was an S3 `<Error>` document, its fields.
struct s3_error {
    unsigned http_status = 0;  ///< e.g. 403
    std::string code;          ///< e.g. "AccessDenied"; empty when the body was not an S3 error
    std::string message;       ///< e.g. "Access Denied"
    std::string key;           ///< the `Key` S3 reports, if any
    std::string bucket_name;   ///< the `BucketName` S3 reports, if any
    std::string request_id;    ///< `RequestId`, what AWS support asks for
    std::string host_id;       ///< `HostId` (the extended request id)
};

/// Parses the response of a failed request. Never fails: a body that is empty (HEAD
/// responses), not XML (a proxy's HTML page) or XML other than `<Error>` leaves the fields
/// but `http_status` empty, and the status alone then drives classification and message.
inline s3_error parse_error_response(unsigned http_status, std::string_view body)
{
    s3_error e;
    e.http_status = http_status;
    // Error documents are small; a huge body is some other server's page, not worth parsing.
    xml::limits lim;
    lim.max_input = 1u << 20;
    xml::parse_error err;
    auto root = xml::parse(body, err, lim);
    if (!root || root->name != "Error")
        return e;
    auto take = [&](std::string_view name, std::string& out) {
        if (auto t = root->child_text(name))
            out.assign(*t);
    };
    take("Code", e.code);
    take("Message", e.message);
    take("Key", e.key);
    take("BucketName", e.bucket_name);
    take("RequestId", e.request_id);
    take("HostId", e.host_id);
    return e;
}

/// What a reader should do after an error response.
enum class error_action {
    retry,           ///< transient: retry with backoff (throttling, server errors, timeouts)
    object_changed,  ///< the object's ETag no longer matches: restart it or fail, never splice
    fail,            ///< permanent: credentials, permissions, missing object, bad request
};

/// Classifies an error response. A known S3 error code decides; otherwise the status does:
/// 408, 429 and 5xx retry, 412 is `object_changed`, anything else fails.
///
/// `RequestTimeTooSkewed` fails rather than retries: pipemode signs with the local clock and
/// does not correct for skew, so every retry would be rejected the same way until the clock is
/// fixed, and the message says so. `ExpiredToken` fails here too; refreshing credentials is
/// the credential provider's business, before a new attempt.
inline error_action classify(const s3_error& e) noexcept
{
    std::string_view c = e.code;
    if (c == "SlowDown" || c == "InternalError" || c == "ServiceUnavailable" || c == "RequestTimeout"
        || c == "Throttling" || c == "ThrottlingException" || c == "RequestLimitExceeded"
        || c == "TooManyRequestsException" || c == "OperationAborted")
        return error_action::retry;
    if (c == "PreconditionFailed")
        return error_action::object_changed;
    if (c == "AccessDenied" || c == "InvalidAccessKeyId" || c == "SignatureDoesNotMatch" || c == "NoSuchKey"
        || c == "NoSuchBucket" || c == "RequestTimeTooSkewed" || c == "ExpiredToken" || c == "InvalidToken"
        || c == "InvalidRange" || c == "InvalidBucketName" || c == "AllAccessDisabled"
        || c == "PermanentRedirect" || c == "AuthorizationHeaderMalformed")
        return error_action::fail;
    unsigned s = e.http_status;
    if (s == 408 || s == 429 || (s >= 500 && s <= 599))
        return error_action::retry;
    if (s == 412)
        return error_action::object_changed;
    return error_action::fail;
}

/// The S3 error codes that mean "slow down": the request may be retried, and the reader should
/// also run fewer requests at once (see `http::concurrency_limit`).
inline constexpr std::string_view throttling_codes[] = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
};

/// Classifies a failed response for the transport's retry policy by its status and, when the
/// body was an S3 `<Error>` document, its `code` (empty otherwise).
///
/// Retry or not is `classify`'s decision, so the two never disagree; this function only
/// refines its `retry` into `throttled` (a throttling code, or status 503 or 429), `timeout`
/// (`RequestTimeout` or 408) and `server_error` (the rest), and maps `object_changed` as is.
/// Everything `classify` fails is `client_error`, redirects included: pipemode does not follow
/// them, so the same request would fail again. With an empty code it is
/// `http::classify_status(status)`.
inline http::failure_kind classify_failure(unsigned http_status, std::string_view code)
{
    s3_error e;
    e.http_status = http_status;
    e.code.assign(code);
    switch (classify(e)) {
    case error_action::object_changed:
        return http::failure_kind::object_changed;
    case error_action::fail:
        return http::failure_kind::client_error;
    case error_action::retry:
        break;
    }
    if (std::find(std::begin(throttling_codes), std::end(throttling_codes), code) != std::end(throttling_codes)
        || http_status == 503 || http_status == 429)
        return http::failure_kind::throttled;
    if (code == "RequestTimeout" || http_status == 408)
        return http::failure_kind::timeout;
    return http::failure_kind::server_error;
}

/// Renders a one-line message: "SOURCE: HTTP 403 AccessDenied: Access Denied (request id X)",
/// or, without an S3 error document, "SOURCE: HTTP 404 Not Found (no S3 error document in the
/// response)". A hint follows for errors whose fix is not obvious from S3's words (clock
/// skew, a precondition failure meaning the object changed, a wrong region).
///
/// `source` names what was requested, e.g. "s3://bucket/key" (see `s3_uri::to_string`).
inline std::string describe(const s3_error& e, std::string_view source)
{
    std::string s(source);
    s += ": HTTP ";
    s += std::to_string(e.http_status);
    if (!e.code.empty()) {
        s += ' ';
        s += e.code;
        if (!e.message.empty()) {
            s += ": ";
            s += e.message;
        }
    } else {
        std::string_view reason = http::reason_phrase(e.http_status);
        if (!reason.empty()) {
            s += ' ';
            s += reason;
        }
        s += " (no S3 error document in the response)";
    }
    if (!e.request_id.empty()) {
        s += " (request id ";
        s += e.request_id;
        s += ')';
    }
    if (e.code == "RequestTimeTooSkewed")
        s += "; the local clock is off: synchronise it (NTP) and retry";
    else if (e.code == "PreconditionFailed" || (e.code.empty() && e.http_status == 412))
        s += "; the object changed while it was being read";
    else if (e.code == "PermanentRedirect" || e.code == "AuthorizationHeaderMalformed")
        s += "; the bucket is in another region: set AWS_REGION to the bucket's region";
    return s;
}

} // namespace pipemode::s3
