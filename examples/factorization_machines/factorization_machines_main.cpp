// pipemode-factorization-machines: Factorization Machines over a RecordIO-protobuf data set read
// through the training library's channels (training.hpp), epoch after epoch, as SageMaker's built-in FM (regressor or binary
// classifier), optionally over MPI ranks that each read a shard and add their gradients over
// the features their batches touched. Writes model.json and metrics.json; with --predict,
// scores records with a trained model as batch transform would (JSON Lines).
//
// Usage: `pipemode-factorization-machines --help` and docs/algorithms.md.
#include "../common/feature_rows.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "factorization_machines.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::examples;
using namespace pipemode::examples::fm;
using pipemode::tools::parse_count;
using pipemode::tools::parse_real;

constexpr std::string_view program = "pipemode-factorization-machines";

constexpr std::string_view usage_head = R"(Usage: pipemode-factorization-machines [options] SOURCE...
       pipemode-factorization-machines [options] --pipe-channel NAME [--data-dir DIR]
       pipemode-factorization-machines --predict MODEL_FILE [--output FILE] SOURCE...

Factorization Machines over RecordIO-protobuf records with a float32/float64/int32 feature
"values" (dense or sparse) and a scalar label "values", reading the data once per epoch and
updating with AdaGrad after every mini-batch. A SOURCE is a local file or FIFO, an http(s)://
URL, an S3 object s3://BUCKET/KEY or prefix s3://BUCKET/PREFIX/. Under mpirun each rank reads
its shard of the SOURCEs; the ranks add their gradients over the union of the features their
batches touched and hold the same model. Writes MODEL_DIR/model.json and MODEL_DIR/metrics.json
and prints the metrics one a line (#metric train:rmse=0.51, #metric
test:binary_classification_accuracy=0.9): rmse (regressor) or binary_classification_accuracy,
binary_classification_cross_entropy and binary_f_beta (classifier), of the train channel (its
last epoch, each record before its batch's update) and of the validation and test channels
(the final model). --predict writes {"score": S} (regressor) or {"score": P, "predicted_label":
L} (classifier) for each record.

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --predictor_type T             binary_classifier or regressor (required)
  --feature_dim D                features a record (default: from the first record)
  --num_factors K                factors a feature (required)
  --epochs E                     passes over the data (default 1)
  --mini_batch_size N            records a mini-batch, over all ranks (default 1000)
  --bias_lr, --linear_lr, --factors_lr      AdaGrad's learning rates (0.1, 0.001, 0.0001)
  --bias_wd, --linear_wd, --factors_wd      weight decays (0.01, 0.001, 0.00001)
  --bias_init_method, --linear_init_method, --factors_init_method
                                 normal (default), uniform or constant, with
  --*_init_sigma S               normal's standard deviation (default 0.01)
  --*_init_scale S               uniform's range [-S, S) (default 0.01)
  --*_init_value V               constant's value (default 0)
  --clip_gradient C              clip each rescaled gradient to [-C, C] (default: none)
  --eps E                        AdaGrad's epsilon (default 1e-8)
  --rescale_grad R               gradient scale (default: 1 / rows of the mini-batch)
Not SageMaker's:
  --seed S                       seed of the initialisation (default 1)
  --initial_model FILE           start from this model.json instead of a random one
Dashes may replace underscores (--feature-dim).

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

struct fm_settings {
    std::optional<predictor_type> predictor;
    std::size_t feature_dim = 0;
    std::size_t num_factors = 0;
    std::uint64_t epochs = 1;
    std::size_t mini_batch_size = 1000;
    fm_hyperparameters hp;
    init_spec bias_init, linear_init, factors_init;
    std::uint64_t seed = 1;
    std::string initial_model;
};

std::size_t positive(const std::string& name, std::string_view v)
{
    const auto n = parse_count(name, v);
    if (n == 0)
        throw usage_error(name + " must be at least 1");
    return n;
}

double non_negative(const std::string& name, std::string_view v)
{
    const double x = parse_real(name, v);
    if (x < 0)
        throw usage_error(name + " must not be negative");
    return x;
}

// The `<group>_init_*` hyperparameters of one parameter group; false when `rest` is not one.
bool set_init(init_spec& spec, const std::string& name, std::string_view rest, std::string_view v)
{
    if (rest == "init_method") {
        if (v == "normal")
            spec.kind = init_spec::method::normal;
        else if (v == "uniform")
            spec.kind = init_spec::method::uniform;
        else if (v == "constant")
            spec.kind = init_spec::method::constant;
        else
            throw usage_error(name + " is normal, uniform or constant, not '" + std::string(v) + "'");
    }
    else if (rest == "init_sigma")
        spec.sigma = non_negative(name, v);
    else if (rest == "init_scale")
        spec.scale = non_negative(name, v);
    else if (rest == "init_value")
        spec.value = parse_real(name, v);
    else
        return false;
    return true;
}

bool set_hyperparameter(fm_settings& s, const std::string& name, std::string_view v)
{
    for (auto [prefix, spec] : {std::pair{std::string_view("bias_"), &s.bias_init},
                                std::pair{std::string_view("linear_"), &s.linear_init},
                                std::pair{std::string_view("factors_"), &s.factors_init}})
        if (name.starts_with(prefix) && set_init(*spec, name, std::string_view(name).substr(prefix.size()), v))
            return true;
    if (name == "predictor_type") {
        try {
            s.predictor = parse_predictor_type(v);
        } catch (const std::invalid_argument& e) {
            throw usage_error(e.what());
        }
    }
    else if (name == "feature_dim")
        s.feature_dim = parse_count(name, v);
    else if (name == "num_factors")
        s.num_factors = positive(name, v);
    else if (name == "epochs")
        s.epochs = positive(name, v);
    else if (name == "mini_batch_size")
        s.mini_batch_size = positive(name, v);
    else if (name == "bias_lr")
        s.hp.bias_lr = non_negative(name, v);
    else if (name == "linear_lr")
        s.hp.linear_lr = non_negative(name, v);
    else if (name == "factors_lr")
        s.hp.factors_lr = non_negative(name, v);
    else if (name == "bias_wd")
        s.hp.bias_wd = non_negative(name, v);
    else if (name == "linear_wd")
        s.hp.linear_wd = non_negative(name, v);
    else if (name == "factors_wd")
        s.hp.factors_wd = non_negative(name, v);
    else if (name == "clip_gradient")
        s.hp.clip_gradient = non_negative(name, v);
    else if (name == "eps")
        s.hp.eps = non_negative(name, v);
    else if (name == "rescale_grad")
        s.hp.rescale_grad = non_negative(name, v);
    else if (name == "seed")
        s.seed = parse_count(name, v);
    else if (name == "initial_model")
        s.initial_model = v;
    else
        return false;
    return true;
}

/// The scalar label "values" of each record of `b` (padding excluded) into `out`; throws,
/// naming the first record, when the records have none.
void read_labels(const pipemode::batch& b, std::vector<double>& out)
{
    const pipemode::column* c = b.find_label("values");
    const std::size_t n = b.size() - b.padding();
    if (c == nullptr || c->is_sparse() || c->type() == pipemode::tensor_type::bytes || (n && c->row_size() < 1))
        throw std::runtime_error("records have no numeric label 'values'"
                                 + (b.origins().empty() ? std::string() : " (" + b.location(0).to_string() + ")"));
    out.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        switch (c->type()) {
        case pipemode::tensor_type::float32: out[i] = c->row<float>(i)[0]; break;
        case pipemode::tensor_type::float64: out[i] = c->row<double>(i)[0]; break;
        case pipemode::tensor_type::int32: out[i] = c->row<std::int32_t>(i)[0]; break;
        case pipemode::tensor_type::bytes: break;
        }
    }
}

