// Tests of the ranged-GET object stream through the reader, against nginx on loopback.
#include <pipemode/http/object_stream.hpp>
#include <pipemode/decoders/recordio.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "source_helpers.hpp"
#include "fault_server.hpp"
#include "reader_helpers.hpp"
#include "test_servers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <random>

using namespace pipemode;
using test::error_from;
using test::payloads_of;

namespace {

/// RecordIO files of random-length payloads under one nginx root, and the payloads in order.
struct served_data_set {
    test::temp_dir dir;
    std::vector<std::string> names;
    std::vector<std::string> payloads;  ///< every record, in data-set order
    std::unique_ptr<test::nginx_server> server;

    /// `records_per_file[i]` records for file i; payload lengths up to `max_len` bytes.
    served_data_set(const std::vector<std::size_t>& records_per_file, std::size_t max_len, std::uint32_t seed = 1)
    {
        std::mt19937 rng(seed);
        for (std::size_t f = 0; f < records_per_file.size(); ++f) {
            std::vector<std::byte> file;
            for (std::size_t r = 0; r < records_per_file[f]; ++r) {
                std::string p(rng() % (max_len + 1), '\0');
                for (auto& c : p)
                    c = static_cast<char>('a' + rng() % 26);
                append_recordio(file, std::as_bytes(std::span(p)));
                payloads.push_back(std::move(p));
            }
            names.push_back("part-" + std::to_string(f) + ".rec");
            test::write_file(dir / names.back(), file);
        }
        server = std::make_unique<test::nginx_server>(dir.path());
    }

    std::vector<std::string> urls() const
    {
        std::vector<std::string> out;
        for (const auto& n : names)
            out.push_back(server->url() + "/" + n);
        return out;
    }
};

} // namespace

