// Tests of the TFRecord decoder and writer: CRC-32C (both implementations), streams framed by
// an independent Python writer, every split and truncation point, CRC errors, caps, resync and
// starting in the middle of a stream.
#include <pipemode/framing/tfrecord.hpp>

#include "decoder_harness.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace pipemode;
using pipemode::test::as_bytes;
using pipemode::test::record_event;
using pipemode::test::split_points;
using pipemode::test::transcript;

static_assert(record_decoder<tfrecord_decoder>);

namespace {

#include "tfrecord_vectors.inc"

std::string frame(std::string_view payload)
{
    std::vector<std::byte> out;
    append_tfrecord(out, as_bytes(payload));
    return test::as_string(out);
}

// The transcript of records only, as Python wrote them, with their offsets.
std::vector<std::string> expected_records(const std::vector<std::string>& payloads, std::size_t first = 0,
                                          std::uint64_t first_index = 0)
{
    std::vector<std::string> out;
    std::uint64_t offset = 0;
    std::uint64_t index = first_index;
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        if (i >= first)
            out.push_back(record_event(offset, index++, payloads[i]));
        offset += payloads[i].size() + 16;
    }
    return out;
}

std::string flip(std::string s, std::size_t at)
{
    s[at] = static_cast<char>(s[at] ^ 0x20);
    return s;
}

} // namespace

TEST_CASE("CRC-32C: the check value, and the portable and hardware versions agree")
{
    CHECK(detail::crc32c(as_bytes("123456789")) == 0xe3069283U);
    CHECK(detail::crc32c_extend_portable(0, as_bytes("123456789").data(), 9) == 0xe3069283U);
    CHECK(detail::crc32c({}) == 0);
    // Feeding zeros through the operator is feeding them one by one.
    const std::string zeros(detail::crc32c_block, '\0');
    CHECK(detail::crc32c_shift(0x12345678U, 0)
          == ~detail::crc32c_extend_portable(~0x12345678U, as_bytes(zeros).data(), zeros.size()));
    // Extending in two steps is the CRC of the whole.
    CHECK(detail::crc32c_extend(detail::crc32c(as_bytes("1234")), as_bytes("56789").data(), 5) == 0xe3069283U);

    std::mt19937 rng(7);
    std::vector<std::byte> data(6000);
    for (auto& b : data)
        b = static_cast<std::byte>(rng());
    // Short lengths one by one; long ones around the interleaved path's 1536-byte steps.
    std::vector<std::size_t> lengths;
    for (std::size_t n = 0; n < 40; ++n)
        lengths.push_back(n);
    for (std::size_t n = 40; n < 5900; n += 137)
        lengths.push_back(n);
    for (std::size_t n : {1535U, 1536U, 1537U, 1543U, 1544U, 3071U, 3072U, 3080U, 4608U, 4615U})
        lengths.push_back(n);
    for (std::size_t start = 0; start < 9; ++start) {
        for (std::size_t n : lengths) {
            const auto portable = detail::crc32c_extend_portable(0x1234567U, data.data() + start, n);
#if PIPEMODE_CRC32C_HW
            if (detail::crc32c_has_hw())
                REQUIRE(detail::crc32c_extend_hw(0x1234567U, data.data() + start, n) == portable);
#endif
            // Bitwise reference.
            std::uint32_t c = ~0x1234567U;
            for (std::size_t i = 0; i < n; ++i) {
                c ^= static_cast<std::uint8_t>(data[start + i]);
                for (int k = 0; k < 8; ++k)
                    c = (c >> 1) ^ (0x82f63b78U & (0U - (c & 1U)));
            }
            REQUIRE(portable == ~c);
        }
    }
}

TEST_CASE("the writer frames exactly as the Python writer does")
{
    std::string all;
    for (const auto& p : python_payloads)
        all += frame(p);
    CHECK(all == python_stream);
    // TensorFlow's own constant: the masked CRC of a zero length.
    CHECK(tfrecord_masked_crc(as_bytes(std::string(8, '\0'))) == 0x07980329U);
}

TEST_CASE("decodes the Python stream at every split point")
{
    tfrecord_decoder d;
    const auto expected = expected_records(python_payloads);
    for (const auto& cuts : split_points(python_stream.size())) {
        const auto got = transcript(d, python_stream, cuts);
        REQUIRE(got == expected);
    }
}

TEST_CASE("records inside one input are handed out in place, others reassembled")
{
    tfrecord_decoder d;
    error_code ec;
    const auto in = as_bytes(python_stream);
    REQUIRE(d.put(in, ec) == 16);
    REQUIRE(d.has_record());
    CHECK(d.record().payload.empty());
    d.pop();
    REQUIRE(d.put(in.subspan(16), ec) == 17);
    CHECK(d.record().payload.data() == in.data() + 16 + 12);
    d.pop();
    CHECK(d.buffer_capacity() == 0);
    // The third record in two pieces: copied.
    CHECK(d.put(in.subspan(33, 20), ec) == 20);
    CHECK_FALSE(d.has_record());
    CHECK(d.put(in.subspan(53), ec) == 11);
    REQUIRE(d.has_record());
    CHECK(test::as_string(d.record().payload) == "hello, tfrecord");
    CHECK(d.record().offset == 33);
    CHECK(d.buffer_capacity() >= 19);
}

