// Fuzz target for parse_directory_index (nginx and Apache autoindex pages, HTML or nginx's
// JSON format), which decides what a plain-HTTP prefix lists.
//
// On any input:
// - no crash, no read out of bounds, no exception;
// - the entries are sorted by href without duplicates, every href is a child link of the listed
//   directory (non-empty, one path segment, no "..", ".", scheme, query, fragment or leading
//   '/'), so joining it to the directory URL can never leave the directory;
// - a size is only ever given by the JSON format, and only for files;
// - an HTML href is no longer than the input (entities only shrink it);
// - the entries written back as an nginx-style HTML page and as an nginx JSON listing (names
//   percent-decoded) read back to the same entries.
//
// The seeds in directory_index.corpus/ are listings as nginx (HTML and JSON), Apache and
// Python's http.server generate them.
#include <pipemode/http/directory_index.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::http;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

// An href of the JSON format back to the name nginx gave; false when it is not one the JSON
// format produces (a '%' not followed by two hex digits).
bool percent_decode(std::string_view href, std::string& out)
{
    for (std::size_t i = 0; i < href.size(); ++i) {
        if (href[i] != '%') {
            out += href[i];
            continue;
        }
        if (i + 2 >= href.size() || hex_value(href[i + 1]) < 0 || hex_value(href[i + 2]) < 0)
            return false;
        out += static_cast<char>(hex_value(href[i + 1]) * 16 + hex_value(href[i + 2]));
        i += 2;
    }
    return true;
}

void append_json_string(std::string& out, std::string_view s)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
    out += '"';
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto entries = parse_directory_index(input);
    const auto first = input.find_first_not_of(" \t\r\n");
    const bool json = first != std::string_view::npos && input[first] == '[';

    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        check(i == 0 || entries[i - 1].href < e.href);
        check(detail::is_child_link(e.href));
        const auto slash = e.href.find('/');
        check(slash == std::string::npos || slash + 1 == e.href.size());
        check(e.href != "./" && e.href != "../");
        check(!e.size || (json && !e.is_directory()));
        check(json || e.href.size() <= size);
    }

    // Written back as an HTML page (escaping what the reader unescapes), read the same.
    std::string html = "<html><head><title>Index of /data/</title></head><body>\n<a href=\"../\">../</a>\n";
    for (const auto& e : entries) {
        html += "<a href=\"";
        for (const char c : e.href) {
            switch (c) {
            case '&': html += "&amp;"; break;
            case '"': html += "&quot;"; break;
            case '<': html += "&lt;"; break;
            case '>': html += "&gt;"; break;
            default: html += c;
            }
        }
        html += "\">x</a> 01-Jan-2026 00:00 1\n";
    }
    html += "</body></html>\n";
    auto from_html = parse_directory_index(html);
    check(from_html.size() == entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i)
        check(from_html[i].href == entries[i].href && !from_html[i].size);

    // A JSON listing's entries written back as nginx's JSON format, read the same.
    if (!json)
        return 0;
    std::string listing = "[\n";
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        std::string name;
        const std::string_view href = e.is_directory() ? std::string_view(e.href).substr(0, e.href.size() - 1) : e.href;
        check(percent_decode(href, name));
        if (i)
            listing += ",\n";
        listing += "{ \"name\":";
        append_json_string(listing, name);
        listing += e.is_directory() ? ", \"type\":\"directory\"" : ", \"type\":\"file\"";
        listing += ", \"mtime\":\"Sat, 10 Jan 2026 08:00:00 GMT\"";
        if (e.size)
            listing += ", \"size\":" + std::to_string(*e.size);
        listing += " }";
    }
    listing += "\n]\n";
    check(parse_directory_index(listing) == entries);
    return 0;
}
