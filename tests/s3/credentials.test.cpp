// Credentials, region and endpoint resolution: the chain's order, each source's variables and
// files, the container and IMDSv2 request flows against a scripted fake fetcher, refresh before
// expiry on an injected clock, shared concurrent resolution, and secrets kept out of every
// error message. No test reads the process environment's AWS settings, ~/.aws or the network.
#include <pipemode/s3/credentials.hpp>

#include "run_coro.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

using namespace pipemode;
using namespace pipemode::s3;
using namespace std::chrono_literals;
using pipemode::test::run_coro;

namespace {

// Secrets the tests plant; no error message may ever contain them.
const std::string secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
const std::string token = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN";
// A web identity token (a JWT's three parts), with the characters a form body must encode.
const std::string web_token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJXEBIDENTITYTOKEN+/w==.c2lnbmF0dXJl+/==";

void check_no_secrets(const std::string& message)
{
    INFO(message);
    CHECK(message.find(secret) == std::string::npos);
    CHECK(message.find(token) == std::string::npos);
    CHECK(message.find("SECRETKEY") == std::string::npos);
    CHECK(message.find("SESSIONTOKEN") == std::string::npos);
    CHECK(message.find(web_token) == std::string::npos);
    CHECK(message.find("WEBIDENTITYTOKEN") == std::string::npos);
}

/// A process environment and file system made of two maps.
struct fake_environment {
    std::map<std::string, std::string> vars;
    std::map<std::string, std::string> files;
    std::vector<std::string> reads;

    environment make()
    {
        environment e;
        e.get_env = [this](std::string_view name) -> std::optional<std::string> {
            auto it = vars.find(std::string(name));
            if (it == vars.end())
                return std::nullopt;
            return it->second;
        };
        e.read_file = [this](const std::string& path) -> std::optional<std::string> {
            reads.push_back(path);
            auto it = files.find(path);
            if (it == files.end())
                return std::nullopt;
            return it->second;
        };
        return e;
    }
};

metadata_response ok(std::string body) { return {200, std::move(body)}; }

/// A metadata fetcher that records every request and answers from a script.
struct fake_service {
    std::vector<metadata_request> requests;
    std::function<std::optional<metadata_response>(const metadata_request&)> script;
    std::chrono::milliseconds delay{0};  // to make calls overlap

    static asio::awaitable<std::optional<metadata_response>> respond(fake_service* self, metadata_request r)
    {
        self->requests.push_back(r);
        if (self->delay.count() > 0) {
            asio::steady_timer t(co_await asio::this_coro::executor, self->delay);
            co_await t.async_wait(asio::use_awaitable);
        }
        co_return self->script(self->requests.back());
    }

    metadata_fetcher make()
    {
        return [self = this](metadata_request r) { return respond(self, std::move(r)); };
    }
};

std::string header(const metadata_request& r, std::string_view name)
{
    for (const auto& [k, v] : r.headers)
        if (k == name)
            return v;
    return "<absent>";
}

std::string credentials_json(std::string_view id, std::string_view expiration)
{
    return R"({"Code": "Success", "LastUpdated": "2026-11-28T05:00:00Z", "Type": "AWS-HMAC", "AccessKeyId": ")"
         + std::string(id) + R"(", "SecretAccessKey": ")" + secret + R"(", "Token": ")" + token
         + R"(", "Expiration": ")" + std::string(expiration) + "\"}";
}

/// An instance metadata service with role "pipemode-role" whose credentials have key `id`.
struct imds {
    std::string base = "http://169.254.169.254";
    std::string id = "ASIAIMDSKEY1";
    std::string expiration = "2026-11-28T12:00:00Z";
    std::string role_body = "pipemode-role\n";
    std::optional<metadata_response> document;  // overrides the credentials document
    bool up = true;

    std::optional<metadata_response> operator()(const metadata_request& r) const
    {
        if (!up || r.url.rfind(base, 0) != 0)
            return std::nullopt;
        const std::string path = r.url.substr(base.size());
        if (path == "/latest/api/token")
            return r.method == "PUT" ? ok("SESSION-abc") : metadata_response{405, ""};
        if (header(r, "X-aws-ec2-metadata-token") != "SESSION-abc")
            return metadata_response{401, ""};
        if (path == "/latest/meta-data/iam/security-credentials/")
            return ok(role_body);
        if (path == "/latest/meta-data/iam/security-credentials/pipemode-role")
            return document ? *document : ok(credentials_json(id, expiration));
        return metadata_response{404, ""};
    }
};

std::chrono::system_clock::time_point at(std::string_view iso)
{
    auto t = s3::detail::parse_iso8601(iso);
    REQUIRE(t);
    return *t;
}

/// The message of the exception `f` throws; fails the test when it throws none.
template <class F>
std::string error_of(F&& f)
{
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    FAIL("expected an exception");
    return {};
}

timed_credentials get(credentials_provider& p)
{
    return run_coro([&]() { return p.async_get(); });
}

} // namespace

TEST_CASE("credentials: ISO 8601 times without locale functions")
{
    using s3::detail::format_iso8601;
    using s3::detail::parse_iso8601;
    using namespace std::chrono;
    CHECK(parse_iso8601("1970-01-01T00:00:00Z") == system_clock::time_point{});
    CHECK(parse_iso8601("2026-11-28T12:00:00Z")->time_since_epoch() == seconds(1795867200));
    CHECK(parse_iso8601("2026-11-28T13:30:00+01:30") == parse_iso8601("2026-11-28T12:00:00Z"));
    CHECK(parse_iso8601("2026-11-28T10:00:00-0200") == parse_iso8601("2026-11-28T12:00:00Z"));
    CHECK(*parse_iso8601("2026-11-28T12:00:00.250Z") - *parse_iso8601("2026-11-28T12:00:00Z") == milliseconds(250));
    CHECK(parse_iso8601("2028-02-29t00:00:00z"));
    for (const char* bad : {"", "2026-11-28", "2026-11-28 12:00:00Z", "2026-11-28T12:00:00", "2026-02-30T00:00:00Z",
                            "2026-13-01T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T12:60:00Z",
                            "2026-11-28T12:00:00.Z", "2026-11-28T12:00:00Zjunk", "２026-11-28T12:00:00Z",
                            "2026-11-28T12:00:00+2400", "-026-11-28T12:00:00Z"}) {
        INFO(bad);
        CHECK_FALSE(parse_iso8601(bad));
    }
    CHECK(format_iso8601(*parse_iso8601("2026-11-28T12:00:00.9Z")) == "2026-11-28T12:00:00Z");
    CHECK(format_iso8601(system_clock::time_point{}) == "1970-01-01T00:00:00Z");
}

TEST_CASE("credentials: INI files read as the AWS CLI reads them")
{
    const auto f = s3::detail::parse_ini("# comment\r\n"
                                         "; another\n"
                                         "[default]\n"
                                         "Region = eu-west-3\r\n"
                                         "  # indented comment\n"
                                         "output: json\n"
                                         "\n"
                                         "[profile   work ]\n"
                                         "region=us-west-2\n"
                                         "s3 =\n"
                                         "    addressing_style = path\n"
                                         "  Endpoint_URL = http://127.0.0.1:9000  \n"
                                         "\n"
                                         "note = first\n"
                                         "  second line\n"
                                         "endpoint_url = http://a=b:1/\n",
                                         "test file");
    REQUIRE(f.size() == 2);
    const auto& d = f.at("default");
    CHECK(*d.find("region") == "eu-west-3");
    CHECK(d.find("Region") == nullptr);
    CHECK(*d.find("output") == "json");
    const auto& w = f.at("profile work");
    CHECK(*w.find("region") == "us-west-2");
    CHECK(w.find("s3") == nullptr);
    CHECK(*w.find("s3", "addressing_style") == "path");
    CHECK(*w.find("s3", "Endpoint_URL") == "http://127.0.0.1:9000");
    CHECK(w.find("s3", "endpoint_url") == nullptr);
    CHECK(*w.find("note") == "first\nsecond line");
    CHECK(*w.find("endpoint_url") == "http://a=b:1/");
    CHECK(s3::detail::config_profile(f, "work") == &w);
    CHECK(s3::detail::config_profile(f, "default") == &d);
    CHECK(s3::detail::config_profile(f, "other") == nullptr);
}

TEST_CASE("credentials: a malformed INI line is reported by number, never by content")
{
    const std::string s = secret;
    for (const auto& [text, reason] :
         {std::pair<std::string, std::string>{"aws_secret_access_key " + s + "\n", "line 1: a setting before the first"},
          {"[default]\naws_access_key_id = A\naws_secret_access_key " + s + "\n", "line 3: expected 'name = value'"},
          {"[default\naws_secret_access_key = " + s + "\n", "line 1: a section header must end"},
          {"[]\n", "line 1: the section name is empty"},
          {"[default]\n = " + s + "\n", "line 2: a setting without a name"},
          {"[default]\ns3 =\n  " + s + "\n", "line 3: an indented line under 's3 ='"}}) {
        const std::string message = error_of([&] { s3::detail::parse_ini(text, "the file F"); });
        INFO(message);
        CHECK(message.find("the file F, " + reason) == 0);
        check_no_secrets(message);
    }
    CHECK(error_of([] { s3::detail::parse_ini(std::string(max_settings_file_size + 1, '#'), "big"); })
          == "big is larger than 1 MiB, too large for a settings file");
}

TEST_CASE("credentials: environment variables come first")
{
    fake_environment env;
    env.vars = {{"HOME", "/home/u"},
                {"AWS_ACCESS_KEY_ID", "AKIAENV"},
                {"AWS_SECRET_ACCESS_KEY", secret},
                {"AWS_SESSION_TOKEN", token},
                {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x"}};
    env.files["/home/u/.aws/credentials"] = "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n";
    fake_service service;
    service.script = imds{};
    credentials_provider p(env.make(), service.make());
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "AKIAENV");
    CHECK(c.credentials.secret_access_key == secret);
    CHECK(c.credentials.session_token == token);
    CHECK_FALSE(c.expiration);
    CHECK(c.source == "environment");
    CHECK(service.requests.empty());
    // Only the config file is read, to see whether the profile assumes a role from these keys.
    CHECK(env.reads == std::vector<std::string>{"/home/u/.aws/config"});
    // Cached: a second call reads nothing again.
    env.vars.erase("AWS_ACCESS_KEY_ID");
    CHECK(get(p).credentials.access_key_id == "AKIAENV");
}

TEST_CASE("credentials: AWS_CREDENTIAL_EXPIRATION makes environment credentials expire")
{
    fake_environment env;
    env.vars = {{"AWS_ACCESS_KEY_ID", "AKIAENV1"}, {"AWS_SECRET_ACCESS_KEY", secret},
                {"AWS_CREDENTIAL_EXPIRATION", "2026-11-28T12:00:00Z"}};
    auto now = at("2026-11-28T11:00:00Z");
    credentials_provider p(env.make(), {}, {.profile = {}, .clock = [&] { return now; }});
    auto c = get(p);
    REQUIRE(c.expiration);
    CHECK(*c.expiration == at("2026-11-28T12:00:00Z"));
    env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV2";
    env.vars["AWS_CREDENTIAL_EXPIRATION"] = "2026-11-28T13:00:00Z";
    CHECK(get(p).credentials.access_key_id == "AKIAENV1");
    now = at("2026-11-28T11:56:00Z");
    c = get(p);
    CHECK(c.credentials.access_key_id == "AKIAENV2");
    CHECK(*c.expiration == at("2026-11-28T13:00:00Z"));

    env.vars["AWS_CREDENTIAL_EXPIRATION"] = "tomorrow";
    credentials_provider bad(env.make(), {});
    CHECK(error_of([&] { get(bad); })
          == "AWS_CREDENTIAL_EXPIRATION is not an ISO 8601 time such as 2026-11-28T12:00:00Z");
}

TEST_CASE("credentials: half of a key in the environment is an error, not a fall-through")
{
    fake_environment env;
    env.vars = {{"AWS_SECRET_ACCESS_KEY", secret}, {"AWS_SESSION_TOKEN", token}};
    env.files["/home/u/.aws/credentials"] = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n";
    env.vars["HOME"] = "/home/u";
    {
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message.find("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not") == 0);
        check_no_secrets(message);
    }
    env.vars.erase("AWS_SECRET_ACCESS_KEY");
    env.vars["AWS_ACCESS_KEY_ID"] = "AKIAONLY";
    {
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message.find("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not") == 0);
        check_no_secrets(message);
    }
    // A line break in a secret would split the signed request's headers.
    env.vars["AWS_SECRET_ACCESS_KEY"] = secret + "\n";
    {
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message == "the credentials in the environment: the secret access key contains a control character (a line break?)");
    }
    // Empty variables count as unset, as the CLI treats them.
    env.vars["AWS_ACCESS_KEY_ID"] = "";
    env.vars["AWS_SECRET_ACCESS_KEY"] = "";
    credentials_provider p(env.make(), {});
    CHECK(get(p).source == "shared credentials file (profile default)");
}

