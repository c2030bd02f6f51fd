// pipemode-lda: Latent Dirichlet Allocation by the method of moments (SageMaker's built-in LDA:
// spectral decomposition, not sampling) over word-count records read through the training
// library's channels (training.hpp): passes over the train channel sum the moments, MPI ranks
// each read a shard and add their sums, and the small whitened third moment is decomposed by the
// robust tensor power method. Writes model.json (alpha, beta) and metrics.json (test:pwll); with
// --predict, writes each record's topic mixture as batch transform would (JSON Lines).
//
// Usage: `pipemode-lda --help` and docs/algorithms.md, "## LDA".
#include "../common/feature_rows.hpp"
#include "../common/mpi_context.hpp"
#include "../common/training.hpp"
#include "lda.hpp"

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
using namespace pipemode::examples::lda;
using pipemode::tools::parse_count;
using pipemode::tools::parse_real;

constexpr std::string_view program = "pipemode-lda";

constexpr std::string_view usage_head = R"(Usage: pipemode-lda [options] SOURCE...
       pipemode-lda [options] --pipe-channel NAME [--data-dir DIR]
       pipemode-lda --predict MODEL_FILE [--output FILE] SOURCE...

Latent Dirichlet Allocation by the method of moments (spectral decomposition, as SageMaker's
built-in LDA) over RecordIO-protobuf records whose feature "values" holds a document's word
counts (sparse: keys are word ids; or dense: one count a vocabulary word). A SOURCE is a local
file or FIFO, an http(s):// URL, an S3 object s3://BUCKET/KEY or prefix s3://BUCKET/PREFIX/.
Passes over the train channel: the first and second moments (and, above --dense_limit words,
power_iterations + 1 more for the randomized range finder), then the whitened third moment; under mpirun each
rank reads its shard and the ranks add their sums. Writes MODEL_DIR/model.json and
MODEL_DIR/metrics.json; with a test channel prints #metric test:pwll=... (per-word
log-likelihood, each document's topic mixture inferred with the topics fixed). --predict writes
{"topic_mixture": [...]} for each record.

Hyperparameters (SageMaker's names; --name value, --name=value, or in hyperparameters.json):
  --num_topics K                 topics (required)
  --feature_dim V                vocabulary size (default: from the first record)
  --mini_batch_size N            documents a batch read, per rank (default 1000)
  --alpha0 A                     the Dirichlet prior's total concentration (default 1.0)
  --max_restarts R               random starts of the tensor power method a topic (default 10)
  --max_iterations I             power iterations a start (default 1000)
  --tol T                        the power iteration stops when theta moves less (default 1e-8)
Not SageMaker's:
  --seed S                       seed of the test matrix and the power method's starts (default 1)
  --dense_limit V                form the second moment densely up to V words (default 2000);
                                 above, multiply it by a random V x (K + 10) matrix instead
  --oversampling P               the test matrix's columns beyond K (default 10)
  --power_iterations Q           the range finder's power iterations, a pass each (default 1)
  --moments_file FILE            also write the accumulated moments (M1, M2 or its products,
                                 W, the whitened third moment) as JSON, for checks
Dashes may replace underscores (--num-topics).

)";

constexpr std::string_view usage_tail = R"(
Exit status: 0 on success, 1 when the data cannot be read or decoded, 2 on a usage error.
)";

struct lda_settings {
    std::size_t num_topics = 0;
    std::size_t feature_dim = 0;
    std::size_t mini_batch_size = 1000;
    double alpha0 = 1.0;
    std::size_t max_restarts = 10;
    std::size_t max_iterations = 1000;
    double tol = 1e-8;
    std::uint64_t seed = 1;
    std::size_t dense_limit = default_dense_limit;
    std::size_t oversampling = default_oversampling;
    std::size_t power_iterations = default_power_iterations;
    std::string moments_file;
};

std::size_t positive(const std::string& name, std::string_view v)
{
    const auto n = parse_count(name, v);
    if (n == 0)
        throw usage_error(name + " must be at least 1");
    return n;
}

double positive_real(const std::string& name, std::string_view v)
{
    const double x = parse_real(name, v);
    if (!(x > 0))
        throw usage_error(name + " must be positive");
    return x;
}

