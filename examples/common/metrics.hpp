// Metrics of supervised trainers computed from predictions, named as SageMaker names them
// (binary_classification_accuracy, roc_auc_score, macro_f_beta, mse, ...), and the threshold
// calibration of a binary classifier. No I/O and no Eigen, so that every supervised trainer
// (Linear Learner, Factorization Machines, ...) reports the same metrics the same way.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace pipemode::examples::metrics {

/// Counts of a binary classifier's predictions.
struct confusion {
    double tp = 0, fp = 0, tn = 0, fn = 0;

    /// Counts `predicted` (0/1) against `labels` (0/1).
    static confusion of(std::span<const double> predicted, std::span<const double> labels)
    {
        confusion c;
        for (std::size_t i = 0; i < labels.size(); ++i) {
            const bool p = predicted[i] > 0.5, y = labels[i] > 0.5;
            (p ? (y ? c.tp : c.fp) : (y ? c.fn : c.tn)) += 1;
        }
        return c;
    }

    /// (tp + tn) / all; 0 for no rows.
    double accuracy() const { return ratio(tp + tn, tp + tn + fp + fn); }
    /// tp / (tp + fp); 0 when nothing is predicted positive (scikit-learn's zero_division=0).
    double precision() const { return ratio(tp, tp + fp); }
    /// tp / (tp + fn); 0 when there are no positives.
    double recall() const { return ratio(tp, tp + fn); }
    /// (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp); 0 when that is 0 / 0.
    double f_beta(double beta) const
    {
        const double b2 = beta * beta;
        return ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp);
    }

private:
    static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
};

