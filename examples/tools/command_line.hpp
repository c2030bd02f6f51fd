// The command-line plumbing pipemode-cat and pipemode-gen share: option parsing, number
// parsing and the aligned "key: value" summary lines.
#pragma once

#include <pipemode/core/options.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace pipemode::tools {

/// A command line that cannot work. Tools print it with a pointer to --help and exit with 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A whole number; throws `usage_error` naming `option` otherwise.
inline std::uint64_t parse_count(std::string_view option, std::string_view text)
{
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
        throw usage_error(std::string(option) + " needs a whole number, not '" + std::string(text) + "'");
    return v;
}

/// A byte count with an optional binary suffix: 65536, 64K, 4M, 1G.
inline std::uint64_t parse_bytes(std::string_view option, std::string_view text)
{
    std::uint64_t scale = 1;
    if (!text.empty()) {
        switch (text.back()) {
        case 'k': case 'K': scale = kib; break;
        case 'm': case 'M': scale = mib; break;
        case 'g': case 'G': scale = gib; break;
        default: break;
        }
        if (scale != 1)
            text.remove_suffix(1);
    }
    const auto v = parse_count(option, text);
    if (v > UINT64_MAX / scale)
        throw usage_error(std::string(option) + " is too large");
    return v * scale;
}

/// A finite decimal number (e.g. 0.25, 1e-3).
inline double parse_real(std::string_view option, std::string_view text)
{
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !(v - v == 0))
        throw usage_error(std::string(option) + " needs a number, not '" + std::string(text) + "'");
    return v;
}

/// Walks a command line: options as `--name value` or `--name=value`, everything else (and
/// everything after `--`) positional.
///
/// @code
/// for (option_cursor c(argc, argv); c.next();) {
///     if (c.positional()) paths.push_back(std::string(c.arg()));
///     else if (c.name() == "--limit") limit = parse_count(c.name(), c.value());
///     else c.unknown();
/// }
/// @endcode
class option_cursor {
public:
    option_cursor(int argc, char** argv) noexcept : argc_(argc), argv_(argv) {}

    /// Moves to the next argument; false when there is none.
    bool next()
    {
        if (pending_value_)
            throw usage_error(std::string(name_) + " takes no value");
        if (++i_ >= argc_)
            return false;
        arg_ = argv_[i_];
        if (!options_done_ && arg_ == "--") {
            options_done_ = true;
            return next();
        }
        positional_ = options_done_ || arg_.size() < 2 || arg_[0] != '-';
        name_ = arg_;
        pending_value_.reset();
        if (!positional_ && arg_.starts_with("--")) {
            if (const auto eq = arg_.find('='); eq != std::string_view::npos) {
                name_ = arg_.substr(0, eq);
                pending_value_ = arg_.substr(eq + 1);
            }
        }
        return true;
    }

    /// Whether the current argument is not an option.
    bool positional() const noexcept { return positional_; }

    /// The current argument as given.
    std::string_view arg() const noexcept { return arg_; }

    /// The current option's name (`--limit` for `--limit=5`).
    std::string_view name() const noexcept { return name_; }

    /// The current option's value: after `=`, or the next argument.
    std::string_view value()
    {
        if (pending_value_)
            return *std::exchange(pending_value_, std::nullopt);
        if (i_ + 1 >= argc_)
            throw usage_error(std::string(name_) + " needs a value");
        return argv_[++i_];
    }

    /// Throws the error for an option this tool does not know.
    [[noreturn]] void unknown() const { throw usage_error("unknown option '" + std::string(arg_) + "'"); }

private:
    int argc_;
    char** argv_;
    int i_ = 0;
    std::string_view arg_;
    std::string_view name_;
    std::optional<std::string_view> pending_value_;  // "=value" not yet taken
    bool positional_ = false;
    bool options_done_ = false;
};

/// Appends a summary line "KEY: VALUE" with the key right-aligned in 14 columns, so that the
/// values line up and every line still reads `key: value` (e.g. `        digest: count=...`).
inline void append_field(std::string& out, std::string_view key, std::string_view value)
{
    constexpr std::size_t width = 14;
    if (key.size() < width)
        out.append(width - key.size(), ' ');
    out += key;
    out += ": ";
    out += value;
    out += '\n';
}

/// `printf`-style formatting into a std::string, for summary values.
template <class... Args>
std::string format(const char* fmt, Args... args)
{
    char buf[128];
    const int n = std::snprintf(buf, sizeof buf, fmt, args...);
    return std::string(buf, n < 0 ? 0 : std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
}

} // namespace pipemode::tools
