// pipemode_training's channels, command line and prediction loop: the half of the library that
// includes the reader and the source stack (local files, FIFOs, HTTP, S3, the cache), compiled
// once here instead of in every trainer. See training.hpp.
#include "training.hpp"

#include "data_sources.hpp"
#include "training_program.hpp"

#include <pipemode/core/content_type.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/sagemaker/hyperparameters.hpp>
#include <pipemode/sagemaker/pipe_channel.hpp>

#include <array>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace pipemode::examples {

std::string_view to_string(channel c) noexcept
{
    switch (c) {
    case channel::train: return "train";
    case channel::validation: return "validation";
    case channel::test: return "test";
    }
    return "train";
}

struct training_job::state {
    training_input train;                      // the train channel, and every input option
    std::vector<tools::source_arg> validation; // --validation SOURCE...
    std::vector<tools::source_arg> test;       // --test SOURCE...
    bool pipe_mode = false;                    // --pipe-mode: every channel from its FIFOs
    bool pipe_validation = false;              // in Pipe mode, whether the channel exists
    bool pipe_test = false;
    // Each channel's content type, by channel (train, validation, test): --content-type,
    // --validation-content-type, --test-content-type, or in Pipe mode the channel's ContentType
    // in inputdataconfig.json; RecordIO-protobuf when none is given.
    std::array<std::optional<std::string>, 3> content_types;
    std::array<content_format, 3> formats;
    std::filesystem::path predict;             // --predict MODEL_FILE
    std::string output;                        // --output FILE; empty: stdout
    std::string program;
};

namespace {

// What SageMaker configured for channel `name` in Pipe mode.
struct pipe_channel_config {
    bool present = false;
    std::optional<std::string> content_type;  // the channel's ContentType, when given
};

// Reads channel `name`'s entry of inputdataconfig.json (next to the data directory, as SageMaker
// lays it out); without that file, the channel is there when its first FIFO is.
pipe_channel_config read_pipe_channel_config(const std::string& data_dir, std::string_view name)
{
    const auto config = std::filesystem::path(data_dir).parent_path() / "config" / "inputdataconfig.json";
    std::ifstream f(config, std::ios::binary);
    if (f) {
        const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        detail::parse_error err;
        if (auto doc = detail::json::parse(text, err); doc && doc->is_object()) {
            pipe_channel_config c;
            if (const auto* entry = doc->find(name)) {
                c.present = true;
                if (const auto* type = entry->is_object() ? entry->find("ContentType") : nullptr;
                    type != nullptr && type->is_string())
                    c.content_type = type->as_string();
            }
            return c;
        }
    }
    std::error_code ec;
    return {std::filesystem::exists(std::filesystem::path(data_dir) / (std::string(name) + "_0"), ec), {}};
}

// The reader format of a channel's content type. A trainer's batches are a feature "values"
// and a label "values": RecordIO-protobuf records, or CSV rows (label columns first, as
// SageMaker's built-in algorithms read them); the other formats carry no tensors.
content_format trainer_format(const std::string& text, std::string_view channel)
{
    content_format f;
    try {
        f = content_format_of(parse_content_type(text));
    } catch (const std::exception& e) {
        throw usage_error("the " + std::string(channel) + " channel's content type: " + e.what());
    }
    if (f.format != data_format::recordio_protobuf && f.format != data_format::csv)
        throw usage_error("the " + std::string(channel) + " channel's content type is '" + text
                          + "'; a trainer reads application/x-recordio-protobuf or text/csv[;label_size=N]");
    return f;
}

// The reader options of one channel's reader.
reader_options channel_options(const training_job::state& s, channel c, std::size_t batch_size)
{
    const auto& f = s.formats[static_cast<std::size_t>(c)];
    return reader_options{
        .batch_size = batch_size,
        .format = f.format,
        .csv_label_size = f.csv_label_size,
        .memory_budget = s.train.memory_budget,
        .read_size = s.train.source.read_size,
    };
}

} // namespace

