// The math of pipemode-lda: the moments' sums against the estimators written out densely (V x V
// and V x V x V on a small vocabulary), the randomized product against the dense moment, the
// tensor power method on a tensor of known eigenpairs, the recovery of known topics and Dirichlet
// parameters from exact population moments, digamma, and the inference of a topic mixture.
#include "lda.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using namespace pipemode::examples::lda;

namespace {

struct corpus {
    std::vector<std::vector<std::uint64_t>> words;
    std::vector<std::vector<double>> counts;

    document operator[](std::size_t i) const { return {words[i], counts[i]}; }
    std::size_t size() const { return words.size(); }
};

// Documents of 0 to 7 words over `v` words, so that every estimator's length cut is crossed.
corpus random_corpus(std::size_t v, std::size_t n, std::uint64_t seed)
{
    std::mt19937_64 gen(seed);
    corpus c;
    for (std::size_t d = 0; d < n; ++d) {
        std::vector<double> dense(v, 0.0);
        const std::size_t len = gen() % 8;
        for (std::size_t j = 0; j < len; ++j)
            dense[gen() % v] += 1;
        std::vector<std::uint64_t> w;
        std::vector<double> k;
        for (std::size_t i = 0; i < v; ++i)
            if (dense[i] != 0) {
                w.push_back(i);
                k.push_back(dense[i]);
            }
        c.words.push_back(w);
        c.counts.push_back(k);
    }
    return c;
}

// E[x1 x2^T] and E[x1 x2 x3] of one document by definition: sums over ordered triples of
// distinct word positions.
void dense_estimators(const document& d, std::size_t v, std::vector<double>& e2, std::vector<double>& e3)
{
    std::vector<std::size_t> tokens;
    for (std::size_t j = 0; j < d.words.size(); ++j)
        for (int r = 0; r < static_cast<int>(d.counts[j]); ++r)
            tokens.push_back(d.words[j]);
    const double len = static_cast<double>(tokens.size());
    e2.assign(v * v, 0.0);
    e3.assign(v * v * v, 0.0);
    for (std::size_t a = 0; a < tokens.size(); ++a)
        for (std::size_t b = 0; b < tokens.size(); ++b) {
            if (a == b)
                continue;
            e2[tokens[a] * v + tokens[b]] += 1 / (len * (len - 1));
            for (std::size_t c = 0; c < tokens.size(); ++c)
                if (c != a && c != b)
                    e3[(tokens[a] * v + tokens[b]) * v + tokens[c]] += 1 / (len * (len - 1) * (len - 2));
        }
}

} // namespace

