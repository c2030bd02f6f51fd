// Tests of the consumer side of Pipe mode (sagemaker::pipe_channel, pipe_channel_epoch,
// pipe_path) against real FIFOs fed by sagemaker::fifo_writer on an agent thread: whole epochs
// read in order, an epoch left early (the writer moves on), and the diagnosis of a channel that
// is not there (listing the channels that are, failing fast when the configuration rules it
// out). Every wait is bounded by short timeouts.
#include <pipemode/framing/recordio.hpp>
#include <pipemode/sagemaker/fifo_writer.hpp>
#include <pipemode/sagemaker/pipe_channel.hpp>

#include "reader_helpers.hpp"
#include "record_encode.hpp"
#include "record_gen.hpp"
#include "run_coro.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <sys/stat.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

// This file's names stay its own: the files of tests/sagemaker/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace pipe_channel_test {

using namespace pipemode;
using namespace pipemode::sagemaker;
using namespace std::chrono_literals;
using pipemode::test::error_from;
using pipemode::test::temp_dir;
namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;
using epoch_bytes = std::vector<std::vector<std::byte>>;

/// A container's /opt/ml/input: data/ for the FIFOs, config/ for inputdataconfig.json.
struct container {
    temp_dir root;
    fs::path data = root.path() / "data";
    container() { fs::create_directories(data); }

    void fifo(const std::string& name) const { REQUIRE(::mkfifo((data / name).c_str(), 0600) == 0); }

    void config(const std::string& json) const
    {
        fs::create_directories(root.path() / "config");
        std::ofstream(root.path() / "config" / "inputdataconfig.json") << json;
    }
};

/// pipemode-agent's part: streams each epoch into `<channel>_<e>` with fifo_writer, in pieces
/// of `piece` bytes, on its own thread and io_context; records how each epoch's writing ended.
class agent {
public:
    agent(fs::path data_dir, std::string channel, const epoch_bytes& epochs, std::size_t piece = 64 * kib)
        : thread_([this, data_dir, channel, &epochs, piece] {
            try {
                outcomes_ = test::run_coro(stream(data_dir, channel, &epochs, piece), std::chrono::seconds(60));
            } catch (...) {
                error_ = std::current_exception();
            }
        })
    {
    }

    ~agent()
    {
        if (thread_.joinable())
            thread_.join();
    }

    /// Waits for the agent to finish; rethrows its failure.
    std::vector<write_status> join()
    {
        thread_.join();
        if (error_)
            std::rethrow_exception(error_);
        return outcomes_;
    }

private:
    static asio::awaitable<std::vector<write_status>> stream(fs::path dir, std::string channel,
                                                             const epoch_bytes* epochs, std::size_t piece)
    {
        const auto ex = co_await asio::this_coro::executor;
        std::vector<write_status> out;
        for (std::size_t e = 0; e < epochs->size(); ++e) {
            const fifo_writer_options options{.reader_timeout = std::chrono::seconds(20)};
            fifo_writer w(ex, dir, pipe_path(dir, channel, e), options);
            if (auto ec = co_await w.async_wait_for_reader())
                throw boost::system::system_error(ec, "agent: epoch " + std::to_string(e));
            const auto& bytes = (*epochs)[e];
            auto status = write_status::written;
            for (std::size_t at = 0; at < bytes.size() && status == write_status::written; at += piece) {
                const auto r = co_await w.async_write(std::span(bytes).subspan(at, std::min(piece, bytes.size() - at)));
                if (r.status == write_status::failed)
                    throw boost::system::system_error(r.error, "agent: epoch " + std::to_string(e));
                status = r.status;
            }
            w.close();
            out.push_back(status);
        }
        co_return out;
    }

    std::vector<write_status> outcomes_;
    std::exception_ptr error_;
    std::thread thread_;
};

constexpr std::size_t dim = 4;

/// One decoded record: its features and its label.
struct row {
    std::vector<float> x;
    float y = 0;
    bool operator==(const row&) const = default;
};

