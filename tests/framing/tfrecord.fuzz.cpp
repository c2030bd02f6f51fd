// Fuzz target for tfrecord_decoder: on any input it must not crash or read out of bounds, and
// what it says (records, errors, offsets, indices) must not depend on how the input is cut,
// whether it starts at a record or searches for one with resync(), with and without data CRC
// checks and with a small cap.
//
// The seed in tfrecord.corpus/ is the Python-written stream of tfrecord_vectors.inc.
#include <pipemode/framing/tfrecord.hpp>

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
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::size_t> thirds{size / 3, 2 * size / 3};
    std::vector<std::size_t> every;
    if (size <= 600)
        for (std::size_t i = 1; i < size; ++i)
            every.push_back(i);
    for (const tfrecord_options& options :
         {tfrecord_options{}, tfrecord_options{.verify_data_crc = false}, tfrecord_options{.max_record_size = 40}}) {
        for (bool search : {false, true}) {
            tfrecord_decoder d(options);
            const test::feed_options opt{.start_offset = 5, .resync_first = search};
            const auto whole = test::transcript(d, input, opt);
            check(test::transcript(d, input, thirds, opt) == whole);
            if (!every.empty())
                check(test::transcript(d, input, every, opt) == whole);
        }
    }
    return 0;
}
