// Fuzz target for the location parsers of s3/uri.hpp: try_parse_s3_uri, parse_s3_uri and
// parse_http_url (the only URL parser; remote/http_store.hpp takes URLs as given and joins listing
// hrefs to them), and the URL builders fed with what they accept.
//
// On any input (and on each line of it):
// - the parsers never crash or read out of bounds, and fail only in their documented way:
//   try_parse_s3_uri returns nothing with a reason, parse_s3_uri and parse_http_url throw
//   std::invalid_argument; the throwing and non-throwing S3 parsers agree;
// - an S3 URI that parses has a valid bucket name, a key that is the input's tail byte for
//   byte, and to_string() parses back to the same URI;
// - a URL that parses has scheme http or https, a non-empty lowercase host, a non-zero port,
//   a path that is empty or starts with '/', and to_string() parses back to the same URL;
// - uri_encode leaves only unreserved characters (and '/' when asked) and decodes back to its
//   input; the object and bucket URLs built from a parsed endpoint and bucket start with the
//   endpoint's scheme, and virtual-hosted addressing is chosen only for DNS-compatible buckets.
//
// The seeds in uri.corpus/ are S3 URIs and endpoint URLs as they appear in configuration.
#include <pipemode/s3/uri.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using namespace pipemode::s3;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

bool unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
        || c == '_' || c == '~';
}

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void check_encoding(std::string_view text, bool keep_slash)
{
    const std::string encoded = uri_encode(text, keep_slash);
    std::string decoded;
    for (std::size_t i = 0; i < encoded.size(); ++i) {
        const char c = encoded[i];
        if (c == '%') {
            check(i + 2 < encoded.size());
            const int hi = hex_value(encoded[i + 1]);
            const int lo = hex_value(encoded[i + 2]);
            check(hi >= 0 && lo >= 0);
            const char byte = static_cast<char>(hi * 16 + lo);
            check(!unreserved(byte) && !(keep_slash && byte == '/'));  // encoded only when needed
            decoded += byte;
            i += 2;
        } else {
            check(unreserved(c) || (keep_slash && c == '/'));
            decoded += c;
        }
    }
    check(decoded == text);
}

std::optional<s3_uri> fuzz_s3_uri(std::string_view text)
{
    std::string why;
    auto u = try_parse_s3_uri(text, why);
    check(u.has_value() == why.empty());
    bool threw = false;
    try {
        const s3_uri thrown_form = parse_s3_uri(text);
        check(u && thrown_form == *u);
    } catch (const std::invalid_argument& e) {
        threw = true;
        check(std::string_view(why).starts_with(e.what()));  // what() ends at a NUL of the input
    }
    check(threw == !u);
    if (!u)
        return u;
    check(is_valid_bucket_name(u->bucket));
    check(text.ends_with(u->key) && u->key.size() + u->bucket.size() + 5 <= text.size());
    check(u->is_prefix() == (u->key.empty() || u->key.back() == '/'));
    std::string again_why;
    const auto again = try_parse_s3_uri(u->to_string(), again_why);
    check(again && *again == *u);
    return u;
}

std::optional<http_url> fuzz_http_url(std::string_view text)
{
    std::optional<http_url> u;
    try {
        u = parse_http_url(text);
    } catch (const std::invalid_argument&) {
        return std::nullopt;
    }
    check(u->scheme == "http" || u->scheme == "https");
    check(!u->host.empty() && u->port != 0);
    for (char c : u->host)
        check(!(c >= 'A' && c <= 'Z'));
    check(u->path.empty() || u->path.front() == '/');
    check(u->path.find('?') == std::string::npos && u->path.find('#') == std::string::npos);
    const std::string rendered = u->to_string();
    check(rendered.size() <= text.size());  // only a default port, leading zeros or an empty '?' dropped
    http_url again;
    try {
        again = parse_http_url(rendered);
    } catch (const std::invalid_argument&) {
        check(false);
    }
    check(again == *u);
    return u;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    fuzz_s3_uri(input);
    fuzz_http_url(input);
    check_encoding(input, true);
    check_encoding(input, false);

    // Line 1 an endpoint, line 2 an S3 URI (or a bucket name and key): the URL builders.
    const auto nl = input.find('\n');
    if (nl == std::string_view::npos)
        return 0;
    const auto endpoint = fuzz_http_url(input.substr(0, nl));
    const std::string_view second = input.substr(nl + 1);
    std::optional<s3_uri> location = fuzz_s3_uri(second);
    if (!location) {
        const auto slash = second.find('/');
        const std::string_view bucket = second.substr(0, slash);
        if (is_valid_bucket_name(bucket))
            location = s3_uri{std::string(bucket), slash == std::string_view::npos ? "" : std::string(second.substr(slash + 1))};
    }
    if (!endpoint || !location)
        return 0;
    const addressing style = choose_addressing(*endpoint, location->bucket);
    check(style == addressing::path || (is_dns_compatible_bucket(location->bucket) && is_aws_endpoint(*endpoint)));
    for (const addressing a : {addressing::path, style}) {
        const std::string object = object_url(*endpoint, location->bucket, location->key, a);
        const std::string bucket = bucket_url(*endpoint, location->bucket, a);
        const std::string scheme = endpoint->scheme + "://";
        check(object.starts_with(scheme) && bucket.starts_with(scheme));
        check(object.ends_with('/' + uri_encode(location->key, true)));
        check(object.find_first_of("?#") == std::string::npos);
        check(object.find(location->bucket) != std::string::npos && bucket.find(location->bucket) != std::string::npos);
    }
    const std::string query = encode_query({{location->bucket, location->key}, {"prefix", std::string(second)}});
    check(query.find('/') == std::string::npos && query.find('?') == std::string::npos);
    return 0;
}
