// pipemode: SageMaker augmented manifests (AugmentedManifestFile channels) as an object store.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/s3/data_set.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipemode::sagemaker {

/// How an augmented manifest is read.
struct augmented_manifest_options {
    /// The attributes delivered from each line, in this order (the channel's `AttributeNames`).
    /// An attribute whose name ends in "-ref" names an object whose bytes are delivered; any
    /// other attribute is delivered as its JSON text.
    std::vector<std::string> attribute_names{};
    /// Endpoint, region and credentials for `s3://` manifests and `-ref` objects.
    s3::s3_options s3{};
    /// The largest manifest accepted (it is fetched whole and kept for the reader's life).
    std::size_t max_manifest_size = 256 * mib;
    /// The largest `-ref` object accepted; empty: the reader's `max_record_size`.
    std::optional<std::size_t> max_object_size{};
    /// Lines whose `-ref` objects are fetched at once, ahead of the line the reader decodes.
    std::size_t fetch_ahead = 16;
    /// Bytes of fetched lines waiting for the reader; no further line is started while the
    /// lines waiting hold this much.
    std::size_t window = 64 * mib;
    /// Frame each attribute as one RecordIO record (SageMaker's `RecordWrapperType: RecordIO`,
    /// what `grouped_record_parser` reads). False writes the attributes' bytes back to back,
    /// unframed, as Pipe mode does with `RecordWrapperType: None`.
    bool recordio = true;
};

/// A store whose objects are the lines of a SageMaker augmented manifest (JSON Lines), and
/// whose bytes for a line are what Pipe mode writes for it: one RecordIO record per attribute
/// of `options.attribute_names`, in that order; for an attribute ending in "-ref" the bytes of
/// the object it names, for any other its JSON value as compact JSON text (a string keeps its
/// quotes: `"class": "3"` is the 3 bytes `"3"`; a number is its text, an object or array its
/// JSON). See docs/augmented-manifests.md for what that encoding rests on.
///
/// - `manifest` is an `s3://bucket/key`, a local path or a `file://` URI. `-ref` values are
///   `s3://` URIs or local paths (relative ones resolved against a local manifest's folder).
/// - Listing fetches the manifest (at most `max_manifest_size` bytes), skips empty lines and
///   checks every other line: not a JSON object, or lacking an attribute, or a `-ref` value that
///   is not a string, is a `data_error` (`errc::malformed_manifest`) naming the manifest and the
///   line number (from 1, counting every line of the file). An object's URI is
///   "MANIFEST#line N"; its size is known (the bytes of its records) for lines without `-ref`
///   attributes.
/// - A line is indivisible (`splittable()` is false): sharding and the `ShuffleConfig` shuffle
///   move whole lines.
/// - A line's `-ref` objects are fetched whole, each capped at `max_object_size`; a failure is
///   a `data_error` naming the line, the attribute and the URI, with S3's error code and
///   message (e.g. "HTTP 404 NoSuchKey").
///
/// Memory: the manifest text and a small index per line, for the store's life; ahead of the
/// reader, the lines fetched and not yet read (at most `window` bytes before another fetch
/// starts) plus the `fetch_ahead` lines being fetched, each at most its attribute count times
/// `max_object_size`; and the line being decoded.
///
/// Fetching: on the reader's network thread, `fetch_ahead` lines at a time over one HTTP client
/// (libcurl reuses its connections), so a small object's round trip is hidden behind the
/// others; a line's own `-ref` objects are fetched one after the other.
///
/// Example (the lines delivered grouped, one row per line):
/// \code
/// pipemode::data_set_reader r(
///     pipemode::sagemaker::augmented_manifest_store("s3://b/train.manifest", {.attribute_names = {"source-ref", "class"}}),
///     {.plan = {.shuffle_seed = 7}, .epochs = 2},
///     {.batch_size = 32, .format = pipemode::data_format::augmented_manifest,
///      .attribute_names = {"source-ref", "class"}});
/// for (auto& batch : r)
///     for (std::size_t i = 0; i < batch.size(); ++i)
///         train(batch.feature("source-ref").item(i, 0), batch.feature("class").item(i, 0));
/// \endcode
std::unique_ptr<object_store> augmented_manifest_store(std::string manifest, augmented_manifest_options options);

/// The JSON text of `value` as an augmented manifest's non-`-ref` attribute is delivered:
/// compact (no spaces), strings quoted and escaped, numbers as written in the manifest.
/// Exposed for tests and for tools that build the same records.
std::string attribute_json_text(std::string_view line_json, std::string_view attribute);

} // namespace pipemode::sagemaker

#include <pipemode/sagemaker/impl/augmented_manifest.hpp>
