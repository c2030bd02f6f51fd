// pipemode: the content type of a SageMaker channel ("text/csv;label_size=1").
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>

#include <cctype>
#include <charconv>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pipemode {

/// A content type as SageMaker channels give it: a media type and, for CSV, the number of label
/// columns.
struct content_type {
    /// The media type, lower-cased, without parameters: "text/csv",
    /// "application/x-recordio-protobuf", ...
    std::string media_type;

    /// The `label_size` parameter when there is one: how many leading CSV columns are the label
    /// (0: none).
    std::optional<std::size_t> label_size;

    friend bool operator==(const content_type&, const content_type&) = default;
};

/// Parses a content type such as `"text/csv;label_size=2"`, `"text/csv; label_size=0"` or
/// `"application/x-recordio-protobuf"`.
///
/// The media type and parameter names are case-insensitive (RFC 9110) and returned lower-cased;
/// spaces around `;` and `=` are allowed, and parameters other than `label_size` (such as
/// `charset=utf-8`) are ignored. Throws `std::invalid_argument`, with a sentence that says how
/// to fix it, for an empty media type, a parameter without `=`, or a `label_size` that is not a
/// whole number (quoted or not).
///
/// @code
/// auto ct = parse_content_type("text/csv;label_size=2");
/// // ct.media_type == "text/csv", ct.label_size == 2
/// @endcode
inline content_type parse_content_type(std::string_view text)
{
    const auto trim = [](std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
            s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
            s.remove_suffix(1);
        return s;
    };
    const auto lower = [](std::string_view s) {
        std::string r(s);
        for (auto& c : r)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return r;
    };
    const auto fail = [&](std::string_view why) {
        throw std::invalid_argument("pipemode: content type '" + std::string(text) + "': " + std::string(why));
    };

    content_type result;
    std::string_view rest = text;
    auto semi = rest.find(';');
    result.media_type = lower(trim(rest.substr(0, semi)));
    if (result.media_type.empty())
        fail("the media type is missing; write e.g. 'text/csv' or 'application/x-recordio-protobuf'");
    while (semi != std::string_view::npos) {
        rest.remove_prefix(semi + 1);
        semi = rest.find(';');
        const auto parameter = trim(rest.substr(0, semi));
        if (parameter.empty())
            continue;  // "text/csv;" and "a;;b" are harmless
        const auto eq = parameter.find('=');
        if (eq == std::string_view::npos)
            fail("parameter '" + std::string(parameter) + "' has no value; write it as name=value, e.g. label_size=1");
        if (lower(trim(parameter.substr(0, eq))) != "label_size")
            continue;
        auto value = trim(parameter.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
            value = value.substr(1, value.size() - 2);
        std::size_t n = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size())
            fail("label_size must be a whole number of leading label columns (0 for no label), e.g. "
                 "text/csv;label_size=1, not '" + std::string(value) + "'");
        result.label_size = n;
    }
    return result;
}

/// The reader format a content type's records are decoded with, and for CSV its label size.
struct content_format {
    /// How the bytes are decoded (`reader_options::format`).
    data_format format = data_format::recordio_protobuf;
    /// With `data_format::csv`: the leading label columns (`reader_options::csv_label_size`).
    std::size_t csv_label_size = 0;

    friend bool operator==(const content_format&, const content_format&) = default;
};

/// The one mapping from SageMaker content types to reader formats, used by SageMaker channels
/// and by the tools:
/// - `application/x-recordio-protobuf`: `recordio_protobuf`;
/// - `text/csv` (`label_size` parameter, default 1, as SageMaker's algorithms assume):
///   `csv`;
/// - `application/x-recordio`: `recordio` (opaque payloads);
/// - `application/x-tfrecord`, `application/tfrecord`: `tfrecord`;
/// - `application/jsonlines`, `application/x-jsonlines`, `application/json-lines`,
///   `text/plain`: `lines`;
/// - anything else (images, audio, documents): `whole_object`.
///
/// Augmented manifests are not a content type (SageMaker says so with `S3DataType` and
/// `AttributeNames`), so `data_format::augmented_manifest` is never returned here.
///
/// @code
/// auto f = content_format_of(parse_content_type("text/csv;label_size=2"));
/// // f.format == data_format::csv, f.csv_label_size == 2
/// @endcode
inline content_format content_format_of(const content_type& ct)
{
    const std::string& m = ct.media_type;
    if (m == "application/x-recordio-protobuf")
        return {data_format::recordio_protobuf, 0};
    if (m == "text/csv")
        return {data_format::csv, ct.label_size.value_or(1)};
    if (m == "application/x-recordio")
        return {data_format::recordio, 0};
    if (m == "application/x-tfrecord" || m == "application/tfrecord")
        return {data_format::tfrecord, 0};
    if (m == "application/jsonlines" || m == "application/x-jsonlines" || m == "application/json-lines"
        || m == "text/plain")
        return {data_format::lines, 0};
    return {data_format::whole_object, 0};
}

} // namespace pipemode
