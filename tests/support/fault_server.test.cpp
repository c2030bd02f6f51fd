// Tests of the fault_server test server itself, driven by the curl command-line tool: every
// answer and every fault must be what a client sees on the wire, or the network tests built
// on it prove nothing.
#include "fault_server.hpp"

#include <pipemode/s3/listing.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// This file's names stay its own: the files of tests/support/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace fault_server_test {

using pipemode::test::fault;
using pipemode::test::fault_kind;
using pipemode::test::fault_server;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

// Deterministic object content in which every offset is distinguishable from its neighbours.
std::string pattern(std::size_t n, unsigned salt = 0)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 7 + i / 251 + salt) & 0xff);
    return s;
}

struct run_result {
    int exit_code = -1;
    std::string out;
    double seconds = 0;
};

// Runs a shell command and returns its exit code, its whole stdout and how long it took.
run_result run(const std::string& cmd)
{
    run_result r;
    auto start = clock_type::now();
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        r.out.append(buf, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    return r;
}

// curl without progress output, proxies or retries; `args` go before the URL(s).
std::string curl(const std::string& args)
{
    return "curl -s --noproxy '*' --http1.1 " + args;
}

// A response printed by `curl -D -`: status, headers (names lowered) and body.
struct response {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::string header(const std::string& lower_name) const
    {
        for (const auto& [n, v] : headers)
            if (n == lower_name)
                return v;
        return {};
    }
    bool has(const std::string& lower_name) const
    {
        for (const auto& h : headers)
            if (h.first == lower_name)
                return true;
        return false;
    }
};

response parse_response(const std::string& out)
{
    response r;
    auto end = out.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    std::string head = out.substr(0, end);
    r.body = out.substr(end + 4);
    std::size_t pos = 0;
    bool first = true;
    while (pos <= head.size()) {
        auto e = head.find("\r\n", pos);
        std::string line = head.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
        pos = e == std::string::npos ? head.size() + 1 : e + 2;
        if (first) {
            first = false;
            REQUIRE(line.substr(0, 9) == "HTTP/1.1 ");
            r.status = std::stoi(line.substr(9, 3));
            continue;
        }
        auto colon = line.find(':');
        REQUIRE(colon != std::string::npos);
        std::string name = line.substr(0, colon);
        for (char& c : name)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ')
            value.erase(0, 1);
        r.headers.emplace_back(name, value);
    }
    return r;
}

// One request with `curl -D -`; the exit code must be 0.
response fetch(const std::string& args)
{
    auto r = run(curl("-D - " + args));
    INFO(args);
    REQUIRE(r.exit_code == 0);
    return parse_response(r.out);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Polls `cond` until it holds or `limit` passes.
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 2000ms)
{
    auto deadline = clock_type::now() + limit;
    while (!cond()) {
        if (clock_type::now() > deadline)
            return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

} // namespace

TEST_CASE("fault_server serves byte ranges, whole objects and HEAD like S3")
{
    fault_server server;
    const std::string data = pattern(1000);
    server.put("/bucket/key", data);
    const std::string url = server.url() + "/bucket/key";
    const std::string etag = server.etag("/bucket/key");
    CHECK(etag == "\"v1-1000\"");

    auto r = fetch("-r 100-199 " + url);
    CHECK(r.status == 206);
    CHECK(r.header("content-range") == "bytes 100-199/1000");
    CHECK(r.header("content-length") == "100");
    CHECK(r.header("etag") == etag);
    CHECK(r.header("accept-ranges") == "bytes");
    CHECK(r.body == data.substr(100, 100));

    r = fetch("-r 900- " + url);
    CHECK(r.status == 206);
    CHECK(r.header("content-range") == "bytes 900-999/1000");
    CHECK(r.body == data.substr(900));

    r = fetch("-r 950-5000 " + url); // an end past the object is clamped
    CHECK(r.header("content-range") == "bytes 950-999/1000");
    CHECK(r.body == data.substr(950));

    r = fetch("-r -10 " + url); // suffix range
    CHECK(r.header("content-range") == "bytes 990-999/1000");
    CHECK(r.body == data.substr(990));

    r = fetch(url);
    CHECK(r.status == 200);
    CHECK_FALSE(r.has("content-range"));
    CHECK(r.header("content-length") == "1000");
    CHECK(r.header("etag") == etag);
    CHECK(r.body == data);

    auto head = run(curl("-I " + url));
    REQUIRE(head.exit_code == 0);
    r = parse_response(head.out);
    CHECK(r.status == 200);
    CHECK(r.header("content-length") == "1000");
    CHECK(r.header("etag") == etag);
    CHECK(r.body.empty());

    // Path-style keys are matched after percent-decoding, the query ignored; other headers
    // are recorded.
    server.put("/bucket/dir/a b+c", "spaced");
    r = fetch("-H 'Authorization: AWS4-HMAC-SHA256 whatever' '" + server.url() + "/bucket/dir/a%20b+c?x-id=GetObject'");
    CHECK(r.status == 200);
    CHECK(r.body == "spaced");

    auto reqs = server.requests();
    REQUIRE(reqs.size() == 7);
    CHECK(reqs[0].method == "GET");
    CHECK(reqs[0].path == "/bucket/key");
    CHECK(reqs[0].range == "bytes=100-199");
    CHECK(reqs[0].if_match.empty());
    CHECK(reqs[4].range.empty());
    CHECK(reqs[5].method == "HEAD");
    CHECK(reqs[6].target == "/bucket/dir/a%20b+c?x-id=GetObject");
    CHECK(reqs[6].path == "/bucket/dir/a b+c");
    CHECK(reqs[6].header("authorization") == "AWS4-HMAC-SHA256 whatever");
    CHECK(reqs[6].header("USER-AGENT").substr(0, 5) == "curl/");
    CHECK(server.requests_served() == 7);
    CHECK(server.faults_injected() == 0);
    CHECK(server.internal_errors() == 0);
}

TEST_CASE("fault_server answers 416, 412 and 404 with S3 error XML")
{
    fault_server server;
    const std::string data = pattern(1000);
    server.put("/bucket/key", data);
    const std::string url = server.url() + "/bucket/key";
    const std::string etag = server.etag("/bucket/key");

    auto r = fetch("-r 1000-1100 " + url);
    CHECK(r.status == 416);
    CHECK(r.header("content-range") == "bytes */1000");
    CHECK(contains(r.body, "<Error><Code>InvalidRange</Code>"));
    CHECK(r.header("content-length") == std::to_string(r.body.size()));

    r = fetch("-r 0-9 -H 'If-Match: \"v0-1000\"' " + url);
    CHECK(r.status == 412);
    CHECK(contains(r.body, "<Code>PreconditionFailed</Code>"));

    r = fetch("-r 0-9 -H 'If-Match: " + etag + "' " + url);
    CHECK(r.status == 206);
    CHECK(r.body == data.substr(0, 10));
    CHECK(server.requests().back().if_match == etag);

    r = fetch(server.url() + "/bucket/missing/key");
    CHECK(r.status == 404);
    CHECK(contains(r.body, "<Code>NoSuchKey</Code>"));
    CHECK(contains(r.body, "<Key>missing/key</Key>"));
    CHECK(contains(r.body, "<Message>The specified key does not exist.</Message>"));
    CHECK(r.header("content-type") == "application/xml");

    // A put replaces the content under a new ETag; the old one no longer matches.
    server.put("/bucket/key", "new");
    CHECK(server.etag("/bucket/key") != etag);
    r = fetch("-H 'If-Match: " + etag + "' " + url);
    CHECK(r.status == 412);
    r = fetch(url);
    CHECK(r.body == "new");
    CHECK(server.etag("/bucket/nothing").empty());

    server.remove("/bucket/key");
    CHECK(fetch(url).status == 404);
}

TEST_CASE("fault_server keeps connections alive across requests")
{
    fault_server server;
    const std::string data = pattern(100);
    server.put("/b/one", data);
    server.put("/b/two", pattern(50, 1));
    auto r = run(curl("-r 0-9 " + server.url() + "/b/one " + server.url() + "/b/two " + server.url() + "/b/one"));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == data.substr(0, 10) + pattern(50, 1).substr(0, 10) + data.substr(0, 10));
    CHECK(server.requests_served() == 3);
    CHECK(server.connections_accepted() == 1);
    // Error answers keep the connection too.
    r = run(curl("-o /dev/null -o /dev/null " + server.url() + "/b/none " + server.url() + "/b/one"));
    CHECK(r.exit_code == 0);
    CHECK(server.requests_served() == 5);
    CHECK(server.connections_accepted() == 2);
    CHECK(eventually([&] { return server.open_connections() == 0; }));
}

TEST_CASE("fault_server drop_after sends exactly N body bytes and closes or resets")
{
    fault_server server;
    const std::string data = pattern(5000);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";

    server.script({fault::drop_after(300)});
    auto r = run(curl(url));
    CHECK(r.exit_code == 18); // partial file: Content-Length promised more
    CHECK(r.out == data.substr(0, 300));

    server.script({fault::drop_after(0).only_from(1000)});
    r = run(curl("-r 0-999 " + url)); // before the restriction's offset: untouched
    CHECK(r.exit_code == 0);
    CHECK(r.out == data.substr(0, 1000));
    CHECK(server.script_remaining() == 1);
    r = run(curl("-r 1000-1999 " + url));
    CHECK(r.exit_code == 18);
    CHECK(r.out.empty());
    CHECK(server.script_remaining() == 0);

    server.script({fault::drop_after(200, true)});
    r = run(curl(url));
    CHECK(r.exit_code == 56); // reset: a receive error, not a partial file
    // Bytes already received before the RST are normally delivered, but the kernel may drop
    // them, so only "a prefix of at most 200" is certain.
    CHECK(r.out.size() <= 200);
    CHECK(r.out == data.substr(0, r.out.size()));

    CHECK(server.faults_injected(fault_kind::drop_after) == 3);
    auto reqs = server.requests();
    REQUIRE(reqs.size() == 4);
    CHECK(reqs[1].fault == fault_kind::none);
    CHECK(reqs[2].fault == fault_kind::drop_after);
    // After the faults the object is served normally again.
    CHECK(fetch(url).body == data);
}

TEST_CASE("fault_server status faults answer S3 error XML and keep the connection")
{
    fault_server server;
    server.put("/bucket/some/key", pattern(100));
    const std::string url = server.url() + "/bucket/some/key";
    server.script({fault::status(503, "SlowDown", "Please reduce your request rate."), fault::status(500, "InternalError"),
                   fault::status(403, "AccessDenied"), fault::status(404, "NoSuchKey")});
    auto r = fetch(url);
    CHECK(r.status == 503);
    CHECK(contains(r.body, "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
                           "<Key>some/key</Key><RequestId>1</RequestId></Error>"));
    r = fetch(url);
    CHECK(r.status == 500);
    CHECK(contains(r.body, "<Code>InternalError</Code>"));
    r = fetch(url);
    CHECK(r.status == 403);
    CHECK(contains(r.body, "<Code>AccessDenied</Code>"));
    r = fetch(url);
    CHECK(r.status == 404);
    CHECK(contains(r.body, "<Code>NoSuchKey</Code>"));
    CHECK(fetch(url).status == 200);
    CHECK(server.faults_injected(fault_kind::status) == 4);
    CHECK(server.faults_injected() == 4);
}

TEST_CASE("fault_server wrong and missing Content-Range")
{
    fault_server server;
    const std::string data = pattern(1000);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";
    server.script({fault::wrong_content_range(), fault::missing_content_range(), fault::wrong_content_range()});

    auto r = fetch("-r 100-199 " + url);
    CHECK(r.status == 206);
    CHECK(r.header("content-range") == "bytes 101-200/1000");
    CHECK(r.body == data.substr(100, 100));

    r = fetch("-r 100-199 " + url);
    CHECK(r.status == 206);
    CHECK_FALSE(r.has("content-range"));
    CHECK(r.body == data.substr(100, 100));

    r = fetch("-r 900- " + url); // at the end: shifted backwards
    CHECK(r.header("content-range") == "bytes 899-998/1000");
    CHECK(server.faults_injected(fault_kind::wrong_content_range) == 2);
    CHECK(server.faults_injected(fault_kind::missing_content_range) == 1);
}

TEST_CASE("fault_server short_body promises more than it sends")
{
    fault_server server;
    const std::string data = pattern(1000);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";
    server.script({fault::short_body(), fault::short_body(10)});
    auto r = run(curl("-D - " + url));
    CHECK(r.exit_code == 18);
    auto resp = parse_response(r.out);
    CHECK(resp.header("content-length") == "1000");
    CHECK(resp.body == data.substr(0, 500));
    r = run(curl("-r 100-199 " + url));
    CHECK(r.exit_code == 18);
    CHECK(r.out == data.substr(100, 10));
    CHECK(server.faults_injected(fault_kind::short_body) == 2);
}

TEST_CASE("fault_server change_object gives a new ETag so If-Match fails")
{
    fault_server server;
    const std::string data = pattern(1000);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";
    const std::string old_etag = server.etag("/b/k");

    server.script({fault::none(), fault::change_object()});
    auto r = fetch("-r 0-99 -H 'If-Match: " + old_etag + "' " + url);
    CHECK(r.status == 206);
    r = fetch("-r 100-199 -H 'If-Match: " + old_etag + "' " + url);
    CHECK(r.status == 412);
    const std::string new_etag = server.etag("/b/k");
    CHECK(new_etag != old_etag);
    r = fetch("-r 100-199 -H 'If-Match: " + new_etag + "' " + url);
    CHECK(r.status == 206);
    CHECK(r.body == data.substr(100, 100)); // same bytes, new version

    server.script({fault::change_object("other")});
    r = fetch(url);
    CHECK(r.status == 200);
    CHECK(r.body == "other");
    CHECK(r.header("etag") == server.etag("/b/k"));
    CHECK(r.header("etag") != new_etag);
    CHECK(server.faults_injected(fault_kind::change_object) == 2);
    CHECK(server.faults_injected(fault_kind::none) == 2); // the script's none and one unscripted
}

TEST_CASE("fault_server trickle and stalls slow the body down but deliver all of it")
{
    fault_server server;
    const std::string data = pattern(5000);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";

    server.script({fault::trickle(4000)});
    auto r = run(curl("-r 0-999 " + url));
    CHECK(r.exit_code == 0);
    CHECK(r.out == data.substr(0, 1000));
    CHECK(r.seconds >= 0.25);
    CHECK(r.seconds < 3);

    server.script({fault::stall(300ms)});
    r = run(curl(url));
    CHECK(r.exit_code == 0);
    CHECK(r.out == data);
    CHECK(r.seconds >= 0.3);

    server.script({fault::stall_after(1000, 300ms)});
    r = run(curl(url));
    CHECK(r.exit_code == 0);
    CHECK(r.out == data);
    CHECK(r.seconds >= 0.3);
    CHECK(server.faults_injected(fault_kind::stall) == 2);
    CHECK(server.faults_injected(fault_kind::trickle) == 1);

    // A client that gives up during a long stall: the server closes its end at once rather
    // than at the stall's end.
    server.script({fault::stall_after(100, 20s)});
    r = run(curl("--max-time 0.5 " + url));
    CHECK(r.exit_code == 28);
    CHECK(r.out == data.substr(0, 100));
    CHECK(eventually([&] { return server.open_connections() == 0; }));
}

TEST_CASE("fault_server destructor ends stalled connections promptly")
{
    auto server = std::make_unique<fault_server>();
    server->put("/b/k", pattern(100));
    server->script({fault::stall(60s)});
    FILE* p = popen(curl("-o /dev/null " + server->url() + "/b/k").c_str(), "r");
    REQUIRE(p != nullptr);
    REQUIRE(eventually([&] { return server->requests_served() == 1; }));
    auto start = clock_type::now();
    server.reset();
    CHECK(clock_type::now() - start < 1s);
    int status = pclose(p);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 52); // empty reply from the server
}

