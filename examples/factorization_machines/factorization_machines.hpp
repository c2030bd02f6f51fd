// Factorization Machines (Rendle's second-order model), as SageMaker's built-in trains them:
// a bias, linear weights and num_factors latent factors a feature, fitted by mini-batch
// AdaGrad on squared loss (regressor) or logistic loss (binary_classifier). No I/O: the
// program (factorization_machines_main.cpp) feeds it rows and moves gradients between ranks.
//
// The model:   yhat(x) = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j
// computed in O(nnz * num_factors) with the identity
//   sum_{i<j} <v_i, v_j> x_i x_j = 1/2 * sum_f [ (sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2 ],
// whose gradient is d yhat / d v_if = x_i (s_f - v_if x_i), s_f = sum_j v_jf x_j.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::examples::fm {

/// What the model predicts, and so its loss: SageMaker's `predictor_type`.
enum class predictor_type {
    binary_classifier,  ///< labels 0 or 1, logistic loss, the score is sigmoid(yhat)
    regressor,          ///< real labels, squared loss 1/2 (yhat - y)^2, the score is yhat
};

/// `predictor_type`'s SageMaker spelling.
inline std::string_view to_string(predictor_type p)
{
    return p == predictor_type::regressor ? "regressor" : "binary_classifier";
}

/// The `predictor_type` named `text`; throws `std::invalid_argument` for another name.
inline predictor_type parse_predictor_type(std::string_view text)
{
    if (text == "regressor")
        return predictor_type::regressor;
    if (text == "binary_classifier")
        return predictor_type::binary_classifier;
    throw std::invalid_argument("predictor_type is binary_classifier or regressor, not '" + std::string(text) + "'");
}

/// How one group of parameters (bias, linear weights or factors) starts: SageMaker's
/// `*_init_method` with its `*_init_sigma`, `*_init_scale` and `*_init_value`.
struct init_spec {
    /// The distribution.
    enum class method { normal, uniform, constant };
    method kind = method::normal;
    double sigma = 0.01;  ///< standard deviation of `normal` (mean 0)
    double scale = 0.01;  ///< `uniform` draws from [-scale, scale)
    double value = 0.0;   ///< every parameter of `constant`
};

/// The training hyperparameters (SageMaker's names; the defaults are SageMaker's).
///
/// The learning rates, weight decays and `eps` are those of the AdaGrad update (see
/// `fm_trainer`). `rescale_grad` 0 means 1 / (rows in the mini-batch), i.e. the mean gradient
/// of the batch; `clip_gradient` 0 means no clipping.
struct fm_hyperparameters {
    double bias_lr = 0.1;
    double linear_lr = 0.001;
    double factors_lr = 0.0001;
    double bias_wd = 0.01;
    double linear_wd = 0.001;
    double factors_wd = 0.00001;
    double clip_gradient = 0.0;
    double eps = 1e-8;
    double rescale_grad = 0.0;
};

/// A factorization machine: `w0`, `w` (feature_dim) and `v` (feature_dim x num_factors,
/// row-major: feature i's factors are `v[i * num_factors .. (i + 1) * num_factors)`).
///
/// Scoring is const and safe from any number of threads at once.
struct fm_model {
    predictor_type predictor = predictor_type::regressor;
    std::size_t feature_dim = 0;
    std::size_t num_factors = 0;
    double w0 = 0.0;
    std::vector<double> w;
    std::vector<double> v;

    /// A model of the given dimensions with every parameter 0.
    static fm_model zeros(predictor_type p, std::size_t feature_dim, std::size_t num_factors)
    {
        fm_model m;
        m.predictor = p;
        m.feature_dim = feature_dim;
        m.num_factors = num_factors;
        m.w.assign(feature_dim, 0.0);
        m.v.assign(feature_dim * num_factors, 0.0);
        return m;
    }

    /// A model drawn with std::mt19937_64 seeded with `seed`: first w0, then w in order, then
    /// v row by row (so the same seed gives the same model on every rank and every run).
    static fm_model initialized(predictor_type p, std::size_t feature_dim, std::size_t num_factors,
                                const init_spec& bias, const init_spec& linear, const init_spec& factors,
                                std::uint64_t seed)
    {
        fm_model m = zeros(p, feature_dim, num_factors);
        std::mt19937_64 random(seed);
        m.w0 = draw(bias, random);
        for (auto& x : m.w)
            x = draw(linear, random);
        for (auto& x : m.v)
            x = draw(factors, random);
        return m;
    }

