// pipemode: SageMaker manifest files (`S3DataType=ManifestFile`), sans-I/O.
//
// A manifest is a JSON array whose first element is `{"prefix": "s3://bucket/prefix/"}` and
// whose other elements are keys relative to that prefix:
//
//     [{"prefix": "s3://bucket/train/"}, "part-0.rec", "2026/part-1.rec"]
//
// names s3://bucket/train/part-0.rec and s3://bucket/train/2026/part-1.rec. See
// docs/s3-parsing.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/parse_error.hpp>
#include <pipemode/s3/uri.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::s3 {

/// Parses a manifest file into the full URIs of its objects, in the manifest's order; on
/// failure returns nothing and fills `err`: `errc::malformed_json`/`errc::document_too_large`
/// from the JSON reader, or `errc::malformed_manifest` with the byte offset of the offending
/// element (not an array, no `prefix` object first, a prefix that is not an S3 URI, an entry
/// that is not a non-empty string).
///
/// Each URI is the prefix's text followed by the entry, byte for byte: SageMaker concatenates
/// them, so a prefix without a trailing '/' (`s3://b/data-`) prefixes key names, not folders.
/// A manifest with a prefix and no entries yields an empty list; whether that is an error is
/// the caller's decision (`errc::empty_data_set`).
inline std::optional<std::vector<s3_uri>> parse_manifest(std::string_view document, pipemode::detail::parse_error& err)
{
    auto doc = pipemode::detail::json::parse(document, err);
    if (!doc)
        return std::nullopt;
    auto bad = [&](std::size_t offset, std::string_view why) {
        err.fail(errc::malformed_manifest, offset, why);
        return std::nullopt;
    };
    if (!doc->is_array())
        return bad(doc->offset(), "a manifest must be a JSON array");
    const auto& items = doc->as_array();
    if (items.empty())
        return bad(doc->offset(), "a manifest must start with {\"prefix\": \"s3://bucket/prefix/\"}");
    const auto* prefix = items.front().find("prefix");
    if (!prefix || !prefix->is_string())
        return bad(items.front().offset(), "a manifest must start with {\"prefix\": \"s3://bucket/prefix/\"}");
    std::string why;
    auto base = try_parse_s3_uri(prefix->as_string(), why);
    if (!base)
        return bad(prefix->offset(), "the manifest's prefix is not an S3 URI (s3://bucket/prefix/)");

    std::vector<s3_uri> out;
    out.reserve(items.size() - 1);
    for (std::size_t i = 1; i < items.size(); ++i) {
        const auto& item = items[i];
        if (!item.is_string() || item.as_string().empty())
            return bad(item.offset(), "a manifest entry after the prefix must be a non-empty key string");
        s3_uri u{base->bucket, base->key + item.as_string()};
        out.push_back(std::move(u));
    }
    return out;
}

} // namespace pipemode::s3
