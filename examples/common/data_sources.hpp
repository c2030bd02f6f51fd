// The data-set plumbing pipemode's example programs share: turning command-line sources (local
// paths and FIFOs, http(s):// URLs, s3:// keys and prefixes, SageMaker manifests) into one
// pipemode::source_provider (or one object store, to read them as a planned data set), and the
// URL and S3 options that go with them.
//
// A target built without pipemode::http defines PIPEMODE_TOOLS_NO_HTTP: it reads local paths
// only and refuses URLs with a sentence saying so.
#pragma once

#include "../tools/command_line.hpp"

#include <pipemode/cache/caching_store.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/fanout/shared_provider.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#ifndef PIPEMODE_TOOLS_NO_HTTP
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/remote/http_store.hpp>
#include <pipemode/s3/data_set.hpp>
#include <pipemode/s3/store.hpp>
#endif

#include <boost/asio/awaitable.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::tools {

/// A source named on the command line: a path or URL, or the S3 URI of a manifest.
struct source_arg {
    std::string text;
    bool manifest = false;
};

/// How to reach URL and S3 sources, and the read size of local ones (each member is the
/// option of the same name; see `source_options_help`).
struct source_options {
    std::size_t read_size = 4 * pipemode::mib;
    std::string endpoint_url;
    std::string region;
    std::string profile;
    bool path_style = false;
    bool anonymous = false;
    std::optional<std::size_t> part_size;
    std::optional<std::size_t> connections;
    std::optional<double> throughput_target_gbps;
    std::optional<std::size_t> network_threads;
    std::vector<std::string> resolve;
    std::string ca_file;
    bool verify_tls = true;
    std::string cache_dir;                  ///< --cache-dir: empty, no cache on disk
    bool cache_in_memory = false;           ///< --cache-in-memory
    std::optional<std::uint64_t> cache_size;  ///< --cache-size
    std::string fanout_group;                 ///< --fanout-group: empty, no fan-out
    std::optional<std::size_t> fanout_members;  ///< --fanout-members
};

