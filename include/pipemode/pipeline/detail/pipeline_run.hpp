// pipemode: the one pipeline every composition runs: the provider's sources, framing, the
// bad-record policies and the record-level shuffle, then either parsing into batches for a
// batch sink (with the decode workers) or a record sink. Private: use pipeline/pipeline.hpp
// or pipemode::reader.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/concurrency/fork_join.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/core/read_position.hpp>
#include <pipemode/pipeline/plan.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/pipeline/stats.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace pipemode::detail {

/// The decode workers `options` ask for, with 0 resolved from the cores.
inline std::size_t effective_decode_workers(const reader_options& options) noexcept
{
    if (options.decode_workers != 0)
        return options.decode_workers;
    return std::clamp<std::size_t>(std::thread::hardware_concurrency() / 2, 1, 16);
}

/// Idle batches a pipeline's pool keeps. There are at most prefetch_batches + 3 batches in
/// circulation behind a reader (its channel's, the consumer's, a full one waiting for room and
/// the one being built), and the builder always holds one, so prefetch_batches + 2 idle ones
/// is never too few. Decode workers add two each: the one a worker's builder holds and the
/// full one it made, waiting its turn.
inline std::size_t pipeline_pool_size(const reader_options& options) noexcept
{
    const std::size_t workers = effective_decode_workers(options);
    return options.prefetch_batches + 2 + (workers > 1 ? 2 * workers : 0);
}

/// What a running pipeline reads and counts, whoever runs it: the reader (from its core) or
/// `run_pipeline` (from its own frame). Every pointer outlives the run.
struct pipeline_context {
    const reader_options* options = nullptr;
    stats_counters* stats = nullptr;
    source_provider* provider = nullptr;
    asio::any_io_executor blocking_executor;  ///< for sources that block (local files)
    std::shared_ptr<batch_pool> pool;         ///< batch storage, recycled
};

/// Checks options no pipeline can work with, batches or not. `who` starts each message
/// ("pipemode::reader").
inline void check_pipeline_options(const reader_options& o, std::string_view who)
{
    auto fail = [who](const std::string& s) { throw std::invalid_argument(std::string(who) + ": " + s); };
    if (o.batch_size == 0)
        fail("batch_size is 0; set it to the number of records the training loop wants per step.");
    if (o.prefetch_batches == 0)
        fail("prefetch_batches is 0; at least one batch must be able to wait in the channel.");
    if (o.read_size == 0)
        fail("read_size is 0; reads of a few MiB are right for files and pipes.");
    if (o.max_record_size == 0 || o.max_record_size > (std::size_t{1} << 31))
        fail("max_record_size must be between 1 byte and 2 GiB.");
    if (o.shuffle_records != 0 && o.shuffle_buffer_bytes == 0)
        fail("shuffle_buffer_bytes is 0 while shuffle_records is set; give the shuffle block room (32 MiB is the default).");
}

/// Checks options a batch pipeline cannot work with and returns the bytes left for decoded
/// batches once `source_buffers` (what the provider's sources hold) and the largest record are
/// kept aside. `who` starts each message ("pipemode::reader").
inline std::size_t checked_batch_budget(const reader_options& o, std::size_t source_buffers,
                                        std::string_view who = "pipemode::reader")
{
    check_pipeline_options(o, who);
    auto fail = [who](const std::string& s) { throw std::invalid_argument(std::string(who) + ": " + s); };
    const auto reserved = source_buffers + o.max_record_size + (o.shuffle_records != 0 ? o.shuffle_buffer_bytes + o.max_record_size : 0);
    if (o.memory_budget <= reserved)
        fail("memory_budget (" + std::to_string(o.memory_budget / mib) + " MiB) leaves nothing for decoded batches after "
             + "the source buffers (" + std::to_string(source_buffers / mib)
             + " MiB) and the largest record (max_record_size = " + std::to_string(o.max_record_size / mib)
             + " MiB); raise memory_budget or lower read_size (files), the stream window (HTTP/S3) or max_record_size.");
    return o.memory_budget - reserved;
}

