// pipemode: ListObjectsV2, sans-I/O: the query of each page's request and the parser of its
// response (`ListBucketResult`). See docs/s3-parsing.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/detail/parse_error.hpp>
#include <pipemode/s3/xml.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::s3 {

using pipemode::detail::parse_error;

/// S3's largest page: ListObjectsV2 never returns more than 1000 keys per response.
inline constexpr std::uint32_t max_keys_per_page = 1000;

/// One object of a listing (an entry of `Contents`).
struct object_summary {
    std::string key;            ///< raw key (decoded when the response was URL-encoded)
    std::uint64_t size = 0;     ///< bytes
    std::string etag;           ///< opaque, exactly as S3 sent it, quotes included: "\"9b2c...\""
    std::string last_modified;  ///< ISO 8601 text as sent, e.g. "2026-11-28T01:02:03.000Z"

    friend bool operator==(const object_summary&, const object_summary&) = default;
};

/// One page of a ListObjectsV2 response.
struct list_objects_page {
    std::string bucket;                       ///< `Name`
    std::string prefix;                       ///< `Prefix` (decoded), empty when absent
    std::string delimiter;                    ///< `Delimiter` (decoded), empty when absent
    std::uint64_t key_count = 0;              ///< `KeyCount`: keys plus common prefixes in this page
    std::uint64_t max_keys = 0;               ///< `MaxKeys`
    bool is_truncated = false;                ///< `IsTruncated`: another page follows
    std::string continuation_token;           ///< `ContinuationToken` echoed back, empty when absent
    std::string next_continuation_token;      ///< `NextContinuationToken`; non-empty when truncated
    bool url_encoded = false;                 ///< the response had `EncodingType=url` (keys were decoded)
    std::vector<object_summary> contents;     ///< the objects, in S3's (UTF-8 binary) order
    std::vector<std::string> common_prefixes; ///< `CommonPrefixes/Prefix` (decoded)
};

/// The query parameters of one ListObjectsV2 request, sorted by name (the order SigV4's
/// canonical query wants), unencoded: pass them to the signer, or to `encode_query`.
///
/// Always asks for `encoding-type=url`, so that keys holding characters XML 1.0 cannot carry
/// (control characters) still list; `parse_list_objects` decodes them. An empty
/// `continuation_token` asks for the first page; `max_keys` is clamped to 1..1000.
inline std::vector<std::pair<std::string, std::string>>
list_objects_query(std::string_view prefix, std::string_view continuation_token = {},
                   std::uint32_t max_keys = max_keys_per_page, std::string_view delimiter = {})
{
    if (max_keys == 0)
        max_keys = 1;
    if (max_keys > max_keys_per_page)
        max_keys = max_keys_per_page;
    std::vector<std::pair<std::string, std::string>> q;
    if (!continuation_token.empty())
        q.emplace_back("continuation-token", std::string(continuation_token));
    if (!delimiter.empty())
        q.emplace_back("delimiter", std::string(delimiter));
    q.emplace_back("encoding-type", "url");
    q.emplace_back("list-type", "2");
    q.emplace_back("max-keys", std::to_string(max_keys));
    q.emplace_back("prefix", std::string(prefix));
    return q;
}

namespace detail {

inline int hex_value(char c) noexcept
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Form decoding as S3 applies it to EncodingType=url: "%XX" is a byte and '+' a space (a real
// '+' arrives as "%2B").
inline bool url_decode(std::string_view in, std::string& out)
{
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= in.size())
                return false;
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += c;
        }
    }
    return true;
}

inline bool parse_uint64(std::string_view text, std::uint64_t& out) noexcept
{
    if (text.empty())
        return false;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && p == text.data() + text.size();
}

} // namespace detail