bool set_hyperparameter(lda_settings& s, const std::string& name, std::string_view v)
{
    if (name == "num_topics")
        s.num_topics = positive(name, v);
    else if (name == "feature_dim")
        s.feature_dim = parse_count(name, v);
    else if (name == "mini_batch_size")
        s.mini_batch_size = positive(name, v);
    else if (name == "alpha0")
        s.alpha0 = positive_real(name, v);
    else if (name == "max_restarts")
        s.max_restarts = positive(name, v);
    else if (name == "max_iterations")
        s.max_iterations = positive(name, v);
    else if (name == "tol")
        s.tol = positive_real(name, v);
    else if (name == "seed")
        s.seed = parse_count(name, v);
    else if (name == "dense_limit")
        s.dense_limit = parse_count(name, v);
    else if (name == "oversampling")
        s.oversampling = parse_count(name, v);
    else if (name == "power_iterations")
        s.power_iterations = parse_count(name, v);
    else if (name == "moments_file")
        s.moments_file = v;
    else
        return false;
    return true;
}

/// The documents of a batch as word counts: a sparse row's keys and values, or a dense row's
/// nonzero entries.
class document_rows {
public:
    document_rows(const pipemode::batch& b, std::size_t vocabulary) : rows_(b, "values", vocabulary), v_(vocabulary) {}

    std::size_t size() const noexcept { return rows_.size(); }

    document operator()(std::size_t i)
    {
        if (rows_.sparse()) {
            const auto keys = rows_.sparse_row(i, counts_);
            return {keys, counts_};
        }
        dense_.resize(v_);
        rows_.dense_row(i, dense_);
        words_.clear();
        counts_.clear();
        for (std::size_t w = 0; w < v_; ++w)
            if (dense_[w] != 0) {
                words_.push_back(w);
                counts_.push_back(dense_[w]);
            }
        return {words_, counts_};
    }

private:
    feature_rows rows_;
    std::size_t v_;
    std::vector<double> dense_, counts_;
    std::vector<std::uint64_t> words_;
};

/// One pass over this rank's shard of the train channel, each document given to `add`. Returns
/// the records and bytes it read on this rank. `vocabulary` is 0 on the first pass, which sets it
/// (agreed between the ranks) and calls `start(V)` before the first document.
template <class Start, class Add>
std::pair<std::uint64_t, std::uint64_t> pass(const training_job& job, const mpi_context& mpi, std::uint64_t number,
                                             std::size_t batch_size, std::size_t& vocabulary, progress_line& progress,
                                             const char* label, Start&& start, Add&& add)
{
    progress.start_pass(label);
    channel_reader reader(job, channel::train, number, mpi, batch_size);
    std::optional<pipemode::batch> first = reader.next();
    if (vocabulary == 0)
        vocabulary = agree_on_dimension(0, first ? feature_rows::dimension_of(*first, "values") : 0, mpi);
    start(vocabulary);
    std::uint64_t records = 0;
    for (std::optional<pipemode::batch> b = std::move(first); b; b = reader.next()) {
        document_rows docs(*b, vocabulary);
        for (std::size_t i = 0; i < docs.size(); ++i)
            add(docs(i));
        records += docs.size();
        progress.update(records * mpi.size(), reader.bytes() * mpi.size());
    }
    const auto all_records = mpi.sum(records);
    const auto all_bytes = mpi.sum(reader.bytes());
    progress.end_epoch(all_records, all_bytes);
    return {all_records, all_bytes};
}

/// The per-word log-likelihood of a channel (its words' log-likelihood over its words), read
/// whole by the calling rank.
double per_word_log_likelihood(const training_job& job, channel c, const lda_model& m, std::size_t batch_size,
                               const mpi_context& mpi)
{
    const inference inf;
    std::vector<double> theta;
    double ll = 0, words = 0;
    channel_reader reader(job, c, 0, mpi, batch_size);
    while (auto b = reader.next()) {
        document_rows docs(*b, m.vocabulary);
        for (std::size_t i = 0; i < docs.size(); ++i) {
            const document d = docs(i);
            if (d.length() <= 0)
                continue;
            ll += inf.log_likelihood(m, d, theta);
            words += d.length();
        }
    }
    return words > 0 ? ll / words : 0.0;
}

