// End-to-end tests of pipemode::reader: files and memory through RecordIO + protobuf into
// batches, with every option that changes what the training loop sees.

#include <pipemode/framing/recordio.hpp>
#include <pipemode/framing/tfrecord.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sources/memory_source.hpp>

#include "counting_resource.hpp"
#include "custom_stages.hpp"
#include "failing_source.hpp"
#include "reader_helpers.hpp"
#include "source_helpers.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace pipemode;
using test::error_from;
using test::rows_until_error;
using test::temp_dir;

namespace {

constexpr std::size_t dim = 5;

/// The value of feature element `j` of row `row` of file `file`: distinct everywhere, so a
/// lost, repeated or misplaced record changes the checksum and the order checks.
float value_of(std::size_t file, std::size_t row, std::size_t j)
{
    return static_cast<float>(file * 100000 + row * 10 + j);
}

/// A RecordIO-protobuf file of `rows` dense float32 rows with a float32 label.
std::vector<std::byte> make_file(std::size_t file, std::size_t rows)
{
    std::vector<std::byte> out, payload;
    for (std::size_t r = 0; r < rows; ++r) {
        float v[dim];
        for (std::size_t j = 0; j < dim; ++j)
            v[j] = value_of(file, r, j);
        const float label = static_cast<float>(r % 3);
        const tensor_entry features[] = {tensor_entry::dense(std::span<const float>(v))};
        const tensor_entry labels[] = {tensor_entry::dense(std::span<const float>(&label, 1))};
        payload.clear();
        encode_record(payload, features, labels);
        append_recordio(out, payload);
    }
    return out;
}

/// One decoded row, as the tests compare them.
struct row_id {
    std::string source;
    std::uint64_t index;
    float first;
    bool operator==(const row_id&) const = default;
};

/// Everything a reader delivered.
struct collected {
    std::vector<row_id> rows;
    std::vector<std::size_t> batch_sizes;
    std::vector<std::size_t> paddings;
    double sum = 0;
};

collected drain(reader& r)
{
    collected c;
    for (auto& b : r) {
        c.batch_sizes.push_back(b.size());
        c.paddings.push_back(b.padding());
        const auto& x = b.feature("values");
        REQUIRE(x.type() == tensor_type::float32);
        REQUIRE(!x.is_sparse());
        REQUIRE(x.row_size() == dim);
        const auto& y = b.label("values");
        REQUIRE(y.row_size() == 1);
        const auto values = x.values<float>();
        for (float v : values)
            c.sum += v;
        REQUIRE(b.origins().size() == b.size() - b.padding());
        for (std::size_t i = 0; i < b.origins().size(); ++i) {
            const auto where = b.location(i);
            c.rows.push_back({where.source, where.record_index, values[i * dim]});
            // The label is a function of the row index within its file.
            REQUIRE(y.values<float>()[i] == static_cast<float>(where.record_index % 3));
        }
    }
    return c;
}

/// The files of a small data set: their paths, and what a correct read yields.
struct data_set {
    temp_dir dir;
    std::vector<std::string> paths;
    std::vector<row_id> rows;
    double sum = 0;

    explicit data_set(const std::vector<std::size_t>& rows_per_file)
    {
        for (std::size_t f = 0; f < rows_per_file.size(); ++f) {
            paths.push_back(dir / ("part-" + std::to_string(f) + ".rec"));
            test::write_file(paths.back(), make_file(f, rows_per_file[f]));
            for (std::size_t r = 0; r < rows_per_file[f]; ++r) {
                rows.push_back({paths.back(), r, value_of(f, r, 0)});
                for (std::size_t j = 0; j < dim; ++j)
                    sum += value_of(f, r, j);
            }
        }
    }
};

} // namespace

TEST_CASE("reader: a multi-file data set arrives whole, in order, with origins")
{
    // An empty file and files whose sizes do not divide the batch size.
    data_set ds({50, 0, 123, 1, 77});
    reader r(ds.paths, {.batch_size = 16, .read_size = 4096});
    const auto c = drain(r);
    CHECK(c.rows == ds.rows);
    CHECK(c.sum == ds.sum);
    const auto n = ds.rows.size();
    REQUIRE(c.batch_sizes.size() == (n + 15) / 16);
    for (std::size_t i = 0; i + 1 < c.batch_sizes.size(); ++i)
        CHECK(c.batch_sizes[i] == 16);
    CHECK(c.batch_sizes.back() == n % 16);

    const auto s = r.stats();
    CHECK(s.records == n);
    CHECK(s.batches == c.batch_sizes.size());
    CHECK(s.sources == ds.paths.size());
    std::uint64_t bytes = 0;
    for (const auto& p : ds.paths)
        bytes += std::filesystem::file_size(p);
    CHECK(s.bytes == bytes);
    CHECK(s.bad_records == 0);
    CHECK(r.done());
    CHECK_FALSE(r.next());  // stays at the end
}

