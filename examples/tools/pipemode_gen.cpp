// pipemode-gen: writes synthetic protobuf RecordIO data sets (dense or sparse, with or without
// clusters) and prints the digest of what it wrote, which pipemode-cat must reproduce.
//
// Usage: `pipemode-gen --help` and docs/tools.md.
#include "command_line.hpp"

#include <pipemode/core/digest.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

using namespace pipemode::tools;
using pipemode::record_section;
using pipemode::tensor_entry;

constexpr std::string_view usage_text = R"(Usage: pipemode-gen --out DIR [options]

Writes a synthetic data set of protobuf RecordIO files DIR/part-00000.rec, part-00001.rec, ...
Each record has a feature "values" and, unless --no-label, a float32 scalar label "values".
Prints rows, files, bytes and the digest of the data written, in the format of pipemode-cat.

Options:
  --out DIR              where to write (created if missing; existing part files are replaced)
  --rows N               number of records (default 1000)
  --size-mib M           instead of --rows: about M MiB of files (rows from the encoded row size)
  --dim D                values per record, or columns of a sparse record (default 50)
  --files F              number of files; rows are split evenly (default 1)
  --format dense|sparse  layout of the feature (default dense)
  --density P            sparse: about P * D non-zeros a record (default 0.1)
  --dtype float32|float64|int32   element type of the feature (default float32)
  --label, --no-label    write the label or not (default --label)
  --clusters K           draw rows around K random centres; the label is the cluster id
                         (default 0: values uniform in [-1, 1))
  --noise S              standard deviation of the noise around a centre (default 0.1)
  --seed S               the random seed (default 1); a seed always gives the same files
  -h, --help             print this help

Exit status: 0 on success, 1 when a file cannot be written, 2 on a usage error.
)";

enum class layout { dense, sparse };
enum class dtype { float32, float64, int32 };

struct gen_options {
    std::string out;
    std::uint64_t rows = 1000;
    std::optional<std::uint64_t> size_mib;
    std::uint64_t dim = 50;
    std::uint64_t files = 1;
    layout format = layout::dense;
    double density = 0.1;
    dtype type = dtype::float32;
    bool label = true;
    std::uint64_t clusters = 0;
    double noise = 0.1;
    std::uint64_t seed = 1;
    bool help = false;
};

gen_options parse_command_line(int argc, char** argv)
{
    gen_options o;
    bool rows_given = false;
    for (option_cursor c(argc, argv); c.next();) {
        const auto name = c.name();
        if (c.positional())
            throw usage_error("unexpected argument '" + std::string(c.arg()) + "' (pipemode-gen takes options only)");
        else if (name == "-h" || name == "--help")
            o.help = true;
        else if (name == "--out")
            o.out = c.value();
        else if (name == "--rows") {
            o.rows = parse_count(name, c.value());
            rows_given = true;
        }
        else if (name == "--size-mib") {
            o.size_mib = parse_count(name, c.value());
            if (*o.size_mib == 0)
                throw usage_error("--size-mib must be at least 1");
        }
        else if (name == "--dim")
            o.dim = parse_count(name, c.value());
        else if (name == "--files")
            o.files = parse_count(name, c.value());
        else if (name == "--format") {
            const auto v = c.value();
            if (v == "dense")
                o.format = layout::dense;
            else if (v == "sparse")
                o.format = layout::sparse;
            else
                throw usage_error("--format is dense or sparse, not '" + std::string(v) + "'");
        }
        else if (name == "--density")
            o.density = parse_real(name, c.value());
        else if (name == "--dtype") {
            const auto v = c.value();
            if (v == "float32")
                o.type = dtype::float32;
            else if (v == "float64")
                o.type = dtype::float64;
            else if (v == "int32")
                o.type = dtype::int32;
            else
                throw usage_error("--dtype is float32, float64 or int32, not '" + std::string(v) + "'");
        }
        else if (name == "--label")
            o.label = true;
        else if (name == "--no-label")
            o.label = false;
        else if (name == "--clusters")
            o.clusters = parse_count(name, c.value());
        else if (name == "--noise")
            o.noise = parse_real(name, c.value());
        else if (name == "--seed")
            o.seed = parse_count(name, c.value());
        else
            c.unknown();
    }
    if (o.help)
        return o;
    if (o.out.empty())
        throw usage_error("--out DIR is required");
    if (rows_given && o.size_mib)
        throw usage_error("give --rows or --size-mib, not both");
    if (o.dim == 0 || o.dim > (std::uint64_t{1} << 32))
        throw usage_error("--dim must be between 1 and 2^32");
    if (o.files == 0 || o.files > 100000)
        throw usage_error("--files must be between 1 and 100000 (the names have five digits)");
    if (!(o.density > 0 && o.density <= 1))
        throw usage_error("--density must be above 0 and at most 1");
    if (o.noise < 0)
        throw usage_error("--noise must not be negative");
    if (o.clusters > 0 && o.clusters * o.dim > (std::uint64_t{1} << 28))
        throw usage_error("--clusters K times --dim D must be at most 2^28 (the centres are kept in memory)");
    return o;
}

