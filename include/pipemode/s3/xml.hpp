// pipemode: a small, bounded XML reader for S3 response documents.
//
// S3 answers with short, flat, machine-written XML. This reader builds a tree of elements with
// their character data and nothing else: attributes, comments, processing instructions and the
// XML declaration are skipped; the five predefined entities, numeric character references and
// CDATA sections are decoded. Document type declarations are rejected (S3 never sends one, and
// refusing them rules out entity-expansion attacks). Every size is bounded and malformed input
// is reported with the byte offset of the problem, never by a crash or a loop.
// See docs/s3-parsing.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/detail/parse_error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::s3::xml {

using pipemode::detail::parse_error;

/// Bounds of one document; exceeding one is `errc::document_too_large`.
struct limits {
    std::size_t max_input = 16u << 20;       ///< bytes of input
    std::size_t max_depth = 32;              ///< nesting of elements (the root is depth 1)
    std::size_t max_elements = 1u << 20;     ///< elements in the whole document
};

/// An element: its name as written (a prefix, if any, is kept: `s3:Key`), the concatenation of
/// its own character data (text and CDATA, entities decoded, not its children's) and its child
/// elements in document order, and where it starts in the document (for error messages about
/// the document's meaning).
struct element {
    std::string name;
    std::string text;
    std::vector<element> children;
    std::size_t offset = 0;  ///< byte offset of the element's '<'

    /// The first child named `n`, or null.
    const element* child(std::string_view n) const noexcept
    {
        for (const auto& c : children)
            if (c.name == n)
                return &c;
        return nullptr;
    }

    /// The text of the first child named `n`, or nothing when there is no such child.
    std::optional<std::string_view> child_text(std::string_view n) const noexcept
    {
        if (const element* c = child(n))
            return std::string_view(c->text);
        return std::nullopt;
    }
};

namespace detail {

class parser {
public:
    parser(std::string_view in, const limits& lim, parse_error& err) : in_(in), lim_(lim), err_(err) {}

    std::optional<element> run()
    {
        if (in_.size() > lim_.max_input) {
            err_.fail(errc::document_too_large, lim_.max_input, "document larger than the input limit");
            return std::nullopt;
        }
        if (in_.substr(0, 3) == "\xEF\xBB\xBF")
            pos_ = 3;
        if (!skip_misc())
            return std::nullopt;
        if (at_end() || in_[pos_] != '<') {
            fail(at_end() ? "document has no root element" : "text before the root element");
            return std::nullopt;
        }
        element root;
        if (!parse_element(root, 1))
            return std::nullopt;
        if (!skip_misc())
            return std::nullopt;
        if (!at_end()) {
            fail("content after the root element");
            return std::nullopt;
        }
        return root;
    }

private:
    bool at_end() const noexcept { return pos_ >= in_.size(); }
    bool starts(std::string_view s) const noexcept { return in_.substr(pos_, s.size()) == s; }
    bool fail(std::string_view why) { return err_.fail(errc::malformed_xml, pos_, why); }

    static bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

    static bool is_name_start(char c) noexcept
    {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'
            || static_cast<unsigned char>(c) >= 0x80;
    }

    static bool is_name_char(char c) noexcept
    {
        return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
    }

    void skip_space() noexcept
    {
        while (!at_end() && is_space(in_[pos_]))
            ++pos_;
    }

    // Skips past `terminator`, failing with `why` when the input ends first.
    bool skip_past(std::string_view terminator, std::string_view why)
    {
        std::size_t end = in_.find(terminator, pos_);
        if (end == std::string_view::npos) {
            pos_ = in_.size();
            return fail(why);
        }
        pos_ = end + terminator.size();
        return true;
    }

    // Whitespace, comments and processing instructions (the XML declaration among them), as
    // allowed before and after the root element.
    bool skip_misc()
    {
        for (;;) {
            skip_space();
            if (starts("<!--")) {
                if (!skip_comment())
                    return false;
            } else if (starts("<?")) {
                if (!skip_past("?>", "unterminated processing instruction"))
                    return false;
            } else if (starts("<!")) {
                return fail("document type declarations are not supported");
            } else {
                return true;
            }
        }
    }

    bool skip_comment()
    {
        pos_ += 4;
        std::size_t end = in_.find("--", pos_);
        if (end == std::string_view::npos) {
            pos_ = in_.size();
            return fail("unterminated comment");
        }
        pos_ = end;
        if (!starts("-->"))
            return fail("'--' inside a comment");
        pos_ += 3;
        return true;
    }

    bool parse_name(std::string& out)
    {
        std::size_t start = pos_;
        if (at_end() || !is_name_start(in_[pos_]))
            return fail("expected an element name");
        while (!at_end() && is_name_char(in_[pos_]))
            ++pos_;
        out.assign(in_.substr(start, pos_ - start));
        return true;
    }

