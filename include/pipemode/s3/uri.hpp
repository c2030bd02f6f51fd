// pipemode: S3 and HTTP locations: `s3://bucket/key` URIs, `http(s)://` URLs and the request
// URL of an object under path-style or virtual-hosted addressing. Pure string work, no I/O.
//
// Malformed URIs and URLs are configuration errors (they come from options, environment
// variables and channel configuration), so the throwing parsers raise `std::invalid_argument`
// with a sentence that says what is wrong. `try_parse_s3_uri` is the non-throwing form for URIs
// that come from data (manifest files). See docs/s3-parsing.md.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::s3 {

namespace detail {

inline constexpr bool is_lower_alnum(char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

inline constexpr bool is_alnum(char c) noexcept
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

inline constexpr char ascii_lower(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

// Four dot-separated decimal numbers: S3 forbids bucket names that look like IPv4 addresses.
inline bool looks_like_ipv4(std::string_view s) noexcept
{
    int parts = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t j = i;
        while (j < s.size() && s[j] >= '0' && s[j] <= '9')
            ++j;
        if (j == i || j - i > 3)
            return false;
        ++parts;
        if (j == s.size())
            break;
        if (s[j] != '.')
            return false;
        i = j + 1;
    }
    return parts == 4;
}

} // namespace detail

/// True when `name` follows S3's current bucket naming rules: 3 to 63 characters of lowercase
/// letters, digits, dots and hyphens, starting and ending with a letter or digit, no two
/// adjacent dots and not shaped like an IPv4 address.
///
/// Only such names can be used as a DNS label for virtual-hosted addressing.
inline bool is_dns_compatible_bucket(std::string_view name) noexcept
{
    if (name.size() < 3 || name.size() > 63)
        return false;
    if (!detail::is_lower_alnum(name.front()) || !detail::is_lower_alnum(name.back()))
        return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        if (!(detail::is_lower_alnum(c) || c == '-' || c == '.'))
            return false;
        if (c == '.' && i > 0 && (name[i - 1] == '.' || name[i - 1] == '-'))
            return false;
        if (c == '-' && i > 0 && name[i - 1] == '.')
            return false;
    }
    return !detail::looks_like_ipv4(name);
}

/// True when `name` is a bucket name pipemode accepts: a DNS-compatible name, or a legacy
/// us-east-1 name of 3 to 255 letters (either case), digits, dots, hyphens and underscores.
///
/// Legacy names are accepted because a reader must be able to read data that already exists;
/// they are always addressed path-style (see `choose_addressing`).
inline bool is_valid_bucket_name(std::string_view name) noexcept
{
    if (is_dns_compatible_bucket(name))
        return true;
    if (name.size() < 3 || name.size() > 255)
        return false;
    for (char c : name)
        if (!(detail::is_alnum(c) || c == '-' || c == '.' || c == '_'))
            return false;
    return true;
}

/// An S3 location: a bucket and a key (or key prefix), the key kept exactly as written
/// (unencoded UTF-8).
struct s3_uri {
    std::string bucket;  ///< a name accepted by `is_valid_bucket_name`
    std::string key;     ///< raw key or prefix; empty for the whole bucket

    /// True when this names a prefix (a "folder") rather than one object: the key is empty or
    /// ends with '/'.
    bool is_prefix() const noexcept { return key.empty() || key.back() == '/'; }

    /// Renders "s3://bucket/key" ("s3://bucket" when the key is empty).
    std::string to_string() const
    {
        std::string s = "s3://" + bucket;
        if (!key.empty()) {
            s += '/';
            s += key;
        }
        return s;
    }

    friend bool operator==(const s3_uri&, const s3_uri&) = default;
};

/// Parses `s3://bucket`, `s3://bucket/`, `s3://bucket/key` or `s3://bucket/prefix/` without
/// throwing; on failure returns nothing and sets `why` to a sentence saying what is wrong.
///
/// The scheme is matched case-insensitively; the key is everything after the first '/' that
/// follows the bucket, byte for byte (no percent-decoding: S3 keys may contain '%').
inline std::optional<s3_uri> try_parse_s3_uri(std::string_view text, std::string& why)
{
    constexpr std::string_view scheme = "s3://";
    if (text.size() < scheme.size() || !detail::iequals(text.substr(0, scheme.size()), scheme)) {
        why = "'" + std::string(text) + "' is not an S3 URI: it must start with s3:// (e.g. s3://bucket/prefix/)";
        return std::nullopt;
    }
    std::string_view rest = text.substr(scheme.size());
    std::size_t slash = rest.find('/');
    std::string_view bucket = rest.substr(0, slash);
    if (bucket.empty()) {
        why = "'" + std::string(text) + "' has no bucket name after s3://";
        return std::nullopt;
    }
    if (!is_valid_bucket_name(bucket)) {
        why = "'" + std::string(text) + "' has an invalid bucket name '" + std::string(bucket)
            + "': use 3-63 lowercase letters, digits, dots and hyphens";
        return std::nullopt;
    }
    s3_uri u;
    u.bucket = std::string(bucket);
    if (slash != std::string_view::npos)
        u.key = std::string(rest.substr(slash + 1));
    return u;
}

