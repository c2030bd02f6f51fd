// pipemode-rcf: Random Cut Forest over a RecordIO-protobuf data set read once through the
// training library's channels (training.hpp), as SageMaker's built-in RCF: each tree's reservoir
// sampled in one streaming pass (under MPI each rank samples its shard and the reservoirs are
// merged so that every record had the same chance), random cut trees built on the reservoirs,
// and test:f1 on a labelled CSV test channel. Writes model.json and metrics.json; with
// --predict, scores records with a trained model as batch transform would (JSON Lines).
//
// Usage: `pipemode-rcf --help` and docs/algorithms.md, "Random Cut Forest".
#include "../common/feature_rows.hpp"
#include "../common/metrics.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "rcf.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode::examples;
using namespace pipemode::examples::rcf;
using pipemode::tools::parse_count;

constexpr std::string_view program = "pipemode-rcf";

constexpr std::string_view usage_head = R"(Usage: pipemode-rcf [options] SOURCE... [--test CSV_FILE...]
       pipemode-rcf [options] --pipe-channel NAME [--data-dir DIR]
       pipemode-rcf --predict MODEL_FILE [--output FILE] SOURCE...

Random Cut Forest over RecordIO-protobuf records with a float32/float64/int32 feature "values"
(dense or sparse; labels are ignored), reading the data once: each tree keeps a uniform sample
of num_samples_per_tree records (bottom-k reservoir sampling), then grows random cut trees on
the samples. A SOURCE is a local file or FIFO, an http(s):// URL, an S3 object s3://BUCKET/KEY or
prefix s3://BUCKET/PREFIX/. Under mpirun each rank samples its shard of the SOURCEs and the
reservoirs are merged so that every record had the same chance. Writes MODEL_DIR/model.json (the
samples and the seed: the trees are rebuilt from them) and MODEL_DIR/metrics.json.

The test channel (--test, local CSV files or FIFOs: SageMaker's text/csv;label_size=1, the label
0 or 1 first, then the features) is scored with the forest; a record is predicted anomalous when
its score is more than 3 standard deviations above the mean of the test channel's scores, and
#metric test:f1=... (and accuracy, precision, recall, see eval_metrics) is printed.

--predict writes {"score": S} for each record (higher is more anomalous, about 1 for a typical
record); with shingle_size S > 1 the first S - 1 records have no whole shingle and get
{"score": null}.

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --feature_dim D                features a record (default: from the first record)
  --num_trees T                  trees (default 100; SageMaker allows 50-1000)
  --num_samples_per_tree K       points sampled for each tree (default 256, at most 2048)
  --eval_metrics LIST            test metrics besides f1: accuracy, precision_recall_fscore, or
                                 both as ["accuracy","precision_recall_fscore"] (the default)
Not SageMaker's:
  --shingle_size S               a point is S consecutive records of the stream, oldest first
                                 (a time series' shingle; default 1). Under MPI each rank
                                 shingles its own shard
  --seed S                       seed of the sampling keys and the cuts (default 1, below 2^53)
Dashes may replace underscores (--feature-dim).

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

struct rcf_settings {
    std::size_t feature_dim = 0;
    std::size_t num_trees = 100;
    std::size_t num_samples_per_tree = 256;
    bool accuracy = true;
    bool precision_recall_fscore = true;
    std::size_t shingle_size = 1;
    std::uint64_t seed = 1;
};

std::size_t positive(const std::string& name, std::string_view v)
{
    const auto n = parse_count(name, v);
    if (n == 0)
        throw usage_error(name + " must be at least 1");
    return n;
}

// eval_metrics as SageMaker writes it (a JSON list of strings) or as a comma-separated list.
void set_eval_metrics(rcf_settings& s, std::string_view v)
{
    s.accuracy = s.precision_recall_fscore = false;
    std::string word;
    auto flush = [&] {
        if (word == "accuracy")
            s.accuracy = true;
        else if (word == "precision_recall_fscore")
            s.precision_recall_fscore = true;
        else if (!word.empty())
            throw usage_error("eval_metrics are accuracy and precision_recall_fscore, not '" + word + "'");
        word.clear();
    };
    for (char c : v) {
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '_')
            word += c;
        else
            flush();
    }
    flush();
}

