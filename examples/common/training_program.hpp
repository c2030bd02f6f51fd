// What pipemode's example training programs (pipemode-pca, pipemode-kmeans) share: where the
// data comes from (sources on the command line, or a SageMaker Pipe-mode channel), where the
// hyperparameters come from (options, or SageMaker's hyperparameters.json), where the model
// goes, the progress line, and writing JSON.
#pragma once

#include "data_sources.hpp"
#include "mpi_context.hpp"
#include "training_common.hpp"

#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sagemaker/hyperparameters.hpp>
#include <pipemode/sagemaker/pipe_channel.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::examples {

using tools::usage_error;


/// The part of a training program's command line that is not a hyperparameter.
struct training_input {
    std::vector<tools::source_arg> sources;
    tools::source_options source;
    std::string pipe_channel;                           ///< read <data_dir>/<channel>_<epoch> FIFOs
    std::string data_dir = std::string(sagemaker::default_data_dir);
    std::string model_dir;                              ///< empty: /opt/ml/model if it exists, else "."
    std::string hyperparameters_file;                   ///< empty: SageMaker's, if it exists
    std::size_t memory_budget = reader_options{}.memory_budget;
    std::optional<shard_mode> sharding;                 ///< under MPI; empty: see `epoch_sources`
    bool quiet = false;                                 ///< no progress output
    bool help = false;
};

/// The help text of the options `parse_input_option` takes.
inline constexpr std::string_view input_options_help = R"(Input and output options:
  --pipe-channel NAME    read SageMaker Pipe-mode FIFOs DATA_DIR/NAME_0, NAME_1, ... (one per
                         epoch) instead of SOURCEs
  --data-dir DIR         where the channel FIFOs are (default /opt/ml/input/data)
  --hyperparameters FILE SageMaker's hyperparameters.json (string values); options on the
                         command line override it. Default: /opt/ml/input/config/
                         hyperparameters.json when it exists and no hyperparameter option is
                         given
  --model-dir DIR        where model.json goes (default /opt/ml/model when it exists, else .)
  --memory-budget BYTES  memory the reader may hold (default 1G)
  --read-size BYTES      size of one read from a file or FIFO (default 4M)
  --shard-mode MODE      under MPI, how ranks share the SOURCEs: object (default: SageMaker's
                         ShardedByS3Key), bytes (balanced sizes), or byte-range (objects cut
                         at record boundaries; every rank gets work). bytes and byte-range
                         need sizes: local paths and s3:// prefixes have them
  --quiet                no progress output
  -h, --help             print this help
)";

/// Takes the current option of `c` if it is an input, output or URL option; false otherwise.
inline bool parse_input_option(tools::option_cursor& c, training_input& in)
{
    const auto name = c.name();
    if (name == "-h" || name == "--help")
        in.help = true;
    else if (name == "--pipe-channel")
        in.pipe_channel = c.value();
    else if (name == "--data-dir")
        in.data_dir = c.value();
    else if (name == "--model-dir")
        in.model_dir = c.value();
    else if (name == "--hyperparameters")
        in.hyperparameters_file = c.value();
    else if (name == "--quiet")
        in.quiet = true;
    else if (name == "--shard-mode") {
        const auto v = c.value();
        if (v == "object")
            in.sharding = shard_mode::by_object;
        else if (v == "bytes")
            in.sharding = shard_mode::by_bytes;
        else if (v == "byte-range")
            in.sharding = shard_mode::by_byte_range;
        else
            throw usage_error("--shard-mode is object, bytes or byte-range, not '" + std::string(v) + "'");
    }
    else if (name == "--memory-budget") {
        in.memory_budget = tools::parse_bytes(name, c.value());
        if (in.memory_budget == 0)
            throw usage_error("--memory-budget must be at least 1 byte");
    }
    else
        return tools::parse_source_option(c, in.source, in.sources);
    return true;
}



