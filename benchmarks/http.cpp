// Streaming over HTTP from a loopback nginx: pipemode's window of concurrent ranged GETs,
// raw and decoded, against `curl` fetching the same objects one after the other on one
// connection, and against `rclone cat` as a peer tool, all measured in the same run on the
// same server and data.
//
// The data sets are directories of files that an nginx (scripts/bench_http.sh starts one with
// scripts/lib/servers.sh: sendfile, keep-alive) serves under a URL prefix; this program lists
// the directory, in name order, to know the objects and their sizes. Everything is in the
// page cache after the warm-up round, so the table compares CPU paths and the loopback, not
// the disk.
//
// Rows of the main table (repetitions round-robin, so a load change on this shared machine
// hits every row alike; medians):
//   curl                  `curl -s -o /dev/null URL...`: one process, one connection (baseline)
//   rclone cat            `rclone cat --files-from LIST --no-traverse :http:PREFIX > /dev/null`
//   pipemode raw stream   remote::object_stream driven as a source_provider on an io_context,
//                         each chunk counted and nothing else: the transport alone
//   reader, recordio      pipemode::reader with data_format::recordio: framing, no decoding
//   reader, protobuf      pipemode::reader decoding protobuf records into batches of 1000,
//                         the loop summing every float of the dense feature (end to end)
// CPU seconds per GB are user and system time of the process (all its threads; for curl and
// rclone the child's, from wait4). nginx's own time is shown apart ("server", from
// /proc/PID/stat of the --server-pids) because on 2 cores it is part of the budget.
//
// Then: time from constructing a reader to holding its first batch (in fresh processes), on
// the main set and on the big one; peak RSS (VmHWM of a fresh process) decoding the big set
// with memory_budget = 64 MiB; and a sweep of part size x connections of the raw stream.
//
// Usage: bench_http --url PREFIX --dir DIR [--big-url PREFIX --big-dir DIR] [--repeats N]
//                   [--sweep-repeats N] [--no-sweep] [--no-peer] [--server-pids "PID..."]
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "touch_values.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

using namespace pipemode;
using clock_type = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "bench_http: %s\n", what.c_str());
    std::exit(1);
}

double ms_since(clock_type::time_point t) { return std::chrono::duration<double, std::milli>(clock_type::now() - t).count(); }

/// User and system CPU seconds, and voluntary context switches (threads going to sleep: a
/// measure of how often the pipeline's threads wait for each other).
struct cpu_time {
    double user = 0;
    double sys = 0;
    long switches = 0;
};

double seconds_of(const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; }

cpu_time self_cpu()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return {seconds_of(u.ru_utime), seconds_of(u.ru_stime), u.ru_nvcsw};
}

/// One measured pass over a data set.
struct run {
    double seconds = 0;
    double first_ms = 0;  // first byte (raw paths) or first batch (reader paths)
    cpu_time cpu;
    std::uint64_t bytes = 0;
    std::uint64_t rows = 0;
    double checksum = 0;
    double server_cpu = 0;  // seconds of the server's processes during the run, when known
};

/// A data set: the objects' URLs and their total size.
struct data_set {
    std::string prefix;
    std::string dir;
    std::vector<std::string> names;
    std::vector<std::string> urls;
    std::uint64_t bytes = 0;
};

data_set list_data_set(const std::string& prefix, const std::string& dir)
{
    data_set d{prefix, dir, {}, {}, 0};
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (e.is_regular_file())
            d.names.push_back(e.path().filename().string());
    if (ec || d.names.empty())
        die("no files to serve in " + dir);
    std::sort(d.names.begin(), d.names.end());
    for (const auto& n : d.names) {
        d.urls.push_back(prefix + "/" + n);
        d.bytes += std::filesystem::file_size(std::filesystem::path(dir) / n);
    }
    return d;
}

// ---------------------------------------------------------------------------------------
// Child processes: curl, rclone and this program itself (for a fresh ru_maxrss).

