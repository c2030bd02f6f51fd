// Streaming PCA in one pass, as SageMaker's built-in PCA does it, in two modes:
//
// - "regular": per-batch mean and scatter matrix of the batch's centred rows, merged into the
//   running (count, mean, M2) with Chan's parallel update; at the end the covariance's
//   eigendecomposition (`decompose_symmetric` of the training library, Eigen's
//   SelfAdjointEigenSolver) gives the components.
// - "randomized": the same one-pass moments, but of the sketch M2 * Omega (d x l, Omega a fixed
//   Gaussian d x l matrix, l = num_components + extra_components) instead of M2, and a Nystrom
//   approximation of M2 from the sketch at the end. See docs/algorithms.md.
//
// Everything is computed in double precision; the decompositions and the Nystrom algebra are
// Eigen's (Debian's libeigen3-dev). No I/O here: the program feeds batches of rows.
#pragma once

#include "../common/linear_algebra.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipemode::examples {

/// How the components are found.
enum class pca_mode {
    regular,     ///< the full d x d covariance, decomposed exactly
    randomized,  ///< a d x l sketch of it (randomized range finder), one pass
};

/// What a PCA is asked for (SageMaker's hyperparameters).
struct pca_options {
    std::size_t feature_dim = 0;       ///< d
    std::size_t num_components = 0;    ///< k, at most d
    pca_mode mode = pca_mode::regular;
    bool subtract_mean = true;         ///< false: components of the uncentred second moment
    std::size_t extra_components = 0;  ///< randomized: sketch columns beyond k (SageMaker's -1 is max(10, k))
    std::uint64_t seed = 1;            ///< randomized: the seed of Omega
};

/// The result of a PCA.
struct pca_model {
    /// d.
    std::size_t feature_dim = 0;
    /// Rows the model was computed from.
    std::uint64_t records = 0;
    /// The mean of the rows (d values).
    std::vector<double> mean;
    /// The top components as rows, k x d, row-major; unit vectors, sign as in `symmetric_eigen`.
    std::vector<double> components;
    /// The variance along each component: eigenvalue of M2 / (records - 1).
    std::vector<double> explained_variance;
    /// Singular values of the (centred) data matrix: sqrt of M2's eigenvalues (SageMaker's "s").
    std::vector<double> singular_values;
    /// `explained_variance` over the total variance (the trace of M2 / (records - 1)).
    std::vector<double> explained_variance_ratio;
};

/// Running count, mean and sum of outer products of deviations from the mean, of
/// `dim`-dimensional rows, optionally seen through a projection: M2 is kept as `M2 * P` (d x p)
/// for a fixed d x p matrix P, or whole (d x d, P the identity) when no projection is given.
///
/// Batches are added as dense or sparse rows and merged with Chan's update:
/// `n = na + nb`, `delta = mean_b - mean_a`, `mean = mean_a + delta * nb / n`,
/// `M2 = M2_a + M2_b + delta * delta^T * na * nb / n` (times P on the right when projected).
/// A dense batch's own M2 is formed from rows centred on the batch mean (no cancellation); a
/// sparse batch's as `sum x x^T - m * mean mean^T` (keeping its rows sparse), which cancels only
/// within one batch.
///
/// Not thread-safe; one accumulator per thread (or MPI rank), merged at the end.
class moments {
public:
    /// Full M2 (d x d).
    explicit moments(std::size_t dim) : dim_(dim), cols_(dim), mean_(dim), m2_(dim * dim) {}

    /// M2 projected on the d x p matrix `projection` (row-major).
    moments(std::size_t dim, std::vector<double> projection, std::size_t p)
        : dim_(dim), cols_(p), projection_(std::move(projection)), mean_(dim), m2_(dim * p)
    {
        if (projection_.size() != dim * p)
            throw std::invalid_argument("moments: the projection is not dim x p");
    }

