// The math of pipemode-pca: the symmetric eigensolver on matrices with known decompositions,
// Chan's merge of moments against the two-pass textbook formulas, sparse batches against the
// same rows dense, and the randomized sketch against the exact covariance.
#include "streaming_pca.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using namespace pipemode::examples;

namespace {

// A random orthogonal n x n matrix (rows orthonormal): Gram-Schmidt on Gaussian rows, twice.
std::vector<double> random_orthogonal(std::size_t n, std::uint64_t seed)
{
    auto q = gaussian_matrix(n, n, seed);
    for (int pass = 0; pass < 2; ++pass)
        for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t j = 0; j < i; ++j) {
                double dot = 0;
                for (std::size_t k = 0; k < n; ++k)
                    dot += q[i * n + k] * q[j * n + k];
                for (std::size_t k = 0; k < n; ++k)
                    q[i * n + k] -= dot * q[j * n + k];
            }
            double norm = 0;
            for (std::size_t k = 0; k < n; ++k)
                norm += q[i * n + k] * q[i * n + k];
            for (std::size_t k = 0; k < n; ++k)
                q[i * n + k] /= std::sqrt(norm);
        }
    return q;
}

// Q^T diag(lambda) Q: eigenvector i is row i of q.
std::vector<double> with_spectrum(const std::vector<double>& q, const std::vector<double>& lambda)
{
    const std::size_t n = lambda.size();
    std::vector<double> a(n * n, 0.0);
    for (std::size_t c = 0; c < n; ++c)
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j)
                a[i * n + j] += lambda[c] * q[c * n + i] * q[c * n + j];
    return a;
}

// |<u, v>| for rows of length n.
double abs_dot(const double* u, const double* v, std::size_t n)
{
    double s = 0;
    for (std::size_t k = 0; k < n; ++k)
        s += u[k] * v[k];
    return std::abs(s);
}

// Rows with a strongly anisotropic covariance and a mean far from 0 (to make cancellation show).
std::vector<double> sample_rows(std::size_t m, std::size_t d, std::uint64_t seed, double offset)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<double> x(m * d);
    for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < d; ++j)
            x[r * d + j] = offset + normal(rng) * (1.0 + 3.0 * static_cast<double>(d - j)) + (j ? x[r * d + j - 1] * 0.5 : 0);
    return x;
}

// Two-pass mean and M2 (the textbook definition), in long double.
void two_pass(const std::vector<double>& x, std::size_t m, std::size_t d, std::vector<double>& mean, std::vector<double>& m2)
{
    std::vector<long double> mu(d, 0);
    for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < d; ++j)
            mu[j] += x[r * d + j];
    mean.assign(d, 0);
    for (std::size_t j = 0; j < d; ++j)
        mean[j] = static_cast<double>(mu[j] / static_cast<long double>(m));
    m2.assign(d * d, 0);
    for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j) {
            long double s = 0;
            for (std::size_t r = 0; r < m; ++r)
                s += (static_cast<long double>(x[r * d + i]) - mean[i]) * (static_cast<long double>(x[r * d + j]) - mean[j]);
            m2[i * d + j] = static_cast<double>(s);
        }
}

} // namespace

TEST_CASE("eigen: a diagonal matrix gives its diagonal in decreasing order and unit vectors")
{
    const std::vector<double> a{2, 0, 0, 0, 5, 0, 0, 0, -1};
    const auto e = decompose_symmetric(a, 3);
    REQUIRE(e.values.size() == 3);
    CHECK(e.values[0] == Approx(5));
    CHECK(e.values[1] == Approx(2));
    CHECK(e.values[2] == Approx(-1));
    CHECK(e.vector(0, 1) == Approx(1));
    CHECK(e.vector(1, 0) == Approx(1));
    CHECK(e.vector(2, 2) == Approx(1));
}

TEST_CASE("eigen: a 2 x 2 matrix with a known decomposition")
{
    // [[2, 1], [1, 2]]: eigenvalues 3 and 1, vectors (1, 1)/sqrt 2 and (1, -1)/sqrt 2.
    const std::vector<double> a{2, 1, 1, 2};
    const auto e = decompose_symmetric(a, 2);
    CHECK(e.values[0] == Approx(3));
    CHECK(e.values[1] == Approx(1));
    CHECK(e.vector(0, 0) == Approx(std::sqrt(0.5)));
    CHECK(e.vector(0, 1) == Approx(std::sqrt(0.5)));
    CHECK(std::abs(e.vector(1, 0)) == Approx(std::sqrt(0.5)));
    CHECK(e.vector(1, 0) == Approx(-e.vector(1, 1)));
}

