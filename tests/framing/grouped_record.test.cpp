// Tests of grouped_record_parser and record_group_decoder: an augmented manifest's records,
// N per line, delivered as one row per line, at every batch boundary and every split point.
#include <pipemode/framing/grouped_record.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/sources/memory_source.hpp>

#include "decoder_harness.hpp"
#include "reader_helpers.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pipemode;

static_assert(record_decoder<record_group_decoder<recordio_decoder>>);
static_assert(!record_decoder<grouped_record_parser>);

namespace {


/// The payload of attribute `a` of line `l` (lengths vary, one is empty).
std::string payload(std::size_t l, std::size_t a) { return (l + a) % 5 == 4 ? "" : "L" + std::to_string(l) + "A" + std::to_string(a) + std::string(l % 3, 'x'); }

std::vector<std::string> names_of(std::size_t n)
{
    std::vector<std::string> names;
    for (std::size_t a = 0; a < n; ++a)
        names.push_back(a == 0 ? "source-ref" : "attr" + std::to_string(a));
    return names;
}

/// Every row of `batches` as its N payloads.
std::vector<std::vector<std::string>> rows_of(const std::vector<batch>& batches, const std::vector<std::string>& names)
{
    std::vector<std::vector<std::string>> rows;
    for (const auto& b : batches) {
        REQUIRE(b.features().size() == names.size());
        for (std::size_t i = 0; i < b.size(); ++i) {
            std::vector<std::string> row;
            for (const auto& n : names) {
                REQUIRE(b.feature(n).item_count(i) == 1);
                row.push_back(test::as_string(b.feature(n).item(i, 0)));
            }
            rows.push_back(std::move(row));
        }
    }
    return rows;
}

std::vector<std::byte> framed_lines(std::size_t lines, std::size_t n, std::size_t first_line = 0)
{
    std::vector<std::byte> out;
    for (std::size_t l = first_line; l < first_line + lines; ++l)
        for (std::size_t a = 0; a < n; ++a) {
            const std::string p = payload(l, a);
            append_recordio(out, std::as_bytes(std::span(p)));
        }
    return out;
}

} // namespace

TEST_CASE("Every group of N records becomes one row, at every batch size", "[grouped_record]")
{
    for (std::size_t n = 1; n <= 3; ++n) {
        const auto names = names_of(n);
        for (std::size_t lines = 0; lines <= 7; ++lines) {
            for (std::size_t batch_size = 1; batch_size <= lines + 1; ++batch_size) {
                CAPTURE(n, lines, batch_size);
                grouped_record_parser parser(names);
                batch_builder builder(batch_size);
                std::vector<batch> batches;
                std::uint64_t index = 0;
                for (std::size_t l = 0; l < lines; ++l) {
                    for (std::size_t a = 0; a < n; ++a) {
                        const std::string p = payload(l, a);
                        const record_view rec{std::as_bytes(std::span(p)), index * 100, index};
                        ++index;
                        error_code ec;
                        const bool full = parser.parse(rec, "memory:lines", builder, ec);
                        REQUIRE_FALSE(ec);
                        // Full only after a group's last record, and exactly when the batch is.
                        const bool group_end = a + 1 == n;
                        REQUIRE(full == (group_end && (l + 1) % batch_size == 0));
                        REQUIRE(builder.size() == (l + (group_end ? 1 : 0)) % batch_size
                                    + (full ? batch_size : 0));
                        if (full)
                            batches.push_back(builder.take(0));
                    }
                }
                if (!builder.empty())
                    batches.push_back(builder.take(0));
                const auto rows = rows_of(batches, names);
                REQUIRE(rows.size() == lines);
                for (std::size_t l = 0; l < lines; ++l)
                    for (std::size_t a = 0; a < n; ++a)
                        REQUIRE(rows[l][a] == payload(l, a));
                // A row's origin is its line's first record.
                std::size_t row = 0;
                for (const auto& b : batches)
                    for (const auto& o : b.origins()) {
                        REQUIRE(o.index == row * n);
                        REQUIRE(o.offset == row * n * 100);
                        ++row;
                    }
            }
        }
    }
}

TEST_CASE("A group broken by a source change or a missing record is refused, and the next group is kept", "[grouped_record]")
{
    const auto names = names_of(2);
    grouped_record_parser parser(names);
    batch_builder builder(10);
    error_code ec;
    const std::string a = "a", b = "b", c = "c";
    const auto rec = [](const std::string& s, std::uint64_t index) { return record_view{std::as_bytes(std::span(s)), 0, index}; };

    // Source "one" ends after its first record; "two" starts with a whole group.
    REQUIRE_FALSE(parser.parse(rec(a, 0), "one", builder, ec));
    REQUIRE_FALSE(ec);
    REQUIRE_FALSE(parser.parse(rec(b, 0), "two", builder, ec));
    REQUIRE_FALSE(ec);
    REQUIRE_FALSE(parser.parse(rec(c, 1), "two", builder, ec));
    REQUIRE_FALSE(ec);
    REQUIRE(builder.size() == 1);

    // A record in the middle of a group whose start was skipped.
    REQUIRE_FALSE(parser.parse(rec(a, 3), "two", builder, ec));
    REQUIRE(ec == errc::truncated_record);
    REQUIRE_THAT(std::string(parser.error_detail()), Catch::Contains("'attr1'") && Catch::Contains("2 of 2"));
    REQUIRE(builder.size() == 1);

    auto batch = builder.take(0);
    const auto rows = rows_of({batch}, names);
    REQUIRE(rows == std::vector<std::vector<std::string>>{{"b", "c"}});
}