    /// The dimension d of the rows.
    std::size_t dim() const noexcept { return dim_; }
    /// Columns of M2: d, or p when projected.
    std::size_t columns() const noexcept { return cols_; }
    /// Whether M2 is kept projected (`M2 * P`).
    bool projected() const noexcept { return !projection_.empty(); }
    /// The projection P (d x p, row-major); empty when unprojected.
    const std::vector<double>& projection() const noexcept { return projection_; }
    /// Rows seen (merged ones included).
    std::uint64_t count() const noexcept { return count_; }
    /// Their mean (d values; zeros before any row).
    std::span<const double> mean() const noexcept { return mean_; }
    /// The trace of the unprojected M2 (the sum of squared deviations from the mean), kept
    /// in both modes so that the randomized mode knows the total variance.
    double trace() const noexcept { return trace_; }
    /// M2 (row-major, d x columns()). Unprojected, only the upper triangle is maintained until
    /// `symmetrize()` is called (the batch updates skip the lower half).
    std::span<const double> m2() const noexcept { return m2_; }

    /// Adds `m` dense rows (row-major, m x d). `rows` is used as scratch (centred in place).
    void add_dense(std::span<double> rows, std::size_t m)
    {
        if (m == 0)
            return;
        std::vector<double> bmean(dim_, 0.0);
        for (std::size_t r = 0; r < m; ++r)
            for (std::size_t j = 0; j < dim_; ++j)
                bmean[j] += rows[r * dim_ + j];
        for (auto& x : bmean)
            x /= static_cast<double>(m);
        for (std::size_t r = 0; r < m; ++r)
            for (std::size_t j = 0; j < dim_; ++j)
                rows[r * dim_ + j] -= bmean[j];

        std::vector<double> bm2(dim_ * cols_, 0.0);
        if (projected())
            add_projected_dense(rows, m, bm2);
        else
            add_scatter_upper(rows, m, bm2);
        double btrace = 0;
        for (std::size_t j = 0; j < m * dim_; ++j)
            btrace += rows[j] * rows[j];
        merge_batch(m, bmean, bm2, btrace);
    }

    /// Adds one batch of `m` sparse rows in CSR form: row r's columns are
    /// `keys[offsets[r] .. offsets[r+1])` with `values` alike.
    void add_sparse(std::span<const std::uint64_t> offsets, std::span<const std::uint64_t> keys,
                    std::span<const double> values, std::size_t m)
    {
        if (m == 0)
            return;
        std::vector<double> bmean(dim_, 0.0);
        std::vector<double> bm2(dim_ * cols_, 0.0);
        std::vector<double> xp(cols_);
        double btrace = 0;
        for (std::size_t r = 0; r < m; ++r) {
            const auto first = offsets[r], last = offsets[r + 1];
            for (auto a = first; a < last; ++a) {
                bmean[keys[a]] += values[a];
                btrace += values[a] * values[a];
            }
            if (projected()) {
                // x^T P, then the outer product x (x^T P) on x's non-zero rows.
                std::fill(xp.begin(), xp.end(), 0.0);
                for (auto a = first; a < last; ++a) {
                    const double* prow = &projection_[keys[a] * cols_];
                    for (std::size_t c = 0; c < cols_; ++c)
                        xp[c] += values[a] * prow[c];
                }
                for (auto a = first; a < last; ++a) {
                    double* out = &bm2[keys[a] * cols_];
                    for (std::size_t c = 0; c < cols_; ++c)
                        out[c] += values[a] * xp[c];
                }
            }
            else {
                for (auto a = first; a < last; ++a)
                    for (auto b = first; b < last; ++b) {
                        const auto i = keys[a], j = keys[b];
                        if (i <= j)
                            bm2[i * dim_ + j] += values[a] * values[b];
                    }
            }
        }
        const double md = static_cast<double>(m);
        for (auto& x : bmean)
            x /= md;
        // From sums of products to products of deviations: subtract m * mean mean^T (P).
        add_outer(bm2, bmean, -md);
        for (double x : bmean)
            btrace -= md * x * x;
        merge_batch(m, bmean, bm2, btrace);
    }

