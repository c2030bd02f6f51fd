// Pipe versus File: the comparison of SageMaker's Pipe-mode launch, on this machine. A data set
// of protobuf RecordIO objects on a loopback server is trained on by pipemode-pca (one pass)
// and pipemode-kmeans (several epochs) in two ways:
//
//   File mode     a downloader copies every object to a local directory, then the trainer
//                 reads the local files. Downloaders: pipemode's own (this program's
//                 `--download` child: remote::http_objects, every chunk written to its file),
//                 `aws s3 cp --recursive` and `rclone copy` (8 transfers; rclone32: 32).
//   Stream mode   the trainer reads the objects' URLs directly (pipemode's ranged-GET stream),
//                 every epoch from the server again; nothing is written to disk.
//   Stream mode with a cache (--cache full,half,SIZE): the same, with the trainer's
//                 --cache-dir (a fresh, empty directory for every job) and --cache-size, so
//                 epochs 2 and later read what fits from local disk (docs/cache.md). The
//                 trainer is given the server's directory (PREFIX/, listed with sizes) rather
//                 than the object URLs, as the cache keeps only objects of a known size.
//
// For each job (one download and/or one training run, fresh processes, caches dropped before
// it with --drop-caches) it measures:
//   start-up      from the job's start to the first batch reaching the algorithm. The trainers
//                 do not report that moment, so a probe (this program's `--read` child: a fresh
//                 process, a pipemode::reader with the trainer's batch size, over the same
//                 sources, in the same cache state) measures the reader's construction to its
//                 first batch; File mode adds the whole download before it.
//   I/O MB/s      data bytes over the time spent moving them from the server to where the
//                 algorithm reads them: the download (File), or a full pass of the probe that
//                 decodes and touches every value with no training (Stream).
//   total         download + training wall time (File), training wall time (Stream).
//   disk          the peak of the bytes allocated under the download directory, sampled every
//                 20 ms while the downloader runs (0 in Stream mode: nothing is written), or
//                 under the cache directory while a Stream-mode trainer with a cache runs.
//   cache du      with a cache: `du -s -B1` of the cache directory after the job, beside its
//                 budget.
//   RSS           the largest peak resident set of the job's processes (wait4's ru_maxrss).
// Each configuration runs --repeats times, round-robin (a load change on this shared machine
// hits every configuration alike), and the medians are printed and written as CSV.
//
// Usage: bench_pipe_vs_file --url PREFIX --dir DIR --work DIR --pca PROGRAM --kmeans PROGRAM
//            [--s3-endpoint URL --bucket NAME] [--downloaders pipemode,aws,rclone,rclone32]
//            [--algorithms pca,kmeans] [--repeats N] [--epochs N] [--k N]
//            [--num-components N] [--feature-dim N] [--cache LIST] [--stream-connections N]
//            [--drop-caches] [--csv FILE]
//   --cache LIST adds a Stream-mode row for each budget of the list: "full" (the data set's
//   bytes plus 8 KiB an object, for each entry's key, trailer and last partial block), "half"
//   (half the data set's bytes: fill then freeze keeps about half of every later epoch), or a
//   size in bytes or with a suffix K, M, G.
//   --stream-connections N gives the Stream-mode trainers `--connections N` (the stream's
//   connections, which the defaults size at 32-63), so that a per-connection rate makes the
//   link the bottleneck as 8 connections did before; the probe keeps the defaults.
//   PREFIX/NAME is the URL of DIR/NAME (the directory the server serves, listed for names and
//   sizes); s3://NAME/ at --s3-endpoint lists the same objects for the aws CLI. The
//   environment must already hold what aws needs (scripts/bench_pipe_vs_file.sh sets it).
// Internal children: --download DEST URL...   and   --read BATCH_SIZE first|all SOURCE...
#include <pipemode/cache/caching_store.hpp>
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "touch_values.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace pipemode;
using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "bench_pipe_vs_file: %s\n", what.c_str());
    std::exit(1);
}

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

std::string basename_of(const std::string& url) { return url.substr(url.rfind('/') + 1); }

// ---------------------------------------------------------------------------------------
// Children run by the driver.

