// The CA bundle of S3 and https reads, taken the way the AWS CLI takes it: an explicit
// `ca_file` (the tools' --ca-file) > AWS_CA_BUNDLE > the profile's `ca_bundle` > the system's
// CAs. Reads go to nginx over TLS on loopback with a self-signed certificate, so each setting
// is shown to reach the clients that really connect: the ranged GETs, the manifest fetch, the
// data set's listing and streams, and the tools' https:// URLs. A missing file is an error
// naming its setting.
//
// This machine may have AWS_CA_BUNDLE (and AWS_PROFILE, AWS_CONFIG_FILE) set: tests that use
// the process's environment set or unset every variable they depend on and restore it after.
#include <pipemode/s3/data_set.hpp>
#include <pipemode/s3/store.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "../../examples/common/data_sources.hpp"

#include "reader_helpers.hpp"
#include "source_helpers.hpp"
#include "test_servers.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// This file's names stay its own: the files of tests/s3/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace ca_bundle_test {

using namespace pipemode;
using test::payloads_of;

namespace {

constexpr const char* bucket = "bucket";

/// RecordIO bytes of one record per payload.
std::vector<std::byte> framed(const std::vector<std::string>& payloads)
{
    std::vector<std::byte> out;
    for (const auto& p : payloads)
        append_recordio(out, std::as_bytes(std::span(p)));
    return out;
}

/// Writes `text` to `path`.
void write_text(const std::filesystem::path& path, const std::string& text)
{
    std::ofstream out(path, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
}

/// A self-signed certificate for 127.0.0.1 and its key, made with the openssl command.
void make_certificate(const std::filesystem::path& cert, const std::filesystem::path& key)
{
    const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
                                " -addext subjectAltName=IP:127.0.0.1 -keyout '" + key.string() + "' -out '"
                              + cert.string() + "' >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
}

/// nginx over TLS with the server's certificate, serving ROOT/bucket/KEY as the path-style
/// s3://bucket/KEY (nginx ignores signatures); plus an unrelated certificate that trusts
/// nothing this server shows. One per test process (CTest runs each case in its own).
struct tls_fixture {
    test::temp_dir dir;
    std::filesystem::path cert = dir / "server.pem";
    std::filesystem::path other_cert = dir / "other.pem";
    std::filesystem::path root = dir / "www";
    std::optional<test::nginx_server> server;
    std::vector<std::string> records = {"first record", "second record", "third record"};

    tls_fixture()
    {
        make_certificate(cert, dir / "server.key");
        make_certificate(other_cert, dir / "other.key");
        std::filesystem::create_directories(root / bucket / "data");
        test::write_file((root / bucket / "data" / "a.rec").string(), framed({records[0], records[1]}));
        test::write_file((root / bucket / "data" / "b.rec").string(), framed({records[2]}));
        write_text(root / bucket / "train.manifest", R"([{"prefix": "s3://bucket/data/"}, "a.rec", "b.rec"])");
        server.emplace(root, test::nginx_server::tls_files{cert, dir / "server.key"});
    }

    std::string endpoint() const { return server->url(); }
};

tls_fixture& fixture()
{
    static tls_fixture f;
    return f;
}

using variables = std::map<std::string, std::string, std::less<>>;

/// An environment of `vars` whose files are read from `files` (path -> contents) only:
/// nothing from this machine's environment or ~/.aws.
s3::environment environment_of(const variables& vars, const variables& files = {})
{
    s3::environment env;
    env.get_env = [vars](std::string_view name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end())
            return std::nullopt;
        return it->second;
    };
    env.read_file = [files](const std::string& path) -> std::optional<std::string> {
        auto it = files.find(path);
        if (it == files.end())
            return std::nullopt;
        return it->second;
    };
    return env;
}

/// Options reaching the TLS server with fixed credentials, in `env`.
s3::s3_options tls_options(s3::environment env)
{
    s3::s3_options o;
    o.endpoint_url = fixture().endpoint();
    o.region = "us-east-1";
    o.addressing_style = s3::addressing::path;
    o.credentials = s3::aws_credentials{"AKIDPIPEMODETEST", "pipemode-test-secret", ""};
    o.env = std::move(env);
    // One attempt: a verification failure must show at once, not after backoffs.
    o.stream.retry.max_attempts = 1;
    return o;
}

/// Every record of s3://bucket/data/a.rec and b.rec read with `o`.
std::vector<std::string> read_objects(s3::s3_options o)
{
    reader r(s3::s3_objects({"s3://bucket/data/a.rec", "s3://bucket/data/b.rec"}, std::move(o)),
             {.batch_size = 10, .format = data_format::recordio});
    return payloads_of(r);
}

/// The message of what `f` throws; fails the test when it throws nothing.
template <class F>
std::string error_text(F&& f)
{
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    FAIL("no exception was thrown");
    return {};
}

/// True when `message` is a certificate verification failure (curl's words for it).
bool is_verification_failure(const std::string& message)
{
    return message.find("SSL certificate problem") != std::string::npos;
}

/// Sets (or, with nothing, unsets) process environment variables, and restores them all when
/// it goes.
class env_guard {
public:
    void set(const std::string& name, std::optional<std::string> value)
    {
        if (!saved_.contains(name)) {
            const char* old = std::getenv(name.c_str());
            saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
        }
        if (value)
            ::setenv(name.c_str(), value->c_str(), 1);
        else
            ::unsetenv(name.c_str());
    }

    ~env_guard()
    {
        for (const auto& [name, value] : saved_) {
            if (value)
                ::setenv(name.c_str(), value->c_str(), 1);
            else
                ::unsetenv(name.c_str());
        }
    }

private:
    std::map<std::string, std::optional<std::string>> saved_;
};

/// The process environment for a test of the CA settings alone: no bundle, no profile, no
/// config file (restored by `guard`).
void clear_aws_environment(env_guard& guard)
{
    guard.set("AWS_CA_BUNDLE", std::nullopt);
    guard.set("AWS_PROFILE", std::nullopt);
    guard.set("AWS_DEFAULT_PROFILE", std::nullopt);
    guard.set("AWS_CONFIG_FILE", "/dev/null");
}

} // namespace

TEST_CASE("resolve_ca_bundle: AWS_CA_BUNDLE, else the chosen profile's ca_bundle, else nothing", "[s3]")
{
    const variables config = {{"/home/u/.aws/config",
                               "[default]\nca_bundle = /etc/default-ca.pem\n"
                               "[profile team]\nca_bundle = /etc/team-ca.pem\n"
                               "[profile plain]\nregion = eu-west-3\n"}};

    auto from_variable = s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}, {"AWS_CA_BUNDLE", "/etc/env-ca.pem"}}, config));
    REQUIRE(from_variable);
    CHECK(from_variable->path == "/etc/env-ca.pem");
    CHECK(from_variable->origin == "AWS_CA_BUNDLE");

    auto from_default = s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}}, config));
    REQUIRE(from_default);
    CHECK(from_default->path == "/etc/default-ca.pem");
    CHECK(from_default->origin == "/home/u/.aws/config, profile 'default', setting 'ca_bundle'");

    auto from_env_profile = s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}, {"AWS_PROFILE", "team"}}, config));
    REQUIRE(from_env_profile);
    CHECK(from_env_profile->path == "/etc/team-ca.pem");

    // The explicit profile wins over AWS_PROFILE, as for every other setting.
    auto from_override = s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}, {"AWS_PROFILE", "team"}}, config), "default");
    REQUIRE(from_override);
    CHECK(from_override->path == "/etc/default-ca.pem");

    CHECK_FALSE(s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}, {"AWS_PROFILE", "plain"}}, config)));
    CHECK_FALSE(s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}})));
    // Set but empty counts as unset, as the CLI reads it.
    auto empty_variable = s3::resolve_ca_bundle(environment_of({{"HOME", "/home/u"}, {"AWS_CA_BUNDLE", ""}}, config));
    REQUIRE(empty_variable);
    CHECK(empty_variable->path == "/etc/default-ca.pem");

    // resolve_settings carries the same answer.
    const auto settings = s3::resolve_settings(environment_of({{"HOME", "/home/u"}, {"AWS_PROFILE", "team"}}, config));
    REQUIRE(settings.ca_bundle);
    CHECK(settings.ca_bundle->path == "/etc/team-ca.pem");
    CHECK(settings.ca_bundle->origin == "/home/u/.aws/config, profile 'team', setting 'ca_bundle'");
}

