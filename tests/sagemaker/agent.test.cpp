// Tests of sagemaker::agent, the producer side of Pipe mode, against the consumer side through
// real FIFOs: a job of two channels (train: a local S3Prefix of RecordIO-protobuf files,
// ShardedByS3Key over 2 hosts, shuffled; validation: FullyReplicated, Gzip, RecordIO-wrapped)
// streamed for 3 epochs and read with pipe_channel, one epoch left early, every epoch's records
// compared, order included, with a direct read of the same channel (same shard, same shuffle)
// and with the labels open_channel decodes; an augmented manifest's lines as RecordIO records;
// the same over moto_server with s3:// URIs; stop(); and what must be refused (a bad channel
// name, a FIFO path that escapes the data directory, channels that cannot be streamed, a
// missing bucket).
#include <pipemode/sagemaker/agent.hpp>

#include <pipemode/framing/recordio.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>
#include <pipemode/sagemaker/channel_reader.hpp>
#include <pipemode/sagemaker/pipe_channel.hpp>

#include "reader_helpers.hpp"
#include "record_encode.hpp"
#include "source_helpers.hpp"
#include "test_servers.hpp"

#include "record.pb.h"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <fcntl.h>
#include <unistd.h>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;
using namespace pipemode::sagemaker;
using namespace std::chrono_literals;
using pipemode::test::payloads_of;
using pipemode::test::temp_dir;
namespace fs = std::filesystem;

namespace {

const std::string magic_str("\x0a\x23\xd7\xce", 4);

std::string gzip(const std::string& text)
{
    z_stream z{};
    REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, text.size()) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    z.avail_in = static_cast<uInt>(text.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

void write_text(const fs::path& p, const std::string& text)
{
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    REQUIRE(out.good());
}

std::string read_text(const fs::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `files` RecordIO-protobuf files of `records` records each (a dense float vector of `dim`
// values and a label), about records * (dim * 4 + 30) bytes each.
void make_protobuf_files(const fs::path& dir, int files, int records, std::size_t dim, std::uint64_t seed)
{
    fs::create_directories(dir);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    for (int f = 0; f < files; ++f) {
        std::vector<std::byte> file;
        for (int r = 0; r < records; ++r) {
            std::vector<float> x(dim);
            for (auto& v : x)
                v = u(rng);
            const float y = float(f * 100000 + r);
            append_recordio(file, test::encode({tensor_entry::dense(std::span<const float>(x))},
                                               {tensor_entry::dense(std::span<const float>(&y, 1))}));
        }
        test::write_file((dir / ("part-" + std::to_string(f) + ".rec")).string(), file);
    }
}

// Gzip objects of assorted sizes, one larger than the agent's RecordIO window (so its length
// is measured) and holding aligned magic words (so its record is cut into parts).
std::vector<std::string> make_gzip_objects(const fs::path& dir)
{
    fs::create_directories(dir);
    std::vector<std::string> plain;
    std::mt19937_64 rng(11);
    for (std::size_t i = 0; i < 5; ++i) {
        std::string s;
        const std::size_t n = i == 3 ? 300 * 1024 : 1000 * i + 3;
        for (std::size_t j = 0; j < n; ++j)
            s += static_cast<char>('a' + rng() % 26);
        if (i == 3)
            for (std::size_t at : {0, 4096, 4100, 250 * 1024})
                s.replace(at, 4, magic_str);
        if (i == 2)
            s.replace(8, 4, magic_str);
        write_text(dir / ("v-" + std::to_string(i) + ".txt.gz"), gzip(s));
        plain.push_back(s);
    }
    return plain;
}

// Collects the agent's events (network thread) for the test thread.
struct event_log {
    std::mutex mutex;
    std::vector<agent_event> events;

    std::function<void(const agent_event&)> callback()
    {
        return [this](const agent_event& e) {
            const std::lock_guard lock(mutex);
            events.push_back(e);
        };
    }

    std::size_t count(const std::string& channel, agent_event_kind kind)
    {
        const std::lock_guard lock(mutex);
        return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), [&](const agent_event& e) {
            return e.channel == channel && e.kind == kind;
        }));
    }
};

// Runs an agent on its own thread; joins it (stopping it first if still running).
class agent_thread {
public:
    explicit agent_thread(agent& a) : agent_(a), thread_([this] {
        try {
            agent_.run();
        } catch (...) {
            error_ = std::current_exception();
        }
        done_ = true;
    })
    {
    }

