// Fuzz target for protobuf_record_parser: on any input it must not crash or read out of bounds,
// must call the input malformed exactly when libprotobuf refuses it, and must leave the batch
// it writes into as it was when it refuses a record (the rows around it are intact).
//
// The seeds in protobuf_record.corpus/ are random records (tests/support/record_gen.hpp) as
// libprotobuf serializes them and as test::scrambler writes them.
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "record.pb.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace {

// A record of the schema the target's batches start with: feature "values" (float32 1, 2, 3)
// and label "values" (float32 4).
const std::vector<std::byte>& known_record()
{
    static const std::vector<std::byte> bytes = [] {
        static const float x[] = {1, 2, 3};
        static const float y[] = {4};
        const pipemode::tensor_entry features[] = {pipemode::tensor_entry::dense(x)};
        const pipemode::tensor_entry labels[] = {pipemode::tensor_entry::dense(y)};
        std::vector<std::byte> out;
        pipemode::encode_record(out, features, labels);
        return out;
    }();
    return bytes;
}

pipemode::record_view view(const void* data, std::size_t size, std::uint64_t index)
{
    return {std::as_bytes(std::span(static_cast<const char*>(data), size)), index * 100, index};
}

void check(bool condition)
{
    if (!condition)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using namespace pipemode;
    error_code ec;

    // Alone: the input is its own schema, so only malformed and unsupported input fails.
    {
        protobuf_record_parser parser;
        batch_builder builder(1);
        parser.parse(view(data, size, 0), "fuzz", builder, ec);
        aialgs::data::Record m;
        bool accepted = m.ParseFromArray(data, static_cast<int>(size));
        check(accepted == (ec != errc::malformed_protobuf));
        check(!ec || builder.empty());
        check(ec == errc::malformed_protobuf || ec == errc::unsupported_value || !ec);
    }

    // Between two good records of a fixed schema: whatever happens to the input, the good
    // rows come out whole, and the input's row exactly when it was accepted.
    {
        const auto& known = known_record();
        protobuf_record_parser parser;
        batch_builder builder(3);
        parser.parse(view(known.data(), known.size(), 0), "fuzz", builder, ec);
        check(!ec);
        parser.parse(view(data, size, 1), "fuzz", builder, ec);
        bool taken = !ec;
        parser.parse(view(known.data(), known.size(), 2), "fuzz", builder, ec);
        check(!ec);
        auto b = builder.take();
        check(b.size() == (taken ? 3u : 2u));
        auto x = b.feature("values").values<float>();
        auto y = b.label("values").values<float>();
        check(x.size() == 3 * b.size() && y.size() == b.size());
        for (std::size_t row : {std::size_t{0}, b.size() - 1}) {
            check(x[3 * row] == 1 && x[3 * row + 1] == 2 && x[3 * row + 2] == 3 && y[row] == 4);
            check(b.location(row).record_index == (row == 0 ? 0 : 2));
        }
    }
    return 0;
}
