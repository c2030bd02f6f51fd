// Soak and memory tests: a protobuf RecordIO data set streamed over HTTP through the fault
// server, checked record for record against a clean in-memory read of the same bytes, with the
// process's resident memory measured against the reader's budget.
//
// The data set is 64 MiB by default (16 MiB under a sanitizer). PIPEMODE_LONG_TESTS=1
// (scripts/test.sh --long) makes it 2 GiB; PIPEMODE_SOAK_MIB=N sets it to N MiB. Each run
// prints a table of the faults injected per kind, the bytes streamed and the memory used.
#include <pipemode/core/digest.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sources/memory_source.hpp>

#include "fault_server.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;  // shadow memory and quarantines make RSS meaningless
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

/// The data set's size in bytes: PIPEMODE_SOAK_MIB, else 2 GiB under PIPEMODE_LONG_TESTS,
/// else a size that keeps the ordinary test run quick.
std::uint64_t soak_bytes()
{
    if (const char* mib_text = std::getenv("PIPEMODE_SOAK_MIB"); mib_text && *mib_text)
        return std::stoull(mib_text) * mib;
    if (const char* long_tests = std::getenv("PIPEMODE_LONG_TESTS"); long_tests && *long_tests && *long_tests != '0')
        return 2048 * mib;
    return sanitized ? 16 * mib : 64 * mib;
}

/// A "VmRSS" (resident now) or "VmHWM" (resident at most) figure of /proc/self/status, in bytes.
std::uint64_t status_bytes(const std::string& field)
{
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind(field + ":", 0) == 0)
            return std::stoull(line.substr(field.size() + 1)) * kib;
    FAIL("no " << field << " in /proc/self/status");
    return 0;
}

/// Measures the peak resident memory of what runs between its construction and `peak_growth()`:
/// resetting the kernel's high-water mark (clear_refs "5") makes VmHWM count from now.
class rss_window {
public:
    rss_window()
    {
        std::ofstream("/proc/self/clear_refs") << "5";
        start_ = status_bytes("VmRSS");
        // Where the reset is not allowed, VmHWM still holds an earlier peak: say so, not fail.
        valid_ = status_bytes("VmHWM") <= start_ + 1 * mib;
        if (!valid_)
            WARN("could not reset VmHWM through /proc/self/clear_refs: peak memory not checked");
    }
    /// Whether `peak_growth()` measures this window only.
    bool valid() const { return valid_; }
    /// Bytes by which the peak exceeded the resident memory at construction.
    std::uint64_t peak_growth() const
    {
        const auto peak = status_bytes("VmHWM");
        return peak > start_ ? peak - start_ : 0;
    }

private:
    std::uint64_t start_ = 0;
    bool valid_ = false;
};

/// Objects of protobuf RecordIO records: a dense float32 feature of 64 values and a float32
/// label, values random with now and then a NaN or an infinity (passed through bit for bit).
/// `distinct` different objects of about `object_bytes` each; the data set names `count`
/// objects, the i-th with the contents of distinct object i % distinct. (A `distinct` that does
/// not divide `count` keeps the xor half of the digest from cancelling out.)
struct soak_data_set {
    std::vector<std::shared_ptr<const std::vector<std::byte>>> contents;
    std::size_t count = 0;

    soak_data_set(std::uint64_t total_bytes, std::size_t object_bytes, std::size_t distinct)
    {
        count = static_cast<std::size_t>(std::max<std::uint64_t>(1, total_bytes / object_bytes));
        distinct = std::min(distinct, count);
        std::mt19937_64 rng(2026);
        std::normal_distribution<float> normal;
        std::vector<float> x(64);
        for (std::size_t o = 0; o < distinct; ++o) {
            auto bytes = std::make_shared<std::vector<std::byte>>();
            bytes->reserve(object_bytes + 4096);
            std::vector<std::byte> record;
            while (bytes->size() < object_bytes) {
                for (auto& v : x)
                    v = normal(rng);
                const auto r = rng();
                if (r % 997 == 0)
                    x[r % x.size()] = std::numeric_limits<float>::quiet_NaN();
                else if (r % 991 == 0)
                    x[r % x.size()] = -std::numeric_limits<float>::infinity();
                const float y = static_cast<float>(r % 10);
                const tensor_entry features[] = {tensor_entry::dense(x)};
                const tensor_entry label[] = {tensor_entry::dense(std::span(&y, 1))};
                record.clear();
                encode_record(record, features, label);
                append_recordio(*bytes, record);
            }
            contents.push_back(std::move(bytes));
        }
    }