TEST_CASE("eigen: 1 x 1, zero and identity matrices")
{
    CHECK(decompose_symmetric(std::vector<double>{7}, 1).values[0] == 7);
    const auto z = decompose_symmetric(std::vector<double>(16, 0.0), 4);
    for (double v : z.values)
        CHECK(v == 0);
    std::vector<double> id(25, 0.0);
    for (int i = 0; i < 5; ++i)
        id[static_cast<std::size_t>(i * 6)] = 1;
    const auto e = decompose_symmetric(id, 5);
    for (double v : e.values)
        CHECK(v == Approx(1));
    // A degenerate spectrum still yields an orthonormal basis.
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 5; ++j)
            CHECK(abs_dot(&e.vectors[i * 5], &e.vectors[j * 5], 5) == Approx(i == j ? 1.0 : 0.0).margin(1e-12));
}

TEST_CASE("eigen: random matrices with a known spectrum, sizes 2 to 60")
{
    for (std::size_t n : {2u, 3u, 7u, 20u, 60u}) {
        const auto q = random_orthogonal(n, n);
        std::vector<double> lambda(n);
        for (std::size_t i = 0; i < n; ++i)
            lambda[i] = std::pow(0.7, static_cast<double>(i)) * 10 - (i % 3 == 2 ? 3.0 : 0.0);
        const auto a = with_spectrum(q, lambda);
        const auto e = decompose_symmetric(a, n);
        auto sorted = lambda;
        std::sort(sorted.rbegin(), sorted.rend());
        for (std::size_t i = 0; i < n; ++i) {
            INFO("n = " << n << ", eigenvalue " << i);
            CHECK(e.values[i] == Approx(sorted[i]).margin(1e-10));
            // A v = lambda v, and v is one of the rows of q (the spectrum has no repeats).
            double residual = 0;
            for (std::size_t r = 0; r < n; ++r) {
                double av = 0;
                for (std::size_t k = 0; k < n; ++k)
                    av += a[r * n + k] * e.vector(i, k);
                residual = std::max(residual, std::abs(av - e.values[i] * e.vector(i, r)));
            }
            CHECK(residual < 1e-10);
            const auto c = static_cast<std::size_t>(std::find(lambda.begin(), lambda.end(), sorted[i]) - lambda.begin());
            CHECK(abs_dot(&e.vectors[i * n], &q[c * n], n) == Approx(1).epsilon(1e-9));
        }
    }
}

TEST_CASE("eigen: refuses a non-square or non-finite matrix")
{
    CHECK_THROWS_AS(decompose_symmetric(std::vector<double>(5, 0.0), 2), std::invalid_argument);
    CHECK_THROWS_AS(decompose_symmetric(std::vector<double>{1, NAN, NAN, 1}, 2), std::invalid_argument);
}

TEST_CASE("moments: Chan's merge over uneven batches equals the two-pass formulas")
{
    const std::size_t d = 6, m = 257;
    const auto x = sample_rows(m, d, 11, 1e4);  // a large mean: one-pass sums would cancel
    std::vector<double> mean, m2;
    two_pass(x, m, d, mean, m2);

    for (std::size_t batch : {1u, 2u, 7u, 64u, 257u}) {
        moments s(d);
        for (std::size_t r = 0; r < m; r += batch) {
            const std::size_t n = std::min(batch, m - r);
            std::vector<double> rows(x.begin() + static_cast<std::ptrdiff_t>(r * d),
                                     x.begin() + static_cast<std::ptrdiff_t>((r + n) * d));
            s.add_dense(rows, n);
        }
        s.symmetrize();
        INFO("batch " << batch);
        CHECK(s.count() == m);
        double trace = 0;
        for (std::size_t i = 0; i < d; ++i) {
            CHECK(s.mean()[i] == Approx(mean[i]).epsilon(1e-13));
            trace += m2[i * d + i];
            for (std::size_t j = 0; j < d; ++j)
                CHECK(s.m2()[i * d + j] == Approx(m2[i * d + j]).epsilon(1e-10).margin(1e-9 * m2[0]));
        }
        CHECK(s.trace() == Approx(trace).epsilon(1e-10));
    }
}

TEST_CASE("moments: merging accumulators equals one accumulator over all rows")
{
    const std::size_t d = 5, m = 300;
    const auto x = sample_rows(m, d, 12, 3.0);
    moments whole(d), a(d), b(d), empty(d);
    auto rows = x;
    whole.add_dense(rows, m);
    std::vector<double> first(x.begin(), x.begin() + 100 * d), rest(x.begin() + 100 * d, x.end());
    a.add_dense(first, 100);
    b.add_dense(rest, 200);
    a.merge(empty);  // merging nothing changes nothing
    a.merge(b);
    CHECK(a.count() == whole.count());
    for (std::size_t i = 0; i < d; ++i)
        CHECK(a.mean()[i] == Approx(whole.mean()[i]).epsilon(1e-12));
    for (std::size_t i = 0; i < d * d; ++i)
        CHECK(a.m2()[i] == Approx(whole.m2()[i]).epsilon(1e-10).margin(1e-12));
    CHECK(a.trace() == Approx(whole.trace()).epsilon(1e-12));
}

