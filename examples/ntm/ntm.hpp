// Neural Topic Model: a variational autoencoder over bag-of-words documents (NVDM-style), with
// its gradients written out by hand and the optimizers SageMaker's NTM offers. No I/O: the
// program (ntm_main.cpp) feeds it batches of word counts and moves gradients between ranks.
//
// The model, for a document of word counts n (feature_dim = V words), k = num_topics:
//   x      = log1p(n)                                  the encoder's input
//   a_0    = x;  a_l = f(BN_l(W_l a_{l-1} + c_l))      encoder layers l = 1..L, f = activation,
//                                                      BN_l the identity without batch_norm
//   mu     = W_mu a_L + b_mu,  lv = W_lv a_L + b_lv    posterior N(mu, diag(exp(lv)))
//   z      = mu + exp(lv / 2) * eps,  eps ~ N(0, I)    the reparameterisation
//   theta  = softmax(z)                                topic weights
//   log p  = log_softmax(B theta + d)                  B: V x k, the topics; d: V
//   loss   = -sum_w n_w log p_w + 1/2 sum_j (mu_j^2 + exp(lv_j) - 1 - lv_j)
// and a batch's loss is the mean of its documents'. docs/algorithms.md, "Neural Topic Model",
// states the same with the optimizers, batch normalisation and the MPI design.
#pragma once

#include <Eigen/Core>
#include <Eigen/SparseCore>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::examples::ntm {

/// Dense row-major matrices: a batch is one document a row.
using matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The encoder's activation: SageMaker's `encoder_layers_activation`.
enum class activation { sigmoid, tanh, relu };

/// `activation`'s SageMaker spelling.
inline std::string_view to_string(activation a)
{
    return a == activation::sigmoid ? "sigmoid" : a == activation::tanh ? "tanh" : "relu";
}

/// The activation named `text`; throws `std::invalid_argument` for another name.
inline activation parse_activation(std::string_view text)
{
    if (text == "sigmoid")
        return activation::sigmoid;
    if (text == "tanh")
        return activation::tanh;
    if (text == "relu")
        return activation::relu;
    throw std::invalid_argument("encoder_layers_activation is sigmoid, tanh or relu, not '" + std::string(text) + "'");
}

/// The encoder's hidden layer sizes from SageMaker's `encoder_layers`: "auto" is
/// [3 num_topics, 2 num_topics]; otherwise comma-separated positive sizes ("100,50"). Throws
/// `std::invalid_argument` on anything else.
inline std::vector<std::size_t> parse_encoder_layers(std::string_view text, std::size_t num_topics)
{
    if (text == "auto")
        return {3 * num_topics, 2 * num_topics};
    std::vector<std::size_t> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto comma = std::min(text.find(',', start), text.size());
        std::string part(text.substr(start, comma - start));
        part.erase(0, part.find_first_not_of(" ["));
        part.erase(part.find_last_not_of(" ]") + 1);
        // digits only: std::stoull would take "-2" as 2^64 - 2
        unsigned long long v = 0;
        bool digits = !part.empty() && part.size() < 10;
        for (char ch : part) {
            digits = digits && ch >= '0' && ch <= '9';
            v = v * 10 + static_cast<unsigned>(ch - '0');
        }
        if (!digits || v == 0)
            throw std::invalid_argument("encoder_layers is \"auto\" or comma-separated positive sizes such as "
                                        "\"100,50\", not '" + std::string(text) + "'");
        out.push_back(static_cast<std::size_t>(v));
        start = comma + 1;
    }
    return out;
}

/// The shape of a model.
struct dimensions {
    std::size_t feature_dim = 0;             ///< V, the vocabulary
    std::size_t num_topics = 0;              ///< k
    std::vector<std::size_t> encoder_layers; ///< hidden sizes, at least one
    activation act = activation::sigmoid;
    bool batch_norm = false;
};

