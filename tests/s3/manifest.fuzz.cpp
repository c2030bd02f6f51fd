// Fuzz target for parse_manifest (SageMaker ManifestFile documents).
//
// On any input:
// - no crash, no read out of bounds; exactly one of a result and an error;
// - an error is malformed_json, document_too_large or malformed_manifest, with an offset inside
//   the input; a malformed_manifest offset is where a JSON value starts (never whitespace or a
//   separator);
// - a result has one URI per entry after the prefix, each in the prefix's bucket with the
//   prefix's key followed by the entry byte for byte, and no empty key;
// - a result written back as a compact manifest (prefix, then the entries) parses to the same
//   URIs.
//
// The seeds in manifest.corpus/ are manifests as SageMaker users write them (folders, key-name
// prefixes, escapes and non-ASCII keys, a bucket-only prefix) and a few near misses.
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/json_writer.hpp>
#include <pipemode/s3/manifest.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace pipemode;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    pipemode::detail::parse_error err;
    const auto uris = s3::parse_manifest(input, err);
    check(uris.has_value() != static_cast<bool>(err));
    if (!uris) {
        check(err.code == errc::malformed_json || err.code == errc::document_too_large
              || err.code == errc::malformed_manifest);
        check(err.offset <= size && !err.reason.empty());
        if (err.code == errc::malformed_manifest) {
            check(err.offset < size);
            const char c = input[err.offset];
            check(c == '[' || c == '{' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f'
                  || c == 'n');
        }
        return 0;
    }

    // The document is valid JSON with a prefix object first: read it independently.
    pipemode::detail::parse_error json_err;
    const auto doc = pipemode::detail::json::parse(input, json_err);
    check(doc && doc->is_array() && !doc->as_array().empty());
    const auto& items = doc->as_array();
    check(uris->size() == items.size() - 1);
    const std::string& prefix = items.front().find("prefix")->as_string();
    std::string why;
    const auto base = s3::try_parse_s3_uri(prefix, why);
    check(base.has_value());
    for (std::size_t i = 0; i < uris->size(); ++i) {
        const auto& u = (*uris)[i];
        check(u.bucket == base->bucket);
        check(u.key == base->key + items[i + 1].as_string());
        check(!u.key.empty());
    }

    // Written back compactly, it reads the same.
    std::string again = "[{\"prefix\":";
    pipemode::detail::json::append_quoted_bytes(again, prefix);
    again += '}';
    for (std::size_t i = 1; i < items.size(); ++i) {
        again += ',';
        pipemode::detail::json::append_quoted_bytes(again, items[i].as_string());
    }
    again += ']';
    pipemode::detail::parse_error again_err;
    const auto reread = s3::parse_manifest(again, again_err);
    check(reread && *reread == *uris);
    return 0;
}
