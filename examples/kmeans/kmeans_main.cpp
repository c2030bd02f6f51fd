// pipemode-kmeans: mini-batch K-Means over a RecordIO-protobuf data set read through the
// training library's channels (training.hpp), epoch after epoch, as SageMaker's built-in K-Means,
// optionally over MPI ranks that each read a shard. Writes model.json and metrics.json, and with
// --predict gives each record's closest cluster (docs/algorithms.md).
//
// Usage: `pipemode-kmeans --help` and docs/algorithms.md.
#include "../common/feature_rows.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "minibatch_kmeans.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::examples;
using pipemode::tools::parse_count;
using pipemode::tools::parse_real;

constexpr std::string_view program = "pipemode-kmeans";

constexpr std::string_view usage_head = R"(Usage: pipemode-kmeans [options] SOURCE... [--test SOURCE]...
       pipemode-kmeans [options] --pipe-channel NAME [--data-dir DIR]
       pipemode-kmeans --predict MODEL_FILE [--output FILE] SOURCE...

Mini-batch K-Means over RecordIO-protobuf records with a float32/float64/int32 feature
"values", dense or sparse, reading the data once per epoch. A SOURCE is a local file or FIFO,
an http(s):// URL, an S3 object s3://BUCKET/KEY or prefix s3://BUCKET/PREFIX/. Under mpirun each
rank reads every size-th SOURCE; the ranks add their mini-batch statistics and hold the same
centres. Writes MODEL_DIR/model.json and metrics.json and prints a summary. Metrics:
train:msd per epoch (mini-batch assignments) and at the end (the final pass), train:ssd, and
with a test channel test:msd and test:ssd. --predict writes {"closest_cluster": C,
"distance_to_cluster": D} (D Euclidean) for each record.

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --k K                          clusters (required)
  --feature_dim D                values a record (default: from the first record)
  --mini_batch_size N            records a mini-batch, over all ranks (default 5000)
  --epochs E                     passes over the data (default 1)
  --init_method M                random (default) or kmeans++
  --extra_center_factor F        train K = F * k centres, reduce to k at the end; auto = 1
  --local_lloyd_max_iter N       iterations of the reducing Lloyd's (default 300)
  --local_lloyd_tol T            its relative tolerance (default 0.0001)
  --local_lloyd_init_method M    its initialisation: kmeans++ (default) or random
Not SageMaker's:
  --seed S                       seed of the initialisation (default 1)
  --init_sample_size N           records (over all ranks) the initial centres are chosen
                                 from: the first N of epoch 1 (default 10000; at most 64 MiB
                                 of dense rows a rank)
  --wcss final_pass|last_epoch   how the within-cluster sum of squares is measured: a pass
                                 over the data with the final centres (default), or summed
                                 during the last epoch against the centres of the moment
Dashes may replace underscores (--feature-dim).

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

enum class wcss_method { final_pass, last_epoch };

struct kmeans_settings {
    std::size_t k = 0;
    std::size_t feature_dim = 0;
    std::size_t mini_batch_size = 5000;
    std::uint64_t epochs = 1;
    kmeans_init init = kmeans_init::random;
    std::size_t extra_center_factor = 1;
    std::size_t lloyd_max_iter = 300;
    double lloyd_tol = 1e-4;
    kmeans_init lloyd_init = kmeans_init::kmeans_plus_plus;
    std::uint64_t seed = 1;
    std::size_t init_sample_size = 10000;
    wcss_method wcss = wcss_method::final_pass;
};

kmeans_init parse_init(const std::string& name, std::string_view v)
{
    if (v == "random")
        return kmeans_init::random;
    if (v == "kmeans++")
        return kmeans_init::kmeans_plus_plus;
    throw usage_error(name + " is random or kmeans++, not '" + std::string(v) + "'");
}

std::string_view to_string(kmeans_init i) { return i == kmeans_init::random ? "random" : "kmeans++"; }

std::size_t positive(const std::string& name, std::string_view v)
{
    const auto n = parse_count(name, v);
    if (n == 0)
        throw usage_error(name + " must be at least 1");
    return n;
}