struct child_result {
    double seconds = 0;
    cpu_time cpu;
    std::string out;  // stdout, when captured
};

/// Runs `argv` to its end with stdout captured (or sent to /dev/null); dies when it fails.
child_result run_child(const std::vector<std::string>& argv, bool capture)
{
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int fds[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (capture) {
        if (::pipe2(fds, O_CLOEXEC) != 0)
            die("pipe failed");
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    }
    child_result r;
    const auto start = clock_type::now();
    pid_t pid = 0;
    const int err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0)
        die("cannot run " + argv[0] + ": " + std::strerror(err));
    if (capture) {
        ::close(fds[1]);
        char buf[4096];
        for (;;) {
            const auto n = ::read(fds[0], buf, sizeof buf);
            if (n <= 0)
                break;
            r.out.append(buf, std::size_t(n));
        }
        ::close(fds[0]);
    }
    int status = 0;
    rusage u{};
    if (::wait4(pid, &status, 0, &u) != pid)
        die("wait4 failed for " + argv[0]);
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    if (!WIFEXITED(status))
        die(argv[0] + " died of signal " + std::to_string(WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0)
        die(argv[0] + " exited with " + std::to_string(WEXITSTATUS(status)) + " (" + argv.back() + ", ...)");
    r.cpu = {seconds_of(u.ru_utime), seconds_of(u.ru_stime), u.ru_nvcsw};
    return r;
}

/// The baseline: one curl process fetching every object in turn over one kept-alive
/// connection into /dev/null; `-w` reports each body's size, which is checked.
run curl_sequential(const data_set& d)
{
    std::vector<std::string> argv = {"curl", "-s", "--fail", "-w", "%{size_download}\n"};
    for (const auto& u : d.urls) {
        argv.push_back("-o");
        argv.push_back("/dev/null");
        argv.push_back(u);
    }
    const auto c = run_child(argv, true);
    run r;
    r.seconds = c.seconds;
    r.cpu = c.cpu;
    std::size_t pos = 0;
    while (pos < c.out.size()) {
        const auto nl = c.out.find('\n', pos);
        r.bytes += std::stoull(c.out.substr(pos, nl - pos));
        pos = nl == std::string::npos ? c.out.size() : nl + 1;
    }
    return r;
}

/// The peer: rclone's HTTP backend catting the objects in order. The server has no directory
/// index, so the objects are named in a --files-from list and --no-traverse stops rclone
/// from listing. Its output goes to /dev/null, like curl's; rclone fails on any short read.
run rclone_cat(const data_set& d, const std::string& list_file)
{
    const auto slash = d.prefix.find('/', d.prefix.find("//") + 2);
    const std::string host = d.prefix.substr(0, slash);
    const std::string path = slash == std::string::npos ? "" : d.prefix.substr(slash + 1);
    const auto c = run_child({"rclone", "cat", "-q", "--http-url", host, "--files-from", list_file, "--no-traverse",
                              ":http:" + path},
                             false);
    run r;
    r.seconds = c.seconds;
    r.cpu = c.cpu;
    r.bytes = d.bytes;
    return r;
}

// ---------------------------------------------------------------------------------------
// pipemode paths.

/// Drains every source of `provider` on the calling coroutine's io_context, counting bytes.
asio::awaitable<void> drain(source_provider* provider, source_context ctx, run* r, clock_type::time_point start)
{
    constexpr std::uint64_t page = 4096;
    std::uint64_t bytes = 0;
    std::uint64_t mix = 0;
    for (;;) {
        auto source = co_await provider->async_next_source(ctx);
        if (!source)
            break;
        for (;;) {
            auto [ec, chunk] = co_await source->async_next();
            if (ec == asio::error::eof)
                break;
            if (ec)
                throw std::runtime_error(std::string(source->name()) + ": " + ec.message() + " " + source->error_detail());
            if (!chunk.empty()) {
                if (bytes == 0)
                    r->first_ms = ms_since(start);
                // One byte per 4 KiB of the stream (whatever the chunking): proves the bytes
                // were there without reading them all.
                for (std::size_t i = (page - bytes % page) % page; i < chunk.size(); i += page)
                    mix += std::to_integer<unsigned>(chunk[i]);
                bytes += chunk.size();
            }
        }
    }
    r->bytes = bytes;
    r->checksum = double(mix);
}

/// The transport alone: the object stream as a reader would drive it, with its window chosen
/// from a reader's default budget, each chunk counted and dropped.
run raw_stream(const data_set& d, remote::stream_options options)
{
    run r;
    const auto cpu0 = self_cpu();
    const auto start = clock_type::now();
    {
        asio::io_context io(1);
        auto stream = remote::http_objects(d.urls, std::move(options));
        stream->reserve_buffers(reader_options{});
        const source_context ctx{io.get_executor(), io.get_executor()};
        std::exception_ptr failure;
        asio::co_spawn(io, drain(stream.get(), ctx, &r, start), [&](std::exception_ptr e) { failure = e; });
        io.run();
        if (failure)
            std::rethrow_exception(failure);
        stream.reset();  // before the io_context its waker lives on
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    const auto cpu1 = self_cpu();
    r.cpu = {cpu1.user - cpu0.user, cpu1.sys - cpu0.sys, cpu1.switches - cpu0.switches};
    return r;
}

/// A reader over the objects: protobuf records decoded and every value summed, or (recordio)
/// framing only, each batch's rows counted.
run read_objects(const data_set& d, data_format format, std::size_t memory_budget = reader_options{}.memory_budget,
                 std::size_t decode_workers = reader_options{}.decode_workers)
{
    run r;
    const auto cpu0 = self_cpu();
    const auto start = clock_type::now();
    {
        reader rd(remote::http_objects(d.urls),
                  {.format = format, .memory_budget = memory_budget, .decode_workers = decode_workers});
        double sum = 0;
        for (auto& b : rd) {
            if (r.rows == 0)
                r.first_ms = ms_since(start);
            if (format == data_format::recordio_protobuf)
                sum += bench::sum_values(b);
            r.rows += b.size();
        }
        r.bytes = rd.stats().bytes;
        r.checksum = sum;
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    const auto cpu1 = self_cpu();
    r.cpu = {cpu1.user - cpu0.user, cpu1.sys - cpu0.sys, cpu1.switches - cpu0.switches};
    return r;
}

/// `--first-batch-child PREFIX DIR`: prints the milliseconds from constructing a reader to
/// holding its first batch, in a fresh process (nothing warm in the allocator or libcurl),
/// then exits without tearing the reader down: a reader dropped mid-object can crash (its
/// object source hands the part buffer still being received back to the network thread,
/// which frees it under the transfer), and teardown is not what is measured.
[[noreturn]] void first_batch_child(const std::string& prefix, const std::string& dir)
{
    const auto d = list_data_set(prefix, dir);
    const auto start = clock_type::now();
    auto* rd = new reader(remote::http_objects(d.urls));
    auto b = rd->next();
    const double ms = ms_since(start);
    if (!b || b->size() == 0)
        die("no first batch from " + d.prefix);
    std::printf("%.6f\n", ms);
    std::fflush(stdout);
    std::_Exit(0);
}

/// The first-batch time of `d`, measured in a child process.
double first_batch_ms(const data_set& d)
{
    const auto c = run_child({"/proc/self/exe", "--first-batch-child", d.prefix, d.dir}, true);
    return std::stod(c.out);
}

/// A "VmRSS" (current) or "VmHWM" (peak) figure of /proc/self/status, in KiB.
long status_kib(const std::string& field)
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0)
            return std::stol(line.substr(field.size() + 1));
    return 0;
}

/// User + system seconds of processes `pids` so far (/proc/PID/stat), for the server's share
/// of the machine: on 2 cores, its sendfile and loopback copies compete with the client.
double processes_cpu(const std::vector<int>& pids)
{
    double total = 0;
    for (int pid : pids) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const auto close = stat.rfind(')');
        if (close == std::string::npos)
            continue;
        // Fields after the command: state is field 3, utime 14 and stime 15.
        std::istringstream rest(stat.substr(close + 2));
        std::string field;
        unsigned long long utime = 0, stime = 0;
        for (int f = 3; f <= 15 && rest >> field; ++f) {
            if (f == 14)
                utime = std::stoull(field);
            if (f == 15)
                stime = std::stoull(field);
        }
        total += double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
    }
    return total;
}

