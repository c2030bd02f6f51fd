// Tests of the SageMaker channel vocabulary and the InputDataConfig / inputdataconfig.json readers
// and writer.
#include <pipemode/sagemaker/channel.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace pipemode::sagemaker;
using Catch::Matchers::Contains;

namespace {

const char* const seed_job =
#include "seed_pca_job.json.inc"
    ;

// The message parse_input_data_config throws for `json`; fails the test when it does not throw.
std::string error_of(const std::string& json)
{
    try {
        parse_input_data_config(json);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("no exception for: " << json);
    return {};
}

// One request-side channel with `members` added after ChannelName and DataSource, and
// `s3_members` added to its S3DataSource.
std::string request_channel(const std::string& members, const std::string& s3_members = {},
                            const std::string& name = "train")
{
    return R"([{"ChannelName": ")" + name
        + R"(", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/train/")"
        + s3_members + "}}" + members + "}]";
}

} // namespace

TEST_CASE("every enum value has SageMaker's spelling and parses back", "[channel]")
{
    CHECK(to_string(s3_data_type::s3_prefix) == "S3Prefix");
    CHECK(to_string(s3_data_type::manifest_file) == "ManifestFile");
    CHECK(to_string(s3_data_type::augmented_manifest_file) == "AugmentedManifestFile");
    CHECK(to_string(distribution::fully_replicated) == "FullyReplicated");
    CHECK(to_string(distribution::sharded_by_s3_key) == "ShardedByS3Key");
    CHECK(to_string(compression::none) == "None");
    CHECK(to_string(compression::gzip) == "Gzip");
    CHECK(to_string(record_wrapper::none) == "None");
    CHECK(to_string(record_wrapper::recordio) == "RecordIO");
    CHECK(to_string(input_mode::pipe) == "Pipe");
    CHECK(to_string(input_mode::file) == "File");
    CHECK(to_string(input_mode::fast_file) == "FastFile");

    for (auto v : {s3_data_type::s3_prefix, s3_data_type::manifest_file, s3_data_type::augmented_manifest_file})
        CHECK(parse_s3_data_type(to_string(v)) == v);
    for (auto v : {distribution::fully_replicated, distribution::sharded_by_s3_key})
        CHECK(parse_distribution(to_string(v)) == v);
    for (auto v : {compression::none, compression::gzip})
        CHECK(parse_compression(to_string(v)) == v);
    for (auto v : {record_wrapper::none, record_wrapper::recordio})
        CHECK(parse_record_wrapper(to_string(v)) == v);
    for (auto v : {input_mode::pipe, input_mode::file, input_mode::fast_file})
        CHECK(parse_input_mode(to_string(v)) == v);

    // Case-sensitive, no trimming, no aliases.
    CHECK_FALSE(parse_s3_data_type("s3prefix"));
    CHECK_FALSE(parse_s3_data_type("S3Prefix "));
    CHECK_FALSE(parse_distribution("ShardedByS3key"));
    CHECK_FALSE(parse_compression("gzip"));
    CHECK_FALSE(parse_compression(""));
    CHECK_FALSE(parse_record_wrapper("RecordIo"));
    CHECK_FALSE(parse_input_mode("pipe"));
    CHECK_FALSE(parse_input_mode("Fastfile"));
    static_assert(parse_input_mode("FastFile") == input_mode::fast_file);
    static_assert(to_string(record_wrapper::recordio) == "RecordIO");
}

TEST_CASE("channel_config has SageMaker's defaults and takes designated initializers", "[channel]")
{
    const channel_config c{.name = "train", .uri = "s3://bucket/train/", .compression = compression::gzip};
    CHECK(c.data_type == s3_data_type::s3_prefix);
    CHECK(c.distribution == distribution::fully_replicated);
    CHECK(c.compression == compression::gzip);
    CHECK(c.record_wrapper == record_wrapper::none);
    CHECK_FALSE(c.shuffle_seed);
    CHECK(c.mode == input_mode::pipe);
    CHECK(c.attribute_names.empty());
    CHECK(c.content_type.empty());
}

