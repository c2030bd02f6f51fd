// pipemode: a framed record as decoders hand it out.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace pipemode {

/// One record cut out of a byte stream by a framing decoder.
///
/// `payload` points either into the input the decoder was last given or into the decoder's
/// own reassembly buffer; it stays valid until the next call to the decoder's `put()`,
/// `pop()`, `finish()` or `reset()`.
struct record_view {
    std::span<const std::byte> payload;  ///< the record's bytes, framing removed
    std::uint64_t offset = 0;            ///< byte offset of the record's first header in its source
    std::uint64_t index = 0;             ///< index of the record within its source, from 0
};

} // namespace pipemode
