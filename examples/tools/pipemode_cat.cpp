// pipemode-cat: reads a data set (local files and FIFOs, http(s):// URLs, s3:// objects,
// prefixes and manifests) in any format the library reads (RecordIO-protobuf, CSV, RecordIO,
// TFRecord, JSON Lines, whole objects, augmented manifests; gzip-compressed or not) through
// one pipeline composed on this thread (source -> framing -> parser -> a callback sink that
// prints) and prints a summary with the data set's digest, every record as a line of
// JSON, or every raw payload.
//
// Built without pipemode::http (CMake's PIPEMODE_WITH_CURL=OFF defines PIPEMODE_TOOLS_NO_HTTP),
// it reads local paths only and refuses URLs with a sentence saying so; built without
// pipemode::gzip (PIPEMODE_WITH_ZLIB=OFF defines PIPEMODE_TOOLS_NO_GZIP), it refuses
// --compression Gzip and does not look for gzip's magic bytes.
//
// Usage and output formats: `pipemode-cat --help` and docs/tools.md.
#include "../common/data_sources.hpp"
#include "command_line.hpp"
#include "json_records.hpp"

#ifndef PIPEMODE_TOOLS_NO_GZIP
#include "../common/gzip_detection.hpp"
#include <pipemode/pipeline/gunzip.hpp>
#endif
#ifndef PIPEMODE_TOOLS_NO_HTTP
#include <pipemode/sagemaker/augmented_manifest.hpp>
#endif

#include <pipemode/core/content_type.hpp>
#include <pipemode/core/digest.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/parsers/raw_record.hpp>
#include <pipemode/pipeline/format_stages.hpp>
#include <pipemode/pipeline/pipeline.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sinks/callback_sink.hpp>
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

Reads data, in the order given, through a pipemode pipeline. A SOURCE is a local file or
FIFO, an http:// or https:// URL, an S3 object s3://BUCKET/KEY, or every object under an
S3 prefix s3://BUCKET/PREFIX/ (in key order). By default prints a summary: records,
batches, bytes, seconds, MB/s, records/s, time to the first batch, bad records skipped,
and the data set's digest.

