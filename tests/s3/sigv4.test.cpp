// The SigV4 signer: the wrappers of libcrypto's SHA-256 and HMAC against NIST and RFC 4231
// vectors, every request in sigv4_vectors.inc signed byte for byte as botocore signed it, AWS's
// published S3 example and generic test-suite cases, and credentials kept out of logs and output.
#include <pipemode/s3/sigv4.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using namespace pipemode;
using namespace std::string_literals;

namespace {

using string_pairs = std::vector<std::pair<std::string, std::string>>;

/// One request botocore signed, and the headers it added (see scripts/dev/gen_sigv4_vectors.py).
struct sigv4_vector {
    std::string name;
    std::string method;
    std::string host;
    std::string path;
    string_pairs query;
    string_pairs headers;
    std::string payload_sha256;
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token;
    std::string region;
    std::string service;
    long long epoch_seconds;
    string_pairs expected;
};

const std::vector<sigv4_vector>& botocore_vectors()
{
    static const std::vector<sigv4_vector> vectors = {
#include "sigv4_vectors.inc"
    };
    return vectors;
}

std::chrono::system_clock::time_point at(long long epoch_seconds)
{
    return std::chrono::system_clock::time_point{std::chrono::seconds{epoch_seconds}};
}

std::string hex_sha256(std::string_view data)
{
    return s3::detail::sha256_hex(data);
}

std::string hex_hmac(std::string_view key, std::string_view message)
{
    return s3::detail::to_hex(s3::detail::hmac_sha256(key, message));
}

/// The Signature= field of an Authorization header.
std::string signature_of(const std::string& authorization)
{
    const auto at = authorization.rfind("Signature=");
    REQUIRE(at != std::string::npos);
    return authorization.substr(at + 10);
}

// AWS's generic SigV4 test suite: its credentials, time and region.
const s3::aws_credentials suite_credentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
constexpr long long suite_time = 1440938160;  // 2015-08-30T12:36:00Z

} // namespace