/// Parses a ListObjectsV2 response body; on failure returns nothing and fills `err`:
/// `errc::malformed_xml`/`errc::document_too_large` from the XML reader (with the byte
/// offset), or `errc::malformed_s3_response`, at the offending element's offset, when the XML
/// is not a usable `ListBucketResult`
/// (another root, a `Contents` without `Key` or with a `Size` that is not a 64-bit unsigned
/// number, a bad URL escape, a truncated page without `NextContinuationToken`).
///
/// With `EncodingType` `url` in the response, `Key`, `Prefix`, `Delimiter` and the common
/// prefixes are decoded to raw keys. ETags stay opaque and quoted, as S3 sent them.
inline std::optional<list_objects_page> parse_list_objects(std::string_view body, parse_error& err)
{
    auto root = xml::parse(body, err);
    if (!root)
        return std::nullopt;
    // Errors point at the element at fault (the root for what is missing).
    auto bad_at = [&](const xml::element& where, std::string_view why) {
        err.fail(errc::malformed_s3_response, where.offset, why);
        return std::nullopt;
    };
    auto bad = [&](std::string_view why) { return bad_at(*root, why); };
    if (root->name != "ListBucketResult")
        return bad("the root element is not ListBucketResult");

    list_objects_page page;
    if (const auto* enc = root->child("EncodingType")) {
        if (enc->text != "url")
            return bad_at(*enc, "unknown EncodingType (only 'url' is defined)");
        page.url_encoded = true;
    }
    // Decodes in place when the response is URL-encoded.
    auto text_of = [&](std::string_view raw, std::string& out) {
        if (!page.url_encoded) {
            out.assign(raw);
            return true;
        }
        return detail::url_decode(raw, out);
    };

    bool have_truncated = false;
    for (const auto& e : root->children) {
        if (e.name == "Name") {
            page.bucket = e.text;
        } else if (e.name == "Prefix") {
            if (!text_of(e.text, page.prefix))
                return bad_at(e, "bad URL escape in Prefix");
        } else if (e.name == "Delimiter") {
            if (!text_of(e.text, page.delimiter))
                return bad_at(e, "bad URL escape in Delimiter");
        } else if (e.name == "KeyCount") {
            if (!detail::parse_uint64(e.text, page.key_count))
                return bad_at(e, "KeyCount is not a non-negative integer");
        } else if (e.name == "MaxKeys") {
            if (!detail::parse_uint64(e.text, page.max_keys))
                return bad_at(e, "MaxKeys is not a non-negative integer");
        } else if (e.name == "IsTruncated") {
            if (e.text == "true")
                page.is_truncated = true;
            else if (e.text != "false")
                return bad_at(e, "IsTruncated is neither true nor false");
            have_truncated = true;
        } else if (e.name == "ContinuationToken") {
            page.continuation_token = e.text;
        } else if (e.name == "NextContinuationToken") {
            page.next_continuation_token = e.text;
        } else if (e.name == "Contents") {
            object_summary o;
            auto key = e.child_text("Key");
            if (!key)
                return bad_at(e, "a Contents entry has no Key");
            if (!text_of(*key, o.key))
                return bad_at(e, "bad URL escape in a Key");
            auto size = e.child_text("Size");
            if (!size || !detail::parse_uint64(*size, o.size))
                return bad_at(e, "a Contents entry has no Size or one that is not a 64-bit unsigned integer");
            if (auto etag = e.child_text("ETag"))
                o.etag = *etag;
            if (auto lm = e.child_text("LastModified"))
                o.last_modified = *lm;
            page.contents.push_back(std::move(o));
        } else if (e.name == "CommonPrefixes") {
            for (const auto& p : e.children) {
                if (p.name != "Prefix")
                    continue;
                std::string decoded;
                if (!text_of(p.text, decoded))
                    return bad_at(p, "bad URL escape in a common prefix");
                page.common_prefixes.push_back(std::move(decoded));
            }
        }
        // Other elements (StartAfter, Owner, StorageClass, ...) are not needed to read data.
    }
    if (!have_truncated)
        return bad("IsTruncated is missing");
    if (page.is_truncated && page.next_continuation_token.empty())
        return bad("a truncated listing has no NextContinuationToken to continue from");
    return page;
}

} // namespace pipemode::s3
