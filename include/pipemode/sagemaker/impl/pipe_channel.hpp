// pipemode: definitions of sagemaker/pipe_channel.hpp. Included at the bottom of pipe_channel.hpp only.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/detail/parse_error.hpp>
#include <pipemode/sagemaker/channel.hpp>
#include <pipemode/sources/any_source.hpp>
#include <pipemode/sources/fifo_source.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cerrno>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

namespace pipemode::sagemaker {
namespace detail {

/// A Pipe-mode FIFO's file name `<channel>_<epoch>`, taken apart.
struct pipe_name {
    std::string channel;
    std::uint64_t epoch = 0;
};

/// The channel and epoch of a file name `<channel>_<digits>`, or nothing.
inline std::optional<pipe_name> parse_pipe_name(std::string_view file_name)
{
    const auto us = file_name.rfind('_');
    if (us == std::string_view::npos || us == 0 || us + 1 == file_name.size())
        return std::nullopt;
    const auto digits = file_name.substr(us + 1);
    std::uint64_t epoch = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), epoch);
    if (ec != std::errc() || end != digits.data() + digits.size())
        return std::nullopt;
    return pipe_name{std::string(file_name.substr(0, us)), epoch};
}

/// What the container shows about its channels: looked at when an epoch's FIFO is missing.
struct channel_survey {
    bool data_dir_exists = false;
    /// Channels with at least one `<channel>_<N>` FIFO in data_dir, sorted.
    std::vector<std::string> fifo_channels;
    /// The epochs of the FIFOs of the channel looked for that are there, sorted.
    std::vector<std::uint64_t> channel_epochs;
    /// Whether inputdataconfig.json was read: a readable JSON object.
    bool config_read = false;
    /// Its members' names (the configured channels), sorted.
    std::vector<std::string> config_channels;
    /// The `TrainingInputMode` the configuration gives the channel looked for ("" if none).
    std::string channel_mode;

    /// Every channel either source names, sorted, each once.
    std::vector<std::string> all_channels() const
    {
        std::vector<std::string> all = fifo_channels;
        all.insert(all.end(), config_channels.begin(), config_channels.end());
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        return all;
    }

    /// True when the channel will never be streamed (the fail-fast rule of `pipe_wait_options`):
    /// data_dir holds other channels' FIFOs and the configuration, read, does not list it.
    bool rules_out(std::string_view channel) const
    {
        const auto other = [&](const std::string& c) { return c != channel; };
        return data_dir_exists && config_read && std::any_of(fifo_channels.begin(), fifo_channels.end(), other)
            && !std::binary_search(config_channels.begin(), config_channels.end(), channel);
    }
};

/// inputdataconfig.json as SageMaker places it: `../config/inputdataconfig.json` from data_dir.
inline std::filesystem::path input_data_config_path(const std::filesystem::path& data_dir)
{
    return data_dir / ".." / "config" / "inputdataconfig.json";
}

/// Looks at data_dir's FIFOs and at inputdataconfig.json. Never throws for what it finds
/// (an unreadable or malformed configuration counts as absent): it only feeds a diagnosis.
/// The configuration is read with the plain JSON reader, not `parse_input_data_config`,
/// because only its member names matter here and a field that reader would reject must not
/// hide them.
inline channel_survey survey_channels(const std::filesystem::path& data_dir, std::string_view channel)
{
    namespace fs = std::filesystem;
    channel_survey s;
    std::error_code ec;
    s.data_dir_exists = fs::is_directory(data_dir, ec);
    if (s.data_dir_exists) {
        for (fs::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
            std::error_code sec;
            if (!fs::is_fifo(it->symlink_status(sec)))
                continue;
            if (auto p = parse_pipe_name(it->path().filename().string())) {
                if (p->channel == channel)
                    s.channel_epochs.push_back(p->epoch);
                s.fifo_channels.push_back(std::move(p->channel));
            }
        }
        std::sort(s.channel_epochs.begin(), s.channel_epochs.end());
        std::sort(s.fifo_channels.begin(), s.fifo_channels.end());
        s.fifo_channels.erase(std::unique(s.fifo_channels.begin(), s.fifo_channels.end()), s.fifo_channels.end());
    }

    // The file is a few hundred bytes; a cap keeps a strange file from costing anything.
    constexpr std::size_t max_config = 1 * mib;
    std::ifstream in(input_data_config_path(data_dir), std::ios::binary);
    if (!in)
        return s;
    std::string text(max_config + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_config)
        return s;
    pipemode::detail::parse_error err;
    const auto doc = pipemode::detail::json::parse(text, err);
    if (!doc || !doc->is_object())
        return s;
    s.config_read = true;
    for (const auto& [name, value] : doc->as_object()) {
        s.config_channels.push_back(name);
        if (name == channel)
            if (const auto* mode = value.find("TrainingInputMode"); mode && mode->is_string())
                s.channel_mode = mode->as_string();
    }
    std::sort(s.config_channels.begin(), s.config_channels.end());
    return s;
}

