#include <pipemode/sagemaker/channel_reader.hpp>

#include "reader_helpers.hpp"
#include "source_helpers.hpp"
#include "test_servers.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

// This file's names stay its own: the files of tests/sagemaker/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace channel_reader_test {

using namespace pipemode;
using namespace pipemode::sagemaker;
using test::temp_dir;

TEST_CASE("format_for maps content types and the record wrapper to the reader's formats")
{
    const auto f = [](std::string ct, record_wrapper w = record_wrapper::none) {
        return format_for(channel_config{.name = "train", .content_type = std::move(ct), .record_wrapper = w});
    };
    CHECK(f("") == std::pair{data_format::recordio_protobuf, std::size_t{0}});
    CHECK(f("application/x-recordio-protobuf") == std::pair{data_format::recordio_protobuf, std::size_t{0}});
    CHECK(f("text/csv") == std::pair{data_format::csv, std::size_t{1}});
    CHECK(f("text/csv; label_size=0") == std::pair{data_format::csv, std::size_t{0}});
    CHECK(f("Text/CSV;label_size=3") == std::pair{data_format::csv, std::size_t{3}});
    CHECK(f("application/jsonlines") == std::pair{data_format::lines, std::size_t{0}});
    CHECK(f("application/x-tfrecord") == std::pair{data_format::tfrecord, std::size_t{0}});
    CHECK(f("application/x-recordio") == std::pair{data_format::recordio, std::size_t{0}});
    CHECK(f("image/jpeg") == std::pair{data_format::whole_object, std::size_t{0}});
    CHECK(f("text/csv", record_wrapper::recordio) == std::pair{data_format::whole_object, std::size_t{0}});
    CHECK_THROWS_AS(f("text/csv;label_size=x"), std::invalid_argument);
}

TEST_CASE("a CSV channel sharded by S3 key over two ranks, shuffled, over a local directory")
{
    temp_dir dir;
    std::multiset<float> labels;
    for (int f = 0; f < 5; ++f) {
        std::string csv;
        for (int r = 0; r < 20; ++r) {
            csv += std::to_string(f * 100 + r) + ",0.5,1.5\n";
            labels.insert(float(f * 100 + r));
        }
        test::write_file(dir / ("part-" + std::to_string(f) + ".csv"), test::bytes_of(csv));
    }
    const channel_config ch{.name = "train",
                            .uri = "file://" + dir.path().string(),
                            .distribution = distribution::sharded_by_s3_key,
                            .content_type = "text/csv;label_size=1",
                            .shuffle_seed = 7};
    std::multiset<float> got;
    std::vector<std::size_t> per_rank;
    for (std::size_t rank = 0; rank < 2; ++rank) {
        channel_read_options o;
        o.cluster = {.rank = rank, .world_size = 2};
        o.epochs = 2;
        o.reader.batch_size = 16;
        auto r = open_channel(ch, o);
        std::size_t n = 0;
        for (auto& b : r) {
            CHECK(b.feature("values").row_size() == 2);
            for (float v : b.label("values").values<float>())
                if (b.epoch() == 0) {
                    got.insert(v);
                    ++n;
                }
        }
        per_rank.push_back(n);
    }
    CHECK(got == labels);
    CHECK(per_rank[0] != 0);
    CHECK(per_rank[1] != 0);
    CHECK(per_rank[0] + per_rank[1] == 100);
}

TEST_CASE("RecordWrapperType RecordIO reads each object as one record, a FullyReplicated channel reads everything on every rank")
{
    temp_dir dir;
    test::write_file(dir / "a.jpg", test::bytes_of("not really a jpeg"));
    test::write_file(dir / "b.jpg", test::bytes_of("nor this"));
    const channel_config ch{.name = "images", .uri = dir.path().string(), .content_type = "application/x-image",
                            .record_wrapper = record_wrapper::recordio};
    channel_read_options o;
    o.cluster = {.rank = 1, .world_size = 2};
    auto r = open_channel(ch, o);
    CHECK(test::payloads_of(r) == std::vector<std::string>{"not really a jpeg", "nor this"});
}

TEST_CASE("channels that cannot be read say why, naming the channel")
{
    CHECK_THROWS_WITH(channel_store(channel_config{.name = "train"}), Catch::Contains("channel 'train'") && Catch::Contains("empty"));
    CHECK_THROWS_WITH(channel_store(channel_config{.name = "m", .data_type = s3_data_type::manifest_file, .uri = "/data/manifest"}),
                      Catch::Contains("must be an s3://"));
}

