// Mini-batch ("web-scale") K-Means as SageMaker's built-in K-Means does it: k-means++ (or
// random) initial centres on a sample, Sculley's mini-batch update with per-centre learning
// rates over several epochs, optionally with extra centres during training that a local,
// count-weighted Lloyd's reduces to k at the end. See docs/algorithms.md.
//
// Everything is computed in double precision. No I/O here: the program feeds rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pipemode::examples {

/// How initial centres are chosen.
enum class kmeans_init {
    random,          ///< distinct sample points, uniformly
    kmeans_plus_plus ///< k-means++ (D^2 sampling, weighted)
};

/// A random number source whose values do not depend on the standard library: uniform doubles
/// from mt19937_64 by exact arithmetic, so a seed gives the same centres everywhere.
class kmeans_random {
public:
    /// A generator started from `seed`.
    explicit kmeans_random(std::uint64_t seed) : engine_(seed) {}

    /// Uniform in [0, 1).
    double uniform01() { return static_cast<double>(engine_() >> 11) * 0x1p-53; }

    /// Uniform in {0, ..., n - 1}.
    std::size_t below(std::size_t n)
    {
        return std::min(n - 1, static_cast<std::size_t>(uniform01() * static_cast<double>(n)));
    }

private:
    std::mt19937_64 engine_;
};

/// Squared Euclidean distance of two dense d-vectors.
inline double squared_distance(const double* a, const double* b, std::size_t d) noexcept
{
    double s = 0;
    for (std::size_t j = 0; j < d; ++j) {
        const double t = a[j] - b[j];
        s += t * t;
    }
    return s;
}

/// The nearest of `k` centres (row-major k x d) to dense `x`: its index and squared distance.
/// Ties go to the lower index.
inline std::pair<std::size_t, double> nearest_centre(const double* x, std::span<const double> centres, std::size_t k,
                                                     std::size_t d) noexcept
{
    std::size_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < k; ++c) {
        const double dist = squared_distance(x, &centres[c * d], d);
        if (dist < best_d) {
            best_d = dist;
            best = c;
        }
    }
    return {best, best_d};
}