/// Writes every chunk of every source of `provider` to DEST/<basename of the object's URL>,
/// objects in the order of `urls` (the stream delivers them in order).
asio::awaitable<void> download_all(source_provider* provider, source_context ctx, std::vector<std::string> urls,
                                   std::string dest, std::uint64_t* total)
{
    for (const auto& url : urls) {
        auto source = co_await provider->async_next_source(ctx);
        if (!source)
            throw std::runtime_error("the stream ended before " + url);
        const auto path = dest + "/" + basename_of(url);
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
        for (;;) {
            auto [ec, chunk] = co_await source->async_next();
            if (ec == asio::error::eof)
                break;
            if (ec) {
                ::close(fd);
                throw std::runtime_error(std::string(source->name()) + ": " + ec.message() + " "
                                         + source->error_detail());
            }
            // A blocking write on the network thread: what a downloader into the page cache
            // costs is part of what File mode pays, so it is not hidden on another thread.
            const auto* p = reinterpret_cast<const char*>(chunk.data());
            for (std::size_t left = chunk.size(); left > 0;) {
                const auto n = ::write(fd, p, left);
                if (n < 0) {
                    ::close(fd);
                    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
                }
                p += n;
                left -= std::size_t(n);
            }
            *total += chunk.size();
        }
        if (::close(fd) != 0)
            throw std::runtime_error("cannot close " + path + ": " + std::strerror(errno));
    }
}

/// `--download DEST URL...`: pipemode as File mode's downloader. Prints the bytes written.
int download_child(const std::string& dest, std::vector<std::string> urls)
{
    std::uint64_t total = 0;
    {
        asio::io_context io(1);
        auto stream = remote::http_objects(urls);
        stream->reserve_buffers(reader_options{});
        const source_context ctx{io.get_executor(), io.get_executor()};
        std::exception_ptr failure;
        asio::co_spawn(io, download_all(stream.get(), ctx, urls, dest, &total),
                       [&](std::exception_ptr e) { failure = e; });
        io.run();
        if (failure)
            std::rethrow_exception(failure);
        stream.reset();  // before the io_context its waker lives on
    }
    std::printf("%llu\n", static_cast<unsigned long long>(total));
    return 0;
}

/// `--read BATCH first|all SOURCE...`: a fresh process constructs a reader over the sources
/// (URLs or local paths) with the trainer's batch size and prints the milliseconds to its first
/// batch; with `all` it reads on, summing every value, and also prints the seconds of the
/// whole pass and the bytes read. Exits without tearing the reader down after `first`: a
/// reader dropped mid-object is not what is measured.
[[noreturn]] void read_child(std::size_t batch_size, bool all, std::vector<std::string> sources)
{
    const bool urls = sources.front().find("://") != std::string::npos;
    const reader_options options{.batch_size = batch_size};
    const auto start = clock_type::now();
    auto* rd = urls ? new reader(remote::http_objects(sources), options) : new reader(sources, options);
    auto b = rd->next();
    const double first_ms = seconds_since(start) * 1e3;
    if (!b || b->size() == 0)
        die("no first batch from " + sources.front());
    if (!all) {
        std::printf("%.6f 0 0\n", first_ms);
        std::fflush(stdout);
        std::_Exit(0);
    }
    double sum = bench::sum_values(*b);
    while (auto next = rd->next())
        sum += bench::sum_values(*next);
    const double seconds = seconds_since(start);
    const auto bytes = rd->stats().bytes;
    delete rd;
    // The sum keeps the loop from being optimised away; it goes to stderr, not the result.
    std::fprintf(stderr, "checksum %.17g\n", sum);
    std::printf("%.6f %.6f %llu\n", first_ms, seconds, static_cast<unsigned long long>(bytes));
    std::fflush(stdout);
    std::_Exit(0);
}

// ---------------------------------------------------------------------------------------
// Running children and watching the disk.

struct child_result {
    double seconds = 0;
    long max_rss_kib = 0;
    std::string out;  // stdout
};

