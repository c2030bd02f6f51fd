// Dense linear algebra the example trainers share, compiled once in pipemode_training with
// Eigen (Debian's libeigen3-dev): an Eigen decomposition instantiated at -O0 under the
// sanitizers costs some 25 s of compile in every translation unit that includes it, so the
// ones several trainers need live here, behind plain std::vector interfaces. A trainer's own
// Eigen code (products, small solves) includes Eigen itself.
#pragma once

#include <cstddef>
#include <span>
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
    /// magnitude, the first such) is positive, so that results compare across runs and ranks.
    std::vector<double> vectors;

    /// Component j of eigenvector i.
    double vector(std::size_t i, std::size_t j) const { return vectors[i * n + j]; }
};

/// Decomposes the symmetric n x n matrix `a` (row-major; only its lower triangle is read) with
/// Eigen's `SelfAdjointEigenSolver` (Householder tridiagonalisation, then implicit symmetric
/// QR). Throws `std::invalid_argument` when `a` is not n x n or holds a non-finite value, and
/// `std::runtime_error` if the solver does not converge.
symmetric_eigen decompose_symmetric(std::span<const double> a, std::size_t n);

} // namespace pipemode::examples
