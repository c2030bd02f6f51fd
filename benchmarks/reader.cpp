// End-to-end local-file throughput: files -> pipemode::reader -> a training loop that touches
// every value, against reading the same files with plain read() calls (the page cache's
// speed, no decoding) measured in the same run.
//
// The data set is dense float32 dimension-50 protobuf RecordIO with a scalar label, as
// SageMaker's record_set writes it, in several files. It is written once into DIR (default: a
// new directory under $TMPDIR, removed at the end) and read once before timing, so every run
// reads from the page cache and the table compares CPU paths, not the disk.
//
// The allocations column counts, from the 10th batch of a run to its last, every allocation
// of batch memory (a counting resource given as reader_options::batch_memory) and every call
// of operator new on any thread (replaced below, in this program only), per batch: the
// steady state's allocations, which should be none.
//
// Usage: bench_reader [--size-mib N] [--files N] [--dir DIR] [--repeats N]
#include <pipemode/framing/recordio.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "counting_resource.hpp"
#include "counting_new.hpp"
#include "touch_values.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <vector>

// Every call of operator new in the process, on any thread.
using pipemode::test::heap_allocations;

namespace {

using namespace pipemode;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t dimension = 50;

struct run {
    double seconds = 0;
    double first_batch_ms = 0;
    double cpu_seconds = 0;  // user + system of the whole process, all threads
    std::uint64_t bytes = 0;
    std::uint64_t rows = 0;
    double checksum = 0;
    double allocations_per_batch = -1;  // steady state; negative when not counted
};

// Batches a run delivers before its allocations are counted: the first fill the pool.
constexpr std::uint64_t warm_up_batches = 10;

double process_cpu_seconds()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "bench_reader: %s\n", what.c_str());
    std::exit(1);
}

std::vector<std::string> write_data_set(const std::filesystem::path& dir, std::size_t size_mib, std::size_t files)
{
    std::filesystem::create_directories(dir);
    std::mt19937_64 rng(42);
    std::vector<std::string> paths;
    std::vector<std::byte> out, payload;
    const std::uint64_t per_file = std::uint64_t(size_mib) * mib / files;
    for (std::size_t f = 0; f < files; ++f) {
        out.clear();
        while (out.size() < per_file) {
            float v[dimension];
            for (auto& x : v)
                x = float(rng() >> 40) / float(1 << 24) - 0.5f;
            const float label = float(rng() & 1);
            const tensor_entry features[] = {tensor_entry::dense(std::span<const float>(v))};
            const tensor_entry labels[] = {tensor_entry::dense(std::span<const float>(&label, 1))};
            payload.clear();
            encode_record(payload, features, labels);
            append_recordio(out, payload);
        }
        paths.push_back((dir / ("part-" + std::to_string(f) + ".rec")).string());
        std::FILE* fp = std::fopen(paths.back().c_str(), "wb");
        if (!fp || std::fwrite(out.data(), 1, out.size(), fp) != out.size() || std::fclose(fp) != 0)
            die("cannot write " + paths.back());
    }
    return paths;
}