bool set_hyperparameter(rcf_settings& s, const std::string& name, std::string_view v)
{
    if (name == "feature_dim")
        s.feature_dim = parse_count(name, v);
    else if (name == "num_trees")
        s.num_trees = positive(name, v);
    else if (name == "num_samples_per_tree") {
        s.num_samples_per_tree = positive(name, v);
        // SageMaker's limit, kept because a tree is built by one recursion a level and its
        // depth can reach the sample's size (points spaced geometrically along a line).
        if (s.num_samples_per_tree > 2048)
            throw usage_error("num_samples_per_tree must be at most 2048, as in SageMaker");
    }
    else if (name == "eval_metrics")
        set_eval_metrics(s, v);
    else if (name == "shingle_size")
        s.shingle_size = positive(name, v);
    else if (name == "seed") {
        s.seed = parse_count(name, v);
        // model.json holds it as a JSON number, exact only below 2^53.
        if (s.seed >= (std::uint64_t{1} << 53))
            throw usage_error("seed must be below 2^53");
    }
    else
        return false;
    return true;
}

// --- model file --------------------------------------------------------------------------------

struct rcf_model {
    std::size_t feature_dim = 0;   // values a record
    std::size_t shingle_size = 1;  // records a point
    std::uint64_t seed = 1;
    std::uint64_t records = 0;     // points offered to the samplers, over all ranks
    forest_sample sample;

    std::size_t point_dim() const { return feature_dim * shingle_size; }
};

std::string model_json(const rcf_model& m, const random_cut_forest& forest)
{
    const auto& s = m.sample;
    std::string out = "{\n";
    out += "  \"algorithm\": \"random_cut_forest\",\n  \"format_version\": 1,\n";
    out += "  \"feature_dim\": " + std::to_string(m.feature_dim) + ",\n";
    out += "  \"shingle_size\": " + std::to_string(m.shingle_size) + ",\n";
    out += "  \"point_dim\": " + std::to_string(m.point_dim()) + ",\n";
    out += "  \"num_trees\": " + std::to_string(s.num_trees) + ",\n";
    out += "  \"num_samples_per_tree\": " + std::to_string(s.samples_per_tree) + ",\n";
    out += "  \"seed\": " + std::to_string(m.seed) + ",\n";
    out += "  \"records\": " + std::to_string(m.records) + ",\n";
    std::vector<double> sizes, points;
    for (std::size_t t = 0; t < s.num_trees; ++t) {
        sizes.push_back(static_cast<double>(s.size(t)));
        points.insert(points.end(), s.points[t].begin(), s.points[t].end());
    }
    out += "  \"sample_sizes\": ";
    append_json_array(out, sizes);
    out += ",\n  \"samples\": ";
    append_json_matrix(out, points, s.dim);
    // The trees, for inspection and the reference check only: prediction rebuilds them from
    // the samples and the seed. One row a node in preorder: tree, dimension (-1 for a leaf),
    // cut, mass.
    std::vector<double> nodes;
    for (std::size_t t = 0; t < forest.trees().size(); ++t)
        for (const auto& nd : forest.trees()[t].nodes()) {
            nodes.push_back(static_cast<double>(t));
            nodes.push_back(nd.dim);
            nodes.push_back(nd.dim < 0 ? 0.0 : nd.cut);
            nodes.push_back(nd.mass);
        }
    out += ",\n  \"trees\": ";
    append_json_matrix(out, nodes, 4);
    out += "\n}\n";
    return out;
}

rcf_model read_model(const std::filesystem::path& path)
{
    const auto f = model_file::read(path);
    f.expect("random_cut_forest", 1);
    rcf_model m;
    m.feature_dim = f.count("feature_dim");
    m.shingle_size = f.count("shingle_size");
    m.seed = f.count("seed");
    m.records = f.count("records");
    auto& s = m.sample;
    s.num_trees = f.count("num_trees");
    s.samples_per_tree = f.count("num_samples_per_tree");
    s.dim = m.point_dim();
    const auto sizes = f.numbers("sample_sizes");
    const auto points = f.matrix("samples", s.dim);
    if (sizes.size() != s.num_trees || s.dim == 0)
        throw std::runtime_error(path.string() + ": sample_sizes does not have num_trees entries");
    std::size_t at = 0;
    for (double n : sizes) {
        const auto rows = static_cast<std::size_t>(n);
        if (rows > s.samples_per_tree || (at + rows) * s.dim > points.size())
            throw std::runtime_error(path.string() + ": samples does not hold the rows sample_sizes counts");
        s.points.emplace_back(points.begin() + static_cast<std::ptrdiff_t>(at * s.dim),
                              points.begin() + static_cast<std::ptrdiff_t>((at + rows) * s.dim));
        s.keys.emplace_back(rows, 0.0);
        at += rows;
    }
    if (at * s.dim != points.size())
        throw std::runtime_error(path.string() + ": samples holds more rows than sample_sizes counts");
    return m;
}

// --- points from batches --------------------------------------------------------------------

