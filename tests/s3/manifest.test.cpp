// Tests of SageMaker manifest files.
#include <pipemode/s3/manifest.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace pipemode::s3;
using pipemode::errc;
using pipemode::detail::parse_error;

namespace {

const char* const sample = R"([
  {"prefix": "s3://my-bucket/train/"},
  "part-0.rec",
  "2026/part-1.rec",
  "a b+c%20\u00e9\ud83d\ude00.rec",
  "dir\/x"
]
)";

} // namespace

TEST_CASE("manifest: the prefix joined with each relative key")
{
    parse_error err;
    auto uris = parse_manifest(sample, err);
    REQUIRE(uris);
    CHECK_FALSE(err);
    CHECK(*uris == std::vector<s3_uri>{{"my-bucket", "train/part-0.rec"},
                                       {"my-bucket", "train/2026/part-1.rec"},
                                       {"my-bucket", "train/a b+c%20\xC3\xA9\xF0\x9F\x98\x80.rec"},
                                       {"my-bucket", "train/dir/x"}});
    CHECK((*uris)[1].to_string() == "s3://my-bucket/train/2026/part-1.rec");
}

TEST_CASE("manifest: the prefix is concatenated as written")
{
    parse_error err;
    auto names = parse_manifest(R"([{"prefix":"s3://b-1/data-"},"0001.rec"])", err);
    REQUIRE(names);
    CHECK(*names == std::vector<s3_uri>{{"b-1", "data-0001.rec"}});

    auto bucket_only = parse_manifest(R"([{"prefix":"s3://b-1"},"k"])", err);
    REQUIRE(bucket_only);
    CHECK(*bucket_only == std::vector<s3_uri>{{"b-1", "k"}});

    // Other members of the prefix object are ignored.
    auto extra = parse_manifest(R"([{"note":"x","prefix":"s3://b-1/p/"},"k"])", err);
    REQUIRE(extra);
    CHECK(*extra == std::vector<s3_uri>{{"b-1", "p/k"}});

    auto empty = parse_manifest(R"([{"prefix":"s3://b-1/p/"}])", err);
    REQUIRE(empty);
    CHECK(empty->empty());
}

TEST_CASE("manifest: errors name the offending element's byte offset")
{
    struct bad_case {
        const char* doc;
        std::size_t offset;
        const char* reason;
    };
    const bad_case cases[] = {
        {R"({"prefix":"s3://b-1/"})", 0, "a manifest must be a JSON array"},
        {R"( [])", 1, "a manifest must start with {\"prefix\": \"s3://bucket/prefix/\"}"},
        {R"(["k"])", 1, "a manifest must start with {\"prefix\": \"s3://bucket/prefix/\"}"},
        {R"([{"prefix":7},"k"])", 1, "a manifest must start with {\"prefix\": \"s3://bucket/prefix/\"}"},
        {R"([{"Prefix":"s3://b-1/"},"k"])", 1, "a manifest must start with {\"prefix\": \"s3://bucket/prefix/\"}"},
        {R"([{"prefix":"https://b-1/p/"},"k"])", 11, "the manifest's prefix is not an S3 URI (s3://bucket/prefix/)"},
        {R"([{"prefix":"s3://x/p/"},"k"])", 11, "the manifest's prefix is not an S3 URI (s3://bucket/prefix/)"},
        {R"([{"prefix":"s3://b-1/"},"k", 3])", 29, "a manifest entry after the prefix must be a non-empty key string"},
        {R"([{"prefix":"s3://b-1/"},""])", 24, "a manifest entry after the prefix must be a non-empty key string"},
        {R"([{"prefix":"s3://b-1/"},{"source-ref":"k"}])", 24, "a manifest entry after the prefix must be a non-empty key string"},
    };
    for (const auto& c : cases) {
        INFO(c.doc);
        parse_error err;
        CHECK_FALSE(parse_manifest(c.doc, err));
        CHECK(err.code == errc::malformed_manifest);
        CHECK(err.offset == c.offset);
        CHECK(err.reason == c.reason);
    }
}

TEST_CASE("manifest: every truncation is an error, never a crash")
{
    std::string doc = sample;
    std::size_t end = doc.rfind(']') + 1;
    for (std::size_t n = 0; n < end; ++n) {
        INFO("prefix of " << n << " bytes");
        parse_error err;
        CHECK_FALSE(parse_manifest(std::string_view(doc).substr(0, n), err));
        CHECK(err.code == errc::malformed_json);
        CHECK(err.offset <= n);
        CHECK(err.to_string().rfind("malformed JSON document at byte ", 0) == 0);
    }
}

TEST_CASE("manifest: a large manifest")
{
    std::string doc = R"([{"prefix":"s3://big/p/"})";
    for (int i = 0; i < 100000; ++i)
        doc += ",\"shard-" + std::to_string(i) + ".rec\"";
    doc += ']';
    parse_error err;
    auto uris = parse_manifest(doc, err);
    REQUIRE(uris);
    REQUIRE(uris->size() == 100000);
    CHECK(uris->front() == s3_uri{"big", "p/shard-0.rec"});
    CHECK(uris->back() == s3_uri{"big", "p/shard-99999.rec"});
}