/// Applies the bad-record policy to an error at `where`: throws under `fail`, otherwise
/// counts (and maybe reports) the skip.
inline void on_bad_record(const pipeline_context& ctx, const error_code& ec, data_location where, std::string_view detail)
{
    const reader_options& options = *ctx.options;
    if (options.bad_records == bad_record_policy::fail)
        throw data_error(ec, std::move(where), detail);
    const auto skipped = ctx.stats->bad_records.load(std::memory_order_relaxed);
    if (skipped >= options.max_bad_records)
        throw data_error(ec, std::move(where),
                         std::string(detail) + (detail.empty() ? "" : "; ") + "more than max_bad_records ("
                             + std::to_string(options.max_bad_records) + ") bad records");
    stats_counters::add(ctx.stats->bad_records, std::uint64_t{1});
    if (options.bad_records == bad_record_policy::skip_and_warn) {
        std::string msg = "pipemode: skipped a bad record: " + where.to_string() + ": " + ec.message();
        if (!detail.empty())
            msg.append(" (").append(detail).append(")");
        if (options.on_warning)
            options.on_warning(msg);
        else
            std::cerr << msg << '\n';
    }
}

/// How much of what a record stage holds `flush()` must pass on.
enum class flush_scope {
    whole_batches,  ///< only whole batches; the rest stay staged as they are
    before_read,    ///< only whole batches; the rest are copied, since the next read replaces the chunk
    all,            ///< everything (the end of a source or of a shuffle block)
};

// ----- record stages ------------------------------------------------------------------------
//
// What `pipeline_loop` hands each record it keeps to. A stage has:
//   bool put(const record_view& rec, std::string_view source, const read_position& after,
//            bool stable, std::span<const std::byte> chunk)
//       takes a record; true: call flush(flush_scope::whole_batches) before the record is let go.
//       `stable`: the payload stays put until the stage's next flush(flush_scope::all) (the shuffle
//       block's); `chunk` is the current read's bytes.
//   asio::awaitable<bool> flush(flush_scope how)  false: the consumer went away
//   bool pending() const                       records held that point into the current read
//   void start_epoch(std::uint64_t epoch)
//   asio::awaitable<bool> end_epoch()          the epoch's last records (false: consumer gone)
//   asio::awaitable<void> close()              the data has ended
// Two stages exist: `batch_stage` (parser, builder, decode workers, batch sink) and
// `record_sink_stage` (a record sink as it is). One loop serves both.

/// Parses records into batches and writes them to a batch sink, with the decode workers when
/// the parser parses independently.
template <record_parser Parser, batch_sink Sink>
class batch_stage {
public:
    batch_stage(const pipeline_context& ctx, Parser parser, Sink sink)
        : ctx_(ctx)
        , parser_(std::move(parser))
        , sink_(std::move(sink))
        , builder_(ctx.options->batch_size, ctx.pool)
    {
        if constexpr (parses_independently_v<Parser>) {
            const std::size_t workers = effective_decode_workers(*ctx.options);
            if (workers > 1) {
                workers_ = std::make_unique<fork_join_pool>(workers);
                worker_parsers_.assign(workers, parser_);
                for (std::size_t w = 0; w < workers; ++w)
                    worker_builders_.push_back(std::make_unique<batch_builder>(ctx.options->batch_size, ctx.pool));
                segments_.resize(workers);
            }
        }
    }

    bool put(const record_view& rec, std::string_view source, const read_position& after, bool stable,
             std::span<const std::byte> chunk)
    {
        if (workers_) {
            chunk_ = chunk;
            return stage(rec, source, after, stable);
        }
        full_ = emit(rec, source, after);
        return full_;
    }

    asio::awaitable<bool> flush(flush_scope how)
    {
        if (full_) {
            full_ = false;
            batch b = builder_.take(epoch_);
            if (!co_await sink_.async_write(std::move(b), last_))
                co_return false;
        }
        if (!run_.empty() && !co_await flush_run(how))
            co_return false;
        co_return true;
    }

    bool pending() const noexcept { return !run_.empty(); }

    void start_epoch(std::uint64_t epoch) noexcept { epoch_ = epoch; }

    /// Delivers the short last batch as the options say.
    asio::awaitable<bool> end_epoch()
    {
        if (builder_.empty())
            co_return true;
        if (ctx_.options->last_batch == last_batch::drop) {
            (void)builder_.take(epoch_);
            co_return true;
        }
        if (ctx_.options->last_batch == last_batch::pad)
            builder_.pad();
        batch last = builder_.take(epoch_);
        const bool wanted = co_await sink_.async_write(std::move(last), last_);
        co_return wanted;
    }

