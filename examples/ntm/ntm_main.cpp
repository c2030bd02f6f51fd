// pipemode-ntm: the Neural Topic Model (ntm.hpp) over RecordIO-protobuf bag-of-words records
// read through the training library's channels (training.hpp), epoch after epoch, as
// SageMaker's built-in NTM: early stopping on the validation channel's loss, per-epoch metrics,
// MPI ranks that each read a shard and average their gradients every batch. Writes model.json
// and metrics.json; with --predict, writes each record's topic weights (JSON Lines).
//
// Usage: `pipemode-ntm --help` and docs/algorithms.md.
#include "../common/feature_rows.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "ntm.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::examples;
using namespace pipemode::examples::ntm;
using pipemode::tools::parse_count;
using pipemode::tools::parse_real;

constexpr std::string_view program = "pipemode-ntm";

constexpr std::string_view usage_head = R"(Usage: pipemode-ntm [options] SOURCE...
       pipemode-ntm [options] --pipe-channel NAME [--data-dir DIR]
       pipemode-ntm --predict MODEL_FILE [--output FILE] SOURCE...

The Neural Topic Model (a variational autoencoder over bag-of-words documents) over
RecordIO-protobuf records whose feature "values" holds a document's word counts (dense or
sparse, float32/float64/int32), reading the data once per epoch and updating after every
mini-batch with gradients written out by hand. A SOURCE is a local file or FIFO, an http(s)://
URL, an S3 object s3://BUCKET/KEY or prefix s3://BUCKET/PREFIX/. Under mpirun each rank reads
its shard of the SOURCEs and the ranks average their gradients every batch. Prints per epoch
#metric train:total_loss=... epoch=E, train:perplexity, and with a validation channel
validation:total_loss and validation:perplexity; stops early when the validation loss (the
training loss without one) has not improved by tolerance for num_patience_epochs epochs; the
test channel gives test:total_loss and test:perplexity at the end. Writes MODEL_DIR/model.json
and MODEL_DIR/metrics.json. --predict writes {"topic_weights": [...]} (softmax of the
posterior mean) for each record.

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --num_topics K                 topics (required)
  --feature_dim V                vocabulary size (default: from the first record)
  --encoder_layers L             "auto" (3K,2K) or hidden sizes such as 100,50 (default auto)
  --encoder_layers_activation A  sigmoid (default), tanh or relu
  --batch_norm B                 true or false (default): batch-normalise the hidden layers
  --optimizer O                  adadelta (default), adam, sgd, rmsprop or adagrad
  --learning_rate R              step size (default 0.001; adadelta has none)
  --epochs E                     at most E passes over the data (default 50)
  --mini_batch_size N            documents a mini-batch, over all ranks (default 256)
  --num_patience_epochs P        epochs without improvement before stopping (default 3)
  --tolerance T                  relative improvement an epoch needs (default 0.001)
  --clip_gradient C              clip each gradient value to [-C, C] (default: none)
  --rescale_gradient R           gradient scale, before clipping (default 1)
  --sub_sample F                 fraction of the training documents used each epoch (default 1)
  --weight_decay W               L2 coefficient added to the gradient (default 0)
Not SageMaker's:
  --seed S                       seed of the initialisation and the noise (default 1)
  --initial_model FILE           start from this model.json instead of a random one
Dashes may replace underscores (--num-topics).

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

struct ntm_settings {
    std::size_t num_topics = 0;
    std::size_t feature_dim = 0;
    std::string encoder_layers = "auto";
    activation act = activation::sigmoid;
    bool batch_norm = false;
    optimizer_settings opt;
    std::uint64_t epochs = 50;
    std::size_t mini_batch_size = 256;
    std::uint64_t patience = 3;
    double tolerance = 0.001;
    double sub_sample = 1.0;
    std::uint64_t seed = 1;
    std::string initial_model;
    // The reference checks' hook (not in --help): one batch's loss and gradients with the
    // noise from a file, written as JSON, instead of training.
    std::string debug_gradients, debug_noise;
};

