// Fuzz target for recordio_decoder and the RecordIO writer.
//
// On the raw input, read as a RecordIO stream:
// - no crash, no read out of bounds, no view kept into a piece after put() returned;
// - what the decoder says (records, errors, offsets, indices) does not depend on how the input
//   is cut: in one piece, in thirds, in pieces whose sizes come from the input's own bytes, and
//   byte by byte; from a record start and when searching for one with resync(); with the
//   default cap and with a small one;
// - every record lies inside the input (its header offset and payload end within it), record
//   offsets and indices increase, and every error's offset is inside the input.
//
// On payloads made from the input (split at each occurrence of its first byte), as a writer
// would frame them:
// - the decoder gives back exactly those payloads, at the offsets the writer put them, with no
//   error, however the framed stream is cut;
// - recordio_writer writes the same bytes as append_recordio;
// - decoding starts exactly right mid-stream: from any 4-byte-aligned cut, reset() + resync()
//   yields precisely the records whose headers lie at or after the cut (the writer never
//   leaves an aligned magic word inside a payload).
//
// The seeds in recordio.corpus/ are framed streams: plain records, records holding aligned
// magic words (split into first/middle/last parts), an empty record, and a truncated stream.
#include <pipemode/framing/recordio.hpp>

#include "decoder_harness.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
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

// Cut points whose gaps (1 to 23 bytes) are read from the input itself, so the fuzzer steers
// where pieces end.
std::vector<std::size_t> derived_cuts(std::string_view in)
{
    std::vector<std::size_t> cuts;
    std::size_t at = 0;
    for (std::size_t i = 0; !in.empty(); ++i) {
        at += 1 + static_cast<unsigned char>(in[i % in.size()]) % 23;
        if (at >= in.size())
            break;
        cuts.push_back(at);
    }
    return cuts;
}

std::vector<std::size_t> every_byte(std::size_t n)
{
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < n; ++i)
        cuts.push_back(i);
    return cuts;
}

// The offset field of a transcript event ("R 12 0 payload", "E 8 1 message").
std::uint64_t event_offset(const std::string& e)
{
    return std::stoull(e.substr(2, e.find(' ', 2) - 2));
}

std::uint64_t event_index(const std::string& e)
{
    const auto a = e.find(' ', 2) + 1;
    return std::stoull(e.substr(a, e.find(' ', a) - a));
}

// Records inside [start, start + size), increasing; errors' offsets inside [start, start + size].
void check_bounds(const std::vector<std::string>& events, std::uint64_t start, std::size_t size)
{
    bool any = false;
    std::uint64_t last_offset = 0;
    std::uint64_t last_index = 0;
    for (const auto& e : events) {
        const std::uint64_t offset = event_offset(e);
        check(offset >= start && offset <= start + size);
        if (e[0] != 'R')
            continue;
        const std::size_t payload = e.size() - (e.find(' ', e.find(' ', 2) + 1) + 1);
        check(offset + 8 + payload <= start + size);
        const std::uint64_t index = event_index(e);
        check(!any || (offset > last_offset && index > last_index));
        any = true;
        last_offset = offset;
        last_index = index;
    }
}

void fuzz_raw(std::string_view input)
{
    const std::vector<std::size_t> thirds{input.size() / 3, 2 * input.size() / 3};
    const std::vector<std::size_t> derived = derived_cuts(input);
    const std::vector<std::size_t> bytes = input.size() <= 512 ? every_byte(input.size()) : std::vector<std::size_t>{};
    constexpr std::uint64_t start = 12;  // a byte range of a larger object
    for (const recordio_options& options : {recordio_options{}, recordio_options{.max_record_size = 24}}) {
        for (bool search : {false, true}) {
            recordio_decoder d(options);
            const test::feed_options opt{.start_offset = start, .resync_first = search};
            const auto whole = test::transcript(d, input, opt);
            check_bounds(whole, start, input.size());
            check(test::transcript(d, input, thirds, opt) == whole);
            check(test::transcript(d, input, derived, opt) == whole);
            if (!bytes.empty())
                check(test::transcript(d, input, bytes, opt) == whole);
        }
    }
}

void fuzz_round_trip(std::string_view input)
{
    if (input.empty())
        return;
    // Payloads: the rest of the input split at each occurrence of its first byte.
    std::vector<std::string_view> payloads;
    const char separator = input[0];
    std::string_view rest = input.substr(1);
    for (;;) {
        const auto at = rest.find(separator);
        payloads.push_back(rest.substr(0, at));
        if (at == std::string_view::npos)
            break;
        rest.remove_prefix(at + 1);
    }

    std::vector<std::byte> framed;
    std::vector<std::uint64_t> starts;
    std::ostringstream written;
    recordio_writer writer(written);
    for (const auto p : payloads) {
        starts.push_back(framed.size());
        append_recordio(framed, test::as_bytes(p));
        writer.write(test::as_bytes(p));
    }
    const std::string stream = test::as_string(framed);
    check(written.str() == stream);
    check(writer.records_written() == payloads.size() && writer.bytes_written() == stream.size());

    std::vector<std::string> expected;
    for (std::size_t i = 0; i < payloads.size(); ++i)
        expected.push_back(test::record_event(starts[i], i, payloads[i]));
    recordio_decoder d;
    check(test::transcript(d, stream) == expected);
    check(test::transcript(d, stream, derived_cuts(input)) == expected);
    if (stream.size() <= 512)
        check(test::transcript(d, stream, every_byte(stream.size())) == expected);

    // Mid-stream starts at aligned cuts chosen by the input (and at the last record's header).
    std::vector<std::size_t> cuts{starts.back()};
    for (std::size_t i = 0; i < 4 && i < input.size(); ++i)
        cuts.push_back((static_cast<unsigned char>(input[i]) * 4) % (stream.size() + 4));
    for (const std::size_t cut : cuts) {
        std::vector<std::string> tail;
        for (std::size_t i = 0, k = 0; i < payloads.size(); ++i)
            if (starts[i] >= cut)
                tail.push_back(test::record_event(starts[i], k++, payloads[i]));
        const test::feed_options opt{.start_offset = cut, .resync_first = true};
        check(test::transcript(d, std::string_view(stream).substr(std::min(cut, stream.size())), opt) == tail);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    fuzz_raw(input);
    fuzz_round_trip(input);
    return 0;
}