    asio::awaitable<void> close() { co_await sink_.async_close(); }

private:
    /// Parses one record into the batch being built; `after` is the consumer's position once it
    /// has this record. Returns true when the batch is full and must be delivered.
    bool emit(const record_view& rec, std::string_view source, const read_position& after)
    {
        last_ = after;
        error_code parse_ec;
        const bool full = parser_.parse(rec, source, builder_, parse_ec);
        if (parse_ec) {
            on_bad_record(ctx_, parse_ec, {std::string(source), rec.offset, rec.index}, parser_.error_detail());
            return false;
        }
        return full;
    }

    // ----- decode workers (reader_options::decode_workers > 1) -----------------------------
    //
    // The records of one read (or of one shuffle block's drawn order) are staged instead of
    // parsed one by one; flush_run() then cuts them into whole batches, has the workers fill
    // one batch each at once, and delivers those batches in order. A batch counts only if its
    // worker filled it exactly as the reader's own parser and builder would have: every record
    // accepted, one row each, the same schema. Otherwise that batch and the ones after it are
    // made again here, one record at a time, through emit() and its bad-record policy. So the
    // batches, their positions and the policies' effects are those of one worker.

    /// A record waiting for flush_run(), with its source and the position after it.
    struct staged_record {
        record_view rec;
        std::string_view source;
        read_position after;
        std::size_t spilled_at = npos;  ///< where in spill_ its payload was copied, or npos
    };

    /// One batch's worth of staged records, [first, last), and how its worker fared.
    struct segment {
        std::size_t first = 0;
        std::size_t last = 0;
        batch_builder* builder = nullptr;
        bool ok = false;
    };

    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

    /// Stages a record for the workers. `stable`: its payload stays put until flush_run()
    /// (the shuffle block's); otherwise it is kept where it is if it lies in the current
    /// chunk, and copied if it lies in the decoder's buffer (a record that straddled reads),
    /// which the decoder reuses for the next record. Returns true when a round's worth is
    /// staged (a batch for each worker and the one being filled): flushing then keeps what
    /// waits bounded, whatever the size of a read and of its records.
    bool stage(const record_view& rec, std::string_view source, const read_position& after, bool stable)
    {
        staged_record r{rec, source, after};
        const auto* p = rec.payload.data();
        const bool in_chunk = !chunk_.empty() && std::less_equal<>{}(chunk_.data(), p)
            && std::less_equal<>{}(p + rec.payload.size(), chunk_.data() + chunk_.size());
        if (!stable && !in_chunk && !rec.payload.empty()) {
            r.spilled_at = spill_.size();
            spill_.insert(spill_.end(), rec.payload.begin(), rec.payload.end());
        }
        run_.push_back(r);
        // The records that complete the batch being filled, then one batch per worker.
        const std::size_t b = ctx_.options->batch_size;
        return run_.size() >= (b - builder_.size()) % b + workers_->size() * b;
    }

    /// Parses and delivers staged records in order, as `how` says. Returns false when the
    /// consumer has gone away.
    ///
    /// Records left staged at a read's end are copied (less than a batch of them) rather than
    /// parsed one by one here, so the next round starts on a batch boundary and every batch
    /// of a long source but its first is filled by a worker.
    asio::awaitable<bool> flush_run(flush_scope how)
    {
        // spill_ does not grow while this runs: point the copied payloads at it.
        for (auto& r : run_)
            if (r.spilled_at != npos)
                r.rec.payload = std::span<const std::byte>(spill_.data() + r.spilled_at, r.rec.payload.size());
        const std::size_t n = run_.size();
        const std::size_t batch_size = ctx_.options->batch_size;
        std::size_t i = 0;
        std::size_t one_by_one_until = 0;  // after a batch the workers could not make
        while (i < n) {
            // The workers fill whole batches, from a batch boundary on, once the reader's parser
            // and builder have fixed what later records are checked against (docs:
            // parses_independently_v). Anything else is parsed here, record by record.
            const bool workers_may = i >= one_by_one_until && builder_.empty() && builder_.has_schema();
            if (workers_may && n - i < batch_size && how != flush_scope::all)
                break;  // less than a batch: it waits for more records
            if (!workers_may || n - i < batch_size) {
                if (emit(run_[i].rec, run_[i].source, run_[i].after)) {
                    batch b = builder_.take(epoch_);
                    if (!co_await sink_.async_write(std::move(b), last_))
                        co_return false;
                }
                ++i;
                continue;
            }
            const std::size_t count = parse_in_parallel(i);
            // Deliver the batches the workers made exactly, in order; stop at the first one
            // they did not.
            std::size_t k = 0;
            for (; k < count && segments_[k].ok && segments_[k].builder->same_schema(builder_); ++k) {
                const segment& seg = segments_[k];
                last_ = run_[seg.last - 1].after;
                stats_counters::add(ctx_.stats->worker_batches, std::uint64_t{1});
                batch b = seg.builder->take(epoch_);
                if (!co_await sink_.async_write(std::move(b), last_))
                    co_return false;
            }
            if (k == count) {
                i = segments_[count - 1].last;
                continue;
            }
            // Let the rest go (their storage returns to the pool) and make them again here.
            stats_counters::add(ctx_.stats->worker_batches_redone, std::uint64_t(count - k));
            for (std::size_t j = k; j < count; ++j) {
                batch_builder& b = *segments_[j].builder;
                if (!b.empty())
                    (void)b.take(epoch_);
                // A builder that fixed another schema than the reader's would refuse the next
                // records too: start it afresh.
                if (b.has_schema() && !b.same_schema(builder_))
                    worker_builders_[j] = std::make_unique<batch_builder>(batch_size, ctx_.pool);
            }
            i = segments_[k].first;
            one_by_one_until = segments_[k].last;
        }
        keep_staged_from(i, how == flush_scope::before_read);
        co_return true;
    }

