// pipemode_training's metrics and model files: metrics lines, metrics.json, and model files read
// back with the library's JSON parser (include/pipemode/detail/json.hpp). See training.hpp.
#include "training.hpp"

#include <pipemode/detail/json.hpp>

#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>

namespace pipemode::examples {

// --- numbers and strings

namespace {

// The shortest text that reads back as `v` (std::to_chars without a format), or nan/inf/-inf.
std::string shortest(double v)
{
    if (std::isnan(v))
        return "nan";
    if (std::isinf(v))
        return v < 0 ? "-inf" : "inf";
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

} // namespace

void append_json_shortest(std::string& out, double v)
{
    if (!std::isfinite(v))
        out += "null";
    else
        out += shortest(v);
}

void append_json_string(std::string& out, std::string_view s)
{
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            }
            else
                out += ch;
        }
    }
    out += '"';
}

// --- metrics

std::string metrics_log::line(std::string_view channel, std::string_view name, double value,
                              std::optional<std::uint64_t> epoch)
{
    std::string s = "#metric ";
    s += channel;
    s += ':';
    s += name;
    s += '=';
    s += shortest(value);
    if (epoch)
        s += " epoch=" + std::to_string(*epoch);
    return s;
}

void metrics_log::report(std::string_view channel, std::string_view name, double value,
                         std::optional<std::uint64_t> epoch)
{
    if (print_) {
        const auto text = line(channel, name, value, epoch) + "\n";
        std::fwrite(text.data(), 1, text.size(), out_);
        std::fflush(out_);  // seen as it happens when stdout is a pipe to SageMaker's log
    }
    std::string key(channel);
    key += ':';
    key += name;
    for (auto& [k, v] : values_)
        if (k == key) {
            v = value;
            return;
        }
    values_.emplace_back(std::move(key), value);
}

std::string metrics_log::json() const
{
    std::string out = "{";
    for (std::size_t i = 0; i < values_.size(); ++i) {
        out += i ? ",\n  " : "\n  ";
        append_json_string(out, values_[i].first);
        out += ": ";
        append_json_shortest(out, values_[i].second);
    }
    out += values_.empty() ? "}\n" : "\n}\n";
    return out;
}

std::filesystem::path metrics_log::write(const std::filesystem::path& dir) const
{
    return write_model_file(dir, "metrics.json", json());
}

// --- model files

struct model_file::state {
    std::string name;
    detail::json::value doc;

    const detail::json::value& member(std::string_view key) const
    {
        const auto* v = doc.find(key);
        if (v == nullptr)
            throw std::runtime_error(name + ": the model has no \"" + std::string(key) + "\"");
        return *v;
    }

    [[noreturn]] void wrong(std::string_view key, std::string_view what) const
    {
        throw std::runtime_error(name + ": the model's \"" + std::string(key) + "\" is not " + std::string(what));
    }

    double number_of(const detail::json::value& v, std::string_view key) const
    {
        if (v.is_null())
            return std::numeric_limits<double>::quiet_NaN();  // how append_json_number writes NaN
        if (!v.is_number())
            wrong(key, "an array of numbers");
        return v.as_number().as_double();
    }
};

model_file model_file::parse(std::string_view text, std::string name)
{
    detail::parse_error err;
    auto doc = detail::json::parse(text, err);
    if (!doc)
        throw std::runtime_error(name + ": not a JSON model file (" + err.to_string() + ")");
    if (!doc->is_object())
        throw std::runtime_error(name + ": a model file is a JSON object");
    auto s = std::make_shared<state>();
    s->name = std::move(name);
    s->doc = std::move(*doc);
    return model_file(std::move(s));
}

model_file model_file::read(const std::filesystem::path& path)
{
    std::ifstream f(path, std::ios::binary);
    if (!f)
        throw std::runtime_error(path.string() + ": cannot open the model file");
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad())
        throw std::runtime_error(path.string() + ": cannot read the model file");
    return parse(text, path.string());
}

void model_file::expect(std::string_view algorithm, std::uint64_t max_version) const
{
    const auto* a = state_->doc.find("algorithm");
    if (a == nullptr || !a->is_string() || a->as_string() != algorithm)
        throw std::runtime_error(state_->name + ": not a model of " + std::string(algorithm) + " (its \"algorithm\" is "
                                 + (a && a->is_string() ? "\"" + a->as_string() + "\"" : std::string("missing")) + ")");
    const auto v = count("format_version");
    if (v > max_version)
        throw std::runtime_error(state_->name + ": format_version " + std::to_string(v) + " is newer than this program reads ("
                                 + std::to_string(max_version) + ")");
}

bool model_file::has(std::string_view key) const { return state_->doc.find(key) != nullptr; }

double model_file::number(std::string_view key) const
{
    const auto& v = state_->member(key);
    if (!v.is_number())
        state_->wrong(key, "a number");
    return v.as_number().as_double();
}

std::uint64_t model_file::count(std::string_view key) const
{
    const auto& v = state_->member(key);
    if (!v.is_number() || !v.as_number().as_uint64())
        state_->wrong(key, "a whole number");
    return *v.as_number().as_uint64();
}

std::string model_file::string(std::string_view key) const
{
    const auto& v = state_->member(key);
    if (!v.is_string())
        state_->wrong(key, "a string");
    return v.as_string();
}

bool model_file::boolean(std::string_view key) const
{
    const auto& v = state_->member(key);
    if (!v.is_bool())
        state_->wrong(key, "true or false");
    return v.as_bool();
}

std::vector<double> model_file::numbers(std::string_view key) const
{
    const auto& v = state_->member(key);
    if (!v.is_array())
        state_->wrong(key, "an array of numbers");
    std::vector<double> out;
    out.reserve(v.as_array().size());
    for (const auto& x : v.as_array())
        out.push_back(state_->number_of(x, key));
    return out;
}

std::vector<double> model_file::matrix(std::string_view key, std::size_t cols) const
{
    const auto& v = state_->member(key);
    if (!v.is_array())
        state_->wrong(key, "an array of rows");
    std::vector<double> out;
    for (const auto& row : v.as_array()) {
        if (!row.is_array() || row.as_array().size() != cols)
            state_->wrong(key, "an array of rows of " + std::to_string(cols) + " numbers");
        for (const auto& x : row.as_array())
            out.push_back(state_->number_of(x, key));
    }
    return out;
}

} // namespace pipemode::examples