TEST_CASE("the moments' sums equal the estimators summed by definition", "[lda]")
{
    const std::size_t v = 6, k = 3;
    const double alpha0 = 0.7;
    const auto c = random_corpus(v, 40, 3);
    moment_sums dense(v);
    for (std::size_t d = 0; d < c.size(); ++d)
        dense.add(c[d]);

    std::vector<double> m1(v, 0.0), e2(v * v, 0.0), e3(v * v * v, 0.0), one2, one3;
    double n1 = 0, n2 = 0, n3 = 0;
    for (std::size_t d = 0; d < c.size(); ++d) {
        const double len = c[d].length();
        if (len >= 1) {
            ++n1;
            for (std::size_t j = 0; j < c[d].words.size(); ++j)
                m1[c[d].words[j]] += c[d].counts[j] / len;
        }
        dense_estimators(c[d], v, one2, one3);
        if (len >= 2) {
            ++n2;
            for (std::size_t i = 0; i < v * v; ++i)
                e2[i] += one2[i];
        }
        if (len >= 3) {
            ++n3;
            for (std::size_t i = 0; i < v * v * v; ++i)
                e3[i] += one3[i];
        }
    }
    CHECK(dense.documents(1) == n1);
    CHECK(dense.documents(2) == n2);
    CHECK(dense.documents(3) == n3);
    REQUIRE(n3 > 5);
    REQUIRE(n1 > n3);  // the corpus crosses the length cuts

    const Eigen::VectorXd got_m1 = dense.first_moment();
    const row_matrix got_m2 = dense.second_moment(alpha0);
    for (std::size_t i = 0; i < v; ++i) {
        CHECK(got_m1(static_cast<Eigen::Index>(i)) == Approx(m1[i] / n1).margin(1e-14));
        for (std::size_t j = 0; j < v; ++j)
            CHECK(got_m2(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j))
                  == Approx(e2[i * v + j] / n2 - alpha0 / (alpha0 + 1) * m1[i] / n1 * m1[j] / n1).margin(1e-14));
    }

    SECTION("the randomized product is the dense moment times the test matrix")
    {
        const row_matrix x = test_matrix(v, 4, 11);
        moment_sums product(v, x);
        for (std::size_t d = 0; d < c.size(); ++d)
            product.add(c[d]);
        const row_matrix expected = got_m2 * x;
        CHECK((product.second_moment(alpha0) - expected).cwiseAbs().maxCoeff() < 1e-13);
        CHECK((test_matrix(v, 4, 11) - x).cwiseAbs().maxCoeff() == 0);  // the same on every rank
        CHECK((test_matrix(v, 4, 12) - x).cwiseAbs().maxCoeff() > 0);
    }

    SECTION("the whitened third moment is M3(W, W, W) of the dense estimator")
    {
        const whitening wh = whiten_dense(got_m2, k);
        const row_matrix check = wh.w.transpose() * got_m2 * wh.w;
        CHECK((check - row_matrix::Identity(3, 3)).cwiseAbs().maxCoeff() < 1e-10);
        third_moment_sums third(wh.w);
        for (std::size_t d = 0; d < c.size(); ++d)
            third.add(c[d]);
        const auto t = third.third_moment(got_m1, alpha0);
        // M3 by its definition, then multiplied by W in each mode.
        std::vector<double> m3(v * v * v);
        const double c1 = alpha0 / (alpha0 + 2), c2 = 2 * alpha0 * alpha0 / ((alpha0 + 1) * (alpha0 + 2));
        const auto mu = [&](std::size_t i) { return m1[i] / n1; };
        for (std::size_t a = 0; a < v; ++a)
            for (std::size_t b = 0; b < v; ++b)
                for (std::size_t cc = 0; cc < v; ++cc)
                    m3[(a * v + b) * v + cc] = e3[(a * v + b) * v + cc] / n3
                                               - c1 * (e2[a * v + b] * mu(cc) + e2[a * v + cc] * mu(b) + e2[b * v + cc] * mu(a)) / n2
                                               + c2 * mu(a) * mu(b) * mu(cc);
        double worst = 0;
        for (std::size_t p = 0; p < k; ++p)
            for (std::size_t q = 0; q < k; ++q)
                for (std::size_t r = 0; r < k; ++r) {
                    double s = 0;
                    for (std::size_t a = 0; a < v; ++a)
                        for (std::size_t b = 0; b < v; ++b)
                            for (std::size_t cc = 0; cc < v; ++cc)
                                s += m3[(a * v + b) * v + cc] * wh.w(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(p))
                                     * wh.w(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(q))
                                     * wh.w(static_cast<Eigen::Index>(cc), static_cast<Eigen::Index>(r));
                    worst = std::max(worst, std::abs(s - t[(p * k + q) * k + r]));
                }
        CHECK(worst < 1e-10);
    }
}