TEST_CASE("credentials: profiles from the shared credentials file and the config file")
{
    fake_environment env;
    env.vars = {{"HOME", "/home/u/"}};
    env.files["/home/u/.aws/credentials"] = "[default]\n"
                                            "aws_access_key_id = AKIADEFAULT\n"
                                            "aws_secret_access_key = " + secret + "\n"
                                            "[work]\n"
                                            "aws_access_key_id = AKIAWORK\n"
                                            "aws_secret_access_key = " + secret + "\n"
                                            "aws_session_token = " + token + "\n";
    env.files["/home/u/.aws/config"] = "[profile work]\n"
                                       "aws_access_key_id = AKIACONFIGWORK\n"
                                       "aws_secret_access_key = x\n"
                                       "[profile cfg]\n"
                                       "aws_access_key_id = AKIACONFIG\n"
                                       "aws_secret_access_key = " + secret + "\n"
                                       "aws_security_token = legacy\n"
                                       "[cfg]\n"
                                       "aws_access_key_id = AKIANOTAPROFILE\n";
    SECTION("the default profile")
    {
        credentials_provider p(env.make(), {});
        const auto c = get(p);
        CHECK(c.credentials.access_key_id == "AKIADEFAULT");
        CHECK(c.credentials.session_token.empty());
        CHECK(c.source == "shared credentials file (profile default)");
    }
    SECTION("AWS_PROFILE, and the credentials file before the config file")
    {
        env.vars["AWS_PROFILE"] = "work";
        credentials_provider p(env.make(), {});
        const auto c = get(p);
        CHECK(c.credentials.access_key_id == "AKIAWORK");
        CHECK(c.credentials.session_token == token);
    }
    SECTION("the options' profile over AWS_PROFILE; the config file's [profile NAME]")
    {
        env.vars["AWS_PROFILE"] = "work";
        credentials_provider p(env.make(), {}, {.profile = "cfg", .clock = {}});
        const auto c = get(p);
        CHECK(c.credentials.access_key_id == "AKIACONFIG");
        CHECK(c.credentials.session_token == "legacy");
        CHECK(c.source == "config file (profile cfg)");
    }
    SECTION("AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE, with ~/ expanded")
    {
        env.vars["AWS_SHARED_CREDENTIALS_FILE"] = "~/elsewhere/creds";
        env.vars["AWS_CONFIG_FILE"] = "/etc/aws.conf";
        env.vars["AWS_DEFAULT_PROFILE"] = "moved";
        env.files["/home/u/elsewhere/creds"] = "[moved]\naws_access_key_id = AKIAMOVED\naws_secret_access_key = s\n";
        credentials_provider p(env.make(), {});
        CHECK(get(p).credentials.access_key_id == "AKIAMOVED");
        CHECK(env.reads == std::vector<std::string>{"/home/u/elsewhere/creds", "/etc/aws.conf"});
    }
    SECTION("a named profile in neither file is an error")
    {
        env.vars["AWS_PROFILE"] = "typo";
        fake_service service;
        service.script = imds{};
        credentials_provider p(env.make(), service.make());
        CHECK(error_of([&] { get(p); })
              == "the profile 'typo' named by AWS_PROFILE is in neither /home/u/.aws/credentials nor /home/u/.aws/config");
        CHECK(service.requests.empty());
    }
}

TEST_CASE("credentials: a profile with a missing secret or an unsupported method fails without its secrets")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "p"}};
    SECTION("key id without secret")
    {
        env.files["/h/.aws/credentials"] = "[p]\naws_access_key_id = AKIAHALF\naws_session_token = " + token + "\n";
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message == "profile 'p' in /h/.aws/credentials has aws_access_key_id but no aws_secret_access_key");
        check_no_secrets(message);
    }
    SECTION("secret without key id")
    {
        env.files["/h/.aws/config"] = "[profile p]\naws_secret_access_key = " + secret + "\n";
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message == "profile 'p' in /h/.aws/config has aws_secret_access_key but no aws_access_key_id");
        check_no_secrets(message);
    }
    SECTION("a role profile whose source profile is missing fails, not skipped")
    {
        env.files["/h/.aws/config"] = "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n";
        credentials_provider p(env.make(), {});
        CHECK(error_of([&] { get(p); })
              == "/h/.aws/config, profile 'p' names source_profile 'default', which is in neither /h/.aws/credentials "
                 "nor /h/.aws/config");
    }
    SECTION("a malformed credentials file")
    {
        env.files["/h/.aws/credentials"] = "[p]\naws_access_key_id = A\n" + secret + "\n";
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message == "the shared credentials file /h/.aws/credentials, line 3: expected 'name = value'");
        check_no_secrets(message);
    }
    SECTION("a profile without keys falls through")
    {
        env.files["/h/.aws/config"] = "[profile p]\nregion = eu-west-1\n";
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message.find("the config file (profile 'p' in /h/.aws/config has no aws_access_key_id)")
              != std::string::npos);
    }
}

TEST_CASE("credentials: nothing found names every source tried")
{
    fake_environment env;
    credentials_provider p(env.make(), {});
    CHECK(error_of([&] { get(p); })
          == "no AWS credentials found for profile 'default'. Tried: "
             "the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set); "
             "an assumed role (~/.aws/config (HOME is not set)); "
             "web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set); "
             "the shared credentials file (~/.aws/credentials (HOME is not set)); "
             "the config file (~/.aws/config (HOME is not set)); "
             "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI "
             "are not set); "
             "instance metadata (no HTTP fetcher was given to reach http://169.254.169.254). "
             "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure the profile in ~/.aws/credentials, or run "
             "with a container or instance role; for public buckets, choose anonymous access explicitly");

    env.vars = {{"HOME", "/h"}, {"AWS_EC2_METADATA_DISABLED", "TRUE"}};
    env.files["/h/.aws/credentials"] = "[other]\n";
    fake_service service;
    service.script = imds{};
    credentials_provider q(env.make(), service.make());
    const auto message = error_of([&] { get(q); });
    CHECK(message.find("the shared credentials file (/h/.aws/credentials has no profile 'default'); "
                       "the config file (/h/.aws/config does not exist); ")
          != std::string::npos);
    CHECK(message.find("instance metadata (AWS_EC2_METADATA_DISABLED is true)") != std::string::npos);
    CHECK(service.requests.empty());
}