/// Area under the ROC curve of `scores` against 0/1 `labels` (the Mann-Whitney statistic with
/// tied scores given their average rank, which equals the trapezoidal area scikit-learn
/// computes); 0.5 (undefined) when one class is missing.
inline double roc_auc_score(std::span<const double> scores, std::span<const double> labels)
{
    const std::size_t n = scores.size();
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
    double positives = 0, rank_sum = 0;
    for (std::size_t i = 0; i < n;) {
        std::size_t j = i;
        while (j < n && scores[order[j]] == scores[order[i]])
            ++j;
        const double average_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
        for (std::size_t t = i; t < j; ++t)
            if (labels[order[t]] > 0.5) {
                positives += 1;
                rank_sum += average_rank;
            }
        i = j;
    }
    const double negatives = static_cast<double>(n) - positives;
    if (positives == 0 || negatives == 0)
        return 0.5;
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

/// Mean squared error.
inline double mse(std::span<const double> predicted, std::span<const double> labels)
{
    double s = 0;
    for (std::size_t i = 0; i < labels.size(); ++i)
        s += (predicted[i] - labels[i]) * (predicted[i] - labels[i]);
    return labels.empty() ? 0.0 : s / static_cast<double>(labels.size());
}

/// Mean absolute error.
inline double absolute_loss(std::span<const double> predicted, std::span<const double> labels)
{
    double s = 0;
    for (std::size_t i = 0; i < labels.size(); ++i)
        s += std::abs(predicted[i] - labels[i]);
    return labels.empty() ? 0.0 : s / static_cast<double>(labels.size());
}

/// Multiclass metrics of class predictions (class indices as doubles).
struct multiclass {
    /// Fraction of rows predicted right.
    static double accuracy(std::span<const double> predicted, std::span<const double> labels)
    {
        double right = 0;
        for (std::size_t i = 0; i < labels.size(); ++i)
            right += predicted[i] == labels[i] ? 1 : 0;
        return labels.empty() ? 0.0 : right / static_cast<double>(labels.size());
    }

    /// Fraction of rows whose label is among the `k` highest of its `classes` scores
    /// (row-major `scores`); a tie at the k-th place counts for the label.
    static double top_k_accuracy(std::span<const double> scores, std::size_t classes, std::span<const double> labels,
                                 std::size_t k)
    {
        double hits = 0;
        for (std::size_t i = 0; i < labels.size(); ++i) {
            const double* row = scores.data() + i * classes;
            const double mine = row[static_cast<std::size_t>(labels[i])];
            std::size_t above = 0;
            for (std::size_t c = 0; c < classes; ++c)
                above += row[c] > mine ? 1 : 0;
            hits += above < k ? 1 : 0;
        }
        return labels.empty() ? 0.0 : hits / static_cast<double>(labels.size());
    }

    /// Macro averages over the classes present in the labels or the predictions (as
    /// scikit-learn's average="macro" with zero_division=0): precision, recall, and the mean of
    /// the per-class F-beta (not the F-beta of the means).
    struct macro {
        double precision = 0, recall = 0, f_beta = 0;
    };

    /// See `macro`.
    static macro macro_scores(std::span<const double> predicted, std::span<const double> labels, double beta)
    {
        std::set<double> classes(labels.begin(), labels.end());
        classes.insert(predicted.begin(), predicted.end());
        macro out;
        for (double c : classes) {
            confusion k;
            for (std::size_t i = 0; i < labels.size(); ++i) {
                const bool p = predicted[i] == c, y = labels[i] == c;
                (p ? (y ? k.tp : k.fp) : (y ? k.fn : k.tn)) += 1;
            }
            out.precision += k.precision();
            out.recall += k.recall();
            out.f_beta += k.f_beta(beta);
        }
        if (!classes.empty()) {
            const auto n = static_cast<double>(classes.size());
            out.precision /= n;
            out.recall /= n;
            out.f_beta /= n;
        }
        return out;
    }
};

/// How a binary classifier's threshold (and model) is chosen: SageMaker's
/// `binary_classifier_model_selection_criteria`.
enum class selection_criterion { accuracy, f_beta, precision_at_target_recall, recall_at_target_precision, loss_function };

/// A threshold and the criterion's value there.
struct calibrated_threshold {
    double threshold = 0.5;
    double value = 0;  ///< the criterion at the threshold (higher is better)
};

/// The threshold on `scores` (a row is positive when its score >= threshold) that maximizes
/// `criterion` on 0/1 `labels`: accuracy, F-beta, precision among thresholds whose recall is at
/// least `target` (precision_at_target_recall), or recall among those whose precision is at
/// least `target` (recall_at_target_precision). Candidates are the distinct scores and +inf
/// (nothing positive), each moved midway to the next lower score; on equal values the highest
/// threshold wins. For `loss_function` it
/// returns `fixed` with value 0 (the model is then chosen by its loss).
inline calibrated_threshold calibrate_threshold(std::span<const double> scores, std::span<const double> labels,
                                                selection_criterion criterion, double beta, double target, double fixed)
{
    if (criterion == selection_criterion::loss_function || scores.empty())
        return {fixed, 0};
    // The rows sorted by score, highest first, as (score, label) pairs in one array: sorting
    // them in place rather than an index into the two spans keeps the sort and the sweep
    // sequential in memory. With SageMaker's 10 million calibration rows and 32 models an index
    // sort was half of Linear Learner's epoch (docs/algorithms.md, "Throughput").
    struct scored_row {
        double score;
        bool positive;
    };
    std::vector<scored_row> rows(scores.size());
    for (std::size_t i = 0; i < rows.size(); ++i)
        rows[i] = {scores[i], labels[i] > 0.5};
    std::sort(rows.begin(), rows.end(), [](const scored_row& a, const scored_row& b) { return a.score > b.score; });
    confusion c;
    for (const auto& r : rows)
        (r.positive ? c.fn : c.tn) += 1;
    auto value = [&](const confusion& k) {
        switch (criterion) {
        case selection_criterion::accuracy: return k.accuracy();
        case selection_criterion::f_beta: return k.f_beta(beta);
        case selection_criterion::precision_at_target_recall: return k.recall() >= target ? k.precision() : -1.0;
        case selection_criterion::recall_at_target_precision: return k.precision() >= target ? k.recall() : -1.0;
        case selection_criterion::loss_function: break;
        }
        return 0.0;
    };
    calibrated_threshold best{HUGE_VAL, value(c)};
    for (std::size_t i = 0; i < rows.size();) {
        const double t = rows[i].score;
        for (; i < rows.size() && rows[i].score == t; ++i) {
            if (rows[i].positive) {
                c.fn -= 1;
                c.tp += 1;
            }
            else {
                c.tn -= 1;
                c.fp += 1;
            }
        }
        const double v = value(c);
        // Midway to the next lower score, so that the same rows stay positive when the scores
        // are computed again with other rounding (one model's product instead of all models').
        if (v > best.value)
            best = {i < rows.size() ? (t + rows[i].score) / 2 : t, v};
    }
    if (best.threshold == HUGE_VAL && best.value < 0)
        return {fixed, -1};  // no threshold meets the target: keep the default
    return best;
}

} // namespace pipemode::examples::metrics
