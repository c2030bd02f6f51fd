// Tests of s3_uri, http_url and the request URLs built from them.
#include <pipemode/s3/uri.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

using namespace pipemode::s3;

TEST_CASE("s3 URIs split into bucket and raw key")
{
    auto u = parse_s3_uri("s3://my-bucket/train/part-00001.rec");
    CHECK(u.bucket == "my-bucket");
    CHECK(u.key == "train/part-00001.rec");
    CHECK_FALSE(u.is_prefix());
    CHECK(u.to_string() == "s3://my-bucket/train/part-00001.rec");

    auto p = parse_s3_uri("s3://my-bucket/train/");
    CHECK(p.key == "train/");
    CHECK(p.is_prefix());

    auto b = parse_s3_uri("s3://my-bucket");
    CHECK(b.key.empty());
    CHECK(b.is_prefix());
    CHECK(b.to_string() == "s3://my-bucket");

    auto slash = parse_s3_uri("s3://my-bucket/");
    CHECK(slash.key.empty());
    CHECK(slash.bucket == "my-bucket");

    // Keys are kept byte for byte: no percent-decoding, spaces, UTF-8 and repeated slashes stay.
    auto raw = parse_s3_uri("S3://bkt/a%20b c/\xC3\xA9t\xC3\xA9//x+y");
    CHECK(raw.bucket == "bkt");
    CHECK(raw.key == "a%20b c/\xC3\xA9t\xC3\xA9//x+y");
    CHECK(raw == s3_uri{"bkt", "a%20b c/\xC3\xA9t\xC3\xA9//x+y"});
}