    ~agent_thread()
    {
        if (thread_.joinable()) {
            agent_.stop();
            thread_.join();
        }
    }

    /// Waits for run() to return (at most `limit`); rethrows its exception.
    void join(std::chrono::seconds limit = 60s)
    {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done_ && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        if (!done_) {
            agent_.stop();
            thread_.join();
            FAIL("the agent did not finish in time");
        }
        thread_.join();
        if (error_)
            std::rethrow_exception(error_);
    }

private:
    agent& agent_;
    std::exception_ptr error_;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

reader_options raw_reader(std::size_t memory_budget = 4 * mib)
{
    reader_options r;
    r.format = data_format::recordio;
    r.batch_size = 16;
    r.read_size = 64 * kib;
    r.max_record_size = 1 * mib;
    r.memory_budget = memory_budget;
    r.prefetch_batches = 1;
    return r;
}

pipe_channel_options consumer(const fs::path& data_dir)
{
    pipe_channel_options o;
    o.data_dir = data_dir;
    o.wait.appear_timeout = 30s;
    o.wait.writer_timeout = 30s;
    o.reader = raw_reader();
    return o;
}

// Every epoch's payloads of a direct read of `channel`, as `rank` of `world` (open_channel's
// pieces, with raw RecordIO payloads for a RecordIO-protobuf channel, so bytes compare exactly).
std::vector<std::vector<std::string>> direct_read(const channel_config& channel, std::size_t rank, std::size_t world,
                                                  std::uint64_t epochs, const s3::s3_options& s3 = {})
{
    channel_read_options o;
    o.cluster = {.rank = rank, .world_size = world};
    o.epochs = epochs;
    o.s3 = s3;
    o.reader = raw_reader(64 * mib);
    std::vector<std::vector<std::string>> out(epochs);
    if (channel.record_wrapper == record_wrapper::recordio) {
        auto r = open_channel(channel, o);  // whole objects: each one record
        for (auto& b : r)
            for (std::size_t i = 0; i < b.size(); ++i) {
                const auto x = b.feature("payload").item(i, 0);
                out[b.epoch()].emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
            }
        return out;
    }
    data_set_reader r(channel_store(channel, s3, o.reader.read_size), channel_data_set_options(channel, o), o.reader);
    for (auto& b : r)
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto x = b.feature("payload").item(i, 0);
            out[b.epoch()].emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
        }
    return out;
}

/// An object store that counts the objects read from it (what the network would carry).
class counting_store final : public object_store {
public:
    counting_store(std::unique_ptr<object_store> inner, std::shared_ptr<std::atomic<std::uint64_t>> reads)
        : inner_(std::move(inner)), reads_(std::move(reads))
    {
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override { return inner_->async_list(ctx); }
    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        *reads_ += reads.size();
        return inner_->open(std::move(reads));
    }
    std::string describe() const override { return "counting " + inner_->describe(); }
    std::size_t reserve_buffers(const reader_options& o) override { return inner_->reserve_buffers(o); }

private:
    std::unique_ptr<object_store> inner_;
    std::shared_ptr<std::atomic<std::uint64_t>> reads_;
};

/// Agent options whose stores count the objects they read into `reads`.
agent_options counted(agent_options o, std::shared_ptr<std::atomic<std::uint64_t>> reads)
{
    o.wrap_store = [reads](const channel_config&, std::unique_ptr<object_store> inner) -> std::unique_ptr<object_store> {
        return std::make_unique<counting_store>(std::move(inner), reads);
    };
    return o;
}

/// Every byte of the FIFO at `path`, once it appears (within 30 s), to its end of file.
std::string read_fifo(const fs::path& path)
{
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!fs::exists(path) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    REQUIRE(fs::is_fifo(path));
    return read_text(path);
}

/// The FIFO bytes of `epochs` epochs of the single channel "train", read by one consumer.
std::vector<std::string> fifo_epochs(const std::vector<channel_config>& channels, const agent_options& o,
                                     std::uint64_t epochs)
{
    agent a(channels, o);
    agent_thread running(a);
    std::vector<std::string> out;
    for (std::uint64_t e = 0; e < epochs; ++e)
        out.push_back(read_fifo(pipe_path(o.data_dir, "train", e)));
    running.join();
    return out;
}

/// Reads the FIFO at `path` once it appears, `piece` bytes at a time with `pause` after each,
/// and closes it after `limit` bytes (or at its end).
std::string read_fifo_slowly(const fs::path& path, std::size_t piece, std::chrono::microseconds pause,
                             std::size_t limit = SIZE_MAX)
{
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!fs::exists(path) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    std::string out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "cannot open " + path.string();
    std::string buffer(piece, '\0');
    while (out.size() < limit) {
        const auto n = ::read(fd, buffer.data(), std::min(piece, limit - out.size()));
        if (n <= 0)
            break;
        out.append(buffer.data(), static_cast<std::size_t>(n));
        if (pause.count() > 0)
            std::this_thread::sleep_for(pause);
    }
    ::close(fd);
    return out;
}

} // namespace