TEST_CASE("The parser refuses no attribute names and a name listed twice", "[grouped_record]")
{
    REQUIRE_THROWS_AS(grouped_record_parser({}), std::invalid_argument);
    REQUIRE_THROWS_WITH(grouped_record_parser({"class", "class"}), Catch::Contains("'class' is listed twice"));
}

TEST_CASE("record_group_decoder reports a source that ends inside a group, at every split point", "[grouped_record]")
{
    const std::size_t n = 3;
    for (std::size_t records = 0; records <= 7; ++records) {
        std::vector<std::byte> in;
        for (std::size_t r = 0; r < records; ++r) {
            const std::string p = payload(r / n, r % n);
            append_recordio(in, std::as_bytes(std::span(p)));
        }
        for (std::size_t split = 0; split <= in.size(); ++split) {
            CAPTURE(records, split);
            record_group_decoder d(recordio_decoder{}, n);
            d.reset(0);
            std::size_t got = 0;
            for (std::span<const std::byte> part : {std::span<const std::byte>(in).first(split),
                                                    std::span<const std::byte>(in).subspan(split)}) {
                while (!part.empty() || d.has_record()) {
                    error_code ec;
                    part = part.subspan(d.put(part, ec));
                    REQUIRE_FALSE(ec);
                    if (!d.has_record())
                        break;
                    REQUIRE(test::as_string(d.record().payload) == payload(got / n, got % n));
                    d.pop();
                    ++got;
                }
            }
            error_code ec;
            d.finish(ec);
            REQUIRE(got == records);
            REQUIRE((ec == errc::truncated_record) == (records % n != 0));
            if (records % n == 0)
                REQUIRE_FALSE(ec);
        }
    }
}

TEST_CASE("A reader with data_format::augmented_manifest delivers one row per line over several sources", "[grouped_record]")
{
    const auto names = names_of(2);
    // Three sources of 3, 1 and 4 lines: every batch size from 1 to 9 puts boundaries
    // everywhere, across sources too.
    const std::vector<std::vector<std::byte>> sources = {framed_lines(3, 2, 0), framed_lines(1, 2, 3),
                                                         framed_lines(4, 2, 4)};
    for (std::size_t batch_size = 1; batch_size <= 9; ++batch_size) {
        CAPTURE(batch_size);
        std::vector<source_maker> makers;
        for (std::size_t s = 0; s < sources.size(); ++s)
            makers.push_back([&sources, s](const source_context&) {
                return any_byte_source(memory_source(sources[s], "part" + std::to_string(s), {.chunk_size = 5}));
            });
        reader r(source_list(std::move(makers)),
                 {.batch_size = batch_size, .format = data_format::augmented_manifest, .attribute_names = names});
        std::vector<batch> batches;
        for (auto& b : r) {
            REQUIRE(b.size() <= batch_size);
            batches.push_back(std::move(b));
        }
        const auto rows = rows_of(batches, names);
        REQUIRE(rows.size() == 8);
        for (std::size_t l = 0; l < 8; ++l)
            REQUIRE(rows[l] == std::vector<std::string>{payload(l, 0), payload(l, 1)});
    }
}

TEST_CASE("A reader refuses a source that ends inside a line", "[grouped_record]")
{
    const auto names = names_of(2);
    auto bytes = framed_lines(2, 2);
    const std::string extra = "orphan";
    append_recordio(bytes, std::as_bytes(std::span(extra)));
    reader r(source_list({[&](const source_context&) { return any_byte_source(memory_source(bytes, "odd")); }}),
             {.batch_size = 10, .format = data_format::augmented_manifest, .attribute_names = names});
    const auto [rows, e] = test::rows_until_error(r);
    REQUIRE(rows == 0);  // the error comes before the short last batch is delivered
    REQUIRE(e.code() == errc::truncated_record);
    REQUIRE_THAT(e.what(), Catch::Contains("memory:odd") && Catch::Contains("record 5"));
}

TEST_CASE("A reader with data_format::augmented_manifest refuses a record-level shuffle", "[grouped_record]")
{
    // Refused when the reader is made, as any option that cannot work.
    const auto bytes = framed_lines(2, 2);
    REQUIRE_THROWS_WITH(
        reader(source_list({[&](const source_context&) { return any_byte_source(memory_source(bytes, "x")); }}),
               {.batch_size = 10, .format = data_format::augmented_manifest, .attribute_names = names_of(2),
                .shuffle_records = 4}),
        Catch::Contains("shuffle_records must be 0"));
}