TEST_CASE("resolve_ca_bundle does not read the config file when AWS_CA_BUNDLE is set", "[s3]")
{
    int reads = 0;
    s3::environment env = environment_of({{"HOME", "/home/u"}, {"AWS_CA_BUNDLE", "/etc/env-ca.pem"}});
    env.read_file = [&reads](const std::string&) -> std::optional<std::string> {
        ++reads;
        throw std::runtime_error("unreadable");
    };
    CHECK(s3::resolve_ca_bundle(env)->path == "/etc/env-ca.pem");
    CHECK(reads == 0);
}

TEST_CASE("Without a CA setting, a self-signed TLS endpoint fails certificate verification", "[s3]")
{
    const std::string message = error_text([] { read_objects(tls_options(environment_of({}))); });
    INFO(message);
    CHECK(message.find("s3://bucket/data/a.rec") != std::string::npos);
    CHECK(is_verification_failure(message));
}

TEST_CASE("AWS_CA_BUNDLE with the server's certificate makes the S3 read succeed", "[s3]")
{
    const auto got = read_objects(tls_options(environment_of({{"AWS_CA_BUNDLE", fixture().cert.string()}})));
    CHECK(got == fixture().records);

    // The bundle replaces the system's CAs: a bundle without the server's certificate fails.
    const std::string message = error_text(
        [] { read_objects(tls_options(environment_of({{"AWS_CA_BUNDLE", fixture().other_cert.string()}}))); });
    INFO(message);
    CHECK(is_verification_failure(message));
}