/// One named parameter (or batch-normalisation statistic) of the model.
struct parameter {
    std::string name;  ///< the model file's member
    matrix value;      ///< a vector is one column
    bool trained;      ///< false for batch normalisation's running statistics
};

/// Batch normalisation's epsilon and the running statistics' momentum.
inline constexpr double batch_norm_epsilon = 1e-5;
inline constexpr double batch_norm_momentum = 0.9;

/// The model's parameters, in a fixed order (the model file's and the MPI exchange's):
/// per encoder layer l (from 1) `encoder_W<l>` (h_l x h_{l-1}), `encoder_c<l>` (h_l), and with
/// batch_norm `bn_gamma<l>`, `bn_beta<l>` (trained) and `bn_mean<l>`, `bn_var<l>` (running
/// statistics); then `mu_W` (k x h_L), `mu_b`, `logvar_W`, `logvar_b`, `topics` (B, V x k) and
/// `decoder_b` (d, V).
class ntm_model {
public:
    /// An empty model: no shape, no parameters (what a model read later replaces).
    ntm_model() = default;

    /// A model of the given shape with every parameter 0 (gamma and running variance 1).
    explicit ntm_model(dimensions dims) : dims_(std::move(dims))
    {
        if (dims_.encoder_layers.empty())
            throw std::invalid_argument("the encoder needs at least one layer");
        std::size_t in = dims_.feature_dim;
        for (std::size_t l = 0; l < dims_.encoder_layers.size(); ++l) {
            const std::size_t h = dims_.encoder_layers[l];
            const auto n = std::to_string(l + 1);
            add("encoder_W" + n, h, in, true);
            add("encoder_c" + n, h, 1, true);
            if (dims_.batch_norm) {
                add("bn_gamma" + n, h, 1, true).setOnes();
                add("bn_beta" + n, h, 1, true);
                add("bn_mean" + n, h, 1, false);
                add("bn_var" + n, h, 1, false).setOnes();
            }
            in = h;
        }
        add("mu_W", dims_.num_topics, in, true);
        add("mu_b", dims_.num_topics, 1, true);
        add("logvar_W", dims_.num_topics, in, true);
        add("logvar_b", dims_.num_topics, 1, true);
        add("topics", dims_.feature_dim, dims_.num_topics, true);
        add("decoder_b", dims_.feature_dim, 1, true);
    }

    /// A model drawn with std::mt19937_64 seeded with `seed`: every weight matrix uniform in
    /// +-sqrt(6 / (fan_in + fan_out)) (Glorot), in the parameters' order, row by row; biases 0,
    /// gamma 1, beta 0. The same seed gives the same model on every rank.
    static ntm_model initialized(const dimensions& dims, std::uint64_t seed)
    {
        ntm_model m(dims);
        std::mt19937_64 random(seed);
        for (auto& p : m.params_) {
            if (!p.trained || p.value.cols() == 1)
                continue;
            const double a = std::sqrt(6.0 / static_cast<double>(p.value.rows() + p.value.cols()));
            std::uniform_real_distribution<double> u(-a, a);
            for (Eigen::Index i = 0; i < p.value.size(); ++i)
                p.value.data()[i] = u(random);
        }
        return m;
    }

    /// The model's shape.
    const dimensions& dims() const noexcept { return dims_; }

    /// Every parameter, in the order above (the gradients' and the model file's).
    std::vector<parameter>& params() noexcept { return params_; }

    /// Every parameter, in the order above.
    const std::vector<parameter>& params() const noexcept { return params_; }

    /// The parameter called `name`; throws `std::out_of_range` when there is none.
    matrix& get(std::string_view name) { return find(name).value; }
    const matrix& get(std::string_view name) const { return const_cast<ntm_model*>(this)->find(name).value; }

    /// Index of `name` in `params()`.
    std::size_t index(std::string_view name) const
    {
        for (std::size_t i = 0; i < params_.size(); ++i)
            if (params_[i].name == name)
                return i;
        throw std::out_of_range("the model has no parameter '" + std::string(name) + "'");
    }