TEST_CASE("fault_server random faults follow the seed")
{
    auto kinds_seen = [](std::uint64_t seed) {
        fault_server server;
        server.put("/b/k", pattern(100));
        server.random_faults(0.5, {fault::status(503, "SlowDown"), fault::missing_content_range()}, seed);
        std::string cmd = curl("-r 0-9");
        for (int i = 0; i < 30; ++i)
            cmd += " -o /dev/null " + server.url() + "/b/k";
        auto r = run(cmd);
        CHECK(r.exit_code == 0);
        std::vector<fault_kind> kinds;
        std::size_t slow = 0;
        for (const auto& req : server.requests()) {
            kinds.push_back(req.fault);
            slow += req.fault == fault_kind::status;
        }
        CHECK(kinds.size() == 30);
        CHECK(server.faults_injected(fault_kind::status) == slow);
        CHECK(server.faults_injected() > 3);
        CHECK(server.faults_injected() < 27);
        return kinds;
    };
    auto a = kinds_seen(42);
    CHECK(kinds_seen(42) == a);
    CHECK(kinds_seen(43) != a);
}

TEST_CASE("fault_server streams large objects intact")
{
    fault_server server;
    const std::string data = pattern(24 << 20, 3);
    server.put("/b/big", data);
    auto r = run(curl(server.url() + "/b/big"));
    CHECK(r.exit_code == 0);
    CHECK(r.out.size() == data.size());
    CHECK(r.out == data);
    r = run(curl("-r 10000000-17999999 " + server.url() + "/b/big"));
    CHECK(r.out == data.substr(10000000, 8000000));
    CHECK(r.seconds < 10);
}