/// Epoch `e` as RecordIO-protobuf: `rows` records of `dim` float32 features and a label, every
/// value distinct across epochs and rows; and the rows a correct read yields.
std::pair<std::vector<std::byte>, std::vector<row>> make_epoch(std::size_t e, std::size_t rows)
{
    std::vector<std::byte> out;
    std::vector<row> expected;
    for (std::size_t r = 0; r < rows; ++r) {
        row want;
        for (std::size_t j = 0; j < dim; ++j)
            want.x.push_back(static_cast<float>(e * 1'000'000 + r * 10 + j));
        want.y = static_cast<float>(e * 1000 + r % 7);
        const auto payload = test::encode({tensor_entry::dense(std::span<const float>(want.x))},
                                          {tensor_entry::dense(std::span<const float>(&want.y, 1))});
        append_recordio(out, payload);
        expected.push_back(std::move(want));
    }
    return {std::move(out), std::move(expected)};
}

/// Every row a reader delivers, decoded.
std::vector<row> rows_of(reader& r)
{
    std::vector<row> out;
    for (auto& b : r) {
        const auto& x = b.feature("values");
        const auto& y = b.label("values");
        REQUIRE(x.row_size() == dim);
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto xs = x.row<float>(i);
            out.push_back({std::vector<float>(xs.begin(), xs.end()), y.values<float>()[i]});
        }
    }
    return out;
}

/// The time `f` takes to throw its data_error, and the error.
template <class F>
std::pair<clock_type::duration, data_error> timed_error(F&& f)
{
    const auto start = clock_type::now();
    auto e = error_from(f);
    return {clock_type::now() - start, std::move(e)};
}

} // namespace

TEST_CASE("pipe_channel: pipe_path and channel names")
{
    CHECK(pipe_path("/opt/ml/input/data", "train", 0) == fs::path("/opt/ml/input/data/train_0"));
    CHECK(pipe_path(fs::path(default_data_dir), "validation", 12) == fs::path("/opt/ml/input/data/validation_12"));
    CHECK(pipe_path("d", "a.b-c_D9", 18446744073709551615ull) == fs::path("d/a.b-c_D9_18446744073709551615"));
    CHECK(pipe_path("d", std::string(64, 'x'), 1).filename() == std::string(64, 'x') + "_1");
    const std::vector<std::string> bad_names{"", ".", "..", "a/b", "../train", "tr ain", "train\n", std::string(65, 'x'),
                                             "tr\xc3\xa4in"};
    for (const auto& bad : bad_names)
        CHECK_THROWS_WITH(pipe_path("d", bad, 0), Catch::Contains("channel name"));
    CHECK_THROWS_AS(pipe_channel("a/b"), std::invalid_argument);
    CHECK_THROWS_AS(pipe_channel("train", {.wait = {.poll_interval = 0ms}}), std::invalid_argument);
    CHECK(pipe_channel("train", {.data_dir = "/x"}).path(3) == fs::path("/x/train_3"));
}

TEST_CASE("pipe_channel: three epochs arrive whole, in order, each from its own FIFO")
{
    container c;
    // Another channel's FIFO and a configuration listing both: the grace must not fail an epoch
    // whose FIFO the agent creates only after the previous one has been read.
    c.fifo("validation_0");
    c.config(R"({"train": {"TrainingInputMode": "Pipe"}, "validation": {"TrainingInputMode": "Pipe"}})");
    epoch_bytes bytes;
    std::vector<std::vector<row>> expected;
    for (std::size_t e = 0; e < 3; ++e) {
        auto [b, rows] = make_epoch(e, e == 1 ? 1 : 700 + 300 * e);
        bytes.push_back(std::move(b));
        expected.push_back(std::move(rows));
    }
    // Small irregular pieces: records straddle writes.
    agent producer(c.data, "train", bytes, 1000);

    pipe_channel ch("train", {.data_dir = c.data,
                              .wait = {.appear_timeout = 20s, .writer_timeout = 20s, .unknown_channel_grace = 50ms},
                              .reader = {.batch_size = 64, .read_size = 4 * kib}});
    for (std::uint64_t e = 0; e < 3; ++e) {
        auto r = ch.open_epoch(e);
        const auto got = rows_of(r);
        REQUIRE(got.size() == expected[e].size());
        CHECK(got == expected[e]);
        CHECK(r.stats().sources == 1);
    }
    const auto outcomes = producer.join();
    CHECK(outcomes == std::vector<write_status>(3, write_status::written));
    // Each FIFO was removed once written: nothing is left to be opened by mistake.
    CHECK(!fs::exists(c.data / "train_0"));
    CHECK(!fs::exists(c.data / "train_2"));
}

