// Latent Dirichlet Allocation by the method of moments (spectral decomposition), as SageMaker's
// built-in LDA learns it: no I/O here, only the sums a streaming pass accumulates over documents,
// the whitening, the whitened third moment, the robust tensor power method, the recovery of the
// topics and Dirichlet parameters, and the inference of a document's topic mixture. The program
// (lda_main.cpp) streams the channels into these; docs/algorithms.md, "## LDA", writes the
// model out.
//
// Every pass is a sum over documents kept in one flat vector of doubles (`sums()`), so that MPI
// ranks add their partial sums with one allreduce and then hold the same state.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipemode::examples::lda {

/// A dense matrix stored row by row, so that a vocabulary word's row is contiguous.
using row_matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A document as word counts: `words[j]` occurs `counts[j]` times. Words are distinct and below
/// the vocabulary size; counts are positive (zeros are harmless, negative ones are not checked).
struct document {
    std::span<const std::uint64_t> words;  ///< vocabulary indices, distinct
    std::span<const double> counts;        ///< occurrences of each, same length as `words`

    /// The number of words, sum of the counts.
    double length() const noexcept { return std::accumulate(counts.begin(), counts.end(), 0.0); }
};

/// The vocabulary size up to which the second moment is formed densely (V x V doubles, 32 MB at
/// 2000); above it, only its product with a V x (k + oversampling) matrix is (randomized range
/// finder), at the price of more passes over the data.
inline constexpr std::size_t default_dense_limit = 2000;

/// Columns added to num_topics in the randomized range finder's test matrix.
inline constexpr std::size_t default_oversampling = 10;

/// The randomized range finder's power iterations (Q <- orth(M2 Q), a pass over the data each):
/// one brings the topics of a noisy sample moment close to the dense moment's.
inline constexpr std::size_t default_power_iterations = 1;

/// The sums of the first and second moments' passes over the documents.
///
/// Per document of length L (the sum of its counts c): c / L is added to the first moment's sum
/// when L >= 1, and the unbiased estimator of E[x1 x2^T], (c c^T - diag(c)) / (L (L - 1)), when
/// L >= 2, either as a dense V x V sum (no test matrix) or multiplied by the test matrix X (V x s)
/// on the right. Documents are counted in each case, so that the moments are averages over the
/// documents that have the words each estimator needs.
///
/// Layout of `sums()`: [documents with L >= 1, with L >= 2, with L >= 3, words], the first
/// moment's sum (V), then the second moment's sum (V x V or V x s, row-major).
class moment_sums {
public:
    /// Dense sums over a vocabulary of `vocabulary` words.
    explicit moment_sums(std::size_t vocabulary) : v_(vocabulary), cols_(vocabulary), dense_(true)
    {
        sums_.assign(4 + v_ + v_ * v_, 0.0);
    }

    /// Sums of the second moment times `test` (V x s): what the randomized range finder needs.
    moment_sums(std::size_t vocabulary, row_matrix test)
        : v_(vocabulary), cols_(static_cast<std::size_t>(test.cols())), dense_(false), test_(std::move(test))
    {
        if (static_cast<std::size_t>(test_.rows()) != v_)
            throw std::invalid_argument("the test matrix does not have a row for each word");
        sums_.assign(4 + v_ + v_ * cols_, 0.0);
        product_.resize(static_cast<Eigen::Index>(cols_));
    }

    /// Adds one document.
    void add(const document& d)
    {
        const double len = d.length();
        if (len < 1)
            return;
        sums_[0] += 1;
        sums_[3] += len;
        if (len >= 2)
            sums_[1] += 1;
        if (len >= 3)
            sums_[2] += 1;
        double* m1 = sums_.data() + 4;
        for (std::size_t j = 0; j < d.words.size(); ++j)
            m1[d.words[j]] += d.counts[j] / len;
        if (len < 2)
            return;
        const double scale = 1.0 / (len * (len - 1));
        double* e2 = m1 + v_;
        if (dense_) {
            for (std::size_t a = 0; a < d.words.size(); ++a) {
                const double ca = d.counts[a] * scale;
                double* row = e2 + d.words[a] * v_;
                for (std::size_t b = 0; b < d.words.size(); ++b)
                    row[d.words[b]] += ca * d.counts[b];
                row[d.words[a]] -= ca;
            }
            return;
        }
        // (c c^T - diag(c)) X = c (c^T X) - diag(c) X: O(nnz x s), never V x V.
        product_.setZero();
        for (std::size_t j = 0; j < d.words.size(); ++j)
            product_ += d.counts[j] * test_.row(static_cast<Eigen::Index>(d.words[j])).transpose();
        for (std::size_t j = 0; j < d.words.size(); ++j) {
            const auto w = static_cast<Eigen::Index>(d.words[j]);
            Eigen::Map<Eigen::RowVectorXd> row(e2 + d.words[j] * cols_, static_cast<Eigen::Index>(cols_));
            row += (d.counts[j] * scale) * (product_.transpose() - test_.row(w));
        }
    }