TEST_CASE("agent: a replicated channel to 3 consumers from one download, each the single-consumer bytes, one slow")
{
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 6, 200, 1000, 5);  // ~0.8 MB each, above the pipes' 1 MiB together
    const std::vector<channel_config> channels{{.name = "train", .uri = (root / "train").string(), .shuffle_seed = 9}};
    agent_options o;
    o.data_dir = root / "data";
    o.config_dir = root / "config";
    o.epochs = 2;
    fs::create_directories(o.data_dir);
    const auto want = fifo_epochs(channels, o, 2);
    REQUIRE(want[0].size() > 4 * mib);
    CHECK(want[0] != want[1]);

    event_log log;
    agent_options fan = o;
    fan.consumers = 3;
    fan.on_event = log.callback();
    const auto reads = std::make_shared<std::atomic<std::uint64_t>>(0);
    agent a(channels, counted(fan, reads));
    a.write_config_files();
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(fs::is_directory(o.data_dir / ("consumer-" + std::to_string(i))));
    std::vector<std::vector<std::string>> got(3, std::vector<std::string>(2));
    {
        agent_thread running(a);
        std::vector<std::thread> consumers;
        for (std::size_t i = 0; i < 3; ++i)
            consumers.emplace_back([&, i] {
                for (std::uint64_t e = 0; e < 2; ++e) {
                    const fs::path fifo = pipe_path(consumer_data_dir(o.data_dir, i, 3), "train", e);
                    // Consumer 2 is slow: the others wait for it, nothing is dropped.
                    got[i][e] = i == 2 ? read_fifo_slowly(fifo, 64 * kib, 2ms) : read_fifo_slowly(fifo, 1 * mib, 0us);
                }
            });
        for (auto& t : consumers)
            t.join();
        running.join();
    }
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        CHECK(got[i][0] == want[0]);
        CHECK(got[i][1] == want[1]);
    }
    CHECK(reads->load() == 2 * 6);  // each object once per epoch, for all three consumers
    CHECK(log.count("train", agent_event_kind::epoch_done) == 2 * 3);
    CHECK(log.count("train", agent_event_kind::reader_closed) == 0);
    CHECK(a.progress().at(0).total_bytes == 3 * (want[0].size() + want[1].size()));
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(fs::is_empty(consumer_data_dir(o.data_dir, i, 3)));
}