TEST_CASE("pipe_channel: pipe_channel_epoch gives a reader one epoch")
{
    container c;
    auto [b, rows] = make_epoch(5, 333);
    const epoch_bytes bytes{std::move(b)};
    agent producer(c.data, "train", bytes);
    reader r(pipe_channel_epoch(c.data, "train", 0, {.appear_timeout = 20s}), {.batch_size = 100});
    CHECK(rows_of(r) == rows);
    CHECK(producer.join() == std::vector<write_status>{write_status::written});
}

TEST_CASE("pipe_channel: an epoch left early lets the writer move on to the next, read whole")
{
    // Random RecordIO-protobuf records (libprotobuf's encoding), delivered as raw payloads so
    // that each is compared byte for byte.
    std::mt19937_64 rng(20261128);
    std::vector<std::vector<std::string>> payloads(2);
    epoch_bytes bytes(2);
    for (std::size_t e = 0; e < 2; ++e) {
        // Epoch 0 is far more than the pipe (1 MiB) and the reader's buffers hold together, so
        // the writer is still writing when the reader leaves.
        const std::size_t target = e == 0 ? 6 * mib : 200 * kib;
        while (bytes[e].size() < target) {
            payloads[e].push_back(test::random_record(rng).SerializeAsString());
            append_recordio(bytes[e], test::bytes_of(payloads[e].back()));
        }
    }
    container c;
    agent producer(c.data, "train", bytes);
    pipe_channel ch("train", {.data_dir = c.data,
                              .wait = {.appear_timeout = 20s},
                              .reader = {.batch_size = 50, .format = data_format::recordio, .prefetch_batches = 2,
                                         .read_size = 64 * kib}});
    {
        auto r = ch.open_epoch(0);
        auto it = r.begin();
        REQUIRE(it != r.end());
        const auto& col = it->feature("payload");
        REQUIRE(it->size() == 50);
        for (std::size_t i = 0; i < it->size(); ++i) {
            const auto item = col.item(i, 0);
            CHECK(std::string(reinterpret_cast<const char*>(item.data()), item.size()) == payloads[0][i]);
        }
    }  // left after the first batch: the reader closes the FIFO
    auto r = ch.open_epoch(1);
    CHECK(test::payloads_of(r) == payloads[1]);
    CHECK(producer.join() == std::vector<write_status>{write_status::reader_closed, write_status::written});
}

TEST_CASE("pipe_channel: a channel the job does not have fails fast, naming the channels it has")
{
    container c;
    c.fifo("train_0");
    c.fifo("validation_0");
    c.fifo("validation_1");
    c.config(R"({"train": {"TrainingInputMode": "Pipe"}, "validation": {"TrainingInputMode": "Pipe"}})");
    pipe_channel ch("trian", {.data_dir = c.data, .wait = {.appear_timeout = 60s, .unknown_channel_grace = 200ms}});
    auto [elapsed, e] = timed_error([&] {
        auto r = ch.open_epoch(0);
        (void)r.next();
    });
    CHECK(elapsed >= 200ms);
    CHECK(elapsed < 5s);  // not the 60 s appear_timeout
    CHECK(e.code() == boost::system::errc::no_such_file_or_directory);
    CHECK(e.where().source == (c.data / "trian_0").string());
    const std::string m = e.what();
    CHECK_THAT(m, Catch::Contains("no FIFO 'trian_0' for channel 'trian' in " + c.data.string()));
    CHECK_THAT(m, Catch::Contains("does not list the channel"));
    CHECK_THAT(m, Catch::Contains("the channels here are: train, validation (did you mean 'train'?)"));
}