std::string model_json(const fm_model& m, const fm_settings& s, std::uint64_t records)
{
    std::string out = "{\n";
    out += "  \"algorithm\": \"factorization_machines\",\n  \"format_version\": 1,\n";
    out += "  \"predictor_type\": \"" + std::string(to_string(m.predictor)) + "\",\n";
    out += "  \"feature_dim\": " + std::to_string(m.feature_dim) + ",\n";
    out += "  \"num_factors\": " + std::to_string(m.num_factors) + ",\n";
    out += "  \"records\": " + std::to_string(records) + ",\n";
    out += "  \"epochs\": " + std::to_string(s.epochs) + ",\n";
    out += "  \"mini_batch_size\": " + std::to_string(s.mini_batch_size) + ",\n";
    out += "  \"w0\": ";
    append_json_number(out, m.w0);
    out += ",\n  \"w\": ";
    append_json_array(out, m.w);
    out += ",\n  \"V\": ";
    append_json_matrix(out, m.v, m.num_factors);
    out += "\n}\n";
    return out;
}

/// Reads a model file (model_json's format: predictor_type, feature_dim, num_factors, w0, w, V).
fm_model read_model(const std::filesystem::path& path)
{
    const auto f = model_file::read(path);
    f.expect("factorization_machines", 1);
    fm_model m;
    try {
        m.predictor = parse_predictor_type(f.string("predictor_type"));
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(path.string() + ": " + e.what());
    }
    m.feature_dim = f.count("feature_dim");
    m.num_factors = f.count("num_factors");
    m.w0 = f.number("w0");
    m.w = f.numbers("w");
    m.v = f.matrix("V", m.num_factors);
    if (m.w.size() != m.feature_dim || m.v.size() != m.feature_dim * m.num_factors)
        throw std::runtime_error(path.string() + ": w and V do not have feature_dim rows");
    return m;
}

