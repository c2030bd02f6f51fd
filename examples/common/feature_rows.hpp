// Reads the rows of a batch's feature column as doubles, dense or sparse, for the example
// algorithms (PCA, K-Means), which compute in double precision whatever the stored type.
#pragma once

#include <pipemode/core/batch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::examples {

/// The feature called `name` of a batch, as rows of `dim` doubles.
///
/// A dense column must have `dim` values a row; a sparse one must have no key at or above
/// `dim`. float32, float64 and int32 columns are read (bytes columns are refused). The rows
/// are the batch's records without its padding. Errors name the record's source, offset and
/// index.
class feature_rows {
public:
    /// Binds `b`'s feature `name`; throws `std::runtime_error` when it is missing, holds bytes,
    /// or is dense with a row size other than `dim`.
    feature_rows(const batch& b, std::string_view name, std::size_t dim) : batch_(b), dim_(dim)
    {
        column_ = b.find_feature(name);
        if (column_ == nullptr)
            throw std::runtime_error("records have no feature '" + std::string(name) + "'" + where(0));
        if (column_->type() == tensor_type::bytes)
            throw std::runtime_error("feature '" + std::string(name) + "' holds bytes, not numbers" + where(0));
        rows_ = b.size() - b.padding();
        if (!column_->is_sparse() && column_->row_size() != dim && rows_ != 0)
            throw std::runtime_error("feature '" + std::string(name) + "' has " + std::to_string(column_->row_size())
                                     + " values a record, not feature_dim = " + std::to_string(dim) + where(0));
    }

    /// The feature dimension a batch implies: a dense column's row size, a sparse column's
    /// number of columns (its shape), or 0 when it cannot tell.
    static std::size_t dimension_of(const batch& b, std::string_view name)
    {
        const column* c = b.find_feature(name);
        if (c == nullptr)
            return 0;
        if (!c->is_sparse())
            return c->row_size();
        return c->shape().empty() ? 0 : static_cast<std::size_t>(c->shape()[0]);
    }

    /// Number of rows (records, padding excluded).
    std::size_t size() const noexcept { return rows_; }

    /// Whether the column is sparse.
    bool sparse() const noexcept { return column_->is_sparse(); }

    /// Copies dense row `i` into `out` (`dim` doubles).
    void dense_row(std::size_t i, std::span<double> out) const
    {
        switch (column_->type()) {
        case tensor_type::float32: copy(column_->row<float>(i), out); break;
        case tensor_type::float64: copy(column_->row<double>(i), out); break;
        case tensor_type::int32: copy(column_->row<std::int32_t>(i), out); break;
        case tensor_type::bytes: break;
        }
    }

    /// Sparse row `i`: its column indices (checked below `dim`) and its values into `values`.
    std::span<const std::uint64_t> sparse_row(std::size_t i, std::vector<double>& values) const
    {
        const auto keys = column_->row_keys(i);
        for (auto k : keys)
            if (k >= dim_)
                throw std::runtime_error("a sparse key " + std::to_string(k) + " is not below feature_dim = "
                                         + std::to_string(dim_) + where(i));
        values.resize(keys.size());
        switch (column_->type()) {
        case tensor_type::float32: copy(column_->row<float>(i), values); break;
        case tensor_type::float64: copy(column_->row<double>(i), values); break;
        case tensor_type::int32: copy(column_->row<std::int32_t>(i), values); break;
        case tensor_type::bytes: break;
        }
        return keys;
    }

    /// Row `i` as a dense vector in `out` (`dim` doubles), whatever the layout.
    void densify(std::size_t i, std::span<double> out, std::vector<double>& scratch) const
    {
        if (!sparse()) {
            dense_row(i, out);
            return;
        }
        std::fill(out.begin(), out.end(), 0.0);
        const auto keys = sparse_row(i, scratch);
        for (std::size_t j = 0; j < keys.size(); ++j)
            out[keys[j]] = scratch[j];
    }

private:
    template <class T>
    static void copy(std::span<const T> in, std::span<double> out)
    {
        for (std::size_t j = 0; j < in.size(); ++j)
            out[j] = static_cast<double>(in[j]);
    }

    std::string where(std::size_t row) const
    {
        if (row >= batch_.origins().size())
            return {};
        return " (" + batch_.location(row).to_string() + ")";
    }

    const batch& batch_;
    const column* column_ = nullptr;
    std::size_t dim_;
    std::size_t rows_ = 0;
};

} // namespace pipemode::examples
