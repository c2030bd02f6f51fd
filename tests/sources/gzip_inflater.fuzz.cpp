// Fuzz target for gzip_inflater: on any input it must not crash or read out of bounds, and the
// output and the outcome (success, corrupt or truncated) must not depend on how the input is
// cut or on the size of the output buffer; what succeeds must agree with zlib's one-shot
// uncompress of the same members.
//
// The seeds in gzip_inflater.corpus/ are the streams of gzip_vectors.inc (Python's gzip
// module, the gzip tool, an empty member, several members).
#include <pipemode/sources/gzip_inflater.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

namespace {

void check(bool condition)
{
    if (!condition)
        std::abort();
}

struct outcome {
    std::string text;
    pipemode::error_code ec;
    bool operator==(const outcome&) const = default;
};

outcome run(std::span<const std::byte> input, std::size_t cut, std::size_t out_size)
{
    pipemode::gzip_inflater z;
    outcome o;
    std::vector<std::byte> out(out_size);
    for (auto piece : {input.first(cut), input.subspan(cut)}) {
        while (!piece.empty() || z.has_pending_output()) {
            auto [used, made] = z.inflate(piece, out, o.ec);
            o.text.append(reinterpret_cast<const char*>(out.data()), made);
            if (o.ec)
                return o;
            check(used != 0 || made != 0 || piece.empty());
            piece = piece.subspan(used);
            if (o.text.size() > 1 << 22)
                return o;  // a decompression bomb: enough
        }
    }
    z.finish(o.ec);
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
    const outcome a = run(input, size / 2, 4096);
    if (a.text.size() > 1 << 20)
        return 0;  // bombs end at different points with different buffer sizes
    const outcome b = run(input, size / 3, 7);
    const outcome c = run(input, 0, 1);
    check(a == b);
    check(a == c);
    check(!a.ec || a.ec == pipemode::errc::corrupt_gzip || a.ec == pipemode::errc::truncated_gzip);
    return 0;
}
