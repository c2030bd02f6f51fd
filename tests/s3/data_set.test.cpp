// Tests of S3 data sets (keys, prefixes, manifests) against moto_server on loopback.
#include <pipemode/s3/data_set.hpp>
#include <pipemode/s3/store.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/reader.hpp>

#include "source_helpers.hpp"
#include "fault_server.hpp"
#include "reader_helpers.hpp"
#include "test_servers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>

using namespace pipemode;
using test::payloads_of;

namespace {

using aws_credentials = s3::aws_credentials;

constexpr const char* bucket = "pipemode-data";
constexpr std::size_t many = 1050;  // more than one ListObjectsV2 page

/// RecordIO bytes of one record holding `payload`.
std::string framed(const std::string& payload)
{
    std::vector<std::byte> out;
    append_recordio(out, std::as_bytes(std::span(payload)));
    return std::string(reinterpret_cast<const char*>(out.data()), out.size());
}

/// Keys with characters that need encoding in URLs and in signatures.
const std::vector<std::string>& odd_keys()
{
    static const std::vector<std::string> keys = {"odd/a b+c=d~e.rec", "odd/x//y.rec", "odd/\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "de.rec",
                                                  "odd/100%25.rec"};
    return keys;
}

/// One moto_server with a bucket, for the whole test binary. CTest runs every test case in a
/// process of its own, so each case uploads only the objects it reads (uploads cost ~0.6 s
/// per aws call; 1,050 keys ~6 s).
struct s3_fixture {
    test::moto_server server;

    s3_fixture() { server.create_bucket(bucket); }

    void put(const std::string& key, const std::string& body) const
    {
        server.upload_bytes(bucket, key, std::as_bytes(std::span(body.data(), body.size())));
    }

    /// `count` objects "PREFIX" + six-digit index, object i holding one record "record i".
    std::vector<std::string> put_numbered(const std::string& prefix, std::size_t count) const
    {
        return server.upload_many(bucket, prefix, count, [](std::size_t i) { return framed("record " + std::to_string(i)); });
    }
};

s3_fixture& fixture()
{
    static s3_fixture f;
    return f;
}

using variables = std::map<std::string, std::string, std::less<>>;

/// An environment of the variables in `vars` (read when asked, so later changes count) and
/// no files at all: nothing from this machine's environment or ~/.aws.
s3::environment environment_of(const variables& vars)
{
    s3::environment env;
    env.get_env = [&vars](std::string_view name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end())
            return std::nullopt;
        return it->second;
    };
    env.read_file = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    return env;
}

/// Options that reach moto with explicit fake credentials and nothing from this machine's
/// environment or ~/.aws.
s3::s3_options moto_options(aws_credentials creds = {"AKIDPIPEMODETEST", "pipemode-test-secret", ""})
{
    s3::s3_options o;
    o.endpoint_url = fixture().server.endpoint();
    o.region = "us-east-1";
    o.credentials = std::move(creds);
    static const variables none;
    o.env = environment_of(none);
    return o;
}

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

} // namespace

TEST_CASE("A prefix of more than 1,000 keys is listed page by page and read in key order", "[s3]")
{
    const auto keys = fixture().put_numbered("many/part-", many);
    reader r(s3::s3_objects({std::string("s3://") + bucket + "/many/"}, moto_options()),
             {.batch_size = 100, .format = data_format::recordio});
    const auto got = payloads_of(r);
    REQUIRE(got.size() == many);
    for (std::size_t i = 0; i < many; ++i)
        CHECK(got[i] == "record " + std::to_string(i));
    CHECK(r.stats().sources == keys.size());
}

