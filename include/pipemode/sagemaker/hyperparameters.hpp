// pipemode: SageMaker's hyperparameters.json read into typed accessors, sans-I/O.
//
// SageMaker passes every hyperparameter to the container as a JSON string
// (/opt/ml/input/config/hyperparameters.json: `{"k": "10", "feature_dim": "784"}`); this class
// converts them on request with an error that names the key and the value. See
// docs/sagemaker-config.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/sagemaker/detail/config_json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace pipemode::sagemaker {

/// Where SageMaker puts the training job's hyperparameters inside a training container.
inline constexpr std::string_view default_hyperparameters_path = "/opt/ml/input/config/hyperparameters.json";

/// A training job's hyperparameters: names and their text, with conversions.
///
/// Values are kept as text and converted by `get`/`get_or`, which accept `std::string`, `bool`
/// ("true"/"false", and Python's "True"/"False"), any integer type (decimal digits with an
/// optional '-' for signed types, range-checked) and `float`/`double` (decimal or exponent
/// notation, finite). A value that does not convert throws `std::invalid_argument` naming the
/// key and the value. The object is immutable after `parse`, so const calls may run on any
/// thread.
///
/// Example:
/// ```
/// auto hp = hyperparameters::parse(R"({"k": "10", "init_method": "kmeans++"})");
/// std::size_t k = hp.get<std::size_t>("k");             // 10
/// double tol = hp.get_or<double>("tol", 1e-4);           // 1e-4: not given
/// for (auto& key : hp.unknown_keys({"k", "init_method", "tol"})) log("ignoring " + key);
/// ```
class hyperparameters {
public:
    /// No hyperparameters.
    hyperparameters() = default;

    /// Reads hyperparameters.json: an object whose members are strings (as SageMaker writes
    /// them), numbers or booleans (kept as their JSON text). Throws `std::invalid_argument` for
    /// malformed JSON, a document that is not an object, a key given twice, or a value that is
    /// null, an array or an object (naming the key).
    static hyperparameters parse(std::string_view json);

    /// Reads the file at `path` (by default SageMaker's hyperparameters.json) with `parse`.
    /// Throws `std::runtime_error` naming the path when the file does not exist or cannot be
    /// read, and `std::invalid_argument` starting with the path for what `parse` refuses. Blocks
    /// while reading: call it at start-up.
    static hyperparameters read_file(const std::string& path = std::string(default_hyperparameters_path))
    {
        return detail::parse_config_file(path, [](const std::string& text) { return parse(text); });
    }

    /// True when `key` was given.
    bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }

    /// The text of `key`, or null when it was not given.
    const std::string* find(std::string_view key) const noexcept
    {
        for (const auto& [k, v] : values_)
            if (k == key)
                return &v;
        return nullptr;
    }

    /// The value of `key` as `T`; throws `std::invalid_argument` when it was not given or does
    /// not convert.
    template <class T>
    T get(std::string_view key) const
    {
        const std::string* v = find(key);
        if (!v)
            throw std::invalid_argument("hyperparameter \"" + std::string(key) + "\" is missing; it is required");
        return convert<T>(key, *v);
    }

    /// The value of `key` as `T`, or `fallback` when it was not given; throws
    /// `std::invalid_argument` when it was given but does not convert.
    template <class T>
    T get_or(std::string_view key, T fallback) const
    {
        const std::string* v = find(key);
        return v ? convert<T>(key, *v) : std::move(fallback);
    }

    /// The keys given that are not in `known`, in document order (to warn about: often a typo).
    std::vector<std::string> unknown_keys(std::initializer_list<std::string_view> known) const
    {
        std::vector<std::string> out;
        for (const auto& [k, v] : values_)
            if (std::find(known.begin(), known.end(), k) == known.end())
                out.push_back(k);
        return out;
    }

    /// Every key and its text, in document order.
    const std::vector<std::pair<std::string, std::string>>& items() const noexcept { return values_; }

private:
    template <class T>
    static T convert(std::string_view key, const std::string& text);

    [[noreturn]] static void bad_value(std::string_view key, const std::string& text, std::string_view expected)
    {
        std::string shown = text.substr(0, 100);
        for (char& c : shown)
            if (static_cast<unsigned char>(c) < 0x20)
                c = '?';
        throw std::invalid_argument("hyperparameter \"" + std::string(key) + "\" is \"" + shown + "\", which is not "
                                    + std::string(expected));
    }

    std::vector<std::pair<std::string, std::string>> values_;
};

template <class T>
T hyperparameters::convert(std::string_view key, const std::string& text)
{
    if constexpr (std::is_same_v<T, std::string>) {
        return text;
    } else if constexpr (std::is_same_v<T, bool>) {
        if (text == "true" || text == "True")
            return true;
        if (text == "false" || text == "False")
            return false;
        bad_value(key, text, "a boolean (true or false)");
    } else if constexpr (std::is_integral_v<T>) {
        T v{};
        // from_chars takes no '+' and no spaces; a '-' before an unsigned type is refused by it.
        const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
            const std::string range = std::to_string(std::numeric_limits<T>::min()) + " to "
                + std::to_string(std::numeric_limits<T>::max());
            bad_value(key, text, "a whole number from " + range);
        }
        return v;
    } else if constexpr (std::is_floating_point_v<T>) {
        T v{};
        const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || ec != std::errc() || p != text.data() + text.size() || !std::isfinite(v))
            bad_value(key, text, "a finite number");
        return v;
    } else {
        static_assert(std::is_same_v<T, std::string>,
                      "hyperparameters::get supports std::string, bool, integer and floating-point types");
    }
}

inline hyperparameters hyperparameters::parse(std::string_view json)
{
    namespace js = detail::json;
    const js::value doc = detail::parse_config_document(json, "hyperparameters.json");
    if (!doc.is_object())
        detail::throw_wrong_kind("hyperparameters.json", "the document", "an object of names and values", doc);
    if (const std::string* dup = detail::duplicate_member(doc.as_object()))
        throw std::invalid_argument("hyperparameters.json: hyperparameter \"" + *dup
                                    + "\" is given twice; give each once");
    hyperparameters hp;
    for (const auto& [k, v] : doc.as_object()) {
        if (v.is_string())
            hp.values_.emplace_back(k, v.as_string());
        else if (v.is_number())
            hp.values_.emplace_back(k, v.as_number().text);
        else if (v.is_bool())
            hp.values_.emplace_back(k, v.as_bool() ? "true" : "false");
        else
            detail::throw_wrong_kind("hyperparameters.json", "hyperparameter \"" + k + "\"",
                                     "a string, a number or a boolean", v);
    }
    return hp;
}

} // namespace pipemode::sagemaker
