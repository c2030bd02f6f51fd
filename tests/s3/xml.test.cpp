// Tests of the bounded XML reader used for S3 responses.
#include <pipemode/s3/xml.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace pipemode::s3;
using pipemode::errc;

namespace {

const char* const xml_sample = R"(<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<Root xmlns="http://s3.amazonaws.com/doc/2006-03-01/" a='1' b="x>y">
  <Leaf>a &lt;b&gt; &amp; &apos;c&apos; &quot;d&quot; &#x2F;&#47;&#xE9;&#128512;</Leaf>
  <Data><![CDATA[<raw & unescaped>]]> tail</Data>
  <?pi ignored?>
  <Empty/>
  <Empty2 x="y" />
  <Nested><Inner>deep</Inner><!-- skipped --><Inner>second</Inner></Nested>
</Root>
<!-- trailing comment -->
)";

} // namespace

TEST_CASE("xml: elements, text, entities, character references, CDATA")
{
    xml::parse_error err;
    auto root = xml::parse(xml_sample, err);
    REQUIRE(root);
    CHECK_FALSE(err);
    CHECK(root->name == "Root");
    REQUIRE(root->children.size() == 5);
    CHECK(root->child_text("Leaf") == "a <b> & 'c' \"d\" //\xC3\xA9\xF0\x9F\x98\x80");
    CHECK(root->child_text("Data") == "<raw & unescaped> tail");
    CHECK(root->child_text("Empty") == "");
    CHECK(root->child("Empty")->children.empty());
    CHECK(root->child_text("Empty2") == "");
    CHECK_FALSE(root->child_text("Missing"));
    const auto* nested = root->child("Nested");
    REQUIRE(nested);
    REQUIRE(nested->children.size() == 2);
    CHECK(nested->children[0].text == "deep");
    CHECK(nested->children[1].text == "second");
    CHECK(nested->child_text("Inner") == "deep");
    CHECK(root->offset == std::string_view(xml_sample).find("<Root"));
    CHECK(nested->children[1].offset == std::string_view(xml_sample).find("<Inner>second"));
}

TEST_CASE("xml: text keeps its whitespace exactly")
{
    xml::parse_error err;
    auto root = xml::parse("<K>  a\tb\r\n </K>", err);
    REQUIRE(root);
    CHECK(root->text == "  a\tb\r\n ");
    auto spaced_end_tag = xml::parse("<K>x</K >", err);
    REQUIRE(spaced_end_tag);
    CHECK(spaced_end_tag->text == "x");
    auto bom = xml::parse("\xEF\xBB\xBF<K>x</K>", err);
    REQUIRE(bom);
    CHECK(bom->text == "x");
}

TEST_CASE("xml: every truncation of a document is an error, never a crash")
{
    std::string doc = xml_sample;
    // The document is complete once the root element closes; everything before is not.
    std::size_t root_end = doc.find("</Root>") + 7;
    for (std::size_t n = 0; n < root_end; ++n) {
        INFO("prefix of " << n << " bytes");
        xml::parse_error err;
        auto root = xml::parse(std::string_view(doc).substr(0, n), err);
        CHECK_FALSE(root);
        CHECK(err.code == errc::malformed_xml);
        CHECK(err.offset <= n);
    }
    for (std::size_t n = root_end; n <= doc.size(); ++n) {
        xml::parse_error err;
        auto root = xml::parse(std::string_view(doc).substr(0, n), err);
        // Cutting inside the trailing comment is malformed; before or after it is fine.
        bool inside_comment = n > doc.find("<!-- trailing") && n < doc.find("-->", root_end) + 3;
        CHECK(static_cast<bool>(root) == !inside_comment);
    }
}