    /// yhat of a sparse row (column indices `keys`, each below feature_dim and none twice,
    /// with `values`); fills `s` (num_factors) with s_f = sum_i v_if x_i, which the gradient
    /// needs. O(nnz * num_factors).
    double score_sparse(std::span<const std::uint64_t> keys, std::span<const double> values, std::span<double> s) const
    {
        Eigen::Map<Eigen::VectorXd> sum(s.data(), static_cast<Eigen::Index>(num_factors));
        sum.setZero();
        double linear = 0, squares = 0;
        for (std::size_t j = 0; j < keys.size(); ++j) {
            const double x = values[j];
            const auto vi = factors(keys[j]);
            linear += w[keys[j]] * x;
            sum += x * vi;
            squares += x * x * vi.squaredNorm();
        }
        return w0 + linear + 0.5 * (sum.squaredNorm() - squares);
    }

    /// yhat of a dense row of feature_dim values; fills `s` as `score_sparse` does.
    double score_dense(std::span<const double> x, std::span<double> s) const
    {
        const Eigen::Map<const Eigen::VectorXd> xv(x.data(), static_cast<Eigen::Index>(feature_dim));
        Eigen::Map<Eigen::VectorXd> sum(s.data(), static_cast<Eigen::Index>(num_factors));
        const auto vm = factor_matrix();
        sum.noalias() = vm.transpose() * xv;
        const double squares = xv.array().square().matrix().dot(vm.rowwise().squaredNorm());
        return w0 + weights().dot(xv) + 0.5 * (sum.squaredNorm() - squares);
    }

    /// The score a prediction reports for yhat: sigmoid(yhat) for a classifier, yhat itself
    /// for a regressor.
    double output(double yhat) const { return predictor == predictor_type::regressor ? yhat : sigmoid(yhat); }

    /// Feature i's factors as an Eigen row vector (read-only).
    Eigen::Map<const Eigen::RowVectorXd> factors(std::size_t i) const
    {
        return {v.data() + i * num_factors, static_cast<Eigen::Index>(num_factors)};
    }

    /// v as a feature_dim x num_factors Eigen matrix (read-only view).
    Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> factor_matrix() const
    {
        return {v.data(), static_cast<Eigen::Index>(feature_dim), static_cast<Eigen::Index>(num_factors)};
    }

    /// w as an Eigen vector (read-only view).
    Eigen::Map<const Eigen::VectorXd> weights() const { return {w.data(), static_cast<Eigen::Index>(feature_dim)}; }

    /// The logistic function, without overflow for large |z|.
    static double sigmoid(double z)
    {
        if (z >= 0)
            return 1.0 / (1.0 + std::exp(-z));
        const double e = std::exp(z);
        return e / (1.0 + e);
    }

private:
    static double draw(const init_spec& spec, std::mt19937_64& random)
    {
        switch (spec.kind) {
        case init_spec::method::normal: return std::normal_distribution<double>(0.0, spec.sigma)(random);
        case init_spec::method::uniform: return std::uniform_real_distribution<double>(-spec.scale, spec.scale)(random);
        case init_spec::method::constant: return spec.value;
        }
        return 0.0;
    }
};

/// The sums a channel's metrics are made of, added row by row and over ranks (`values` and
/// `from_values` carry them through an allreduce).
///
/// Regressor: rmse. Classifier: binary_classification_accuracy (threshold 0.5 on the score),
/// binary_classification_cross_entropy (mean, from yhat without forming log(0)) and
/// binary_f_beta with beta = 1 (0 when there is no positive prediction or label).
class fm_metrics {
public:
    /// Adds one row: its yhat (before the sigmoid) and its label.
    void add(predictor_type p, double yhat, double label)
    {
        ++rows_;
        if (p == predictor_type::regressor) {
            squared_error_ += (yhat - label) * (yhat - label);
            return;
        }
        // -[y log s(z) + (1 - y) log(1 - s(z))] = softplus(z) - y z, evaluated stably.
        cross_entropy_ += std::max(yhat, 0.0) - label * yhat + std::log1p(std::exp(-std::abs(yhat)));
        const bool predicted = yhat >= 0;  // sigmoid(yhat) >= 0.5
        const bool actual = label > 0.5;
        correct_ += predicted == actual ? 1 : 0;
        true_positive_ += predicted && actual ? 1 : 0;
        false_positive_ += predicted && !actual ? 1 : 0;
        false_negative_ += !predicted && actual ? 1 : 0;
    }

    /// Rows added.
    double rows() const noexcept { return rows_; }

    /// The sums, to add over ranks.
    std::vector<double> values() const
    {
        return {rows_, squared_error_, cross_entropy_, correct_, true_positive_, false_positive_, false_negative_};
    }

    /// Metrics from sums `values()` made (possibly added over ranks).
    static fm_metrics from_values(std::span<const double> s)
    {
        fm_metrics m;
        m.rows_ = s[0];
        m.squared_error_ = s[1];
        m.cross_entropy_ = s[2];
        m.correct_ = s[3];
        m.true_positive_ = s[4];
        m.false_positive_ = s[5];
        m.false_negative_ = s[6];
        return m;
    }