/// Turns the records of batches into points: each record as it is, or the shingle it completes.
class point_maker {
public:
    point_maker(std::size_t feature_dim, std::size_t shingle_size)
        : d_(feature_dim), shingles_(feature_dim, shingle_size), record_(feature_dim),
          point_(feature_dim * shingle_size), shingled_(shingle_size > 1)
    {
    }

    /// Calls `each(i, point)` for record i of `b` when it makes a point (every record without
    /// shingling; from the shingle_size-th record of the stream on with it) and `none(i)` when
    /// it does not. `wanted()` says whether the point is needed (false: `skip(i)` is called and
    /// the point is not built, the sampler's fast path).
    template <class Wanted, class Each, class Skip, class None>
    void feed(const pipemode::batch& b, Wanted wanted, Each each, Skip skip, None none)
    {
        const feature_rows fr(b, "values", d_);
        for (std::size_t i = 0; i < fr.size(); ++i) {
            if (!shingled_) {
                if (!wanted()) {
                    skip(i);
                    continue;
                }
                fr.densify(i, point_, scratch_);
                each(i, std::span<const double>(point_));
                continue;
            }
            fr.densify(i, record_, scratch_);
            if (!shingles_.push(record_)) {
                none(i);
                continue;
            }
            if (!wanted()) {
                skip(i);
                continue;
            }
            shingles_.point(point_);
            each(i, std::span<const double>(point_));
        }
    }

private:
    std::size_t d_;
    shingler shingles_;
    std::vector<double> record_, point_, scratch_;
    bool shingled_;
};

// --- the test channel --------------------------------------------------------------------------

struct test_result {
    std::vector<double> scores, labels;  // per point (with shingling: per whole shingle)
    double threshold = 0;
    pipemode::examples::metrics::confusion counts;
};

/// Scores the test channel's CSV rows. With shingling, a shingle's label is 1 when any of its
/// records is labelled 1 (the anomaly is in the window the score describes).
test_result evaluate_test(const training_job& job, const rcf_model& m, const random_cut_forest& forest)
{
    test_result r;
    point_maker points(m.feature_dim, m.shingle_size);
    std::vector<double> recent;  // the labels of the last shingle_size records
    std::uint64_t seen = 0;
    std::vector<double> batch_points;
    auto reader = channel_reader::whole(job, channel::test, 0, 1000);
    while (const auto next = reader.next()) {
        const pipemode::batch& b = *next;
        const pipemode::column* c = b.find_label("values");
        if (c == nullptr || c->is_sparse() || c->type() != pipemode::tensor_type::float32)
            throw std::runtime_error("the test channel's records have no float32 label \"values\" (give "
                                     "--test-content-type text/csv;label_size=1 for SageMaker's CSV test channel)");
        auto label_of = [&](std::size_t i) {
            const double y = c->row<float>(i)[0];
            recent.resize(m.shingle_size, 0.0);
            recent[seen++ % m.shingle_size] = y;
            return *std::max_element(recent.begin(), recent.end());
        };
        // The batch's points scored together (random_cut_forest::score's tree-major order).
        batch_points.clear();
        points.feed(
            b, [] { return true; },
            [&](std::size_t i, std::span<const double> x) {
                r.labels.push_back(label_of(i));
                batch_points.insert(batch_points.end(), x.begin(), x.end());
            },
            [](std::size_t) {}, [&](std::size_t i) { label_of(i); });
        const std::size_t first = r.scores.size();
        r.scores.resize(first + batch_points.size() / m.point_dim());
        forest.score(batch_points, std::span<double>(r.scores).subspan(first));
    }
    r.threshold = three_sigma_threshold(r.scores);
    std::vector<double> predicted(r.scores.size());
    for (std::size_t i = 0; i < r.scores.size(); ++i)
        predicted[i] = r.scores[i] > r.threshold ? 1.0 : 0.0;
    r.counts = pipemode::examples::metrics::confusion::of(predicted, r.labels);
    return r;
}

// --- training and prediction -------------------------------------------------------------------

struct training_result {
    rcf_model model;
    std::uint64_t bytes = 0;  // over all ranks
};