TEST_CASE("truncation at every position is an error unless it falls between records")
{
    tfrecord_decoder d;
    std::vector<std::size_t> boundaries{0};
    for (const auto& p : python_payloads)
        boundaries.push_back(boundaries.back() + p.size() + 16);
    for (std::size_t n = 0; n <= python_stream.size(); ++n) {
        INFO("truncated to " << n << " bytes");
        std::size_t complete = 0;
        while (complete < python_payloads.size() && boundaries[complete + 1] <= n)
            ++complete;
        auto expected = expected_records(python_payloads);
        expected.resize(complete);
        if (n != boundaries[complete])
            expected.push_back(test::error_event('F', errc::truncated_record, boundaries[complete], complete));
        for (const auto& cuts : std::vector<std::vector<std::size_t>>{{}, {n / 2}, {n / 3, 2 * n / 3}})
            REQUIRE(transcript(d, std::string_view(python_stream).substr(0, n), cuts) == expected);
    }
}

TEST_CASE("a damaged length CRC is a crc_mismatch, and resync finds the next record")
{
    // Record 2 ("hello, tfrecord", at offset 33): damage a length byte or a CRC byte.
    for (std::size_t at : {33U, 36U, 40U, 44U}) {
        INFO("damaged byte " << at);
        const std::string damaged = flip(python_stream, at);
        auto expected = expected_records(python_payloads);
        expected[2] = test::error_event('E', errc::crc_mismatch, 33, 2);
        tfrecord_decoder d;
        for (const auto& cuts : split_points(damaged.size()))
            REQUIRE(transcript(d, damaged, cuts) == expected);
    }
}

TEST_CASE("a damaged payload is a crc_mismatch unless the data CRC is not checked")
{
    for (std::size_t at : {45U, 59U, 60U, 63U}) {  // data bytes, then the data CRC
        INFO("damaged byte " << at);
        const std::string damaged = flip(python_stream, at);
        auto expected = expected_records(python_payloads);
        expected[2] = test::error_event('E', errc::crc_mismatch, 33, 2);
        tfrecord_decoder d;
        for (const auto& cuts : split_points(damaged.size()))
            REQUIRE(transcript(d, damaged, cuts) == expected);

        tfrecord_decoder unchecked(tfrecord_options{.verify_data_crc = false});
        auto payloads = python_payloads;
        if (at < 60)
            payloads[2][at - 45] = static_cast<char>(payloads[2][at - 45] ^ 0x20);
        REQUIRE(transcript(unchecked, damaged, std::vector<std::size_t>{7, 50}) == expected_records(payloads));
    }
}

TEST_CASE("a record above the cap is record_too_large before anything is buffered, and is skipped")
{
    tfrecord_decoder d(tfrecord_options{.max_record_size = 100});
    auto expected = expected_records(python_payloads);
    expected[3] = test::error_event('E', errc::record_too_large, 64, 3);  // the 300-byte record
    for (const auto& cuts : split_points(python_stream.size()))
        REQUIRE(transcript(d, python_stream, cuts) == expected);
    CHECK(d.buffer_capacity() < 100);

    // A hostile length of 2^63 with a valid CRC costs nothing either.
    std::string huge(8, '\0');
    huge[7] = '\x80';
    std::uint32_t crc = tfrecord_masked_crc(as_bytes(huge));
    for (int i = 0; i < 4; ++i)
        huge += static_cast<char>((crc >> (8 * i)) & 0xff);
    tfrecord_decoder big;
    const auto got = transcript(big, huge + "some bytes");
    REQUIRE(got.size() == 1);
    CHECK(got[0] == test::error_event('E', errc::record_too_large, 0, 0));
    CHECK(big.buffer_capacity() == 0);
}

TEST_CASE("garbage between records is skipped by resync")
{
    const std::string junk = "junk\x01\x02 more junk";
    const std::string stream = python_stream.substr(0, 33) + junk + python_stream.substr(33);
    std::vector<std::string> expected{record_event(0, 0, python_payloads[0]), record_event(16, 1, python_payloads[1]),
                                      test::error_event('E', errc::crc_mismatch, 33, 2)};
    std::uint64_t offset = 33 + junk.size();
    for (std::size_t i = 2; i < python_payloads.size(); ++i) {
        expected.push_back(record_event(offset, i + 1, python_payloads[i]));
        offset += python_payloads[i].size() + 16;
    }
    tfrecord_decoder d;
    for (const auto& cuts : split_points(stream.size()))
        REQUIRE(transcript(d, stream, cuts) == expected);
}