std::string model_json(const lda_model& m, const lda_settings& s, const Eigen::VectorXd& lambdas, std::uint64_t documents,
                       std::size_t passes)
{
    std::string out = "{\n";
    out += "  \"algorithm\": \"lda\",\n  \"format_version\": 1,\n";
    out += "  \"num_topics\": " + std::to_string(m.num_topics) + ",\n";
    out += "  \"feature_dim\": " + std::to_string(m.vocabulary) + ",\n";
    out += "  \"alpha0\": ";
    append_json_number(out, s.alpha0);
    out += ",\n  \"documents\": " + std::to_string(documents) + ",\n";
    out += "  \"passes\": " + std::to_string(passes) + ",\n";
    out += "  \"tensor_eigenvalues\": ";
    append_json_array(out, std::span<const double>(lambdas.data(), static_cast<std::size_t>(lambdas.size())));
    out += ",\n  \"alpha\": ";
    append_json_array(out, m.alpha);
    out += ",\n  \"beta\": ";
    append_json_matrix(out, m.beta, m.vocabulary);
    out += "\n}\n";
    return out;
}

lda_model read_model(const std::filesystem::path& path)
{
    const auto f = model_file::read(path);
    f.expect("lda", 1);
    lda_model m;
    m.num_topics = f.count("num_topics");
    m.vocabulary = f.count("feature_dim");
    m.alpha = f.numbers("alpha");
    m.beta = f.matrix("beta", m.vocabulary);
    if (m.alpha.size() != m.num_topics || m.beta.size() != m.num_topics * m.vocabulary)
        throw std::runtime_error(path.string() + ": alpha and beta do not have num_topics rows");
    return m;
}

void append_matrix(std::string& out, const char* name, const row_matrix& m)
{
    out += ",\n  \"";
    out += name;
    out += "\": ";
    append_json_matrix(out, std::span<const double>(m.data(), static_cast<std::size_t>(m.size())),
                       static_cast<std::size_t>(m.cols()));
}

int predict(const training_job& job, const lda_settings& s, const mpi_context& mpi)
{
    const lda_model m = read_model(job.predict_model());
    const inference inf;
    std::vector<double> theta;
    run_prediction(job, mpi, s.mini_batch_size, [&](const pipemode::batch& b, std::vector<std::string>& rows) {
        document_rows docs(b, m.vocabulary);
        for (std::size_t i = 0; i < docs.size(); ++i) {
            inf.mixture(m, docs(i), theta);
            std::string line = "{\"topic_mixture\": ";
            append_json_array(line, theta);
            line += '}';
            rows.push_back(std::move(line));
        }
    });
    return 0;
}

