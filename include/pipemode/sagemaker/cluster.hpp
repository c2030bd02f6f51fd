// pipemode: which host of a training cluster this process is (its rank) and how many there are,
// from a launcher's environment variables or SageMaker's resourceconfig.json, sans-I/O.
//
// The rank decides which share of a ShardedByS3Key channel this host reads. Environment
// variables and the file are read through the injectable `s3::environment` (credentials.hpp), so
// every rule is tested without touching the process. See docs/sagemaker-config.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/s3/credentials.hpp>
#include <pipemode/sagemaker/detail/config_json.hpp>
#include <pipemode/detail/json_writer.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::sagemaker {

/// Where SageMaker puts the training cluster's description inside a training container.
inline constexpr std::string_view default_resource_config_path = "/opt/ml/input/config/resourceconfig.json";

/// This process's place in a training cluster.
///
/// Build one with designated initializers to state it explicitly
/// (`cluster_position{.rank = 1, .world_size = 4}`), or let `detect_cluster_position` find it.
struct cluster_position {
    /// This host's index, from 0 to `world_size - 1`.
    std::size_t rank = 0;
    /// The number of hosts, at least 1.
    std::size_t world_size = 1;
    /// Where the position came from: "explicit", "resourceconfig.json", "RANK/WORLD_SIZE",
    /// "OMPI_COMM_WORLD_*" or "default" (nothing found: rank 0 of 1).
    std::string source = "explicit";
    /// The cluster's host names, sorted, when known (from resourceconfig.json); otherwise empty.
    std::vector<std::string> hosts = {};
    /// This host's name, when known (from resourceconfig.json); otherwise empty.
    std::string current_host = {};

    friend bool operator==(const cluster_position&, const cluster_position&) = default;
};

/// Reads SageMaker's resourceconfig.json:
/// `{"current_host": "algo-2", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"}`.
///
/// `rank` is the index of `current_host` in the sorted `hosts`, as SageMaker's own containers
/// count it (so "algo-2" among "algo-3", "algo-1", "algo-2" is rank 1); `world_size` is the
/// number of hosts, `hosts` the sorted list and `source` "resourceconfig.json". Other members
/// (`network_interface_name`, `instance_groups`, ...) are ignored. Throws `std::invalid_argument`
/// naming the member at fault when the document is not JSON, `current_host` or `hosts` is
/// missing or of the wrong type, `hosts` is empty or names a host twice, or `current_host` is
/// not among `hosts`.
inline cluster_position parse_resource_config(std::string_view json);

/// Writes a resourceconfig.json for `hosts` (in the order given) and `current_host`, e.g. to
/// run a SageMaker-style container outside SageMaker. Throws `std::invalid_argument` when
/// `hosts` is empty, names a host twice or lacks `current_host`, or a name is not valid UTF-8.
inline std::string write_resource_config(const std::vector<std::string>& hosts, std::string_view current_host,
                                         std::string_view network_interface_name = "eth0");

/// Finds this process's rank and the cluster's size, trying in order:
///
/// 1. `RANK` and `WORLD_SIZE` (torchrun, torch.distributed);
/// 2. `OMPI_COMM_WORLD_RANK` and `OMPI_COMM_WORLD_SIZE` (Open MPI's mpirun, which SageMaker's
///    MPI launcher uses);
/// 3. the resourceconfig.json at `resource_config_path`, when that file exists (pass nothing to
///    skip it);
/// 4. otherwise rank 0 of 1, with `source` "default".
///
/// A pair of variables counts when either is set; then both must be, as whole decimal numbers
/// with `WORLD_SIZE` at least 1 and `RANK` below it. Throws `std::invalid_argument` naming the
/// variable (or the file) when they are not. Reads through `env` only.
inline cluster_position detect_cluster_position(
    const s3::environment& env,
    std::optional<std::string> resource_config_path = std::string(default_resource_config_path));

namespace detail {

// The value of the environment variable `name` as a size, or nothing when it is not set.
inline std::optional<std::size_t> size_variable(const s3::environment& env, const std::string& name)
{
    std::optional<std::string> v = env.get_env(name);
    if (!v)
        return std::nullopt;
    std::size_t n = 0;
    const bool digits = !v->empty() && std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; });
    const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (!digits || ec != std::errc() || p != v->data() + v->size()) {
        const bool printable = v->size() <= 40 && std::all_of(v->begin(), v->end(), [](char c) { return c >= 0x20 && c < 0x7f; });
        throw std::invalid_argument("the environment variable " + name + " is "
                                    + (printable ? "\"" + *v + "\"" : std::string("not printable"))
                                    + "; it must be a whole decimal number such as 0 or 3");
    }
    return n;
}