TEST_CASE("credentials: the chain's order")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"},
                {"AWS_ACCESS_KEY_ID", "AKIAENV"},
                {"AWS_SECRET_ACCESS_KEY", "s"},
                {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds"}};
    env.files["/h/.aws/credentials"] = "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n";
    env.files["/h/.aws/config"] = "[default]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = s\n";
    fake_service service;
    imds instance;
    service.script = [&](const metadata_request& r) -> std::optional<metadata_response> {
        if (r.url == "http://169.254.170.2/creds")
            return ok(credentials_json("ASIACONTAINER", "2026-11-28T12:00:00Z"));
        return instance(r);
    };
    auto first = [&] {
        credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        return get(p).credentials.access_key_id;
    };
    CHECK(first() == "AKIAENV");
    env.vars.erase("AWS_ACCESS_KEY_ID");
    env.vars.erase("AWS_SECRET_ACCESS_KEY");
    CHECK(first() == "AKIAFILE");
    env.files.erase("/h/.aws/credentials");
    CHECK(first() == "AKIACONFIG");
    env.files.erase("/h/.aws/config");
    CHECK(service.requests.empty());
    CHECK(first() == "ASIACONTAINER");
    CHECK(service.requests.size() == 1);
    env.vars.erase("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    CHECK(first() == "ASIAIMDSKEY1");
    CHECK(service.requests.size() == 4);
}

TEST_CASE("credentials: container credentials from the relative URI, with the authorization token")
{
    fake_environment env;
    env.vars = {{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/3f1c-uuid"},
                {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "auth-from-env"}};
    fake_service service;
    service.script = [&](const metadata_request&) { return ok(credentials_json("ASIACONT", "2026-11-28T12:00:00Z")); };
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIACONT");
    CHECK(c.credentials.secret_access_key == secret);
    CHECK(c.credentials.session_token == token);
    CHECK(c.expiration == at("2026-11-28T12:00:00Z"));
    CHECK(c.source == "container credentials");
    REQUIRE(service.requests.size() == 1);
    CHECK(service.requests[0].method == "GET");
    CHECK(service.requests[0].url == "http://169.254.170.2/v2/credentials/3f1c-uuid");
    CHECK(service.requests[0].headers
          == std::vector<std::pair<std::string, std::string>>{{"Authorization", "auth-from-env"}});

    SECTION("the token file wins over the token variable; its trailing line break is dropped")
    {
        env.vars["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = "/var/run/secrets/token";
        env.files["/var/run/secrets/token"] = "auth-from-file\n";
        credentials_provider q(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        (void)get(q);
        CHECK(header(service.requests.back(), "Authorization") == "auth-from-file");
        env.files.erase("/var/run/secrets/token");
        credentials_provider r(env.make(), service.make());
        CHECK(error_of([&] { get(r); })
              == "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE names /var/run/secrets/token, which does not exist");
    }
    SECTION("a token that would split the header is refused without being shown")
    {
        env.vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token + "\r\nX-Evil: 1";
        credentials_provider q(env.make(), service.make());
        const auto message = error_of([&] { get(q); });
        CHECK(message == "AWS_CONTAINER_AUTHORIZATION_TOKEN contains a control character");
        check_no_secrets(message);
    }
    SECTION("no authorization header when no token is configured")
    {
        env.vars.erase("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        credentials_provider q(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        (void)get(q);
        CHECK(service.requests.back().headers.empty());
    }
    SECTION("the relative URI must be a path")
    {
        env.vars["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "v2/creds";
        credentials_provider q(env.make(), service.make());
        CHECK(error_of([&] { get(q); }) == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting with '/'");
    }
}

TEST_CASE("credentials: container credentials from the full URI go only to safe hosts")
{
    fake_environment env;
    fake_service service;
    service.script = [&](const metadata_request&) { return ok(credentials_json("ASIAFULL", "2026-11-28T12:00:00Z")); };
    auto fetch_from = [&](const std::string& uri) {
        env.vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = uri;
        credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        (void)get(p);
        return service.requests.back().url;
    };
    CHECK(fetch_from("http://127.0.0.1:51679/creds?id=1") == "http://127.0.0.1:51679/creds?id=1");
    CHECK(fetch_from("http://localhost/creds") == "http://localhost/creds");
    CHECK(fetch_from("http://169.254.170.23/v1/credentials") == "http://169.254.170.23/v1/credentials");
    CHECK(fetch_from("http://[fd00:ec2::23]/v1/credentials") == "http://[fd00:ec2::23]/v1/credentials");
    CHECK(fetch_from("HTTPS://Creds.Example.com/x") == "https://creds.example.com/x");
    // The relative URI wins when both are set.
    env.vars["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "/rel";
    CHECK(fetch_from("https://creds.example.com/x") == "http://169.254.170.2/rel");
    env.vars.erase("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");

    const std::size_t before = service.requests.size();
    auto refused = [&](const std::string& uri) { return error_of([&] { fetch_from(uri); }); };
    CHECK(refused("http://creds.example.com/x").find("AWS_CONTAINER_CREDENTIALS_FULL_URI must use https") == 0);
    CHECK(refused("http://128.0.0.1/x").find("AWS_CONTAINER_CREDENTIALS_FULL_URI must use https") == 0);
    CHECK(refused("ftp://127.0.0.1/x").find("AWS_CONTAINER_CREDENTIALS_FULL_URI: 'ftp://127.0.0.1/x' is not a usable URL") == 0);
    const auto message = refused("https://user:" + secret + "@example.com/x");
    CHECK(message.find("AWS_CONTAINER_CREDENTIALS_FULL_URI holds a URL with user information") == 0);
    check_no_secrets(message);
    CHECK(service.requests.size() == before);
}

TEST_CASE("credentials: container failures stop the chain and never show the response")
{
    fake_environment env;
    env.vars = {{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/c"}};
    fake_service service;
    std::optional<metadata_response> answer;
    service.script = [&](const metadata_request& r) -> std::optional<metadata_response> {
        if (r.url.find("169.254.169.254") != std::string::npos)
            FAIL("a broken container source must not fall through to instance metadata");
        return answer;
    };
    auto failure = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        return message;
    };
    answer = std::nullopt;
    CHECK(failure() == "container credentials: no answer from http://169.254.170.2/c within 2000 ms (3 attempts)");
    CHECK(service.requests.size() == 3);
    CHECK(service.requests[0].timeout == 2000ms);
    answer = metadata_response{503, secret};
    CHECK(failure() == "container credentials: http://169.254.170.2/c answered HTTP 503");
    CHECK(service.requests.size() == 3);
    answer = metadata_response{403, "{\"SecretAccessKey\": \"" + secret + "\"}"};
    CHECK(failure() == "container credentials: http://169.254.170.2/c answered HTTP 403");
    CHECK(service.requests.size() == 1);

    const std::string prefix = "container credentials from http://169.254.170.2/c: ";
    const std::string good = credentials_json("ASIA1", "2026-11-28T12:00:00Z");
    answer = ok(good.substr(0, good.size() - 2));  // truncated inside the Expiration string
    CHECK(failure() == prefix + "the response is not a JSON credentials document (malformed JSON document at byte "
                                + std::to_string(good.size() - 2) + ": unterminated string)");
    answer = ok("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\", \"Token\": \"" + token + "\" \"x\": 1}");
    CHECK(failure().find(prefix + "the response is not a JSON credentials document (malformed JSON document at byte") == 0);
    answer = ok("[\"" + secret + "\"]");
    CHECK(failure() == prefix + "the response is not a JSON object");
    answer = ok("{\"Code\": \"AccessDenied\", \"Message\": \"" + secret + "\"}");
    CHECK(failure() == prefix + "the response reports a failure (its Code is not \"Success\")");
    answer = ok("{\"AccessKeyId\": \"A\", \"Token\": \"" + token + "\"}");
    CHECK(failure() == prefix + "the response has no usable SecretAccessKey (a string without control characters)");
    answer = ok("{\"SecretAccessKey\": \"" + secret + "\", \"Token\": \"" + token + "\"}");
    CHECK(failure() == prefix + "the response has no usable AccessKeyId (a string without control characters)");
    answer = ok("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\\n\"}");
    CHECK(failure() == prefix + "the response has no usable SecretAccessKey (a string without control characters)");
    answer = ok("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\", \"Token\": 7}");
    CHECK(failure() == prefix + "the response's Token is not a string without control characters");
    answer = ok("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\", \"Expiration\": \"" + token + "\"}");
    CHECK(failure() == prefix + "the response's Expiration is not an ISO 8601 time such as 2026-11-28T12:00:00Z");
    answer = ok(credentials_json("ASIAOLD", "2026-11-28T05:00:00Z"));
    CHECK(failure() == "container credentials gave credentials that expired at 2026-11-28T05:00:00Z while the clock "
                       "reads 2026-11-28T06:00:00Z: check the system clock");
    answer = ok("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\", \"Token\": null}");
    credentials_provider p(env.make(), service.make());
    const auto c = get(p);
    CHECK(c.credentials.session_token.empty());
    CHECK_FALSE(c.expiration);
}

TEST_CASE("credentials: instance metadata through IMDSv2")
{
    fake_environment env;
    fake_service service;
    imds instance;
    service.script = std::ref(instance);
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIAIMDSKEY1");
    CHECK(c.credentials.secret_access_key == secret);
    CHECK(c.credentials.session_token == token);
    CHECK(c.expiration == at("2026-11-28T12:00:00Z"));
    CHECK(c.source == "instance metadata (IMDSv2)");
    REQUIRE(service.requests.size() == 3);
    const auto& put = service.requests[0];
    CHECK(put.method == "PUT");
    CHECK(put.url == "http://169.254.169.254/latest/api/token");
    CHECK(put.headers == std::vector<std::pair<std::string, std::string>>{{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}});
    CHECK(put.timeout == 1000ms);
    for (int i : {1, 2}) {
        CHECK(service.requests[i].method == "GET");
        CHECK(service.requests[i].headers
              == std::vector<std::pair<std::string, std::string>>{{"X-aws-ec2-metadata-token", "SESSION-abc"}});
    }
    CHECK(service.requests[1].url == "http://169.254.169.254/latest/meta-data/iam/security-credentials/");
    CHECK(service.requests[2].url == "http://169.254.169.254/latest/meta-data/iam/security-credentials/pipemode-role");

    SECTION("AWS_EC2_METADATA_SERVICE_ENDPOINT moves it")
    {
        env.vars["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:1338/";
        instance.base = "http://127.0.0.1:1338";
        credentials_provider q(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        CHECK(get(q).credentials.access_key_id == "ASIAIMDSKEY1");
        CHECK(service.requests.back().url == "http://127.0.0.1:1338/latest/meta-data/iam/security-credentials/pipemode-role");
    }
    SECTION("the IPv6 endpoint mode")
    {
        env.vars["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "IPv6";
        instance.base = "http://[fd00:ec2::254]";
        credentials_provider q(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        CHECK(get(q).credentials.access_key_id == "ASIAIMDSKEY1");
        env.vars["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "v7";
        credentials_provider r(env.make(), service.make());
        CHECK(error_of([&] { get(r); }) == "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE must be IPv4 or IPv6");
    }
}

TEST_CASE("credentials: instance metadata failures are reported, never with the response")
{
    fake_environment env;
    fake_service service;
    imds instance;
    service.script = std::ref(instance);
    auto failure = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T06:00:00Z"); }});
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        const auto start = message.find("instance metadata (");
        REQUIRE(start != std::string::npos);
        return message.substr(start + 19, message.find(". Set AWS_ACCESS_KEY_ID") - start - 20);
    };
    instance.up = false;
    CHECK(failure() == "no answer from http://169.254.169.254 within 1000 ms");
    CHECK(service.requests.size() == 1);
    instance.up = true;
    instance.role_body = "";
    CHECK(failure() == "no IAM role is attached to this instance");
    instance.role_body = "../../latest/api/token\n";
    CHECK(failure() == "http://169.254.169.254 answered with a role name that is not a valid IAM role name");
    CHECK(service.requests.size() == 2);
    instance.role_body = "pipemode-role";
    instance.document = metadata_response{404, secret};
    CHECK(failure() == "http://169.254.169.254 answered HTTP 404 for the credentials of role 'pipemode-role'");
    instance.document = ok("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\", \"Token\": \"" + token);
    CHECK(failure().find("the credentials of role 'pipemode-role': the response is not a JSON credentials document "
                         "(malformed JSON document at byte ")
          == 0);
    instance.document = ok("{\"Code\": \"" + secret + "\", \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" + secret + "\"}");
    CHECK(failure() == "the credentials of role 'pipemode-role': the response reports a failure (its Code is not \"Success\")");

    service.script = [](const metadata_request& r) -> std::optional<metadata_response> {
        if (r.method == "PUT")
            return metadata_response{403, ""};
        FAIL("no IMDSv1 fallback: nothing is fetched without a session token");
        return std::nullopt;
    };
    CHECK(failure() == "http://169.254.169.254 refused an IMDSv2 session token (HTTP 403)");
    service.script = [](const metadata_request&) { return ok("bad\r\ntoken"); };
    CHECK(failure() == "http://169.254.169.254 answered with an unusable IMDSv2 session token");
}

TEST_CASE("credentials: refreshed from their source within five minutes of expiring")
{
    fake_environment env;
    fake_service service;
    imds instance;
    service.script = std::ref(instance);
    auto now = at("2026-11-28T11:00:00Z");
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [&] { return now; }});
    CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY1");
    CHECK(service.requests.size() == 3);

    instance.id = "ASIAIMDSKEY2";
    instance.expiration = "2026-11-28T18:00:00Z";
    now = at("2026-11-28T11:54:59Z");
    CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY1");
    CHECK(service.requests.size() == 3);
    now = at("2026-11-28T11:55:01Z");
    auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIAIMDSKEY2");
    CHECK(c.expiration == at("2026-11-28T18:00:00Z"));
    CHECK(service.requests.size() == 6);
    CHECK(service.requests[3].method == "PUT");

    SECTION("a failed refresh keeps valid credentials, retries later, and fails once they expire")
    {
        instance.up = false;
        now = at("2026-11-28T17:56:00Z");
        CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY2");
        CHECK(service.requests.size() == 7);
        now += credentials_retry_interval - 1s;
        CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY2");
        CHECK(service.requests.size() == 7);
        now += 2s;
        CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY2");
        CHECK(service.requests.size() == 8);
        now = at("2026-11-28T18:00:00Z");
        const auto message = error_of([&] { get(p); });
        CHECK(message == "could not refresh the AWS credentials: instance metadata (no answer from "
                         "http://169.254.169.254 within 1000 ms)");
        check_no_secrets(message);
        instance.up = true;
        instance.id = "ASIAIMDSKEY3";
        instance.expiration = "2026-11-29T00:00:00Z";
        CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY3");
    }
    SECTION("a refresh asks only the source that gave the credentials")
    {
        env.vars = {{"AWS_ACCESS_KEY_ID", "AKIAENV"}, {"AWS_SECRET_ACCESS_KEY", "s"}};
        now = at("2026-11-28T17:56:00Z");
        CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY2");
        CHECK(env.reads.empty());
    }
}

TEST_CASE("credentials: concurrent callers share one resolution and one refresh")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fake_environment env;
    fake_service service;
    imds instance;
    service.script = std::ref(instance);
    service.delay = 5ms;
    auto now = at("2026-11-28T11:00:00Z");
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [&] { return now; }});
    auto three = [&]() -> asio::awaitable<std::vector<std::string>> {
        auto [a, b, c] = co_await (p.async_get() && p.async_get() && p.async_get());
        co_return std::vector<std::string>{a.credentials.access_key_id, b.credentials.access_key_id,
                                           c.credentials.access_key_id};
    };
    CHECK(run_coro(three) == std::vector<std::string>{"ASIAIMDSKEY1", "ASIAIMDSKEY1", "ASIAIMDSKEY1"});
    CHECK(service.requests.size() == 3);

    // Still valid: the others are served the cached key while one caller refreshes.
    instance.id = "ASIAIMDSKEY2";
    instance.expiration = "2026-11-28T18:00:00Z";
    now = at("2026-11-28T11:58:00Z");
    CHECK(run_coro(three) == std::vector<std::string>{"ASIAIMDSKEY2", "ASIAIMDSKEY1", "ASIAIMDSKEY1"});
    CHECK(service.requests.size() == 6);
    CHECK(get(p).credentials.access_key_id == "ASIAIMDSKEY2");

    // Expired: everyone waits for the one refresh.
    instance.id = "ASIAIMDSKEY3";
    instance.expiration = "2026-11-29T00:00:00Z";
    now = at("2026-11-28T18:00:00Z");
    CHECK(run_coro(three) == std::vector<std::string>{"ASIAIMDSKEY3", "ASIAIMDSKEY3", "ASIAIMDSKEY3"});
    CHECK(service.requests.size() == 9);

    // A failed first resolution is shared by the waiters, not repeated by each.
    fake_environment empty;
    fake_service down;
    down.delay = 5ms;
    down.script = [](const metadata_request&) { return std::nullopt; };
    credentials_provider q(empty.make(), down.make());
    auto attempt = [&]() -> asio::awaitable<std::string> {
        try {
            (void)co_await q.async_get();
        } catch (const std::exception& e) {
            co_return std::string(e.what());
        }
        co_return std::string("no error");
    };
    auto two = [&]() -> asio::awaitable<std::pair<std::string, std::string>> {
        auto [a, b] = co_await (attempt() && attempt());
        co_return std::pair(a, b);
    };
    const auto [first, second] = run_coro(two);
    CHECK(first.find("instance metadata (no answer from http://169.254.169.254 within 1000 ms)") != std::string::npos);
    CHECK(second == first);
    CHECK(down.requests.size() == 1);
}

TEST_CASE("credentials: a cancelled caller leaves the others to finish")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fake_environment env;
    fake_service service;
    imds instance;
    service.script = std::ref(instance);
    service.delay = 20ms;
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T11:00:00Z"); }});
    auto timeout = [](std::chrono::milliseconds d) -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor, d);
        co_await t.async_wait(asio::use_awaitable);
    };

    // The refresher gives up: the waiter becomes the refresher instead of inheriting the cancellation.
    auto refresher_cancelled = [&]() -> asio::awaitable<std::pair<std::size_t, std::string>> {
        auto [raced, waited] = co_await ((p.async_get() || timeout(5ms)) && p.async_get());
        co_return std::pair(raced.index(), waited.credentials.access_key_id);
    };
    CHECK(run_coro(refresher_cancelled) == std::pair<std::size_t, std::string>(1, "ASIAIMDSKEY1"));
    REQUIRE(service.requests.size() == 4);
    CHECK(service.requests[0].method == "PUT");
    CHECK(service.requests[1].method == "PUT");

    // A waiter gives up: the refresh goes on, and the waiter's timer leaves the waiting list.
    credentials_provider q(env.make(), service.make(), {.profile = {}, .clock = [] { return at("2026-11-28T11:00:00Z"); }});
    auto waiter_cancelled = [&]() -> asio::awaitable<std::pair<std::string, std::size_t>> {
        auto [refreshed, raced] = co_await (q.async_get() && (q.async_get() || timeout(5ms)));
        co_return std::pair(refreshed.credentials.access_key_id, raced.index());
    };
    CHECK(run_coro(waiter_cancelled) == std::pair<std::string, std::size_t>("ASIAIMDSKEY1", 1));
    CHECK(service.requests.size() == 7);
    CHECK(get(q).credentials.access_key_id == "ASIAIMDSKEY1");
    CHECK(service.requests.size() == 7);
}

TEST_CASE("credentials: explicit credentials")
{
    credentials_provider p(aws_credentials{"AKIAEXPLICIT", secret, ""});
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "AKIAEXPLICIT");
    CHECK(c.source == "explicit");
    CHECK_FALSE(c.expiration);
    CHECK_THROWS_AS(credentials_provider(aws_credentials{"", secret, ""}), std::invalid_argument);
    CHECK_THROWS_AS(credentials_provider(aws_credentials{"AKIA", "", token}), std::invalid_argument);
    const auto message = error_of([&] { credentials_provider(aws_credentials{"AKIA", secret, token + "\n"}); });
    CHECK(message == "the explicit credentials: the session token contains a control character (a line break?)");
    check_no_secrets(message);
    CHECK_THROWS_AS(credentials_provider(environment{}, {}), std::invalid_argument);
}

TEST_CASE("credentials: settings resolve the region in the CLI's order")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}};
    CHECK(resolve_settings(env.make()).region == "us-east-1");
    CHECK(resolve_settings(env.make()).profile == "default");
    env.files["/h/.aws/config"] = "[default]\nregion = eu-west-3\n[profile p]\nregion = ap-south-1\n";
    CHECK(resolve_settings(env.make()).region == "eu-west-3");
    env.vars["AWS_PROFILE"] = "p";
    CHECK(resolve_settings(env.make()).region == "ap-south-1");
    CHECK(resolve_settings(env.make()).profile == "p");
    CHECK(resolve_settings(env.make(), "default").region == "eu-west-3");
    env.vars["AWS_DEFAULT_REGION"] = "us-west-1";
    CHECK(resolve_settings(env.make()).region == "us-west-1");
    env.vars["AWS_REGION"] = "us-west-2";
    CHECK(resolve_settings(env.make()).region == "us-west-2");
    env.vars["AWS_REGION"] = "Not A Region";
    CHECK(error_of([&] { resolve_settings(env.make()); })
          == "AWS_REGION: 'Not A Region' is not an AWS region name (e.g. eu-west-3)");
    env.vars.erase("AWS_REGION");
    env.vars.erase("AWS_DEFAULT_REGION");
    env.files["/h/.aws/config"] = "[profile p]\nregion = eu_west\n";
    CHECK(error_of([&] { resolve_settings(env.make()); }).find("/h/.aws/config, profile 'p', setting 'region': ") == 0);
}

TEST_CASE("credentials: settings resolve the endpoint and addressing style")
{
    fake_environment env;
    env.vars = {{"AWS_CONFIG_FILE", "/cfg"}};
    CHECK_FALSE(resolve_settings(env.make()).endpoint);
    CHECK_FALSE(resolve_settings(env.make()).addressing_style);
    env.files["/cfg"] = "[default]\n"
                        "endpoint_url = http://global:1\n"
                        "[profile nested]\n"
                        "endpoint_url = http://global:1\n"
                        "s3 =\n"
                        "  endpoint_url = http://nested:2\n"
                        "  addressing_style = virtual\n"
                        "[profile svc]\n"
                        "services = local\n"
                        "endpoint_url = http://global:1\n"
                        "s3 =\n"
                        "  endpoint_url = http://nested:2\n"
                        "  addressing_style = auto\n"
                        "[services local]\n"
                        "s3 =\n"
                        "  endpoint_url = http://service:3\n"
                        "[profile bad]\n"
                        "s3 =\n"
                        "  addressing_style = dns\n"
                        "[profile ignoring]\n"
                        "ignore_configured_endpoint_urls = true\n"
                        "endpoint_url = http://global:1\n"
                        "[profile leaky]\n"
                        "endpoint_url = http://user:" + secret + "@host/\n";
    auto endpoint = [&](std::string_view profile) {
        auto s = resolve_settings(env.make(), profile);
        return s.endpoint ? s.endpoint->to_string() : std::string("none");
    };
    CHECK(endpoint("default") == "http://global:1");
    CHECK(endpoint("nested") == "http://nested:2");
    CHECK(resolve_settings(env.make(), "nested").addressing_style == addressing::virtual_hosted);
    CHECK(endpoint("svc") == "http://service:3");
    CHECK_FALSE(resolve_settings(env.make(), "svc").addressing_style);
    CHECK(endpoint("ignoring") == "none");
    CHECK(error_of([&] { resolve_settings(env.make(), "bad"); })
          == "/cfg, profile 'bad': s3 addressing_style must be path, virtual or auto");
    const auto message = error_of([&] { resolve_settings(env.make(), "leaky"); });
    CHECK(message.find("/cfg, profile 'leaky', setting 'endpoint_url' holds a URL with user information") == 0);
    check_no_secrets(message);

    env.vars["AWS_ENDPOINT_URL"] = "http://env-global:4";
    CHECK(endpoint("svc") == "http://env-global:4");
    env.vars["AWS_ENDPOINT_URL_S3"] = "https://env-s3:5/base";
    CHECK(endpoint("svc") == "https://env-s3:5/base");
    env.vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "True";
    CHECK(endpoint("svc") == "none");
    // The variable overrides the profile's setting either way.
    env.vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "false";
    CHECK(endpoint("ignoring") == "https://env-s3:5/base");
    env.vars["AWS_ENDPOINT_URL_S3"] = "s3.example.com";
    CHECK(error_of([&] { resolve_settings(env.make()); }).find("AWS_ENDPOINT_URL_S3: 's3.example.com' is not a usable URL") == 0);
}

TEST_CASE("credentials: the process environment reads bounded regular files")
{
    namespace fs = std::filesystem;
    const environment env = environment::process();
    CHECK_FALSE(env.get_env("PIPEMODE_TEST_SURELY_UNSET_VARIABLE_7f3a"));
    const fs::path dir = fs::temp_directory_path() / ("pipemode-credentials-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path small = dir / "config";
    std::ofstream(small, std::ios::binary) << "[default]\nregion = eu-west-3\n";
    CHECK(env.read_file(small.string()) == std::optional<std::string>("[default]\nregion = eu-west-3\n"));
    CHECK_FALSE(env.read_file((dir / "missing").string()));
    const fs::path big = dir / "big";
    std::ofstream(big, std::ios::binary) << std::string(max_settings_file_size + 1, '#');
    CHECK(error_of([&] { env.read_file(big.string()); }) == big.string() + " is larger than 1 MiB, too large for a settings file");
    std::ofstream(big, std::ios::binary | std::ios::trunc) << std::string(max_settings_file_size, '#');
    CHECK(env.read_file(big.string())->size() == max_settings_file_size);
    CHECK(error_of([&] { env.read_file(dir.string()); }) == dir.string() + " is not a regular file");
    // AWS_CONFIG_FILE=/dev/null means "no config", as for the AWS CLI; other devices do not.
    CHECK(env.read_file("/dev/null") == std::optional<std::string>(""));
    CHECK(error_of([&] { env.read_file("/dev/zero"); }) == "/dev/zero is not a regular file");
    fs::remove_all(dir);
}

namespace {

const std::string role = "arn:aws:iam::123456789012:role/pipemode-reader";

/// STS's answer to `action` with credentials of key `id`; `extra` goes before them in the result.
std::string sts_credentials_document(std::string_view action, std::string_view extra, std::string_view id,
                                     std::string_view expiration)
{
    const std::string a(action);
    return "<" + a + "Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
           "  <" + a + "Result>\n"
           "    " + std::string(extra) + "\n"
           "    <Credentials>\n"
           "      <AccessKeyId>" + std::string(id) + "</AccessKeyId>\n"
           "      <SecretAccessKey>" + secret + "</SecretAccessKey>\n"
           "      <SessionToken>" + token + "</SessionToken>\n"
           "      <Expiration>" + std::string(expiration) + "</Expiration>\n"
           "    </Credentials>\n"
           "  </" + a + "Result>\n"
           "  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>\n"
           "</" + a + "Response>\n";
}

std::string sts_document(std::string_view id, std::string_view expiration)
{
    return sts_credentials_document(
        "AssumeRoleWithWebIdentity",
        "<SubjectFromWebIdentityToken>system:serviceaccount:ml:trainer</SubjectFromWebIdentityToken>", id, expiration);
}

std::string sts_error(std::string_view code, std::string_view message)
{
    return "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>"
         + std::string(code) + "</Code><Message>" + std::string(message)
         + "</Message></Error><RequestId>4f1a</RequestId></ErrorResponse>";
}

/// STS at `url`, answering AssumeRoleWithWebIdentity with key `id` (or with `answer`).
struct sts_service {
    std::string url = "https://sts.us-east-1.amazonaws.com/";
    std::string id = "ASIASTSKEY1";
    std::string expiration = "2026-11-28T12:00:00Z";
    std::optional<metadata_response> answer;
    bool up = true;

    std::optional<metadata_response> operator()(const metadata_request& r) const
    {
        if (r.url.find("169.254.") != std::string::npos)
            FAIL("a configured web identity must not fall through to the metadata services");
        if (!up || r.url != url)
            return std::nullopt;
        if (answer)
            return *answer;
        return ok(sts_document(id, expiration));
    }
};

std::string percent_decode(std::string_view s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
            REQUIRE(i + 2 < s.size());
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            REQUIRE(s[i] != '+');  // a '+' must be sent encoded: a form decoder reads it as a space
            out += s[i];
        }
    }
    return out;
}

/// The fields of an `application/x-www-form-urlencoded` body, decoded.
std::map<std::string, std::string> form_fields(std::string_view body)
{
    std::map<std::string, std::string> out;
    std::size_t pos = 0;
    while (pos <= body.size()) {
        std::size_t end = body.find('&', pos);
        if (end == std::string_view::npos)
            end = body.size();
        const std::string_view pair = body.substr(pos, end - pos);
        const std::size_t eq = pair.find('=');
        REQUIRE(eq != std::string_view::npos);
        out[percent_decode(pair.substr(0, eq))] = percent_decode(pair.substr(eq + 1));
        pos = end + 1;
    }
    return out;
}

/// An environment configured for web identity by the variables, the token file holding `web_token`.
fake_environment web_identity_environment()
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_ROLE_ARN", role}, {"AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"}};
    env.files["/var/run/secrets/token"] = web_token + "\n";
    return env;
}