TEST_CASE("bad s3 URIs throw invalid_argument with a sentence")
{
    auto message_of = [](std::string_view text) {
        try {
            (void)parse_s3_uri(text);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no exception");
    };
    CHECK(message_of("http://bucket/key").find("must start with s3://") != std::string::npos);
    CHECK(message_of("s3://").find("no bucket name") != std::string::npos);
    CHECK(message_of("s3:///key").find("no bucket name") != std::string::npos);
    CHECK(message_of("s3://ab/key").find("invalid bucket name 'ab'") != std::string::npos);
    CHECK(message_of("s3://bad bucket/key").find("invalid bucket name") != std::string::npos);
    CHECK(message_of("s3:/bucket/key").find("must start with s3://") != std::string::npos);

    std::string why;
    CHECK_FALSE(try_parse_s3_uri("bucket/key", why));
    CHECK(why.find("'bucket/key' is not an S3 URI") != std::string::npos);
}

TEST_CASE("bucket name rules: DNS-compatible names and legacy names")
{
    CHECK(is_dns_compatible_bucket("abc"));
    CHECK(is_dns_compatible_bucket("my.bucket-01"));
    CHECK(is_dns_compatible_bucket(std::string(63, 'a')));
    CHECK_FALSE(is_dns_compatible_bucket(std::string(64, 'a')));
    CHECK_FALSE(is_dns_compatible_bucket("ab"));
    CHECK_FALSE(is_dns_compatible_bucket("-abc"));
    CHECK_FALSE(is_dns_compatible_bucket("abc-"));
    CHECK_FALSE(is_dns_compatible_bucket("a..b"));
    CHECK_FALSE(is_dns_compatible_bucket("a.-b"));
    CHECK_FALSE(is_dns_compatible_bucket("a-.b"));
    CHECK_FALSE(is_dns_compatible_bucket("My-Bucket"));
    CHECK_FALSE(is_dns_compatible_bucket("my_bucket"));
    CHECK_FALSE(is_dns_compatible_bucket("192.168.5.4"));
    CHECK(is_dns_compatible_bucket("192.168.5.4a"));
    CHECK(is_dns_compatible_bucket("1.2.3"));

    // Legacy us-east-1 names: readable, never DNS-addressed.
    CHECK(is_valid_bucket_name("My_Legacy.Bucket"));
    CHECK(is_valid_bucket_name(std::string(255, 'A')));
    CHECK_FALSE(is_valid_bucket_name(std::string(256, 'A')));
    CHECK_FALSE(is_valid_bucket_name("with space"));
    CHECK_FALSE(is_valid_bucket_name("slash/inside"));
    CHECK_FALSE(is_valid_bucket_name("\xC3\xA9t\xC3\xA9"));
    CHECK(parse_s3_uri("s3://My_Legacy/k").bucket == "My_Legacy");
}

TEST_CASE("http URLs: scheme, host, default and explicit ports, path, query")
{
    auto u = parse_http_url("http://127.0.0.1:9000");
    CHECK(u.scheme == "http");
    CHECK(u.host == "127.0.0.1");
    CHECK(u.port == 9000);
    CHECK(u.path.empty());
    CHECK(u.query.empty());
    CHECK(u.authority() == "127.0.0.1:9000");
    CHECK(u.to_string() == "http://127.0.0.1:9000");

    auto s = parse_http_url("HTTPS://Example.COM/data/train.rec?versionId=3&x=a%20b");
    CHECK(s.scheme == "https");
    CHECK(s.host == "example.com");
    CHECK(s.port == 443);
    CHECK(s.path == "/data/train.rec");
    CHECK(s.query == "versionId=3&x=a%20b");
    CHECK(s.authority() == "example.com");
    CHECK(s.to_string() == "https://example.com/data/train.rec?versionId=3&x=a%20b");

    auto d = parse_http_url("http://host/");
    CHECK(d.port == 80);
    CHECK(d.path == "/");

    auto q = parse_http_url("http://host?a=1");
    CHECK(q.path.empty());
    CHECK(q.query == "a=1");

    auto explicit_default = parse_http_url("https://host:443/x");
    CHECK(explicit_default.port == 443);
    CHECK(explicit_default.authority() == "host");

    auto v6 = parse_http_url("http://[::1]:8080/p");
    CHECK(v6.host == "[::1]");
    CHECK(v6.port == 8080);
    CHECK(v6.path == "/p");
    CHECK(parse_http_url("http://[::1]").port == 80);
}

TEST_CASE("bad http URLs throw invalid_argument with a sentence")
{
    auto message_of = [](std::string_view text) {
        try {
            (void)parse_http_url(text);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no exception");
    };
    CHECK(message_of("127.0.0.1:9000").find("must start with http:// or https://") != std::string::npos);
    CHECK(message_of("ftp://host/").find("scheme must be http or https") != std::string::npos);
    CHECK(message_of("http://").find("host is empty") != std::string::npos);
    CHECK(message_of("http://:9000").find("host is empty") != std::string::npos);
    CHECK(message_of("http://host:").find("port after ':' is empty") != std::string::npos);
    CHECK(message_of("http://host:0").find("1 to 65535") != std::string::npos);
    CHECK(message_of("http://host:65536").find("1 to 65535") != std::string::npos);
    CHECK(message_of("http://host:123456").find("1 to 65535") != std::string::npos);
    CHECK(message_of("http://host:9x").find("1 to 65535") != std::string::npos);
    CHECK(message_of("http://user:pw@host/").find("user@host") != std::string::npos);
    CHECK(message_of("http://host/#frag").find("fragment") != std::string::npos);
    CHECK(message_of("http://[::1/").find("closing ']'") != std::string::npos);
    CHECK(message_of("http://[::1]x/").find("after the IPv6") != std::string::npos);
    CHECK(message_of("http://ho st/").find("not allowed in a host name") != std::string::npos);
    CHECK(message_of("http://a]b/").find("not allowed in a host name") != std::string::npos);
    CHECK(message_of("http://[a[b]/").find("not allowed in a host name") != std::string::npos);
    CHECK(message_of("http://[::1]]/").find("after the IPv6") != std::string::npos);
    CHECK(parse_http_url("http://host:65535").port == 65535);
}

TEST_CASE("uri_encode keeps only unreserved bytes, uppercase hex, '/' on request")
{
    CHECK(uri_encode("AZaz09-._~", false) == "AZaz09-._~");
    CHECK(uri_encode("a b/c+d=e&f%", true) == "a%20b/c%2Bd%3De%26f%25");
    CHECK(uri_encode("a b/c", false) == "a%20b%2Fc");
    CHECK(uri_encode("\xC3\xA9\xFF", true) == "%C3%A9%FF");
    CHECK(uri_encode(std::string_view("\0x", 2), true) == "%00x");
    CHECK(encode_query({{"list-type", "2"}, {"prefix", "a b/"}}) == "list-type=2&prefix=a%20b%2F");
}

TEST_CASE("object URLs: path style for custom endpoints, virtual-hosted for AWS")
{
    auto minio = parse_http_url("http://127.0.0.1:9000");
    CHECK(choose_addressing(minio, "bucket") == addressing::path);
    CHECK(object_url(minio, "bucket", "train/a b+c.rec", addressing::path)
          == "http://127.0.0.1:9000/bucket/train/a%20b%2Bc.rec");
    CHECK(bucket_url(minio, "bucket", addressing::path) == "http://127.0.0.1:9000/bucket");

    auto aws = aws_endpoint("eu-west-3");
    CHECK(aws.to_string() == "https://s3.eu-west-3.amazonaws.com");
    CHECK(is_aws_endpoint(aws));
    CHECK(choose_addressing(aws, "bucket") == addressing::virtual_hosted);
    CHECK(object_url(aws, "bucket", "k/\xC3\xA9.rec", addressing::virtual_hosted)
          == "https://bucket.s3.eu-west-3.amazonaws.com/k/%C3%A9.rec");
    CHECK(bucket_url(aws, "bucket", addressing::virtual_hosted) == "https://bucket.s3.eu-west-3.amazonaws.com/");

    // Dots under https would not match *.s3.REGION.amazonaws.com's certificate.
    CHECK(choose_addressing(aws, "my.bucket") == addressing::path);
    CHECK(object_url(aws, "my.bucket", "k", addressing::path) == "https://s3.eu-west-3.amazonaws.com/my.bucket/k");
    // Over plain http, dots are fine as DNS labels.
    auto aws_http = parse_http_url("http://s3.us-east-1.amazonaws.com");
    CHECK(choose_addressing(aws_http, "my.bucket") == addressing::virtual_hosted);
    // Legacy names cannot be DNS labels.
    CHECK(choose_addressing(aws, "My_Bucket") == addressing::path);
    CHECK(choose_addressing(parse_http_url("https://s3.cn-north-1.amazonaws.com.cn"), "b-1") == addressing::virtual_hosted);
    CHECK_FALSE(is_aws_endpoint(parse_http_url("https://amazonaws.com.evil.example")));

    // An endpoint with a path of its own keeps it, without doubling the slash.
    auto proxied = parse_http_url("https://gw.example/s3/");
    CHECK(object_url(proxied, "b", "/lead", addressing::path) == "https://gw.example/s3/b//lead");
    CHECK(object_url(proxied, "b", "", addressing::path) == "https://gw.example/s3/b/");

    CHECK_THROWS_AS(aws_endpoint(""), std::invalid_argument);
    CHECK_THROWS_AS(aws_endpoint("eu west"), std::invalid_argument);
}