/// Runs `argv` to its end with stdout captured and stderr kept in `log`; dies, showing the
/// log's tail, when it fails.
child_result run_child(const std::vector<std::string>& argv, const std::string& log)
{
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int fds[2] = {-1, -1};
    if (::pipe2(fds, O_CLOEXEC) != 0)
        die("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    child_result r;
    const auto start = clock_type::now();
    pid_t pid = 0;
    const int err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (err != 0)
        die("cannot run " + argv[0] + ": " + std::strerror(err));
    char buf[4096];
    for (;;) {
        const auto n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0)
            break;
        r.out.append(buf, std::size_t(n));
    }
    ::close(fds[0]);
    int status = 0;
    rusage u{};
    if (::wait4(pid, &status, 0, &u) != pid)
        die("wait4 failed for " + argv[0]);
    r.seconds = seconds_since(start);
    r.max_rss_kib = u.ru_maxrss;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::ifstream in(log);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (text.size() > 2000)
            text = "..." + text.substr(text.size() - 2000);
        std::string cmd;
        for (std::size_t i = 0; i < argv.size() && i < 6; ++i)
            cmd += argv[i] + " ";
        die(cmd + (argv.size() > 6 ? "... " : "") + "failed ("
            + (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                 : "signal " + std::to_string(WTERMSIG(status)))
            + "):\n" + text);
    }
    return r;
}

/// Bytes allocated on disk under `dir` (st_blocks, so sparse or preallocated files count as
/// what they hold), 0 when it does not exist. Files may vanish while it walks (renames of
/// temporaries): those are skipped.
std::uint64_t disk_bytes(const std::string& dir)
{
    std::uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        struct stat st{};
        if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode))
            total += std::uint64_t(st.st_blocks) * 512;
    }
    return total;
}

/// Samples disk_bytes(dir) every 20 ms on its own thread until destroyed; keeps the peak.
class disk_watch {
public:
    explicit disk_watch(std::string dir)
        : dir_(std::move(dir)), thread_([this] {
              while (!stop_.load(std::memory_order_relaxed)) {
                  peak_ = std::max(peak_.load(), disk_bytes(dir_));
                  std::this_thread::sleep_for(std::chrono::milliseconds(20));
              }
          })
    {
    }
    ~disk_watch() { finish(); }
    std::uint64_t finish()
    {
        if (thread_.joinable()) {
            stop_ = true;
            thread_.join();
            peak_ = std::max(peak_.load(), disk_bytes(dir_));
        }
        return peak_;
    }

private:
    std::string dir_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> peak_{0};
    std::thread thread_;
};

bool drop_caches_warned = false;

/// Writes dirty pages back and drops the page cache (root only), so every job starts with the
/// server's files and any earlier download on disk, not in memory.
void drop_caches()
{
    ::sync();
    std::ofstream f("/proc/sys/vm/drop_caches");
    f << "3\n";
    f.flush();
    if (!f && !drop_caches_warned) {
        std::fprintf(stderr, "bench_pipe_vs_file: cannot write /proc/sys/vm/drop_caches (not root?): caches stay warm\n");
        drop_caches_warned = true;
    }
}

// ---------------------------------------------------------------------------------------
// The jobs.

struct config {
    std::string url, dir, work, pca, kmeans, s3_endpoint, bucket, csv;
    std::vector<std::string> downloaders{"pipemode", "aws", "rclone"};
    std::vector<std::string> algorithms{"pca", "kmeans"};
    std::vector<std::string> caches;  // --cache: full, half or sizes; one Stream row each
    std::size_t stream_connections = 0;  // --stream-connections: 0 leaves the trainer's default
    std::size_t repeats = 3, epochs = 3, k = 10, num_components = 10, feature_dim = 50;
    bool drop = false;
};

struct data_set {
    std::vector<std::string> names, urls;
    std::uint64_t bytes = 0;
};

/// One measured job.
struct job {
    double startup = 0;       // seconds from the job's start to the first batch
    double io_mbps = 0;       // data MB per second of moving it to the algorithm
    double total = 0;         // seconds
    double download = 0;      // seconds (File mode)
    double train = 0;         // seconds
    std::uint64_t disk = 0;   // peak bytes under the download (or cache) directory
    std::uint64_t cache_du = 0;  // `du` of the cache directory after the job (Stream with a cache)
    long rss_kib = 0;         // largest peak RSS of the job's processes
    std::uint64_t records = 0;
};