credentials_options at_clock(std::string_view iso)
{
    const auto t = at(iso);
    return {.profile = {}, .clock = [t] { return t; }};
}

} // namespace

TEST_CASE("credentials: web identity from the environment through STS AssumeRoleWithWebIdentity")
{
    auto env = web_identity_environment();
    fake_service service;
    sts_service sts;
    service.script = std::ref(sts);
    auto first_request = [&](std::string_view url) {
        sts.url = std::string(url);
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        const auto c = get(p);
        CHECK(c.credentials.access_key_id == "ASIASTSKEY1");
        REQUIRE(service.requests.size() == 1);
        return service.requests[0];
    };

    credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIASTSKEY1");
    CHECK(c.credentials.secret_access_key == secret);
    CHECK(c.credentials.session_token == token);
    CHECK(c.expiration == at("2026-11-28T12:00:00Z"));
    CHECK(c.source == "web identity (" + role + ")");
    REQUIRE(service.requests.size() == 1);
    const auto& r = service.requests[0];
    CHECK(r.method == "POST");
    CHECK(r.url == "https://sts.us-east-1.amazonaws.com/");
    CHECK(r.timeout == 10000ms);
    CHECK(header(r, "Content-Type") == "application/x-www-form-urlencoded; charset=utf-8");
    CHECK(header(r, "Authorization") == "<absent>");  // unsigned: the token is the proof
    const auto fields = form_fields(r.body);
    CHECK(fields == std::map<std::string, std::string>{
                        {"Action", "AssumeRoleWithWebIdentity"},
                        {"Version", "2011-06-15"},
                        {"RoleArn", role},
                        {"RoleSessionName", "pipemode-" + std::to_string(1795845600000)},
                        {"WebIdentityToken", web_token},  // the file's line break dropped
                    });
    CHECK(r.body.find("&WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJXEBIDENTITYTOKEN%2B%2Fw%3D%3D."
                      "c2lnbmF0dXJl%2B%2F%3D%3D")
          != std::string::npos);
    CHECK(r.body.find("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpipemode-reader&") != std::string::npos);

    SECTION("a session name of the user's")
    {
        env.vars["AWS_ROLE_SESSION_NAME"] = "trainer-7@ml.example,a=b+c";
        CHECK(form_fields(first_request("https://sts.us-east-1.amazonaws.com/").body).at("RoleSessionName")
              == "trainer-7@ml.example,a=b+c");
    }
    SECTION("the region from AWS_REGION, AWS_DEFAULT_REGION or the profile")
    {
        env.files["/h/.aws/config"] = "[default]\nregion = ap-south-1\n";
        CHECK(first_request("https://sts.ap-south-1.amazonaws.com/").url == "https://sts.ap-south-1.amazonaws.com/");
        env.vars["AWS_DEFAULT_REGION"] = "eu-west-1";
        CHECK(first_request("https://sts.eu-west-1.amazonaws.com/").url == "https://sts.eu-west-1.amazonaws.com/");
        env.vars["AWS_REGION"] = "eu-west-3";
        CHECK(first_request("https://sts.eu-west-3.amazonaws.com/").url == "https://sts.eu-west-3.amazonaws.com/");
    }
    SECTION("the endpoint from AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or the profile, unless ignored")
    {
        env.vars["AWS_ENDPOINT_URL_S3"] = "http://s3-only:1";  // S3's own: not for STS
        env.files["/h/.aws/config"] = "[default]\n"
                                      "services = local\n"
                                      "[services local]\n"
                                      "sts =\n"
                                      "  endpoint_url = http://sts-service:3\n";
        CHECK(first_request("http://sts-service:3/").url == "http://sts-service:3/");
        env.files["/h/.aws/config"] = "[default]\nsts =\n  endpoint_url = http://sts-nested:4/base/\n";
        CHECK(first_request("http://sts-nested:4/base/").url == "http://sts-nested:4/base/");
        env.vars["AWS_ENDPOINT_URL"] = "http://127.0.0.1:5000";
        const auto global = first_request("http://127.0.0.1:5000/");
        CHECK(global.method == "POST");
        CHECK(form_fields(global.body).at("WebIdentityToken") == web_token);
        env.vars["AWS_ENDPOINT_URL_STS"] = "https://sts.example.com:8443";
        CHECK(first_request("https://sts.example.com:8443/").url == "https://sts.example.com:8443/");
        env.vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true";
        CHECK(first_request("https://sts.us-east-1.amazonaws.com/").url == "https://sts.us-east-1.amazonaws.com/");
        env.vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "false";
        env.vars["AWS_ENDPOINT_URL_STS"] = "sts.example.com";
        credentials_provider q(env.make(), service.make());
        CHECK(error_of([&] { get(q); }).find("AWS_ENDPOINT_URL_STS: 'sts.example.com' is not a usable URL") == 0);
    }
}

