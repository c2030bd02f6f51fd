// Tests of the RecordIO decoder and writer: round trips, hand-built streams for every
// continuation case, every split point and truncation point, caps, errors and resync.
#include <pipemode/framing/recordio.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <memory>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace pipemode;

static_assert(record_decoder<recordio_decoder>);

namespace {

using bytes = std::vector<std::byte>;

// The magic word as it appears in a stream (little-endian).
const std::string magic_str("\x0a\x23\xd7\xce", 4);

bytes to_bytes(std::string_view s)
{
    bytes b(s.size());
    if (!s.empty())
        std::memcpy(b.data(), s.data(), s.size());
    return b;
}

std::string to_string(std::span<const std::byte> b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string le32(std::uint32_t v)
{
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i)
        s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

// A part header built by hand, independently of the writer.
std::string header(std::uint32_t cflag, std::uint32_t length)
{
    return magic_str + le32((cflag << 29) | length);
}

// A whole part built by hand: header, payload, zero padding.
std::string part(std::uint32_t cflag, std::string_view payload)
{
    std::string s = header(cflag, static_cast<std::uint32_t>(payload.size()));
    s += payload;
    s.append((4 - payload.size() % 4) % 4, '\0');
    return s;
}

std::string framed(std::string_view payload)
{
    bytes out;
    append_recordio(out, to_bytes(payload));
    return to_string(out);
}

struct decoded {
    std::string payload;
    std::uint64_t offset = 0;
    std::uint64_t index = 0;
    bool operator==(const decoded&) const = default;
};

struct failure {
    error_code ec;
    std::uint64_t offset = 0;
    std::uint64_t index = 0;
    bool operator==(const failure&) const = default;
};

std::ostream& operator<<(std::ostream& os, const decoded& d)
{
    os << "{size " << d.payload.size() << ", offset " << d.offset << ", index " << d.index << ", \"";
    for (unsigned char c : d.payload.substr(0, 24))
        os << (c >= 0x20 && c < 0x7f ? std::string(1, static_cast<char>(c)) : "\\x" + std::to_string(c));
    return os << (d.payload.size() > 24 ? "...\"}" : "\"}");
}

std::ostream& operator<<(std::ostream& os, const failure& f)
{
    return os << "{" << f.ec.message() << ", offset " << f.offset << ", index " << f.index << "}";
}

struct outcome {
    std::vector<decoded> records;
    std::vector<failure> failures;
    bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o)
{
    os << "records:";
    for (auto& r : o.records)
        os << ' ' << r;
    os << " failures:";
    for (auto& f : o.failures)
        os << ' ' << f;
    return os;
}

struct run_options {
    recordio_options decoder{};
    std::uint64_t start_offset = 0;
    bool resync = false;  // the skip policies: resync after every error and go on
};

// Feeds `data` cut at `cuts` (ascending positions) to a decoder, the way a pipeline does,
// then finishes. Each chunk is copied into its own allocation so that AddressSanitizer sees
// any read past the span given to put().
outcome run_cut(std::string_view data, const std::vector<std::size_t>& cuts, run_options opt = {})
{
    recordio_decoder d(opt.decoder);
    d.reset(opt.start_offset);
    outcome o;
    bool stopped = false;
    const auto on_error = [&](error_code ec) {
        o.failures.push_back({ec, d.offset(), d.records_started()});
        REQUIRE(o.failures.size() < 100);  // a decoder that fails in place must not hang the test
        if (opt.resync)
            d.resync();
        else
            stopped = true;
    };
    std::size_t from = 0;
    auto feed = [&](std::size_t to) {
        std::unique_ptr<std::byte[]> chunk(new std::byte[to - from]);
        if (to != from)
            std::memcpy(chunk.get(), data.data() + from, to - from);
        std::span<const std::byte> in(chunk.get(), to - from);
        from = to;
        while (!stopped) {
            error_code ec;
            const std::size_t n = d.put(in, ec);
            REQUIRE(n <= in.size());
            in = in.subspan(n);
            if (ec) {
                on_error(ec);
                continue;
            }
            if (d.has_record()) {
                const record_view r = d.record();
                CHECK(d.offset() == r.offset);
                CHECK(d.records_started() == r.index);
                o.records.push_back({to_string(r.payload), r.offset, r.index});
                d.pop();
                continue;
            }
            REQUIRE(in.empty());  // no record and no error: put() must have taken everything
            break;
        }
    };
    for (std::size_t c : cuts)
        feed(c);
    feed(data.size());
    if (!stopped) {
        error_code ec;
        d.finish(ec);
        if (ec)
            on_error(ec);
    }
    return o;
}

outcome run(std::string_view data, run_options opt = {}) { return run_cut(data, {}, opt); }

// Runs `data` whole, cut at every single position, and one byte at a time; all must agree.
outcome run_every_split(std::string_view data, run_options opt = {})
{
    const outcome whole = run(data, opt);
    for (std::size_t cut = 0; cut <= data.size(); ++cut) {
        INFO("cut at " << cut);
        REQUIRE(run_cut(data, {cut}, opt) == whole);
    }
    std::vector<std::size_t> every(data.size());
    for (std::size_t i = 0; i < data.size(); ++i)
        every[i] = i;
    INFO("one byte at a time");
    REQUIRE(run_cut(data, every, opt) == whole);
    return whole;
}

std::string random_payload(std::mt19937& rng, std::size_t size)
{
    std::string s(size, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng() & 0xff);
    return s;
}

// The framing of a stream as a list of part headers, walked without the decoder under test.
struct part_header {
    std::size_t offset;
    std::uint32_t cflag;
    std::uint32_t length;
};

std::vector<part_header> walk(std::string_view s)
{
    std::vector<part_header> parts;
    std::size_t at = 0;
    while (at < s.size()) {
        REQUIRE(s.substr(at, 4) == magic_str);
        std::uint32_t word = 0;
        std::memcpy(&word, s.data() + at + 4, 4);
        parts.push_back({at, word >> 29, word & recordio_max_part_length});
        at += 8 + (((word & recordio_max_part_length) + 3) & ~3U);
    }
    REQUIRE(at == s.size());
    return parts;
}

} // namespace

TEST_CASE("writer splits exactly at aligned magic words and pads with zeros", "[recordio]")
{
    const std::string m = magic_str;

    // Padding: lengths 0..5.
    CHECK(framed("") == header(0, 0));
    CHECK(framed("a") == header(0, 1) + "a" + std::string(3, '\0'));
    CHECK(framed("ab") == header(0, 2) + "ab" + std::string(2, '\0'));
    CHECK(framed("abc") == header(0, 3) + "abc" + std::string(1, '\0'));
    CHECK(framed("abcd") == header(0, 4) + "abcd");
    CHECK(framed("abcde") == header(0, 5) + "abcde" + std::string(3, '\0'));

    // The magic word at aligned offsets: the word is dropped and a new part begins.
    CHECK(framed(m) == header(1, 0) + header(3, 0));
    CHECK(framed(m + "xyz") == header(1, 0) + part(3, "xyz"));
    CHECK(framed("abcd" + m + "ef") == part(1, "abcd") + part(3, "ef"));
    CHECK(framed("abcd" + m) == part(1, "abcd") + header(3, 0));
    CHECK(framed(m + m) == header(1, 0) + header(2, 0) + header(3, 0));
    CHECK(framed("abcd" + m + m + "efgh" + m + "ij")
          == part(1, "abcd") + header(2, 0) + part(2, "efgh") + part(3, "ij"));

    // Unaligned: never split.
    for (std::string prefix : {"a", "ab", "abc", "abcde"}) {
        INFO("prefix " << prefix);
        const std::string payload = prefix + m + "zz";
        CHECK(framed(payload) == part(0, payload));
    }
}

TEST_CASE("round trips through writer and decoder", "[recordio]")
{
    const std::string m = magic_str;
    std::mt19937 rng(20240611);
    const std::vector<std::string> payloads = {
        "", "a", "ab", "abc", "abcd", "abcde",
        m, m + "abc", "abcd" + m, "abcd" + m + "e", m + m, m + m + m, "abcd" + m + m + "efgh",
        "a" + m, "ab" + m + "c", "abc" + m + m, "abcdefg" + m,
        random_payload(rng, 70000),
    };

    std::string stream;
    std::vector<decoded> expected;
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        expected.push_back({payloads[i], stream.size(), i});
        stream += framed(payloads[i]);
    }