TEST_CASE("Keys with spaces, '+', '=', '~', '//', '%' and UTF-8 are addressed and signed correctly", "[s3]")
{
    for (const auto& k : odd_keys())
        fixture().put(k, framed("key " + k));
    std::vector<std::string> uris;
    for (const auto& k : odd_keys())
        uris.push_back(std::string("s3://") + bucket + "/" + k);
    for (auto style : {s3::addressing::path}) {
        auto o = moto_options();
        o.addressing_style = style;
        reader r(s3::s3_objects(uris, o), {.batch_size = 1, .format = data_format::recordio});
        const auto got = payloads_of(r);
        REQUIRE(got.size() == odd_keys().size());
        for (std::size_t i = 0; i < got.size(); ++i)
            CHECK(got[i] == "key " + odd_keys()[i]);
    }
    // The same objects through a listing of their prefix (S3 orders keys by their bytes).
    reader listed(s3::s3_objects({std::string("s3://") + bucket + "/odd/"}, moto_options()),
                  {.batch_size = 1, .format = data_format::recordio});
    auto got = payloads_of(listed);
    auto want = odd_keys();
    std::sort(want.begin(), want.end());
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        CHECK(got[i] == "key " + want[i]);
}

TEST_CASE("A SageMaker manifest file names the objects and their order", "[s3]")
{
    fixture().put_numbered("m/part-", 12);
    fixture().put("train.manifest", std::string("[{\"prefix\": \"s3://") + bucket
                                         + "/m/\"}, \"part-000007\", \"part-000003\", \"part-000011\"]");
    reader r(s3::s3_manifest(std::string("s3://") + bucket + "/train.manifest", moto_options()),
             {.batch_size = 10, .format = data_format::recordio});
    const auto got = payloads_of(r);
    CHECK(got == std::vector<std::string>{"record 7", "record 3", "record 11"});
}

TEST_CASE("An empty object is read as no records among others", "[s3]")
{
    fixture().put("empty-object.rec", "");
    fixture().put("one.rec", framed("record 1"));
    const std::string b = std::string("s3://") + bucket + "/";
    reader r(s3::s3_objects({b + "empty-object.rec", b + "one.rec"}, moto_options()),
             {.batch_size = 10, .format = data_format::recordio});
    CHECK(payloads_of(r) == std::vector<std::string>{"record 1"});
}

TEST_CASE("S3 errors name the object, the HTTP status and S3's error code, credentials never appear", "[s3]")
{
    fixture();
    const aws_credentials secret{"AKIDSHOWNMASKED", "never-print-this-secret", "never-print-this-token"};
    auto no_secret = [&](const std::string& text) {
        CHECK_THAT(text, !Catch::Contains("never-print-this-secret"));
        CHECK_THAT(text, !Catch::Contains("never-print-this-token"));
    };

    const std::string missing_key = std::string("s3://") + bucket + "/no/such/key.rec";
    reader r1(s3::s3_objects({missing_key}, moto_options(secret)), {.format = data_format::recordio});
    const std::string e1 = error_text([&] { payloads_of(r1); });
    CHECK_THAT(e1, Catch::Contains(missing_key));
    CHECK_THAT(e1, Catch::Contains("404"));
    CHECK_THAT(e1, Catch::Contains("NoSuchKey"));
    no_secret(e1);

    reader r2(s3::s3_objects({"s3://no-such-bucket-here/prefix/"}, moto_options(secret)), {.format = data_format::recordio});
    const std::string e2 = error_text([&] { payloads_of(r2); });
    CHECK_THAT(e2, Catch::Contains("s3://no-such-bucket-here/prefix/"));
    CHECK_THAT(e2, Catch::Contains("NoSuchBucket"));
    no_secret(e2);

    // A prefix with no objects is an empty data set, not an empty epoch.
    reader r3(s3::s3_objects({std::string("s3://") + bucket + "/nothing-here/"}, moto_options(secret)),
              {.format = data_format::recordio});
    const std::string e3 = error_text([&] { payloads_of(r3); });
    CHECK_THAT(e3, Catch::Contains("empty"));
    no_secret(e3);
}

