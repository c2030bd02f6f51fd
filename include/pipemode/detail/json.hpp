// pipemode: a small, bounded JSON reader (RFC 8259) producing a DOM of `json::value`s.
//
// For the few JSON documents pipemode reads (SageMaker manifest files, inputdataconfig.json,
// augmented manifests): strict grammar, strings validated as UTF-8 with `\uXXXX` escapes
// (surrogate pairs included) decoded to UTF-8, numbers kept as their source text so that
// 64-bit integers survive exactly, nesting and input size bounded, and every error reported
// with the byte offset where it was found.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/detail/parse_error.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace pipemode::detail::json {

/// Bounds of one document; exceeding one is `errc::document_too_large`.
struct limits {
    std::size_t max_input = 256u << 20;  ///< bytes of input (a manifest of millions of keys fits)
    std::size_t max_depth = 64;          ///< nesting of arrays and objects
};

class value;

/// A JSON number, kept as its text in the document (e.g. "-1.5e3", "18446744073709551615").
struct number {
    std::string text;

    /// The value as an unsigned 64-bit integer, or nothing when it is negative, fractional,
    /// has an exponent or is too large.
    std::optional<std::uint64_t> as_uint64() const noexcept
    {
        std::uint64_t v = 0;
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || p != text.data() + text.size())
            return std::nullopt;
        return v;
    }

    /// The value as a signed 64-bit integer, or nothing (see `as_uint64`).
    std::optional<std::int64_t> as_int64() const noexcept
    {
        std::int64_t v = 0;
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || p != text.data() + text.size())
            return std::nullopt;
        return v;
    }

    /// The value as the nearest double (infinity when out of range).
    double as_double() const noexcept
    {
        double v = 0;
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec == std::errc::result_out_of_range)
            return text.front() == '-' ? -std::numeric_limits<double>::infinity()
                                       : std::numeric_limits<double>::infinity();
        (void)p;  // the grammar already checked the whole text is a number
        return v;
    }

    friend bool operator==(const number&, const number&) = default;
};

/// An array's elements, in document order.
using array = std::vector<value>;

/// An object's members, in document order; duplicate names are kept (`find` sees the first).
using object = std::vector<std::pair<std::string, value>>;

/// One JSON value and the byte offset in the document where it starts (for error messages
/// about a document's meaning, such as "the manifest's element at byte 120 is not a string").
class value {
public:
    using storage = std::variant<std::nullptr_t, bool, number, std::string, array, object>;

    value() = default;
    value(storage v, std::size_t offset) : v_(std::move(v)), offset_(offset) {}

    bool is_null() const noexcept { return std::holds_alternative<std::nullptr_t>(v_); }
    bool is_bool() const noexcept { return std::holds_alternative<bool>(v_); }
    bool is_number() const noexcept { return std::holds_alternative<number>(v_); }
    bool is_string() const noexcept { return std::holds_alternative<std::string>(v_); }
    bool is_array() const noexcept { return std::holds_alternative<array>(v_); }
    bool is_object() const noexcept { return std::holds_alternative<object>(v_); }

    /// The alternative's value; throws `std::bad_variant_access` when it is another kind.
    bool as_bool() const { return std::get<bool>(v_); }
    const number& as_number() const { return std::get<number>(v_); }
    const std::string& as_string() const { return std::get<std::string>(v_); }
    const array& as_array() const { return std::get<array>(v_); }
    const object& as_object() const { return std::get<object>(v_); }

    /// The first member named `name` of an object, or null (also when this is not an object).
    const value* find(std::string_view name) const noexcept
    {
        if (const auto* o = std::get_if<object>(&v_))
            for (const auto& [k, v] : *o)
                if (k == name)
                    return &v;
        return nullptr;
    }

    /// The underlying variant, for `std::visit`.
    const storage& get() const noexcept { return v_; }

    /// Byte offset of the value's first character in the document.
    std::size_t offset() const noexcept { return offset_; }

private:
    storage v_ = nullptr;
    std::size_t offset_ = 0;
};

namespace impl {

class parser {
public:
    parser(std::string_view in, const limits& lim, parse_error& err) : in_(in), lim_(lim), err_(err) {}

