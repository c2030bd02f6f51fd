// Decode throughput of SageMaker RecordIO-protobuf, from memory, on one core: pipemode's
// framing and hand-written Record parser into batches, against libprotobuf's generated
// classes, against memcpy.
//
// Two data sets, as SageMaker's record_set writes them: each record has one float32 feature
// "values", dense of dimension 50 in the first and sparse in the second (100 of 10,000
// columns, 1 %, so that most keys take two varint bytes), and a float32 scalar label "values".
// Every path sums every value (and, when sparse, every key) it decodes, in the same order and
// grouping, and the sums must agree.
//
// Usage: bench_decode [MIB] (default 256 MiB of framed data per data set)
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "record.pb.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode;

constexpr std::size_t dimension = 50;
constexpr std::size_t sparse_columns = 10000;
constexpr std::size_t sparse_keys = 100;  // 1 % of the columns
constexpr std::size_t batch_rows = 1000;
constexpr int repeats = 5;
constexpr std::string_view source_name = "memory:bench";

// The consumer's work: the sum of one row, grouped the same way on every path so that the
// checksums compare exactly. Four accumulators keep it from being one long dependency chain.
double row_sum(const float* p, std::size_t n) noexcept
{
    double a[4] = {0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a[0] += p[i];
        a[1] += p[i + 1];
        a[2] += p[i + 2];
        a[3] += p[i + 3];
    }
    for (; i < n; ++i)
        a[0] += p[i];
    return (a[0] + a[1]) + (a[2] + a[3]);
}

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "bench_decode: %s\n", what.c_str());
    std::exit(1);
}

struct result {
    double seconds = 0;       // median CPU time of the repeats
    double wall_seconds = 0;  // median wall-clock time
    double checksum = 0;
    std::size_t rows = 0;
};

