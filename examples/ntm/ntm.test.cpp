// The math of pipemode-ntm: every hand-written gradient against central finite differences
// (each activation, with and without batch normalisation), the optimizers' first steps against
// their formulas worked by hand, the encoder_layers syntax, the per-document draws, prediction's
// topic weights and early stopping. PyTorch's autograd checks the same gradients in ntm_test.py.
#include "ntm.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

using namespace pipemode::examples::ntm;

namespace {

// A batch of `n` documents of word counts over `v` words, some words absent.
matrix random_counts(Eigen::Index n, Eigen::Index v, std::mt19937_64& rng)
{
    std::poisson_distribution<int> poisson(1.5);
    matrix c(n, v);
    for (Eigen::Index i = 0; i < c.size(); ++i)
        c.data()[i] = poisson(rng);
    return c;
}

matrix random_normal(Eigen::Index n, Eigen::Index k, std::mt19937_64& rng)
{
    std::normal_distribution<double> normal;
    matrix e(n, k);
    for (Eigen::Index i = 0; i < e.size(); ++i)
        e.data()[i] = normal(rng);
    return e;
}

// Sets the biases, gamma and beta to non-trivial values too, so that their gradients are tested
// away from the initial point.
ntm_model random_model(const dimensions& d, std::uint64_t seed)
{
    auto m = ntm_model::initialized(d, seed);
    std::mt19937_64 rng(seed + 1);
    std::normal_distribution<double> normal(0, 0.3);
    for (auto& p : m.params())
        if (p.trained && p.value.cols() == 1)
            for (Eigen::Index i = 0; i < p.value.size(); ++i)
                p.value.data()[i] += normal(rng);
    return m;
}

} // namespace

TEST_CASE("every gradient equals central finite differences of the mean loss")
{
    std::mt19937_64 rng(16);
    // each activation, and batch norm under two of them: 7.7 s under ASan for all six pairs
    for (auto [act, bn] : {std::pair{activation::sigmoid, false}, std::pair{activation::tanh, true},
                           std::pair{activation::relu, false}, std::pair{activation::relu, true}}) {
        {
            CAPTURE(to_string(act), bn);
            // small, as each parameter costs two passes: some 80 parameters, two hidden layers
            const dimensions d{.feature_dim = 7, .num_topics = 2, .encoder_layers = {4, 3}, .act = act, .batch_norm = bn};
            auto m = random_model(d, 40 + static_cast<std::uint64_t>(act) * 2 + bn);
            const matrix counts = random_counts(6, 7, rng);
            const matrix eps = random_normal(6, 2, rng);
            const auto r = evaluate(m, counts, eps, true);
            REQUIRE(r.gradients.size() == m.params().size());
            const double h = 1e-6;
            double worst = 0;
            for (std::size_t i = 0; i < m.params().size(); ++i) {
                if (!m.params()[i].trained)
                    continue;
                auto& value = m.params()[i].value;
                for (Eigen::Index j = 0; j < value.size(); ++j) {
                    const double saved = value.data()[j];
                    value.data()[j] = saved + h;
                    const double up = evaluate(m, counts, eps, true).loss_sum;
                    value.data()[j] = saved - h;
                    const double down = evaluate(m, counts, eps, true).loss_sum;
                    value.data()[j] = saved;
                    const double numeric = (up - down) / (2 * h) / 6.0;
                    const double err = std::abs(numeric - r.gradients[i].data()[j]) / std::max(1.0, std::abs(numeric));
                    worst = std::max(worst, err);
                    if (err > 1e-5)
                        FAIL_CHECK(m.params()[i].name << "[" << j << "]: " << r.gradients[i].data()[j] << " against "
                                                      << numeric);
                }
            }
            CHECK(worst < 1e-5);
        }
    }
}