training_result train(const training_job& job, const rcf_settings& s, const mpi_context& mpi, progress_line& progress)
{
    training_result out;
    progress.start_pass("sampling");
    channel_reader reader(job, channel::train, 0, mpi, 1000);
    std::optional<pipemode::batch> first = reader.next();
    const auto d = agree_on_dimension(s.feature_dim, first ? feature_rows::dimension_of(*first, "values") : 0, mpi);
    rcf_model& m = out.model;
    m.feature_dim = d;
    m.shingle_size = s.shingle_size;
    m.seed = s.seed;
    forest_sampler sampler(s.num_trees, s.num_samples_per_tree, m.point_dim(), sampler_seed(s.seed, mpi.rank()));
    point_maker points(d, s.shingle_size);
    std::uint64_t records = 0;
    for (;;) {
        std::optional<pipemode::batch> b = std::move(first);
        first.reset();
        if (!b)
            b = reader.next();
        if (!b)
            break;
        points.feed(
            *b, [&] { return sampler.wants_next(); },
            [&](std::size_t, std::span<const double> x) { sampler.add(x); }, [&](std::size_t) { sampler.skip(); },
            [](std::size_t) {});
        records += b->size() - b->padding();
        progress.update(records * mpi.size(), reader.bytes() * mpi.size());
    }
    // Every rank merges the same gathered reservoirs, so all hold the same sample.
    const auto mine = sampler.exported();
    const auto all = mpi.gather_all(mine);
    m.sample = forest_sampler::merge(all, s.num_trees, s.num_samples_per_tree, m.point_dim());
    m.records = mpi.sum(sampler.offered());
    out.bytes = mpi.sum(reader.bytes());
    progress.end_epoch(mpi.sum(records), out.bytes);
    return out;
}

int predict(const training_job& job, const mpi_context& mpi)
{
    const rcf_model m = read_model(job.predict_model());
    const random_cut_forest forest(m.sample, m.seed);
    point_maker points(m.feature_dim, m.shingle_size);
    std::vector<double> batch_points, scores;
    std::vector<std::size_t> scored_rows;  // the row of each point of the batch
    run_prediction(job, mpi, 1000, [&](const pipemode::batch& b, std::vector<std::string>& rows) {
        batch_points.clear();
        scored_rows.clear();
        points.feed(
            b, [] { return true; },
            [&](std::size_t, std::span<const double> x) {
                batch_points.insert(batch_points.end(), x.begin(), x.end());
                scored_rows.push_back(rows.size());
                rows.emplace_back();
            },
            [](std::size_t) {}, [&](std::size_t) { rows.emplace_back("{\"score\": null}"); });
        // Scored together, tree by tree (random_cut_forest::score), then written in order.
        scores.resize(scored_rows.size());
        forest.score(batch_points, scores);
        for (std::size_t k = 0; k < scores.size(); ++k) {
            std::string& line = rows[scored_rows[k]];
            line = "{\"score\": ";
            append_json_shortest(line, scores[k]);
            line += '}';
        }
    });
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    rcf_settings s;
    const auto job = training_job::parse(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (job.help()) {
        print_help(mpi, usage_head, usage_tail);
        return 0;
    }
    if (job.predicting())
        return predict(job, mpi);

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    auto r = train(job, s, mpi, progress);
    const random_cut_forest forest(r.model.sample, r.model.seed);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (mpi.rank() != 0)
        return 0;

    metrics_log metrics(true);
    std::optional<test_result> test;
    if (job.has(channel::test)) {
        test = evaluate_test(job, r.model, forest);
        if (s.accuracy)
            metrics.report("test", "accuracy", test->counts.accuracy());
        if (s.precision_recall_fscore) {
            metrics.report("test", "precision", test->counts.precision());
            metrics.report("test", "recall", test->counts.recall());
        }
        // The objective metric SageMaker's tuning uses; printed whatever eval_metrics says.
        metrics.report("test", "f1", test->counts.f_beta(1.0));
    }
    const auto dir = job.model_dir();
    const auto path = write_model_file(dir, "model.json", model_json(r.model, forest));
    metrics.write(dir);

    using pipemode::tools::append_field;
    using pipemode::tools::format;
    std::string out;
    append_field(out, "records", std::to_string(r.model.records));
    append_field(out, "ranks", std::to_string(mpi.size()));
    append_field(out, "trees", format("%zu x %zu samples of %zu values", r.model.sample.num_trees,
                                      r.model.sample.samples_per_tree, r.model.point_dim()));
    append_field(out, "bytes", std::to_string(r.bytes));
    append_field(out, "seconds", format("%.3f", seconds));
    append_field(out, "records/s", format("%.0f", seconds > 0 ? static_cast<double>(r.model.records) / seconds : 0.0));
    append_field(out, "MB/s", format("%.1f", seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / seconds : 0.0));
    if (test) {
        append_field(out, "test points", std::to_string(test->scores.size()));
        append_field(out, "test threshold", format("%.6g (mean + 3 sd of the test scores)", test->threshold));
    }
    append_field(out, "model", path.string());
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