TEST_CASE("Endpoint, region and credentials come from the environment when not given", "[s3]")
{
    fixture();
    variables vars = {
        {"AWS_ENDPOINT_URL_S3", fixture().server.endpoint()},
        {"AWS_REGION", "eu-west-3"},
        {"AWS_ACCESS_KEY_ID", "AKIDFROMENV"},
        {"AWS_SECRET_ACCESS_KEY", "secret-from-env"},
    };
    const s3::environment env = environment_of(vars);
    s3::s3_options o;
    o.env = env;
    auto ctx = s3::s3_context(o);
    CHECK(ctx.endpoint().to_string() == fixture().server.endpoint());
    CHECK(ctx.region() == "eu-west-3");
    CHECK(ctx.style_for(bucket) == s3::addressing::path);

    fixture().put("env/part-000042", framed("record 42"));
    reader r(s3::s3_objects({std::string("s3://") + bucket + "/env/part-000042"}, o), {.format = data_format::recordio});
    CHECK(payloads_of(r) == std::vector<std::string>{"record 42"});

    // Without an override, AWS itself, virtual-hosted.
    vars.erase("AWS_ENDPOINT_URL_S3");
    auto aws = s3::s3_context(o);
    CHECK(aws.endpoint().to_string() == "https://s3.eu-west-3.amazonaws.com");
    CHECK(aws.style_for(bucket) == s3::addressing::virtual_hosted);
}

TEST_CASE("Credentials from a container endpoint sign the requests, and are fetched once", "[s3]")
{
    // One loopback server plays both the container credentials endpoint and S3, and records
    // what it is sent.
    test::fault_server server;
    server.put("/v2/credentials/task", R"({"AccessKeyId": "AKIDFROMCONTAINER", "SecretAccessKey": "container-secret",
        "Token": "container-session-token", "Expiration": "2099-01-01T00:00:00Z"})");
    const std::string body = framed("from a signed request");
    server.put("/bucket-a/key.rec", body);
    server.put("/bucket-a/other.rec", body);

    variables vars = {
        {"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/v2/credentials/task"},
        {"AWS_EC2_METADATA_DISABLED", "true"},
    };
    const s3::environment env = environment_of(vars);
    s3::s3_options o;
    o.env = env;
    o.endpoint_url = server.url();
    o.region = "eu-west-3";
    reader r(s3::s3_objects({"s3://bucket-a/key.rec", "s3://bucket-a/other.rec"}, o), {.format = data_format::recordio});
    CHECK(payloads_of(r) == std::vector<std::string>{"from a signed request", "from a signed request"});

    std::size_t credential_fetches = 0, signed_gets = 0;
    for (const auto& req : server.requests()) {
        if (req.path == "/v2/credentials/task") {
            ++credential_fetches;
            continue;
        }
        ++signed_gets;
        CHECK_THAT(req.header("authorization"),
                   Catch::StartsWith("AWS4-HMAC-SHA256 Credential=AKIDFROMCONTAINER/") && Catch::Contains("/eu-west-3/s3/aws4_request"));
        CHECK(req.header("x-amz-security-token") == "container-session-token");
        CHECK(req.header("x-amz-content-sha256") == s3::empty_payload_sha256);
        CHECK_THAT(req.header("authorization"), !Catch::Contains("container-secret"));
    }
    CHECK(credential_fetches == 1);
    CHECK(signed_gets >= 2);
}

namespace {

/// Uploads `objects` objects under "store/<tag>/", object i holding records "o<i>r<j>" of
/// assorted sizes; returns every payload in key order.
std::vector<std::string> put_store_objects(const std::string& tag, std::size_t objects)
{
    std::vector<std::string> all;
    for (std::size_t i = 0; i < objects; ++i) {
        std::string body;
        for (std::size_t j = 0; j < 30 + 5 * i; ++j) {
            const std::string p = "o" + std::to_string(i) + "r" + std::to_string(j) + std::string((i * 31 + j * 17) % 700, 'p');
            body += framed(p);
            all.push_back(p);
        }
        fixture().put("store/" + tag + "/part-" + std::to_string(i) + ".rec", body);
    }
    return all;
}

reader_options raw_batches()
{
    return {.batch_size = 8, .format = data_format::recordio, .memory_budget = 64 * mib, .max_record_size = 1 * mib};
}

} // namespace