TEST_CASE("the loss is the reconstruction plus the KL term, written out for one document")
{
    const dimensions d{.feature_dim = 4, .num_topics = 2, .encoder_layers = {3}, .act = activation::tanh};
    auto m = random_model(d, 5);
    matrix counts(1, 4);
    counts << 2, 0, 1, 3;
    matrix eps(1, 2);
    eps << 0.5, -1.0;
    const auto r = evaluate(m, counts, eps, true);
    // The formulas of ntm.hpp's head, one document, in scalar code.
    std::vector<double> a(3);
    for (int j = 0; j < 3; ++j) {
        double s = m.get("encoder_c1")(j, 0);
        for (int w = 0; w < 4; ++w)
            s += m.get("encoder_W1")(j, w) * std::log1p(counts(0, w));
        a[j] = std::tanh(s);
    }
    double mu[2], lv[2], z[2], kl = 0;
    for (int t = 0; t < 2; ++t) {
        mu[t] = m.get("mu_b")(t, 0);
        lv[t] = m.get("logvar_b")(t, 0);
        for (int j = 0; j < 3; ++j) {
            mu[t] += m.get("mu_W")(t, j) * a[j];
            lv[t] += m.get("logvar_W")(t, j) * a[j];
        }
        z[t] = mu[t] + std::exp(lv[t] / 2) * eps(0, t);
        kl += 0.5 * (mu[t] * mu[t] + std::exp(lv[t]) - 1 - lv[t]);
    }
    const double theta0 = 1 / (1 + std::exp(z[1] - z[0]));
    const double theta[2] = {theta0, 1 - theta0};
    double logits[4], norm = 0;
    for (int w = 0; w < 4; ++w) {
        logits[w] = m.get("decoder_b")(w, 0) + m.get("topics")(w, 0) * theta[0] + m.get("topics")(w, 1) * theta[1];
        norm += std::exp(logits[w]);
    }
    double rec = 0;
    for (int w = 0; w < 4; ++w)
        rec -= counts(0, w) * (logits[w] - std::log(norm));
    CHECK(r.kl_sum == Approx(kl).epsilon(1e-12));
    CHECK(r.loss_sum == Approx(rec + kl).epsilon(1e-12));
    CHECK(r.words == 6);
}

TEST_CASE("the optimizers' first two steps follow their formulas")
{
    const dimensions d{.feature_dim = 2, .num_topics = 1, .encoder_layers = {1}};
    const double lr = 0.1, g1 = 0.5, g2 = -2.0, p0 = 0.3;
    for (auto kind : {optimizer_kind::sgd, optimizer_kind::adagrad, optimizer_kind::rmsprop, optimizer_kind::adam,
                      optimizer_kind::adadelta}) {
        CAPTURE(to_string(kind));
        ntm_model m(d);
        const auto i = m.index("mu_b");
        m.params()[i].value(0, 0) = p0;
        // rescale 2, clip 1.5 and weight decay 0.1 apply before every optimizer
        optimizer opt({.kind = kind, .learning_rate = lr, .rescale_gradient = 2.0, .clip_gradient = 1.5,
                       .weight_decay = 0.1});
        std::vector<matrix> g;
        for (const auto& p : m.params())
            g.push_back(matrix::Zero(p.value.rows(), p.value.cols()));
        double p = p0, s1 = 0, s2 = 0;
        int t = 0;
        for (double raw : {g1, g2}) {
            g[i](0, 0) = raw;
            opt.step(m, g);
            const double gg = std::clamp(2.0 * raw, -1.5, 1.5) + 0.1 * p;
            ++t;
            switch (kind) {
            case optimizer_kind::sgd: p -= lr * gg; break;
            case optimizer_kind::adagrad: s1 += gg * gg; p -= lr * gg / std::sqrt(s1 + 1e-7); break;
            case optimizer_kind::rmsprop: s1 = 0.9 * s1 + 0.1 * gg * gg; p -= lr * gg / std::sqrt(s1 + 1e-8); break;
            case optimizer_kind::adam:
                s1 = 0.9 * s1 + 0.1 * gg;
                s2 = 0.999 * s2 + 0.001 * gg * gg;
                p -= lr * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t)) * s1 / (std::sqrt(s2) + 1e-8);
                break;
            case optimizer_kind::adadelta: {
                s1 = 0.9 * s1 + 0.1 * gg * gg;
                const double u = std::sqrt(s2 + 1e-5) / std::sqrt(s1 + 1e-5) * gg;
                s2 = 0.9 * s2 + 0.1 * u * u;
                p -= u;
                break;
            }
            }
            CHECK(m.params()[i].value(0, 0) == Approx(p).epsilon(1e-14));
        }
        // parameters with a zero gradient and no weight decay pull stay where they were
        CHECK(m.get("logvar_b")(0, 0) == 0.0);
    }
}