TEST_CASE("channel names follow SageMaker's rule and cannot name a directory", "[channel]")
{
    for (const char* ok : {"train", "a", "validation_1", "my-data.v2", "..a", ".hidden", "x.."})
        CHECK_NOTHROW(validate_channel_name(ok));
    CHECK_NOTHROW(validate_channel_name(std::string(64, 'c')));

    for (std::string bad : {std::string(), std::string("."), std::string(".."), std::string(65, 'c'),
                            std::string("../etc"), std::string("a/b"), std::string("a\\b"), std::string("tr ain"),
                            std::string("caf\xC3\xA9"), std::string("a\0b", 3), std::string("train\n")}) {
        INFO(bad);
        try {
            validate_channel_name(bad);
            FAIL("accepted");
        } catch (const std::invalid_argument& e) {
            CHECK_THAT(e.what(), Contains("1 to 64 characters from A-Z, a-z, 0-9, '.', '-' and '_'"));
            CHECK_THAT(e.what(), Contains("not \".\" or \"..\""));
        }
    }
    CHECK_THROWS_WITH(validate_channel_name("a/b"), Contains("\"a/b\""));
}

TEST_CASE("the seed's boto3 job description", "[channel]")
{
    const auto channels = parse_input_data_config(seed_job);
    REQUIRE(channels.size() == 2);

    const auto& train = channels[0];
    CHECK(train.name == "train");
    CHECK(train.data_type == s3_data_type::s3_prefix);
    CHECK(train.uri == "<YOUR_TRAINING_DATASET>");
    CHECK(train.distribution == distribution::sharded_by_s3_key);
    CHECK(train.attribute_names.empty());
    CHECK(train.content_type == "application/x-recordio-protobuf");
    CHECK(train.compression == compression::none);
    CHECK(train.record_wrapper == record_wrapper::none);
    CHECK_FALSE(train.shuffle_seed);
    CHECK(train.mode == input_mode::pipe);  // from AlgorithmSpecification.TrainingInputMode

    const auto& test = channels[1];
    CHECK(test.name == "test");
    CHECK(test.uri == "<YOUR_TEST_DATASET>");
    CHECK(test.distribution == distribution::fully_replicated);
    CHECK(test.content_type == "application/x-recordio-protobuf");
    CHECK(test.mode == input_mode::pipe);

    // The job's TrainingInputMode is the default of every channel: File here.
    std::string file_job = seed_job;
    const std::string pipe = R"("TrainingInputMode": "Pipe")";
    const auto at = file_job.find(pipe);
    REQUIRE(at != std::string::npos);
    file_job.replace(at, pipe.size(), R"("TrainingInputMode": "File")");
    for (const auto& c : parse_input_data_config(file_job))
        CHECK(c.mode == input_mode::file);
}

TEST_CASE("every request-side field", "[channel]")
{
    const std::string text = R"([
      {"ChannelName": "train",
       "DataSource": {"S3DataSource": {"S3DataType": "AugmentedManifestFile",
                                       "S3Uri": "s3://bucket/manifests/train.jsonl",
                                       "S3DataDistributionType": "ShardedByS3Key",
                                       "AttributeNames": ["source-ref", "class"],
                                       "InstanceGroupNames": ["group-1"]}},
       "ContentType": "application/x-recordio",
       "CompressionType": "Gzip",
       "RecordWrapperType": "RecordIO",
       "ShuffleConfig": {"Seed": 18446744073709551615},
       "InputMode": "FastFile"},
      {"ChannelName": "validation",
       "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "file:///data/validation.manifest"}},
       "InputMode": "File", "ShuffleConfig": {"Seed": 0}},
      {"ChannelName": "test",
       "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "/local/test", "AttributeNames": null}},
       "ContentType": null}
    ])";
    const auto channels = parse_input_data_config(text);
    REQUIRE(channels.size() == 3);

    const channel_config expected_train{
        .name = "train",
        .data_type = s3_data_type::augmented_manifest_file,
        .uri = "s3://bucket/manifests/train.jsonl",
        .distribution = distribution::sharded_by_s3_key,
        .attribute_names = {"source-ref", "class"},
        .content_type = "application/x-recordio",
        .compression = compression::gzip,
        .record_wrapper = record_wrapper::recordio,
        .shuffle_seed = 18446744073709551615ull,
        .mode = input_mode::fast_file,
    };
    CHECK(channels[0] == expected_train);

    const channel_config expected_validation{.name = "validation",
                                             .data_type = s3_data_type::manifest_file,
                                             .uri = "file:///data/validation.manifest",
                                             .shuffle_seed = 0,
                                             .mode = input_mode::file};
    CHECK(channels[1] == expected_validation);

    // Unset members and JSON nulls take the defaults; a bare list is read in Pipe mode.
    const channel_config expected_test{.name = "test", .uri = "/local/test"};
    CHECK(channels[2] == expected_test);
}