    /// Drops the staged records before `first`, keeping the rest; `copy`: their payloads are
    /// copied too (into a fresh spill buffer), since what they point at is about to change.
    void keep_staged_from(std::size_t first, bool copy)
    {
        run_.erase(run_.begin(), run_.begin() + std::ptrdiff_t(first));
        if (!copy) {
            if (run_.empty())
                spill_.clear();
            return;
        }
        spare_spill_.clear();
        for (auto& r : run_) {
            r.spilled_at = spare_spill_.size();
            spare_spill_.insert(spare_spill_.end(), r.rec.payload.begin(), r.rec.payload.end());
        }
        spill_.swap(spare_spill_);
    }

    /// Has the workers parse one whole batch each, up to one per worker, from staged record
    /// `first` on, each into a builder of its own. Returns how many batches (segments) were
    /// started; `segments_` says how each went.
    std::size_t parse_in_parallel(std::size_t first)
    {
        const std::size_t batch_size = ctx_.options->batch_size;
        const std::size_t n = run_.size();
        std::size_t count = 0;
        for (std::size_t at = first; n - at >= batch_size && count < workers_->size(); at += batch_size, ++count) {
            segment& seg = segments_[count];
            seg.first = at;
            seg.last = at + batch_size;
            seg.builder = worker_builders_[count].get();
            seg.ok = false;
        }
        // Each worker starts from what the reader's parser has learnt (copy-assignment reuses
        // the copies' storage, so this allocates nothing once they have grown).
        for (auto& p : worker_parsers_)
            p = parser_;
        std::atomic<std::size_t> next{0};
        auto job = [&](std::size_t w) {
            Parser& parser = worker_parsers_[w];
            for (std::size_t k; (k = next.fetch_add(1, std::memory_order_relaxed)) < count;) {
                segment& seg = segments_[k];
                bool ok = true;
                for (std::size_t r = seg.first; r < seg.last && ok; ++r) {
                    error_code ec;
                    parser.parse(run_[r].rec, run_[r].source, *seg.builder, ec);
                    ok = !ec;
                }
                seg.ok = ok && seg.builder->size() == seg.last - seg.first;
            }
        };
        workers_->run(job);
        return count;
    }

    pipeline_context ctx_;
    Parser parser_;
    Sink sink_;
    batch_builder builder_;
    std::uint64_t epoch_ = 0;
    read_position last_{};  ///< after the last record added to the builder
    bool full_ = false;     ///< the builder is full: flush() delivers it

    // Decode workers; empty when the pipeline parses on its own thread.
    std::unique_ptr<fork_join_pool> workers_;  // behind a pointer: the stage moves, the pool does not
    std::vector<Parser> worker_parsers_;                         // one per thread
    std::vector<std::unique_ptr<batch_builder>> worker_builders_;  // one per segment of a round
    std::vector<segment> segments_;
    std::vector<staged_record> run_;   // records staged, waiting for flush_run()
    std::vector<std::byte> spill_;     // payloads of staged records copied out of reads
    std::vector<std::byte> spare_spill_;  // the next spill_, swapped in by keep_staged_from()
    std::span<const std::byte> chunk_; // the current read's bytes
};