    SECTION("whole")
    {
        const outcome o = run(stream);
        CHECK(o.failures.empty());
        CHECK(o.records == expected);
    }
    SECTION("cut at every byte and fed one byte at a time")
    {
        // The big payload makes the every-split pass slow; leave it to the section above.
        std::string small = stream.substr(0, static_cast<std::size_t>(expected.back().offset));
        std::vector<decoded> small_expected(expected.begin(), expected.end() - 1);
        const outcome o = run_every_split(small);
        CHECK(o.failures.empty());
        CHECK(o.records == small_expected);
    }
    SECTION("non-zero start offset")
    {
        const outcome o = run(stream, {.start_offset = 1'000'000});
        REQUIRE(o.records.size() == expected.size());
        for (std::size_t i = 0; i < expected.size(); ++i) {
            CHECK(o.records[i].offset == expected[i].offset + 1'000'000);
            CHECK(o.records[i].payload == expected[i].payload);
        }
    }
}

TEST_CASE("many random records, some with magic words, survive a round trip", "[recordio]")
{
    std::mt19937 rng(7);
    std::string stream;
    std::vector<decoded> expected;
    for (std::size_t i = 0; i < 3000; ++i) {
        std::string payload = random_payload(rng, rng() % 600);
        // Plant magic words at random offsets, aligned or not.
        for (unsigned k = rng() % 4; k > 0 && payload.size() >= 4; --k)
            payload.replace(rng() % (payload.size() - 3), 4, magic_str);
        expected.push_back({payload, stream.size(), i});
        stream += framed(payload);
    }

    // Written by the writer, the stream holds no aligned magic word outside a header.
    const auto parts = walk(stream);
    std::size_t next = 0;
    for (std::size_t at = 0; at + 4 <= stream.size(); at += 4) {
        const bool is_header = next < parts.size() && parts[next].offset == at;
        if (is_header)
            ++next;
        else
            REQUIRE(stream.compare(at, 4, magic_str) != 0);
    }

    const outcome whole = run(stream);
    CHECK(whole.failures.empty());
    CHECK(whole.records == expected);

    // Cuts as a network source produces them.
    std::vector<std::size_t> cuts;
    for (std::size_t at = rng() % 5000; at < stream.size(); at += 1 + rng() % 5000)
        cuts.push_back(at);
    CHECK(run_cut(stream, cuts) == whole);
}