/// Reports the metrics of `p` (fm_metrics::named) as `<channel>:<name>`.
void report_metrics(metrics_log& log, std::string_view channel, const fm_metrics& m, predictor_type p)
{
    for (const auto& [name, value] : m.named(p))
        log.report(channel, name, value);
}

// --- training --------------------------------------------------------------------------------

/// Feeds the rows of `b` to `t`, dense as one matrix product, sparse row by row; adds each row
/// to `metrics` (when given) with its yhat before the update.
class batch_feeder {
public:
    explicit batch_feeder(std::size_t d) : d_(d) {}

    std::size_t feed(const pipemode::batch& b, fm_trainer& t, fm_metrics* metrics)
    {
        const feature_rows fr(b, "values", d_);
        read_labels(b, labels_);
        const std::size_t n = fr.size();
        yhat_.resize(n);
        if (fr.sparse()) {
            for (std::size_t i = 0; i < n; ++i) {
                const auto keys = fr.sparse_row(i, values_);
                yhat_[i] = t.add_sparse(keys, values_, labels_[i]);
            }
        }
        else {
            x_.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d_));
            for (std::size_t i = 0; i < n; ++i)
                fr.dense_row(i, std::span<double>(x_.data() + i * d_, d_));
            t.add_dense(x_, labels_, yhat_);
        }
        if (metrics)
            for (std::size_t i = 0; i < n; ++i)
                metrics->add(t.model().predictor, yhat_[i], labels_[i]);
        return n;
    }

private:
    std::size_t d_;
    fm_trainer::row_major x_;
    std::vector<double> labels_, values_, yhat_;
};

/// Scores every record of the channel `c` with `m` into `metrics` (called by rank 0 alone, so
/// that the figures do not depend on the ranks).
fm_metrics evaluate(const training_job& job, channel c, const fm_model& m, std::size_t batch_size,
                    const mpi_context& mpi)
{
    fm_metrics metrics;
    std::vector<double> labels, values, s(m.num_factors), dense(m.feature_dim);
    channel_reader reader(job, c, 0, mpi, batch_size);
    while (auto b = reader.next()) {
        const feature_rows fr(*b, "values", m.feature_dim);
        read_labels(*b, labels);
        for (std::size_t i = 0; i < fr.size(); ++i) {
            double yhat;
            if (fr.sparse()) {
                const auto keys = fr.sparse_row(i, values);
                yhat = m.score_sparse(keys, values, s);
            }
            else {
                fr.dense_row(i, dense);
                yhat = m.score_dense(dense, s);
            }
            metrics.add(m.predictor, yhat, labels[i]);
        }
    }
    return metrics;
}