/// Hands records to a record sink as they are: no parser, no batches.
template <record_sink Sink>
class record_sink_stage {
public:
    record_sink_stage(const pipeline_context& ctx, Sink sink) : ctx_(ctx), sink_(std::move(sink)) {}

    bool put(const record_view& rec, std::string_view source, const read_position& after, bool /*stable*/,
             std::span<const std::byte> /*chunk*/)
    {
        // Counted here: a record sink has no batches, and the stats say what went through.
        stats_counters::add(ctx_.stats->records, std::uint64_t{1});
        return sink_.put(rec, source, after);
    }

    asio::awaitable<bool> flush(flush_scope)
    {
        const bool wanted = co_await sink_.async_flush();
        co_return wanted;
    }
    bool pending() const noexcept { return false; }  // the sink copied or wrote what it keeps
    void start_epoch(std::uint64_t) noexcept {}
    asio::awaitable<bool> end_epoch() { co_return true; }
    asio::awaitable<void> close() { co_await sink_.async_close(); }

private:
    pipeline_context ctx_;
    Sink sink_;
};

/// One pass of a pipeline over a provider's sources: framing, the bad-record policies, the
/// optional record-level shuffle and the position after each record, handing every record it
/// keeps to `Stage` (`batch_stage` or `record_sink_stage`). The one loop every composition
/// runs, the reader's included.
///
/// Lives in the pipeline coroutine's frame, on the pipeline's thread.
template <record_decoder Framing, class Stage>
class pipeline_loop {
public:
    pipeline_loop(const pipeline_context& ctx, Framing decoder, Stage stage)
        : ctx_(ctx), decoder_(std::move(decoder)), stage_(std::move(stage))
    {
    }

    /// Every source of the provider, in order. Returns true when the data ended (the stage is
    /// then closed), false when the consumer went away; throws what the sources and the
    /// policies throw.
    asio::awaitable<bool> run()
    {
        const auto ex = co_await asio::this_coro::executor;
        const source_context sctx{ex, ctx_.blocking_executor ? ctx_.blocking_executor : ex};
        std::uint64_t sources = 0;
        while (auto planned = co_await ctx_.provider->async_next_planned(sctx)) {
            if (sources != 0 && planned->plan.epoch != epoch_ && !co_await end_epoch())
                co_return false;
            epoch_ = planned->plan.epoch;
            stage_.start_epoch(epoch_);
            ++sources;
            if (!co_await decode_source(*planned))
                co_return false;
        }
        // A data set with no sources at all is almost always a wrong path or prefix; an
        // empty epoch would hide that. (Empty sources among others are fine.)
        if (sources == 0)
            throw data_error(errc::empty_data_set, {ctx_.provider->describe(), 0, 0}, "no sources to read");
        if (!co_await end_epoch())
            co_return false;
        co_await stage_.close();
        co_return true;
    }

private:
    /// A record held in a shuffle block: where its bytes are in the block and where it came from.
    struct held_record {
        std::size_t begin = 0;
        std::size_t size = 0;
        std::uint32_t source = 0;  ///< index into `block_sources_`
        std::uint64_t offset = 0;
        std::uint64_t index = 0;
    };

    bool shuffling() const noexcept { return ctx_.options->shuffle_records != 0; }

