// Tests of the fault_server test server itself, driven by the curl command-line tool: every
// answer and every fault must be what a client sees on the wire, or the network tests built
// on it prove nothing.
#include "fault_server.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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