bool set_hyperparameter(kmeans_settings& s, const std::string& name, std::string_view v)
{
    if (name == "k")
        s.k = positive(name, v);
    else if (name == "feature_dim")
        s.feature_dim = parse_count(name, v);
    else if (name == "mini_batch_size")
        s.mini_batch_size = positive(name, v);
    else if (name == "epochs")
        s.epochs = positive(name, v);
    else if (name == "init_method")
        s.init = parse_init(name, v);
    else if (name == "extra_center_factor")
        s.extra_center_factor = v == "auto" ? 1 : positive(name, v);
    else if (name == "local_lloyd_max_iter")
        s.lloyd_max_iter = parse_count(name, v);
    else if (name == "local_lloyd_tol") {
        s.lloyd_tol = parse_real(name, v);
        if (s.lloyd_tol < 0)
            throw usage_error("local_lloyd_tol must not be negative");
    }
    else if (name == "local_lloyd_init_method")
        s.lloyd_init = parse_init(name, v);
    else if (name == "seed")
        s.seed = parse_count(name, v);
    else if (name == "init_sample_size")
        s.init_sample_size = positive(name, v);
    else if (name == "wcss") {
        if (v == "final_pass")
            s.wcss = wcss_method::final_pass;
        else if (v == "last_epoch")
            s.wcss = wcss_method::last_epoch;
        else
            throw usage_error("wcss is final_pass or last_epoch, not '" + std::string(v) + "'");
    }
    else
        return false;
    return true;
}

/// Calls `f(row_index_in_batch, dense_row)` or `g(keys, values)` for every row of `b`.
class row_feeder {
public:
    explicit row_feeder(std::size_t d) : d_(d), dense_(d) {}

    template <class Dense, class Sparse>
    std::size_t feed(const pipemode::batch& b, Dense&& dense, Sparse&& sparse)
    {
        const feature_rows fr(b, "values", d_);
        for (std::size_t i = 0; i < fr.size(); ++i) {
            if (fr.sparse()) {
                const auto keys = fr.sparse_row(i, values_);
                sparse(keys, std::span<const double>(values_));
            }
            else {
                fr.dense_row(i, dense_);
                dense(dense_.data());
            }
        }
        return fr.size();
    }

private:
    std::size_t d_;
    std::vector<double> dense_;
    std::vector<double> values_;
};

struct training_result {
    std::vector<double> initial;  // K x d
    std::vector<double> centres;  // k x d, final
    std::vector<double> sizes;    // k: rows a centre's cluster has (final pass) or absorbed (training)
    double wcss = 0;
    std::uint64_t records = 0;    // over all ranks, in one epoch
    std::uint64_t bytes = 0;      // over all ranks and epochs
    double first_epoch_seconds = 0;
};

