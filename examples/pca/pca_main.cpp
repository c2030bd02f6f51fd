// pipemode-pca: streaming PCA over a RecordIO-protobuf data set read through the training
// library's channels (training.hpp), in one pass, as SageMaker's built-in PCA ("regular" and
// "randomized" modes), optionally over MPI ranks that each read a shard. Writes model.json, and
// with --predict gives each record's projection (docs/algorithms.md).
//
// Usage: `pipemode-pca --help` and docs/algorithms.md.
#include "../common/feature_rows.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "streaming_pca.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::examples;
using pipemode::tools::parse_count;

constexpr std::string_view program = "pipemode-pca";

// The largest feature_dim the regular mode accepts.
constexpr std::size_t max_regular_dim = 16384;

constexpr std::string_view usage_head = R"(Usage: pipemode-pca [options] SOURCE...
       pipemode-pca [options] --pipe-channel NAME [--data-dir DIR]
       pipemode-pca --predict MODEL_FILE [--output FILE] SOURCE...

Streaming PCA in one pass over RecordIO-protobuf records with a float32/float64/int32 feature
"values", dense or sparse. A SOURCE is a local file or FIFO, an http(s):// URL, an S3 object
s3://BUCKET/KEY or prefix s3://BUCKET/PREFIX/. Under mpirun each rank reads every size-th
SOURCE and the statistics are combined. Writes MODEL_DIR/model.json (and an empty
metrics.json: SageMaker's PCA has no metrics) and prints a summary. --predict writes
{"projection": [...]} for each record: (x - mean) times the components (x itself when
subtract_mean is false), in the model's order of components (largest variance first).

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --num_components K     components to compute (required)
  --feature_dim D        values a record (default: from the first record)
  --mini_batch_size N    records a batch (default 1000)
  --algorithm_mode MODE  regular (exact covariance, default) or randomized (a one-pass sketch
                         of num_components + extra_components columns)
  --subtract_mean BOOL   centre the data (default true)
  --extra_components N   randomized: extra sketch columns; -1 (default) is max(10, K)
  --seed S               randomized: the seed of the random projection (default 1)
Dashes may replace underscores (--feature-dim).

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

struct pca_settings {
    pca_options pca;
    std::size_t mini_batch_size = 1000;
    std::int64_t extra_components = -1;
    bool components_given = false;
};

bool set_hyperparameter(pca_settings& s, const std::string& name, std::string_view value)
{
    if (name == "num_components") {
        s.pca.num_components = parse_count(name, value);
        s.components_given = true;
    }
    else if (name == "feature_dim")
        s.pca.feature_dim = parse_count(name, value);
    else if (name == "mini_batch_size") {
        s.mini_batch_size = parse_count(name, value);
        if (s.mini_batch_size == 0)
            throw usage_error("mini_batch_size must be at least 1");
    }
    else if (name == "algorithm_mode") {
        if (value == "regular")
            s.pca.mode = pca_mode::regular;
        else if (value == "randomized")
            s.pca.mode = pca_mode::randomized;
        else
            throw usage_error("algorithm_mode is regular or randomized, not '" + std::string(value) + "'");
    }
    else if (name == "subtract_mean")
        s.pca.subtract_mean = parse_bool(name, value);
    else if (name == "extra_components") {
        if (value == "-1")
            s.extra_components = -1;
        else
            s.extra_components = static_cast<std::int64_t>(parse_count(name, value));
    }
    else if (name == "seed")
        s.pca.seed = parse_count(name, value);
    else
        return false;
    return true;
}

struct pass_result {
    std::uint64_t records = 0;  // this rank's
    std::uint64_t bytes = 0;
    std::optional<moments> stats;
};

/// Reads this rank's data once and accumulates its moments.
pass_result one_pass(const training_job& job, pca_settings& s, const mpi_context& mpi, progress_line& progress)
{
    pass_result r;
    channel_reader reader(job, channel::train, 0, mpi, s.mini_batch_size);
    std::optional<pipemode::batch> first = reader.next();
    const std::size_t seen = first ? feature_rows::dimension_of(*first, "values") : 0;
    s.pca.feature_dim = agree_on_dimension(s.pca.feature_dim, seen, mpi);
    const std::size_t d = s.pca.feature_dim;
    if (s.pca.num_components == 0 || s.pca.num_components > d)
        throw usage_error("num_components must be between 1 and feature_dim = " + std::to_string(d));
    // Regular mode holds d x d doubles three times over at the end (M2, and the eigensolver's
    // two work matrices) and decomposes in O(d^3): 6 GiB and about an hour at d = 16384.
    if (s.pca.mode == pca_mode::regular && d > max_regular_dim)
        throw usage_error("algorithm_mode regular keeps feature_dim x feature_dim matrices (" + std::to_string(d)
                          + " here); above " + std::to_string(max_regular_dim) + " use algorithm_mode randomized");
    s.pca.extra_components = s.extra_components < 0 ? std::max<std::size_t>(10, s.pca.num_components)
                                                    : static_cast<std::size_t>(s.extra_components);
    r.stats.emplace(make_pca_moments(s.pca));

    std::vector<double> rows, values;
    std::vector<std::uint64_t> offsets, keys;
    auto add = [&](const pipemode::batch& b) {
        const feature_rows fr(b, "values", d);
        const std::size_t m = fr.size();
        if (!fr.sparse()) {
            rows.resize(m * d);
            for (std::size_t i = 0; i < m; ++i)
                fr.dense_row(i, std::span(rows).subspan(i * d, d));
            r.stats->add_dense(rows, m);
        }
        else {
            offsets.assign(1, 0);
            keys.clear();
            values.clear();
            std::vector<double> row_values;
            for (std::size_t i = 0; i < m; ++i) {
                const auto k = fr.sparse_row(i, row_values);
                keys.insert(keys.end(), k.begin(), k.end());
                values.insert(values.end(), row_values.begin(), row_values.end());
                offsets.push_back(keys.size());
            }
            r.stats->add_sparse(offsets, keys, values, m);
        }
        r.records += m;
    };
    progress.start_epoch(0, 1);
    if (first) {
        add(*first);
        first.reset();
        while (auto b = reader.next()) {
            add(*b);
            progress.update(r.records, reader.bytes());
        }
    }
    r.bytes = reader.bytes();
    return r;
}

/// Combines the ranks' (count, mean, M2) exactly as a Chan merge of all of them: the global
/// mean from the sums n_r * mean_r, then M2 = sum over ranks of M2_r + n_r d_r d_r^T (P), with
/// d_r = mean_r - mean. Every rank ends with the same statistics.
void combine(moments& s, const mpi_context& mpi)
{
    if (mpi.size() == 1)
        return;
    const std::size_t d = s.dim();
    const std::uint64_t n = mpi.sum(s.count());
    const double nr = static_cast<double>(s.count());
    std::vector<double> mean(d);
    for (std::size_t j = 0; j < d; ++j)
        mean[j] = nr * s.mean()[j];
    mpi.sum(mean);
    for (auto& x : mean)
        x /= static_cast<double>(n);
    std::vector<double> m2(s.m2().begin(), s.m2().end());
    std::vector<double> delta(d);
    double trace = s.trace();
    for (std::size_t j = 0; j < d; ++j) {
        delta[j] = s.mean()[j] - mean[j];
        trace += nr * delta[j] * delta[j];
    }
    s.add_outer(m2, delta, nr);
    m2.push_back(trace);
    mpi.sum(m2);
    trace = m2.back();
    m2.pop_back();
    s.assign(n, std::move(mean), std::move(m2), trace);
}

std::string model_json(const pca_model& m, const pca_settings& s)
{
    std::string out = "{\n";
    out += "  \"algorithm\": \"pca\",\n  \"format_version\": 1,\n";
    out += "  \"feature_dim\": " + std::to_string(m.feature_dim) + ",\n";
    out += "  \"num_components\": " + std::to_string(m.explained_variance.size()) + ",\n";
    out += std::string("  \"algorithm_mode\": \"") + (s.pca.mode == pca_mode::regular ? "regular" : "randomized") + "\",\n";
    out += std::string("  \"subtract_mean\": ") + (s.pca.subtract_mean ? "true" : "false") + ",\n";
    out += "  \"extra_components\": " + std::to_string(s.pca.extra_components) + ",\n";
    out += "  \"records\": " + std::to_string(m.records) + ",\n";
    out += "  \"mean\": ";
    append_json_array(out, m.mean);
    out += ",\n  \"explained_variance\": ";
    append_json_array(out, m.explained_variance);
    out += ",\n  \"explained_variance_ratio\": ";
    append_json_array(out, m.explained_variance_ratio);
    out += ",\n  \"singular_values\": ";
    append_json_array(out, m.singular_values);
    out += ",\n  \"components\": ";
    append_json_matrix(out, m.components, m.feature_dim);
    out += "\n}\n";
    return out;
}

/// Prediction mode: each record projected on the model's components, as SageMaker's PCA
/// inference gives it.
int predict(const training_job& job, const mpi_context& mpi)
{
    const auto m = model_file::read(job.predict_model());
    m.expect("pca", 1);
    const std::size_t d = m.count("feature_dim");
    const std::size_t k = m.count("num_components");
    const auto mean = m.numbers("mean");
    const auto components = m.matrix("components", d);
    if (mean.size() != d || components.size() != k * d)
        throw std::runtime_error(job.predict_model().string() + ": \"mean\" or \"components\" does not match feature_dim and num_components");
    const bool centre = m.boolean("subtract_mean");
    using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const row_major> w(components.data(), static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(d));
    const Eigen::Map<const Eigen::VectorXd> mu(mean.data(), static_cast<Eigen::Index>(d));
    Eigen::VectorXd x(static_cast<Eigen::Index>(d));
    std::vector<double> scratch;
    run_prediction(job, mpi, 1000, [&](const pipemode::batch& b, std::vector<std::string>& rows) {
        const feature_rows fr(b, "values", d);
        for (std::size_t i = 0; i < fr.size(); ++i) {
            fr.densify(i, std::span<double>(x.data(), d), scratch);
            if (centre)
                x -= mu;
            const Eigen::VectorXd p = w * x;
            std::string r = "{\"projection\": [";
            for (Eigen::Index c = 0; c < p.size(); ++c) {
                if (c)
                    r += ", ";
                append_json_shortest(r, p[c]);
            }
            r += "]}";
            rows.push_back(std::move(r));
        }
    });
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    pca_settings s;
    const auto job = training_job::parse(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (job.help()) {
        print_help(mpi, usage_head, usage_tail);
        return 0;
    }
    if (job.predicting())
        return predict(job, mpi);
    if (!s.components_given)
        throw usage_error("num_components is required");
    if (job.has(channel::validation) || job.has(channel::test))
        throw usage_error("PCA reads the train channel only (SageMaker's PCA takes train and an unused test)");

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    auto pass = one_pass(job, s, mpi, progress);
    const std::uint64_t bytes = mpi.sum(pass.bytes);
    combine(*pass.stats, mpi);
    pass.stats->symmetrize();
    const double read_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.end_epoch(pass.stats->count(), bytes);
    const auto model = finish_pca(*pass.stats, s.pca);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (mpi.rank() == 0) {
        const auto path = write_model_file(job.model_dir(), "model.json", model_json(model, s));
        metrics_log(false).write(job.model_dir());
        std::string out;
        using pipemode::tools::append_field;
        using pipemode::tools::format;
        append_field(out, "records", std::to_string(model.records));
        append_field(out, "ranks", std::to_string(mpi.size()));
        append_field(out, "bytes", std::to_string(bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "pass seconds", format("%.3f", read_seconds));
        append_field(out, "MB/s", format("%.1f", read_seconds > 0 ? static_cast<double>(bytes) / 1e6 / read_seconds : 0.0));
        std::string ev;
        for (std::size_t i = 0; i < model.explained_variance.size() && i < 8; ++i)
            ev += (i ? " " : "") + format("%.6g", model.explained_variance[i]);
        if (model.explained_variance.size() > 8)
            ev += " ...";
        append_field(out, "variance", ev);
        append_field(out, "model", path.string());
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