training_job training_job::parse(int argc, char** argv, const hyperparameter_setter& set, std::string_view program)
{
    auto s = std::make_shared<state>();
    s->program = std::string(program);
    auto& in = s->train;
    std::vector<std::pair<std::string, std::string>> given;
    for (tools::option_cursor c(argc, argv); c.next();) {
        const auto name = c.name();
        if (c.positional())
            in.sources.push_back({std::string(c.arg())});
        else if (name == "--validation")
            s->validation.push_back({std::string(c.value())});
        else if (name == "--test")
            s->test.push_back({std::string(c.value())});
        else if (name == "--pipe-mode")
            s->pipe_mode = true;
        else if (name == "--predict") {
            s->predict = std::string(c.value());
            if (s->predict.empty())
                throw usage_error("--predict needs a model file");
        }
        else if (name == "--output")
            s->output = c.value();
        else if (name == "--content-type")
            s->content_types[static_cast<std::size_t>(channel::train)] = std::string(c.value());
        else if (name == "--validation-content-type")
            s->content_types[static_cast<std::size_t>(channel::validation)] = std::string(c.value());
        else if (name == "--test-content-type")
            s->content_types[static_cast<std::size_t>(channel::test)] = std::string(c.value());
        else if (!parse_input_option(c, in))
            given.emplace_back(std::string(name), std::string(c.value()));
    }
    if (in.help)
        return training_job(std::move(s));

    std::string file = in.hyperparameters_file;
    if (file.empty() && given.empty() && s->predict.empty()
        && std::filesystem::exists(std::string(sagemaker::default_hyperparameters_path)))
        file = sagemaker::default_hyperparameters_path;
    if (!file.empty()) {
        sagemaker::hyperparameters hp;
        try {
            hp = sagemaker::hyperparameters::read_file(file);
        } catch (const std::exception& e) {
            throw usage_error(e.what());  // the message starts with the path
        }
        for (const auto& [name, value] : hp.items())
            if (!set(hyperparameter_name(name), value))
                std::fprintf(stderr, "%s: ignoring hyperparameter '%s' from %s\n", s->program.c_str(), name.c_str(),
                             file.c_str());
    }
    for (const auto& [name, value] : given)
        if (!set(hyperparameter_name(name), value))
            throw usage_error("unknown option '" + name + "'");

    if (s->pipe_mode) {
        if (!in.pipe_channel.empty() && in.pipe_channel != "train")
            throw usage_error("--pipe-mode reads the channels train, validation and test; give --pipe-channel or "
                              "--pipe-mode, not both");
        if (!in.sources.empty() || !s->validation.empty() || !s->test.empty())
            throw usage_error("--pipe-mode reads FIFOs; give SOURCEs (and --validation, --test) or --pipe-mode, "
                              "not both");
        in.pipe_channel = "train";
        for (const auto c : {channel::train, channel::validation, channel::test}) {
            const auto config = read_pipe_channel_config(in.data_dir, to_string(c));
            if (c == channel::validation)
                s->pipe_validation = config.present;
            if (c == channel::test)
                s->pipe_test = config.present;
            auto& type = s->content_types[static_cast<std::size_t>(c)];
            if (!type)
                type = config.content_type;
        }
    }
    for (const auto c : {channel::train, channel::validation, channel::test})
        if (const auto& type = s->content_types[static_cast<std::size_t>(c)])
            s->formats[static_cast<std::size_t>(c)] = trainer_format(*type, to_string(c));
    if (in.sources.empty() && in.pipe_channel.empty())
        throw usage_error("no SOURCE given (or --pipe-channel NAME, or --pipe-mode)");
    if (!in.sources.empty() && !in.pipe_channel.empty())
        throw usage_error("give SOURCEs or --pipe-channel, not both");
    if (!s->output.empty() && s->predict.empty())
        throw usage_error("--output is where --predict writes; give --predict MODEL_FILE too");
    // The kinds of every channel's sources are checked now, so that a wrong scheme fails before
    // the first epoch rather than when the channel is first read.
    for (const auto* list : {&in.sources, &s->validation, &s->test})
        for (const auto& a : *list)
            (void)tools::kind_of(a);
    return training_job(std::move(s));
}