    /// The flat sums (add them over ranks in place, then read the moments).
    std::vector<double>& sums() noexcept { return sums_; }
    const std::vector<double>& sums() const noexcept { return sums_; }

    /// Documents with at least 1, 2 and 3 words.
    double documents(int at_least) const noexcept { return sums_[static_cast<std::size_t>(at_least - 1)]; }

    /// Words counted in documents of at least one word.
    double words() const noexcept { return sums_[3]; }

    /// The vocabulary size.
    std::size_t vocabulary() const noexcept { return v_; }

    /// Whether the second moment is summed densely.
    bool dense() const noexcept { return dense_; }

    /// M1 = E[x1], the average over documents of c / L.
    Eigen::VectorXd first_moment() const
    {
        const double n = std::max(documents(1), 1.0);
        return Eigen::Map<const Eigen::VectorXd>(sums_.data() + 4, static_cast<Eigen::Index>(v_)) / n;
    }

    /// M2 = E[x1 x2^T] - alpha0 / (alpha0 + 1) M1 M1^T, times the test matrix when there is one
    /// (V x V dense, V x s otherwise). Throws when no document has two words.
    row_matrix second_moment(double alpha0) const
    {
        if (documents(2) < 1)
            throw std::runtime_error("no document has two words: the second moment is undefined");
        const Eigen::VectorXd m1 = first_moment();
        const auto rows = static_cast<Eigen::Index>(v_);
        const auto cols = static_cast<Eigen::Index>(cols_);
        row_matrix m = Eigen::Map<const row_matrix>(sums_.data() + 4 + v_, rows, cols) / documents(2);
        const double a = alpha0 / (alpha0 + 1);
        if (dense_)
            m.noalias() -= a * m1 * m1.transpose();
        else
            m.noalias() -= a * m1 * (m1.transpose() * test_);
        return m;
    }

private:
    std::size_t v_;
    std::size_t cols_;
    bool dense_;
    row_matrix test_;
    Eigen::VectorXd product_;
    std::vector<double> sums_;
};

/// The randomized range finder's test matrix: V x s standard normal entries from `seed`, the same
/// on every rank that gives the same seed (mt19937_64 and a Box-Muller transform of our own, so
/// that it does not depend on the standard library's normal distribution).
inline row_matrix test_matrix(std::size_t vocabulary, std::size_t columns, std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    const auto uniform = [&] { return (static_cast<double>(gen() >> 11) + 0.5) * 0x1.0p-53; };
    row_matrix x(static_cast<Eigen::Index>(vocabulary), static_cast<Eigen::Index>(columns));
    double* p = x.data();
    const std::size_t n = vocabulary * columns;
    for (std::size_t i = 0; i < n; i += 2) {
        const double r = std::sqrt(-2 * std::log(uniform()));
        const double t = 2 * 3.14159265358979323846 * uniform();
        p[i] = r * std::cos(t);
        if (i + 1 < n)
            p[i + 1] = r * std::sin(t);
    }
    return x;
}

/// An orthonormal basis of the columns of `y` (thin Householder QR).
inline row_matrix orthonormal_basis(const row_matrix& y)
{
    Eigen::HouseholderQR<Eigen::MatrixXd> qr(y);
    Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(y.rows(), y.cols());
    return q;
}

/// The whitening of the second moment to its top k eigenpairs: W = U diag(lambda)^(-1/2) (V x k),
/// so that W^T M2 W = I on that subspace, and its pseudo-inverse's transpose
/// B = U diag(lambda)^(1/2) (V x k), which un-whitens: W^T B = I.
struct whitening {
    row_matrix w;                 ///< V x k
    row_matrix unwhiten;          ///< V x k
    Eigen::VectorXd eigenvalues;  ///< the k largest eigenvalues of M2, decreasing
};

