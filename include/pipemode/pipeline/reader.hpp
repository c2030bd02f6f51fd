// pipemode: the reader the training loop iterates.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/pipeline/stats.hpp>

#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipemode {

namespace detail {
struct reader_core;
} // namespace detail

/// Streams a data set through source -> decoder -> batcher on a background thread and hands
/// the training loop decoded batches.
///
/// The reader starts a network thread running an Asio `io_context` (plus a one-thread pool for
/// blocking file reads) as soon as it is constructed; decoding begins at once, so the first
/// batch is ready as early as possible. At most `options.prefetch_batches` decoded batches
/// wait in a bounded channel (`bounded_channel`), and the decoded bytes held at once stay within
/// `options.memory_budget`. Batch storage is recycled: a batch the training loop lets go
/// (the iterator moving on, or a batch from `next()` being destroyed) is filled again, and
/// its memory comes from `options.batch_memory`.
///
/// Errors reach the consumer as exceptions, after every batch decoded before them: a
/// `data_error` naming source, byte offset and record index for bad data, or the I/O error of
/// a source. The end of the data set is reported only after every record has been delivered,
/// so a loop never sees a silently short epoch.
///
/// Thread safety: construct, iterate and destroy from one thread (the training loop's). The
/// stats may be read from any thread.
///
/// Example:
/// \code
/// pipemode::reader reader({"train/part-0.rec", "train/part-1.rec"}, {.batch_size = 512});
/// for (auto& batch : reader) {
///     const auto& x = batch.feature("values");   // dense float32, batch.size() x x.row_size()
///     train(x.values<float>(), x.row_size());
/// }
/// \endcode
///
/// Destroying the reader (or breaking out of the loop and letting it go) cancels everything in
/// flight and joins its thread.
class reader {
public:
    /// Reads the sources `provider` hands out, in the format `options.format` names.
    /// Throws `std::invalid_argument` when the options cannot work (with a sentence saying what to change).
    explicit reader(std::unique_ptr<source_provider> provider, reader_options options = {});

    /// Reads the sources `provider` hands out in a format of the caller's own: `framing` finds
    /// the records in each source's bytes and `parser` turns each record into a row. See
    /// docs/stages.md for what each must guarantee, and examples/libsvm/ for a whole example.
    ///
    /// The pipeline is compiled for this pair: no virtual call per record or per chunk. It is
    /// the same pipeline the `data_format` shortcuts use (they are this constructor with the
    /// library's own pairs), so batching, bad-record policies, the record-level shuffle,
    /// resume positions, the memory budget and the stats behave exactly as for them.
    ///
    /// `options.format`, `csv_label_size` and `attribute_names` are ignored: the pair decides.
    /// `options.max_record_size` is still what the memory budget reserves for a record that
    /// straddles reads, so give `framing` the same limit (for example
    /// `line_decoder(line_options{.max_record_size = options.max_record_size})`).
    /// `framing` is reset at the start of each source; `parser` sees every record of every
    /// source, in order, on the reader's thread.
    ///
    /// Throws `std::invalid_argument` when the options cannot work.
    ///
    /// \code
    /// pipemode::reader r(pipemode::local_files({"train.svm"}), pipemode::line_decoder{}, my_parser{},
    ///                    {.batch_size = 256, .bad_records = pipemode::bad_record_policy::skip});
    /// \endcode
    template <record_decoder Framing, record_parser Parser>
    reader(std::unique_ptr<source_provider> provider, Framing framing, Parser parser, reader_options options = {});

    /// Reads local files and FIFOs, in the given order.
    explicit reader(std::vector<std::string> paths, reader_options options = {});

    reader(reader&&) noexcept;
    reader& operator=(reader&&) noexcept;
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;

    /// Cancels what is in flight and joins the reader's thread.
    ~reader();

    /// The next batch, waiting for it if needed; an empty optional at the end of the data.
    /// Rethrows the pipeline's error once the batches before it have been delivered.
    std::optional<batch> next();

    /// Like `next()`, but never waits: returns true and sets `out` when a batch was ready.
    /// Returns false when none is ready yet or the data has ended (see `done()`).
    bool try_next(batch& out);

    /// Whether the end of the data has been reached by the consumer.
    bool done() const noexcept;

    /// Where the consumer stands: the epoch, item and record of the data set's plan just after
    /// the last batch handed out by `next()`, `try_next()` or the iterator; empty before the
    /// first. Reading that position again (a provider planned from it) continues with the
    /// record after that batch's last one. See `pipeline/plan.hpp` and docs/data-sets.md.
    std::optional<read_position> position() const noexcept;

    /// A snapshot of the counters.
    reader_stats stats() const noexcept;

    /// The options in force.
    const reader_options& options() const noexcept;

    /// Input iterator over the remaining batches; `*it` is the current batch, which stays valid
    /// until the iterator is incremented.
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = batch;
        using difference_type = std::ptrdiff_t;
        using reference = batch&;

        iterator() = default;
        batch& operator*() const noexcept { return *current_; }
        batch* operator->() const noexcept { return current_; }
        iterator& operator++();
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return it.current_ == nullptr; }

    private:
        friend class reader;
        explicit iterator(reader* r) : reader_(r) {}
        reader* reader_ = nullptr;
        batch* current_ = nullptr;
    };

    /// Starts (or continues) iterating: waits for the next batch.
    iterator begin();

    /// The end of the data.
    std::default_sentinel_t end() const noexcept { return {}; }

private:
    // The one way a reader starts, whichever constructor was called: checks the options,
    // makes the core and starts the pipeline for this pair on the reader's thread.
    template <record_decoder Framing, record_parser Parser>
    void start(std::unique_ptr<source_provider> provider, reader_options options, Framing framing, Parser parser);
    detail::reader_core& make_core(std::unique_ptr<source_provider> provider, reader_options options);
    void launch(asio::awaitable<void> pipeline);

    bool advance();
    void release_current() noexcept;

    std::unique_ptr<detail::reader_core> core_;
};

/// A source provider over local paths: regular files are read with `file_source`, FIFOs with
/// `fifo_source`, in the order given.
std::unique_ptr<source_provider> local_files(std::vector<std::string> paths, std::size_t read_size = 4 * mib);

} // namespace pipemode

#include <pipemode/pipeline/impl/reader.hpp>