TEST_CASE("credentials: web identity from the profile in the config file")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "eks"}};
    env.files["/h/.aws/config"] = "[profile eks]\n"
                                  "region = eu-central-1\n"
                                  "role_arn = " + role + "\n"
                                  "web_identity_token_file = /tokens/eks\n"
                                  "role_session_name = from-profile\n";
    env.files["/tokens/eks"] = web_token;
    fake_service service;
    sts_service sts;
    sts.url = "https://sts.eu-central-1.amazonaws.com/";
    service.script = std::ref(sts);
    credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIASTSKEY1");
    CHECK(c.source == "web identity (" + role + ")");
    REQUIRE(service.requests.size() == 1);
    const auto fields = form_fields(service.requests[0].body);
    CHECK(fields.at("RoleArn") == role);
    CHECK(fields.at("RoleSessionName") == "from-profile");
    CHECK(fields.at("WebIdentityToken") == web_token);

    SECTION("the environment's pair wins over the profile's")
    {
        env.vars["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/from-environment";
        env.vars["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/tokens/eks";
        service.requests.clear();
        credentials_provider q(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        CHECK(get(q).source == "web identity (arn:aws:iam::123456789012:role/from-environment)");
        CHECK(form_fields(service.requests.at(0).body).at("RoleSessionName").rfind("pipemode-", 0) == 0);
    }
}

TEST_CASE("credentials: web identity's place in the chain")
{
    auto env = web_identity_environment();
    env.vars["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "/creds";
    env.files["/h/.aws/credentials"] = "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n";
    env.files["/h/.aws/config"] = "[default]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = s\n";
    fake_service service;
    sts_service sts;
    service.script = [&](const metadata_request& r) -> std::optional<metadata_response> {
        if (r.url == "http://169.254.170.2/creds")
            return ok(credentials_json("ASIACONTAINER", "2026-11-28T12:00:00Z"));
        return sts(r);
    };
    auto first = [&] {
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        return get(p).credentials.access_key_id;
    };
    // Keys in the environment come first: no token is read (only the config file, to see
    // whether the profile assumes a role from those keys), STS is not asked.
    env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV";
    env.vars["AWS_SECRET_ACCESS_KEY"] = "s";
    CHECK(first() == "AKIAENV");
    CHECK(env.reads == std::vector<std::string>{"/h/.aws/config"});
    CHECK(service.requests.empty());
    // Web identity before the shared credentials file, the config file and the container.
    env.vars.erase("AWS_ACCESS_KEY_ID");
    env.vars.erase("AWS_SECRET_ACCESS_KEY");
    CHECK(first() == "ASIASTSKEY1");
    CHECK(service.requests.size() == 1);
    env.vars.erase("AWS_ROLE_ARN");
    env.vars.erase("AWS_WEB_IDENTITY_TOKEN_FILE");
    CHECK(first() == "AKIAFILE");
    CHECK(service.requests.size() == 1);
    // The profile's web identity also comes before the files' keys.
    env.files["/h/.aws/config"] = "[default]\nrole_arn = " + role + "\nweb_identity_token_file = /var/run/secrets/token\n"
                                  "aws_access_key_id = AKIACONFIG\naws_secret_access_key = s\n";
    CHECK(first() == "ASIASTSKEY1");
    CHECK(service.requests.size() == 2);
}

TEST_CASE("credentials: half a web identity is an error, credential_process and SSO stay refused")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}};
    env.files["/h/.aws/credentials"] = "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n"
                                       "[p]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n";
    env.files["/t"] = web_token;
    fake_service service;
    service.script = [](const metadata_request&) -> std::optional<metadata_response> {
        FAIL("half a configuration must not reach STS nor fall through");
        return std::nullopt;
    };
    auto failure = [&] {
        credentials_provider p(env.make(), service.make());
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        return message;
    };
    SECTION("the role without the token file in the environment")
    {
        env.vars["AWS_ROLE_ARN"] = role;
        CHECK(failure() == "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not: set both for web identity "
                           "federation, or unset AWS_ROLE_ARN to use other credentials");
    }
    SECTION("the token file without the role in the environment")
    {
        env.vars["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/t";
        CHECK(failure() == "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: set both for web identity "
                           "federation, or unset AWS_WEB_IDENTITY_TOKEN_FILE to use other credentials");
    }
    SECTION("the token file without the role in the profile")
    {
        env.files["/h/.aws/config"] = "[profile p]\nweb_identity_token_file = /t\n";
        env.vars["AWS_PROFILE"] = "p";
        CHECK(failure() == "/h/.aws/config, profile 'p' has web_identity_token_file but no role_arn: set both for web "
                           "identity federation");
    }
    SECTION("the role without the token file in the profile")
    {
        env.files["/h/.aws/config"] = "[default]\nrole_arn = " + role + "\n";
        CHECK(failure() == "/h/.aws/config, profile 'default' has role_arn but none of web_identity_token_file, "
                           "source_profile and credential_source: set web_identity_token_file for web identity "
                           "federation, or source_profile or credential_source to assume the role from other "
                           "credentials");
    }
    SECTION("credential_process and SSO are still refused")
    {
        env.files["/h/.aws/credentials"] = "[other]\naws_access_key_id = A\naws_secret_access_key = s\n";
        env.files["/h/.aws/config"] = "[default]\ncredential_process = /bin/creds\n";
        CHECK(failure().find("profile 'default' in /h/.aws/config gets its credentials through 'credential_process'")
              == 0);
        env.files["/h/.aws/config"] = "[default]\nsso_session = corp\n";
        CHECK(failure().find("profile 'default' in /h/.aws/config gets its credentials through 'sso_session'") == 0);
    }
}

TEST_CASE("credentials: session names are checked before STS is asked")
{
    auto env = web_identity_environment();
    fake_service service;
    service.script = [](const metadata_request&) -> std::optional<metadata_response> {
        FAIL("an invalid session name must not reach STS");
        return std::nullopt;
    };
    for (const std::string& bad : std::vector<std::string>{"a", std::string(65, 'x'), "two words", "slash/name", "caf\xc3\xa9"}) {
        INFO(bad);
        env.vars["AWS_ROLE_SESSION_NAME"] = bad;
        credentials_provider p(env.make(), service.make());
        CHECK(error_of([&] { get(p); })
              == "AWS_ROLE_SESSION_NAME must be 2 to 64 characters among letters, digits and _+=,.@-");
    }
    env.vars.erase("AWS_ROLE_SESSION_NAME");
    env.vars.erase("AWS_ROLE_ARN");
    env.vars.erase("AWS_WEB_IDENTITY_TOKEN_FILE");
    env.files["/h/.aws/config"] = "[default]\nrole_arn = " + role
                                + "\nweb_identity_token_file = /var/run/secrets/token\nrole_session_name = x\n";
    credentials_provider p(env.make(), service.make());
    CHECK(error_of([&] { get(p); })
          == "/h/.aws/config, profile 'default', setting 'role_session_name' must be 2 to 64 characters among letters, "
             "digits and _+=,.@-");
    CHECK(s3::detail::is_valid_role_session_name("pipemode-1795845600000"));
    CHECK(s3::detail::is_valid_role_session_name(std::string(64, 'x')));
}

TEST_CASE("credentials: STS failures stop the chain and never show the token or the credentials")
{
    auto env = web_identity_environment();
    fake_service service;
    sts_service sts;
    service.script = std::ref(sts);
    auto failure = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        return message;
    };
    const std::string url = "https://sts.us-east-1.amazonaws.com/";
    const std::string prefix = "web identity for role " + role + ": ";

    sts.up = false;
    CHECK(failure() == prefix + "no answer from STS at " + url + " within 10000 ms (3 attempts)");
    CHECK(service.requests.size() == 3);
    sts.up = true;
    sts.answer = metadata_response{503, "<html>busy</html>"};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRoleWithWebIdentity: HTTP 503");
    CHECK(service.requests.size() == 3);
    sts.answer = metadata_response{403, sts_error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRoleWithWebIdentity: HTTP 403 (AccessDenied: "
                                "Not authorized to perform sts:AssumeRoleWithWebIdentity)");
    CHECK(service.requests.size() == 1);
    sts.answer = metadata_response{400, sts_error("InvalidIdentityToken", "Token eyJzdWIiOiJXEBIDENTITYTOKEN+/w== is bad")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRoleWithWebIdentity: HTTP 400 (InvalidIdentityToken: "
                                "(STS's message is left out: it quotes the web identity token))");
    sts.answer = metadata_response{400, sts_error("Expired<Token>", "line one\nline two")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRoleWithWebIdentity: HTTP 400");  // not XML
    sts.answer = metadata_response{400, sts_error("Bad Code", "line one\nline two")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRoleWithWebIdentity: HTTP 400 (an unreadable error "
                                "code: line one line two)");

    const std::string unusable = prefix + "the answer of STS at " + url + " is unusable: ";
    const std::string good = sts_document("ASIA1", "2026-11-28T12:00:00Z");
    sts.answer = ok(good.substr(0, good.size() / 2));
    CHECK(failure().find(unusable + "the response is not an XML document (malformed XML document at byte ") == 0);
    sts.answer = ok("<ErrorResponse><Error><Code>" + secret + "</Code></Error></ErrorResponse>");
    CHECK(failure() == unusable + "the response has no AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/"
                                  "Credentials");
    std::string no_token = good;
    no_token.replace(no_token.find("<SessionToken>"), std::string("<SessionToken>").size() + token.size(),
                     "<SessionToken>");
    sts.answer = ok(no_token);
    CHECK(failure() == unusable + "the response's Credentials have no usable SessionToken (a non-empty text without "
                                  "control characters)");
    sts.answer = ok(sts_document("ASIA1", token));
    CHECK(failure() == unusable + "the response's Expiration is not an ISO 8601 time such as 2026-11-28T12:00:00Z");
    sts.answer = ok(sts_document("ASIA1", "2026-11-28T05:00:00Z"));
    CHECK(failure() == "web identity (" + role + ") gave credentials that expired at 2026-11-28T05:00:00Z while the "
                       "clock reads 2026-11-28T06:00:00Z: check the system clock");
    sts.answer.reset();

    env.files.erase("/var/run/secrets/token");
    CHECK(failure() == prefix + "AWS_WEB_IDENTITY_TOKEN_FILE names /var/run/secrets/token, which does not exist");
    env.files["/var/run/secrets/token"] = " \n";
    CHECK(failure() == prefix + "the web identity token file /var/run/secrets/token is empty");
    CHECK(service.requests.empty());
    env.files["/var/run/secrets/token"] = web_token;
    {
        credentials_provider p(env.make(), {});
        const auto message = error_of([&] { get(p); });
        CHECK(message == prefix + "no HTTP fetcher was given to reach STS at " + url);
    }

    // The token file goes through the environment's bounded reader.
    namespace fs = std::filesystem;
    const fs::path big = fs::temp_directory_path() / ("pipemode-web-token-" + std::to_string(::getpid()));
    std::ofstream(big, std::ios::binary) << std::string(max_settings_file_size + 1, 'e');
    env.vars["AWS_WEB_IDENTITY_TOKEN_FILE"] = big.string();
    environment bounded = env.make();
    bounded.read_file = environment::process().read_file;
    credentials_provider p(bounded, service.make());
    CHECK(error_of([&] { get(p); }) == big.string() + " is larger than 1 MiB, too large for a settings file");
    fs::remove(big);
}

TEST_CASE("credentials: web identity is refreshed from STS with the token file read again")
{
    auto env = web_identity_environment();
    fake_service service;
    sts_service sts;
    service.script = std::ref(sts);
    auto now = at("2026-11-28T11:00:00Z");
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [&] { return now; }});
    CHECK(get(p).credentials.access_key_id == "ASIASTSKEY1");
    REQUIRE(service.requests.size() == 1);

    // EKS rotates the token in the file; the next fetch sends the new one.
    const std::string rotated = "eyJhbGciOiJSUzI1NiJ9.ROTATEDTOKEN.c2ln";
    env.files["/var/run/secrets/token"] = rotated + "\r\n";
    sts.id = "ASIASTSKEY2";
    sts.expiration = "2026-11-28T18:00:00Z";
    // Keys that appear in the environment later do not replace the source being refreshed.
    env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV";
    env.vars["AWS_SECRET_ACCESS_KEY"] = "s";
    now = at("2026-11-28T11:54:59Z");
    CHECK(get(p).credentials.access_key_id == "ASIASTSKEY1");
    CHECK(service.requests.size() == 1);
    now = at("2026-11-28T11:55:01Z");
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIASTSKEY2");
    CHECK(c.expiration == at("2026-11-28T18:00:00Z"));
    CHECK(c.source == "web identity (" + role + ")");
    REQUIRE(service.requests.size() == 2);
    const auto fields = form_fields(service.requests[1].body);
    CHECK(fields.at("WebIdentityToken") == rotated);
    CHECK(fields.at("RoleSessionName") == "pipemode-" + std::to_string(1795866901000));

    // A failed refresh keeps the valid credentials, then fails once they expire.
    sts.answer = metadata_response{400, sts_error("ExpiredTokenException", "Token expired")};
    now = at("2026-11-28T17:56:00Z");
    CHECK(get(p).credentials.access_key_id == "ASIASTSKEY2");
    CHECK(service.requests.size() == 3);
    now = at("2026-11-28T18:00:00Z");
    const auto message = error_of([&] { get(p); });
    // A configured source that fails says so itself, as on first use.
    CHECK(message == "web identity for role " + role
                         + ": STS at https://sts.us-east-1.amazonaws.com/ refused AssumeRoleWithWebIdentity: HTTP 400 "
                           "(ExpiredTokenException: Token expired)");
    check_no_secrets(message);
    CHECK(message.find("ROTATEDTOKEN") == std::string::npos);
}

namespace {

const std::string data_role = "arn:aws:iam::123456789012:role/read-training-data";
const std::string mid_role = "arn:aws:iam::210987654321:role/hop";
// Not a secret, but kept out of messages all the same.
const std::string external_id = "EXTERNAL-ID-4f1a9";

std::string assume_role_document(std::string_view id, std::string_view expiration)
{
    return sts_credentials_document("AssumeRole",
                                    "<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>"
                                    "<AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>",
                                    id, expiration);
}

/// STS at `url`: AssumeRole answers with the key id `keys[RoleArn]`, AssumeRoleWithWebIdentity
/// with "ASIASTSKEY1"; `answer` replaces every answer. Other URLs go to `other` (metadata).
struct role_sts {
    std::string url = "https://sts.eu-west-3.amazonaws.com/";
    std::map<std::string, std::string> keys{{data_role, "ASIAROLEKEY"}, {mid_role, "ASIAMIDKEY"}};
    std::string expiration = "2026-11-28T12:00:00Z";
    std::optional<metadata_response> answer;
    bool up = true;
    std::function<std::optional<metadata_response>(const metadata_request&)> other;

    std::optional<metadata_response> operator()(const metadata_request& r) const
    {
        if (r.url != url) {
            if (other)
                return other(r);
            FAIL("unexpected request to " << r.url);
        }
        if (!up)
            return std::nullopt;
        if (answer)
            return *answer;
        const auto fields = form_fields(r.body);
        if (fields.at("Action") == "AssumeRoleWithWebIdentity")
            return ok(sts_document("ASIASTSKEY1", expiration));
        REQUIRE(fields.at("Action") == "AssumeRole");
        return ok(assume_role_document(keys.at(fields.at("RoleArn")), expiration));
    }
};

/// The config and credentials files of a role profile 'data-reader' assumed from profile 'base'.
fake_environment role_environment()
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "data-reader"}, {"AWS_EC2_METADATA_DISABLED", "true"}};
    env.files["/h/.aws/config"] = "[profile data-reader]\n"
                                  "region = eu-west-3\n"
                                  "role_arn = " + data_role + "\n"
                                  "source_profile = base\n";
    env.files["/h/.aws/credentials"] = "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = " + secret + "\n";
    return env;
}

