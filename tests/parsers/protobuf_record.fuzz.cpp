// Fuzz target for protobuf_record_parser: on any input it must not crash or read out of bounds,
// must call the input malformed exactly when libprotobuf refuses it, must leave the batch it
// writes into as it was when it refuses a record (the rows around it are intact), and must read
// the input the same way again when it comes twice (the second time through the layout the
// first one left).
//
// The seeds in protobuf_record.corpus/ are random records (tests/support/record_gen.hpp) as
// libprotobuf serializes them and as test::scrambler writes them.
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include "record.pb.h"

#include <algorithm>
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

    // Twice through one parser: the second parse may take the layout the first one left
    // behind (parse_known_layout), and must read the input exactly as the first did.
    {
        protobuf_record_parser parser;
        batch_builder builder(2);
        error_code first, second;
        parser.parse(view(data, size, 0), "fuzz", builder, first);
        parser.parse(view(data, size, 1), "fuzz", builder, second);
        check(first == second);
        if (!first) {
            auto b = builder.take();
            check(b.size() == 2);
            auto same_rows = [](const column& c) {
                auto equal = [&](auto element) {
                    using T = decltype(element);
                    auto r0 = c.row<T>(0);
                    auto r1 = c.row<T>(1);
                    return r0.size() == r1.size()
                        && (r0.empty() || std::memcmp(r0.data(), r1.data(), r0.size_bytes()) == 0);
                };
                bool values = false;
                switch (c.type()) {
                case tensor_type::float32: values = equal(float{}); break;
                case tensor_type::float64: values = equal(double{}); break;
                case tensor_type::int32: values = equal(std::int32_t{}); break;
                case tensor_type::bytes: values = equal(std::byte{}); break;
                }
                if (!values)
                    return false;
                if (!c.is_sparse())
                    return true;
                auto k0 = c.row_keys(0);
                auto k1 = c.row_keys(1);
                return std::equal(k0.begin(), k0.end(), k1.begin(), k1.end());
            };
            for (const auto& c : b.features())
                check(same_rows(c));
            for (const auto& c : b.labels())
                check(same_rows(c));
        }
    }
    return 0;
}