TEST_CASE("Objects arrive byte for byte and in order, whatever the part size, window and connections", "[http]")
{
    // An empty object, objects smaller than a part, and objects of many parts.
    served_data_set ds({300, 0, 1, 2000, 57, 900}, 700);
    struct config {
        std::size_t part_size, max_connections, window;
    };
    const config configs[] = {
        {64 * kib, 1, 64 * kib},     // one part at a time: the strictest backpressure
        {64 * kib, 3, 256 * kib},    // a window across object boundaries
        {100'003, 8, 1 * mib},       // parts that do not align with anything
        {8 * mib, 8, 0},             // the defaults: every object is one part
    };
    for (const auto& cfg : configs) {
        CAPTURE(cfg.part_size, cfg.max_connections, cfg.window);
        http::stream_options so;
        so.part_size = cfg.part_size;
        so.max_connections = cfg.max_connections;
        so.window_bytes = cfg.window;
        auto stream = http::http_objects(ds.urls(), so);
        auto* s = stream.get();
        reader r(std::move(stream), {.batch_size = 37, .format = data_format::recordio, .memory_budget = 64 * mib});
        const auto got = payloads_of(r);
        CHECK(got.size() == ds.payloads.size());
        CHECK(got == ds.payloads);
        CHECK(r.stats().sources == ds.names.size());
        CHECK(s->peak_window_bytes() > 0);
        CHECK(s->peak_window_bytes() <= s->window_bytes());
        if (cfg.window != 0)
            CHECK(s->window_bytes() == cfg.window);
    }
}

TEST_CASE("The window follows the reader's memory budget and the first batch does not wait for a whole part", "[http]")
{
    served_data_set ds({40000}, 1000);  // one ~20 MB object
    http::stream_options so;
    so.part_size = 16 * mib;
    auto stream = http::http_objects(ds.urls(), so);
    auto* s = stream.get();
    const auto start = std::chrono::steady_clock::now();
    reader r(std::move(stream), {.batch_size = 10, .format = data_format::recordio, .memory_budget = 64 * mib});
    // 64 MiB budget: half for the window, rounded down to whole parts.
    CHECK(s->window_bytes() == 32 * mib);
    auto first = r.next();
    const auto first_batch = std::chrono::steady_clock::now() - start;
    REQUIRE(first);
    CHECK(first->size() == 10);
    // Bytes are handed over as they arrive: the first batch needs a few KiB of the 16 MiB
    // part. (A generous bound: this is about not waiting for the part, not about speed.)
    CHECK(first_batch < std::chrono::milliseconds(500));
    std::size_t rows = first->size();
    while (auto b = r.next())
        rows += b->size();
    CHECK(rows == ds.payloads.size());
    CHECK(s->peak_window_bytes() <= 32 * mib);
}

TEST_CASE("A missing object fails with the URL and the HTTP status, after the objects before it", "[http]")
{
    served_data_set ds({100}, 100);
    auto urls = ds.urls();
    urls.push_back(ds.server->url() + "/no-such-object.rec");
    reader r(http::http_objects(urls), {.batch_size = 10, .format = data_format::recordio});
    std::size_t rows = 0;
    auto e = error_from([&] {
        for (auto& b : r)
            rows += b.size();
    });
    CHECK(rows == 100);
    CHECK(e.code() == errc::http_error);
    CHECK(e.where().source == ds.server->url() + "/no-such-object.rec");
    CHECK_THAT(std::string(e.what()), Catch::Contains("HTTP 404"));
}

TEST_CASE("An object replaced between two ranges is an error, never a splice of two versions", "[http]")
{
    served_data_set ds({2000}, 200);  // ~200 KB: several 64 KiB parts
    http::stream_options so;
    so.part_size = 64 * kib;
    so.window_bytes = 64 * kib;  // the second range is not requested before the first is read
    so.max_connections = 1;
    reader r(http::http_objects(ds.urls(), so),
             {.batch_size = 5, .format = data_format::recordio, .prefetch_batches = 1, .memory_budget = 20 * mib,
              .max_record_size = 1 * mib, .read_size = 1 * mib});
    auto first = r.next();
    REQUIRE(first);
    // Replace the object: same size, other bytes, and a new modification time, which changes
    // nginx's ETag.
    const std::string path = ds.dir / ds.names.front();
    auto bytes = test::read_file(path);
    for (std::size_t i = bytes.size() / 2; i < bytes.size(); ++i)
        bytes[i] = std::byte{'z'};
    const auto mtime = std::filesystem::last_write_time(path);
    test::write_file(path, bytes);
    std::filesystem::last_write_time(path, mtime + std::chrono::seconds(10));

    auto e = error_from([&] {
        while (r.next()) {
        }
    });
    CHECK(e.code() == errc::object_changed);
    CHECK_THAT(std::string(e.what()), Catch::Contains(ds.names.front()));
}

TEST_CASE("Leaving the loop early stops the stream promptly, transfers in flight included", "[http]")
{
    served_data_set ds({30000, 30000, 30000}, 1000);
    for (int i = 0; i < 3; ++i) {
        const auto start = std::chrono::steady_clock::now();
        {
            http::stream_options so;
            so.part_size = 1 * mib;
            reader r(http::http_objects(ds.urls(), so), {.batch_size = 100, .format = data_format::recordio});
            int batches = 0;
            for (auto& b : r) {
                (void)b;
                if (++batches == 3 + i * 50)
                    break;
            }
        }
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    }
    // Dropped right after the first batch, with whole parts still arriving: a part released
    // before its GET has finished keeps its buffer until the GET is done.
    for (int i = 0; i < 20; ++i) {
        reader r(http::http_objects(ds.urls()), {.batch_size = 100, .format = data_format::recordio});
        REQUIRE(r.next());
    }
}

// ----- faults: retries, resumption and the errors that must not be retried ---------------------

namespace {

/// A RecordIO object of numbered payloads served by a fault-injecting server.
struct faulty_object {
    test::fault_server server;
    std::string path = "/bucket/data.rec";
    std::vector<std::string> payloads;

    explicit faulty_object(std::size_t records = 20000)
    {
        std::vector<std::byte> file;
        for (std::size_t i = 0; i < records; ++i) {
            payloads.push_back("record-" + std::to_string(i) + std::string(i % 97, 'x'));
            append_recordio(file, std::as_bytes(std::span(payloads.back().data(), payloads.back().size())));
        }
        server.put(path, std::string(reinterpret_cast<const char*>(file.data()), file.size()));
    }

    std::string url() const { return server.url() + path; }
};

/// Small parts (so an object has many ranges), quick retries with a fixed seed, and a short
/// low-speed window (so a stalled connection is noticed within a second).
http::stream_options fault_options()
{
    http::stream_options so;
    so.part_size = 128 * kib;
    so.max_connections = 3;
    so.retry.base_delay = std::chrono::milliseconds(1);
    so.retry.max_delay = std::chrono::milliseconds(20);
    so.retry.seed = 42;
    so.client.low_speed_limit = 64 * kib;
    so.client.low_speed_time = std::chrono::seconds(1);
    return so;
}

std::vector<std::string> read_through(const faulty_object& o, http::stream_options so = fault_options())
{
    reader r(http::http_objects({o.url()}, so), {.batch_size = 500, .format = data_format::recordio});
    return payloads_of(r);
}

} // namespace

TEST_CASE("Transient faults are retried and resumed: every record exactly once, byte for byte", "[http][faults]")
{
    using test::fault;
    struct named_fault {
        const char* name;
        fault f;
    };
    // Each fault hits a range past the first part, in the middle of the object.
    const named_fault faults[] = {
        {"connection closed mid-body", fault::drop_after(10'000)},
        {"connection reset mid-body", fault::drop_after(70'000, true)},
        {"short body", fault::short_body()},
        {"503 SlowDown", fault::status(503, "SlowDown", "Please reduce your request rate.")},
        {"500 InternalError", fault::status(500, "InternalError", "We encountered an internal error.")},
        {"stall past the low-speed limit", fault::stall_after(1000, std::chrono::milliseconds(2500))},
        {"slow but steady", fault::trickle(256 * kib)},
    };
    for (const auto& [name, f] : faults) {
        CAPTURE(name);
        faulty_object o;
        o.server.script({f.only_from(256 * kib), f.only_from(256 * kib)});  // the same fault twice in a row
        const auto start = std::chrono::steady_clock::now();
        const auto got = read_through(o);
        CHECK(got.size() == o.payloads.size());
        CHECK(got == o.payloads);
        CHECK(o.server.script_remaining() == 0);
        CHECK(o.server.faults_injected() == 2);
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
        // After a drop, the retry asks for the rest of the range only: from the first byte
        // the failed request did not deliver, to the same end.
        const auto reqs = o.server.requests();
        for (const auto& req : reqs) {
            if (req.range.rfind("bytes=0-", 0) != 0)
                CHECK(req.if_match == o.server.etag(o.path));  // every range after the first carries it
            if (req.fault != test::fault_kind::drop_after)
                continue;
            const auto dash = req.range.find('-');
            const std::uint64_t first = std::stoull(req.range.substr(6, dash - 6));
            const std::string resumed = "bytes=" + std::to_string(first + f.bytes) + req.range.substr(dash);
            CHECK(std::any_of(reqs.begin(), reqs.end(), [&](const auto& r) { return r.range == resumed; }));
        }
    }
}

TEST_CASE("Random faults at a fixed rate still deliver the clean run's records", "[http][faults]")
{
    using test::fault;
    faulty_object o(60000);
    const auto clean = read_through(o);
    REQUIRE(clean == o.payloads);
    o.server.random_faults(0.3,
                           {fault::drop_after(5000), fault::drop_after(60'000, true), fault::short_body(),
                            fault::status(503, "SlowDown"), fault::status(500, "InternalError")},
                           7);
    auto so = fault_options();
    so.retry.budget_capacity = 5000;  // 30 % of requests fail: more than the default budget allows
    const auto got = read_through(o, so);
    CHECK(got == clean);
    CHECK(o.server.faults_injected() > 5);
}

TEST_CASE("Errors that retrying cannot fix fail at once, naming the object, the offset and the cause", "[http][faults]")
{
    using test::fault;
    SECTION("403 AccessDenied is not retried")
    {
        faulty_object o;
        o.server.script({fault::status(403, "AccessDenied", "Access Denied").only_from(256 * kib)});
        reader r(http::http_objects({o.url()}, fault_options()), {.batch_size = 1, .format = data_format::recordio});
        std::size_t rows = 0;
        auto e = error_from([&] {
            for (auto& b : r)
                rows += b.size();
        });
        // Every record that lies wholly before the refused range arrives before the error.
        std::size_t before = 0;
        for (std::uint64_t end = 0; before < o.payloads.size(); ++before) {
            end += 8 + (o.payloads[before].size() + 3) / 4 * 4;  // RecordIO header and padded payload
            if (end > 256 * kib)
                break;
        }
        CHECK(rows == before);
        CHECK(e.code() == errc::http_error);
        CHECK(e.where().source == o.url());
        CHECK_THAT(std::string(e.what()), Catch::Contains("403") && Catch::Contains("AccessDenied")
                                              && Catch::Contains("Access Denied"));
        std::size_t refused = 0;
        for (const auto& req : o.server.requests())
            refused += req.header("range").rfind("bytes=262144-", 0) == 0;
        CHECK(refused == 1);  // asked once, never again
    }
    SECTION("a range answered with other bytes than asked is a protocol error")
    {
        faulty_object o;
        o.server.script({fault::wrong_content_range().only_from(256 * kib)});
        reader r(http::http_objects({o.url()}, fault_options()), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::bad_http_response);
        CHECK(e.where().source == o.url());
    }
    SECTION("an object replaced between ranges fails as object_changed")
    {
        faulty_object o;
        o.server.script({fault::change_object().only_from(256 * kib)});
        reader r(http::http_objects({o.url()}, fault_options()), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::object_changed);
    }
    SECTION("a server that keeps failing exhausts the retries with a clear error")
    {
        faulty_object o;
        std::vector<fault> script(50, fault::status(503, "SlowDown").only_from(256 * kib));
        o.server.script(script);
        auto so = fault_options();
        so.retry.max_attempts = 4;
        reader r(http::http_objects({o.url()}, so), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::retries_exhausted);
        CHECK_THAT(std::string(e.what()), Catch::Contains("SlowDown") && Catch::Contains("4 attempts"));
    }
}
