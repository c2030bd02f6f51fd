// Fuzz target for the SageMaker configuration readers: on any input, parse_input_data_config,
// parse_resource_config and hyperparameters::parse either succeed or throw
// std::invalid_argument (never another exception, a crash or an out-of-bounds read); a channel
// list that parses writes out as inputdataconfig.json and reads back the same, less the fields
// that form does not carry; a resource configuration that parses has a rank inside it and
// survives write_resource_config.
//
// The seeds in config.corpus/ are the seed's boto3 job description, an inputdataconfig.json, a
// resourceconfig.json and a hyperparameters.json.
#include <pipemode/sagemaker/channel.hpp>
#include <pipemode/sagemaker/cluster.hpp>
#include <pipemode/sagemaker/hyperparameters.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace sm = pipemode::sagemaker;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

void channels(std::string_view in)
{
    std::vector<sm::channel_config> list;
    try {
        list = sm::parse_input_data_config(in);
    } catch (const std::invalid_argument&) {
        return;
    }
    for (auto& c : list) {
        sm::validate_channel_name(c.name);  // whatever parses has a valid name
        c.uri.clear();
        c.data_type = sm::s3_data_type::s3_prefix;
        c.attribute_names.clear();
    }
    check(sm::parse_input_data_config(sm::write_container_input_data_config(list)) == list);
}

void resources(std::string_view in)
{
    sm::cluster_position p;
    try {
        p = sm::parse_resource_config(in);
    } catch (const std::invalid_argument&) {
        return;
    }
    check(p.rank < p.world_size && p.world_size == p.hosts.size());
    check(std::is_sorted(p.hosts.begin(), p.hosts.end()) && p.hosts[p.rank] == p.current_host);
    check(sm::parse_resource_config(sm::write_resource_config(p.hosts, p.current_host)) == p);
}

void hyperparameters(std::string_view in)
{
    try {
        const auto hp = sm::hyperparameters::parse(in);
        for (const auto& [k, v] : hp.items()) {
            check(hp.get<std::string>(k) == v);
            try {
                (void)hp.get<std::int64_t>(k);
                (void)hp.get<double>(k);
                (void)hp.get<bool>(k);
            } catch (const std::invalid_argument&) {
            }
        }
    } catch (const std::invalid_argument&) {
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    channels(in);
    resources(in);
    hyperparameters(in);
    return 0;
}
