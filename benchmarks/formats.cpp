// Micro-benchmark of the text, TFRecord and gzip stages alone, from memory: CRC-32C (hardware
// and portable), TFRecord framing, line framing, CSV parsing into batches and gzip inflation.
//
// Usage: formats [stream_mib=32] [chunk_kib=256] [features=50]
// Prints one line per measurement: MB/s (10^6 bytes of the stage's input; for gzip, of its
// output) and records/s, best of several passes.
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/framing/lines.hpp>
#include <pipemode/framing/tfrecord.hpp>
#include <pipemode/parsers/csv.hpp>
#include <pipemode/sources/gzip_inflater.hpp>

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int passes = 5;

struct result {
    double seconds = 1e300;
    std::uint64_t records = 0;
    std::uint64_t checksum = 0;
};

template <class F>
result best(F&& run)
{
    result r;
    for (int i = 0; i < passes; ++i) {
        result one;
        const auto t0 = clock_type::now();
        run(one);
        one.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
        if (one.seconds < r.seconds)
            r = one;
    }
    return r;
}

std::uint64_t all_checksums = 0;  // printed at the end, so that no measured work is optimized away

void print(const char* what, std::size_t bytes, const result& r)
{
    all_checksums += r.checksum;
    std::printf("%-40s %9.0f MB/s %12.0f records/s\n", what, static_cast<double>(bytes) / r.seconds / 1e6,
                static_cast<double>(r.records) / r.seconds);
}

[[noreturn]] void die(const char* what, const pipemode::error_code& ec)
{
    std::fprintf(stderr, "%s: %s\n", what, ec.message().c_str());
    std::exit(1);
}

// Drives a framing decoder over `stream` in chunks, as the pipeline does.
template <class Decoder, class Use>
void frame(Decoder& d, std::span<const std::byte> stream, std::size_t chunk, result& r, Use&& use)
{
    pipemode::error_code ec;
    d.reset(0);
    for (std::size_t at = 0; at < stream.size();) {
        auto in = stream.subspan(at, std::min(chunk, stream.size() - at));
        at += in.size();
        for (;;) {
            in = in.subspan(d.put(in, ec));
            if (ec)
                die("decode", ec);
            if (!d.has_record())
                break;
            use(d.record());
            ++r.records;
            d.pop();
        }
    }
    d.finish(ec);
    if (d.has_record()) {
        use(d.record());
        ++r.records;
        d.pop();
    }
}

std::vector<std::byte> gzip_of(std::span<const std::byte> text)
{
    z_stream z{};
    deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    std::vector<std::byte> out(deflateBound(&z, text.size()));
    z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(text.data()));
    z.avail_in = static_cast<uInt>(text.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        std::exit(1);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    const std::size_t stream_mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 32;
    const std::size_t chunk = (argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 256) * 1024;
    const std::size_t features = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 50;
    const std::size_t target = stream_mib * 1024 * 1024;
    std::mt19937 rng(1);

    // CRC-32C over random bytes.
    std::vector<std::byte> random(target);
    for (auto& b : random)
        b = static_cast<std::byte>(rng());
    std::printf("CRC-32C hardware: %s\n", pipemode::detail::crc32c_has_hw() ? "SSE4.2" : "none");
    print("crc32c portable (slicing-by-8)", random.size(), best([&](result& r) {
              r.checksum = pipemode::detail::crc32c_extend_portable(static_cast<std::uint32_t>(all_checksums),
                                                                    random.data(), random.size());
          }));
    print("crc32c dispatched", random.size(), best([&](result& r) {
              r.checksum = pipemode::detail::crc32c_extend(static_cast<std::uint32_t>(all_checksums), random.data(),
                                                           random.size());
          }));

    // TFRecord: 220-byte payloads.
    std::vector<std::byte> tf;
    tf.reserve(target + 4096);
    while (tf.size() < target)
        pipemode::append_tfrecord(tf, std::span(random).subspan(tf.size() % 4096, 220));
    for (bool verify : {true, false}) {
        pipemode::tfrecord_decoder d(pipemode::tfrecord_options{.verify_data_crc = verify});
        print(verify ? "tfrecord framing, 220 B, data CRC checked" : "tfrecord framing, 220 B, data CRC skipped",
              tf.size(), best([&](result& r) {
                  frame(d, tf, chunk, r, [&](const pipemode::record_view& v) { r.checksum += v.payload.size(); });
              }));
    }

    // CSV text: a label and `features` dense floats per row, as numpy.savetxt writes them.
    std::string csv;
    csv.reserve(target + 4096);
    std::uniform_real_distribution<float> value(-10, 10);
    char field[32];
    while (csv.size() < target) {
        csv += std::to_string(rng() % 2);
        for (std::size_t i = 0; i < features; ++i) {
            std::snprintf(field, sizeof field, ",%.6g", value(rng));
            csv += field;
        }
        csv += '\n';
    }
    const auto csv_bytes = std::as_bytes(std::span(csv));
    std::printf("CSV: %zu-byte rows on average\n",
                csv.size() / static_cast<std::size_t>(std::count(csv.begin(), csv.end(), '\n')));
    pipemode::line_decoder lines;
    print("line framing", csv.size(), best([&](result& r) {
              frame(lines, csv_bytes, chunk, r, [&](const pipemode::record_view& v) { r.checksum += v.payload.size(); });
          }));
    print("line framing + csv parse (batches of 1000)", csv.size(), best([&](result& r) {
              pipemode::csv_record_parser parser;
              pipemode::batch_builder builder(1000);
              pipemode::error_code ec;
              frame(lines, csv_bytes, chunk, r, [&](const pipemode::record_view& v) {
                  if (parser.parse(v, "bench", builder, ec))
                      r.checksum += builder.take().size();
                  if (ec)
                      die("csv", ec);
              });
          }));

    // gzip of the CSV text, inflated into 1 MiB chunks.
    const auto gz = gzip_of(csv_bytes);
    std::printf("gzip: %zu bytes compressed to %zu\n", csv.size(), gz.size());
    std::vector<std::byte> out(1024 * 1024);
    pipemode::gzip_inflater z;
    print("gzip inflate (MB/s of output)", csv.size(), best([&](result& r) {
              z.reset();
              pipemode::error_code ec;
              std::span<const std::byte> in(gz);
              while (!in.empty() || z.has_pending_output()) {
                  auto [used, made] = z.inflate(in, out, ec);
                  if (ec)
                      die("inflate", ec);
                  in = in.subspan(used);
                  r.checksum += made;
                  ++r.records;
              }
              z.finish(ec);
              if (ec || r.checksum != csv.size())
                  die("inflate", ec);
          }));
    std::printf("(checksum %llu)\n", static_cast<unsigned long long>(all_checksums));
}