    /// Merges another accumulator of the same shape and projection (Chan's update).
    void merge(const moments& other)
    {
        if (other.dim_ != dim_ || other.cols_ != cols_)
            throw std::invalid_argument("moments: merging accumulators of different shapes");
        merge_batch(other.count_, other.mean_, other.m2_, other.trace_);
    }

    /// Replaces the state (for a combine across processes).
    void assign(std::uint64_t count, std::vector<double> mean, std::vector<double> m2, double trace)
    {
        count_ = count;
        trace_ = trace;
        mean_ = std::move(mean);
        m2_ = std::move(m2);
    }

    /// Copies the upper triangle of an unprojected M2 into its lower triangle.
    void symmetrize()
    {
        if (projected())
            return;
        for (std::size_t i = 0; i < dim_; ++i)
            for (std::size_t j = i + 1; j < dim_; ++j)
                m2_[j * dim_ + i] = m2_[i * dim_ + j];
    }

    /// `m2 += scale * v (v^T P)` on the upper triangle (unprojected) or whole (projected).
    void add_outer(std::vector<double>& m2, std::span<const double> v, double scale) const
    {
        if (projected()) {
            std::vector<double> vp(cols_, 0.0);
            for (std::size_t i = 0; i < dim_; ++i)
                if (v[i] != 0)
                    for (std::size_t c = 0; c < cols_; ++c)
                        vp[c] += v[i] * projection_[i * cols_ + c];
            for (std::size_t i = 0; i < dim_; ++i) {
                const double a = scale * v[i];
                if (a != 0)
                    for (std::size_t c = 0; c < cols_; ++c)
                        m2[i * cols_ + c] += a * vp[c];
            }
        }
        else {
            for (std::size_t i = 0; i < dim_; ++i) {
                const double a = scale * v[i];
                if (a != 0)
                    for (std::size_t j = i; j < dim_; ++j)
                        m2[i * dim_ + j] += a * v[j];
            }
        }
    }

private:
    void merge_batch(std::uint64_t nb, std::span<const double> mean_b, std::span<const double> m2_b, double trace_b)
    {
        if (nb == 0)
            return;
        if (count_ == 0) {
            count_ = nb;
            trace_ = trace_b;
            mean_.assign(mean_b.begin(), mean_b.end());
            m2_.assign(m2_b.begin(), m2_b.end());
            return;
        }
        const double na = static_cast<double>(count_), nbd = static_cast<double>(nb);
        const double n = na + nbd;
        std::vector<double> delta(dim_);
        for (std::size_t j = 0; j < dim_; ++j)
            delta[j] = mean_b[j] - mean_[j];
        for (std::size_t j = 0; j < m2_.size(); ++j)
            m2_[j] += m2_b[j];
        add_outer(m2_, delta, na * nbd / n);
        double delta2 = 0;
        for (std::size_t j = 0; j < dim_; ++j) {
            mean_[j] += delta[j] * (nbd / n);
            delta2 += delta[j] * delta[j];
        }
        trace_ += trace_b + delta2 * na * nbd / n;
        count_ += nb;
    }