TEST_CASE("recordio_writer writes the same bytes to a std::ostream and a std::FILE*", "[recordio]")
{
    const std::vector<std::string> payloads = {"", "hello", magic_str + "x", std::string(1000, 'q')};
    bytes expected;
    for (auto& p : payloads)
        append_recordio(expected, to_bytes(p));

    std::ostringstream os;
    recordio_writer w(os);
    for (auto& p : payloads)
        w.write(to_bytes(p));
    CHECK(os.str() == to_string(expected));
    CHECK(w.records_written() == payloads.size());
    CHECK(w.bytes_written() == expected.size());

    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    recordio_writer fw(f);
    for (auto& p : payloads)
        fw.write(to_bytes(p));
    std::rewind(f);
    std::string read(expected.size() + 1, '\0');
    CHECK(std::fread(read.data(), 1, read.size(), f) == expected.size());
    read.resize(expected.size());
    CHECK(read == to_string(expected));
    std::fclose(f);

    // A stream that cannot be written to is an exception, not a silently short file.
    std::ostream broken(nullptr);
    recordio_writer bw(broken);
    CHECK_THROWS_AS(bw.write(to_bytes("x")), std::ios_base::failure);

    // A payload the 29-bit length cannot describe is refused before anything is written.
    constexpr std::size_t too_long = std::size_t{recordio_max_part_length} + 1;
    std::unique_ptr<std::byte[]> huge(new std::byte[too_long]);  // never touched
    bytes out;
    CHECK_THROWS_AS(append_recordio(out, {huge.get(), too_long}), std::length_error);
    CHECK(out.empty());
}

