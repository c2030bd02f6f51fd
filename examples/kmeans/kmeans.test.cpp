// The math of pipemode-kmeans: seeded initialisation (k-means++ and random), Sculley's
// mini-batch update against its per-row definition, the split of a batch over ranks, sparse
// against dense assignment, weighted Lloyd's and the reduction of extra centres.
#include "minibatch_kmeans.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

using namespace pipemode::examples;

namespace {

// n points in d dimensions around `clusters` centres at distance ~10 from each other, with
// noise 0.1; the cluster of point i is i % clusters.
std::vector<double> clustered(std::size_t n, std::size_t d, std::size_t clusters, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<double> centres(clusters * d);
    for (auto& c : centres)
        c = 10 * normal(rng);
    std::vector<double> x(n * d);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < d; ++j)
            x[i * d + j] = centres[(i % clusters) * d + j] + 0.1 * normal(rng);
    return x;
}

// The cluster (i % clusters) a point equal to a generated one belongs to.
std::size_t cluster_of_point(const std::vector<double>& x, const double* centre, std::size_t n, std::size_t d,
                             std::size_t clusters)
{
    for (std::size_t i = 0; i < n; ++i)
        if (squared_distance(&x[i * d], centre, d) == 0)
            return i % clusters;
    return clusters;  // not a data point
}

} // namespace

TEST_CASE("initial_centres: k-means++ with a seed is deterministic and takes one point per separated cluster")
{
    const std::size_t n = 600, d = 3, k = 6;
    const auto x = clustered(n, d, k, 1);
    const std::vector<double> ones(n, 1.0);
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        kmeans_random a(seed), b(seed);
        const auto ca = initial_centres(x, ones, n, d, k, kmeans_init::kmeans_plus_plus, a);
        const auto cb = initial_centres(x, ones, n, d, k, kmeans_init::kmeans_plus_plus, b);
        CHECK(ca == cb);
        std::set<std::size_t> clusters;
        for (std::size_t c = 0; c < k; ++c)
            clusters.insert(cluster_of_point(x, &ca[c * d], n, d, k));
        INFO("seed " << seed);
        CHECK(clusters.size() == k);  // D^2 sampling: a second point of a cluster has ~0 chance
        CHECK(clusters.count(k) == 0);
    }
    kmeans_random a(1), b(2);
    CHECK(initial_centres(x, ones, n, d, k, kmeans_init::kmeans_plus_plus, a)
          != initial_centres(x, ones, n, d, k, kmeans_init::kmeans_plus_plus, b));
}

TEST_CASE("initial_centres: random takes k distinct points, never one of weight 0; too few points is an error")
{
    const std::size_t n = 20, d = 2;
    const auto x = clustered(n, d, 20, 4);
    std::vector<double> w(n, 1.0);
    w[3] = w[7] = 0;
    kmeans_random r(9);
    const auto c = initial_centres(x, w, n, d, 18, kmeans_init::random, r);
    std::set<std::size_t> picked;
    for (std::size_t i = 0; i < 18; ++i)
        picked.insert(cluster_of_point(x, &c[i * d], n, d, 20));
    CHECK(picked.size() == 18);
    CHECK(picked.count(3) == 0);
    CHECK(picked.count(7) == 0);
    CHECK_THROWS_AS(initial_centres(x, w, n, d, 19, kmeans_init::random, r), std::invalid_argument);
}

TEST_CASE("minibatch_kmeans: a batch update equals Sculley's per-row updates with rate 1/v")
{
    const std::size_t n = 300, d = 4, k = 3;
    const auto x = clustered(n, d, k, 5);
    std::vector<double> start(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(k * d));
    minibatch_kmeans model(start, k, d);

    // Sculley's Algorithm 1: cache assignments for the batch, then per row v[c]++, eta = 1/v[c],
    // c = (1 - eta) c + eta x.
    std::vector<double> ref = start, v(k, 0.0);
    for (std::size_t first = 0; first < n; first += 64) {
        const std::size_t last = std::min(n, first + 64);
        std::vector<std::size_t> assigned;
        for (std::size_t i = first; i < last; ++i)
            assigned.push_back(nearest_centre(&x[i * d], ref, k, d).first);
        for (std::size_t i = first; i < last; ++i) {
            const auto c = assigned[i - first];
            v[c] += 1;
            const double eta = 1 / v[c];
            for (std::size_t j = 0; j < d; ++j)
                ref[c * d + j] = (1 - eta) * ref[c * d + j] + eta * x[i * d + j];
        }
        for (std::size_t i = first; i < last; ++i)
            model.assign_dense(&x[i * d]);
        model.apply();
    }
    for (std::size_t i = 0; i < k * d; ++i)
        CHECK(model.centres()[i] == Approx(ref[i]).epsilon(1e-12));
    for (std::size_t c = 0; c < k; ++c)
        CHECK(model.counts()[c] == v[c]);
}