TEST_CASE("reader: last batch policies")
{
    data_set ds({10, 13});  // 23 records, batch size 5: 4 full batches and 3 left over
    SECTION("keep_short")
    {
        reader r(ds.paths, {.batch_size = 5, .last_batch = last_batch::keep_short});
        const auto c = drain(r);
        CHECK(c.batch_sizes == std::vector<std::size_t>{5, 5, 5, 5, 3});
        CHECK(c.rows == ds.rows);
    }
    SECTION("drop")
    {
        reader r(ds.paths, {.batch_size = 5, .last_batch = last_batch::drop});
        const auto c = drain(r);
        CHECK(c.batch_sizes == std::vector<std::size_t>{5, 5, 5, 5});
        CHECK(c.rows == std::vector<row_id>(ds.rows.begin(), ds.rows.begin() + 20));
    }
    SECTION("pad")
    {
        reader r(ds.paths, {.batch_size = 5, .last_batch = last_batch::pad});
        std::vector<batch> batches;
        while (auto b = r.next())
            batches.push_back(std::move(*b));
        REQUIRE(batches.size() == 5);
        const auto& last = batches.back();
        CHECK(last.size() == 5);
        CHECK(last.padding() == 2);
        CHECK(last.origins().size() == 3);
        const auto x = last.feature("values").values<float>();
        for (std::size_t i = 3 * dim; i < 5 * dim; ++i)
            CHECK(x[i] == 0.0f);
        CHECK(x[0] == value_of(1, 10, 0));
    }
    SECTION("an exact multiple leaves nothing to pad or drop")
    {
        data_set even({10});
        reader r(even.paths, {.batch_size = 5, .last_batch = last_batch::pad});
        const auto c = drain(r);
        CHECK(c.batch_sizes == std::vector<std::size_t>{5, 5});
        CHECK(c.paddings == std::vector<std::size_t>{0, 0});
    }
}

TEST_CASE("reader: every chunking of the sources gives the same batches")
{
    auto a = std::make_shared<const std::vector<std::byte>>(make_file(0, 9));
    auto b = std::make_shared<const std::vector<std::byte>>(make_file(1, 4));
    std::vector<row_id> expected;
    for (std::size_t r = 0; r < 9; ++r)
        expected.push_back({"memory:a", r, value_of(0, r, 0)});
    for (std::size_t r = 0; r < 4; ++r)
        expected.push_back({"memory:b", r, value_of(1, r, 0)});

    for (std::size_t chunk = 1; chunk <= 97; chunk += (chunk < 16 ? 1 : 9)) {
        INFO("chunk size " << chunk);
        reader r(source_list({[=](const source_context&) {
                                  return any_byte_source(memory_source(a, "a", {.chunk_size = chunk}));
                              },
                              [=](const source_context&) {
                                  return any_byte_source(memory_source(b, "b", {.chunk_size = chunk}));
                              }}),
                 {.batch_size = 4});
        CHECK(drain(r).rows == expected);
    }
}

namespace {

/// A file whose record `bad` has a payload that is not a protobuf Record.
std::vector<std::byte> file_with_bad_record(std::size_t rows, std::size_t bad, std::uint64_t& bad_offset)
{
    std::vector<std::byte> out;
    const auto good = make_file(7, rows);
    // Re-frame record by record so that one payload can be replaced.
    recordio_decoder dec;
    std::span<const std::byte> in(good);
    error_code ec;
    std::size_t i = 0;
    while (!in.empty()) {
        in = in.subspan(dec.put(in, ec));
        REQUIRE(!ec);
        if (!dec.has_record())
            continue;
        if (i == bad) {
            bad_offset = out.size();
            const std::byte garbage[] = {std::byte{0x0a}, std::byte{0x7f}, std::byte{0x01}};  // length past the end
            append_recordio(out, garbage);
        } else {
            append_recordio(out, dec.record().payload);
        }
        dec.pop();
        ++i;
    }
    return out;
}

} // namespace

TEST_CASE("reader: bad records under each policy")
{
    temp_dir dir;
    const auto path = dir / "bad.rec";
    std::uint64_t bad_offset = 0;
    test::write_file(path, file_with_bad_record(20, 11, bad_offset));

    SECTION("fail: the batches before the bad record, then an error naming path, offset and record")
    {
        reader r({path}, {.batch_size = 4});
        const auto [rows, e] = rows_until_error(r);
        CHECK(e.code() == errc::malformed_protobuf);
        CHECK(e.where().source == path);
        CHECK(e.where().byte_offset == bad_offset);
        CHECK(e.where().record_index == 11);
        const std::string what = e.what();
        CHECK(what.find(path) != std::string::npos);
        CHECK(what.find("byte " + std::to_string(bad_offset)) != std::string::npos);
        CHECK(what.find("record 11") != std::string::npos);
        CHECK(rows == 8);  // two full batches; the third held the bad record
        CHECK(r.done());
    }
    SECTION("skip: everything else, and the skip is counted")
    {
        reader r({path}, {.batch_size = 4, .bad_records = bad_record_policy::skip});
        const auto c = drain(r);
        REQUIRE(c.rows.size() == 19);
        for (const auto& row : c.rows)
            CHECK(row.index != 11);
        CHECK(r.stats().bad_records == 1);
    }
    SECTION("skip_and_warn: the warning names the record")
    {
        std::vector<std::string> warnings;
        reader r({path}, {.batch_size = 4,
                          .bad_records = bad_record_policy::skip_and_warn,
                          .on_warning = [&](std::string_view w) { warnings.emplace_back(w); }});
        CHECK(drain(r).rows.size() == 19);
        REQUIRE(warnings.size() == 1);
        CHECK(warnings[0].find(path + ", byte " + std::to_string(bad_offset) + ", record 11") != std::string::npos);
    }
}

