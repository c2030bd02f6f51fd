// The arithmetic of pipemode-linear-learner: losses' gradients against finite differences, one
// sgd step against the formula written out, the num_models columns against models trained
// one by one, and sparse batches against the same rows dense (the metrics are examples/common's,
// tested in metrics.test.cpp).
#include "linear_learner.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

using namespace pipemode::examples;

namespace {

ll::dense_rows random_rows(Eigen::Index n, Eigen::Index d, unsigned seed)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal;
    ll::dense_rows x(n, d);
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index j = 0; j < d; ++j)
            x(i, j) = normal(gen);
    return x;
}

} // namespace

TEST_CASE("every loss's derivative matches a central difference", "[linear_learner]")
{
    using ll::loss_type;
    for (auto type : {loss_type::logistic, loss_type::squared_loss, loss_type::absolute_loss, loss_type::hinge_loss,
                      loss_type::eps_insensitive_squared_loss, loss_type::eps_insensitive_absolute_loss,
                      loss_type::quantile_loss, loss_type::huber_loss}) {
        const ll::loss_function f{.type = type, .insensitivity = 0.1, .quantile = 0.3, .huber_delta = 0.7,
                                  .positive_weight = 2.5};
        for (double y : {0.0, 1.0})
            for (double z : {-2.3, -0.45, 0.2, 0.61, 1.7}) {
                double dz = 0, ignored = 0;
                f(&z, 1, y, &dz);
                const double h = 1e-6, up = z + h, down = z - h;
                const double numeric = (f(&up, 1, y, &ignored) - f(&down, 1, y, &ignored)) / (2 * h);
                INFO("loss " << static_cast<int>(type) << " y " << y << " z " << z);
                CHECK(dz == Approx(numeric).margin(1e-6));
            }
    }
    const ll::loss_function softmax{.type = loss_type::softmax};
    double z[3] = {0.3, -1.2, 2.0}, dz[3], ignored[3];
    const double base = softmax(z, 3, 1, dz);
    CHECK(base == Approx(std::log(std::exp(0.3) + std::exp(-1.2) + std::exp(2.0)) + 1.2));
    for (int c = 0; c < 3; ++c) {
        double up[3] = {z[0], z[1], z[2]}, down[3] = {z[0], z[1], z[2]};
        up[c] += 1e-6;
        down[c] -= 1e-6;
        CHECK(dz[c] == Approx((softmax(up, 3, 1, ignored) - softmax(down, 3, 1, ignored)) / 2e-6).margin(1e-6));
    }
    CHECK_THROWS(softmax(z, 3, 3.0, dz));
}

TEST_CASE("one sgd step is w -= lr (X^T r / n + wd w), and a second applies momentum", "[linear_learner]")
{
    const auto x = random_rows(7, 4, 1);
    const Eigen::VectorXd y = Eigen::VectorXd::LinSpaced(7, -1, 2);
    ll::trainer t({.dim = 4, .loss = {.type = ll::loss_type::squared_loss},
                   .models = {{.learning_rate = 0.1, .wd = 0.5}}, .optimizer = ll::optimizer_type::sgd,
                   .momentum = 0.9});
    t.accumulate(x, y);
    CHECK(t.pending_rows() == 7);
    CHECK(t.pending_loss_sums()[0] == Approx(0.5 * y.squaredNorm()));
    t.step();
    const Eigen::VectorXd w1 = 0.1 * x.transpose() * y / 7;  // r = 0 - y
    CHECK((t.weights().col(0) - w1).norm() < 1e-15);
    CHECK(t.bias()[0] == Approx(0.1 * y.mean()));
    t.accumulate(x, y);
    t.step();
    const Eigen::VectorXd r = (x * w1).array() + 0.1 * y.mean() - y.array();
    const Eigen::VectorXd g1 = -x.transpose() * y / 7;
    const Eigen::VectorXd g2 = x.transpose() * r / 7 + 0.5 * w1;
    const Eigen::VectorXd w2 = w1 - 0.1 * (0.9 * g1 + g2);
    CHECK((t.weights().col(0) - w2).norm() < 1e-14);
}