    std::optional<value> run()
    {
        if (in_.size() > lim_.max_input) {
            err_.fail(errc::document_too_large, lim_.max_input, "document larger than the input limit");
            return std::nullopt;
        }
        if (in_.substr(0, 3) == "\xEF\xBB\xBF")
            pos_ = 3;
        value v;
        if (!parse_value(v, 0))
            return std::nullopt;
        skip_space();
        if (pos_ != in_.size()) {
            fail("content after the JSON value");
            return std::nullopt;
        }
        return v;
    }

private:
    bool fail(std::string_view why) { return err_.fail(errc::malformed_json, pos_, why); }
    bool at_end() const noexcept { return pos_ >= in_.size(); }

    void skip_space() noexcept
    {
        while (!at_end() && (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r'))
            ++pos_;
    }

    bool literal(std::string_view word)
    {
        if (in_.substr(pos_, word.size()) != word)
            return fail("invalid literal (expected true, false or null)");
        pos_ += word.size();
        return true;
    }

    bool parse_value(value& out, std::size_t depth)
    {
        skip_space();
        if (at_end())
            return fail("input ends where a value was expected");
        std::size_t start = pos_;
        switch (in_[pos_]) {
        case '{': {
            if (depth >= lim_.max_depth)
                return err_.fail(errc::document_too_large, pos_, "arrays and objects nested deeper than the limit");
            object o;
            if (!parse_object(o, depth + 1))
                return false;
            out = value(std::move(o), start);
            return true;
        }
        case '[': {
            if (depth >= lim_.max_depth)
                return err_.fail(errc::document_too_large, pos_, "arrays and objects nested deeper than the limit");
            array a;
            if (!parse_array(a, depth + 1))
                return false;
            out = value(std::move(a), start);
            return true;
        }
        case '"': {
            std::string s;
            if (!parse_string(s))
                return false;
            out = value(std::move(s), start);
            return true;
        }
        case 't':
            if (!literal("true")) return false;
            out = value(true, start);
            return true;
        case 'f':
            if (!literal("false")) return false;
            out = value(false, start);
            return true;
        case 'n':
            if (!literal("null")) return false;
            out = value(nullptr, start);
            return true;
        default: {
            number n;
            if (!parse_number(n))
                return false;
            out = value(std::move(n), start);
            return true;
        }
        }
    }

    bool parse_array(array& a, std::size_t depth)
    {
        ++pos_;  // '['
        skip_space();
        if (!at_end() && in_[pos_] == ']') {
            ++pos_;
            return true;
        }
        for (;;) {
            a.emplace_back();
            if (!parse_value(a.back(), depth))
                return false;
            skip_space();
            if (at_end())
                return fail("input ends inside an array");
            if (in_[pos_] == ',') {
                ++pos_;
            } else if (in_[pos_] == ']') {
                ++pos_;
                return true;
            } else {
                return fail("expected ',' or ']' in an array");
            }
        }
    }

    bool parse_object(object& o, std::size_t depth)
    {
        ++pos_;  // '{'
        skip_space();
        if (!at_end() && in_[pos_] == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            skip_space();
            if (at_end())
                return fail("input ends inside an object");
            if (in_[pos_] != '"')
                return fail("expected a string as an object member name");
            std::string name;
            if (!parse_string(name))
                return false;
            skip_space();
            if (at_end() || in_[pos_] != ':')
                return fail("expected ':' after an object member name");
            ++pos_;
            // Built in place: moving a temporary `value` makes GCC 12 warn (falsely) about an
            // uninitialised variant at -O2.
            o.emplace_back(std::piecewise_construct, std::forward_as_tuple(std::move(name)), std::forward_as_tuple());
            if (!parse_value(o.back().second, depth))
                return false;
            skip_space();
            if (at_end())
                return fail("input ends inside an object");
            if (in_[pos_] == ',') {
                ++pos_;
            } else if (in_[pos_] == '}') {
                ++pos_;
                return true;
            } else {
                return fail("expected ',' or '}' in an object");
            }
        }
    }

    bool parse_number(number& n)
    {
        std::size_t start = pos_;
        auto digit = [&] { return !at_end() && in_[pos_] >= '0' && in_[pos_] <= '9'; };
        if (!at_end() && in_[pos_] == '-')
            ++pos_;
        if (!digit())
            return fail(pos_ == start ? "unexpected character where a value was expected" : "expected a digit");
        if (in_[pos_] == '0') {
            ++pos_;
        } else {
            while (digit())
                ++pos_;
        }
        if (!at_end() && in_[pos_] == '.') {
            ++pos_;
            if (!digit())
                return fail("expected a digit after the decimal point");
            while (digit())
                ++pos_;
        }
        if (!at_end() && (in_[pos_] == 'e' || in_[pos_] == 'E')) {
            ++pos_;
            if (!at_end() && (in_[pos_] == '+' || in_[pos_] == '-'))
                ++pos_;
            if (!digit())
                return fail("expected a digit in the exponent");
            while (digit())
                ++pos_;
        }
        n.text.assign(in_.substr(start, pos_ - start));
        return true;
    }

    bool hex4(std::uint32_t& out)
    {
        if (in_.size() - pos_ < 4)
            return fail("input ends inside a \\u escape");
        out = 0;
        for (int i = 0; i < 4; ++i) {
            char c = in_[pos_];
            unsigned d;
            if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
            else return fail("expected four hex digits after \\u");
            out = out * 16 + d;
            ++pos_;
        }
        return true;
    }

    static void append_utf8(std::string& out, std::uint32_t cp)
    {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // Length of the well-formed UTF-8 sequence at pos_ (RFC 3629: no overlongs, no surrogates,
    // nothing past U+10FFFF), or 0.
    std::size_t utf8_length() const noexcept
    {
        auto b = [&](std::size_t i) { return static_cast<unsigned char>(in_[pos_ + i]); };
        std::size_t avail = in_.size() - pos_;
        unsigned char c = b(0);
        auto cont = [&](std::size_t i) { return i < avail && (b(i) & 0xC0) == 0x80; };
        if (c >= 0xC2 && c <= 0xDF)
            return cont(1) ? 2 : 0;
        if (c >= 0xE0 && c <= 0xEF) {
            if (!cont(1) || !cont(2))
                return 0;
            if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F))
                return 0;
            return 3;
        }
        if (c >= 0xF0 && c <= 0xF4) {
            if (!cont(1) || !cont(2) || !cont(3))
                return 0;
            if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F))
                return 0;
            return 4;
        }
        return 0;
    }