    /// Topic j's word distribution: softmax(B e_j + d), the decoder at theta = e_j.
    std::vector<double> topic_words(std::size_t j) const
    {
        const auto& b = get("topics");
        const auto& d = get("decoder_b");
        Eigen::VectorXd logits = b.col(static_cast<Eigen::Index>(j)) + d.col(0);
        logits.array() -= logits.maxCoeff();
        logits = logits.array().exp();
        logits /= logits.sum();
        return {logits.data(), logits.data() + logits.size()};
    }

private:
    matrix& add(std::string name, std::size_t rows, std::size_t cols, bool trained)
    {
        params_.push_back({std::move(name),
                           matrix::Zero(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)), trained});
        return params_.back().value;
    }

    parameter& find(std::string_view name) { return params_[index(name)]; }

    dimensions dims_;
    std::vector<parameter> params_;
};

/// What one pass over a batch gives.
struct batch_result {
    double loss_sum = 0;    ///< sum over the documents of their loss (reconstruction + KL)
    double kl_sum = 0;      ///< the KL part of `loss_sum`
    double words = 0;       ///< sum of the documents' word counts
    std::size_t docs = 0;   ///< documents
    /// d(mean loss)/d(parameter) in `params()`'s order (0 for running statistics), when asked.
    std::vector<matrix> gradients;
    /// Each batch-normalised layer's batch mean and (biased) variance, for the running statistics.
    std::vector<Eigen::VectorXd> batch_mean, batch_var;
    /// mu of each document (docs x k), for prediction.
    matrix mu;
};