run median(std::vector<run> runs)
{
    std::sort(runs.begin(), runs.end(), [](const run& a, const run& b) { return a.seconds < b.seconds; });
    return runs[runs.size() / 2];
}

double median_of(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double mbps(const run& r) { return double(r.bytes) / r.seconds / 1e6; }

/// `--rss-child PREFIX DIR BUDGET_MIB`: one decoding pass in a fresh process. Prints startup
/// and peak RSS, rate and checksum. The peak is the child's own VmHWM: the ru_maxrss that
/// wait4 reports for a posix_spawn'ed child starts from the parent's peak (the vfork'ed child
/// execs out of the parent's address space, whose high-water mark Linux carries over).
int rss_child(const std::string& prefix, const std::string& dir, std::size_t budget_mib)
{
    const auto d = list_data_set(prefix, dir);
    const long startup = status_kib("VmRSS");
    const auto r = read_objects(d, data_format::recordio_protobuf, budget_mib * mib);
    if (r.bytes != d.bytes)
        die("the RSS run read " + std::to_string(r.bytes) + " of " + std::to_string(d.bytes) + " bytes");
    std::printf("%ld %ld %.6f %.3f %llu %.17g\n", startup, status_kib("VmHWM"), r.seconds, r.first_ms,
                (unsigned long long)r.rows, r.checksum);
    return 0;
}

} // namespace