/// Edit distance between `a` and `b` counting an insertion, a deletion, a substitution or a swap
/// of two neighbours as one edit (optimal string alignment), ignoring ASCII case: "trian" is one
/// edit from "train", "Train" none.
inline std::size_t name_distance(std::string_view a, std::string_view b)
{
    const auto same = [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
    };
    // Three rows of the (a.size() + 1) x (b.size() + 1) table: i - 2, i - 1 and i.
    std::vector<std::size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same(a[i - 1], b[j - 1]) ? 0 : 1)});
            if (i > 1 && j > 1 && same(a[i - 1], b[j - 2]) && same(a[i - 2], b[j - 1]))
                cur[j] = std::min(cur[j], before[j - 2] + 1);
        }
        std::swap(before, prev);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

/// "5 min", "2 s", "300 ms": a wait's length as people read it.
inline std::string describe_duration(std::chrono::steady_clock::duration d)
{
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(d).count();
    if (ms >= 60'000 && ms % 60'000 == 0)
        return std::to_string(ms / 60'000) + " min";
    if (ms >= 1000 && ms % 1000 == 0)
        return std::to_string(ms / 1000) + " s";
    return std::to_string(ms) + " ms";
}

/// The message of a missing epoch FIFO: `what` happened (it did not appear in time, or the
/// configuration rules the channel out), then what the container does have.
inline std::string describe_missing_pipe(const std::filesystem::path& data_dir, std::string_view channel,
                                         const std::filesystem::path& path, std::string_view what,
                                         const channel_survey& s)
{
    std::string m = "no FIFO '" + path.filename().string() + "' for channel '" + std::string(channel) + "' ";
    m.append(what);
    if (!s.data_dir_exists) {
        m += "; the directory " + data_dir.string() + " does not exist (is the data directory right, and is the job "
             "in Pipe mode?)";
        return m;
    }
    if (!s.channel_mode.empty() && s.channel_mode != "Pipe")
        m += "; inputdataconfig.json gives channel '" + std::string(channel) + "' TrainingInputMode '" + s.channel_mode
            + "', so its data is the directory " + (data_dir / std::string(channel)).string()
            + ", not a FIFO: read it as files, or make the channel Pipe mode";
    if (!s.channel_epochs.empty()) {
        // The channel is there, with other epochs: epochs counted from 1, or one re-read.
        m += "; channel '" + std::string(channel) + "' has FIFOs here for epoch" + (s.channel_epochs.size() > 1 ? "s " : " ");
        for (std::size_t i = 0; i < s.channel_epochs.size() && i < 5; ++i)
            m.append(i == 0 ? "" : ", ").append(std::to_string(s.channel_epochs[i]));
        if (s.channel_epochs.size() > 5)
            m += ", ...";
        m += " (epochs count from 0; each epoch's FIFO appears once the previous one has been read or closed, and is "
             "read once)";
    }
    const auto all = s.all_channels();
    if (all.empty()) {
        m += "; there are no channels here (no <channel>_<epoch> FIFOs, ";
        m += s.config_read ? "and inputdataconfig.json lists none)" : "and no readable inputdataconfig.json)";
        return m;
    }
    m += "; the channels here are: ";
    for (std::size_t i = 0; i < all.size(); ++i)
        m.append(i == 0 ? "" : ", ").append(all[i]);
    // The nearest other name, if it is close enough to be a typo: within two edits, or a third
    // of the name's length for long names; case differences are free.
    const std::string* best = nullptr;
    std::size_t best_distance = std::max<std::size_t>(2, channel.size() / 3) + 1;
    for (const auto& c : all) {
        const auto d = name_distance(channel, c);
        if (c != channel && d < best_distance) {
            best = &c;
            best_distance = d;
        }
    }
    if (best)
        m += " (did you mean '" + *best + "'?)";
    return m;
}

/// Waits for the FIFO `path` of `channel` to exist, polling, as `pipe_wait_options` describes.
/// Throws `data_error` naming the path when it will not (`errc::timed_out`, or `ENOENT` when it
/// fails fast); the reader hands the exception to the training loop.
inline asio::awaitable<void> wait_for_pipe(asio::any_io_executor ex, std::filesystem::path data_dir,
                                           std::string channel, std::filesystem::path path, pipe_wait_options o)
{
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto deadline = start + o.appear_timeout;
    auto next_check = start + o.unknown_channel_grace;
    asio::steady_timer timer(ex);
    for (;;) {
        struct ::stat st {};
        if (::lstat(path.c_str(), &st) == 0)
            co_return;  // whatever it is: fifo_source opens it and refuses anything but a FIFO
        if (const int e = errno; e != ENOENT && e != ENOTDIR)
            throw data_error({e, boost::system::system_category()}, {path.string(), 0, 0},
                             "looking for the FIFO of channel '" + channel + "' failed");
        const auto now = clock::now();
        if (now >= next_check) {
            // A few directory entries and a small file, every `unknown_channel_grace`.
            const auto s = survey_channels(data_dir, channel);
            if (s.rules_out(channel))
                throw data_error(
                    {ENOENT, boost::system::system_category()}, {path.string(), 0, 0},
                    describe_missing_pipe(data_dir, channel, path,
                                          "in " + data_dir.string() + ", and the job's inputdataconfig.json does not "
                                          "list the channel, so it will never be streamed",
                                          s));
            next_check = now + o.unknown_channel_grace;
        }
        if (now >= deadline)
            throw data_error(errc::timed_out, {path.string(), 0, 0},
                             describe_missing_pipe(data_dir, channel, path,
                                                   "appeared in " + data_dir.string() + " within "
                                                       + describe_duration(o.appear_timeout),
                                                   survey_channels(data_dir, channel)));
        timer.expires_after(std::min({o.poll_interval, deadline - now, next_check - now}));
        // Cancelled when the reader is destroyed: the exception ends the pipeline.
        co_await timer.async_wait(asio::use_awaitable);
    }
}

/// The source provider of `pipe_channel_epoch`: one FIFO, waited for, then read.
class pipe_epoch_provider final : public source_provider {
public:
    pipe_epoch_provider(std::filesystem::path data_dir, std::string channel, std::uint64_t epoch, pipe_wait_options o)
        : data_dir_(std::move(data_dir))
        , channel_(std::move(channel))
        , path_(pipe_path(data_dir_, channel_, epoch))
        , options_(o)
    {
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        if (handed_out_)
            co_return std::nullopt;
        handed_out_ = true;
        co_await wait_for_pipe(ctx.executor, data_dir_, channel_, path_, options_);
        const fifo_source_options fo{
            .appear_timeout = options_.appear_timeout,
            .writer_timeout = options_.writer_timeout,
            .poll_interval = options_.poll_interval,
            .read_size = read_size_,
        };
        co_return any_byte_source(fifo_source(ctx.executor, path_.string(), fo));
    }

    std::string describe() const override { return "Pipe-mode channel '" + channel_ + "' (" + path_.string() + ")"; }

    std::size_t reserve_buffers(const reader_options& options) override
    {
        // One fifo_source, which holds one buffer of this size.
        read_size_ = options.read_size;
        return read_size_;
    }

private:
    std::filesystem::path data_dir_;
    std::string channel_;
    std::filesystem::path path_;
    pipe_wait_options options_;
    std::size_t read_size_ = 1 * mib;
    bool handed_out_ = false;
};

inline void check_pipe_wait_options(const pipe_wait_options& o)
{
    if (o.poll_interval <= std::chrono::steady_clock::duration::zero())
        throw std::invalid_argument("pipemode: pipe_wait_options::poll_interval must be positive, e.g. 20 ms");
    if (o.unknown_channel_grace <= std::chrono::steady_clock::duration::zero())
        throw std::invalid_argument(
            "pipemode: pipe_wait_options::unknown_channel_grace must be positive, e.g. 2 s (it sets how soon a channel "
            "the job does not have is reported)");
}

} // namespace detail

inline std::filesystem::path pipe_path(const std::filesystem::path& data_dir, std::string_view channel,
                                       std::uint64_t epoch)
{
    validate_channel_name(channel);
    return data_dir / (std::string(channel) + '_' + std::to_string(epoch));
}

inline std::unique_ptr<source_provider> pipe_channel_epoch(std::filesystem::path data_dir, std::string_view channel,
                                                           std::uint64_t epoch, pipe_wait_options options)
{
    detail::check_pipe_wait_options(options);
    return std::make_unique<detail::pipe_epoch_provider>(std::move(data_dir), std::string(channel), epoch, options);
}

inline pipe_channel::pipe_channel(std::string channel, pipe_channel_options options)
    : name_(std::move(channel)), options_(std::move(options))
{
    validate_channel_name(name_);
    detail::check_pipe_wait_options(options_.wait);
}

inline reader pipe_channel::open_epoch(std::uint64_t epoch) const
{
    return reader(pipe_channel_epoch(options_.data_dir, name_, epoch, options_.wait), options_.reader);
}

} // namespace pipemode::sagemaker
