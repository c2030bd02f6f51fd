// Fuzz target for record_group_decoder and grouped_record_parser (an augmented manifest's
// records, N per line, delivered as one row per line).
//
// The first input byte chooses the group size N (1 to 3) and the batch size (1 to 3); the rest
// is read as a RecordIO stream, bad records skipped with resync() as the pipeline's skip
// policy does. On any input:
// - record_group_decoder says the same as recordio_decoder, whole and in pieces whose sizes
//   come from the input, except that finish() also reports a record count that is not a
//   multiple of N;
// - the rows the parser writes are exactly the groups whose N records (indices gN .. gN+N-1)
//   all arrived, in order, each row's features the N payloads named after the attributes, its
//   origin the group's first record; no batch holds more rows than the batch size, and only
//   the last one fewer; a record is refused (truncated_record, with an explanation) exactly
//   when an earlier record of its group is missing.
//
// The seeds in grouped_record.corpus/ are a header byte followed by framed lines of one, two
// and three attributes, one with a damaged record in the middle of a line, one cut short, and
// skip-of-a-whole-group (found by this target: two skipped records between attribute 0 of one
// line and attribute 1 of the next, which the parser used to join into one row).
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/framing/grouped_record.hpp>
#include <pipemode/framing/recordio.hpp>

#include "decoder_harness.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

std::vector<std::size_t> derived_cuts(std::string_view in)
{
    std::vector<std::size_t> cuts;
    std::size_t at = 0;
    for (std::size_t i = 0; !in.empty(); ++i) {
        at += 1 + static_cast<unsigned char>(in[i % in.size()]) % 29;
        if (at >= in.size())
            break;
        cuts.push_back(at);
    }
    return cuts;
}

struct row {
    std::vector<std::string> payloads;
    std::uint64_t offset = 0;
    std::uint64_t index = 0;
    friend bool operator==(const row&, const row&) = default;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
        return 0;
    const std::size_t n = 1 + data[0] % 3;
    const std::size_t batch_size = 1 + (data[0] / 3) % 3;
    const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::vector<std::string> names{"source-ref", "class", "class-metadata"};
    names.resize(n);

    // The group decoder is the inner decoder plus the end-of-source rule.
    recordio_decoder plain;
    const auto expected = test::transcript(plain, stream);
    record_group_decoder<recordio_decoder> grouped(recordio_decoder{}, n);
    auto got = test::transcript(grouped, stream);
    check(test::transcript(grouped, stream, derived_cuts(stream)) == got);
    const bool plain_failed_at_end = !expected.empty() && expected.back()[0] == 'F';
    std::size_t errors = 0;
    for (const auto& e : expected)
        errors += e[0] == 'E';
    // Unless transcript() gave up early on too many errors (and never called finish()).
    if (errors < test::feed_options{}.max_errors) {
        if (!plain_failed_at_end && got.size() == expected.size() + 1) {
            check(got.back()[0] == 'F' && grouped.records_started() % n != 0);
            got.pop_back();
        } else {
            check(plain_failed_at_end || grouped.records_started() % n == 0);
        }
    }
    check(got == expected);

    // The records as the pipeline hands them to the parser, and the rows a model expects.
    std::vector<record_view> records;
    std::vector<std::vector<std::byte>> copies;
    {
        recordio_decoder d;
        std::span<const std::byte> in = test::as_bytes(stream);
        while (!in.empty() || d.has_record()) {
            error_code ec;
            in = in.subspan(d.put(in, ec));
            if (ec) {
                d.resync();
                continue;
            }
            if (!d.has_record())
                break;
            const auto r = d.record();
            copies.emplace_back(r.payload.begin(), r.payload.end());
            records.push_back(r);
            d.pop();
        }
        for (std::size_t i = 0; i < records.size(); ++i)
            records[i].payload = copies[i];
    }
    std::map<std::uint64_t, std::vector<const record_view*>> groups;
    for (const auto& r : records)
        groups[r.index / n].push_back(&r);
    std::vector<row> model;
    for (const auto& [g, members] : groups) {
        if (members.size() != n)
            continue;
        row expected_row{{}, members.front()->offset, members.front()->index};
        for (const auto* m : members)
            expected_row.payloads.push_back(test::as_string(m->payload));
        model.push_back(std::move(expected_row));
    }

    grouped_record_parser parser(names);
    batch_builder builder(batch_size);
    std::vector<batch> batches;
    std::size_t refused = 0;
    for (const auto& r : records) {
        error_code ec;
        const bool full = parser.parse(r, "memory:lines", builder, ec);
        if (ec) {
            check(ec == errc::truncated_record && !parser.error_detail().empty() && !full);
            ++refused;
            continue;
        }
        check(full == builder.full());
        if (full)
            batches.push_back(builder.take());
    }
    if (!builder.empty())
        batches.push_back(builder.take());

    std::vector<row> rows;
    for (std::size_t b = 0; b < batches.size(); ++b) {
        const batch& x = batches[b];
        check(x.size() <= batch_size && (x.size() == batch_size || b + 1 == batches.size()));
        check(x.origins().size() == x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            row got_row{{}, x.origins()[i].offset, x.origins()[i].index};
            for (const auto& name : names) {
                check(x.feature(name).item_count(i) == 1);
                got_row.payloads.push_back(test::as_string(x.feature(name).item(i, 0)));
            }
            rows.push_back(std::move(got_row));
        }
    }
    check(rows == model);
    // A record is refused exactly when an earlier record of its group did not arrive (its
    // position among the group's arrivals is not its attribute number).
    std::size_t should_refuse = 0;
    for (const auto& [g, members] : groups)
        for (std::size_t p = 0; p < members.size(); ++p)
            should_refuse += members[p]->index % n != p;
    check(refused == should_refuse);
    return 0;
}
