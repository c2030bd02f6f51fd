// pipemode-factorization-machines: Factorization Machines over a RecordIO-protobuf data set read
// through pipemode::reader, epoch after epoch, as SageMaker's built-in FM (regressor or binary
// classifier), optionally over MPI ranks that each read a shard and add their gradients over
// the features their batches touched. Writes model.json and metrics.json; with --predict,
// scores records with a trained model as batch transform would (JSON Lines).
//
// Usage: `pipemode-factorization-machines --help` and docs/algorithms.md.
#include "../common/feature_rows.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training_program.hpp"
#include "factorization_machines.hpp"

#include <pipemode/detail/json.hpp>
#include <pipemode/pipeline/reader.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>
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
       pipemode-factorization-machines --predict MODEL [--predictions FILE] SOURCE...

Factorization Machines over RecordIO-protobuf records with a float32/float64/int32 feature
"values" (dense or sparse) and a scalar label "values", reading the data once per epoch and
updating with AdaGrad after every mini-batch. A SOURCE is a local file or FIFO, an http(s)://
URL, an S3 object s3://BUCKET/KEY or prefix s3://BUCKET/PREFIX/. Under mpirun each rank reads
its shard of the SOURCEs; the ranks add their gradients over the union of the features their
batches touched and hold the same model. Writes MODEL_DIR/model.json and MODEL_DIR/metrics.json
and prints the metrics one a line (train:rmse=0.51, test:binary_classification_accuracy=0.9).

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
  --validation SOURCE            a validation channel (repeatable); read whole by rank 0
  --test SOURCE                  a test channel (repeatable); read whole by rank 0
  --predict MODEL                score the SOURCEs with MODEL (a model.json) instead of training
  --predictions FILE             where --predict writes its JSON Lines (default stdout)
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
    std::vector<pipemode::tools::source_arg> validation, test;
    std::string predict;
    std::string predictions;
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
    else if (name == "validation")
        s.validation.push_back({std::string(v)});
    else if (name == "test")
        s.test.push_back({std::string(v)});
    else if (name == "predict")
        s.predict = v;
    else if (name == "predictions")
        s.predictions = v;
    else
        return false;
    return true;
}

// --- I/O glue: readers, labels, model and metrics files. Kept together so that it moves to a
// --- shared training library in one piece.

/// One epoch's reader of the training channel for this rank, or nothing when the rank has no data.
std::optional<pipemode::reader> open_epoch(const training_input& in, std::uint64_t epoch, std::size_t batch_size,
                                           const mpi_context& mpi)
{
    auto sources = epoch_sources(in, epoch, mpi, program);
    if (!sources)
        return std::nullopt;
    return std::optional<pipemode::reader>(std::in_place, std::move(sources),
                                           pipemode::reader_options{
                                               .batch_size = batch_size,
                                               .memory_budget = in.memory_budget,
                                               .read_size = in.source.read_size,
                                           });
}