struct training_result {
    fm_model model;
    fm_metrics train_metrics;        // the last epoch's rows, each before its batch's update
    std::uint64_t records = 0;       // over all ranks, in one epoch
    std::uint64_t bytes = 0;         // over all ranks and epochs
    std::uint64_t batches = 0;       // mini-batches, over all epochs
    double gradient_bytes = 0;       // what this rank sent to combine gradients (ids and values)
    double full_gradient_bytes = 0;  // what allreducing the whole bias, w and V would have sent
    double union_rows = 0;           // features in the unions, summed over batches
};

training_result train(const training_job& job, fm_settings& s, const mpi_context& mpi, progress_line& progress)
{
    training_result out;
    const std::size_t ranks = mpi.size();
    const std::size_t rank_batch = (s.mini_batch_size + ranks - 1) / ranks;
    std::optional<fm_trainer> trainer;
    std::optional<batch_feeder> feeder;
    std::vector<double> shared;
    for (std::uint64_t epoch = 0; epoch < s.epochs; ++epoch) {
        progress.start_epoch(epoch, s.epochs);
        channel_reader reader(job, channel::train, epoch, mpi, rank_batch);
        std::optional<pipemode::batch> first;
        if (epoch == 0) {
            first = reader.next();
            const auto d = agree_on_dimension(s.feature_dim, first ? feature_rows::dimension_of(*first, "values") : 0, mpi);
            fm_model initial;
            if (!s.initial_model.empty()) {
                initial = read_model(s.initial_model);
                if (initial.feature_dim != d || initial.num_factors != s.num_factors || initial.predictor != *s.predictor)
                    throw usage_error("the initial model's predictor_type, feature_dim or num_factors differ from "
                                      "the hyperparameters'");
            }
            else {
                initial = fm_model::initialized(*s.predictor, d, s.num_factors, s.bias_init, s.linear_init,
                                                s.factors_init, s.seed);
            }
            s.feature_dim = d;
            trainer.emplace(std::move(initial), s.hp);
            feeder.emplace(d);
        }
        const bool last = epoch + 1 == s.epochs;
        std::uint64_t records = 0;
        for (;;) {
            std::optional<pipemode::batch> b = std::move(first);
            first.reset();
            if (!b)
                b = reader.next();
            if (b)
                records += feeder->feed(*b, *trainer, last ? &out.train_metrics : nullptr);
            auto rows = trainer->touched_rows();
            if (ranks > 1) {
                // The union of the features the ranks' batches touched: each rank sends its ids
                // (or -3 when it touched every feature, as a dense batch does, so that dense data
                // does not pay feature_dim ids a batch) and a last entry that says whether it
                // had a batch (-1) or not (-2).
                std::vector<double> ids;
                if (rows.size() == s.feature_dim)
                    ids.push_back(-3.0);
                else
                    ids.assign(rows.begin(), rows.end());
                ids.push_back(b ? -1.0 : -2.0);
                const auto all = mpi.gather_all(ids);
                if (std::find(all.begin(), all.end(), -1.0) == all.end())
                    break;
                rows.clear();
                if (std::find(all.begin(), all.end(), -3.0) != all.end()) {
                    rows.resize(s.feature_dim);
                    std::iota(rows.begin(), rows.end(), std::uint64_t{0});
                }
                else {
                    for (double id : all)
                        if (id >= 0)
                            rows.push_back(static_cast<std::uint64_t>(id));
                    std::sort(rows.begin(), rows.end());
                    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
                }
                trainer->pack(rows, shared);
                mpi.sum(shared);
                trainer->unpack(rows, shared);
                out.gradient_bytes += 8.0 * static_cast<double>(ids.size() + shared.size());
                out.full_gradient_bytes += 8.0 * static_cast<double>(2 + s.feature_dim * (1 + s.num_factors));
            }
            else if (!b) {
                break;
            }
            out.union_rows += static_cast<double>(rows.size());
            ++out.batches;
            trainer->apply(rows);
            // rank 0's share times the ranks: an estimate, exact at the epoch's end
            progress.update(records * ranks, reader.bytes() * ranks);
        }
        const std::uint64_t epoch_bytes = mpi.sum(reader.bytes());
        const std::uint64_t epoch_records = mpi.sum(records);
        progress.end_epoch(epoch_records, epoch_bytes);
        out.bytes += epoch_bytes;
        if (epoch == 0)
            out.records = epoch_records;
    }
    auto sums = out.train_metrics.values();
    mpi.sum(sums);
    out.train_metrics = fm_metrics::from_values(sums);
    out.model = trainer->model();
    return out;
}