// ---------------------------------------------------------------------------------------------
// Random numbers
//
// std::mt19937_64's sequence is fixed by the C++ standard, but the distributions
// (std::uniform_real_distribution, std::normal_distribution, ...) are not: each standard
// library maps the engine's output to numbers its own way. The transforms below use only exact
// arithmetic (integer operations, and floating-point operations whose results are exactly
// representable), so a seed gives the same files with any compiler and standard library.

class random_source {
public:
    explicit random_source(std::uint64_t seed) : engine_(seed) {}

    /// Uniform in [0, 1), a multiple of 2^-53.
    double uniform01() { return static_cast<double>(engine_() >> 11) * 0x1p-53; }

    /// Uniform in [-1, 1), a multiple of 2^-52.
    double uniform_pm1() { return uniform01() * 2 - 1; }

    /// Uniform in {0, ..., n - 1} for n up to 2^53 (floor of a uniform [0, 1) times n; the bias
    /// is below n / 2^53).
    std::uint64_t below(std::uint64_t n) { return static_cast<std::uint64_t>(uniform01() * static_cast<double>(n)); }

    /// Approximately standard normal: the sum of twelve uniforms on [0, 1) minus 6 (the
    /// Irwin-Hall approximation: mean 0, variance 1, bounded by +-6). The uniforms are 32-bit
    /// and summed as integers, so the result is exact. Box-Muller would need log and cos, whose
    /// last bits differ between maths libraries.
    double normal()
    {
        std::uint64_t sum = 0;
        for (int i = 0; i < 6; ++i) {
            const std::uint64_t r = engine_();
            sum += (r >> 32) + (r & 0xffffffffU);
        }
        return static_cast<double>(sum) * 0x1p-32 - 6;
    }

private:
    std::mt19937_64 engine_;
};

// ---------------------------------------------------------------------------------------------
// Rows

/// Draws rows one at a time: the values (and keys) of the feature and the label.
///
/// Values: with no clusters, uniform in [-1, 1); with K clusters, a cluster c uniform in
/// [0, K) and then each value centre[c][j] + noise * normal(), the centres having been drawn
/// uniform in [-1, 1) first. int32 values are those numbers times 1000, rounded down. A sparse
/// row has k non-zeros at k distinct random columns, in increasing order, k uniform in
/// {0, ..., round(2 * density * dim)} (at most dim), so rows vary and some are empty. The label
/// is the cluster id, or with no clusters 1 when the row's values sum to more than 0, else 0.
template <class T>
class row_generator {
public:
    explicit row_generator(const gen_options& o) : o_(o), random_(o.seed)
    {
        centres_.resize(o.clusters * o.dim);
        for (auto& c : centres_)
            c = random_.uniform_pm1();
        if (o.format == layout::dense)
            values_.resize(o.dim);
        else
            taken_.assign(o.dim, 0);
        max_nonzeros_ = std::min<std::uint64_t>(o.dim, static_cast<std::uint64_t>(std::llround(2 * o.density * o.dim)));
    }