int run_benchmark(int argc, char** argv);

int main(int argc, char** argv)
{
    // A failed transfer or decode ends the benchmark with its message, not std::terminate.
    try {
        return run_benchmark(argc, argv);
    } catch (const std::exception& e) {
        die(e.what());
    }
}

int run_benchmark(int argc, char** argv)
{
    if (argc == 5 && std::string(argv[1]) == "--rss-child")
        return rss_child(argv[2], argv[3], std::stoul(argv[4]));
    if (argc == 4 && std::string(argv[1]) == "--first-batch-child")
        first_batch_child(argv[2], argv[3]);

    std::string url, dir, big_url, big_dir;
    std::size_t repeats = 3, sweep_repeats = 0;
    bool sweep = true, peer = true;
    std::vector<int> server_pids;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                die(a + " needs a value");
            return argv[++i];
        };
        if (a == "--url")
            url = value();
        else if (a == "--dir")
            dir = value();
        else if (a == "--big-url")
            big_url = value();
        else if (a == "--big-dir")
            big_dir = value();
        else if (a == "--repeats")
            repeats = std::max<std::size_t>(1, std::stoul(value()));
        else if (a == "--sweep-repeats")
            sweep_repeats = std::max<std::size_t>(1, std::stoul(value()));
        else if (a == "--no-sweep")
            sweep = false;
        else if (a == "--no-peer")
            peer = false;
        else if (a == "--server-pids") {
            std::istringstream in(value());
            for (int pid; in >> pid;)
                server_pids.push_back(pid);
        }
        else
            die("usage: bench_http --url PREFIX --dir DIR [--big-url PREFIX --big-dir DIR] [--repeats N] "
                "[--sweep-repeats N] [--no-sweep] [--no-peer] [--server-pids \"PID...\"]");
    }
    if (url.empty() || dir.empty())
        die("--url and --dir are required (scripts/bench_http.sh sets up a server and passes them)");
    if (sweep_repeats == 0)
        sweep_repeats = repeats;
    const auto d = list_data_set(url, dir);
    std::optional<data_set> big;
    if (!big_url.empty())
        big = list_data_set(big_url, big_dir);

    std::string list_file;
    if (peer) {
        list_file = (std::filesystem::temp_directory_path() / ("bench_http-" + std::to_string(::getpid()) + ".list")).string();
        std::ofstream out(list_file);
        for (const auto& n : d.names)
            out << n << '\n';
    }

    struct row {
        std::string name;
        std::function<run()> f;
    };
    std::vector<row> rows = {
        {"curl, 1 connection (baseline)", [&] { return curl_sequential(d); }},
    };
    if (peer)
        rows.push_back({"rclone cat", [&] { return rclone_cat(d, list_file); }});
    const std::size_t first_pipemode = rows.size();
    rows.push_back({"pipemode raw stream", [&] { return raw_stream(d, {}); }});
    rows.push_back({"reader, recordio (framing)", [&] { return read_objects(d, data_format::recordio); }});
    rows.push_back({"reader, protobuf, sum values", [&] { return read_objects(d, data_format::recordio_protobuf); }});
    rows.push_back({"  ... with 2 decode workers", [&] {
                        return read_objects(d, data_format::recordio_protobuf, reader_options{}.memory_budget, 2);
                    }});

    // Warm-up: the page cache, nginx's worker, and a check that every path reads everything.
    std::fprintf(stderr, "bench_http: warm-up over %zu objects, %llu bytes\n", d.urls.size(), (unsigned long long)d.bytes);
    for (const auto& r : rows) {
        const auto x = r.f();
        if (x.bytes != d.bytes)
            die(r.name + " read " + std::to_string(x.bytes) + " bytes, the objects hold " + std::to_string(d.bytes));
    }

    std::vector<std::vector<run>> runs(rows.size());
    for (std::size_t k = 0; k < repeats; ++k)
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const double server0 = processes_cpu(server_pids);
            auto x = rows[i].f();
            x.server_cpu = processes_cpu(server_pids) - server0;
            runs[i].push_back(x);
        }
    std::vector<run> results;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        for (const auto& x : runs[i])
            if (x.bytes != d.bytes || x.checksum != runs[i].front().checksum)
                die("runs of " + rows[i].name + " disagree on the data");
        results.push_back(median(runs[i]));
    }
    const auto& curl = results[0];
    const auto& framing = results[rows.size() - 2];
    const auto& decoded = results[rows.size() - 1];
    if (framing.rows != decoded.rows)
        die("the recordio and protobuf readers saw different record counts");

    std::printf("%llu bytes (%.0f MiB) in %zu objects from nginx on 127.0.0.1 (sendfile, page cache warm);\n"
                "median of %zu runs; CPU = user + system seconds of the process per GB read\n\n",
                (unsigned long long)d.bytes, double(d.bytes) / double(mib), d.urls.size(), repeats);
    std::printf("%-32s %8s %8s %9s %9s %9s %9s %9s %9s\n", "path", "MB/s", "vs curl", "first ms", "user s/GB",
                "sys s/GB", "CPU s/GB", "sleeps/MB", "server");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = results[i];
        const double gb = double(r.bytes) / 1e9;
        char first[32] = "-";
        if (i >= first_pipemode)
            std::snprintf(first, sizeof first, "%.2f", r.first_ms);
        char server[32] = "-";
        if (!server_pids.empty())
            std::snprintf(server, sizeof server, "%.3f", r.server_cpu / gb);
        std::printf("%-32s %8.0f %8.2f %9s %9.3f %9.3f %9.3f %9.2f %9s\n", rows[i].name.c_str(), mbps(r),
                    curl.seconds / r.seconds, first, r.cpu.user / gb, r.cpu.sys / gb, (r.cpu.user + r.cpu.sys) / gb,
                    double(r.cpu.switches) / (gb * 1000), server);
    }
    std::printf("\n(first ms: first byte for the raw stream, first batch for the readers; sleeps/MB: voluntary\n"
                "context switches per MB, all threads; server: CPU s/GB of the server's processes, from /proc,\n"
                "when --server-pids names them (1/100 s ticks); %.2f M records/s decoded)\n",
                double(decoded.rows) / decoded.seconds / 1e6);
    if (peer)
        std::filesystem::remove(list_file);

    // Time to first batch, on each set, with the data in the page cache.
    std::vector<const data_set*> sets = {&d};
    if (big)
        sets.push_back(&*big);
    std::printf("\ntime from constructing a reader to its first batch (fresh process each, median of %zu):\n",
                std::max<std::size_t>(5, repeats));
    for (const auto* s : sets) {
        std::vector<double> ms;
        for (std::size_t k = 0; k < std::max<std::size_t>(5, repeats); ++k)
            ms.push_back(first_batch_ms(*s));
        std::printf("  %6.0f MiB in %3zu objects: %6.2f ms (min %.2f, max %.2f)\n", double(s->bytes) / double(mib),
                    s->urls.size(), median_of(ms), *std::min_element(ms.begin(), ms.end()),
                    *std::max_element(ms.begin(), ms.end()));
    }

    // Peak RSS of a fresh process decoding the biggest set with a 64 MiB budget.
    {
        const auto* s = sets.back();
        constexpr std::size_t budget_mib = 64;
        const auto c = run_child({"/proc/self/exe", "--rss-child", s->prefix, s->dir, std::to_string(budget_mib)}, true);
        long startup = 0, peak = 0;
        double seconds = 0, first = 0;
        if (std::sscanf(c.out.c_str(), "%ld %ld %lf %lf", &startup, &peak, &seconds, &first) != 4)
            die("the RSS child said '" + c.out + "'");
        std::printf("\npeak RSS decoding %.0f MiB with memory_budget = %zu MiB (fresh process): %.1f MiB "
                    "(%.1f MiB at startup, so %.1f MiB for the stream); %.0f MB/s, first batch %.2f ms, "
                    "CPU %.3f s/GB (user %.3f, sys %.3f)\n",
                    double(s->bytes) / double(mib), budget_mib, double(peak) / 1024.0, double(startup) / 1024.0,
                    double(peak - startup) / 1024.0, double(s->bytes) / seconds / 1e6, first,
                    (c.cpu.user + c.cpu.sys) / (double(s->bytes) / 1e9), c.cpu.user / (double(s->bytes) / 1e9),
                    c.cpu.sys / (double(s->bytes) / 1e9));
    }

    if (!sweep)
        return 0;
    const std::size_t parts_mib[] = {4, 8, 16};
    const std::size_t connections[] = {1, 2, 4, 8};
    std::printf("\nraw stream, part size x connections: MB/s (vs curl %.0f MB/s), median of %zu; "
                "window = min(2 x part x connections, 128 MiB)\n\n%-9s",
                mbps(curl), sweep_repeats, "part");
    for (auto c : connections)
        std::printf(" %11zu conn", c);
    std::printf("\n");
    for (auto p : parts_mib) {
        std::printf("%3zu MiB  ", p);
        for (auto c : connections) {
            std::vector<run> cell;
            for (std::size_t k = 0; k < sweep_repeats; ++k) {
                remote::stream_options o;
                o.part_size = p * mib;
                o.max_connections = c;
                cell.push_back(raw_stream(d, o));
                if (cell.back().bytes != d.bytes)
                    die("the sweep read a short stream");
            }
            const auto m = median(std::move(cell));
            std::printf(" %6.0f (%4.2fx)", mbps(m), curl.seconds / m.seconds);
        }
        std::printf("\n");
    }
    return 0;
}
