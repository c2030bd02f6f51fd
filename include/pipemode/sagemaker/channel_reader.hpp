// pipemode: reading a SageMaker channel description directly, without SageMaker.
//
// A `channel_config` (from an InputDataConfig, or built in C++) says where a channel's data
// is and how it is delivered; this header turns it into the object store, the plan and the
// reader options that deliver the same records. docs/coming-from-pipe-mode.md maps every
// channel field.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/content_type.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/remote/http_store.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/s3/store.hpp>
#include <pipemode/sagemaker/augmented_manifest.hpp>
#include <pipemode/sagemaker/channel.hpp>
#include <pipemode/sagemaker/cluster.hpp>
#include <pipemode/pipeline/gunzip.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace pipemode::sagemaker {

/// How a channel is read besides what its description says.
struct channel_read_options {
    /// This process's rank and the world size (see `detect_cluster_position()`); used when the
    /// channel is `ShardedByS3Key`.
    cluster_position cluster{};
    /// How `ShardedByS3Key` divides the data: `by_object` is SageMaker's behaviour; `by_bytes`
    /// balances objects of different sizes; `by_byte_range` cuts objects so that more ranks
    /// than objects all get work.
    shard_mode sharded_mode = shard_mode::by_object;
    /// Epochs to read (0: until the consumer stops).
    std::uint64_t epochs = 1;
    /// Continue from a saved `data_set_reader::state()`.
    std::optional<data_set_state> resume{};
    /// Endpoint, region, credentials and stream tuning for `s3://` channels; the stream
    /// tuning also applies to `http(s)://` channels.
    s3::s3_options s3{};
    /// Batch size, memory budget, record shuffle and the rest. `format` and `csv_label_size`
    /// are set from the channel's content type and record wrapper.
    reader_options reader{};
};

/// The format records of `channel` are decoded with, read directly from its objects:
/// - `S3DataType: AugmentedManifestFile`: `augmented_manifest` (one row per manifest line,
///   one feature per attribute), whatever the content type and record wrapper;
/// - `RecordWrapperType: RecordIO`: each object is one record (`whole_object`), whatever its
///   content type, as Pipe mode wraps each object in one RecordIO record;
/// - `application/x-recordio-protobuf` (or no content type): `recordio_protobuf`;
/// - `text/csv` (`label_size` parameter, default 1): `csv`;
/// - `application/x-recordio`: `recordio` (opaque payloads);
/// - `application/x-tfrecord`, `application/tfrecord`: `tfrecord`;
/// - `application/jsonlines`, `application/x-jsonlines`, `application/json-lines`,
///   `text/plain`: `lines`;
/// - anything else (images, audio, documents): `whole_object`.
///
/// Returns the format and, for CSV, the label size. Throws `std::invalid_argument` for a
/// content type that does not parse.
inline std::pair<data_format, std::size_t> format_for(const channel_config& channel)
{
    if (channel.data_type == s3_data_type::augmented_manifest_file)
        return {data_format::augmented_manifest, 0};
    if (channel.record_wrapper == record_wrapper::recordio)
        return {data_format::whole_object, 0};
    if (channel.content_type.empty())
        return {data_format::recordio_protobuf, 0};
    // The content types themselves map as everywhere else (core/content_type.hpp).
    const auto f = content_format_of(parse_content_type(channel.content_type));
    return {f.format, f.csv_label_size};
}

/// The channel's URI as a list of local paths: `file://` stripped; anything else unchanged.
inline std::string local_path_of(const std::string& uri)
{
    return uri.starts_with("file://") ? uri.substr(7) : uri;
}

