// pipemode-agent: SageMaker's Pipe mode outside SageMaker. Reads a training job's InputDataConfig
// (alone, or inside a whole CreateTrainingJob request), writes the container-side
// inputdataconfig.json (and resourceconfig.json), and streams every Pipe-mode channel into the
// FIFOs <data-dir>/<channel>_<epoch> as SageMaker does, so an unmodified Pipe-mode training
// container runs anywhere. The work is done by pipemode::sagemaker::agent (sagemaker/agent.hpp);
// this program is its command line, its progress display and its signal handling.
//
// Usage: `pipemode-agent --help` and docs/agent.md.
#include "../common/data_sources.hpp"
#include "command_line.hpp"

#include <pipemode/sagemaker/agent.hpp>
#include <pipemode/sagemaker/channel.hpp>
#include <pipemode/sagemaker/cluster.hpp>

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace pipemode::tools;
namespace sm = pipemode::sagemaker;

constexpr std::string_view usage_head = R"(Usage: pipemode-agent --config JOB.json [options]

Streams the Pipe-mode channels of a SageMaker training job into the FIFOs
DATA_DIR/<channel>_<epoch>, as SageMaker does for a training container: each epoch's
objects shuffled with ShuffleConfig.Seed, this host's share of ShardedByS3Key channels,
gzip inflated, each object wrapped in one RecordIO record under RecordWrapperType RecordIO.
An epoch ends when the reader reaches its end or closes the FIFO; the next epoch's FIFO then
appears. Also writes CONFIG_DIR/inputdataconfig.json (and resourceconfig.json with --hosts).
S3Uri may be s3://, http(s)://, file:// or a local path.

Options:
  --config PATH          the job: a CreateTrainingJob request (boto3's keyword arguments, the
                         CLI's --cli-input-json, describe-training-job's output) or its
                         InputDataConfig array (required)
  --data-dir DIR         where the FIFOs go (default /opt/ml/input/data)
  --config-dir DIR       where the configuration files go (default /opt/ml/input/config)
  --epochs N             epochs per channel (default 1; 0: until stopped)
  --consumers N          training processes on this host, each reading every channel from
                         its own FIFOs DATA_DIR/consumer-<i>/<channel>_<epoch> (default 1:
                         DATA_DIR/<channel>_<epoch>); a FullyReplicated channel is downloaded
                         once and written to every consumer at the pace of the slowest, a
                         ShardedByS3Key channel is dealt over hosts x consumers
  --channel NAME         stream only this channel (may be repeated)
  --hosts H1,H2,...      the cluster's hosts: writes resourceconfig.json, and ShardedByS3Key
                         channels deliver the share of --current-host (rank = its place among
                         the sorted hosts)
  --current-host H       this host, one of --hosts
  --shard-mode MODE      how ShardedByS3Key deals objects: object (SageMaker's rule, default)
                         or bytes (balanced by object size)
  --reader-timeout SECS  fail when no reader opens an epoch's FIFO within SECS (default: wait
                         for ever)
  --memory-budget BYTES  read-ahead per channel (default 1G)
  --quiet                no progress and no log lines; errors only
  -h, --help             print this help

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 when every epoch of every channel was delivered, 1 when a channel failed (the
message names the channel, epoch and object; an S3 error its bucket, key and error code), 2 on
a usage or configuration error, 128+N when stopped by signal N (SIGINT, SIGTERM). The FIFOs
the agent created are removed in every case. See docs/agent.md.
)";

struct agent_command_line {
    std::string config;
    std::string data_dir = std::string(sm::default_data_dir);
    std::string config_dir = std::string(sm::default_config_dir);
    std::uint64_t epochs = 1;
    std::size_t consumers = 1;
    std::vector<std::string> channels;
    std::vector<std::string> hosts;
    std::string current_host;
    pipemode::shard_mode shard_mode = pipemode::shard_mode::by_object;
    std::optional<std::chrono::seconds> reader_timeout;
    std::size_t memory_budget = 1 * pipemode::gib;
    source_options source;
    bool quiet = false;
    bool help = false;
};

std::vector<std::string> split_list(std::string_view text)
{
    std::vector<std::string> out;
    while (!text.empty()) {
        const auto comma = text.find(',');
        const auto item = text.substr(0, comma);
        if (item.empty())
            throw usage_error("--hosts has an empty host name");
        out.emplace_back(item);
        if (comma == std::string_view::npos)
            break;
        text.remove_prefix(comma + 1);
        if (text.empty())
            throw usage_error("--hosts ends with a comma");
    }
    return out;
}