TEST_CASE("HTTP objects: an http_store sharded by object over two ranks, and an http:// channel")
{
    temp_dir dir;
    std::vector<std::string> urls;
    std::vector<std::string> all;
    test::nginx_server server(dir.path());
    for (int f = 0; f < 4; ++f) {
        std::string body;
        for (int r = 0; r < 25; ++r) {
            const std::string line = "f" + std::to_string(f) + "r" + std::to_string(r) + std::string(r * 11, '.');
            body += line + "\n";
            all.push_back(line);
        }
        test::write_file(dir / ("part-" + std::to_string(f) + ".txt"), test::bytes_of(body));
        urls.push_back(server.url("part-" + std::to_string(f) + ".txt"));
    }
    reader_options o{.batch_size = 6, .format = data_format::lines, .memory_budget = 64 * mib, .max_record_size = 1 * mib};
    std::multiset<std::string> got;
    for (std::size_t rank = 0; rank < 2; ++rank) {
        data_set_reader r(remote::http_store(urls, remote::stream_options{.part_size = 1 * kib}),
                          {.plan = {.shard = {.rank = rank, .world_size = 2, .mode = shard_mode::by_object}, .shuffle_seed = 2}}, o);
        for (auto& p : test::payloads_of(r))
            got.insert(p);
    }
    CHECK(got == std::multiset<std::string>(all.begin(), all.end()));
    // Sizes are unknown before reading: byte-based sharding says so.
    data_set_reader by_bytes(remote::http_store(urls), {.plan = {.shard = {.world_size = 2, .mode = shard_mode::by_bytes}}}, o);
    CHECK_THROWS_WITH(by_bytes.next(), Catch::Contains("needs every object's size"));

    // Prefixes are listed through the server's directory listings, HTML or JSON (with sizes),
    // subdirectories included.
    std::filesystem::create_directories(dir.path() / "sub dir");
    test::write_file(dir / "sub dir/z.txt", test::bytes_of("zz\n"));
    for (const std::string& index : {server.url() + "/", server.url("json-index/")}) {
        CAPTURE(index);
        auto store = remote::http_store({index});
        data_set_reader listed(std::move(store), {}, o);
        auto lines = test::payloads_of(listed);
        auto want = all;
        want.push_back("zz");  // "sub dir/" sorts after "part-3.txt"
        CHECK(lines == want);
    }
    data_set_reader sized(remote::http_store({server.url("json-index/")}),
                          {.plan = {.shard = {.rank = 1, .world_size = 3, .mode = shard_mode::by_byte_range}}}, o);
    CHECK(!test::payloads_of(sized).empty());
    std::filesystem::create_directories(dir.path() / "empty");
    data_set_reader empty(remote::http_store({server.url("empty/")}), {}, o);
    CHECK_THROWS_WITH(empty.next(), Catch::Contains("names no objects"));
    data_set_reader missing(remote::http_store({server.url("missing/")}), {}, o);
    CHECK_THROWS_WITH(missing.next(), Catch::Contains("HTTP status 404"));

    const channel_config ch{.name = "text", .uri = urls[2], .content_type = "application/jsonlines"};
    auto r = open_channel(ch);
    const auto lines = test::payloads_of(r);
    CHECK(lines == std::vector<std::string>(all.begin() + 50, all.begin() + 75));
}

TEST_CASE("parse_directory_index reads nginx's and Apache's generated listings and nothing outside the directory")
{
    const std::string nginx_html = R"(<html><head><title>Index of /data/</title></head><body><h1>Index of /data/</h1><hr><pre><a href="../">../</a>
<a href="sub%20dir/">sub dir/</a>                                          28-Nov-2026 15:00       -
<a href="b.rec">b.rec</a>                                              28-Nov-2026 15:00    1234
<a href="a%2Bb.rec">a+b.rec</a>                                            28-Nov-2026 15:00      12
</pre><hr></body></html>)";
    CHECK(http::parse_directory_index(nginx_html)
          == std::vector<http::index_entry>{{"a%2Bb.rec"}, {"b.rec"}, {"sub%20dir/"}});
    const std::string apache = R"(<tr><th><a href="?C=N;O=D">Name</a></th></tr><tr><td><a href="/parent/">Parent Directory</a></td></tr>
<tr><td><a HREF = 'x.csv'>x.csv</a></td></tr><tr><td><a href="https://elsewhere/y.csv">y</a><a href="d/e.csv">deep</a><a href="a&amp;b.csv">a&amp;b</a></td></tr>)";
    CHECK(http::parse_directory_index(apache) == std::vector<http::index_entry>{{"a&b.csv"}, {"x.csv"}});
    const std::string json = R"([{"name":"a b.rec","type":"file","mtime":"x","size":10},{"name":"d","type":"directory","mtime":"x"},{"name":"s","type":"other"}])";
    CHECK(http::parse_directory_index(json)
          == std::vector<http::index_entry>{{"a%20b.rec", 10}, {"d/"}});
    CHECK(http::parse_directory_index("[not json").empty());
    CHECK(http::parse_directory_index("").empty());
}

} // namespace channel_reader_test