TEST_CASE("The chosen profile's ca_bundle makes the S3 read succeed, AWS_CA_BUNDLE wins over it", "[s3]")
{
    const std::string config = "/home/u/.aws/config";
    const variables files = {{config, "[profile private]\nca_bundle = " + fixture().cert.string() + "\n"}};

    const auto got = read_objects(tls_options(environment_of({{"HOME", "/home/u"}, {"AWS_PROFILE", "private"}}, files)));
    CHECK(got == fixture().records);

    auto by_option = tls_options(environment_of({{"HOME", "/home/u"}}, files));
    by_option.profile = "private";
    CHECK(read_objects(by_option) == fixture().records);

    const std::string message = error_text([&] {
        read_objects(tls_options(environment_of(
            {{"HOME", "/home/u"}, {"AWS_PROFILE", "private"}, {"AWS_CA_BUNDLE", fixture().other_cert.string()}}, files)));
    });
    INFO(message);
    CHECK(is_verification_failure(message));
}

TEST_CASE("An explicit ca_file wins over AWS_CA_BUNDLE and the profile", "[s3]")
{
    const variables files = {{"/home/u/.aws/config", "[default]\nca_bundle = " + fixture().other_cert.string() + "\n"}};

    auto right = tls_options(environment_of({{"HOME", "/home/u"}, {"AWS_CA_BUNDLE", fixture().other_cert.string()}}, files));
    right.stream.client.ca_file = fixture().cert.string();
    CHECK(read_objects(right) == fixture().records);

    auto wrong = tls_options(environment_of({{"HOME", "/home/u"}, {"AWS_CA_BUNDLE", fixture().cert.string()}}, files));
    wrong.stream.client.ca_file = fixture().other_cert.string();
    const std::string message = error_text([&] { read_objects(wrong); });
    INFO(message);
    CHECK(is_verification_failure(message));
}

TEST_CASE("The resolved CA reaches the manifest fetch and the data set's listing and streams", "[s3]")
{
    // s3_manifest fetches its manifest document with the stream's client before any GET.
    {
        reader r(s3::s3_manifest("s3://bucket/train.manifest",
                                 tls_options(environment_of({{"AWS_CA_BUNDLE", fixture().cert.string()}}))),
                 {.batch_size = 10, .format = data_format::recordio});
        CHECK(payloads_of(r) == fixture().records);
    }
    // A store lists with a client of its own, then opens streams over the listed objects.
    {
        data_set_reader r(s3::s3_manifest_store("s3://bucket/train.manifest",
                                                tls_options(environment_of({{"AWS_CA_BUNDLE", fixture().cert.string()}}))),
                          {}, {.batch_size = 10, .format = data_format::recordio});
        CHECK(payloads_of(r) == fixture().records);
    }
    {
        data_set_reader r(s3::s3_manifest_store("s3://bucket/train.manifest", tls_options(environment_of({}))), {},
                          {.batch_size = 10, .format = data_format::recordio});
        const std::string message = error_text([&] { (void)payloads_of(r); });
        INFO(message);
        CHECK(is_verification_failure(message));
    }
}