    bool parse_string(std::string& out)
    {
        ++pos_;  // '"'
        for (;;) {
            if (at_end())
                return fail("unterminated string");
            auto c = static_cast<unsigned char>(in_[pos_]);
            if (c == '"') {
                ++pos_;
                return true;
            }
            if (c < 0x20)
                return fail("control character in a string (escape it)");
            if (c >= 0x80) {
                std::size_t n = utf8_length();
                if (n == 0)
                    return fail("invalid UTF-8 in a string");
                out.append(in_.substr(pos_, n));
                pos_ += n;
                continue;
            }
            if (c != '\\') {
                out += static_cast<char>(c);
                ++pos_;
                continue;
            }
            ++pos_;
            if (at_end())
                return fail("unterminated string");
            char e = in_[pos_++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                std::size_t esc = pos_ - 2;
                std::uint32_t cp = 0;
                if (!hex4(cp))
                    return false;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return err_.fail(errc::malformed_json, esc, "unpaired low surrogate in a \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (in_.substr(pos_, 2) != "\\u")
                        return err_.fail(errc::malformed_json, esc, "high surrogate not followed by a low surrogate");
                    pos_ += 2;
                    std::uint32_t lo = 0;
                    if (!hex4(lo))
                        return false;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return err_.fail(errc::malformed_json, esc, "high surrogate not followed by a low surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                append_utf8(out, cp);
                break;
            }
            default:
                --pos_;
                return fail("invalid escape in a string");
            }
        }
    }

    std::string_view in_;
    const limits& lim_;
    parse_error& err_;
    std::size_t pos_ = 0;
};

} // namespace impl

/// Parses a whole JSON document; on failure returns nothing and fills `err`
/// (`errc::malformed_json` or `errc::document_too_large`, with the byte offset).
///
/// Example: `parse(R"({"prefix": "s3://b/p/"})", err)->find("prefix")->as_string()` is
/// "s3://b/p/".
inline std::optional<value> parse(std::string_view document, parse_error& err, const limits& lim = {})
{
    err = {};
    return impl::parser(document, lim, err).run();
}

} // namespace pipemode::detail::json