TEST_CASE("s3_store: a prefix sharded by byte range over 3 ranks and 2 shuffled epochs reads every record once per epoch")
{
    const auto all = put_store_objects("ranges", 4);
    const std::multiset<std::string> want(all.begin(), all.end());
    std::map<std::uint64_t, std::multiset<std::string>> got;
    auto o = moto_options();
    o.stream.part_size = 4 * kib;  // ranges that span several parts, and parts that cut records
    for (std::size_t rank = 0; rank < 3; ++rank) {
        data_set_reader r(s3::s3_store({"s3://" + std::string(bucket) + "/store/ranges/"}, o),
                          {.plan = {.shard = {.rank = rank, .world_size = 3, .mode = shard_mode::by_byte_range}, .shuffle_seed = 3},
                           .epochs = 2},
                          raw_batches());
        for (auto& b : r)
            for (std::size_t i = 0; i < b.size(); ++i) {
                const auto x = b.feature("payload").item(i, 0);
                got[b.epoch()].emplace(reinterpret_cast<const char*>(x.data()), x.size());
            }
    }
    CHECK(got[0] == want);
    CHECK(got[1] == want);
}

TEST_CASE("s3_store resumes mid-object from a saved state, s3_manifest_store reads a manifest's objects by object")
{
    const auto all = put_store_objects("resume", 3);
    const std::string prefix = "s3://" + std::string(bucket) + "/store/resume/";
    const data_set_options options{.plan = {.shuffle_seed = 9}};
    data_set_reader whole(s3::s3_store({prefix}, moto_options()), options, raw_batches());
    const auto uninterrupted = payloads_of(whole);
    REQUIRE(uninterrupted.size() == all.size());

    std::vector<std::string> got;
    std::string saved;
    {
        data_set_reader first(s3::s3_store({prefix}, moto_options()), options, raw_batches());
        for (int b = 0; b < 5; ++b) {
            auto batch = first.next();
            REQUIRE(batch);
            for (std::size_t i = 0; i < batch->size(); ++i) {
                const auto x = batch->feature("payload").item(i, 0);
                got.emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
            }
        }
        saved = first.state().to_json();
    }
    auto resumed = options;
    resumed.resume = data_set_state::from_json(saved);
    CHECK(resumed.resume->cursor.records != 0);  // 40 records in: inside an object
    data_set_reader second(s3::s3_store({prefix}, moto_options()), resumed, raw_batches());
    for (auto& p : payloads_of(second))
        got.push_back(p);
    CHECK(got == uninterrupted);

    fixture().put("store/resume.manifest", "[{\"prefix\": \"" + prefix + "\"}, \"part-2.rec\", \"part-0.rec\"]");
    data_set_reader m(s3::s3_manifest_store("s3://" + std::string(bucket) + "/store/resume.manifest", moto_options()), {},
                      raw_batches());
    const auto from_manifest = payloads_of(m);
    REQUIRE(!from_manifest.empty());
    CHECK(from_manifest.front().starts_with("o2r0"));
    CHECK(from_manifest.back().starts_with("o0r29"));
    CHECK_THROWS_WITH(data_set_reader(s3::s3_manifest_store("s3://" + std::string(bucket) + "/store/resume.manifest", moto_options()),
                                      {.plan = {.shard = {.world_size = 2, .mode = shard_mode::by_bytes}}}, raw_batches())
                          .next(),
                      Catch::Contains("needs every object's size"));
}