TEST_CASE("minibatch_kmeans: a batch split over ranks whose sums are added gives the same update")
{
    const std::size_t n = 200, d = 5, k = 4;
    const auto x = clustered(n, d, k, 6);
    std::vector<double> start(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(k * d));
    minibatch_kmeans whole(start, k, d), rank0(start, k, d), rank1(start, k, d);
    double w_whole = 0, w_split = 0;
    for (std::size_t i = 0; i < n; ++i) {
        w_whole += whole.assign_dense(&x[i * d]);
        w_split += (i % 2 ? rank1 : rank0).assign_dense(&x[i * d]);
    }
    // What MPI_Allreduce does: every rank ends with the sum of all ranks' batch statistics.
    for (std::size_t i = 0; i < k * d; ++i) {
        const double s = rank0.batch_sums()[i] + rank1.batch_sums()[i];
        rank0.batch_sums()[i] = rank1.batch_sums()[i] = s;
    }
    for (std::size_t c = 0; c < k; ++c) {
        const double s = rank0.batch_counts()[c] + rank1.batch_counts()[c];
        rank0.batch_counts()[c] = rank1.batch_counts()[c] = s;
    }
    whole.apply();
    rank0.apply();
    rank1.apply();
    CHECK(w_split == Approx(w_whole));
    for (std::size_t i = 0; i < k * d; ++i) {
        CHECK(rank0.centres()[i] == Approx(whole.centres()[i]).epsilon(1e-13));
        CHECK(rank1.centres()[i] == rank0.centres()[i]);
    }
}

TEST_CASE("minibatch_kmeans: sparse rows are assigned and absorbed as the same rows dense")
{
    const std::size_t d = 8, k = 3;
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(-3, 3);
    std::vector<double> start(k * d);
    for (auto& c : start)
        c = u(rng);
    minibatch_kmeans dense(start, k, d), sparse(start, k, d);
    for (int batch = 0; batch < 5; ++batch) {
        for (int r = 0; r < 40; ++r) {
            std::vector<double> row(d, 0.0), values;
            std::vector<std::uint64_t> keys;
            for (std::size_t j = 0; j < d; ++j)
                if (rng() % 2) {
                    row[j] = u(rng);
                    keys.push_back(j);
                    values.push_back(row[j]);
                }
            const double a = dense.assign_dense(row.data());
            const double b = sparse.assign_sparse(keys, values);
            CHECK(b == Approx(a).margin(1e-9));
        }
        dense.apply();
        sparse.apply();
    }
    for (std::size_t i = 0; i < k * d; ++i)
        CHECK(sparse.centres()[i] == Approx(dense.centres()[i]).epsilon(1e-12));
}

TEST_CASE("weighted_lloyd: converges to the weighted means of two obvious groups")
{
    // 1-D points 0, 1 (weights 1, 3) and 10, 12 (weights 2, 2): means 0.75 and 11.
    const std::vector<double> p{0, 1, 10, 12}, w{1, 3, 2, 2};
    std::vector<double> c{0, 12};
    const double cost = weighted_lloyd(p, w, 4, 1, c, 2, 100, 0);
    CHECK(c[0] == Approx(0.75));
    CHECK(c[1] == Approx(11));
    CHECK(cost == Approx(1 * 0.5625 + 3 * 0.0625 + 2 * 1 + 2 * 1));
}

TEST_CASE("reduce_centres: extra centres collapse onto k weighted means")
{
    // Six trained centres in two tight groups, with counts: the reduction finds the groups'
    // count-weighted means whatever centres k-means++ starts from.
    const std::vector<double> centres{0, 0, 0.2, 0, 0, 0.2, 50, 50, 50.4, 50, 50, 50.4};
    const std::vector<double> counts{10, 30, 10, 5, 5, 10};
    for (std::uint64_t seed : {1u, 2u, 3u, 4u}) {
        kmeans_random r(seed);
        auto reduced = reduce_centres(centres, counts, 6, 2, 2, kmeans_init::kmeans_plus_plus, 300, 1e-4, r);
        if (reduced[0] > reduced[2]) {
            std::swap(reduced[0], reduced[2]);
            std::swap(reduced[1], reduced[3]);
        }
        INFO("seed " << seed);
        CHECK(reduced[0] == Approx(30 * 0.2 / 50));
        CHECK(reduced[1] == Approx(10 * 0.2 / 50));
        CHECK(reduced[2] == Approx(50 + 5 * 0.4 / 20));
        CHECK(reduced[3] == Approx(50 + 10 * 0.4 / 20));
    }
    kmeans_random r(1);
    CHECK(reduce_centres(centres, counts, 6, 2, 6, kmeans_init::kmeans_plus_plus, 300, 1e-4, r) == centres);
}
