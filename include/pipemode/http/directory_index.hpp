// pipemode: the directory listings plain HTTP servers generate (nginx's and Apache's
// autoindex, in HTML or nginx's JSON), read as a list of objects and subdirectories. Sans-I/O.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/detail/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipemode::http {

/// One entry of a directory listing: a link relative to the listed directory.
struct index_entry {
    std::string href;                     ///< as the listing gives it (percent-encoded); ends in '/' for a directory
    std::optional<std::uint64_t> size{};  ///< when the listing states it (nginx's JSON format)

    bool is_directory() const noexcept { return href.ends_with('/'); }
    friend bool operator==(const index_entry&, const index_entry&) = default;
};

namespace detail {

/// Whether `href` names something inside the listed directory: relative, not upwards, not a
/// query or fragment (Apache's column-sorting links), not absolute.
inline bool is_child_link(std::string_view href) noexcept
{
    if (href.empty() || href.front() == '?' || href.front() == '#' || href.front() == '/')
        return false;
    if (href.starts_with("../") || href == ".." || href.starts_with("./") || href == ".")
        return false;
    if (href.find("://") != std::string_view::npos || href.starts_with("mailto:"))
        return false;
    // Only one path segment (a file, or a directory ending in '/'): deeper links are not this
    // directory's entries, and ".." segments would escape it.
    const auto slash = href.find('/');
    return slash == std::string_view::npos || slash + 1 == href.size();
}

inline std::vector<index_entry> parse_html_index(std::string_view html)
{
    std::vector<index_entry> out;
    std::size_t at = 0;
    for (;;) {
        // Case-insensitive search for "href", then '=', optional spaces and a quoted value.
        std::size_t h = std::string_view::npos;
        for (std::size_t i = at; i + 4 <= html.size(); ++i) {
            const auto lower = [&](std::size_t k) { return static_cast<char>(html[k] | 0x20); };
            if (lower(i) == 'h' && lower(i + 1) == 'r' && lower(i + 2) == 'e' && lower(i + 3) == 'f') {
                h = i;
                break;
            }
        }
        if (h == std::string_view::npos)
            break;
        std::size_t p = h + 4;
        while (p < html.size() && (html[p] == ' ' || html[p] == '\t'))
            ++p;
        if (p >= html.size() || html[p] != '=') {
            at = h + 4;
            continue;
        }
        ++p;
        while (p < html.size() && (html[p] == ' ' || html[p] == '\t'))
            ++p;
        if (p >= html.size() || (html[p] != '"' && html[p] != '\'')) {
            at = p;
            continue;
        }
        const char quote = html[p];
        const auto end = html.find(quote, p + 1);
        if (end == std::string_view::npos)
            break;
        // The few entities a generated listing uses in attribute values, decoded in one pass
        // so that an escaped '&' is not read again as the start of another entity
        // ("&amp;quot;" is the text "&quot;", not '"').
        const std::string_view raw = html.substr(p + 1, end - p - 1);
        std::string href;
        for (std::size_t k = 0; k < raw.size(); ++k) {
            bool decoded = false;
            if (raw[k] == '&') {
                for (const auto& [entity, ch] : {std::pair<std::string_view, char>{"&amp;", '&'}, {"&quot;", '"'},
                                                 {"&#39;", '\''}, {"&lt;", '<'}, {"&gt;", '>'}}) {
                    if (raw.substr(k, entity.size()) == entity) {
                        href += ch;
                        k += entity.size() - 1;
                        decoded = true;
                        break;
                    }
                }
            }
            if (!decoded)
                href += raw[k];
        }
        if (is_child_link(href))
            out.push_back({std::move(href), std::nullopt});
        at = end + 1;
    }
    return out;
}

inline std::optional<std::vector<index_entry>> parse_json_index(std::string_view text)
{
    pipemode::detail::parse_error err;
    const auto doc = pipemode::detail::json::parse(text, err);
    if (!doc || !doc->is_array())
        return std::nullopt;
    std::vector<index_entry> out;
    for (const auto& v : doc->as_array()) {
        const auto* name = v.find("name");
        const auto* type = v.find("type");
        if (!name || !name->is_string() || !type || !type->is_string())
            return std::nullopt;
        // nginx gives names unencoded: encode what a URL path segment cannot hold.
        std::string href;
        for (const unsigned char c : name->as_string()) {
            if (std::isalnum(c) || std::string_view("-._~!$&'()*+,;=:@").find(static_cast<char>(c)) != std::string_view::npos)
                href += static_cast<char>(c);
            else {
                static constexpr char hex[] = "0123456789ABCDEF";
                href += '%';
                href += hex[c >> 4];
                href += hex[c & 15];
            }
        }
        const bool dir = type->as_string() == "directory";
        if (dir)
            href += '/';
        else if (type->as_string() != "file")
            continue;  // "other": sockets and the like
        index_entry e{std::move(href), std::nullopt};
        if (const auto* size = v.find("size"); !dir && size && size->is_number())
            e.size = size->as_number().as_uint64();
        if (is_child_link(e.href))
            out.push_back(std::move(e));
    }
    return out;
}

} // namespace detail

/// The entries of a generated directory listing, in name order without duplicates: nginx's
/// JSON format (`autoindex_format json`, with sizes) when `body` is a JSON array of
/// `{"name", "type", "size"}`, else the relative links of an HTML page (nginx's and Apache's
/// `autoindex`, Python's `http.server`), leaving out parent, sorting and absolute links.
///
/// A page that is not a listing yields what links it has; callers check that a listed
/// prefix gave objects.
inline std::vector<index_entry> parse_directory_index(std::string_view body)
{
    std::vector<index_entry> out;
    const auto first = body.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos && body[first] == '[') {
        if (auto json = detail::parse_json_index(body))
            out = std::move(*json);
    } else {
        out = detail::parse_html_index(body);
    }
    std::sort(out.begin(), out.end(), [](const index_entry& a, const index_entry& b) { return a.href < b.href; });
    out.erase(std::unique(out.begin(), out.end(), [](const index_entry& a, const index_entry& b) { return a.href == b.href; }),
              out.end());
    return out;
}

} // namespace pipemode::http
