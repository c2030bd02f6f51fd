// The math of pipemode-rcf: splitmix64's published outputs, the reservoirs (all points kept
// while there are fewer than k, a subset of the stream after, uniform inclusion, merging shards
// equal to one stream with the same keys' law), the trees' invariants (masses, cuts inside the
// boxes, equal points in one leaf, determinism), the scores (an outlier above the cluster, seen
// points below unseen), shingles, and the three-sigma threshold.
#include "rcf.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

using namespace pipemode::examples::rcf;

namespace {

// n points of dim values from N(0, 1), row-major.
std::vector<double> gaussian_points(std::size_t n, std::size_t dim, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g;
    std::vector<double> out(n * dim);
    for (auto& v : out)
        v = g(rng);
    return out;
}

// Offers points (i, 0) for i in [begin, end) to `s`.
void offer_indices(forest_sampler& s, std::size_t begin, std::size_t end)
{
    for (std::size_t i = begin; i < end; ++i) {
        if (s.wants_next()) {
            const double p[2] = {static_cast<double>(i), 0.0};
            s.add(p);
        }
        else {
            s.skip();
        }
    }
}

} // namespace

TEST_CASE("splitmix64 gives the reference implementation's outputs", "[rcf]")
{
    // The first outputs of Vigna's splitmix64.c seeded with 0 and with 1234567.
    splitmix64 zero(0);
    CHECK(zero.next() == 0xE220A8397B1DCDAFULL);
    CHECK(zero.next() == 0x6E789E6AA1B965F4ULL);
    CHECK(zero.next() == 0x06C45D188009454FULL);
    splitmix64 g(1234567);
    CHECK(g.next() == 6457827717110365317ULL);
    CHECK(g.next() == 3203168211198807973ULL);
    // uniform() is the top 53 bits over 2^53.
    splitmix64 a(7), b(7);
    CHECK(a.uniform() == static_cast<double>(b.next() >> 11) / 9007199254740992.0);
}

TEST_CASE("a reservoir keeps every point while there are fewer than k", "[rcf]")
{
    forest_sampler s(3, 10, 2, 5);
    offer_indices(s, 0, 7);
    const auto sample = forest_sampler::merge(s.exported(), 3, 10, 2);
    for (std::size_t t = 0; t < 3; ++t) {
        REQUIRE(sample.size(t) == 7);
        std::set<double> seen;
        for (std::size_t i = 0; i < 7; ++i)
            seen.insert(sample.points[t][2 * i]);
        CHECK(seen == std::set<double>{0, 1, 2, 3, 4, 5, 6});
        for (std::size_t i = 1; i < 7; ++i)
            CHECK(sample.keys[t][i - 1] < sample.keys[t][i]);
    }
    CHECK(s.offered() == 7);
}

TEST_CASE("a full reservoir is k distinct points of the stream, and each point's chance is k / n", "[rcf]")
{
    // 2000 trees of 10 from 200 points: each point is expected in 100 reservoirs. A chi-square
    // over the 200 counts with 199 degrees of freedom stays below 282 (p = 0.0001) for a uniform
    // sampler; a sampler that favoured early or late points (a reservoir that stopped taking
    // points, a wrong skip length) is far above it.
    const std::size_t trees = 2000, k = 10, n = 200;
    forest_sampler s(trees, k, 2, 11);
    offer_indices(s, 0, n);
    const auto sample = forest_sampler::merge(s.exported(), trees, k, 2);
    std::vector<double> counts(n, 0.0);
    for (std::size_t t = 0; t < trees; ++t) {
        REQUIRE(sample.size(t) == k);
        std::set<double> distinct;
        for (std::size_t i = 0; i < k; ++i) {
            const double id = sample.points[t][2 * i];
            distinct.insert(id);
            REQUIRE(id >= 0);
            REQUIRE(id < n);
            counts[static_cast<std::size_t>(id)] += 1;
        }
        CHECK(distinct.size() == k);
    }
    const double expected = static_cast<double>(trees * k) / n;
    double chi2 = 0;
    for (double c : counts)
        chi2 += (c - expected) * (c - expected) / expected;
    CHECK(chi2 < 282.0);
    // And the late half of the stream is not under-sampled (the skip-ahead's part).
    double late = 0;
    for (std::size_t i = n / 2; i < n; ++i)
        late += counts[i];
    CHECK(std::abs(late / static_cast<double>(trees * k) - 0.5) < 0.02);
}

