// pipemode: consecutive records delivered together as one row (an augmented manifest's lines).
//
// Two halves of one rule, kept in one header: record_group_decoder, a framing decoder over
// another, which alone sees where a source ends, and grouped_record_parser, which joins each
// group into a row. The header is in framing/ because the group is a framing unit (N records
// of the inner decoder); the parser cannot work without the decoder's end-of-source check.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode {

/// A record parser that joins every `N` consecutive records of a source into one row, with
/// one `bytes` feature per record, named after `attribute_names` (N = their number).
///
/// This is how an augmented manifest's lines reach a training loop: SageMaker's Pipe mode
/// writes one record per listed attribute, line after line, and the loop wants the attributes
/// of a line side by side, as
/// `batch.feature("source-ref").item(i, 0)` and `batch.feature("class").item(i, 0)` of row i.
///
/// Contract:
/// - A source holds whole groups: record `k` of a source (`record_view::index`) is attribute
///   `k % N` of its line. A record whose position does not continue the group in progress
///   (another source, or a record after a skipped bad one) is refused with
///   `errc::truncated_record`, naming what is missing, and the partial group is dropped.
///   A source that ends inside a group is reported by `record_group_decoder` (the parser
///   cannot see a source end).
/// - The group is written into the builder only once it is complete, so a row never spans
///   two batches, and a full batch is reported only after a group's last record.
/// - A row's origin (`batch::origin()`) is the group's first record.
///
/// Memory: the group in progress is copied (at most N records, each within the reader's
/// `max_record_size`); the copy's buffer is reused from group to group.
///
/// Not thread-safe; one per pipeline.
class grouped_record_parser {
public:
    /// A parser of groups of `attribute_names.size()` records. Throws `std::invalid_argument`
    /// when the list is empty or names an attribute twice (a batch's features are unique).
    explicit grouped_record_parser(std::vector<std::string> attribute_names) : names_(std::move(attribute_names))
    {
        if (names_.empty())
            throw std::invalid_argument(
                "pipemode::grouped_record_parser: no attribute names; give the AttributeNames of the augmented "
                "manifest (reader_options::attribute_names), one per record of a line");
        for (std::size_t i = 0; i < names_.size(); ++i)
            for (std::size_t j = 0; j < i; ++j)
                if (names_[i] == names_[j])
                    throw std::invalid_argument("pipemode::grouped_record_parser: the attribute '" + names_[i]
                                                + "' is listed twice; each attribute becomes one feature of a row");
        ends_.reserve(names_.size());
    }

    /// Records per row.
    std::size_t group_size() const noexcept { return names_.size(); }

    /// The feature names, in record order.
    const std::vector<std::string>& attribute_names() const noexcept { return names_; }

    /// Takes record `rec` of `source`; after a group's last record appends the row to `out`.
    /// Returns whether the batch is now full (only ever after a group's last record).
    bool parse(const record_view& rec, std::string_view source, batch_builder& out, error_code& ec)
    {
        ec = {};
        const std::size_t n = names_.size();
        const std::size_t k = static_cast<std::size_t>(rec.index % n);
        if (!ends_.empty() && (k != ends_.size() || source != source_ || rec.index != first_.index + ends_.size())) {
            // The group in progress cannot be completed any more: its source ended early (the
            // decoder reported that) or one of its records was skipped as bad. The index check
            // catches skips of a whole multiple of the group size, after which the attribute
            // number alone would wrongly continue the group with a later line's record.
            ends_.clear();
        }
        if (k != ends_.size()) {
            detail_ = "record " + std::to_string(rec.index) + " is attribute '" + names_[k] + "' (" + std::to_string(k + 1)
                + " of " + std::to_string(n) + ") of a line whose earlier attributes did not arrive";
            ec = make_error_code(errc::truncated_record);
            return false;
        }
        if (k == 0) {
            source_.assign(source);
            first_ = rec;
            bytes_.clear();
        }
        bytes_.insert(bytes_.end(), rec.payload.begin(), rec.payload.end());
        ends_.push_back(bytes_.size());
        if (ends_.size() < n)
            return false;
        return commit(out, ec);
    }

    /// A sentence about the last failure.
    std::string_view error_detail() const noexcept { return detail_; }

private:
    bool commit(batch_builder& out, error_code& ec)
    {
        const std::size_t n = names_.size();
        const record_view origin{{}, first_.offset, first_.index};
        out.begin_record(source_, origin);
        std::size_t begin = 0;
        for (std::size_t i = 0; i < n; ++i) {
            out.begin_tensor(record_section::features, names_[i], tensor_type::bytes);
            out.append_item(std::span<const std::byte>(bytes_.data() + begin, ends_[i] - begin));
            begin = ends_[i];
            if (!out.end_tensor(ec)) {
                detail_ = out.error_detail();
                out.abort_record();
                ends_.clear();
                return false;
            }
        }
        ends_.clear();
        const bool full = out.end_record(ec);
        if (ec)
            detail_ = out.error_detail();
        return full;
    }

    std::vector<std::string> names_;
    std::string source_;              // the source of the group in progress
    record_view first_{};             // its first record (offset and index only)
    std::vector<std::byte> bytes_;    // its payloads, back to back
    std::vector<std::size_t> ends_;   // where each payload ends in bytes_
    std::string detail_;
};

static_assert(record_parser<grouped_record_parser>);

/// A framing decoder that checks that every source holds whole groups of `group_size`
/// records: `Decoder` (e.g. `recordio_decoder`) with one more rule at the end of a source,
/// where a record count that is not a multiple of the group size is `errc::truncated_record`
/// from `finish()`. Used with `grouped_record_parser`, which cannot see where a source ends.
///
/// Everything else is `Decoder`'s behaviour, unchanged.
template <record_decoder Decoder>
class record_group_decoder {
public:
    /// Wraps `inner`; throws `std::invalid_argument` when `group_size` is 0.
    record_group_decoder(Decoder inner, std::size_t group_size) : inner_(std::move(inner)), group_size_(group_size)
    {
        if (group_size_ == 0)
            throw std::invalid_argument("pipemode::record_group_decoder: the group size is 0");
    }

    std::size_t put(std::span<const std::byte> in, error_code& ec) { return inner_.put(in, ec); }
    bool has_record() const { return inner_.has_record(); }
    record_view record() const { return inner_.record(); }
    void pop() { inner_.pop(); }
    void reset(std::uint64_t offset) { inner_.reset(offset); }
    std::uint64_t offset() const { return inner_.offset(); }
    std::uint64_t records_started() const { return inner_.records_started(); }
    void resync() { inner_.resync(); }

    /// `Decoder::finish`, then the group rule: the source must have ended after a group's last
    /// record.
    void finish(error_code& ec)
    {
        inner_.finish(ec);
        if (!ec && !inner_.has_record() && inner_.records_started() % group_size_ != 0)
            ec = make_error_code(errc::truncated_record);
    }

private:
    Decoder inner_;
    std::size_t group_size_;
};

} // namespace pipemode