    const std::vector<std::byte>& object(std::size_t i) const { return *contents[i % contents.size()]; }
    std::string path(std::size_t i) const
    {
        char name[64];
        std::snprintf(name, sizeof name, "/soak/part-%05zu.rec", i);
        return name;
    }
    std::uint64_t total_bytes() const
    {
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < count; ++i)
            n += object(i).size();
        return n;
    }

    /// Serves every object from `server`.
    void serve(test::fault_server& server) const
    {
        for (std::size_t i = 0; i < count; ++i)
            server.put(path(i), std::string(reinterpret_cast<const char*>(object(i).data()), object(i).size()));
    }

    std::vector<std::string> urls(const test::fault_server& server) const
    {
        std::vector<std::string> out;
        for (std::size_t i = 0; i < count; ++i)
            out.push_back(server.url() + path(i));
        return out;
    }

    /// The digest of the data set read from memory, with no network in the way.
    data_set_digest clean_digest(const reader_options& options) const
    {
        std::vector<source_maker> makers;
        for (std::size_t i = 0; i < count; ++i)
            makers.push_back([this, i](const source_context&) {
                return any_byte_source(memory_source(std::span(object(i)), path(i)));
            });
        reader r(source_list(std::move(makers), "the soak data set in memory"), options);
        data_set_digest d;
        for (auto& b : r)
            d.add(b);
        return d;
    }
};

/// Small parts (many ranges per object), quick retries with a fixed seed, a generous retry
/// budget (a fifth of the requests fail), and a one-second low-speed window so a stalled
/// connection is noticed quickly.
remote::stream_options soak_stream_options()
{
    remote::stream_options so;
    so.part_size = 1 * mib;
    so.max_connections = 4;
    so.retry.base_delay = std::chrono::milliseconds(1);
    so.retry.max_delay = std::chrono::milliseconds(50);
    so.retry.seed = 7;
    so.retry.budget_capacity = 1'000'000;
    so.client.low_speed_limit = 64 * kib;
    so.client.low_speed_time = std::chrono::seconds(1);
    return so;
}

double mib_of(std::uint64_t bytes) { return static_cast<double>(bytes) / static_cast<double>(mib); }

} // namespace