namespace detail {

/// The top k eigenpairs of the symmetric `m` (as seen through `basis`, V x r, when given).
inline whitening top_eigenpairs(const Eigen::MatrixXd& m, const row_matrix* basis, std::size_t k)
{
    const auto kk = static_cast<Eigen::Index>(k);
    if (m.rows() < kk)
        throw std::runtime_error("num_topics is larger than the dimension the second moment was formed in");
    const Eigen::MatrixXd sym = (m + m.transpose()) / 2;
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(sym);
    if (es.info() != Eigen::Success)
        throw std::runtime_error("the eigendecomposition of the second moment did not converge");
    // Eigen sorts increasingly: the top k are the last k, taken in decreasing order.
    Eigen::VectorXd values(kk);
    Eigen::MatrixXd vectors(m.rows(), kk);
    for (Eigen::Index i = 0; i < kk; ++i) {
        values(i) = es.eigenvalues()(m.rows() - 1 - i);
        vectors.col(i) = es.eigenvectors().col(m.rows() - 1 - i);
    }
    if (!(values(kk - 1) > 1e-12 * std::max(values(0), 0.0)))
        throw std::runtime_error("the second moment has fewer than num_topics = " + std::to_string(k)
                                 + " positive eigenvalues: ask for fewer topics or give more documents");
    whitening out;
    out.eigenvalues = values;
    const Eigen::MatrixXd u = basis ? Eigen::MatrixXd(*basis * vectors) : vectors;
    out.w = u * values.cwiseSqrt().cwiseInverse().asDiagonal();
    out.unwhiten = u * values.cwiseSqrt().asDiagonal();
    return out;
}

} // namespace detail

/// Whitening from the dense second moment (V x V).
inline whitening whiten_dense(const row_matrix& m2, std::size_t k)
{
    return detail::top_eigenpairs(m2, nullptr, k);
}

/// Whitening from the second moment seen through the orthonormal `basis` Q (V x s): `m2_basis` is
/// M2 Q, so Q^T M2 Q (s x s) is decomposed and its eigenvectors mapped back by Q.
inline whitening whiten_projected(const row_matrix& basis, const row_matrix& m2_basis, std::size_t k)
{
    const Eigen::MatrixXd small = basis.transpose() * m2_basis;
    return detail::top_eigenpairs(small, &basis, k);
}

/// The sums of the third moment's pass, whitened by W (V x k) as the documents stream by.
///
/// Per document of length L with whitened counts y = W^T c and A = sum_i c_i w_i w_i^T (w_i the
/// whitened word i, row i of W): (y y^T - A) / (L (L - 1)) when L >= 2 (E[x1 x2^T] whitened) and
/// (y⊗y⊗y - A⊗y - (A⊗y with the 2nd and 3rd modes swapped) - y⊗A + 2 sum_i c_i w_i⊗w_i⊗w_i)
/// / (L (L - 1) (L - 2)) when L >= 3 (E[x1⊗x2⊗x3] whitened: the unbiased estimator for counts).
/// The last term is summed per word (g_i += c_i / (L (L - 1) (L - 2))) and formed once in
/// `third_moment`, which costs V k^3 once instead of nnz k^3 a document.
///
/// Layout of `sums()`: [documents with L >= 2, with L >= 3], E2W (k x k), E3W (k^3, index
/// (a k + b) k + c), g (V).
class third_moment_sums {
public:
    /// Sums for the whitening `w` (V x k).
    explicit third_moment_sums(row_matrix w) : w_(std::move(w))
    {
        v_ = static_cast<std::size_t>(w_.rows());
        k_ = static_cast<std::size_t>(w_.cols());
        sums_.assign(2 + k_ * k_ + k_ * k_ * k_ + v_, 0.0);
        y_.resize(static_cast<Eigen::Index>(k_));
        a_.resize(static_cast<Eigen::Index>(k_), static_cast<Eigen::Index>(k_));
    }