/// Forward and backward passes over one batch.
///
/// `counts` holds one document's word counts a row (docs x V); `eps` the noise (docs x k).
/// With `training` true, batch normalisation uses the batch's statistics (each layer's mean
/// and biased variance over the batch's documents) and the gradients are computed; with false,
/// it uses the running statistics and nothing is differentiated (evaluation, prediction: pass
/// eps = 0 for z = mu).
inline batch_result evaluate(const ntm_model& m, const matrix& counts, const matrix& eps, bool training)
{
    const auto& dims = m.dims();
    const Eigen::Index n = counts.rows();
    const Eigen::Index k = static_cast<Eigen::Index>(dims.num_topics);
    if (counts.cols() != static_cast<Eigen::Index>(dims.feature_dim) || eps.rows() != n || eps.cols() != k)
        throw std::invalid_argument("a batch's counts or noise do not match the model's dimensions");
    batch_result r;
    r.docs = static_cast<std::size_t>(n);
    if (n == 0)
        return r;
    const std::size_t layers = dims.encoder_layers.size();
    const auto name = [](const char* base, std::size_t l) { return base + std::to_string(l + 1); };

    // Forward, keeping what the backward pass needs. The input is sparse (a document holds few
    // of the vocabulary's words): the first layer's product and its weights' gradient then cost
    // O(non-zeros x h_1) instead of O(N V h_1). a[0] stays empty; x stands for it.
    Eigen::SparseMatrix<double, Eigen::RowMajor> x = counts.sparseView();
    for (Eigen::Index row = 0; row < x.outerSize(); ++row)
        for (decltype(x)::InnerIterator it(x, row); it; ++it)
            it.valueRef() = std::log1p(it.value());
    std::vector<matrix> a(layers + 1), xhat(layers);
    std::vector<Eigen::VectorXd> inv_std(layers);
    r.batch_mean.resize(dims.batch_norm ? layers : 0);
    r.batch_var.resize(dims.batch_norm ? layers : 0);
    for (std::size_t l = 0; l < layers; ++l) {
        const auto& w = m.get(name("encoder_W", l));
        const auto& c = m.get(name("encoder_c", l));
        matrix q = l == 0 ? matrix(x * w.transpose()) : matrix(a[l] * w.transpose());
        q.rowwise() += c.col(0).transpose();
        if (dims.batch_norm) {
            Eigen::VectorXd mean, var;
            if (training) {
                mean = q.colwise().mean().transpose();
                var = (q.rowwise() - mean.transpose()).array().square().colwise().mean().transpose();
                r.batch_mean[l] = mean;
                r.batch_var[l] = var;
            }
            else {
                mean = m.get(name("bn_mean", l)).col(0);
                var = m.get(name("bn_var", l)).col(0);
            }
            inv_std[l] = (var.array() + batch_norm_epsilon).rsqrt();
            xhat[l] = ((q.rowwise() - mean.transpose()).array().rowwise() * inv_std[l].transpose().array()).matrix();
            q = (xhat[l].array().rowwise() * m.get(name("bn_gamma", l)).col(0).transpose().array()).matrix();
            q.rowwise() += m.get(name("bn_beta", l)).col(0).transpose();
        }
        switch (dims.act) {
        case activation::sigmoid: a[l + 1] = (1.0 / (1.0 + (-q.array()).exp())).matrix(); break;
        case activation::tanh: a[l + 1] = q.array().tanh().matrix(); break;
        case activation::relu: a[l + 1] = q.array().max(0.0).matrix(); break;
        }
    }
    const matrix& top = a[layers];
    matrix mu = top * m.get("mu_W").transpose();
    mu.rowwise() += m.get("mu_b").col(0).transpose();
    matrix lv = top * m.get("logvar_W").transpose();
    lv.rowwise() += m.get("logvar_b").col(0).transpose();
    const matrix sigma = (0.5 * lv.array()).exp().matrix();
    const matrix z = mu + (sigma.array() * eps.array()).matrix();
    matrix theta = (z.colwise() - z.rowwise().maxCoeff()).array().exp().matrix();
    theta.array().colwise() /= theta.rowwise().sum().array();
    matrix logits = theta * m.get("topics").transpose();
    logits.rowwise() += m.get("decoder_b").col(0).transpose();
    const Eigen::VectorXd top_logit = logits.rowwise().maxCoeff();
    matrix p = (logits.colwise() - top_logit).array().exp().matrix();
    const Eigen::VectorXd norm = p.rowwise().sum();
    p.array().colwise() /= norm.array();
    // log p_w = logits_w - top - log(norm)
    const Eigen::VectorXd log_z = top_logit.array() + norm.array().log();
    const Eigen::VectorXd length = counts.rowwise().sum();
    const Eigen::VectorXd reconstruction = length.array() * log_z.array() - (counts.array() * logits.array()).rowwise().sum();
    const Eigen::VectorXd kl = 0.5 * (mu.array().square() + lv.array().exp() - 1.0 - lv.array()).rowwise().sum();
    r.loss_sum = reconstruction.sum() + kl.sum();
    r.kl_sum = kl.sum();
    r.words = length.sum();
    if (!training) {
        r.mu = std::move(mu);
        return r;
    }

    // Backward, of the mean loss over the batch.
    const double inv_n = 1.0 / static_cast<double>(n);
    r.gradients.resize(m.params().size());
    for (std::size_t i = 0; i < m.params().size(); ++i)
        r.gradients[i] = matrix::Zero(m.params()[i].value.rows(), m.params()[i].value.cols());
    auto grad = [&](std::string_view p) -> matrix& { return r.gradients[m.index(p)]; };
    const matrix d_logits = inv_n * ((p.array().colwise() * length.array()) - counts.array()).matrix();
    grad("topics") = d_logits.transpose() * theta;
    grad("decoder_b") = d_logits.colwise().sum().transpose();
    const matrix d_theta = d_logits * m.get("topics");
    const Eigen::VectorXd dot = (d_theta.array() * theta.array()).rowwise().sum();
    const matrix d_z = (theta.array() * (d_theta.colwise() - dot).array()).matrix();
    const matrix d_mu = d_z + inv_n * mu;
    const matrix d_lv = (d_z.array() * eps.array() * sigma.array() * 0.5 + inv_n * 0.5 * (lv.array().exp() - 1.0)).matrix();
    grad("mu_W") = d_mu.transpose() * top;
    grad("mu_b") = d_mu.colwise().sum().transpose();
    grad("logvar_W") = d_lv.transpose() * top;
    grad("logvar_b") = d_lv.colwise().sum().transpose();
    matrix d_a = d_mu * m.get("mu_W") + d_lv * m.get("logvar_W");
    for (std::size_t l = layers; l-- > 0;) {
        const auto& out = a[l + 1];
        matrix d_q;
        switch (dims.act) {
        case activation::sigmoid: d_q = (d_a.array() * out.array() * (1.0 - out.array())).matrix(); break;
        case activation::tanh: d_q = (d_a.array() * (1.0 - out.array().square())).matrix(); break;
        case activation::relu: d_q = (d_a.array() * (out.array() > 0.0).cast<double>()).matrix(); break;
        }
        if (dims.batch_norm) {
            grad(name("bn_gamma", l)) = (d_q.array() * xhat[l].array()).colwise().sum().transpose();
            grad(name("bn_beta", l)) = d_q.colwise().sum().transpose();
            const matrix d_xhat = (d_q.array().rowwise() * m.get(name("bn_gamma", l)).col(0).transpose().array()).matrix();
            const Eigen::RowVectorXd mean_d = d_xhat.colwise().mean();
            const Eigen::RowVectorXd mean_dx = (d_xhat.array() * xhat[l].array()).colwise().mean();
            d_q = ((d_xhat.rowwise() - mean_d).array() - xhat[l].array().rowwise() * mean_dx.array()).matrix();
            d_q.array().rowwise() *= inv_std[l].transpose().array();
        }
        if (l == 0)
            grad(name("encoder_W", l)) = d_q.transpose() * x;
        else
            grad(name("encoder_W", l)) = d_q.transpose() * a[l];
        grad(name("encoder_c", l)) = d_q.colwise().sum().transpose();
        if (l > 0)
            d_a = d_q * m.get(name("encoder_W", l));
    }
    r.mu = std::move(mu);
    return r;
}