TEST_CASE("soak: random faults of every kind a retry can fix, at a fixed rate: the clean run's records, "
          "each exactly once, within the memory budget", "[http][faults][soak]")
{
    using test::fault;
    using test::fault_kind;
    const std::uint64_t size = soak_bytes();
    const std::size_t object_bytes = size >= 1024 * mib ? 32 * mib : 4 * mib;
    const soak_data_set ds(size, object_bytes, 12);
    test::fault_server server;
    ds.serve(server);

    // Drops after various byte counts (closed and reset), short bodies, throttling and server
    // errors, stalls past the low-speed limit, and trickles: each once on the first requests,
    // then on a fifth of all requests at random.
    const std::vector<fault> mix{fault::drop_after(0), fault::drop_after(1), fault::drop_after(100'000),
                                 fault::drop_after(700'000, true), fault::short_body(), fault::short_body(10),
                                 fault::status(503, "SlowDown", "Please reduce your request rate."),
                                 fault::status(500, "InternalError", "We encountered an internal error."),
                                 fault::status(503, "ServiceUnavailable"),
                                 fault::stall_after(4096, std::chrono::milliseconds(1500)),
                                 fault::stall(std::chrono::milliseconds(1500)), fault::trickle(4 * mib)};
    const double rate = 0.2;
    server.script(mix);
    server.random_faults(rate, mix, 20261129);

    const reader_options options{.batch_size = 512, .format = data_format::recordio_protobuf,
                                 .memory_budget = 64 * mib};
    const auto started = std::chrono::steady_clock::now();
    data_set_digest streamed;
    reader_stats stats;
    std::size_t peak_window = 0;
    std::size_t window = 0;
    std::uint64_t rss_growth = 0;
    bool rss_valid = false;
    {
        rss_window rss;
        auto stream = remote::http_objects(ds.urls(server), soak_stream_options());
        auto* s = stream.get();
        reader r(std::move(stream), options);
        for (auto& b : r)
            streamed.add(b);
        stats = r.stats();
        peak_window = s->peak_window_bytes();
        window = s->window_bytes();
        rss_growth = rss.peak_growth();
        rss_valid = rss.valid();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const data_set_digest clean = ds.clean_digest(options);

    std::printf("soak: %.1f MiB in %zu objects over HTTP, %zu requests (%zu scripted faults, then %.0f %% at random), %.1f s\n",
                mib_of(ds.total_bytes()), ds.count, server.requests_served(), mix.size(), rate * 100, seconds);
    std::printf("  %-22s %8s\n", "fault", "injected");
    for (std::size_t k = 1; k < test::fault_kind_count; ++k)
        if (server.faults_injected(static_cast<fault_kind>(k)) > 0)
            std::printf("  %-22s %8zu\n", std::string(to_string(static_cast<fault_kind>(k))).c_str(),
                        server.faults_injected(static_cast<fault_kind>(k)));
    std::printf("  %-22s %8zu\n", "total", server.faults_injected());
    std::printf("  records %llu, digest %s (clean run %s)\n", static_cast<unsigned long long>(stats.records),
                streamed.to_string().c_str(), clean.to_string().c_str());
    std::printf("  budget %.0f MiB: window %.0f MiB (peak %.1f), batches peak %.1f MiB, RSS growth peak %.1f MiB%s\n",
                mib_of(options.memory_budget), mib_of(window), mib_of(peak_window), mib_of(stats.peak_batch_bytes),
                mib_of(rss_growth), sanitized ? " (sanitized build: not checked)" : "");

    CHECK(stats.bytes == ds.total_bytes());
    CHECK(stats.sources == ds.count);
    CHECK(streamed == clean);
    CHECK(server.internal_errors() == 0);
    CHECK(server.script_remaining() == 0);
    for (auto k : {fault_kind::drop_after, fault_kind::short_body, fault_kind::status, fault_kind::stall,
                   fault_kind::trickle}) {
        CAPTURE(to_string(k));
        CHECK(server.faults_injected(k) > 0);
    }
    CHECK(peak_window <= window);
    CHECK(stats.peak_batch_bytes <= options.memory_budget);
    // The budget bounds pipemode's buffers; libcurl's receive buffers, the fault server's
    // sending and the threads' stacks come on top, a few MiB.
    if (!sanitized && rss_valid)
        CHECK(rss_growth <= options.memory_budget + 24 * mib);
}

TEST_CASE("soak: a slow consumer holds memory within the budget while the network is fast", "[http][soak]")
{
    // 48 MiB through a 16 MiB budget to a consumer that takes nothing for a while, then sleeps
    // on every batch (of about 75 KB): whatever is not yet consumed must wait on the network
    // side, not pile up in memory.
    const soak_data_set ds(sanitized ? 24 * mib : 48 * mib, 2 * mib, 5);
    test::fault_server server;
    ds.serve(server);
    // A ring deep enough to hold the whole data set: only the budget can hold the producer back.
    const reader_options options{.batch_size = 256, .format = data_format::recordio_protobuf,
                                 .prefetch_batches = 4096, .memory_budget = 16 * mib,
                                 .max_record_size = 64 * kib};
    auto so = soak_stream_options();
    so.part_size = 512 * kib;
    rss_window rss;
    auto stream = remote::http_objects(ds.urls(server), so);
    auto* s = stream.get();
    reader r(std::move(stream), options);

    // First the slowest consumer of all: none. Wait until the producer stops making progress;
    // only the budget can stop it before the end of the data.
    std::uint64_t produced = 0;
    for (int quiet = 0, polls = 0; quiet < 10 && polls < 1500; ++polls) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto now = r.stats().records;
        quiet = now == produced ? quiet + 1 : 0;
        produced = now;
    }
    const auto held = r.stats();
    // Then a loop that sleeps on every batch, to the end.
    data_set_digest streamed;
    for (auto& b : r) {
        streamed.add(b);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const auto growth = rss.peak_growth();
    const auto stats = r.stats();
    const auto clean = ds.clean_digest(options);
    std::printf("slow consumer: %.1f MiB, budget %.0f MiB: the producer stopped after %llu of %llu records; "
                "window peak %.1f of %.1f MiB, batches peak %.1f MiB, RSS growth peak %.1f MiB%s\n",
                mib_of(ds.total_bytes()), mib_of(options.memory_budget),
                static_cast<unsigned long long>(held.records), static_cast<unsigned long long>(stats.records),
                mib_of(s->peak_window_bytes()), mib_of(s->window_bytes()), mib_of(stats.peak_batch_bytes),
                mib_of(growth), sanitized ? " (sanitized build: not checked)" : "");
    CHECK(streamed == clean);
    CHECK(held.records < stats.records);  // it waited for the consumer, holding at most the budget
    CHECK(held.peak_batch_bytes <= options.memory_budget);
    CHECK(s->peak_window_bytes() <= s->window_bytes());
    CHECK(stats.peak_batch_bytes <= options.memory_budget);
    if (!sanitized && rss.valid())
        CHECK(growth <= options.memory_budget + 16 * mib);
}