/// Chooses `k` centres among the `n` weighted points (row-major n x d): k-means++ picks the
/// first with probability proportional to weight, then each next with probability
/// proportional to weight times squared distance to the nearest chosen centre; `random` picks
/// k distinct points uniformly. Deterministic for a seed. Throws `std::invalid_argument` when
/// there are fewer than k points of positive weight.
inline std::vector<double> initial_centres(std::span<const double> points, std::span<const double> weights,
                                           std::size_t n, std::size_t d, std::size_t k, kmeans_init method,
                                           kmeans_random& random)
{
    std::size_t usable = 0;
    for (std::size_t i = 0; i < n; ++i)
        usable += weights[i] > 0 ? 1 : 0;
    if (usable < k)
        throw std::invalid_argument("K-Means needs at least " + std::to_string(k) + " points to start from, got "
                                    + std::to_string(usable));
    std::vector<double> centres;
    centres.reserve(k * d);
    std::vector<char> taken(n, 0);
    auto take = [&](std::size_t i) {
        taken[i] = 1;
        centres.insert(centres.end(), points.begin() + static_cast<std::ptrdiff_t>(i * d),
                       points.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
    };
    // Draws an index with probability proportional to p[i]; falls back to the last candidate
    // when rounding leaves the target past the total.
    auto draw = [&](const std::vector<double>& p) {
        double total = 0;
        for (double v : p)
            total += v;
        const double target = random.uniform01() * total;
        double acc = 0;
        std::size_t last = n;
        for (std::size_t i = 0; i < n; ++i) {
            if (p[i] <= 0)
                continue;
            acc += p[i];
            last = i;
            if (acc > target)
                return i;
        }
        return last;
    };

    if (method == kmeans_init::random) {
        std::vector<double> p(n);
        for (std::size_t c = 0; c < k; ++c) {
            for (std::size_t i = 0; i < n; ++i)
                p[i] = !taken[i] && weights[i] > 0 ? 1.0 : 0.0;
            take(draw(p));
        }
        return centres;
    }

    std::vector<double> p(weights.begin(), weights.end());
    take(draw(p));
    std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
    for (std::size_t c = 1; c < k; ++c) {
        const double* last = &centres[(c - 1) * d];
        for (std::size_t i = 0; i < n; ++i) {
            nearest[i] = std::min(nearest[i], squared_distance(&points[i * d], last, d));
            p[i] = taken[i] ? 0.0 : weights[i] * nearest[i];
        }
        bool any = false;
        for (double v : p)
            any = any || v > 0;
        if (!any) {
            // Every remaining point coincides with a centre: take the next untaken one.
            for (std::size_t i = 0; i < n; ++i)
                p[i] = !taken[i] && weights[i] > 0 ? 1.0 : 0.0;
        }
        take(draw(p));
    }
    return centres;
}

/// Lloyd's algorithm on `n` weighted points from `centres` (k x d, updated in place): assign
/// every point to its nearest centre, move each centre to the weighted mean of its points (a
/// centre with none stays), until the weighted sum of squares improves by less than `tol`
/// relative or after `max_iter` iterations. Returns the final weighted sum of squares.
inline double weighted_lloyd(std::span<const double> points, std::span<const double> weights, std::size_t n,
                             std::size_t d, std::vector<double>& centres, std::size_t k, std::size_t max_iter,
                             double tol)
{
    std::vector<double> sums(k * d), mass(k);
    double previous = std::numeric_limits<double>::infinity();
    double cost = 0;
    for (std::size_t it = 0; it <= max_iter; ++it) {
        std::fill(sums.begin(), sums.end(), 0.0);
        std::fill(mass.begin(), mass.end(), 0.0);
        cost = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const auto [c, dist] = nearest_centre(&points[i * d], centres, k, d);
            cost += weights[i] * dist;
            mass[c] += weights[i];
            for (std::size_t j = 0; j < d; ++j)
                sums[c * d + j] += weights[i] * points[i * d + j];
        }
        if (it == max_iter || previous - cost <= tol * cost)
            break;
        previous = cost;
        for (std::size_t c = 0; c < k; ++c)
            if (mass[c] > 0)
                for (std::size_t j = 0; j < d; ++j)
                    centres[c * d + j] = sums[c * d + j] / mass[c];
    }
    return cost;
}

/// Sculley's mini-batch K-Means on `k` centres of dimension `d`.
///
/// A mini-batch is processed in two steps: `assign_*` finds each row's nearest centre against
/// the centres as they were when the batch began and adds the row to that centre's batch sum
/// and count; `apply()` then moves every centre c that received n_c rows: v_c += n_c and
/// `c <- c + (sum_c - n_c c) / v_c`. That is exactly Sculley's per-row update with learning
/// rate 1 / v_c applied to the batch's rows in any order (it keeps each centre the running mean
/// of every row ever assigned to it), which makes a batch's update independent of row order and
/// lets MPI ranks add their batch sums and counts (`batch_sums()`, `batch_counts()`) before
/// all apply the same update.
///
/// Not thread-safe.
class minibatch_kmeans {
public:
    /// Starts from `centres` (k x d, row-major), no row absorbed yet (v = 0, so a centre's
    /// first batch moves it to the mean of the rows assigned to it).
    minibatch_kmeans(std::vector<double> centres, std::size_t k, std::size_t d)
        : k_(k), d_(d), centres_(std::move(centres)), counts_(k, 0.0), sums_(k * d, 0.0), batch_counts_(k, 0.0),
          norms_(k)
    {
        if (centres_.size() != k * d)
            throw std::invalid_argument("minibatch_kmeans: the centres are not k x d");
        refresh_norms();
    }

    /// Number of centres.
    std::size_t k() const noexcept { return k_; }
    /// Their dimension.
    std::size_t dim() const noexcept { return d_; }
    /// The centres, k x d row-major.
    std::span<const double> centres() const noexcept { return centres_; }
    /// Rows each centre has absorbed over all batches applied (Sculley's v).
    std::span<const double> counts() const noexcept { return counts_; }