/// Topic weights of each document in prediction: softmax(mu) (the posterior mean through the
/// softmax, no noise), batch normalisation with its running statistics.
inline matrix topic_weights(const ntm_model& m, const matrix& counts)
{
    const matrix zero = matrix::Zero(counts.rows(), static_cast<Eigen::Index>(m.dims().num_topics));
    auto r = evaluate(m, counts, zero, false);
    matrix t = (r.mu.colwise() - r.mu.rowwise().maxCoeff()).array().exp().matrix();
    t.array().colwise() /= t.rowwise().sum().array();
    return t;
}

/// A document's noise and sub-sampling draws, from its content: the same document gets the same
/// draws in an epoch whichever rank reads it and wherever its batch boundaries fall, so that a
/// run over MPI ranks can be compared with one process over the same batches.
///
/// The hash is FNV-1a over (seed, epoch) and the document's non-zero (word, count) pairs.
inline std::uint64_t document_hash(std::span<const double> counts, std::uint64_t seed, std::uint64_t epoch)
{
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&](std::uint64_t v) {
        for (int b = 0; b < 8; ++b) {
            h ^= (v >> (8 * b)) & 0xff;
            h *= 1099511628211ull;
        }
    };
    mix(seed);
    mix(epoch);
    for (std::size_t w = 0; w < counts.size(); ++w)
        if (counts[w] != 0) {
            std::uint64_t bits = 0;
            static_assert(sizeof bits == sizeof counts[w]);
            std::memcpy(&bits, &counts[w], sizeof bits);
            mix(w);
            mix(bits);
        }
    return h;
}

