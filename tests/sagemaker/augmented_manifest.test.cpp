// Tests of augmented manifests (AugmentedManifestFile channels): lines with `-ref` attributes
// on moto_server, local manifests, the exact Pipe-mode bytes, sharding, shuffling and errors.
#include <pipemode/sagemaker/augmented_manifest.hpp>
#include <pipemode/sagemaker/channel_reader.hpp>

#include "reader_helpers.hpp"
#include "test_servers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

// This file's names stay its own: the files of tests/sagemaker/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace augmented_manifest_test {

using namespace pipemode;
using namespace pipemode::sagemaker;

namespace {

constexpr const char* bucket = "pipemode-augmented";
constexpr std::size_t images = 6;

/// Image i's bytes: binary, of varied sizes (one empty, one larger than a curl buffer), with
/// the RecordIO magic word at aligned offsets, which framing must split around.
std::string image(std::size_t i)
{
    static const std::size_t sizes[images] = {1, 0, 4096, 700 * 1024 + 3, 37, 12};
    std::string s(sizes[i], '\0');
    std::uint32_t x = 2463534242u + static_cast<std::uint32_t>(i);
    for (auto& c : s) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
    }
    const char magic[4] = {'\x0a', '\x23', '\xd7', '\xce'};  // 0xced7230a, little-endian
    for (std::size_t at = 0; at + 4 <= s.size() && at < 64; at += 8)
        std::copy(magic, magic + 4, s.begin() + static_cast<std::ptrdiff_t>(at));
    return s;
}

/// The class of image i, as the manifest's JSON string.
std::string class_of(std::size_t i) { return std::to_string(i % 3); }

std::string image_key(std::size_t i) { return "am/obj-00000" + std::to_string(i); }

/// The objects uploaded in one `aws s3 cp`: the images, then the manifests.
enum : std::size_t { good_manifest = images, missing_object_manifest, missing_attribute_manifest, objects };

std::string manifest_line(const std::string& ref, std::size_t i)
{
    return R"({"source-ref": ")" + ref + R"(", "class": ")" + class_of(i) + R"(", "other": {"x": [1, 2]}})";
}

std::string good_manifest_text()
{
    std::string m;
    for (std::size_t i = 0; i < images; ++i) {
        m += manifest_line(std::string("s3://") + bucket + "/" + image_key(i), i) + "\n";
        if (i == 2)
            m += "\n";  // an empty line: skipped, but counted in line numbers
    }
    return m;
}

std::string object_body(std::size_t i)
{
    if (i < images)
        return image(i);
    if (i == good_manifest)
        return good_manifest_text();
    if (i == missing_object_manifest)
        return manifest_line(std::string("s3://") + bucket + "/" + image_key(0), 0) + "\n"
             + manifest_line(std::string("s3://") + bucket + "/am/no-such-image.jpg", 1) + "\n";
    return manifest_line(std::string("s3://") + bucket + "/" + image_key(0), 0) + "\n" + R"({"source-ref": "s3://)"
         + bucket + "/" + image_key(1) + R"("})" + "\n";
}

/// One moto_server with the images and manifests (one upload call), for the whole binary.
struct s3_fixture {
    test::moto_server server;
    std::vector<std::string> keys;

    s3_fixture()
    {
        server.create_bucket(bucket);
        keys = server.upload_many(bucket, "am/obj-", objects, object_body);
    }

    std::string uri(std::size_t i) const { return std::string("s3://") + bucket + "/" + keys[i]; }
};

s3_fixture& fixture()
{
    static s3_fixture f;
    return f;
}

s3::s3_options moto_options()
{
    s3::s3_options o;
    o.endpoint_url = fixture().server.endpoint();
    o.region = "us-east-1";
    o.credentials = s3::aws_credentials{"AKIDPIPEMODETEST", "pipemode-test-secret", ""};
    s3::environment env;
    env.get_env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
    env.read_file = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    o.env = env;
    return o;
}

const std::vector<std::string> attributes = {"source-ref", "class"};