/// The baseline: the files' bytes through read() into one buffer, summed as 32-bit words so
/// the loop cannot be optimised away and touches every byte like the consumer below.
run read_raw(const std::vector<std::string>& paths)
{
    run r;
    const auto start = clock_type::now();
    const double cpu0 = process_cpu_seconds();
    std::vector<char> buffer(4 * mib);
    std::uint64_t acc = 0;
    for (const auto& p : paths) {
        const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die("cannot open " + p);
        for (;;) {
            const auto n = ::read(fd, buffer.data(), buffer.size());
            if (n < 0)
                die("cannot read " + p);
            if (n == 0)
                break;
            if (r.bytes == 0)
                r.first_batch_ms = std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
            for (ssize_t i = 0; i + 4 <= n; i += 4) {
                std::uint32_t w;
                std::memcpy(&w, buffer.data() + i, 4);
                acc += w;
            }
            r.bytes += std::uint64_t(n);
        }
        ::close(fd);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    r.cpu_seconds = process_cpu_seconds() - cpu0;
    r.checksum = double(acc);
    return r;
}

/// pipemode: every record decoded into batches; the loop sums every feature value.
run read_pipemode(const std::vector<std::string>& paths, std::size_t batch_size)
{
    run r;
    const auto start = clock_type::now();
    const double cpu0 = process_cpu_seconds();
    {
        test::counting_resource memory;
        reader rd(paths, {.batch_size = batch_size, .batch_memory = &memory});
        double sum = 0;
        std::uint64_t batches = 0;
        std::uint64_t counted_from = 0;
        auto allocations = [&] { return heap_allocations.load() + memory.allocations.load(); };
        for (auto& b : rd) {
            if (r.rows == 0)
                r.first_batch_ms = std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
            if (++batches == warm_up_batches)
                counted_from = allocations();
            sum += bench::sum_values(b);
            r.rows += b.size();
        }
        if (batches > warm_up_batches)
            r.allocations_per_batch = double(allocations() - counted_from) / double(batches - warm_up_batches);
        r.bytes = rd.stats().bytes;
        r.checksum = sum;
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    r.cpu_seconds = process_cpu_seconds() - cpu0;
    return r;
}

run median(std::vector<run> runs)
{
    std::sort(runs.begin(), runs.end(), [](const run& a, const run& b) { return a.seconds < b.seconds; });
    return runs[runs.size() / 2];
}

} // namespace

int main(int argc, char** argv)
{
    std::size_t size_mib = 512, files = 8, repeats = 5;
    std::string dir;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                die(a + " needs a value");
            return argv[++i];
        };
        if (a == "--size-mib")
            size_mib = std::stoul(value());
        else if (a == "--files")
            files = std::stoul(value());
        else if (a == "--dir")
            dir = value();
        else if (a == "--repeats")
            repeats = std::max<std::size_t>(1, std::stoul(value()));
        else
            die("usage: bench_reader [--size-mib N] [--files N] [--dir DIR] [--repeats N]");
    }
    const bool own_dir = dir.empty();
    if (own_dir) {
        const char* tmp = std::getenv("TMPDIR");
        dir = (std::filesystem::path(tmp ? tmp : "/tmp") / ("pipemode-bench-" + std::to_string(::getpid()))).string();
    }
    const auto paths = write_data_set(dir, size_mib, files);
    read_raw(paths);  // into the page cache

    struct row {
        std::string name;
        std::function<run()> f;
    };
    const std::vector<row> rows = {
        {"read() into a buffer (baseline)", [&] { return read_raw(paths); }},
        {"pipemode reader, batch 1000", [&] { return read_pipemode(paths, 1000); }},
        {"pipemode reader, batch 10000", [&] { return read_pipemode(paths, 10000); }},
    };
    std::vector<run> results;
    for (const auto& r : rows) {
        std::vector<run> runs;
        for (std::size_t k = 0; k < repeats; ++k)
            runs.push_back(r.f());
        for (const auto& x : runs)
            if (x.checksum != runs.front().checksum)
                die("checksums differ between runs of " + r.name);
        results.push_back(median(std::move(runs)));
    }
    if (results[1].checksum != results[2].checksum || results[1].rows != results[2].rows)
        die("batch sizes disagree on the data");

    std::printf("%zu MiB in %zu files, dense float32 dim %zu; median of %zu runs, page cache warm\n\n", size_mib, files,
                dimension, repeats);
    std::printf("%-34s %10s %12s %14s %12s %10s %13s\n", "path", "MB/s", "Mrecords/s", "first batch ms", "CPU s/GB",
                "vs read()", "allocs/batch");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = results[i];
        const double mbps = double(r.bytes) / r.seconds / 1e6;
        std::printf("%-34s %10.0f %12.2f %14.2f %12.3f %10.2f %13s\n", rows[i].name.c_str(), mbps,
                    double(r.rows) / r.seconds / 1e6, r.first_batch_ms, r.cpu_seconds / (double(r.bytes) / 1e9),
                    results[0].seconds / r.seconds,
                    r.allocations_per_batch < 0 ? "-" : std::to_string(r.allocations_per_batch).substr(0, 5).c_str());
    }
    if (own_dir)
        std::filesystem::remove_all(dir);
}