/// Fills `eps` (k values) with standard normal draws (std::normal_distribution over
/// std::mt19937_64 seeded with `hash`), and returns a uniform draw in [0, 1) from another
/// generator seeded with `hash` + 1, the sub-sampling draw.
inline double document_draws(std::uint64_t hash, std::span<double> eps)
{
    std::mt19937_64 g(hash);
    std::normal_distribution<double> normal;
    for (auto& e : eps)
        e = normal(g);
    std::mt19937_64 u(hash + 1);
    return std::uniform_real_distribution<double>(0.0, 1.0)(u);
}

/// SageMaker's `optimizer`.
enum class optimizer_kind { adadelta, adam, sgd, rmsprop, adagrad };

/// `optimizer_kind`'s SageMaker spelling.
inline std::string_view to_string(optimizer_kind o)
{
    switch (o) {
    case optimizer_kind::adadelta: return "adadelta";
    case optimizer_kind::adam: return "adam";
    case optimizer_kind::sgd: return "sgd";
    case optimizer_kind::rmsprop: return "rmsprop";
    case optimizer_kind::adagrad: return "adagrad";
    }
    return "?";
}

/// The optimizer named `text`; throws `std::invalid_argument` for another name.
inline optimizer_kind parse_optimizer(std::string_view text)
{
    for (auto o : {optimizer_kind::adadelta, optimizer_kind::adam, optimizer_kind::sgd, optimizer_kind::rmsprop,
                   optimizer_kind::adagrad})
        if (to_string(o) == text)
            return o;
    throw std::invalid_argument("optimizer is adadelta, adam, sgd, rmsprop or adagrad, not '" + std::string(text) + "'");
}

/// The update's hyperparameters (SageMaker's names and defaults).
struct optimizer_settings {
    optimizer_kind kind = optimizer_kind::adadelta;
    double learning_rate = 0.001;   ///< unused by adadelta (Zeiler's: no learning rate)
    double rescale_gradient = 1.0;  ///< the gradient is multiplied by it first
    double clip_gradient = std::numeric_limits<double>::infinity();  ///< then clipped to +-clip
    double weight_decay = 0.0;      ///< then wd * parameter is added
};

/// The constants of the optimizers.
inline constexpr double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
inline constexpr double rmsprop_rho = 0.9, rmsprop_epsilon = 1e-8;
inline constexpr double adagrad_epsilon = 1e-7;
inline constexpr double adadelta_rho = 0.9, adadelta_epsilon = 1e-5;

/// Applies the optimizer to a model's trained parameters, one step a batch. Element-wise, for
/// each parameter p with gradient g of the batch's mean loss:
///   g = clip(rescale_gradient * g, +-clip_gradient) + weight_decay * p
///   sgd:      p -= lr g
///   adagrad:  h += g^2;  p -= lr g / sqrt(h + 1e-7)
///   rmsprop:  s = 0.9 s + 0.1 g^2;  p -= lr g / sqrt(s + 1e-8)
///   adam:     m = 0.9 m + 0.1 g;  v = 0.999 v + 0.001 g^2;  t += 1;
///             p -= lr sqrt(1 - 0.999^t) / (1 - 0.9^t) * m / (sqrt(v) + 1e-8)
///   adadelta: s = 0.9 s + 0.1 g^2;  u = sqrt(x + 1e-5) / sqrt(s + 1e-5) g;
///             x = 0.9 x + 0.1 u^2;  p -= u
/// All state starts at 0.
class optimizer {
public:
    /// An optimizer with no state yet (it is sized at the first step).
    explicit optimizer(optimizer_settings s = {}) : s_(s) {}

