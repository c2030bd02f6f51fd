// pipemode: framed records delivered as they are, as raw bytes.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/record_view.hpp>

#include <string>
#include <string_view>

namespace pipemode {

/// The feature name under which `raw_record_parser` delivers each record's bytes.
inline constexpr std::string_view raw_payload_feature = "payload";

/// A record parser that does not look inside records: each framed payload becomes one row of
/// a `bytes` feature called `raw_payload_feature` ("payload"), with exactly one item.
///
/// For data whose records are not protobuf (images, JSON, a user's own encoding) and for tools
/// that show the framing itself. Never fails on content.
///
/// Not thread-safe; one per pipeline.
class raw_record_parser {
public:
    /// Each record's row depends on that record alone (`parses_independently_v`).
    static constexpr bool independent_records = true;

    /// Appends `rec` as one row to `out`; returns whether the batch is now full.
    /// `ec` is set only if the builder refuses the row (it cannot, once its schema is this one).
    bool parse(const record_view& rec, std::string_view source, batch_builder& out, error_code& ec)
    {
        out.begin_record(source, rec);
        out.begin_tensor(record_section::features, raw_payload_feature, tensor_type::bytes);
        out.append_item(rec.payload);
        bool full = false;
        if (out.end_tensor(ec))
            full = out.end_record(ec);
        else
            out.abort_record();
        if (ec)
            detail_ = out.error_detail();
        return full;
    }

    /// A sentence about the last failure (from the builder).
    std::string_view error_detail() const noexcept { return detail_; }

private:
    std::string detail_;
};

static_assert(record_parser<raw_record_parser>);
static_assert(parses_independently_v<raw_record_parser>);

} // namespace pipemode
