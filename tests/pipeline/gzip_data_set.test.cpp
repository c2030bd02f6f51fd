#include <pipemode/framing/recordio.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/gunzip.hpp>

#include "reader_helpers.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <zlib.h>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace pipemode;
using test::payloads_of;
using test::temp_dir;

namespace {

/// Writes `bytes` gzip-compressed to `path`, as `members` concatenated gzip members.
void write_gzip(const std::string& path, const std::string& bytes, int members = 1)
{
    std::string out;
    const std::size_t step = bytes.size() / members + 1;
    for (std::size_t at = 0; at < bytes.size() || (at == 0 && bytes.empty()); at += step) {
        z_stream z{};
        REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        const std::string part = bytes.substr(at, step);
        std::string buf(deflateBound(&z, part.size()), '\0');
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
        z.avail_in = static_cast<uInt>(part.size());
        z.next_out = reinterpret_cast<Bytef*>(buf.data());
        z.avail_out = static_cast<uInt>(buf.size());
        REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
        buf.resize(buf.size() - z.avail_out);
        deflateEnd(&z);
        out += buf;
        if (bytes.empty())
            break;
    }
    test::write_file(path, test::bytes_of(out));
}

/// Three gzip-compressed RecordIO objects of "o<i>r<j>" records; returns every payload.
std::vector<std::string> make_gzip_data_set(const temp_dir& dir)
{
    std::vector<std::string> all;
    for (int i = 0; i < 3; ++i) {
        std::string bytes;
        for (int j = 0; j < 50 + 10 * i; ++j) {
            const std::string p = "o" + std::to_string(i) + "r" + std::to_string(j) + std::string(j % 17 * 13, 'q');
            write_recordio(test::bytes_of(p), [&](std::span<const std::byte> b) {
                bytes.append(reinterpret_cast<const char*>(b.data()), b.size());
            });
            all.push_back(p);
        }
        write_gzip(dir / ("part-" + std::to_string(i) + ".rec.gz"), bytes, i + 1);
    }
    return all;
}

reader_options raw(std::size_t batch = 6)
{
    return {.batch_size = batch, .format = data_format::recordio, .memory_budget = 64 * mib, .max_record_size = 1 * mib,
            .read_size = 4 * kib};
}

} // namespace

TEST_CASE("a gzip data set decompresses every object, multi-member ones too, in every epoch")
{
    temp_dir dir;
    const auto all = make_gzip_data_set(dir);
    data_set_reader r(gunzip(local_store({dir.path().string()})), {.plan = {.shuffle_seed = 5}, .epochs = 2}, raw());
    std::map<std::uint64_t, std::multiset<std::string>> epochs;
    for (auto& b : r)
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto x = b.feature("payload").item(i, 0);
            epochs[b.epoch()].emplace(reinterpret_cast<const char*>(x.data()), x.size());
        }
    const std::multiset<std::string> want(all.begin(), all.end());
    CHECK(epochs[0] == want);
    CHECK(epochs[1] == want);
    // gunzip() over a plain provider reads the same bytes.
    reader plain(gunzip(local_files({dir / "part-0.rec.gz", dir / "part-1.rec.gz", dir / "part-2.rec.gz"})), raw());
    CHECK(payloads_of(plain) == all);
}

TEST_CASE("a gzip data set resumes mid-object by re-reading the object from its start, and refuses byte ranges")
{
    temp_dir dir;
    const auto all = make_gzip_data_set(dir);
    const data_set_options o{.plan = {.shard = {.rank = 1, .world_size = 2, .mode = shard_mode::by_bytes}}, .epochs = 1};
    data_set_reader whole(gunzip(local_store({dir.path().string()})), o, raw());
    const auto uninterrupted = payloads_of(whole);
    REQUIRE(!uninterrupted.empty());
    std::vector<std::string> got;
    std::string saved;
    {
        data_set_reader first(gunzip(local_store({dir.path().string()})), o, raw());
        for (int b = 0; b < 3; ++b)
            if (auto batch = first.next())
                for (std::size_t i = 0; i < batch->size(); ++i) {
                    const auto x = batch->feature("payload").item(i, 0);
                    got.emplace_back(reinterpret_cast<const char*>(x.data()), x.size());
                }
        saved = first.state().to_json();
    }
    auto resumed = o;
    resumed.resume = data_set_state::from_json(saved);
    data_set_reader second(gunzip(local_store({dir.path().string()})), resumed, raw());
    for (auto& p : payloads_of(second))
        got.push_back(p);
    CHECK(got == uninterrupted);

    CHECK_THROWS_WITH(data_set_reader(gunzip(local_store({dir.path().string()})),
                                      {.plan = {.shard = {.world_size = 2, .mode = shard_mode::by_byte_range}}}, raw()),
                      Catch::Contains("by_bytes instead"));
}

TEST_CASE("a truncated gzip object is an error naming it, never a short epoch")
{
    temp_dir dir;
    make_gzip_data_set(dir);
    auto bytes = test::read_file(dir / "part-1.rec.gz");
    bytes.resize(bytes.size() / 2);
    test::write_file(dir / "part-1.rec.gz", bytes);
    data_set_reader r(gunzip(local_store({dir.path().string()})), {}, raw());
    const auto e = test::error_from([&] { (void)payloads_of(r); });
    CHECK(e.code() == errc::truncated_gzip);
    CHECK_THAT(e.what(), Catch::Contains("part-1.rec.gz"));
}
