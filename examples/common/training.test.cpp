// pipemode_training's unit tests: the command line's channels and prediction options, metrics
// lines and metrics.json, and model files written and read back.
#include "training.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

using namespace pipemode::examples;

namespace {

// argv for training_job::parse from a list of words (the program's name first).
struct argv_of {
    explicit argv_of(std::vector<std::string> w) : words(std::move(w))
    {
        for (auto& s : words)
            ptrs.push_back(s.data());
        ptrs.push_back(nullptr);
    }
    int argc() const { return static_cast<int>(words.size()); }
    char** argv() { return ptrs.data(); }
    std::vector<std::string> words;
    std::vector<char*> ptrs;
};

training_job parse(std::vector<std::string> words, std::map<std::string, std::string>* hp = nullptr)
{
    words.insert(words.begin(), "pipemode-test");
    argv_of a(std::move(words));
    return training_job::parse(
        a.argc(), a.argv(),
        [&](const std::string& name, std::string_view value) {
            if (name != "k" && name != "feature_dim")
                return false;
            if (hp)
                (*hp)[name] = std::string(value);
            return true;
        },
        "pipemode-test");
}

std::string read_text(const std::filesystem::path& p)
{
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::filesystem::path fresh_dir(const std::string& name)
{
    const auto dir = std::filesystem::temp_directory_path() / ("pipemode_training_test_" + name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

} // namespace

TEST_CASE("training_job: positional SOURCEs are train, --validation and --test repeat")
{
    std::map<std::string, std::string> hp;
    const auto job = parse({"a.rec", "--validation", "v1.rec", "--k", "3", "b.rec", "--test=t.rec",
                            "--validation", "v2.rec", "--feature-dim", "7"},
                           &hp);
    CHECK(job.sources(channel::train) == std::vector<std::string>{"a.rec", "b.rec"});
    CHECK(job.sources(channel::validation) == std::vector<std::string>{"v1.rec", "v2.rec"});
    CHECK(job.sources(channel::test) == std::vector<std::string>{"t.rec"});
    CHECK(job.has(channel::validation));
    CHECK(job.has(channel::test));
    CHECK_FALSE(job.predicting());
    CHECK(hp == std::map<std::string, std::string>{{"k", "3"}, {"feature_dim", "7"}});
}

TEST_CASE("training_job: channels left out are absent, and usage errors say what is wrong")
{
    const auto job = parse({"a.rec"});
    CHECK_FALSE(job.has(channel::validation));
    CHECK_FALSE(job.has(channel::test));
    CHECK(job.sources(channel::validation).empty());

    CHECK_THROWS_WITH(parse({"--validation", "v.rec"}), Catch::Contains("no SOURCE given"));
    CHECK_THROWS_WITH(parse({"a.rec", "--validation"}), Catch::Contains("--validation needs a value"));
    CHECK_THROWS_WITH(parse({"a.rec", "--bogus", "1"}), Catch::Contains("unknown option '--bogus'"));
    CHECK_THROWS_WITH(parse({"a.rec", "--output", "p.jsonl"}), Catch::Contains("give --predict"));
    CHECK_THROWS_WITH(parse({"a.rec", "--pipe-mode"}), Catch::Contains("not both"));
    CHECK_THROWS_WITH(parse({"a.rec", "--test", "ftp://x/y"}), Catch::Contains("ftp://"));
    CHECK_THROWS_AS(parse({"a.rec", "--test", "ftp://x/y"}), usage_error);
}

TEST_CASE("training_job: --predict and --output, and --help checks nothing else")
{
    const auto job = parse({"--predict", "m/model.json", "--output", "out.jsonl", "x.rec"});
    CHECK(job.predicting());
    CHECK(job.predict_model() == "m/model.json");
    CHECK(parse({"--help"}).help());
}

TEST_CASE("training_job: --pipe-mode finds validation and test from inputdataconfig.json")
{
    const auto root = fresh_dir("pipe_mode");
    std::filesystem::create_directories(root / "data");
    std::filesystem::create_directories(root / "config");
    std::ofstream(root / "config" / "inputdataconfig.json")
        << R"({"train": {"TrainingInputMode": "Pipe"}, "test": {"TrainingInputMode": "Pipe"}})";
    const auto job = parse({"--pipe-mode", "--data-dir", (root / "data").string()});
    CHECK(job.has(channel::train));
    CHECK_FALSE(job.has(channel::validation));
    CHECK(job.has(channel::test));
    CHECK(job.sources(channel::train).empty());
}

TEST_CASE("metrics_log: one line a report in the documented form, the last value in metrics.json")
{
    const auto dir = fresh_dir("metrics");
    const auto out_path = dir / "stdout.txt";
    std::FILE* out = std::fopen(out_path.c_str(), "wb");
    REQUIRE(out != nullptr);
    metrics_log m(true, out);
    m.report("train", "msd", 0.5, 1);
    m.report("validation", "rmse", 0.1 + 0.2);
    m.report("train", "msd", 0.25, 2);
    m.report("test", "ssd", std::numeric_limits<double>::quiet_NaN());
    std::fclose(out);
    CHECK(read_text(out_path)
          == "#metric train:msd=0.5 epoch=1\n"
             "#metric validation:rmse=0.30000000000000004\n"
             "#metric train:msd=0.25 epoch=2\n"
             "#metric test:ssd=nan\n");
    REQUIRE(m.values().size() == 3);
    CHECK(m.values()[0].first == "train:msd");
    CHECK(m.values()[0].second == 0.25);

    const auto path = m.write(dir);
    CHECK(path == dir / "metrics.json");
    CHECK(read_text(path) == "{\n  \"train:msd\": 0.25,\n  \"validation:rmse\": 0.30000000000000004,\n  \"test:ssd\": null\n}\n");
    // And it reads back as JSON with the same doubles.
    const auto back = model_file::read(path);
    CHECK(back.number("validation:rmse") == 0.1 + 0.2);
}

TEST_CASE("metrics_log: a rank that does not print still keeps the values")
{
    metrics_log m(false, nullptr);
    m.report("train", "objective_loss", 1.5);
    CHECK(m.json() == "{\n  \"train:objective_loss\": 1.5\n}\n");
    CHECK(metrics_log(false, nullptr).json() == "{}\n");
    CHECK(metrics_log::line("test", "rmse", -std::numeric_limits<double>::infinity()) == "#metric test:rmse=-inf");
}

TEST_CASE("model_file: what write_model_file and append_json_* write reads back exactly")
{
    const auto dir = fresh_dir("model");
    const std::vector<double> v{1.0 / 3.0, -2.5e-300, 12345678.9, std::numeric_limits<double>::quiet_NaN()};
    const std::vector<double> m{1, 2, 3, 4.5, 5, 6.25};
    std::string text = "{\n  \"algorithm\": \"kmeans\",\n  \"format_version\": 1,\n  \"k\": 3,\n  \"name\": ";
    append_json_string(text, "a \"quoted\"\\ name\n");
    text += ",\n  \"flag\": true,\n  \"v\": ";
    append_json_array(text, v);
    text += ",\n  \"m\": ";
    append_json_matrix(text, m, 3);
    text += "\n}\n";
    const auto path = write_model_file(dir, "model.json", text);
    CHECK_FALSE(std::filesystem::exists(dir / "model.json.tmp"));

    const auto f = model_file::read(path);
    CHECK_NOTHROW(f.expect("kmeans", 1));
    CHECK_THROWS_WITH(f.expect("pca", 1), Catch::Contains("not a model of pca") && Catch::Contains("\"kmeans\""));
    CHECK_THROWS_WITH(f.expect("kmeans", 0), Catch::Contains("format_version 1 is newer"));
    CHECK(f.count("k") == 3);
    CHECK(f.string("name") == "a \"quoted\"\\ name\n");
    CHECK(f.boolean("flag"));
    const auto back = f.numbers("v");
    REQUIRE(back.size() == 4);
    CHECK(back[0] == v[0]);
    CHECK(back[1] == v[1]);
    CHECK(back[2] == v[2]);
    CHECK(std::isnan(back[3]));
    CHECK(f.matrix("m", 3) == m);
    CHECK(f.has("m"));
    CHECK_FALSE(f.has("nothing"));
    CHECK_THROWS_WITH(f.matrix("m", 2), Catch::Contains("rows of 2 numbers"));
    CHECK_THROWS_WITH(f.number("nothing"), Catch::Contains(path.string()) && Catch::Contains("no \"nothing\""));
    CHECK_THROWS_WITH(f.count("name"), Catch::Contains("\"name\" is not a whole number"));
}

TEST_CASE("model_file: a file that is not a JSON object is refused with its name and the offset")
{
    CHECK_THROWS_WITH(model_file::parse("{\"a\": [1, 2", "m.json"), Catch::Contains("m.json") && Catch::Contains("byte"));
    CHECK_THROWS_WITH(model_file::parse("[1]", "m.json"), Catch::Contains("a JSON object"));
    CHECK_THROWS_WITH(model_file::read("/nonexistent/model.json"), Catch::Contains("cannot open"));
}

TEST_CASE("append_json_shortest: the shortest text that reads back, null when not finite")
{
    std::string s;
    append_json_shortest(s, 0.1);
    s += ' ';
    append_json_shortest(s, 3.0);
    s += ' ';
    append_json_shortest(s, std::numeric_limits<double>::infinity());
    CHECK(s == "0.1 3 null");
}

TEST_CASE("training_job: each channel's content type, and a CSV channel read through the library's reader")
{
    const auto dir = fresh_dir("content_types");
    std::ofstream(dir / "test.csv") << "1,0.5,2\n0,-1,3.25\n";
    const auto test = (dir / "test.csv").string();

    const auto job = parse({"a.rec", "--test", test, "--test-content-type", "text/csv;label_size=1"});
    auto r = channel_reader::whole(job, channel::test, 0, 10);
    const auto b = r.next();
    REQUIRE(b);
    REQUIRE(b->size() == 2);
    const auto& x = b->feature("values");
    const auto& y = b->label("values");
    CHECK(x.row_size() == 2);
    CHECK(std::vector<float>(x.values<float>().begin(), x.values<float>().end())
          == std::vector<float>{0.5f, 2.0f, -1.0f, 3.25f});
    CHECK(std::vector<float>(y.values<float>().begin(), y.values<float>().end()) == std::vector<float>{1.0f, 0.0f});
    CHECK_FALSE(r.next());

    // The same file read as the default RecordIO-protobuf is an error of the data, not a silent
    // misreading.
    const auto protobuf = parse({"a.rec", "--test", test});
    auto wrong = channel_reader::whole(protobuf, channel::test, 0, 10);
    CHECK_THROWS(wrong.next());

    CHECK_THROWS_WITH(parse({"a.rec", "--content-type", "image/jpeg"}),
                      Catch::Contains("train channel's content type is 'image/jpeg'"));
    CHECK_THROWS_AS(parse({"a.rec", "--validation-content-type", "text/csv;label_size=x"}), usage_error);
}

TEST_CASE("training_job: in Pipe mode a channel's ContentType comes from inputdataconfig.json, unless given")
{
    const auto root = fresh_dir("pipe_content_types");
    std::filesystem::create_directories(root / "data");
    std::filesystem::create_directories(root / "config");
    std::ofstream(root / "config" / "inputdataconfig.json")
        << R"({"train": {"ContentType": "application/x-recordio-protobuf"},)"
        << R"( "test": {"ContentType": "text/csv;label_size=1"}, "validation": {"ContentType": "video/mp4"}})";
    // The validation channel's type is refused, which shows the file's types are read; given on
    // the command line, it wins over the file.
    CHECK_THROWS_WITH(parse({"--pipe-mode", "--data-dir", (root / "data").string()}),
                      Catch::Contains("validation channel's content type is 'video/mp4'"));
    const auto job = parse({"--pipe-mode", "--data-dir", (root / "data").string(), "--validation-content-type",
                            "text/csv"});
    CHECK(job.has(channel::validation));
    CHECK(job.has(channel::test));
}