/// A reader of a whole channel (validation, test, or the records to predict), not sharded:
/// SageMaker's FullyReplicated, read by one rank.
pipemode::reader open_channel(const training_input& in, const std::vector<pipemode::tools::source_arg>& sources,
                              std::size_t batch_size)
{
    pipemode::data_set_options d;
    d.plan.shard = {.rank = 0, .world_size = 1, .mode = pipemode::shard_mode::replicated};
    d.epochs = 1;
    d.first_epoch = 0;
    return pipemode::reader(pipemode::planned_epochs(pipemode::tools::make_store(sources, in.source, program), std::move(d)),
                            pipemode::reader_options{
                                .batch_size = batch_size,
                                .memory_budget = in.memory_budget,
                                .read_size = in.source.read_size,
                            });
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
fm_model read_model(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    if (!f)
        throw std::runtime_error("cannot open the model file " + path);
    std::stringstream text;
    text << f.rdbuf();
    const std::string doc = text.str();
    pipemode::detail::parse_error err;
    const auto root = pipemode::detail::json::parse(doc, err);
    if (!root)
        throw std::runtime_error(path + ": " + err.to_string());
    auto member = [&](std::string_view name) -> const pipemode::detail::json::value& {
        const auto* v = root->find(name);
        if (v == nullptr)
            throw std::runtime_error(path + ": the model has no '" + std::string(name) + "'");
        return *v;
    };
    auto numbers = [&](const pipemode::detail::json::value& v, std::vector<double>& out) {
        for (const auto& x : v.as_array())
            out.push_back(x.is_number() ? x.as_number().as_double() : std::nan(""));
    };
    try {
        fm_model m;
        m.predictor = parse_predictor_type(member("predictor_type").as_string());
        m.feature_dim = static_cast<std::size_t>(member("feature_dim").as_number().as_uint64().value());
        m.num_factors = static_cast<std::size_t>(member("num_factors").as_number().as_uint64().value());
        m.w0 = member("w0").as_number().as_double();
        numbers(member("w"), m.w);
        for (const auto& row : member("V").as_array()) {
            if (row.as_array().size() != m.num_factors)
                throw std::runtime_error("a row of V does not have num_factors values");
            numbers(row, m.v);
        }
        if (m.w.size() != m.feature_dim || m.v.size() != m.feature_dim * m.num_factors)
            throw std::runtime_error("w and V do not have feature_dim rows");
        return m;
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(path + ": " + e.what());
    } catch (const std::exception&) {
        throw std::runtime_error(path + ": a member of the model has the wrong type");
    }
}

/// Prints `channel:name=value` lines (a SageMaker metric definition's regex picks them up, e.g.
/// `test:rmse=([0-9.e+-]+)`) and adds the same to `json` for metrics.json.
void report_metrics(std::string_view channel, const fm_metrics& m, predictor_type p, std::string& json)
{
    for (const auto& [name, value] : m.named(p)) {
        std::printf("%.*s:%s=%.10g\n", static_cast<int>(channel.size()), channel.data(), name.c_str(), value);
        json += json.size() > 2 ? ",\n  \"" : "  \"";
        json.append(channel);
        json += ":" + name + "\": ";
        append_json_number(json, value);
    }
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

/// Scores every record of `sources` with `m` into `metrics` (rank 0 alone).
fm_metrics evaluate(const training_input& in, const std::vector<pipemode::tools::source_arg>& sources,
                    const fm_model& m, std::size_t batch_size)
{
    fm_metrics metrics;
    std::vector<double> labels, values, s(m.num_factors), dense(m.feature_dim);
    auto reader = open_channel(in, sources, batch_size);
    for (auto& b : reader) {
        const feature_rows fr(b, "values", m.feature_dim);
        read_labels(b, labels);
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

training_result train(const training_input& in, fm_settings& s, const mpi_context& mpi, progress_line& progress)
{
    training_result out;
    const std::size_t ranks = mpi.size();
    const std::size_t rank_batch = (s.mini_batch_size + ranks - 1) / ranks;
    std::optional<fm_trainer> trainer;
    std::optional<batch_feeder> feeder;
    std::vector<double> shared;
    for (std::uint64_t epoch = 0; epoch < s.epochs; ++epoch) {
        progress.start_epoch(epoch, s.epochs);
        auto reader = open_epoch(in, epoch, rank_batch, mpi);
        std::optional<pipemode::batch> first;
        if (epoch == 0) {
            first = reader ? reader->next() : std::nullopt;
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
            if (!b && reader)
                b = reader->next();
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
            if (reader)  // rank 0's share times the ranks: an estimate, exact at the epoch's end
                progress.update(records * ranks, reader->stats().bytes * ranks);
        }
        const std::uint64_t epoch_bytes = mpi.sum(reader ? reader->stats().bytes : 0);
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

int predict(const training_input& in, const fm_settings& s)
{
    const fm_model m = read_model(s.predict);
    std::FILE* out = stdout;
    if (!s.predictions.empty()) {
        out = std::fopen(s.predictions.c_str(), "wb");
        if (out == nullptr)
            throw std::runtime_error("cannot write " + s.predictions);
    }
    std::vector<double> values, scores(m.num_factors), dense(m.feature_dim);
    std::string line;
    std::uint64_t records = 0;
    auto reader = open_channel(in, in.sources, s.mini_batch_size);
    for (auto& b : reader) {
        const feature_rows fr(b, "values", m.feature_dim);
        for (std::size_t i = 0; i < fr.size(); ++i, ++records) {
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
            line = "{\"score\": ";
            append_json_number(line, score);
            if (m.predictor == predictor_type::binary_classifier)
                line += score >= 0.5 ? ", \"predicted_label\": 1" : ", \"predicted_label\": 0";
            line += "}\n";
            std::fwrite(line.data(), 1, line.size(), out);
        }
    }
    if (out != stdout && std::fclose(out) != 0)
        throw std::runtime_error("cannot write " + s.predictions);
    std::fprintf(stderr, "%s: %llu predictions\n", program.data(), static_cast<unsigned long long>(records));
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    fm_settings s;
    const auto in = parse_training_command_line(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (in.help) {
        if (mpi.rank() == 0)
            for (const auto part : {usage_head, input_options_help, pipemode::tools::source_options_help, usage_tail})
                std::fwrite(part.data(), 1, part.size(), stdout);
        return 0;
    }
    if (!s.predict.empty()) {
        if (in.sources.empty())
            throw usage_error("--predict reads SOURCEs");
        return mpi.rank() == 0 ? predict(in, s) : 0;
    }
    if (!s.predictor)
        throw usage_error("predictor_type is required");
    if (s.num_factors == 0)
        throw usage_error("num_factors is required");

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !in.quiet, std::string(program));
    auto r = train(in, s, mpi, progress);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double gradient_bytes = [&] {
        double b = r.gradient_bytes;
        mpi.sum(std::span(&b, 1));
        return b;
    }();

    if (mpi.rank() == 0) {
        std::string metrics = "{\n";
        report_metrics("train", r.train_metrics, *s.predictor, metrics);
        if (!s.validation.empty())
            report_metrics("validation", evaluate(in, s.validation, r.model, s.mini_batch_size), *s.predictor, metrics);
        if (!s.test.empty())
            report_metrics("test", evaluate(in, s.test, r.model, s.mini_batch_size), *s.predictor, metrics);
        metrics += "\n}\n";
        const auto dir = model_directory(in);
        const auto path = write_model_file(dir, "model.json", model_json(r.model, s, r.records));
        write_model_file(dir, "metrics.json", metrics);
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

int main(int argc, char** argv)
{
    mpi_context mpi(&argc, &argv);
    try {
        return run(argc, argv, mpi);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", program.data(), e.what(), program.data());
        return mpi.abort(2);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program.data(), e.what());
        return mpi.abort(1);
    }
}
