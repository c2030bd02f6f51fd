#pragma once

/// The consumer every benchmark's training loop stands for: it reads every float of a
/// batch's "values" feature, so decoded data is really touched, not merely produced.

#include <pipemode/core/batch.hpp>

#include <cstddef>

namespace pipemode::bench {

/// The sum of a batch's "values" feature, in four independent accumulators so the loop is
/// bound by memory, not by the latency of one floating-point add chain.
inline double sum_values(const batch& b)
{
    const auto x = b.feature("values").values<float>();
    double a[4] = {0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 4 <= x.size(); i += 4) {
        a[0] += x[i];
        a[1] += x[i + 1];
        a[2] += x[i + 2];
        a[3] += x[i + 3];
    }
    for (; i < x.size(); ++i)
        a[0] += x[i];
    return (a[0] + a[1]) + (a[2] + a[3]);
}

} // namespace pipemode::bench