TEST_CASE("hand-built continuation sequences decode to the reassembled payloads", "[recordio]")
{
    const std::string m = magic_str;
    struct example {
        const char* name;
        std::string stream;
        std::vector<std::string> payloads;
    };
    const std::vector<example> examples = {
        {"whole", part(0, "hello"), {"hello"}},
        {"empty whole", header(0, 0), {""}},
        {"first, last", part(1, "abcd") + part(3, "ef"), {"abcd" + m + "ef"}},
        {"first, middle, middle, last", part(1, "abcd") + part(2, "efgh") + part(2, "ijkl") + part(3, "m"),
         {"abcd" + m + "efgh" + m + "ijkl" + m + "m"}},
        {"zero-length parts", header(1, 0) + header(2, 0) + header(3, 0), {m + m}},
        {"zero-length first and last", header(1, 0) + part(2, "abcd") + header(3, 0), {m + "abcd" + m}},
        // dmlc pads every part, so a reader must accept unaligned middle parts too.
        {"unaligned parts", part(1, "ab") + part(2, "cde") + part(3, "f"), {"ab" + m + "cde" + m + "f"}},
        // The SageMaker SDK never splits: an aligned magic word inside a whole record is data.
        {"magic inside a whole record", part(0, "abcd" + m + "ef"), {"abcd" + m + "ef"}},
        {"mixed",
         part(0, "x") + part(1, "abcd") + part(3, "") + header(0, 0) + part(1, "") + part(2, "yz")
             + part(3, "w"),
         {"x", "abcd" + m, "", m + "yz" + m + "w"}},
    };
    for (const auto& ex : examples) {
        INFO(ex.name);
        const outcome o = run_every_split(ex.stream);
        CHECK(o.failures.empty());
        REQUIRE(o.records.size() == ex.payloads.size());
        for (std::size_t i = 0; i < ex.payloads.size(); ++i) {
            CHECK(o.records[i].payload == ex.payloads[i]);
            CHECK(o.records[i].index == i);
        }
    }

    // Offsets are those of each record's first header.
    const std::string s = part(0, "x") + part(1, "abcd") + part(3, "") + part(0, "y");
    const outcome o = run(s);
    REQUIRE(o.records.size() == 3);
    CHECK(o.records[0].offset == 0);
    CHECK(o.records[1].offset == 12);
    CHECK(o.records[2].offset == 12 + 12 + 8);
}

TEST_CASE("padding is not checked, as in the dmlc reader", "[recordio]")
{
    std::string s = part(0, "a") + part(0, "b");
    s[9] = 'P';  // padding of the first record
    const outcome o = run(s);
    CHECK(o.failures.empty());
    CHECK(o.records == std::vector<decoded>{{"a", 0, 0}, {"b", 12, 1}});
}

TEST_CASE("truncation anywhere yields the complete records and then truncated_record", "[recordio]")
{
    const std::string m = magic_str;
    std::string stream;
    std::vector<decoded> all;
    std::vector<std::size_t> ends;
    for (const std::string& p : {std::string("abc"), std::string(""), "abcd" + m + "ef", m, std::string("hello!"),
                                 "abcd" + m + m + "efgh"}) {
        all.push_back({p, stream.size(), all.size()});
        stream += framed(p);
        ends.push_back(stream.size());
    }

    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        INFO("input ends at " << cut);
        const std::string_view prefix(stream.data(), cut);
        std::size_t complete = 0;
        while (complete < ends.size() && ends[complete] <= cut)
            ++complete;
        const std::vector<decoded> expected(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(complete));
        const bool at_boundary = cut == 0 || (complete > 0 && ends[complete - 1] == cut);

        for (const outcome& o : {run(prefix), run_cut(prefix, {cut / 2})}) {
            CHECK(o.records == expected);
            if (at_boundary) {
                CHECK(o.failures.empty());
            } else {
                REQUIRE(o.failures.size() == 1);
                CHECK(o.failures[0] == failure{errc::truncated_record, all[complete].offset, complete});
            }
        }
    }
}

