// Tests of chunk_decoder, the framing that hands each read on as one record and each source's
// end as an empty record: bytes in equal bytes out at every cut of the input, offsets and
// indices, and through run_record_pipeline over several sources (an empty one among them) at
// every read size, each object's end seen once and in place.
#include <pipemode/framing/chunks.hpp>

#include <pipemode/pipeline/pipeline.hpp>
#include <pipemode/sources/memory_source.hpp>

#include "decoder_harness.hpp"

#include <catch2/catch.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace pipemode;

namespace {

std::vector<std::byte> bytes_of(std::string_view s)
{
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    return {p, p + s.size()};
}


/// A record sink that rebuilds each object from its records and notes where the ends came.
struct objects_sink {
    std::shared_ptr<std::vector<std::string>> objects = std::make_shared<std::vector<std::string>>();
    std::shared_ptr<std::vector<std::string>> names = std::make_shared<std::vector<std::string>>();
    std::shared_ptr<bool> closed = std::make_shared<bool>(false);
    std::string current;
    std::uint64_t next_offset = 0;

    bool put(const record_view& rec, std::string_view source, const read_position& after)
    {
        CHECK(rec.offset == next_offset);  // the records tile the object
        CHECK(after.item == objects->size());
        if (rec.payload.empty()) {
            objects->push_back(std::exchange(current, {}));
            names->emplace_back(source);
            next_offset = 0;
            return false;
        }
        current += test::as_string(rec.payload);
        next_offset += rec.payload.size();
        return false;
    }
    asio::awaitable<bool> async_flush() { co_return true; }
    asio::awaitable<void> async_close()
    {
        *closed = true;
        co_return;
    }
};
static_assert(record_sink<objects_sink>);

} // namespace

TEST_CASE("chunk_decoder: every cut of the input comes out unchanged, then one empty end record")
{
    const std::string text = "pipe mode bytes, framed by nothing";
    const auto in = bytes_of(text);
    for (std::size_t cut = 0; cut <= in.size(); ++cut) {
        for (const std::uint64_t start : {std::uint64_t{0}, std::uint64_t{1000}}) {
            chunk_decoder d;
            d.reset(start);
            std::string out;
            std::vector<std::uint64_t> offsets;
            error_code ec;
            for (auto piece : {std::span(in).first(cut), std::span(in).subspan(cut)}) {
                const std::size_t used = d.put(piece, ec);
                CHECK_FALSE(ec);
                CHECK(used == piece.size());
                CHECK(d.has_record() == !piece.empty());
                if (!d.has_record())
                    continue;
                CHECK(d.put(piece, ec) == 0);  // a waiting record blocks the next
                CHECK(d.record().payload.data() == piece.data());  // no copy
                out += test::as_string(d.record().payload);
                offsets.push_back(d.record().offset);
                d.pop();
            }
            CHECK(out == text);
            CHECK(offsets.front() == start);
            if (offsets.size() == 2)
                CHECK(offsets[1] == start + cut);
            d.finish(ec);
            CHECK_FALSE(ec);
            REQUIRE(d.has_record());
            CHECK(d.record().payload.empty());
            CHECK(d.record().offset == start + in.size());
            CHECK(d.record().index == offsets.size());
            CHECK(d.records_started() == offsets.size() + 1);
            d.pop();
            d.finish(ec);  // once only
            CHECK_FALSE(d.has_record());
            CHECK(d.put(in, ec) == 0);  // nothing after the end until reset()
        }
    }
}

TEST_CASE("chunk_decoder: an empty source is one end record")
{
    chunk_decoder d;
    error_code ec;
    d.reset(7);
    d.finish(ec);
    REQUIRE(d.has_record());
    CHECK(d.record().payload.empty());
    CHECK(d.record().index == 0);
    CHECK(d.record().offset == 7);
}

TEST_CASE("chunk_decoder: through run_record_pipeline, every object's bytes and end, at every read size")
{
    const std::vector<std::string> texts{"first object, a few bytes", "", "x", std::string(300, 'q') + "end"};
    for (std::size_t chunk = 1; chunk <= 310; chunk += (chunk < 8 ? 1 : 37)) {
        std::vector<source_maker> makers;
        for (std::size_t i = 0; i < texts.size(); ++i) {
            auto data = std::make_shared<const std::vector<std::byte>>(bytes_of(texts[i]));
            makers.push_back([data, chunk, i](const source_context&) {
                return any_byte_source(memory_source(data, "object-" + std::to_string(i), {.chunk_size = chunk}));
            });
        }
        objects_sink sink;
        const auto result = run_record_pipeline(source_list(std::move(makers)), chunk_decoder{}, sink);
        INFO("read size " << chunk);
        CHECK(result.data_ended);
        CHECK(*sink.closed);
        CHECK(*sink.objects == texts);
        CHECK(*sink.names == std::vector<std::string>{"memory:object-0", "memory:object-1", "memory:object-2",
                                                      "memory:object-3"});
        std::uint64_t bytes = 0, reads = 0;
        for (const auto& t : texts) {
            bytes += t.size();
            reads += (t.size() + chunk - 1) / chunk;
        }
        CHECK(result.stats.bytes == bytes);
        CHECK(result.stats.records == reads + texts.size());  // every read, and every object's end
    }
}
