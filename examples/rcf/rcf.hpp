// The math of pipemode-rcf, Random Cut Forest as SageMaker's built-in trains it: one reservoir
// of sampled points per tree filled in one streaming pass (and merged between MPI ranks), trees
// of random cuts built on each reservoir, and the depth-based anomaly score of AWS's open
// implementation (randomcutforest-by-aws's default scorer) averaged over the trees. No I/O, so
// that the unit tests and the reference script check exactly what the program runs.
//
// Every random draw comes from `splitmix64`, a generator simple enough to re-implement in a few
// lines of Python: the reference script (rcf_test.py) rebuilds the trees from the reservoirs and
// the seed and must find the same cuts and the same scores, bit for bit.
//
// The model is written out in docs/algorithms.md, "Random Cut Forest".
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pipemode::examples::rcf {

/// Steele, Lea and Flood's SplitMix64: a 64-bit Weyl sequence hashed by a fixed mixer. Chosen
/// for the reference check: its whole definition is three lines, so a re-implementation in
/// Python reads the same draws. Not cryptographic. A value type; not shared between threads.
class splitmix64 {
public:
    /// A generator whose first draw hashes `seed + 0x9E3779B97F4A7C15`.
    explicit splitmix64(std::uint64_t seed) noexcept : state_(seed) {}

    /// The next 64-bit draw.
    std::uint64_t next() noexcept
    {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    /// A uniform double in [0, 1): the draw's top 53 bits times 2^-53 (exact, so Python's
    /// `(x >> 11) * 2.0**-53` gives the same double).
    double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
    std::uint64_t state_;
};

/// The seed of tree `t`'s cut sequence: the `t`-th draw (from 0) of `splitmix64(seed)`.
inline std::vector<std::uint64_t> tree_seeds(std::uint64_t seed, std::size_t num_trees)
{
    splitmix64 g(seed);
    std::vector<std::uint64_t> out(num_trees);
    for (auto& s : out)
        s = g.next();
    return out;
}

/// The seed of MPI rank `rank`'s sampling keys: the `rank`-th draw (from 0) of
/// `splitmix64(seed ^ 0x5851F42D4C957F2D)`, a stream apart from the trees' cut sequences.
inline std::uint64_t sampler_seed(std::uint64_t seed, std::size_t rank)
{
    splitmix64 g(seed ^ 0x5851F42D4C957F2DULL);
    std::uint64_t s = g.next();
    for (std::size_t r = 0; r < rank; ++r)
        s = g.next();
    return s;
}

/// The points sampled for the trees: tree `t` has `size(t)` points of `dim` values each, in
/// increasing order of their sampling keys. A value type.
struct forest_sample {
    std::size_t num_trees = 0;
    std::size_t samples_per_tree = 0;
    std::size_t dim = 0;
    std::vector<std::vector<double>> points;  ///< per tree, row-major size(t) x dim
    std::vector<std::vector<double>> keys;    ///< per tree, the points' keys (ascending)

    /// Number of points of tree `t`.
    std::size_t size(std::size_t t) const { return keys[t].size(); }
};

/// The reservoirs of a forest, filled in one pass over a stream of points: each of the
/// `num_trees` trees keeps a uniform sample without replacement of `samples_per_tree` of the
/// points it was offered (all of them while there are fewer).
///
/// How: bottom-k sampling. Every point gets, for each tree, an independent key uniform in
/// [0, 1); a tree keeps the points of its k smallest keys. Since the keys are independent and
/// identically distributed, every k-subset of the stream is equally likely to hold the k
/// smallest (exchangeability), so the reservoir is a uniform sample. Keys are not drawn for
/// every point: once a tree's reservoir is full with largest key T, the points until the next
/// one whose key falls below T are a geometric number G with P(G = g) = (1 - T)^g T, drawn as
/// floor(ln U / ln(1 - T)), and that point's key is uniform in [0, T): the same distribution,
/// with O(k log(n / k)) draws per tree instead of n.
///
/// Merging (`merge`): the keys of all ranks' points are one i.i.d. family, so the k smallest of
/// the whole stream are among the k smallest of each rank's shard; keeping the k smallest keys
/// of the union of the ranks' reservoirs gives exactly the reservoir one process would have
/// kept with the same keys, whatever the shards' sizes. That is the property the issue asks
/// for: every record has the same chance k / n, whichever rank read it.
///
/// Not thread-safe. O(num_trees x samples_per_tree x dim) memory.
class forest_sampler {
public:
    /// Reservoirs for `num_trees` trees of `samples_per_tree` points of `dim` values, keys drawn
    /// from `splitmix64(seed)` (under MPI, `sampler_seed(seed, rank)`).
    forest_sampler(std::size_t num_trees, std::size_t samples_per_tree, std::size_t dim, std::uint64_t seed)
        : trees_(num_trees), k_(samples_per_tree), dim_(dim), rng_(seed), heaps_(num_trees), next_(num_trees, 0),
          points_(num_trees * samples_per_tree * dim)
    {
        if (num_trees == 0 || samples_per_tree == 0 || dim == 0)
            throw std::invalid_argument("num_trees, num_samples_per_tree and the point dimension must be at least 1");
        for (auto& h : heaps_)
            h.reserve(k_);
    }

    /// Whether the next point offered goes into some reservoir; when false, `skip()` is enough
    /// (no need to build the point).
    bool wants_next() const noexcept { return index_ >= soonest_; }

    /// Offers one point (`dim` values).
    void add(std::span<const double> point)
    {
        if (index_ >= soonest_) {
            soonest_ = std::numeric_limits<std::uint64_t>::max();
            for (std::size_t t = 0; t < trees_; ++t) {
                if (next_[t] == index_)
                    accept(t, point);
                soonest_ = std::min(soonest_, next_[t]);
            }
        }
        ++index_;
    }

    /// Offers a point no reservoir wants (`wants_next()` was false).
    void skip() noexcept { ++index_; }

    /// Points offered so far.
    std::uint64_t offered() const noexcept { return index_; }

    /// The reservoirs flattened for an exchange between ranks: for each tree, `samples_per_tree`
    /// slots of 1 + dim doubles (the key, then the point), a key of 2 marking an empty slot.
    std::vector<double> exported() const
    {
        std::vector<double> out(trees_ * k_ * (1 + dim_), 0.0);
        for (std::size_t t = 0; t < trees_; ++t)
            for (std::size_t s = 0; s < k_; ++s) {
                double* slot = out.data() + (t * k_ + s) * (1 + dim_);
                if (s < heaps_[t].size()) {
                    const auto [key, at] = heaps_[t][s];
                    slot[0] = key;
                    std::copy_n(points_.data() + (t * k_ + at) * dim_, dim_, slot + 1);
                }
                else {
                    slot[0] = 2.0;
                }
            }
        return out;
    }

    /// The forest's sample from the `exported()` reservoirs of every rank, concatenated (one
    /// rank's alone for a single process): for each tree the points of the
    /// `samples_per_tree` smallest keys among them, in increasing key order.
    static forest_sample merge(std::span<const double> all, std::size_t num_trees, std::size_t samples_per_tree,
                               std::size_t dim)
    {
        const std::size_t slot = 1 + dim, per_rank = num_trees * samples_per_tree * slot;
        if (per_rank == 0 || all.size() % per_rank != 0)
            throw std::invalid_argument("merge: the reservoirs do not have the forest's shape");
        const std::size_t ranks = all.size() / per_rank;
        forest_sample out{num_trees, samples_per_tree, dim, std::vector<std::vector<double>>(num_trees),
                          std::vector<std::vector<double>>(num_trees)};
        std::vector<const double*> candidates;
        for (std::size_t t = 0; t < num_trees; ++t) {
            candidates.clear();
            for (std::size_t r = 0; r < ranks; ++r)
                for (std::size_t s = 0; s < samples_per_tree; ++s) {
                    const double* p = all.data() + r * per_rank + (t * samples_per_tree + s) * slot;
                    if (p[0] < 2.0)
                        candidates.push_back(p);
                }
            const std::size_t n = std::min(samples_per_tree, candidates.size());
            // Ties between keys (probability about n^2 / 2^54) are broken by rank and slot, so
            // that every rank computes the same sample.
            std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n), candidates.end(),
                              [](const double* a, const double* b) { return a[0] < b[0] || (a[0] == b[0] && a < b); });
            for (std::size_t i = 0; i < n; ++i) {
                out.keys[t].push_back(candidates[i][0]);
                out.points[t].insert(out.points[t].end(), candidates[i] + 1, candidates[i] + slot);
            }
        }
        return out;
    }

private:
    using entry = std::pair<double, std::size_t>;  // key, slot in points_; a max-heap on the key

    void accept(std::size_t t, std::span<const double> point)
    {
        auto& heap = heaps_[t];
        std::size_t at;
        double key;
        if (heap.size() < k_) {
            at = heap.size();
            key = rng_.uniform();
        }
        else {
            // The key of the point that beat the threshold: uniform below it.
            key = heap.front().first * rng_.uniform();
            std::pop_heap(heap.begin(), heap.end());
            at = heap.back().second;
            heap.pop_back();
        }
        std::copy_n(point.data(), dim_, points_.data() + (t * k_ + at) * dim_);
        heap.emplace_back(key, at);
        std::push_heap(heap.begin(), heap.end());
        if (heap.size() < k_) {
            next_[t] = index_ + 1;
            return;
        }
        const double threshold = heap.front().first;
        const double u = 1.0 - rng_.uniform();  // in (0, 1], so that its log is finite
        const double gap = threshold > 0 ? std::floor(std::log(u) / std::log1p(-threshold)) : HUGE_VAL;
        next_[t] = gap >= 1e18 ? std::numeric_limits<std::uint64_t>::max()
                               : index_ + 1 + static_cast<std::uint64_t>(gap);
    }

    std::size_t trees_, k_, dim_;
    splitmix64 rng_;
    std::vector<std::vector<entry>> heaps_;
    std::vector<std::uint64_t> next_;  // per tree, the index of the next point it takes
    std::vector<double> points_;       // per tree, k slots of dim values
    std::uint64_t index_ = 0;          // points offered
    std::uint64_t soonest_ = 0;        // min(next_)
};