TEST_CASE("lengths above the cap are refused from the header, without allocating", "[recordio]")
{
    SECTION("the largest length a header can carry")
    {
        const std::string s = header(0, recordio_max_part_length) + "abcdefgh";
        recordio_decoder d(recordio_options{.max_record_size = 1 * 1024 * 1024});
        error_code ec;
        const bytes in = to_bytes(s);
        const std::size_t n = d.put(in, ec);
        CHECK(ec == errc::record_too_large);
        CHECK(n == 8);
        CHECK_FALSE(d.has_record());
        CHECK(d.buffer_capacity() == 0);
        CHECK(d.offset() == 0);
        CHECK(d.records_started() == 0);
        // Sticky until resync() or reset().
        CHECK(d.put(std::span(in).subspan(n), ec) == 0);
        CHECK(ec == errc::record_too_large);
    }
    SECTION("a length within the cap whose bytes have not arrived costs nothing")
    {
        recordio_decoder d;  // 64 MiB cap
        const bytes in = to_bytes(header(0, 60 * 1024 * 1024) + std::string(100, 'z'));
        error_code ec;
        CHECK(d.put(in, ec) == in.size());
        CHECK(!ec);
        CHECK(d.buffer_capacity() < 4096);
    }
    SECTION("whole records at and just above the cap")
    {
        const run_options cap{.decoder = {.max_record_size = 10}};
        CHECK(run(part(0, "0123456789"), cap).records == std::vector<decoded>{{"0123456789", 0, 0}});
        CHECK(run(part(0, "0123456789a"), cap).failures == std::vector<failure>{{errc::record_too_large, 0, 0}});
    }
    SECTION("split records count the re-inserted magic words")
    {
        const run_options cap{.decoder = {.max_record_size = 12}};
        const std::string m = magic_str;
        // 4 + 4 + 4 = 12 bytes: fits.
        CHECK(run_every_split(part(1, "abcd") + part(3, "efgh"), cap).records
              == std::vector<decoded>{{"abcd" + m + "efgh", 0, 0}});
        // 13 bytes: refused at the last part's header; the record began at offset 0.
        CHECK(run(part(0, "x") + part(1, "abcd") + part(3, "efghi"), cap).failures
              == std::vector<failure>{{errc::record_too_large, 12, 1}});
        // A first part of 9 bytes cannot make a record of 12 or fewer (9 + magic + rest).
        CHECK(run(part(1, "abcdefghi") + header(3, 0), cap).failures
              == std::vector<failure>{{errc::record_too_large, 0, 0}});
        // A middle part of 0 bytes after 8 needs 8 + 4 + 0 + 4 > 12.
        CHECK(run(part(1, "abcdefgh") + header(2, 0) + header(3, 0), cap).failures
              == std::vector<failure>{{errc::record_too_large, 0, 0}});
    }
    SECTION("the reassembly buffer never exceeds the bytes of the largest record received")
    {
        std::string s;
        for (int i = 0; i < 50; ++i)
            s += part(1, std::string(1000, 'a')) + part(3, std::string(1000, 'b'));
        recordio_decoder d;
        std::size_t from = 0;
        error_code ec;
        while (from < s.size()) {
            const std::string_view piece = std::string_view(s).substr(from, 333);
            const bytes in = to_bytes(piece);
            std::span<const std::byte> rest(in);
            while (!rest.empty()) {
                rest = rest.subspan(d.put(rest, ec));
                REQUIRE(!ec);
                if (d.has_record()) {
                    CHECK(d.record().payload.size() == 2004);
                    d.pop();
                }
            }
            from += piece.size();
        }
        CHECK(d.buffer_capacity() <= 4096);
    }
}