agent_command_line parse_command_line(int argc, char** argv)
{
    agent_command_line o;
    std::vector<source_arg> manifests;
    for (option_cursor c(argc, argv); c.next();) {
        const auto name = c.name();
        if (c.positional())
            throw usage_error("unexpected argument '" + std::string(c.arg()) + "'; the job is given with --config");
        if (name == "-h" || name == "--help")
            o.help = true;
        else if (name == "--config")
            o.config = c.value();
        else if (name == "--data-dir")
            o.data_dir = c.value();
        else if (name == "--config-dir")
            o.config_dir = c.value();
        else if (name == "--epochs")
            o.epochs = parse_count(name, c.value());
        else if (name == "--consumers") {
            o.consumers = parse_count(name, c.value());
            if (o.consumers == 0)
                throw usage_error("--consumers must be at least 1");
        }
        else if (name == "--channel")
            o.channels.emplace_back(c.value());
        else if (name == "--hosts")
            o.hosts = split_list(c.value());
        else if (name == "--current-host")
            o.current_host = c.value();
        else if (name == "--shard-mode") {
            const auto v = c.value();
            if (v == "object")
                o.shard_mode = pipemode::shard_mode::by_object;
            else if (v == "bytes")
                o.shard_mode = pipemode::shard_mode::by_bytes;
            else if (v == "byte-range")
                throw usage_error("--shard-mode byte-range needs the records' boundaries, and the agent writes whole "
                                  "objects without decoding them; use object or bytes, or read the channel directly "
                                  "with pipemode::sagemaker::open_channel");
            else
                throw usage_error("--shard-mode is object or bytes, not '" + std::string(v) + "'");
        }
        else if (name == "--reader-timeout") {
            const auto s = parse_count(name, c.value());
            if (s == 0)
                throw usage_error("--reader-timeout must be at least 1 second");
            o.reader_timeout = std::chrono::seconds(s);
        }
        else if (name == "--memory-budget") {
            o.memory_budget = parse_bytes(name, c.value());
            if (o.memory_budget == 0)
                throw usage_error("--memory-budget must be at least 1 byte");
        }
        else if (name == "--quiet")
            o.quiet = true;
        else if (name == "--manifest")
            c.unknown();  // a ManifestFile channel says so in the job
        else if (parse_source_option(c, o.source, manifests)) {
        }
        else
            c.unknown();
    }
    if (o.help)
        return o;
    if (o.config.empty())
        throw usage_error("--config is required: the job description or its InputDataConfig");
    (void)cache_options_of(o.source);  // refuses a cache the options do not describe whole
    if (o.hosts.empty() != o.current_host.empty())
        throw usage_error(o.hosts.empty() ? "--current-host needs --hosts" : "--hosts needs --current-host");
    return o;
}

// ---------------------------------------------------------------------------------------------
// Output: log lines, or on a terminal a status line redrawn in place with the log above it.

class display {
public:
    display(bool quiet) : quiet_(quiet), terminal_(!quiet && ::isatty(STDERR_FILENO) == 1) {}

    /// A line of log (any thread).
    void line(const std::string& text)
    {
        if (quiet_)
            return;
        const std::lock_guard lock(mutex_);
        std::string out = terminal_ && status_shown_ ? "\r\033[K" : "";
        out += "pipemode-agent: " + text + "\n";
        std::fputs(out.c_str(), stderr);
        status_shown_ = false;
    }

    /// Redraws the status line (terminal only).
    void status(const std::vector<sm::channel_progress>& progress)
    {
        if (!terminal_)
            return;
        std::string s;
        const auto now = std::chrono::steady_clock::now();
        for (const auto& p : progress) {
            if (!s.empty())
                s += " | ";
            s += p.channel + " epoch " + std::to_string(p.epoch) + ": ";
            if (p.done)
                s += "done, " + megabytes(p.total_bytes) + " in all";
            else if (p.waiting)
                s += "waiting for a reader";
            else {
                const double secs = std::chrono::duration<double>(now - p.epoch_start).count();
                s += megabytes(p.epoch_bytes) + format(", %.1f MB/s", secs > 0 ? double(p.epoch_bytes) / 1e6 / secs : 0.0);
            }
        }
        const std::lock_guard lock(mutex_);
        std::fputs(("\r\033[K" + s).c_str(), stderr);
        std::fflush(stderr);
        status_shown_ = true;
    }

    /// Ends the status line.
    void end()
    {
        const std::lock_guard lock(mutex_);
        if (terminal_ && status_shown_)
            std::fputs("\n", stderr);
        status_shown_ = false;
    }

    static std::string megabytes(std::uint64_t bytes)
    {
        return bytes < 1000000 ? format("%.1f kB", double(bytes) / 1e3) : format("%.1f MB", double(bytes) / 1e6);
    }

private:
    bool quiet_;
    bool terminal_;
    std::mutex mutex_;
    bool status_shown_ = false;
};