    /// Assigns a dense row; returns its squared distance to the centre it went to.
    double assign_dense(const double* x)
    {
        const auto [c, dist] = nearest_centre(x, centres_, k_, d_);
        batch_counts_[c] += 1;
        double* s = &sums_[c * d_];
        for (std::size_t j = 0; j < d_; ++j)
            s[j] += x[j];
        return dist;
    }

    /// Assigns a sparse row (column `keys[i]` holds `values[i]`); returns its squared distance.
    /// Distances are |x|^2 - 2 x.c + |c|^2 with |c|^2 computed once a batch, so a row costs
    /// O(k * nnz) rather than O(k * d).
    double assign_sparse(std::span<const std::uint64_t> keys, std::span<const double> values)
    {
        double xx = 0;
        for (double v : values)
            xx += v * v;
        std::size_t best = 0;
        double best_d = std::numeric_limits<double>::infinity();
        for (std::size_t c = 0; c < k_; ++c) {
            const double* centre = &centres_[c * d_];
            double dot = 0;
            for (std::size_t i = 0; i < keys.size(); ++i)
                dot += values[i] * centre[keys[i]];
            const double dist = std::max(0.0, xx - 2 * dot + norms_[c]);
            if (dist < best_d) {
                best_d = dist;
                best = c;
            }
        }
        batch_counts_[best] += 1;
        double* s = &sums_[best * d_];
        for (std::size_t i = 0; i < keys.size(); ++i)
            s[keys[i]] += values[i];
        return best_d;
    }

    /// This batch's per-centre sums of assigned rows (k x d); add other ranks' here.
    std::span<double> batch_sums() noexcept { return sums_; }
    /// This batch's per-centre counts of assigned rows (k).
    std::span<double> batch_counts() noexcept { return batch_counts_; }

    /// Applies the batch's update and clears the batch.
    void apply()
    {
        for (std::size_t c = 0; c < k_; ++c) {
            const double n = batch_counts_[c];
            if (n <= 0)
                continue;
            counts_[c] += n;
            const double rate = 1 / counts_[c];
            double* centre = &centres_[c * d_];
            const double* s = &sums_[c * d_];
            for (std::size_t j = 0; j < d_; ++j)
                centre[j] += (s[j] - n * centre[j]) * rate;
        }
        std::fill(sums_.begin(), sums_.end(), 0.0);
        std::fill(batch_counts_.begin(), batch_counts_.end(), 0.0);
        refresh_norms();
    }

private:
    void refresh_norms()
    {
        for (std::size_t c = 0; c < k_; ++c) {
            double s = 0;
            for (std::size_t j = 0; j < d_; ++j)
                s += centres_[c * d_ + j] * centres_[c * d_ + j];
            norms_[c] = s;
        }
    }

    std::size_t k_;
    std::size_t d_;
    std::vector<double> centres_;
    std::vector<double> counts_;
    std::vector<double> sums_;
    std::vector<double> batch_counts_;
    std::vector<double> norms_;
};

/// Reduces `big_k` trained centres to `k` (SageMaker's extra_center_factor): a local Lloyd's on
/// the centres as points weighted by how many rows each absorbed, started from `init` (k-means++
/// by default) centres among them. Centres that absorbed nothing carry (almost) no weight: just
/// enough to be chosen when fewer than k centres absorbed rows.
inline std::vector<double> reduce_centres(std::span<const double> centres, std::span<const double> counts,
                                          std::size_t big_k, std::size_t d, std::size_t k, kmeans_init init,
                                          std::size_t max_iter, double tol, kmeans_random& random)
{
    if (big_k == k)
        return {centres.begin(), centres.end()};
    std::vector<double> weights(counts.begin(), counts.end());
    for (auto& w : weights)
        w = w > 0 ? w : 1e-12;
    auto reduced = initial_centres(centres, weights, big_k, d, k, init, random);
    weighted_lloyd(centres, weights, big_k, d, reduced, k, max_iter, tol);
    return reduced;
}

} // namespace pipemode::examples