/// Checks that `r` is an AssumeRole POST signed with SigV4 by `key_id` for sts in `region` at
/// 2026-11-28T06:00:00Z, with `session_token` (or none) in X-Amz-Security-Token.
void check_signed(const metadata_request& r, std::string_view key_id, std::string_view session_token,
                  std::string_view region = "eu-west-3")
{
    CHECK(r.method == "POST");
    CHECK(r.timeout == 10000ms);
    CHECK(header(r, "Content-Type") == "application/x-www-form-urlencoded; charset=utf-8");
    CHECK(header(r, "X-Amz-Date") == "20261128T060000Z");
    const std::string expected_token = session_token.empty() ? "<absent>" : std::string(session_token);
    CHECK(header(r, "X-Amz-Security-Token") == expected_token);
    const std::string authorization = header(r, "Authorization");
    const std::string prefix = "AWS4-HMAC-SHA256 Credential=" + std::string(key_id) + "/20261128/"
                             + std::string(region) + "/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date"
                             + (session_token.empty() ? "" : ";x-amz-security-token") + ", Signature=";
    INFO(authorization);
    REQUIRE(authorization.rfind(prefix, 0) == 0);
    const std::string signature = authorization.substr(prefix.size());
    CHECK(signature.size() == 64);
    CHECK(signature.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(form_fields(r.body).at("Action") == "AssumeRole");
}

/// One AssumeRole request botocore signed (see scripts/dev/gen_assume_role_vectors.py).
struct assume_role_vector {
    std::string name;
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token;
    long long epoch_seconds;
    std::string body;
    std::vector<std::pair<std::string, std::string>> expected;
};

} // namespace