std::string describe(const sm::agent_event& e, std::size_t consumers)
{
    const std::string fifo = (consumers > 1 ? "consumer-" + std::to_string(e.consumer) + "/" : std::string())
        + e.channel + "_" + std::to_string(e.epoch);
    const double secs = std::chrono::duration<double>(e.elapsed).count();
    const auto rate = [&] { return format("%.1f MB/s", secs > 0 ? double(e.bytes) / 1e6 / secs : 0.0); };
    switch (e.kind) {
    case sm::agent_event_kind::listed:
        return e.channel + ": " + std::to_string(e.objects) + " objects";
    case sm::agent_event_kind::waiting:
        return fifo + ": waiting for a reader (" + std::to_string(e.objects) + " objects for this "
            + (consumers > 1 ? "consumer)" : "host)");
    case sm::agent_event_kind::streaming:
        return fifo + ": streaming";
    case sm::agent_event_kind::epoch_done:
        return fifo + ": done, " + display::megabytes(e.bytes) + format(" in %.2f s, ", secs) + rate();
    case sm::agent_event_kind::reader_closed:
        return fifo + ": the reader closed it after " + display::megabytes(e.bytes) + format(" (%.2f s); ", secs)
            + "next epoch";
    case sm::agent_event_kind::finished:
        return e.channel + ": all epochs delivered";
    }
    return fifo;
}

int run(const agent_command_line& cl)
{
    std::vector<sm::channel_config> job;
    try {
        job = sm::read_input_data_config_file(cl.config);
    } catch (const std::runtime_error& e) {
        throw std::invalid_argument(e.what());  // no such file: a configuration error
    }

    sm::agent_options o;
    o.data_dir = cl.data_dir;
    o.config_dir = cl.config_dir;
    o.epochs = cl.epochs;
    o.consumers = cl.consumers;
    if (!cl.hosts.empty())
        // The rank is the current host's place among the sorted hosts, as SageMaker counts it.
        o.cluster = sm::parse_resource_config(sm::write_resource_config(cl.hosts, cl.current_host));
    o.sharded_mode = cl.shard_mode;
    o.s3 = s3_options_of(cl.source);
    o.read_size = cl.source.read_size;
    o.memory_budget = cl.memory_budget;
    o.fifo.reader_timeout = cl.reader_timeout;
    o.cache = cache_options_of(cl.source);

    display out(cl.quiet);
    o.on_event = [&out, n = cl.consumers](const sm::agent_event& e) { out.line(describe(e, n)); };

    // SIGINT and SIGTERM are taken by this thread with sigtimedwait: blocked here before any
    // thread starts, so every thread inherits the mask and none is interrupted.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    sm::agent a(std::move(job), o, cl.channels);
    a.write_config_files();
    {
        std::string names;
        for (const auto& c : a.channels())
            names += (names.empty() ? "" : ", ") + c.name;
        out.line("streaming " + names + " into " + cl.data_dir
                 + (cl.consumers > 1 ? " for " + std::to_string(cl.consumers) + " consumers" : std::string()) + (cl.epochs == 0 ? " until stopped" : ", " + std::to_string(cl.epochs) + " epoch(s)")
                 + (o.cluster.hosts.empty() ? std::string() : ", as " + o.cluster.current_host + " (rank " + std::to_string(o.cluster.rank) + " of " + std::to_string(o.cluster.world_size) + ")"));
    }

    std::atomic<bool> done{false};
    std::exception_ptr error;
    std::thread worker([&] {
        try {
            a.run();
        } catch (...) {
            error = std::current_exception();
        }
        done = true;
    });
    int signal_number = 0;
    while (!done) {
        const timespec tick{0, 250'000'000};
        const int s = sigtimedwait(&stop_signals, nullptr, &tick);
        if (s > 0 && signal_number == 0) {
            signal_number = s;
            out.line(std::string(s == SIGINT ? "SIGINT" : "SIGTERM") + ": stopping, removing the FIFOs");
            a.stop();
        }
        out.status(a.progress());
    }
    worker.join();
    out.end();
    if (error)
        std::rethrow_exception(error);
    if (signal_number != 0)
        return 128 + signal_number;
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    agent_command_line cl;
    try {
        cl = parse_command_line(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-agent: %s\nTry 'pipemode-agent --help'.\n", e.what());
        return 2;
    }
    if (cl.help) {
        // The URL and S3 options, less --manifest: a ManifestFile channel says so in the job.
        std::string s3_help(source_options_help);
        if (const auto at = s3_help.find("  --manifest"); at != std::string::npos)
            s3_help.erase(at, s3_help.find('\n', at) + 1 - at);
        for (const std::string_view part : {usage_head, std::string_view(s3_help), usage_tail})
            std::fwrite(part.data(), 1, part.size(), stdout);
        return 0;
    }
    // Messages from the agent name the program already.
    const auto report = [](const std::exception& e) {
        const std::string_view what = e.what();
        std::fprintf(stderr, "%s%s\n", what.starts_with("pipemode-agent:") ? "" : "pipemode-agent: ", e.what());
    };
    try {
        return run(cl);
    } catch (const std::invalid_argument& e) {
        report(e);  // the job description or a channel cannot work: a sentence on what to change
        return 2;
    } catch (const std::exception& e) {
        report(e);  // a channel failed: it names the channel, the epoch and the object
        return 1;
    }
}