bool training_job::help() const noexcept { return state_->train.help; }
bool training_job::quiet() const noexcept { return state_->train.quiet; }
bool training_job::predicting() const noexcept { return !state_->predict.empty(); }
const std::filesystem::path& training_job::predict_model() const noexcept { return state_->predict; }
std::size_t training_job::memory_budget() const noexcept { return state_->train.memory_budget; }
const std::string& training_job::program() const noexcept { return state_->program; }
std::filesystem::path training_job::model_dir() const { return model_directory(state_->train); }

bool training_job::has(channel c) const noexcept
{
    switch (c) {
    case channel::train: return true;
    case channel::validation: return state_->pipe_mode ? state_->pipe_validation : !state_->validation.empty();
    case channel::test: return state_->pipe_mode ? state_->pipe_test : !state_->test.empty();
    }
    return false;
}

std::vector<std::string> training_job::sources(channel c) const
{
    const auto& list = c == channel::train ? state_->train.sources
                       : c == channel::validation ? state_->validation
                                                  : state_->test;
    std::vector<std::string> out;
    for (const auto& a : list)
        out.push_back(a.text);
    return out;
}

std::string training_job::options_help()
{
    std::string s = R"(Channels (SageMaker's names):
  SOURCE...              the train channel; under MPI each rank reads its shard
  --validation SOURCE    a source of the validation channel (repeat for several); every rank
                         reads all of it
  --test SOURCE          a source of the test channel (repeat for several); every rank reads
                         all of it
  --pipe-mode            SageMaker Pipe mode: read every channel from its FIFOs DATA_DIR/
                         train_N, validation_N and test_N (N = the epoch); validation and test
                         when inputdataconfig.json lists them
Prediction (batch transform):
  --predict MODEL_FILE   read SOURCEs (or the train FIFO) with this trained model.json and
                         write one JSON Lines prediction per record, in record order
  --output FILE          write the predictions to FILE (default: stdout)
Content types (SageMaker's ContentType of a channel; in Pipe mode inputdataconfig.json's):
  --content-type TYPE    the train channel's (and what --predict reads):
                         application/x-recordio-protobuf (the default) or
                         text/csv[;label_size=N] (N leading label columns, default 1)
  --validation-content-type TYPE, --test-content-type TYPE
                         the validation and test channels' (default: RecordIO-protobuf)
)";
    s += input_options_help;
    s += tools::source_options_help;
    return s;
}

// --- channel_reader

struct channel_reader::impl {
    std::optional<pipemode::reader> reader;
    std::uint64_t records = 0;
};

namespace {

// The sources of one epoch of a channel every rank reads whole: the FIFO in Pipe mode, else the
// channel's sources planned as one data set, unsharded and in order.
std::unique_ptr<source_provider> replicated_sources(const training_job::state& s, channel c, std::uint64_t epoch)
{
    const auto& in = s.train;
    if (!in.pipe_channel.empty() && (s.pipe_mode || c == channel::train))
        return sagemaker::pipe_channel_epoch(in.data_dir, s.pipe_mode ? std::string(to_string(c)) : in.pipe_channel,
                                             epoch);
    const auto& list = c == channel::train ? in.sources : c == channel::validation ? s.validation : s.test;
    data_set_options d;
    d.plan.shard = {.rank = 0, .world_size = 1, .mode = shard_mode::replicated};
    d.epochs = epoch + 1;
    d.first_epoch = epoch;
    auto provider = planned_epochs(tools::make_store(list, in.source, s.program), d);
    // Every rank reads these whole: the case fan-out is for. Each channel is a group of its own.
    auto options = in.source;
    if (!options.fanout_group.empty())
        options.fanout_group += "/" + std::string(to_string(c));
    return tools::fanned_out(std::move(provider), options, d);
}

} // namespace

channel_reader::channel_reader(const training_job& job, channel c, std::uint64_t epoch, const mpi_context& mpi,
                               std::size_t batch_size)
    : impl_(std::make_unique<impl>())
{
    const auto& s = job.get();
    if (c != channel::train && !job.has(c))
        throw std::logic_error("channel_reader: the job has no " + std::string(to_string(c)) + " channel");
    auto sources = c == channel::train ? epoch_sources(s.train, epoch, mpi, s.program)
                                       : replicated_sources(s, c, epoch);
    if (!sources)
        return;
    impl_->reader.emplace(std::move(sources), channel_options(s, c, batch_size));
}