TEST_CASE("agent: a consumer that closes its FIFO early leaves the epoch, the other consumers get it whole")
{
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 6, 200, 1000, 6);
    const std::vector<channel_config> channels{{.name = "train", .uri = (root / "train").string(), .shuffle_seed = 4}};
    agent_options o;
    o.data_dir = root / "data";
    o.config_dir = root / "config";
    o.epochs = 2;
    fs::create_directories(o.data_dir);
    const auto want = fifo_epochs(channels, o, 2);
    REQUIRE(want[0].size() > 4 * mib);

    event_log log;
    agent_options fan = o;
    fan.consumers = 3;
    fan.on_event = log.callback();
    agent a(channels, fan);
    a.write_config_files();
    std::vector<std::vector<std::string>> got(3, std::vector<std::string>(2));
    {
        agent_thread running(a);
        std::vector<std::thread> consumers;
        for (std::size_t i = 0; i < 3; ++i)
            consumers.emplace_back([&, i] {
                for (std::uint64_t e = 0; e < 2; ++e) {
                    const fs::path fifo = pipe_path(consumer_data_dir(o.data_dir, i, 3), "train", e);
                    // Consumer 1 leaves epoch 0 after 100 kB, and reads epoch 1 whole.
                    const std::size_t limit = i == 1 && e == 0 ? 100000 : SIZE_MAX;
                    got[i][e] = read_fifo_slowly(fifo, 64 * kib, 0us, limit);
                }
            });
        for (auto& t : consumers)
            t.join();
        running.join();
    }
    CHECK(got[1][0] == want[0].substr(0, 100000));
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        if (i != 1)
            CHECK(got[i][0] == want[0]);
        CHECK(got[i][1] == want[1]);
    }
    CHECK(log.count("train", agent_event_kind::reader_closed) == 1);
    CHECK(log.count("train", agent_event_kind::epoch_done) == 2 * 3 - 1);
    {
        const std::lock_guard lock(log.mutex);
        for (const auto& e : log.events)
            if (e.kind == agent_event_kind::reader_closed) {
                CHECK(e.consumer == 1);
                CHECK(e.epoch == 0);
            }
    }
}

TEST_CASE("agent: a sharded channel over 2 hosts x 2 consumers deals every record to exactly one consumer")
{
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 9, 30, 20, 8);
    const channel_config train{.name = "train", .uri = (root / "train").string(),
                               .distribution = distribution::sharded_by_s3_key, .shuffle_seed = 2};
    const auto all = direct_read(train, 0, 1, 2);
    REQUIRE(all[0].size() == 9 * 30);

    std::vector<std::unique_ptr<agent>> hosts;
    for (std::size_t rank = 0; rank < 2; ++rank) {
        agent_options o;
        o.data_dir = root / ("host-" + std::to_string(rank)) / "data";
        o.config_dir = root / ("host-" + std::to_string(rank)) / "config";
        o.epochs = 2;
        o.consumers = 2;
        o.cluster = {.rank = rank, .world_size = 2};
        hosts.push_back(std::make_unique<agent>(std::vector<channel_config>{train}, o));
        hosts.back()->write_config_files();
    }
    std::vector<std::vector<std::vector<std::string>>> got(4);  // [rank * 2 + consumer][epoch]
    {
        agent_thread host0(*hosts[0]);
        agent_thread host1(*hosts[1]);
        std::vector<std::thread> readers;
        for (std::size_t rank = 0; rank < 2; ++rank)
            for (std::size_t c = 0; c < 2; ++c)
                readers.emplace_back([&, rank, c] {
                    pipe_channel ch("train", consumer(consumer_data_dir(root / ("host-" + std::to_string(rank)) / "data", c, 2)));
                    for (std::uint64_t e = 0; e < 2; ++e) {
                        auto r = ch.open_epoch(e);
                        got[rank * 2 + c].push_back(payloads_of(r));
                    }
                });
        for (auto& t : readers)
            t.join();
        host0.join();
        host1.join();
    }
    for (std::uint64_t e = 0; e < 2; ++e) {
        std::multiset<std::string> united;
        for (std::size_t k = 0; k < 4; ++k) {
            CAPTURE(k);
            REQUIRE(got[k].size() == 2);
            CHECK_FALSE(got[k][e].empty());  // 9 objects over 4 consumers: each has some
            united.insert(got[k][e].begin(), got[k][e].end());
        }
        // Every record exactly once (a multiset equal to the data set's: disjoint and complete).
        CHECK(united == std::multiset<std::string>(all[e].begin(), all[e].end()));
        // Each consumer's share is what a direct read as rank*2+c of 4 gives, order included.
        for (std::size_t k = 0; k < 4; ++k)
            CHECK(got[k][e] == direct_read(train, k, 4, 2)[e]);
    }
}

