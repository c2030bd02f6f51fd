// pipemode: definitions of sagemaker/channel.hpp.
#pragma once

#include <pipemode/sagemaker/channel.hpp>
#include <pipemode/sagemaker/detail/config_json.hpp>
#include <pipemode/detail/json_writer.hpp>

#include <algorithm>
#include <initializer_list>
#include <stdexcept>
#include <utility>

namespace pipemode::sagemaker {

constexpr std::string_view to_string(s3_data_type v) noexcept
{
    switch (v) {
    case s3_data_type::s3_prefix: return "S3Prefix";
    case s3_data_type::manifest_file: return "ManifestFile";
    case s3_data_type::augmented_manifest_file: return "AugmentedManifestFile";
    }
    return "";
}

constexpr std::string_view to_string(distribution v) noexcept
{
    switch (v) {
    case distribution::fully_replicated: return "FullyReplicated";
    case distribution::sharded_by_s3_key: return "ShardedByS3Key";
    }
    return "";
}

constexpr std::string_view to_string(compression v) noexcept
{
    switch (v) {
    case compression::none: return "None";
    case compression::gzip: return "Gzip";
    }
    return "";
}

constexpr std::string_view to_string(record_wrapper v) noexcept
{
    switch (v) {
    case record_wrapper::none: return "None";
    case record_wrapper::recordio: return "RecordIO";
    }
    return "";
}

constexpr std::string_view to_string(input_mode v) noexcept
{
    switch (v) {
    case input_mode::pipe: return "Pipe";
    case input_mode::file: return "File";
    case input_mode::fast_file: return "FastFile";
    }
    return "";
}

namespace detail {

// The value of Enum whose spelling is `s`, trying each of `all`.
template <class Enum>
constexpr std::optional<Enum> parse_spelling(std::string_view s, std::initializer_list<Enum> all) noexcept
{
    for (Enum e : all)
        if (to_string(e) == s)
            return e;
    return std::nullopt;
}

} // namespace detail

constexpr std::optional<s3_data_type> parse_s3_data_type(std::string_view s) noexcept
{
    return detail::parse_spelling(
        s, {s3_data_type::s3_prefix, s3_data_type::manifest_file, s3_data_type::augmented_manifest_file});
}

constexpr std::optional<distribution> parse_distribution(std::string_view s) noexcept
{
    return detail::parse_spelling(s, {distribution::fully_replicated, distribution::sharded_by_s3_key});
}

constexpr std::optional<compression> parse_compression(std::string_view s) noexcept
{
    return detail::parse_spelling(s, {compression::none, compression::gzip});
}

constexpr std::optional<record_wrapper> parse_record_wrapper(std::string_view s) noexcept
{
    return detail::parse_spelling(s, {record_wrapper::none, record_wrapper::recordio});
}

constexpr std::optional<input_mode> parse_input_mode(std::string_view s) noexcept
{
    return detail::parse_spelling(s, {input_mode::pipe, input_mode::file, input_mode::fast_file});
}

inline void validate_channel_name(std::string_view name)
{
    auto allowed = [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'
            || c == '_';
    };
    const bool ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), allowed)
        && name != "." && name != "..";
    if (!ok) {
        // The name may hold anything (control characters included): show its length, not its bytes,
        // when it is not printable.
        const bool printable = std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
        std::string shown = printable && name.size() <= 80 ? "\"" + std::string(name) + "\""
                                                           : "of " + std::to_string(name.size()) + " bytes";
        throw std::invalid_argument(
            "invalid SageMaker channel name " + shown
            + ": a channel name is 1 to 64 characters from A-Z, a-z, 0-9, '.', '-' and '_', and not \".\" or \"..\"");
    }
}

namespace detail {

// Reads one channel's members, knowing the channel's name (or its index while the name is not
// known yet) for messages.
class channel_reader {
public:
    explicit channel_reader(std::string prefix) : prefix_(std::move(prefix)) {}

    const std::string& prefix() const noexcept { return prefix_; }
    void set_prefix(std::string p) { prefix_ = std::move(p); }

    // The member `name` of `v`, or null when absent or JSON null (SDKs that serialise an
    // unset optional write null).
    static const json::value* member(const json::value& v, std::string_view name) noexcept
    {
        const json::value* m = v.find(name);
        return m && !m->is_null() ? m : nullptr;
    }

    const json::value& require_object(const json::value& v, std::string_view path) const
    {
        if (!v.is_object())
            throw_wrong_kind(prefix_, path.empty() ? "the channel" : path, "an object", v);
        if (const std::string* dup = duplicate_member(v.as_object()))
            fail(std::string(path.empty() ? "the channel" : path) + " has the member \"" + *dup
                 + "\" twice; give each member once");
        return v;
    }