// The position from a pair of rank and size variables, or nothing when neither is set.
inline std::optional<cluster_position> position_from_variables(const s3::environment& env, const std::string& rank_name,
                                                               const std::string& size_name, std::string source)
{
    const auto rank = size_variable(env, rank_name);
    const auto size = size_variable(env, size_name);
    if (!rank && !size)
        return std::nullopt;
    if (!rank || !size)
        throw std::invalid_argument("the environment variable " + (rank ? rank_name : size_name) + " is set but "
                                    + (rank ? size_name : rank_name) + " is not; set both or neither");
    if (*size == 0)
        throw std::invalid_argument("the environment variable " + size_name + " is 0; a cluster has at least 1 host");
    if (*rank >= *size)
        throw std::invalid_argument("the environment variable " + rank_name + " is " + std::to_string(*rank) + " but "
                                    + size_name + " is " + std::to_string(*size) + "; " + rank_name
                                    + " must be below " + size_name);
    return cluster_position{.rank = *rank, .world_size = *size, .source = std::move(source)};
}

} // namespace detail

inline cluster_position parse_resource_config(std::string_view text)
{
    const detail::json::value doc = detail::parse_config_document(text, "resourceconfig.json");
    const std::string where = "resourceconfig.json";
    if (!doc.is_object())
        detail::throw_wrong_kind(where, "the document", "an object", doc);

    const detail::json::value* current = doc.find("current_host");
    if (!current)
        throw std::invalid_argument(where + ": current_host is missing; it names this host");
    if (!current->is_string())
        detail::throw_wrong_kind(where, "current_host", "a string", *current);
    const detail::json::value* hosts = doc.find("hosts");
    if (!hosts)
        throw std::invalid_argument(where + ": hosts is missing; it lists the cluster's hosts");
    if (!hosts->is_array())
        detail::throw_wrong_kind(where, "hosts", "an array of strings", *hosts);

    cluster_position pos{.source = "resourceconfig.json", .current_host = current->as_string()};
    for (std::size_t i = 0; i < hosts->as_array().size(); ++i) {
        const auto& h = hosts->as_array()[i];
        if (!h.is_string())
            detail::throw_wrong_kind(where, "hosts[" + std::to_string(i) + "]", "a string", h);
        pos.hosts.push_back(h.as_string());
    }
    if (pos.hosts.empty())
        throw std::invalid_argument(where + ": hosts is empty; it must list at least this host");
    std::sort(pos.hosts.begin(), pos.hosts.end());
    if (auto dup = std::adjacent_find(pos.hosts.begin(), pos.hosts.end()); dup != pos.hosts.end())
        throw std::invalid_argument(where + ": hosts names \"" + *dup + "\" twice; each host must appear once");
    auto it = std::find(pos.hosts.begin(), pos.hosts.end(), pos.current_host);
    if (it == pos.hosts.end())
        throw std::invalid_argument(where + ": current_host \"" + pos.current_host
                                    + "\" is not among hosts; it must be one of them");
    pos.rank = static_cast<std::size_t>(it - pos.hosts.begin());
    pos.world_size = pos.hosts.size();
    return pos;
}

inline std::string write_resource_config(const std::vector<std::string>& hosts, std::string_view current_host,
                                         std::string_view network_interface_name)
{
    if (hosts.empty())
        throw std::invalid_argument("write_resource_config: hosts is empty; list at least the current host");
    std::vector<std::string> sorted = hosts;
    std::sort(sorted.begin(), sorted.end());
    if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end())
        throw std::invalid_argument("write_resource_config: hosts names \"" + *dup + "\" twice");
    if (std::find(hosts.begin(), hosts.end(), current_host) == hosts.end())
        throw std::invalid_argument("write_resource_config: current_host \"" + std::string(current_host)
                                    + "\" is not among hosts");
    pipemode::detail::json::writer w;
    w.begin_object().key("current_host").string(current_host).key("hosts").begin_array();
    for (const auto& h : hosts)
        w.string(h);
    w.end_array().key("network_interface_name").string(network_interface_name).end_object();
    return std::move(w).release();
}

inline cluster_position detect_cluster_position(const s3::environment& env,
                                                std::optional<std::string> resource_config_path)
{
    if (auto p = detail::position_from_variables(env, "RANK", "WORLD_SIZE", "RANK/WORLD_SIZE"))
        return std::move(*p);
    if (auto p = detail::position_from_variables(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                                 "OMPI_COMM_WORLD_*"))
        return std::move(*p);
    if (resource_config_path) {
        if (std::optional<std::string> text = env.read_file(*resource_config_path)) {
            try {
                return parse_resource_config(*text);
            } catch (const std::invalid_argument& e) {
                // Name the file actually read: it may not be at the default path.
                throw std::invalid_argument(*resource_config_path + ": " + e.what());
            }
        }
    }
    return cluster_position{.source = "default"};
}

} // namespace pipemode::sagemaker