TEST_CASE("agent: with a cache, epoch 2 reads every object from the cache and the FIFO bytes are unchanged")
{
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 6, 40, 50, 7);
    const auto plain = make_gzip_objects(root / "gz");
    for (const bool gzipped : {false, true}) {
        CAPTURE(gzipped);
        const std::vector<channel_config> channels{
            gzipped ? channel_config{.name = "train", .uri = (root / "gz").string(), .compression = compression::gzip,
                                     .record_wrapper = record_wrapper::recordio, .shuffle_seed = 3}
                    : channel_config{.name = "train", .uri = (root / "train").string(), .shuffle_seed = 3}};
        const std::uint64_t objects = gzipped ? plain.size() : 6;
        agent_options o;
        o.data_dir = root / "data";
        o.config_dir = root / "config";
        o.epochs = 2;
        o.recordio_window = 64 * kib;
        fs::create_directories(o.data_dir);

        const auto uncached_reads = std::make_shared<std::atomic<std::uint64_t>>(0);
        const auto want = fifo_epochs(channels, counted(o, uncached_reads), 2);
        CHECK(uncached_reads->load() >= 2 * objects);
        REQUIRE(want[0].size() > 1000);
        CHECK(want[0] != want[1]);  // reshuffled

        agent_options with_cache = o;
        with_cache.cache = cache::cache_options{.directory = (root / (gzipped ? "cache-gz" : "cache")).string(),
                                                .budget_bytes = 64 * mib};
        const auto reads = std::make_shared<std::atomic<std::uint64_t>>(0);
        const auto got = fifo_epochs(channels, counted(with_cache, reads), 2);
        CHECK(got == want);
        // Each object once from the inner store (the measuring of a gzip object longer than the
        // window reads the cache too, once the first epoch committed it): epoch 2 from the cache.
        CHECK(reads->load() <= objects + (gzipped ? 1 : 0));
        CHECK(reads->load() >= objects);

        // A restarted agent over the same directory reads nothing from the inner store.
        const auto restarted = std::make_shared<std::atomic<std::uint64_t>>(0);
        CHECK(fifo_epochs(channels, counted(with_cache, restarted), 2) == want);
        CHECK(restarted->load() == 0);
    }
}