    /// Adds one document.
    void add(const document& d)
    {
        const double len = d.length();
        if (len < 2)
            return;
        y_.setZero();
        a_.setZero();
        for (std::size_t j = 0; j < d.words.size(); ++j) {
            const auto row = w_.row(static_cast<Eigen::Index>(d.words[j]));
            y_ += d.counts[j] * row.transpose();
            a_.noalias() += d.counts[j] * row.transpose() * row;
        }
        const std::size_t k = k_;
        double* e2 = sums_.data() + 2;
        double* e3 = e2 + k * k;
        sums_[0] += 1;
        const double s2 = 1.0 / (len * (len - 1));
        for (std::size_t a = 0; a < k; ++a)
            for (std::size_t b = 0; b < k; ++b)
                e2[a * k + b] += s2 * (y_(a) * y_(b) - a_(a, b));
        if (len < 3)
            return;
        sums_[1] += 1;
        const double s3 = s2 / (len - 2);
        for (std::size_t a = 0; a < k; ++a)
            for (std::size_t b = 0; b < k; ++b) {
                const double yab = y_(a) * y_(b);
                double* out = e3 + (a * k + b) * k;
                for (std::size_t c = 0; c < k; ++c)
                    out[c] += s3 * (yab * y_(c) - a_(a, b) * y_(c) - a_(a, c) * y_(b) - a_(b, c) * y_(a));
            }
        double* g = e3 + k * k * k;
        for (std::size_t j = 0; j < d.words.size(); ++j)
            g[d.words[j]] += s3 * d.counts[j];
    }

    /// The flat sums (add them over ranks in place, then read the moment).
    std::vector<double>& sums() noexcept { return sums_; }
    const std::vector<double>& sums() const noexcept { return sums_; }

    /// The whitened third moment T = M3(W, W, W) (k^3, index (a k + b) k + c), with M1 the first
    /// moment of the first pass:
    /// T = E3W - alpha0 / (alpha0 + 2) (E2W⊗m + m⊗E2W + the mixed term) + 2 alpha0^2 /
    /// ((alpha0 + 1) (alpha0 + 2)) m⊗m⊗m, m = W^T M1. Throws when no document has three words.
    std::vector<double> third_moment(const Eigen::VectorXd& m1, double alpha0) const
    {
        const std::size_t k = k_;
        const double n2 = sums_[0], n3 = sums_[1];
        if (n3 < 1)
            throw std::runtime_error("no document has three words: the third moment is undefined");
        const double* e2 = sums_.data() + 2;
        const double* e3 = e2 + k * k;
        const double* g = e3 + k * k * k;
        const Eigen::VectorXd m = w_.transpose() * m1;
        std::vector<double> t(e3, e3 + k * k * k);
        // the per-word term 2 sum_i g_i w_i⊗w_i⊗w_i
        for (std::size_t i = 0; i < v_; ++i) {
            if (g[i] == 0)
                continue;
            const auto wi = w_.row(static_cast<Eigen::Index>(i));
            for (std::size_t a = 0; a < k; ++a)
                for (std::size_t b = 0; b < k; ++b) {
                    const double f = 2 * g[i] * wi(a) * wi(b);
                    double* out = t.data() + (a * k + b) * k;
                    for (std::size_t c = 0; c < k; ++c)
                        out[c] += f * wi(c);
                }
        }
        const double c1 = alpha0 / (alpha0 + 2);
        const double c2 = 2 * alpha0 * alpha0 / ((alpha0 + 1) * (alpha0 + 2));
        for (std::size_t a = 0; a < k; ++a)
            for (std::size_t b = 0; b < k; ++b)
                for (std::size_t c = 0; c < k; ++c) {
                    double& x = t[(a * k + b) * k + c];
                    x /= n3;
                    x -= c1 * (e2[a * k + b] * m(c) + e2[a * k + c] * m(b) + e2[b * k + c] * m(a)) / n2;
                    x += c2 * m(a) * m(b) * m(c);
                }
        return t;
    }

private:
    row_matrix w_;
    std::size_t v_ = 0, k_ = 0;
    Eigen::VectorXd y_;
    Eigen::MatrixXd a_;
    std::vector<double> sums_;
};

/// The tensor's eigenpairs found by the robust tensor power method: T ≈ sum_i lambda_i v_i⊗v_i⊗v_i.
struct tensor_eigenpairs {
    Eigen::VectorXd values;   ///< lambda_i, in the order found
    Eigen::MatrixXd vectors;  ///< k x k, column i is v_i (unit length)
};

