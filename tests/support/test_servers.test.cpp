// Smoke tests for the loopback test servers: each server must really serve what the network
// tests rely on (ranges, ETags, If-Match; buckets, bulk uploads, listings, ranged GETs), and
// must be gone once its object is destroyed. Requests go through the curl and aws commands, so
// these tests check the servers, not pipemode's own HTTP client.
#include "test_servers.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// This file's names stay its own: the files of tests/support/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace test_servers_test {

namespace {

using namespace pipemode::test;

// `s` quoted for /bin/sh.
std::string shell_quote(std::string_view s)
{
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

struct http_reply {
    int status = 0;
    std::string headers; // the raw header block of the last response
    std::vector<std::byte> body;

    // The value of header `name` (case-insensitive), or "" when absent.
    std::string header(std::string_view name) const
    {
        std::istringstream in(headers);
        for (std::string line; std::getline(in, line);) {
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            auto colon = line.find(':');
            if (colon != name.size())
                continue;
            bool same = std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
            });
            if (same) {
                auto value = line.substr(colon + 1);
                value.erase(0, value.find_first_not_of(' '));
                return value;
            }
        }
        return {};
    }
};

// GET `url` with the curl command and `extra_headers`, keeping the status, headers and body.
http_reply curl_get(const temp_dir& scratch, const std::string& url, const std::vector<std::string>& extra_headers = {})
{
    std::string headers_file = scratch / "curl-headers";
    std::string body_file = scratch / "curl-body";
    std::string cmd = "curl -s -S --max-time 30 -D " + shell_quote(headers_file) + " -o " + shell_quote(body_file);
    for (auto& h : extra_headers)
        cmd += " -H " + shell_quote(h);
    cmd += " " + shell_quote(url) + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string output;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr)
        output += buf;
    int rc = ::pclose(p);
    INFO("curl said: " << output);
    REQUIRE(rc == 0);

    http_reply reply;
    auto raw = read_file(headers_file);
    reply.headers.assign(reinterpret_cast<const char*>(raw.data()), raw.size());
    REQUIRE(reply.headers.starts_with("HTTP/1.1 "));
    reply.status = std::stoi(reply.headers.substr(9, 3));
    reply.body = read_file(body_file);
    return reply;
}

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::size_t first, std::size_t count)
{
    return {v.begin() + static_cast<std::ptrdiff_t>(first), v.begin() + static_cast<std::ptrdiff_t>(first + count)};
}

// True while a process (or zombie) with this PID exists.
bool process_exists(pid_t pid)
{
    return ::kill(pid, 0) == 0;
}

// Whitespace-separated words of `s`.
std::vector<std::string> words(const std::string& s)
{
    std::istringstream in(s);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

} // namespace

TEST_CASE("nginx_server serves ranges, ETags and If-Match from a temp dir, and is gone after destruction")
{
    temp_dir data;
    temp_dir scratch;
    const auto content = pattern(100000, 7);
    write_file(data / "big.bin", content);
    write_file(data / "fifty.bin", slice(content, 0, 50));
    write_file(data / "empty.bin", {});

    pid_t pid = -1;
    std::string url;
    {
        nginx_server http(data.path());
        pid = http.pid();
        url = http.url();
        REQUIRE(url == "http://127.0.0.1:" + std::to_string(http.port()));
        REQUIRE(http.url("big.bin") == url + "/big.bin");

        auto whole = curl_get(scratch, http.url("big.bin"));
        CHECK(whole.status == 200);
        CHECK(whole.body == content);
        const std::string etag = whole.header("ETag");
        REQUIRE(etag.size() > 2);
        CHECK(etag.front() == '"');

        auto ranged = curl_get(scratch, http.url("big.bin"), {"Range: bytes=1000-1999"});
        CHECK(ranged.status == 206);
        CHECK(ranged.header("Content-Range") == "bytes 1000-1999/100000");
        CHECK(ranged.body == slice(content, 1000, 1000));

        auto tail = curl_get(scratch, http.url("big.bin"), {"Range: bytes=99990-"});
        CHECK(tail.status == 206);
        CHECK(tail.body == slice(content, 99990, 10));

        auto wrong = curl_get(scratch, http.url("big.bin"), {"If-Match: \"not-the-etag\"", "Range: bytes=0-9"});
        CHECK(wrong.status == 412);
        auto right = curl_get(scratch, http.url("big.bin"), {"If-Match: " + etag, "Range: bytes=0-9"});
        CHECK(right.status == 206);
        CHECK(right.body == slice(content, 0, 10));

        // What a range reader must cope with at the end of a file.
        auto short_file = curl_get(scratch, http.url("fifty.bin"), {"Range: bytes=0-99"});
        CHECK(short_file.status == 206);
        CHECK(short_file.header("Content-Range") == "bytes 0-49/50");
        CHECK(short_file.body == slice(content, 0, 50));
        auto past_end = curl_get(scratch, http.url("fifty.bin"), {"Range: bytes=50-99"});
        CHECK(past_end.status == 416);
        CHECK(past_end.header("Content-Range") == "bytes */50");
        auto empty = curl_get(scratch, http.url("empty.bin"), {"Range: bytes=0-99"});
        CHECK(empty.status == 200);
        CHECK(empty.body.empty());

        CHECK(curl_get(scratch, http.url("missing.bin")).status == 404);
    }
    CHECK_FALSE(process_exists(pid));
    // Nothing listens any more: curl fails to connect (exit status 7).
    std::string cmd = "curl -s -o /dev/null --max-time 5 " + shell_quote(url + "/big.bin");
    CHECK(WEXITSTATUS(std::system(cmd.c_str())) == 7);
}

