// Tests of recordio_wrapper, the agent's streaming RecordIO wrapper: for payloads with and
// without aligned magic words (at the start, the end, back to back, unaligned), fed in every
// cut into two pieces and in small pieces, with the length known, unknown, and given late:
// the consumer's recordio_decoder gets back exactly one record equal to the payload; while the
// window holds every magic-free stretch the bytes are write_recordio's, byte for byte; the
// memory held stays near the window; wrong lengths are errors.
#include <pipemode/sagemaker/recordio_wrapper.hpp>

#include <pipemode/framing/recordio.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

// This file's names stay its own: the files of tests/sagemaker/ are compiled as one translation
// unit (tests/CMakeLists.txt).
namespace recordio_wrapper_test {

using namespace pipemode;
using namespace pipemode::sagemaker;

namespace {

using bytes = std::vector<std::byte>;

const std::string magic_str("\x0a\x23\xd7\xce", 4);

bytes to_bytes(const std::string& s)
{
    bytes b(s.size());
    if (!s.empty())
        std::memcpy(b.data(), s.data(), s.size());
    return b;
}

// Feeds `payload` to a wrapper in pieces of the sizes `cuts` gives (cycled), with the length
// known or not; when the wrapper asks for the length it is given. Returns the framed bytes.
bytes wrap(const bytes& payload, std::optional<std::uint64_t> length, std::size_t window,
           const std::vector<std::size_t>& cuts, bool* committed = nullptr)
{
    recordio_wrapper w(length, window);
    bytes out;
    const auto drain = [&] {
        for (auto piece : w.output())
            out.insert(out.end(), piece.begin(), piece.end());
    };
    std::size_t at = 0;
    for (std::size_t i = 0; at < payload.size(); ++i) {
        const std::size_t n = std::min(cuts[i % cuts.size()], payload.size() - at);
        w.put(std::span(payload).subspan(at, n));
        at += n;
        drain();
        if (w.needs_length()) {
            w.set_length(payload.size());
            drain();
        }
    }
    w.finish();
    drain();
    if (committed)
        *committed = w.committed();
    return out;
}

// Decodes `stream` with the consumer's decoder, fed in pieces of 7 bytes: every record.
std::vector<bytes> decode(const bytes& stream)
{
    recordio_decoder d;
    std::vector<bytes> records;
    error_code ec;
    for (std::size_t at = 0; at < stream.size();) {
        auto in = std::span(stream).subspan(at, std::min<std::size_t>(7, stream.size() - at));
        while (!in.empty() || d.has_record()) {
            const auto used = d.put(in, ec);
            REQUIRE_FALSE(ec);
            in = in.subspan(used);
            at += used;
            if (d.has_record()) {
                const auto p = d.record().payload;
                records.emplace_back(p.begin(), p.end());
                d.pop();
            }
        }
    }
    d.finish(ec);
    REQUIRE_FALSE(ec);
    return records;
}

bytes reference(const bytes& payload)
{
    bytes out;
    append_recordio(out, payload);
    return out;
}

// Payloads with magic words where the splitting rule has cases.
std::vector<std::pair<std::string, bytes>> payloads()
{
    std::vector<std::pair<std::string, bytes>> v;
    v.emplace_back("empty", bytes{});
    v.emplace_back("3 bytes", to_bytes("abc"));
    v.emplace_back("no magic", to_bytes("abcdefghijklmnopqrstuvwxyz0123456789"));
    v.emplace_back("magic only", to_bytes(magic_str));
    v.emplace_back("magic first", to_bytes(magic_str + "abcdefg"));
    v.emplace_back("magic last", to_bytes("abcdefgh" + magic_str));
    v.emplace_back("magic twice in a row", to_bytes("abcd" + magic_str + magic_str + "efgh" + magic_str + "ij"));
    v.emplace_back("unaligned magic", to_bytes("ab" + magic_str + "cdefgh"));
    std::mt19937_64 rng(5);
    bytes big(3000);
    for (auto& b : big)
        b = static_cast<std::byte>(rng());
    for (std::size_t at : {0, 400, 404, 1200, 2996})
        std::memcpy(big.data() + at, magic_str.data(), 4);
    std::memcpy(big.data() + 1001, magic_str.data(), 4);  // unaligned: stays
    v.emplace_back("3000 random bytes with magic words", big);
    return v;
}

} // namespace

TEST_CASE("recordio_wrapper: with a window larger than the payload, write_recordio's bytes for every two-piece cut")
{
    for (const auto& [name, payload] : payloads()) {
        INFO(name);
        const auto want = reference(payload);
        for (std::size_t cut = 0; cut <= payload.size(); cut += (payload.size() > 64 ? 37 : 1)) {
            INFO("cut at " << cut);
            const std::vector<std::size_t> cuts{std::max<std::size_t>(cut, 1), payload.size() + 1};
            CHECK(wrap(payload, payload.size(), 1 << 20, cuts) == want);
            CHECK(wrap(payload, std::nullopt, 1 << 20, cuts) == want);
        }
        CHECK(decode(want) == std::vector<bytes>{payload});
    }
}

TEST_CASE("recordio_wrapper: a small window streams the payload as one record the decoder reassembles")
{
    for (const auto& [name, payload] : payloads()) {
        INFO(name);
        for (std::size_t window : {1, 4, 5, 16, 100, 1000}) {
            for (std::size_t piece : {1, 3, 4, 64, 999}) {
                INFO("window " << window << ", pieces of " << piece);
                bool committed = false;
                const auto known = wrap(payload, payload.size(), window, {piece}, &committed);
                CHECK(decode(known) == std::vector<bytes>{payload});
                // The framing stays on the 4-byte grid: the padded length of a record.
                CHECK(known.size() % 4 == 0);
                const auto late = wrap(payload, std::nullopt, window, {piece});
                CHECK(late == known);
                // Every magic-free stretch fits the window: nothing to commit, write_recordio's bytes.
                if (!committed)
                    CHECK(known == reference(payload));
            }
        }
    }
}

TEST_CASE("recordio_wrapper: cuts at the magic words it holds, then passes the rest through uncopied")
{
    // 16 bytes, a magic word, then 40 bytes without one; window 8: the first part is cut at
    // the magic word, the rest is committed as the last part once 8 bytes of it are held.
    const bytes payload = to_bytes(std::string(16, 'a') + magic_str + std::string(40, 'b'));
    recordio_wrapper w(payload.size(), 8);
    w.put(std::span(payload).first(30));
    auto out = w.output();
    CHECK(w.committed());
    CHECK(out[1].empty());
    bytes framed(out[0].begin(), out[0].end());
    CHECK(framed.size() == 8 + 16 + 8 + 10);  // first part (header, 16 bytes), last part's header, 10 bytes held
    w.put(std::span(payload).subspan(30));
    out = w.output();
    CHECK(out[0].empty());
    CHECK(out[1].data() == payload.data() + 30);  // the caller's bytes themselves
    framed.insert(framed.end(), out[1].begin(), out[1].end());
    w.finish();
    out = w.output();
    framed.insert(framed.end(), out[0].begin(), out[0].end());
    CHECK(framed == reference(payload));
    CHECK(decode(framed) == std::vector<bytes>{payload});
}

TEST_CASE("recordio_wrapper: with the length unknown, frames nothing until the window is full, then asks for the length")
{
    bytes payload(1 << 20, std::byte{'x'});
    recordio_wrapper w(std::nullopt, 64 * 1024);
    std::size_t at = 0;
    bytes framed;
    while (!w.needs_length()) {
        w.put(std::span(payload).subspan(at, 4096));
        at += 4096;
        for (auto piece : w.output())
            CHECK(piece.empty());  // nothing can be framed before the length is known
    }
    CHECK(at == 64 * 1024 + 4096);
    CHECK_THROWS_AS(w.put(std::span(payload).subspan(at, 1)), std::logic_error);
    w.set_length(payload.size());
    for (auto piece : w.output())
        framed.insert(framed.end(), piece.begin(), piece.end());
    w.put(std::span(payload).subspan(at));
    for (auto piece : w.output())
        framed.insert(framed.end(), piece.begin(), piece.end());
    w.finish();
    for (auto piece : w.output())
        framed.insert(framed.end(), piece.begin(), piece.end());
    CHECK(framed == reference(payload));
}

TEST_CASE("recordio_wrapper: a payload that is not the length given, or too long for a record, is an error")
{
    const bytes payload = to_bytes("0123456789");
    {
        recordio_wrapper w(9);
        CHECK_THROWS_AS(w.put(payload), std::length_error);
    }
    {
        recordio_wrapper w(11);
        w.put(payload);
        CHECK_THROWS_AS(w.finish(), std::length_error);
    }
    {
        recordio_wrapper w;
        w.put(payload);
        CHECK_THROWS_AS(w.set_length(5), std::length_error);
    }
    CHECK_THROWS_AS(recordio_wrapper(std::uint64_t{recordio_max_part_length} + 1), std::length_error);
    CHECK_NOTHROW(recordio_wrapper(std::uint64_t{recordio_max_part_length}));
    CHECK_THROWS_AS(recordio_wrapper(std::nullopt, 0), std::invalid_argument);
}

} // namespace recordio_wrapper_test