/// One random cut tree over a tree's sample, with the bounding box of every node kept for
/// scoring.
///
/// Built top-down: a node with one point, or whose points are all equal, is a leaf whose mass is
/// its number of points. Otherwise, with lo and hi its bounding box and r_j = hi_j - lo_j, the
/// cut draws u1 and u2 from the tree's generator (in that order, the left subtree built before
/// the right, so the draws follow the nodes in preorder): the dimension is the first j with
/// u1 x sum(r) < r_0 + ... + r_j (so P(j) = r_j / sum(r)), the value c = lo_j + u2 x r_j (the
/// largest double below hi_j if rounding gave hi_j), and points with x_j <= c go left. Both
/// sides then hold a point, and the depth is at most the number of points.
///
/// Immutable after construction; scoring is safe from several threads.
class random_cut_tree {
public:
    /// A node in preorder: the left child follows its parent, `right` is the right child's index.
    struct node {
        std::int32_t dim = -1;  ///< the cut's dimension; -1 for a leaf
        double cut = 0;         ///< points with x[dim] <= cut go left
        std::uint32_t right = 0;
        std::uint32_t mass = 0;   ///< points below the node
        std::uint32_t point = 0;  ///< a leaf's point (any of its equal points)
    };

    /// Builds the tree over `n` points of `dim` values (row-major `points`), drawing the cuts
    /// from `splitmix64(seed)`.
    random_cut_tree(std::span<const double> points, std::size_t dim, std::uint64_t seed)
        : dim_(dim), mass_(dim == 0 ? 0 : points.size() / dim), points_(points.begin(), points.end())
    {
        if (mass_ == 0)
            return;
        splitmix64 rng(seed);
        std::vector<std::uint32_t> order(mass_);
        std::iota(order.begin(), order.end(), 0u);
        nodes_.reserve(2 * mass_);
        lo_.reserve(2 * mass_ * dim_);
        hi_.reserve(2 * mass_ * dim_);
        build(order, 0, mass_, rng);
    }