TEST_CASE("reader: a truncated file is an error, never a short epoch")
{
    temp_dir dir;
    const auto path = dir / "cut.rec";
    auto bytes = make_file(0, 10);
    bytes.resize(bytes.size() - 5);
    test::write_file(path, bytes);

    reader r({path}, {.batch_size = 100});
    const auto e = error_from([&] { drain(r); });
    CHECK(e.code() == errc::truncated_record);
    CHECK(e.where().source == path);
    CHECK(e.where().record_index == 9);

    // Under skip, the cut record is counted and the rest delivered.
    reader s({path}, {.batch_size = 100, .bad_records = bad_record_policy::skip});
    CHECK(drain(s).rows.size() == 9);
    CHECK(s.stats().bad_records == 1);
}

TEST_CASE("reader: I/O errors end the stream with the source's name")
{
    SECTION("a missing file")
    {
        temp_dir dir;
        const auto missing = dir / "missing.rec";
        reader r({missing});
        const auto e = error_from([&] { r.next(); });
        CHECK(e.code() == boost::system::errc::no_such_file_or_directory);
        CHECK(e.where().source == missing);
    }
    SECTION("a source failing mid-stream, after the batches before it")
    {
        auto bytes = std::make_shared<const std::vector<std::byte>>(make_file(0, 40));
        const auto io_error = make_error_code(boost::system::errc::io_error);
        reader r(source_list({[=](const source_context&) {
                     // 3 chunks of 100 bytes arrive, then the fourth read fails.
                     return any_byte_source(
                         test::failing_source(memory_source(bytes, "flaky", {.chunk_size = 100}), 3, io_error));
                 }}),
                 {.batch_size = 2});
        const auto [rows, e] = rows_until_error(r);
        CHECK(e.code() == io_error);
        CHECK(e.where().source == "memory:flaky");
        CHECK(e.where().byte_offset == 300);
        // Every whole record in the first 300 bytes was delivered, in whole batches.
        const std::size_t record_size = make_file(0, 1).size();
        CHECK(rows == (300 / record_size) / 2 * 2);
    }
}

TEST_CASE("reader: raw RecordIO payloads as a bytes feature")
{
    std::vector<std::byte> file;
    std::vector<std::string> payloads = {"", "a", "hello", std::string(1000, 'x')};
    for (const auto& p : payloads)
        append_recordio(file, test::bytes_of(p));
    auto bytes = std::make_shared<const std::vector<std::byte>>(file);
    reader r(source_list({[=](const source_context&) { return any_byte_source(memory_source(bytes, "raw")); }}),
             {.batch_size = 3, .format = data_format::recordio});
    std::vector<std::string> got;
    for (auto& b : r) {
        const auto& c = b.feature(raw_payload_feature);
        CHECK(c.type() == tensor_type::bytes);
        for (std::size_t i = 0; i < b.size(); ++i) {
            REQUIRE(c.item_count(i) == 1);
            const auto item = c.item(i, 0);
            got.emplace_back(reinterpret_cast<const char*>(item.data()), item.size());
        }
    }
    CHECK(got == payloads);
}

