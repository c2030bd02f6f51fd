// Tests of fifo_sink, pipemode-agent's record sink, behind chunk_decoder in a record pipeline
// into a memory byte writer: unwrapped objects pass through unchanged with one write per read;
// wrapped ones come out as write_recordio's records while the window holds them, and as one
// record each (decoded back) when they outgrow it, measured only when their length is unknown;
// a wrong length and an unmeasurable object name their source; a reader that leaves stops the
// pipeline without closing the writer. Each at several read sizes.
#include <pipemode/sagemaker/fifo_sink.hpp>

#include <pipemode/framing/chunks.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/pipeline.hpp>
#include <pipemode/sources/memory_source.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace pipemode;
using namespace pipemode::sagemaker;

namespace {

using bytes = std::vector<std::byte>;

bytes bytes_of(const std::string& s)
{
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    return {p, p + s.size()};
}

/// A byte writer into memory that counts its writes and may stop wanting bytes after `limit`.
struct memory_writer {
    std::shared_ptr<bytes> out = std::make_shared<bytes>();
    std::shared_ptr<int> writes = std::make_shared<int>(0);
    std::shared_ptr<bool> closed = std::make_shared<bool>(false);
    std::size_t limit = SIZE_MAX;

    asio::awaitable<bool> async_write(std::span<const std::byte> b)
    {
        if (out->size() >= limit)
            co_return false;
        ++*writes;
        out->insert(out->end(), b.begin(), b.end());
        co_return true;
    }
    asio::awaitable<void> async_close()
    {
        *closed = true;
        co_return;
    }
};
static_assert(record_sink<fifo_sink<memory_writer>>);

/// The objects as sources "o0", "o1", ..., read `chunk` bytes at a time.
std::unique_ptr<source_provider> objects(const std::vector<std::string>& texts, std::size_t chunk)
{
    std::vector<source_maker> makers;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        auto data = std::make_shared<const bytes>(bytes_of(texts[i]));
        makers.push_back([data, chunk, i](const source_context&) {
            return any_byte_source(memory_source(data, "o" + std::to_string(i), {.chunk_size = chunk}));
        });
    }
    return source_list(std::move(makers));
}

/// Every record of a RecordIO stream, as text.
std::vector<std::string> decode(const bytes& stream)
{
    recordio_decoder d;
    std::vector<std::string> records;
    error_code ec;
    auto in = std::span(stream);
    while (!in.empty() || d.has_record()) {
        in = in.subspan(d.put(in, ec));
        REQUIRE_FALSE(ec);
        if (!d.has_record())
            break;
        const auto p = d.record().payload;
        records.emplace_back(reinterpret_cast<const char*>(p.data()), p.size());
        d.pop();
    }
    d.finish(ec);
    REQUIRE_FALSE(ec);
    return records;
}

asio::awaitable<std::uint64_t> measured(std::uint64_t length) { co_return length; }

const std::string magic(reinterpret_cast<const char*>(&recordio_magic), 4);  // as a little-endian file stores it

} // namespace

TEST_CASE("fifo_sink: unwrapped objects pass through unchanged, one write per read")
{
    const std::vector<std::string> texts{"alpha", "", std::string(1000, 'b'), "tail" + magic};
    std::string all;
    for (const auto& t : texts)
        all += t;
    for (const std::size_t chunk : {1, 3, 64, 4096}) {
        memory_writer w;
        const auto r = run_record_pipeline(objects(texts, chunk), chunk_decoder{}, fifo_sink(w));
        INFO("read size " << chunk);
        CHECK(r.data_ended);
        CHECK(*w.closed);
        CHECK(*w.out == bytes_of(all));
        std::size_t reads = 0;
        for (const auto& t : texts)
            reads += (t.size() + chunk - 1) / chunk;
        CHECK(std::size_t(*w.writes) == reads);
    }
}