TEST_CASE("pipe_channel: without a configuration ruling it out, a missing channel waits out appear_timeout")
{
    container c;
    c.fifo("train_0");
    c.fifo("validation_0");
    const pipe_wait_options wait{.appear_timeout = 600ms, .unknown_channel_grace = 100ms};

    SECTION("no inputdataconfig.json: the FIFOs name the channels")
    {
        auto [elapsed, e] = timed_error([&] {
            reader r(pipe_channel_epoch(c.data, "Train", 0, wait));
            (void)r.next();
        });
        CHECK(elapsed >= 600ms);
        CHECK(elapsed < 5s);
        CHECK(e.code() == errc::timed_out);
        CHECK_THAT(e.what(), Catch::Contains("no FIFO 'Train_0' for channel 'Train' appeared in " + c.data.string()
                                             + " within 600 ms; the channels here are: train, validation (did you "
                                               "mean 'train'?)"));
    }
    SECTION("the configuration lists the channel: it may yet come")
    {
        c.config(R"({"train": {}, "validation": {}, "test": {"TrainingInputMode": "Pipe"}})");
        auto [elapsed, e] = timed_error([&] {
            reader r(pipe_channel_epoch(c.data, "test", 0, wait));
            (void)r.next();
        });
        CHECK(elapsed >= 600ms);
        CHECK(e.code() == errc::timed_out);
        CHECK_THAT(e.what(), Catch::Contains("the channels here are: test, train, validation"));
        CHECK_THAT(e.what(), !Catch::Contains("did you mean"));
    }
    SECTION("a File-mode channel: its data is a directory")
    {
        c.config(R"({"train": {"TrainingInputMode": "File"}, "validation": {"TrainingInputMode": "Pipe"}})");
        auto [elapsed, e] = timed_error([&] {
            reader r(pipe_channel_epoch(c.data, "train", 1, wait));
            (void)r.next();
        });
        CHECK(e.code() == errc::timed_out);
        CHECK_THAT(e.what(), Catch::Contains("TrainingInputMode 'File', so its data is the directory "
                                             + (c.data / "train").string()));
    }
    SECTION("the channel is there, at another epoch")
    {
        c.fifo("train_2");
        auto [elapsed, e] = timed_error([&] {
            reader r(pipe_channel_epoch(c.data, "train", 1, wait));
            (void)r.next();
        });
        CHECK(e.code() == errc::timed_out);
        CHECK_THAT(e.what(), Catch::Contains("channel 'train' has FIFOs here for epochs 0, 2 (epochs count from 0"));
        CHECK_THAT(e.what(), Catch::Contains("the channels here are: train, validation"));
        CHECK_THAT(e.what(), !Catch::Contains("did you mean"));
    }
    SECTION("no channels at all")
    {
        fs::remove(c.data / "train_0");
        fs::remove(c.data / "validation_0");
        auto [elapsed, e] = timed_error([&] {
            reader r(pipe_channel_epoch(c.data, "train", 0, wait));
            (void)r.next();
        });
        CHECK(e.code() == errc::timed_out);
        CHECK_THAT(e.what(), Catch::Contains("there are no channels here"));
    }
}

TEST_CASE("pipe_channel: a missing data directory is named in the error")
{
    temp_dir root;
    const auto missing = root.path() / "data";
    auto [elapsed, e] = timed_error([&] {
        pipe_channel ch("train", {.data_dir = missing, .wait = {.appear_timeout = 300ms, .unknown_channel_grace = 50ms}});
        auto r = ch.open_epoch(0);
        (void)r.next();
    });
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 5s);
    CHECK(e.code() == errc::timed_out);
    CHECK(e.where().source == (missing / "train_0").string());
    CHECK_THAT(e.what(), Catch::Contains("the directory " + missing.string() + " does not exist"));
}

TEST_CASE("pipe_channel: destroying a reader that waits for its FIFO returns promptly")
{
    container c;
    const auto start = clock_type::now();
    {
        pipe_channel ch("train", {.data_dir = c.data});  // the default 5 min wait
        auto r = ch.open_epoch(0);
        std::this_thread::sleep_for(100ms);
    }
    CHECK(clock_type::now() - start < 5s);
}

} // namespace pipe_channel_test