std::size_t positive(const std::string& name, std::string_view v)
{
    const auto n = parse_count(name, v);
    if (n == 0)
        throw usage_error(name + " must be at least 1");
    return n;
}

double non_negative(const std::string& name, std::string_view v)
{
    const double x = parse_real(name, v);
    if (!(x >= 0))
        throw usage_error(name + " must not be negative");
    return x;
}

bool set_hyperparameter(ntm_settings& s, const std::string& name, std::string_view v)
{
    try {
        if (name == "num_topics")
            s.num_topics = positive(name, v);
        else if (name == "feature_dim")
            s.feature_dim = parse_count(name, v);
        else if (name == "encoder_layers") {
            parse_encoder_layers(v, 1);  // checked now, sized once num_topics is known
            s.encoder_layers = v;
        }
        else if (name == "encoder_layers_activation")
            s.act = parse_activation(v);
        else if (name == "batch_norm")
            s.batch_norm = parse_bool(name, v);
        else if (name == "optimizer")
            s.opt.kind = parse_optimizer(v);
        else if (name == "learning_rate")
            s.opt.learning_rate = non_negative(name, v);
        else if (name == "epochs")
            s.epochs = positive(name, v);
        else if (name == "mini_batch_size")
            s.mini_batch_size = positive(name, v);
        else if (name == "num_patience_epochs")
            s.patience = positive(name, v);
        else if (name == "tolerance")
            s.tolerance = non_negative(name, v);
        else if (name == "clip_gradient")
            s.opt.clip_gradient = non_negative(name, v);
        else if (name == "rescale_gradient")
            s.opt.rescale_gradient = non_negative(name, v);
        else if (name == "weight_decay")
            s.opt.weight_decay = non_negative(name, v);
        else if (name == "sub_sample") {
            s.sub_sample = parse_real(name, v);
            if (!(s.sub_sample > 0 && s.sub_sample <= 1))
                throw usage_error("sub_sample must be in (0, 1]");
        }
        else if (name == "seed")
            s.seed = parse_count(name, v);
        else if (name == "initial_model")
            s.initial_model = v;
        else if (name == "debug_gradients")
            s.debug_gradients = v;
        else if (name == "debug_noise")
            s.debug_noise = v;
        else
            return false;
    } catch (const std::invalid_argument& e) {
        throw usage_error(e.what());
    }
    return true;
}

// --- model file ------------------------------------------------------------------------------

void append_parameter(std::string& out, const matrix& value)
{
    if (value.cols() == 1)
        append_json_array(out, std::span<const double>(value.data(), static_cast<std::size_t>(value.size())));
    else
        append_json_matrix(out, std::span<const double>(value.data(), static_cast<std::size_t>(value.size())),
                           static_cast<std::size_t>(value.cols()));
}

std::string model_json(const ntm_model& m, std::uint64_t epochs_run, std::uint64_t records)
{
    const auto& d = m.dims();
    std::string out = "{\n";
    out += "  \"algorithm\": \"ntm\",\n  \"format_version\": 1,\n";
    out += "  \"feature_dim\": " + std::to_string(d.feature_dim) + ",\n";
    out += "  \"num_topics\": " + std::to_string(d.num_topics) + ",\n";
    std::vector<double> layers(d.encoder_layers.begin(), d.encoder_layers.end());
    out += "  \"encoder_layers\": ";
    append_json_array(out, layers);
    out += ",\n  \"encoder_layers_activation\": \"" + std::string(to_string(d.act)) + "\",\n";
    out += std::string("  \"batch_norm\": ") + (d.batch_norm ? "true" : "false") + ",\n";
    out += "  \"input_transform\": \"log1p\",\n";
    out += "  \"epochs_run\": " + std::to_string(epochs_run) + ",\n";
    out += "  \"records\": " + std::to_string(records);
    for (const auto& p : m.params()) {
        out += ",\n  \"" + p.name + "\": ";
        append_parameter(out, p.value);
    }
    out += "\n}\n";
    return out;
}