TEST_CASE("moments: sparse batches equal the same rows dense")
{
    const std::size_t d = 9, m = 120;
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(-2, 2);
    std::vector<double> dense(m * d, 0.0);
    std::vector<std::uint64_t> offsets{0}, keys;
    std::vector<double> values;
    for (std::size_t r = 0; r < m; ++r) {
        for (std::size_t j = 0; j < d; ++j)
            if ((rng() % 3) == 0) {
                const double v = u(rng) + static_cast<double>(j);
                dense[r * d + j] = v;
                keys.push_back(j);
                values.push_back(v);
            }
        offsets.push_back(keys.size());
    }
    for (bool projected : {false, true}) {
        pca_options o{.feature_dim = d, .num_components = 3,
                      .mode = projected ? pca_mode::randomized : pca_mode::regular, .extra_components = 2};
        auto sd = make_pca_moments(o);
        auto ss = make_pca_moments(o);
        for (std::size_t r = 0; r < m; r += 50) {
            const std::size_t n = std::min<std::size_t>(50, m - r);
            std::vector<double> rows(dense.begin() + static_cast<std::ptrdiff_t>(r * d),
                                     dense.begin() + static_cast<std::ptrdiff_t>((r + n) * d));
            sd.add_dense(rows, n);
            std::vector<std::uint64_t> off;
            for (std::size_t i = r; i <= r + n; ++i)
                off.push_back(offsets[i] - offsets[r]);
            ss.add_sparse(off, std::span(keys).subspan(offsets[r], offsets[r + n] - offsets[r]),
                          std::span(values).subspan(offsets[r], offsets[r + n] - offsets[r]), n);
        }
        INFO("projected " << projected);
        CHECK(ss.count() == sd.count());
        for (std::size_t i = 0; i < d; ++i)
            CHECK(ss.mean()[i] == Approx(sd.mean()[i]).epsilon(1e-12));
        for (std::size_t i = 0; i < ss.m2().size(); ++i)
            CHECK(ss.m2()[i] == Approx(sd.m2()[i]).epsilon(1e-9).margin(1e-9));
        CHECK(ss.trace() == Approx(sd.trace()).epsilon(1e-12));
    }
}

TEST_CASE("finish_pca: regular mode recovers a planted spectrum; randomized mode agrees on a low-rank one")
{
    // Rows = Z diag(sigma) Q + mean with a rank-4 signal plus tiny noise in d = 12.
    const std::size_t d = 12, m = 4000;
    const auto q = random_orthogonal(d, 3);
    const std::vector<double> sigma{5, 3, 2, 1};
    std::mt19937_64 rng(8);
    std::normal_distribution<double> normal;
    std::vector<double> x(m * d);
    for (std::size_t r = 0; r < m; ++r) {
        for (std::size_t j = 0; j < d; ++j)
            x[r * d + j] = 10.0 + 1e-3 * normal(rng);
        for (std::size_t c = 0; c < sigma.size(); ++c) {
            const double z = sigma[c] * normal(rng);
            for (std::size_t j = 0; j < d; ++j)
                x[r * d + j] += z * q[c * d + j];
        }
    }
    pca_options regular{.feature_dim = d, .num_components = 3};
    auto s = make_pca_moments(regular);
    auto rows = x;
    s.add_dense(rows, m);
    s.symmetrize();
    const auto exact = finish_pca(s, regular);
    REQUIRE(exact.components.size() == 3 * d);
    for (std::size_t c = 0; c < 3; ++c) {
        CHECK(exact.explained_variance[c] == Approx(sigma[c] * sigma[c]).epsilon(0.1));
        CHECK(abs_dot(&exact.components[c * d], &q[c * d], d) == Approx(1).epsilon(1e-3));
    }
    CHECK(exact.mean[0] == Approx(10).epsilon(0.02));

    pca_options randomized{.feature_dim = d, .num_components = 3, .mode = pca_mode::randomized, .extra_components = 3};
    auto sk = make_pca_moments(randomized);
    rows = x;
    sk.add_dense(rows, m);
    const auto approx = finish_pca(sk, randomized);
    for (std::size_t c = 0; c < 3; ++c) {
        CHECK(approx.explained_variance[c] == Approx(exact.explained_variance[c]).epsilon(1e-6));
        CHECK(abs_dot(&approx.components[c * d], &exact.components[c * d], d) == Approx(1).epsilon(1e-8));
        CHECK(approx.explained_variance_ratio[c] == Approx(exact.explained_variance_ratio[c]).epsilon(1e-6));
    }
}

TEST_CASE("gaussian_matrix: the same seed gives the same matrix; another seed another")
{
    CHECK(gaussian_matrix(4, 3, 9) == gaussian_matrix(4, 3, 9));
    CHECK(gaussian_matrix(4, 3, 9) != gaussian_matrix(4, 3, 10));
}