// ---------------------------------------------------------------------------------------------
// The link shaped like S3's: rate cap, first-byte latency, several addresses, listings.

namespace {

// Runs `cmd` in the background (its output discarded); pclose() waits for it.
struct background {
    explicit background(const std::string& cmd) : pipe(popen((cmd + " >/dev/null 2>&1").c_str(), "r")) { REQUIRE(pipe); }
    ~background() { wait(); }
    int wait()
    {
        if (!pipe)
            return status;
        status = pclose(pipe);
        pipe = nullptr;
        return status;
    }
    FILE* pipe;
    int status = -1;
};

// `n` GETs of `url` with curl, all at once on their own connections.
std::string parallel_gets(const std::string& url, int n)
{
    std::string cmd = curl("--parallel --parallel-immediate --parallel-max " + std::to_string(n));
    for (int i = 0; i < n; ++i)
        cmd += " -o /dev/null " + url;
    // curl 7.88 shows its parallel progress meter even with -s.
    return cmd + " 2>/dev/null";
}

// One ListObjectsV2 request for `bucket` with `params` ("name=value", each percent-encoded
// by curl the way a form is).
response list(const fault_server& server, const std::string& bucket, const std::vector<std::string>& params)
{
    std::string args = "-G --data-urlencode list-type=2";
    for (const auto& p : params)
        args += " --data-urlencode '" + p + "'";
    return fetch(args + " " + server.url() + "/" + bucket);
}

// The same, parsed by the client's own ListObjectsV2 parser.
pipemode::s3::list_objects_page list_parsed(const fault_server& server, const std::string& bucket,
                                            const std::vector<std::string>& params)
{
    auto r = list(server, bucket, params);
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(r.header("content-type") == "application/xml");
    pipemode::detail::parse_error err;
    auto page = pipemode::s3::parse_list_objects(r.body, err);
    REQUIRE(page);
    return *page;
}

std::vector<std::string> keys_of(const pipemode::s3::list_objects_page& page)
{
    std::vector<std::string> keys;
    for (const auto& o : page.contents)
        keys.push_back(o.key);
    return keys;
}

} // namespace