namespace {

// For every b, the transcript of reset(b) and resync() over stream[b..] in one piece, byte by
// byte and in two halves: exactly the records whose header starts at or after b.
void check_pieces(const std::string& stream, const std::vector<std::string>& payloads)
{
    std::vector<std::uint64_t> starts;
    std::uint64_t offset = 0;
    for (const auto& p : payloads) {
        starts.push_back(offset);
        offset += p.size() + 16;
    }
    REQUIRE(offset == stream.size());
    tfrecord_decoder d;
    for (std::size_t b = 0; b <= stream.size(); ++b) {
        INFO("piece starts at " << b);
        std::size_t first = 0;
        while (first < starts.size() && starts[first] < b)
            ++first;
        std::vector<std::string> expected;
        for (std::size_t i = first; i < payloads.size(); ++i)
            expected.push_back(record_event(starts[i], i - first, payloads[i]));
        const auto piece = std::string_view(stream).substr(b);
        const test::feed_options opt{.start_offset = b, .resync_first = true};
        REQUIRE(transcript(d, piece, opt) == expected);
        std::vector<std::size_t> every;
        for (std::size_t i = 1; i < piece.size(); ++i)
            every.push_back(i);
        REQUIRE(transcript(d, piece, every, opt) == expected);
        REQUIRE(transcript(d, piece, {piece.size() / 2}, opt) == expected);
    }
}

// A 12-byte window that passes the header test: a length and its correct masked CRC.
std::string fake_header(std::uint64_t length)
{
    std::string h;
    for (int i = 0; i < 8; ++i)
        h += static_cast<char>((length >> (8 * i)) & 0xff);
    const std::uint32_t crc = tfrecord_masked_crc(as_bytes(h));
    for (int i = 0; i < 4; ++i)
        h += static_cast<char>((crc >> (8 * i)) & 0xff);
    return h;
}

} // namespace

TEST_CASE("reset(b) and resync() start a piece at the first record at or after b")
{
    check_pieces(python_stream, python_payloads);
}

TEST_CASE("a payload holding something that looks like a header does not fool resync")
{
    // Fake headers inside payloads: one whose fake record ends inside the payload, two whose
    // fake records reach into the next real records, and one holding a whole valid TFRecord
    // (whose data CRC does match).
    const std::vector<std::string> payloads{
        "ab" + fake_header(3) + "xyz!!!!cd",
        "ef" + fake_header(30) + "tail",
        "B",
        "gh" + fake_header(15) + "end",
        "nested:" + frame("inner"),
        "C",
    };
    std::string stream;
    for (const auto& p : payloads)
        stream += frame(p);
    // A piece that starts inside "nested:" finds the inner record: it is a record by every test
    // a reader can make, so the split rule is only as good as the data's own framing.
    const std::size_t nested = stream.find("nested:");
    tfrecord_decoder d;
    const auto got = transcript(d, std::string_view(stream).substr(nested),
                                test::feed_options{.start_offset = nested, .resync_first = true});
    // Then the outer record's data CRC is where the next header should be: one error, and the
    // search finds the last record.
    REQUIRE(got.size() == 3);
    CHECK(got[0] == record_event(nested + 7, 0, "inner"));
    CHECK(got[1] == test::error_event('E', errc::crc_mismatch, nested + 7 + 21, 1));
    CHECK(got[2] == record_event(stream.size() - 17, 2, "C"));

    // Pieces that start anywhere but inside "nested:" see exactly the real records.
    std::vector<std::string> outer(payloads.begin(), payloads.begin() + 4);
    std::string head;
    for (const auto& p : outer)
        head += frame(p);
    check_pieces(head + frame("C"), [&] {
        auto v = outer;
        v.push_back("C");
        return v;
    }());

    // A fake record that reaches past the end cannot be told from a truncated real one: an
    // error, never a silent loss.
    const std::string tail = frame("ab" + fake_header(1000) + "end") + frame("C");
    const auto cut = transcript(d, std::string_view(tail).substr(3), test::feed_options{.start_offset = 3, .resync_first = true});
    CHECK(cut == std::vector<std::string>{test::error_event('F', errc::truncated_record, 14, 0)});
}

TEST_CASE("random streams round-trip through writer and decoder")
{
    std::mt19937 rng(11);
    std::vector<std::string> payloads;
    std::string stream;
    for (int i = 0; i < 200; ++i) {
        std::string p(rng() % 70, '\0');
        for (auto& c : p)
            c = static_cast<char>(rng());
        stream += frame(p);
        payloads.push_back(p);
    }
    tfrecord_decoder d;
    const auto expected = expected_records(payloads);
    for (std::size_t chunk : {1U, 3U, 16U, 100U, 4096U}) {
        std::vector<std::size_t> cuts;
        for (std::size_t i = chunk; i < stream.size(); i += chunk)
            cuts.push_back(i);
        REQUIRE(transcript(d, stream, cuts) == expected);
    }
}