    /// The nodes, in preorder.
    const std::vector<node>& nodes() const noexcept { return nodes_; }

    /// Node `i`'s bounding box (`dim` values each).
    std::span<const double> lo(std::size_t i) const { return {lo_.data() + i * dim_, dim_}; }
    std::span<const double> hi(std::size_t i) const { return {hi_.data() + i * dim_, dim_}; }

    /// Points in the tree.
    std::size_t mass() const noexcept { return mass_; }

    /// The anomaly score of `x` in this tree, as randomcutforest-by-aws's default scorer
    /// (AnomalyScoreVisitor) defines it, normalized by log2(mass + 1):
    ///
    /// descend the cuts to a leaf at depth D (the root at 0). If `x` equals the leaf's point,
    /// s = (1 - m / 2M) / (D + log2(m + 1)) with m the leaf's mass and M the tree's (a point seen
    /// often is less anomalous); else s = 1 / (D + 1). Then, from the leaf's parent up to the
    /// root, at a node of depth d whose box B does not contain `x`, with p the probability that
    /// a random cut of the box spanned by B and `x` separates `x` from B
    /// (sum_j dist(x_j, [lo_j, hi_j]) / sum_j (max(hi_j, x_j) - min(lo_j, x_j))):
    /// s = p / (d + 1) + (1 - p) s; the first node whose box contains `x` stops the climb.
    /// The result is s x log2(M + 1); 0 for an empty tree.
    double score(std::span<const double> x) const
    {
        if (nodes_.empty())
            return 0.0;
        // The path from the root, kept for the climb back (depth <= mass).
        path_buffer path;
        std::size_t i = 0;
        while (nodes_[i].dim >= 0) {
            path.push(i);
            const auto& nd = nodes_[i];
            i = x[static_cast<std::size_t>(nd.dim)] <= nd.cut ? i + 1 : nd.right;
        }
        const auto& leaf = nodes_[i];
        const double depth = static_cast<double>(path.size());
        const double* p = points_.data() + static_cast<std::size_t>(leaf.point) * dim_;
        double s;
        if (std::equal(x.begin(), x.end(), p)) {
            const double m = leaf.mass, total = static_cast<double>(mass_);
            s = (1.0 - m / (2.0 * total)) / (depth + std::log2(m + 1.0));
        }
        else {
            s = 1.0 / (depth + 1.0);
        }
        for (std::size_t level = path.size(); level-- > 0;) {
            const double prob = separation(x, path[level]);
            if (prob == 0.0)
                break;
            s = prob * (1.0 / (static_cast<double>(level) + 1.0)) + (1.0 - prob) * s;
        }
        return s * std::log2(static_cast<double>(mass_) + 1.0);
    }

private:
    // A small vector of node indices on the stack for the usual depths, on the heap beyond.
    class path_buffer {
    public:
        void push(std::size_t i)
        {
            if (n_ < local_.size())
                local_[n_] = i;
            else
                more_.push_back(i);
            ++n_;
        }
        std::size_t size() const noexcept { return n_; }
        std::size_t operator[](std::size_t k) const { return k < local_.size() ? local_[k] : more_[k - local_.size()]; }