std::string text_of(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

/// One delivered line: its image bytes, its class text and its epoch.
struct row {
    std::string image;
    std::string klass;
    std::uint64_t epoch = 0;
};

template <class Reader>
std::vector<row> rows_of(Reader& r)
{
    std::vector<row> out;
    for (auto& b : r) {
        REQUIRE(b.features().size() == 2);
        for (std::size_t i = 0; i < b.size(); ++i)
            out.push_back({text_of(b.feature("source-ref").item(i, 0)), text_of(b.feature("class").item(i, 0)), b.epoch()});
    }
    return out;
}

/// The image index whose bytes `bytes` are; fails if none.
std::size_t image_index(const std::string& bytes)
{
    for (std::size_t i = 0; i < images; ++i)
        if (image(i) == bytes)
            return i;
    FAIL("delivered bytes match no image");
    return images;
}

reader_options grouped(std::size_t batch_size)
{
    reader_options o;
    o.batch_size = batch_size;
    o.format = data_format::augmented_manifest;
    o.attribute_names = attributes;
    return o;
}

/// A temporary directory removed at the end of the test.
struct temp_dir {
    std::filesystem::path path;
    temp_dir()
    {
        path = std::filesystem::temp_directory_path()
             / ("pipemode-am-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        std::filesystem::create_directories(path);
    }
    ~temp_dir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    static int& counter()
    {
        static int n = 0;
        return n;
    }
    void write(const std::string& name, const std::string& body) const
    {
        std::ofstream(path / name, std::ios::binary) << body;
    }
};

} // namespace

TEST_CASE("Each line of an S3 augmented manifest is one row: the -ref object's bytes and the attribute's JSON", "[augmented_manifest]")
{
    auto& f = fixture();
    data_set_reader r(augmented_manifest_store(f.uri(good_manifest), {.attribute_names = attributes, .s3 = moto_options()}),
                      {}, grouped(4));
    const auto rows = rows_of(r);
    REQUIRE(rows.size() == images);
    for (std::size_t i = 0; i < images; ++i) {
        CAPTURE(i);
        REQUIRE(rows[i].image == image(i));  // byte-identical, in manifest order
        REQUIRE(rows[i].klass == "\"" + class_of(i) + "\"");  // the JSON string, quotes included
    }
}

TEST_CASE("A line's stream is exactly Pipe mode's: one RecordIO record per attribute, in AttributeNames order", "[augmented_manifest]")
{
    auto& f = fixture();
    // Attribute order reversed, a JSON object attribute, and the raw stream read as payloads.
    const std::vector<std::string> names = {"class", "other", "source-ref"};
    data_set_reader r(augmented_manifest_store(f.uri(good_manifest), {.attribute_names = names, .s3 = moto_options()}),
                      {}, {.batch_size = 100, .format = data_format::recordio});
    const auto payloads = test::payloads_of(r);
    REQUIRE(payloads.size() == 3 * images);
    for (std::size_t i = 0; i < images; ++i) {
        CAPTURE(i);
        REQUIRE(payloads[3 * i] == "\"" + class_of(i) + "\"");
        REQUIRE(payloads[3 * i + 1] == R"({"x":[1,2]})");
        REQUIRE(payloads[3 * i + 2] == image(i));
    }
}

TEST_CASE("Lines are sharded over 2 ranks and shuffled over 2 epochs: each epoch, every line exactly once", "[augmented_manifest]")
{
    auto& f = fixture();
    std::map<std::uint64_t, std::vector<std::size_t>> seen;              // epoch -> image indices, all ranks
    std::map<std::pair<std::size_t, std::uint64_t>, std::vector<std::size_t>> order;  // (rank, epoch) -> order
    for (std::size_t rank = 0; rank < 2; ++rank) {
        data_set_reader r(augmented_manifest_store(f.uri(good_manifest),
                                                   {.attribute_names = attributes, .s3 = moto_options(), .fetch_ahead = 2}),
                          {.plan = {.shard = {.rank = rank, .world_size = 2, .mode = shard_mode::by_object},
                                    .shuffle_seed = 11},
                           .epochs = 2},
                          grouped(2));
        for (const auto& row : rows_of(r)) {
            const std::size_t i = image_index(row.image);
            REQUIRE(row.klass == "\"" + class_of(i) + "\"");  // still paired with its own class
            seen[row.epoch].push_back(i);
            order[{rank, row.epoch}].push_back(i);
        }
    }
    REQUIRE(seen.size() == 2);
    for (auto& [epoch, got] : seen) {
        CAPTURE(epoch);
        std::sort(got.begin(), got.end());
        REQUIRE(got == std::vector<std::size_t>{0, 1, 2, 3, 4, 5});
    }
    // The shards are disjoint (checked above through the sorted union) and the order changes
    // between epochs on at least one rank.
    REQUIRE((order[{0, 0}] != order[{0, 1}] || order[{1, 0}] != order[{1, 1}]));
}

TEST_CASE("A missing -ref object is an error naming the line, the attribute, the URI and S3's code", "[augmented_manifest]")
{
    auto& f = fixture();
    data_set_reader r(augmented_manifest_store(f.uri(missing_object_manifest), {.attribute_names = attributes, .s3 = moto_options()}),
                      {}, grouped(1));
    std::size_t rows = 0;
    const auto e = test::error_from([&] {
        for (auto& b : r)
            rows += b.size();
    });
    REQUIRE(rows == 1);  // the first line is delivered before the error
    REQUIRE_THAT(e.what(), Catch::Contains(f.uri(missing_object_manifest) + "#line 2")
                               && Catch::Contains("attribute 'source-ref'")
                               && Catch::Contains(std::string("s3://") + bucket + "/am/no-such-image.jpg")
                               && Catch::Contains("NoSuchKey"));
}

TEST_CASE("A line without a listed attribute is an error naming the manifest and the line", "[augmented_manifest]")
{
    auto& f = fixture();
    data_set_reader r(augmented_manifest_store(f.uri(missing_attribute_manifest), {.attribute_names = attributes, .s3 = moto_options()}),
                      {}, grouped(1));
    const auto [rows, e] = [&] {
        std::size_t n = 0;
        auto err = test::error_from([&] {
            for (auto& b : r)
                n += b.size();
        });
        return std::pair{n, err};
    }();
    REQUIRE(rows == 0);  // checked when the manifest is listed, before any line is read
    REQUIRE(e.code() == errc::malformed_manifest);
    REQUIRE_THAT(e.what(), Catch::Contains(f.uri(missing_attribute_manifest)) && Catch::Contains("line 2")
                               && Catch::Contains("'class' is missing"));
}

TEST_CASE("An AugmentedManifestFile channel is read through open_channel, grouped per line", "[augmented_manifest]")
{
    auto& f = fixture();
    channel_config c;
    c.name = "train";
    c.uri = f.uri(good_manifest);
    c.data_type = s3_data_type::augmented_manifest_file;
    c.attribute_names = attributes;
    c.content_type = "application/x-image";
    REQUIRE(format_for(c).first == data_format::augmented_manifest);
    channel_read_options o;
    o.s3 = moto_options();
    o.reader.batch_size = 5;
    auto r = open_channel(c, o);
    const auto rows = rows_of(r);
    REQUIRE(rows.size() == images);
    for (std::size_t i = 0; i < images; ++i)
        REQUIRE((rows[i].image == image(i) && rows[i].klass == "\"" + class_of(i) + "\""));

    c.attribute_names.clear();
    REQUIRE_THROWS_WITH(channel_store(c), Catch::Contains("AttributeNames"));
}

TEST_CASE("A local manifest with relative and file:// -ref paths, and its errors", "[augmented_manifest]")
{
    temp_dir dir;
    dir.write("a.bin", image(3));
    dir.write("b.bin", image(1));
    dir.write("train.manifest", R"({"image-ref": "a.bin", "label": 7})" "\r\n"
                                R"({"label": [1, 0.5, "z"], "image-ref": "file://)" + (dir.path / "b.bin").string() + "\"}\n");
    const std::vector<std::string> names = {"image-ref", "label"};
    const std::string manifest = (dir.path / "train.manifest").string();
    {
        reader_options o = grouped(3);
        o.attribute_names = names;
        data_set_reader r(augmented_manifest_store("file://" + manifest, {.attribute_names = names}), {}, o);
        std::vector<std::pair<std::string, std::string>> got;
        for (auto& b : r)
            for (std::size_t i = 0; i < b.size(); ++i)
                got.emplace_back(text_of(b.feature("image-ref").item(i, 0)), text_of(b.feature("label").item(i, 0)));
        REQUIRE(got == std::vector<std::pair<std::string, std::string>>{{image(3), "7"}, {image(1), R"([1,0.5,"z"])"}});
    }
    {
        // A record-level shuffle would separate the attributes: refused at construction.
        reader_options o = grouped(3);
        o.attribute_names = names;
        o.shuffle_records = 8;
        REQUIRE_THROWS_WITH(data_set_reader(augmented_manifest_store(manifest, {.attribute_names = names}), {}, o),
                            Catch::Contains("shuffle_records must be 0"));
    }
    {
        // A missing local object names the line and the path.
        dir.write("bad.manifest", "\n" R"({"image-ref": "nope.bin", "label": 1})" "\n");
        reader_options o = grouped(3);
        o.attribute_names = names;
        data_set_reader r(augmented_manifest_store((dir.path / "bad.manifest").string(), {.attribute_names = names}), {}, o);
        const auto e = test::error_from([&] {
            for (auto& b : r)
                (void)b;
        });
        REQUIRE_THAT(e.what(), Catch::Contains("bad.manifest#line 2") && Catch::Contains("nope.bin")
                                   && Catch::Contains("attribute 'image-ref'"));
    }
    {
        // A line that is not JSON names its line number.
        dir.write("broken.manifest", R"({"image-ref": "a.bin", "label": 1})" "\n" R"({"image-ref": "a.bin", "label": )" "\n");
        reader_options o = grouped(3);
        o.attribute_names = names;
        data_set_reader r(augmented_manifest_store((dir.path / "broken.manifest").string(), {.attribute_names = names}), {}, o);
        const auto e = test::error_from([&] {
            for (auto& b : r)
                (void)b;
        });
        REQUIRE(e.code() == errc::malformed_manifest);
        REQUIRE_THAT(e.what(), Catch::Contains("line 2: not valid JSON"));
    }
    for (const auto& [line, why] : std::vector<std::pair<std::string, std::string>>{
             {R"({"image-ref": "https://example.com/a.jpg", "label": 1})", "must be an s3:// URI or a local path"},
             {R"({"image-ref": "s3://", "label": 1})", "not a valid S3 URI"},
             {R"({"image-ref": 3, "label": 1})", "ends in -ref but is not a URI string"},
             {R"(["image-ref", "label"])", "not a JSON object"}}) {
        CAPTURE(line);
        dir.write("refs.manifest", R"({"image-ref": "a.bin", "label": 1})" "\n" + line + "\n");
        reader_options o = grouped(3);
        o.attribute_names = names;
        data_set_reader r(augmented_manifest_store((dir.path / "refs.manifest").string(), {.attribute_names = names}), {}, o);
        const auto e = test::error_from([&] {
            for (auto& b : r)
                (void)b;
        });
        REQUIRE(e.code() == errc::malformed_manifest);
        REQUIRE_THAT(e.what(), Catch::Contains("line 2: ") && Catch::Contains(why));
    }
}

TEST_CASE("Listing gives each line's URI and, without -ref attributes, the bytes of its records", "[augmented_manifest]")
{
    temp_dir dir;
    dir.write("m.jsonl", R"({"a": "xy", "b": 12})" "\n\n" R"({"b": true, "a": null})" "\n");
    auto store = augmented_manifest_store((dir.path / "m.jsonl").string(), {.attribute_names = {"a", "b"}});
    asio::io_context io;
    asio::thread_pool pool(1);
    std::vector<object_entry> listed;
    auto f = asio::co_spawn(io, store->async_list({io.get_executor(), pool.get_executor()}), asio::use_future);
    io.run();
    listed = f.get();
    pool.join();
    REQUIRE(listed.size() == 2);
    const std::string m = (dir.path / "m.jsonl").string();
    REQUIRE(listed[0].uri == m + "#line 1");
    REQUIRE(listed[1].uri == m + "#line 3");
    // RecordIO: 8 header bytes per record, payloads padded to 4 bytes: "\"xy\"" (4) and "12" (2 -> 4).
    REQUIRE(listed[0].size == std::optional<std::uint64_t>(8 + 4 + 8 + 4));
    // "null" (4) and "true" (4).
    REQUIRE(listed[1].size == std::optional<std::uint64_t>(8 + 4 + 8 + 4));
    REQUIRE_FALSE(store->splittable());
    REQUIRE(attribute_json_text(R"({"a": {"k": "v\n", "n": -1.5e3}})", "a") == R"({"k":"v\n","n":-1.5e3})");
}

TEST_CASE("A reader of a shuffled augmented manifest resumes mid-epoch with the same lines in the same order", "[augmented_manifest]")
{
    temp_dir dir;
    std::string manifest;
    for (std::size_t i = 0; i < 9; ++i) {
        dir.write("img" + std::to_string(i), "image " + std::to_string(i));
        manifest += R"({"source-ref": "img)" + std::to_string(i) + R"(", "class": )" + std::to_string(i) + "}\n";
    }
    dir.write("m.jsonl", manifest);
    const std::string path = (dir.path / "m.jsonl").string();
    const data_set_options plan{.plan = {.shuffle_seed = 5}, .epochs = 2};
    const auto all_rows = [&](std::optional<data_set_state> resume, std::size_t stop_after,
                              std::optional<data_set_state>* saved) {
        data_set_options o = plan;
        o.resume = std::move(resume);
        data_set_reader r(augmented_manifest_store(path, {.attribute_names = attributes, .fetch_ahead = 3}), o, grouped(2));
        std::vector<std::string> out;
        std::size_t batches = 0;
        for (auto& b : r) {
            for (std::size_t i = 0; i < b.size(); ++i)
                out.push_back(text_of(b.feature("source-ref").item(i, 0)) + "|" + text_of(b.feature("class").item(i, 0)));
            if (++batches == stop_after) {
                *saved = data_set_state::from_json(r.state().to_json());
                break;
            }
        }
        return out;
    };
    const auto whole = all_rows(std::nullopt, 0, nullptr);
    REQUIRE(whole.size() == 18);
    {
        // No window and no fetch-ahead still reads every line (one at a time), in the same order.
        data_set_reader r(augmented_manifest_store(path, {.attribute_names = attributes, .fetch_ahead = 0, .window = 0}),
                          plan, grouped(2));
        std::vector<std::string> got;
        for (auto& b : r)
            for (std::size_t i = 0; i < b.size(); ++i)
                got.push_back(text_of(b.feature("source-ref").item(i, 0)) + "|" + text_of(b.feature("class").item(i, 0)));
        REQUIRE(got == whole);
    }
    for (std::size_t stop = 1; stop <= 9; stop += 4) {
        CAPTURE(stop);
        std::optional<data_set_state> saved;
        auto before = all_rows(std::nullopt, stop, &saved);
        REQUIRE(saved);
        const auto after = all_rows(saved, 0, nullptr);
        before.insert(before.end(), after.begin(), after.end());
        REQUIRE(before == whole);
    }
}

TEST_CASE("Destroying a reader while lines are being fetched stops promptly", "[augmented_manifest]")
{
    auto& f = fixture();
    for (std::size_t batches = 0; batches <= 2; ++batches) {
        CAPTURE(batches);
        const auto start = std::chrono::steady_clock::now();
        {
            data_set_reader r(augmented_manifest_store(f.uri(good_manifest), {.attribute_names = attributes, .s3 = moto_options()}),
                              {.epochs = 0}, grouped(1));
            for (std::size_t i = 0; i < batches; ++i) {
                auto b = r.next();
                REQUIRE(b);
                REQUIRE(text_of(b->feature("source-ref").item(0, 0)) == image(i));
            }
        }
        // The reader waits up to 10 s for a pipeline that does not stop; this one must not.
        REQUIRE(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    }
}

} // namespace augmented_manifest_test
