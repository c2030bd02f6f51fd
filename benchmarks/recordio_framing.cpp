// Micro-benchmark of RecordIO framing alone, from memory: how fast recordio_decoder cuts dense
// records out of a buffer, next to memcpy of the same bytes.
//
// Usage: recordio_framing [payload_bytes=220] [stream_mib=64] [chunk_kib=256]
// Prints one line per measurement: MB/s (10^6 bytes) and records/s, best of several passes.
#include <pipemode/core/options.hpp>
#include <pipemode/framing/recordio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct result {
    double seconds = 1e300;
    std::uint64_t records = 0;
    std::uint64_t checksum = 0;
};

// Decodes `stream` handed over in chunks of `chunk` bytes (the whole stream when 0), the way a
// pipeline loop drives a decoder.
result frame(std::span<const std::byte> stream, std::size_t chunk)
{
    pipemode::recordio_decoder d;
    pipemode::error_code ec;
    result r;
    const auto t0 = clock_type::now();
    std::size_t at = 0;
    while (at < stream.size()) {
        const std::size_t n = chunk == 0 ? stream.size() - at : std::min(chunk, stream.size() - at);
        std::span<const std::byte> in = stream.subspan(at, n);
        at += n;
        for (;;) {
            in = in.subspan(d.put(in, ec));
            if (ec) {
                std::fprintf(stderr, "decode error: %s\n", ec.message().c_str());
                std::exit(1);
            }
            if (!d.has_record())
                break;
            const auto p = d.record().payload;
            r.checksum += p.size() + static_cast<std::uint64_t>(p.empty() ? 0 : std::to_integer<unsigned>(p[0]));
            ++r.records;
            d.pop();
        }
    }
    d.finish(ec);
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    return r;
}

void print(const char* what, std::size_t bytes, const result& r)
{
    std::printf("%-34s %9.0f MB/s %12.0f records/s\n", what, static_cast<double>(bytes) / r.seconds / 1e6,
                static_cast<double>(r.records) / r.seconds);
}

} // namespace

int main(int argc, char** argv)
{
    const std::size_t payload_bytes = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 220;
    const std::size_t stream_mib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64;
    const std::size_t chunk_kib = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 256;
    constexpr int passes = 7;

    std::mt19937 rng(1);
    std::vector<std::byte> payload(payload_bytes);
    std::vector<std::byte> stream;
    stream.reserve(stream_mib * pipemode::kib * pipemode::kib + 4096);
    std::uint64_t records = 0;
    while (stream.size() < stream_mib * pipemode::kib * pipemode::kib) {
        for (auto& b : payload)
            b = static_cast<std::byte>(rng());
        pipemode::append_recordio(stream, payload);
        ++records;
    }
    std::printf("%llu records of %zu bytes, %zu bytes framed; best of %d passes\n",
                static_cast<unsigned long long>(records), payload_bytes, stream.size(), passes);

    std::vector<std::byte> copy(stream.size());
    result mem;
    for (int i = 0; i < passes; ++i) {
        const auto t0 = clock_type::now();
        std::memcpy(copy.data(), stream.data(), stream.size());
        const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
        mem.seconds = std::min(mem.seconds, s);
        mem.checksum += std::to_integer<unsigned>(copy[static_cast<std::size_t>(i) * 7919 % copy.size()]);
    }
    mem.records = records;

    result whole, chunked;
    for (int i = 0; i < passes; ++i) {
        const result a = frame(stream, 0);
        const result b = frame(stream, chunk_kib * pipemode::kib);
        if (a.records != records || b.records != records || a.checksum != b.checksum) {
            std::fprintf(stderr, "framing lost records\n");
            return 1;
        }
        whole = a.seconds < whole.seconds ? a : whole;
        chunked = b.seconds < chunked.seconds ? b : chunked;
    }

    print("memcpy (same bytes)", stream.size(), mem);
    print("recordio framing, one buffer", stream.size(), whole);
    char label[64];
    std::snprintf(label, sizeof label, "recordio framing, %zu KiB chunks", chunk_kib);
    print(label, stream.size(), chunked);
    std::printf("(checksum %llu)\n", static_cast<unsigned long long>(whole.checksum + mem.checksum));
}