TEST_CASE("moto_server takes keys in one bulk upload, lists them all and answers ranged GETs")
{
    temp_dir scratch;
    const auto content = pattern(5000, 3);
    pid_t pid = -1;
    {
        moto_server s3;
        pid = s3.pid();
        REQUIRE(s3.endpoint() == "http://127.0.0.1:" + std::to_string(s3.port()));
        s3.create_bucket("smoke-bucket");

        // Enough keys to prove the bulk path; the S3 source's tests list more than a page
        // (tests/s3/data_set.test.cpp), so this smoke test need not pay for 1,200 uploads.
        auto keys = s3.upload_many("smoke-bucket", "train/part-", 800,
                                   [](std::size_t i) { return "object " + std::to_string(i) + "\n"; });
        REQUIRE(keys.size() == 800);
        CHECK(keys.front() == "train/part-000000");
        CHECK(keys.back() == "train/part-000799");

        // All the keys, in order: ListObjectsV2 sorts them.
        auto listed = s3.aws({"s3api", "list-objects-v2", "--bucket", "smoke-bucket", "--prefix", "train/",
                              "--query", "Contents[].Key", "--output", "text"});
        auto listed_keys = words(listed);
        CHECK(listed_keys.size() == 800);
        CHECK(listed_keys == keys);

        s3.aws({"s3api", "get-object", "--bucket", "smoke-bucket", "--key", "train/part-000777", scratch / "777"});
        auto body = read_file(scratch / "777");
        CHECK(std::string(reinterpret_cast<const char*>(body.data()), body.size()) == "object 777\n");

        s3.upload_bytes("smoke-bucket", "blob.bin", content);
        s3.aws({"s3api", "get-object", "--bucket", "smoke-bucket", "--key", "blob.bin", "--range", "bytes=100-299",
                scratch / "range"});
        CHECK(read_file(scratch / "range") == slice(content, 100, 200));

        s3.upload_bytes("smoke-bucket", "empty.bin", {});
        auto head = s3.aws({"s3api", "head-object", "--bucket", "smoke-bucket", "--key", "empty.bin", "--query",
                            "ContentLength"});
        CHECK(words(head) == std::vector<std::string>{"0"});

        CHECK_THROWS_WITH(s3.aws({"s3api", "head-object", "--bucket", "no-such-bucket", "--key", "k"}),
                          Catch::Contains("head-object"));
    }
    CHECK_FALSE(process_exists(pid));
}

TEST_CASE("moto_server says how to install it when it is not on the PATH")
{
    std::string saved = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
    ::setenv("PATH", "/nonexistent-pipemode-dir", 1);
    bool threw = false;
    try {
        moto_server s3;
    } catch (const std::runtime_error& e) {
        threw = true;
        CHECK_THAT(e.what(), Catch::Contains("moto_server not found"));
    }
    ::setenv("PATH", saved.c_str(), 1);
    CHECK(threw);
}

} // namespace test_servers_test