    private:
        std::array<std::size_t, 64> local_;  // not zeroed: only the first n_ are read
        std::vector<std::size_t> more_;
        std::size_t n_ = 0;
    };

    // The probability that a random cut of the box spanned by node i's box and x separates x.
    double separation(std::span<const double> x, std::size_t i) const
    {
        const double* lo = lo_.data() + i * dim_;
        const double* hi = hi_.data() + i * dim_;
        double gap = 0, span = 0;
        for (std::size_t j = 0; j < dim_; ++j) {
            const double a = std::min(lo[j], x[j]), b = std::max(hi[j], x[j]);
            span += b - a;
            if (x[j] < lo[j])
                gap += lo[j] - x[j];
            else if (x[j] > hi[j])
                gap += x[j] - hi[j];
        }
        return span > 0 ? gap / span : 0.0;
    }

    // Builds the subtree of order[begin, end) at the end of nodes_; returns its index.
    std::size_t build(std::vector<std::uint32_t>& order, std::size_t begin, std::size_t end, splitmix64& rng)
    {
        const std::size_t at = nodes_.size();
        nodes_.emplace_back();
        lo_.resize(lo_.size() + dim_);
        hi_.resize(hi_.size() + dim_);
        double* lo = lo_.data() + at * dim_;
        double* hi = hi_.data() + at * dim_;
        const double* first = points_.data() + static_cast<std::size_t>(order[begin]) * dim_;
        std::copy_n(first, dim_, lo);
        std::copy_n(first, dim_, hi);
        for (std::size_t k = begin + 1; k < end; ++k) {
            const double* p = points_.data() + static_cast<std::size_t>(order[k]) * dim_;
            for (std::size_t j = 0; j < dim_; ++j) {
                lo[j] = std::min(lo[j], p[j]);
                hi[j] = std::max(hi[j], p[j]);
            }
        }
        double total = 0;
        for (std::size_t j = 0; j < dim_; ++j)
            total += hi[j] - lo[j];
        nodes_[at].mass = static_cast<std::uint32_t>(end - begin);
        if (end - begin == 1 || !(total > 0)) {
            nodes_[at].point = order[begin];
            return at;
        }
        const double u1 = rng.uniform(), u2 = rng.uniform();
        const double r = u1 * total;
        std::size_t dim = dim_;
        double acc = 0;
        for (std::size_t j = 0; j < dim_; ++j) {
            acc += hi[j] - lo[j];
            if (r < acc) {
                dim = j;
                break;
            }
        }
        if (dim == dim_)  // rounding put r at the total: the last dimension with a range
            for (std::size_t j = dim_; j-- > 0;)
                if (hi[j] > lo[j]) {
                    dim = j;
                    break;
                }
        double cut = lo[dim] + u2 * (hi[dim] - lo[dim]);
        if (cut >= hi[dim])
            cut = std::nextafter(hi[dim], lo[dim]);
        const auto middle = std::partition(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                           order.begin() + static_cast<std::ptrdiff_t>(end), [&](std::uint32_t k) {
                                               return points_[static_cast<std::size_t>(k) * dim_ + dim] <= cut;
                                           });
        const auto split = static_cast<std::size_t>(middle - order.begin());
        nodes_[at].dim = static_cast<std::int32_t>(dim);
        nodes_[at].cut = cut;
        build(order, begin, split, rng);
        const std::size_t right = build(order, split, end, rng);
        nodes_[at].right = static_cast<std::uint32_t>(right);
        return at;
    }

