// A stand-in for libFuzzer's main(), linked into the *.fuzz.cpp targets of builds that are not
// PIPEMODE_SANITIZER=fuzz (GCC has no libFuzzer). It feeds the target's
// LLVMFuzzerTestOneInput() every file of the seed corpus given on the command line, then
// deterministic inputs: random bytes, and seeds with bytes flipped, cut and spliced. That keeps
// each fuzz target compiled and exercised (under ASan and UBSan in the asan preset) by the
// ordinary test run; finding new crashes is the job of the fuzz preset.
//
// Usage: fuzz_<dir>_<name> [FILE_OR_DIRECTORY...]
// PIPEMODE_LONG_TESTS=1 raises the number of generated inputs from 20'000 to 1'000'000.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using input = std::vector<std::uint8_t>;

input read_file(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return input(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void run(const input& in)
{
    // A copy of exactly the input's size, so that ASan catches any read past the end.
    auto* copy = static_cast<std::uint8_t*>(std::malloc(in.size() ? in.size() : 1));
    std::copy(in.begin(), in.end(), copy);
    LLVMFuzzerTestOneInput(copy, in.size());
    std::free(copy);
}

} // namespace

int main(int argc, char** argv)
{
    std::vector<input> seeds;
    for (int i = 1; i < argc; ++i) {
        std::filesystem::path arg(argv[i]);
        if (std::filesystem::is_directory(arg)) {
            std::vector<std::filesystem::path> files;
            for (const auto& entry : std::filesystem::directory_iterator(arg))
                if (entry.is_regular_file())
                    files.push_back(entry.path());
            std::sort(files.begin(), files.end());  // deterministic order, hence reproducible runs
            for (const auto& f : files)
                seeds.push_back(read_file(f));
        } else {
            seeds.push_back(read_file(arg));
        }
    }
    for (const auto& s : seeds)
        run(s);

    const char* long_tests = std::getenv("PIPEMODE_LONG_TESTS");
    const long runs = long_tests && *long_tests && *long_tests != '0' ? 1'000'000 : 20'000;

    std::mt19937_64 rng(0x7069'7065'6d6f'6465ULL);
    auto below = [&rng](std::size_t n) { return n ? static_cast<std::size_t>(rng() % n) : 0; };
    input in;
    for (long i = 0; i < runs; ++i) {
        if (seeds.empty() || i % 4 == 0) {
            // Mostly short inputs, where framing and length checks live; now and then a long one.
            in.resize(below(i % 64 == 63 ? 1 << 16 : 256));
            for (auto& b : in)
                b = static_cast<std::uint8_t>(rng());
        } else {
            in = seeds[below(seeds.size())];
            switch (below(4)) {
            case 0:  // flip a few bytes
                for (std::size_t k = 0, n = 1 + below(4); k < n && !in.empty(); ++k)
                    in[below(in.size())] ^= static_cast<std::uint8_t>(1 + below(255));
                break;
            case 1:  // truncate
                in.resize(below(in.size() + 1));
                break;
            case 2: {  // splice the head of one seed onto the tail of another
                const auto& other = seeds[below(seeds.size())];
                in.resize(below(in.size() + 1));
                in.insert(in.end(), other.begin() + static_cast<std::ptrdiff_t>(below(other.size() + 1)),
                          other.end());
                break;
            }
            default:  // insert random bytes
                in.insert(in.begin() + static_cast<std::ptrdiff_t>(below(in.size() + 1)),
                          1 + below(8), static_cast<std::uint8_t>(rng()));
                break;
            }
        }
        run(in);
    }
    std::printf("%zu seed inputs and %ld generated inputs ran without a crash\n", seeds.size(), runs);
    return 0;
}