    /// Draws the next row.
    void next()
    {
        cluster_ = o_.clusters > 0 ? random_.below(o_.clusters) : 0;
        if (o_.format == layout::dense) {
            for (std::uint64_t j = 0; j < o_.dim; ++j)
                values_[j] = draw(j);
        }
        else {
            draw_keys();
            values_.resize(keys_.size());
            for (std::size_t i = 0; i < keys_.size(); ++i)
                values_[i] = draw(keys_[i]);
        }
        if (o_.clusters > 0) {
            label_ = static_cast<float>(cluster_);
        }
        else {
            double sum = 0;
            for (auto v : values_)
                sum += static_cast<double>(v);
            label_ = sum > 0 ? 1.0f : 0.0f;
        }
    }

    /// The feature's values (dense: all `dim`; sparse: the non-zeros).
    std::span<const T> values() const noexcept { return values_; }

    /// A sparse row's column indices.
    std::span<const std::uint64_t> keys() const noexcept { return keys_; }

    /// The label.
    const float& label() const noexcept { return label_; }

private:
    T draw(std::uint64_t column)
    {
        double v = o_.clusters > 0 ? centres_[cluster_ * o_.dim + column] + o_.noise * random_.normal()
                                   : random_.uniform_pm1();
        if constexpr (std::is_same_v<T, std::int32_t>)
            return static_cast<std::int32_t>(std::floor(v * 1000));
        else
            return static_cast<T>(v);
    }

    // Floyd's sampling of k distinct columns out of dim: O(k), whatever dim is.
    void draw_keys()
    {
        const auto k = random_.below(max_nonzeros_ + 1);
        keys_.clear();
        for (std::uint64_t j = o_.dim - k; j < o_.dim; ++j) {
            auto t = random_.below(j + 1);
            if (taken_[t])
                t = j;
            taken_[t] = 1;
            keys_.push_back(t);
        }
        std::sort(keys_.begin(), keys_.end());
        for (auto key : keys_)
            taken_[key] = 0;
    }

    const gen_options& o_;
    random_source random_;
    std::vector<double> centres_;  // clusters x dim, row-major
    std::vector<T> values_;
    std::vector<std::uint64_t> keys_;
    std::vector<std::uint8_t> taken_;  // sparse: columns drawn for the current row
    std::uint64_t max_nonzeros_ = 0;
    std::uint64_t cluster_ = 0;
    float label_ = 0;
};

/// Encodes the generator's current row as a RecordIO-framed record appended to `out`, using
/// `payload` as scratch, and adds the row to `digest`.
template <class T>
void emit_row(const gen_options& o, const row_generator<T>& g, std::vector<std::byte>& payload,
              std::vector<std::byte>& out, pipemode::data_set_digest* digest)
{
    const auto feature = o.format == layout::dense ? tensor_entry::dense(g.values())
                                                   : tensor_entry::sparse(g.values(), g.keys(), o.dim);
    const std::span<const float> label(&g.label(), 1);
    const tensor_entry labels[] = {tensor_entry::dense(label)};
    payload.clear();
    pipemode::encode_record(payload, std::span(&feature, 1),
                            o.label ? std::span<const tensor_entry>(labels) : std::span<const tensor_entry>());
    pipemode::append_recordio(out, payload);

    if (digest) {
        // The digest of what the reader must decode, from the numbers themselves rather than
        // from the bytes written, so that pipemode-cat's digest checks the encoder, the framing
        // and the whole read path against an independent statement of the data.
        pipemode::record_digest d;
        if (o.format == layout::dense) {
            const std::array<std::uint64_t, 1> shape{o.dim};
            d.add_dense<T>(record_section::features, "values", shape, g.values());
        }
        else {
            d.add_sparse<T>(record_section::features, "values", o.dim, g.keys(), g.values());
        }
        if (o.label) {
            const std::array<std::uint64_t, 1> scalar{1};
            d.add_dense<float>(record_section::label, "values", scalar, label);
        }
        digest->add_record_hash(d.value());
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// Writes a file in large blocks through write(2).
class file_writer {
public:
    explicit file_writer(std::string path) : path_(std::move(path))
    {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd_ < 0)
            throw std::system_error(errno, std::generic_category(), "cannot create " + path_);
    }
    file_writer(const file_writer&) = delete;
    file_writer& operator=(const file_writer&) = delete;
    ~file_writer()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }

    void write(std::span<const std::byte> bytes)
    {
        while (!bytes.empty()) {
            const auto n = ::write(fd_, bytes.data(), bytes.size());
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                throw std::system_error(errno, std::generic_category(), "cannot write " + path_);
            }
            bytes = bytes.subspan(static_cast<std::size_t>(n));
        }
    }

    void close()
    {
        const int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0)
            throw std::system_error(errno, std::generic_category(), "cannot write " + path_);
    }