TEST_CASE("merging shards keeps the smallest keys of all of them", "[rcf]")
{
    // Shards of 30 and 300 points; the merged reservoir holds the k smallest keys of the union,
    // so over many trees the small shard gets 30 / 330 of the places, not half.
    const std::size_t trees = 3000, k = 5;
    forest_sampler a(trees, k, 2, sampler_seed(3, 0)), b(trees, k, 2, sampler_seed(3, 1));
    offer_indices(a, 0, 30);
    offer_indices(b, 30, 330);
    auto all = a.exported();
    const auto more = b.exported();
    all.insert(all.end(), more.begin(), more.end());
    const auto sample = forest_sampler::merge(all, trees, k, 2);
    double small = 0;
    for (std::size_t t = 0; t < trees; ++t) {
        REQUIRE(sample.size(t) == k);
        for (std::size_t i = 0; i < k; ++i)
            small += sample.points[t][2 * i] < 30 ? 1 : 0;
        // The merged keys are the smallest of the union: each at most every key left out.
        for (std::size_t i = 1; i < k; ++i)
            CHECK(sample.keys[t][i - 1] <= sample.keys[t][i]);
    }
    const double share = small / static_cast<double>(trees * k);
    // Binomial(15000, 1/11): standard deviation 0.0023.
    CHECK(std::abs(share - 30.0 / 330.0) < 0.012);
}

TEST_CASE("a tree's nodes: masses add up, cuts lie inside the boxes, equal points share a leaf", "[rcf]")
{
    auto points = gaussian_points(100, 3, 1);
    // Five copies of one point.
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            points[(90 + i) * 3 + j] = 7.0 + static_cast<double>(j);
    const random_cut_tree tree(points, 3, 42);
    const auto& nodes = tree.nodes();
    REQUIRE(nodes[0].mass == 100);
    std::size_t leaves = 0, leaf_mass = 0;
    bool five = false;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const auto& nd = nodes[i];
        if (nd.dim < 0) {
            ++leaves;
            leaf_mass += nd.mass;
            five = five || nd.mass == 5;
            continue;
        }
        const auto d = static_cast<std::size_t>(nd.dim);
        CHECK(nodes[i + 1].mass + nodes[nd.right].mass == nd.mass);
        CHECK(tree.lo(i)[d] <= nd.cut);
        CHECK(nd.cut < tree.hi(i)[d]);
        // A child's box lies within its parent's, on the right side of the cut.
        CHECK(tree.hi(i + 1)[d] <= nd.cut);
        CHECK(tree.lo(nd.right)[d] > nd.cut);
    }
    CHECK(leaf_mass == 100);
    CHECK(leaves == 96);  // 96 distinct points, one of them five times
    CHECK(five);

    const random_cut_tree again(points, 3, 42);
    REQUIRE(again.nodes().size() == nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        CHECK(again.nodes()[i].dim == nodes[i].dim);
        CHECK(again.nodes()[i].cut == nodes[i].cut);
    }
}

TEST_CASE("cut dimensions follow the ranges", "[rcf]")
{
    // Two points differing by 1 in dimension 0 and by 3 in dimension 1: the root's cut is in
    // dimension 1 three times in four.
    const std::vector<double> points = {0.0, 0.0, 1.0, 3.0};
    int ones = 0;
    const int trees = 4000;
    for (int t = 0; t < trees; ++t)
        ones += random_cut_tree(points, 2, static_cast<std::uint64_t>(t)).nodes()[0].dim == 1 ? 1 : 0;
    CHECK(std::abs(ones / double(trees) - 0.75) < 0.03);
}