    // Attributes are read only to be skipped: S3's responses carry none that matter (xmlns).
    bool skip_attributes(bool& self_closing)
    {
        for (;;) {
            std::size_t before = pos_;
            skip_space();
            if (at_end())
                return fail("unterminated start tag");
            if (in_[pos_] == '>') {
                ++pos_;
                self_closing = false;
                return true;
            }
            if (starts("/>")) {
                pos_ += 2;
                self_closing = true;
                return true;
            }
            if (pos_ == before)
                return fail("expected whitespace, '>' or '/>' in a start tag");
            std::string ignored;
            if (!parse_name(ignored))
                return false;
            skip_space();
            if (at_end() || in_[pos_] != '=')
                return fail("expected '=' after an attribute name");
            ++pos_;
            skip_space();
            if (at_end() || (in_[pos_] != '"' && in_[pos_] != '\''))
                return fail("expected a quoted attribute value");
            char quote = in_[pos_++];
            std::size_t end = in_.find(quote, pos_);
            if (end == std::string_view::npos) {
                pos_ = in_.size();
                return fail("unterminated attribute value");
            }
            if (in_.substr(pos_, end - pos_).find('<') != std::string_view::npos)
                return fail("'<' in an attribute value");
            pos_ = end + 1;
        }
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

    bool parse_reference(std::string& out)
    {
        std::size_t semi = in_.find(';', pos_);
        // The longest reference is "&#x10FFFF;" (10 bytes); leading zeros allowed up to a bound.
        if (semi == std::string_view::npos || semi - pos_ > 16)
            return fail("unterminated or overlong character reference");
        std::string_view ref = in_.substr(pos_ + 1, semi - pos_ - 1);
        if (ref == "lt") out += '<';
        else if (ref == "gt") out += '>';
        else if (ref == "amp") out += '&';
        else if (ref == "apos") out += '\'';
        else if (ref == "quot") out += '"';
        else if (!ref.empty() && ref[0] == '#') {
            bool hex = ref.size() > 1 && ref[1] == 'x';
            std::string_view digits = ref.substr(hex ? 2 : 1);
            if (digits.empty())
                return fail("empty numeric character reference");
            std::uint32_t cp = 0;
            for (char c : digits) {
                unsigned d;
                if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
                else if (hex && c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
                else if (hex && c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
                else return fail("bad digit in a numeric character reference");
                cp = cp * (hex ? 16 : 10) + d;
                if (cp > 0x10FFFF)
                    return fail("character reference beyond U+10FFFF");
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                return fail("character reference to a character XML does not allow");
            append_utf8(out, cp);
        } else {
            return fail("unknown entity (only &lt; &gt; &amp; &apos; &quot; and &#...; are defined)");
        }
        pos_ = semi + 1;
        return true;
    }

    bool parse_element(element& e, std::size_t depth)
    {
        if (depth > lim_.max_depth)
            return err_.fail(errc::document_too_large, pos_, "elements nested deeper than the limit");
        if (++elements_ > lim_.max_elements)
            return err_.fail(errc::document_too_large, pos_, "more elements than the limit");
        e.offset = pos_;
        ++pos_;  // '<'
        if (!parse_name(e.name))
            return false;
        bool self_closing = false;
        if (!skip_attributes(self_closing))
            return false;
        if (self_closing)
            return true;
        for (;;) {
            if (at_end())
                return fail("input ends inside an element");
            char c = in_[pos_];
            if (c == '&') {
                if (!parse_reference(e.text))
                    return false;
            } else if (c != '<') {
                std::size_t end = in_.find_first_of("<&", pos_);
                if (end == std::string_view::npos)
                    end = in_.size();
                e.text.append(in_.substr(pos_, end - pos_));
                pos_ = end;
            } else if (starts("</")) {
                std::size_t tag = pos_;
                pos_ += 2;
                std::string closing;
                if (!parse_name(closing))
                    return false;
                if (closing != e.name)
                    return err_.fail(errc::malformed_xml, tag, "end tag does not match the start tag");
                skip_space();
                if (at_end() || in_[pos_] != '>')
                    return fail("expected '>' to close an end tag");
                ++pos_;
                return true;
            } else if (starts("<!--")) {
                if (!skip_comment())
                    return false;
            } else if (starts("<![CDATA[")) {
                pos_ += 9;
                std::size_t end = in_.find("]]>", pos_);
                if (end == std::string_view::npos) {
                    pos_ = in_.size();
                    return fail("unterminated CDATA section");
                }
                e.text.append(in_.substr(pos_, end - pos_));
                pos_ = end + 3;
            } else if (starts("<?")) {
                if (!skip_past("?>", "unterminated processing instruction"))
                    return false;
            } else if (starts("<!")) {
                return fail("unexpected markup declaration inside an element");
            } else {
                e.children.emplace_back();
                if (!parse_element(e.children.back(), depth + 1))
                    return false;
            }
        }
    }

    std::string_view in_;
    const limits& lim_;
    parse_error& err_;
    std::size_t pos_ = 0;
    std::size_t elements_ = 0;
};

} // namespace detail

/// Parses a whole document into its root element; on failure returns nothing and fills `err`
/// (`errc::malformed_xml` or `errc::document_too_large`, with the byte offset).
///
/// Example: `parse("<Error><Code>NoSuchKey</Code></Error>", err)->child_text("Code")` is
/// "NoSuchKey".
inline std::optional<element> parse(std::string_view document, parse_error& err, const limits& lim = {})
{
    err = {};
    return detail::parser(document, lim, err).run();
}

} // namespace pipemode::s3::xml
