// The light half of what pipemode's training programs share, needing nothing beyond the standard
// library, the MPI wrapper and the tools' command-line helpers: hyperparameter names and
// booleans, the feature dimension the ranks agree on, JSON numbers and arrays for model files,
// writing a file atomically, and the progress line. Both the compiled training library
// (training.hpp) and the older header-only training_program.hpp include it, so that a program may
// use either.
#pragma once

#include "../tools/command_line.hpp"
#include "mpi_context.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::examples {

using tools::usage_error;

/// SageMaker's places in a training container.
inline constexpr std::string_view sagemaker_model_dir = "/opt/ml/model";

/// A hyperparameter's name as SageMaker spells it: `--feature-dim` and `feature_dim` are both
/// `feature_dim`.
inline std::string hyperparameter_name(std::string_view option)
{
    while (option.starts_with('-'))
        option.remove_prefix(1);
    std::string s(option);
    for (auto& ch : s)
        if (ch == '-')
            ch = '_';
    return s;
}

/// Sets one hyperparameter from its text; returns false when the name is not one it knows.
using hyperparameter_setter = std::function<bool(const std::string& name, std::string_view value)>;

/// Parses a SageMaker boolean hyperparameter ("true"/"false", any case, or 1/0).
inline bool parse_bool(std::string_view name, std::string_view text)
{
    std::string t(text);
    for (auto& ch : t)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (t == "true" || t == "1")
        return true;
    if (t == "false" || t == "0")
        return false;
    throw usage_error(std::string(name) + " is true or false, not '" + std::string(text) + "'");
}

/// The feature dimension all ranks agree on: `given` (the option) when not 0, else the one
/// each rank's first batch implies (`seen`, 0 for a rank with no data). A collective: every
/// rank calls it.
inline std::size_t agree_on_dimension(std::size_t given, std::size_t seen, const mpi_context& mpi)
{
    if (given != 0)
        return given;
    const double mine = static_cast<double>(seen);
    const auto all = mpi.gather_all(std::span(&mine, 1));
    std::size_t d = 0;
    for (double v : all) {
        const auto dv = static_cast<std::size_t>(v);
        if (dv != 0 && d != 0 && dv != d)
            throw std::runtime_error("ranks see different feature dimensions; give --feature_dim");
        if (dv != 0)
            d = dv;
    }
    if (d == 0)
        throw std::runtime_error("cannot tell the feature dimension from the data; give --feature_dim");
    return d;
}

/// Writes `text` to `dir/name` atomically (a temporary file renamed into place).
inline std::filesystem::path write_model_file(const std::filesystem::path& dir, const std::string& name,
                                              const std::string& text)
{
    std::filesystem::create_directories(dir);
    const auto path = dir / name;
    const auto temp = dir / (name + ".tmp");
    {
        std::ofstream f(temp, std::ios::binary | std::ios::trunc);
        f << text;
        f.close();
        if (!f)
            throw std::runtime_error("cannot write " + temp.string());
    }
    std::filesystem::rename(temp, path);
    return path;
}

/// Appends a JSON number that reads back as the same double (17 significant digits).
inline void append_json_number(std::string& out, double v)
{
    if (!std::isfinite(v)) {
        out += "null";
        return;
    }
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
    out.append(buf, static_cast<std::size_t>(n));
}

/// Appends `[v0, v1, ...]`.
inline void append_json_array(std::string& out, std::span<const double> v)
{
    out += '[';
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i)
            out += ", ";
        append_json_number(out, v[i]);
    }
    out += ']';
}

/// Appends a rows x cols row-major matrix as an array of rows, one row a line.
inline void append_json_matrix(std::string& out, std::span<const double> m, std::size_t cols)
{
    out += "[\n";
    const std::size_t rows = cols == 0 ? 0 : m.size() / cols;
    for (std::size_t r = 0; r < rows; ++r) {
        out += "    ";
        append_json_array(out, m.subspan(r * cols, cols));
        out += r + 1 < rows ? ",\n" : "\n";
    }
    out += "  ]";
}

/// Progress of a training run: epoch (or pass), records, records/s and MB/s. On a terminal (stderr is a
/// tty) one line rewritten in place at most 4 times a second; otherwise a plain line every 10
/// seconds and at the end of each epoch. Silent when `enabled` is false (ranks other than 0,
/// --quiet).
class progress_line {
public:
    using clock = std::chrono::steady_clock;

    progress_line(bool enabled, std::string program)
        : enabled_(enabled), tty_(::isatty(STDERR_FILENO) == 1), program_(std::move(program))
    {
    }

    /// Starts epoch `epoch` (from 0) of `epochs`.
    void start_epoch(std::uint64_t epoch, std::uint64_t epochs)
    {
        label_ = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs);
        start_ = last_ = clock::now();
    }

    /// Starts a pass that is not a training epoch (e.g. "final pass").
    void start_pass(std::string label)
    {
        label_ = std::move(label);
        start_ = last_ = clock::now();
    }

    /// Reports the epoch's totals so far; prints when it is time.
    void update(std::uint64_t records, std::uint64_t bytes)
    {
        if (!enabled_)
            return;
        const auto now = clock::now();
        if (now - last_ < (tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(10000)))
            return;
        last_ = now;
        print(records, bytes, false);
    }

    /// Ends the epoch with its totals.
    void end_epoch(std::uint64_t records, std::uint64_t bytes) { print(records, bytes, true); }

private:
    void print(std::uint64_t records, std::uint64_t bytes, bool final)
    {
        if (!enabled_)
            return;
        const double s = std::chrono::duration<double>(clock::now() - start_).count();
        const double per = s > 0 ? 1 / s : 0;
        std::fprintf(stderr, "%s%s: %s: %llu records, %.0f records/s, %.1f MB/s, %.1f s%s",
                     tty_ ? "\r\033[K" : "", program_.c_str(), label_.c_str(),
                     static_cast<unsigned long long>(records), static_cast<double>(records) * per,
                     static_cast<double>(bytes) / 1e6 * per, s, tty_ && !final ? "" : "\n");
        std::fflush(stderr);
    }

    bool enabled_;
    bool tty_;
    std::string program_;
    std::string label_;
    clock::time_point start_{};
    clock::time_point last_{};
};

} // namespace pipemode::examples