/// Parses an S3 URI (see `try_parse_s3_uri`); throws `std::invalid_argument` saying what is
/// wrong when it is not one.
///
/// Example: `parse_s3_uri("s3://my-bucket/train/")` is `{"my-bucket", "train/"}`, a prefix.
inline s3_uri parse_s3_uri(std::string_view text)
{
    std::string why;
    auto u = try_parse_s3_uri(text, why);
    if (!u)
        throw std::invalid_argument(why);
    return std::move(*u);
}

/// An `http://` or `https://` URL split into its parts: a plain-HTTP data source, or an S3
/// endpoint override such as `AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000`.
struct http_url {
    std::string scheme;     ///< "http" or "https", lowercase
    std::string host;       ///< lowercase host name, IPv4 address or bracketed IPv6 address
    std::uint16_t port = 0; ///< the explicit port, else 80 for http and 443 for https
    std::string path;       ///< from the first '/' (kept encoded as written); empty when absent
    std::string query;      ///< after '?', without it; empty when absent

    /// True for https.
    bool is_https() const noexcept { return scheme == "https"; }

    /// The scheme's default port (80 or 443).
    std::uint16_t default_port() const noexcept { return is_https() ? 443 : 80; }

    /// "host" or "host:port" when the port is not the scheme's default: the Host header value.
    std::string authority() const
    {
        if (port == default_port())
            return host;
        return host + ':' + std::to_string(port);
    }

    /// Renders "scheme://authority/path[?query]".
    std::string to_string() const
    {
        std::string s = scheme + "://" + authority() + path;
        if (!query.empty()) {
            s += '?';
            s += query;
        }
        return s;
    }

    friend bool operator==(const http_url&, const http_url&) = default;
};

/// Parses `http[s]://host[:port][/path][?query]`; throws `std::invalid_argument` saying what is
/// wrong for any other scheme, an empty host, a bad port, user information (`user@host`) or a
/// fragment.
inline http_url parse_http_url(std::string_view text)
{
    auto bad = [&](std::string_view what) {
        return std::invalid_argument("'" + std::string(text) + "' is not a usable URL: " + std::string(what));
    };
    std::size_t colon = text.find("://");
    if (colon == std::string_view::npos)
        throw bad("it must start with http:// or https:// (e.g. http://127.0.0.1:9000)");
    http_url u;
    for (char c : text.substr(0, colon))
        u.scheme += detail::ascii_lower(c);
    if (u.scheme != "http" && u.scheme != "https")
        throw bad("the scheme must be http or https");
    std::string_view rest = text.substr(colon + 3);
    if (rest.find('#') != std::string_view::npos)
        throw bad("remove the fragment ('#...')");
    std::size_t end = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, end);
    if (end != std::string_view::npos) {
        std::string_view tail = rest.substr(end);
        std::size_t q = tail.find('?');
        u.path = std::string(tail.substr(0, q));
        if (q != std::string_view::npos)
            u.query = std::string(tail.substr(q + 1));
    }
    if (authority.find('@') != std::string_view::npos)
        throw bad("credentials in the URL (user@host) are not supported; use the AWS credential settings");
    std::string_view host = authority;
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos)
            throw bad("the IPv6 address has no closing ']'");
        host = authority.substr(0, close + 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':')
                throw bad("unexpected text after the IPv6 address");
            port = after.substr(1);
            if (port.empty())
                throw bad("the port after ':' is empty");
        }
    } else if (std::size_t c = authority.rfind(':'); c != std::string_view::npos) {
        host = authority.substr(0, c);
        port = authority.substr(c + 1);
        if (port.empty())
            throw bad("the port after ':' is empty");
    }
    if (host.empty() || host == "[]")
        throw bad("the host is empty");
    // Brackets and colons belong to an IPv6 literal only, and hex digits and colons are all it holds.
    bool ipv6 = host.front() == '[';
    for (std::size_t i = 0; i < host.size(); ++i) {
        char c = host[i];
        bool ok = ipv6 ? (c == ':' || c == '.' || detail::is_alnum(c) || (c == '[' && i == 0) || (c == ']' && i + 1 == host.size()))
                       : (detail::is_alnum(c) || c == '-' || c == '.' || c == '_');
        if (!ok)
            throw bad("the host contains a character that is not allowed in a host name");
        u.host += detail::ascii_lower(c);
    }
    if (port.empty()) {
        u.port = u.default_port();
    } else {
        unsigned long value = 0;
        for (char c : port) {
            if (c < '0' || c > '9' || port.size() > 5)
                throw bad("the port must be a number from 1 to 65535");
            value = value * 10 + static_cast<unsigned long>(c - '0');
        }
        if (value == 0 || value > 65535)
            throw bad("the port must be a number from 1 to 65535");
        u.port = static_cast<std::uint16_t>(value);
    }
    return u;
}

