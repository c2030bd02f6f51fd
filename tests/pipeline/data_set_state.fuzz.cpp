// Fuzz target for the resume state a data_set_reader checkpoints (data_set_state::from_json and
// to_json).
//
// On any input:
// - from_json either returns a state or throws std::invalid_argument (never another exception,
//   a crash or an out-of-bounds read);
// - a state it returns is consistent: world_size > 0, rank < world_size, every history entry
//   has a non-zero world size and exactly one cursor per rank of it;
// - to_json() of that state is one line of JSON, parses back to the same state, and is a fixed
//   point (writing the re-read state gives the same text);
// - resume_state() with that state alone and the same world size gives it back unchanged; a
//   one-rank state resumed by two ranks gains one history entry and round-trips too.
//
// The seeds in data_set_state.corpus/ are states as a reader writes them: a fresh one, one in
// the middle of a block, one resumed after two changes of world size, and the 64-bit extremes.
#include <pipemode/pipeline/data_set.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using namespace pipemode;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

std::optional<data_set_state> parse(std::string_view text)
{
    try {
        return data_set_state::from_json(text);
    } catch (const std::invalid_argument&) {
        return std::nullopt;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto state = parse(input);
    if (!state)
        return 0;
    check(state->world_size > 0 && state->rank < state->world_size);
    for (const auto& run : state->history)
        check(run.world_size > 0 && run.cursors.size() == run.world_size);

    const std::string json = state->to_json();
    check(json.find('\n') == std::string::npos);
    const auto again = parse(json);
    check(again && *again == *state);
    check(again->to_json() == json);

    // Resuming with the same world size gives the state back; a single old rank resumed by two
    // new ones gains a history entry and still round-trips.
    const data_set_state one[] = {*state};
    try {
        check(resume_state(std::span<const data_set_state>(one), state->rank, state->world_size) == *state);
        if (state->world_size == 1) {
            const data_set_state wider = resume_state(std::span<const data_set_state>(one), 1, 2);
            check(wider.history.size() == state->history.size() + 1 && wider.history.back().cursors.front() == state->cursor);
            const auto wider_again = parse(wider.to_json());
            check(wider_again && *wider_again == wider);
        }
    } catch (const std::invalid_argument&) {
        check(false);
    }
    return 0;
}