TEST_CASE("fault_server caps each connection's body rate")
{
    constexpr std::size_t mib = 1 << 20;
    fault_server server({.rate_limit = 8 * mib});
    const std::string data = pattern(4 * mib, 5);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";

    // The server counts a write once it completes, which may be just after the client has
    // the bytes: its counters are awaited, not read at once.

    // 4 MiB at 8 MiB/s: half a second at the least (an upper bound would only measure the
    // machine's load).
    auto r = run(curl(url));
    CHECK(r.exit_code == 0);
    CHECK((r.out == data));
    CHECK(r.seconds >= 0.48);
    CHECK(eventually([&] { return server.body_bytes_sent() == data.size(); }));

    // The cap holds across the requests of one keep-alive connection: 2 x 2 MiB at 8 MiB/s.
    r = run(curl("-r 0-2097151 " + url + " --next -s --http1.1 -r 2097152-4194303 " + url));
    CHECK(r.exit_code == 0);
    CHECK(r.out.size() == data.size());
    CHECK((r.out == data)); // (not expanded: 4 MiB of bytes say nothing)
    CHECK(r.seconds >= 0.48);
    CHECK(server.connections_accepted() == 2);

    // Each connection has a cap of its own: 8 connections x 1 MiB at 2 MiB/s overlap (0.5 s),
    // where one cap shared by all would take 4 s.
    server.set_rate_limit(2 * mib);
    r = run(parallel_gets("-r 0-1048575 " + url, 8));
    CHECK(r.exit_code == 0);
    CHECK(r.seconds >= 0.48);
    CHECK(r.seconds < 3);
    CHECK(eventually([&] { return server.body_bytes_sent() == 2 * data.size() + 8 * mib; }));

    // Changed while serving: no cap. 4 x 4 MiB would take 8 s at the last cap.
    server.set_rate_limit(0);
    r = run(curl(url + " --next -s --http1.1 " + url + " --next -s --http1.1 " + url + " --next -s --http1.1 " + url));
    CHECK(r.out.size() == 4 * data.size());
    CHECK((r.out == data + data + data + data));
    CHECK(r.seconds < 6);

    // A cap changed while a body is under way applies to the rest of it: 4 MiB at 1 MiB/s
    // would take 4 s.
    server.set_rate_limit(mib);
    {
        auto start = clock_type::now();
        background slow(curl("-o /dev/null " + url));
        std::this_thread::sleep_for(300ms);
        server.set_rate_limit(0);
        int status = slow.wait();
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
        CHECK(elapsed >= 0.3);
        CHECK(elapsed < 3.5);
    }

    // A low cap with a small body still paces (chunks shrink to 1/50 s of the cap).
    server.set_rate_limit(2000);
    r = run(curl("-r 0-999 " + url));
    CHECK(r.out == data.substr(0, 1000));
    CHECK(r.seconds >= 0.48);
    CHECK(server.internal_errors() == 0);
}

