// Tests of S3 error responses: parsing, retry classification (s3::classify, and
// s3::classify_failure for the transport's retry policy) and the one-line message.
#include <pipemode/s3/error_response.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

using namespace pipemode::s3;
namespace http = pipemode::http;

namespace {

const char* const access_denied = R"(<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><Key>train/part-0.rec</Key><BucketName>my-bucket</BucketName><RequestId>4442587FB7D0A2F9</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>)";

s3_error with(unsigned status, std::string code)
{
    s3_error e;
    e.http_status = status;
    e.code = std::move(code);
    return e;
}

} // namespace

TEST_CASE("error response: the fields of S3's Error document")
{
    auto e = parse_error_response(403, access_denied);
    CHECK(e.http_status == 403);
    CHECK(e.code == "AccessDenied");
    CHECK(e.message == "Access Denied");
    CHECK(e.key == "train/part-0.rec");
    CHECK(e.bucket_name == "my-bucket");
    CHECK(e.request_id == "4442587FB7D0A2F9");
    CHECK(e.host_id == "Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==");
    CHECK(classify(e) == error_action::fail);
    CHECK(describe(e, "s3://my-bucket/train/part-0.rec")
          == "s3://my-bucket/train/part-0.rec: HTTP 403 AccessDenied: Access Denied (request id 4442587FB7D0A2F9)");
}

TEST_CASE("error response: bodies that are not S3 errors give a message from the status")
{
    const char* nginx = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n"
                        "<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
    auto e = parse_error_response(404, nginx);
    CHECK(e.http_status == 404);
    CHECK(e.code.empty());
    CHECK(e.message.empty());
    CHECK(classify(e) == error_action::fail);
    CHECK(describe(e, "http://127.0.0.1:8080/train.rec")
          == "http://127.0.0.1:8080/train.rec: HTTP 404 Not Found (no S3 error document in the response)");

    auto head = parse_error_response(403, "");
    CHECK(head.code.empty());
    CHECK(describe(head, "s3://b/k") == "s3://b/k: HTTP 403 Forbidden (no S3 error document in the response)");

    auto other_xml = parse_error_response(500, "<ListBucketResult/>");
    CHECK(other_xml.code.empty());
    CHECK(classify(other_xml) == error_action::retry);

    auto unknown = parse_error_response(599, "not xml at all <");
    CHECK(describe(unknown, "s3://b/k") == "s3://b/k: HTTP 599 (no S3 error document in the response)");
    CHECK(classify(unknown) == error_action::retry);

    auto gone = parse_error_response(412, "");
    CHECK(classify(gone) == error_action::object_changed);
    CHECK(describe(gone, "s3://b/k")
          == "s3://b/k: HTTP 412 Precondition Failed (no S3 error document in the response); the object changed while it was being read");

    // Every truncation of a real error document still yields a message, never a crash.
    std::string doc = access_denied;
    for (std::size_t n = 0; n < doc.size(); ++n) {
        auto t = parse_error_response(403, std::string_view(doc).substr(0, n));
        CHECK(t.http_status == 403);
        CHECK(t.code.empty());
        CHECK_FALSE(describe(t, "s3://b/k").empty());
    }
}