    // Upper triangle of X^T X for centred rows X (m x d): eight rows at a time, so each pass
    // over a row of M2 does eight rank-one updates (a third less CPU than four at d = 50), and
    // the inner loop runs over contiguous memory.
    void add_scatter_upper(std::span<const double> x, std::size_t m, std::vector<double>& out) const
    {
        const std::size_t d = dim_;
        std::size_t r = 0;
        for (; r + 8 <= m; r += 8) {
            const double* x0 = &x[r * d];
            const double* x1 = x0 + d;
            const double* x2 = x1 + d;
            const double* x3 = x2 + d;
            const double* x4 = x3 + d;
            const double* x5 = x4 + d;
            const double* x6 = x5 + d;
            const double* x7 = x6 + d;
            for (std::size_t i = 0; i < d; ++i) {
                const double a0 = x0[i], a1 = x1[i], a2 = x2[i], a3 = x3[i];
                const double a4 = x4[i], a5 = x5[i], a6 = x6[i], a7 = x7[i];
                double* row = &out[i * d];
                for (std::size_t j = i; j < d; ++j)
                    row[j] += (a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j])
                        + (a4 * x4[j] + a5 * x5[j] + a6 * x6[j] + a7 * x7[j]);
            }
        }
        for (; r < m; ++r) {
            const double* x0 = &x[r * d];
            for (std::size_t i = 0; i < d; ++i) {
                const double a0 = x0[i];
                double* row = &out[i * d];
                for (std::size_t j = i; j < d; ++j)
                    row[j] += a0 * x0[j];
            }
        }
    }

    // X^T (X P) for centred rows X (m x d): the sketch of this batch's M2.
    void add_projected_dense(std::span<const double> x, std::size_t m, std::vector<double>& out) const
    {
        std::vector<double> xp(cols_);
        for (std::size_t r = 0; r < m; ++r) {
            const double* row = &x[r * dim_];
            std::fill(xp.begin(), xp.end(), 0.0);
            for (std::size_t i = 0; i < dim_; ++i) {
                const double a = row[i];
                const double* prow = &projection_[i * cols_];
                for (std::size_t c = 0; c < cols_; ++c)
                    xp[c] += a * prow[c];
            }
            for (std::size_t i = 0; i < dim_; ++i) {
                const double a = row[i];
                double* o = &out[i * cols_];
                for (std::size_t c = 0; c < cols_; ++c)
                    o[c] += a * xp[c];
            }
        }
    }

    std::size_t dim_;
    std::size_t cols_;
    std::vector<double> projection_;  // empty: unprojected
    std::uint64_t count_ = 0;
    double trace_ = 0;
    std::vector<double> mean_;
    std::vector<double> m2_;
};

/// A d x p Gaussian test matrix (row-major) drawn from `seed`: the same on every rank and
/// every run. Normal deviates come from the Irwin-Hall sum of twelve uniforms, which needs only
/// exact integer arithmetic, so the matrix does not depend on the standard library.
inline std::vector<double> gaussian_matrix(std::size_t d, std::size_t p, std::uint64_t seed)
{
    std::mt19937_64 engine(seed);
    std::vector<double> m(d * p);
    for (auto& x : m) {
        std::uint64_t sum = 0;
        for (int i = 0; i < 6; ++i) {
            const std::uint64_t r = engine();
            sum += (r >> 32) + (r & 0xffffffffU);
        }
        x = static_cast<double>(sum) * 0x1p-32 - 6;
    }
    return m;
}

/// The running statistics of a PCA: an unprojected `moments` in regular mode, a sketch in
/// randomized mode.
inline moments make_pca_moments(const pca_options& o)
{
    if (o.mode == pca_mode::regular)
        return moments(o.feature_dim);
    const std::size_t l = std::min(o.feature_dim, o.num_components + o.extra_components);
    return moments(o.feature_dim, gaussian_matrix(o.feature_dim, l, o.seed), l);
}

namespace detail {


} // namespace detail

