// The eigendecomposition of a real symmetric matrix: Householder reduction to tridiagonal form,
// then the implicit QL algorithm with Wilkinson-style shifts (the EISPACK tred2/tql2 pair, as
// in JAMA), with no LAPACK dependency. O(n^3): about a second for n = 1000.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace pipemode::examples {

/// Eigenvalues and eigenvectors of a symmetric matrix.
struct symmetric_eigen {
    /// The matrix's order.
    std::size_t n = 0;
    /// The eigenvalues, in decreasing order.
    std::vector<double> values;
    /// The unit eigenvectors as rows, row-major n x n: row i belongs to `values[i]`. The rows
    /// are orthonormal; an eigenvector's sign is fixed so that its largest component (by
    /// magnitude, the first such) is positive.
    std::vector<double> vectors;

    /// Component j of eigenvector i.
    double vector(std::size_t i, std::size_t j) const { return vectors[i * n + j]; }
};

/// Decomposes the symmetric n x n matrix `a` (row-major; only its lower triangle is read).
/// Throws `std::runtime_error` if QL fails to converge (never seen for finite input) and
/// `std::invalid_argument` when `a` is not n x n or holds a non-finite value.
inline symmetric_eigen decompose_symmetric(std::span<const double> a, std::size_t n)
{
    if (a.size() != n * n)
        throw std::invalid_argument("decompose_symmetric: the matrix is not n x n");
    for (double x : a)
        if (!std::isfinite(x))
            throw std::invalid_argument("decompose_symmetric: the matrix holds a value that is not finite");

    symmetric_eigen out;
    out.n = n;
    if (n == 0)
        return out;

    // V starts as the lower triangle of a, mirrored, and ends as the accumulated orthogonal
    // transformation (eigenvectors as columns). d and e are the tridiagonal's diagonal and
    // sub-diagonal.
    std::vector<double> V(n * n);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j <= i; ++j)
            V[i * n + j] = V[j * n + i] = a[i * n + j];
    auto v = [&](std::size_t i, std::size_t j) -> double& { return V[i * n + j]; };
    std::vector<double> d(n), e(n);

    // --- tred2: Householder reduction to tridiagonal form.
    for (std::size_t j = 0; j < n; ++j)
        d[j] = v(n - 1, j);
    for (std::size_t i = n - 1; i > 0; --i) {
        double scale = 0, h = 0;
        for (std::size_t k = 0; k < i; ++k)
            scale += std::abs(d[k]);
        if (scale == 0) {
            e[i] = d[i - 1];
            for (std::size_t j = 0; j < i; ++j) {
                d[j] = v(i - 1, j);
                v(i, j) = 0;
                v(j, i) = 0;
            }
        }
        else {
            for (std::size_t k = 0; k < i; ++k) {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            double f = d[i - 1];
            double g = std::sqrt(h);
            if (f > 0)
                g = -g;
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (std::size_t j = 0; j < i; ++j)
                e[j] = 0;
            for (std::size_t j = 0; j < i; ++j) {
                f = d[j];
                v(j, i) = f;
                g = e[j] + v(j, j) * f;
                for (std::size_t k = j + 1; k <= i - 1; ++k) {
                    g += v(k, j) * d[k];
                    e[k] += v(k, j) * f;
                }
                e[j] = g;
            }
            f = 0;
            for (std::size_t j = 0; j < i; ++j) {
                e[j] /= h;
                f += e[j] * d[j];
            }
            const double hh = f / (h + h);
            for (std::size_t j = 0; j < i; ++j)
                e[j] -= hh * d[j];
            for (std::size_t j = 0; j < i; ++j) {
                f = d[j];
                g = e[j];
                for (std::size_t k = j; k <= i - 1; ++k)
                    v(k, j) -= (f * e[k] + g * d[k]);
                d[j] = v(i - 1, j);
                v(i, j) = 0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for (std::size_t i = 0; i + 1 < n; ++i) {
        v(n - 1, i) = v(i, i);
        v(i, i) = 1;
        const double h = d[i + 1];
        if (h != 0) {
            for (std::size_t k = 0; k <= i; ++k)
                d[k] = v(k, i + 1) / h;
            for (std::size_t j = 0; j <= i; ++j) {
                double g = 0;
                for (std::size_t k = 0; k <= i; ++k)
                    g += v(k, i + 1) * v(k, j);
                for (std::size_t k = 0; k <= i; ++k)
                    v(k, j) -= g * d[k];
            }
        }
        for (std::size_t k = 0; k <= i; ++k)
            v(k, i + 1) = 0;
    }
    for (std::size_t j = 0; j < n; ++j) {
        d[j] = v(n - 1, j);
        v(n - 1, j) = 0;
    }
    v(n - 1, n - 1) = 1;
    e[0] = 0;

    // --- tql2: implicit QL on the tridiagonal. The rotations act on columns of V; they are
    // applied to W = V^T (eigenvectors as rows) so that the inner loop runs over contiguous
    // memory.
    std::vector<double> W(n * n);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j)
            W[j * n + i] = V[i * n + j];
    V.clear();
    V.shrink_to_fit();

    for (std::size_t i = 1; i < n; ++i)
        e[i - 1] = e[i];
    e[n - 1] = 0;
    double f = 0, tst1 = 0;
    constexpr double eps = 0x1p-52;
    for (std::size_t l = 0; l < n; ++l) {
        tst1 = std::max(tst1, std::abs(d[l]) + std::abs(e[l]));
        std::size_t m = l;
        while (m < n && std::abs(e[m]) > eps * tst1)
            ++m;
        if (m == n)
            m = n - 1;  // e[n-1] is 0, so this is only reached through rounding noise
        if (m > l) {
            int iterations = 0;
            do {
                if (++iterations > 64)
                    throw std::runtime_error("decompose_symmetric: the QL iteration did not converge");
                double g = d[l];
                double p = (d[l + 1] - g) / (2 * e[l]);
                double r = std::hypot(p, 1.0);
                if (p < 0)
                    r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                const double dl1 = d[l + 1];
                double h = g - d[l];
                for (std::size_t i = l + 2; i < n; ++i)
                    d[i] -= h;
                f += h;

                p = d[m];
                double c = 1, c2 = 1, c3 = 1;
                const double el1 = e[l + 1];
                double s = 0, s2 = 0;
                for (std::size_t i = m; i-- > l;) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = std::hypot(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    double* wi = &W[i * n];
                    double* wi1 = &W[(i + 1) * n];
                    for (std::size_t k = 0; k < n; ++k) {
                        const double t = wi1[k];
                        wi1[k] = s * wi[k] + c * t;
                        wi[k] = c * wi[k] - s * t;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
            } while (std::abs(e[l]) > eps * tst1);
        }
        d[l] += f;
        e[l] = 0;
    }

    // Decreasing order, and a sign convention so that results are comparable across runs.
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return d[x] > d[y]; });
    out.values.resize(n);
    out.vectors.resize(n * n);
    for (std::size_t i = 0; i < n; ++i) {
        out.values[i] = d[order[i]];
        const double* w = &W[order[i] * n];
        std::size_t largest = 0;
        for (std::size_t k = 1; k < n; ++k)
            if (std::abs(w[k]) > std::abs(w[largest]))
                largest = k;
        const double sign = w[largest] < 0 ? -1.0 : 1.0;
        for (std::size_t k = 0; k < n; ++k)
            out.vectors[i * n + k] = sign * w[k];
    }
    return out;
}

} // namespace pipemode::examples
