// The arithmetic of pipemode-linear-learner, without I/O: SageMaker's Linear Learner as
// `num_models` linear models trained at once on the same mini-batches, with one matrix product
// per batch for all of them (X [rows x d] times W [d x (num_models * outputs)]), in float64.
// Eigen matrices in, state out, so that tests can drive it row by row (docs/algorithms.md,
// "Linear Learner").
#pragma once

#include <Eigen/Dense>
#include <Eigen/Sparse>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::examples::ll {

/// Dense rows of a batch (row-major, as records arrive).
using dense_rows = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Sparse rows of a batch (CSR, as pipemode's sparse columns are).
using sparse_rows = Eigen::SparseMatrix<double, Eigen::RowMajor>;

/// What the model predicts: SageMaker's `predictor_type`.
enum class predictor_type { binary_classifier, multiclass_classifier, regressor };

/// The loss minimized; `softmax` is what `logistic` means for a multiclass classifier.
enum class loss_type {
    logistic,
    softmax,
    squared_loss,
    absolute_loss,
    hinge_loss,
    eps_insensitive_squared_loss,
    eps_insensitive_absolute_loss,
    quantile_loss,
    huber_loss,
};

/// The optimizer; SageMaker's `auto` is adam.
enum class optimizer_type { adam, sgd, rmsprop };

/// A loss and its parameters.
///
/// Per row, with score z and label y (0/1 for binary classifiers, the class index for
/// multiclass, the value for regressors; t = 2y - 1, r = z - y):
/// logistic log(1 + e^z) - y z; softmax logsumexp(z) - z_y; squared_loss r^2 / 2;
/// absolute_loss |r|; hinge_loss max(0, 1 - t z); eps_insensitive_squared_loss
/// max(0, |r| - eps)^2 / 2; eps_insensitive_absolute_loss max(0, |r| - eps); quantile_loss
/// q (y - z) when y >= z, else (1 - q)(z - y); huber_loss r^2 / 2 within delta, else
/// delta (|r| - delta / 2). A positive row of a binary classifier counts `positive_weight`
/// times.
struct loss_function {
    loss_type type = loss_type::squared_loss;
    double insensitivity = 0.01;  ///< eps of the eps-insensitive losses (`loss_insensitivity`)
    double quantile = 0.5;        ///< q of quantile_loss
    double huber_delta = 1.0;     ///< delta of huber_loss
    double positive_weight = 1.0; ///< `positive_example_weight_mult`, binary classifiers only

    /// The loss of one row with scores `z[0..k)` (k = 1 except for softmax) and label `y`;
    /// writes dloss/dz into `dz[0..k)`.
    double operator()(const double* z, std::size_t k, double y, double* dz) const
    {
        switch (type) {
        case loss_type::logistic: {
            const double w = y > 0.5 ? positive_weight : 1.0;
            // log(1 + e^z) without overflow for large |z|.
            const double softplus = z[0] > 0 ? z[0] + std::log1p(std::exp(-z[0])) : std::log1p(std::exp(z[0]));
            dz[0] = w * (sigmoid(z[0]) - y);
            return w * (softplus - y * z[0]);
        }
        case loss_type::softmax: {
            const auto label = static_cast<std::size_t>(y);
            if (label >= k || y != static_cast<double>(label))
                throw std::runtime_error("a multiclass label " + std::to_string(y) + " is not a class index below "
                                         + std::to_string(k));
            const double top = *std::max_element(z, z + k);
            double sum = 0;
            for (std::size_t c = 0; c < k; ++c)
                sum += std::exp(z[c] - top);
            const double lse = top + std::log(sum);
            for (std::size_t c = 0; c < k; ++c)
                dz[c] = std::exp(z[c] - lse) - (c == label ? 1.0 : 0.0);
            return lse - z[label];
        }
        case loss_type::hinge_loss: {
            const double w = y > 0.5 ? positive_weight : 1.0;
            const double t = y > 0.5 ? 1.0 : -1.0;
            const double margin = 1 - t * z[0];
            dz[0] = margin > 0 ? -w * t : 0.0;
            return w * std::max(0.0, margin);
        }
        case loss_type::squared_loss: {
            const double r = z[0] - y;
            dz[0] = r;
            return 0.5 * r * r;
        }
        case loss_type::absolute_loss: {
            const double r = z[0] - y;
            dz[0] = sign(r);
            return std::abs(r);
        }
        case loss_type::eps_insensitive_squared_loss: {
            const double r = z[0] - y;
            const double e = std::max(0.0, std::abs(r) - insensitivity);
            dz[0] = sign(r) * e;
            return 0.5 * e * e;
        }
        case loss_type::eps_insensitive_absolute_loss: {
            const double r = z[0] - y;
            const double e = std::abs(r) - insensitivity;
            dz[0] = e > 0 ? sign(r) : 0.0;
            return std::max(0.0, e);
        }
        case loss_type::quantile_loss: {
            const double r = y - z[0];
            dz[0] = r > 0 ? -quantile : (r < 0 ? 1 - quantile : 0.0);
            return r >= 0 ? quantile * r : (quantile - 1) * r;
        }
        case loss_type::huber_loss: {
            const double r = z[0] - y;
            if (std::abs(r) <= huber_delta) {
                dz[0] = r;
                return 0.5 * r * r;
            }
            dz[0] = huber_delta * sign(r);
            return huber_delta * (std::abs(r) - 0.5 * huber_delta);
        }
        }
        return 0;
    }

    /// The logistic function, stable for large |z|.
    static double sigmoid(double z)
    {
        if (z >= 0)
            return 1 / (1 + std::exp(-z));
        const double e = std::exp(z);
        return e / (1 + e);
    }

private:
    static double sign(double r) { return r > 0 ? 1.0 : (r < 0 ? -1.0 : 0.0); }
};

/// The hyperparameters of one of the models trained together.
struct model_hyperparameters {
    double learning_rate = 0.001;
    double wd = 0;  ///< L2: the objective adds wd / 2 * |w|^2 (the bias is not regularized)
    double l1 = 0;  ///< L1: the objective adds l1 * |w|_1, applied as a proximal step
};

/// The hyperparameters of `num_models` models spread around the given ones, as SageMaker's
/// Linear Learner trains several at once. Model 0 has exactly `base`; model m >= 1 takes
/// j = (m + 1) / 2 and s = +1 for odd m, -1 for even m, and has learning_rate * 10^(s j / 2)
/// and wd, l1 times 10^(-s j) (so the bigger steps come with less regularization, and the
/// smaller with more). A regularization given as 0 stays 0 for every model.
inline std::vector<model_hyperparameters> spread_hyperparameters(const model_hyperparameters& base, std::size_t num_models)
{
    std::vector<model_hyperparameters> out(num_models, base);
    for (std::size_t m = 1; m < num_models; ++m) {
        const double j = static_cast<double>((m + 1) / 2);
        const double s = m % 2 == 1 ? 1.0 : -1.0;
        out[m].learning_rate = base.learning_rate * std::pow(10.0, s * j / 2);
        out[m].wd = base.wd * std::pow(10.0, -s * j);
        out[m].l1 = base.l1 * std::pow(10.0, -s * j);
    }
    return out;
}

/// What `trainer` needs to know.
struct trainer_options {
    std::size_t dim = 0;            ///< features a row
    std::size_t outputs = 1;        ///< scores a row: num_classes for multiclass, else 1
    loss_function loss;
    std::vector<model_hyperparameters> models{model_hyperparameters{}};  ///< one per model
    optimizer_type optimizer = optimizer_type::adam;
    double beta_1 = 0.9;            ///< adam's first-moment decay
    double beta_2 = 0.999;          ///< adam's second-moment decay, rmsprop's decay
    double momentum = 0;            ///< sgd's momentum
    double epsilon = 1e-8;          ///< adam's and rmsprop's denominator guard
    bool use_bias = true;
    bool use_lr_scheduler = false;  ///< multiply the learning rates by `lr_scheduler_factor`
    std::size_t lr_scheduler_step = 100;    ///< ... every this many updates
    double lr_scheduler_factor = 0.99;
    double lr_scheduler_minimum_lr = 1e-5;  ///< ... but never below this (nor the model's own rate)
};

/// `num_models` linear models trained together on the same mini-batches.
///
/// A step is split in two so that MPI ranks can add their parts between them: `accumulate`
/// adds a batch's gradient sums (and loss sums and row count) into `pending()`, a flat buffer
/// whose element-wise sum over ranks is the gradient of the global batch; `step` then applies
/// it. Weights start at zero. The update for each model, with n the rows summed and g the
/// gradient of mean loss + wd/2 |w|^2:
///   sgd:     v = momentum v + g;  w -= lr v
///   adam:    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr m^ / (sqrt(v^) + eps)
///            (m^, v^ bias-corrected)
///   rmsprop: v = b2 v + (1 - b2) g^2;  w -= lr g / (sqrt(v) + eps)
/// then, when l1 > 0, w = sign(w) max(|w| - lr l1, 0). Not thread-safe.
class trainer {
public:
    /// Zero weights for `o.models.size()` models.
    explicit trainer(trainer_options o) : o_(std::move(o))
    {
        if (o_.dim == 0 || o_.outputs == 0 || o_.models.empty())
            throw std::invalid_argument("linear learner: dim, outputs and the model count must be positive");
        const auto cols = static_cast<Eigen::Index>(columns());
        const auto d = static_cast<Eigen::Index>(o_.dim);
        w_ = dense_rows::Zero(d, cols);
        b_ = Eigen::RowVectorXd::Zero(cols);
        w1_ = w_;
        w2_ = w_;
        b1_ = b_;
        b2_ = b_;
        lr_.resize(cols);
        wd_.resize(cols);
        l1_.resize(cols);
        for (Eigen::Index c = 0; c < cols; ++c) {
            const auto& h = o_.models[static_cast<std::size_t>(c) / o_.outputs];
            lr_[c] = h.learning_rate;
            wd_[c] = h.wd;
            l1_[c] = h.l1;
        }
        pending_.assign(pending_size(), 0.0);
    }

    /// Number of models.
    std::size_t models() const noexcept { return o_.models.size(); }

    /// Scores a row per model (1, or num_classes).
    std::size_t outputs() const noexcept { return o_.outputs; }

    /// Columns of W: models() * outputs(); model m owns columns [m * outputs, (m + 1) * outputs).
    std::size_t columns() const noexcept { return o_.models.size() * o_.outputs; }

    /// The options.
    const trainer_options& options() const noexcept { return o_; }

    /// Weights, d x columns(), row-major: a feature's weights for every model side by side, so
    /// that a sparse row's score reads one contiguous row of W per non-zero (column-major, each
    /// non-zero cost one cache and TLB miss per column: 74 % of a sparse epoch with 32 models).
    const dense_rows& weights() const noexcept { return w_; }

    /// Biases, one per column (zero when use_bias is false).
    const Eigen::RowVectorXd& bias() const noexcept { return b_; }

    /// Sets the weights and biases (a model read back, or a test's start).
    void set_state(const Eigen::MatrixXd& w, const Eigen::RowVectorXd& b)
    {
        if (w.rows() != w_.rows() || w.cols() != w_.cols() || b.size() != b_.size())
            throw std::invalid_argument("linear learner: state of the wrong shape");
        w_ = w;
        b_ = b;
    }

    /// Updates so far.
    std::uint64_t updates() const noexcept { return t_; }

    /// The scores of every model for `x`'s rows: rows x columns(), model m's in its columns.
    template <class Rows>
    dense_rows scores(const Rows& x) const
    {
        dense_rows z = x * w_;
        z.rowwise() += b_;
        return z;
    }

    /// The unregularized loss sums of every model over `x`'s rows with labels `y` (one per
    /// model); no state changes.
    template <class Rows>
    std::vector<double> loss_sums(const Rows& x, const Eigen::VectorXd& y) const
    {
        const dense_rows z = scores(x);
        std::vector<double> sums(models(), 0.0), dz(o_.outputs);
        for (Eigen::Index i = 0; i < z.rows(); ++i)
            for (std::size_t m = 0; m < models(); ++m)
                sums[m] += o_.loss(z.row(i).data() + m * o_.outputs, o_.outputs, y[i], dz.data());
        return sums;
    }

    /// Adds the gradient sums of the rows of `x` (rows x dim, dense or sparse) with labels `y`
    /// into `pending()`, with their loss sums (before the update) and their count.
    template <class Rows>
    void accumulate(const Rows& x, const Eigen::VectorXd& y)
    {
        if (static_cast<std::size_t>(x.cols()) != o_.dim || x.rows() != y.size())
            throw std::invalid_argument("linear learner: a batch of the wrong shape");
        const dense_rows z = scores(x);
        dense_rows dz(z.rows(), z.cols());
        auto losses = pending_losses();
        for (Eigen::Index i = 0; i < z.rows(); ++i)
            for (std::size_t m = 0; m < models(); ++m) {
                const auto offset = static_cast<Eigen::Index>(m * o_.outputs);
                losses[static_cast<Eigen::Index>(m)] +=
                    o_.loss(z.row(i).data() + offset, o_.outputs, y[i], dz.row(i).data() + offset);
            }
        // The one product of the backward pass: X^T dZ for every model at once.
        pending_gradient().noalias() += x.transpose() * dz;
        if (o_.use_bias)
            pending_bias() += dz.colwise().sum();
        pending_.back() += static_cast<double>(z.rows());
    }

    /// The buffer `accumulate` adds into and `step` consumes: W's gradient sums (row-major,
    /// d x columns()), the bias's (columns()), the loss sums (models()) and the row count.
    /// Sum it element-wise over MPI ranks between the two.
    std::span<double> pending() noexcept { return pending_; }

    /// Rows in `pending()`.
    double pending_rows() const noexcept { return pending_.back(); }

    /// The loss sums in `pending()`, one per model.
    std::vector<double> pending_loss_sums() const
    {
        const auto start = pending_.begin() + static_cast<std::ptrdiff_t>(o_.dim * columns() + columns());
        return {start, start + static_cast<std::ptrdiff_t>(models())};
    }

    /// Applies the gradient in `pending()` (divided by its row count) and clears it; does
    /// nothing when it holds no rows.
    void step()
    {
        const double n = pending_.back();
        if (n == 0)
            return;
        ++t_;
        const Eigen::RowVectorXd lr = current_learning_rates();
        // In place in the pending buffer, which is cleared below anyway: W is d x columns(),
        // 25 MB for 100,000 sparse features and 32 models, and a fresh temporary of that size
        // every batch cost more in page faults than the update's arithmetic.
        auto g = pending_gradient();
        g /= n;
        g.array() += w_.array().rowwise() * wd_.array();
        const Eigen::RowVectorXd gb = pending_bias() / n;
        update(w_, w1_, w2_, g, lr);
        if (o_.use_bias)
            update(b_, b1_, b2_, gb, lr);
        if ((l1_.array() > 0).any()) {
            const Eigen::RowVectorXd shrink = lr.cwiseProduct(l1_);
            w_ = (w_.array().sign() * (w_.array().abs().rowwise() - shrink.array()).max(0.0)).matrix();
        }
        std::fill(pending_.begin(), pending_.end(), 0.0);
    }

    /// The learning rates in force for the next update, one per column.
    Eigen::RowVectorXd current_learning_rates() const
    {
        if (!o_.use_lr_scheduler || o_.lr_scheduler_step == 0)
            return lr_;
        const double decays = static_cast<double>(t_ / o_.lr_scheduler_step);
        Eigen::RowVectorXd lr = lr_ * std::pow(o_.lr_scheduler_factor, decays);
        for (Eigen::Index c = 0; c < lr.size(); ++c)
            lr[c] = std::max(lr[c], std::min(lr_[c], o_.lr_scheduler_minimum_lr));
        return lr;
    }

    /// The regularization of model `m`: wd/2 |w|^2 + l1 |w|_1 over its columns.
    double penalty(std::size_t m) const
    {
        const auto cols = w_.middleCols(static_cast<Eigen::Index>(m * o_.outputs), static_cast<Eigen::Index>(o_.outputs));
        const auto& h = o_.models[m];
        return 0.5 * h.wd * cols.squaredNorm() + h.l1 * cols.cwiseAbs().sum();
    }

private:
    std::size_t pending_size() const { return o_.dim * columns() + columns() + models() + 1; }

    Eigen::Map<dense_rows> pending_gradient()
    {
        return {pending_.data(), static_cast<Eigen::Index>(o_.dim), static_cast<Eigen::Index>(columns())};
    }

    Eigen::Map<Eigen::RowVectorXd> pending_bias()
    {
        return {pending_.data() + o_.dim * columns(), static_cast<Eigen::Index>(columns())};
    }

    Eigen::Map<Eigen::VectorXd> pending_losses()
    {
        return {pending_.data() + o_.dim * columns() + columns(), static_cast<Eigen::Index>(models())};
    }

    // One optimizer update of parameters p (their columns scaled by the column's rate) with
    // gradient g and the optimizer's state s1, s2. Array expressions throughout, so that no
    // parameter-sized temporary is made.
    template <class P, class G>
    void update(P& p, P& s1, P& s2, const G& g, const Eigen::RowVectorXd& lr) const
    {
        const auto rate = lr.array();
        switch (o_.optimizer) {
        case optimizer_type::sgd:
            s1.array() = o_.momentum * s1.array() + g.array();
            p.array() -= s1.array().rowwise() * rate;
            break;
        case optimizer_type::adam: {
            s1.array() = o_.beta_1 * s1.array() + (1 - o_.beta_1) * g.array();
            s2.array() = o_.beta_2 * s2.array() + (1 - o_.beta_2) * g.array().square();
            const double c1 = 1 - std::pow(o_.beta_1, static_cast<double>(t_));
            const double c2 = 1 - std::pow(o_.beta_2, static_cast<double>(t_));
            p.array() -= ((s1.array() / c1) / ((s2.array() / c2).sqrt() + o_.epsilon)).rowwise() * rate;
            break;
        }
        case optimizer_type::rmsprop:
            s2.array() = o_.beta_2 * s2.array() + (1 - o_.beta_2) * g.array().square();
            p.array() -= (g.array() / (s2.array().sqrt() + o_.epsilon)).rowwise() * rate;
            break;
        }
    }

    trainer_options o_;
    dense_rows w_, w1_, w2_;         // weights and the optimizer's two states (row-major)
    Eigen::RowVectorXd b_, b1_, b2_; // biases and theirs
    Eigen::RowVectorXd lr_, wd_, l1_;
    std::vector<double> pending_;
    std::uint64_t t_ = 0;
};

/// Per-feature scaling learnt from the first records (`normalize_data`): x' = (x - mean) / std,
/// or x / std for sparse data, which keeps its zeros (no centring). A feature of zero spread
/// keeps scale 1. Also the label's (`normalize_label`, regressors) as a one-feature scaler.
struct scaler {
    Eigen::RowVectorXd mean;  ///< zeros for sparse data
    Eigen::RowVectorXd scale; ///< the std (1 where it is 0)

    /// Whether it changes anything.
    bool empty() const noexcept { return scale.size() == 0; }

    /// Sums of rows for a scaler, addable over MPI ranks: [count, sum(d), sum of squares(d)].
    static std::vector<double> moments(std::size_t d) { return std::vector<double>(1 + 2 * d, 0.0); }

    /// Adds row sums of `x` into `m` (see `moments`).
    template <class Rows>
    static void add_moments(std::vector<double>& m, const Rows& x)
    {
        const auto d = static_cast<Eigen::Index>((m.size() - 1) / 2);
        Eigen::Map<Eigen::RowVectorXd> sum(m.data() + 1, d), squares(m.data() + 1 + d, d);
        m[0] += static_cast<double>(x.rows());
        const Eigen::RowVectorXd ones = Eigen::RowVectorXd::Ones(x.rows());
        sum += ones * x;
        squares += ones * x.cwiseProduct(x);
    }

    /// The scaler of moments `m`; centred unless `sparse`.
    static scaler from_moments(const std::vector<double>& m, bool sparse)
    {
        const auto d = static_cast<Eigen::Index>((m.size() - 1) / 2);
        const double n = std::max(m[0], 1.0);
        Eigen::Map<const Eigen::RowVectorXd> sum(m.data() + 1, d), squares(m.data() + 1 + d, d);
        scaler s;
        s.mean = sum / n;
        const Eigen::RowVectorXd var = (squares / n - s.mean.cwiseProduct(s.mean)).cwiseMax(0.0);
        s.scale = var.cwiseSqrt();
        for (Eigen::Index j = 0; j < d; ++j)
            if (!(s.scale[j] > 1e-12))
                s.scale[j] = 1;
        if (sparse)
            s.mean.setZero();
        return s;
    }

    /// Scales dense rows in place.
    void apply(dense_rows& x) const
    {
        if (empty())
            return;
        x.rowwise() -= mean;
        x = x * scale.cwiseInverse().asDiagonal();
    }

    /// Scales sparse rows in place (their zeros stay zeros; `mean` is ignored).
    void apply(sparse_rows& x) const
    {
        if (empty())
            return;
        x = x * scale.cwiseInverse().asDiagonal();
    }
};

} // namespace pipemode::examples::ll
