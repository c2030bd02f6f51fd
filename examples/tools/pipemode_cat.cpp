// pipemode-cat: reads a data set (local files and FIFOs, http(s):// URLs, s3:// objects,
// prefixes and manifests) through pipemode::reader and prints a summary with the data set's
// digest, every record as a line of JSON, or every raw RecordIO payload.
//
// Built without pipemode::http (CMake's PIPEMODE_WITH_CURL=OFF defines PIPEMODE_TOOLS_NO_HTTP),
// it reads local paths only and refuses URLs with a sentence saying so.
//
// Usage and output formats: `pipemode-cat --help` and docs/tools.md.
#include "../common/data_sources.hpp"
#include "command_line.hpp"
#include "json_records.hpp"

#include <pipemode/core/digest.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/decoders/raw_record.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

using namespace pipemode::tools;

constexpr std::string_view usage_head = R"(Usage: pipemode-cat [options] SOURCE...
       pipemode-cat [options] --manifest s3://BUCKET/MANIFEST [SOURCE...]

Reads RecordIO-protobuf data, in the order given, through pipemode::reader. A SOURCE is a
local file or FIFO, an http:// or https:// URL, an S3 object s3://BUCKET/KEY, or every
object under an S3 prefix s3://BUCKET/PREFIX/ (in key order). By default prints a summary:
records, batches, bytes, seconds, MB/s, records/s, time to the first batch, bad records
skipped, and the data set's digest.

Options:
  --json                 print every record as one line of JSON instead of the summary
  --raw                  read the RecordIO framing only and print every payload as
                         {"length": N, "hex": "..."}, one per line
  --batch-size N         records per batch (default 1000)
  --bad-records POLICY   fail (default), skip, or warn (skip and report on stderr)
  --limit N              stop after N records
  --read-size BYTES      size of one read from a file or FIFO (default 4M; suffixes K, M, G
                         are powers of 1024)
  --memory-budget BYTES  memory the reader may hold (default 1G); URL sources fetch ahead
                         within half of it
  -h, --help             print this help

Data-set options (any of them reads the SOURCEs as one planned data set: directories,
path prefixes, URL prefixes ending in '/' and S3 prefixes are listed once, then planned):
  --rank R --world-size N  read the share of rank R of N ranks (default 0 of 1)
  --shard-mode MODE      object (ShardedByS3Key, the default with --world-size), bytes, or
                         byte-range (objects cut at record boundaries)
  --shuffle-seed S       shuffle the object order every epoch with seed S
  --epochs E             read E epochs (default 1)
  --record-shuffle N     shuffle records in blocks of N (seed: --shuffle-seed, or 0)

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
See docs/tools.md for the output formats.
)";

enum class output_mode { summary, json, raw };

struct cat_options {
    output_mode mode = output_mode::summary;
    std::size_t batch_size = 1000;
    pipemode::bad_record_policy bad_records = pipemode::bad_record_policy::fail;
    std::optional<std::uint64_t> limit;
    std::size_t memory_budget = pipemode::reader_options{}.memory_budget;
    std::vector<source_arg> sources;
    source_options source;  // --read-size and the URL and S3 options
    bool help = false;

    // Data-set reading (`planned` when any of these was given).
    bool planned = false;
    pipemode::data_set_options data_set{};
    std::size_t record_shuffle = 0;
};

