// Tests of the bounded JSON reader (manifests, inputdataconfig.json, augmented manifests).
#include <pipemode/detail/json.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

namespace json = pipemode::detail::json;
using pipemode::errc;
using pipemode::detail::parse_error;

namespace {

const char* const sample = R"( {
  "s": "a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00 raw \u00C9t\u00e9 é",
  "n": [0, -0, 1.5, -12e3, 2E-2, 18446744073709551615, 9223372036854775807, -9223372036854775808],
  "b": [true, false, null],
  "o": {"nested": {"deep": []}, "empty": {}},
  "dup": 1, "dup": 2
} )";

} // namespace

TEST_CASE("json: values of every kind, with escapes decoded to UTF-8")
{
    parse_error err;
    auto doc = json::parse(sample, err);
    REQUIRE(doc);
    CHECK_FALSE(err);
    REQUIRE(doc->is_object());
    CHECK(doc->offset() == 1);
    CHECK(doc->as_object().size() == 6);
    CHECK(doc->find("s")->as_string()
          == "a\"b\\c/d\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 raw \xC3\x89t\xC3\xA9 \xC3\xA9");

    const auto& n = doc->find("n")->as_array();
    REQUIRE(n.size() == 8);
    CHECK(n[0].as_number().text == "0");
    CHECK(n[0].as_number().as_uint64() == 0u);
    CHECK(n[1].as_number().text == "-0");
    CHECK(n[2].as_number().as_double() == 1.5);
    CHECK_FALSE(n[2].as_number().as_uint64());
    CHECK(n[3].as_number().as_double() == -12000.0);
    CHECK_FALSE(n[3].as_number().as_int64());
    CHECK(n[4].as_number().as_double() == Approx(0.02));
    CHECK(n[5].as_number().as_uint64() == 18446744073709551615ull);
    CHECK_FALSE(n[5].as_number().as_int64());
    CHECK(n[6].as_number().as_int64() == 9223372036854775807ll);
    CHECK(n[7].as_number().as_int64() == (-9223372036854775807ll - 1));
    CHECK_FALSE(n[7].as_number().as_uint64());

    const auto& b = doc->find("b")->as_array();
    CHECK(b[0].as_bool());
    CHECK_FALSE(b[1].as_bool());
    CHECK(b[2].is_null());

    const auto* o = doc->find("o");
    REQUIRE(o);
    CHECK(o->find("nested")->find("deep")->as_array().empty());
    CHECK(o->find("empty")->as_object().empty());
    CHECK(o->find("missing") == nullptr);
    CHECK(doc->find("s")->find("x") == nullptr);  // not an object

    CHECK(doc->find("dup")->as_number().text == "1");  // the first of duplicate names
    CHECK(doc->find("b")->offset() == std::string_view(sample).find("[true"));
    CHECK_THROWS_AS(doc->find("s")->as_array(), std::bad_variant_access);

    json::value huge = *json::parse("1e400", err);
    CHECK(std::isinf(huge.as_number().as_double()));
    CHECK(json::parse("-1e400", err)->as_number().as_double() < 0);
    CHECK(json::parse("\xEF\xBB\xBF\"bom\"", err)->as_string() == "bom");
}

TEST_CASE("json: every truncation of a document is an error, never a crash")
{
    std::string doc = sample;
    std::size_t end = doc.rfind('}') + 1;
    for (std::size_t n = 0; n < end; ++n) {
        INFO("prefix of " << n << " bytes");
        parse_error err;
        auto v = json::parse(std::string_view(doc).substr(0, n), err);
        // A prefix that happens to be a whole value ("" is not) would parse; none of these is.
        CHECK_FALSE(v);
        CHECK(err.code == errc::malformed_json);
        CHECK(err.offset <= n);
    }
    parse_error err;
    CHECK(json::parse(doc, err));
}

