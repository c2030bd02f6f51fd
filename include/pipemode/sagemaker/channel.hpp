// pipemode: SageMaker's channel vocabulary (data type, distribution, compression, record
// wrapper, input mode) and the two JSON forms a channel list comes in, sans-I/O.
//
// A channel list is read from the request side (CreateTrainingJob's InputDataConfig, alone or
// inside a whole job description) or from the container side
// (/opt/ml/input/config/inputdataconfig.json), and written in the container-side form. The
// formats, and which fields pipemode accepts, are described in docs/sagemaker-config.md.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::sagemaker {

/// Where SageMaker puts the container-side channel list inside a training container.
inline constexpr std::string_view default_input_data_config_path = "/opt/ml/input/config/inputdataconfig.json";

/// What a channel's URI names (SageMaker's `S3DataType`).
enum class s3_data_type {
    s3_prefix,                ///< "S3Prefix": every object whose key starts with the URI
    manifest_file,            ///< "ManifestFile": a JSON manifest listing the objects
    augmented_manifest_file,  ///< "AugmentedManifestFile": JSON Lines records (Pipe mode only)
};

/// How a channel's objects are spread over the hosts of a cluster (`S3DataDistributionType`).
enum class distribution {
    fully_replicated,   ///< "FullyReplicated": every host reads every object
    sharded_by_s3_key,  ///< "ShardedByS3Key": each host reads its share of the objects
};

/// How a channel's objects are compressed (`CompressionType`).
enum class compression {
    none,  ///< "None"
    gzip,  ///< "Gzip": each object is a gzip stream
};

/// Whether each object is wrapped in a RecordIO record before delivery (`RecordWrapperType`).
enum class record_wrapper {
    none,      ///< "None": the objects' bytes are delivered as they are
    recordio,  ///< "RecordIO": each object becomes one RecordIO record
};

/// How a channel reaches the algorithm (`InputMode`, or the container side's
/// `TrainingInputMode`).
enum class input_mode {
    pipe,       ///< "Pipe": streamed through a FIFO
    file,       ///< "File": copied to local disk before training starts
    fast_file,  ///< "FastFile": files streamed on first read
};

/// SageMaker's spelling of each value, e.g. `to_string(s3_data_type::s3_prefix)` is "S3Prefix".
constexpr std::string_view to_string(s3_data_type v) noexcept;
/// SageMaker's spelling: "FullyReplicated" or "ShardedByS3Key".
constexpr std::string_view to_string(distribution v) noexcept;
/// SageMaker's spelling: "None" or "Gzip".
constexpr std::string_view to_string(compression v) noexcept;
/// SageMaker's spelling: "None" or "RecordIO".
constexpr std::string_view to_string(record_wrapper v) noexcept;
/// SageMaker's spelling: "Pipe", "File" or "FastFile".
constexpr std::string_view to_string(input_mode v) noexcept;

/// The value SageMaker spells `s` ("S3Prefix", "ManifestFile", "AugmentedManifestFile"), or
/// nothing. Spellings are case-sensitive, as SageMaker's API is.
constexpr std::optional<s3_data_type> parse_s3_data_type(std::string_view s) noexcept;
/// The value spelled "FullyReplicated" or "ShardedByS3Key", or nothing.
constexpr std::optional<distribution> parse_distribution(std::string_view s) noexcept;
/// The value spelled "None" or "Gzip", or nothing.
constexpr std::optional<compression> parse_compression(std::string_view s) noexcept;
/// The value spelled "None" or "RecordIO", or nothing.
constexpr std::optional<record_wrapper> parse_record_wrapper(std::string_view s) noexcept;
/// The value spelled "Pipe", "File" or "FastFile", or nothing.
constexpr std::optional<input_mode> parse_input_mode(std::string_view s) noexcept;