TEST_CASE("agent: two channels over 3 epochs through real FIFOs, one epoch left early, equal to a direct read")
{
    temp_dir dir;
    const fs::path root = dir.path();
    const fs::path data_dir = root / "input" / "data";
    const fs::path config_dir = root / "input" / "config";
    make_protobuf_files(root / "train", 8, 300, 1000, 3);  // ~1.2 MB each
    const auto plain = make_gzip_objects(root / "validation");

    const std::string job = R"({
        "TrainingJobName": "agent-test",
        "AlgorithmSpecification": {"TrainingImage": "pca:latest", "TrainingInputMode": "Pipe"},
        "InputDataConfig": [
            {"ChannelName": "train",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "file://)"
                            + (root / "train").string() + R"(/",
                                             "S3DataDistributionType": "ShardedByS3Key"}},
             "ContentType": "application/x-recordio-protobuf", "CompressionType": "None",
             "RecordWrapperType": "None", "ShuffleConfig": {"Seed": 42}},
            {"ChannelName": "validation",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": ")"
                            + (root / "validation").string() + R"(",
                                             "S3DataDistributionType": "FullyReplicated"}},
             "ContentType": "text/plain", "CompressionType": "Gzip", "RecordWrapperType": "RecordIO"}
        ]})";
    const auto channels = parse_input_data_config(job);
    REQUIRE(channels.size() == 2);

    event_log log;
    agent_options o;
    o.data_dir = data_dir;
    o.config_dir = config_dir;
    o.epochs = 3;
    o.cluster = {.rank = 1, .world_size = 2, .hosts = {"algo-1", "algo-2"}, .current_host = "algo-2"};
    o.recordio_window = 64 * kib;  // below validation object 3's 300 KiB
    o.on_event = log.callback();
    agent a(channels, o);
    a.write_config_files();

    // What the container sees.
    const auto container = parse_input_data_config(read_text(config_dir / "inputdataconfig.json"));
    REQUIRE(container.size() == 2);
    CHECK(container[0].name == "train");
    CHECK(container[0].distribution == distribution::sharded_by_s3_key);
    CHECK(container[0].shuffle_seed == std::optional<std::uint64_t>(42));
    CHECK(container[1].compression == compression::gzip);
    CHECK(container[1].record_wrapper == record_wrapper::recordio);
    const auto position = parse_resource_config(read_text(config_dir / "resourceconfig.json"));
    CHECK(position.rank == 1);
    CHECK(position.world_size == 2);

    const auto want_train = direct_read(channels[0], 1, 2, 3);
    const auto want_validation = direct_read(channels[1], 1, 2, 3);
    for (const auto& e : want_validation)
        CHECK(std::multiset<std::string>(e.begin(), e.end()) == std::multiset<std::string>(plain.begin(), plain.end()));
    REQUIRE(want_train[0].size() == 4 * 300);  // half of the 8 objects
    CHECK(want_train[0] != want_train[1]);     // reshuffled every epoch

    std::vector<std::vector<std::string>> got_train(3), got_validation(3);
    {
        agent_thread running(a);
        pipe_channel train("train", consumer(data_dir));
        pipe_channel validation("validation", consumer(data_dir));
        for (std::uint64_t e = 0; e < 3; ++e) {
            // Validation first, then train: the agent streams both at once, whatever the order.
            auto v = validation.open_epoch(e);
            got_validation[e] = payloads_of(v);
            auto t = train.open_epoch(e);
            if (e == 1) {
                // Leave epoch 1 after its first batch: the agent moves on to epoch 2.
                auto b = t.next();
                REQUIRE(b);
                for (std::size_t i = 0; i < b->size(); ++i) {
                    const auto x = b->feature("payload").item(i, 0);
                    got_train[e].emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
                }
                continue;
            }
            got_train[e] = payloads_of(t);
        }
        running.join();
    }
    CHECK(got_train[0] == want_train[0]);
    CHECK(got_train[2] == want_train[2]);
    REQUIRE(got_train[1].size() == 16);
    CHECK(std::equal(got_train[1].begin(), got_train[1].end(), want_train[1].begin()));
    for (std::uint64_t e = 0; e < 3; ++e)
        CHECK(got_validation[e] == want_validation[e]);

    // And what open_channel itself decodes (labels, in order) is what the FIFO carried.
    {
        channel_read_options ro;
        ro.cluster = {.rank = 1, .world_size = 2};
        ro.epochs = 3;
        ro.reader.batch_size = 64;
        auto r = open_channel(channels[0], ro);
        std::vector<std::vector<float>> labels(3);
        for (auto& b : r)
            for (float y : b.label("values").values<float>())
                labels[b.epoch()].push_back(y);
        for (std::uint64_t e : {0, 2}) {
            std::vector<float> through_fifo;
            for (const auto& payload : got_train[e]) {
                aialgs::data::Record record;
                REQUIRE(record.ParseFromString(payload));
                through_fifo.push_back(record.label().at("values").float32_tensor().values(0));
            }
            CHECK(through_fifo == labels[e]);
        }
    }

    CHECK(log.count("train", agent_event_kind::reader_closed) == 1);
    CHECK(log.count("train", agent_event_kind::epoch_done) == 2);
    CHECK(log.count("validation", agent_event_kind::epoch_done) == 3);
    CHECK(log.count("train", agent_event_kind::finished) == 1);
    // Every FIFO is gone.
    CHECK(fs::is_empty(data_dir));
    const auto p = a.progress();
    REQUIRE(p.size() == 2);
    CHECK(p[0].done);
    CHECK(p[1].total_bytes > 3 * 300 * 1024);
}

