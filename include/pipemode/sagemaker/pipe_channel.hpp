// pipemode: the consumer side of SageMaker's Pipe mode: one FIFO per channel and epoch,
// `<data_dir>/<channel>_<epoch>`, read through the reader; and the diagnosis of the most common
// trap, a channel name that does not exist (which would otherwise wait for ever).
//
// The protocol, the waits and the early-close behaviour are described in docs/pipe-mode-fifos.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace pipemode::sagemaker {

/// Where SageMaker puts the channels' FIFOs (and, in File mode, their directories).
inline constexpr std::string_view default_data_dir = "/opt/ml/input/data";

/// The path of channel `channel`'s FIFO for epoch `epoch`: `data_dir / "<channel>_<epoch>"`,
/// e.g. `pipe_path("/opt/ml/input/data", "train", 0)` is "/opt/ml/input/data/train_0".
///
/// Throws `std::invalid_argument` unless `channel` is a valid channel name: 1 to 64
/// characters from `A-Z a-z 0-9 . - _`, and not "." or ".." (`validate_channel_name`).
std::filesystem::path pipe_path(const std::filesystem::path& data_dir, std::string_view channel, std::uint64_t epoch);

/// How the consumer waits for an epoch's FIFO. Use designated initializers:
/// `pipe_wait_options{.appear_timeout = std::chrono::seconds(30)}`.
///
/// The wait for the FIFO to appear ends in one of three ways (docs/pipe-mode-fifos.md):
/// - the FIFO appears: it is opened and read (waiting up to `writer_timeout` for the writer);
/// - **fail fast**: at a check made `unknown_channel_grace` or more after the wait started (and
///   then every `unknown_channel_grace`), *all* of these hold: `data_dir` exists, it holds a
///   FIFO `<other>_<N>` of some other channel, and `../config/inputdataconfig.json` next to
///   `data_dir` is readable, is a JSON object, and has no member named after the channel. Then
///   the channel will never be streamed and the wait ends with `ENOENT`;
/// - otherwise the wait runs to `appear_timeout` and ends with `errc::timed_out`.
///
/// Both errors are `data_error`s naming the FIFO's path, and their message names the channel,
/// `data_dir` and the channels that do exist there (from the `<name>_<N>` FIFOs and from
/// inputdataconfig.json), with a "did you mean" when one is close to the name asked for.
struct pipe_wait_options {
    /// How long to wait for the FIFO to appear. SageMaker creates epoch N+1's FIFO only once
    /// epoch N's has been read to its end, and may take a while to start streaming a channel;
    /// five minutes covers that, yet a wrong name still ends the job instead of hanging it.
    std::chrono::steady_clock::duration appear_timeout = std::chrono::minutes(5);

    /// How long, once the FIFO is open, to wait for its writer to connect.
    std::chrono::steady_clock::duration writer_timeout = std::chrono::minutes(5);

    /// How long the wait runs before it may fail fast for a channel that the container's
    /// configuration does not list (see above). Two seconds lets a platform or agent that is
    /// still creating its FIFOs finish, and turns a misspelt channel into an error at once.
    std::chrono::steady_clock::duration unknown_channel_grace = std::chrono::seconds(2);

    /// How often to look for the path (and, once it is open, for a writer).
    std::chrono::steady_clock::duration poll_interval = std::chrono::milliseconds(20);
};

/// A source provider for one epoch of one Pipe-mode channel: the FIFO
/// `pipe_path(data_dir, channel, epoch)`, waited for as `pipe_wait_options` describes and read
/// with `fifo_source` (reads of the reader's `read_size`).
///
/// Throws `std::invalid_argument` at once for an invalid channel name or a zero
/// `poll_interval`; everything else is found when the reader starts and reaches the training
/// loop as the reader's exception.
///
/// Example:
/// \code
/// pipemode::reader r(pipemode::sagemaker::pipe_channel_epoch("/opt/ml/input/data", "train", 0),
///                    {.batch_size = 256});
/// for (auto& batch : r) train(batch);
/// \endcode
std::unique_ptr<source_provider> pipe_channel_epoch(std::filesystem::path data_dir, std::string_view channel,
                                                    std::uint64_t epoch, pipe_wait_options options = {});

/// Options of a `pipe_channel`: where the FIFOs are, how to wait for them, how to read them.
/// `pipe_channel ch("train", {.data_dir = dir, .reader = {.batch_size = 256}});`
struct pipe_channel_options {
    /// The directory holding the channels' FIFOs.
    std::filesystem::path data_dir = std::filesystem::path(default_data_dir);
    /// How to wait for each epoch's FIFO.
    pipe_wait_options wait = {};
    /// The options of every epoch's reader.
    reader_options reader = {};
};

/// One Pipe-mode channel, read epoch after epoch: `open_epoch(e)` is a `reader` over the FIFO
/// `<data_dir>/<channel>_<e>`.
///
/// Read each epoch's reader to its end, or destroy it early: destroying a reader mid-stream
/// closes the FIFO's read end, so the writer (SageMaker, or `fifo_writer`) sees the reader
/// gone and moves on to the next epoch. Each epoch's FIFO can be read once: open epochs in
/// order, each once. (A reader destroyed before it had opened its FIFO told the writer nothing:
/// open that epoch again.)
///
/// Thread safety: a `pipe_channel` is an immutable description; each reader follows the
/// reader's rules (one consuming thread).
///
/// Example:
/// \code
/// pipemode::sagemaker::pipe_channel ch("train", {.reader = {.batch_size = 512}});
/// for (std::uint64_t e = 0; e < epochs; ++e) {
///     auto r = ch.open_epoch(e);
///     for (auto& batch : r) train(batch);
/// }
/// \endcode
class pipe_channel {
public:
    /// The channel `channel`. Throws `std::invalid_argument` for an invalid channel name or
    /// unusable options (nothing is opened yet).
    explicit pipe_channel(std::string channel, pipe_channel_options options = {});

    /// A reader over epoch `epoch`; it starts waiting for the FIFO at once. Errors (the FIFO
    /// never appearing, bad records) are thrown by the reader's iteration.
    reader open_epoch(std::uint64_t epoch) const;

    /// The FIFO of epoch `epoch`.
    std::filesystem::path path(std::uint64_t epoch) const { return pipe_path(options_.data_dir, name_, epoch); }

    /// The channel's name.
    const std::string& name() const noexcept { return name_; }

    /// The options in force.
    const pipe_channel_options& options() const noexcept { return options_; }

private:
    std::string name_;
    pipe_channel_options options_;
};

} // namespace pipemode::sagemaker

#include <pipemode/sagemaker/impl/pipe_channel.hpp>
