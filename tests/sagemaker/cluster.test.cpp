// Tests of cluster position detection: resourceconfig.json, torchrun's and Open MPI's variables,
// their precedence, and the errors for bad values.
#include <pipemode/sagemaker/cluster.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

using namespace pipemode::sagemaker;
using Catch::Matchers::Contains;

namespace {

// An environment over maps, recording which files were asked for.
struct fake_environment {
    std::map<std::string, std::string, std::less<>> vars;
    std::map<std::string, std::string> files;
    std::vector<std::string> files_read;

    pipemode::s3::environment get()
    {
        pipemode::s3::environment env;
        env.get_env = [this](std::string_view name) -> std::optional<std::string> {
            auto it = vars.find(name);
            return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        env.read_file = [this](const std::string& path) -> std::optional<std::string> {
            files_read.push_back(path);
            auto it = files.find(path);
            return it == files.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        return env;
    }
};

const std::string rc_path(default_resource_config_path);

std::string detect_error(fake_environment& f)
{
    try {
        detect_cluster_position(f.get());
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("no exception");
    return {};
}

std::string parse_error_of(const std::string& json)
{
    try {
        parse_resource_config(json);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    FAIL("no exception for " << json);
    return {};
}

} // namespace

TEST_CASE("rank is the index of current_host among the sorted hosts", "[cluster]")
{
    const auto p = parse_resource_config(
        R"({"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"], "network_interface_name": "eth0"})");
    CHECK(p.rank == 1);
    CHECK(p.world_size == 3);
    CHECK(p.source == "resourceconfig.json");
    CHECK(p.hosts == std::vector<std::string>{"algo-1", "algo-2", "algo-3"});
    CHECK(p.current_host == "algo-2");

    CHECK(parse_resource_config(R"({"current_host": "algo-3", "hosts": ["algo-3", "algo-1", "algo-2"]})").rank == 2);
    CHECK(parse_resource_config(R"({"current_host": "algo-1", "hosts": ["algo-3", "algo-1", "algo-2"]})").rank == 0);
    // Byte order, as Python's sorted() on the host names: "algo-10" sorts before "algo-2".
    CHECK(parse_resource_config(R"({"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-10"]})").rank == 2);

    const auto single = parse_resource_config(R"({"current_host": "algo-1", "hosts": ["algo-1"], "instance_groups": []})");
    CHECK(single == cluster_position{.rank = 0, .world_size = 1, .source = "resourceconfig.json",
                                     .hosts = {"algo-1"}, .current_host = "algo-1"});
}

TEST_CASE("resourceconfig.json errors name the member", "[cluster]")
{
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-4", "hosts": ["algo-1", "algo-2"]})"),
               Contains("current_host \"algo-4\" is not among hosts"));
    CHECK_THAT(parse_error_of(R"({"hosts": ["algo-1"]})"), Contains("current_host is missing"));
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-1"})"), Contains("hosts is missing"));
    CHECK_THAT(parse_error_of(R"({"current_host": 1, "hosts": ["algo-1"]})"),
               Contains("current_host must be a string, not a number"));
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-1", "hosts": "algo-1"})"),
               Contains("hosts must be an array of strings, not a string"));
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-1", "hosts": ["algo-1", null]})"),
               Contains("hosts[1] must be a string, not null"));
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-1", "hosts": []})"), Contains("hosts is empty"));
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-1", "hosts": ["algo-1", "algo-2", "algo-1"]})"),
               Contains("hosts names \"algo-1\" twice"));
    CHECK_THAT(parse_error_of(R"(["algo-1"])"), Contains("the document must be an object, not an array"));
    CHECK_THAT(parse_error_of(R"({"current_host": "algo-1", )"), Contains("resourceconfig.json is not valid JSON"));
}

TEST_CASE("write_resource_config round-trips", "[cluster]")
{
    const std::vector<std::string> hosts{"algo-3", "algo-1", "algo-2"};
    const std::string text = write_resource_config(hosts, "algo-3");
    CHECK(text
          == "{\n"
             "  \"current_host\": \"algo-3\",\n"
             "  \"hosts\": [\n"
             "    \"algo-3\",\n"
             "    \"algo-1\",\n"
             "    \"algo-2\"\n"
             "  ],\n"
             "  \"network_interface_name\": \"eth0\"\n"
             "}\n");
    const auto p = parse_resource_config(text);
    CHECK(p.rank == 2);
    CHECK(p.world_size == 3);
    for (const auto& h : hosts)
        CHECK(parse_resource_config(write_resource_config(hosts, h, "ens5")).current_host == h);

    CHECK_THROWS_WITH(write_resource_config({}, "algo-1"), Contains("hosts is empty"));
    CHECK_THROWS_WITH(write_resource_config({"algo-1"}, "algo-2"), Contains("current_host \"algo-2\" is not among hosts"));
    CHECK_THROWS_WITH(write_resource_config({"a", "b", "a"}, "a"), Contains("hosts names \"a\" twice"));
}

