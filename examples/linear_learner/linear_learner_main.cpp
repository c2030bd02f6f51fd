// pipemode-linear-learner: SageMaker's Linear Learner (binary and multiclass classifiers,
// regressors) trained on RecordIO-protobuf records read through the training library's channels
// (training.hpp), epoch after epoch, optionally over MPI ranks that each read a shard and add
// their gradients. Chooses one of `num_models` models (and a binary classifier's threshold) on
// the validation channel, prints metrics as `#metric channel:name=value` lines, and writes
// model.json and metrics.json; with --predict MODEL, writes one JSON line of predictions a
// record instead (docs/algorithms.md).
//
// The channels, command line, metrics lines, model file parsing and prediction loop are
// pipemode_training's, so this translation unit compiles the algorithm and Eigen, not the
// reader, HTTP and S3 stack.
#include "../common/feature_rows.hpp"
#include "../common/metrics.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "linear_learner.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::examples;
using pipemode::tools::parse_count;
using pipemode::tools::parse_real;

constexpr std::string_view program = "pipemode-linear-learner";

constexpr std::string_view usage_head = R"(Usage: pipemode-linear-learner [options] SOURCE... [--validation SOURCE]... [--test SOURCE]...
       pipemode-linear-learner [options] --pipe-mode [--data-dir DIR]
       pipemode-linear-learner --predict MODEL_FILE [--output FILE] SOURCE...