/// Prediction mode: each record's score (the regressor's yhat, the classifier's probability and
/// its label at 0.5), as SageMaker's FM inference gives them.
int predict(const training_job& job, const fm_settings& s, const mpi_context& mpi)
{
    const fm_model m = read_model(job.predict_model());
    std::vector<double> values, scores(m.num_factors), dense(m.feature_dim);
    run_prediction(job, mpi, s.mini_batch_size, [&](const pipemode::batch& b, std::vector<std::string>& rows) {
        const feature_rows fr(b, "values", m.feature_dim);
        for (std::size_t i = 0; i < fr.size(); ++i) {
            double yhat;
            if (fr.sparse()) {
                const auto keys = fr.sparse_row(i, values);
                yhat = m.score_sparse(keys, values, scores);
            }
            else {
                fr.dense_row(i, dense);
                yhat = m.score_dense(dense, scores);
            }
            const double score = m.output(yhat);
            std::string line = "{\"score\": ";
            append_json_shortest(line, score);
            if (m.predictor == predictor_type::binary_classifier)
                line += score >= 0.5 ? ", \"predicted_label\": 1" : ", \"predicted_label\": 0";
            line += '}';
            rows.push_back(std::move(line));
        }
    });
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    fm_settings s;
    const auto job = training_job::parse(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (job.help()) {
        print_help(mpi, usage_head, usage_tail);
        return 0;
    }
    if (job.predicting())
        return predict(job, s, mpi);
    if (!s.predictor)
        throw usage_error("predictor_type is required");
    if (s.num_factors == 0)
        throw usage_error("num_factors is required");

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    auto r = train(job, s, mpi, progress);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double gradient_bytes = [&] {
        double b = r.gradient_bytes;
        mpi.sum(std::span(&b, 1));
        return b;
    }();

    if (mpi.rank() == 0) {
        metrics_log metrics(true);
        report_metrics(metrics, "train", r.train_metrics, *s.predictor);
        for (const auto c : {channel::validation, channel::test})
            if (job.has(c))
                report_metrics(metrics, to_string(c), evaluate(job, c, r.model, s.mini_batch_size, mpi), *s.predictor);
        const auto dir = job.model_dir();
        const auto path = write_model_file(dir, "model.json", model_json(r.model, s, r.records));
        metrics.write(dir);
        std::string out;
        using pipemode::tools::append_field;
        using pipemode::tools::format;
        append_field(out, "records", std::to_string(r.records));
        append_field(out, "epochs", std::to_string(s.epochs));
        append_field(out, "ranks", std::to_string(mpi.size()));
        append_field(out, "batches", std::to_string(r.batches));
        append_field(out, "bytes", std::to_string(r.bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "MB/s", format("%.1f", seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / seconds : 0.0));
        append_field(out, "features a batch", format("%.1f", r.batches ? r.union_rows / static_cast<double>(r.batches) : 0.0));
        if (mpi.size() > 1) {
            // Every rank sends the same kind of message; the sum over ranks against what
            // allreducing the full bias, w and V each batch would have sent.
            append_field(out, "gradient bytes sent", format("%.0f", gradient_bytes));
            append_field(out, "full allreduce bytes", format("%.0f", r.full_gradient_bytes * static_cast<double>(mpi.size())));
        }
        append_field(out, "model", path.string());
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