double thread_seconds()
{
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Runs `pass` `repeats` times and keeps the median times; every run must give the same sum.
//
// Rates are computed from the thread's CPU time: on a machine whose cores are shared with
// other work, wall-clock time also counts the time the thread waited for a core, which says
// nothing about the decoder. Both are printed.
result measure(const std::function<result()>& pass)
{
    std::vector<double> times;
    std::vector<double> wall_times;
    result r;
    for (int i = 0; i < repeats; ++i) {
        auto start = std::chrono::steady_clock::now();
        auto cpu_start = thread_seconds();
        auto one = pass();
        times.push_back(thread_seconds() - cpu_start);
        wall_times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        if (i != 0 && (one.checksum != r.checksum || one.rows != r.rows))
            die("a path gave different results on two runs");
        r.checksum = one.checksum;
        r.rows = one.rows;
    }
    std::sort(times.begin(), times.end());
    std::sort(wall_times.begin(), wall_times.end());
    r.seconds = times[times.size() / 2];
    r.wall_seconds = wall_times[wall_times.size() / 2];
    return r;
}

// Frames `data` with the RecordIO decoder and calls `on_record` for each record.
template <class OnRecord>
void for_each_record(std::span<const std::byte> data, OnRecord&& on_record)
{
    recordio_decoder decoder;
    error_code ec;
    while (!data.empty()) {
        data = data.subspan(decoder.put(data, ec));
        if (ec)
            die("framing: " + ec.message());
        if (decoder.has_record()) {
            on_record(decoder.record());
            decoder.pop();
        }
    }
    decoder.finish(ec);
    if (ec)
        die("framing: " + ec.message());
}

void consume_dense(const batch& b, result& r)
{
    const auto& x = b.feature("values");
    const auto& y = b.label("values");
    auto values = x.values<float>();
    auto labels = y.values<float>();
    for (std::size_t i = 0; i < b.size(); ++i)
        r.checksum += row_sum(values.data() + i * dimension, dimension) + labels[i];
    r.rows += b.size();
}

// A sparse row's sum: its values as row_sum adds them, plus its keys (exact in a double), so
// that a key decoded wrongly changes the checksum too.
double sparse_row_sum(const float* values, const std::uint64_t* keys, std::size_t n) noexcept
{
    std::uint64_t key_sum = 0;
    for (std::size_t i = 0; i < n; ++i)
        key_sum += keys[i];
    return row_sum(values, n) + static_cast<double>(key_sum);
}

void consume_sparse(const batch& b, result& r)
{
    const auto& x = b.feature("values");
    const auto& y = b.label("values");
    auto values = x.values<float>();
    auto keys = x.keys();
    auto offsets = x.row_offsets();
    auto labels = y.values<float>();
    for (std::size_t i = 0; i < b.size(); ++i) {
        auto first = offsets[i];
        r.checksum += sparse_row_sum(values.data() + first, keys.data() + first, offsets[i + 1] - first) + labels[i];
    }
    r.rows += b.size();
}

// Records as record_set writes them: a float32 feature "values" (dense of `dimension`, or
// sparse with `sparse_keys` of `sparse_columns` columns), a float32 label 0 or 1, framed,
// until `target` bytes.
std::vector<std::byte> make_data(std::size_t target, bool sparse)
{
    std::vector<std::byte> data;
    data.reserve(target + 4096);
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> uniform(0, 1);
    std::uniform_int_distribution<std::uint64_t> column(0, sparse_columns - 1);
    std::vector<float> x(sparse ? sparse_keys : dimension);
    std::vector<std::uint64_t> keys;
    std::vector<std::byte> payload;
    while (data.size() < target) {
        for (auto& v : x)
            v = uniform(rng);
        if (sparse) {
            // Distinct keys in increasing order, as a sparse writer emits them.
            keys.clear();
            while (keys.size() < sparse_keys) {
                keys.push_back(column(rng));
                if (keys.size() == sparse_keys) {
                    std::sort(keys.begin(), keys.end());
                    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
                }
            }
        }
        float y = static_cast<float>(rng() & 1);
        tensor_entry features[] = {sparse ? tensor_entry::sparse(x, keys, sparse_columns) : tensor_entry::dense(x)};
        tensor_entry label[] = {tensor_entry::dense(std::span<const float>(&y, 1))};
        payload.clear();
        encode_record(payload, features, label);
        append_recordio(data, payload);
    }
    return data;
}

struct results {
    result pipemode;
    result libprotobuf;
    result framing;
};

// Measures one data set: (b) framing + pipemode's parser into batches of 1000, summing every
// value, each batch let go after it is summed and its storage refilled, as in a reader (a
// batch_pool); (c) framing + libprotobuf's generated Record, one message reused, the same
// sums; (d) framing alone, for scale.
results measure_paths(std::span<const std::byte> input, bool sparse)
{
    results out;
    out.pipemode = measure([&] {
        result r;
        protobuf_record_parser parser;
        batch_builder builder(batch_rows, batch_pool::make(2));
        error_code ec;
        auto consume = sparse ? consume_sparse : consume_dense;
        for_each_record(input, [&](const record_view& rec) {
            if (parser.parse(rec, source_name, builder, ec))
                consume(builder.take(), r);
            if (ec)
                die("pipemode: " + ec.message() + " (" + std::string(parser.error_detail()) + ")");
        });
        if (!builder.empty())
            consume(builder.take(), r);
        return r;
    });

    out.libprotobuf = measure([&] {
        result r;
        aialgs::data::Record message;
        for_each_record(input, [&](const record_view& rec) {
            if (!message.ParseFromArray(rec.payload.data(), static_cast<int>(rec.payload.size())))
                die("libprotobuf refused a record");
            const auto& x = message.features().at("values").float32_tensor();
            const auto& y = message.label().at("values").float32_tensor();
            auto n = static_cast<std::size_t>(x.values_size());
            if (sparse) {
                if (x.keys_size() != x.values_size())
                    die("libprotobuf: a sparse row with as many keys as values was expected");
                r.checksum += sparse_row_sum(x.values().data(), x.keys().data(), n) + y.values(0);
            }
            else {
                r.checksum += row_sum(x.values().data(), n) + y.values(0);
            }
            ++r.rows;
        });
        return r;
    });

    out.framing = measure([&] {
        result r;
        for_each_record(input, [&](const record_view& rec) {
            r.checksum += static_cast<double>(rec.payload.size());
            ++r.rows;
        });
        return r;
    });
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    std::size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
    if (mib == 0)
        die("usage: bench_decode [MIB]");
    const std::size_t target = mib * 1024 * 1024;

    const auto dense_data = make_data(target, false);
    const auto sparse_data = make_data(target, true);

    // (a) memcpy of the same bytes, into memory touched beforehand.
    std::vector<std::byte> copy(dense_data.size(), std::byte{1});
    auto memcpy_result = measure([&] {
        std::memcpy(copy.data(), dense_data.data(), dense_data.size());
        result r;
        r.checksum = static_cast<double>(copy[copy.size() / 2]);
        return r;
    });

    const auto dense = measure_paths(dense_data, false);
    const auto sparse = measure_paths(sparse_data, true);

    std::printf("bench_decode: %zu MiB of RecordIO-protobuf per data set, batches of %zu, median of %d runs; rates per "
                "second of CPU time (wall-clock MB/s aside)\n",
                mib, batch_rows, repeats);
    std::printf("dense: float32 x %zu + float32 label, %zu records; sparse: float32, %zu of %zu keys (1 %%) + float32 "
                "label, %zu records\n\n",
                dimension, dense.pipemode.rows, sparse_keys, sparse_columns, sparse.pipemode.rows);
    std::printf("%-36s %9s %13s %12s %10s %11s %20s\n", "path", "MB/s", "rows/s", "vs libproto", "vs memcpy",
                "wall MB/s", "checksum");
    auto row = [&](const char* name, const result& r, const result& libprotobuf, std::size_t bytes, bool has_checksum) {
        const double megabytes = static_cast<double>(bytes) / 1e6;
        std::printf("%-36s %9.0f %13s %11.2fx %9.3fx %11.0f %20s\n", name, megabytes / r.seconds,
                    r.rows != 0 ? std::to_string(static_cast<long long>(static_cast<double>(r.rows) / r.seconds)).c_str() : "-",
                    libprotobuf.seconds / r.seconds,
                    memcpy_result.seconds / static_cast<double>(dense_data.size()) * static_cast<double>(bytes) / r.seconds,
                    megabytes / r.wall_seconds, has_checksum ? std::to_string(r.checksum).c_str() : "-");
    };
    row("(a) memcpy", memcpy_result, dense.libprotobuf, dense_data.size(), false);
    row("(b) dense: framing + pipemode parser", dense.pipemode, dense.libprotobuf, dense_data.size(), true);
    row("(c) dense: framing + libprotobuf", dense.libprotobuf, dense.libprotobuf, dense_data.size(), true);
    row("(d) dense: framing only", dense.framing, dense.libprotobuf, dense_data.size(), false);
    row("(e) sparse: framing + pipemode parser", sparse.pipemode, sparse.libprotobuf, sparse_data.size(), true);
    row("(f) sparse: framing + libprotobuf", sparse.libprotobuf, sparse.libprotobuf, sparse_data.size(), true);
    row("(g) sparse: framing only", sparse.framing, sparse.libprotobuf, sparse_data.size(), false);

    bool agree = true;
    for (auto [name, set] : {std::pair{"dense", &dense}, std::pair{"sparse", &sparse}}) {
        if (set->pipemode.rows != set->libprotobuf.rows || set->pipemode.checksum != set->libprotobuf.checksum) {
            std::fprintf(stderr,
                         "bench_decode: %s checksums differ: pipemode %.17g over %zu rows, libprotobuf %.17g over %zu rows\n",
                         name, set->pipemode.checksum, set->pipemode.rows, set->libprotobuf.checksum,
                         set->libprotobuf.rows);
            agree = false;
        }
    }
    if (!agree)
        return 1;
    std::printf("\nchecksums agree\n");
    return 0;
}
