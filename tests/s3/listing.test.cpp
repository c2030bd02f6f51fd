// Tests of ListObjectsV2: the request's query and the parser of its response.
#include <pipemode/s3/listing.hpp>
#include <pipemode/s3/uri.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace pipemode::s3;
using pipemode::errc;

namespace {

// Shaped like AWS's answer to list-type=2&encoding-type=url&prefix=train/&max-keys=4.
const char* const truncated_page = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>my-bucket</Name><Prefix>train%2F</Prefix><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken><KeyCount>4</KeyCount><MaxKeys>4</MaxKeys><Delimiter>%2F</Delimiter><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>train%2Fa+b%2Bc.rec</Key><LastModified>2026-11-28T01:02:03.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>train%2F%C3%A9t%C3%A9%2F%E2%82%AC.rec</Key><LastModified>2026-11-28T01:02:04.000Z</LastModified><ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag><Size>18446744073709551615</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>train%2F100%25%26%3C%3E.rec</Key><LastModified>2026-11-28T01:02:05.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>train%2Fsub+dir%2F</Prefix></CommonPrefixes></ListBucketResult>)";

} // namespace

TEST_CASE("listing: a truncated, URL-encoded page decodes keys and keeps ETags opaque")
{
    parse_error err;
    auto page = parse_list_objects(truncated_page, err);
    REQUIRE(page);
    CHECK_FALSE(err);
    CHECK(page->bucket == "my-bucket");
    CHECK(page->prefix == "train/");
    CHECK(page->delimiter == "/");
    CHECK(page->key_count == 4);
    CHECK(page->max_keys == 4);
    CHECK(page->is_truncated);
    CHECK(page->url_encoded);
    CHECK(page->next_continuation_token == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    CHECK(page->continuation_token.empty());
    REQUIRE(page->contents.size() == 3);
    CHECK(page->contents[0] == object_summary{"train/a b+c.rec", 434234, "\"9b2cf535f27731c974343645a3985328\"",
                                              "2026-11-28T01:02:03.000Z"});
    CHECK(page->contents[1].key == "train/\xC3\xA9t\xC3\xA9/\xE2\x82\xAC.rec");
    CHECK(page->contents[1].size == 18446744073709551615ull);
    CHECK(page->contents[1].etag == "\"3858f62230ac3c915f300c664312c11f-9\"");
    CHECK(page->contents[2].key == "train/100%&<>.rec");
    CHECK(page->contents[2].size == 0);
    REQUIRE(page->common_prefixes.size() == 1);
    CHECK(page->common_prefixes[0] == "train/sub dir/");

    // The next request continues from the token, still asking for URL-encoded keys.
    auto q = list_objects_query(page->prefix, page->next_continuation_token, 4, page->delimiter);
    CHECK(q == std::vector<std::pair<std::string, std::string>>{
                   {"continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="},
                   {"delimiter", "/"},
                   {"encoding-type", "url"},
                   {"list-type", "2"},
                   {"max-keys", "4"},
                   {"prefix", "train/"}});
    CHECK(encode_query(q)
          == "continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J%2Fwm36Hy4vbOwM%3D&delimiter=%2F"
             "&encoding-type=url&list-type=2&max-keys=4&prefix=train%2F");
}

TEST_CASE("listing: the first page's query, and max-keys clamped to S3's range")
{
    CHECK(list_objects_query("a b/") == std::vector<std::pair<std::string, std::string>>{
                                            {"encoding-type", "url"}, {"list-type", "2"}, {"max-keys", "1000"}, {"prefix", "a b/"}});
    CHECK(list_objects_query("", "", 5000)[2].second == "1000");
    CHECK(list_objects_query("", "", 0)[2].second == "1");
}

TEST_CASE("listing: an empty, final page")
{
    parse_error err;
    auto page = parse_list_objects(
        R"(<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b-1</Name><Prefix>none/</Prefix><ContinuationToken>tok</ContinuationToken><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>)",
        err);
    REQUIRE(page);
    CHECK(page->bucket == "b-1");
    CHECK(page->prefix == "none/");
    CHECK(page->key_count == 0);
    CHECK(page->max_keys == 1000);
    CHECK_FALSE(page->is_truncated);
    CHECK_FALSE(page->url_encoded);
    CHECK(page->continuation_token == "tok");
    CHECK(page->next_continuation_token.empty());
    CHECK(page->contents.empty());
    CHECK(page->common_prefixes.empty());
}

TEST_CASE("listing: without EncodingType, keys are taken literally ('+' and '%' included)")
{
    parse_error err;
    auto page = parse_list_objects(
        "<ListBucketResult><Name>b-1</Name><IsTruncated>false</IsTruncated>"
        "<Contents><Key>a+b%20c &amp; d</Key><Size>7</Size></Contents></ListBucketResult>",
        err);
    REQUIRE(page);
    REQUIRE(page->contents.size() == 1);
    CHECK(page->contents[0].key == "a+b%20c & d");
    CHECK(page->contents[0].size == 7);
    CHECK(page->contents[0].etag.empty());
    CHECK(page->contents[0].last_modified.empty());
}

TEST_CASE("listing: a full page of 1000 entries")
{
    std::string body = "<ListBucketResult><Name>big</Name><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys>"
                       "<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
                       "<NextContinuationToken>next</NextContinuationToken>";
    for (int i = 0; i < 1000; ++i)
        body += "<Contents><Key>part%2F" + std::to_string(i) + ".rec</Key><Size>" + std::to_string(1000000007ull * i)
            + "</Size><ETag>&quot;e" + std::to_string(i) + "&quot;</ETag></Contents>";
    body += "</ListBucketResult>";
    parse_error err;
    auto page = parse_list_objects(body, err);
    REQUIRE(page);
    REQUIRE(page->contents.size() == 1000);
    for (int i = 0; i < 1000; ++i) {
        INFO(i);
        CHECK(page->contents[i].key == "part/" + std::to_string(i) + ".rec");
        CHECK(page->contents[i].size == 1000000007ull * i);
        CHECK(page->contents[i].etag == "\"e" + std::to_string(i) + "\"");
    }
    CHECK(page->next_continuation_token == "next");
}

TEST_CASE("listing: every truncation of a page is an error, never a crash")
{
    std::string doc = truncated_page;
    for (std::size_t n = 0; n < doc.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        parse_error err;
        CHECK_FALSE(parse_list_objects(std::string_view(doc).substr(0, n), err));
        CHECK(err.code == errc::malformed_xml);
    }
}

TEST_CASE("listing: errors point at the element at fault")
{
    parse_error err;
    std::string body = "<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated>"
                       "<Contents><Key>k</Key><Size>1</Size></Contents><Contents><Key>j</Key><Size>x</Size></Contents>"
                       "</ListBucketResult>";
    CHECK_FALSE(parse_list_objects(body, err));
    CHECK(err.offset == body.rfind("<Contents>"));
    CHECK(err.to_string() == "unexpected S3 response document at byte " + std::to_string(body.rfind("<Contents>"))
                                 + ": a Contents entry has no Size or one that is not a 64-bit unsigned integer");
    std::string missing = " <ListBucketResult><Name>b</Name></ListBucketResult>";
    CHECK_FALSE(parse_list_objects(missing, err));
    CHECK(err.reason == "IsTruncated is missing");
    CHECK(err.offset == 1);
}

TEST_CASE("listing: XML that is not a usable ListBucketResult")
{
    auto reason_of = [](std::string body) {
        parse_error err;
        auto page = parse_list_objects(body, err);
        CHECK_FALSE(page);
        CHECK(err.code == errc::malformed_s3_response);
        return std::string(err.reason);
    };
    const std::string head = "<ListBucketResult><Name>b</Name>";
    CHECK(reason_of("<Error><Code>NoSuchBucket</Code></Error>") == "the root element is not ListBucketResult");
    CHECK(reason_of(head + "</ListBucketResult>") == "IsTruncated is missing");
    CHECK(reason_of(head + "<IsTruncated>yes</IsTruncated></ListBucketResult>") == "IsTruncated is neither true nor false");
    CHECK(reason_of(head + "<IsTruncated>true</IsTruncated></ListBucketResult>")
          == "a truncated listing has no NextContinuationToken to continue from");
    CHECK(reason_of(head + "<IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents></ListBucketResult>")
          == "a Contents entry has no Key");
    const std::string size_problem = "a Contents entry has no Size or one that is not a 64-bit unsigned integer";
    CHECK(reason_of(head + "<IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>") == size_problem);
    for (const char* size : {"", "-1", "1.5", " 1", "0x10", "18446744073709551616", "1e3"}) {
        INFO(size);
        CHECK(reason_of(head + "<IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>" + size
                        + "</Size></Contents></ListBucketResult>")
              == size_problem);
    }
    CHECK(reason_of(head + "<KeyCount>many</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>")
          == "KeyCount is not a non-negative integer");
    CHECK(reason_of(head + "<MaxKeys>-1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>")
          == "MaxKeys is not a non-negative integer");
    CHECK(reason_of(head + "<EncodingType>base64</EncodingType><IsTruncated>false</IsTruncated></ListBucketResult>")
          == "unknown EncodingType (only 'url' is defined)");
    for (const char* key : {"a%2", "a%", "a%zz", "%G0"}) {
        INFO(key);
        CHECK(reason_of(head + "<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>" + key
                        + "</Key><Size>1</Size></Contents></ListBucketResult>")
              == "bad URL escape in a Key");
    }
    CHECK(reason_of(head + "<EncodingType>url</EncodingType><Prefix>%</Prefix><IsTruncated>false</IsTruncated></ListBucketResult>")
          == "bad URL escape in Prefix");
    CHECK(reason_of(head + "<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>%1</Prefix>"
                           "</CommonPrefixes></ListBucketResult>")
          == "bad URL escape in a common prefix");
}