TEST_CASE("reader: the memory budget holds against a slow consumer")
{
    data_set ds({3000});
    // A budget that leaves room for only a few batches beyond the reserved source buffers.
    const reader_options o{.batch_size = 50,
                           .prefetch_batches = 64,
                           .memory_budget = 2 * 4096 + 4096 + 48 * kib,
                           .max_record_size = 4096,
                           .read_size = 4096};
    reader r(ds.paths, o);
    const std::size_t batch_budget = 48 * kib;

    // Hold back until the producer stops making progress: with a consumer this slow it must
    // stop at the budget (the ring's 64 slots would allow far more), however fast it runs.
    std::uint64_t seen = 0;
    for (int quiet = 0, waited = 0; quiet < 4 && waited < 200; ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const auto now = r.stats().batches;
        quiet = now == seen ? quiet + 1 : 0;
        seen = now;
    }
    const auto held_back = r.stats();

    std::size_t batch_bytes = 0;
    std::size_t rows = 0;
    for (auto& b : r) {
        batch_bytes = std::max(batch_bytes, b.byte_size());
        rows += b.size();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    CHECK(rows == 3000);
    const auto s = r.stats();
    INFO("peak " << s.peak_batch_bytes << ", one batch " << batch_bytes << ", held back at "
                 << held_back.batches << " batches");
    REQUIRE(batch_bytes * 3 < batch_budget);  // the test means something only if several fit
    CHECK(s.peak_batch_bytes <= batch_budget);
    // The producer filled the budget and then waited for the consumer: the budget, not the
    // ring, bounded it.
    CHECK(held_back.peak_batch_bytes + batch_bytes > batch_budget);
    CHECK(held_back.batches < o.prefetch_batches);
    // (A stall is counted when it ends, so look at it after the consumer released the producer.)
    CHECK(s.producer_stall.count() > 0);
}

namespace {

constexpr std::size_t sparse_columns = 1000;
constexpr std::size_t sparse_nonzeros = 8;

/// Key `j` of row `row` of the sparse file: ascending and distinct within the row.
std::uint64_t sparse_key(std::size_t row, std::size_t j) { return j * 100 + row % 100; }

/// A RecordIO-protobuf file of `rows` sparse float32 rows of `sparse_columns` columns with
/// `sparse_nonzeros` values each (the value at key k of row r is r + k / 1000), and a label.
std::vector<std::byte> make_sparse_file(std::size_t rows)
{
    std::vector<std::byte> out, payload;
    for (std::size_t r = 0; r < rows; ++r) {
        float v[sparse_nonzeros];
        std::uint64_t k[sparse_nonzeros];
        for (std::size_t j = 0; j < sparse_nonzeros; ++j) {
            k[j] = sparse_key(r, j);
            v[j] = static_cast<float>(r) + static_cast<float>(k[j]) / 1000;
        }
        const float label = static_cast<float>(r % 3);
        const tensor_entry features[] = {
            tensor_entry::sparse(std::span<const float>(v), std::span<const std::uint64_t>(k), sparse_columns)};
        const tensor_entry labels[] = {tensor_entry::dense(std::span<const float>(&label, 1))};
        payload.clear();
        encode_record(payload, features, labels);
        append_recordio(out, payload);
    }
    return out;
}

/// Waits until the reader's producer has made no progress for 100 ms (it waits for the
/// consumer) and at least `at_least` batches were handed over; returns how many were.
std::uint64_t wait_until_held_back(reader& r, std::uint64_t at_least = 1)
{
    std::uint64_t seen = 0;
    for (int quiet = 0, waited = 0; (quiet < 4 || seen < at_least) && waited < 400; ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
        const auto now = r.stats().batches;
        quiet = now == seen ? quiet + 1 : 0;
        seen = now;
    }
    return seen;
}

} // namespace

TEST_CASE("reader: batch storage comes from batch_memory and is recycled, with no allocation per batch in steady state")
{
    // Batches in circulation: prefetch_batches in the ring, the consumer's, the one being
    // built and a full one waiting for a slot. The test first holds the consumer back until
    // all of them exist (each allocated once), then reads on: every later batch must be
    // refilled storage. With fixed-shape records, dense or sparse, that storage's capacity
    // already fits, so the count must not move at all. (Rows of varying size could still grow
    // a batch's storage now and then, until each has seen the largest; fixed shapes make the
    // count exact.)
    const bool sparse = GENERATE(false, true);
    INFO((sparse ? "sparse" : "dense"));
    // With two decode workers, each worker's builder and the full batch it may hold until its
    // turn are in circulation too; they exist by the time the ring is full twice over.
    const std::size_t workers = GENERATE(1, 2);
    CAPTURE(workers);
    constexpr std::size_t batch_size = 10;
    constexpr std::size_t batches = 300;
    temp_dir dir;
    const std::string path = dir / "part-0.rec";
    test::write_file(path, sparse ? make_sparse_file(batch_size * batches) : make_file(0, batch_size * batches));

    test::counting_resource memory;
    std::size_t seen = 0;
    // Each batch's content, so that recycled storage is seen to hold this batch's rows only.
    auto check = [&](const batch& b) {
        REQUIRE(b.size() == batch_size);
        const auto& x = b.feature("values");
        REQUIRE(x.is_sparse() == sparse);
        const auto values = x.values<float>();
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto row = b.location(i).record_index;
            REQUIRE(row == seen * batch_size + i);
            if (sparse) {
                REQUIRE(x.row_keys(i).size() == sparse_nonzeros);
                REQUIRE(x.row_keys(i)[3] == sparse_key(row, 3));
                REQUIRE(x.row<float>(i)[3] == static_cast<float>(row) + static_cast<float>(sparse_key(row, 3)) / 1000);
            }
            else {
                REQUIRE(values[i * dim + 2] == value_of(0, row, 2));
            }
            REQUIRE(b.label("values").values<float>()[i] == static_cast<float>(row % 3));
        }
        ++seen;
    };
    {
        constexpr std::size_t prefetch = 4;
        reader r({path}, {.batch_size = batch_size,
                          .prefetch_batches = prefetch,
                          .decode_workers = workers,
                          .batch_memory = &memory});
        // The ring full and a batch waiting for a slot; then the consumer holds the first
        // batch while the ring fills again and the next batch waits: every batch storage in
        // circulation now exists.
        REQUIRE(wait_until_held_back(r, prefetch) == prefetch);
        auto it = r.begin();
        REQUIRE(it != r.end());
        check(*it);
        REQUIRE(wait_until_held_back(r, prefetch + 1) == prefetch + 1);
        const auto warm = memory.allocations.load();
        CHECK(warm > 0);  // the batches did come from the caller's resource
        // Half through the iterator (which lets the current batch go on increment), half
        // through next() (whose batches go back when the caller's copy is destroyed).
        for (++it; it != r.end(); ++it) {
            check(*it);
            if (seen == batches / 2)
                break;
        }
        while (auto b = r.next())
            check(*b);
        CHECK(seen == batches);
        INFO("allocations from the resource: " << warm << " before batch 2, " << memory.allocations.load() << " at the end");
        CHECK(memory.allocations.load() - warm == 0);
    }
    // The reader gone, every byte went back to the resource it came from.
    CHECK(memory.bytes_held.load() == 0);
}

