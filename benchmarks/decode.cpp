// Decode throughput of SageMaker RecordIO-protobuf, from memory, on one core: pipemode's
// framing and hand-written Record parser into batches, against libprotobuf's generated
// classes, against memcpy.
//
// The data is what SageMaker's record_set writes for a dense data set: each record has one
// float32 feature "values" of dimension 50 and a float32 scalar label "values". Every path
// sums every value it decodes (in the same order and grouping), and the sums must agree.
//
// Usage: bench_decode [MIB] (default 256 MiB of framed data)
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

void consume(const batch& b, result& r)
{
    const auto& x = b.feature("values");
    const auto& y = b.label("values");
    auto values = x.values<float>();
    auto labels = y.values<float>();
    for (std::size_t i = 0; i < b.size(); ++i)
        r.checksum += row_sum(values.data() + i * dimension, dimension) + labels[i];
    r.rows += b.size();
}

} // namespace

int main(int argc, char** argv)
{
    std::size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
    if (mib == 0)
        die("usage: bench_decode [MIB]");
    const std::size_t target = mib * 1024 * 1024;

    // The data: records as record_set writes them, features uniform in [0, 1), labels 0 or 1.
    std::vector<std::byte> data;
    data.reserve(target + 4096);
    {
        std::mt19937 rng(42);
        std::uniform_real_distribution<float> uniform(0, 1);
        std::vector<float> x(dimension);
        std::vector<std::byte> payload;
        while (data.size() < target) {
            for (auto& v : x)
                v = uniform(rng);
            float y = static_cast<float>(rng() & 1);
            tensor_entry features[] = {tensor_entry::dense(x)};
            tensor_entry label[] = {tensor_entry::dense(std::span<const float>(&y, 1))};
            payload.clear();
            encode_record(payload, features, label);
            append_recordio(data, payload);
        }
    }
    std::span<const std::byte> input(data);

    // (a) memcpy of the same bytes, into memory touched beforehand.
    std::vector<std::byte> copy(data.size(), std::byte{1});
    auto memcpy_result = measure([&] {
        std::memcpy(copy.data(), data.data(), data.size());
        result r;
        r.checksum = static_cast<double>(copy[copy.size() / 2]);
        return r;
    });

    // (b) framing + pipemode's parser into batches of 1000, summing every value. Each batch is
    // let go after it is summed and its storage refilled, as in a reader (a batch_pool).
    auto pipemode_result = measure([&] {
        result r;
        protobuf_record_parser parser;
        batch_builder builder(batch_rows, batch_pool::make(2));
        error_code ec;
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

    // (c) framing + libprotobuf's generated Record, one message reused, summing every value.
    auto libprotobuf_result = measure([&] {
        result r;
        aialgs::data::Record message;
        for_each_record(input, [&](const record_view& rec) {
            if (!message.ParseFromArray(rec.payload.data(), static_cast<int>(rec.payload.size())))
                die("libprotobuf refused a record");
            const auto& x = message.features().at("values").float32_tensor();
            const auto& y = message.label().at("values").float32_tensor();
            r.checksum += row_sum(x.values().data(), static_cast<std::size_t>(x.values_size())) + y.values(0);
            ++r.rows;
        });
        return r;
    });

    // (d) framing alone, for scale.
    auto framing_result = measure([&] {
        result r;
        for_each_record(input, [&](const record_view& rec) {
            r.checksum += static_cast<double>(rec.payload.size());
            ++r.rows;
        });
        return r;
    });

    const double megabytes = static_cast<double>(data.size()) / 1e6;
    std::printf("bench_decode: %zu MiB of RecordIO-protobuf, %zu records (dense float32 x %zu + float32 label), "
                "batches of %zu, median of %d runs; rates per second of CPU time (wall-clock MB/s aside)\n\n",
                mib, pipemode_result.rows, dimension, batch_rows, repeats);
    std::printf("%-32s %9s %13s %12s %10s %11s %20s\n", "path", "MB/s", "rows/s", "vs libproto", "vs memcpy",
                "wall MB/s", "checksum");
    auto row = [&](const char* name, const result& r, bool has_checksum) {
        std::printf("%-32s %9.0f %13s %11.2fx %9.3fx %11.0f %20s\n", name, megabytes / r.seconds,
                    r.rows != 0 ? std::to_string(static_cast<long long>(static_cast<double>(r.rows) / r.seconds)).c_str() : "-",
                    libprotobuf_result.seconds / r.seconds, memcpy_result.seconds / r.seconds,
                    megabytes / r.wall_seconds, has_checksum ? std::to_string(r.checksum).c_str() : "-");
    };
    row("(a) memcpy", memcpy_result, false);
    row("(b) framing + pipemode parser", pipemode_result, true);
    row("(c) framing + libprotobuf", libprotobuf_result, true);
    row("(d) framing only", framing_result, false);

    if (pipemode_result.rows != libprotobuf_result.rows || pipemode_result.checksum != libprotobuf_result.checksum) {
        std::fprintf(stderr, "bench_decode: checksums differ: pipemode %.17g over %zu rows, libprotobuf %.17g over %zu rows\n",
                     pipemode_result.checksum, pipemode_result.rows, libprotobuf_result.checksum, libprotobuf_result.rows);
        return 1;
    }
    std::printf("\nchecksums agree\n");
    return 0;
}
