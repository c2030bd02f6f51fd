// A record parser for LIBSVM text, written outside the library against pipemode's
// `record_parser` concept alone: how an author plugs a format of their own into
// `pipemode::reader` without editing include/. See examples/libsvm/README.md for the accepted
// syntax and docs/stages.md for the concept.
#pragma once

#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace libsvm {

/// What is wrong with a LIBSVM line: the error codes `libsvm_parser` sets, in a category of the
/// example's own (a parser may use pipemode's `errc` or any category; the reader reports both).
enum class errc {
    bad_label = 1,       ///< the first field is not a number
    bad_feature,         ///< a field is not `index:value` with a whole index and a number
    unsorted_indices,    ///< an index is not above the one before it
    index_out_of_range,  ///< an index is 0 in one-based data or not below the feature count
};

/// The category of `libsvm::errc`.
class error_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "libsvm"; }
    std::string message(int ev) const override
    {
        switch (static_cast<errc>(ev)) {
        case errc::bad_label: return "the label is not a number";
        case errc::bad_feature: return "a feature is not index:value";
        case errc::unsorted_indices: return "feature indices are not in ascending order";
        case errc::index_out_of_range: return "a feature index is out of range";
        }
        return "unknown libsvm error";
    }
};

/// The one instance of the category.
inline const boost::system::error_category& error_category() noexcept
{
    static const error_category_impl instance;
    return instance;
}

/// `errc` as an error code of `error_category()`.
inline pipemode::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// How indices in the text map to columns.
enum class index_base {
    one,   ///< LIBSVM's rule: the first feature is index 1 (column 0); index 0 is an error
    zero,  ///< index 0 is column 0 (files written by tools that count from 0)
};

/// Options of a `libsvm_parser`. Use designated initializers:
/// `parser_options{.feature_dim = 1000, .base = index_base::zero}`.
struct parser_options {
    /// Columns of the sparse row (SageMaker's `feature_dim`); every column index must be below.
    std::uint64_t feature_dim = 0;
    /// Where indices start.
    index_base base = index_base::one;
};

/// The name of the feature and of the label the parser writes: SageMaker Record's names, so a
/// training loop reads LIBSVM as it reads RecordIO-protobuf with sparse features.
inline constexpr std::string_view values_name = "values";

/// Parses one LIBSVM line (as `pipemode::line_decoder` frames it) into one row: the feature
/// `"values"`, sparse float32 of shape `{feature_dim}` (keys are columns counted from 0), and
/// the label `"values"`, dense float32 of shape `{1}`.
///
/// A line is `<label> [qid:<n>] <index>:<value> ...`, fields separated by spaces or tabs,
/// anything from `#` to the end a comment. A line with nothing but blanks and a comment gives
/// no row (its record index is still used, so origins stay line numbers). `qid:<n>` (a ranking
/// query id) is checked to be a whole number and ignored. Numbers are what `std::from_chars`
/// reads in its general format, plus a leading `+`: `1`, `-0.5`, `1e-3`, `inf`, `nan`. Indices
/// are whole numbers, strictly ascending within a line (as LIBSVM requires; a repeated index is
/// an error). Explicit zero values are kept as stored entries.
///
/// Zero-based input must be declared (`index_base::zero`): scikit-learn's `zero_based="auto"`
/// decides after reading the whole file, which a streaming parser cannot do before its first row.
///
/// Errors set `ec` to a `libsvm::errc`, leave the builder untouched, and `error_detail()` names
/// the 1-based column of the line (the label is column 1) and quotes the field (at most 40
/// bytes): "column 3 ('a:1'): the index is not a whole number".
///
/// Not thread-safe; one per pipeline. Cheap to make; its scratch row is reused.
class libsvm_parser {
public:
    /// Each line's row depends on that line alone (the members below are scratch space), so
    /// the reader's decode workers may parse with copies of this parser.
    static constexpr bool independent_records = true;

    /// Throws `std::invalid_argument` when `options.feature_dim` is 0.
    explicit libsvm_parser(parser_options options) : options_(options)
    {
        if (options_.feature_dim == 0)
            throw std::invalid_argument("libsvm_parser: feature_dim is 0; give the number of feature columns");
    }

