// pipemode: a small JSON writer (RFC 8259), the counterpart of detail/json.hpp.
//
// For the few JSON documents pipemode writes (the container-side inputdataconfig.json,
// resourceconfig.json in tests and tools): strings are escaped so that `json::parse` reads
// back exactly the bytes written, and a string that is not valid UTF-8 is refused rather than
// written as a document no conforming reader accepts.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::detail::json {

/// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
/// U+10FFFF).
inline bool is_valid_utf8(std::string_view s) noexcept
{
    std::size_t i = 0;
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    auto cont = [&](std::size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
    while (i < s.size()) {
        const unsigned char c = b(i);
        if (c < 0x80) {
            ++i;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (!cont(i + 1))
                return false;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (!cont(i + 1) || !cont(i + 2) || (c == 0xE0 && b(i + 1) < 0xA0) || (c == 0xED && b(i + 1) > 0x9F))
                return false;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3) || (c == 0xF0 && b(i + 1) < 0x90)
                || (c == 0xF4 && b(i + 1) > 0x8F))
                return false;
            i += 4;
        } else {
            return false;
        }
    }
    return true;
}

/// Appends `s` to `out` as a JSON string literal, quotes included, without checking that `s`
/// is UTF-8: `"` and `\` are escaped, control characters become `\b \f \n \r \t` or
/// `\u00XX`, and every other byte is copied as is (so valid UTF-8 stays valid).
inline void append_quoted_bytes(std::string& out, std::string_view s)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0xF];
            } else {
                out += ch;
            }
        }
    }
    out += '"';
}

/// Appends `s` to `out` as a JSON string literal, quotes included, escaped as
/// `append_quoted_bytes` does. Throws `std::invalid_argument` when `s` is not valid UTF-8;
/// `out` is then unchanged.
inline void append_quoted(std::string& out, std::string_view s)
{
    if (!is_valid_utf8(s))
        throw std::invalid_argument("cannot write a JSON string that is not valid UTF-8");
    append_quoted_bytes(out, s);
}

/// `s` as a JSON string literal, quotes included (see `append_quoted`).
inline std::string quote(std::string_view s)
{
    std::string out;
    out.reserve(s.size() + 2);
    append_quoted(out, s);
    return out;
}

/// Builds one JSON document, pretty-printed with two-space indentation.
///
/// Calls must nest: `begin_object()`/`end_object()` and `begin_array()`/`end_array()` pair up,
/// and inside an object every value is preceded by `key()`. A call out of that order throws
/// `std::logic_error` (a bug in the caller, not bad data). Commas and indentation are the
/// writer's business.
///
/// Example:
/// ```
/// writer w;
/// w.begin_object().key("hosts").begin_array().string("algo-1").end_array().end_object();
/// std::string text = std::move(w).release();  // {"hosts": ["algo-1"]} over four lines
/// ```
class writer {
public:
    /// Starts an object (as the document, an array element or a member's value).
    writer& begin_object() { return open('{', true); }
    /// Ends the innermost object.
    writer& end_object() { return close('}', true); }
    /// Starts an array.
    writer& begin_array() { return open('[', false); }
    /// Ends the innermost array.
    writer& end_array() { return close(']', false); }

    /// Names the next member of the innermost object.
    writer& key(std::string_view name)
    {
        if (stack_.empty() || !stack_.back().object || key_pending_)
            throw std::logic_error("json::writer: key() outside an object or twice in a row");
        separate();
        append_quoted(out_, name);
        out_ += ": ";
        key_pending_ = true;
        return *this;
    }

    /// Writes a string value.
    writer& string(std::string_view s)
    {
        before_value();
        append_quoted(out_, s);
        return *this;
    }

    /// Writes an unsigned integer value.
    writer& number(std::uint64_t n)
    {
        before_value();
        out_ += std::to_string(n);
        return *this;
    }

    /// Writes `true` or `false`.
    writer& boolean(bool b)
    {
        before_value();
        out_ += b ? "true" : "false";
        return *this;
    }

    /// Writes `null`.
    writer& null()
    {
        before_value();
        out_ += "null";
        return *this;
    }

    /// The document, ending with a newline; throws `std::logic_error` while an object or array
    /// is still open or nothing was written.
    std::string release() &&
    {
        if (!stack_.empty() || !done_)
            throw std::logic_error("json::writer: release() before the document is complete");
        out_ += '\n';
        return std::move(out_);
    }

private:
    struct level {
        bool object;
        std::size_t count = 0;
    };

    void newline_indent(std::size_t depth)
    {
        out_ += '\n';
        out_.append(2 * depth, ' ');
    }

    // Comma and line break before an array element or an object member.
    void separate()
    {
        if (stack_.back().count++ > 0)
            out_ += ',';
        newline_indent(stack_.size());
    }

    void before_value()
    {
        if (stack_.empty()) {
            if (done_)
                throw std::logic_error("json::writer: a second top-level value");
            done_ = true;
        } else if (stack_.back().object) {
            if (!key_pending_)
                throw std::logic_error("json::writer: an object member without key()");
            key_pending_ = false;
        } else {
            separate();
        }
    }

    writer& open(char c, bool object)
    {
        before_value();
        out_ += c;
        stack_.push_back(level{object});
        return *this;
    }

    writer& close(char c, bool object)
    {
        if (stack_.empty() || stack_.back().object != object || key_pending_)
            throw std::logic_error("json::writer: end_object()/end_array() does not match the open value");
        const bool empty = stack_.back().count == 0;
        stack_.pop_back();
        if (!empty)
            newline_indent(stack_.size());
        out_ += c;
        return *this;
    }

    std::string out_;
    std::vector<level> stack_;
    bool key_pending_ = false;
    bool done_ = false;
};

} // namespace pipemode::detail::json