Format options (SageMaker's channel fields):
  --content-type TYPE    how records are decoded: application/x-recordio-protobuf (the
                         default), text/csv[;label_size=N] (default 1 label column),
                         application/x-recordio, application/x-tfrecord,
                         application/jsonlines, or any other type (application/x-image, ...)
                         for whole objects. Without it the type is guessed from the SOURCEs'
                         extensions when they all agree (.csv, .tfrecord, .jsonl, .manifest;
                         a trailing .gz is ignored), else RecordIO-protobuf
  --compression C        None or Gzip (any case). Without it, each object whose first bytes
                         are gzip's magic number (1f 8b) is decompressed
  --attribute-names A,B  read an augmented manifest (AttributeNames): a SOURCE ending in
                         .manifest is a manifest whose lines' attributes are fetched, any
                         other SOURCE the RecordIO records Pipe mode writes for one
  --verbose              say on stderr what was guessed and which objects were gzip

Options:
  --json                 print every record as one line of JSON instead of the summary:
                         RecordIO-protobuf and CSV records as features and label; JSON Lines
                         as the line itself; RecordIO, TFRecord and whole-object payloads as
                         {"length": N, "hex": "..."}; augmented-manifest rows by attribute
  --raw                  read the framing only (RecordIO, TFRecord, lines or whole objects)
                         and print every payload as {"length": N, "hex": "..."}, one per line
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

/// What --compression says: nothing (look at each object's first bytes), None or Gzip.
enum class compression_choice { detect, none, gzip };

struct cat_options {
    output_mode mode = output_mode::summary;
    std::size_t batch_size = 1000;
    pipemode::bad_record_policy bad_records = pipemode::bad_record_policy::fail;
    std::optional<std::uint64_t> limit;
    std::size_t memory_budget = pipemode::reader_options{}.memory_budget;
    std::vector<source_arg> sources;
    source_options source;  // --read-size and the URL and S3 options
    bool help = false;
    bool verbose = false;

    // How records are decoded and whether objects are compressed.
    std::optional<std::string> content_type;
    std::vector<std::string> attribute_names;
    compression_choice compression = compression_choice::detect;

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
        else if (name == "--verbose")
            o.verbose = true;
        else if (name == "--content-type") {
            o.content_type = std::string(c.value());
            try {
                (void)pipemode::parse_content_type(*o.content_type);
            } catch (const std::invalid_argument& e) {
                throw usage_error(std::string("--content-type: ") + e.what());
            }
        }
        else if (name == "--compression") {
            // SageMaker spells it None and Gzip; any case is accepted, as a user types it.
            const std::string given(c.value());
            std::string v = given;
            for (auto& ch : v)
                ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (v == "none")
                o.compression = compression_choice::none;
            else if (v == "gzip")
                o.compression = compression_choice::gzip;
            else
                throw usage_error("--compression is None or Gzip (SageMaker's CompressionType), not '" + given
                                  + "'; leave it out to recognise gzip by its magic bytes");
        }
        else if (name == "--attribute-names") {
            o.attribute_names.clear();
            const std::string_view v = c.value();
            for (std::size_t start = 0;;) {
                const auto comma = v.find(',', start);
                const auto attribute = v.substr(start, comma == std::string_view::npos ? v.npos : comma - start);
                if (attribute.empty())
                    throw usage_error("--attribute-names is a comma-separated list of attribute names, such as "
                                      "source-ref,class, not '" + std::string(v) + "'");
                o.attribute_names.emplace_back(attribute);
                if (comma == std::string_view::npos)
                    break;
                start = comma + 1;
            }
        }
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
#ifdef PIPEMODE_TOOLS_NO_GZIP
    if (o.compression == compression_choice::gzip)
        throw usage_error("this pipemode-cat was built without pipemode::gzip (PIPEMODE_WITH_ZLIB=OFF), so it cannot "
                          "read --compression Gzip");
#endif
    return o;
}

// ---------------------------------------------------------------------------------------------
// Formats

/// How the SOURCEs are decoded, and why (for --verbose).
struct format_choice {
    pipemode::content_format format;
    std::string reason;
};

/// The last path component of a source, without a URL's query and without a trailing ".gz":
/// "s3://b/train/part-0.csv.gz" gives "part-0.csv".
std::string_view object_name_of(std::string_view source)
{
    source = source.substr(0, source.find_first_of("?#"));
    if (const auto slash = source.rfind('/'); slash != std::string_view::npos)
        source.remove_prefix(slash + 1);
    for (const std::string_view gz : {".gz", ".gzip", ".GZ"})
        if (source.ends_with(gz))
            source.remove_suffix(gz.size());
    return source;
}

/// The content type an object's name stands for without doubt, or "" when it says nothing.
/// ".manifest" is JSON Lines unless --attribute-names asks for the manifest's attributes.
std::string_view content_type_of_name(std::string_view name)
{
    const auto dot = name.rfind('.');
    if (dot == std::string_view::npos || dot == 0)
        return {};
    std::string extension(name.substr(dot + 1));
    for (auto& ch : extension)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (extension == "csv")
        return "text/csv";
    if (extension == "tfrecord" || extension == "tfrecords")
        return "application/x-tfrecord";
    if (extension == "jsonl" || extension == "jsonlines" || extension == "manifest")
        return "application/jsonlines";
    if (extension == "rec" || extension == "recordio" || extension == "pbr")
        return "application/x-recordio-protobuf";
    return {};
}

/// Whether a SOURCE is an augmented manifest to be resolved (with --attribute-names).
bool is_manifest_source(const source_arg& a)
{
    return !a.manifest && object_name_of(a.text).ends_with(".manifest");
}

/// The format the SOURCEs are read in: --attribute-names, else --content-type, else the one
/// content type every SOURCE's extension names, else RecordIO-protobuf. Content types map to
/// formats as SageMaker channels do (`pipemode::content_format_of`).
format_choice choose_format(const cat_options& o)
{
    if (!o.attribute_names.empty())
        return {{pipemode::data_format::augmented_manifest, 0},
                "augmented manifest (--attribute-names: " + std::to_string(o.attribute_names.size()) + " attributes)"};
    if (o.content_type)
        return {pipemode::content_format_of(pipemode::parse_content_type(*o.content_type)),
                "content type " + *o.content_type + " (--content-type)"};
    std::string_view guess;
    std::string example;
    for (const auto& a : o.sources) {
        const auto name = object_name_of(a.text);
        const auto type = a.manifest ? std::string_view{} : content_type_of_name(name);
        if (type.empty() || (!guess.empty() && type != guess)) {
            // One SOURCE without a telling extension (a directory, a prefix, a FIFO) or two
            // that disagree: guessing would be a coin toss, so the default stands.
            const std::string why = type.empty() ? "'" + a.text + "' has no extension that names a content type"
                                                 : "'" + example + "' and '" + a.text + "' disagree";
            return {{pipemode::data_format::recordio_protobuf, 0},
                    "content type application/x-recordio-protobuf (the default: " + why + "; give --content-type)"};
        }
        if (guess.empty())
            example = a.text;
        guess = type;
    }
    return {pipemode::content_format_of(pipemode::parse_content_type(guess)),
            "content type " + std::string(guess) + " (guessed from the extension of '" + example
                + "'; give --content-type to choose)"};
}

/// The format that reads only the framing of `f`, for --raw.
pipemode::data_format framing_only(pipemode::data_format f)
{
    switch (f) {
    case pipemode::data_format::recordio_protobuf:
    case pipemode::data_format::augmented_manifest: return pipemode::data_format::recordio;
    case pipemode::data_format::csv: return pipemode::data_format::lines;
    default: return f;
    }
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

/// Appends record `row` of `b`, read in `format`, as --json prints it (without the newline).
void append_json_line(std::string& out, pipemode::data_format format, const pipemode::batch& b, std::size_t row)
{
    using pipemode::data_format;
    switch (format) {
    case data_format::recordio_protobuf:
    case data_format::csv: append_record_json(out, b, row); return;
    case data_format::lines: {
        // A JSON Lines record is already a line of JSON: printed as it is.
        const auto line = b.feature(pipemode::raw_payload_feature).item(row, 0);
        out.append(reinterpret_cast<const char*>(line.data()), line.size());
        return;
    }
    case data_format::augmented_manifest: append_attributes_json(out, b, row); return;
    case data_format::recordio:
    case data_format::tfrecord:
    case data_format::whole_object: append_raw_json(out, b.feature(pipemode::raw_payload_feature).item(row, 0)); return;
    }
}

struct run_result {
    std::uint64_t records = 0;
    std::uint64_t batches = 0;
    std::optional<std::chrono::steady_clock::duration> first_batch;
    std::chrono::steady_clock::duration elapsed{};
    pipemode::data_set_digest digest;
    pipemode::reader_stats stats;
};

/// Objects that start with gzip's magic bytes but were read as they are (--compression None):
/// written by the pipeline, read by main() after it has ended, to explain a
/// decoding error.
std::vector<std::string> gzip_read_raw;

/// Prints a --verbose line on stderr.
void say(const cat_options& o, const std::string& line)
{
    if (o.verbose)
        std::fprintf(stderr, "pipemode-cat: %s\n", line.c_str());
}

#ifndef PIPEMODE_TOOLS_NO_GZIP
void note_gzip_read_raw(std::string_view name) { gzip_read_raw.emplace_back(name); }
#endif

/// The SOURCEs as one object store: as `make_store`, except that with --attribute-names each
/// SOURCE ending in .manifest is an augmented manifest whose lines become objects.
std::unique_ptr<pipemode::object_store> sources_store(const cat_options& o)
{
    if (o.attribute_names.empty())
        return make_store(o.sources, o.source, "pipemode-cat");
    std::vector<std::unique_ptr<pipemode::object_store>> parts;
    std::vector<source_arg> run;  // consecutive SOURCEs that are not manifests
    const auto flush = [&] {
        if (!run.empty())
            parts.push_back(make_store(std::exchange(run, {}), o.source, "pipemode-cat"));
    };
    for (const auto& a : o.sources) {
        if (!is_manifest_source(a)) {
            run.push_back(a);
            continue;
        }
        flush();
#ifndef PIPEMODE_TOOLS_NO_HTTP
        pipemode::sagemaker::augmented_manifest_options ao{.attribute_names = o.attribute_names};
        if (scheme_of(a.text) == "s3")
            ao.s3 = s3_options_of(o.source);
        parts.push_back(pipemode::sagemaker::augmented_manifest_store(a.text, std::move(ao)));
#else
        refuse_without_http(a.text, "pipemode-cat");
#endif
    }
    flush();
    return pipemode::concat_stores(std::move(parts));
}

/// The pipeline's sources: a planned data set (listed once, sharded, shuffled, over epochs) or,
/// without data-set options, the command line's order with FIFOs opened as given; decompressed
/// as --compression says, or where an object starts with gzip's magic bytes.
std::unique_ptr<pipemode::source_provider> sources_provider(const cat_options& o)
{
    // Augmented manifests are object stores of their lines: read through a plan (of one
    // replicated epoch in argument order unless data-set options say otherwise).
    const bool planned = o.planned
        || (!o.attribute_names.empty() && std::any_of(o.sources.begin(), o.sources.end(), is_manifest_source));
    if (planned) {
        auto store = sources_store(o);
#ifndef PIPEMODE_TOOLS_NO_GZIP
        if (o.compression == compression_choice::gzip)
            store = pipemode::gunzip(std::move(store));
        else if (o.compression == compression_choice::detect)
            store = detect_gzip(std::move(store), [&o](std::string_view name) {
                say(o, "'" + std::string(name) + "' is gzip-compressed (it starts with 1f 8b): decompressing it");
            });
        else
            store = detect_gzip(std::move(store), note_gzip_read_raw, {}, false);
#endif
        return fanned_out(pipemode::planned_epochs(std::move(store), o.data_set), o.source, o.data_set);
    }
    auto provider = make_provider(o.sources, o.source, "pipemode-cat");
#ifndef PIPEMODE_TOOLS_NO_GZIP
    if (o.compression == compression_choice::gzip)
        provider = pipemode::gunzip(std::move(provider));
    else if (o.compression == compression_choice::detect)
        provider = detect_gzip(std::move(provider), [&o](std::string_view name) {
            say(o, "'" + std::string(name) + "' is gzip-compressed (it starts with 1f 8b): decompressing it");
        });
    else
        provider = detect_gzip(std::move(provider), note_gzip_read_raw, {}, false);
#endif
    return fanned_out(std::move(provider), o.source, o.data_set);
}

run_result run(const cat_options& o, output_buffer& out)
{
    using clock = std::chrono::steady_clock;
    run_result result;
    const auto start = clock::now();
    const auto choice = choose_format(o);
    say(o, "reading " + choice.reason);
    const auto format = o.mode == output_mode::raw ? framing_only(choice.format.format) : choice.format.format;
    const pipemode::reader_options reader_opts{
        .batch_size = o.batch_size,
        .bad_records = o.bad_records,
        .format = format,
        .csv_label_size = choice.format.csv_label_size,
        .attribute_names = o.attribute_names,
        .memory_budget = o.memory_budget,
        .read_size = o.source.read_size,
        .shuffle_records = o.record_shuffle,
        .shuffle_seed = o.data_set.plan.shuffle_seed.value_or(0),
    };
    // The printing is the pipeline's sink, called on this thread with each batch; returning
    // false once --limit is reached stops the pipeline, which reads no further.
    const std::uint64_t limit = o.limit.value_or(UINT64_MAX);
    auto print = [&](pipemode::batch& b) -> bool {
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
                append_json_line(out.text(), format, b, r);
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
        return result.records < limit;
    };
    // source -> the format's framing and parser -> batches -> print, composed for the format.
    auto provider = sources_provider(o);
    if (limit != 0) {
        result.stats = pipemode::visit_format_stages(
                           reader_opts,
                           [&](auto framing, auto parser) {
                               return pipemode::run_pipeline(std::move(provider), std::move(framing), std::move(parser),
                                                             pipemode::callback_sink(print), reader_opts);
                           },
                           "pipemode-cat")
                           .stats;
    }
    result.elapsed = clock::now() - start;
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
        // The pipeline refuses options that cannot work, with a sentence on what to change.
        std::fprintf(stderr, "pipemode-cat: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        // A data_error names the source, byte offset and record index; I/O errors name the source.
        try {
            out.flush();  // the records before the error are worth having
        } catch (...) {
        }
        std::fprintf(stderr, "pipemode-cat: %s\n", e.what());
        // "bad RecordIO magic number" says nothing of why: say it when the object was gzip.
        for (const auto& name : gzip_read_raw)
            if (std::string_view(e.what()).find(name) != std::string_view::npos) {
                std::fprintf(stderr,
                             "pipemode-cat: '%s' starts with gzip's magic bytes (1f 8b) but --compression None was "
                             "given: give --compression Gzip, or leave it out to decompress such objects\n",
                             name.c_str());
                break;
            }
        return 1;
    }
}