    /// Appends the row of `rec` to `out`; see the class comment. Returns whether the batch is full.
    bool parse(const pipemode::record_view& rec, std::string_view source, pipemode::batch_builder& out,
               pipemode::error_code& ec)
    {
        const char* p = reinterpret_cast<const char*>(rec.payload.data());
        const char* end = p + rec.payload.size();
        if (const void* hash = std::memchr(p, '#', rec.payload.size()))
            end = static_cast<const char*>(hash);
        bool has_label = false;
        if (!parse_line(p, end, has_label, ec))
            return false;
        if (!has_label)
            return false;  // blank or comment only: no row

        // Nothing reaches the builder before the whole line has been checked.
        out.begin_record(source, rec);
        out.begin_tensor(pipemode::record_section::features, values_name, pipemode::tensor_type::float32);
        const std::size_t n = keys_.size();
        if (n != 0) {
            std::memcpy(out.extend_values<float>(n), values_.data(), n * sizeof(float));
            std::memcpy(out.extend_keys(n), keys_.data(), n * sizeof(std::uint64_t));
        }
        out.append_shape(options_.feature_dim);
        bool full = false;
        if (out.end_tensor(ec)) {
            out.begin_tensor(pipemode::record_section::label, values_name, pipemode::tensor_type::float32);
            *out.extend_values<float>(1) = label_;
            if (out.end_tensor(ec))
                full = out.end_record(ec);
        }
        if (ec) {
            out.abort_record();
            detail_ = out.error_detail();
        }
        return full;
    }

    /// After a failed `parse`, a sentence naming the column and quoting the field.
    std::string_view error_detail() const noexcept { return detail_; }

    /// The options the parser was made with.
    const parser_options& options() const noexcept { return options_; }

private:
    static bool blank(char c) noexcept { return c == ' ' || c == '\t' || c == '\r'; }

    // from_chars does not take a leading '+', which LIBSVM writers emit.
    static bool number(const char* b, const char* e, float& v) noexcept
    {
        if (b != e && *b == '+' && e - b > 1 && b[1] != '-')
            ++b;
        const auto r = std::from_chars(b, e, v, std::chars_format::general);
        // Out of float's range: from_chars leaves v alone; round as strtof does.
        if (r.ec == std::errc::result_out_of_range && r.ptr == e) {
            v = std::strtof(std::string(b, e).c_str(), nullptr);
            return true;
        }
        return r.ec == std::errc{} && r.ptr == e;
    }

    static bool whole(const char* b, const char* e, std::uint64_t& v) noexcept
    {
        const auto r = std::from_chars(b, e, v);
        return b != e && r.ec == std::errc{} && r.ptr == e;
    }

    bool parse_line(const char* p, const char* end, bool& has_label, pipemode::error_code& ec)
    {
        keys_.clear();
        values_.clear();
        std::size_t column = 0;
        bool first_feature = true;
        for (;;) {
            while (p != end && blank(*p))
                ++p;
            if (p == end)
                return true;
            const char* field = p;
            while (p != end && !blank(*p))
                ++p;
            ++column;
            if (column == 1) {
                if (!number(field, p, label_))
                    return fail(ec, errc::bad_label, column, field, p, "the label is not a number");
                has_label = true;
                continue;
            }
            const char* colon = static_cast<const char*>(std::memchr(field, ':', static_cast<std::size_t>(p - field)));
            if (colon == nullptr)
                return fail(ec, errc::bad_feature, column, field, p, "a feature needs the form index:value");
            if (first_feature && colon - field == 3 && std::memcmp(field, "qid", 3) == 0) {
                first_feature = false;
                std::uint64_t qid = 0;
                if (!whole(colon + 1, p, qid))
                    return fail(ec, errc::bad_feature, column, field, p, "the query id is not a whole number");
                continue;
            }
            first_feature = false;
            std::uint64_t index = 0;
            if (!whole(field, colon, index))
                return fail(ec, errc::bad_feature, column, field, p, "the index is not a whole number");
            float value = 0;
            if (!number(colon + 1, p, value))
                return fail(ec, errc::bad_feature, column, field, p, "the value is not a number");
            if (options_.base == index_base::one) {
                if (index == 0)
                    return fail(ec, errc::index_out_of_range, column, field, p,
                                "index 0 in one-based data (LIBSVM counts features from 1; declare zero-based data)");
                --index;
            }
            if (index >= options_.feature_dim)
                return fail(ec, errc::index_out_of_range, column, field, p,
                            "the index is beyond the " + std::to_string(options_.feature_dim) + " features");
            if (!keys_.empty() && index <= keys_.back())
                return fail(ec, errc::unsorted_indices, column, field, p,
                            "the index is not above the one before it (indices must be ascending and unique)");
            keys_.push_back(index);
            values_.push_back(value);
        }
    }

    bool fail(pipemode::error_code& ec, errc e, std::size_t column, const char* b, const char* e_, std::string_view why)
    {
        const std::size_t n = static_cast<std::size_t>(e_ - b);
        detail_ = "column " + std::to_string(column) + " ('" + std::string(b, n < 40 ? n : 40) + (n > 40 ? "...'" : "'")
            + "): " + std::string(why);
        ec = make_error_code(e);
        return false;
    }

    parser_options options_;
    float label_ = 0;
    std::vector<std::uint64_t> keys_;
    std::vector<float> values_;
    std::string detail_;
};

static_assert(pipemode::record_parser<libsvm_parser>);
static_assert(pipemode::parses_independently_v<libsvm_parser>);

} // namespace libsvm
