// Pipelines composed of stages and sinks without a reader: run_pipeline with the callback sink
// and a sink written outside the library, early stops and errors, and the RecordIO writer sink
// read back through the reader.

#include <pipemode/framing/lines.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/pipeline.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sinks/callback_sink.hpp>
#include <pipemode/sinks/descriptor_writer.hpp>
#include <pipemode/sinks/recordio_writer_sink.hpp>
#include <pipemode/sources/memory_source.hpp>

#include "custom_stages.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace pipemode;

namespace {

std::vector<std::byte> bytes_of(std::string_view s)
{
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    return {p, p + s.size()};
}

/// Sources "a", "b", ... over the given texts, read `chunk` bytes at a time.
std::unique_ptr<source_provider> texts(std::vector<std::string> parts, std::size_t chunk = 3)
{
    std::vector<source_maker> makers;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        auto data = std::make_shared<const std::vector<std::byte>>(bytes_of(parts[i]));
        makers.push_back([data, chunk, name = std::string(1, char('a' + i))](const source_context&) {
            return any_byte_source(memory_source(data, name, {.chunk_size = chunk}));
        });
    }
    return source_list(std::move(makers));
}

/// The "length" of every row of `b`.
std::vector<int> lengths_of(const batch& b)
{
    std::vector<int> out;
    const auto values = b.feature(test::length_feature).values<std::int32_t>();
    for (std::size_t r = 0; r < b.size() - b.padding(); ++r)
        out.push_back(values[r]);
    return out;
}

/// A batch sink as a user writes one outside the library: keeps each batch's lengths and
/// position, and whether it was closed.
struct keeping_sink {
    std::shared_ptr<std::vector<std::vector<int>>> batches = std::make_shared<std::vector<std::vector<int>>>();
    std::shared_ptr<std::vector<read_position>> positions = std::make_shared<std::vector<read_position>>();
    std::shared_ptr<int> closed = std::make_shared<int>(0);

    asio::awaitable<bool> async_write(batch b, read_position after)
    {
        batches->push_back(lengths_of(b));
        positions->push_back(after);
        co_return true;
    }
    asio::awaitable<void> async_close()
    {
        ++*closed;
        co_return;
    }
};
static_assert(batch_sink<keeping_sink>);
static_assert(batch_sink<callback_sink<void (*)(batch&)>>);

struct not_a_sink_no_close {
    asio::awaitable<bool> async_write(batch, read_position) { co_return true; }
};
struct not_a_sink_sync_write {
    bool async_write(batch, read_position) { return true; }
    asio::awaitable<void> async_close() { co_return; }
};
static_assert(!batch_sink<not_a_sink_no_close>);
static_assert(!batch_sink<not_a_sink_sync_write>);
static_assert(!record_sink<keeping_sink>);

/// A byte writer into memory that can play a reader who leaves after `limit` bytes.
struct memory_writer {
    std::shared_ptr<std::vector<std::byte>> out = std::make_shared<std::vector<std::byte>>();
    std::shared_ptr<int> writes = std::make_shared<int>(0);
    std::shared_ptr<bool> closed = std::make_shared<bool>(false);
    std::size_t limit = SIZE_MAX;

    asio::awaitable<bool> async_write(std::span<const std::byte> bytes)
    {
        if (out->size() >= limit)
            co_return false;
        ++*writes;
        out->insert(out->end(), bytes.begin(), bytes.end());
        co_return true;
    }
    asio::awaitable<void> async_close()
    {
        *closed = true;
        co_return;
    }
};
static_assert(byte_writer<memory_writer>);
static_assert(record_sink<recordio_writer_sink<memory_writer>>);

/// The payloads of a RecordIO byte string, read back through the reader.
std::vector<std::string> read_back(std::shared_ptr<std::vector<std::byte>> bytes)
{
    reader r(source_list({[bytes](const source_context&) {
                 return any_byte_source(memory_source(std::shared_ptr<const std::vector<std::byte>>(bytes), "out",
                                                      {.chunk_size = 5}));
             }}),
             {.batch_size = 4, .format = data_format::recordio});
    std::vector<std::string> out;
    for (auto& b : r) {
        const auto& col = b.feature(raw_payload_feature);
        for (std::size_t i = 0; i < b.size(); ++i) {
            auto p = col.item(i, 0);
            out.emplace_back(reinterpret_cast<const char*>(p.data()), p.size());
        }
    }
    return out;
}

} // namespace