TEST_CASE("a job description from the AWS CLI (describe-training-job) shape", "[channel]")
{
    const std::string text = R"({
      "TrainingJobName": "kmeans-1", "TrainingJobStatus": "Completed",
      "AlgorithmSpecification": {"TrainingImage": "kmeans:1", "TrainingInputMode": "File"},
      "InputDataConfig": [
        {"ChannelName": "train", "InputMode": "Pipe",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}}},
        {"ChannelName": "test",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/test/"}}}
      ],
      "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10}
    })";
    const auto channels = parse_input_data_config(text);
    REQUIRE(channels.size() == 2);
    CHECK(channels[0].mode == input_mode::pipe);  // the channel's own InputMode wins
    CHECK(channels[1].mode == input_mode::file);  // the job's TrainingInputMode
    CHECK(channels[1].uri == "s3://b/test/");

    // A job without AlgorithmSpecification: Pipe.
    const auto bare = parse_input_data_config(
        R"({"InputDataConfig": [{"ChannelName": "a", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/a"}}}]})");
    REQUIRE(bare.size() == 1);
    CHECK(bare[0].mode == input_mode::pipe);

    CHECK(parse_input_data_config("[]").empty());
    CHECK(parse_input_data_config(R"({"InputDataConfig": []})").empty());
}

TEST_CASE("a job description nested one level down, as a tuning job's TrainingJobDefinition", "[channel]")
{
    const std::string text = R"({
      "HyperParameterTuningJobName": "tune-1",
      "HyperParameterTuningJobConfig": {"Strategy": "Bayesian"},
      "TrainingJobDefinition": {
        "AlgorithmSpecification": {"TrainingImage": "pca:1", "TrainingInputMode": "File"},
        "InputDataConfig": [
          {"ChannelName": "train",
           "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train/"}}}]}
    })";
    const auto channels = parse_input_data_config(text);
    REQUIRE(channels.size() == 1);
    CHECK(channels[0] == channel_config{.name = "train", .uri = "s3://b/train/", .mode = input_mode::file});

    // The TrainingJobDefinition type's own TrainingInputMode; AlgorithmSpecification's wins.
    const std::string own = R"({"TrainingJobDefinition": {"TrainingInputMode": "FastFile", "InputDataConfig": [
        {"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/t"}}}]}})";
    CHECK(parse_input_data_config(own).at(0).mode == input_mode::fast_file);
    const std::string both = R"({"TrainingInputMode": "FastFile", "AlgorithmSpecification": {"TrainingInputMode": "Pipe"},
        "InputDataConfig": [{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/t"}}}]})";
    CHECK(parse_input_data_config(both).at(0).mode == input_mode::pipe);

    CHECK_THAT(error_of(R"({"A": {"InputDataConfig": []}, "B": {"InputDataConfig": []}})"),
               Contains("has InputDataConfig in both A and B"));
    CHECK_THAT(error_of(R"({"TrainingJobDefinition": {"TrainingInputMode": "Files", "InputDataConfig": []}})"),
               Contains("the job description's TrainingJobDefinition: TrainingInputMode is \"Files\""));
}

TEST_CASE("the container-side inputdataconfig.json", "[channel]")
{
    const std::string text = R"({
      "train": {"ContentType": "text/csv;label_size=1", "TrainingInputMode": "Pipe",
                "S3DistributionType": "ShardedByS3Key", "RecordWrapperType": "RecordIO",
                "CompressionType": "Gzip", "ShuffleConfig": {"Seed": 42}},
      "validation": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                     "RecordWrapperType": "None", "S3DataType": "S3Prefix", "SomethingNew": [1, 2]}
    })";
    const auto channels = parse_input_data_config(text);
    REQUIRE(channels.size() == 2);
    const channel_config expected_train{.name = "train",
                                        .distribution = distribution::sharded_by_s3_key,
                                        .content_type = "text/csv;label_size=1",
                                        .compression = compression::gzip,
                                        .record_wrapper = record_wrapper::recordio,
                                        .shuffle_seed = 42,
                                        .mode = input_mode::pipe};
    CHECK(channels[0] == expected_train);
    // Members SageMaker may add are ignored; the URI is not part of this form.
    const channel_config expected_validation{.name = "validation", .mode = input_mode::file};
    CHECK(channels[1] == expected_validation);

    CHECK(parse_input_data_config("{}").empty());
}

