// The math of pipemode-factorization-machines: the O(nnz k) pairwise term against the O(n^2)
// sum over pairs, sparse against dense scoring and gradients, the gradients against finite
// differences, the AdaGrad step, the packing of gradients between ranks, and the metrics.
#include "factorization_machines.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using namespace pipemode::examples::fm;

namespace {

fm_model random_model(predictor_type p, std::size_t d, std::size_t k, std::uint64_t seed)
{
    return fm_model::initialized(p, d, k, {.sigma = 0.5}, {.sigma = 0.5}, {.sigma = 0.5}, seed);
}

// yhat by definition: w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j over a dense row.
double brute_force(const fm_model& m, const std::vector<double>& x)
{
    double y = m.w0;
    for (std::size_t i = 0; i < m.feature_dim; ++i)
        y += m.w[i] * x[i];
    for (std::size_t i = 0; i < m.feature_dim; ++i)
        for (std::size_t j = i + 1; j < m.feature_dim; ++j) {
            double dot = 0;
            for (std::size_t f = 0; f < m.num_factors; ++f)
                dot += m.v[i * m.num_factors + f] * m.v[j * m.num_factors + f];
            y += dot * x[i] * x[j];
        }
    return y;
}

// A dense row with about `density` of its values non-zero, and its sparse form.
struct row {
    std::vector<double> dense;
    std::vector<std::uint64_t> keys;
    std::vector<double> values;
};

row random_row(std::size_t d, double density, std::mt19937_64& rng)
{
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> n;
    row r;
    r.dense.assign(d, 0.0);
    for (std::size_t i = 0; i < d; ++i)
        if (u(rng) < density) {
            r.dense[i] = n(rng);
            r.keys.push_back(i);
            r.values.push_back(r.dense[i]);
        }
    return r;
}

} // namespace

TEST_CASE("the pairwise term equals the sum over pairs, dense and sparse")
{
    std::mt19937_64 rng(7);
    for (std::size_t k : {1u, 4u, 9u}) {
        const auto m = random_model(predictor_type::regressor, 23, k, 100 + k);
        std::vector<double> s(k);
        for (double density : {1.0, 0.3, 0.05}) {
            for (int t = 0; t < 20; ++t) {
                const auto r = random_row(23, density, rng);
                const double expected = brute_force(m, r.dense);
                CHECK(m.score_dense(r.dense, s) == Approx(expected).epsilon(1e-12).margin(1e-12));
                CHECK(m.score_sparse(r.keys, r.values, s) == Approx(expected).epsilon(1e-12).margin(1e-12));
            }
        }
    }
    // An empty sparse row is the bias alone.
    const auto m = random_model(predictor_type::regressor, 5, 3, 1);
    std::vector<double> s(3);
    CHECK(m.score_sparse({}, {}, s) == m.w0);
}

TEST_CASE("dense and sparse batches give the same gradients and updates")
{
    for (auto p : {predictor_type::regressor, predictor_type::binary_classifier}) {
        const std::size_t d = 17, k = 5, n = 12;
        const auto m = random_model(p, d, k, 3);
        const fm_hyperparameters hp{.bias_lr = 0.05, .linear_lr = 0.02, .factors_lr = 0.03, .bias_wd = 0.01,
                                    .linear_wd = 0.02, .factors_wd = 0.03};
        fm_trainer dense(m, hp), sparse(m, hp);
        std::mt19937_64 rng(11);
        fm_trainer::row_major x(n, d);
        std::vector<double> y(n), yhat(n);
        std::vector<row> rows;
        for (std::size_t r = 0; r < n; ++r) {
            // Every feature present, so that the sparse batch touches all of them as the dense one does.
            rows.push_back(random_row(d, 1.0, rng));
            for (std::size_t i = 0; i < d; ++i)
                x(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(i)) = rows.back().dense[i];
            y[r] = static_cast<double>(r % 2);
        }
        dense.add_dense(x, y, yhat);
        for (std::size_t r = 0; r < n; ++r)
            CHECK(sparse.add_sparse(rows[r].keys, rows[r].values, y[r]) == Approx(yhat[r]).epsilon(1e-12));
        std::vector<double> a, b;
        const auto touched = dense.touched_rows();
        CHECK(touched.size() == d);
        CHECK(sparse.touched_rows() == touched);
        dense.pack(touched, a);
        sparse.pack(touched, b);
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i)
            CHECK(a[i] == Approx(b[i]).epsilon(1e-11).margin(1e-12));
        dense.apply(touched);
        sparse.apply(touched);
        for (std::size_t i = 0; i < m.v.size(); ++i)
            CHECK(dense.model().v[i] == Approx(sparse.model().v[i]).epsilon(1e-11).margin(1e-12));
        CHECK(dense.model().w0 == Approx(sparse.model().w0).epsilon(1e-12));
    }
}