TEST_CASE("assume role: an AssumeRole call signed with the source profile's keys")
{
    auto env = role_environment();
    fake_service service;
    role_sts sts;
    service.script = std::ref(sts);
    auto first = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        const auto c = get(p);
        REQUIRE(service.requests.size() == 1);
        return c;
    };

    const auto c = first();
    CHECK(c.credentials.access_key_id == "ASIAROLEKEY");
    CHECK(c.credentials.secret_access_key == secret);
    CHECK(c.credentials.session_token == token);
    CHECK(c.expiration == at("2026-11-28T12:00:00Z"));
    CHECK(c.source == "assumed role " + data_role + " (from profile 'base')");
    const auto& r = service.requests[0];
    CHECK(r.url == "https://sts.eu-west-3.amazonaws.com/");
    check_signed(r, "AKIDBASE", "");
    CHECK(form_fields(r.body) == std::map<std::string, std::string>{
                                     {"Action", "AssumeRole"},
                                     {"Version", "2011-06-15"},
                                     {"RoleArn", data_role},
                                     {"RoleSessionName", "pipemode-" + std::to_string(1795845600000)},
                                 });
    CHECK(r.body.rfind("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2F", 0)
          == 0);

    SECTION("the optional settings become form fields")
    {
        env.files["/h/.aws/config"] += "role_session_name = trainer-7@ml.example\n"
                                       "external_id = " + external_id + "\n"
                                       "duration_seconds = 43200\n";
        first();
        const auto fields = form_fields(service.requests[0].body);
        CHECK(fields.at("RoleSessionName") == "trainer-7@ml.example");
        CHECK(fields.at("ExternalId") == external_id);
        CHECK(fields.at("DurationSeconds") == "43200");
        CHECK(fields.size() == 6);
    }
    SECTION("a source with a session token sends and signs X-Amz-Security-Token")
    {
        env.files["/h/.aws/credentials"] += "aws_session_token = " + token + "\n";
        first();
        check_signed(service.requests[0], "AKIDBASE", token);
    }
    SECTION("the source profile's keys from the config file when the credentials file has none")
    {
        env.files.erase("/h/.aws/credentials");
        env.files["/h/.aws/config"] += "[profile base]\naws_access_key_id = AKIDCONFIGBASE\naws_secret_access_key = "
                                     + secret + "\n";
        first();
        check_signed(service.requests[0], "AKIDCONFIGBASE", "");
    }
    SECTION("the STS endpoint and region as for web identity")
    {
        env.vars["AWS_ENDPOINT_URL"] = "http://127.0.0.1:5000";
        env.vars["AWS_REGION"] = "ap-south-1";
        sts.url = "http://127.0.0.1:5000/";
        first();
        check_signed(service.requests[0], "AKIDBASE", "", "ap-south-1");
        env.vars["AWS_ENDPOINT_URL_STS"] = "https://sts.example.com:8443/base/";
        sts.url = "https://sts.example.com:8443/base/";
        first();
        check_signed(service.requests[0], "AKIDBASE", "", "ap-south-1");
    }
    SECTION("a role profile with keys of its own assumes its role; as a source, it gives its keys")
    {
        env.files["/h/.aws/credentials"] += "[data-reader]\naws_access_key_id = AKIDOWN\naws_secret_access_key = s\n";
        CHECK(first().credentials.access_key_id == "ASIAROLEKEY");
        check_signed(service.requests[0], "AKIDBASE", "");
        // 'base' assumes a role of its own, yet as data-reader's source it gives its keys.
        env.files["/h/.aws/config"] += "[profile base]\nrole_arn = " + mid_role + "\nsource_profile = nowhere\n";
        CHECK(first().credentials.access_key_id == "ASIAROLEKEY");
        check_signed(service.requests[0], "AKIDBASE", "");
        // A profile may be its own source when it has keys.
        env.files["/h/.aws/config"] = "[profile data-reader]\nregion = eu-west-3\nrole_arn = " + data_role
                                    + "\nsource_profile = data-reader\n";
        CHECK(first().credentials.access_key_id == "ASIAROLEKEY");
        check_signed(service.requests[0], "AKIDOWN", "");
    }
}

TEST_CASE("assume role: the signature is botocore's, byte for byte")
{
    static const std::vector<assume_role_vector> vectors = {
#include "assume_role_vectors.inc"
    };
    REQUIRE(vectors.size() == 2);
    for (const auto& v : vectors) {
        INFO(v.name);
        fake_environment env;
        env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "data-reader"}};
        // The settings scripts/dev/gen_assume_role_vectors.py signs.
        env.files["/h/.aws/config"] = "[profile data-reader]\n"
                                      "region = eu-west-3\n"
                                      "role_arn = arn:aws:iam::123456789012:role/read-training-data\n"
                                      "source_profile = base\n"
                                      "role_session_name = trainer-7@ml.example\n"
                                      "external_id = ext/id+with=odd:chars\n"
                                      "duration_seconds = 7200\n";
        env.files["/h/.aws/credentials"] = "[base]\naws_access_key_id = " + v.access_key_id
                                         + "\naws_secret_access_key = " + v.secret_access_key
                                         + "\naws_session_token = " + v.session_token + "\n";
        fake_service service;
        role_sts sts;
        service.script = std::ref(sts);
        const auto t = std::chrono::system_clock::time_point{std::chrono::seconds{v.epoch_seconds}};
        credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [t] { return t; }});
        CHECK(get(p).credentials.access_key_id == "ASIAROLEKEY");
        REQUIRE(service.requests.size() == 1);
        const auto& r = service.requests[0];
        CHECK(r.body == v.body);
        std::vector<std::pair<std::string, std::string>> added;
        for (const auto& [name, value] : r.headers)
            if (name != "Content-Type")
                added.emplace_back(name, value);
        CHECK(added == v.expected);
    }
}

TEST_CASE("assume role: credential_source Environment, Ec2InstanceMetadata and EcsContainer")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "data-reader"}};
    auto configure = [&](std::string_view source) {
        env.files["/h/.aws/config"] = "[profile data-reader]\nregion = eu-west-3\nrole_arn = " + data_role
                                    + "\ncredential_source = " + std::string(source) + "\n";
    };
    fake_service service;
    role_sts sts;
    imds instance;
    sts.other = [&](const metadata_request& r) -> std::optional<metadata_response> {
        if (r.url == "http://169.254.170.2/creds")
            return ok(credentials_json("ASIACONTAINER", "2026-11-28T12:00:00Z"));
        return instance(r);
    };
    service.script = std::ref(sts);
    auto first = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        return get(p);
    };
    auto failure = [&] {
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        return message;
    };

    SECTION("Environment: the environment's keys sign the call instead of being used directly")
    {
        configure("Environment");
        env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV";
        env.vars["AWS_SECRET_ACCESS_KEY"] = secret;
        env.vars["AWS_SESSION_TOKEN"] = token;
        const auto c = first();
        CHECK(c.credentials.access_key_id == "ASIAROLEKEY");
        CHECK(c.source == "assumed role " + data_role + " (from credential_source Environment)");
        REQUIRE(service.requests.size() == 1);
        check_signed(service.requests[0], "AKIAENV", token);
        // Without the keys: an error, not another source.
        env.vars.erase("AWS_ACCESS_KEY_ID");
        env.vars.erase("AWS_SECRET_ACCESS_KEY");
        env.vars.erase("AWS_SESSION_TOKEN");
        CHECK(failure() == "role " + data_role + " of profile 'data-reader' is assumed with credential_source "
                           "Environment, but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
        // Other role profiles do not stop the environment's keys from winning.
        env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV";
        env.vars["AWS_SECRET_ACCESS_KEY"] = secret;
        configure("Ec2InstanceMetadata");
        CHECK(first().source == "environment");
        CHECK(service.requests.empty());
    }
    SECTION("Ec2InstanceMetadata: IMDSv2's role credentials")
    {
        configure("Ec2InstanceMetadata");
        const auto c = first();
        CHECK(c.credentials.access_key_id == "ASIAROLEKEY");
        CHECK(c.source == "assumed role " + data_role + " (from credential_source Ec2InstanceMetadata)");
        REQUIRE(service.requests.size() == 4);
        CHECK(service.requests[0].url == "http://169.254.169.254/latest/api/token");
        check_signed(service.requests[3], "ASIAIMDSKEY1", token);
        instance.up = false;
        CHECK(failure() == "role " + data_role + " of profile 'data-reader' is assumed with credential_source "
                           "Ec2InstanceMetadata, which gave nothing: no answer from http://169.254.169.254 within 1000 ms");
    }
    SECTION("EcsContainer: the container's credentials")
    {
        configure("EcsContainer");
        env.vars["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "/creds";
        const auto c = first();
        CHECK(c.source == "assumed role " + data_role + " (from credential_source EcsContainer)");
        REQUIRE(service.requests.size() == 2);
        CHECK(service.requests[0].url == "http://169.254.170.2/creds");
        check_signed(service.requests[1], "ASIACONTAINER", token);
        env.vars.erase("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        CHECK(failure() == "role " + data_role + " of profile 'data-reader' is assumed with credential_source "
                           "EcsContainer, which gave nothing: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and "
                           "AWS_CONTAINER_CREDENTIALS_FULL_URI are not set");
    }
    SECTION("another value, or both source settings, is an error")
    {
        configure("Ec2Instance");
        CHECK(failure() == "/h/.aws/config, profile 'data-reader', setting 'credential_source' must be Environment, "
                           "Ec2InstanceMetadata or EcsContainer");
        env.files["/h/.aws/config"] += "source_profile = base\n";
        CHECK(failure() == "/h/.aws/config, profile 'data-reader' has both source_profile and credential_source: keep "
                           "the one that says where the credentials that assume role " + data_role + " come from");
        CHECK(service.requests.empty());
    }
}

TEST_CASE("assume role: chains of roles, from keys and from a web identity")
{
    auto env = role_environment();
    env.files["/h/.aws/config"] = "[profile data-reader]\nregion = eu-west-3\nrole_arn = " + data_role
                                + "\nsource_profile = hop\n"
                                  "[profile hop]\nregion = us-west-2\nrole_arn = " + mid_role
                                + "\nsource_profile = base\nexternal_id = " + external_id + "\n";
    fake_service service;
    role_sts sts;
    service.script = std::ref(sts);
    credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
    auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIAROLEKEY");
    CHECK(c.source == "assumed role " + data_role + " (from profile 'hop')");
    REQUIRE(service.requests.size() == 2);
    // The inner role first, with the base keys, then the chosen profile's with the inner role's
    // keys; both at the chosen profile's region and endpoint.
    check_signed(service.requests[0], "AKIDBASE", "");
    CHECK(form_fields(service.requests[0].body).at("RoleArn") == mid_role);
    CHECK(form_fields(service.requests[0].body).at("ExternalId") == external_id);
    check_signed(service.requests[1], "ASIAMIDKEY", token);
    CHECK(form_fields(service.requests[1].body).at("RoleArn") == data_role);
    CHECK(form_fields(service.requests[1].body).count("ExternalId") == 0);

    SECTION("from a source profile's web identity")
    {
        env.files["/h/.aws/config"] += "[profile base]\nrole_arn = " + role
                                     + "\nweb_identity_token_file = /tokens/eks\nrole_session_name = from-eks\n";
        env.files.erase("/h/.aws/credentials");
        env.files["/tokens/eks"] = web_token + "\n";
        service.requests.clear();
        credentials_provider q(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        CHECK(get(q).credentials.access_key_id == "ASIAROLEKEY");
        REQUIRE(service.requests.size() == 3);
        const auto web = form_fields(service.requests[0].body);
        CHECK(web.at("Action") == "AssumeRoleWithWebIdentity");
        CHECK(web.at("RoleArn") == role);
        CHECK(web.at("RoleSessionName") == "from-eks");
        CHECK(web.at("WebIdentityToken") == web_token);
        CHECK(header(service.requests[0], "Authorization") == "<absent>");
        check_signed(service.requests[1], "ASIASTSKEY1", token);
        check_signed(service.requests[2], "ASIAMIDKEY", token);
    }
}

TEST_CASE("assume role: cycles, long chains and sources without credentials are errors naming the profiles")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "a"}};
    env.files["/h/.aws/credentials"] = "[keys]\naws_access_key_id = AKIDBASE\naws_secret_access_key = " + secret
                                     + "\naws_session_token = " + token + "\n";
    fake_service service;
    service.script = [](const metadata_request& r) -> std::optional<metadata_response> {
        if (form_fields(r.body).at("Action") == "AssumeRole")
            return ok(assume_role_document("ASIAHOP", "2026-11-28T12:00:00Z"));
        FAIL("unexpected request");
        return std::nullopt;
    };
    auto role_profile = [](std::string_view name, std::string_view source) {
        return "[profile " + std::string(name) + "]\nrole_arn = arn:aws:iam::1:role/" + std::string(name)
             + "\nsource_profile = " + std::string(source) + "\n";
    };
    auto failure = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        CHECK(service.requests.empty());
        return message;
    };

    env.files["/h/.aws/config"] = role_profile("a", "b") + role_profile("b", "c") + role_profile("c", "a");
    CHECK(failure() == "the source_profile settings of /h/.aws/config form a cycle: 'a' -> 'b' -> 'c' -> 'a'");
    env.files["/h/.aws/config"] = role_profile("a", "a");
    CHECK(failure() == "the source_profile settings of /h/.aws/config form a cycle: 'a' -> 'a'");

    // Eight roles are assumed in turn; a ninth is refused.
    std::string config;
    for (int i = 1; i <= 8; ++i)
        config += role_profile(i == 1 ? "a" : "r" + std::to_string(i), i == 8 ? "keys" : "r" + std::to_string(i + 1));
    env.files["/h/.aws/config"] = config;
    {
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        CHECK(get(p).source == "assumed role arn:aws:iam::1:role/a (from profile 'r2')");
        REQUIRE(service.requests.size() == 8);
        check_signed(service.requests[0], "AKIDBASE", token, "us-east-1");
        CHECK(form_fields(service.requests[0].body).at("RoleArn") == "arn:aws:iam::1:role/r8");
        check_signed(service.requests[7], "ASIAHOP", token, "us-east-1");
    }
    config.replace(config.find("source_profile = keys"), std::string("source_profile = keys").size(),
                   "source_profile = r9");
    env.files["/h/.aws/config"] = config + role_profile("r9", "keys");
    CHECK(failure() == "the source_profile settings of /h/.aws/config chain more than 8 roles: 'a' -> 'r2' -> 'r3' -> "
                       "'r4' -> 'r5' -> 'r6' -> 'r7' -> 'r8' -> 'r9'");

    env.files["/h/.aws/config"] = role_profile("a", "missing");
    CHECK(failure() == "/h/.aws/config, profile 'a' names source_profile 'missing', which is in neither "
                       "/h/.aws/credentials nor /h/.aws/config");
    env.files["/h/.aws/config"] = role_profile("a", "empty") + "[profile empty]\nregion = eu-west-1\n";
    CHECK(failure() == "/h/.aws/config, profile 'a' names source_profile 'empty', which has no credentials: give it "
                       "aws_access_key_id and aws_secret_access_key, role_arn and web_identity_token_file, or a role "
                       "of its own (role_arn with source_profile or credential_source)");
    env.files["/h/.aws/config"] = role_profile("a", "sso") + "[profile sso]\nsso_session = corp\n";
    CHECK(failure().find("/h/.aws/config, profile 'a' names source_profile 'sso', which gets its credentials through "
                         "'sso_session', which pipemode does not support")
          == 0);
    env.files["/h/.aws/config"] = role_profile("a", "half") + "[profile half]\naws_secret_access_key = " + secret + "\n";
    CHECK(failure() == "profile 'half' in /h/.aws/config has aws_secret_access_key but no aws_access_key_id");
}

