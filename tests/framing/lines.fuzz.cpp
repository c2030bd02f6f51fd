// Fuzz target for line_decoder: on any input it must not crash or read out of bounds, what it
// says must not depend on how the input is cut, and no record may hold a "\n", end in a "\r"
// that ended its line, or exceed the cap.
#include <pipemode/framing/lines.hpp>

#include "decoder_harness.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace {

void check(bool condition)
{
    if (!condition)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using namespace pipemode;
    if (size == 0)
        return 0;
    // The first byte chooses the options; the rest is the text.
    const line_options options{.max_record_size = std::size_t{data[0]} % 16, .skip_empty = (data[0] & 0x80) != 0};
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::vector<std::size_t> thirds{input.size() / 3, 2 * input.size() / 3};
    std::vector<std::size_t> every;
    if (input.size() <= 600)
        for (std::size_t i = 1; i < input.size(); ++i)
            every.push_back(i);
    for (bool search : {false, true}) {
        line_decoder d(options);
        const test::feed_options opt{.start_offset = 9, .resync_first = search};
        const auto whole = test::transcript(d, input, opt);
        check(test::transcript(d, input, thirds, opt) == whole);
        if (!every.empty())
            check(test::transcript(d, input, every, opt) == whole);
        for (const auto& event : whole) {
            if (event[0] != 'R')
                continue;
            // "R offset index payload"
            const auto payload = std::string_view(event).substr(event.find(' ', event.find(' ', 2) + 1) + 1);
            check(payload.find('\n') == std::string_view::npos);
            check(payload.size() <= options.max_record_size);
            check(!payload.empty() || !options.skip_empty);
        }
    }
    return 0;
}