/// The AWS endpoint of S3 in `region`: `https://s3.REGION.amazonaws.com`.
inline http_url aws_endpoint(std::string_view region)
{
    if (region.empty())
        throw std::invalid_argument("the AWS region is empty: set AWS_REGION (e.g. eu-west-3)");
    for (char c : region)
        if (!(detail::is_lower_alnum(c) || c == '-'))
            throw std::invalid_argument("'" + std::string(region) + "' is not an AWS region name (e.g. eu-west-3)");
    http_url u;
    u.scheme = "https";
    u.host = "s3." + std::string(region) + ".amazonaws.com";
    u.port = 443;
    return u;
}

/// How a request names its bucket: in the path (`http://host/bucket/key`) or in the host name
/// (`https://bucket.s3.REGION.amazonaws.com/key`).
enum class addressing {
    path,            ///< `scheme://endpoint/bucket/key`
    virtual_hosted,  ///< `scheme://bucket.endpoint/key`
};

/// True when `endpoint` is one of AWS's own S3 host names (`*.amazonaws.com`, `*.amazonaws.com.cn`).
inline bool is_aws_endpoint(const http_url& endpoint) noexcept
{
    auto ends_with = [&](std::string_view suffix) {
        std::string_view h = endpoint.host;
        return h.size() > suffix.size() && h.substr(h.size() - suffix.size()) == suffix;
    };
    return ends_with(".amazonaws.com") || ends_with(".amazonaws.com.cn");
}

/// Chooses the addressing style for `bucket` at `endpoint`.
///
/// Virtual-hosted for AWS endpoints, which is what AWS supports for new buckets; path-style
/// for any other endpoint (MinIO, moto, LocalStack and most S3-compatible servers only route
/// path-style without DNS set-up), for legacy bucket names that cannot be a DNS label, and for
/// bucket names with dots under https, whose host name would not match AWS's wildcard
/// certificate.
inline addressing choose_addressing(const http_url& endpoint, std::string_view bucket) noexcept
{
    if (!is_aws_endpoint(endpoint) || !is_dns_compatible_bucket(bucket))
        return addressing::path;
    if (endpoint.is_https() && bucket.find('.') != std::string_view::npos)
        return addressing::path;
    return addressing::virtual_hosted;
}

/// Percent-encodes `text` the way S3 and SigV4 expect: every byte outside `A-Za-z0-9-._~` as
/// `%XX` with uppercase hex digits; '/' is kept when `keep_slash` (object keys in paths) and
/// encoded otherwise (query parameters).
inline std::string uri_encode(std::string_view text, bool keep_slash)
{
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        if (detail::is_alnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || (keep_slash && ch == '/')) {
            out += ch;
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    return out;
}

/// Renders query parameters as `k1=v1&k2=v2`, each name and value encoded with
/// `uri_encode(..., false)`, in the order given.
inline std::string encode_query(const std::vector<std::pair<std::string, std::string>>& params)
{
    std::string out;
    for (const auto& [name, value] : params) {
        if (!out.empty())
            out += '&';
        out += uri_encode(name, false);
        out += '=';
        out += uri_encode(value, false);
    }
    return out;
}

namespace detail {

// "scheme://" + host (with the bucket label for virtual-hosted) + port + the endpoint's own
// path without its trailing '/', then the bucket for path style.
inline std::string bucket_base(const http_url& endpoint, std::string_view bucket, addressing style)
{
    std::string url = endpoint.scheme + "://";
    if (style == addressing::virtual_hosted) {
        url.append(bucket);
        url += '.';
    }
    url += endpoint.authority();
    std::string_view base = endpoint.path;
    while (!base.empty() && base.back() == '/')
        base.remove_suffix(1);
    url.append(base);
    if (style == addressing::path) {
        url += '/';
        url.append(bucket);
    }
    return url;
}

} // namespace detail

/// The URL of the object `key` in `bucket` at `endpoint`: e.g.
/// `http://127.0.0.1:9000/bucket/a%20b.rec` (path) or
/// `https://bucket.s3.eu-west-3.amazonaws.com/a%20b.rec` (virtual-hosted).
///
/// The key is encoded with `uri_encode(key, true)`; the endpoint's query, if any, is dropped.
inline std::string object_url(const http_url& endpoint, std::string_view bucket, std::string_view key, addressing style)
{
    std::string url = detail::bucket_base(endpoint, bucket, style);
    url += '/';
    url += uri_encode(key, true);
    return url;
}

/// The URL of the bucket itself, the target of ListObjectsV2: `http://host:port/bucket` (path)
/// or `https://bucket.s3.REGION.amazonaws.com/` (virtual-hosted); append `?` and the query.
inline std::string bucket_url(const http_url& endpoint, std::string_view bucket, addressing style)
{
    std::string url = detail::bucket_base(endpoint, bucket, style);
    if (style == addressing::virtual_hosted)
        url += '/';
    return url;
}

} // namespace pipemode::s3