TEST_CASE("an outlier scores above the cluster's points, and a seen point below an unseen one", "[rcf]")
{
    const auto cluster = gaussian_points(2000, 2, 3);
    forest_sampler s(50, 128, 2, 9);
    for (std::size_t i = 0; i < 2000; ++i)
        s.add(std::span<const double>(cluster.data() + 2 * i, 2));
    const auto sample = forest_sampler::merge(s.exported(), 50, 128, 2);
    const random_cut_forest forest(sample, 4);
    REQUIRE(forest.trees().size() == 50);
    const double centre[2] = {0.0, 0.0}, far[2] = {8.0, -8.0};
    const double normal = forest.score(centre), outlier = forest.score(far);
    CHECK(outlier > 2.0 * normal);
    CHECK(normal > 0.3);
    CHECK(normal < 2.0);
    // A point of tree 0's sample, scored by tree 0, against a point just beside it.
    const auto& tree = forest.trees()[0];
    const double* p = sample.points[0].data();
    const double beside[2] = {p[0] + 1e-9, p[1]};
    CHECK(tree.score(std::span<const double>(p, 2)) < tree.score(beside));
    // An empty tree scores 0.
    const random_cut_tree empty(std::span<const double>(), 2, 1);
    CHECK(empty.score(centre) == 0.0);
}

TEST_CASE("shingles are the last S records, oldest first", "[rcf]")
{
    shingler sh(2, 3);
    std::vector<double> out(6);
    const double r0[2] = {0, 10}, r1[2] = {1, 11}, r2[2] = {2, 12}, r3[2] = {3, 13};
    CHECK_FALSE(sh.push(r0));
    CHECK_FALSE(sh.push(r1));
    REQUIRE(sh.push(r2));
    sh.point(out);
    CHECK(out == std::vector<double>{0, 10, 1, 11, 2, 12});
    REQUIRE(sh.push(r3));
    sh.point(out);
    CHECK(out == std::vector<double>{1, 11, 2, 12, 3, 13});
    CHECK(sh.point_dim() == 6);
}

TEST_CASE("the threshold is the mean plus three population standard deviations", "[rcf]")
{
    const std::vector<double> s = {1, 2, 3, 4};
    CHECK(three_sigma_threshold(s) == Approx(2.5 + 3 * std::sqrt(1.25)).epsilon(1e-15));
    CHECK(three_sigma_threshold({}) == 0.0);
}

TEST_CASE("a tree as deep as its sample: points spaced geometrically on a line", "[rcf]")
{
    // A uniform cut of [1, 2^k] almost always separates only the largest point, so the tree is a
    // chain about k deep: past the 64 levels the scorer keeps on its stack.
    std::vector<double> points;
    for (int i = 0; i < 200; ++i)
        points.push_back(std::ldexp(1.0, i));
    const random_cut_tree tree(points, 1, 3);
    // The depth of the leaf of the smallest point: the left-most path.
    std::size_t depth = 0, i = 0;
    while (tree.nodes()[i].dim >= 0) {
        i = i + 1;
        ++depth;
    }
    CHECK(depth > 64);
    CHECK(tree.nodes().size() == 399);
    // Seen at depth D with mass 1 of 200: (1 - 1/400) / (D + 1) x log2(201); nothing to climb,
    // since every ancestor's box holds the point.
    const double one = 1.0;
    const double expected = (1.0 - 1.0 / 400.0) / (static_cast<double>(depth) + 1.0) * std::log2(201.0);
    CHECK(tree.score(std::span<const double>(&one, 1)) == Approx(expected).epsilon(1e-14));
    // Unseen, beyond the largest: separated at the root with probability near 1.
    const double beyond = std::ldexp(1.0, 201);
    CHECK(tree.score(std::span<const double>(&beyond, 1)) > 0.7 * std::log2(201.0));
}