TEST_CASE("agent: refuses a bad channel name, a FIFO path that escapes the data directory, and channels it cannot stream")
{
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 1, 3, 4, 1);
    const channel_config train{.name = "train", .uri = (root / "train").string()};
    agent_options o;
    o.data_dir = root / "data";
    o.config_dir = root / "config";

    // A channel name is part of a path: one that could leave the data directory is refused,
    // in the JSON and in C++.
    CHECK_THROWS_WITH(parse_input_data_config(R"([{"ChannelName": "../etc", "DataSource": {"S3DataSource":
                          {"S3DataType": "S3Prefix", "S3Uri": "s3://b/p/"}}}])"),
                      Catch::Contains("../etc"));
    CHECK_THROWS_AS(agent({channel_config{.name = "../etc", .uri = "/tmp"}}, o), std::invalid_argument);
    CHECK_THROWS_WITH(agent({train}, o, {"trian"}), Catch::Contains("no channel 'trian'") && Catch::Contains("train"));
    CHECK_THROWS_WITH(agent({channel_config{.name = "t", .uri = "/x", .mode = input_mode::file}}, o),
                      Catch::Contains("InputMode File"));
    agent_options ranges = o;
    ranges.sharded_mode = shard_mode::by_byte_range;
    CHECK_THROWS_WITH(agent({channel_config{.name = "t", .uri = "/x", .distribution = distribution::sharded_by_s3_key}}, ranges),
                      Catch::Contains("byte range"));
    CHECK_THROWS_WITH(agent({channel_config{.name = "e", .uri = ""}}, o), Catch::Contains("S3Uri is empty"));
    CHECK_THROWS_WITH(agent({channel_config{.name = "m", .data_type = s3_data_type::augmented_manifest_file, .uri = "s3://b/m"}}, o),
                      Catch::Contains("AttributeNames"));
    CHECK_FALSE(fs::exists(o.data_dir));  // nothing created by a refused configuration

    // The FIFO's path is a symbolic link to a file outside the data directory: refused, the
    // file untouched.
    fs::create_directories(o.data_dir);
    write_text(root / "outside", "keep me");
    fs::create_symlink(root / "outside", o.data_dir / "train_0");
    agent a({train}, o);
    CHECK_THROWS_WITH(a.run(), Catch::Contains("channel 'train', epoch 0") && Catch::Contains("symbolic link"));
    CHECK(read_text(root / "outside") == "keep me");
    // A data directory that is itself a link elsewhere is followed (canonical), but the FIFO
    // stays inside it; a channel cannot name a path outside it at all (pipe_path).
    CHECK_THROWS_AS(pipe_path(o.data_dir, "../train", 0), std::invalid_argument);
}

TEST_CASE("agent: an AugmentedManifestFile channel delivers each line's attributes as RecordIO records, shuffled by line")
{
    temp_dir dir;
    const fs::path root = dir.path();
    std::string manifest;
    for (int i = 0; i < 6; ++i) {
        const std::string image = "image " + std::to_string(i) + std::string(std::size_t(i) * 1000, '#');
        write_text(root / ("img-" + std::to_string(i) + ".bin"), image);
        manifest += R"({"source-ref": ")" + (root / ("img-" + std::to_string(i) + ".bin")).string() + R"(", "class": )"
            + std::to_string(i % 3) + "}\n";
    }
    write_text(root / "train.manifest", manifest);
    const auto channels = parse_input_data_config(R"([{"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "AugmentedManifestFile", "S3Uri": ")" + (root / "train.manifest").string() + R"(",
        "AttributeNames": ["source-ref", "class"]}}, "RecordWrapperType": "RecordIO", "ShuffleConfig": {"Seed": 3},
        "InputMode": "Pipe"}])");
    REQUIRE(channels.size() == 1);

    // The direct read gives one row per line with a feature per attribute; through the FIFO the
    // same bytes come as one RecordIO record per attribute, in the same line order.
    std::vector<std::vector<std::string>> want(2);
    {
        channel_read_options ro;
        ro.epochs = 2;
        ro.reader = raw_reader(256 * mib);  // the store fetches ahead within 64 MiB
        ro.reader.attribute_names = {"source-ref", "class"};
        auto r = open_channel(channels[0], ro);
        for (auto& b : r)
            for (std::size_t i = 0; i < b.size(); ++i)
                for (const char* attribute : {"source-ref", "class"}) {
                    const auto x = b.feature(attribute).item(i, 0);
                    want[b.epoch()].emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
                }
    }
    REQUIRE(want[0].size() == 12);
    CHECK(want[0] != want[1]);  // lines reshuffled

    agent_options o;
    o.data_dir = root / "data";
    o.config_dir = root / "config";
    o.epochs = 2;
    agent a(channels, o);
    a.write_config_files();
    agent_thread running(a);
    pipe_channel train("train", consumer(o.data_dir));
    for (std::uint64_t e = 0; e < 2; ++e) {
        auto r = train.open_epoch(e);
        CHECK(payloads_of(r) == want[e]);
    }
    running.join();
}