TEST_CASE("exact population moments give back the topics and the Dirichlet parameters", "[lda]")
{
    // Three topics over 5 words, linearly independent; alpha sums to alpha0.
    const std::size_t v = 5, k = 3;
    const std::vector<std::vector<double>> topics = {
        {0.5, 0.3, 0.1, 0.1, 0.0}, {0.0, 0.1, 0.6, 0.1, 0.2}, {0.2, 0.0, 0.0, 0.3, 0.5}};
    const std::vector<double> alpha = {0.2, 0.5, 0.3};
    const double alpha0 = 1.0;
    row_matrix m2 = row_matrix::Zero(v, v);
    std::vector<double> m3(v * v * v, 0.0);
    for (std::size_t i = 0; i < k; ++i) {
        const double w2 = alpha[i] / ((alpha0 + 1) * alpha0);
        const double w3 = 2 * alpha[i] / ((alpha0 + 2) * (alpha0 + 1) * alpha0);
        for (std::size_t a = 0; a < v; ++a)
            for (std::size_t b = 0; b < v; ++b) {
                m2(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(b)) += w2 * topics[i][a] * topics[i][b];
                for (std::size_t c = 0; c < v; ++c)
                    m3[(a * v + b) * v + c] += w3 * topics[i][a] * topics[i][b] * topics[i][c];
            }
    }
    const whitening wh = whiten_dense(m2, k);
    std::vector<double> t(k * k * k, 0.0);
    for (std::size_t p = 0; p < k; ++p)
        for (std::size_t q = 0; q < k; ++q)
            for (std::size_t r = 0; r < k; ++r)
                for (std::size_t a = 0; a < v; ++a)
                    for (std::size_t b = 0; b < v; ++b)
                        for (std::size_t c = 0; c < v; ++c)
                            t[(p * k + q) * k + r] += m3[(a * v + b) * v + c]
                                                      * wh.w(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(p))
                                                      * wh.w(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(q))
                                                      * wh.w(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(r));
    const auto pairs = tensor_power_method(t, k, 10, 1000, 1e-12, 7);
    const lda_model m = recover(pairs, wh, alpha0);
    REQUIRE(m.num_topics == k);
    REQUIRE(m.vocabulary == v);
    std::vector<bool> found(k, false);
    for (std::size_t i = 0; i < k; ++i) {
        // match by the largest word
        std::size_t best = 0;
        double best_distance = 1e9;
        for (std::size_t j = 0; j < k; ++j) {
            double l1 = 0;
            for (std::size_t w = 0; w < v; ++w)
                l1 += std::abs(m.topic_word(i, w) - topics[j][w]);
            if (l1 < best_distance) {
                best_distance = l1;
                best = j;
            }
        }
        CHECK(best_distance < 1e-8);
        CHECK(m.alpha[i] == Approx(alpha[best]).epsilon(1e-8));
        found[best] = true;
    }
    CHECK((found[0] && found[1] && found[2]));
}

TEST_CASE("the tensor power method finds an orthogonal decomposition", "[lda]")
{
    const std::size_t k = 4;
    const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(Eigen::MatrixXd::Random(4, 4)).householderQ();
    const std::vector<double> lambda = {3.0, 2.0, 1.5, 0.5};
    std::vector<double> t(k * k * k, 0.0);
    for (std::size_t i = 0; i < k; ++i)
        for (std::size_t a = 0; a < k; ++a)
            for (std::size_t b = 0; b < k; ++b)
                for (std::size_t c = 0; c < k; ++c)
                    t[(a * k + b) * k + c] += lambda[i] * q(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(i))
                                              * q(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(i))
                                              * q(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(i));
    const auto got = tensor_power_method(t, k, 10, 1000, 1e-12, 1);
    std::vector<double> values(got.values.data(), got.values.data() + k);
    std::sort(values.begin(), values.end());
    CHECK(values[0] == Approx(0.5).epsilon(1e-9));
    CHECK(values[3] == Approx(3.0).epsilon(1e-9));
    for (Eigen::Index i = 0; i < 4; ++i) {
        // each found vector is one of q's columns
        const double best = (q.transpose() * got.vectors.col(i)).cwiseAbs().maxCoeff();
        CHECK(best == Approx(1.0).epsilon(1e-9));
    }
}

TEST_CASE("digamma", "[lda]")
{
    CHECK(digamma(1.0) == Approx(-0.57721566490153286).epsilon(1e-14));
    CHECK(digamma(0.5) == Approx(-1.9635100260214235).epsilon(1e-14));
    CHECK(digamma(10.0) == Approx(2.2517525890667211).epsilon(1e-14));
    CHECK(digamma(0.01) == Approx(-100.56088545786867).epsilon(1e-14));
}

TEST_CASE("a document's words of one topic give that topic the mixture", "[lda]")
{
    lda_model m;
    m.num_topics = 2;
    m.vocabulary = 4;
    m.alpha = {0.1, 0.1};
    m.beta = {0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5};
    const std::vector<std::uint64_t> words = {2, 3};
    const std::vector<double> counts = {5, 5};
    const inference inf;
    std::vector<double> theta;
    const double ll = inf.log_likelihood(m, {words, counts}, theta);
    REQUIRE(theta.size() == 2);
    // gamma converges to (0.1, 10.1)
    CHECK(theta[1] == Approx(10.1 / 10.2).epsilon(1e-6));
    CHECK(ll == Approx(10 * std::log(10.1 / 10.2 * 0.5)).epsilon(1e-6));
}
