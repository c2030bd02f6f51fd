// pipemode: shared helpers of the SageMaker configuration readers (channel.hpp, cluster.hpp,
// hyperparameters.hpp): parse a document and read typed members with errors that say where.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/parse_error.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
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

/// The largest SageMaker configuration file read (they are a few kilobytes).
inline constexpr std::size_t max_config_file_size = std::size_t{16} << 20;

/// The whole contents of the configuration file at `path`; throws `std::runtime_error` naming the
/// path when it does not exist, is not a regular file, is larger than `max_config_file_size` or
/// cannot be read. Blocks while reading: call it at start-up, not on an `io_context` thread.
inline std::string read_config_file(const std::string& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found)
        throw std::runtime_error(path + " does not exist");
    if (ec)
        throw std::runtime_error("cannot read " + path + ": " + ec.message());
    if (st.type() != fs::file_type::regular)
        throw std::runtime_error(path + " is not a regular file");
    const auto size = fs::file_size(path, ec);
    if (ec)
        throw std::runtime_error("cannot read " + path + ": " + ec.message());
    if (size > max_config_file_size)
        throw std::runtime_error(path + " is larger than " + std::to_string(max_config_file_size)
                                 + " bytes; a SageMaker configuration file is a few kilobytes");
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot open " + path);
    std::string text;
    char buf[4096];
    // The size is checked again as the file is read: it may have grown since it was measured.
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<std::size_t>(in.gcount()));
        if (text.size() > max_config_file_size)
            throw std::runtime_error(path + " is larger than " + std::to_string(max_config_file_size) + " bytes");
    }
    if (in.bad())
        throw std::runtime_error("cannot read " + path);
    return text;
}

/// Parses the file at `path` with `parse`, prefixing a parse error's message with the path.
template <class Parse>
auto parse_config_file(const std::string& path, Parse parse)
{
    const std::string text = read_config_file(path);
    try {
        return parse(text);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(path + ": " + e.what());
    }
}

} // namespace pipemode::sagemaker::detail