std::vector<std::string> split(const std::string& s, char sep)
{
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string part; std::getline(in, part, sep);)
        if (!part.empty())
            out.push_back(part);
    return out;
}

/// The trainer's batch size, given to the probe so its first batch is the trainer's.
std::size_t batch_size_of(const std::string& algorithm) { return algorithm == "pca" ? 1000 : 5000; }

/// The cache budget that `spec` (full, half or a size) gives for data set `d`. "full" adds
/// 8 KiB an object to the data's bytes: every entry holds its key and a 24-byte trailer after
/// the item (about 200 bytes here) and the cache counts its files in whole 4 KiB blocks.
std::uint64_t cache_budget_of(const std::string& spec, const data_set& d)
{
    if (spec == "full")
        return d.bytes + 8 * kib * d.names.size();
    if (spec == "half")
        return d.bytes / 2;
    return cache::parse_size(spec);
}

/// `du -s -B1 dir`: the bytes the directory takes on disk, as du counts them.
std::uint64_t du_bytes(const config& c, const std::string& dir)
{
    return std::stoull(run_child({"du", "-s", "-B1", dir}, c.work + "/du.log").out);
}

/// The trainer's command line over `sources`.
std::vector<std::string> trainer_argv(const config& c, const std::string& algorithm, const std::vector<std::string>& sources,
                                      const std::string& model_dir)
{
    std::vector<std::string> argv;
    if (algorithm == "pca")
        argv = {c.pca, "--num-components", std::to_string(c.num_components), "--feature-dim",
                std::to_string(c.feature_dim), "--mini-batch-size", std::to_string(batch_size_of(algorithm))};
    else
        // wcss=last_epoch: exactly `epochs` passes over the data, as in the seed experiment
        // (the default final pass would add one more).
        argv = {c.kmeans, "--k", std::to_string(c.k), "--feature-dim", std::to_string(c.feature_dim), "--epochs",
                std::to_string(c.epochs), "--mini-batch-size", std::to_string(batch_size_of(algorithm)),
                "--init-method", "kmeans++", "--wcss", "last_epoch"};
    argv.insert(argv.end(), {"--quiet", "--model-dir", model_dir});
    argv.insert(argv.end(), sources.begin(), sources.end());
    return argv;
}

/// The `records` figure of a trainer's summary on stdout.
std::uint64_t records_of(const std::string& out)
{
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        const auto p = line.find("records");
        if (p == std::string::npos)
            continue;
        for (std::size_t i = p + 7; i < line.size(); ++i)
            if (std::isdigit(static_cast<unsigned char>(line[i])))
                return std::stoull(line.substr(i));
    }
    die("no 'records' in the trainer's output:\n" + out);
}

std::vector<std::string> probe_argv(const std::string& self, std::size_t batch, bool all,
                                    const std::vector<std::string>& sources)
{
    std::vector<std::string> argv = {self, "--read", std::to_string(batch), all ? "all" : "first"};
    argv.insert(argv.end(), sources.begin(), sources.end());
    return argv;
}

/// The command line that downloads every object into `dest` with `tool`.
std::vector<std::string> downloader_argv(const config& c, const data_set& d, const std::string& tool,
                                         const std::string& dest, const std::string& self, const std::string& list)
{
    if (tool == "pipemode") {
        std::vector<std::string> argv = {self, "--download", dest};
        argv.insert(argv.end(), d.urls.begin(), d.urls.end());
        return argv;
    }
    if (tool == "aws")
        return {"aws", "s3", "cp", "--recursive", "--only-show-errors", "--endpoint-url", c.s3_endpoint,
                "s3://" + c.bucket + "/", dest};
    if (tool == "rclone" || tool == "rclone32") {
        // rclone's HTTP backend; the server has no directory index, so the objects are named
        // in a --files-from list (no listing), and the trailing '/' says the path is a
        // directory (rclone would otherwise HEAD it, and the bucket's path answers with the
        // listing the aws CLI reads). "rclone": 8 transfers, pipemode's 8 connections;
        // "rclone32": 32, File mode at its parallel best on a link with a per-connection
        // rate and a first-byte latency, where 8 transfers leave most of it idle.
        const auto slash = c.url.find('/', c.url.find("//") + 2);
        return {"rclone", "copy", "-q", "--transfers", tool == "rclone" ? "8" : "32", "--http-url", c.url.substr(0, slash),
                "--files-from", list, "--no-traverse",
                ":http:" + (slash == std::string::npos ? "" : c.url.substr(slash + 1) + "/"), dest};
    }
    die("unknown downloader '" + tool + "' (pipemode, aws, rclone or rclone32)");
}