/// Reads the command line of a training program: positional SOURCEs, the input options, and
/// every other `--name value` as a hyperparameter handed to `set` after those of the
/// hyperparameters file (read with `sagemaker::hyperparameters`), so the command line wins.
/// Unknown hyperparameters in the file are reported on stderr and skipped (SageMaker adds its
/// own, e.g. `sagemaker_program`); on the command line they are usage errors.
inline training_input parse_training_command_line(int argc, char** argv, const hyperparameter_setter& set,
                                                  std::string_view program)
{
    training_input in;
    std::vector<std::pair<std::string, std::string>> given;
    for (tools::option_cursor c(argc, argv); c.next();) {
        if (c.positional())
            in.sources.push_back({std::string(c.arg())});
        else if (!parse_input_option(c, in))
            given.emplace_back(std::string(c.name()), std::string(c.value()));
    }
    if (in.help)
        return in;

    std::string file = in.hyperparameters_file;
    if (file.empty() && given.empty()
        && std::filesystem::exists(std::string(pipemode::sagemaker::default_hyperparameters_path)))
        file = pipemode::sagemaker::default_hyperparameters_path;
    if (!file.empty()) {
        pipemode::sagemaker::hyperparameters hp;
        try {
            hp = pipemode::sagemaker::hyperparameters::read_file(file);
        } catch (const std::exception& e) {
            throw usage_error(e.what());  // the message starts with the path
        }
        for (const auto& [name, value] : hp.items())
            if (!set(hyperparameter_name(name), value))
                std::fprintf(stderr, "%.*s: ignoring hyperparameter '%s' from %s\n", static_cast<int>(program.size()),
                             program.data(), name.c_str(), file.c_str());
    }
    for (const auto& [name, value] : given)
        if (!set(hyperparameter_name(name), value))
            throw usage_error("unknown option '" + name + "'");
    if (in.sources.empty() && in.pipe_channel.empty())
        throw usage_error("no SOURCE given (or --pipe-channel NAME)");
    if (!in.sources.empty() && !in.pipe_channel.empty())
        throw usage_error("give SOURCEs or --pipe-channel, not both");
    return in;
}


/// The sources this rank reads in `epoch`: the Pipe-mode FIFO of the epoch
/// (`sagemaker::pipe_channel_epoch`; each host's agent already feeds it that host's shard), or
/// this rank's share of the command-line sources, planned by the library as one data set:
/// listed once (directories and S3 prefixes object by object), then sharded with
/// `in.sharding`, by default whole objects dealt out in turn as SageMaker's ShardedByS3Key.
/// Returns nullptr when this rank has nothing to read (more ranks than objects).
inline std::unique_ptr<source_provider> epoch_sources(const training_input& in, std::uint64_t epoch,
                                                      const mpi_context& mpi, std::string_view program)
{
    if (!in.pipe_channel.empty()) {
        // SageMaker's protocol: the channel's FIFO for epoch e is <dir>/<channel>_<e>, waited
        // for until it appears (a misspelt channel fails fast, naming the ones there are).
        return sagemaker::pipe_channel_epoch(in.data_dir, in.pipe_channel, epoch);
    }
    const shard_mode mode = mpi.size() == 1 ? shard_mode::replicated : in.sharding.value_or(shard_mode::by_object);
    // When every source is one object (not a directory, prefix or manifest), their count is
    // the object count, and a rank beyond it has nothing to read: it still takes part in the
    // collectives, with no data. (With prefixes the planner says so instead.)
    const bool single_objects = std::all_of(in.sources.begin(), in.sources.end(), [](const tools::source_arg& a) {
        return !a.manifest && !a.text.ends_with('/') && !std::filesystem::is_directory(a.text);
    });
    if (mode == shard_mode::by_object && single_objects && mpi.rank() >= in.sources.size())
        return nullptr;
    data_set_options d;
    d.plan.shard = {.rank = mpi.rank(), .world_size = mpi.size(), .mode = mode};
    d.epochs = epoch + 1;
    d.first_epoch = epoch;
    auto provider = planned_epochs(tools::make_store(in.sources, in.source, program), d);
    // A fan-out group shares one plan: ranks that each read a shard of their own have nothing
    // to share (and the group would refuse their different plans), so only a replicated read
    // (one process per group member, each reading everything) goes through it.
    if (mode != shard_mode::replicated)
        return provider;
    return tools::fanned_out(std::move(provider), in.source, d);
}


/// The directory the model file goes to.
inline std::filesystem::path model_directory(const training_input& in)
{
    if (!in.model_dir.empty())
        return in.model_dir;
    if (std::filesystem::is_directory(std::string(sagemaker_model_dir)))
        return std::string(sagemaker_model_dir);
    return ".";
}




} // namespace pipemode::examples