TEST_CASE("error response: retryable and fatal codes")
{
    for (const char* code : {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                             "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "OperationAborted"}) {
        INFO(code);
        // The code decides even when the status alone would not say "retry".
        CHECK(classify(with(400, code)) == error_action::retry);
    }
    for (const char* code : {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchKey", "NoSuchBucket",
                             "RequestTimeTooSkewed", "ExpiredToken", "InvalidToken", "InvalidRange", "InvalidBucketName",
                             "AllAccessDisabled", "PermanentRedirect", "AuthorizationHeaderMalformed"}) {
        INFO(code);
        CHECK(classify(with(503, code)) == error_action::fail);
    }
    CHECK(classify(with(412, "PreconditionFailed")) == error_action::object_changed);
    CHECK(classify(with(200, "PreconditionFailed")) == error_action::object_changed);

    // Unknown codes: the status decides.
    for (unsigned s : {408u, 429u, 500u, 502u, 503u, 504u})
        CHECK(classify(with(s, "SomethingNew")) == error_action::retry);
    for (unsigned s : {400u, 401u, 403u, 404u, 405u, 409u, 416u, 301u})
        CHECK(classify(with(s, "SomethingNew")) == error_action::fail);
    CHECK(classify(with(412, "SomethingNew")) == error_action::object_changed);
}

TEST_CASE("classify_failure: S3 error codes")
{
    struct row {
        unsigned status;
        std::string_view code;
        http::failure_kind kind;
    };
    const row rows[] = {
        {503, "SlowDown", http::failure_kind::throttled},
        {400, "Throttling", http::failure_kind::throttled},
        {400, "ThrottlingException", http::failure_kind::throttled},
        {400, "RequestLimitExceeded", http::failure_kind::throttled},
        {429, "TooManyRequestsException", http::failure_kind::throttled},
        {503, "ServiceUnavailable", http::failure_kind::throttled},
        {500, "InternalError", http::failure_kind::server_error},
        {409, "OperationAborted", http::failure_kind::server_error},
        {400, "RequestTimeout", http::failure_kind::timeout},
        {412, "PreconditionFailed", http::failure_kind::object_changed},
        {403, "AccessDenied", http::failure_kind::client_error},
        {403, "SignatureDoesNotMatch", http::failure_kind::client_error},
        {403, "RequestTimeTooSkewed", http::failure_kind::client_error},
        {400, "ExpiredToken", http::failure_kind::client_error},
        {404, "NoSuchKey", http::failure_kind::client_error},
        {416, "InvalidRange", http::failure_kind::client_error},
        {301, "PermanentRedirect", http::failure_kind::client_error},
        // A known code decides over the status, as in s3::classify.
        {503, "AccessDenied", http::failure_kind::client_error},
        {500, "PreconditionFailed", http::failure_kind::object_changed},
        // An unknown code leaves it to the status.
        {503, "SomethingNew", http::failure_kind::throttled},
        {500, "SomethingNew", http::failure_kind::server_error},
        {400, "SomethingNew", http::failure_kind::client_error},
    };
    for (const auto& r : rows) {
        INFO("HTTP " << r.status << ' ' << r.code);
        CHECK(classify_failure(r.status, r.code) == r.kind);
    }
}

TEST_CASE("classify_failure: retry or not always agrees with s3::classify")
{
    const std::string_view codes[] = {"", "SlowDown", "Throttling", "InternalError", "ServiceUnavailable",
                                      "RequestTimeout", "OperationAborted", "PreconditionFailed", "AccessDenied",
                                      "NoSuchKey", "InvalidRange", "SomethingNew"};
    int checked = 0;
    for (unsigned status = 100; status < 600; ++status) {
        for (auto code : codes) {
            s3_error e;
            e.http_status = status;
            e.code.assign(code);
            auto action = classify(e);
            auto kind = classify_failure(status, code);
            INFO("HTTP " << status << ' ' << code);
            REQUIRE(http::is_retryable(kind) == (action == error_action::retry));
            REQUIRE((kind == http::failure_kind::object_changed) == (action == error_action::object_changed));
            ++checked;
        }
    }
    CHECK(checked == 500 * 12);
}

TEST_CASE("error response: messages carry hints where S3's words are not enough")
{
    auto skew = parse_error_response(
        403, "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message><RequestId>R1</RequestId></Error>");
    CHECK(describe(skew, "s3://b/k")
          == "s3://b/k: HTTP 403 RequestTimeTooSkewed: The difference between the request time and the current time is too "
             "large. (request id R1); the local clock is off: synchronise it (NTP) and retry");

    auto changed = parse_error_response(
        412, "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>");
    CHECK(classify(changed) == error_action::object_changed);
    CHECK(describe(changed, "s3://b/k")
          == "s3://b/k: HTTP 412 PreconditionFailed: At least one of the pre-conditions you specified did not hold; the "
             "object changed while it was being read");

    auto region = parse_error_response(301, "<Error><Code>PermanentRedirect</Code><Message>m</Message></Error>");
    CHECK(describe(region, "s3://b") == "s3://b: HTTP 301 PermanentRedirect: m; the bucket is in another region: set AWS_REGION to the bucket's region");

    auto bare = parse_error_response(404, "<Error><Code>NoSuchKey</Code></Error>");
    CHECK(describe(bare, "s3://b/k") == "s3://b/k: HTTP 404 NoSuchKey");
    auto entities = parse_error_response(400, "<Error><Code>X</Code><Message>a &lt;b&gt;</Message></Error>");
    CHECK(entities.message == "a <b>");
}