TEST_CASE("sha256 matches the NIST examples")
{
    CHECK(hex_sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex_sha256("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
          == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex_sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
          == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    CHECK(hex_sha256(std::string(1'000'000, 'a'))
          == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 pads correctly at every block boundary")
{
    // Lengths around the 56-byte point where the length field stops fitting in the last block,
    // and around one and two whole blocks (digests from Python's hashlib).
    const std::pair<std::size_t, std::string_view> cases[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {57, "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {127, "c57e9278af78fa3cab38667bef4ce29d783787a2f731d4e12200270f0c32320a"},
        {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
        {129, "c12cb024a2e5551cca0e08fce8f1c5e314555cc3fef6329ee994a3db752166ae"},
    };
    for (const auto& [length, expected] : cases) {
        INFO("length " << length);
        CHECK(hex_sha256(std::string(length, 'a')) == expected);
    }
}

TEST_CASE("sha256 gives the same digest however the input is split")
{
    const std::string message = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    for (std::size_t chunk = 1; chunk <= message.size(); ++chunk) {
        s3::detail::sha256 h;
        for (std::size_t at = 0; at < message.size(); at += chunk)
            h.update(std::string_view{message}.substr(at, chunk));
        INFO("chunk " << chunk);
        CHECK(s3::detail::to_hex(h.finish())
              == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    }
}

TEST_CASE("hmac_sha256 matches RFC 4231")
{
    CHECK(hex_hmac(std::string(20, '\x0b'), "Hi There")
          == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CHECK(hex_hmac("Jefe", "what do ya want for nothing?")
          == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // A key longer than the block is hashed first.
    CHECK(hex_hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")
          == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    // Case 3: key and data of bytes that are not text.
    CHECK(hex_hmac(std::string(20, '\xaa'), std::string(50, '\xdd'))
          == "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    // Case 4: a 25-byte key 0x01..0x19.
    std::string counting_key;
    for (char c = 1; c <= 25; ++c)
        counting_key.push_back(c);
    CHECK(hex_hmac(counting_key, std::string(50, '\xcd'))
          == "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    // Case 7: key and data both longer than the block.
    CHECK(hex_hmac(std::string(131, '\xaa'),
                   "This is a test using a larger than block-size key and a larger than block-size "
                   "data. The key needs to be hashed before being used by the HMAC algorithm.")
          == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_CASE("hmac_sha256 takes an empty key, a block-sized key and a digest as key")
{
    // libcrypto reads a null key as "keep the previous key": an empty key must still be used.
    CHECK(hex_hmac("", "") == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    CHECK(hex_hmac(std::string(64, 'k'), "block-size key")
          == "3639ed45f96410ae1abf821aaf15a4e616209464f7e06fb79435d35e485bd3c2");
    // The overload SigV4's key chain uses: the previous step's digest as the key.
    CHECK(s3::detail::to_hex(s3::detail::hmac_sha256(s3::detail::sha256_of("abc"), "aws4_request"))
          == "f7b298534f4806bdea86276fcf9f69289d4b3ce7a19fa7accc56cef2783da3f0");
}

TEST_CASE("sha256 and hmac_sha256 agree when called from several threads at once")
{
    // The algorithms are fetched once per process and shared: the first calls race to fetch.
    std::vector<std::thread> threads;
    std::atomic<int> mismatches{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&mismatches] {
            for (int i = 0; i < 200; ++i) {
                if (hex_sha256("abc") != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                    ++mismatches;
                if (hex_hmac("Jefe", "what do ya want for nothing?")
                    != "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                    ++mismatches;
            }
        });
    for (auto& thread : threads)
        thread.join();
    CHECK(mismatches == 0);
}

TEST_CASE("every botocore vector is signed byte for byte the same")
{
    const auto& vectors = botocore_vectors();
    REQUIRE(vectors.size() >= 40);
    std::size_t matched = 0;
    for (const sigv4_vector& v : vectors) {
        INFO(v.name);
        const s3::signing_request request{.method = v.method,
                                          .host = v.host,
                                          .path = v.path,
                                          .query = v.query,
                                          .headers = v.headers,
                                          .payload_sha256 = v.payload_sha256};
        const s3::aws_credentials credentials{v.access_key_id, v.secret_access_key, v.session_token};
        const s3::signed_headers signed_ =
            v.service == "s3"
                ? s3::sign_s3_request(request, credentials, v.region, at(v.epoch_seconds))
                : s3::sign_request(request, credentials, v.region, v.service,
                                   s3::sigv4_rules::generic, at(v.epoch_seconds));
        const string_pairs fields = signed_.fields();
        CHECK(fields == v.expected);
        for (const auto& [name, value] : fields)
            CHECK(value.find(v.secret_access_key) == std::string::npos);
        if (fields == v.expected)
            ++matched;
    }
    CHECK(matched == vectors.size());
    WARN("botocore vectors matched: " << matched << " of " << vectors.size());
}

TEST_CASE("the S3 GetObject example of AWS's SigV4 documentation")
{
    const s3::signing_request request{.method = "GET",
                                      .host = "examplebucket.s3.amazonaws.com",
                                      .path = "/test.txt",
                                      .headers = {{"Range", "bytes=0-9"}}};
    const s3::aws_credentials credentials{"AKIAIOSFODNN7EXAMPLE",
                                          "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
    const auto now = at(1369353600);  // 2013-05-24T00:00:00Z

    CHECK(s3::canonical_request(request, credentials, "20130524T000000Z")
          == "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
             "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
             "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const s3::signed_headers signed_ = s3::sign_s3_request(request, credentials, "us-east-1", now);
    CHECK(signed_.authorization
          == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
             "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
             "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK(signed_.amz_date == "20130524T000000Z");
    CHECK(signed_.content_sha256 == s3::empty_payload_sha256);
    CHECK(signed_.security_token.empty());
}

TEST_CASE("AWS's generic test suite: get-vanilla, get-vanilla-query-order-key-case, post-vanilla")
{
    const auto sign = [](std::string method, string_pairs query) {
        const s3::signing_request request{.method = std::move(method),
                                          .host = "example.amazonaws.com",
                                          .path = "/",
                                          .query = std::move(query)};
        return s3::sign_request(request, suite_credentials, "us-east-1", "service",
                                s3::sigv4_rules::generic, at(suite_time));
    };

    const s3::signed_headers vanilla = sign("GET", {});
    CHECK(vanilla.authorization
          == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
             "SignedHeaders=host;x-amz-date, "
             "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK(vanilla.content_sha256.empty());
    CHECK(vanilla.fields().size() == 2);
    // get-vanilla.sts's last line: the hash of the canonical request.
    const s3::signing_request vanilla_request{.method = "GET", .host = "example.amazonaws.com"};
    CHECK(hex_sha256(s3::canonical_request(vanilla_request, suite_credentials, "20150830T123600Z",
                                           s3::sigv4_rules::generic))
          == "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");

    CHECK(signature_of(sign("GET", {{"Param2", "value2"}, {"Param1", "value1"}}).authorization)
          == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    CHECK(signature_of(sign("POST", {}).authorization)
          == "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

TEST_CASE("S3 paths are encoded once and otherwise kept as given")
{
    CHECK(s3::canonical_path("/a b/c+d=e~f") == "/a%20b/c%2Bd%3De~f");
    CHECK(s3::canonical_path("/dir//x/./y/../z") == "/dir//x/./y/../z");
    CHECK(s3::canonical_path("/100%") == "/100%25");
    CHECK(s3::canonical_path("/donn\xc3\xa9" "es/\xc3\xa9.rec") == "/donn%C3%A9es/%C3%A9.rec");
    CHECK(s3::canonical_path("") == "/");
    CHECK(s3::canonical_path("/prefix/") == "/prefix/");
}

TEST_CASE("generic paths are normalized and encoded twice")
{
    using s3::sigv4_rules;
    CHECK(s3::canonical_path("/a/./b/../c/", sigv4_rules::generic) == "/a/c/");
    CHECK(s3::canonical_path("//a//b", sigv4_rules::generic) == "/a/b");
    CHECK(s3::canonical_path("/../..", sigv4_rules::generic) == "/");
    CHECK(s3::canonical_path("/a b", sigv4_rules::generic) == "/a%2520b");
}

TEST_CASE("query strings are encoded with '/' and sorted by encoded name, then value")
{
    CHECK(s3::canonical_query({{"prefix", "a b/"}, {"list-type", "2"}, {"continuation-token", "x+/="}})
          == "continuation-token=x%2B%2F%3D&list-type=2&prefix=a%20b%2F");
    CHECK(s3::canonical_query({{"tag", "b"}, {"tag", "a"}, {"Tag", "c"}}) == "Tag=c&tag=a&tag=b");
    CHECK(s3::canonical_query({{"uploads", ""}}) == "uploads=");
    CHECK(s3::canonical_query({}).empty());
}

TEST_CASE("header values are trimmed, names lowered and sorted, repeats joined")
{
    const s3::signing_request request{
        .host = "h",
        .headers = {{"X-B", "  two   words\t"}, {"x-a", "1"}, {"X-A", " 2 "}, {"User-Agent", "u"}},
        .payload_sha256 = std::string(s3::unsigned_payload)};
    CHECK(s3::canonical_request(request, {"id", "secret", ""}, "20240101T000000Z")
          == "GET\n/\n\nhost:h\nx-a:1,2\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
             "x-amz-date:20240101T000000Z\nx-b:two words\n\n"
             "host;x-a;x-amz-content-sha256;x-amz-date;x-b\nUNSIGNED-PAYLOAD");
}

TEST_CASE("headers the signer owns are replaced, and a Date header is refused")
{
    const s3::aws_credentials credentials{"id", "secret", "token"};
    s3::signing_request request{.host = "h", .path = "/k"};
    const auto now = at(suite_time);
    const s3::signed_headers clean = s3::sign_s3_request(request, credentials, "us-east-1", now);

    request.headers = {{"Host", "other"}, {"X-Amz-Date", "19990101T000000Z"},
                       {"Authorization", "stale"}, {"X-Amz-Security-Token", "old"},
                       {"x-amz-content-sha256", "stale"}};
    CHECK(s3::sign_s3_request(request, credentials, "us-east-1", now).fields() == clean.fields());
    CHECK(clean.security_token == "token");

    request.headers = {{"Date", "Mon, 09 Sep 2011 23:36:00 GMT"}};
    CHECK_THROWS_AS(s3::sign_s3_request(request, credentials, "us-east-1", now), std::invalid_argument);
}

TEST_CASE("timestamps are UTC, truncated to the second")
{
    using namespace std::chrono;
    CHECK(s3::detail::amz_timestamp(at(0)) == "19700101T000000Z");
    CHECK(s3::detail::amz_timestamp(at(1709251198) + milliseconds{999}) == "20240229T235958Z");
    CHECK(s3::detail::amz_timestamp(at(4102444799)) == "20991231T235959Z");
}

TEST_CASE("credentials print without the secret or the token")
{
    const s3::aws_credentials credentials{"AKIAIOSFODNN7EXAMPLE",
                                          "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdz"};
    const std::string text = credentials.redacted();
    CHECK(text == "aws_credentials{access_key_id=****************MPLE, "
                  "secret_access_key=<redacted>, session_token=<redacted>}");
    CHECK(text.find(credentials.secret_access_key) == std::string::npos);
    CHECK(text.find(credentials.session_token) == std::string::npos);
    CHECK(text.find(credentials.access_key_id) == std::string::npos);
    CHECK(to_string(credentials) == text);

    CHECK(s3::aws_credentials{"AKID", "s", ""}.redacted()
          == "aws_credentials{access_key_id=****, secret_access_key=<redacted>, session_token=<none>}");
}

TEST_CASE("the secret never appears in what the signer returns")
{
    // A secret that is also a plausible header value, so a leak would show.
    const s3::aws_credentials credentials{"AKIDLEAK", "range", ""};
    const s3::signing_request request{.host = "h", .path = "/range",
                                      .headers = {{"Range", "bytes=0-1"}}};
    const std::string canonical = s3::canonical_request(request, {"AKIDLEAK", "zzsecretzz", ""},
                                                         "20240101T000000Z");
    CHECK(canonical.find("zzsecretzz") == std::string::npos);
    const s3::aws_credentials secret_only{"AKIDLEAK", "zzsecretzz", ""};
    for (const auto& [name, value] :
         s3::sign_s3_request(request, secret_only, "us-east-1", at(suite_time)).fields())
        CHECK(value.find("zzsecretzz") == std::string::npos);
    // Different secrets, different signatures: the secret is really used.
    CHECK(s3::sign_s3_request(request, credentials, "us-east-1", at(suite_time)).authorization
          != s3::sign_s3_request(request, secret_only, "us-east-1", at(suite_time)).authorization);
}