channel_reader::channel_reader() : impl_(std::make_unique<impl>()) {}

channel_reader channel_reader::whole(const training_job& job, channel c, std::uint64_t epoch, std::size_t batch_size)
{
    const auto& s = job.get();
    if (c != channel::train && !job.has(c))
        throw std::logic_error("channel_reader: the job has no " + std::string(to_string(c)) + " channel");
    channel_reader r;
    r.impl_->reader.emplace(replicated_sources(s, c, epoch), channel_options(s, c, batch_size));
    return r;
}

channel_reader::~channel_reader() = default;
channel_reader::channel_reader(channel_reader&&) noexcept = default;
channel_reader& channel_reader::operator=(channel_reader&&) noexcept = default;

bool channel_reader::has_data() const noexcept { return impl_->reader.has_value(); }

std::optional<batch> channel_reader::next()
{
    if (!impl_->reader)
        return std::nullopt;
    auto b = impl_->reader->next();
    if (b)
        impl_->records += b->size() - b->padding();
    return b;
}

std::uint64_t channel_reader::bytes() const noexcept { return impl_->reader ? impl_->reader->stats().bytes : 0; }

std::uint64_t channel_reader::records() const noexcept { return impl_->records; }

// --- prediction

std::uint64_t run_prediction(const training_job& job, const mpi_context& mpi, std::size_t batch_size,
                             const predict_function& predict)
{
    if (mpi.rank() != 0)
        return 0;
    const auto& s = job.get();
    pipemode::reader reader(replicated_sources(s, channel::train, 0), channel_options(s, channel::train, batch_size));
    std::filesystem::path temp;
    std::FILE* out = stdout;
    if (!s.output.empty()) {
        const std::filesystem::path path(s.output);
        temp = path.parent_path() / (path.filename().string() + ".tmp");
        out = std::fopen(temp.c_str(), "wb");
        if (out == nullptr)
            throw std::runtime_error("cannot write " + temp.string());
    }
    std::uint64_t records = 0;
    std::vector<std::string> rows;
    std::string text;
    try {
        for (auto& b : reader) {
            rows.clear();
            predict(b, rows);
            const std::size_t n = b.size() - b.padding();
            if (rows.size() != n)
                throw std::logic_error("the predictor gave " + std::to_string(rows.size()) + " rows for a batch of "
                                       + std::to_string(n) + " records");
            text.clear();
            for (const auto& r : rows) {
                text += r;
                text += '\n';
            }
            if (std::fwrite(text.data(), 1, text.size(), out) != text.size())
                throw std::runtime_error("cannot write the predictions" + (s.output.empty() ? "" : " to " + temp.string()));
            records += n;
        }
    } catch (...) {
        if (out != stdout) {
            std::fclose(out);
            std::filesystem::remove(temp);
        }
        throw;
    }
    if (out != stdout) {
        if (std::fclose(out) != 0)
            throw std::runtime_error("cannot write " + temp.string());
        std::filesystem::rename(temp, s.output);
    }
    else
        std::fflush(stdout);
    if (!s.train.quiet)
        std::fprintf(stderr, "%s: %llu predictions\n", s.program.c_str(), static_cast<unsigned long long>(records));
    return records;
}

// --- main

void print_help(const mpi_context& mpi, std::string_view head, std::string_view tail)
{
    if (mpi.rank() != 0)
        return;
    const auto options = training_job::options_help();
    for (const std::string_view part : {head, std::string_view(options), tail})
        std::fwrite(part.data(), 1, part.size(), stdout);
}

int run_trainer(int argc, char** argv, std::string_view program,
                const std::function<int(int, char**, const mpi_context&)>& run)
{
    mpi_context mpi(&argc, &argv);
    const std::string name(program);
    try {
        return run(argc, argv, mpi);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", name.c_str(), e.what(), name.c_str());
        return mpi.abort(2);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
        return mpi.abort(1);
    }
}

} // namespace pipemode::examples
