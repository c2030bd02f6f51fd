// Fuzz target for the S3 response readers (xml::parse, parse_list_objects,
// parse_error_response): on any input they must not crash, loop or read out of bounds; a
// parse must either succeed with no error or fail with one inside the input; and whatever the
// XML reader accepts must read back the same after being written out again.
//
// The seeds in listing.corpus/ are a ListObjectsV2 page and an error document as S3 sends them.
#include <pipemode/s3/error_response.hpp>
#include <pipemode/s3/listing.hpp>
#include <pipemode/s3/xml.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace pipemode::s3;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

// Writes an element back as XML: its text (escaped) first, then its children, which the
// reader's model (own text concatenated, children in order) reads back identically.
void write(const xml::element& e, std::string& out)
{
    out += '<';
    out += e.name;
    out += '>';
    for (char c : e.text) {
        switch (c) {
        case '<': out += "&lt;"; break;
        case '&': out += "&amp;"; break;
        case '>': out += "&gt;"; break;
        default: out += c;
        }
    }
    for (const auto& child : e.children)
        write(child, out);
    out += "</";
    out += e.name;
    out += '>';
}

bool same(const xml::element& a, const xml::element& b)
{
    if (a.name != b.name || a.text != b.text || a.children.size() != b.children.size())
        return false;
    for (std::size_t i = 0; i < a.children.size(); ++i)
        if (!same(a.children[i], b.children[i]))
            return false;
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view in(reinterpret_cast<const char*>(data), size);

    xml::parse_error err;
    auto root = xml::parse(in, err);
    check(static_cast<bool>(root) != static_cast<bool>(err));
    check(!err || err.offset <= size);
    if (root) {
        std::string again;
        write(*root, again);
        xml::parse_error err2;
        auto reread = xml::parse(again, err2);
        check(reread && same(*root, *reread));
    }

    auto page = parse_list_objects(in, err);
    check(static_cast<bool>(page) != static_cast<bool>(err));
    if (page) {
        check(root && root->name == "ListBucketResult");
        check(!page->is_truncated || !page->next_continuation_token.empty());
    }

    auto e = parse_error_response(503, in);
    check(e.http_status == 503);
    check(!e.code.empty() || !root || root->name != "Error" || !root->child("Code") || root->child("Code")->text.empty());
    std::string line = describe(e, "s3://b/k");
    check(line.rfind("s3://b/k: HTTP 503", 0) == 0);
    return 0;
}