TEST_CASE("reader: a batch kept after its reader is gone stays valid and returns its memory to batch_memory")
{
    data_set ds({25});
    test::counting_resource memory;
    std::optional<batch> kept;
    {
        reader r(ds.paths, {.batch_size = 10, .batch_memory = &memory});
        kept = r.next();
        REQUIRE(kept);
    }
    CHECK(memory.bytes_held.load() > 0);
    REQUIRE(kept->size() == 10);
    CHECK(kept->feature("values").values<float>()[dim * 9] == value_of(0, 9, 0));
    kept.reset();
    CHECK(memory.bytes_held.load() == 0);
}

TEST_CASE("reader: at most prefetch_batches decoded batches wait, exactly, not rounded up")
{
    // 3 is not a power of two: a ring that rounds its slots up would let a 4th batch wait.
    const std::size_t prefetch = GENERATE(1, 3, 5);
    INFO("prefetch_batches = " << prefetch);
    data_set ds({1000});
    reader r(ds.paths, {.batch_size = 10, .prefetch_batches = prefetch, .read_size = 4096});
    CHECK(wait_until_held_back(r) == prefetch);
    // Taking one frees exactly one place: the consumer holds one and prefetch_batches wait.
    auto first = r.next();
    REQUIRE(first);
    CHECK(wait_until_held_back(r, prefetch + 1) == prefetch + 1);
    std::size_t rows = first->size();
    while (auto b = r.next())
        rows += b->size();
    CHECK(rows == 1000);
}

TEST_CASE("reader: next() and try_next()")
{
    data_set ds({10});
    reader r(ds.paths, {.batch_size = 4});
    std::size_t rows = 0;
    batch b;
    // try_next never blocks; spin until the first batch is there.
    while (!r.try_next(b))
        std::this_thread::yield();
    rows += b.size();
    while (auto next = r.next())
        rows += next->size();
    CHECK(rows == 10);
    CHECK(r.done());
    CHECK_FALSE(r.try_next(b));
}