    std::size_t dim_;
    std::size_t mass_;
    std::vector<double> points_;
    std::vector<node> nodes_;
    std::vector<double> lo_, hi_;  // per node, dim_ values
};

/// A forest: one `random_cut_tree` per tree of a `forest_sample`, tree t's cuts drawn from
/// `tree_seeds(seed, num_trees)[t]`, so that the same sample and seed always give the same
/// trees (which is why the model file stores the sample and the seed, not the trees).
/// Immutable after construction; scoring is safe from several threads.
class random_cut_forest {
public:
    random_cut_forest(const forest_sample& sample, std::uint64_t seed) : dim_(sample.dim)
    {
        const auto seeds = tree_seeds(seed, sample.num_trees);
        trees_.reserve(sample.num_trees);
        for (std::size_t t = 0; t < sample.num_trees; ++t)
            trees_.emplace_back(sample.points[t], sample.dim, seeds[t]);
    }

    /// The trees.
    const std::vector<random_cut_tree>& trees() const noexcept { return trees_; }

    /// The point dimension.
    std::size_t dim() const noexcept { return dim_; }

    /// The forest's anomaly score of `x`: the mean over the trees, in tree order, of
    /// `random_cut_tree::score`. Higher is more anomalous; about 1 for a typical point.
    double score(std::span<const double> x) const
    {
        double sum = 0;
        for (const auto& t : trees_)
            sum += t.score(x);
        return trees_.empty() ? 0.0 : sum / static_cast<double>(trees_.size());
    }