TEST_CASE("the gradient is the derivative of the loss")
{
    // With rescale 1, lr 1, no decay, and eps so large that sqrt(h + eps) = 1 to 1e-9, apply()
    // subtracts the raw gradient: compare it with central differences of the loss.
    const std::size_t d = 8, k = 3;
    for (auto p : {predictor_type::regressor, predictor_type::binary_classifier}) {
        const auto m = random_model(p, d, k, 5);
        std::mt19937_64 rng(2);
        const auto r = random_row(d, 0.6, rng);
        const double y = 1.0;
        auto loss = [&](const fm_model& mm) {
            std::vector<double> s(k);
            const double z = mm.score_sparse(r.keys, r.values, s);
            return p == predictor_type::regressor ? 0.5 * (z - y) * (z - y)
                                                  : std::max(z, 0.0) - y * z + std::log1p(std::exp(-std::abs(z)));
        };
        fm_trainer t(m, {.bias_lr = 1, .linear_lr = 1, .factors_lr = 1, .bias_wd = 0, .linear_wd = 0,
                         .factors_wd = 0, .eps = 0, .rescale_grad = 1});
        t.add_sparse(r.keys, r.values, y);
        std::vector<double> g;
        const auto rows = t.touched_rows();
        t.pack(rows, g);
        const double h = 1e-6;
        {
            fm_model plus = m, minus = m;
            plus.w0 += h;
            minus.w0 -= h;
            CHECK(g[0] == Approx((loss(plus) - loss(minus)) / (2 * h)).epsilon(1e-6));
        }
        for (std::size_t j = 0; j < rows.size(); ++j) {
            const auto i = rows[j];
            fm_model plus = m, minus = m;
            plus.w[i] += h;
            minus.w[i] -= h;
            CHECK(g[2 + j * (1 + k)] == Approx((loss(plus) - loss(minus)) / (2 * h)).epsilon(1e-6).margin(1e-8));
            for (std::size_t f = 0; f < k; ++f) {
                fm_model vp = m, vm = m;
                vp.v[i * k + f] += h;
                vm.v[i * k + f] -= h;
                CHECK(g[2 + j * (1 + k) + 1 + f]
                      == Approx((loss(vp) - loss(vm)) / (2 * h)).epsilon(1e-6).margin(1e-8));
            }
        }
    }
}

TEST_CASE("AdaGrad with weight decay, clipping and rescaling updates only the touched rows")
{
    auto m = fm_model::zeros(predictor_type::regressor, 4, 2);
    m.w = {1, 2, 3, 4};
    m.v = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
    const fm_hyperparameters hp{.bias_lr = 0.5, .linear_lr = 0.25, .factors_lr = 0.125, .bias_wd = 0.1,
                                .linear_wd = 0.2, .factors_wd = 0.3, .clip_gradient = 0.75, .eps = 1e-8,
                                .rescale_grad = 0};
    fm_trainer t(m, hp);
    const std::vector<std::uint64_t> keys{2};
    const std::vector<double> x{2.0};
    const double yhat = t.add_sparse(keys, x, 1.0);  // 0 + 3 * 2 = 6: no pairs in a one-key row
    CHECK(yhat == 6.0);
    t.add_sparse(keys, x, 2.0);
    t.apply(t.touched_rows());
    // Rescale 1/2: bias gradient ((6 - 1) + (6 - 2)) / 2 = 4.5, clipped to 0.75.
    const double g0 = 0.75;
    CHECK(t.model().w0 == Approx(0 - 0.5 * (g0 / std::sqrt(g0 * g0 + 1e-8))).epsilon(1e-14));
    const double g2 = 0.75;  // (5 * 2 + 4 * 2) / 2 = 9, clipped
    CHECK(t.model().w[2] == Approx(3 - 0.25 * (g2 / std::sqrt(g2 * g2 + 1e-8) + 0.2 * 3)).epsilon(1e-14));
    // The factor gradient of a lone feature is x (s - v x) = 0: decay alone moves it.
    CHECK(t.model().v[4] == Approx(0.5 - 0.125 * 0.3 * 0.5).epsilon(1e-14));
    // Untouched features keep their values, decay included.
    CHECK(t.model().w[0] == 1.0);
    CHECK(t.model().v[0] == 0.1);
}