TEST_CASE("the container form round-trips through the writer", "[channel]")
{
    const std::vector<channel_config> channels{
        {.name = "train",
         .distribution = distribution::sharded_by_s3_key,
         .content_type = "application/x-recordio-protobuf",
         .compression = compression::gzip,
         .record_wrapper = record_wrapper::recordio,
         .shuffle_seed = 7,
         .mode = input_mode::pipe},
        {.name = "validation", .content_type = "text/csv;label_size=1 \"quoted\" \\ caf\xC3\xA9", .mode = input_mode::file},
        {.name = "test.v2", .shuffle_seed = 18446744073709551615ull, .mode = input_mode::fast_file},
    };
    const std::string text = write_container_input_data_config(channels);
    CHECK(parse_input_data_config(text) == channels);

    // The layout SageMaker's documentation shows, member for member.
    CHECK(write_container_input_data_config({{.name = "train", .content_type = "text/csv", .mode = input_mode::file}})
          == "{\n"
             "  \"train\": {\n"
             "    \"ContentType\": \"text/csv\",\n"
             "    \"TrainingInputMode\": \"File\",\n"
             "    \"S3DistributionType\": \"FullyReplicated\",\n"
             "    \"RecordWrapperType\": \"None\"\n"
             "  }\n"
             "}\n");
    CHECK(write_container_input_data_config({}) == "{}\n");

    // What the container form cannot carry is dropped, not invented.
    const channel_config s3{.name = "s3",
                            .data_type = s3_data_type::manifest_file,
                            .uri = "s3://b/m.manifest",
                            .attribute_names = {"a"}};
    const auto back = parse_input_data_config(write_container_input_data_config({s3}));
    REQUIRE(back.size() == 1);
    CHECK(back[0] == channel_config{.name = "s3"});
}

TEST_CASE("the writer refuses what it cannot write", "[channel]")
{
    CHECK_THROWS_WITH(write_container_input_data_config({{.name = "a/b"}}), Contains("invalid SageMaker channel name"));
    CHECK_THROWS_WITH(write_container_input_data_config({{.name = ".."}}), Contains("invalid SageMaker channel name"));
    CHECK_THROWS_WITH(write_container_input_data_config({{.name = "x"}, {.name = "y"}, {.name = "x"}}),
                      Contains("\"x\" appears more than once"));
    CHECK_THROWS_WITH(write_container_input_data_config({{.name = "x", .content_type = "bad \xFF"}}),
                      Contains("\"x\": content_type is not valid UTF-8"));
}