TEST_CASE("A CA bundle that does not exist is an error naming the setting it came from", "[s3]")
{
    const std::string missing = (fixture().dir.path() / "no-such-ca.pem").string();

    std::string message = error_text([&] { s3::s3_objects({"s3://bucket/data/a.rec"}, tls_options(environment_of({{"AWS_CA_BUNDLE", missing}}))); });
    CHECK(message.find("AWS_CA_BUNDLE") != std::string::npos);
    CHECK(message.find(missing) != std::string::npos);
    CHECK(message.find("does not exist") != std::string::npos);

    const variables files = {{"/home/u/.aws/config", "[profile private]\nca_bundle = " + missing + "\n"}};
    message = error_text([&] {
        s3::s3_store({"s3://bucket/data/a.rec"}, tls_options(environment_of({{"HOME", "/home/u"}, {"AWS_PROFILE", "private"}}, files)));
    });
    CHECK(message.find("/home/u/.aws/config, profile 'private', setting 'ca_bundle'") != std::string::npos);
    CHECK(message.find(missing) != std::string::npos);

    auto explicit_missing = tls_options(environment_of({}));
    explicit_missing.stream.client.ca_file = missing;
    message = error_text([&] { s3::s3_objects({"s3://bucket/data/a.rec"}, explicit_missing); });
    CHECK(message.find("ca_file") != std::string::npos);
    CHECK(message.find(missing) != std::string::npos);

    message = error_text([&] { s3::s3_objects({"s3://bucket/data/a.rec"}, tls_options(environment_of({{"AWS_CA_BUNDLE", fixture().dir.path().string()}}))); });
    CHECK(message.find("a directory") != std::string::npos);

    // Without verification nothing is trusted, so nothing is looked up.
    auto unverified = tls_options(environment_of({{"AWS_CA_BUNDLE", missing}}));
    unverified.stream.client.verify_tls = false;
    CHECK(read_objects(unverified) == fixture().records);
}

TEST_CASE("The process's AWS_CA_BUNDLE reaches S3 reads that use the process environment", "[s3]")
{
    env_guard guard;
    clear_aws_environment(guard);
    auto options = tls_options(environment_of({}));
    options.env.reset();  // environment::process()

    const std::string message = error_text([&] { read_objects(options); });
    INFO(message);
    CHECK(is_verification_failure(message));

    guard.set("AWS_CA_BUNDLE", fixture().cert.string());
    CHECK(read_objects(options) == fixture().records);
}

TEST_CASE("The tools take --ca-file, else AWS_CA_BUNDLE, else the profile's ca_bundle, for https:// URLs too", "[s3]")
{
    env_guard guard;
    clear_aws_environment(guard);
    const std::string url_a = fixture().endpoint() + "/bucket/data/a.rec";
    const std::string url_b = fixture().endpoint() + "/bucket/data/b.rec";
    auto read_urls = [&](const tools::source_options& o) {
        auto stream = stream_options_of(o);
        stream.retry.max_attempts = 1;
        reader r(remote::http_objects({url_a, url_b}, stream), {.batch_size = 10, .format = data_format::recordio});
        return payloads_of(r);
    };

    tools::source_options o;
    // The system's CAs: refused.
    std::string message = error_text([&] { read_urls(o); });
    INFO(message);
    CHECK(is_verification_failure(message));

    // AWS_CA_BUNDLE, the way a user of the AWS CLI sets it.
    guard.set("AWS_CA_BUNDLE", fixture().cert.string());
    CHECK(read_urls(o) == fixture().records);

    // --ca-file wins over it.
    guard.set("AWS_CA_BUNDLE", fixture().other_cert.string());
    o.ca_file = fixture().cert.string();
    CHECK(read_urls(o) == fixture().records);

    // The profile's ca_bundle (AWS_CA_BUNDLE unset, --profile given).
    guard.set("AWS_CA_BUNDLE", std::nullopt);
    const std::filesystem::path config = fixture().dir / "config";
    write_text(config, "[profile private]\nca_bundle = " + fixture().cert.string() + "\n");
    guard.set("AWS_CONFIG_FILE", config.string());
    o.ca_file.clear();
    o.profile = "private";
    CHECK(read_urls(o) == fixture().records);

    // A missing file names the option or variable.
    o.ca_file = (fixture().dir.path() / "missing.pem").string();
    message = error_text([&] { (void)stream_options_of(o); });
    CHECK(message.find("--ca-file") != std::string::npos);
    o.ca_file.clear();
    guard.set("AWS_CA_BUNDLE", (fixture().dir.path() / "missing.pem").string());
    message = error_text([&] { (void)stream_options_of(o); });
    CHECK(message.find("AWS_CA_BUNDLE") != std::string::npos);
}

} // namespace ca_bundle_test