TEST_CASE("bad magic and bad continuation flags are reported where the record began", "[recordio]")
{
    const std::string ok = part(0, "ok!!");  // 12 bytes
    struct example {
        const char* name;
        std::string stream;  // appended after two good records
        errc error;
        std::uint64_t offset;  // relative to the end of the good records
    };
    std::string not_magic = "ABCD" + le32(4) + "abcd";
    const std::vector<example> examples = {
        {"bad magic", not_magic, errc::bad_magic, 0},
        {"bad magic in a part", part(1, "abcd") + not_magic, errc::bad_magic, 0},
        {"middle without first", part(2, "abcd") + part(3, "x"), errc::bad_continuation, 0},
        {"last without first", part(3, "abcd"), errc::bad_continuation, 0},
        {"whole inside a split record", part(1, "abcd") + part(0, "x"), errc::bad_continuation, 0},
        {"first inside a split record", part(1, "abcd") + part(2, "") + part(1, "x"), errc::bad_continuation, 0},
        {"flag 4", part(4, "abcd"), errc::bad_continuation, 0},
        {"flag 5", part(5, "abcd"), errc::bad_continuation, 0},
        {"flag 6", part(6, "abcd"), errc::bad_continuation, 0},
        {"flag 7 in a part", part(1, "abcd") + part(7, ""), errc::bad_continuation, 0},
    };
    for (const auto& ex : examples) {
        INFO(ex.name);
        const outcome o = run_every_split(ok + ok + ex.stream);
        CHECK(o.records == std::vector<decoded>{{"ok!!", 0, 0}, {"ok!!", 12, 1}});
        CHECK(o.failures == std::vector<failure>{{ex.error, 24 + ex.offset, 2}});
    }
}

