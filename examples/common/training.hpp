// pipemode_training: the compiled library every example trainer links (examples/common/*.cpp,
// built once per preset). It holds what is generic to a trainer: the command line with
// SageMaker's channels and hyperparameters, one channel's epoch opened as a stream of batches
// (sources, Pipe-mode FIFOs, HTTP/S3, the cache, MPI sharding), metrics lines and metrics.json,
// model files written and read back, and prediction mode's loop and writer.
//
// Why compiled: the reader, HTTP, S3 and Pipe-mode stack takes minutes to compile at -O0 with
// sanitizers, and every trainer instantiated all of it in its own translation unit. This header
// includes none of it (only pipemode/core/batch.hpp, the MPI wrapper, the tools' command-line
// helpers and the standard library), so a trainer's translation unit compiles its own algorithm
// and little else. The library's own users (not the examples) keep the header-only library.
//
// A trainer's main, in short:
// @code
// int run(int argc, char** argv, const mpi_context& mpi) {
//     settings s;
//     const auto job = training_job::parse(argc, argv, [&](const std::string& n, std::string_view v) {
//         return set_hyperparameter(s, n, v); }, program);
//     if (job.help()) { print_help(mpi, usage_head, usage_tail); return 0; }
//     if (job.predicting()) { ...load model_file...; run_prediction(job, mpi, 1000, predict); return 0; }
//     metrics_log metrics(mpi.rank() == 0);
//     for (std::uint64_t e = 0; e < epochs; ++e) {
//         channel_reader r(job, channel::train, e, mpi, batch_size);
//         while (auto b = r.next()) { ...train on *b... }
//     }
//     metrics.report("train", "objective_loss", loss);
//     if (mpi.rank() == 0) { write_model_file(job.model_dir(), "model.json", text); metrics.write(job.model_dir()); }
//     return 0;
// }
// int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
// @endcode
#pragma once

#include "feature_rows.hpp"
#include "mpi_context.hpp"
#include "training_common.hpp"

#include <pipemode/core/batch.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::examples {

/// SageMaker's channels a trainer reads. `train` is sharded between MPI ranks; `validation`
/// and `test` are read whole by every rank (SageMaker's FullyReplicated), so that what is
/// measured on them does not depend on the number of ranks.
enum class channel { train, validation, test };

/// The channel's SageMaker name: "train", "validation" or "test".
std::string_view to_string(channel c) noexcept;

/// A trainer's command line, parsed: the channels' sources (or Pipe-mode FIFOs), where the
/// model goes, prediction mode, and every other `--name value` handed to the trainer as a
/// hyperparameter (after those of hyperparameters.json, so the command line wins).
///
/// Cheap to copy (shared, immutable state). Not tied to a thread.
class training_job {
public:
    /// Parses `argv`. Positional SOURCEs are the train channel; `--validation SOURCE` and
    /// `--test SOURCE` (each repeatable) the others; `--pipe-channel NAME` or `--pipe-mode`
    /// read FIFOs instead (see `options_help`). Hyperparameters go to `set` by SageMaker's name
    /// (`--feature-dim` is `feature_dim`): unknown ones are usage errors on the command line and
    /// skipped with a warning from hyperparameters.json. Throws `usage_error`.
    static training_job parse(int argc, char** argv, const hyperparameter_setter& set, std::string_view program);

    /// Whether --help was given (nothing else was checked then).
    bool help() const noexcept;

    /// Whether --quiet was given (no progress line).
    bool quiet() const noexcept;

    /// Whether the channel has data: SOURCEs for it, or its FIFOs in Pipe mode. `train` always has.
    bool has(channel c) const noexcept;

    /// Whether --predict MODEL_FILE was given: read the train channel's SOURCEs (or FIFO) with
    /// that model and write predictions (`run_prediction`) instead of training.
    bool predicting() const noexcept;

