// pipemode: error codes and the exception that reaches the training loop.
#pragma once

#include <pipemode/config.hpp>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace pipemode {

/// Errors pipemode itself detects in the data or in its configuration.
///
/// "Need more input" is never one of these: decoders report it by consuming what they were
/// given and producing nothing. I/O errors keep their own categories (system, Asio, HTTP).
enum class errc {
    // RecordIO framing
    bad_magic = 1,         ///< a record header did not start with the RecordIO magic word
    record_too_large,      ///< a record's length exceeds the configured cap
    truncated_record,      ///< the input ended inside a record
    bad_continuation,      ///< continuation flags out of order (e.g. "middle" without "first")
    // TFRecord framing
    crc_mismatch,          ///< a TFRecord length or data CRC did not match
    // record contents
    malformed_protobuf,    ///< the payload is not a valid aialgs.data.Record
    unsupported_value,     ///< a Value of a kind pipemode does not decode
    schema_mismatch,       ///< a record's features differ from the first record's
    bad_csv_field,         ///< a CSV field is not a number
    ragged_csv_row,        ///< a CSV row has a different number of columns from the first
    corrupt_gzip,          ///< the gzip stream is damaged
    // sources and delivery
    timed_out,             ///< a wait (FIFO to appear, first byte) ran out of time
    object_changed,        ///< an object changed while it was being read
    empty_data_set,        ///< there is nothing to read
    not_a_fifo,            ///< a path that should be a FIFO (named pipe) is something else
    not_a_regular_file,    ///< a path that should be a regular file is something else
    range_past_end,        ///< a byte range reaches past the end of the file
    // documents (S3 responses, manifests, channel configuration)
    malformed_xml,         ///< a document is not well-formed XML (or uses XML that S3 never sends)
    malformed_json,        ///< a document is not valid JSON
    document_too_large,    ///< a document exceeds a size or nesting limit of its reader
    malformed_s3_response, ///< well-formed XML that is not the S3 response that was expected
    malformed_manifest,    ///< a manifest file is valid JSON but not a valid manifest
    // HTTP and S3 transfers
    http_error,            ///< the server answered a request with an error status
    bad_http_response,     ///< a response contradicts the request (wrong Content-Range, too many bytes)
    range_not_supported,   ///< the server ignored a Range request for an object larger than one part
    retries_exhausted,     ///< a request kept failing until its retries or the retry budget ran out
    // text and compressed input (added after the codes above, which keep their values)
    line_too_long,         ///< a text line is longer than the configured maximum record size
    truncated_gzip,        ///< the input ended inside a gzip member
};

/// The error category of `pipemode::errc`.
class error_category_impl final : public boost::system::error_category {
public:
    constexpr error_category_impl() noexcept : boost::system::error_category(0x7069'7065'6d6f'6465ULL) {}

    const char* name() const noexcept override { return "pipemode"; }

    std::string message(int ev) const override
    {
        switch (static_cast<errc>(ev)) {
        case errc::bad_magic: return "bad RecordIO magic number";
        case errc::record_too_large: return "record larger than the configured maximum";
        case errc::truncated_record: return "input ends inside a record";
        case errc::bad_continuation: return "RecordIO continuation flags out of order";
        case errc::crc_mismatch: return "TFRecord CRC mismatch";
        case errc::malformed_protobuf: return "malformed protobuf Record";
        case errc::unsupported_value: return "unsupported protobuf Value kind";
        case errc::schema_mismatch: return "record schema differs from the first record";
        case errc::bad_csv_field: return "CSV field is not a number";
        case errc::ragged_csv_row: return "CSV row has a different number of columns";
        case errc::corrupt_gzip: return "corrupt gzip stream";
        case errc::timed_out: return "timed out";
        case errc::object_changed: return "object changed while it was being read";
        case errc::empty_data_set: return "the data set is empty";
        case errc::not_a_fifo: return "not a FIFO (named pipe)";
        case errc::not_a_regular_file: return "not a regular file";
        case errc::range_past_end: return "byte range reaches past the end of the file";
        case errc::malformed_xml: return "malformed XML document";
        case errc::malformed_json: return "malformed JSON document";
        case errc::document_too_large: return "document exceeds its reader's size or nesting limit";
        case errc::malformed_s3_response: return "unexpected S3 response document";
        case errc::malformed_manifest: return "malformed manifest file";
        case errc::http_error: return "the server refused the request";
        case errc::bad_http_response: return "the server's response does not match the request";
        case errc::range_not_supported: return "the server does not support byte-range requests";
        case errc::retries_exhausted: return "the request failed and its retries ran out";
        case errc::line_too_long: return "line longer than the configured maximum";
        case errc::truncated_gzip: return "input ends inside a gzip member";
        }
        return "unknown pipemode error";
    }
};

/// The single instance of pipemode's error category.
inline const boost::system::error_category& error_category() noexcept
{
    static constexpr error_category_impl instance;
    return instance;
}

/// Makes an `error_code` from a `pipemode::errc` (found by argument-dependent lookup).
inline error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

/// Where in the data something happened: the source, the byte offset within it and the index
/// of the record (counted from 0 within the source).
struct data_location {
    std::string source;  ///< a path, `s3://bucket/key`, URL or `memory:NAME`
    std::uint64_t byte_offset = 0;
    std::uint64_t record_index = 0;

    /// Renders "SOURCE, byte N, record M".
    std::string to_string() const
    {
        return source + ", byte " + std::to_string(byte_offset) + ", record "
            + std::to_string(record_index);
    }
};

/// The exception the training loop sees when the data is bad or cannot be read.
///
/// It names the source, the byte offset and the record index, and keeps the error code so
/// that callers can tell kinds of failure apart without parsing the message.
class data_error : public std::runtime_error {
public:
    data_error(error_code ec, data_location where, std::string_view detail = {})
        : std::runtime_error(compose(ec, where, detail)), code_(ec), where_(std::move(where))
    {
    }

    /// What went wrong.
    const error_code& code() const noexcept { return code_; }

    /// Where it went wrong.
    const data_location& where() const noexcept { return where_; }

private:
    static std::string compose(const error_code& ec, const data_location& where, std::string_view detail)
    {
        std::string s = where.to_string() + ": " + ec.message();
        if (!detail.empty()) {
            s += " (";
            s.append(detail);
            s += ')';
        }
        return s;
    }

    error_code code_;
    data_location where_;
};

} // namespace pipemode

template <>
struct boost::system::is_error_code_enum<pipemode::errc> : std::true_type {};
