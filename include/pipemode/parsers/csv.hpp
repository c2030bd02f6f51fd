// pipemode: CSV records as SageMaker's built-in algorithms read them (text/csv), parsed into
// batches.
//
// The accepted syntax and the layout of the output are described in docs/formats/csv.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/content_type.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode {

/// The tensor name under which `csv_record_parser` delivers features and labels: the name
/// SageMaker's RecordIO-protobuf writer uses, so that both formats read the same way.
inline constexpr std::string_view csv_values_name = "values";

/// Options of a `csv_record_parser`. Use designated initializers:
/// `csv_options{.label_size = 0}`.
struct csv_options {
    /// How many leading columns are the label (SageMaker's `label_size` content-type
    /// parameter); 0 for none. Every row needs at least one column more than this.
    std::size_t label_size = 1;
};

/// Parses CSV rows (one record each, as `line_decoder` frames them) of numbers into batches,
/// the way SageMaker's built-in algorithms read `text/csv`: no header, every field a number,
/// the first `label_size` columns the label and the rest the features.
///
/// Output per row, exactly as `protobuf_record_parser` gives a SageMaker Record with dense
/// features: the feature `"values"`, dense float32 of shape `{columns - label_size}`, and
/// (unless `label_size` is 0) the label `"values"`, dense float32 of shape `{label_size}`.
///
/// Fields: optional spaces or tabs around the number; optionally in double quotes (`"1.5"`);
/// what `std::from_chars` reads in its general format plus an optional leading `+`, so
/// `1`, `-2.5e-3`, `.5`, `nan`, `inf` and `infinity` are numbers (NaN and infinities pass through
/// as they are). A number beyond float32's range becomes an infinity, one too small for it 0
/// (or a subnormal), as `strtof` rounds.
///
/// Errors (nothing is written for a bad row; `error_detail()` names the 1-based column and
/// quotes at most 40 bytes of the field):
/// - `errc::bad_csv_field`: an empty field (including after a trailing comma), a field that is
///   not a number, or an unterminated quote;
/// - `errc::ragged_csv_row`: a row with a different number of columns from the first row this
///   parser accepted, or with no column beyond the label;
/// - what the `batch_builder` reports (`errc::schema_mismatch` when the builder's schema came
///   from somewhere else).
///
/// Not thread-safe; it keeps the first row's column count and a scratch row.
///
/// @code
/// line_decoder lines;
/// csv_record_parser parser(csv_options{.label_size = 1});
/// bool full = parser.parse(lines.record(), source, builder, ec);
/// @endcode
class csv_record_parser {
public:
    /// Once the first row has fixed the column count, each row depends on itself alone, so
    /// decode workers may parse with copies (`parses_independently_v`).
    static constexpr bool independent_records = true;

    /// A parser for rows whose first `options.label_size` columns are the label.
    explicit csv_record_parser(csv_options options = {}) : options_(options) {}

    /// Parses `rec`'s payload (one CSV row, without its line end) and appends it to `out` as
    /// one row. Returns whether the batch is now full; on failure returns false with `ec` set.
    bool parse(const record_view& rec, std::string_view source, batch_builder& out, error_code& ec);

    /// After a failed `parse`, a sentence saying what was wrong and where.
    std::string_view error_detail() const noexcept { return detail_; }

    /// The column count every row must have: the first accepted row's, or 0 before it.
    std::size_t columns() const noexcept { return columns_; }

    /// The options the parser was made with.
    const csv_options& options() const noexcept { return options_; }

private:
    bool parse_row(const char* p, const char* end);
    bool bad_field(std::size_t column, const char* begin, const char* end, const char* why);
    bool write(batch_builder& out, std::size_t first, std::size_t count, record_section section, error_code& ec);

    csv_options options_;
    std::size_t columns_ = 0;
    std::vector<float> row_;
    std::string detail_;
};

static_assert(record_parser<csv_record_parser>);
static_assert(parses_independently_v<csv_record_parser>);

} // namespace pipemode

#include <pipemode/parsers/impl/csv.hpp>