ntm_model read_model(const std::filesystem::path& path)
{
    const auto f = model_file::read(path);
    f.expect("ntm", 1);
    dimensions d;
    d.feature_dim = f.count("feature_dim");
    d.num_topics = f.count("num_topics");
    for (double h : f.numbers("encoder_layers")) {
        if (!(h >= 1) || h != std::floor(h))
            throw std::runtime_error(path.string() + ": encoder_layers holds a size that is not a positive whole number");
        d.encoder_layers.push_back(static_cast<std::size_t>(h));
    }
    if (d.encoder_layers.empty())
        throw std::runtime_error(path.string() + ": encoder_layers is empty");
    try {
        d.act = parse_activation(f.string("encoder_layers_activation"));
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(path.string() + ": " + e.what());
    }
    d.batch_norm = f.boolean("batch_norm");
    ntm_model m(d);
    for (auto& p : m.params()) {
        const auto cols = static_cast<std::size_t>(p.value.cols());
        const auto values = cols == 1 ? f.numbers(p.name) : f.matrix(p.name, cols);
        if (values.size() != static_cast<std::size_t>(p.value.size()))
            throw std::runtime_error(path.string() + ": " + p.name + " has " + std::to_string(values.size())
                                     + " values, not " + std::to_string(p.value.size()));
        std::copy(values.begin(), values.end(), p.value.data());
    }
    return m;
}

// --- batches ---------------------------------------------------------------------------------

/// The documents of `b` as rows of word counts.
void read_counts(const pipemode::batch& b, std::size_t dim, matrix& out, std::vector<double>& scratch)
{
    const feature_rows fr(b, "values", dim);
    out.resize(static_cast<Eigen::Index>(fr.size()), static_cast<Eigen::Index>(dim));
    for (std::size_t i = 0; i < fr.size(); ++i)
        fr.densify(i, std::span<double>(out.data() + i * dim, dim), scratch);
}

/// Keeps the documents of `counts` that sub-sampling selects, with their noise in `eps`.
void draw_noise(matrix& counts, matrix& eps, std::size_t k, double sub_sample, std::uint64_t seed,
                std::uint64_t epoch)
{
    const auto v = static_cast<std::size_t>(counts.cols());
    eps.resize(counts.rows(), static_cast<Eigen::Index>(k));
    Eigen::Index kept = 0;
    for (Eigen::Index i = 0; i < counts.rows(); ++i) {
        const std::span<const double> row(counts.data() + i * counts.cols(), v);
        const double u = document_draws(document_hash(row, seed, epoch),
                                        std::span<double>(eps.data() + kept * eps.cols(), k));
        if (sub_sample < 1 && u >= sub_sample)
            continue;
        if (kept != i)
            counts.row(kept) = counts.row(i);
        ++kept;
    }
    counts.conservativeResize(kept, Eigen::NoChange);
    eps.conservativeResize(kept, Eigen::NoChange);
}

struct channel_loss {
    double loss_sum = 0, words = 0;
    std::uint64_t docs = 0;
    double total_loss() const { return docs ? loss_sum / static_cast<double>(docs) : 0.0; }
    double perplexity() const { return std::exp(words > 0 ? loss_sum / words : 0.0); }
};