    const std::string* optional_string(const json::value& o, std::string_view name, std::string_view path) const
    {
        const json::value* m = member(o, name);
        if (!m)
            return nullptr;
        if (!m->is_string())
            throw_wrong_kind(prefix_, path, "a string", *m);
        return &m->as_string();
    }

    const std::string& required_string(const json::value& o, std::string_view name, std::string_view path,
                                       std::string_view meaning) const
    {
        const std::string* s = optional_string(o, name, path);
        if (!s)
            fail(std::string(path) + " is missing; it is required (" + std::string(meaning) + ")");
        if (s->empty())
            fail(std::string(path) + " is empty; it is required (" + std::string(meaning) + ")");
        return *s;
    }

    template <class Enum>
    void read_enum(const json::value& o, std::string_view name, std::string_view path, Enum& out,
                   std::optional<Enum> (*parse)(std::string_view), std::string_view allowed) const
    {
        const std::string* s = optional_string(o, name, path);
        if (!s)
            return;
        auto e = parse(*s);
        if (!e)
            fail(std::string(path) + " is \"" + printable(*s) + "\", which is not one of " + std::string(allowed)
                 + " (spellings are case-sensitive)");
        out = *e;
    }

    void read_shuffle_config(const json::value& o, std::string_view path_prefix, channel_config& c) const
    {
        const json::value* sc = member(o, "ShuffleConfig");
        if (!sc)
            return;
        const std::string path = std::string(path_prefix) + "ShuffleConfig";
        require_object(*sc, path);
        reject_unknown(*sc, path, {"Seed"});
        const json::value* seed = member(*sc, "Seed");
        if (!seed)
            fail(path + ".Seed is missing; a ShuffleConfig needs a Seed (an integer)");
        if (!seed->is_number())
            throw_wrong_kind(prefix_, path + ".Seed", "an integer", *seed);
        auto n = seed->as_number().as_uint64();
        if (!n)
            fail(path + ".Seed is " + seed->as_number().text
                 + "; it must be a whole number from 0 to 18446744073709551615");
        c.shuffle_seed = *n;
    }

    void reject_unknown(const json::value& o, std::string_view path, std::initializer_list<std::string_view> known) const
    {
        for (const auto& [k, v] : o.as_object()) {
            if (std::find(known.begin(), known.end(), k) != known.end())
                continue;
            std::string list;
            for (std::string_view n : known) {
                if (!list.empty())
                    list += ", ";
                list += n;
            }
            fail((path.empty() ? std::string("the channel") : std::string(path)) + " has the unknown member \""
                 + printable(k) + "\"; the members pipemode knows there are " + list);
        }
    }

    [[noreturn]] void fail(const std::string& what) const { throw std::invalid_argument(prefix_ + ": " + what); }