/// The help text of the options `parse_source_option` takes, for a program's usage text.
inline constexpr std::string_view source_options_help = R"(Cache options (data sets read over epochs; off unless --cache-dir or --cache-in-memory is given):
  --cache-dir DIR        keep what the first epoch downloads in DIR on local disk, so later
                         epochs and restarted jobs read it from there (docs/cache.md); several
                         processes of a host may share DIR
  --cache-in-memory      keep it in this process's memory instead (hosts without local disk)
  --cache-size SIZE      the most bytes the cache takes, with a suffix K, M, G or T (required
                         with either); objects are kept in the order first read until it is
                         full, then the rest is read from the network every epoch
  --fanout-group NAME    read a replicated data set once per host: the processes of this host
                         that give the same NAME (and data set, seed and epochs) share one
                         download through shared memory (docs/fanout.md)
  --fanout-members N     how many processes of this host are in the group (default: the
                         launcher's OMPI_COMM_WORLD_LOCAL_SIZE or LOCAL_WORLD_SIZE)
URL and S3 options:
  --manifest S3URI       read the objects a SageMaker manifest file lists (may be repeated)
  --endpoint-url URL     an S3-compatible endpoint (e.g. http://127.0.0.1:9000); default:
                         AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's, else AWS
  --region REGION        the signing region; default: AWS_REGION, AWS_DEFAULT_REGION, profile
  --profile NAME         the AWS profile for credentials, region and endpoint
  --path-style           address buckets as ENDPOINT/BUCKET/KEY (the default for endpoints
                         other than AWS's)
  --no-sign-request      send unsigned requests (public buckets); no credentials are looked up
  --throughput-target GBPS
                         the link to size the stream for, in Gb/s (default 25): sets the
                         most connections (GBPS / 50 MB/s) and the window; the connections
                         start at 32 and grow while throughput grows with them
  --network-threads N    network threads (default: one per 5.7 Gb/s of the target,
                         what receiving over TLS costs a core; at most half the cores)
  --resolve HOST:PORT:ADDR[,ADDR...]
                         use these addresses for HOST:PORT instead of DNS (as curl's
                         --resolve; may be repeated); connections are spread over them
  --part-size SIZE       bytes per ranged GET: MiB, or with a suffix K, M, G (default 8)
  --connections N        ranged GETs in flight at most (default: from --throughput-target)
  --ca-file PATH         a PEM file of CA certificates to trust instead of the system's;
                         default: AWS_CA_BUNDLE, the profile's ca_bundle, else the system's
  --no-verify-tls        DANGEROUS, for test servers only: accept any TLS certificate and
                         host name, so anyone on the path can read and alter the data
)";

/// Takes the current option of `c` if it is one of the URL and S3 options (or `--read-size`,
/// or `--manifest`, which is appended to `sources`); returns false for any other option.
inline bool parse_source_option(option_cursor& c, source_options& o, std::vector<source_arg>& sources)
{
    const auto name = c.name();
    if (name == "--read-size") {
        o.read_size = parse_bytes(name, c.value());
        if (o.read_size == 0)
            throw usage_error("--read-size must be at least 1 byte");
    }
    else if (name == "--manifest")
        sources.push_back({std::string(c.value()), true});
    else if (name == "--cache-dir") {
        o.cache_dir = c.value();
        if (o.cache_dir.empty())
            throw usage_error("--cache-dir needs a directory");
    }
    else if (name == "--cache-in-memory")
        o.cache_in_memory = true;
    else if (name == "--cache-size") {
        try {
            o.cache_size = pipemode::cache::parse_size(std::string(c.value()));
        } catch (const std::invalid_argument&) {
            throw usage_error("--cache-size is a size such as 20G or 500M, not '" + std::string(c.value()) + "'");
        }
    }
    else if (name == "--fanout-group") {
        o.fanout_group = c.value();
        if (o.fanout_group.empty())
            throw usage_error("--fanout-group needs a name");
    }
    else if (name == "--fanout-members") {
        o.fanout_members = parse_count(name, c.value());
        if (*o.fanout_members == 0)
            throw usage_error("--fanout-members must be at least 1");
    }
    else if (name == "--endpoint-url")
        o.endpoint_url = c.value();
    else if (name == "--region")
        o.region = c.value();
    else if (name == "--profile")
        o.profile = c.value();
    else if (name == "--path-style")
        o.path_style = true;
    else if (name == "--no-sign-request")
        o.anonymous = true;
    else if (name == "--part-size") {
        // A bare number is MiB, as part sizes are usually quoted; a suffix gives any size.
        const auto v = c.value();
        const bool suffixed = !v.empty() && std::isalpha(static_cast<unsigned char>(v.back()));
        const auto n = suffixed ? parse_bytes(name, v) : parse_count(name, v);
        if (n == 0)
            throw usage_error("--part-size must be at least 1 byte");
        if (!suffixed && n > SIZE_MAX / pipemode::mib)
            throw usage_error("--part-size is too large");
        o.part_size = static_cast<std::size_t>(suffixed ? n : n * pipemode::mib);
    }
    else if (name == "--connections") {
        o.connections = parse_count(name, c.value());
        if (*o.connections == 0)
            throw usage_error("--connections must be at least 1");
    }
    else if (name == "--network-threads") {
        o.network_threads = parse_count(name, c.value());
        if (*o.network_threads == 0 || *o.network_threads > 256)
            throw usage_error("--network-threads must be between 1 and 256");
    }
    else if (name == "--resolve")
        o.resolve.emplace_back(c.value());
    else if (name == "--throughput-target") {
        const std::string v(c.value());
        std::size_t used = 0;
        double gbps = 0;
        try {
            gbps = std::stod(v, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != v.size() || !(gbps > 0) || gbps > 1e6)
            throw usage_error("--throughput-target is a link speed in Gb/s, such as 25 or 12.5, not '" + v + "'");
        o.throughput_target_gbps = gbps;
    }
    else if (name == "--ca-file")
        o.ca_file = c.value();
    else if (name == "--no-verify-tls")
        o.verify_tls = false;
    else
        return false;
    return true;
}

/// Reads the sources of several providers one after the other, so that the command line can
/// mix kinds of sources (local paths, URLs, S3 prefixes and manifests) in one data set.
class chained_provider final : public pipemode::source_provider {
public:
    explicit chained_provider(std::vector<std::unique_ptr<pipemode::source_provider>> parts)
        : parts_(std::move(parts))
    {
    }

    pipemode::asio::awaitable<std::optional<pipemode::any_byte_source>>
    async_next_source(pipemode::source_context ctx) override
    {
        for (; current_ < parts_.size(); ++current_) {
            if (auto source = co_await parts_[current_]->async_next_source(ctx))
                co_return source;
        }
        co_return std::nullopt;
    }

    std::string describe() const override
    {
        std::string s;
        for (const auto& p : parts_)
            s += (s.empty() ? "" : " + ") + p->describe();
        return s;
    }

    /// The largest of the parts' reservations, not their sum: a part starts fetching only when
    /// the reader first asks it for a source, which is after the previous part has ended, so
    /// their buffers are not held at the same time. Every part is told the options (an object
    /// stream sizes its window here).
    std::size_t reserve_buffers(const pipemode::reader_options& options) override
    {
        std::size_t most = 0;
        for (const auto& p : parts_)
            most = std::max(most, p->reserve_buffers(options));
        return most;
    }

private:
    std::vector<std::unique_ptr<pipemode::source_provider>> parts_;
    std::size_t current_ = 0;
};

/// The URL scheme of `arg` ("s3" for "s3://bucket/key"), or empty for a local path.
inline std::string_view scheme_of(std::string_view arg)
{
    const auto sep = arg.find("://");
    if (sep == std::string_view::npos || sep == 0)
        return {};
    for (char c : arg.substr(0, sep))
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'))
            return {};
    return arg.substr(0, sep);
}

/// What reads a command-line source.
enum class source_kind { local, http, s3, manifest };

/// The kind of `a`; throws `usage_error` for a scheme no provider reads.
inline source_kind kind_of(const source_arg& a)
{
    const auto scheme = scheme_of(a.text);
    if (a.manifest) {
        if (scheme != "s3")
            throw usage_error("--manifest needs an s3:// URI, not '" + a.text + "'");
        return source_kind::manifest;
    }
    if (scheme.empty())
        return source_kind::local;
    if (scheme == "http" || scheme == "https")
        return source_kind::http;
    if (scheme == "s3")
        return source_kind::s3;
    throw usage_error("'" + a.text + "': " + std::string(scheme) +
                      ":// is not a source pipemode reads (it reads paths, http://, https:// and s3://)");
}

#ifndef PIPEMODE_TOOLS_NO_HTTP

/// The object-stream options the command line asks for.
inline pipemode::remote::stream_options stream_options_of(const source_options& o)
{
    pipemode::remote::stream_options s;
    if (o.part_size)
        s.part_size = *o.part_size;
    if (o.connections)
        s.max_connections = *o.connections;
    if (o.throughput_target_gbps)
        s.throughput_target_gbps = *o.throughput_target_gbps;
    if (o.network_threads)
        s.network_threads = *o.network_threads;
    s.client.resolve = o.resolve;
    s.client.verify_tls = o.verify_tls;
    // The CA as the AWS CLI takes it, for https:// URLs as much as for S3: --ca-file, else
    // AWS_CA_BUNDLE, else the profile's ca_bundle, else the system's. Checked here so that a
    // missing file is named by the option or setting it came from.
    if (o.verify_tls) {
        if (!o.ca_file.empty()) {
            pipemode::s3::check_ca_bundle({o.ca_file, "--ca-file"});
            s.client.ca_file = o.ca_file;
        } else if (auto bundle = pipemode::s3::resolve_ca_bundle(pipemode::s3::environment::process(), o.profile)) {
            pipemode::s3::check_ca_bundle(*bundle);
            s.client.ca_file = bundle->path;
        }
    }
    return s;  // window_bytes stays 0: the window follows the reader's memory budget
}

/// The S3 options the command line asks for.
inline pipemode::s3::s3_options s3_options_of(const source_options& o)
{
    pipemode::s3::s3_options s;
    s.endpoint_url = o.endpoint_url;
    s.region = o.region;
    s.profile = o.profile;
    if (o.path_style)
        s.addressing_style = pipemode::s3::addressing::path;
    s.anonymous = o.anonymous;
    s.stream = stream_options_of(o);
    return s;
}

#endif

/// Calls `f(kind, texts)` for each run of consecutive command-line sources of one kind, in
/// argument order; every manifest is a run of its own.
template <class F>
void for_each_run(const std::vector<source_arg>& sources, F&& f)
{
    std::vector<std::string> run;
    source_kind run_kind = source_kind::local;
    const auto flush = [&] {
        if (!run.empty())
            f(run_kind, std::exchange(run, {}));
    };
    for (const auto& arg : sources) {
        const auto kind = kind_of(arg);
        if (kind != run_kind || kind == source_kind::manifest)
            flush();
        run_kind = kind;
        run.push_back(arg.text);
    }
    flush();
}

/// The refusal of a network source by a build without pipemode::http.
[[noreturn]] inline void refuse_without_http(const std::string& source, std::string_view program)
{
    throw usage_error("'" + source + "': this " + std::string(program) +
                      " was built without pipemode::http (PIPEMODE_WITH_CURL=OFF), so it reads local paths only");
}

/// The one place that turns command-line sources into the reader's sources. Each run of
/// consecutive arguments of one kind becomes one provider (local paths one `local_files`,
/// URLs one `http_objects` stream, s3:// URIs one `s3_objects` stream, each manifest its own
/// `s3_manifest` stream), chained in argument order. `program` names the program in messages.
inline std::unique_ptr<pipemode::source_provider>
make_provider(const std::vector<source_arg>& sources, const source_options& o, std::string_view program)
{
    std::vector<std::unique_ptr<pipemode::source_provider>> parts;
    for_each_run(sources, [&](source_kind kind, std::vector<std::string> texts) {
        switch (kind) {
        case source_kind::local: parts.push_back(pipemode::local_files(std::move(texts), o.read_size)); return;
#ifndef PIPEMODE_TOOLS_NO_HTTP
        case source_kind::http: parts.push_back(pipemode::remote::http_objects(std::move(texts), stream_options_of(o))); return;
        case source_kind::s3: parts.push_back(pipemode::s3::s3_objects(texts, s3_options_of(o))); return;
        case source_kind::manifest: parts.push_back(pipemode::s3::s3_manifest(texts.front(), s3_options_of(o))); return;
#else
        default: refuse_without_http(texts.front(), program);
#endif
        }
    });
    (void)program;
    if (parts.size() == 1)
        return std::move(parts.front());
    return std::make_unique<chained_provider>(std::move(parts));
}

/// The cache --cache-dir (or --cache-in-memory) and --cache-size ask for, or nothing when
/// none was asked for. Throws `usage_error` when they do not make one cache.
inline std::optional<pipemode::cache::cache_options> cache_options_of(const source_options& o)
{
    const bool place = !o.cache_dir.empty() || o.cache_in_memory;
    if (!place && !o.cache_size)
        return std::nullopt;
    if (!o.cache_dir.empty() && o.cache_in_memory)
        throw usage_error("--cache-dir and --cache-in-memory are two places for one cache: give one");
    if (!place)
        throw usage_error("--cache-size needs --cache-dir or --cache-in-memory: say where the cache lives");
    if (!o.cache_size)
        throw usage_error(std::string(o.cache_in_memory ? "--cache-in-memory" : "--cache-dir")
                          + " needs --cache-size: say how many bytes the cache may take, such as 20G");
    // An empty directory is the library's memory cache.
    return pipemode::cache::cache_options{.directory = o.cache_dir, .budget_bytes = *o.cache_size};
}

/// `store` read through the cache `cache_options_of(o)` describes, or `store` itself.
inline std::unique_ptr<pipemode::object_store> cached(std::unique_ptr<pipemode::object_store> store, const source_options& o)
{
    auto options = cache_options_of(o);
    if (!options)
        return store;
    return pipemode::cache::caching_store(std::move(store), std::move(*options));
}

/// What decides a data set's planned order besides its sources, as text: members of a fan-out
/// group compare it so that a process with another seed, sharding or resume point is refused
/// instead of being handed another plan's records.
inline std::string plan_key_of(const pipemode::data_set_options& d)
{
    std::string key = "seed=" + (d.plan.shuffle_seed ? std::to_string(*d.plan.shuffle_seed) : std::string("none"));
    switch (d.plan.shard.mode) {
    case pipemode::shard_mode::replicated: key += " shards=replicated"; break;
    case pipemode::shard_mode::by_object: key += " shards=by-object"; break;
    case pipemode::shard_mode::by_bytes: key += " shards=by-bytes"; break;
    case pipemode::shard_mode::by_byte_range: key += " shards=by-byte-range"; break;
    }
    // Replicated ranks all read the same plan; any other mode gives each rank its own.
    if (d.plan.shard.mode != pipemode::shard_mode::replicated)
        key += " rank=" + std::to_string(d.plan.shard.rank) + "/" + std::to_string(d.plan.shard.world_size);
    key += " epochs=" + std::to_string(d.first_epoch) + ".." + std::to_string(d.epochs);
    if (d.resume)
        key += " resume=" + d.resume->to_json();
    return key;
}

/// `provider` (a planned data set read with `d`) shared with the other processes of this host
/// through the fan-out group of --fanout-group and --fanout-members, or `provider` itself when
/// no group was asked for.
inline std::unique_ptr<pipemode::source_provider>
fanned_out(std::unique_ptr<pipemode::source_provider> provider, const source_options& o, const pipemode::data_set_options& d)
{
    if (o.fanout_group.empty()) {
        if (o.fanout_members)
            throw usage_error("--fanout-members needs --fanout-group: name the group");
        return provider;
    }
    const auto local = pipemode::fanout::local_group_from_environment();
    if (!o.fanout_members && !local)
        throw usage_error("--fanout-group needs --fanout-members N: no launcher variable (OMPI_COMM_WORLD_LOCAL_SIZE, "
                          "LOCAL_WORLD_SIZE) says how many processes of this host read the data set");
    const std::size_t members = o.fanout_members ? *o.fanout_members : local->members;
    pipemode::fanout::fanout_options f;
    f.group = o.fanout_group;
    f.members = members;
    f.rank_in_group = local ? local->rank % members : 0;
    f.plan_key = plan_key_of(d);
    f.first_epoch = d.resume ? d.resume->epoch : d.first_epoch;
    return pipemode::fanout::shared_provider(std::move(provider), std::move(f));
}

/// The command-line sources as one object store, for reading them as a planned data set
/// (sharded, shuffled, over epochs): local paths (directories, files, path prefixes) one
/// `local_store`, URLs (objects, or prefixes ending in '/') one `http_store`, s3:// URIs one
/// `s3_store`, each manifest an `s3_manifest_store`, concatenated in argument order.
inline std::unique_ptr<pipemode::object_store>
make_store(const std::vector<source_arg>& sources, const source_options& o, std::string_view program)
{
    std::vector<std::unique_ptr<pipemode::object_store>> parts;
    for_each_run(sources, [&](source_kind kind, std::vector<std::string> texts) {
        switch (kind) {
        case source_kind::local: parts.push_back(pipemode::local_store(std::move(texts), o.read_size)); return;
#ifndef PIPEMODE_TOOLS_NO_HTTP
        case source_kind::http: parts.push_back(pipemode::remote::http_store(std::move(texts), stream_options_of(o))); return;
        case source_kind::s3: parts.push_back(pipemode::s3::s3_store(texts, s3_options_of(o))); return;
        case source_kind::manifest: parts.push_back(pipemode::s3::s3_manifest_store(texts.front(), s3_options_of(o))); return;
#else
        default: refuse_without_http(texts.front(), program);
#endif
        }
    });
    (void)program;
    return cached(pipemode::concat_stores(std::move(parts)), o);
}

} // namespace pipemode::tools