    /// Decodes one planned source to its end (or to the end of its byte range). Returns false
    /// when the consumer has gone away.
    ///
    /// The per-record path is plain function calls; the coroutine suspends only for a chunk, a
    /// full batch, a full shuffle block or a record sink's flush.
    asio::awaitable<bool> decode_source(planned_source& planned)
    {
        any_byte_source& source = planned.source;
        const source_plan& plan = planned.plan;
        decoder_.reset(source.start_offset());
        if (plan.begin != 0)
            decoder_.resync();  // the source starts inside its object: find the first record start
        const std::string name(source.name());
        const auto past_end = [&](std::uint64_t offset) { return plan.end && offset >= *plan.end; };
        // A block to re-create starts with this source's first kept record: end the one in progress.
        if (shuffling() && plan.block_start && !co_await flush_block())
            co_return false;
        bool first_kept = true;

        std::uint64_t position = source.start_offset();  // offset of the next byte to arrive
        for (bool range_done = false; !range_done;) {
            // The staged records point into the chunk the next read replaces.
            if (stage_.pending() && !co_await stage_.flush(flush_scope::before_read))
                co_return false;
            auto [ec, chunk] = co_await source.async_next();
            read_ = chunk;
            if (ec == asio::error::eof) {
                error_code fec;
                decoder_.finish(fec);
                // A record cut off after the end of the range belongs to the next range's reader.
                if (fec && !past_end(decoder_.offset()))
                    on_bad_record(ctx_, fec, {name, decoder_.offset(), decoder_.records_started()},
                                  "the source ended inside a record");
                // The end of the input completes a last line without a newline, or a whole object.
                if (!fec && decoder_.has_record() && !past_end(decoder_.record().offset)) {
                    if (!co_await settle(take_record(name, plan, first_kept)))
                        co_return false;
                    decoder_.pop();
                }
                break;
            }
            if (ec) {
                const std::string detail = source.error_detail();
                throw data_error(ec, {name, position, decoder_.records_started()},
                                 detail.empty() ? "reading the source failed" : detail);
            }
            position += chunk.size();
            stats_counters::add(ctx_.stats->bytes, std::uint64_t(chunk.size()));

            // Take every record the chunk completes; the decoder stops after each one.
            while (!chunk.empty() || decoder_.has_record()) {
                error_code dec_ec;
                chunk = chunk.subspan(decoder_.put(chunk, dec_ec));
                if (dec_ec) {
                    if (past_end(decoder_.offset())) {
                        range_done = true;
                        break;
                    }
                    on_bad_record(ctx_, dec_ec, {name, decoder_.offset(), decoder_.records_started()}, {});
                    decoder_.resync();
                    continue;
                }
                if (!decoder_.has_record())
                    break;  // need more bytes
                if (past_end(decoder_.record().offset)) {
                    range_done = true;  // the rest of the source is the next range's
                    break;
                }
                // Settled before the record is let go: a record sink may write its bytes as they are.
                const step next = take_record(name, plan, first_kept);
                if (next != step::none && !co_await settle(next))
                    co_return false;
                decoder_.pop();
            }
        }
        if (stage_.pending() && !co_await stage_.flush(flush_scope::all))
            co_return false;
        read_ = {};
        // A re-created block ends where the interrupted run's block ended, at the latest.
        if (shuffling() && plan.block_end_after && recreating_ && !co_await flush_block())
            co_return false;
        stats_counters::add(ctx_.stats->sources, std::uint64_t{1});
        co_return true;
    }

    /// What must happen after a record was taken, before it is let go and the next one taken.
    enum class step { none, flush_stage, flush_block };

    /// Does what `take_record` asked for. Returns false when the consumer has gone away.
    asio::awaitable<bool> settle(step next)
    {
        bool wanted = true;
        if (next == step::flush_block)
            wanted = co_await flush_block();
        else if (next == step::flush_stage)
            wanted = co_await stage_.flush(flush_scope::whole_batches);
        co_return wanted;
    }

    /// Passes the decoder's waiting record on, unless the plan skips it; the caller pops it
    /// once the returned step is settled.
    step take_record(const std::string& name, const source_plan& plan, bool& first_kept)
    {
        const record_view rec = decoder_.record();
        // Records are numbered from the start of the source's range, bad ones included, so a
        // saved position means the same records on every run.
        if (rec.index < plan.skip)
            return step::none;
        if (shuffling())
            return hold(rec, name, plan, std::exchange(first_kept, false)) ? step::flush_block : step::none;
        return stage_.put(rec, name, {plan.epoch, plan.item, rec.index + 1, 0, plan.item}, false, read_)
            ? step::flush_stage
            : step::none;
    }