TEST_CASE("xml: malformed documents name the problem and its offset")
{
    struct bad_case {
        const char* doc;
        std::size_t offset;
        const char* reason;
    };
    const bad_case cases[] = {
        {"", 0, "document has no root element"},
        {"   ", 3, "document has no root element"},
        {"text<a/>", 0, "text before the root element"},
        {"<a></b>", 3, "end tag does not match the start tag"},
        {"<a><b></a>", 6, "end tag does not match the start tag"},
        {"<a/><b/>", 4, "content after the root element"},
        {"<a/>junk", 4, "content after the root element"},
        {"<a>&nbsp;</a>", 3, "unknown entity (only &lt; &gt; &amp; &apos; &quot; and &#...; are defined)"},
        {"<a>&lt</a>", 3, "unterminated or overlong character reference"},
        {"<a>&lt<b>;</b></a>", 3, "unknown entity (only &lt; &gt; &amp; &apos; &quot; and &#...; are defined)"},
        {"<a>&#;</a>", 3, "empty numeric character reference"},
        {"<a>&#x;</a>", 3, "empty numeric character reference"},
        {"<a>&#xZZ;</a>", 3, "bad digit in a numeric character reference"},
        {"<a>&#0;</a>", 3, "character reference to a character XML does not allow"},
        {"<a>&#xD800;</a>", 3, "character reference to a character XML does not allow"},
        {"<a>&#x110000;</a>", 3, "character reference beyond U+10FFFF"},
        {"<a>&#99999999999999;</a>", 3, "character reference beyond U+10FFFF"},
        {"<a>&#0000000000000000065;</a>", 3, "unterminated or overlong character reference"},
        {"<a>&amp</a>", 3, "unterminated or overlong character reference"},
        {"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", 0, "document type declarations are not supported"},
        {"<a><!ENTITY x></a>", 3, "unexpected markup declaration inside an element"},
        {"<a x></a>", 4, "expected '=' after an attribute name"},
        {"<a x=1></a>", 5, "expected a quoted attribute value"},
        {"<a x='<'></a>", 6, "'<' in an attribute value"},
        {"<a x='1'y='2'></a>", 8, "expected whitespace, '>' or '/>' in a start tag"},
        {"<1a/>", 1, "expected an element name"},
        {"< a/>", 1, "expected an element name"},
        {"<a><!-- x -- y --></a>", 10, "'--' inside a comment"},
        {"<a></a x>", 7, "expected '>' to close an end tag"},
    };
    for (const auto& c : cases) {
        INFO(c.doc);
        xml::parse_error err;
        CHECK_FALSE(xml::parse(c.doc, err));
        CHECK(err.code == errc::malformed_xml);
        CHECK(err.offset == c.offset);
        CHECK(err.reason == c.reason);
    }
}

TEST_CASE("xml: limits on depth, element count and input size")
{
    std::string deep;
    for (int i = 0; i < 32; ++i)
        deep += "<e>";
    for (int i = 0; i < 32; ++i)
        deep += "</e>";
    xml::parse_error err;
    CHECK(xml::parse(deep, err));

    std::string deeper = "<e>" + deep + "</e>";
    CHECK_FALSE(xml::parse(deeper, err));
    CHECK(err.code == errc::document_too_large);
    CHECK(err.offset == 32 * 3);

    // A very deep document stops at the limit instead of recursing through it.
    std::string abyss(1u << 20, '<');
    for (std::size_t i = 1; i < abyss.size(); i += 2)
        abyss[i] = 'a';
    CHECK_FALSE(xml::parse(abyss, err));

    xml::limits small;
    small.max_elements = 3;
    CHECK(xml::parse("<a><b/><c/></a>", err, small));
    CHECK_FALSE(xml::parse("<a><b/><c/><d/></a>", err, small));
    CHECK(err.code == errc::document_too_large);

    small.max_input = 10;
    CHECK(xml::parse("<a>12345</a>", err, small) == std::nullopt);
    CHECK(err.code == errc::document_too_large);
    CHECK(err.to_string() == "document exceeds its reader's size or nesting limit at byte 10: document larger than the input limit");
}