    /// The model file of --predict.
    const std::filesystem::path& predict_model() const noexcept;

    /// The directory model.json and metrics.json go to: --model-dir, else /opt/ml/model when it
    /// exists, else ".".
    std::filesystem::path model_dir() const;

    /// The bytes the reader of one channel may hold (--memory-budget).
    std::size_t memory_budget() const noexcept;

    /// The program's name, for messages.
    const std::string& program() const noexcept;

    /// The channel's sources as given on the command line (empty in Pipe mode).
    std::vector<std::string> sources(channel c) const;

    /// The help text of every option `parse` takes that is not a hyperparameter.
    static std::string options_help();

    struct state;  ///< The parsed command line; defined in training.cpp.

    /// The parsed state; for the library's own code.
    const state& get() const noexcept { return *state_; }

private:
    explicit training_job(std::shared_ptr<const state> s) : state_(std::move(s)) {}
    std::shared_ptr<const state> state_;
};

/// Reads one epoch of one channel as batches: for `train`, this rank's shard of the SOURCEs
/// (whole objects dealt out in turn, or --shard-mode) or the Pipe-mode FIFO `<channel>_<epoch>`;
/// for `validation` and `test`, all of the channel on every rank.
///
/// `epoch` counts the times this process reads the channel, from 0 (Pipe mode's FIFO number).
/// Errors of the data (a bad record, a source that fails) are exceptions from `next()` naming
/// the source, the byte offset and the record. Move-only; use from one thread.
class channel_reader {
public:
    /// Opens the epoch; batches hold at most `batch_size` records.
    channel_reader(const training_job& job, channel c, std::uint64_t epoch, const mpi_context& mpi,
                   std::size_t batch_size);

    /// Opens the epoch of channel `c` read whole and in order by this rank alone, `train`
    /// included (its SOURCEs unsharded, or its FIFO in Pipe mode): for a pass every rank must
    /// make over the same records, such as choosing a model on the training data when there is
    /// no validation channel. Batches hold at most `batch_size` records.
    static channel_reader whole(const training_job& job, channel c, std::uint64_t epoch, std::size_t batch_size);
    ~channel_reader();
    channel_reader(channel_reader&&) noexcept;
    channel_reader& operator=(channel_reader&&) noexcept;

    /// Whether this rank has anything to read (false when there are more ranks than objects).
    bool has_data() const noexcept;

    /// The next batch, or nothing at the end of the epoch.
    std::optional<batch> next();

    /// Bytes read from the sources so far.
    std::uint64_t bytes() const noexcept;

    /// Records delivered so far (padding not counted).
    std::uint64_t records() const noexcept;

private:
    struct impl;
    channel_reader();
    std::unique_ptr<impl> impl_;
};

/// Metrics as SageMaker names them (`train:msd`, `validation:binary_classification_accuracy`):
/// each report is one line on `out`,
///
///     #metric <channel>:<name>=<value>
///     #metric <channel>:<name>=<value> epoch=<epoch>
///
/// with the value in the shortest form that reads back as the same double (`nan`, `inf` and
/// `-inf` when not finite), which a SageMaker metric definition picks up with the regex
/// `#metric validation:rmse=([^\s]+)`. The last value of each name is kept for metrics.json.
///
/// Not thread-safe.
class metrics_log {
public:
    /// Prints when `print` is true (rank 0 only, so that a value is printed once).
    explicit metrics_log(bool print, std::FILE* out = stdout) : print_(print), out_(out) {}

    /// Reports `<channel>:<name>` = `value`, optionally of an epoch (from 1 as printed).
    void report(std::string_view channel, std::string_view name, double value,
                std::optional<std::uint64_t> epoch = std::nullopt);

    /// The final value of each metric, in the order first reported.
    const std::vector<std::pair<std::string, double>>& values() const noexcept { return values_; }

    /// The final values as a JSON object `{"train:msd": 0.5, ...}`, one member a line (a value
    /// that is not finite is null).
    std::string json() const;