TEST_CASE("fifo_sink: wrapped objects are one RecordIO record each, write_recordio's bytes while the window holds them")
{
    // Magic words aligned and not, an empty object, one of exactly the window.
    const std::vector<std::string> texts{"abcd" + magic + "efgh" + magic, "", "xy" + magic + "z", std::string(64, 'w'),
                                         "last"};
    bytes expected;
    for (const auto& t : texts)
        append_recordio(expected, bytes_of(t));
    for (const std::size_t chunk : {1, 5, 4096}) {
        memory_writer w;
        int asked = 0;
        fifo_sink_options o{.wrap_recordio = true,
                            .recordio_window = 64,
                            .length = [&](std::uint64_t item) -> std::optional<std::uint64_t> {
                                ++asked;
                                return texts.at(item).size();
                            }};
        const auto r = run_record_pipeline(objects(texts, chunk), chunk_decoder{}, fifo_sink(w, o));
        INFO("read size " << chunk);
        CHECK(r.data_ended);
        CHECK(*w.closed);
        CHECK(asked == int(texts.size()));
        CHECK(*w.out == expected);
    }
}

TEST_CASE("fifo_sink: objects longer than the window stream as one record each, measured only when their length is unknown")
{
    const std::vector<std::string> texts{std::string(500, 'a') + magic + std::string(300, 'b'), "short",
                                         std::string(2000, 'c')};
    for (const bool known : {true, false}) {
        for (const std::size_t chunk : {7, 100, 4096}) {
            memory_writer w;
            std::vector<std::uint64_t> measured_items;
            fifo_sink_options o{.wrap_recordio = true, .recordio_window = 64};
            if (known)
                o.length = [&](std::uint64_t item) -> std::optional<std::uint64_t> { return texts.at(item).size(); };
            o.measure = [&](std::uint64_t item) {
                measured_items.push_back(item);
                return measured(texts.at(item).size());
            };
            const auto r = run_record_pipeline(objects(texts, chunk), chunk_decoder{}, fifo_sink(w, o));
            INFO("length known " << known << ", read size " << chunk);
            CHECK(r.data_ended);
            CHECK(decode(*w.out) == texts);
            CHECK(measured_items == (known ? std::vector<std::uint64_t>{} : std::vector<std::uint64_t>{0, 2}));
        }
    }
}

TEST_CASE("fifo_sink: a wrong length or an object that cannot be measured names its source")
{
    const std::vector<std::string> texts{"fine", std::string(200, 'z')};
    SECTION("longer than its listing")
    {
        fifo_sink_options o{.wrap_recordio = true,
                            .length = [](std::uint64_t) -> std::optional<std::uint64_t> { return 4; }};
        CHECK_THROWS_WITH(run_record_pipeline(objects(texts, 16), chunk_decoder{}, fifo_sink(memory_writer{}, o)),
                          Catch::Contains("memory:o1") && Catch::Contains("longer than the 4 bytes"));
    }
    SECTION("shorter than its listing")
    {
        fifo_sink_options o{.wrap_recordio = true,
                            .length = [](std::uint64_t) -> std::optional<std::uint64_t> { return 10; }};
        CHECK_THROWS_WITH(run_record_pipeline(objects(texts, 16), chunk_decoder{}, fifo_sink(memory_writer{}, o)),
                          Catch::Contains("memory:o0") && Catch::Contains("ended after 4 of the 10"));
    }
    SECTION("outgrows the window, no length and no measure")
    {
        fifo_sink_options o{.wrap_recordio = true, .recordio_window = 16};
        CHECK_THROWS_WITH(run_record_pipeline(objects(texts, 16), chunk_decoder{}, fifo_sink(memory_writer{}, o)),
                          Catch::Contains("memory:o1") && Catch::Contains("length is unknown"));
    }
}

TEST_CASE("fifo_sink: a reader that leaves stops the pipeline, wrapped or not, and the writer is not closed")
{
    const std::vector<std::string> texts(50, std::string(100, 'r'));
    for (const bool wrap : {false, true}) {
        memory_writer w{.limit = 1000};
        const auto r = run_record_pipeline(objects(texts, 30), chunk_decoder{},
                                           fifo_sink(w, {.wrap_recordio = wrap,
                                                         .recordio_window = 16,
                                                         .length = [](std::uint64_t) -> std::optional<std::uint64_t> {
                                                             return 100;
                                                         }}));
        INFO("wrapped " << wrap);
        CHECK_FALSE(r.data_ended);
        CHECK_FALSE(*w.closed);
        CHECK(w.out->size() < 1200);
        CHECK(r.stats.sources < 15);
    }
}