TEST_CASE("num_models columns train as the models would one by one, sparse as dense", "[linear_learner]")
{
    const auto x = random_rows(40, 5, 2);
    Eigen::VectorXd y(40);
    for (Eigen::Index i = 0; i < 40; ++i)
        y[i] = x(i, 0) - 0.5 * x(i, 2) > 0 ? 1 : 0;
    const auto spread = ll::spread_hyperparameters({.learning_rate = 0.01, .wd = 0.1, .l1 = 0.01}, 3);
    REQUIRE(spread.size() == 3);
    CHECK(spread[0].learning_rate == 0.01);
    CHECK(spread[1].learning_rate == Approx(0.01 * std::sqrt(10.0)));
    CHECK(spread[1].wd == Approx(0.01));
    CHECK(spread[2].learning_rate == Approx(0.01 / std::sqrt(10.0)));
    CHECK(spread[2].l1 == Approx(0.1));
    for (auto opt : {ll::optimizer_type::adam, ll::optimizer_type::sgd, ll::optimizer_type::rmsprop}) {
        const ll::trainer_options base{.dim = 5, .loss = {.type = ll::loss_type::logistic, .positive_weight = 2},
                                       .models = spread, .optimizer = opt, .momentum = 0.5,
                                       .use_lr_scheduler = true, .lr_scheduler_step = 2, .lr_scheduler_factor = 0.5};
        ll::trainer all(base);
        ll::trainer sparse(base);
        const ll::sparse_rows xs = x.sparseView();
        for (int epoch = 0; epoch < 3; ++epoch)
            for (Eigen::Index b = 0; b < 40; b += 16) {
                const auto n = std::min<Eigen::Index>(16, 40 - b);
                all.accumulate(ll::dense_rows(x.middleRows(b, n)), Eigen::VectorXd(y.segment(b, n)));
                all.step();
                sparse.accumulate(ll::sparse_rows(xs.middleRows(b, n)), Eigen::VectorXd(y.segment(b, n)));
                sparse.step();
            }
        CHECK((all.weights() - sparse.weights()).norm() < 1e-12);
        for (std::size_t m = 0; m < 3; ++m) {
            auto one_options = base;
            one_options.models = {spread[m]};
            ll::trainer one(one_options);
            for (int epoch = 0; epoch < 3; ++epoch)
                for (Eigen::Index b = 0; b < 40; b += 16) {
                    const auto n = std::min<Eigen::Index>(16, 40 - b);
                    one.accumulate(ll::dense_rows(x.middleRows(b, n)), Eigen::VectorXd(y.segment(b, n)));
                    one.step();
                }
            CHECK((one.weights().col(0) - all.weights().col(static_cast<Eigen::Index>(m))).norm() < 1e-13);
            CHECK(std::abs(one.bias()[0] - all.bias()[static_cast<Eigen::Index>(m)]) < 1e-13);
        }
    }
}

TEST_CASE("the l1 step sets small weights to exactly zero", "[linear_learner]")
{
    const auto x = random_rows(30, 6, 3);
    Eigen::VectorXd y = 3 * x.col(0);
    ll::trainer t({.dim = 6, .loss = {.type = ll::loss_type::squared_loss}, .models = {{.learning_rate = 0.05, .l1 = 0.5}},
                   .optimizer = ll::optimizer_type::sgd});
    for (int i = 0; i < 300; ++i) {
        t.accumulate(x, y);
        t.step();
    }
    CHECK(t.weights()(0, 0) > 2);
    CHECK((t.weights().col(0).tail(5).array() == 0).count() >= 4);
}

TEST_CASE("the scaler centres dense data and only scales sparse data", "[linear_learner]")
{
    ll::dense_rows x(4, 2);
    x << 1, 0, 3, 0, 5, 2, 7, 0;
    auto m = ll::scaler::moments(2);
    ll::scaler::add_moments(m, x);
    const auto dense = ll::scaler::from_moments(m, false);
    CHECK(dense.mean[0] == 4);
    CHECK(dense.scale[0] == Approx(std::sqrt(5.0)));
    ll::dense_rows d = x;
    dense.apply(d);
    CHECK(d.col(0).mean() == Approx(0).margin(1e-15));
    const auto sparse = ll::scaler::from_moments(m, true);
    ll::sparse_rows s = x.sparseView();
    sparse.apply(s);
    CHECK(s.nonZeros() == 5);
    CHECK(s.coeff(0, 0) == Approx(1 / std::sqrt(5.0)));
}