cat_options parse_command_line(int argc, char** argv)
{
    cat_options o;
    bool raw = false, json = false;
    for (option_cursor c(argc, argv); c.next();) {
        const auto name = c.name();
        if (c.positional())
            o.sources.push_back({std::string(c.arg())});
        else if (name == "-h" || name == "--help")
            o.help = true;
        else if (name == "--json")
            json = true;
        else if (name == "--raw")
            raw = true;
        else if (name == "--batch-size") {
            o.batch_size = parse_count(name, c.value());
            if (o.batch_size == 0)
                throw usage_error("--batch-size must be at least 1");
        }
        else if (name == "--bad-records") {
            const auto v = c.value();
            if (v == "fail")
                o.bad_records = pipemode::bad_record_policy::fail;
            else if (v == "skip")
                o.bad_records = pipemode::bad_record_policy::skip;
            else if (v == "warn")
                o.bad_records = pipemode::bad_record_policy::skip_and_warn;
            else
                throw usage_error("--bad-records is fail, skip or warn, not '" + std::string(v) + "'");
        }
        else if (name == "--limit")
            o.limit = parse_count(name, c.value());
        else if (name == "--memory-budget") {
            o.memory_budget = parse_bytes(name, c.value());
            if (o.memory_budget == 0)
                throw usage_error("--memory-budget must be at least 1 byte");
        }
        else if (name == "--rank") {
            o.data_set.plan.shard.rank = parse_count(name, c.value());
            o.planned = true;
        }
        else if (name == "--world-size") {
            o.data_set.plan.shard.world_size = parse_count(name, c.value());
            if (o.data_set.plan.shard.mode == pipemode::shard_mode::replicated)
                o.data_set.plan.shard.mode = pipemode::shard_mode::by_object;
            o.planned = true;
        }
        else if (name == "--shard-mode") {
            const auto v = c.value();
            if (v == "object")
                o.data_set.plan.shard.mode = pipemode::shard_mode::by_object;
            else if (v == "bytes")
                o.data_set.plan.shard.mode = pipemode::shard_mode::by_bytes;
            else if (v == "byte-range")
                o.data_set.plan.shard.mode = pipemode::shard_mode::by_byte_range;
            else if (v == "replicated")
                o.data_set.plan.shard.mode = pipemode::shard_mode::replicated;
            else
                throw usage_error("--shard-mode is object, bytes, byte-range or replicated, not '" + std::string(v) + "'");
            o.planned = true;
        }
        else if (name == "--shuffle-seed") {
            o.data_set.plan.shuffle_seed = parse_count(name, c.value());
            o.planned = true;
        }
        else if (name == "--epochs") {
            o.data_set.epochs = parse_count(name, c.value());
            if (o.data_set.epochs == 0)
                throw usage_error("--epochs must be at least 1");
            o.planned = true;
        }
        else if (name == "--record-shuffle") {
            o.record_shuffle = parse_count(name, c.value());
            o.planned = true;
        }
        else if (parse_source_option(c, o.source, o.sources)) {
        }
        else
            c.unknown();
    }
    if (raw && json)
        throw usage_error("--json and --raw cannot be used together");
    o.mode = raw ? output_mode::raw : json ? output_mode::json : output_mode::summary;
    if (!o.help && o.sources.empty())
        throw usage_error("no SOURCE given");
    return o;
}

// ---------------------------------------------------------------------------------------------
// Output

/// Buffers stdout in large blocks: the JSON modes print millions of values, and a write(2) per
/// few MiB costs nothing next to formatting them.
class output_buffer {
public:
    static constexpr std::size_t flush_at = 1 << 20;

    output_buffer() { text_.reserve(flush_at + 64 * pipemode::kib); }
    output_buffer(const output_buffer&) = delete;
    output_buffer& operator=(const output_buffer&) = delete;
    ~output_buffer() { flush_quietly(); }

    /// The text to append to; call `maybe_flush()` after each line.
    std::string& text() noexcept { return text_; }

    void maybe_flush()
    {
        if (text_.size() >= flush_at)
            flush();
    }

    /// Writes everything buffered; throws `std::system_error` when stdout fails.
    void flush()
    {
        const char* p = text_.data();
        std::size_t n = text_.size();
        while (n != 0) {
            const auto w = ::write(STDOUT_FILENO, p, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                text_.clear();
                throw std::system_error(errno, std::generic_category(), "writing to stdout");
            }
            p += w;
            n -= static_cast<std::size_t>(w);
        }
        text_.clear();
    }

private:
    void flush_quietly() noexcept
    {
        try {
            flush();
        } catch (...) {
        }
    }

    std::string text_;
};

// ---------------------------------------------------------------------------------------------
// Reading

struct run_result {
    std::uint64_t records = 0;
    std::uint64_t batches = 0;
    std::optional<std::chrono::steady_clock::duration> first_batch;
    std::chrono::steady_clock::duration elapsed{};
    pipemode::data_set_digest digest;
    pipemode::reader_stats stats;
};