job file_job(const config& c, const data_set& d, const std::string& tool, const std::string& algorithm,
             const std::string& self, const std::string& list)
{
    const auto dest = c.work + "/download";
    const auto model = c.work + "/model";
    fs::remove_all(dest);
    fs::create_directories(dest);
    fs::create_directories(model);
    if (c.drop)
        drop_caches();
    job j;
    child_result dl;
    {
        disk_watch watch(dest);
        dl = run_child(downloader_argv(c, d, tool, dest, self, list), c.work + "/download.log");
        j.disk = watch.finish();
    }
    j.download = dl.seconds;
    // Every object arrived whole.
    std::vector<std::string> local;
    for (const auto& n : d.names) {
        const auto p = dest + "/" + n;
        std::error_code ec;
        const auto size = fs::file_size(p, ec);
        if (ec || size != fs::file_size(c.dir + "/" + n)) {
            std::ifstream in(c.work + "/download.log");
            die(tool + " did not download " + n + " whole; its stderr:\n"
                + std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
        }
        local.push_back(p);
    }
    // The probe sees the cache as the trainer will (the download's pages are still there).
    const auto probe = run_child(probe_argv(self, batch_size_of(algorithm), false, local), c.work + "/probe.log");
    const auto train_start = clock_type::now();
    const auto tr = run_child(trainer_argv(c, algorithm, local, model), c.work + "/train.log");
    j.train = tr.seconds;
    j.total = j.download + seconds_since(train_start);
    j.startup = j.download + std::stod(probe.out) / 1e3;
    j.io_mbps = double(d.bytes) / j.download / 1e6;
    j.rss_kib = std::max(dl.max_rss_kib, tr.max_rss_kib);
    j.records = records_of(tr.out);
    fs::remove_all(dest);
    return j;
}

/// A Stream-mode job; with `cache` (full, half or a size), the trainer reads through a cache in
/// a fresh directory with that budget.
job stream_job(const config& c, const data_set& d, const std::string& algorithm, const std::string& self,
               const std::string& cache = "")
{
    const auto model = c.work + "/model";
    fs::create_directories(model);
    job j;
    if (c.drop)
        drop_caches();
    const auto probe = run_child(probe_argv(self, batch_size_of(algorithm), true, d.urls), c.work + "/probe.log");
    double first_ms = 0, pass_s = 0;
    unsigned long long bytes = 0;
    if (std::sscanf(probe.out.c_str(), "%lf %lf %llu", &first_ms, &pass_s, &bytes) != 3 || bytes != d.bytes)
        die("the stream probe read " + probe.out + " (expected " + std::to_string(d.bytes) + " bytes)");
    j.startup = first_ms / 1e3;
    j.io_mbps = double(d.bytes) / pass_s / 1e6;
    if (c.drop)
        drop_caches();
    // Nothing may be written while streaming without a cache: the download directory stays
    // empty and the peak is measured the same way as in File mode. With a cache, the cache's
    // directory is watched, starting empty every job (a job's first epoch always downloads).
    const auto dest = c.work + (cache.empty() ? "/download" : "/cache");
    fs::remove_all(dest);
    fs::create_directories(dest);
    auto argv = trainer_argv(c, algorithm, {}, model);
    if (c.stream_connections != 0)
        argv.insert(argv.end(), {"--connections", std::to_string(c.stream_connections)});
    if (cache.empty()) {
        argv.insert(argv.end(), d.urls.begin(), d.urls.end());
    } else {
        // The cache keeps only objects whose size the listing gives (an object's key holds its
        // size, so that a changed object is never served): a list of object URLs has no
        // listing, so the trainer lists the server's directory (nginx's autoindex) instead,
        // the same objects in the same order.
        argv.insert(argv.end(), {"--cache-dir", dest, "--cache-size", std::to_string(cache_budget_of(cache, d)), c.url + "/"});
    }
    child_result tr;
    {
        disk_watch watch(dest);
        tr = run_child(argv, c.work + "/train.log");
        j.disk = watch.finish();
    }
    if (!cache.empty()) {
        j.cache_du = du_bytes(c, dest);
        fs::remove_all(dest);
    }
    j.train = j.total = tr.seconds;
    j.rss_kib = tr.max_rss_kib;
    j.records = records_of(tr.out);
    return j;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct row {
    std::string mode, tool, algorithm;
    std::vector<job> runs;
    job med() const
    {
        auto pick = [&](auto member) {
            std::vector<double> v;
            for (const auto& r : runs)
                v.push_back(double(r.*member));
            return median(v);
        };
        job m;
        m.startup = pick(&job::startup);
        m.io_mbps = pick(&job::io_mbps);
        m.total = pick(&job::total);
        m.download = pick(&job::download);
        m.train = pick(&job::train);
        m.disk = std::uint64_t(pick(&job::disk));
        m.cache_du = std::uint64_t(pick(&job::cache_du));
        m.rss_kib = long(pick(&job::rss_kib));
        m.records = runs.front().records;
        return m;
    }
};

int run_benchmark(int argc, char** argv)
{
    if (argc >= 4 && std::string(argv[1]) == "--download")
        return download_child(argv[2], std::vector<std::string>(argv + 3, argv + argc));
    if (argc >= 5 && std::string(argv[1]) == "--read")
        read_child(std::stoul(argv[2]), std::string(argv[3]) == "all", std::vector<std::string>(argv + 4, argv + argc));

    config c;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                die(a + " needs a value");
            return argv[++i];
        };
        auto count = [&]() -> std::size_t {
            const auto v = value();
            if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || std::stoul(v) == 0)
                die(a + " needs a positive number, not '" + v + "'");
            return std::stoul(v);
        };
        if (a == "--url")
            c.url = value();
        else if (a == "--dir")
            c.dir = value();
        else if (a == "--work")
            c.work = value();
        else if (a == "--pca")
            c.pca = value();
        else if (a == "--kmeans")
            c.kmeans = value();
        else if (a == "--s3-endpoint")
            c.s3_endpoint = value();
        else if (a == "--bucket")
            c.bucket = value();
        else if (a == "--csv")
            c.csv = value();
        else if (a == "--downloaders")
            c.downloaders = split(value(), ',');
        else if (a == "--algorithms")
            c.algorithms = split(value(), ',');
        else if (a == "--repeats")
            c.repeats = count();
        else if (a == "--epochs")
            c.epochs = count();
        else if (a == "--k")
            c.k = count();
        else if (a == "--num-components")
            c.num_components = count();
        else if (a == "--feature-dim")
            c.feature_dim = count();
        else if (a == "--cache")
            c.caches = split(value(), ',');
        else if (a == "--stream-connections")
            c.stream_connections = count();
        else if (a == "--drop-caches")
            c.drop = true;
        else
            die("usage: bench_pipe_vs_file --url PREFIX --dir DIR --work DIR --pca PROGRAM --kmeans PROGRAM "
                "[--s3-endpoint URL --bucket NAME] [--downloaders pipemode,aws,rclone,rclone32] [--algorithms pca,kmeans] "
                "[--repeats N] [--epochs N] [--k N] [--num-components N] [--feature-dim N] [--cache full,half,SIZE] "
                "[--stream-connections N] [--drop-caches] "
                "[--csv FILE]");
    }
    if (c.url.empty() || c.dir.empty() || c.work.empty() || c.pca.empty() || c.kmeans.empty())
        die("--url, --dir, --work, --pca and --kmeans are required (scripts/bench_pipe_vs_file.sh passes them)");
    for (const auto& t : c.downloaders)
        if (t == "aws" && (c.s3_endpoint.empty() || c.bucket.empty()))
            die("the aws downloader needs --s3-endpoint and --bucket");
    while (!c.url.empty() && c.url.back() == '/')
        c.url.pop_back();

    data_set d;
    for (const auto& e : fs::directory_iterator(c.dir))
        if (e.is_regular_file())
            d.names.push_back(e.path().filename().string());
    std::sort(d.names.begin(), d.names.end());
    if (d.names.empty())
        die("no files in " + c.dir);
    for (const auto& n : d.names) {
        d.urls.push_back(c.url + "/" + n);
        d.bytes += fs::file_size(c.dir + "/" + n);
    }
    for (const auto& spec : c.caches)
        (void)cache_budget_of(spec, d);  // a budget that is not a size fails here, not after the File-mode jobs
    fs::create_directories(c.work);
    const auto list = c.work + "/files.txt";
    {
        std::ofstream out(list);
        for (const auto& n : d.names)
            out << n << '\n';
    }
    const auto self = fs::read_symlink("/proc/self/exe").string();

    std::vector<row> rows;
    for (const auto& a : c.algorithms) {
        for (const auto& t : c.downloaders)
            rows.push_back({"file", t, a, {}});
        rows.push_back({"stream", "pipemode", a, {}});
        for (const auto& budget : c.caches)
            rows.push_back({"stream", "cache-" + budget, a, {}});
    }
    // The machine is shared: its load, before and after, says how much the figures are worth.
    auto load = [] {
        std::ifstream in("/proc/loadavg");
        std::string one, five;
        in >> one >> five;
        return one + " (1 min), " + five + " (5 min)";
    };
    std::printf("Load average before: %s\n", load().c_str());
    std::printf("Pipe vs File: %zu objects, %.1f MiB, %zu repetitions%s%s\n", d.names.size(), double(d.bytes) / double(mib),
                c.repeats, c.drop ? ", page cache dropped before each job" : ", page cache NOT dropped",
                c.stream_connections ? (", Stream-mode trainers with " + std::to_string(c.stream_connections) + " connections").c_str()
                                     : "");
    for (std::size_t r = 0; r < c.repeats; ++r)
        for (auto& w : rows) {
            auto j = w.mode == "file"         ? file_job(c, d, w.tool, w.algorithm, self, list)
                   : w.tool == "pipemode"     ? stream_job(c, d, w.algorithm, self)
                                              : stream_job(c, d, w.algorithm, self, w.tool.substr(6));
            std::printf("  run %zu/%zu %-6s %-10s %-6s start-up %7.3f s  I/O %7.1f MB/s  total %7.2f s  disk %6.1f MiB  "
                        "RSS %6.1f MiB%s\n",
                        r + 1, c.repeats, w.mode.c_str(), w.tool.c_str(), w.algorithm.c_str(), j.startup, j.io_mbps,
                        j.total, double(j.disk) / double(mib), double(j.rss_kib) / 1024,
                        w.tool.starts_with("cache-") ? (" cache du " + std::to_string(j.cache_du) + " B").c_str() : "");
            std::fflush(stdout);
            if (!w.runs.empty() && j.records != w.runs.front().records)
                die("records differ between runs");
            w.runs.push_back(j);
        }
    // Every configuration trained on the same records.
    for (const auto& w : rows)
        if (w.runs.front().records != rows.front().runs.front().records)
            die(w.mode + "/" + w.tool + "/" + w.algorithm + " trained on " + std::to_string(w.runs.front().records)
                + " records, " + rows.front().mode + "/" + rows.front().tool + " on "
                + std::to_string(rows.front().runs.front().records));

    std::printf("Load average after: %s\n", load().c_str());
    std::printf("\nMedians of %zu (%llu records, %.1f MiB in %zu objects):\n\n", c.repeats,
                static_cast<unsigned long long>(rows.front().runs.front().records), double(d.bytes) / double(mib),
                d.names.size());
    std::printf("| algorithm | mode | downloader | start-up s | I/O MB/s | download s | train s | total s | disk MiB | "
                "peak RSS MiB | cache budget MiB | cache du MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::FILE* csv = c.csv.empty() ? nullptr : std::fopen(c.csv.c_str(), "w");
    if (!c.csv.empty() && !csv)
        die("cannot write " + c.csv);
    if (csv)
        std::fprintf(csv, "algorithm,mode,downloader,repeats,bytes,objects,records,startup_s,io_mb_s,download_s,train_s,"
                          "total_s,disk_bytes,peak_rss_mib,cache_budget_bytes,cache_du_bytes\n");
    std::map<std::string, job> med;
    for (const auto& w : rows) {
        const auto m = w.med();
        med[w.algorithm + "/" + w.mode + "/" + w.tool] = m;
        const bool cached = w.tool.starts_with("cache-");
        const std::uint64_t budget = cached ? cache_budget_of(w.tool.substr(6), d) : 0;
        char cache_cells[64] = "- | -";
        if (cached)
            std::snprintf(cache_cells, sizeof cache_cells, "%.1f | %.1f", double(budget) / double(mib), double(m.cache_du) / double(mib));
        std::printf("| %s | %s | %s | %.3f | %.0f | %.2f | %.2f | %.2f | %.1f | %.0f | %s |\n", w.algorithm.c_str(),
                    w.mode.c_str(), w.mode == "file" ? w.tool.c_str() : cached ? w.tool.c_str() : "-", m.startup, m.io_mbps,
                    m.download, m.train, m.total, double(m.disk) / double(mib), double(m.rss_kib) / 1024, cache_cells);
        if (csv)
            std::fprintf(csv, "%s,%s,%s,%zu,%llu,%zu,%llu,%.6f,%.3f,%.6f,%.6f,%.6f,%llu,%.1f,%llu,%llu\n", w.algorithm.c_str(),
                         w.mode.c_str(), w.mode == "file" || cached ? w.tool.c_str() : "none", w.runs.size(),
                         static_cast<unsigned long long>(d.bytes), d.names.size(),
                         static_cast<unsigned long long>(m.records), m.startup, m.io_mbps, m.download, m.train, m.total,
                         static_cast<unsigned long long>(m.disk), double(m.rss_kib) / 1024,
                         static_cast<unsigned long long>(budget), static_cast<unsigned long long>(m.cache_du));
    }
    if (csv)
        std::fclose(csv);

    // The targets, against every File-mode downloader; with a cache, the disk target is the
    // budget (du of the cache directory at most the budget) instead of 0 bytes.
    std::printf("\nStream against File (targets: start-up >= 20x faster; total time PCA <= 0.65, K-Means <= 0.90 of "
                "File; 0 bytes of disk, or with a cache at most its budget):\n\n");
    std::printf("| algorithm | Stream | File downloader | start-up: File / Stream | total: Stream / File | I/O: Stream / File "
                "| target met |\n|---|---|---|---|---|---|---|\n");
    bool all_met = true;
    for (const auto& a : c.algorithms) {
        std::vector<std::string> streams{"pipemode"};
        for (const auto& budget : c.caches)
            streams.push_back("cache-" + budget);
        for (const auto& st : streams) {
            const auto& s = med[a + "/stream/" + st];
            const bool cached = st != "pipemode";
            const bool disk_ok = cached ? s.cache_du <= cache_budget_of(st.substr(6), d) && s.disk <= cache_budget_of(st.substr(6), d)
                                        : s.disk == 0;
            const double limit = a == "pca" ? 0.65 : 0.90;
            for (const auto& t : c.downloaders) {
                const auto& f = med[a + "/file/" + t];
                const double up = f.startup / s.startup, total = s.total / f.total;
                const bool met = up >= 20 && total <= limit && disk_ok;
                all_met = all_met && met;
                std::printf("| %s | %s | %s | %.0fx | %.2f (<= %.2f) | %.2fx | %s |\n", a.c_str(), cached ? st.c_str() : "no cache",
                            t.c_str(), up, total, limit, s.io_mbps / f.io_mbps,
                            met ? "yes"
                                : (std::string("no:") + (up < 20 ? " start-up" : "") + (total > limit ? " total" : "")
                                   + (!disk_ok ? " disk" : ""))
                                      .c_str());
            }
        }
    }
    std::printf("\n%s\n", all_met ? "Every target met." : "Some targets missed (see docs/pipe-vs-file.md for why).");
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    // A failed transfer, download or training run ends the benchmark with its message.
    try {
        return run_benchmark(argc, argv);
    } catch (const std::exception& e) {
        die(e.what());
    }
}