    /// The named metrics (SageMaker's names) of predictor `p`, in a fixed order.
    std::vector<std::pair<std::string, double>> named(predictor_type p, double beta = 1.0) const
    {
        const double n = std::max(rows_, 1.0);
        if (p == predictor_type::regressor)
            return {{"rmse", std::sqrt(squared_error_ / n)}};
        const double b2 = beta * beta;
        const double denominator = (1 + b2) * true_positive_ + b2 * false_negative_ + false_positive_;
        return {{"binary_classification_accuracy", correct_ / n},
                {"binary_classification_cross_entropy", cross_entropy_ / n},
                {"binary_f_beta", denominator > 0 ? (1 + b2) * true_positive_ / denominator : 0.0}};
    }

private:
    double rows_ = 0;
    double squared_error_ = 0;
    double cross_entropy_ = 0;
    double correct_ = 0;
    double true_positive_ = 0;
    double false_positive_ = 0;
    double false_negative_ = 0;
};

/// Mini-batch training of an `fm_model`: rows add their loss gradients; `apply` updates the
/// parameters of the rows a batch touched with AdaGrad.
///
/// The update of a parameter p with learning rate lr and weight decay wd, given the batch's
/// summed gradient G (as MXNet's AdaGrad, which SageMaker's FM runs on, does it):
///   g = clip(rescale * G, clip_gradient);  h += g^2;  p -= lr * (g / sqrt(h + eps) + wd * p)
/// with rescale = rescale_grad, or 1 / (rows of the batch over all ranks) when it is 0. Only
/// the bias and the features present in the batch (a sparse row's keys; every feature of a
/// dense row) are updated, weight decay included: a sparse ("lazy") update whose cost
/// follows the batch's non-zeros, not feature_dim.
///
/// Between ranks: `touched_rows` lists a rank's features; the ranks agree on their union,
/// `pack` lays this rank's gradients out over it, the program adds the packed buffers over
/// ranks, `unpack` puts the sums back, and every rank runs the same `apply`. Not thread-safe.
class fm_trainer {
public:
    using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    /// Trains `model` with `hp`; the AdaGrad history starts at 0.
    fm_trainer(fm_model model, const fm_hyperparameters& hp)
        : model_(std::move(model))
        , hp_(hp)
        , d_(model_.feature_dim)
        , k_(model_.num_factors)
        , h_w_(d_, 0.0)
        , h_v_(d_ * k_, 0.0)
        , g_w_(d_, 0.0)
        , g_v_(d_ * k_, 0.0)
        , seen_(d_, 0)
        , s_(k_, 0.0)
    {
        if (model_.w.size() != d_ || model_.v.size() != d_ * k_)
            throw std::invalid_argument("fm_trainer: the model's w and v do not have feature_dim and "
                                        "feature_dim x num_factors values");
    }

    /// The model as trained so far.
    const fm_model& model() const noexcept { return model_; }

    /// Adds the loss gradient of one sparse row with label `y`; returns its yhat under the
    /// model before this batch's update.
    double add_sparse(std::span<const std::uint64_t> keys, std::span<const double> x, double y)
    {
        const double yhat = model_.score_sparse(keys, x, s_);
        const double dl = loss_derivative(yhat, y);
        const Eigen::Map<const Eigen::RowVectorXd> s(s_.data(), static_cast<Eigen::Index>(k_));
        g_w0_ += dl;
        for (std::size_t j = 0; j < keys.size(); ++j) {
            const auto i = keys[j];
            mark(i);
            g_w_[i] += dl * x[j];
            Eigen::Map<Eigen::RowVectorXd> gv(g_v_.data() + i * k_, static_cast<Eigen::Index>(k_));
            gv += (dl * x[j]) * (s - x[j] * model_.factors(i));
        }
        rows_ += 1;
        return yhat;
    }

    /// Adds the loss gradients of the dense rows of `x` (rows x feature_dim) with labels `y`,
    /// as matrix products; writes each row's yhat (under the model before the update) to
    /// `yhat`.
    void add_dense(const row_major& x, std::span<const double> y, std::span<double> yhat)
    {
        const auto n = x.rows();
        const auto vm = model_.factor_matrix();
        const row_major s = x * vm;                                              // n x k
        const row_major x2 = x.array().square().matrix();                        // n x d
        const Eigen::VectorXd squares = x2 * vm.rowwise().squaredNorm();          // n
        Eigen::Map<Eigen::VectorXd> out(yhat.data(), n);
        out = (x * model_.weights()).array() + model_.w0 + 0.5 * (s.rowwise().squaredNorm() - squares).array();
        Eigen::VectorXd dl(n);
        for (Eigen::Index r = 0; r < n; ++r)
            dl[r] = loss_derivative(out[r], y[static_cast<std::size_t>(r)]);
        g_w0_ += dl.sum();
        Eigen::Map<Eigen::VectorXd>(g_w_.data(), static_cast<Eigen::Index>(d_)) += x.transpose() * dl;
        Eigen::Map<row_major> gv(g_v_.data(), static_cast<Eigen::Index>(d_), static_cast<Eigen::Index>(k_));
        gv += x.transpose() * (s.array().colwise() * dl.array()).matrix();
        gv -= (vm.array().colwise() * (x2.transpose() * dl).array()).matrix();
        if (n > 0)
            for (std::size_t i = 0; i < d_; ++i)
                mark(i);
        rows_ += static_cast<double>(n);
    }