/// The robust tensor power method on the symmetric k x k x k tensor `t` (index (a k + b) k + c):
/// for each of the k components, `restarts` starts from random unit vectors (from `seed`), each
/// iterated theta <- T(I, theta, theta) / |T(I, theta, theta)| up to `iterations` times or until
/// |theta_new - theta| < `tol`; the start with the largest T(theta, theta, theta) is iterated
/// again the same way, its lambda = T(theta, theta, theta) taken, and T deflated by
/// lambda theta⊗theta⊗theta.
inline tensor_eigenpairs tensor_power_method(std::vector<double> t, std::size_t k, std::size_t restarts,
                                             std::size_t iterations, double tol, std::uint64_t seed)
{
    const auto kk = static_cast<Eigen::Index>(k);
    std::mt19937_64 gen(seed);
    const auto uniform = [&] { return (static_cast<double>(gen() >> 11) + 0.5) * 0x1.0p-53; };
    const auto normal = [&] { return std::sqrt(-2 * std::log(uniform())) * std::cos(2 * 3.14159265358979323846 * uniform()); };
    const auto apply = [&](const Eigen::VectorXd& theta) {  // T(I, theta, theta)
        Eigen::VectorXd out = Eigen::VectorXd::Zero(kk);
        for (std::size_t a = 0; a < k; ++a) {
            double s = 0;
            for (std::size_t b = 0; b < k; ++b) {
                const double* row = t.data() + (a * k + b) * k;
                double r = 0;
                for (std::size_t c = 0; c < k; ++c)
                    r += row[c] * theta(static_cast<Eigen::Index>(c));
                s += r * theta(static_cast<Eigen::Index>(b));
            }
            out(static_cast<Eigen::Index>(a)) = s;
        }
        return out;
    };
    const auto iterate = [&](Eigen::VectorXd theta) {
        for (std::size_t it = 0; it < iterations; ++it) {
            Eigen::VectorXd next = apply(theta);
            const double norm = next.norm();
            if (!(norm > 0))
                break;
            next /= norm;
            const double change = (next - theta).norm();
            theta = next;
            if (change < tol)
                break;
        }
        return theta;
    };
    tensor_eigenpairs out;
    out.values.resize(kk);
    out.vectors.resize(kk, kk);
    for (Eigen::Index i = 0; i < kk; ++i) {
        Eigen::VectorXd best;
        double best_value = -std::numeric_limits<double>::infinity();
        for (std::size_t r = 0; r < std::max<std::size_t>(restarts, 1); ++r) {
            Eigen::VectorXd theta(kk);
            for (Eigen::Index j = 0; j < kk; ++j)
                theta(j) = normal();
            theta.normalize();
            theta = iterate(theta);
            const double value = theta.dot(apply(theta));
            if (value > best_value) {
                best_value = value;
                best = theta;
            }
        }
        best = iterate(best);
        const double lambda = best.dot(apply(best));
        out.values(i) = lambda;
        out.vectors.col(i) = best;
        for (std::size_t a = 0; a < k; ++a)
            for (std::size_t b = 0; b < k; ++b)
                for (std::size_t c = 0; c < k; ++c)
                    t[(a * k + b) * k + c] -= lambda * best(static_cast<Eigen::Index>(a))
                                              * best(static_cast<Eigen::Index>(b)) * best(static_cast<Eigen::Index>(c));
    }
    return out;
}

/// A trained LDA model: the Dirichlet parameters and the topic-word distributions.
struct lda_model {
    std::size_t num_topics = 0;
    std::size_t vocabulary = 0;
    std::vector<double> alpha;  ///< num_topics
    std::vector<double> beta;   ///< num_topics x vocabulary, row-major; each row sums to 1

    /// Word w's probability under topic i.
    double topic_word(std::size_t i, std::size_t w) const noexcept { return beta[i * vocabulary + w]; }
};