/// The model from the final statistics `s` of a PCA with options `o` (rows must have been
/// seen: `s.count() >= 2`). Unprojected statistics must already be symmetrized.
inline pca_model finish_pca(const moments& s, const pca_options& o)
{
    const std::size_t d = o.feature_dim;
    if (s.count() < 2)
        throw std::runtime_error("PCA needs at least 2 records, got " + std::to_string(s.count()));
    pca_model out;
    out.feature_dim = d;
    out.records = s.count();
    out.mean.assign(s.mean().begin(), s.mean().end());
    const double n = static_cast<double>(s.count());
    const double scale = 1 / (n - 1);
    const std::size_t k = std::min(o.num_components, d);

    // The matrix whose eigenvectors are the components: M2, or the uncentred X^T X = M2 + n mm^T.
    std::vector<double> y(s.m2().begin(), s.m2().end());
    if (!o.subtract_mean) {
        // add_outer fills only the upper triangle when unprojected: mirror it.
        s.add_outer(y, s.mean(), n);
        if (!s.projected())
            for (std::size_t i = 0; i < d; ++i)
                for (std::size_t j = i + 1; j < d; ++j)
                    y[j * d + i] = y[i * d + j];
    }
    // The total variance: the trace of M2, plus n |mean|^2 for the uncentred second moment.
    double trace = s.trace();
    if (!o.subtract_mean)
        for (double m : s.mean())
            trace += n * m * m;
    if (!s.projected()) {
        const auto eig = decompose_symmetric(y, d);
        for (std::size_t c = 0; c < k; ++c) {
            const double lambda = std::max(0.0, eig.values[c]);
            out.explained_variance.push_back(lambda * scale);
            out.singular_values.push_back(std::sqrt(lambda));
            out.components.insert(out.components.end(), eig.vectors.begin() + static_cast<std::ptrdiff_t>(c * d),
                                  eig.vectors.begin() + static_cast<std::ptrdiff_t>((c + 1) * d));
        }
    }
    else {
        // Nystrom: with Y = A Omega (d x l) for the PSD A, A ~ Y (Omega^T Y)^-1 Y^T. A small
        // shift nu keeps Omega^T Y positive definite: Y_nu = Y + nu Omega; B = Omega^T Y_nu =
        // C C^T; F = Y_nu C^-T; F = U S V^T gives A + nu I ~ U S^2 U^T.
        const std::size_t l = s.columns();
        const auto& omega = s.projection();
        double norm = 0;
        for (double v : y)
            norm += v * v;
        const double nu = std::sqrt(norm) * 0x1p-52 * static_cast<double>(d);
        for (std::size_t i = 0; i < y.size(); ++i)
            y[i] += nu * omega[i];
        using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        const auto di = static_cast<Eigen::Index>(d);
        const auto li = static_cast<Eigen::Index>(l);
        const Eigen::Map<const row_major> y_nu(y.data(), di, li);
        const Eigen::Map<const row_major> om(omega.data(), di, li);
        const Eigen::MatrixXd b = om.transpose() * y_nu;
        // B's lower triangle is all the factorisation reads.
        const Eigen::LLT<Eigen::MatrixXd> chol(b);
        if (chol.info() != Eigen::Success)
            throw std::runtime_error("randomized PCA: the sketch is not positive definite (too few records?)");
        // F = Y C^-T, i.e. F^T = C^-1 Y^T (C lower), by forward substitution.
        const Eigen::MatrixXd f = chol.matrixL().solve(y_nu.transpose()).transpose();
        // F^T F = V S^2 V^T; U = F V / S.
        row_major g = f.transpose() * f;
        const auto eig = decompose_symmetric(std::span<const double>(g.data(), l * l), l);
        for (std::size_t c = 0; c < k; ++c) {
            const double s2 = std::max(0.0, eig.values[c]);
            const double lambda = std::max(0.0, s2 - nu);
            out.explained_variance.push_back(lambda * scale);
            out.singular_values.push_back(std::sqrt(lambda));
            const double inv = s2 > 0 ? 1 / std::sqrt(s2) : 0;
            const Eigen::Map<const Eigen::VectorXd> v(eig.vectors.data() + c * l, li);
            const Eigen::VectorXd fu = f * v * inv;
            std::vector<double> u(fu.data(), fu.data() + d);
            // Same sign convention as the regular mode: largest component positive.
            std::size_t largest = 0;
            for (std::size_t i = 1; i < d; ++i)
                if (std::abs(u[i]) > std::abs(u[largest]))
                    largest = i;
            const double sign = u[largest] < 0 ? -1.0 : 1.0;
            for (auto& x : u)
                x *= sign;
            out.components.insert(out.components.end(), u.begin(), u.end());
        }
    }
    for (double v : out.explained_variance)
        out.explained_variance_ratio.push_back(trace > 0 ? v / (trace * scale) : 0.0);
    return out;
}

} // namespace pipemode::examples