int run(int argc, char** argv, const mpi_context& mpi)
{
    lda_settings s;
    const auto job = training_job::parse(
        argc, argv, [&](const std::string& name, std::string_view value) { return set_hyperparameter(s, name, value); },
        program);
    if (job.help()) {
        print_help(mpi, usage_head, usage_tail);
        return 0;
    }
    if (job.predicting())
        return predict(job, s, mpi);
    if (s.num_topics == 0)
        throw usage_error("num_topics is required");

    const auto start = std::chrono::steady_clock::now();
    progress_line progress(mpi.rank() == 0 && !job.quiet(), std::string(program));
    const std::size_t k = s.num_topics;
    std::size_t v = s.feature_dim;
    std::uint64_t number = 0, bytes = 0, documents = 0;

    // Pass 1: M1 and M2 (dense), or M1 and M2 times the random test matrix.
    std::optional<moment_sums> first;
    std::optional<row_matrix> test;
    auto [records, pass_bytes] = pass(
        job, mpi, number++, s.mini_batch_size, v, progress, "pass 1 (M1, M2)",
        [&](std::size_t vocabulary) {
            if (vocabulary < k)
                throw usage_error("num_topics = " + std::to_string(k) + " is larger than the vocabulary ("
                                  + std::to_string(vocabulary) + " words)");
            if (vocabulary <= s.dense_limit) {
                first.emplace(vocabulary);
            }
            else {
                test = test_matrix(vocabulary, std::min(vocabulary, k + s.oversampling), s.seed);
                first.emplace(vocabulary, *test);
            }
        },
        [&](const document& d) { first->add(d); });
    documents = records;
    bytes += pass_bytes;
    mpi.sum(first->sums());
    const Eigen::VectorXd m1 = first->first_moment();
    const row_matrix m2 = first->second_moment(s.alpha0);

    // Randomized only: M2 times an orthonormal basis Q of the last product, power_iterations + 1
    // passes; the last one's Q^T M2 Q is decomposed.
    whitening wh;
    std::optional<row_matrix> basis, m2_basis;
    if (first->dense()) {
        wh = whiten_dense(m2, k);
    }
    else {
        basis = orthonormal_basis(m2);
        for (std::size_t it = 0; it <= s.power_iterations; ++it) {
            if (it > 0)
                basis = orthonormal_basis(*m2_basis);
            std::optional<moment_sums> product;
            const std::string label = "pass " + std::to_string(number + 1) + " (M2 Q)";
            auto [r2, b2] = pass(
                job, mpi, number++, s.mini_batch_size, v, progress, label.c_str(),
                [&](std::size_t) { product.emplace(v, *basis); }, [&](const document& d) { product->add(d); });
            bytes += b2;
            mpi.sum(product->sums());
            m2_basis = product->second_moment(s.alpha0);
        }
        wh = whiten_projected(*basis, *m2_basis, k);
    }

    // Last pass: the whitened third moment.
    std::optional<third_moment_sums> third;
    auto [r3, b3] = pass(
        job, mpi, number++, s.mini_batch_size, v, progress, "last pass (T)",
        [&](std::size_t) { third.emplace(wh.w); }, [&](const document& d) { third->add(d); });
    bytes += b3;
    mpi.sum(third->sums());
    const std::vector<double> t = third->third_moment(m1, s.alpha0);
    const auto pairs = tensor_power_method(t, k, s.max_restarts, s.max_iterations, s.tol, s.seed);
    const lda_model model = recover(pairs, wh, s.alpha0);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (mpi.rank() == 0) {
        metrics_log metrics(true);
        for (const auto c : {channel::validation, channel::test})
            if (job.has(c))
                metrics.report(to_string(c), "pwll", per_word_log_likelihood(job, c, model, s.mini_batch_size, mpi));
        const auto dir = job.model_dir();
        const auto path = write_model_file(dir, "model.json", model_json(model, s, pairs.values, documents, number));
        metrics.write(dir);
        if (!s.moments_file.empty()) {
            std::string out = "{\n  \"documents\": ";
            const double counts[] = {first->documents(1), first->documents(2), first->documents(3)};
            append_json_array(out, counts);
            out += ",\n  \"m1\": ";
            append_json_array(out, std::span<const double>(m1.data(), v));
            if (first->dense()) {
                append_matrix(out, "m2", m2);
            }
            else {
                append_matrix(out, "test_matrix", *test);
                append_matrix(out, "m2_test", m2);
                append_matrix(out, "basis", *basis);
                append_matrix(out, "m2_basis", *m2_basis);
            }
            append_matrix(out, "whitening", wh.w);
            out += ",\n  \"t\": ";
            append_json_array(out, t);
            out += "\n}\n";
            const std::filesystem::path p(s.moments_file);
            write_model_file(p.has_parent_path() ? p.parent_path() : std::filesystem::path("."), p.filename().string(),
                             out);
        }
        std::string out;
        using pipemode::tools::append_field;
        using pipemode::tools::format;
        append_field(out, "documents", std::to_string(documents));
        append_field(out, "passes", std::to_string(number));
        append_field(out, "second moment", first->dense() ? "dense" : "randomized");
        append_field(out, "ranks", std::to_string(mpi.size()));
        append_field(out, "bytes", std::to_string(bytes));
        append_field(out, "seconds", format("%.3f", seconds));
        append_field(out, "MB/s", format("%.1f", seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0.0));
        append_field(out, "model", path.string());
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run_trainer(argc, argv, program, run); }