/// Un-whitens the tensor's eigenpairs into topics: mu_i = (alpha0 + 2) / 2 lambda_i B v_i (B the
/// whitening's `unwhiten`), made positive-sum (a negative lambda flips v_i's sign), its negative
/// entries set to 0 and the rest renormalized to sum to 1; alpha_i = 4 alpha0 (alpha0 + 1) /
/// ((alpha0 + 2)^2 lambda_i^2). Topics keep the power method's order.
inline lda_model recover(const tensor_eigenpairs& e, const whitening& wh, double alpha0)
{
    lda_model m;
    m.num_topics = static_cast<std::size_t>(e.values.size());
    m.vocabulary = static_cast<std::size_t>(wh.unwhiten.rows());
    m.alpha.resize(m.num_topics);
    m.beta.assign(m.num_topics * m.vocabulary, 0.0);
    for (std::size_t i = 0; i < m.num_topics; ++i) {
        const auto ii = static_cast<Eigen::Index>(i);
        double lambda = e.values(ii);
        Eigen::VectorXd mu = (alpha0 + 2) / 2 * lambda * (wh.unwhiten * e.vectors.col(ii));
        if (mu.sum() < 0) {
            mu = -mu;
            lambda = -lambda;
        }
        double total = 0;
        for (std::size_t w = 0; w < m.vocabulary; ++w)
            total += std::max(mu(static_cast<Eigen::Index>(w)), 0.0);
        for (std::size_t w = 0; w < m.vocabulary; ++w)
            m.beta[i * m.vocabulary + w] =
                total > 0 ? std::max(mu(static_cast<Eigen::Index>(w)), 0.0) / total : 1.0 / static_cast<double>(m.vocabulary);
        m.alpha[i] = 4 * alpha0 * (alpha0 + 1) / ((alpha0 + 2) * (alpha0 + 2) * lambda * lambda);
    }
    return m;
}

/// The digamma function psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 12,
/// then the asymptotic series to its x^-12 term (the next, x^-14 / 12, is below 1e-16 there).
inline double digamma(double x) noexcept
{
    double r = 0;
    while (x < 12) {
        r -= 1 / x;
        x += 1;
    }
    const double f = 1 / (x * x);
    return r + std::log(x) - 0.5 / x
           - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132 - f * (691.0 / 32760))))));
}

/// The variational inference of a document's topic mixture with the topics fixed, as
/// scikit-learn's LatentDirichletAllocation.transform does it with topics taken as known: from
/// gamma = 1, repeat
///     e_k = exp(psi(gamma_k) - psi(sum gamma)),  n_w = sum_k e_k beta_kw + eps,
///     gamma_k <- alpha_k + e_k sum_w c_w beta_kw / n_w
/// until the mean |change| of gamma is below `tol` or `max_iterations` were made (eps is the
/// double's epsilon, as scikit-learn adds). The mixture is gamma / sum gamma.
struct inference {
    std::size_t max_iterations = 200;
    double tol = 1e-6;

    /// The floor of a word's probability in `log_likelihood` (the double's epsilon).
    static constexpr double eps = std::numeric_limits<double>::epsilon();

    /// The document's topic mixture theta (num_topics) into `theta`.
    void mixture(const lda_model& m, const document& d, std::vector<double>& theta) const
    {
        const std::size_t k = m.num_topics;
        std::vector<double> gamma(k, 1.0), e(k), next(k);
        for (std::size_t it = 0; it < max_iterations; ++it) {
            const double total = digamma(std::accumulate(gamma.begin(), gamma.end(), 0.0));
            for (std::size_t i = 0; i < k; ++i)
                e[i] = std::exp(digamma(gamma[i]) - total);
            std::fill(next.begin(), next.end(), 0.0);
            for (std::size_t j = 0; j < d.words.size(); ++j) {
                const std::size_t w = d.words[j];
                double n = eps;
                for (std::size_t i = 0; i < k; ++i)
                    n += e[i] * m.topic_word(i, w);
                const double f = d.counts[j] / n;
                for (std::size_t i = 0; i < k; ++i)
                    next[i] += f * m.topic_word(i, w);
            }
            double change = 0;
            for (std::size_t i = 0; i < k; ++i) {
                next[i] = m.alpha[i] + e[i] * next[i];
                change += std::abs(next[i] - gamma[i]);
            }
            gamma.swap(next);
            if (change / static_cast<double>(k) < tol)
                break;
        }
        const double total = std::accumulate(gamma.begin(), gamma.end(), 0.0);
        theta.resize(k);
        for (std::size_t i = 0; i < k; ++i)
            theta[i] = gamma[i] / total;
    }

    /// The document's log-likelihood sum_w c_w log(max(sum_k theta_k beta_kw, eps)) with theta
    /// its inferred mixture; `theta` is left holding the mixture.
    double log_likelihood(const lda_model& m, const document& d, std::vector<double>& theta) const
    {
        mixture(m, d, theta);
        double ll = 0;
        for (std::size_t j = 0; j < d.words.size(); ++j) {
            double p = 0;
            for (std::size_t i = 0; i < m.num_topics; ++i)
                p += theta[i] * m.topic_word(i, d.words[j]);
            ll += d.counts[j] * std::log(std::max(p, eps));
        }
        return ll;
    }
};

} // namespace pipemode::examples::lda