    // `s` for a message: quoted text is kept short and free of control characters.
    static std::string printable(std::string_view s)
    {
        std::string out;
        for (char c : s.substr(0, 100))
            out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
        if (s.size() > 100)
            out += "...";
        return out;
    }

private:
    std::string prefix_;
};

inline constexpr std::string_view s3_data_type_spellings = "S3Prefix, ManifestFile or AugmentedManifestFile";
inline constexpr std::string_view distribution_spellings = "FullyReplicated or ShardedByS3Key";
inline constexpr std::string_view compression_spellings = "None or Gzip";
inline constexpr std::string_view record_wrapper_spellings = "None or RecordIO";
inline constexpr std::string_view input_mode_spellings = "Pipe, File or FastFile";

inline std::string channel_prefix(std::string_view name)
{
    return "SageMaker channel \"" + std::string(name) + "\"";
}

// One element of a CreateTrainingJob InputDataConfig.
inline channel_config read_request_channel(const json::value& v, std::size_t index, input_mode default_mode)
{
    channel_reader r("InputDataConfig[" + std::to_string(index) + "]");
    if (!v.is_object())
        throw_wrong_kind(r.prefix(), "the channel", "an object", v);
    channel_config c;
    c.mode = default_mode;

    const std::string* name = r.optional_string(v, "ChannelName", "ChannelName");
    if (!name)
        r.fail("ChannelName is missing; every channel needs a name");
    try {
        validate_channel_name(*name);
    } catch (const std::invalid_argument& e) {
        r.fail(e.what());
    }
    c.name = *name;
    r.set_prefix(channel_prefix(c.name));
    r.require_object(v, "");  // now that the channel has a name for the message
    r.reject_unknown(v, "",
                     {"ChannelName", "DataSource", "ContentType", "CompressionType", "RecordWrapperType", "InputMode",
                      "ShuffleConfig"});

    const json::value* ds = channel_reader::member(v, "DataSource");
    if (!ds)
        r.fail("DataSource is missing; it is required (DataSource.S3DataSource names the data)");
    r.require_object(*ds, "DataSource");
    if (channel_reader::member(*ds, "FileSystemDataSource"))
        r.fail("DataSource.FileSystemDataSource is not supported: SageMaker mounts EFS and FSx for Lustre file "
               "systems itself; give pipemode an S3DataSource, or the mounted directory as a file:// URI");
    r.reject_unknown(*ds, "DataSource", {"S3DataSource", "FileSystemDataSource"});
    const json::value* s3 = channel_reader::member(*ds, "S3DataSource");
    if (!s3)
        r.fail("DataSource.S3DataSource is missing; it is required (it holds S3DataType and S3Uri)");
    r.require_object(*s3, "DataSource.S3DataSource");
    // InstanceGroupNames, ModelAccessConfig and HubAccessConfig are valid in CreateTrainingJob but
    // say nothing about how to read the data: accepted and ignored.
    r.reject_unknown(*s3, "DataSource.S3DataSource",
                     {"S3DataType", "S3Uri", "S3DataDistributionType", "AttributeNames", "InstanceGroupNames",
                      "ModelAccessConfig", "HubAccessConfig"});

    const std::string* type = r.optional_string(*s3, "S3DataType", "DataSource.S3DataSource.S3DataType");
    if (!type)
        r.fail("DataSource.S3DataSource.S3DataType is missing; it is required (one of "
               + std::string(s3_data_type_spellings) + ")");
    r.read_enum(*s3, "S3DataType", "DataSource.S3DataSource.S3DataType", c.data_type, &parse_s3_data_type,
                s3_data_type_spellings);
    c.uri = r.required_string(*s3, "S3Uri", "DataSource.S3DataSource.S3Uri",
                              "the location of the data: s3://, http(s)://, file:// or a local path");
    r.read_enum(*s3, "S3DataDistributionType", "DataSource.S3DataSource.S3DataDistributionType", c.distribution,
                &parse_distribution, distribution_spellings);
    if (const json::value* names = channel_reader::member(*s3, "AttributeNames")) {
        if (!names->is_array())
            throw_wrong_kind(r.prefix(), "DataSource.S3DataSource.AttributeNames", "an array of strings", *names);
        const auto& a = names->as_array();
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (!a[i].is_string())
                throw_wrong_kind(r.prefix(), "DataSource.S3DataSource.AttributeNames[" + std::to_string(i) + "]",
                                 "a string", a[i]);
            c.attribute_names.push_back(a[i].as_string());
        }
    }

    if (const std::string* ct = r.optional_string(v, "ContentType", "ContentType"))
        c.content_type = *ct;
    r.read_enum(v, "CompressionType", "CompressionType", c.compression, &parse_compression, compression_spellings);
    r.read_enum(v, "RecordWrapperType", "RecordWrapperType", c.record_wrapper, &parse_record_wrapper,
                record_wrapper_spellings);
    r.read_enum(v, "InputMode", "InputMode", c.mode, &parse_input_mode, input_mode_spellings);
    r.read_shuffle_config(v, "", c);
    return c;
}

// One member of the container-side inputdataconfig.json. Members other than the ones read here
// are ignored: SageMaker writes this file, and may add to it.
inline channel_config read_container_channel(const std::string& name, const json::value& v)
{
    channel_reader r("inputdataconfig.json");
    try {
        validate_channel_name(name);
    } catch (const std::invalid_argument& e) {
        r.fail(e.what());
    }
    r.set_prefix(channel_prefix(name));
    r.require_object(v, "");
    channel_config c;
    c.name = name;
    if (const std::string* ct = r.optional_string(v, "ContentType", "ContentType"))
        c.content_type = *ct;
    r.read_enum(v, "TrainingInputMode", "TrainingInputMode", c.mode, &parse_input_mode, input_mode_spellings);
    r.read_enum(v, "S3DistributionType", "S3DistributionType", c.distribution, &parse_distribution,
                distribution_spellings);
    r.read_enum(v, "RecordWrapperType", "RecordWrapperType", c.record_wrapper, &parse_record_wrapper,
                record_wrapper_spellings);
    r.read_enum(v, "CompressionType", "CompressionType", c.compression, &parse_compression, compression_spellings);
    r.read_shuffle_config(v, "", c);
    return c;
}