TEST_CASE("json: malformed documents name the problem and its byte offset")
{
    struct bad_case {
        std::string_view doc;
        std::size_t offset;
        const char* reason;
    };
    const bad_case cases[] = {
        {"", 0, "input ends where a value was expected"},
        {"  ", 2, "input ends where a value was expected"},
        {"[1,]", 3, "unexpected character where a value was expected"},
        {"[1 2]", 3, "expected ',' or ']' in an array"},
        {"{\"a\" 1}", 5, "expected ':' after an object member name"},
        {"{\"a\":1,}", 7, "expected a string as an object member name"},
        {"{a:1}", 1, "expected a string as an object member name"},
        {"{\"a\":1 \"b\":2}", 7, "expected ',' or '}' in an object"},
        {"tru", 0, "invalid literal (expected true, false or null)"},
        {"nul", 0, "invalid literal (expected true, false or null)"},
        {"True", 0, "unexpected character where a value was expected"},
        {"01", 1, "content after the JSON value"},
        {"-", 1, "expected a digit"},
        {"1.", 2, "expected a digit after the decimal point"},
        {"1e", 2, "expected a digit in the exponent"},
        {"1e+", 3, "expected a digit in the exponent"},
        {"+1", 0, "unexpected character where a value was expected"},
        {".5", 0, "unexpected character where a value was expected"},
        {"NaN", 0, "unexpected character where a value was expected"},
        {"\"abc", 4, "unterminated string"},
        {"\"a\\", 3, "unterminated string"},
        {"\"a\\x\"", 3, "invalid escape in a string"},
        {"\"\\u12zz\"", 5, "expected four hex digits after \\u"},
        {"\"\\u12\"", 3, "input ends inside a \\u escape"},
        {"\"\\u12", 3, "input ends inside a \\u escape"},
        {"\"\\ud83d\"", 1, "high surrogate not followed by a low surrogate"},
        {"\"\\ud83d\\u0041\"", 1, "high surrogate not followed by a low surrogate"},
        {"\"\\ude00\"", 1, "unpaired low surrogate in a \\u escape"},
        {"\"a\tb\"", 2, "control character in a string (escape it)"},
        {std::string_view("\"a\0b\"", 5), 2, "control character in a string (escape it)"},
        {"\"\xC3\"", 1, "invalid UTF-8 in a string"},
        {"\"\xC0\xAF\"", 1, "invalid UTF-8 in a string"},          // overlong '/'
        {"\"\xED\xA0\x80\"", 1, "invalid UTF-8 in a string"},      // encoded surrogate
        {"\"\xF4\x90\x80\x80\"", 1, "invalid UTF-8 in a string"},  // beyond U+10FFFF
        {"\"\xE0\x80\x80\"", 1, "invalid UTF-8 in a string"},      // overlong
        {"\"\x80\"", 1, "invalid UTF-8 in a string"},
        {"\"\xFF\"", 1, "invalid UTF-8 in a string"},
        {"[1] [2]", 4, "content after the JSON value"},
        {"[", 1, "input ends where a value was expected"},
        {"[1", 2, "input ends inside an array"},
        {"{\"a\":1", 6, "input ends inside an object"},
    };
    for (const auto& c : cases) {
        INFO(c.doc);
        parse_error err;
        CHECK_FALSE(json::parse(c.doc, err));
        CHECK(err.code == errc::malformed_json);
        CHECK(err.offset == c.offset);
        CHECK(err.reason == c.reason);
    }
}

TEST_CASE("json: valid UTF-8 of every length passes through")
{
    parse_error err;
    auto v = json::parse("\"\x7F \xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF\"", err);
    REQUIRE(v);
    CHECK(v->as_string() == "\x7F \xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF");
    CHECK(json::parse("\"\\u0000\"", err)->as_string() == std::string(1, '\0'));
}

TEST_CASE("json: depth and input-size limits")
{
    parse_error err;
    std::string ok = std::string(64, '[') + std::string(64, ']');
    CHECK(json::parse(ok, err));
    std::string deep = std::string(65, '[') + std::string(65, ']');
    CHECK_FALSE(json::parse(deep, err));
    CHECK(err.code == errc::document_too_large);
    CHECK(err.offset == 64);

    // Far deeper than the limit, as an attacker would send: stops at the limit, no stack overflow.
    std::string abyss(4u << 20, '[');
    CHECK_FALSE(json::parse(abyss, err));
    CHECK(err.code == errc::document_too_large);
    std::string objects;
    for (int i = 0; i < 100000; ++i)
        objects += "{\"a\":";
    CHECK_FALSE(json::parse(objects, err));
    CHECK(err.code == errc::document_too_large);

    json::limits small;
    small.max_input = 4;
    CHECK(json::parse("1234", err, small));
    CHECK_FALSE(json::parse("12345", err, small));
    CHECK(err.code == errc::document_too_large);
    CHECK(err.to_string() == "document exceeds its reader's size or nesting limit at byte 4: document larger than the input limit");
}