run_result run(const cat_options& o, output_buffer& out)
{
    using clock = std::chrono::steady_clock;
    run_result result;
    const auto start = clock::now();
    const pipemode::reader_options reader_opts{
        .batch_size = o.batch_size,
        .bad_records = o.bad_records,
        .format = o.mode == output_mode::raw ? pipemode::data_format::recordio : pipemode::data_format::recordio_protobuf,
        .memory_budget = o.memory_budget,
        .read_size = o.source.read_size,
        .shuffle_records = o.record_shuffle,
        .shuffle_seed = o.data_set.plan.shuffle_seed.value_or(0),
    };
    // A planned data set (listed once, sharded, shuffled, over epochs) reads through the same
    // reader type; the plain path keeps the command line's order and opens FIFOs as given.
    pipemode::reader reader = o.planned
        ? pipemode::reader(pipemode::planned_epochs(make_store(o.sources, o.source, "pipemode-cat"), o.data_set), reader_opts)
        : pipemode::reader(make_provider(o.sources, o.source, "pipemode-cat"), reader_opts);
    const std::uint64_t limit = o.limit.value_or(UINT64_MAX);
    if (limit != 0) {
        for (auto& b : reader) {
            if (!result.first_batch)
                result.first_batch = clock::now() - start;
            ++result.batches;
            std::size_t rows = b.size() - b.padding();
            if (rows > limit - result.records)
                rows = static_cast<std::size_t>(limit - result.records);
            switch (o.mode) {
            case output_mode::summary:
                if (rows == b.size() - b.padding()) {
                    result.digest.add(b);
                }
                else {
                    for (std::size_t r = 0; r < rows; ++r)
                        result.digest.add_record_hash(pipemode::record_digest::of(b, r));
                }
                break;
            case output_mode::json:
                for (std::size_t r = 0; r < rows; ++r) {
                    pipemode::tools::append_record_json(out.text(), b, r);
                    out.text() += '\n';
                    out.maybe_flush();
                }
                break;
            case output_mode::raw: {
                const auto& payload = b.feature(pipemode::raw_payload_feature);
                for (std::size_t r = 0; r < rows; ++r) {
                    pipemode::tools::append_raw_json(out.text(), payload.item(r, 0));
                    out.text() += '\n';
                    out.maybe_flush();
                }
                break;
            }
            }
            result.records += rows;
            if (result.records >= limit)
                break;  // leaving the loop early: the reader cancels what is in flight
        }
    }
    result.elapsed = clock::now() - start;
    result.stats = reader.stats();
    return result;
}

void print_summary(const run_result& r, std::string& out)
{
    const double seconds = std::chrono::duration<double>(r.elapsed).count();
    const double per_second = seconds > 0 ? 1 / seconds : 0;
    append_field(out, "records", std::to_string(r.records));
    append_field(out, "batches", std::to_string(r.batches));
    append_field(out, "bytes", std::to_string(r.stats.bytes));
    append_field(out, "seconds", format("%.3f", seconds));
    append_field(out, "MB/s", format("%.1f", static_cast<double>(r.stats.bytes) / 1e6 * per_second));
    append_field(out, "records/s", format("%.0f", static_cast<double>(r.records) * per_second));
    append_field(out, "first batch ms",
                 r.first_batch ? format("%.1f", std::chrono::duration<double, std::milli>(*r.first_batch).count())
                               : std::string("-"));
    append_field(out, "bad records", std::to_string(r.stats.bad_records));
    append_field(out, "digest", r.digest.to_string());
}

} // namespace

int main(int argc, char** argv)
{
    cat_options options;
    try {
        options = parse_command_line(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-cat: %s\nTry 'pipemode-cat --help'.\n", e.what());
        return 2;
    }
    if (options.help) {
        for (const auto part : {usage_head, source_options_help, usage_tail})
            std::fwrite(part.data(), 1, part.size(), stdout);
        return 0;
    }

    output_buffer out;
    try {
        const auto result = run(options, out);
        if (options.mode == output_mode::summary)
            print_summary(result, out.text());
        out.flush();
        return 0;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-cat: %s\nTry 'pipemode-cat --help'.\n", e.what());
        return 2;
    } catch (const std::invalid_argument& e) {
        // The reader refuses options that cannot work, with a sentence on what to change.
        std::fprintf(stderr, "pipemode-cat: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        // A data_error names the source, byte offset and record index; I/O errors name the source.
        try {
            out.flush();  // the records before the error are worth having
        } catch (...) {
        }
        std::fprintf(stderr, "pipemode-cat: %s\n", e.what());
        return 1;
    }
}