Linear models (SageMaker's Linear Learner) over RecordIO-protobuf records with a feature
"values" (dense or sparse) and a label "values", reading the training data once per epoch.
Under mpirun each rank reads a shard of the SOURCEs and the ranks add their gradients; the
validation and test channels are read whole by every rank. The validation channel chooses the
model, the threshold and when to stop early; the test channel gives metrics only. Writes
MODEL_DIR/model.json and MODEL_DIR/metrics.json and prints "#metric CHANNEL:METRIC=VALUE"
lines (" epoch=E" after the per-epoch objective_loss). --predict writes one JSON line a
record: {"score": S, "predicted_label": L} (binary), {"score": [S...], "predicted_label": K}
(multiclass) or {"score": V} (regressor).

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --predictor_type T             binary_classifier, multiclass_classifier or regressor (required)
  --num_classes K                classes of a multiclass classifier
  --feature_dim D                values a record (default: from the first record)
  --loss L                       auto, logistic, squared_loss, absolute_loss, hinge_loss,
                                 eps_insensitive_squared_loss, eps_insensitive_absolute_loss,
                                 quantile_loss, huber_loss
  --loss_insensitivity E         (default 0.01)   --quantile Q (0.5)   --huber_delta H (1.0)
  --wd W  --l1 L                 L2 and L1 regularization (default 0, 0)
  --use_bias B                   true (default) or false
  --num_models N                 models trained at once (auto = 32)
  --optimizer O                  auto (adam), adam, sgd, rmsprop
  --learning_rate R              auto: 0.01 for sgd, 0.001 otherwise
  --beta_1 B  --beta_2 B         (0.9, 0.999)   --momentum M (0)
  --use_lr_scheduler B           (false)  --lr_scheduler_step N (100)
  --lr_scheduler_factor F        (0.99)   --lr_scheduler_minimum_lr R (1e-5)
  --epochs E                     (15)     --mini_batch_size N (1000, over all ranks)
  --early_stopping_patience P    (3)      --early_stopping_tolerance T (0.001)
  --normalize_data B  --normalize_label B   (false, false)  --num_point_for_scaler N (10000)
  --binary_classifier_model_selection_criteria C
                                 accuracy (default), f_beta, precision_at_target_recall,
                                 recall_at_target_precision, loss_function
  --num_calibration_samples N    (10000000)  --target_recall R (0.8)  --target_precision P (0.8)
  --f_beta B                     (1.0)  --positive_example_weight_mult W (1.0, or balanced)
Not SageMaker's:
  --top_k K                      k of multiclass_top_k_accuracy (default 3)

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

using ll::loss_type;
using ll::optimizer_type;
using ll::predictor_type;
using metrics::selection_criterion;

struct settings {
    std::optional<predictor_type> predictor;
    std::size_t num_classes = 0;
    std::size_t feature_dim = 0;
    std::string loss = "auto";
    double loss_insensitivity = 0.01, quantile = 0.5, huber_delta = 1.0;
    double wd = 0, l1 = 0;
    bool use_bias = true;
    std::size_t num_models = 32;
    optimizer_type optimizer = optimizer_type::adam;
    std::optional<double> learning_rate;
    double beta_1 = 0.9, beta_2 = 0.999, momentum = 0;
    bool use_lr_scheduler = false;
    std::size_t lr_scheduler_step = 100;
    double lr_scheduler_factor = 0.99, lr_scheduler_minimum_lr = 1e-5;
    std::uint64_t epochs = 15;
    std::size_t mini_batch_size = 1000;
    std::uint64_t early_stopping_patience = 3;
    double early_stopping_tolerance = 0.001;
    bool normalize_data = false, normalize_label = false;
    std::size_t num_point_for_scaler = 10000;
    selection_criterion criterion = selection_criterion::accuracy;
    std::size_t num_calibration_samples = 10000000;
    double target_recall = 0.8, target_precision = 0.8, f_beta = 1.0;
    std::optional<double> positive_weight = 1.0;  // empty: balanced
    std::size_t top_k = 3;
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
    if (!(x >= 0))
        throw usage_error(name + " must not be negative");
    return x;
}

bool set_hyperparameter(settings& s, const std::string& name, std::string_view v)
{
    if (name == "predictor_type") {
        if (v == "binary_classifier")
            s.predictor = predictor_type::binary_classifier;
        else if (v == "multiclass_classifier")
            s.predictor = predictor_type::multiclass_classifier;
        else if (v == "regressor")
            s.predictor = predictor_type::regressor;
        else
            throw usage_error("predictor_type is binary_classifier, multiclass_classifier or regressor, not '"
                              + std::string(v) + "'");
    }
    else if (name == "num_classes")
        s.num_classes = parse_count(name, v);
    else if (name == "feature_dim")
        s.feature_dim = v == "auto" ? 0 : parse_count(name, v);
    else if (name == "loss")
        s.loss = std::string(v);
    else if (name == "loss_insensitivity")
        s.loss_insensitivity = non_negative(name, v);
    else if (name == "quantile") {
        s.quantile = parse_real(name, v);
        if (!(s.quantile > 0 && s.quantile < 1))
            throw usage_error("quantile must be between 0 and 1");
    }
    else if (name == "huber_delta")
        s.huber_delta = non_negative(name, v);
    else if (name == "wd")
        s.wd = v == "auto" ? 0 : non_negative(name, v);
    else if (name == "l1")
        s.l1 = v == "auto" ? 0 : non_negative(name, v);
    else if (name == "use_bias")
        s.use_bias = parse_bool(name, v);
    else if (name == "num_models")
        s.num_models = v == "auto" ? 32 : positive(name, v);
    else if (name == "optimizer") {
        if (v == "auto" || v == "adam")
            s.optimizer = optimizer_type::adam;
        else if (v == "sgd")
            s.optimizer = optimizer_type::sgd;
        else if (v == "rmsprop")
            s.optimizer = optimizer_type::rmsprop;
        else
            throw usage_error("optimizer is auto, adam, sgd or rmsprop, not '" + std::string(v) + "'");
    }
    else if (name == "learning_rate") {
        if (v == "auto")
            s.learning_rate.reset();
        else
            s.learning_rate = non_negative(name, v);
    }
    else if (name == "beta_1")
        s.beta_1 = v == "auto" ? 0.9 : non_negative(name, v);
    else if (name == "beta_2")
        s.beta_2 = v == "auto" ? 0.999 : non_negative(name, v);
    else if (name == "momentum")
        s.momentum = v == "auto" ? 0 : non_negative(name, v);
    else if (name == "use_lr_scheduler")
        s.use_lr_scheduler = parse_bool(name, v);
    else if (name == "lr_scheduler_step")
        s.lr_scheduler_step = v == "auto" ? 100 : positive(name, v);
    else if (name == "lr_scheduler_factor")
        s.lr_scheduler_factor = v == "auto" ? 0.99 : non_negative(name, v);
    else if (name == "lr_scheduler_minimum_lr")
        s.lr_scheduler_minimum_lr = v == "auto" ? 1e-5 : non_negative(name, v);
    else if (name == "epochs")
        s.epochs = positive(name, v);
    else if (name == "mini_batch_size")
        s.mini_batch_size = positive(name, v);
    else if (name == "early_stopping_patience")
        s.early_stopping_patience = positive(name, v);
    else if (name == "early_stopping_tolerance")
        s.early_stopping_tolerance = non_negative(name, v);
    else if (name == "normalize_data")
        s.normalize_data = parse_bool(name, v);
    else if (name == "normalize_label")
        s.normalize_label = v == "auto" ? false : parse_bool(name, v);
    else if (name == "num_point_for_scaler")
        s.num_point_for_scaler = positive(name, v);
    else if (name == "binary_classifier_model_selection_criteria") {
        if (v == "accuracy")
            s.criterion = selection_criterion::accuracy;
        else if (v == "f_beta")
            s.criterion = selection_criterion::f_beta;
        else if (v == "precision_at_target_recall")
            s.criterion = selection_criterion::precision_at_target_recall;
        else if (v == "recall_at_target_precision")
            s.criterion = selection_criterion::recall_at_target_precision;
        else if (v == "loss_function")
            s.criterion = selection_criterion::loss_function;
        else
            throw usage_error("unknown binary_classifier_model_selection_criteria '" + std::string(v) + "'");
    }
    else if (name == "num_calibration_samples")
        s.num_calibration_samples = positive(name, v);
    else if (name == "target_recall")
        s.target_recall = non_negative(name, v);
    else if (name == "target_precision")
        s.target_precision = non_negative(name, v);
    else if (name == "f_beta")
        s.f_beta = non_negative(name, v);
    else if (name == "positive_example_weight_mult") {
        if (v == "balanced")
            s.positive_weight.reset();
        else
            s.positive_weight = v == "auto" ? 1.0 : non_negative(name, v);
    }
    else if (name == "top_k")
        s.top_k = positive(name, v);
    else
        return false;
    return true;
}

loss_type resolve_loss(const settings& s)
{
    const auto p = *s.predictor;
    if (p == predictor_type::multiclass_classifier) {
        if (s.loss != "auto" && s.loss != "logistic" && s.loss != "softmax_loss")
            throw usage_error("a multiclass_classifier takes loss auto or logistic (softmax), not '" + s.loss + "'");
        return loss_type::softmax;
    }
    if (s.loss == "auto")
        return p == predictor_type::binary_classifier ? loss_type::logistic : loss_type::squared_loss;
    const bool binary = p == predictor_type::binary_classifier;
    if (s.loss == "logistic" && binary)
        return loss_type::logistic;
    if (s.loss == "hinge_loss" && binary)
        return loss_type::hinge_loss;
    if (binary)
        throw usage_error("a binary_classifier takes loss auto, logistic or hinge_loss, not '" + s.loss + "'");
    static constexpr std::pair<std::string_view, loss_type> regression[] = {
        {"squared_loss", loss_type::squared_loss},
        {"absolute_loss", loss_type::absolute_loss},
        {"eps_insensitive_squared_loss", loss_type::eps_insensitive_squared_loss},
        {"eps_insensitive_absolute_loss", loss_type::eps_insensitive_absolute_loss},
        {"quantile_loss", loss_type::quantile_loss},
        {"huber_loss", loss_type::huber_loss},
    };
    for (const auto& [n, l] : regression)
        if (s.loss == n)
            return l;
    throw usage_error("a regressor takes loss auto, squared_loss, absolute_loss, eps_insensitive_squared_loss, "
                      "eps_insensitive_absolute_loss, quantile_loss or huber_loss, not '" + s.loss + "'");
}

std::string_view to_string(loss_type l)
{
    switch (l) {
    case loss_type::logistic: return "logistic";
    case loss_type::softmax: return "softmax";
    case loss_type::squared_loss: return "squared_loss";
    case loss_type::absolute_loss: return "absolute_loss";
    case loss_type::hinge_loss: return "hinge_loss";
    case loss_type::eps_insensitive_squared_loss: return "eps_insensitive_squared_loss";
    case loss_type::eps_insensitive_absolute_loss: return "eps_insensitive_absolute_loss";
    case loss_type::quantile_loss: return "quantile_loss";
    case loss_type::huber_loss: return "huber_loss";
    }
    return "";
}

std::string_view to_string(predictor_type p)
{
    switch (p) {
    case predictor_type::binary_classifier: return "binary_classifier";
    case predictor_type::multiclass_classifier: return "multiclass_classifier";
    case predictor_type::regressor: return "regressor";
    }
    return "";
}

std::string_view to_string(optimizer_type o)
{
    return o == optimizer_type::adam ? "adam" : (o == optimizer_type::sgd ? "sgd" : "rmsprop");
}

// --- channel I/O -------------------------------------------------------------------------------

/// Opens the replicated passes of a run in order: in Pipe mode each pass over a channel is the
/// next FIFO (`validation_0`, `validation_1`, ...), so the passes of each channel are counted.
/// A channel every rank reads whole: `validation` or `test`, or the training SOURCEs for choosing
/// a model when there is no validation channel.
class channel_passes {
public:
    explicit channel_passes(const training_job& job) : job_(job) {}

    channel_reader open(channel c, std::size_t batch_size)
    {
        auto& n = next_[static_cast<std::size_t>(c)];
        return channel_reader::whole(job_, c, n++, batch_size);
    }

private:
    const training_job& job_;
    std::array<std::uint64_t, 3> next_{};
};

/// A batch's rows as Eigen matrices, with their labels.
struct batch_rows {
    bool sparse = false;
    ll::dense_rows dense;
    ll::sparse_rows sparse_x;
    Eigen::VectorXd y;
    bool labelled = false;
};

double label_of(const pipemode::column& c, std::size_t i)
{
    switch (c.type()) {
    case pipemode::tensor_type::float32: return static_cast<double>(c.row<float>(i)[0]);
    case pipemode::tensor_type::float64: return c.row<double>(i)[0];
    case pipemode::tensor_type::int32: return static_cast<double>(c.row<std::int32_t>(i)[0]);
    case pipemode::tensor_type::bytes: break;
    }
    throw std::runtime_error("the label 'values' holds bytes, not a number");
}

/// Reads `b`'s feature "values" (d a row) and label "values" into `out`; the label is
/// required when `need_labels`.
void read_rows(const pipemode::batch& b, std::size_t d, batch_rows& out, bool need_labels)
{
    const feature_rows fr(b, "values", d);
    const auto n = static_cast<Eigen::Index>(fr.size());
    out.sparse = fr.sparse();
    if (out.sparse) {
        std::vector<Eigen::Triplet<double>> entries;
        std::vector<double> values;
        for (std::size_t i = 0; i < fr.size(); ++i) {
            const auto keys = fr.sparse_row(i, values);
            for (std::size_t j = 0; j < keys.size(); ++j)
                entries.emplace_back(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(keys[j]), values[j]);
        }
        out.sparse_x.resize(n, static_cast<Eigen::Index>(d));
        out.sparse_x.setFromTriplets(entries.begin(), entries.end());
    }
    else {
        out.dense.resize(n, static_cast<Eigen::Index>(d));
        for (std::size_t i = 0; i < fr.size(); ++i)
            fr.dense_row(i, std::span<double>(out.dense.row(static_cast<Eigen::Index>(i)).data(), d));
    }
    const pipemode::column* label = b.find_label("values");
    out.labelled = label != nullptr;
    if (!label) {
        if (need_labels && n > 0)
            throw std::runtime_error("records have no label 'values' (" + b.location(0).to_string() + ")");
        out.y = Eigen::VectorXd::Zero(n);
        return;
    }
    out.y.resize(n);
    for (Eigen::Index i = 0; i < n; ++i)
        out.y[i] = label_of(*label, static_cast<std::size_t>(i));
}

// --- training --------------------------------------------------------------------------------

struct label_scaler {
    double mean = 0, scale = 1;
};

/// The trained state and what the model file and metrics need.
struct training_state {
    std::size_t d = 0;
    std::size_t outputs = 1;
    ll::loss_function loss;
    std::optional<ll::trainer> t;
    ll::scaler features;
    label_scaler label;
    bool normalized_label = false;
    std::vector<ll::model_hyperparameters> models;
    std::size_t chosen = 0;
    double threshold = 0.5;
    std::uint64_t epochs_run = 0;
    std::uint64_t records = 0;  // one epoch, all ranks
    std::uint64_t bytes = 0;
};

/// Calls `f(x, y)` with every batch of `reader` (scaled by `st.features`), x dense or sparse.
template <class F>
std::uint64_t for_each_batch(channel_reader& reader, const training_state& st, batch_rows& rows, bool need_labels,
                             F&& f, std::uint64_t limit = UINT64_MAX)
{
    std::uint64_t seen = 0;
    while (const auto b = reader.next()) {
        read_rows(*b, st.d, rows, need_labels);
        if (rows.sparse) {
            st.features.apply(rows.sparse_x);
            f(rows.sparse_x, rows.y);
        }
        else {
            st.features.apply(rows.dense);
            f(rows.dense, rows.y);
        }
        seen += static_cast<std::uint64_t>(rows.y.size());
        if (seen >= limit)
            break;
    }
    return seen;
}

Eigen::VectorXd scaled_labels(const training_state& st, const Eigen::VectorXd& y)
{
    if (!st.normalized_label)
        return y;
    return (y.array() - st.label.mean) / st.label.scale;
}

/// Per-model mean loss over a replicated channel (every rank reads it whole).
std::vector<double> channel_losses(channel_passes& passes, channel c, const training_state& st, std::size_t batch)
{
    auto reader = passes.open(c, batch);
    std::vector<double> sums(st.t->models(), 0.0);
    batch_rows rows;
    const auto n = for_each_batch(reader, st, rows, true, [&](const auto& x, const Eigen::VectorXd& y) {
        const auto s = st.t->loss_sums(x, scaled_labels(st, y));
        for (std::size_t m = 0; m < sums.size(); ++m)
            sums[m] += s[m];
    });
    for (auto& s : sums)
        s /= std::max<double>(1.0, static_cast<double>(n));
    return sums;
}

void train(const training_job& job, channel_passes& passes, const settings& s, training_state& st,
           const mpi_context& mpi, progress_line& progress, metrics_log& lines)
{
    const std::size_t ranks = mpi.size();
    const std::size_t rank_batch = (s.mini_batch_size + ranks - 1) / ranks;
    const bool multiclass = *s.predictor == predictor_type::multiclass_classifier;
    st.outputs = multiclass ? s.num_classes : 1;
    st.loss = {.type = resolve_loss(s), .insensitivity = s.loss_insensitivity, .quantile = s.quantile,
               .huber_delta = s.huber_delta, .positive_weight = s.positive_weight.value_or(1.0)};

    // Epoch 0 starts with the batches that hold the first num_point_for_scaler records (each
    // rank's share): they set the dimension, the scalers and the balanced positive weight.
    std::optional<channel_reader> reader(std::in_place, job, channel::train, 0, mpi, rank_batch);
    std::deque<pipemode::batch> held;
    std::uint64_t sampled = 0;
    const std::uint64_t sample_target = (s.num_point_for_scaler + ranks - 1) / ranks;
    while (sampled < sample_target) {
        auto b = reader->next();
        if (!b)
            break;
        sampled += b->size() - b->padding();
        held.push_back(std::move(*b));
    }
    st.d = agree_on_dimension(
        s.feature_dim, held.empty() ? 0 : feature_rows::dimension_of(held.front(), "values"), mpi);
    // [sparse batches, label count, label sum, label squares, positives] then feature moments.
    std::vector<double> shared(5, 0.0);
    auto moments = ll::scaler::moments(st.d);
    batch_rows rows;
    for (const auto& b : held) {
        read_rows(b, st.d, rows, true);
        shared[0] += rows.sparse ? 1 : 0;
        shared[1] += static_cast<double>(rows.y.size());
        shared[2] += rows.y.sum();
        shared[3] += rows.y.squaredNorm();
        shared[4] += (rows.y.array() > 0.5).count();
        if (rows.sparse)
            ll::scaler::add_moments(moments, rows.sparse_x);
        else
            ll::scaler::add_moments(moments, rows.dense);
    }
    shared.insert(shared.end(), moments.begin(), moments.end());
    mpi.sum(shared);
    std::copy(shared.begin() + 5, shared.end(), moments.begin());
    if (s.normalize_data)
        st.features = ll::scaler::from_moments(moments, shared[0] > 0);
    if (s.normalize_label && *s.predictor == predictor_type::regressor && shared[1] > 0) {
        st.normalized_label = true;
        st.label.mean = shared[2] / shared[1];
        const double var = shared[3] / shared[1] - st.label.mean * st.label.mean;
        st.label.scale = var > 1e-24 ? std::sqrt(var) : 1.0;
    }
    if (!s.positive_weight && *s.predictor == predictor_type::binary_classifier) {
        // balanced: positives weigh negatives / positives, as in the scaler's sample.
        const double pos = shared[4], neg = shared[1] - shared[4];
        st.loss.positive_weight = pos > 0 && neg > 0 ? neg / pos : 1.0;
    }

    const double base_lr = s.learning_rate.value_or(s.optimizer == optimizer_type::sgd ? 0.01 : 0.001);
    st.models = ll::spread_hyperparameters({.learning_rate = base_lr, .wd = s.wd, .l1 = s.l1}, s.num_models);
    st.t.emplace(ll::trainer_options{
        .dim = st.d,
        .outputs = st.outputs,
        .loss = st.loss,
        .models = st.models,
        .optimizer = s.optimizer,
        .beta_1 = s.beta_1,
        .beta_2 = s.beta_2,
        .momentum = s.momentum,
        .use_bias = s.use_bias,
        .use_lr_scheduler = s.use_lr_scheduler,
        .lr_scheduler_step = s.lr_scheduler_step,
        .lr_scheduler_factor = s.lr_scheduler_factor,
        .lr_scheduler_minimum_lr = s.lr_scheduler_minimum_lr,
    });
    auto& t = *st.t;

    double best_loss = HUGE_VAL;
    std::uint64_t bad_epochs = 0;
    std::vector<double> flag(1);
    for (std::uint64_t epoch = 0; epoch < s.epochs; ++epoch) {
        progress.start_epoch(epoch, s.epochs);
        if (epoch > 0)
            reader.emplace(job, channel::train, epoch, mpi, rank_batch);
        std::vector<double> epoch_losses(t.models(), 0.0);
        double epoch_rows = 0;
        std::uint64_t records = 0;
        for (;;) {
            std::optional<pipemode::batch> b;
            if (!held.empty()) {
                b = std::move(held.front());
                held.pop_front();
            }
            else if (reader) {
                b = reader->next();
            }
            if (b) {
                read_rows(*b, st.d, rows, true);
                const Eigen::VectorXd y = scaled_labels(st, rows.y);
                if (rows.sparse) {
                    st.features.apply(rows.sparse_x);
                    t.accumulate(rows.sparse_x, y);
                }
                else {
                    st.features.apply(rows.dense);
                    t.accumulate(rows.dense, y);
                }
                records += static_cast<std::uint64_t>(y.size());
            }
            if (ranks > 1) {
                // One allreduce a step: the gradient sums, loss sums and rows, and whether any
                // rank still had a batch (a rank whose shard ended adds zeros).
                flag[0] = b ? 1.0 : 0.0;
                mpi.sum(t.pending());
                mpi.sum(flag);
                if (flag[0] == 0)
                    break;
            }
            else if (!b) {
                break;
            }
            const auto losses = t.pending_loss_sums();
            for (std::size_t m = 0; m < losses.size(); ++m)
                epoch_losses[m] += losses[m];
            epoch_rows += t.pending_rows();
            t.step();
            if (reader)
                progress.update(records * ranks, reader->bytes() * ranks);
        }
        const std::uint64_t epoch_bytes = mpi.sum(reader ? reader->bytes() : 0);
        progress.end_epoch(static_cast<std::uint64_t>(epoch_rows), epoch_bytes);
        st.bytes += epoch_bytes;
        st.records = static_cast<std::uint64_t>(epoch_rows);
        st.epochs_run = epoch + 1;
        reader.reset();

        // The training loss is the running one (each batch before its update), of the best model.
        for (auto& l : epoch_losses)
            l /= std::max(1.0, epoch_rows);
        double loss = *std::min_element(epoch_losses.begin(), epoch_losses.end());
        lines.report("train", "objective_loss", loss, epoch + 1);
        if (job.has(channel::validation)) {
            const auto v = channel_losses(passes, channel::validation, st, rank_batch * ranks);
            loss = *std::min_element(v.begin(), v.end());
            lines.report("validation", "objective_loss", loss, epoch + 1);
        }
        // Early stopping: patience epochs in a row without a relative improvement of tolerance.
        if (loss < best_loss * (1 - s.early_stopping_tolerance) || best_loss == HUGE_VAL)
            bad_epochs = 0;
        else if (++bad_epochs >= s.early_stopping_patience)
            break;
        best_loss = std::min(best_loss, loss);
    }
}

/// The score a binary classifier thresholds: the probability for logistic, the margin for hinge.
double binary_score(const ll::loss_function& loss, double z)
{
    return loss.type == loss_type::logistic ? ll::loss_function::sigmoid(z) : z;
}

double default_threshold(const ll::loss_function& loss) { return loss.type == loss_type::logistic ? 0.5 : 0.0; }

/// Chooses the model (and a binary classifier's threshold): on the validation channel, or the
/// training data when there is none, every rank reading it whole (at most
/// num_calibration_samples records for the threshold).
void choose_model(const training_job& job, channel_passes& passes, const settings& s, training_state& st)
{
    auto& t = *st.t;
    const channel c = job.has(channel::validation) ? channel::validation : channel::train;
    if (c == channel::train && job.sources(channel::train).empty()) {
        // In Pipe mode a rank's train FIFO is its own shard, which would choose different
        // models on different ranks: the model as given.
        st.chosen = 0;
        st.threshold = default_threshold(st.loss);
        return;
    }
    const auto losses = channel_losses(passes, c, st, s.mini_batch_size);
    st.chosen = static_cast<std::size_t>(std::min_element(losses.begin(), losses.end()) - losses.begin());
    if (*s.predictor != predictor_type::binary_classifier || s.criterion == selection_criterion::loss_function) {
        st.threshold = default_threshold(st.loss);
        return;
    }
    std::vector<std::vector<double>> scores(t.models());
    std::vector<double> labels;
    auto reader = passes.open(c, s.mini_batch_size);
    batch_rows rows;
    for_each_batch(
        reader, st, rows, true,
        [&](const auto& x, const Eigen::VectorXd& y) {
            const ll::dense_rows z = t.scores(x);
            for (Eigen::Index i = 0; i < z.rows() && labels.size() < s.num_calibration_samples; ++i) {
                labels.push_back(y[i]);
                for (std::size_t m = 0; m < t.models(); ++m)
                    scores[m].push_back(binary_score(st.loss, z(i, static_cast<Eigen::Index>(m))));
            }
        },
        s.num_calibration_samples);
    const double target = s.criterion == selection_criterion::precision_at_target_recall ? s.target_recall
                                                                                         : s.target_precision;
    double best = -HUGE_VAL;
    for (std::size_t m = 0; m < t.models(); ++m) {
        const auto c = metrics::calibrate_threshold(scores[m], labels, s.criterion, s.f_beta, target,
                                                    default_threshold(st.loss));
        // Higher is better; on a tie, the lower loss.
        if (c.value > best || (c.value == best && losses[m] < losses[st.chosen])) {
            best = c.value;
            st.chosen = m;
            st.threshold = c.threshold;
        }
    }
}

/// The chosen model's predictions of one batch: scores (num_classes a row for multiclass) and
/// predicted labels.
struct predictions {
    std::vector<double> scores, labels;
};

/// A model as the model file holds it (the chosen one of the trained).
struct model {
    predictor_type predictor = predictor_type::regressor;
    ll::loss_function loss;
    std::size_t d = 0, outputs = 1;
    Eigen::MatrixXd w;       // d x outputs
    Eigen::RowVectorXd b;    // outputs
    ll::scaler features;
    label_scaler label;
    double threshold = 0.5;

    void predict(const ll::dense_rows& z, predictions& out) const
    {
        for (Eigen::Index i = 0; i < z.rows(); ++i) {
            if (predictor == predictor_type::multiclass_classifier) {
                const Eigen::RowVectorXd r = z.row(i);
                const Eigen::RowVectorXd e = (r.array() - r.maxCoeff()).exp();
                const Eigen::RowVectorXd p = e / e.sum();
                Eigen::Index best = 0;
                p.maxCoeff(&best);
                out.scores.insert(out.scores.end(), p.data(), p.data() + p.size());
                out.labels.push_back(static_cast<double>(best));
            }
            else if (predictor == predictor_type::binary_classifier) {
                const double sc = binary_score(loss, z(i, 0));
                out.scores.push_back(sc);
                out.labels.push_back(sc >= threshold ? 1.0 : 0.0);
            }
            else {
                const double v = z(i, 0) * label.scale + label.mean;
                out.scores.push_back(v);
                out.labels.push_back(v);
            }
        }
    }

    template <class Rows>
    ll::dense_rows scores(const Rows& x) const
    {
        ll::dense_rows z = x * w;
        z.rowwise() += b;
        return z;
    }
};

model chosen_model(const settings& s, const training_state& st)
{
    model m;
    m.predictor = *s.predictor;
    m.loss = st.loss;
    m.d = st.d;
    m.outputs = st.outputs;
    const auto first = static_cast<Eigen::Index>(st.chosen * st.outputs);
    m.w = st.t->weights().middleCols(first, static_cast<Eigen::Index>(st.outputs));
    m.b = st.t->bias().segment(first, static_cast<Eigen::Index>(st.outputs));
    m.features = st.features;
    m.label = st.normalized_label ? st.label : label_scaler{};
    m.threshold = st.threshold;
    return m;
}

/// The metrics of a channel's predictions, as SageMaker names them.
void channel_metrics(std::string_view channel, const model& m, const predictions& p, const std::vector<double>& labels,
                     double objective, std::size_t top_k, double beta, metrics_log& lines)
{
    auto log = [&](std::string_view c, std::string_view name, double v) { lines.report(c, name, v); };
    log(channel, "objective_loss", objective);
    switch (m.predictor) {
    case predictor_type::regressor:
        log(channel, "mse", metrics::mse(p.scores, labels));
        log(channel, "absolute_loss", metrics::absolute_loss(p.scores, labels));
        break;
    case predictor_type::binary_classifier: {
        const auto c = metrics::confusion::of(p.labels, labels);
        log(channel, "binary_classification_accuracy", c.accuracy());
        log(channel, "binary_f_beta", c.f_beta(beta));
        log(channel, "precision", c.precision());
        log(channel, "recall", c.recall());
        log(channel, "roc_auc_score", metrics::roc_auc_score(p.scores, labels));
        break;
    }
    case predictor_type::multiclass_classifier: {
        log(channel, "multiclass_accuracy", metrics::multiclass::accuracy(p.labels, labels));
        log(channel, "multiclass_top_k_accuracy", metrics::multiclass::top_k_accuracy(p.scores, m.outputs, labels, top_k));
        const auto macro = metrics::multiclass::macro_scores(p.labels, labels, beta);
        log(channel, "macro_precision", macro.precision);
        log(channel, "macro_recall", macro.recall);
        log(channel, "macro_f_beta", macro.f_beta);
        break;
    }
    }
}

/// Predictions of `m` for a channel, read whole, with the labels and the mean objective loss.
void evaluate(channel_passes& passes, channel c, const model& m, std::size_t batch, predictions& p,
              std::vector<double>& labels, double& loss)
{
    auto reader = passes.open(c, batch);
    batch_rows rows;
    double sum = 0;
    std::vector<double> dz(m.outputs);
    const double label_scale = m.label.scale, label_mean = m.label.mean;
    while (const auto b = reader.next()) {
        read_rows(*b, m.d, rows, true);
        ll::dense_rows z;
        if (rows.sparse) {
            m.features.apply(rows.sparse_x);
            z = m.scores(rows.sparse_x);
        }
        else {
            m.features.apply(rows.dense);
            z = m.scores(rows.dense);
        }
        m.predict(z, p);
        for (Eigen::Index i = 0; i < z.rows(); ++i) {
            labels.push_back(rows.y[i]);
            sum += m.loss(z.row(i).data(), m.outputs, (rows.y[i] - label_mean) / label_scale, dz.data());
        }
    }
    loss = labels.empty() ? 0.0 : sum / static_cast<double>(labels.size());
}

// --- the model file ----------------------------------------------------------------------------

std::string model_json(const settings& s, const training_state& st, const model& m)
{
    std::string out = "{\n";
    out += "  \"algorithm\": \"linear_learner\",\n  \"format_version\": 1,\n";
    out += "  \"predictor_type\": \"" + std::string(to_string(m.predictor)) + "\",\n";
    out += "  \"num_classes\": " + std::to_string(m.predictor == predictor_type::multiclass_classifier ? m.outputs : 0)
           + ",\n";
    out += "  \"feature_dim\": " + std::to_string(m.d) + ",\n";
    out += "  \"loss\": \"" + std::string(to_string(m.loss.type)) + "\",\n";
    out += "  \"loss_insensitivity\": ";
    append_json_number(out, m.loss.insensitivity);
    out += ",\n  \"quantile\": ";
    append_json_number(out, m.loss.quantile);
    out += ",\n  \"huber_delta\": ";
    append_json_number(out, m.loss.huber_delta);
    out += ",\n  \"positive_example_weight_mult\": ";
    append_json_number(out, m.loss.positive_weight);
    out += ",\n  \"threshold\": ";
    // Every score below it (a classifier that best says 0 to all) is +inf, which JSON cannot
    // hold: the largest double keeps every score below it when read back.
    append_json_number(out, std::min(m.threshold, std::numeric_limits<double>::max()));
    out += ",\n  \"use_bias\": " + std::string(s.use_bias ? "true" : "false") + ",\n";
    out += "  \"optimizer\": \"" + std::string(to_string(s.optimizer)) + "\",\n";
    out += "  \"num_models\": " + std::to_string(st.models.size()) + ",\n";
    out += "  \"chosen_model\": " + std::to_string(st.chosen) + ",\n";
    out += "  \"learning_rate\": ";
    append_json_number(out, st.models[st.chosen].learning_rate);
    out += ",\n  \"wd\": ";
    append_json_number(out, st.models[st.chosen].wd);
    out += ",\n  \"l1\": ";
    append_json_number(out, st.models[st.chosen].l1);
    out += ",\n  \"epochs\": " + std::to_string(st.epochs_run) + ",\n";
    out += "  \"mini_batch_size\": " + std::to_string(s.mini_batch_size) + ",\n";
    out += "  \"records\": " + std::to_string(st.records) + ",\n";
    out += "  \"feature_mean\": ";
    append_json_array(out, std::span<const double>(m.features.mean.data(), static_cast<std::size_t>(m.features.mean.size())));
    out += ",\n  \"feature_scale\": ";
    append_json_array(out, std::span<const double>(m.features.scale.data(), static_cast<std::size_t>(m.features.scale.size())));
    out += ",\n  \"label_mean\": ";
    append_json_number(out, m.label.mean);
    out += ",\n  \"label_scale\": ";
    append_json_number(out, m.label.scale);
    out += ",\n  \"bias\": ";
    append_json_array(out, std::span<const double>(m.b.data(), static_cast<std::size_t>(m.b.size())));
    // Weights as rows of the feature dimension: weights[j][c] multiplies feature j for output c.
    const ll::dense_rows w = m.w;
    out += ",\n  \"weights\": ";
    append_json_matrix(out, std::span<const double>(w.data(), static_cast<std::size_t>(w.size())), m.outputs);
    out += "\n}\n";
    return out;
}

model read_model(const std::filesystem::path& path)
{
    const auto file = model_file::read(path);
    file.expect("linear_learner", 1);
    auto vector = [&](std::string_view name) {
        const auto v = file.numbers(name);
        return Eigen::RowVectorXd(Eigen::Map<const Eigen::RowVectorXd>(v.data(), static_cast<Eigen::Index>(v.size())));
    };
    model m;
    const auto p = file.string("predictor_type");
    if (p == "binary_classifier")
        m.predictor = predictor_type::binary_classifier;
    else if (p == "multiclass_classifier")
        m.predictor = predictor_type::multiclass_classifier;
    else if (p == "regressor")
        m.predictor = predictor_type::regressor;
    else
        throw std::runtime_error(path.string() + ": unknown predictor_type \"" + p + "\"");
    const auto l = file.string("loss");
    bool known = false;
    for (auto t : {loss_type::logistic, loss_type::softmax, loss_type::squared_loss, loss_type::absolute_loss,
                   loss_type::hinge_loss, loss_type::eps_insensitive_squared_loss,
                   loss_type::eps_insensitive_absolute_loss, loss_type::quantile_loss, loss_type::huber_loss})
        if (to_string(t) == l) {
            m.loss.type = t;
            known = true;
        }
    if (!known)
        throw std::runtime_error(path.string() + ": unknown loss \"" + l + "\"");
    m.loss.insensitivity = file.number("loss_insensitivity");
    m.loss.quantile = file.number("quantile");
    m.loss.huber_delta = file.number("huber_delta");
    m.loss.positive_weight = file.number("positive_example_weight_mult");
    m.threshold = file.number("threshold");
    m.d = file.count("feature_dim");
    m.b = vector("bias");
    m.outputs = static_cast<std::size_t>(m.b.size());
    m.features.mean = vector("feature_mean");
    m.features.scale = vector("feature_scale");
    m.label.mean = file.number("label_mean");
    m.label.scale = file.number("label_scale");
    // weights[j][c] multiplies feature j for output c: d rows of `outputs`, row-major.
    const auto w = file.matrix("weights", m.outputs);
    if (w.size() != m.d * m.outputs)
        throw std::runtime_error(path.string() + ": \"weights\" has " + std::to_string(w.size() / std::max<std::size_t>(1, m.outputs))
                                 + " rows, not feature_dim");
    m.w = Eigen::Map<const ll::dense_rows>(w.data(), static_cast<Eigen::Index>(m.d), static_cast<Eigen::Index>(m.outputs));
    return m;
}

/// Prediction mode (rank 0 alone: under mpirun every rank would write every line): one JSON
/// line a record, as SageMaker's Linear Learner answers batch transform: {"score": p,
/// "predicted_label": l} (binary), {"score": [p...], "predicted_label": k} (multiclass),
/// {"score": v} (regressor).
int predict(const training_job& job, const settings& s, const mpi_context& mpi)
{
    const model m = read_model(job.predict_model());
    batch_rows rows;
    run_prediction(job, mpi, s.mini_batch_size, [&](const pipemode::batch& b, std::vector<std::string>& out) {
        read_rows(b, m.d, rows, false);
        ll::dense_rows z;
        if (rows.sparse) {
            m.features.apply(rows.sparse_x);
            z = m.scores(rows.sparse_x);
        }
        else {
            m.features.apply(rows.dense);
            z = m.scores(rows.dense);
        }
        predictions p;
        m.predict(z, p);
        std::string line;
        for (std::size_t i = 0; i < p.labels.size(); ++i) {
            line = "{\"score\": ";
            if (m.predictor == predictor_type::multiclass_classifier)
                append_json_array(line, std::span<const double>(p.scores).subspan(i * m.outputs, m.outputs));
            else
                append_json_number(line, p.scores[i]);
            if (m.predictor != predictor_type::regressor) {
                line += ", \"predicted_label\": ";
                append_json_number(line, p.labels[i]);
            }
            line += "}";
            out.push_back(line);
        }
    });
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    settings s;
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
    if (*s.predictor == predictor_type::multiclass_classifier && s.num_classes < 2)
        throw usage_error("a multiclass_classifier needs num_classes of at least 2");
    (void)resolve_loss(s);

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    metrics_log metrics(mpi.rank() == 0);
    channel_passes passes(job);
    training_state st;
    train(job, passes, s, st, mpi, progress, metrics);
    choose_model(job, passes, s, st);
    const model m = chosen_model(s, st);
    for (const auto c : {channel::validation, channel::test}) {
        if (!job.has(c))
            continue;
        predictions p;
        std::vector<double> labels;
        double loss = 0;
        evaluate(passes, c, m, s.mini_batch_size, p, labels, loss);
        channel_metrics(to_string(c), m, p, labels, loss, s.top_k, s.f_beta, metrics);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (mpi.rank() == 0) {
        const auto path = write_model_file(job.model_dir(), "model.json", model_json(s, st, m));
        metrics.write(job.model_dir());
        std::string out;
        using pipemode::tools::append_field;
        using pipemode::tools::format;
        append_field(out, "records", std::to_string(st.records));
        append_field(out, "epochs", std::to_string(st.epochs_run));
        append_field(out, "ranks", std::to_string(mpi.size()));
        append_field(out, "bytes", std::to_string(st.bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "chosen model", std::to_string(st.chosen));
        append_field(out, "model", path.string());
        std::fwrite(out.data(), 1, out.size(), stderr);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