TEST_CASE("assume role: settings are checked before STS is asked, without quoting the external id")
{
    fake_environment env = role_environment();
    fake_service service;
    service.script = [](const metadata_request&) -> std::optional<metadata_response> {
        FAIL("an invalid setting must not reach STS");
        return std::nullopt;
    };
    const std::string base = env.files["/h/.aws/config"];
    auto failure = [&](const std::string& extra) {
        env.files["/h/.aws/config"] = base + extra;
        credentials_provider p(env.make(), service.make());
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        CHECK(message.find("EXTERNAL") == std::string::npos);
        return message;
    };
    const std::string where = "/h/.aws/config, profile 'data-reader'";
    for (const char* bad : {"899", "43201", "1h", "-900", "3600.5", "99999999999999999999"}) {
        INFO(bad);
        CHECK(failure(std::string("duration_seconds = ") + bad + "\n")
              == where + ", setting 'duration_seconds' must be a whole number of seconds from 900 to 43200");
    }
    CHECK(failure("external_id = EXTERNAL id\n")
          == where + ", setting 'external_id' must be 2 to 1224 characters among letters, digits and _+=,.@:/-");
    CHECK(failure("external_id = E\n")
          == where + ", setting 'external_id' must be 2 to 1224 characters among letters, digits and _+=,.@:/-");
    CHECK(failure("role_session_name = two words\n")
          == where + ", setting 'role_session_name' must be 2 to 64 characters among letters, digits and _+=,.@-");
    CHECK(failure("mfa_serial = arn:aws:iam::123456789012:mfa/u\n").find(where + " has mfa_serial, which pipemode "
                                                                          "does not support")
          == 0);
    // Role settings in the shared credentials file are not read; the error says where they go.
    env.files["/h/.aws/config"] = "[profile data-reader]\nregion = eu-west-3\n";
    env.files["/h/.aws/credentials"] = "[data-reader]\nrole_arn = " + data_role + "\nsource_profile = base\n";
    credentials_provider p(env.make(), service.make());
    CHECK(error_of([&] { get(p); })
          == "profile 'data-reader' in /h/.aws/credentials has 'role_arn', which pipemode reads only in the config "
             "file: move the profile's role settings to its [profile data-reader] section there");
}

TEST_CASE("assume role: STS failures stop the chain and never show the credentials")
{
    auto env = role_environment();
    env.files["/h/.aws/credentials"] += "aws_session_token = " + token + "\n";
    env.files["/h/.aws/config"] += "external_id = " + external_id + "\n";
    env.vars["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = "/creds";  // must not be reached
    fake_service service;
    role_sts sts;
    service.script = std::ref(sts);
    auto failure = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        const auto message = error_of([&] { get(p); });
        check_no_secrets(message);
        CHECK(message.find(external_id) == std::string::npos);
        return message;
    };
    const std::string url = "https://sts.eu-west-3.amazonaws.com/";
    const std::string prefix = "role " + data_role + " of profile 'data-reader': ";

    sts.up = false;
    CHECK(failure() == prefix + "no answer from STS at " + url + " within 10000 ms (3 attempts)");
    CHECK(service.requests.size() == 3);
    sts.up = true;
    sts.answer = metadata_response{500, "<html>busy</html>"};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRole: HTTP 500");
    CHECK(service.requests.size() == 3);
    sts.answer = metadata_response{403, sts_error("AccessDenied", "User: arn:aws:iam::1:user/base is not authorized "
                                                                  "to perform: sts:AssumeRole")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRole: HTTP 403 (AccessDenied: User: "
                                "arn:aws:iam::1:user/base is not authorized to perform: sts:AssumeRole)");
    CHECK(service.requests.size() == 1);
    sts.answer = metadata_response{403, sts_error("InvalidClientTokenId", "The token " + token + " is invalid")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRole: HTTP 403 (InvalidClientTokenId: (STS's "
                                "message is left out: it quotes the source credentials))");
    sts.answer = metadata_response{403, sts_error("SignatureDoesNotMatch", "secret " + secret)};
    CHECK(failure().find("it quotes the source credentials") != std::string::npos);
    sts.answer = metadata_response{403, sts_error("AccessDenied", "external id " + external_id + " does not match")};
    CHECK(failure() == prefix + "STS at " + url + " refused AssumeRole: HTTP 403 (AccessDenied: (STS's message is "
                                "left out: it quotes the external id))");

    const std::string unusable = prefix + "the answer of STS at " + url + " is unusable: ";
    sts.answer = ok(sts_document("ASIA1", "2026-11-28T12:00:00Z"));  // AssumeRoleWithWebIdentity's
    CHECK(failure() == unusable + "the response has no AssumeRoleResponse/AssumeRoleResult/Credentials");
    const std::string good = assume_role_document("ASIA1", "2026-11-28T12:00:00Z");
    sts.answer = ok(good.substr(0, good.size() / 2));
    CHECK(failure().find(unusable + "the response is not an XML document") == 0);
    std::string no_secret = good;
    no_secret.replace(no_secret.find(secret), secret.size(), "");
    sts.answer = ok(no_secret);
    CHECK(failure() == unusable + "the response's Credentials have no usable SecretAccessKey (a non-empty text "
                                  "without control characters)");
    sts.answer = ok(assume_role_document("ASIA1", "2026-11-28T05:00:00Z"));
    CHECK(failure() == "assumed role " + data_role + " (from profile 'base') gave credentials that expired at "
                       "2026-11-28T05:00:00Z while the clock reads 2026-11-28T06:00:00Z: check the system clock");
    sts.answer.reset();
    credentials_provider p(env.make(), {});
    CHECK(error_of([&] { get(p); }) == prefix + "no HTTP fetcher was given to reach STS at " + url);
}

TEST_CASE("assume role: refreshed by resolving the source again and asking STS again")
{
    fake_environment env;
    env.vars = {{"HOME", "/h"}, {"AWS_PROFILE", "data-reader"}};
    env.files["/h/.aws/config"] = "[profile data-reader]\nregion = eu-west-3\nrole_arn = " + data_role
                                + "\ncredential_source = Ec2InstanceMetadata\n";
    fake_service service;
    role_sts sts;
    imds instance;
    sts.other = std::ref(instance);
    service.script = std::ref(sts);
    auto now = at("2026-11-28T11:00:00Z");
    credentials_provider p(env.make(), service.make(), {.profile = {}, .clock = [&] { return now; }});
    CHECK(get(p).credentials.access_key_id == "ASIAROLEKEY");
    REQUIRE(service.requests.size() == 4);

    // The instance's credentials rotate; the refresh signs with the new ones.
    instance.id = "ASIAIMDSKEY2";
    sts.keys[data_role] = "ASIAROLEKEY2";
    sts.expiration = "2026-11-28T18:00:00Z";
    // Keys that appear in the environment later do not replace the source being refreshed.
    env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV";
    env.vars["AWS_SECRET_ACCESS_KEY"] = "s";
    now = at("2026-11-28T11:54:59Z");
    CHECK(get(p).credentials.access_key_id == "ASIAROLEKEY");
    CHECK(service.requests.size() == 4);
    now = at("2026-11-28T11:55:01Z");
    const auto c = get(p);
    CHECK(c.credentials.access_key_id == "ASIAROLEKEY2");
    CHECK(c.expiration == at("2026-11-28T18:00:00Z"));
    CHECK(c.source == "assumed role " + data_role + " (from credential_source Ec2InstanceMetadata)");
    REQUIRE(service.requests.size() == 8);
    CHECK(header(service.requests[7], "Authorization").find("Credential=ASIAIMDSKEY2/20261128/eu-west-3/sts/")
          != std::string::npos);

    // A failed refresh keeps the valid credentials, then fails once they expire.
    sts.answer = metadata_response{403, sts_error("AccessDenied", "Not authorized")};
    now = at("2026-11-28T17:56:00Z");
    CHECK(get(p).credentials.access_key_id == "ASIAROLEKEY2");
    now = at("2026-11-28T18:00:00Z");
    const auto message = error_of([&] { get(p); });
    CHECK(message == "role " + data_role + " of profile 'data-reader': STS at https://sts.eu-west-3.amazonaws.com/ "
                     "refused AssumeRole: HTTP 403 (AccessDenied: Not authorized)");
    check_no_secrets(message);
}

TEST_CASE("assume role: its place in the chain")
{
    auto env = role_environment();
    fake_service service;
    role_sts sts;
    service.script = std::ref(sts);
    auto first = [&] {
        service.requests.clear();
        credentials_provider p(env.make(), service.make(), at_clock("2026-11-28T06:00:00Z"));
        return get(p).source;
    };
    // The environment's keys win, as for every other source.
    env.vars["AWS_ACCESS_KEY_ID"] = "AKIAENV";
    env.vars["AWS_SECRET_ACCESS_KEY"] = "s";
    CHECK(first() == "environment");
    CHECK(service.requests.empty());
    env.vars.erase("AWS_ACCESS_KEY_ID");
    env.vars.erase("AWS_SECRET_ACCESS_KEY");
    // The chosen profile's role comes before a web identity of the environment's.
    env.vars["AWS_ROLE_ARN"] = role;
    env.vars["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/var/run/secrets/token";
    env.files["/var/run/secrets/token"] = web_token;
    CHECK(first() == "assumed role " + data_role + " (from profile 'base')");
    CHECK(service.requests.size() == 1);
    // Another profile is not a role profile: the role settings of data-reader are not used.
    env.vars.erase("AWS_ROLE_ARN");
    env.vars.erase("AWS_WEB_IDENTITY_TOKEN_FILE");
    env.vars["AWS_PROFILE"] = "base";
    CHECK(first() == "shared credentials file (profile base)");
}