TEST_CASE("encoder_layers is auto (3k then 2k) or positive sizes separated by commas")
{
    CHECK(parse_encoder_layers("auto", 10) == std::vector<std::size_t>{30, 20});
    CHECK(parse_encoder_layers("100,50", 10) == std::vector<std::size_t>{100, 50});
    CHECK(parse_encoder_layers("[64]", 10) == std::vector<std::size_t>{64});
    CHECK(parse_encoder_layers("8, 4", 10) == std::vector<std::size_t>{8, 4});
    for (const char* bad : {"", "0", "10,", "a", "10,-2", "1.5"})
        CHECK_THROWS_AS(parse_encoder_layers(bad, 10), std::invalid_argument);
    CHECK_THROWS_AS(parse_activation("softplus"), std::invalid_argument);
    CHECK_THROWS_AS(parse_optimizer("lbfgs"), std::invalid_argument);
    CHECK(parse_optimizer("rmsprop") == optimizer_kind::rmsprop);
}

TEST_CASE("a document's draws depend on its words, the seed and the epoch only")
{
    const std::vector<double> doc{0, 2, 0, 1}, other{0, 2, 0, 2};
    std::vector<double> a(3), b(3), c(3);
    const double ua = document_draws(document_hash(doc, 1, 0), a);
    const double ub = document_draws(document_hash(doc, 1, 0), b);
    CHECK(a == b);
    CHECK(ua == ub);
    CHECK(ua >= 0);
    CHECK(ua < 1);
    document_draws(document_hash(other, 1, 0), c);
    CHECK(c != a);
    document_draws(document_hash(doc, 1, 1), c);
    CHECK(c != a);
    document_draws(document_hash(doc, 2, 0), c);
    CHECK(c != a);
}

TEST_CASE("prediction's topic weights are softmax(mu) with the running statistics")
{
    std::mt19937_64 rng(3);
    const dimensions d{.feature_dim = 6, .num_topics = 4, .encoder_layers = {5}, .act = activation::relu, .batch_norm = true};
    auto m = random_model(d, 9);
    m.get("bn_mean1").setConstant(0.2);
    m.get("bn_var1").setConstant(2.0);
    const matrix counts = random_counts(5, 6, rng);
    const matrix t = topic_weights(m, counts);
    const auto r = evaluate(m, counts, matrix::Zero(5, 4), false);
    for (Eigen::Index i = 0; i < 5; ++i) {
        CHECK(t.row(i).sum() == Approx(1.0).epsilon(1e-12));
        const double norm = r.mu.row(i).array().exp().sum();
        for (Eigen::Index j = 0; j < 4; ++j)
            CHECK(t(i, j) == Approx(std::exp(r.mu(i, j)) / norm).epsilon(1e-12));
    }
    // one document alone gets the same weights as in the batch: no batch statistics at inference
    const matrix one = topic_weights(m, counts.topRows(1));
    CHECK((one.row(0) - t.row(0)).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("early stopping waits for patience epochs without a relative improvement")
{
    early_stopping s(2, 0.01);
    CHECK_FALSE(s.update(100));
    CHECK_FALSE(s.update(98));    // 2 % better: improves
    CHECK_FALSE(s.update(97.5));  // 0.5 %: stale 1
    CHECK(s.update(97.4));        // stale 2: stop
    CHECK(s.best() == 98);
}