TEST_CASE("each source on its own", "[cluster]")
{
    SECTION("nothing: rank 0 of 1, after looking for the file")
    {
        fake_environment f;
        CHECK(detect_cluster_position(f.get()) == cluster_position{.source = "default"});
        CHECK(f.files_read == std::vector<std::string>{rc_path});
    }
    SECTION("no file path: the file is not read")
    {
        fake_environment f;
        f.files[rc_path] = R"({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})";
        CHECK(detect_cluster_position(f.get(), std::nullopt).source == "default");
        CHECK(f.files_read.empty());
    }
    SECTION("RANK/WORLD_SIZE")
    {
        fake_environment f;
        f.vars = {{"RANK", "3"}, {"WORLD_SIZE", "8"}};
        CHECK(detect_cluster_position(f.get()) == cluster_position{.rank = 3, .world_size = 8, .source = "RANK/WORLD_SIZE"});
        CHECK(f.files_read.empty());
    }
    SECTION("OMPI_COMM_WORLD_*")
    {
        fake_environment f;
        f.vars = {{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}};
        CHECK(detect_cluster_position(f.get())
              == cluster_position{.rank = 0, .world_size = 2, .source = "OMPI_COMM_WORLD_*"});
    }
    SECTION("resourceconfig.json at the default path")
    {
        fake_environment f;
        f.files[rc_path] = R"({"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"]})";
        const auto p = detect_cluster_position(f.get());
        CHECK(p.source == "resourceconfig.json");
        CHECK(p.rank == 1);
        CHECK(p.world_size == 3);
        CHECK(p.current_host == "algo-2");
    }
    SECTION("resourceconfig.json at another path")
    {
        fake_environment f;
        f.files["/tmp/rc.json"] = R"({"current_host": "b", "hosts": ["b", "a"]})";
        const auto p = detect_cluster_position(f.get(), "/tmp/rc.json");
        CHECK(p.rank == 1);
        CHECK(p.world_size == 2);
        CHECK(f.files_read == std::vector<std::string>{"/tmp/rc.json"});
    }
}

TEST_CASE("precedence is RANK, then Open MPI, then the file", "[cluster]")
{
    fake_environment f;
    f.files[rc_path] = R"({"current_host": "algo-1", "hosts": ["algo-1", "algo-2", "algo-3", "algo-4"]})";
    f.vars = {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "3"}, {"RANK", "4"}, {"WORLD_SIZE", "5"}};
    CHECK(detect_cluster_position(f.get()).source == "RANK/WORLD_SIZE");
    CHECK(detect_cluster_position(f.get()).rank == 4);

    f.vars.erase("RANK");
    f.vars.erase("WORLD_SIZE");
    CHECK(detect_cluster_position(f.get()) == cluster_position{.rank = 1, .world_size = 3, .source = "OMPI_COMM_WORLD_*"});

    f.vars.clear();
    CHECK(detect_cluster_position(f.get()).world_size == 4);

    // A bad higher-precedence pair is an error, not a reason to fall through to the next source.
    f.vars = {{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}};
    CHECK_THROWS_WITH(detect_cluster_position(f.get()), Contains("RANK"));

    // A bad file is an error naming the file's path.
    f.vars.clear();
    f.files[rc_path] = R"({"current_host": "algo-9", "hosts": ["algo-1"]})";
    CHECK_THAT(detect_error(f), Contains(rc_path + ": resourceconfig.json: current_host \"algo-9\" is not among hosts"));
}

TEST_CASE("bad variables are errors that name the variable", "[cluster]")
{
    struct bad_case {
        std::map<std::string, std::string, std::less<>> vars;
        std::string message;
    };
    const std::vector<bad_case> cases{
        {{{"RANK", "1"}}, "the environment variable RANK is set but WORLD_SIZE is not"},
        {{{"WORLD_SIZE", "4"}}, "the environment variable WORLD_SIZE is set but RANK is not"},
        {{{"OMPI_COMM_WORLD_SIZE", "4"}}, "OMPI_COMM_WORLD_SIZE is set but OMPI_COMM_WORLD_RANK is not"},
        {{{"RANK", "4"}, {"WORLD_SIZE", "4"}}, "RANK is 4 but WORLD_SIZE is 4; RANK must be below WORLD_SIZE"},
        {{{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "1"}},
         "OMPI_COMM_WORLD_RANK is 2 but OMPI_COMM_WORLD_SIZE is 1"},
        {{{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "WORLD_SIZE is 0; a cluster has at least 1 host"},
        {{{"RANK", "-1"}, {"WORLD_SIZE", "2"}}, "RANK is \"-1\"; it must be a whole decimal number"},
        {{{"RANK", "+1"}, {"WORLD_SIZE", "2"}}, "RANK is \"+1\""},
        {{{"RANK", " 1"}, {"WORLD_SIZE", "2"}}, "RANK is \" 1\""},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2.0"}}, "WORLD_SIZE is \"2.0\""},
        {{{"RANK", "1"}, {"WORLD_SIZE", "0x10"}}, "WORLD_SIZE is \"0x10\""},
        {{{"RANK", ""}, {"WORLD_SIZE", "2"}}, "RANK is \"\""},
        {{{"RANK", "0"}, {"WORLD_SIZE", "99999999999999999999999"}}, "WORLD_SIZE is \"99999999999999999999999\""},
        {{{"OMPI_COMM_WORLD_RANK", "one"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK is \"one\""},
        {{{"RANK", "1\n"}, {"WORLD_SIZE", "2"}}, "RANK is not printable"},
    };
    for (const auto& c : cases) {
        fake_environment f;
        f.vars = c.vars;
        INFO(c.message);
        CHECK_THAT(detect_error(f), Contains(c.message));
    }
}
