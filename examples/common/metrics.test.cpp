// The supervised trainers' metrics (metrics.hpp) and a binary classifier's calibrated threshold
// on hand-counted cases, so that a metric is right before any trainer reports it.
#include "metrics.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace pipemode::examples;

TEST_CASE("binary metrics and the calibrated threshold on counted cases", "[metrics]")
{
    const std::vector<double> labels{1, 0, 1, 1, 0, 0};
    const std::vector<double> scores{0.9, 0.8, 0.7, 0.3, 0.2, 0.1};
    std::vector<double> predicted;
    for (double s : scores)
        predicted.push_back(s >= 0.5 ? 1 : 0);
    const auto c = metrics::confusion::of(predicted, labels);
    CHECK(c.tp == 2);
    CHECK(c.fp == 1);
    CHECK(c.accuracy() == Approx(4.0 / 6));
    CHECK(c.precision() == Approx(2.0 / 3));
    CHECK(c.recall() == Approx(2.0 / 3));
    CHECK(c.f_beta(2) == Approx(5 * 2.0 / (5 * 2 + 4 * 1 + 1)));
    // Positive-negative pairs ranked right: 3 + 2 + 2 of 9.
    CHECK(metrics::roc_auc_score(scores, labels) == Approx(7.0 / 9));
    using metrics::selection_criterion;
    const auto acc = metrics::calibrate_threshold(scores, labels, selection_criterion::accuracy, 1, 0, 0.5);
    CHECK(acc.threshold == Approx(0.25));  // 3 positives and 1 false positive above it
    CHECK(acc.value == Approx(5.0 / 6));
    const auto at_recall = metrics::calibrate_threshold(scores, labels, selection_criterion::precision_at_target_recall, 1, 1.0, 0.5);
    CHECK(at_recall.threshold == Approx(0.25));
    CHECK(at_recall.value == Approx(0.75));
    const auto at_precision = metrics::calibrate_threshold(scores, labels, selection_criterion::recall_at_target_precision, 1, 1.0, 0.5);
    CHECK(at_precision.threshold == Approx(0.85));
    CHECK(at_precision.value == Approx(1.0 / 3));
}

TEST_CASE("multiclass metrics on counted cases", "[metrics]")
{
    const std::vector<double> labels{0, 1, 2, 2};
    const std::vector<double> predicted{0, 2, 2, 1};
    CHECK(metrics::multiclass::accuracy(predicted, labels) == 0.5);
    const auto macro = metrics::multiclass::macro_scores(predicted, labels, 1);
    CHECK(macro.precision == Approx((1 + 0 + 0.5) / 3));
    CHECK(macro.recall == Approx((1 + 0 + 0.5) / 3));
    const std::vector<double> scores{0.5, 0.3, 0.2, 0.1, 0.2, 0.7, 0.3, 0.3, 0.4, 0.2, 0.5, 0.3};
    CHECK(metrics::multiclass::top_k_accuracy(scores, 3, labels, 1) == 0.5);
    CHECK(metrics::multiclass::top_k_accuracy(scores, 3, labels, 2) == 1.0);
}
