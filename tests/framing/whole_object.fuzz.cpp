// Fuzz target for whole_object_decoder (each object is one record).
//
// On any input, with a cap derived from the input's first byte and with the default cap:
// - what the decoder says does not depend on how the input is cut (whole, in thirds, in pieces
//   whose sizes come from the input, byte by byte for short inputs);
// - within the cap the transcript is exactly one record, the whole input at the start offset
//   with index 0; past the cap it is exactly one record_too_large error at the start offset
//   and, after resync(), nothing more (the rest of the object is dropped, not read as records).
//
// The seed in whole_object.corpus/ is a small JSON document, a typical whole object.
#include <pipemode/framing/whole_object.hpp>

#include "decoder_harness.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
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

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::size_t> derived;
    for (std::size_t at = 0, i = 0; size != 0; ++i) {
        at += 1 + data[i % size] % 31;
        if (at >= size)
            break;
        derived.push_back(at);
    }
    const std::vector<std::size_t> thirds{size / 3, 2 * size / 3};
    std::vector<std::size_t> every;
    if (size <= 512)
        for (std::size_t i = 1; i < size; ++i)
            every.push_back(i);

    const std::size_t small_cap = size == 0 ? 0 : data[0] % 64;
    constexpr std::uint64_t start = 100;
    for (const whole_object_options& options : {whole_object_options{}, whole_object_options{.max_record_size = small_cap}}) {
        whole_object_decoder d(options);
        const test::feed_options opt{.start_offset = start};
        const auto whole = test::transcript(d, input, opt);
        if (size <= options.max_record_size)
            check(whole == std::vector<std::string>{test::record_event(start, 0, input)});
        else
            check(whole.size() == 1 && whole[0] == test::error_event('E', make_error_code(errc::record_too_large), start, 0));
        check(test::transcript(d, input, thirds, opt) == whole);
        check(test::transcript(d, input, derived, opt) == whole);
        if (!every.empty())
            check(test::transcript(d, input, every, opt) == whole);
    }
    return 0;
}