training_result train(const training_job& job, kmeans_settings& s, const mpi_context& mpi, progress_line& progress,
                      metrics_log& metrics)
{
    training_result out;
    const std::size_t ranks = mpi.size();
    const std::size_t rank_batch = (s.mini_batch_size + ranks - 1) / ranks;
    const std::size_t big_k = s.k * s.extra_center_factor;
    kmeans_random random(s.seed);

    std::optional<minibatch_kmeans> model;
    std::size_t d = 0;
    std::optional<row_feeder> feeder;
    double last_epoch_wcss = 0;
    const auto start = std::chrono::steady_clock::now();

    for (std::uint64_t epoch = 0; epoch < s.epochs; ++epoch) {
        progress.start_epoch(epoch, s.epochs);
        channel_reader reader(job, channel::train, epoch, mpi, rank_batch);
        std::deque<pipemode::batch> held;  // epoch 0: the batches the sample came from
        if (epoch == 0) {
            // The initial centres come from the first init_sample_size records (each rank's
            // share of them), gathered on every rank in rank order, so that all ranks choose
            // the same centres with the same seed.
            std::optional<pipemode::batch> first = reader.next();
            d = s.feature_dim = agree_on_dimension(s.feature_dim, first ? feature_rows::dimension_of(*first, "values") : 0, mpi);
            feeder.emplace(d);
            // The sample is dense: at most 64 MiB of it a rank (8,388,608 values), but never
            // fewer rows than centres.
            constexpr std::size_t sample_values = (64u << 20) / sizeof(double);
            const std::size_t target = std::max(big_k, std::min((s.init_sample_size + ranks - 1) / ranks,
                                                                sample_values / d));
            std::vector<double> sample, scratch;
            std::vector<double> row(d);
            std::size_t sampled = 0;
            while (first) {
                const feature_rows fr(*first, "values", d);
                for (std::size_t i = 0; i < fr.size() && sampled < target; ++i, ++sampled) {
                    fr.densify(i, row, scratch);
                    sample.insert(sample.end(), row.begin(), row.end());
                }
                held.push_back(std::move(*first));
                first.reset();
                if (sampled < target)
                    first = reader.next();
            }
            const auto all = mpi.gather_all(sample);
            const std::size_t n = all.size() / d;
            const std::vector<double> ones(n, 1.0);
            out.initial = initial_centres(all, ones, n, d, big_k, s.init, random);
            model.emplace(out.initial, big_k, d);
        }

        std::uint64_t records = 0;
        double wcss = 0;
        std::vector<double> shared;  // batch sums, batch counts and "had a batch", added over ranks
        for (;;) {
            std::optional<pipemode::batch> b;
            if (!held.empty()) {
                b = std::move(held.front());
                held.pop_front();
            }
            else {
                b = reader.next();
            }
            if (b) {
                records += feeder->feed(
                    *b, [&](const double* x) { wcss += model->assign_dense(x); },
                    [&](std::span<const std::uint64_t> k, std::span<const double> v) { wcss += model->assign_sparse(k, v); });
            }
            if (ranks > 1) {
                auto sums = model->batch_sums();
                auto counts = model->batch_counts();
                shared.assign(sums.begin(), sums.end());
                shared.insert(shared.end(), counts.begin(), counts.end());
                shared.push_back(b ? 1.0 : 0.0);
                mpi.sum(shared);
                if (shared[sums.size() + counts.size()] == 0)
                    break;
                std::copy(shared.begin(), shared.begin() + static_cast<std::ptrdiff_t>(sums.size()), sums.begin());
                std::copy(shared.begin() + static_cast<std::ptrdiff_t>(sums.size()),
                          shared.begin() + static_cast<std::ptrdiff_t>(sums.size() + counts.size()), counts.begin());
            }
            else if (!b) {
                break;
            }
            model->apply();
            // rank 0's share times the ranks: an estimate, exact at the epoch's end
            progress.update(records * ranks, reader.bytes() * ranks);
        }
        const std::uint64_t epoch_bytes = mpi.sum(reader.bytes());
        const std::uint64_t epoch_records = mpi.sum(records);
        progress.end_epoch(epoch_records, epoch_bytes);
        out.bytes += epoch_bytes;
        if (epoch == 0) {
            out.records = epoch_records;
            out.first_epoch_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        double w = wcss;
        mpi.sum(std::span(&w, 1));
        last_epoch_wcss = w;
        // The epoch's mean squared distance, each row against the centres of its moment.
        metrics.report("train", "msd", epoch_records ? w / static_cast<double>(epoch_records) : 0.0, epoch + 1);
    }

    // Extra centres: a local Lloyd's on the centres weighted by what they absorbed. Every rank
    // runs it on the same input with the same generator, so all end with the same centres.
    out.centres = reduce_centres(model->centres(), model->counts(), big_k, d, s.k, s.lloyd_init, s.lloyd_max_iter,
                                 s.lloyd_tol, random);

    if (s.wcss == wcss_method::last_epoch) {
        out.wcss = last_epoch_wcss;
        out.sizes.assign(model->counts().begin(), model->counts().end());
        if (big_k != s.k)
            out.sizes.clear();  // the training centres' counts do not belong to the final ones
        return out;
    }
    // A final pass: every row against the final centres.
    minibatch_kmeans final_model(out.centres, s.k, d);  // for its assignment code; never applied
    progress.start_pass("final pass");
    channel_reader reader(job, channel::train, s.epochs, mpi, rank_batch);
    std::vector<double> totals(s.k + 1, 0.0);
    std::uint64_t records = 0;
    while (auto b = reader.next()) {
        records += feeder->feed(
            *b, [&](const double* x) { totals[s.k] += final_model.assign_dense(x); },
            [&](std::span<const std::uint64_t> k, std::span<const double> v) {
                totals[s.k] += final_model.assign_sparse(k, v);
            });
        progress.update(records * ranks, reader.bytes() * ranks);
    }
    const auto counts = final_model.batch_counts();
    std::copy(counts.begin(), counts.end(), totals.begin());
    mpi.sum(totals);
    const std::uint64_t pass_bytes = mpi.sum(reader.bytes());
    progress.end_epoch(mpi.sum(records), pass_bytes);
    out.bytes += pass_bytes;
    out.wcss = totals[s.k];
    out.sizes.assign(totals.begin(), totals.begin() + static_cast<std::ptrdiff_t>(s.k));
    return out;
}

std::string model_json(const training_result& r, const kmeans_settings& s)
{
    std::string out = "{\n";
    out += "  \"algorithm\": \"kmeans\",\n  \"format_version\": 1,\n";
    out += "  \"k\": " + std::to_string(s.k) + ",\n";
    out += "  \"feature_dim\": " + std::to_string(s.feature_dim) + ",\n";
    out += "  \"records\": " + std::to_string(r.records) + ",\n";
    out += "  \"epochs\": " + std::to_string(s.epochs) + ",\n";
    out += "  \"mini_batch_size\": " + std::to_string(s.mini_batch_size) + ",\n";
    out += "  \"init_method\": \"" + std::string(to_string(s.init)) + "\",\n";
    out += "  \"extra_center_factor\": " + std::to_string(s.extra_center_factor) + ",\n";
    out += "  \"seed\": " + std::to_string(s.seed) + ",\n";
    out += std::string("  \"wcss_method\": \"") + (s.wcss == wcss_method::final_pass ? "final_pass" : "last_epoch") + "\",\n";
    out += "  \"wcss\": ";
    append_json_number(out, r.wcss);
    out += ",\n  \"mean_squared_distance\": ";
    append_json_number(out, r.records ? r.wcss / static_cast<double>(r.records) : 0.0);
    out += ",\n  \"cluster_sizes\": ";
    append_json_array(out, r.sizes);
    out += ",\n  \"centers\": ";
    append_json_matrix(out, r.centres, s.feature_dim);
    out += ",\n  \"initial_centers\": ";
    append_json_matrix(out, r.initial, s.feature_dim);
    out += "\n}\n";
    return out;
}

/// The test channel against the final centres: its sum and mean of squared distances, read
/// whole by rank 0 (the others return nothing), so that they do not depend on the ranks.
std::optional<std::pair<double, std::uint64_t>> test_pass(const training_job& job, const kmeans_settings& s,
                                                          const std::vector<double>& centres, const mpi_context& mpi)
{
    if (mpi.rank() != 0)
        return std::nullopt;
    minibatch_kmeans model(centres, s.k, s.feature_dim);  // for its assignment code; never applied
    row_feeder feeder(s.feature_dim);
    channel_reader reader(job, channel::test, 0, mpi, s.mini_batch_size);
    double ssd = 0;
    std::uint64_t records = 0;
    while (auto b = reader.next())
        records += feeder.feed(
            *b, [&](const double* x) { ssd += model.assign_dense(x); },
            [&](std::span<const std::uint64_t> k, std::span<const double> v) { ssd += model.assign_sparse(k, v); });
    return std::pair(ssd, records);
}

/// Prediction mode: each record's closest centre of the model and its Euclidean distance, as
/// SageMaker's K-Means inference gives them.
int predict(const training_job& job, const mpi_context& mpi)
{
    const auto m = model_file::read(job.predict_model());
    m.expect("kmeans", 1);
    const std::size_t k = m.count("k");
    const std::size_t d = m.count("feature_dim");
    const auto centres = m.matrix("centers", d);
    if (centres.size() != k * d)
        throw std::runtime_error(job.predict_model().string() + ": \"centers\" has " + std::to_string(centres.size() / d)
                                 + " rows, not k = " + std::to_string(k));
    std::vector<double> row(d), scratch;
    run_prediction(job, mpi, 1000, [&](const pipemode::batch& b, std::vector<std::string>& rows) {
        const feature_rows fr(b, "values", d);
        for (std::size_t i = 0; i < fr.size(); ++i) {
            fr.densify(i, row, scratch);
            const auto [c, d2] = nearest_centre(row.data(), centres, k, d);
            std::string r = "{\"closest_cluster\": " + std::to_string(c) + ", \"distance_to_cluster\": ";
            append_json_shortest(r, std::sqrt(d2));
            r += '}';
            rows.push_back(std::move(r));
        }
    });
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    kmeans_settings s;
    const auto job = training_job::parse(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (job.help()) {
        print_help(mpi, usage_head, usage_tail);
        return 0;
    }
    if (job.predicting())
        return predict(job, mpi);
    if (s.k == 0)
        throw usage_error("k is required");
    if (job.has(channel::validation))
        throw usage_error("K-Means has no use for a validation channel (SageMaker's takes train and test)");

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    metrics_log metrics(mpi.rank() == 0);
    const auto r = train(job, s, mpi, progress, metrics);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics.report("train", "msd", r.records ? r.wcss / static_cast<double>(r.records) : 0.0);
    metrics.report("train", "ssd", r.wcss);
    if (job.has(channel::test))
        if (const auto t = test_pass(job, s, r.centres, mpi)) {
            metrics.report("test", "msd", t->second ? t->first / static_cast<double>(t->second) : 0.0);
            metrics.report("test", "ssd", t->first);
        }

    if (mpi.rank() == 0) {
        const auto path = write_model_file(job.model_dir(), "model.json", model_json(r, s));
        metrics.write(job.model_dir());
        std::string out;
        using pipemode::tools::append_field;
        using pipemode::tools::format;
        append_field(out, "records", std::to_string(r.records));
        append_field(out, "epochs", std::to_string(s.epochs));
        append_field(out, "ranks", std::to_string(mpi.size()));
        append_field(out, "bytes", std::to_string(r.bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "epoch 1 s", format("%.3f", r.first_epoch_seconds));
        append_field(out, "MB/s", format("%.1f", seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / seconds : 0.0));
        append_field(out, "wcss", format("%.10g", r.wcss));
        append_field(out, "model", path.string());
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