TEST_CASE("run_pipeline: a callback sink gets every batch in order, on the caller's thread")
{
    const auto caller = std::this_thread::get_id();
    std::vector<int> lengths;
    std::vector<std::size_t> sizes;
    bool other_thread = false;
    const auto result = run_pipeline(texts({"a;bb;ccc;", "dddd;;eeeee;"}), test::semicolon_decoder{},
                                     test::length_parser{}, callback_sink([&](batch& b) {
                                         other_thread |= std::this_thread::get_id() != caller;
                                         sizes.push_back(b.size());
                                         for (int n : lengths_of(b))
                                             lengths.push_back(n);
                                     }),
                                     {.batch_size = 4});
    CHECK_FALSE(other_thread);
    CHECK(result.data_ended);
    CHECK(lengths == std::vector<int>{1, 2, 3, 4, 0, 5});
    CHECK(sizes == std::vector<std::size_t>{4, 2});
    CHECK(result.stats.records == 6);
    CHECK(result.stats.batches == 2);
    CHECK(result.stats.sources == 2);
    CHECK(result.stats.bytes == 21);
}

TEST_CASE("run_pipeline: a sink written outside the library, with positions, the last-batch policy and close")
{
    keeping_sink sink;
    const auto result = run_pipeline(texts({"a;bb;ccc;", "dddd;eeeee;"}), test::semicolon_decoder{},
                                     test::length_parser{}, sink, {.batch_size = 2, .last_batch = last_batch::pad});
    CHECK(result.data_ended);
    CHECK(*sink.closed == 1);
    // Padding repeats the last record; the stats count records, not padding.
    CHECK(*sink.batches == std::vector<std::vector<int>>{{1, 2}, {3, 4}, {5}});
    REQUIRE(sink.positions->size() == 3);
    // After "bb" (item 0, 2 records), after "dddd" (item 1, 1 record), after "eeeee".
    CHECK((*sink.positions)[0] == read_position{0, 0, 2, 0, 0});
    CHECK((*sink.positions)[1] == read_position{0, 1, 1, 0, 1});
    CHECK((*sink.positions)[2] == read_position{0, 1, 2, 0, 1});
    CHECK(result.stats.records == 5);
}

TEST_CASE("run_pipeline: a sink that has seen enough stops the pipeline early, without close")
{
    // Many sources: stopping after the first batch must not read them all.
    std::vector<std::string> parts(50, "x;yy;zzz;");
    int calls = 0;
    const auto result = run_pipeline(texts(parts), test::semicolon_decoder{}, test::length_parser{},
                                     callback_sink([&](batch&) { return ++calls < 2; }), {.batch_size = 3});
    CHECK_FALSE(result.data_ended);
    CHECK(calls == 2);
    CHECK(result.stats.batches == 1);  // the second was refused
    CHECK(result.stats.sources <= 2);

    keeping_sink never;
    auto stop = run_pipeline(texts(parts), test::semicolon_decoder{}, test::length_parser{},
                             callback_sink([](batch&) { return false; }), {.batch_size = 3});
    CHECK_FALSE(stop.data_ended);
    CHECK(*never.closed == 0);
}

TEST_CASE("run_pipeline: errors reach the caller, after the batches before them, and options that cannot work are refused")
{
    std::vector<int> lengths;
    auto collect = callback_sink([&](batch& b) {
        for (int n : lengths_of(b))
            lengths.push_back(n);
    });
    SECTION("a truncated record under the fail policy names the source and record")
    {
        try {
            (void)run_pipeline(texts({"a;bb;", "ccc;dd"}), test::semicolon_decoder{}, test::length_parser{}, collect,
                               {.batch_size = 1});
            FAIL("no error");
        } catch (const data_error& e) {
            CHECK(e.code() == make_error_code(errc::truncated_record));
            CHECK(e.where().source == "memory:b");
            CHECK(e.where().record_index == 1);
        }
        CHECK(lengths == std::vector<int>{1, 2, 3});
    }
    SECTION("bad content is skipped and counted under skip")
    {
        const auto r = run_pipeline(texts({"a;!b;ccc;"}), test::semicolon_decoder{}, test::length_parser{}, collect,
                                    {.batch_size = 8, .bad_records = bad_record_policy::skip});
        CHECK(lengths == std::vector<int>{1, 3});
        CHECK(r.stats.bad_records == 1);
    }
    SECTION("an exception from the sink ends the run")
    {
        CHECK_THROWS_WITH(run_pipeline(texts({"a;bb;"}), test::semicolon_decoder{}, test::length_parser{},
                                       callback_sink([](batch&) -> bool { throw std::runtime_error("sink failed"); }),
                                       {.batch_size = 1}),
                          "sink failed");
    }
    SECTION("no sources")
    {
        try {
            (void)run_pipeline(source_list({}), test::semicolon_decoder{}, test::length_parser{}, collect);
            FAIL("no error");
        } catch (const data_error& e) {
            CHECK(e.code() == make_error_code(errc::empty_data_set));
        }
    }
    SECTION("batch_size 0")
    {
        CHECK_THROWS_AS(run_pipeline(texts({"a;"}), test::semicolon_decoder{}, test::length_parser{}, collect,
                                     {.batch_size = 0}),
                        std::invalid_argument);
        CHECK_THROWS_AS(run_pipeline(nullptr, test::semicolon_decoder{}, test::length_parser{}, collect),
                        std::invalid_argument);
    }
}