/// The loss of a whole channel with `m` at z = mu (no noise), batch normalisation with its
/// running statistics; every rank reads the channel whole, so every rank gets the same figure.
channel_loss evaluate_channel(const training_job& job, channel c, std::uint64_t epoch, const ntm_model& m,
                              std::size_t batch_size)
{
    channel_loss out;
    auto reader = channel_reader::whole(job, c, epoch, batch_size);
    matrix counts;
    std::vector<double> scratch;
    while (auto b = reader.next()) {
        read_counts(*b, m.dims().feature_dim, counts, scratch);
        const auto r = evaluate(m, counts, matrix::Zero(counts.rows(), static_cast<Eigen::Index>(m.dims().num_topics)),
                                false);
        out.loss_sum += r.loss_sum;
        out.words += r.words;
        out.docs += r.docs;
    }
    return out;
}

// --- modes -----------------------------------------------------------------------------------

/// The reference checks' hook: the first batch of the train channel (read whole, up to
/// mini_batch_size documents) with the model of --initial_model and the noise of --debug_noise
/// (a JSON object whose "eps" is docs x num_topics); writes {"loss": mean loss, "docs": n,
/// "<parameter>": its gradient, ...} to the file --debug_gradients names.
int debug_gradients(const training_job& job, const ntm_settings& s)
{
    if (s.initial_model.empty() || s.debug_noise.empty())
        throw usage_error("debug_gradients needs initial_model and debug_noise");
    const ntm_model m = read_model(s.initial_model);
    auto reader = channel_reader::whole(job, channel::train, 0, s.mini_batch_size);
    auto b = reader.next();
    if (!b)
        throw std::runtime_error("debug_gradients: the train channel is empty");
    matrix counts;
    std::vector<double> scratch;
    read_counts(*b, m.dims().feature_dim, counts, scratch);
    const auto k = m.dims().num_topics;
    const auto noise = model_file::read(s.debug_noise).matrix("eps", k);
    if (noise.size() != static_cast<std::size_t>(counts.rows()) * k)
        throw std::runtime_error("debug_gradients: eps must have one row of num_topics values a document");
    const matrix eps = Eigen::Map<const matrix>(noise.data(), counts.rows(), static_cast<Eigen::Index>(k));
    const auto r = evaluate(m, counts, eps, true);
    std::string out = "{\n  \"loss\": ";
    append_json_number(out, r.loss_sum / static_cast<double>(r.docs));
    out += ",\n  \"kl\": ";
    append_json_number(out, r.kl_sum / static_cast<double>(r.docs));
    out += ",\n  \"docs\": " + std::to_string(r.docs);
    for (std::size_t i = 0; i < m.params().size(); ++i) {
        out += ",\n  \"" + m.params()[i].name + "\": ";
        append_parameter(out, r.gradients[i]);
    }
    out += "\n}\n";
    const std::filesystem::path path(s.debug_gradients);
    write_model_file(path.has_parent_path() ? path.parent_path() : ".", path.filename().string(), out);
    return 0;
}

int predict(const training_job& job, const ntm_settings& s, const mpi_context& mpi)
{
    const ntm_model m = read_model(job.predict_model());
    matrix counts;
    std::vector<double> scratch;
    run_prediction(job, mpi, s.mini_batch_size, [&](const pipemode::batch& b, std::vector<std::string>& rows) {
        read_counts(b, m.dims().feature_dim, counts, scratch);
        const matrix t = topic_weights(m, counts);
        for (Eigen::Index i = 0; i < t.rows(); ++i) {
            std::string line = "{\"topic_weights\": [";
            for (Eigen::Index j = 0; j < t.cols(); ++j) {
                if (j)
                    line += ", ";
                append_json_shortest(line, t(i, j));
            }
            line += "]}";
            rows.push_back(std::move(line));
        }
    });
    return 0;
}

struct training_result {
    ntm_model model;
    std::uint64_t epochs_run = 0;
    std::uint64_t records = 0;  // training documents read in the first epoch, over all ranks
    std::uint64_t bytes = 0;
    std::uint64_t batches = 0;
    bool stopped_early = false;
};