    /// The scores of `n` points (row-major `points`, `dim` values each) into `out` (`n`
    /// values): the same doubles as `score` point by point (each point's sum still runs over
    /// the trees in order), computed tree by tree so that a tree's nodes stay in cache while
    /// every point of the batch walks it, instead of each point walking the whole forest.
    void score(std::span<const double> points, std::span<double> out) const
    {
        const std::size_t n = out.size();
        if (points.size() != n * dim_)
            throw std::invalid_argument("random_cut_forest::score: points and out differ in length");
        std::fill(out.begin(), out.end(), 0.0);
        for (const auto& t : trees_)
            for (std::size_t i = 0; i < n; ++i)
                out[i] += t.score(points.subspan(i * dim_, dim_));
        if (!trees_.empty())
            for (auto& s : out)
                s /= static_cast<double>(trees_.size());
    }

private:
    std::size_t dim_;
    std::vector<random_cut_tree> trees_;
};

/// Turns a stream of records of `record_dim` values into points of `size` consecutive records
/// (the shingles of a time series, oldest first), as SageMaker's NYC-taxi example builds them
/// on the client. The first `size - 1` records make no point. Not thread-safe.
class shingler {
public:
    shingler(std::size_t record_dim, std::size_t size)
        : d_(record_dim), size_(size), ring_(record_dim * size)
    {
        if (record_dim == 0 || size == 0)
            throw std::invalid_argument("shingler: the record dimension and the shingle size must be at least 1");
    }

    /// Appends a record; returns whether a whole shingle is now available (`point`).
    bool push(std::span<const double> record)
    {
        std::copy_n(record.data(), d_, ring_.data() + (seen_ % size_) * d_);
        ++seen_;
        return seen_ >= size_;
    }

    /// The newest shingle into `out` (`record_dim x size` values, oldest record first).
    void point(std::span<double> out) const
    {
        for (std::size_t k = 0; k < size_; ++k) {
            const std::size_t slot = (seen_ - size_ + k) % size_;
            std::copy_n(ring_.data() + slot * d_, d_, out.data() + k * d_);
        }
    }

    /// The point dimension, `record_dim x size`.
    std::size_t point_dim() const noexcept { return d_ * size_; }

private:
    std::size_t d_, size_;
    std::vector<double> ring_;
    std::uint64_t seen_ = 0;
};

/// The statistics SageMaker's test channel labels with: a score is anomalous when it is more
/// than three standard deviations above the mean of the scores (here, those of the test
/// channel's own records; population standard deviation).
inline double three_sigma_threshold(std::span<const double> scores)
{
    if (scores.empty())
        return 0.0;
    double mean = 0;
    for (double s : scores)
        mean += s;
    mean /= static_cast<double>(scores.size());
    double var = 0;
    for (double s : scores)
        var += (s - mean) * (s - mean);
    var /= static_cast<double>(scores.size());
    return mean + 3.0 * std::sqrt(var);
}

} // namespace pipemode::examples::rcf