    /// The features this rank's batch touched so far, sorted.
    std::vector<std::uint64_t> touched_rows()
    {
        std::sort(touched_.begin(), touched_.end());
        return touched_;
    }

    /// Lays out this rank's gradients over `rows` (sorted; a superset of `touched_rows()`):
    /// [bias, rows of the batch, then per row its linear gradient and num_factors factor
    /// gradients]: 2 + rows.size() * (1 + num_factors) doubles.
    void pack(std::span<const std::uint64_t> rows, std::vector<double>& out) const
    {
        out.resize(2 + rows.size() * (1 + k_));
        out[0] = g_w0_;
        out[1] = rows_;
        double* p = out.data() + 2;
        for (auto i : rows) {
            *p++ = g_w_[i];
            std::copy_n(g_v_.data() + i * k_, k_, p);
            p += k_;
        }
    }

    /// Replaces this rank's gradients by `in`, as `pack` laid them out over `rows` (their sums
    /// over ranks); the rows become touched.
    void unpack(std::span<const std::uint64_t> rows, std::span<const double> in)
    {
        g_w0_ = in[0];
        rows_ = in[1];
        const double* p = in.data() + 2;
        for (auto i : rows) {
            mark(i);
            g_w_[i] = *p++;
            std::copy_n(p, k_, g_v_.data() + i * k_);
            p += k_;
        }
    }

    /// Updates the bias and the parameters of `rows` (sorted, unique; normally
    /// `touched_rows()`) from the gradients added since the last call, then clears them.
    /// Does nothing when no row was added.
    void apply(std::span<const std::uint64_t> rows)
    {
        if (rows_ > 0) {
            const double rescale = hp_.rescale_grad > 0 ? hp_.rescale_grad : 1.0 / rows_;
            update(model_.w0, h_w0_, g_w0_, rescale, hp_.bias_lr, hp_.bias_wd);
            for (auto i : rows) {
                update(model_.w[i], h_w_[i], g_w_[i], rescale, hp_.linear_lr, hp_.linear_wd);
                for (std::size_t f = 0; f < k_; ++f)
                    update(model_.v[i * k_ + f], h_v_[i * k_ + f], g_v_[i * k_ + f], rescale, hp_.factors_lr,
                           hp_.factors_wd);
            }
        }
        g_w0_ = 0;
        rows_ = 0;
        for (auto i : touched_) {
            g_w_[i] = 0;
            std::fill_n(g_v_.data() + i * k_, k_, 0.0);
            seen_[i] = 0;
        }
        touched_.clear();
    }

    /// Rows added since the last `apply` (over all ranks after an `unpack`).
    double batch_rows() const noexcept { return rows_; }

private:
    double loss_derivative(double yhat, double y) const
    {
        if (model_.predictor == predictor_type::regressor)
            return yhat - y;
        if (y != 0.0 && y != 1.0)
            throw std::invalid_argument("a binary_classifier's labels are 0 or 1, not " + std::to_string(y));
        return fm_model::sigmoid(yhat) - y;
    }

    void mark(std::uint64_t i)
    {
        if (!seen_[i]) {
            seen_[i] = 1;
            touched_.push_back(i);
        }
    }

    void update(double& p, double& h, double g_sum, double rescale, double lr, double wd) const
    {
        double g = rescale * g_sum;
        if (hp_.clip_gradient > 0)
            g = std::clamp(g, -hp_.clip_gradient, hp_.clip_gradient);
        h += g * g;
        p -= lr * (g / std::sqrt(h + hp_.eps) + wd * p);
    }

    fm_model model_;
    fm_hyperparameters hp_;
    std::size_t d_, k_;
    double h_w0_ = 0;
    std::vector<double> h_w_, h_v_;           // AdaGrad's sums of squared gradients
    double g_w0_ = 0;
    double rows_ = 0;                          // rows whose gradients g_* hold
    std::vector<double> g_w_, g_v_;           // gradient sums; non-zero only on touched_ rows
    std::vector<unsigned char> seen_;          // feature i is in touched_
    std::vector<std::uint64_t> touched_;
    std::vector<double> s_;                    // scratch: s_f of the current row
};

} // namespace pipemode::examples::fm
