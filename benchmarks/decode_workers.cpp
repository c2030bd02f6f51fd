// Decode workers: the reader's throughput with 1, 2, ... workers (reader_options::decode_workers)
// over an in-memory data set, with no training work, so that framing, parsing and delivery
// are all there is. The 1-worker run is the baseline measured in the same run; each row is
// the median of the repeats, with the CPU time the process spent per GB beside it (more
// workers should cost about the same CPU per byte: what they add is parallelism, not work).
//
// Two shapes of SageMaker's protobuf RecordIO: dense float32 rows of 256 values, and sparse
// float32 rows with 1 % of 10,000 keys set. The sources hand out 4 MiB chunks, the size of a
// file read (`read_size`); batches are 1,000 rows.
//
// Usage: bench_decode_workers [--size-mib N] [--repeats N] [--max-workers N] [--only-workers N]
#include <pipemode/framing/recordio.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sources/memory_source.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace pipemode;
using clock_type = std::chrono::steady_clock;
using shared_bytes = std::shared_ptr<const std::vector<std::byte>>;

double process_cpu_seconds()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

/// `files` RecordIO-protobuf objects of about `bytes` in all, dense or sparse rows.
std::vector<shared_bytes> make_data_set(bool sparse, std::size_t bytes, std::size_t files)
{
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<float> value(-1, 1);
    constexpr std::size_t dense_dim = 256;
    constexpr std::uint64_t sparse_columns = 10000;
    constexpr std::size_t sparse_nnz = 100;
    std::vector<shared_bytes> out;
    std::vector<std::byte> payload;
    std::vector<float> v;
    std::vector<std::uint64_t> keys;
    for (std::size_t f = 0; f < files; ++f) {
        auto file = std::make_shared<std::vector<std::byte>>();
        file->reserve(bytes / files + (1 << 16));
        while (file->size() < bytes / files) {
            const float label = value(rng) > 0 ? 1.0f : 0.0f;
            const tensor_entry labels[] = {tensor_entry::dense(std::span<const float>(&label, 1))};
            payload.clear();
            if (sparse) {
                keys.clear();
                for (std::uint64_t k = rng() % 97; keys.size() < sparse_nnz && k < sparse_columns; k += 1 + rng() % 197)
                    keys.push_back(k);
                v.resize(keys.size());
                for (auto& x : v)
                    x = value(rng);
                const tensor_entry features[] = {tensor_entry::sparse(std::span<const float>(v), keys, sparse_columns)};
                encode_record(payload, features, labels);
            } else {
                v.resize(dense_dim);
                for (auto& x : v)
                    x = value(rng);
                const tensor_entry features[] = {tensor_entry::dense(std::span<const float>(v))};
                encode_record(payload, features, labels);
            }
            append_recordio(*file, payload);
        }
        out.push_back(std::move(file));
    }
    return out;
}

struct result {
    double seconds = 0;
    double cpu_seconds = 0;
    std::uint64_t bytes = 0;
    std::uint64_t worker_batches = 0;
};

result read_all(const std::vector<shared_bytes>& files, std::size_t workers)
{
    std::vector<source_maker> makers;
    for (std::size_t f = 0; f < files.size(); ++f)
        makers.push_back([data = files[f], f](const source_context&) {
            return any_byte_source(memory_source(data, "part-" + std::to_string(f), {.chunk_size = 4 * mib}));
        });
    const double cpu0 = process_cpu_seconds();
    const auto t0 = clock_type::now();
    reader r(source_list(std::move(makers)), {.batch_size = 1000, .decode_workers = workers});
    std::size_t rows = 0;
    for (auto& b : r)
        rows += b.size();  // no training work: the batch is let go at once
    result out;
    out.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    out.cpu_seconds = process_cpu_seconds() - cpu0;
    out.bytes = r.stats().bytes;
    out.worker_batches = r.stats().worker_batches;
    if (rows == 0)
        std::exit(1);
    return out;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv)
{
    std::size_t size_mib = 512;
    std::size_t repeats = 5;
    std::size_t max_workers = std::max(2u, std::thread::hardware_concurrency());
    std::size_t only_workers = 0;  // 0: every count from 1 to max_workers
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_decode_workers: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return std::strtoull(argv[++i], nullptr, 10);
        };
        if (a == "--size-mib")
            size_mib = value();
        else if (a == "--repeats")
            repeats = std::max<std::size_t>(1, value());
        else if (a == "--max-workers")
            max_workers = std::max<std::size_t>(1, value());
        else if (a == "--only-workers")
            only_workers = std::max<std::size_t>(1, value());
        else {
            std::fprintf(stderr, "usage: bench_decode_workers [--size-mib N] [--repeats N] [--max-workers N] [--only-workers N]\n");
            return 2;
        }
    }

    std::printf("decode workers, in-memory RecordIO-protobuf, %zu MiB, batches of 1000, 4 MiB chunks, median of %zu "
                "(%u hardware threads)\n\n",
                size_mib, repeats, std::thread::hardware_concurrency());
    std::printf("%-28s %8s %10s %12s %14s %10s\n", "data", "workers", "GB/s", "CPU s/GB", "worker batches", "vs 1");
    for (const bool sparse : {false, true}) {
        const auto files = make_data_set(sparse, size_mib * mib, 8);
        const char* name = sparse ? "sparse f32, 1% of 10,000" : "dense f32, 256 values";
        (void)read_all(files, only_workers ? only_workers : 1);  // warm up: page in the data set and the allocator
        double base = 0;
        for (std::size_t workers = only_workers ? only_workers : 1; workers <= (only_workers ? only_workers : max_workers);
             ++workers) {
            std::vector<double> rates, cpu;
            std::uint64_t worker_batches = 0;
            for (std::size_t k = 0; k < repeats; ++k) {
                const auto r = read_all(files, workers);
                rates.push_back(double(r.bytes) / r.seconds / 1e9);
                cpu.push_back(r.cpu_seconds / (double(r.bytes) / 1e9));
                worker_batches = r.worker_batches;
            }
            const double rate = median(rates);
            if (workers == 1)
                base = rate;
            std::printf("%-28s %8zu %10.2f %12.3f %14llu", name, workers, rate, median(cpu),
                        static_cast<unsigned long long>(worker_batches));
            if (base > 0)
                std::printf(" %9.2fx\n", rate / base);
            else
                std::printf(" %10s\n", "-");
        }
    }
    return 0;
}
