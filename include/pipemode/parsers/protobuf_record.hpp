// pipemode: SageMaker's aialgs.data.Record, parsed from the protobuf wire format into batches.
//
// The format, the layout rules and how this parser agrees with libprotobuf are described in
// docs/formats/protobuf-record.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>
#include <pipemode/parsers/detail/protobuf_wire.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode {

/// Parses RecordIO payloads that hold an `aialgs.data.Record` (SageMaker's
/// application/x-recordio-protobuf) and writes each as one row through a `batch_builder`.
///
/// It reads the wire format itself (no libprotobuf) and accepts exactly what libprotobuf
/// accepts for this message: packed and unpacked repeated numbers (mixed too), fields in any
/// order, unknown fields of every wire type (groups included) and known fields sent with a
/// wire type they do not have (which protobuf keeps as unknown fields). Map semantics are
/// protobuf's: an entry without a key has the key "", the last entry of a key wins, and a
/// `Value` whose oneof is set more than once keeps the last kind, merging repeated
/// occurrences of that kind. Every length is checked against the bytes left before use, so
/// no input can make it read out of bounds or reserve more than a small multiple of the
/// record's size.
///
/// Errors (the row is rolled back, and `error_detail()` says what and where):
/// - `errc::malformed_protobuf`: libprotobuf would reject the payload;
/// - `errc::unsupported_value`: a `Value` with no tensor pipemode knows, or a tensor whose
///   keys, values and shape do not agree (see `batch_builder`);
/// - `errc::schema_mismatch`: the record's tensors differ from the first record's.
/// A malformed payload is reported as malformed even when a tensor before the damage already
/// mismatched the schema.
///
/// The parser holds scratch space reused from record to record; it is not thread-safe, but
/// parsers are cheap, so use one per thread.
///
/// @code
/// protobuf_record_parser parser;
/// batch_builder builder(1000);
/// for (each record `rec` of `source`) {
///     bool full = parser.parse(rec, source, builder, ec);
///     if (ec) throw data_error(ec, {std::string(source), rec.offset, rec.index}, parser.error_detail());
///     if (full) deliver(builder.take());
/// }
/// @endcode
class protobuf_record_parser {
public:
    /// Each record's row depends on that record alone, so decode workers may parse with
    /// copies (`parses_independently_v`).
    static constexpr bool independent_records = true;

    /// Parses `rec`'s payload and appends it to `out` as one row (this calls
    /// `out.begin_record` and `out.end_record`). Returns whether the batch is now full; on
    /// failure returns false with `ec` set and the row rolled back.
    bool parse(const record_view& rec, std::string_view source, batch_builder& out, error_code& ec);

    /// After a failed `parse`, a sentence saying what was wrong and where (a byte offset
    /// within the record's payload for malformed input).
    std::string_view error_detail() const noexcept { return detail_; }

private:
    // A map entry found by the first pass: its key, the kind of its Value and where that
    // Value's tensor messages are.
    struct entry {
        std::string_view key;
        std::uint32_t first = 0;  // first of its segments in segments_
        std::uint32_t count = 0;
        std::size_t column = batch_builder::npos;
        record_section section = record_section::features;
        bool has_kind = false;
        tensor_type kind = tensor_type::float32;
    };

    // Protobuf's recursion limit, counted as libprotobuf counts it: every nested message or
    // group takes one level. Record is at 100, its map entries at 99, Values at 98, tensors at 97.
    static constexpr int entry_depth = 99;
    static constexpr int value_depth = 98;
    static constexpr int tensor_depth = 97;

    // One tensor of a remembered layout: its map entry's section and key, and its values, one
    // packed float32 run, as offsets into the record.
    struct layout_run {
        std::uint32_t key_offset = 0;
        std::uint32_t key_size = 0;
        std::uint32_t values_offset = 0;
        std::uint32_t values_size = 0;
        record_section section = record_section::features;
    };

    bool parse_simple(const std::byte* p, const std::byte* end, batch_builder& out);
    enum class layout_match : std::uint8_t { parsed, different, refused };
    layout_match parse_known_layout(const std::byte* p, batch_builder& out);
    void remember_layout(std::span<const std::byte> payload);
    bool parse_general(const record_view& rec, std::string_view source, batch_builder& out, error_code& ec);
    bool scan_record(const std::byte* p, const std::byte* end);
    bool scan_entry(const std::byte* p, const std::byte* end, record_section section);
    bool scan_value(const std::byte* p, const std::byte* end, entry& e);
    bool skip_field(std::uint32_t tag, const std::byte*& p, const std::byte* end, int depth);
    bool check_segments(const entry& e, std::uint32_t first, std::uint32_t count);

    template <bool Store>
    bool decode(tensor_type kind, std::span<const std::byte> message, batch_builder* out);
    template <class T, bool Store>
    bool decode_numeric(const std::byte* p, const std::byte* end, batch_builder* out);
    template <bool Store>
    bool decode_bytes(const std::byte* p, const std::byte* end, batch_builder* out);
    template <bool Store, class Write>
    bool decode_packed_varints(const std::byte* p, std::size_t n, const std::byte* readable_end, Write write);

    bool fail(const std::byte* at, const char* what);
    bool malformed(batch_builder& out, error_code& ec);

    std::vector<entry> entries_;
    std::vector<std::span<const std::byte>> segments_;
    std::vector<std::uint32_t> winner_;  // by column: the entry that supplies it (the last one)
    std::string detail_;
    const std::byte* base_ = nullptr;    // the payload, for offsets in error details

    // The layout of the last record parse_simple took whole, when every tensor was one packed
    // float32 run (see parse_known_layout): that record's bytes, its runs in wire order, and
    // the byte ranges between them, which a record of the same layout repeats exactly.
    std::vector<std::byte> layout_bytes_;
    std::vector<layout_run> layout_runs_;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> layout_gaps_;  // offset, size
    bool has_layout_ = false;
    std::vector<layout_run> walk_;  // the runs parse_simple is finding in the current record
    bool walk_repeatable_ = false;  // every tensor so far took the packed float32 path
};

static_assert(record_parser<protobuf_record_parser>);
static_assert(parses_independently_v<protobuf_record_parser>);

} // namespace pipemode

#include <pipemode/parsers/impl/protobuf_record.hpp>
