// pipemode_training's dense linear algebra, on Eigen. See linear_algebra.hpp.
#include "linear_algebra.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <cmath>
#include <stdexcept>

namespace pipemode::examples {

symmetric_eigen decompose_symmetric(std::span<const double> a, std::size_t n)
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
    using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const row_major> m(a.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
    // The solver reads the lower triangle only; a row-major map's lower triangle is `a`'s.
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver{Eigen::MatrixXd(m)};
    if (solver.info() != Eigen::Success)
        throw std::runtime_error("decompose_symmetric: the eigensolver did not converge");
    // Eigen gives increasing eigenvalues, eigenvectors as columns.
    out.values.resize(n);
    out.vectors.resize(n * n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto col = static_cast<Eigen::Index>(n - 1 - i);
        out.values[i] = solver.eigenvalues()[col];
        const auto w = solver.eigenvectors().col(col);
        Eigen::Index largest = 0;
        for (Eigen::Index k = 1; k < w.size(); ++k)
            if (std::abs(w[k]) > std::abs(w[largest]))
                largest = k;
        const double sign = w[largest] < 0 ? -1.0 : 1.0;
        for (std::size_t k = 0; k < n; ++k)
            out.vectors[i * n + k] = sign * w[static_cast<Eigen::Index>(k)];
    }
    return out;
}

} // namespace pipemode::examples