TEST_CASE("gradients packed over the union of rows add up across ranks")
{
    const std::size_t d = 30, k = 4;
    const auto m = random_model(predictor_type::regressor, d, k, 9);
    const fm_hyperparameters hp{.bias_lr = 0.1, .linear_lr = 0.1, .factors_lr = 0.1};
    std::mt19937_64 rng(4);
    std::vector<row> rows;
    for (int i = 0; i < 10; ++i)
        rows.push_back(random_row(d, 0.15, rng));
    // One trainer with all rows, against two "ranks" with half each, summed by hand.
    fm_trainer whole(m, hp), a(m, hp), b(m, hp);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        whole.add_sparse(rows[i].keys, rows[i].values, 0.5);
        (i < 5 ? a : b).add_sparse(rows[i].keys, rows[i].values, 0.5);
    }
    auto ra = a.touched_rows(), rb = b.touched_rows();
    std::vector<std::uint64_t> all(ra);
    all.insert(all.end(), rb.begin(), rb.end());
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    CHECK(all == whole.touched_rows());
    std::vector<double> pa, pb;
    a.pack(all, pa);
    b.pack(all, pb);
    CHECK(pa.size() == 2 + all.size() * (1 + k));
    for (std::size_t i = 0; i < pa.size(); ++i)
        pa[i] += pb[i];
    a.unpack(all, pa);
    b.unpack(all, pa);
    CHECK(a.batch_rows() == 10);
    whole.apply(whole.touched_rows());
    a.apply(all);
    b.apply(all);
    for (std::size_t i = 0; i < m.v.size(); ++i) {
        CHECK(a.model().v[i] == Approx(whole.model().v[i]).epsilon(1e-13).margin(1e-15));
        CHECK(b.model().v[i] == a.model().v[i]);
    }
    for (std::size_t i = 0; i < d; ++i)
        CHECK(a.model().w[i] == Approx(whole.model().w[i]).epsilon(1e-13).margin(1e-15));
}

TEST_CASE("metrics: rmse, accuracy, cross-entropy and F1")
{
    fm_metrics r;
    r.add(predictor_type::regressor, 1.0, 0.0);
    r.add(predictor_type::regressor, 2.0, 5.0);
    CHECK(r.named(predictor_type::regressor)[0].second == Approx(std::sqrt((1.0 + 9.0) / 2)));

    fm_metrics c;
    // yhat 2 (p 0.88, label 1: TP), -1 (label 1: FN), 0.5 (label 0: FP), -3 (label 0: TN).
    const double z[] = {2, -1, 0.5, -3}, y[] = {1, 1, 0, 0};
    double ce = 0;
    for (int i = 0; i < 4; ++i) {
        c.add(predictor_type::binary_classifier, z[i], y[i]);
        const double p = 1 / (1 + std::exp(-z[i]));
        ce -= y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p);
    }
    const auto m = fm_metrics::from_values(c.values()).named(predictor_type::binary_classifier);
    REQUIRE(m.size() == 3);
    CHECK(m[0].first == "binary_classification_accuracy");
    CHECK(m[0].second == 0.5);
    CHECK(m[1].second == Approx(ce / 4).epsilon(1e-14));
    CHECK(m[2].second == Approx(2.0 * 1 / (2 * 1 + 1 + 1)));  // 2 TP / (2 TP + FN + FP)
}

TEST_CASE("initialisation is seeded, and constant init is constant")
{
    const init_spec n{.sigma = 0.1}, u{.kind = init_spec::method::uniform, .scale = 0.2},
        c{.kind = init_spec::method::constant, .value = 0.25};
    const auto a = fm_model::initialized(predictor_type::regressor, 6, 3, c, u, n, 42);
    const auto b = fm_model::initialized(predictor_type::regressor, 6, 3, c, u, n, 42);
    const auto other = fm_model::initialized(predictor_type::regressor, 6, 3, c, u, n, 43);
    CHECK(a.w0 == 0.25);
    CHECK(a.w == b.w);
    CHECK(a.v == b.v);
    CHECK(a.v != other.v);
    for (double x : a.w)
        CHECK(std::abs(x) <= 0.2);
}