TEST_CASE("resync skips a damaged record and recovers the following ones with their indices", "[recordio]")
{
    std::mt19937 rng(99);
    std::string stream;
    std::vector<decoded> all;
    for (std::size_t i = 0; i < 10; ++i) {
        std::string p = random_payload(rng, 1 + rng() % 40);
        if (i == 6)
            p = "abcd" + magic_str + "split";  // a split record after the damage
        all.push_back({p, stream.size(), i});
        stream += framed(p);
    }
    const auto at4 = static_cast<std::size_t>(all[4].offset);
    const auto at5 = static_cast<std::size_t>(all[5].offset);
    const run_options skip{.resync = true};
    auto without = [&](std::size_t bad) {
        std::vector<decoded> v = all;
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(bad));
        return v;
    };

    SECTION("damaged magic word")
    {
        std::string s = stream;
        s[at4 + 1] = 'X';
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == without(4));
        CHECK(o.failures == std::vector<failure>{{errc::bad_magic, at4, 4}});
    }
    SECTION("damaged length: too large")
    {
        std::string s = stream;
        s[at4 + 7] = '\x1f';  // length bits 24-28: over 500 MiB
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == without(4));
        CHECK(o.failures == std::vector<failure>{{errc::record_too_large, at4, 4}});
    }
    SECTION("damaged flags")
    {
        std::string s = stream;
        s[at4 + 7] = static_cast<char>(s[at4 + 7] | 0x40);  // flag 2
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == without(4));
        CHECK(o.failures == std::vector<failure>{{errc::bad_continuation, at4, 4}});
    }
    SECTION("a whole record overwritten with garbage")
    {
        std::string s = stream;
        for (std::size_t i = at4; i < at5; ++i)
            s[i] = static_cast<char>(0x55 + i);
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == without(4));
        CHECK(o.failures == std::vector<failure>{{errc::bad_magic, at4, 4}});
    }
    SECTION("garbage with decoy magic words before the next record")
    {
        // Aligned magic words followed by words that are no record start: flag 3, flag 6 (the
        // magic word itself), a length above the cap, and at last the next record's own magic.
        const std::string decoys = "JUNK" + header(3, 4) + magic_str + magic_str + "JUNK" + header(0, 2000)
            + "JKJU" + magic_str;
        std::string s = stream.substr(0, at4) + decoys + stream.substr(at4);
        const outcome o = run_every_split(s, {.decoder = {.max_record_size = 1000}, .resync = true});
        // The garbage took the place of one record; the records after it keep their content
        // and are counted on from there.
        REQUIRE(o.records.size() == all.size());
        for (std::size_t i = 0; i < all.size(); ++i) {
            const std::uint64_t shift = i >= 4 ? decoys.size() : 0;
            CHECK(o.records[i] == decoded{all[i].payload, all[i].offset + shift, i + (i >= 4 ? 1 : 0)});
        }
        CHECK(o.failures == std::vector<failure>{{errc::bad_magic, at4, 4}});
    }
    SECTION("a split record cut short by a whole record")
    {
        // The broken record is dropped; the whole record that interrupted it is kept.
        const std::string s = part(0, "a") + part(1, "abcd") + part(0, "b") + part(0, "c");
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == std::vector<decoded>{{"a", 0, 0}, {"b", 24, 2}, {"c", 36, 3}});
        CHECK(o.failures == std::vector<failure>{{errc::bad_continuation, 12, 1}});
    }
    SECTION("the interrupting record is the last, empty record of the input")
    {
        const std::string s = part(1, "abcd") + header(0, 0);
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == std::vector<decoded>{{"", 12, 1}});
        CHECK(o.failures == std::vector<failure>{{errc::bad_continuation, 0, 0}});

        // resync() judges the kept header at once: the record is there without another put().
        recordio_decoder d;
        error_code ec;
        CHECK(d.put(to_bytes(s), ec) == s.size());
        REQUIRE(ec == errc::bad_continuation);
        d.resync();
        REQUIRE(d.has_record());
        CHECK(d.record().payload.empty());
        CHECK(d.record().offset == 12);
        CHECK(d.record().index == 1);
        d.pop();
        d.finish(ec);
        CHECK(!ec);
    }
    SECTION("two damaged records")
    {
        std::string s = stream;
        s[at4] = 'X';
        s[static_cast<std::size_t>(all[7].offset) + 2] = 'Y';
        const outcome o = run_every_split(s, skip);
        std::vector<decoded> expected = without(7);
        expected.erase(expected.begin() + 4);
        CHECK(o.records == expected);
        CHECK(o.failures
              == std::vector<failure>{{errc::bad_magic, at4, 4}, {errc::bad_magic, all[7].offset, 7}});
    }
    SECTION("garbage to the end of the input is dropped without another error")
    {
        const std::string s = stream.substr(0, at4) + "garbage" + magic_str + "x";
        const outcome o = run_every_split(s, skip);
        CHECK(o.records == std::vector<decoded>(all.begin(), all.begin() + 4));
        CHECK(o.failures == std::vector<failure>{{errc::bad_magic, at4, 4}});
    }
    SECTION("truncation after resync")
    {
        std::string s = stream.substr(0, at5 + 10);  // record 5: header and 2 bytes
        s[at4] = 'X';
        const outcome o = run(s, skip);
        CHECK(o.records == std::vector<decoded>(all.begin(), all.begin() + 4));
        CHECK(o.failures
              == std::vector<failure>{{errc::bad_magic, at4, 4}, {errc::truncated_record, at5, 5}});
    }
}

TEST_CASE("a whole record inside the input is handed out in place", "[recordio]")
{
    const bytes in = to_bytes(part(0, "first") + part(0, "second") + part(1, "abcd") + part(3, "x"));
    recordio_decoder d;
    error_code ec;
    std::span<const std::byte> rest(in);
    const auto inside = [&](std::span<const std::byte> p) {
        return p.data() >= in.data() && p.data() + p.size() <= in.data() + in.size();
    };

    rest = rest.subspan(d.put(rest, ec));
    REQUIRE(d.has_record());
    CHECK(d.record().payload.data() == in.data() + 8);
    CHECK(to_string(d.record().payload) == "first");
    d.pop();

    rest = rest.subspan(d.put(rest, ec));
    REQUIRE(d.has_record());
    CHECK(d.record().payload.data() == in.data() + 16 + 8);
    CHECK(to_string(d.record().payload) == "second");
    d.pop();

    // A split record needs the magic word put back, so it is reassembled.
    rest = rest.subspan(d.put(rest, ec));
    REQUIRE(d.has_record());
    CHECK_FALSE(inside(d.record().payload));
    CHECK(to_string(d.record().payload) == "abcd" + magic_str + "x");
    d.pop();
    CHECK(rest.empty());

    // Header cut from the input, payload and padding not: the payload is still not copied.
    const bytes second = to_bytes(part(0, "tail"));
    recordio_decoder fresh;
    CHECK(fresh.put(std::span(second).first(5), ec) == 5);
    CHECK_FALSE(fresh.has_record());
    CHECK(fresh.put(std::span(second).subspan(5), ec) == second.size() - 5);
    REQUIRE(fresh.has_record());
    CHECK(fresh.record().payload.data() == second.data() + 8);
    CHECK(fresh.buffer_capacity() == 0);
}