TEST_CASE("errors name the channel and the field", "[channel]")
{
    // Unknown spellings, each naming its field and the allowed spellings.
    CHECK_THAT(error_of(request_channel(R"(, "InputMode": "pipe")")),
               Contains("SageMaker channel \"train\": InputMode is \"pipe\", which is not one of Pipe, File or FastFile"));
    CHECK_THAT(error_of(request_channel(R"(, "CompressionType": "GZIP")")),
               Contains("\"train\": CompressionType is \"GZIP\", which is not one of None or Gzip"));
    CHECK_THAT(error_of(request_channel(R"(, "RecordWrapperType": "Recordio")")),
               Contains("\"train\": RecordWrapperType is \"Recordio\", which is not one of None or RecordIO"));
    CHECK_THAT(error_of(request_channel("", R"(, "S3DataDistributionType": "Sharded")")),
               Contains("\"train\": DataSource.S3DataSource.S3DataDistributionType is \"Sharded\", which is not one "
                        "of FullyReplicated or ShardedByS3Key"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "Prefix", "S3Uri": "s3://b/"}}}])"),
               Contains("\"t\": DataSource.S3DataSource.S3DataType is \"Prefix\", which is not one of S3Prefix, "
                        "ManifestFile or AugmentedManifestFile"));
    CHECK_THAT(error_of(R"({"AlgorithmSpecification": {"TrainingInputMode": "Stream"}, "InputDataConfig": []})"),
               Contains("AlgorithmSpecification.TrainingInputMode is \"Stream\""));
    CHECK_THAT(error_of(R"({"t": {"TrainingInputMode": "Streaming"}})"),
               Contains("SageMaker channel \"t\": TrainingInputMode is \"Streaming\""));
    CHECK_THAT(error_of(R"({"t": {"S3DistributionType": "ShardedByKey"}})"),
               Contains("\"t\": S3DistributionType is \"ShardedByKey\""));

    // Missing required fields.
    CHECK_THAT(error_of(R"([{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix"}}}])"),
               Contains("SageMaker channel \"t\": DataSource.S3DataSource.S3Uri is missing; it is required"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": ""}}}])"),
               Contains("\"t\": DataSource.S3DataSource.S3Uri is empty"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/"}}}])"),
               Contains("\"t\": DataSource.S3DataSource.S3DataType is missing"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t"}])"), Contains("\"t\": DataSource is missing"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t", "DataSource": {}}])"),
               Contains("\"t\": DataSource.S3DataSource is missing"));
    CHECK_THAT(error_of(R"([{"DataSource": {}}])"), Contains("InputDataConfig[0]: ChannelName is missing"));
    CHECK_THAT(error_of(request_channel(R"(, "ShuffleConfig": {})")),
               Contains("\"train\": ShuffleConfig.Seed is missing"));

    // Wrong JSON types.
    CHECK_THAT(error_of(R"([{"ChannelName": 7}])"), Contains("InputDataConfig[0]: ChannelName must be a string, not a number"));
    CHECK_THAT(error_of(request_channel("").substr(0, request_channel("").size() - 1) + R"(, "b"])"),
               Contains("InputDataConfig[1]: the channel must be an object, not a string"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": ["s3://b/"]}}}])"),
               Contains("\"t\": DataSource.S3DataSource.S3Uri must be a string, not an array"));
    CHECK_THAT(error_of(request_channel(R"(, "ContentType": 5)")), Contains("\"train\": ContentType must be a string, not a number"));
    CHECK_THAT(error_of(request_channel(R"(, "InputMode": true)")), Contains("\"train\": InputMode must be a string, not a boolean"));
    CHECK_THAT(error_of(request_channel("", R"(, "AttributeNames": "a")")),
               Contains("\"train\": DataSource.S3DataSource.AttributeNames must be an array of strings, not a string"));
    CHECK_THAT(error_of(request_channel("", R"(, "AttributeNames": ["a", 1])")),
               Contains("\"train\": DataSource.S3DataSource.AttributeNames[1] must be a string, not a number"));
    CHECK_THAT(error_of(request_channel(R"(, "ShuffleConfig": {"Seed": "5"})")),
               Contains("\"train\": ShuffleConfig.Seed must be an integer, not a string"));
    CHECK_THAT(error_of(request_channel(R"(, "ShuffleConfig": {"Seed": -1})")),
               Contains("\"train\": ShuffleConfig.Seed is -1; it must be a whole number"));
    CHECK_THAT(error_of(request_channel(R"(, "ShuffleConfig": {"Seed": 1.5})")), Contains("ShuffleConfig.Seed is 1.5"));
    CHECK_THAT(error_of(request_channel(R"(, "ShuffleConfig": 3)")),
               Contains("\"train\": ShuffleConfig must be an object, not a number"));
    CHECK_THAT(error_of(R"({"InputDataConfig": {"ChannelName": "t"}})"),
               Contains("InputDataConfig must be an array of channels, not an object"));
    CHECK_THAT(error_of(R"({"t": "Pipe"})"), Contains("SageMaker channel \"t\": the channel must be an object, not a string"));
    CHECK_THAT(error_of(R"({"t": {"ContentType": ["text/csv"]}})"), Contains("\"t\": ContentType must be a string, not an array"));
    CHECK_THAT(error_of("42"), Contains("must be an InputDataConfig array, a job description or an inputdataconfig.json object"));

    // Unknown members on the request side, as boto3 refuses them.
    CHECK_THAT(error_of(request_channel(R"(, "ContentTyp": "text/csv")")),
               Contains("\"train\": the channel has the unknown member \"ContentTyp\""));
    CHECK_THAT(error_of(request_channel("", R"(, "S3DataDistribution": "ShardedByS3Key")")),
               Contains("\"train\": DataSource.S3DataSource has the unknown member \"S3DataDistribution\""));
    CHECK_THAT(error_of(request_channel(R"(, "ShuffleConfig": {"Seed": 1, "Salt": 2})")),
               Contains("ShuffleConfig has the unknown member \"Salt\""));
    CHECK_THAT(error_of(R"([{"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {"FileSystemId": "fs-1"}}}])"),
               Contains("\"fs\": DataSource.FileSystemDataSource is not supported"));

    // Names: invalid, duplicate, and a member given twice.
    CHECK_THAT(error_of(request_channel("", "", "../x")),
               Contains("InputDataConfig[0]: invalid SageMaker channel name \"../x\""));
    CHECK_THAT(error_of(R"({"..": {}})"), Contains("inputdataconfig.json: invalid SageMaker channel name \"..\""));
    {
        std::string twice = request_channel("");
        twice = twice.substr(0, twice.size() - 1) + "," + request_channel("", "", "other").substr(1, std::string::npos);
        twice = twice.substr(0, twice.size() - 1) + "," + request_channel("").substr(1);
        CHECK_THAT(error_of(twice), Contains("SageMaker channel \"train\" appears more than once in InputDataConfig"));
    }
    CHECK_THAT(error_of(R"({"t": {}, "u": {}, "t": {}})"),
               Contains("SageMaker channel \"t\" appears more than once in inputdataconfig.json"));
    CHECK_THAT(error_of(request_channel(R"(, "InputMode": "Pipe", "InputMode": "File")")),
               Contains("\"train\": the channel has the member \"InputMode\" twice"));

    // A job description without InputDataConfig, and malformed JSON.
    CHECK_THAT(error_of(R"({"TrainingJobName": "j", "AlgorithmSpecification": {}})"),
               Contains("has AlgorithmSpecification but no InputDataConfig"));
    CHECK_THAT(error_of(R"([{"ChannelName": "t",)"), Contains("is not valid JSON: ") && Contains("at byte"));
    CHECK_THAT(error_of(""), Contains("is not valid JSON"));
}

TEST_CASE("reads inputdataconfig.json from a file, naming its path in errors", "[channel]")
{
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("pipemode-channel-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string path = (dir / "inputdataconfig.json").string();
    auto write = [&](const std::string& text) { std::ofstream(path, std::ios::binary) << text; };

    const std::vector<channel_config> channels{{.name = "train", .content_type = "text/csv", .mode = input_mode::pipe},
                                               {.name = "validation", .mode = input_mode::file}};
    write(write_container_input_data_config(channels));
    CHECK(read_input_data_config_file(path) == channels);

    write(seed_job);  // any of the three forms
    CHECK(read_input_data_config_file(path).size() == 2);

    write(R"({"train": {"TrainingInputMode": "Piped"}})");
    CHECK_THROWS_WITH(read_input_data_config_file(path),
                      Contains(path + ": SageMaker channel \"train\": TrainingInputMode is \"Piped\""));
    CHECK_THROWS_WITH(read_input_data_config_file((dir / "none.json").string()), Contains("none.json does not exist"));

    fs::remove_all(dir);
}