TEST_CASE("reader: leaving early cancels promptly")
{
    data_set ds({20000, 20000});
    const auto start = std::chrono::steady_clock::now();
    {
        reader r(ds.paths, {.batch_size = 10, .prefetch_batches = 2, .read_size = 4096});
        for (auto& b : r) {
            CHECK(b.size() == 10);
            break;
        }
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

    // Destroyed before anything was read at all.
    { reader r(ds.paths); }
}

TEST_CASE("reader: destroyed promptly while its pipeline waits on a silent FIFO or a full ring")
{
    // The destructor has no time limit: if cancellation did not reach what the pipeline
    // awaits, this test would hang (and ctest's timeout would report it). Prompt means far
    // below a second here.
    const auto prompt = std::chrono::milliseconds(500);
    SECTION("a FIFO whose writer is connected but sends nothing")
    {
        temp_dir dir;
        const auto path = dir / "fifo";
        REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
        // Keep a writer end open without writing, so that the reader waits in a read.
        const int rw = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(rw >= 0);
        auto r = std::make_unique<reader>(std::vector<std::string>{path}, reader_options{.batch_size = 64});
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the read is waiting
        CHECK(r->stats().batches == 0);
        const auto start = std::chrono::steady_clock::now();
        r.reset();
        const auto took = std::chrono::steady_clock::now() - start;
        ::close(rw);
        CHECK(took < prompt);
    }
    SECTION("a producer waiting for a slot in the ring")
    {
        data_set ds({5000});
        auto r = std::make_unique<reader>(ds.paths, reader_options{.batch_size = 10, .prefetch_batches = 2});
        CHECK(wait_until_held_back(*r, 2) == 2);
        const auto start = std::chrono::steady_clock::now();
        r.reset();
        CHECK(std::chrono::steady_clock::now() - start < prompt);
    }
}

TEST_CASE("reader: a FIFO is read to its end")
{
    ::signal(SIGPIPE, SIG_IGN);  // a failing reader must fail the test, not kill it
    temp_dir dir;
    const auto path = dir / "fifo";
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    const auto bytes = make_file(3, 500);
    std::thread writer([&] {
        // Open without blocking, so that a reader that never comes cannot hang the test.
        int fd = -1;
        for (int i = 0; i < 500 && fd < 0; ++i) {
            fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (fd < 0)
            return;
        ::fcntl(fd, F_SETFL, 0);
        // Irregular writes with pauses, as a producer process would make them.
        std::size_t at = 0, step = 1;
        while (at < bytes.size()) {
            const auto n = ::write(fd, bytes.data() + at, std::min(step, bytes.size() - at));
            if (n <= 0)
                break;
            at += static_cast<std::size_t>(n);
            step = step * 3 % 4093 + 1;
            if (at % 7 == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ::close(fd);
    });
    collected c;
    try {
        reader r({path}, {.batch_size = 64});
        c = drain(r);
    } catch (...) {
        writer.join();
        throw;
    }
    writer.join();
    REQUIRE(c.rows.size() == 500);
    for (std::size_t i = 0; i < 500; ++i)
        CHECK(c.rows[i].first == value_of(3, i, 0));
}

TEST_CASE("reader: options that cannot work are refused with a way out")
{
    auto refuse = [](reader_options o, const char* needle) {
        try {
            reader r(std::vector<std::string>{}, std::move(o));
            FAIL("accepted");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    refuse({.batch_size = 0}, "batch_size");
    refuse({.prefetch_batches = 0}, "prefetch_batches");
    refuse({.memory_budget = 8 * mib}, "raise memory_budget");
}

TEST_CASE("reader: an empty data set is an error, not an empty epoch")
{
    reader r(std::vector<std::string>{});
    const auto e = error_from([&] { r.next(); });
    CHECK(e.code() == errc::empty_data_set);
    CHECK(std::string(e.what()).find("0 local paths") != std::string::npos);
    CHECK(r.done());
}

TEST_CASE("reader: TFRecord CRC failures name the source, offset and record, a corrupt-record budget bounds skipping")
{
    temp_dir dir;
    std::vector<std::byte> data;
    std::vector<std::size_t> offsets;
    for (int i = 0; i < 10; ++i) {
        offsets.push_back(data.size());
        append_tfrecord(data, test::bytes_of("record " + std::to_string(i)));
    }
    // Damage the data of records 3 and 7 (one byte of each payload: the data CRC fails).
    data[offsets[3] + 12] ^= std::byte{1};
    data[offsets[7] + 12] ^= std::byte{1};
    test::write_file(dir / "a.tfrecord", data);

    reader failing({dir / "a.tfrecord"}, {.batch_size = 4, .format = data_format::tfrecord});
    const auto [rows, e] = test::rows_until_error(failing);
    CHECK(rows == 0);  // records 0-2 were in a batch that never filled
    CHECK(e.code() == errc::crc_mismatch);
    CHECK(e.where().source == dir / "a.tfrecord");
    CHECK(e.where().byte_offset == offsets[3]);
    CHECK(e.where().record_index == 3);

    reader skipping({dir / "a.tfrecord"}, {.batch_size = 4, .bad_records = bad_record_policy::skip, .max_bad_records = 2,
                                           .format = data_format::tfrecord});
    const auto payloads = test::payloads_of(skipping);
    CHECK(payloads == std::vector<std::string>{"record 0", "record 1", "record 2", "record 4", "record 5", "record 6",
                                               "record 8", "record 9"});
    CHECK(skipping.stats().bad_records == 2);

    reader over_budget({dir / "a.tfrecord"}, {.batch_size = 4, .bad_records = bad_record_policy::skip, .max_bad_records = 1,
                                              .format = data_format::tfrecord});
    const auto [before, budget] = test::rows_until_error(over_budget);
    CHECK(before == 4);  // records 0-2 and 4 made a batch; record 7 broke the budget
    CHECK(budget.code() == errc::crc_mismatch);
    CHECK(budget.where().record_index == 7);
    CHECK_THAT(budget.what(), Catch::Contains("max_bad_records (1)"));
}

namespace {

/// A row as a reader built from `semicolon_decoder` and `length_parser` delivers it.
struct length_row {
    std::string source;
    std::uint64_t index;
    std::int32_t length;
    bool operator==(const length_row&) const = default;
};

std::vector<length_row> length_rows(const batch& b)
{
    std::vector<length_row> out;
    const auto& x = b.feature(test::length_feature);
    REQUIRE(x.type() == tensor_type::int32);
    REQUIRE(x.row_size() == 1);
    for (std::size_t i = 0; i < b.size() - b.padding(); ++i) {
        const auto where = b.location(i);
        out.push_back({where.source, where.record_index, x.values<std::int32_t>()[i]});
    }
    return out;
}

/// Two files of ';'-ended records of varied lengths, every seventh one bad ('!' first), and
/// the good rows a skipping reader must deliver.
struct semicolon_files {
    temp_dir dir;
    std::vector<std::string> paths;
    std::vector<length_row> good;
    std::size_t bad = 0;

    semicolon_files()
    {
        for (int f = 0; f < 2; ++f) {
            paths.push_back(dir / ("part-" + std::to_string(f) + ".txt"));
            std::string text;
            for (std::uint64_t i = 0; i < 40; ++i) {
                const auto n = static_cast<std::size_t>((i * 7 + static_cast<std::uint64_t>(f) * 3) % 23);
                if (i % 7 == 3) {
                    text += "!" + std::string(n, 'x') + ";";
                    ++bad;
                    continue;
                }
                text += std::string(n, static_cast<char>('a' + i % 26)) + ";";
                good.push_back({paths.back(), i, static_cast<std::int32_t>(n)});
            }
            test::write_file(paths.back(), std::as_bytes(std::span(text)));
        }
    }
};

} // namespace

TEST_CASE("reader: a framing decoder and a record parser of the caller's own, through every policy and a resume")
{
    semicolon_files files;

    SECTION("skip: the good rows in order with their origins, the bad ones counted, every chunking alike")
    {
        const std::size_t read_size = GENERATE(1, 5, 64, 4096);
        CAPTURE(read_size);
        reader r(local_files(files.paths, read_size), test::semicolon_decoder{}, test::length_parser{},
                 {.batch_size = 6, .bad_records = bad_record_policy::skip, .read_size = read_size});
        std::vector<length_row> rows;
        for (auto& b : r) {
            const auto part = length_rows(b);
            rows.insert(rows.end(), part.begin(), part.end());
        }
        CHECK(rows == files.good);
        CHECK(r.stats().bad_records == files.bad);
        CHECK(r.stats().records == files.good.size());
    }
    SECTION("fail: the parser's sentence, the source, the offset and the record reach the loop")
    {
        reader r(local_files(files.paths), test::semicolon_decoder{}, test::length_parser{}, {.batch_size = 2});
        const auto [rows, e] = rows_until_error(r);
        CHECK(rows == 2);  // records 0-2 are good: one full batch, the second held record 2
        CHECK(e.code() == errc::unsupported_value);
        CHECK(e.where().source == files.paths[0]);
        CHECK(e.where().record_index == 3);
        // Records 0, 1 and 2 are 0, 7 and 14 bytes long, each with its ';'.
        CHECK(e.where().byte_offset == 1 + 8 + 15);
        CHECK_THAT(e.what(), Catch::Contains("starts with '!'"));
    }
    SECTION("a source that ends inside a record is the framing's truncated_record")
    {
        const auto path = files.dir / "cut.txt";
        const std::string text = "abc;de";
        test::write_file(path, std::as_bytes(std::span(text)));
        reader r(local_files({path}), test::semicolon_decoder{}, test::length_parser{}, {.batch_size = 8});
        const auto [rows, e] = rows_until_error(r);
        CHECK(rows == 0);
        CHECK(e.code() == errc::truncated_record);
        CHECK(e.where().byte_offset == 4);
        CHECK(e.where().record_index == 1);
    }
    SECTION("a reader resumed from the position of an interrupted one delivers the rest, exactly")
    {
        const std::size_t shuffle = GENERATE(0, 5);
        const std::size_t stop_after = GENERATE(1, 3, 7);
        CAPTURE(shuffle, stop_after);
        const reader_options options{.batch_size = 4, .bad_records = bad_record_policy::skip,
                                     .shuffle_records = shuffle, .shuffle_seed = 11};
        const auto read = [&](std::optional<data_set_state> resume, std::size_t batches) {
            reader r(planned_epochs(local_store(files.paths), {.resume = std::move(resume)}), test::semicolon_decoder{},
                     test::length_parser{}, options);
            std::vector<length_row> rows;
            for (auto& b : r) {
                const auto part = length_rows(b);
                rows.insert(rows.end(), part.begin(), part.end());
                if (--batches == 0)
                    break;
            }
            return std::pair(rows, r.position());
        };
        const auto [whole, end] = read(std::nullopt, 0);
        REQUIRE(whole.size() == files.good.size());
        if (shuffle == 0)
            CHECK(whole == files.good);
        else
            CHECK(whole != files.good);  // the shuffle did move records

        auto [first, at] = read(std::nullopt, stop_after);
        REQUIRE(at);
        data_set_state state;
        state.epoch = at->epoch;
        state.cursor = {at->item, at->records, at->in_block, at->block_end_item};
        auto [rest, _] = read(state, 0);
        first.insert(first.end(), rest.begin(), rest.end());
        CHECK(first == whole);
    }
}

namespace {

/// Everything a reader delivered, down to the bytes of every column and the position after
/// every batch: two runs compare equal only if the training loop could not tell them apart.
struct delivery {
    std::vector<std::string> batches;  // one fingerprint per batch
    std::vector<read_position> positions;
    std::uint64_t bad_records = 0;
    std::optional<std::string> error;  // what ended the run, if it was an error
    std::uint64_t worker_batches = 0;  // not what the loop sees: how the batches were made
    std::uint64_t worker_batches_redone = 0;

    bool operator==(const delivery&) const = default;
};

void fingerprint_columns(std::string& out, std::span<const column> columns)
{
    for (const auto& c : columns) {
        out += c.name() + ":" + std::string(to_string(c.type())) + (c.is_sparse() ? "s" : "d") + "[";
        for (auto d : c.shape())
            out += std::to_string(d) + ",";
        out += "]";
        const auto append = [&](auto values) {
            const auto bytes = std::as_bytes(values);
            out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        };
        switch (c.type()) {
        case tensor_type::float32: append(c.values<float>()); break;
        case tensor_type::float64: append(c.values<double>()); break;
        case tensor_type::int32: append(c.values<std::int32_t>()); break;
        case tensor_type::bytes: append(c.values<std::byte>()); break;
        }
        append(c.keys());
        append(c.row_offsets());
        append(c.item_offsets());
    }
}

delivery deliver_all(reader r)
{
    delivery d;
    try {
        for (auto& b : r) {
            std::string f = "rows " + std::to_string(b.size()) + " pad " + std::to_string(b.padding()) + " epoch "
                + std::to_string(b.epoch()) + ";";
            for (std::size_t i = 0; i < b.origins().size(); ++i) {
                const auto where = b.location(i);
                f += where.source + "@" + std::to_string(where.byte_offset) + "#" + std::to_string(where.record_index) + ";";
            }
            fingerprint_columns(f, b.features());
            fingerprint_columns(f, b.labels());
            d.batches.push_back(std::move(f));
            d.positions.push_back(*r.position());
        }
    } catch (const data_error& e) {
        d.error = e.what();
    }
    d.bad_records = r.stats().bad_records;
    d.worker_batches = r.stats().worker_batches;
    d.worker_batches_redone = r.stats().worker_batches_redone;
    return d;
}

/// Memory sources of `files`, read in chunks of `chunk` bytes.
std::unique_ptr<source_provider> memory_files(const std::vector<std::shared_ptr<const std::vector<std::byte>>>& files,
                                              std::size_t chunk)
{
    std::vector<source_maker> makers;
    for (std::size_t f = 0; f < files.size(); ++f)
        makers.push_back([data = files[f], f, chunk](const source_context&) {
            return any_byte_source(memory_source(data, "f" + std::to_string(f), {.chunk_size = chunk}));
        });
    return source_list(std::move(makers));
}

} // namespace

TEST_CASE("reader: decode workers deliver exactly what one worker does, in order, with the same positions and policies")
{
    std::uint64_t bad_offset = 0;
    const std::vector<std::shared_ptr<const std::vector<std::byte>>> protobuf_files{
        std::make_shared<const std::vector<std::byte>>(make_file(0, 61)),
        std::make_shared<const std::vector<std::byte>>(file_with_bad_record(37, 23, bad_offset)),
        std::make_shared<const std::vector<std::byte>>(make_file(2, 0)),
        std::make_shared<const std::vector<std::byte>>(make_file(3, 45)),
    };
    // CSV whose 48th row has a column too many: refused against the first row's count.
    std::string csv;
    for (int r = 0; r < 80; ++r)
        csv += std::to_string(r % 2) + "," + std::to_string(r) + "," + std::to_string(r * 0.5) + (r == 47 ? ",9" : "") + "\n";
    const std::vector<std::shared_ptr<const std::vector<std::byte>>> csv_files{
        std::make_shared<const std::vector<std::byte>>(reinterpret_cast<const std::byte*>(csv.data()),
                                                       reinterpret_cast<const std::byte*>(csv.data() + csv.size()))};

    const std::size_t batch_size = GENERATE(1, 4, 7, 30);
    const std::size_t chunk = GENERATE(std::size_t{61}, std::size_t{700}, std::size_t{1} << 20);
    const bool shuffled = GENERATE(false, true);
    CAPTURE(batch_size, chunk, shuffled);
    std::uint64_t redone = 0;
    for (const auto policy : {bad_record_policy::skip, bad_record_policy::fail}) {
        CAPTURE(policy == bad_record_policy::skip);
        for (const bool is_csv : {false, true}) {
            CAPTURE(is_csv);
            const auto run = [&](std::size_t workers) {
                reader_options o{.batch_size = batch_size,
                                 .last_batch = last_batch::pad,
                                 .bad_records = policy,
                                 .decode_workers = workers,
                                 .shuffle_records = shuffled ? 11u : 0u,
                                 .shuffle_seed = 5};
                if (is_csv) {
                    o.format = data_format::csv;
                    o.csv_label_size = 1;
                }
                return deliver_all(reader(memory_files(is_csv ? csv_files : protobuf_files, chunk), o));
            };
            const delivery one = run(1);
            REQUIRE(!one.batches.empty());
            CHECK((one.bad_records == 1 || one.error));
            CHECK(one.worker_batches == 0);
            for (const std::size_t workers : {2, 3}) {
                CAPTURE(workers);
                delivery many = run(workers);
                // The workers did take part wherever a read (or a shuffle block of 11) held
                // more than a batch.
                if (chunk == std::size_t{1} << 20 && batch_size <= 7)
                    CHECK(many.worker_batches > 0);
                redone += many.worker_batches_redone;
                many.worker_batches = 0;
                many.worker_batches_redone = 0;
                CHECK(many == one);
            }
        }
    }
    // Somewhere the bad record (the second file's 24th, or the CSV's 48th) fell in a batch a
    // worker filled: that batch was made again on the reader's thread, where the policy applies.
    if (chunk == std::size_t{1} << 20 && batch_size == 4)
        CHECK(redone > 0);
}
