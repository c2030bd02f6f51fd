// Tests of parse_content_type: media types, label_size, spacing, case, and the errors.
#include <pipemode/core/content_type.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

using pipemode::content_type;
using pipemode::parse_content_type;

TEST_CASE("content types with and without label_size")
{
    CHECK(parse_content_type("text/csv;label_size=2") == content_type{"text/csv", 2});
    CHECK(parse_content_type("text/csv; label_size=0") == content_type{"text/csv", 0});
    CHECK(parse_content_type("text/csv") == content_type{"text/csv", std::nullopt});
    CHECK(parse_content_type("application/x-recordio-protobuf") == content_type{"application/x-recordio-protobuf", std::nullopt});
    CHECK(parse_content_type(" Text/CSV ; charset=utf-8 ; Label_Size = \"3\" ;") == content_type{"text/csv", 3});
    CHECK(parse_content_type("text/csv;label_size=1;label_size=4").label_size == 4);
}

TEST_CASE("a bad content type throws invalid_argument with a sentence")
{
    CHECK_THROWS_WITH(parse_content_type("text/csv;label_size=x"),
                      "pipemode: content type 'text/csv;label_size=x': label_size must be a whole number of leading "
                      "label columns (0 for no label), e.g. text/csv;label_size=1, not 'x'");
    CHECK_THROWS_AS(parse_content_type("text/csv;label_size=-1"), std::invalid_argument);
    CHECK_THROWS_AS(parse_content_type("text/csv;label_size="), std::invalid_argument);
    CHECK_THROWS_AS(parse_content_type("text/csv;label_size=1.5"), std::invalid_argument);
    CHECK_THROWS_AS(parse_content_type("text/csv;label_size=99999999999999999999999"), std::invalid_argument);
    CHECK_THROWS_AS(parse_content_type("text/csv;label_size"), std::invalid_argument);
    CHECK_THROWS_AS(parse_content_type(" ; label_size=1"), std::invalid_argument);
    CHECK_THROWS_AS(parse_content_type(""), std::invalid_argument);
}

TEST_CASE("content_format_of maps SageMaker's content types to reader formats")
{
    using pipemode::content_format;
    using pipemode::content_format_of;
    using pipemode::data_format;
    const auto of = [](const char* text) { return content_format_of(parse_content_type(text)); };
    CHECK(of("application/x-recordio-protobuf") == content_format{data_format::recordio_protobuf, 0});
    CHECK(of("text/csv") == content_format{data_format::csv, 1});  // SageMaker's algorithms assume one label column
    CHECK(of("text/csv;label_size=0") == content_format{data_format::csv, 0});
    CHECK(of("Text/CSV; label_size=3") == content_format{data_format::csv, 3});
    CHECK(of("application/x-recordio") == content_format{data_format::recordio, 0});
    CHECK(of("application/x-tfrecord") == content_format{data_format::tfrecord, 0});
    CHECK(of("application/tfrecord") == content_format{data_format::tfrecord, 0});
    CHECK(of("application/jsonlines") == content_format{data_format::lines, 0});
    CHECK(of("application/x-jsonlines") == content_format{data_format::lines, 0});
    CHECK(of("text/plain") == content_format{data_format::lines, 0});
    CHECK(of("application/x-image") == content_format{data_format::whole_object, 0});
    CHECK(of("image/jpeg") == content_format{data_format::whole_object, 0});
}
