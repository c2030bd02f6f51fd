// pipemode-libsvm-stats: reads LIBSVM files and URLs through pipemode::reader with the
// example's own parser (libsvm_parser.hpp) over the library's line framing, and prints what it
// read as one JSON object: rows, stored entries, the label histogram and every feature's sum.
// libsvm_test.py compares that with scikit-learn's load_svmlight_file on the same files.
//
// Usage: pipemode-libsvm-stats --features N [--zero-based] [--batch-size N] [--skip-bad]
//                              SOURCE...

#include "libsvm_parser.hpp"

#include "../common/data_sources.hpp"
#include "../tools/command_line.hpp"

#include <pipemode/framing/lines.hpp>
#include <pipemode/pipeline/reader.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace pipemode::tools;

constexpr std::string_view usage_head = R"(Usage: pipemode-libsvm-stats --features N [options] SOURCE...

Reads LIBSVM text (label index:value ..., one row per line) from local paths, FIFOs and
http(s):// or s3:// URLs, and prints one JSON object: "rows", "nnz" (stored entries),
"bad_records", "labels" (rows per label, keyed by the label printed with %.9g) and
"feature_sums" (the sum of each column, feature_dim numbers).

Options:
  --features N        the number of feature columns (SageMaker's feature_dim); required
  --zero-based        indices count from 0 (default: from 1, as LIBSVM requires)
  --batch-size N      rows per batch (default 1000)
  --skip-bad          skip malformed lines and count them (default: stop at the first)
  --help              this text

)";

struct options {
    std::vector<source_arg> sources;
    source_options source;
    libsvm::parser_options parser;
    std::size_t batch_size = 1000;
    bool skip_bad = false;
    bool help = false;
};

options parse_command_line(int argc, char** argv)
{
    options o;
    for (option_cursor c(argc, argv); c.next();) {
        if (c.positional())
            o.sources.push_back({std::string(c.arg())});
        else if (c.name() == "--help")
            o.help = true;
        else if (c.name() == "--features")
            o.parser.feature_dim = parse_count(c.name(), c.value());
        else if (c.name() == "--zero-based")
            o.parser.base = libsvm::index_base::zero;
        else if (c.name() == "--batch-size")
            o.batch_size = parse_count(c.name(), c.value());
        else if (c.name() == "--skip-bad")
            o.skip_bad = true;
        else if (!parse_source_option(c, o.source, o.sources))
            c.unknown();
    }
    if (o.help)
        return o;
    if (o.parser.feature_dim == 0)
        throw usage_error("--features N is required (the number of feature columns, at least 1)");
    if (o.sources.empty())
        throw usage_error("no source given");
    return o;
}

void run(const options& o)
{
    const pipemode::reader_options reader_options{
        .batch_size = o.batch_size,
        .bad_records = o.skip_bad ? pipemode::bad_record_policy::skip : pipemode::bad_record_policy::fail,
        .read_size = o.source.read_size,
    };
    // The library's line framing, with the reader's record limit, and the example's parser: the
    // reader is compiled for this pair.
    pipemode::reader reader(make_provider(o.sources, o.source, "pipemode-libsvm-stats"),
                            pipemode::line_decoder(pipemode::line_options{.max_record_size = reader_options.max_record_size}),
                            libsvm::libsvm_parser(o.parser), reader_options);

    std::uint64_t rows = 0;
    std::uint64_t nnz = 0;
    std::map<std::string, std::uint64_t> labels;
    std::vector<double> sums(o.parser.feature_dim, 0.0);
    char text[64];
    for (auto& batch : reader) {
        const auto& x = batch.feature(libsvm::values_name);
        const auto keys = x.keys();
        const auto values = x.values<float>();
        for (std::size_t i = 0; i < keys.size(); ++i)
            sums[keys[i]] += values[i];
        nnz += keys.size();
        for (float y : batch.label(libsvm::values_name).values<float>()) {
            std::snprintf(text, sizeof text, "%.9g", static_cast<double>(y));
            ++labels[text];
        }
        rows += batch.size();
    }

    std::string out = "{\"rows\":" + std::to_string(rows) + ",\"nnz\":" + std::to_string(nnz)
        + ",\"bad_records\":" + std::to_string(reader.stats().bad_records) + ",\"labels\":{";
    bool first = true;
    for (const auto& [label, count] : labels) {
        out += (first ? "\"" : ",\"") + label + "\":" + std::to_string(count);
        first = false;
    }
    out += "},\"feature_sums\":[";
    for (std::size_t j = 0; j < sums.size(); ++j) {
        // 17 significant digits: the sum as the program holds it, for the test's tolerance to judge.
        std::snprintf(text, sizeof text, "%s%.17g", j ? "," : "", sums[j]);
        out += text;
    }
    out += "]}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
}

} // namespace

int main(int argc, char** argv)
{
    options o;
    try {
        o = parse_command_line(argc, argv);
        if (o.help) {
            for (const auto part : {usage_head, source_options_help})
                std::fwrite(part.data(), 1, part.size(), stdout);
            return 0;
        }
        run(o);
        return 0;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-libsvm-stats: %s\nTry 'pipemode-libsvm-stats --help'.\n", e.what());
        return 2;
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "pipemode-libsvm-stats: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        // A data_error names the source, the byte offset, the line (record) and the column.
        std::fprintf(stderr, "pipemode-libsvm-stats: %s\n", e.what());
        return 1;
    }
}