TEST_CASE("fault_server waits the first-byte latency before every response, concurrently across connections")
{
    fault_server server({.first_byte_latency = 300ms});
    server.put("/b/k", pattern(100));
    const std::string url = server.url() + "/b/k";

    // Each request of a keep-alive connection waits, errors and HEADs included.
    auto r = run(curl("-o /dev/null " + url + " -o /dev/null " + server.url() + "/b/missing --next -s --http1.1 -I " + url));
    CHECK(r.exit_code == 0);
    CHECK(r.seconds >= 0.9);
    CHECK(server.connections_accepted() == 1);
    auto reqs = server.requests();
    REQUIRE(reqs.size() == 3);
    CHECK(reqs[1].method == "GET");
    CHECK(reqs[2].method == "HEAD");

    // 8 requests at once, each 2 s from its headers: they wait together (8 in flight), not one
    // after another (16 s).
    server.set_first_byte_latency(2000ms);
    auto start = clock_type::now();
    {
        background many(parallel_gets(url, 8));
        CHECK(eventually([&] { return server.requests_in_flight() == 8; }, 1800ms));
        int status = many.wait();
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    CHECK(elapsed >= 2.0);
    CHECK(elapsed < 8.0);
    CHECK(server.peak_requests_in_flight() == 8);
    CHECK(eventually([&] { return server.requests_in_flight() == 0; }));
    CHECK(server.requests_served() == 11);

    // Without latency, the answer comes at once again.
    server.set_first_byte_latency(0ms);
    r = run(curl(url));
    CHECK(r.out == pattern(100));
    CHECK(r.seconds < 0.9);
}

TEST_CASE("fault_server listens on several loopback addresses and counts per address")
{
    fault_server server({.addresses = 3});
    const std::string data = pattern(1000);
    server.put("/b/k", data);
    const std::string port = std::to_string(server.port());
    CHECK(server.addresses() == std::vector<std::string>{"127.0.0.1", "127.0.0.2", "127.0.0.3"});
    CHECK(server.url(0) == server.url());
    CHECK(server.url(0) == "http://127.0.0.1:" + port);
    CHECK(server.url(2) == "http://127.0.0.3:" + port);
    CHECK_THROWS_AS(server.url(3), std::out_of_range);

    // One connection to the first address, one to the second with two requests, none to the
    // third.
    CHECK(fetch(server.url(0) + "/b/k").body == data);
    auto r = run(curl(server.url(1) + "/b/k " + server.url(1) + "/b/k"));
    CHECK(r.out == data + data);
    CHECK(server.connections_accepted() == 2);
    CHECK(server.connections_accepted("127.0.0.1") == 1);
    CHECK(server.connections_accepted("127.0.0.2") == 1);
    CHECK(server.connections_accepted("127.0.0.3") == 0);
    CHECK(server.requests_served("127.0.0.1") == 1);
    CHECK(server.requests_served("127.0.0.2") == 2);
    CHECK(server.requests_served("127.0.0.3") == 0);
    CHECK_THROWS_AS(server.requests_served("127.0.0.4"), std::invalid_argument);
    auto reqs = server.requests();
    REQUIRE(reqs.size() == 3);
    CHECK(reqs[0].local_address == "127.0.0.1");
    CHECK(reqs[2].local_address == "127.0.0.2");
    CHECK(eventually([&] { return server.body_bytes_sent() == 3 * data.size(); }));

    CHECK(fetch(server.url(2) + "/b/k").body == data);
    CHECK(server.requests_served("127.0.0.3") == 1);
    CHECK(server.requests_served() == 4);
    CHECK(server.peak_requests_in_flight() == 1);

    CHECK_THROWS_AS(fault_server({.addresses = 0}), std::invalid_argument);
    CHECK_THROWS_AS(fault_server({.list_page_cap = 1001}), std::invalid_argument);
}

TEST_CASE("fault_server answers ListObjectsV2 pages with sizes, ETags and continuation tokens")
{
    fault_server server;
    std::vector<std::string> keys;
    for (int i = 0; i < 7; ++i) {
        std::string key = "data/part-" + std::to_string(i) + ".rec";
        server.put("/bkt/" + key, pattern(100 + i, i));
        keys.push_back(key);
    }
    server.put("/bkt/other/x", "x");
    server.put("/bkt2/data/part-9.rec", "not in bkt");
    server.put("/bk/data/part-8.rec", "not in bkt either");

    // All keys under the prefix, in order, with what the client needs to read them.
    auto page = list_parsed(server, "bkt", {"prefix=data/"});
    CHECK(page.bucket == "bkt");
    CHECK(page.prefix == "data/");
    CHECK(keys_of(page) == keys);
    CHECK_FALSE(page.is_truncated);
    CHECK(page.next_continuation_token.empty());
    CHECK(page.key_count == 7);
    CHECK(page.max_keys == 1000);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        CHECK(page.contents[i].size == 100 + i);
        CHECK(page.contents[i].etag == server.etag("/bkt/" + keys[i]));
        CHECK(page.contents[i].last_modified == "2000-01-01T00:00:00.000Z");
    }
    // ETags are quoted and XML-escaped, as S3 sends them.
    auto raw = list(server, "bkt", {"prefix=data/part-0"});
    CHECK(contains(raw.body, "<Contents><Key>data/part-0.rec</Key><LastModified>2000-01-01T00:00:00.000Z</LastModified>"
                             "<ETag>&quot;v1-100&quot;</ETag><Size>100</Size><StorageClass>STANDARD</StorageClass></Contents>"));
    CHECK(contains(raw.body, "<KeyCount>1</KeyCount>"));
    CHECK(contains(raw.body, "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"));

    // The whole bucket, "/BUCKET/" accepted as well.
    auto whole = fetch("'" + server.url() + "/bkt/?list-type=2'");
    pipemode::detail::parse_error err;
    auto all = pipemode::s3::parse_list_objects(whole.body, err);
    REQUIRE(all);
    CHECK(all->contents.size() == 8);
    CHECK(all->contents.back().key == "other/x");

    // Pages of max-keys, continued by their tokens until the last.
    std::vector<std::string> paged, tokens;
    std::string token;
    for (int guard = 0; guard < 10; ++guard) {
        std::vector<std::string> params{"prefix=data/", "max-keys=3"};
        if (!token.empty())
            params.push_back("continuation-token=" + token);
        auto p = list_parsed(server, "bkt", params);
        CHECK(p.contents.size() <= 3);
        CHECK(p.key_count == p.contents.size());
        CHECK(p.max_keys == 3);
        CHECK(p.continuation_token == token);
        for (const auto& k : keys_of(p))
            paged.push_back(k);
        if (!p.is_truncated)
            break;
        token = p.next_continuation_token;
        tokens.push_back(token);
    }
    CHECK(paged == keys);
    CHECK(tokens.size() == 2); // 3 + 3 + 1

    // The server-wide cap makes pages smaller than max-keys asks; MaxKeys still shows the ask.
    server.set_list_page_cap(2);
    paged.clear();
    token.clear();
    std::size_t pages = 0;
    for (int guard = 0; guard < 10; ++guard) {
        std::vector<std::string> params{"prefix=data/"};
        if (!token.empty())
            params.push_back("continuation-token=" + token);
        auto p = list_parsed(server, "bkt", params);
        ++pages;
        CHECK(p.contents.size() <= 2);
        CHECK(p.max_keys == 1000);
        for (const auto& k : keys_of(p))
            paged.push_back(k);
        if (!p.is_truncated)
            break;
        token = p.next_continuation_token;
    }
    CHECK(paged == keys);
    CHECK(pages == 4);
    server.set_list_page_cap(1000);

    // start-after, max-keys beyond 1000, max-keys=0.
    page = list_parsed(server, "bkt", {"prefix=data/", "start-after=data/part-4.rec", "max-keys=5000"});
    CHECK(keys_of(page) == std::vector<std::string>{"data/part-5.rec", "data/part-6.rec"});
    CHECK(page.max_keys == 1000);
    page = list_parsed(server, "bkt", {"max-keys=0"});
    CHECK(page.contents.empty());
    CHECK_FALSE(page.is_truncated);

    // Errors as S3 answers them.
    auto e = list(server, "bkt", {"continuation-token=bm90IG91cnM="});
    CHECK(e.status == 400);
    CHECK(contains(e.body, "<Code>InvalidArgument</Code>"));
    e = list(server, "bkt", {"max-keys=ten"});
    CHECK(e.status == 400);
    e = list(server, "nobucket", {});
    CHECK(e.status == 404);
    CHECK(contains(e.body, "<Code>NoSuchBucket</Code>"));
    // Without list-type=2 a bucket path is an object path, as before.
    CHECK(fetch(server.url() + "/bkt").status == 404);
    CHECK(server.requests().back().path == "/bkt");
    CHECK(server.internal_errors() == 0);
}