TEST_CASE("agent: stop() while waiting for a reader returns and removes the FIFOs")
{
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 2, 3, 4, 1);
    agent_options o;
    o.data_dir = root / "data";
    o.config_dir = root / "config";
    agent a({channel_config{.name = "train", .uri = (root / "train").string()},
             channel_config{.name = "test", .uri = (root / "train").string()}},
            o);
    a.write_config_files();
    agent_thread running(a);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!(fs::exists(o.data_dir / "train_0") && fs::exists(o.data_dir / "test_0"))
           && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    CHECK(fs::is_fifo(o.data_dir / "train_0"));
    CHECK(fs::is_fifo(o.data_dir / "test_0"));
    a.stop();
    running.join(10s);
    CHECK(a.stopped());
    CHECK(fs::is_empty(o.data_dir));
}

TEST_CASE("agent: s3:// channels through moto_server, and an S3 error names the bucket and its code")
{
    test::moto_server moto;
    moto.create_bucket("agent-data");
    temp_dir dir;
    const fs::path root = dir.path();
    make_protobuf_files(root / "train", 3, 50, 20, 9);
    for (int f = 0; f < 3; ++f)
        moto.upload("agent-data", "train/part-" + std::to_string(f) + ".rec", root / "train" / ("part-" + std::to_string(f) + ".rec"));
    moto.upload_bytes("agent-data", "wrapped/a.gz", test::bytes_of(gzip(std::string(100000, 'z') + magic_str)));
    moto.upload_bytes("agent-data", "wrapped/b.gz", test::bytes_of(gzip("b")));

    s3::s3_options s3;
    s3.endpoint_url = moto.endpoint();
    s3.region = "us-east-1";
    s3.credentials = s3::aws_credentials{"AKIDPIPEMODETEST", "pipemode-test-secret", ""};
    const std::vector<channel_config> channels{
        {.name = "train", .uri = "s3://agent-data/train/", .shuffle_seed = 5},
        {.name = "wrapped", .uri = "s3://agent-data/wrapped/", .compression = compression::gzip,
         .record_wrapper = record_wrapper::recordio}};
    agent_options o;
    o.data_dir = root / "data";
    o.config_dir = root / "config";
    o.epochs = 2;
    o.s3 = s3;
    o.recordio_window = 4 * kib;
    agent a(channels, o);
    a.write_config_files();
    const auto want_train = direct_read(channels[0], 0, 1, 2, s3);
    const auto want_wrapped = direct_read(channels[1], 0, 1, 2, s3);
    REQUIRE(want_train[0].size() == 150);
    REQUIRE(want_wrapped[0].size() == 2);
    {
        agent_thread running(a);
        pipe_channel train("train", consumer(o.data_dir));
        pipe_channel wrapped("wrapped", consumer(o.data_dir));
        for (std::uint64_t e = 0; e < 2; ++e) {
            auto t = train.open_epoch(e);
            CHECK(payloads_of(t) == want_train[e]);
            auto w = wrapped.open_epoch(e);
            CHECK(payloads_of(w) == want_wrapped[e]);
        }
        running.join();
    }

    agent missing({channel_config{.name = "train", .uri = "s3://no-such-bucket-here/train/"}}, o);
    CHECK_THROWS_WITH(missing.run(), Catch::Contains("channel 'train'") && Catch::Contains("no-such-bucket-here")
                                         && Catch::Contains("NoSuchBucket"));
}
