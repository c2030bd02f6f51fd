// Test support: one protobuf Record's payload from tensor entries written inline.
#pragma once

#include <pipemode/parsers/protobuf_writer.hpp>

#include <cstddef>
#include <initializer_list>
#include <span>
#include <vector>

namespace pipemode::test {

/// The payload of one `aialgs.data.Record` with `features` and `labels`, as `encode_record`
/// writes it; lets a test spell a record as `encode({tensor_entry::dense(...)})`.
inline std::vector<std::byte> encode(std::initializer_list<tensor_entry> features,
                                     std::initializer_list<tensor_entry> labels = {})
{
    std::vector<std::byte> out;
    encode_record(out, std::span(features.begin(), features.size()), std::span(labels.begin(), labels.size()));
    return out;
}

} // namespace pipemode::test