/// One input channel of a training job: a name, where its data is, and how it is delivered.
///
/// The defaults are SageMaker's. Members with the same name as their type are declared with the
/// qualified type so the struct works with designated initializers:
/// ```
/// channel_config c{.name = "train", .uri = "s3://bucket/train/",
///                  .distribution = distribution::sharded_by_s3_key};
/// ```
struct channel_config {
    /// The channel's name: `[A-Za-z0-9.\-_]{1,64}`, not "." or ".." (see
    /// `validate_channel_name`); the FIFO is /opt/ml/input/data/NAME_EPOCH.
    std::string name = {};
    /// What `uri` names.
    sagemaker::s3_data_type data_type = sagemaker::s3_data_type::s3_prefix;
    /// Where the data is: `s3://bucket/prefix`, `http(s)://...`, `file://...` or a local path.
    /// Empty when read from the container-side inputdataconfig.json, which carries no URIs.
    std::string uri = {};
    /// How objects are spread over the cluster's hosts.
    sagemaker::distribution distribution = sagemaker::distribution::fully_replicated;
    /// The attributes of each augmented manifest line to deliver, in order (AugmentedManifestFile
    /// only).
    std::vector<std::string> attribute_names = {};
    /// The data's MIME type, e.g. "application/x-recordio-protobuf" or "text/csv;label_size=1";
    /// empty when not given.
    std::string content_type = {};
    /// How each object is compressed.
    sagemaker::compression compression = sagemaker::compression::none;
    /// Whether each object is wrapped in a RecordIO record.
    sagemaker::record_wrapper record_wrapper = sagemaker::record_wrapper::none;
    /// The seed of the per-epoch shuffle of the channel's objects, or nothing for no shuffle
    /// (SageMaker's `ShuffleConfig.Seed`).
    std::optional<std::uint64_t> shuffle_seed = {};
    /// How the channel reaches the algorithm.
    sagemaker::input_mode mode = sagemaker::input_mode::pipe;

    friend bool operator==(const channel_config&, const channel_config&) = default;
};

/// Throws `std::invalid_argument` unless `name` is a valid channel name: 1 to 64 characters
/// from `A-Z a-z 0-9 . - _` (SageMaker's rule), and not "." or "..".
///
/// The name becomes part of a file name (/opt/ml/input/data/NAME_EPOCH), so a name that could
/// name another directory is refused even where SageMaker's pattern allows it.
inline void validate_channel_name(std::string_view name);

/// Reads a channel list from JSON text in any of the forms SageMaker uses:
///
/// 1. a CreateTrainingJob `InputDataConfig` array:
///    `[{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
///    "S3Uri": "s3://b/p/"}}, "InputMode": "Pipe", ...}]`;
/// 2. a whole job description holding `InputDataConfig`: boto3's `create_training_job` keyword
///    arguments, the AWS CLI's `--cli-input-json` document and `describe-training-job`'s output
///    all have this shape. Its `AlgorithmSpecification.TrainingInputMode` (or a
///    `TrainingInputMode` of its own) is the mode of every channel without an `InputMode`. A job
///    description one level down, as the `TrainingJobDefinition` of a tuning job's
///    `--cli-input-json`, is found too;
/// 3. the container-side /opt/ml/input/config/inputdataconfig.json, an object keyed by channel
///    name: `{"train": {"ContentType": "text/csv", "TrainingInputMode": "Pipe",
///    "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}`. It carries no
///    URIs: `uri` is left empty.
///
/// Channels come back in document order. Throws `std::invalid_argument` with a sentence that
/// names the channel and the field at fault for malformed JSON, a value of the wrong JSON type,
/// an unknown spelling, a missing required field (`ChannelName`, `S3Uri`, ...), an invalid or
/// duplicate channel name, and, in the request-side forms, an unknown member (as boto3's
/// parameter validation would).
inline std::vector<channel_config> parse_input_data_config(std::string_view json);

/// Writes `channels` as the container-side inputdataconfig.json (form 3 above), so that
/// `parse_input_data_config` reads back every field that form carries: `content_type` (when
/// not empty), `mode`, `distribution`, `record_wrapper`, `compression` (when not `none`) and
/// `shuffle_seed` (when set). `uri`, `data_type` and `attribute_names` are not part of that form.
///
/// Throws `std::invalid_argument` for an invalid or duplicate channel name, or a content type
/// that is not valid UTF-8.
inline std::string write_container_input_data_config(const std::vector<channel_config>& channels);

/// Reads the file at `path` (by default SageMaker's inputdataconfig.json) with
/// `parse_input_data_config`, which accepts any of its three forms there too.
///
/// Throws `std::runtime_error` naming the path when the file does not exist or cannot be read,
/// and `std::invalid_argument` starting with the path for what `parse_input_data_config` refuses.
/// Blocks while reading: call it at start-up.
inline std::vector<channel_config> read_input_data_config_file(
    const std::string& path = std::string(default_input_data_config_path));

} // namespace pipemode::sagemaker

#include <pipemode/sagemaker/impl/channel.hpp>