private:
    std::string path_;
    int fd_ = -1;
};

std::string part_name(const std::string& dir, std::uint64_t i)
{
    char name[32];
    std::snprintf(name, sizeof name, "part-%05llu.rec", static_cast<unsigned long long>(i));
    return (std::filesystem::path(dir) / name).string();
}

/// Rows for about `mib` MiB of files: the mean framed size of the first rows the seed gives
/// (as many as fit in a few million values), which is exact for dense float tensors.
template <class T>
std::uint64_t rows_for_size(const gen_options& o, std::uint64_t mib)
{
    row_generator<T> sample(o);
    std::vector<std::byte> payload, framed;
    const std::uint64_t n = std::clamp<std::uint64_t>((std::uint64_t{4} << 20) / o.dim, 1, 1000);
    for (std::uint64_t i = 0; i < n; ++i) {
        sample.next();
        emit_row(o, sample, payload, framed, nullptr);
    }
    const double mean = static_cast<double>(framed.size()) / static_cast<double>(n);
    return static_cast<std::uint64_t>(std::ceil(static_cast<double>(mib * pipemode::mib) / mean));
}

struct gen_result {
    std::uint64_t rows = 0;
    std::uint64_t bytes = 0;
    pipemode::data_set_digest digest;
};

template <class T>
gen_result generate(const gen_options& o)
{
    const std::uint64_t rows = o.size_mib ? rows_for_size<T>(o, *o.size_mib) : o.rows;
    std::filesystem::create_directories(o.out);

    constexpr std::size_t block = 8 * pipemode::mib;
    gen_result result;
    row_generator<T> g(o);
    std::vector<std::byte> payload, buffer;
    buffer.reserve(block + 64 * pipemode::kib);
    for (std::uint64_t f = 0; f < o.files; ++f) {
        const std::uint64_t file_rows = rows / o.files + (f < rows % o.files ? 1 : 0);
        file_writer file(part_name(o.out, f));
        for (std::uint64_t r = 0; r < file_rows; ++r) {
            g.next();
            emit_row(o, g, payload, buffer, &result.digest);
            if (buffer.size() >= block) {
                file.write(buffer);
                result.bytes += buffer.size();
                buffer.clear();
            }
        }
        file.write(buffer);
        result.bytes += buffer.size();
        buffer.clear();
        file.close();
    }
    result.rows = rows;
    return result;
}

} // namespace

int main(int argc, char** argv)
{
    gen_options options;
    try {
        options = parse_command_line(argc, argv);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "pipemode-gen: %s\nTry 'pipemode-gen --help'.\n", e.what());
        return 2;
    }
    if (options.help) {
        std::fwrite(usage_text.data(), 1, usage_text.size(), stdout);
        return 0;
    }

    try {
        const auto start = std::chrono::steady_clock::now();
        gen_result r;
        switch (options.type) {
        case dtype::float32: r = generate<float>(options); break;
        case dtype::float64: r = generate<double>(options); break;
        case dtype::int32: r = generate<std::int32_t>(options); break;
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::string out;
        append_field(out, "rows", std::to_string(r.rows));
        append_field(out, "files", std::to_string(options.files));
        append_field(out, "bytes", std::to_string(r.bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "MB/s", format("%.1f", seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / seconds : 0.0));
        append_field(out, "digest", r.digest.to_string());
        std::fwrite(out.data(), 1, out.size(), stdout);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pipemode-gen: %s\n", e.what());
        return 1;
    }
}
