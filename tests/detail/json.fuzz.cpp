// Fuzz target for the JSON reader and the manifest reader: on any input they must not crash,
// loop or read out of bounds; a parse must either succeed with no error or fail with one
// inside the input; and whatever the JSON reader accepts must read back the same after being
// written out again.
//
// The seeds in json.corpus/ are a SageMaker manifest and an inputdataconfig.json.
#include <pipemode/detail/json.hpp>
#include <pipemode/s3/manifest.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace json = pipemode::detail::json;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

void write_string(const std::string& s, std::string& out)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 0xF];
        } else {
            out += c;
        }
    }
    out += '"';
}

void write(const json::value& v, std::string& out)
{
    if (v.is_null()) out += "null";
    else if (v.is_bool()) out += v.as_bool() ? "true" : "false";
    else if (v.is_number()) out += v.as_number().text;
    else if (v.is_string()) write_string(v.as_string(), out);
    else if (v.is_array()) {
        out += '[';
        for (std::size_t i = 0; i < v.as_array().size(); ++i) {
            if (i) out += ',';
            write(v.as_array()[i], out);
        }
        out += ']';
    } else {
        out += '{';
        bool first = true;
        for (const auto& [k, m] : v.as_object()) {
            if (!first) out += ',';
            first = false;
            write_string(k, out);
            out += ':';
            write(m, out);
        }
        out += '}';
    }
}

bool same(const json::value& a, const json::value& b)
{
    if (a.get().index() != b.get().index())
        return false;
    if (a.is_bool()) return a.as_bool() == b.as_bool();
    if (a.is_number()) return a.as_number() == b.as_number();
    if (a.is_string()) return a.as_string() == b.as_string();
    if (a.is_array()) {
        if (a.as_array().size() != b.as_array().size()) return false;
        for (std::size_t i = 0; i < a.as_array().size(); ++i)
            if (!same(a.as_array()[i], b.as_array()[i])) return false;
        return true;
    }
    if (a.is_object()) {
        if (a.as_object().size() != b.as_object().size()) return false;
        for (std::size_t i = 0; i < a.as_object().size(); ++i)
            if (a.as_object()[i].first != b.as_object()[i].first || !same(a.as_object()[i].second, b.as_object()[i].second))
                return false;
        return true;
    }
    return true;  // null
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view in(reinterpret_cast<const char*>(data), size);

    pipemode::detail::parse_error err;
    auto doc = json::parse(in, err);
    check(static_cast<bool>(doc) != static_cast<bool>(err));
    check(!err || err.offset <= size);
    if (doc) {
        std::string again;
        write(*doc, again);
        pipemode::detail::parse_error err2;
        auto reread = json::parse(again, err2);
        check(reread && same(*doc, *reread));
    }

    auto uris = pipemode::s3::parse_manifest(in, err);
    check(static_cast<bool>(uris) != static_cast<bool>(err));
    check(!err || err.offset <= size);
    if (uris) {
        check(doc && doc->is_array());
        check(uris->size() + 1 == doc->as_array().size());
    }
    return 0;
}