    /// One step of `m`'s trained parameters with `gradients` (in `params()`'s order).
    void step(ntm_model& m, const std::vector<matrix>& gradients)
    {
        auto& params = m.params();
        if (state1_.empty()) {
            for (const auto& p : params) {
                state1_.push_back(matrix::Zero(p.value.rows(), p.value.cols()));
                state2_.push_back(matrix::Zero(p.value.rows(), p.value.cols()));
            }
        }
        ++t_;
        const double clip = s_.clip_gradient;
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (!params[i].trained)
                continue;
            auto p = params[i].value.array();
            auto s1 = state1_[i].array();
            auto s2 = state2_[i].array();
            const Eigen::ArrayXXd g = (s_.rescale_gradient * gradients[i].array()).max(-clip).min(clip)
                                      + s_.weight_decay * p;
            const double lr = s_.learning_rate;
            switch (s_.kind) {
            case optimizer_kind::sgd: p -= lr * g; break;
            case optimizer_kind::adagrad:
                s1 += g.square();
                p -= lr * g / (s1 + adagrad_epsilon).sqrt();
                break;
            case optimizer_kind::rmsprop:
                s1 = rmsprop_rho * s1 + (1 - rmsprop_rho) * g.square();
                p -= lr * g / (s1 + rmsprop_epsilon).sqrt();
                break;
            case optimizer_kind::adam: {
                s1 = adam_beta1 * s1 + (1 - adam_beta1) * g;
                s2 = adam_beta2 * s2 + (1 - adam_beta2) * g.square();
                const double t = static_cast<double>(t_);
                const double step = lr * std::sqrt(1 - std::pow(adam_beta2, t)) / (1 - std::pow(adam_beta1, t));
                p -= step * s1 / (s2.sqrt() + adam_epsilon);
                break;
            }
            case optimizer_kind::adadelta: {
                s1 = adadelta_rho * s1 + (1 - adadelta_rho) * g.square();
                const Eigen::ArrayXXd u = (s2 + adadelta_epsilon).sqrt() / (s1 + adadelta_epsilon).sqrt() * g;
                s2 = adadelta_rho * s2 + (1 - adadelta_rho) * u.square();
                p -= u;
                break;
            }
            }
        }
    }

    /// Steps taken.
    std::uint64_t steps() const noexcept { return t_; }

private:
    optimizer_settings s_;
    std::vector<matrix> state1_, state2_;
    std::uint64_t t_ = 0;
};

/// Moves the batch-normalisation running statistics towards a batch's:
/// running = 0.9 running + 0.1 batch (mean, and biased variance).
inline void update_running_statistics(ntm_model& m, const std::vector<Eigen::VectorXd>& mean,
                                      const std::vector<Eigen::VectorXd>& var)
{
    for (std::size_t l = 0; l < mean.size(); ++l) {
        const auto n = std::to_string(l + 1);
        auto& rm = m.get("bn_mean" + n);
        auto& rv = m.get("bn_var" + n);
        rm.col(0) = batch_norm_momentum * rm.col(0) + (1 - batch_norm_momentum) * mean[l];
        rv.col(0) = batch_norm_momentum * rv.col(0) + (1 - batch_norm_momentum) * var[l];
    }
}

/// Early stopping on a loss that should fall: an epoch improves when its loss is below
/// best * (1 - tolerance) (relative, as the loss's scale grows with document length); training
/// stops after `patience` epochs in a row without improvement.
class early_stopping {
public:
    /// Stops after `patience` epochs without a relative improvement of `tolerance`.
    early_stopping(std::uint64_t patience, double tolerance) : patience_(patience), tolerance_(tolerance) {}

    /// Records an epoch's loss; returns true when training should stop.
    bool update(double loss)
    {
        if (!(best_ < std::numeric_limits<double>::infinity()) || loss < best_ - tolerance_ * std::abs(best_)) {
            best_ = loss;
            stale_ = 0;
            return false;
        }
        return ++stale_ >= patience_;
    }

    /// The lowest loss of an improving epoch so far (infinity before the first).
    double best() const noexcept { return best_; }

private:
    std::uint64_t patience_;
    double tolerance_;
    double best_ = std::numeric_limits<double>::infinity();
    std::uint64_t stale_ = 0;
};

} // namespace pipemode::examples::ntm
