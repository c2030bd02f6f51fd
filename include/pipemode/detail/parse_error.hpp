// pipemode: where and why a document reader (XML, JSON) stopped.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace pipemode::detail {

/// The outcome of parsing a document: empty on success, otherwise the error code, the byte
/// offset in the input where the problem was found and a short reason.
///
/// The reason is a string literal (static storage), so a parse_error is cheap to fill in on the
/// failure path and never allocates.
struct parse_error {
    error_code code;               ///< empty on success
    std::size_t offset = 0;        ///< byte offset into the document of the problem
    std::string_view reason = {};  ///< e.g. "unterminated string"; a string literal

    /// True when parsing failed.
    explicit operator bool() const noexcept { return static_cast<bool>(code); }

    /// Records a failure; returns false so readers can write `return err.fail(...)`.
    bool fail(errc e, std::size_t at, std::string_view why) noexcept
    {
        code = e;
        offset = at;
        reason = why;
        return false;
    }

    /// Renders "MESSAGE at byte N: REASON", for exceptions and logs.
    std::string to_string() const
    {
        std::string s = code.message() + " at byte " + std::to_string(offset);
        if (!reason.empty()) {
            s += ": ";
            s.append(reason);
        }
        return s;
    }
};

} // namespace pipemode::detail
