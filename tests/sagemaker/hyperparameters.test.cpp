// Tests of hyperparameters.json reading and the typed accessors.
#include <pipemode/sagemaker/hyperparameters.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using pipemode::sagemaker::hyperparameters;
using Catch::Matchers::Contains;

TEST_CASE("SageMaker's strings and plain JSON numbers and booleans", "[hyperparameters]")
{
    const auto hp = hyperparameters::parse(R"({
      "k": "10", "feature_dim": "784", "mini_batch_size": 500, "tol": "1e-05", "eta": 0.25,
      "init_method": "kmeans++", "verbose": "True", "extra": false, "offset": "-3", "big": 18446744073709551615
    })");
    CHECK(hp.get<std::size_t>("k") == 10);
    CHECK(hp.get<int>("feature_dim") == 784);
    CHECK(hp.get<std::uint32_t>("mini_batch_size") == 500);
    CHECK(hp.get<double>("tol") == 1e-05);
    CHECK(hp.get<float>("eta") == 0.25f);
    CHECK(hp.get<std::string>("init_method") == "kmeans++");
    CHECK(hp.get<bool>("verbose"));
    CHECK_FALSE(hp.get<bool>("extra"));
    CHECK(hp.get<long>("offset") == -3);
    CHECK(hp.get<double>("offset") == -3.0);
    CHECK(hp.get<std::uint64_t>("big") == 18446744073709551615ull);
    CHECK(hp.get<std::string>("mini_batch_size") == "500");

    CHECK(hp.get_or<double>("x", 1.0) == 1.0);
    CHECK(hp.get_or<std::size_t>("k", 3) == 10);
    CHECK(hp.get_or<std::string>("missing", "dflt") == "dflt");
    CHECK(hp.contains("k"));
    CHECK_FALSE(hp.contains("K"));
    REQUIRE(hp.find("init_method"));
    CHECK(*hp.find("init_method") == "kmeans++");
    CHECK(hp.find("nope") == nullptr);
    CHECK(hp.items().size() == 10);
    CHECK(hp.items().front().first == "k");

    CHECK(hp.unknown_keys({"k", "feature_dim", "mini_batch_size", "tol", "eta", "init_method", "offset", "big"})
          == std::vector<std::string>{"verbose", "extra"});
    CHECK(hp.unknown_keys({}).size() == 10);

    CHECK(hyperparameters().items().empty());
    CHECK(hyperparameters::parse("{}").get_or<int>("k", 7) == 7);
}

TEST_CASE("a value that does not convert names the key and the value", "[hyperparameters]")
{
    const auto hp = hyperparameters::parse(
        R"({"k": "ten", "neg": "-1", "frac": "2.5", "huge": "300", "flag": "yes", "x": "1.5x", "inf": "inf",
            "plus": "+4", "space": " 4", "empty": ""})");
    CHECK_THROWS_WITH(hp.get<std::size_t>("k"), Contains("hyperparameter \"k\" is \"ten\", which is not a whole number from 0 to"));
    CHECK_THROWS_WITH(hp.get<unsigned>("neg"), Contains("hyperparameter \"neg\" is \"-1\""));
    CHECK(hp.get<int>("neg") == -1);
    CHECK_THROWS_WITH(hp.get<int>("frac"), Contains("hyperparameter \"frac\" is \"2.5\""));
    CHECK_THROWS_WITH(hp.get<std::uint8_t>("huge"), Contains("\"huge\" is \"300\", which is not a whole number from 0 to 255"));
    CHECK_THROWS_WITH(hp.get<std::int8_t>("huge"), Contains("from -128 to 127"));
    CHECK_THROWS_WITH(hp.get<bool>("flag"), Contains("hyperparameter \"flag\" is \"yes\", which is not a boolean"));
    CHECK_THROWS_WITH(hp.get<double>("x"), Contains("\"x\" is \"1.5x\", which is not a finite number"));
    CHECK_THROWS_WITH(hp.get<double>("inf"), Contains("\"inf\" is \"inf\""));
    CHECK_THROWS_WITH(hp.get<int>("plus"), Contains("\"plus\" is \"+4\""));
    CHECK_THROWS_WITH(hp.get<int>("space"), Contains("\"space\" is \" 4\""));
    CHECK_THROWS_WITH(hp.get<double>("empty"), Contains("\"empty\" is \"\""));
    CHECK_THROWS_WITH(hp.get_or<int>("k", 5), Contains("\"k\" is \"ten\""));
    CHECK_THROWS_WITH(hp.get<int>("missing"), Contains("hyperparameter \"missing\" is missing; it is required"));
}

TEST_CASE("documents that are not a hyperparameter object", "[hyperparameters]")
{
    CHECK_THROWS_WITH(hyperparameters::parse(R"({"k": "1", "k": "2"})"), Contains("hyperparameter \"k\" is given twice"));
    CHECK_THROWS_WITH(hyperparameters::parse(R"({"layers": [1, 2]})"),
                      Contains("hyperparameter \"layers\" must be a string, a number or a boolean, not an array"));
    CHECK_THROWS_WITH(hyperparameters::parse(R"({"opt": {"lr": 1}})"), Contains("\"opt\" must be") && Contains("not an object"));
    CHECK_THROWS_WITH(hyperparameters::parse(R"({"k": null})"), Contains("\"k\" must be") && Contains("not null"));
    CHECK_THROWS_WITH(hyperparameters::parse(R"(["k"])"), Contains("hyperparameters.json: the document must be an object"));
    CHECK_THROWS_WITH(hyperparameters::parse(R"({"k": )"), Contains("hyperparameters.json is not valid JSON"));
}

TEST_CASE("reads the file, naming its path in errors", "[hyperparameters]")
{
    const auto dir = std::filesystem::temp_directory_path()
        / ("pipemode_hp_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "hyperparameters.json").string();
    auto write = [&](const std::string& text) { std::ofstream(path, std::ios::binary) << text; };

    write(R"({"k": "10", "feature_dim": "784"})");
    const auto hp = hyperparameters::read_file(path);
    CHECK(hp.get<std::size_t>("k") == 10);
    CHECK(hp.get<std::size_t>("feature_dim") == 784);

    write(R"({"k": )");
    CHECK_THROWS_WITH(hyperparameters::read_file(path), Contains(path + ": hyperparameters.json is not valid JSON"));
    write("");
    CHECK_THROWS_WITH(hyperparameters::read_file(path), Contains(path + ": hyperparameters.json is not valid JSON"));

    CHECK_THROWS_AS(hyperparameters::read_file((dir / "missing.json").string()), std::runtime_error);
    CHECK_THROWS_WITH(hyperparameters::read_file((dir / "missing.json").string()), Contains("missing.json does not exist"));
    CHECK_THROWS_WITH(hyperparameters::read_file(dir.string()), Contains("is not a regular file"));

    std::filesystem::remove_all(dir);
}