    /// Adds a record to the shuffle block. Returns true when the block is full and must be
    /// delivered.
    bool hold(const record_view& rec, std::string_view source, const source_plan& plan, bool first_kept)
    {
        if (block_.empty()) {
            block_start_ = {plan.epoch, plan.item, rec.index, 0, plan.item};
            block_seed_ = derive_seed(ctx_.options->shuffle_seed, plan.epoch,
                                      derive_seed(plan.object, plan.begin, rec.index));
            recreating_ = first_kept && plan.block_start;
            block_drop_ = recreating_ ? plan.block_drop : 0;
        }
        if (block_bytes_.capacity() == 0)
            block_bytes_.reserve(ctx_.options->shuffle_buffer_bytes + ctx_.options->max_record_size);
        if (block_sources_.empty() || block_sources_.back() != source)
            block_sources_.emplace_back(source);
        const std::size_t at = block_bytes_.size();
        block_bytes_.insert(block_bytes_.end(), rec.payload.begin(), rec.payload.end());
        block_.push_back({at, rec.payload.size(), static_cast<std::uint32_t>(block_sources_.size() - 1), rec.offset,
                          rec.index});
        block_end_ = {plan.epoch, plan.item, rec.index + 1, 0, plan.item};
        return block_.size() >= ctx_.options->shuffle_records
            || block_bytes_.size() >= ctx_.options->shuffle_buffer_bytes;
    }

    /// Delivers the shuffle block in its drawn order, less the records a resumed reader had
    /// delivered already.
    asio::awaitable<bool> flush_block()
    {
        if (block_.empty())
            co_return true;
        std::vector<std::uint32_t> order(block_.size());
        std::iota(order.begin(), order.end(), std::uint32_t{0});
        stable_shuffle(std::span(order), block_seed_);
        for (std::size_t k = block_drop_; k < order.size(); ++k) {
            const held_record& h = block_[order[k]];
            const record_view rec{std::span<const std::byte>(block_bytes_.data() + h.begin, h.size), h.offset, h.index};
            // Inside the block, a position names the block and how much of its order was
            // delivered; after its last record, simply the place after the block.
            read_position after = block_start_;
            after.in_block = k + 1;
            after.block_end_item = block_end_.item;
            if (k + 1 == order.size())
                after = block_end_;
            if (stage_.put(rec, block_sources_[h.source], after, true, {})
                && !co_await stage_.flush(flush_scope::whole_batches))
                co_return false;
        }
        if (stage_.pending() && !co_await stage_.flush(flush_scope::all))  // before the block's bytes are let go
            co_return false;
        block_.clear();
        block_bytes_.clear();
        block_sources_.clear();
        block_drop_ = 0;
        recreating_ = false;
        co_return true;
    }

    /// Ends an epoch: delivers the shuffle block, then the stage's last records (the short
    /// last batch, as the options say). Returns false when the consumer has gone away.
    asio::awaitable<bool> end_epoch()
    {
        if (!co_await flush_block())
            co_return false;
        const bool wanted = co_await stage_.end_epoch();
        co_return wanted;
    }

    pipeline_context ctx_;
    Framing decoder_;
    Stage stage_;
    std::uint64_t epoch_ = 0;
    std::span<const std::byte> read_;  // the current read's bytes

    // The record-shuffle block.
    std::vector<std::byte> block_bytes_;
    std::vector<held_record> block_;
    std::vector<std::string> block_sources_;
    read_position block_start_{};
    read_position block_end_{};
    std::uint64_t block_seed_ = 0;
    std::uint64_t block_drop_ = 0;
    bool recreating_ = false;  ///< the block re-creates one a resumed reader had partly delivered
};

/// The batch pipeline: `Framing` -> `Parser` -> batches -> `Sink`.
template <record_decoder Framing, record_parser Parser, batch_sink Sink>
using pipeline_run = pipeline_loop<Framing, batch_stage<Parser, Sink>>;

/// Runs the batch pipeline over `ctx`'s provider: true when the data ended (the sink closed),
/// false when the sink stopped it.
template <record_decoder Framing, record_parser Parser, batch_sink Sink>
asio::awaitable<bool> run_batch_pipeline(pipeline_context ctx, Framing framing, Parser parser, Sink sink)
{
    pipeline_run<Framing, Parser, Sink> run(ctx, std::move(framing),
                                            batch_stage<Parser, Sink>(ctx, std::move(parser), std::move(sink)));
    const bool ended = co_await run.run();
    co_return ended;
}

/// Runs the record pipeline over `ctx`'s provider: true when the data ended (the sink closed),
/// false when the sink stopped it.
template <record_decoder Framing, record_sink Sink>
asio::awaitable<bool> run_record_pipeline(pipeline_context ctx, Framing framing, Sink sink)
{
    pipeline_loop<Framing, record_sink_stage<Sink>> run(ctx, std::move(framing),
                                                        record_sink_stage<Sink>(ctx, std::move(sink)));
    const bool ended = co_await run.run();
    co_return ended;
}

} // namespace pipemode::detail
