// Tests of the JSON writer: escaping read back exactly by the reader, layout, and misuse.
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/json_writer.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

namespace json = pipemode::detail::json;
using pipemode::detail::parse_error;

namespace {

// `s` written as a JSON string and read back by the reader.
std::string round_trip(const std::string& s)
{
    parse_error err;
    auto v = json::parse(json::quote(s), err);
    INFO(err.to_string());
    REQUIRE(v);
    REQUIRE(v->is_string());
    return v->as_string();
}

} // namespace

TEST_CASE("escapes", "[json]")
{
    CHECK(json::quote("") == R"("")");
    CHECK(json::quote("plain") == R"("plain")");
    CHECK(json::quote("a\"b\\c/d") == R"("a\"b\\c/d")");
    CHECK(json::quote("\b\f\n\r\t") == R"("\b\f\n\r\t")");
    CHECK(json::quote(std::string("\x00\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
    CHECK(json::quote("caf\xC3\xA9 \xF0\x9F\x98\x80") == "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"");

    std::string out = "x";
    json::append_quoted(out, "y");
    CHECK(out == "x\"y\"");
}

TEST_CASE("every byte below 0x80 and UTF-8 of every length round-trips through the reader", "[json]")
{
    std::string all;
    for (int c = 0; c < 0x80; ++c)
        all += static_cast<char>(c);
    CHECK(round_trip(all) == all);
    const std::string utf8 = "\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF";
    CHECK(round_trip(utf8) == utf8);
}

TEST_CASE("invalid UTF-8 is refused", "[json]")
{
    CHECK(json::is_valid_utf8("abc \xC3\xA9"));
    for (std::string bad : {"\xFF", "\xC3", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                            "\xF0\x9F\x98", "a\x80", "\xF5\x80\x80\x80"}) {
        INFO(bad.size());
        CHECK_FALSE(json::is_valid_utf8(bad));
        std::string out = "keep";
        CHECK_THROWS_AS(json::append_quoted(out, bad), std::invalid_argument);
        CHECK(out == "keep");
    }
}

TEST_CASE("layout of nested documents, read back by the reader", "[json]")
{
    json::writer w;
    w.begin_object();
    w.key("a").number(18446744073709551615ull);
    w.key("b").begin_array().string("x").boolean(true).null().begin_object().end_object().begin_array().end_array().end_array();
    w.key("c").boolean(false);
    w.end_object();
    const std::string text = std::move(w).release();
    CHECK(text
          == "{\n"
             "  \"a\": 18446744073709551615,\n"
             "  \"b\": [\n"
             "    \"x\",\n"
             "    true,\n"
             "    null,\n"
             "    {},\n"
             "    []\n"
             "  ],\n"
             "  \"c\": false\n"
             "}\n");
    parse_error err;
    auto v = json::parse(text, err);
    REQUIRE(v);
    CHECK(v->find("a")->as_number().as_uint64() == 18446744073709551615ull);
    CHECK(v->find("b")->as_array().size() == 5);

    json::writer s;
    s.string("top");
    CHECK(std::move(s).release() == "\"top\"\n");
}

TEST_CASE("calls out of order are logic errors", "[json]")
{
    {
        json::writer w;
        w.begin_object();
        CHECK_THROWS_AS(w.string("no key"), std::logic_error);
    }
    {
        json::writer w;
        w.begin_array();
        CHECK_THROWS_AS(w.key("k"), std::logic_error);
        CHECK_THROWS_AS(w.end_object(), std::logic_error);
    }
    {
        json::writer w;
        w.begin_object().key("k");
        CHECK_THROWS_AS(w.key("again"), std::logic_error);
        CHECK_THROWS_AS(w.end_object(), std::logic_error);
    }
    {
        json::writer w;
        w.begin_object();
        CHECK_THROWS_AS(std::move(w).release(), std::logic_error);
    }
    {
        json::writer w;
        CHECK_THROWS_AS(std::move(w).release(), std::logic_error);
    }
    {
        json::writer w;
        w.null();
        CHECK_THROWS_AS(w.null(), std::logic_error);
    }
}
