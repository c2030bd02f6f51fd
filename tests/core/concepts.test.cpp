// The stage concepts: every framing decoder and record parser of the library models its
// concept, so do the minimal models a user would write (tests/support/custom_stages.hpp), and
// types that miss one member or get one signature wrong do not.

#include <pipemode/core/concepts.hpp>
#include <pipemode/framing/grouped_record.hpp>
#include <pipemode/framing/lines.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/framing/tfrecord.hpp>
#include <pipemode/framing/whole_object.hpp>
#include <pipemode/parsers/csv.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/raw_record.hpp>

#include "custom_stages.hpp"

#include <catch2/catch.hpp>

#include <memory>

using namespace pipemode;

namespace {

// The library's own stages.
static_assert(record_decoder<recordio_decoder>);
static_assert(record_decoder<tfrecord_decoder>);
static_assert(record_decoder<line_decoder>);
static_assert(record_decoder<whole_object_decoder>);
static_assert(record_decoder<record_group_decoder<recordio_decoder>>);
static_assert(record_decoder<record_group_decoder<line_decoder>>);
static_assert(record_parser<protobuf_record_parser>);
static_assert(record_parser<csv_record_parser>);
static_assert(record_parser<raw_record_parser>);
static_assert(record_parser<grouped_record_parser>);

// The minimal models.
static_assert(record_decoder<test::semicolon_decoder>);
static_assert(record_parser<test::length_parser>);

// A framing decoder is not a parser, nor the other way round.
static_assert(!record_parser<line_decoder>);
static_assert(!record_decoder<raw_record_parser>);

/// A parser without `error_detail()`: the reader could not say what was wrong.
struct no_detail_parser {
    bool parse(const record_view&, std::string_view, batch_builder&, error_code&) { return false; }
};
static_assert(!record_parser<no_detail_parser>);

/// A parser that does not say whether the batch is full.
struct void_parser {
    void parse(const record_view&, std::string_view, batch_builder&, error_code&) {}
    std::string_view error_detail() const { return {}; }
};
static_assert(!record_parser<void_parser>);

/// A parser that throws instead of taking an error code.
struct throwing_parser {
    bool parse(const record_view&, std::string_view, batch_builder&) { return false; }
    std::string_view error_detail() const { return {}; }
};
static_assert(!record_parser<throwing_parser>);

/// A parser a pipeline cannot own (it cannot be moved in).
struct pinned_parser {
    pinned_parser() = default;
    pinned_parser(pinned_parser&&) = delete;
    bool parse(const record_view&, std::string_view, batch_builder&, error_code&) { return false; }
    std::string_view error_detail() const { return {}; }
};
static_assert(!record_parser<pinned_parser>);

// Decode workers parse with copies only of parsers that say each record stands alone.
static_assert(parses_independently_v<protobuf_record_parser>);
static_assert(parses_independently_v<csv_record_parser>);
static_assert(parses_independently_v<raw_record_parser>);
static_assert(!parses_independently_v<grouped_record_parser>);  // joins records into one row
static_assert(!parses_independently_v<test::length_parser>);    // a parser that did not opt in

/// A parser that opts in but cannot be copied: the workers need copies.
struct uncopyable_independent_parser {
    static constexpr bool independent_records = true;
    uncopyable_independent_parser() = default;
    uncopyable_independent_parser(uncopyable_independent_parser&&) = default;
    bool parse(const record_view&, std::string_view, batch_builder&, error_code&) { return false; }
    std::string_view error_detail() const { return {}; }
};
static_assert(record_parser<uncopyable_independent_parser>);
static_assert(!parses_independently_v<uncopyable_independent_parser>);

/// A parser that says false.
struct dependent_parser {
    static constexpr bool independent_records = false;
    bool parse(const record_view&, std::string_view, batch_builder&, error_code&) { return false; }
    std::string_view error_detail() const { return {}; }
};
static_assert(!parses_independently_v<dependent_parser>);

/// A framing decoder without `resync()`: the skip policies and byte ranges need it.
struct no_resync_decoder {
    std::size_t put(std::span<const std::byte>, error_code&) { return 0; }
    bool has_record() const { return false; }
    record_view record() const { return {}; }
    void pop() {}
    void finish(error_code&) {}
    void reset(std::uint64_t) {}
    std::uint64_t offset() const { return 0; }
    std::uint64_t records_started() const { return 0; }
};
static_assert(!record_decoder<no_resync_decoder>);

} // namespace

TEST_CASE("concepts: the minimal framing decoder frames records across every split of its input")
{
    // The concepts are compile-time checks; this makes sure the model used by the reader's
    // tests is itself right, or those tests would prove nothing.
    const std::string text = "one;;three;four;";
    for (std::size_t split = 0; split <= text.size(); ++split) {
        CAPTURE(split);
        test::semicolon_decoder d;
        d.reset(100);
        std::vector<std::pair<std::string, std::uint64_t>> got;
        for (auto part : {std::string_view(text).substr(0, split), std::string_view(text).substr(split)}) {
            auto in = std::as_bytes(std::span(part));
            while (!in.empty() || d.has_record()) {
                error_code ec;
                in = in.subspan(d.put(in, ec));
                REQUIRE(!ec);
                if (!d.has_record())
                    break;
                const auto r = d.record();
                got.emplace_back(std::string(reinterpret_cast<const char*>(r.payload.data()), r.payload.size()),
                                 r.offset);
                CHECK(r.index == got.size() - 1);
                d.pop();
            }
        }
        error_code ec;
        d.finish(ec);
        CHECK(!ec);
        const std::vector<std::pair<std::string, std::uint64_t>> want{{"one", 100}, {"", 104}, {"three", 105}, {"four", 111}};
        CHECK(got == want);
    }
}