/// The store holding `channel`'s objects: S3 (`s3://`: a prefix listed with ListObjectsV2,
/// a key, or a manifest), HTTP(S) (an object URL, or a prefix ending in '/' listed through
/// the server's directory listings), or local (a directory, file or path
/// prefix; `file://` accepted), decompressed when `CompressionType` is `Gzip`.
///
/// An `AugmentedManifestFile` channel gives an `augmented_manifest_store` (an `s3://`, `file://`
/// or local manifest) whose objects are the manifest's lines and whose bytes for a line are the
/// RecordIO records Pipe mode writes for it (`RecordWrapperType: None` writes them unframed).
///
/// Throws `std::invalid_argument` naming the channel for what cannot work (an empty URI, a
/// manifest that is not on S3, an augmented manifest without `AttributeNames` or with
/// `CompressionType: Gzip`).
inline std::unique_ptr<object_store> channel_store(const channel_config& channel, const s3::s3_options& s3 = {},
                                                   std::size_t read_size = 4 * mib)
{
    const auto fail = [&](const std::string& why) {
        throw std::invalid_argument("pipemode: channel '" + channel.name + "': " + why);
    };
    if (channel.uri.empty())
        fail("S3Uri is empty; give an s3://, http(s)://, file:// URI or a local path");
    std::unique_ptr<object_store> store;
    const bool is_s3 = channel.uri.starts_with("s3://");
    const bool is_http = channel.uri.starts_with("http://") || channel.uri.starts_with("https://");
    switch (channel.data_type) {
    case s3_data_type::s3_prefix:
        if (is_s3)
            store = s3::s3_store({channel.uri}, s3);
        else if (is_http)
            store = remote::http_store({channel.uri}, s3.stream);
        else
            store = local_store({local_path_of(channel.uri)}, read_size);
        break;
    case s3_data_type::manifest_file:
        if (!is_s3)
            fail("a ManifestFile must be an s3:// object (its entries are S3 keys); for local data give the "
                 "directory as an S3Prefix");
        store = s3::s3_manifest_store(channel.uri, s3);
        break;
    case s3_data_type::augmented_manifest_file: {
        if (channel.attribute_names.empty())
            fail("an AugmentedManifestFile needs AttributeNames: the attributes to deliver from each line, e.g. "
                 "[\"source-ref\", \"class\"]");
        if (channel.compression == compression::gzip)
            fail("CompressionType Gzip is not supported with an AugmentedManifestFile; give the manifest and its "
                 "objects uncompressed");
        if (is_http)
            fail("an AugmentedManifestFile must be an s3:// object, a file:// URI or a local path");
        augmented_manifest_options ao{.attribute_names = channel.attribute_names, .s3 = s3};
        ao.recordio = channel.record_wrapper == record_wrapper::recordio;
        return augmented_manifest_store(channel.uri, std::move(ao));
    }
    }
    if (channel.compression == compression::gzip)
        store = gunzip(std::move(store));
    return store;
}

/// The data set options of `channel` for the rank in `o.cluster`: `ShardedByS3Key` shards with
/// `o.sharded_mode`, `FullyReplicated` reads everything; `ShuffleConfig.Seed` shuffles the
/// object order every epoch.
inline data_set_options channel_data_set_options(const channel_config& channel, const channel_read_options& o)
{
    data_set_options d;
    d.plan.shard.rank = o.cluster.rank;
    d.plan.shard.world_size = o.cluster.world_size;
    d.plan.shard.mode = channel.distribution == distribution::sharded_by_s3_key ? o.sharded_mode : shard_mode::replicated;
    d.plan.shuffle_seed = channel.shuffle_seed;
    d.epochs = o.epochs;
    d.resume = o.resume;
    return d;
}

/// A reader of `channel`, read directly from where its data is (no FIFO, no SageMaker).
///
/// Example (a channel as a SageMaker job description gives it, read by rank 1 of 3):
/// \code
/// auto channels = pipemode::sagemaker::parse_input_data_config(job_json);
/// pipemode::sagemaker::channel_read_options o;
/// o.cluster = pipemode::sagemaker::detect_cluster_position(pipemode::s3::environment::process());
/// o.epochs = 3;
/// o.reader.batch_size = 512;
/// auto reader = pipemode::sagemaker::open_channel(channels.front(), o);
/// for (auto& batch : reader) train(batch);
/// \endcode
inline data_set_reader open_channel(const channel_config& channel, channel_read_options o = {})
{
    const auto [format, label_size] = format_for(channel);
    o.reader.format = format;
    if (format == data_format::csv)
        o.reader.csv_label_size = label_size;
    if (format == data_format::augmented_manifest)
        o.reader.attribute_names = channel.attribute_names;
    // A channel read directly is decoded from the RecordIO framing of each line, whatever
    // RecordWrapperType says (that field says how the agent writes a FIFO).
    if (format == data_format::augmented_manifest && channel.record_wrapper != record_wrapper::recordio) {
        channel_config framed = channel;
        framed.record_wrapper = record_wrapper::recordio;
        return data_set_reader(channel_store(framed, o.s3, o.reader.read_size), channel_data_set_options(channel, o),
                               o.reader);
    }
    return data_set_reader(channel_store(channel, o.s3, o.reader.read_size), channel_data_set_options(channel, o), o.reader);
}

} // namespace pipemode::sagemaker
