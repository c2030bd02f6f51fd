// Tests of the ranged-GET object stream through the reader, against nginx on loopback.
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/remote/http_store.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "source_helpers.hpp"
#include "fault_server.hpp"
#include "reader_helpers.hpp"
#include "run_coro.hpp"
#include "test_servers.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

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
        remote::stream_options so;
        so.part_size = cfg.part_size;
        so.max_connections = cfg.max_connections;
        so.window_bytes = cfg.window;
        auto stream = remote::http_objects(ds.urls(), so);
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
    remote::stream_options so;
    so.part_size = 16 * mib;
    auto stream = remote::http_objects(ds.urls(), so);
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
    reader r(remote::http_objects(urls), {.batch_size = 10, .format = data_format::recordio});
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
    remote::stream_options so;
    so.part_size = 64 * kib;
    so.window_bytes = 64 * kib;  // the second range is not requested before the first is read
    so.max_connections = 1;
    reader r(remote::http_objects(ds.urls(), so),
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
            remote::stream_options so;
            so.part_size = 1 * mib;
            reader r(remote::http_objects(ds.urls(), so), {.batch_size = 100, .format = data_format::recordio});
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
        reader r(remote::http_objects(ds.urls()), {.batch_size = 100, .format = data_format::recordio});
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
remote::stream_options fault_options()
{
    remote::stream_options so;
    so.part_size = 128 * kib;
    so.max_connections = 3;
    so.retry.base_delay = std::chrono::milliseconds(1);
    so.retry.max_delay = std::chrono::milliseconds(20);
    so.retry.seed = 42;
    so.client.low_speed_limit = 64 * kib;
    so.client.low_speed_time = std::chrono::seconds(1);
    return so;
}

std::vector<std::string> read_through(const faulty_object& o, remote::stream_options so = fault_options())
{
    reader r(remote::http_objects({o.url()}, so), {.batch_size = 500, .format = data_format::recordio});
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
        // A plain URL's errors are read as S3 documents: the code, not the status, says "throttled".
        {"400 SlowDown", fault::status(400, "SlowDown", "Please reduce your request rate.")},
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
    // One connection, so the ranges reach the server in order and the fault hits the range
    // that starts at 256 KiB (with several, a later range can arrive first and take it).
    auto so = fault_options();
    so.max_connections = 1;
    SECTION("403 AccessDenied is not retried")
    {
        faulty_object o;
        o.server.script({fault::status(403, "AccessDenied", "Access Denied").only_from(256 * kib)});
        reader r(remote::http_objects({o.url()}, so), {.batch_size = 1, .format = data_format::recordio});
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
        CHECK(e.where().byte_offset == 256 * kib);
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
        reader r(remote::http_objects({o.url()}, so), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::bad_http_response);
        CHECK(e.where().source == o.url());
        CHECK(e.where().byte_offset == 256 * kib);
    }
    SECTION("an object replaced between ranges fails as object_changed")
    {
        faulty_object o;
        o.server.script({fault::change_object().only_from(256 * kib)});
        reader r(remote::http_objects({o.url()}, so), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::object_changed);
        CHECK(e.where().source == o.url());
        CHECK(e.where().byte_offset == 256 * kib);  // the first byte of the range that found the new version
    }
    SECTION("a server that keeps failing exhausts the retries with a clear error")
    {
        faulty_object o;
        std::vector<fault> script(50, fault::status(503, "SlowDown").only_from(256 * kib));
        o.server.script(script);
        so.retry.max_attempts = 4;
        reader r(remote::http_objects({o.url()}, so), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::retries_exhausted);
        CHECK(e.where().source == o.url());
        CHECK(e.where().byte_offset == 256 * kib);  // the first byte no attempt delivered
        CHECK_THAT(std::string(e.what()), Catch::Contains("SlowDown") && Catch::Contains("4 attempts"));
    }
}

namespace {

/// Plain ranged GETs whose failed responses keep `request_builder`'s defaults: judged by the
/// status line alone, as a store whose error bodies mean nothing to pipemode would be.
class status_line_requests final : public remote::request_builder {
public:
    asio::awaitable<http::request> async_make(http::client&, const remote::object_info& object, std::uint64_t first,
                                              std::uint64_t last, std::string if_match) override
    {
        http::request r;
        r.url = object.url;
        r.headers.emplace_back("Range", "bytes=" + std::to_string(first) + '-' + std::to_string(last));
        if (!if_match.empty())
            r.headers.emplace_back("If-Match", std::move(if_match));
        co_return r;
    }
};

std::unique_ptr<remote::object_stream> status_line_stream(const faulty_object& o, remote::stream_options so)
{
    std::vector<remote::object_info> objects{remote::object_info{.url = o.url(), .name = o.url()}};
    return std::make_unique<remote::object_stream>(std::make_unique<remote::object_list>(std::move(objects), "1 URL"),
                                                   std::make_unique<status_line_requests>(), std::move(so));
}

} // namespace

TEST_CASE("A request builder's default error handling reads the status line, not an S3 body", "[http][faults]")
{
    using test::fault;
    auto so = fault_options();
    so.max_connections = 1;  // the ranges reach the server in order: the fault hits 256 KiB
    SECTION("a 400 is not retried though its body says SlowDown")
    {
        faulty_object o;
        o.server.script({fault::status(400, "SlowDown", "Please reduce your request rate.").only_from(256 * kib)});
        reader r(status_line_stream(o, so), {.batch_size = 500, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(r); });
        CHECK(e.code() == errc::http_error);
        CHECK(e.where().source == o.url());
        CHECK(e.where().byte_offset == 256 * kib);
        const std::string what = e.what();
        CHECK_THAT(what, Catch::Contains(o.url() + ": HTTP 400 Bad Request"));
        CHECK_THAT(what, !Catch::Contains("SlowDown") && !Catch::Contains("S3"));
        std::size_t refused = 0;
        for (const auto& req : o.server.requests())
            refused += req.header("range").rfind("bytes=262144-", 0) == 0;
        CHECK(refused == 1);  // asked once, never again
    }
    SECTION("a 503 is retried, whatever its body, and every record arrives")
    {
        faulty_object o;
        o.server.script({fault::status(503, "SlowDown").only_from(256 * kib), fault::status(503, "SlowDown").only_from(256 * kib)});
        reader r(status_line_stream(o, so), {.batch_size = 500, .format = data_format::recordio});
        CHECK(payloads_of(r) == o.payloads);
        CHECK(o.server.faults_injected() == 2);
    }
}

// ----- byte ranges of objects ------------------------------------------------------------------

namespace {

/// What one object's byte source delivered.
struct range_read {
    std::vector<std::byte> bytes;
    error_code ec;            ///< eof when the source ended well
    std::string detail;       ///< the source's error detail
    std::uint64_t start = 0;  ///< its start_offset()
};

/// Reads every source of `stream` to its end (stopping after a failed one, as the stream does),
/// then destroys the stream, all on one io_context.
std::vector<range_read> read_ranges(std::unique_ptr<remote::object_stream> stream)
{
    return test::run_coro([&]() -> asio::awaitable<std::vector<range_read>> {
        const auto ex = co_await asio::this_coro::executor;
        const source_context ctx{ex, ex};
        std::vector<range_read> out;
        for (;;) {
            auto source = co_await stream->async_next_source(ctx);
            if (!source)
                break;
            auto d = co_await test::read_all(*source);
            out.push_back({std::move(d.bytes), d.ec, source->error_detail(), source->start_offset()});
            if (d.ec != asio::error::eof)
                break;
        }
        stream.reset();
        co_return out;
    });
}

/// A byte range of an object, and the bytes [first, min(end, size)) it must deliver.
struct byte_range_case {
    std::uint64_t first;
    std::optional<std::uint64_t> end;
};

std::vector<std::byte> slice(const std::vector<std::byte>& all, const byte_range_case& r)
{
    const std::uint64_t stop = std::min<std::uint64_t>(r.end.value_or(all.size()), all.size());
    if (r.first >= stop)
        return {};
    return {all.begin() + static_cast<std::ptrdiff_t>(r.first), all.begin() + static_cast<std::ptrdiff_t>(stop)};
}

constexpr std::uint64_t range_part = 64 * kib;
constexpr std::uint64_t range_object_size = 5 * range_part + 12'345;  // six parts, the last one short

/// Ranges of a `range_object_size`-byte object read in `range_part` parts.
const std::vector<byte_range_case>& range_cases()
{
    constexpr std::uint64_t p = range_part, n = range_object_size;
    static const std::vector<byte_range_case> cases{
        {0, std::nullopt},            // the whole object
        {0, 1000},                    // a prefix inside the first part
        {1000, 50'000},               // inside one part
        {1000, 3 * p + 7},            // from mid-part across part boundaries
        {p, 2 * p},                   // exactly one part, aligned
        {100, 3 * p},                 // ending exactly at a part boundary
        {2 * p - 1, 2 * p + 1},       // two bytes astride a boundary
        {p + 17, std::nullopt},       // from mid-object to the end
        {4 * p + 3, n + 100'000},     // an end past the object: clamped
        {n - 1, std::nullopt},        // the last byte
        {n, std::nullopt},            // starting at the end: empty
        {n, n + 10},                  // the same, with an end
        {5000, 5000},                 // empty range
        {7000, 10},                   // an end before the first byte: empty
        {0, 0},                       // empty at 0
    };
    return cases;
}

/// Options with small parts, so a range spans many of them.
remote::stream_options range_options(std::size_t max_connections, std::size_t window)
{
    auto so = fault_options();
    so.part_size = range_part;
    so.max_connections = max_connections;
    so.window_bytes = window;
    return so;
}

/// The objects of `cases`, all at `url`, with or without their size (and `etag`), as a
/// listing would give them.
std::vector<remote::object_info> range_objects(const std::string& url, const std::vector<byte_range_case>& cases,
                                             bool known_size, std::uint64_t size = range_object_size,
                                             const std::string& etag = {})
{
    std::vector<remote::object_info> objects;
    for (const auto& c : cases) {
        remote::object_info o;
        o.url = url;
        o.name = url;
        if (known_size) {
            o.size = size;
            o.etag = etag;
        }
        o.first = c.first;
        o.end = c.end;
        objects.push_back(std::move(o));
    }
    return objects;
}

std::unique_ptr<remote::object_stream> range_stream(std::vector<remote::object_info> objects, remote::stream_options so)
{
    const auto n = objects.size();
    return std::make_unique<remote::object_stream>(std::make_unique<remote::object_list>(std::move(objects),
                                                                                     std::to_string(n) + " ranges"),
                                                 std::make_unique<remote::plain_http_requests>(), std::move(so));
}

/// Checks that each source delivered its range's bytes exactly and started at its `first`.
void check_ranges(const std::vector<range_read>& got, const std::vector<byte_range_case>& cases,
                  const std::vector<std::byte>& all)
{
    REQUIRE(got.size() == cases.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(i, cases[i].first, cases[i].end.value_or(0), got[i].detail);
        CHECK(got[i].ec == asio::error::eof);
        CHECK(got[i].start == cases[i].first);
        const auto want = slice(all, cases[i]);
        CHECK(got[i].bytes.size() == want.size());
        CHECK(got[i].bytes == want);
    }
}

/// The [first, last] of a `Range: bytes=first-last` header.
std::pair<std::uint64_t, std::uint64_t> range_of(const std::string& header)
{
    const auto dash = header.find('-');
    return {std::stoull(header.substr(6, dash - 6)), std::stoull(header.substr(dash + 1))};
}

} // namespace

TEST_CASE("A byte range of an object delivers exactly its bytes, from nginx, with or without a known size",
          "[http][ranges]")
{
    test::temp_dir dir;
    const auto bytes = test::pattern(range_object_size, 3);
    test::write_file(dir / "blob.bin", bytes);
    test::nginx_server server(dir.path());
    const std::string url = server.url("blob.bin");
    struct config {
        std::size_t max_connections, window;
    };
    // Every range of the table in one stream: many ranges of the same object fetched
    // concurrently, the window running across them.
    const config configs[] = {{1, range_part}, {4, 4 * range_part}, {8, 32 * range_part}};
    for (const bool known : {true, false}) {
        for (const auto& cfg : configs) {
            CAPTURE(known, cfg.max_connections, cfg.window);
            auto got = read_ranges(range_stream(range_objects(url, range_cases(), known),
                                                range_options(cfg.max_connections, cfg.window)));
            check_ranges(got, range_cases(), bytes);
        }
    }
    // Each range alone in its stream, with the default (8 MiB) parts.
    for (const auto& c : range_cases()) {
        for (const bool known : {true, false}) {
            CAPTURE(c.first, c.end.value_or(0), known);
            auto got = read_ranges(range_stream(range_objects(url, {c}, known), remote::stream_options{}));
            check_ranges(got, {c}, bytes);
        }
    }
}

TEST_CASE("Ranged reads ask only for the bytes of the range, with If-Match once the ETag is known", "[http][ranges]")
{
    test::fault_server server;
    const auto bytes = test::pattern(range_object_size, 5);
    server.put("/bucket/blob", std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    const std::string url = server.url() + "/bucket/blob";
    for (const bool known : {true, false}) {
        for (const auto& c : range_cases()) {
            CAPTURE(known, c.first, c.end.value_or(0));
            const std::size_t before = server.requests().size();
            const auto objects = range_objects(url, {c}, known, range_object_size, server.etag("/bucket/blob"));
            auto got = read_ranges(range_stream(objects, range_options(3, 8 * range_part)));
            check_ranges(got, {c}, bytes);
            const auto all = server.requests();
            const std::vector<test::request_record> reqs(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
            const std::uint64_t stop = std::min(c.end.value_or(range_object_size), range_object_size);
            const bool empty = c.first >= stop;
            if (empty && (known || (c.end && *c.end <= c.first))) {
                CHECK(reqs.empty());  // decided before sending anything
                continue;
            }
            REQUIRE(!reqs.empty());
            // With the size known, concurrent ranges reach the server in any order; without
            // it, the first request goes alone, since its answer gives the size.
            std::uint64_t lowest = range_of(reqs.front().range).first;
            for (const auto& r : reqs)
                lowest = std::min(lowest, range_of(r.range).first);
            CHECK(lowest == c.first);
            if (!known)
                CHECK(range_of(reqs.front().range).first == c.first);
            std::uint64_t covered = 0;
            for (std::size_t i = 0; i < reqs.size(); ++i) {
                CAPTURE(reqs[i].range);
                const auto [a, b] = range_of(reqs[i].range);
                CHECK(a >= c.first);
                if (known || i > 0) {
                    // Never past the range's end; the listing's ETag, or the first answer's.
                    CHECK(b < stop);
                    CHECK(reqs[i].if_match == server.etag("/bucket/blob"));
                }
                if (a < stop)
                    covered += std::min(b + 1, stop) - a;
            }
            CHECK(covered == (empty ? 0 : stop - c.first));  // no byte asked for twice
        }
    }
}

TEST_CASE("A range that starts past the object's end fails naming the object and both offsets", "[http][ranges]")
{
    test::temp_dir dir;
    const auto bytes = test::pattern(range_object_size, 7);
    test::write_file(dir / "blob.bin", bytes);
    test::nginx_server nginx(dir.path());
    test::fault_server faults;
    faults.put("/bucket/blob", std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    const std::uint64_t first = range_object_size + 1;
    for (const std::string& url : {nginx.url("blob.bin"), faults.url() + "/bucket/blob"}) {
        for (const bool known : {true, false}) {
            CAPTURE(url, known);
            // A good range first: it is delivered before the failing one.
            auto objects = range_objects(url, {{100, 200}, {first, first + 10}, {0, std::nullopt}}, known);
            auto got = read_ranges(range_stream(objects, range_options(2, 4 * range_part)));
            REQUIRE(got.size() == 2);
            CHECK(got[0].bytes == slice(bytes, {100, 200}));
            CHECK(got[1].ec == errc::range_past_end);
            CHECK(got[1].start == first);
            CHECK_THAT(got[1].detail, Catch::Contains(std::to_string(first))
                                          && Catch::Contains(std::to_string(range_object_size)));

            // Through the reader: the error names the object and the offsets.
            reader r(range_stream(range_objects(url, {{first, std::nullopt}}, known), range_options(2, 4 * range_part)),
                     {.batch_size = 10, .format = data_format::recordio});
            auto e = error_from([&] { payloads_of(r); });
            CHECK(e.code() == errc::range_past_end);
            CHECK(e.where().source == url);
            CHECK_THAT(std::string(e.what()), Catch::Contains(url) && Catch::Contains(std::to_string(first))
                                                  && Catch::Contains(std::to_string(range_object_size)));
        }
    }
}

TEST_CASE("Faults in the middle of a range are resumed from the first missing byte, byte for byte", "[http][ranges][faults]")
{
    using test::fault;
    const auto bytes = test::pattern(range_object_size, 11);
    const byte_range_case c{range_part / 2 + 3, 4 * range_part + 999};  // 4 parts, none aligned to the range
    const std::uint64_t hit = c.first + 2 * range_part;  // the third part of the range
    const fault faults[] = {fault::drop_after(10'000), fault::drop_after(30'000, true), fault::short_body(),
                            fault::status(503, "SlowDown")};
    for (const bool known : {true, false}) {
        for (const auto& f : faults) {
            CAPTURE(known, test::to_string(f.kind));
            test::fault_server server;
            server.put("/bucket/blob", std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
            server.script({f.only_from(hit), f.only_from(hit)});
            const std::string url = server.url() + "/bucket/blob";
            auto got = read_ranges(range_stream(range_objects(url, {c}, known), range_options(3, 8 * range_part)));
            check_ranges(got, {c}, bytes);
            CHECK(server.faults_injected() == 2);
            const auto reqs = server.requests();
            for (const auto& req : reqs) {
                const auto [a, b] = range_of(req.range);
                CHECK(a >= c.first);
                CHECK(b < *c.end);
                if (req.fault != test::fault_kind::drop_after)
                    continue;
                const std::string resumed = "bytes=" + std::to_string(a + f.bytes) + "-" + std::to_string(b);
                CHECK(std::any_of(reqs.begin(), reqs.end(), [&](const auto& r) { return r.range == resumed; }));
            }
        }
    }
}

TEST_CASE("Random faults across many concurrent ranges still deliver every range byte for byte", "[http][ranges][faults]")
{
    using test::fault;
    const auto bytes = test::pattern(range_object_size, 13);
    {
        test::fault_server server;
        server.put("/bucket/blob", std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
        server.random_faults(0.3, {fault::drop_after(5000), fault::drop_after(20'000, true), fault::short_body(),
                                   fault::status(500, "InternalError")},
                             9);
        auto so = range_options(4, 6 * range_part);
        so.retry.budget_capacity = 5000;
        auto got = read_ranges(range_stream(range_objects(server.url() + "/bucket/blob", range_cases(), false), so));
        check_ranges(got, range_cases(), bytes);
        CHECK(server.faults_injected() > 3);
    }
}

TEST_CASE("A range of a RecordIO object decodes its records and reports object offsets", "[http][ranges]")
{
    faulty_object o(3000);
    // Record boundaries: the offset of each record's header.
    std::vector<std::uint64_t> starts{0};
    for (const auto& p : o.payloads)
        starts.push_back(starts.back() + 8 + (p.size() + 3) / 4 * 4);
    const std::size_t from = 1000, to = 2100;
    for (const bool known : {true, false}) {
        CAPTURE(known);
        auto objects = range_objects(o.url(), {{starts[from], starts[to]}}, known, starts.back());
        reader r(range_stream(objects, range_options(2, 4 * range_part)),
                 {.batch_size = 64, .format = data_format::recordio});
        const auto got = payloads_of(r);
        CHECK(got == std::vector<std::string>(o.payloads.begin() + from, o.payloads.begin() + to));

        // A range starting inside a record: the decoder's error is at the object's offset.
        auto inside = range_objects(o.url(), {{starts[from] + 4, std::nullopt}}, known, starts.back());
        reader bad(range_stream(inside, range_options(2, 4 * range_part)),
                   {.batch_size = 64, .format = data_format::recordio});
        auto e = error_from([&] { payloads_of(bad); });
        CHECK(e.where().source == o.url());
        CHECK(e.where().byte_offset == starts[from] + 4);
    }
}

namespace {

/// Asks for two ranges at once, which the fault server (as RFC 9110 allows) answers with the
/// whole object: a server that does not support ranges.
class whole_object_requests final : public remote::request_builder {
public:
    asio::awaitable<http::request> async_make(http::client&, const remote::object_info& object, std::uint64_t first,
                                              std::uint64_t last, std::string if_match) override
    {
        http::request r;
        r.url = object.url;
        r.headers.emplace_back("Range", "bytes=" + std::to_string(first) + '-' + std::to_string(last) + ",0-0");
        if (!if_match.empty())
            r.headers.emplace_back("If-Match", std::move(if_match));
        co_return r;
    }
};

} // namespace

TEST_CASE("A whole-object answer (HTTP 200) serves only a range from byte 0 that fits one part", "[http][ranges]")
{
    test::fault_server server;
    const auto bytes = test::pattern(range_object_size, 17);
    server.put("/bucket/blob", std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    const std::string url = server.url() + "/bucket/blob";
    auto stream_of = [&](const byte_range_case& c, bool known) {
        auto objects = range_objects(url, {c}, known);
        return std::make_unique<remote::object_stream>(std::make_unique<remote::object_list>(std::move(objects), "1 range"),
                                                     std::make_unique<whole_object_requests>(),
                                                     range_options(2, 4 * range_part));
    };
    for (const bool known : {true, false}) {
        CAPTURE(known);
        // The range's bytes, and no more, though the whole object was on its way.
        const byte_range_case fits{0, 1000};
        auto got = read_ranges(stream_of(fits, known));
        check_ranges(got, {fits}, bytes);
        // Not from byte 0, or longer than a part: the server cannot serve it.
        for (const byte_range_case c : {byte_range_case{10, 1000}, byte_range_case{0, 2 * range_part}}) {
            CAPTURE(c.first, c.end.value_or(0));
            auto failed = read_ranges(stream_of(c, known));
            REQUIRE(failed.size() == 1);
            CHECK(failed[0].ec == errc::range_not_supported);
            CHECK(failed[0].bytes.empty());
        }
    }
}

TEST_CASE("Sources let go of before their end give their window back: many mid-object ranges through one stream",
          "[http][ranges]")
{
    // Byte-range shards end when their last record is found, and a reader resumed with fewer
    // ranks reads several ranks' tails in one epoch: each such source is dropped with parts
    // still queued or in flight. Their window bytes must return, or after a few sources the
    // stream can issue nothing and the reader waits for ever.
    test::temp_dir dir;
    const auto bytes = test::pattern(range_object_size, 9);
    test::write_file(dir / "blob.bin", bytes);
    test::nginx_server server(dir.path());
    const std::string url = server.url("blob.bin");
    std::vector<byte_range_case> cases;
    for (std::uint64_t i = 0; i < 12; ++i)
        cases.push_back({i * range_part / 4, range_object_size - i * range_part / 8});
    for (const bool known : {true, false}) {
        CAPTURE(known);
        // A window of two parts and two connections: two sources holding their parts would
        // be enough to stall the stream.
        auto stream = range_stream(range_objects(url, cases, known), range_options(2, 2 * range_part));
        std::size_t peak = 0, window = 0;
        const auto firsts = test::run_coro([&]() -> asio::awaitable<std::vector<std::vector<std::byte>>> {
            const auto ex = co_await asio::this_coro::executor;
            const source_context ctx{ex, ex};
            std::vector<std::vector<std::byte>> out;
            for (;;) {
                auto source = co_await stream->async_next_source(ctx);
                if (!source)
                    break;
                // Only the first chunk of each source, then let it go.
                auto [ec, chunk] = co_await source->async_next();
                REQUIRE_FALSE(ec);
                out.emplace_back(chunk.begin(), chunk.end());
            }
            peak = stream->peak_window_bytes();
            window = stream->window_bytes();
            stream.reset();  // on the reader's executor, whose io_context the stream's waker needs
            co_return out;
        });
        REQUIRE(firsts.size() == cases.size());
        for (std::size_t i = 0; i < cases.size(); ++i) {
            CAPTURE(i);
            const auto want = slice(bytes, cases[i]);
            REQUIRE(!firsts[i].empty());
            REQUIRE(firsts[i].size() <= want.size());
            CHECK(std::equal(firsts[i].begin(), firsts[i].end(), want.begin()));
        }
        CHECK(peak <= window);
    }
}

TEST_CASE("Byte-range shards resumed by fewer ranks over HTTP: every remaining record once, and no hang",
          "[http][ranges]")
{
    // Three ranks read byte-range shards of four objects and stop at different places; one
    // rank resumes all three positions in one reader and one stream. Every source of that
    // reader but the last ends before its object does (a range's end, or another rank's
    // tail), which is where window bytes of queued parts used to leak until the stream stalled.
    served_data_set ds({500, 800, 300, 650}, 1500, 11);
    auto so = fault_options();
    so.part_size = 32 * kib;
    so.max_connections = 2;
    so.window_bytes = 2 * so.part_size;
    const auto store = [&] { return remote::http_store({ds.server->url("json-index/")}, so); };
    const reader_options ro{.batch_size = 7, .format = data_format::recordio, .memory_budget = 16 * mib,
                            .max_record_size = 1 * mib};
    const auto options_for = [](std::size_t rank, std::size_t world) {
        return data_set_options{.plan = {.shard = {.rank = rank, .world_size = world, .mode = shard_mode::by_byte_range}}};
    };
    std::multiset<std::string> got;
    const auto take = [&](const batch& b) {
        const auto& col = b.feature("payload");
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto bytes = col.item(i, 0);
            got.emplace(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
    };
    std::vector<data_set_state> states;
    for (std::size_t rank = 0; rank < 3; ++rank) {
        data_set_reader r(store(), options_for(rank, 3), ro);
        for (std::size_t b = 0; b < 3 + 5 * rank; ++b)  // ranks stop at different places
            if (auto batch = r.next())
                take(*batch);
        states.push_back(data_set_state::from_json(r.state().to_json()));
    }
    auto o = options_for(0, 1);
    o.resume = resume_state(states, 0, 1);
    data_set_reader resumed(store(), o, ro);
    for (auto& b : resumed)
        take(b);
    CHECK(got == std::multiset<std::string>(ds.payloads.begin(), ds.payloads.end()));
}

TEST_CASE("Streams are sized from the throughput target, within the memory budget", "[http][sizing]")
{
    remote::stream_options so;  // 25 Gb/s, 50 MB/s a connection, 8 MiB parts, 512 KiB receive buffers
    auto z = remote::size_stream(so, 1 * gib);
    CHECK(z.max_connections == 63);  // 3.125 GB/s / 50 MB/s, rounded up
    CHECK(z.window == 512 * mib);    // 65 parts wanted, half the budget allowed
    CHECK(z.initial_connections == 32);
    CHECK(z.receive_buffers == 63 * 512 * kib);
    CHECK(z.reserved() == z.window + z.receive_buffers);

    // A small budget bounds the window, and the connections by what their receive buffers cost.
    z = remote::size_stream(so, 64 * mib);
    CHECK(z.window == 32 * mib);
    CHECK(z.max_connections == 16);  // 32 MiB / 4 / 512 KiB
    CHECK(z.initial_connections == 16);
    z = remote::size_stream(so, 1 * mib);
    CHECK(z.window == 8 * mib);  // never less than one part
    CHECK(z.max_connections == 4);

    // A bigger link: more connections and window, as the budget allows.
    so.throughput_target_gbps = 100;
    z = remote::size_stream(so, 8 * gib);
    CHECK(z.max_connections == 250);
    CHECK(z.window == 252 * 8 * mib);
    so.throughput_target_gbps = 10;
    z = remote::size_stream(so, 8 * gib);
    CHECK(z.max_connections == 25);
    CHECK(z.window == 27 * 8 * mib);

    // Network threads: enough to receive the target over TLS at 1.4 CPU s/GB, at most half
    // the cores.
    so.throughput_target_gbps = 25;  // 3.125 GB/s: 4.4 cores of receiving
    CHECK(remote::size_stream(so, gib, 16).network_threads == 5);
    CHECK(remote::size_stream(so, gib, 4).network_threads == 2);
    CHECK(remote::size_stream(so, gib, 2).network_threads == 1);
    CHECK(remote::size_stream(so, gib, 1).network_threads == 1);
    so.throughput_target_gbps = 10;  // 1.75 cores
    CHECK(remote::size_stream(so, gib, 16).network_threads == 2);
    so.throughput_target_gbps = 400;  // 70 cores
    CHECK(remote::size_stream(so, 16 * gib, 96).network_threads == 48);
    so.throughput_target_gbps = 1;   // never more threads than connections
    CHECK(remote::size_stream(so, gib, 16).network_threads == 1);
    so.throughput_target_gbps = 10;

    // Explicit settings win.
    so.max_connections = 3;
    so.window_bytes = 5 * mib;
    so.initial_connections = 2;
    z = remote::size_stream(so, 64 * mib);
    CHECK(z.max_connections == 3);
    CHECK(z.window == 8 * mib);  // at least a part
    CHECK(z.initial_connections == 2);

    CHECK_THROWS_WITH(remote::size_stream(remote::stream_options{.throughput_target_gbps = 0}, gib),
                      Catch::Contains("throughput_target_gbps"));
    CHECK_THROWS_WITH(remote::size_stream(remote::stream_options{.part_size = 0}, gib), Catch::Contains("part_size"));
}

TEST_CASE("Objects of unknown size start together: their first GETs go out at once", "[http][sizing]")
{
    // 40 small objects given as URLs: the old stream fetched them one first byte at a time.
    served_data_set ds(std::vector<std::size_t>(40, 20), 500, 5);
    remote::stream_options so;
    so.max_connections = 16;
    so.initial_connections = 16;
    auto stream = remote::http_objects(ds.urls(), so);
    auto* raw = stream.get();
    reader r(std::move(stream), {.batch_size = 50, .format = data_format::recordio, .memory_budget = 64 * mib});
    CHECK(payloads_of(r) == ds.payloads);
    CHECK(raw->peak_connections() == 16);
}

TEST_CASE("A stream runs on several network threads of its own, or on the caller's executors", "[http][threads]")
{
    served_data_set ds({300, 0, 1, 2000, 57, 900, 400, 1200}, 700, 21);
    const reader_options ro{.batch_size = 37, .format = data_format::recordio, .memory_budget = 64 * mib};
    SECTION("three threads of its own")
    {
        remote::stream_options so;
        so.part_size = 64 * kib;
        so.max_connections = 8;
        so.network_threads = 3;
        auto stream = remote::http_objects(ds.urls(), so);
        auto* s = stream.get();
        reader r(std::move(stream), ro);
        CHECK(s->sizing().network_threads == 3);
        CHECK(payloads_of(r) == ds.payloads);
    }
    SECTION("the caller's two io_contexts, which run on after the stream is gone")
    {
        asio::io_context a(1), b(1);
        auto guard_a = asio::make_work_guard(a);
        auto guard_b = asio::make_work_guard(b);
        std::thread ta([&] { a.run(); });
        std::thread tb([&] { b.run(); });
        for (const bool leave_early : {false, true}) {
            CAPTURE(leave_early);
            remote::stream_options so;
            so.part_size = 64 * kib;
            so.max_connections = 8;
            so.executors = {a.get_executor(), b.get_executor()};
            auto stream = remote::http_objects(ds.urls(), so);
            auto* s = stream.get();
            reader r(std::move(stream), ro);
            CHECK(s->sizing().network_threads == 2);
            if (leave_early) {
                // Destroyed with transfers in flight: they are aborted on the caller's threads.
                CHECK(r.next());
                continue;
            }
            CHECK(payloads_of(r) == ds.payloads);
        }
        guard_a.reset();
        guard_b.reset();
        // The stream's coroutines end once their transfers are aborted, so both run() return.
        ta.join();
        tb.join();
    }
}

TEST_CASE("A part that lags far behind its peers is hedged on another connection and the first answer wins",
          "[http][faults]")
{
    // The seventh part's connection stalls after 1,000 bytes for 30 s, and the low-speed limit
    // is too lax to notice within the test: only a hedge gets the reader past it in seconds.
    faulty_object o(40000);
    o.server.script({test::fault::stall_after(1000, std::chrono::seconds(30)).only_from(6 * 128 * kib)});
    auto so = fault_options();
    so.client.low_speed_limit = 1;
    so.client.low_speed_time = std::chrono::seconds(60);
    auto stream = remote::http_objects({o.url()}, so);
    auto* s = stream.get();
    const auto start = std::chrono::steady_clock::now();
    reader r(std::move(stream), {.batch_size = 500, .format = data_format::recordio});
    CHECK(payloads_of(r) == o.payloads);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took < std::chrono::seconds(15));
    CHECK(s->hedges_sent() >= 1);  // one for the stall; a loaded machine may lag another part
    CHECK(o.server.faults_injected(test::fault_kind::stall) == 1);
}