TEST_CASE("run_pipeline: the decode workers give the callback exactly what one worker gives")
{
    std::string text;
    for (int i = 0; i < 3000; ++i)
        text += std::string(std::size_t(i % 37), 'x') + (i % 500 == 7 ? "!" : "") + ";";
    auto lengths_with = [&](std::size_t workers) {
        std::vector<int> out;
        const auto r = run_pipeline(texts({text, text}, 4096), test::semicolon_decoder{}, test::length_parser{},
                                    callback_sink([&](batch& b) {
                                        for (int n : lengths_of(b))
                                            out.push_back(n);
                                    }),
                                    {.batch_size = 16, .bad_records = bad_record_policy::skip, .decode_workers = workers});
        CHECK(r.stats.bad_records == 0);  // '!' only leads a record at i % 37 == 0
        return out;
    };
    const auto one = lengths_with(1);
    CHECK(one.size() == 6000);
    CHECK(lengths_with(2) == one);
}

TEST_CASE("recordio_writer_sink: records written as RecordIO read back byte for byte through the reader")
{
    // Records of every length around the padding, one empty, one with aligned magic words
    // inside (the writer cuts the record there, the reader joins it). Framed by ';', since
    // the magic word holds a newline.
    std::vector<std::string> lines;
    for (int n = 0; n < 40; ++n)
        lines.push_back(std::string(std::size_t(n), char('a' + n % 26)));
    std::string magic(4, '\0');
    std::memcpy(magic.data(), &recordio_magic, 4);  // little-endian, as the file stores it
    lines.push_back("abcd" + magic + "efgh" + magic);
    std::string text;
    for (const auto& l : lines)
        text += l + ";";

    memory_writer writer;
    const auto result = run_record_pipeline(texts({text}, 7), test::semicolon_decoder{},
                                            recordio_writer_sink(writer, {.buffer_size = 64}));
    CHECK(result.data_ended);
    CHECK(result.stats.records == lines.size());
    CHECK(*writer.closed);
    CHECK(*writer.writes > 5);  // gathered in buffers of 64 bytes, not one write per record

    std::vector<std::byte> expected;
    for (const auto& l : lines)
        append_recordio(expected, bytes_of(l));
    CHECK(*writer.out == expected);
    CHECK(read_back(writer.out) == lines);
}

TEST_CASE("recordio_writer_sink: a reader that leaves stops the pipeline, and a file descriptor round trip")
{
    SECTION("the writer's reader goes away")
    {
        memory_writer writer{.limit = 100};
        std::vector<std::string> parts(20, std::string(50, 'q') + "\n" + std::string(70, 'r') + "\n");
        const auto result = run_record_pipeline(texts(parts, 64), line_decoder{},
                                                recordio_writer_sink(writer, {.buffer_size = 32}));
        CHECK_FALSE(result.data_ended);
        CHECK_FALSE(*writer.closed);
        CHECK(result.stats.sources < 20);
    }
    SECTION("into a file through descriptor_writer")
    {
        const auto path = std::filesystem::temp_directory_path() / ("pipemode-sinks-" + std::to_string(::getpid()) + ".rec");
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        // JSON Lines to RecordIO (the line decoder skips blank lines).
        std::vector<std::string> lines{"{\"a\": 1}", "{\"b\": [1, 2, 3]}", std::string(3000, 'z')};
        std::string text;
        for (const auto& l : lines)
            text += l + "\n";
        asio::io_context io;
        auto provider = texts({text}, 100);
        // The awaitable form, on a loop of the test's own.
        auto done = asio::co_spawn(io,
                                   async_run_record_pipeline(*provider, line_decoder{},
                                                             recordio_writer_sink(descriptor_writer(io.get_executor(), fd))),
                                   asio::use_future);
        io.run();
        const pipeline_result result = done.get();
        CHECK(result.data_ended);
        reader r({path.string()}, {.batch_size = 3, .format = data_format::recordio});
        std::vector<std::string> back;
        for (auto& b : r)
            for (std::size_t i = 0; i < b.size(); ++i) {
                auto p = b.feature(raw_payload_feature).item(i, 0);
                back.emplace_back(reinterpret_cast<const char*>(p.data()), p.size());
            }
        CHECK(back == lines);
        std::filesystem::remove(path);
    }
}
