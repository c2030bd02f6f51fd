// pipemode: shared helpers of the SageMaker configuration readers (channel.hpp, cluster.hpp,
// hyperparameters.hpp): parse a document and read typed members with errors that say where.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/parse_error.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace pipemode::sagemaker::detail {

namespace json = pipemode::detail::json;

/// "a string", "an object", ... for "must be X, not Y" messages.
inline std::string_view json_kind(const json::value& v) noexcept
{
    if (v.is_null()) return "null";
    if (v.is_bool()) return "a boolean";
    if (v.is_number()) return "a number";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    return "an object";
}

/// Parses `text`; throws `std::invalid_argument` naming `what` (e.g. "resourceconfig.json"),
/// the byte offset and the reason when it is not valid JSON.
inline json::value parse_config_document(std::string_view text, std::string_view what)
{
    pipemode::detail::parse_error err;
    auto doc = json::parse(text, err);
    if (!doc)
        throw std::invalid_argument(std::string(what) + " is not valid JSON: " + err.to_string());
    return std::move(*doc);
}

/// Throws `std::invalid_argument("PREFIX: PATH must be EXPECTED, not KIND")`.
[[noreturn]] inline void throw_wrong_kind(std::string_view prefix, std::string_view path, std::string_view expected,
                                          const json::value& v)
{
    throw std::invalid_argument(std::string(prefix) + ": " + std::string(path) + " must be " + std::string(expected)
                                + ", not " + std::string(json_kind(v)));
}

/// The first member name of object `o` that appears twice, or nothing.
inline const std::string* duplicate_member(const json::object& o) noexcept
{
    for (std::size_t i = 0; i < o.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (o[i].first == o[j].first)
                return &o[i].first;
    return nullptr;
}

} // namespace pipemode::sagemaker::detail