training_result train(const training_job& job, ntm_settings& s, const mpi_context& mpi, progress_line& progress,
                      metrics_log& metrics)
{
    training_result out;
    const std::size_t ranks = mpi.size();
    const std::size_t rank_batch = (s.mini_batch_size + ranks - 1) / ranks;
    optimizer opt(s.opt);
    early_stopping stopper(s.patience, s.tolerance);
    ntm_model& m = out.model;
    matrix counts, eps;
    std::vector<double> scratch, shared;
    for (std::uint64_t epoch = 0; epoch < s.epochs; ++epoch) {
        progress.start_epoch(epoch, s.epochs);
        channel_reader reader(job, channel::train, epoch, mpi, rank_batch);
        std::optional<pipemode::batch> first;
        if (epoch == 0) {
            first = reader.next();
            const auto d = agree_on_dimension(s.feature_dim, first ? feature_rows::dimension_of(*first, "values") : 0, mpi);
            if (!s.initial_model.empty()) {
                m = read_model(s.initial_model);
                if (m.dims().feature_dim != d || m.dims().num_topics != s.num_topics)
                    throw usage_error("the initial model's feature_dim or num_topics differ from the hyperparameters'");
            }
            else {
                dimensions dims{.feature_dim = d, .num_topics = s.num_topics,
                                .encoder_layers = parse_encoder_layers(s.encoder_layers, s.num_topics),
                                .act = s.act, .batch_norm = s.batch_norm};
                m = ntm_model::initialized(dims, s.seed);
            }
            s.feature_dim = d;
        }
        const std::size_t layers = m.dims().batch_norm ? m.dims().encoder_layers.size() : 0;
        double loss_sum = 0, words = 0;
        std::uint64_t docs = 0, records = 0;
        for (;;) {
            std::optional<pipemode::batch> b = std::move(first);
            first.reset();
            if (!b)
                b = reader.next();
            batch_result r;
            if (b) {
                read_counts(*b, s.feature_dim, counts, scratch);
                records += static_cast<std::uint64_t>(counts.rows());
                draw_noise(counts, eps, s.num_topics, s.sub_sample, s.seed, epoch);
                if (counts.rows() > 0)
                    r = evaluate(m, counts, eps, true);
            }
            double n = static_cast<double>(r.docs);
            if (ranks > 1) {
                // The ranks' gradients weighted by their documents, so that the sum divided by all
                // the documents is the gradient of the union batch's mean loss; then the batch
                // statistics likewise, the loss figures, and whether the rank had a batch.
                shared.clear();
                for (std::size_t i = 0; i < m.params().size(); ++i) {
                    if (!m.params()[i].trained)
                        continue;
                    const auto size = static_cast<std::size_t>(m.params()[i].value.size());
                    if (r.docs)
                        for (std::size_t j = 0; j < size; ++j)
                            shared.push_back(n * r.gradients[i].data()[j]);
                    else
                        shared.insert(shared.end(), size, 0.0);
                }
                for (std::size_t l = 0; l < layers; ++l)
                    for (const auto* v : {&r.batch_mean, &r.batch_var}) {
                        const auto h = m.dims().encoder_layers[l];
                        for (std::size_t j = 0; j < h; ++j)
                            shared.push_back(r.docs ? n * (*v)[l](static_cast<Eigen::Index>(j)) : 0.0);
                    }
                shared.push_back(r.loss_sum);
                shared.push_back(r.words);
                shared.push_back(n);
                shared.push_back(b ? 1.0 : 0.0);
                mpi.sum(shared);
                if (shared.back() == 0)
                    break;
                n = shared[shared.size() - 2];
                if (n > 0) {
                    std::size_t at = 0;
                    r.gradients.resize(m.params().size());
                    for (std::size_t i = 0; i < m.params().size(); ++i) {
                        auto& g = r.gradients[i];
                        g.resize(m.params()[i].value.rows(), m.params()[i].value.cols());
                        if (!m.params()[i].trained) {
                            g.setZero();
                            continue;
                        }
                        for (Eigen::Index j = 0; j < g.size(); ++j)
                            g.data()[j] = shared[at++] / n;
                    }
                    r.batch_mean.resize(layers);
                    r.batch_var.resize(layers);
                    for (std::size_t l = 0; l < layers; ++l)
                        for (auto* v : {&r.batch_mean, &r.batch_var}) {
                            const auto h = static_cast<Eigen::Index>(m.dims().encoder_layers[l]);
                            (*v)[l].resize(h);
                            for (Eigen::Index j = 0; j < h; ++j)
                                (*v)[l](j) = shared[at++] / n;
                        }
                }
                r.loss_sum = shared[shared.size() - 4];
                r.words = shared[shared.size() - 3];
                r.docs = static_cast<std::size_t>(n);
            }
            else if (!b) {
                break;
            }
            if (r.docs > 0) {
                loss_sum += r.loss_sum;
                words += r.words;
                docs += r.docs;
                opt.step(m, r.gradients);
                update_running_statistics(m, r.batch_mean, r.batch_var);
                ++out.batches;
            }
            progress.update(records * ranks, reader.bytes() * ranks);
        }
        const std::uint64_t epoch_bytes = mpi.sum(reader.bytes());
        const std::uint64_t epoch_records = mpi.sum(records);
        progress.end_epoch(epoch_records, epoch_bytes);
        out.bytes += epoch_bytes;
        if (epoch == 0)
            out.records = epoch_records;
        out.epochs_run = epoch + 1;
        // The loss of each training batch before its update, in the training mode (noise,
        // batch statistics): the sum over the ranks' batches.
        channel_loss train_loss{loss_sum, words, docs};
        metrics.report("train", "total_loss", train_loss.total_loss(), epoch + 1);
        metrics.report("train", "perplexity", train_loss.perplexity(), epoch + 1);
        double watched = train_loss.total_loss();
        if (job.has(channel::validation)) {
            const auto v = evaluate_channel(job, channel::validation, epoch, m, s.mini_batch_size);
            metrics.report("validation", "total_loss", v.total_loss(), epoch + 1);
            metrics.report("validation", "perplexity", v.perplexity(), epoch + 1);
            watched = v.total_loss();
        }
        if (stopper.update(watched) && epoch + 1 < s.epochs) {
            out.stopped_early = true;
            break;
        }
    }
    return out;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    ntm_settings s;
    const auto job = training_job::parse(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (job.help()) {
        print_help(mpi, usage_head, usage_tail);
        return 0;
    }
    if (job.predicting())
        return predict(job, s, mpi);
    if (!s.debug_gradients.empty())
        return debug_gradients(job, s);
    if (s.num_topics == 0)
        throw usage_error("num_topics is required");

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    metrics_log metrics(mpi.rank() == 0);
    auto r = train(job, s, mpi, progress, metrics);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (mpi.rank() == 0) {
        if (job.has(channel::test)) {
            const auto t = evaluate_channel(job, channel::test, 0, r.model, s.mini_batch_size);
            metrics.report("test", "total_loss", t.total_loss());
            metrics.report("test", "perplexity", t.perplexity());
        }
        const auto dir = job.model_dir();
        const auto path = write_model_file(dir, "model.json", model_json(r.model, r.epochs_run, r.records));
        metrics.write(dir);
        std::string out;
        using pipemode::tools::append_field;
        using pipemode::tools::format;
        append_field(out, "records", std::to_string(r.records));
        append_field(out, "epochs", std::to_string(r.epochs_run) + (r.stopped_early ? " (stopped early)" : ""));
        append_field(out, "ranks", std::to_string(mpi.size()));
        append_field(out, "batches", std::to_string(r.batches));
        append_field(out, "bytes", std::to_string(r.bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "records/s", format("%.0f", seconds > 0 ? static_cast<double>(r.records * r.epochs_run) / seconds : 0.0));
        append_field(out, "model", path.string());
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