TEST_CASE("fault_server listings escape keys, fold common prefixes and URL-encode on request")
{
    fault_server server;
    server.put("/b/x&y<z>'\".rec", "1");
    server.put("/b/sp ace+plus.rec", "22");
    server.put("/b/dir/a", "333");
    server.put("/b/dir/b", "4444");
    server.put("/b/dir2/c", "55555");
    server.put("/b/\xc3\xa9t\xc3\xa9", "666666"); // UTF-8 sorts after ASCII

    auto raw = list(server, "b", {});
    CHECK(contains(raw.body, "<Key>x&amp;y&lt;z&gt;&apos;&quot;.rec</Key>"));
    auto page = list_parsed(server, "b", {});
    CHECK(keys_of(page)
          == std::vector<std::string>{"dir/a", "dir/b", "dir2/c", "sp ace+plus.rec", "x&y<z>'\".rec", "\xc3\xa9t\xc3\xa9"});
    CHECK_FALSE(page.url_encoded);

    // encoding-type=url, as the client asks: keys come back encoded and decode to the same.
    raw = list(server, "b", {"encoding-type=url", "prefix=sp ace"});
    CHECK(contains(raw.body, "<Key>sp+ace%2Bplus.rec</Key>"));
    CHECK(contains(raw.body, "<Prefix>sp+ace</Prefix>"));
    CHECK(contains(raw.body, "<EncodingType>url</EncodingType>"));
    page = list_parsed(server, "b", {"encoding-type=url"});
    CHECK(page.url_encoded);
    CHECK(keys_of(page)
          == std::vector<std::string>{"dir/a", "dir/b", "dir2/c", "sp ace+plus.rec", "x&y<z>'\".rec", "\xc3\xa9t\xc3\xa9"});

    // A delimiter folds each "directory" into one common prefix, which counts towards a page
    // and is not split across pages.
    page = list_parsed(server, "b", {"delimiter=/"});
    CHECK(page.common_prefixes == std::vector<std::string>{"dir/", "dir2/"});
    CHECK(page.contents.size() == 3);
    CHECK(page.key_count == 5);
    CHECK(page.delimiter == "/");
    page = list_parsed(server, "b", {"delimiter=/", "max-keys=1"});
    CHECK(page.common_prefixes == std::vector<std::string>{"dir/"});
    CHECK(page.is_truncated);
    page = list_parsed(server, "b", {"delimiter=/", "max-keys=1", "continuation-token=" + page.next_continuation_token});
    CHECK(page.common_prefixes == std::vector<std::string>{"dir2/"});
    CHECK(page.contents.empty());
    page = list_parsed(server, "b", {"delimiter=/", "prefix=dir/"});
    CHECK(keys_of(page) == std::vector<std::string>{"dir/a", "dir/b"});
    CHECK(page.common_prefixes.empty());
}

TEST_CASE("fault_server can answer without a Content-Range total, or ignore ranges")
{
    fault_server server({.content_range_total = false});
    const std::string data = pattern(1000);
    server.put("/b/k", data);
    const std::string url = server.url() + "/b/k";

    auto r = fetch("-r 100-199 " + url);
    CHECK(r.status == 206);
    CHECK(r.header("content-range") == "bytes 100-199/*");
    CHECK(r.body == data.substr(100, 100));
    // A range past the end still says how large the object is, as 416 must.
    r = fetch("-r 2000-2100 " + url);
    CHECK(r.status == 416);
    CHECK(r.header("content-range") == "bytes */1000");

    server.set_content_range_total(true);
    server.set_ignore_ranges(true);
    r = fetch("-r 100-199 " + url);
    CHECK(r.status == 200);
    CHECK_FALSE(r.has("content-range"));
    CHECK(r.body == data);
    r = fetch("-r 2000-2100 " + url);
    CHECK(r.status == 200);
    CHECK(r.body == data);

    server.set_ignore_ranges(false);
    r = fetch("-r 100-199 " + url);
    CHECK(r.header("content-range") == "bytes 100-199/1000");
}

} // namespace fault_server_test