namespace {

/// The default chain's credentials for `env`, with its HTTP calls made by the real fetcher.
s3::timed_credentials credentials_through_real_fetcher(const s3::environment& env)
{
    // The client is made outside any coroutine: GCC 12 destroys the default client_options
    // temporary twice when the constructor runs inside one.
    asio::io_context io;
    http::client client(io.get_executor());
    s3::credentials_provider provider(env, s3::make_metadata_fetcher(client));
    auto done = asio::co_spawn(io, provider.async_get(), asio::use_future);
    io.run_for(std::chrono::seconds(60));
    REQUIRE(done.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    return done.get();
}

/// Temporary credentials: every part set, expiring after `before`.
void check_temporary(const s3::timed_credentials& c, std::chrono::system_clock::time_point before)
{
    CHECK_FALSE(c.credentials.access_key_id.empty());
    CHECK_FALSE(c.credentials.secret_access_key.empty());
    CHECK_FALSE(c.credentials.session_token.empty());
    REQUIRE(c.expiration);
    CHECK(*c.expiration > before);
}

/// The payloads of the fixture bucket's objects under `prefix`, read by an S3 store that
/// resolves its credentials from `env`.
std::vector<std::string> payloads_under(const s3::environment& env, const std::string& prefix)
{
    s3::s3_options o;
    o.env = env;
    data_set_reader r(s3::s3_store({"s3://" + std::string(bucket) + "/" + prefix}, o), {}, raw_batches());
    return payloads_of(r);
}

} // namespace

TEST_CASE("Web identity: credentials from moto's STS through the real fetcher read objects from moto's S3", "[s3]")
{
    // moto answers STS's AssumeRoleWithWebIdentity on the same port as S3 and accepts any token;
    // AWS_ENDPOINT_URL sends both STS and S3 there.
    fixture().put("webid/part-0.rec", framed("read with web identity credentials"));
    namespace fs = std::filesystem;
    const fs::path token_file = fs::temp_directory_path() / ("pipemode-web-identity-" + std::to_string(::getpid()));
    std::ofstream(token_file, std::ios::binary | std::ios::trunc) << "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2ln+/==\n";
    const std::string role = "arn:aws:iam::123456789012:role/pipemode-reader";
    const variables vars = {
        {"AWS_ENDPOINT_URL", fixture().server.endpoint()},
        {"AWS_ROLE_ARN", role},
        {"AWS_WEB_IDENTITY_TOKEN_FILE", token_file.string()},
        {"AWS_REGION", "us-east-1"},
        {"AWS_EC2_METADATA_DISABLED", "true"},
    };
    // The variables above and no HOME, so no ~/.aws; the token file is read from the disk.
    s3::environment env = environment_of(vars);
    env.read_file = s3::environment::process().read_file;

    const auto before = std::chrono::system_clock::now();
    const s3::timed_credentials c = credentials_through_real_fetcher(env);
    check_temporary(c, before);
    CHECK(c.source == "web identity (" + role + ")");

    // The S3 store resolves the same chain itself: listing and reading are signed with STS's keys.
    CHECK(payloads_under(env, "webid/") == std::vector<std::string>{"read with web identity credentials"});
    fs::remove(token_file);
}

TEST_CASE("Assumed role: a role profile's credentials from moto's STS AssumeRole read objects from moto's S3", "[s3]")
{
    // moto answers STS's AssumeRole on the same port as S3 (without checking the signature);
    // AWS_ENDPOINT_URL sends both there.
    fixture().put("role/part-0.rec", framed("read with assumed role credentials"));
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("pipemode-assume-role-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string role = "arn:aws:iam::123456789012:role/read-training-data";
    std::ofstream(dir / "config", std::ios::trunc) << "[profile data-reader]\n"
                                                      "region = us-east-1\n"
                                                      "role_arn = " << role << "\n"
                                                      "source_profile = base\n"
                                                      "role_session_name = pipemode-integration\n"
                                                      "duration_seconds = 900\n";
    std::ofstream(dir / "credentials", std::ios::trunc) << "[base]\n"
                                                           "aws_access_key_id = AKIDPIPEMODEBASE\n"
                                                           "aws_secret_access_key = pipemode-base-secret\n";
    const variables vars = {
        {"AWS_ENDPOINT_URL", fixture().server.endpoint()},
        {"AWS_CONFIG_FILE", (dir / "config").string()},
        {"AWS_SHARED_CREDENTIALS_FILE", (dir / "credentials").string()},
        {"AWS_PROFILE", "data-reader"},
        {"AWS_EC2_METADATA_DISABLED", "true"},
    };
    s3::environment env = environment_of(vars);
    env.read_file = s3::environment::process().read_file;

    const auto before = std::chrono::system_clock::now();
    const s3::timed_credentials c = credentials_through_real_fetcher(env);
    check_temporary(c, before);
    CHECK(c.credentials.access_key_id != "AKIDPIPEMODEBASE");
    CHECK(c.source == "assumed role " + role + " (from profile 'base')");

    // The S3 store resolves the same chain itself: listing and reading are signed with the role's keys.
    CHECK(payloads_under(env, "role/") == std::vector<std::string>{"read with assumed role credentials"});
    fs::remove_all(dir);
}