inline void check_unique_names(const std::vector<channel_config>& channels, std::string_view where)
{
    for (std::size_t i = 0; i < channels.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (channels[i].name == channels[j].name)
                throw std::invalid_argument(channel_prefix(channels[i].name) + " appears more than once in "
                                            + std::string(where) + "; channel names must be unique");
}

inline std::vector<channel_config> read_request_channels(const json::value& list, input_mode default_mode,
                                                         std::string_view where)
{
    if (!list.is_array())
        throw_wrong_kind(where, "InputDataConfig", "an array of channels", list);
    std::vector<channel_config> out;
    const auto& a = list.as_array();
    out.reserve(a.size());
    for (std::size_t i = 0; i < a.size(); ++i)
        out.push_back(read_request_channel(a[i], i, default_mode));
    check_unique_names(out, "InputDataConfig");
    return out;
}

// A job description: its InputDataConfig, with the job's input mode as the channels' default.
// CreateTrainingJob and DescribeTrainingJob put it in AlgorithmSpecification.TrainingInputMode;
// a tuning job's TrainingJobDefinition may put it there or (as TrainingJobDefinition does in
// CreateAlgorithm) at its own top level.
inline std::vector<channel_config> read_job(const json::value& job, const std::string& where)
{
    input_mode mode = input_mode::pipe;
    channel_reader r(where);
    r.read_enum(job, "TrainingInputMode", "TrainingInputMode", mode, &parse_input_mode, input_mode_spellings);
    if (const json::value* spec = channel_reader::member(job, "AlgorithmSpecification")) {
        r.require_object(*spec, "AlgorithmSpecification");
        r.read_enum(*spec, "TrainingInputMode", "AlgorithmSpecification.TrainingInputMode", mode, &parse_input_mode,
                    input_mode_spellings);
    }
    return read_request_channels(*job.find("InputDataConfig"), mode, where);
}

} // namespace detail

inline std::vector<channel_config> parse_input_data_config(std::string_view text)
{
    const detail::json::value doc = detail::parse_config_document(text, "the SageMaker input data configuration");

    // Form 1: a bare InputDataConfig array. Without a job to take the mode from, a channel without
    // InputMode is read in Pipe mode (pipemode's default).
    if (doc.is_array())
        return detail::read_request_channels(doc, input_mode::pipe, "the input data configuration");
    if (!doc.is_object())
        detail::throw_wrong_kind("the SageMaker input data configuration", "the document",
                                 "an InputDataConfig array, a job description or an inputdataconfig.json object", doc);

    // Form 2: a job description, or an object holding one as a member (the AWS CLI's
    // --cli-input-json for create-hyper-parameter-tuning-job nests it as TrainingJobDefinition).
    if (doc.find("InputDataConfig"))
        return detail::read_job(doc, "the job description");
    const detail::json::value* nested = nullptr;
    std::string nested_name;
    for (const auto& [name, v] : doc.as_object()) {
        if (!v.is_object() || !v.find("InputDataConfig"))
            continue;
        if (nested)
            throw std::invalid_argument("the job description has InputDataConfig in both " + nested_name + " and "
                                        + name + "; give pipemode one job's description");
        nested = &v;
        nested_name = name;
    }
    if (nested)
        return detail::read_job(*nested, "the job description's " + nested_name);
    for (std::string_view job_member : {"AlgorithmSpecification", "TrainingJobName", "RoleArn", "ResourceConfig"})
        if (doc.find(job_member))
            throw std::invalid_argument("the job description has " + std::string(job_member)
                                        + " but no InputDataConfig; pipemode needs InputDataConfig to know the channels");

    // Form 3: the container-side inputdataconfig.json.
    std::vector<channel_config> out;
    for (const auto& [name, v] : doc.as_object())
        out.push_back(detail::read_container_channel(name, v));
    detail::check_unique_names(out, "inputdataconfig.json");
    return out;
}

inline std::string write_container_input_data_config(const std::vector<channel_config>& channels)
{
    for (const auto& c : channels)
        validate_channel_name(c.name);
    detail::check_unique_names(channels, "the channel list");

    pipemode::detail::json::writer w;
    w.begin_object();
    for (const auto& c : channels) {
        w.key(c.name).begin_object();
        if (!c.content_type.empty()) {
            if (!pipemode::detail::json::is_valid_utf8(c.content_type))
                throw std::invalid_argument(detail::channel_prefix(c.name) + ": content_type is not valid UTF-8");
            w.key("ContentType").string(c.content_type);
        }
        w.key("TrainingInputMode").string(to_string(c.mode));
        w.key("S3DistributionType").string(to_string(c.distribution));
        w.key("RecordWrapperType").string(to_string(c.record_wrapper));
        if (c.compression != compression::none)
            w.key("CompressionType").string(to_string(c.compression));
        if (c.shuffle_seed)
            w.key("ShuffleConfig").begin_object().key("Seed").number(*c.shuffle_seed).end_object();
        w.end_object();
    }
    w.end_object();
    return std::move(w).release();
}

inline std::vector<channel_config> read_input_data_config_file(const std::string& path)
{
    return detail::parse_config_file(path, [](const std::string& text) { return parse_input_data_config(text); });
}

} // namespace pipemode::sagemaker