    /// Writes `json()` to `dir/metrics.json` atomically; returns the path.
    std::filesystem::path write(const std::filesystem::path& dir) const;

    /// The line `report` prints, without its newline.
    static std::string line(std::string_view channel, std::string_view name, double value,
                            std::optional<std::uint64_t> epoch = std::nullopt);

private:
    bool print_;
    std::FILE* out_;
    std::vector<std::pair<std::string, double>> values_;
};

/// Appends `v` in the shortest decimal form that reads back as the same double (`null` when
/// not finite): what metrics and predictions print.
void append_json_shortest(std::string& out, double v);

/// Appends `s` as a JSON string, quoted and escaped.
void append_json_string(std::string& out, std::string_view s);

/// A model file (JSON, written by a trainer with `write_model_file`) read back, for prediction
/// mode. Accessors throw `std::runtime_error` naming the file and the member when the member is
/// missing or of another type. Cheap to copy (shared, immutable).
class model_file {
public:
    /// Reads and parses `path`; throws `std::runtime_error` naming the path (and the byte offset
    /// of a syntax error).
    static model_file read(const std::filesystem::path& path);

    /// Parses `text`; `name` stands for the file in messages.
    static model_file parse(std::string_view text, std::string name);

    /// Throws unless the file's "algorithm" is `algorithm` and its "format_version" at most
    /// `max_version`, with a sentence naming what it is instead.
    void expect(std::string_view algorithm, std::uint64_t max_version) const;

    /// Whether the top-level object has a member `key`.
    bool has(std::string_view key) const;

    /// A number member.
    double number(std::string_view key) const;

    /// A whole, non-negative number member.
    std::uint64_t count(std::string_view key) const;

    /// A string member.
    std::string string(std::string_view key) const;

    /// A boolean member.
    bool boolean(std::string_view key) const;

    /// An array of numbers (null reads as NaN).
    std::vector<double> numbers(std::string_view key) const;

    /// An array of `cols`-long arrays of numbers, row-major; throws when a row has another length.
    std::vector<double> matrix(std::string_view key, std::size_t cols) const;

    struct state;  ///< The parsed document; defined in training_files.cpp.

private:
    explicit model_file(std::shared_ptr<const state> s) : state_(std::move(s)) {}
    std::shared_ptr<const state> state_;
};

/// What a trainer gives prediction mode: appends one JSON text (no newline) to `rows` for each
/// record of `b` (padding excluded), in order. `rows` is empty on entry.
using predict_function = std::function<void(const batch& b, std::vector<std::string>& rows)>;

/// Prediction mode's loop and writer: reads the train channel's SOURCEs (or FIFO) whole and in
/// order, and writes one JSON Lines row per record to --output FILE (atomically: a temporary
/// file renamed at the end) or to stdout, as batch transform would. Under MPI only rank 0 reads
/// and writes; the others return 0 at once. Returns the number of records, which it also
/// reports on stderr ("PROGRAM: N predictions") unless --quiet was given. Throws when `predict`
/// gives another number of rows than the batch has records.
std::uint64_t run_prediction(const training_job& job, const mpi_context& mpi, std::size_t batch_size,
                             const predict_function& predict);

/// Prints `head`, the options' help (`training_job::options_help`) and `tail` on stdout, on
/// rank 0 only.
void print_help(const mpi_context& mpi, std::string_view head, std::string_view tail);

/// A trainer's `main`: starts MPI (`mpi_context`), calls `run`, and turns its exceptions into
/// the exit status: a `usage_error` is 2 with a pointer to --help, any other exception 1, each
/// printed on stderr after the program's name; under MPI a failing rank aborts all of them.
int run_trainer(int argc, char** argv, std::string_view program,
                const std::function<int(int, char**, const mpi_context&)>& run);

} // namespace pipemode::examples