TEST_CASE("decoder state: put while a record waits, finish with a record waiting, reset", "[recordio]")
{
    const bytes in = to_bytes(part(0, "a") + part(0, "b"));
    recordio_decoder d;
    error_code ec;
    CHECK(d.put(in, ec) == 12);
    REQUIRE(d.has_record());
    CHECK(d.put(std::span(in).subspan(12), ec) == 0);  // nothing taken while a record waits
    CHECK(!ec);
    d.finish(ec);
    CHECK(!ec);
    CHECK(to_string(d.record().payload) == "a");
    d.pop();
    CHECK(d.offset() == 12);
    CHECK(d.records_started() == 1);

    // resync() without a pending error changes nothing.
    d.resync();
    CHECK(d.records_started() == 1);
    CHECK(d.put(std::span(in).subspan(12), ec) == 12);
    REQUIRE(d.has_record());
    CHECK(d.record().index == 1);
    d.pop();

    // reset() starts over: new offsets, indices from 0, pending errors gone.
    CHECK(d.put(to_bytes("garbage!"), ec) == 8);
    CHECK(ec == errc::bad_magic);
    d.reset(4096);
    CHECK(d.offset() == 4096);
    CHECK(d.records_started() == 0);
    CHECK(d.put(in, ec) == 12);
    CHECK(!ec);
    REQUIRE(d.has_record());
    CHECK(d.record().offset == 4096);
    CHECK(d.record().index == 0);
}

TEST_CASE("resync right after reset starts decoding mid-stream at the first record that starts there", "[recordio]")
{
    // Records of several sizes, some split by the writer at magic words in their payloads.
    std::mt19937 rng(17);
    std::string stream;
    std::vector<std::pair<std::size_t, std::string>> records;  // offset, payload
    for (int i = 0; i < 40; ++i) {
        std::string p = random_payload(rng, rng() % 40);
        if (i % 7 == 3)
            p += std::string(4 - p.size() % 4 == 4 ? 0 : 4 - p.size() % 4, 'x') + magic_str + "after";
        records.emplace_back(stream.size(), p);
        stream += framed(p);
    }
    for (std::size_t start = 0; start <= stream.size(); start += 4) {
        CAPTURE(start);
        recordio_decoder d;
        d.reset(start);
        d.resync();
        std::vector<std::pair<std::size_t, std::string>> got;
        std::string_view in(stream);
        in.remove_prefix(start);
        // Fed a few bytes at a time, so the search itself straddles inputs.
        while (!in.empty()) {
            error_code ec;
            const auto chunk = to_bytes(in.substr(0, 5));
            auto span = std::span<const std::byte>(chunk);
            while (!span.empty() || d.has_record()) {
                span = span.subspan(d.put(span, ec));
                REQUIRE(!ec);
                if (!d.has_record())
                    break;
                REQUIRE(d.record().index == got.size());  // no index used up by the search
                got.emplace_back(d.record().offset, to_string(d.record().payload));
                d.pop();
            }
            in.remove_prefix(std::min<std::size_t>(5, in.size()));
        }
        error_code ec;
        d.finish(ec);
        CHECK(!ec);
        std::vector<std::pair<std::size_t, std::string>> want;
        for (const auto& r : records)
            if (r.first >= start)
                want.push_back(r);
        CHECK(got == want);
    }
}
