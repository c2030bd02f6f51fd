// pipemode: definitions of reader.hpp. Included at the bottom of reader.hpp only.
#pragma once

#include <pipemode/concurrency/bounded_channel.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/framing/grouped_record.hpp>
#include <pipemode/framing/lines.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/framing/tfrecord.hpp>
#include <pipemode/framing/whole_object.hpp>
#include <pipemode/parsers/csv.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/raw_record.hpp>
#include <pipemode/pipeline/plan.hpp>
#include <pipemode/sources/fifo_source.hpp>
#include <pipemode/sources/file_source.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>

#include <sys/stat.h>

#include <chrono>
#include <iostream>
#include <numeric>
#include <stdexcept>
#include <thread>

namespace pipemode {
namespace detail {

/// A batch in the channel, with the bytes the memory budget charged for it (the consumer
/// releases them when it is done with the batch).
struct queued_batch {
    pipemode::batch batch;
    std::size_t bytes = 0;
    read_position after{};  ///< the position once the consumer has this batch
};

/// Everything a reader shares between the training loop's thread and its network thread.
///
/// Ownership: `reader` owns the core; the pipeline coroutine gets a plain pointer to it, which
/// is safe because the reader joins the network thread before the core is destroyed.
struct reader_core {
    reader_core(std::unique_ptr<source_provider> p, reader_options o, std::size_t batch_budget_bytes)
        : options(std::move(o))
        , batch_budget(batch_budget_bytes)
        , provider(std::move(p))
    {
    }

    const reader_options options;
    const std::size_t batch_budget;  ///< bytes of decoded batches allowed at once
    // Batch storage in circulation: the builder takes from it, batches give back to it from
    // whichever thread lets them go. There are at most prefetch_batches + 3 (the channel's, the
    // consumer's, a full one waiting for room and the one being built), and the builder
    // always holds one, so prefetch_batches + 2 idle ones is never too few.
    const std::shared_ptr<batch_pool> pool = batch_pool::make(options.prefetch_batches + 2, options.batch_memory);
    stats_counters stats;

    // Decoded batches on their way to the training loop: at most `prefetch_batches` wait in
    // it, and those plus the one the consumer holds stay within `batch_budget` bytes. The
    // network thread sends (deliver()), the training loop's thread receives and releases.
    bounded_channel<queued_batch> channel{{.items = options.prefetch_batches, .bytes = batch_budget}};

    // Consumer side.
    batch current;
    std::size_t current_bytes = 0;  ///< budget held by `current` (or by the batch last returned by next())
    std::optional<read_position> position;  ///< after the last batch handed to the consumer
    bool done = false;

    // Declared last so they are destroyed first: the io_context's destructor destroys a
    // suspended pipeline coroutine, whose frame refers to the members above.
    std::thread thread;
    asio::thread_pool blocking_pool{1};
    asio::io_context io{1};
    // Destroyed before the io_context: a provider may hold objects bound to it (an HTTP
    // stream's waker on the reader's executor), and after the pipeline's thread has ended.
    std::unique_ptr<source_provider> provider;
    asio::cancellation_signal cancel;
};

/// Hands a finished batch to the channel, waiting (without blocking the thread) until fewer
/// than `prefetch_batches` batches wait and the batch budget has room for it (a lone batch
/// always fits, or an oversized batch would stall for ever). Returns false when the consumer
/// has gone away.
inline asio::awaitable<bool> deliver(reader_core* core, batch b, read_position after)
{
    const std::size_t bytes = b.byte_size();
    const auto records = static_cast<std::uint64_t>(b.size() - b.padding());
    queued_batch item{std::move(b), bytes, after};
    if (!core->channel.try_send(std::move(item), bytes)) {
        if (core->channel.consumer_gone())
            co_return false;
        const auto stall_start = std::chrono::steady_clock::now();
        const bool sent = co_await core->channel.async_send(std::move(item), bytes);
        stats_counters::add(core->stats.producer_stall_ns,
                            std::int64_t((std::chrono::steady_clock::now() - stall_start).count()));
        if (!sent)
            co_return false;
    }
    // Read after the send: the consumer may have released some since, so this can be low by
    // a batch the consumer has just finished; it is a statistic.
    const auto held = core->channel.held_bytes();
    if (held > core->stats.peak_batch_bytes.load(std::memory_order_relaxed))
        core->stats.peak_batch_bytes.store(held, std::memory_order_relaxed);
    stats_counters::add(core->stats.records, records);
    stats_counters::add(core->stats.batches, std::uint64_t{1});
    co_return true;
}

/// Applies the bad-record policy to an error at `where`: throws under `fail`, otherwise
/// counts (and maybe reports) the skip.
inline void on_bad_record(reader_core* core, const error_code& ec, data_location where, std::string_view detail)
{
    if (core->options.bad_records == bad_record_policy::fail)
        throw data_error(ec, std::move(where), detail);
    const auto skipped = core->stats.bad_records.load(std::memory_order_relaxed);
    if (skipped >= core->options.max_bad_records)
        throw data_error(ec, std::move(where),
                         std::string(detail) + (detail.empty() ? "" : "; ") + "more than max_bad_records ("
                             + std::to_string(core->options.max_bad_records) + ") bad records");
    stats_counters::add(core->stats.bad_records, std::uint64_t{1});
    if (core->options.bad_records == bad_record_policy::skip_and_warn) {
        std::string msg = "pipemode: skipped a bad record: " + where.to_string() + ": " + ec.message();
        if (!detail.empty())
            msg.append(" (").append(detail).append(")");
        if (core->options.on_warning)
            core->options.on_warning(msg);
        else
            std::cerr << msg << '\n';
    }
}

/// One pass of the pipeline over a provider's sources: framing, the optional record-level
/// shuffle, parsing into batches and delivery, with the position each batch ends at.
///
/// Lives in the pipeline coroutine's frame on the network thread.
template <class Decoder, class Parser>
class pipeline_run {
public:
    pipeline_run(reader_core* core, Decoder decoder, Parser parser)
        : core_(core)
        , decoder_(std::move(decoder))
        , parser_(std::move(parser))
        , builder_(core->options.batch_size, core->pool)
    {
    }

    /// Every source of the provider, in order. Returns when the data ends (the channel is then
    /// closed) or the consumer has gone away; throws what the sources and the policies throw.
    asio::awaitable<void> run()
    {
        const auto ex = co_await asio::this_coro::executor;
        const source_context ctx{ex, core_->blocking_pool.get_executor()};
        std::uint64_t sources = 0;
        while (auto planned = co_await core_->provider->async_next_planned(ctx)) {
            if (sources != 0 && planned->plan.epoch != epoch_ && !co_await end_epoch())
                co_return;
            epoch_ = planned->plan.epoch;
            ++sources;
            if (!co_await decode_source(*planned))
                co_return;
        }
        // A data set with no sources at all is almost always a wrong path or prefix; an
        // empty epoch would hide that. (Empty sources among others are fine.)
        if (sources == 0)
            throw data_error(errc::empty_data_set, {core_->provider->describe(), 0, 0}, "no sources to read");
        if (!co_await end_epoch())
            co_return;
        core_->channel.close();
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

    bool shuffling() const noexcept { return core_->options.shuffle_records != 0; }

    /// Decodes one planned source to its end (or to the end of its byte range). Returns false
    /// when the consumer has gone away.
    ///
    /// The per-record path is plain function calls; the coroutine suspends only for a chunk, a
    /// full batch or a full shuffle block.
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
            auto [ec, chunk] = co_await source.async_next();
            if (ec == asio::error::eof) {
                error_code fec;
                decoder_.finish(fec);
                // A record cut off after the end of the range belongs to the next range's reader.
                if (fec && !past_end(decoder_.offset()))
                    on_bad_record(core_, fec, {name, decoder_.offset(), decoder_.records_started()},
                                  "the source ended inside a record");
                // The end of the input completes a last line without a newline, or a whole object.
                if (!fec && decoder_.has_record() && !past_end(decoder_.record().offset)
                    && !co_await settle(take_record(name, plan, first_kept)))
                    co_return false;
                break;
            }
            if (ec) {
                const std::string detail = source.error_detail();
                throw data_error(ec, {name, position, decoder_.records_started()},
                                 detail.empty() ? "reading the source failed" : detail);
            }
            position += chunk.size();
            stats_counters::add(core_->stats.bytes, std::uint64_t(chunk.size()));

            // Take every record the chunk completes; the decoder stops after each one.
            while (!chunk.empty() || decoder_.has_record()) {
                error_code dec_ec;
                chunk = chunk.subspan(decoder_.put(chunk, dec_ec));
                if (dec_ec) {
                    if (past_end(decoder_.offset())) {
                        range_done = true;
                        break;
                    }
                    on_bad_record(core_, dec_ec, {name, decoder_.offset(), decoder_.records_started()}, {});
                    decoder_.resync();
                    continue;
                }
                if (!decoder_.has_record())
                    break;  // need more bytes
                if (past_end(decoder_.record().offset)) {
                    range_done = true;  // the rest of the source is the next range's
                    break;
                }
                const step next = take_record(name, plan, first_kept);
                if (next != step::none && !co_await settle(next))
                    co_return false;
            }
        }
        // A re-created block ends where the interrupted run's block ended, at the latest.
        if (shuffling() && plan.block_end_after && recreating_ && !co_await flush_block())
            co_return false;
        stats_counters::add(core_->stats.sources, std::uint64_t{1});
        co_return true;
    }

    /// What must happen after a record was taken before the next one.
    enum class step { none, deliver_batch, flush_block };

    /// Does what `take_record` asked for. Returns false when the consumer has gone away.
    asio::awaitable<bool> settle(step next)
    {
        if (next == step::flush_block)
            co_return co_await flush_block();
        if (next == step::deliver_batch) {
            batch b = builder_.take(epoch_);
            co_return co_await deliver(core_, std::move(b), last_);
        }
        co_return true;
    }

    /// Passes the decoder's waiting record on (unless the plan skips it) and pops it.
    step take_record(const std::string& name, const source_plan& plan, bool& first_kept)
    {
        const record_view rec = decoder_.record();
        // Records are numbered from the start of the source's range, bad ones included, so a
        // saved position means the same records on every run.
        step next = step::none;
        if (rec.index >= plan.skip) {
            if (shuffling())
                next = hold(rec, name, plan, std::exchange(first_kept, false)) ? step::flush_block : step::none;
            else
                next = emit(rec, name, {plan.epoch, plan.item, rec.index + 1, 0, plan.item}) ? step::deliver_batch
                                                                                           : step::none;
        }
        decoder_.pop();
        return next;
    }

    /// Parses one record into the batch being built; `after` is the consumer's position once it
    /// has this record. Returns true when the batch is full and must be delivered.
    bool emit(const record_view& rec, std::string_view source, const read_position& after)
    {
        last_ = after;
        error_code parse_ec;
        const bool full = parser_.parse(rec, source, builder_, parse_ec);
        if (parse_ec) {
            on_bad_record(core_, parse_ec, {std::string(source), rec.offset, rec.index}, parser_.error_detail());
            return false;
        }
        return full;
    }

    /// Adds a record to the shuffle block. Returns true when the block is full and must be
    /// delivered.
    bool hold(const record_view& rec, std::string_view source, const source_plan& plan, bool first_kept)
    {
        if (block_.empty()) {
            block_start_ = {plan.epoch, plan.item, rec.index, 0, plan.item};
            block_seed_ = derive_seed(core_->options.shuffle_seed, plan.epoch,
                                      derive_seed(plan.object, plan.begin, rec.index));
            recreating_ = first_kept && plan.block_start;
            block_drop_ = recreating_ ? plan.block_drop : 0;
        }
        if (block_bytes_.capacity() == 0)
            block_bytes_.reserve(core_->options.shuffle_buffer_bytes + core_->options.max_record_size);
        if (block_sources_.empty() || block_sources_.back() != source)
            block_sources_.emplace_back(source);
        const std::size_t at = block_bytes_.size();
        block_bytes_.insert(block_bytes_.end(), rec.payload.begin(), rec.payload.end());
        block_.push_back({at, rec.payload.size(), static_cast<std::uint32_t>(block_sources_.size() - 1), rec.offset,
                          rec.index});
        block_end_ = {plan.epoch, plan.item, rec.index + 1, 0, plan.item};
        return block_.size() >= core_->options.shuffle_records
            || block_bytes_.size() >= core_->options.shuffle_buffer_bytes;
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
            if (emit(rec, block_sources_[h.source], after)) {
                batch b = builder_.take(epoch_);
                if (!co_await deliver(core_, std::move(b), last_))
                    co_return false;
            }
        }
        block_.clear();
        block_bytes_.clear();
        block_sources_.clear();
        block_drop_ = 0;
        recreating_ = false;
        co_return true;
    }

    /// Ends an epoch: delivers the shuffle block and the short last batch as the options say.
    /// Returns false when the consumer has gone away.
    asio::awaitable<bool> end_epoch()
    {
        if (!co_await flush_block())
            co_return false;
        if (builder_.empty())
            co_return true;
        if (core_->options.last_batch == last_batch::drop) {
            (void)builder_.take(epoch_);
            co_return true;
        }
        if (core_->options.last_batch == last_batch::pad)
            builder_.pad();
        batch last = builder_.take(epoch_);
        co_return co_await deliver(core_, std::move(last), last_);
    }

    reader_core* core_;
    Decoder decoder_;
    Parser parser_;
    batch_builder builder_;
    std::uint64_t epoch_ = 0;
    read_position last_{};  ///< after the last record added to the builder

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

/// The pipeline of one reader: `pipeline_run` compiled for its framing decoder and record
/// parser. Every reader runs this, whether it was given a `data_format` or a pair of its own.
template <record_decoder Framing, record_parser Parser>
asio::awaitable<void> run_pipeline(reader_core* core, Framing framing, Parser parser)
{
    pipeline_run<Framing, Parser> run(core, std::move(framing), std::move(parser));
    co_await run.run();
}

static_assert(record_decoder<record_group_decoder<recordio_decoder>>);

inline std::size_t checked_batch_budget(const reader_options& o, std::size_t source_buffers)
{
    auto fail = [](const std::string& s) { throw std::invalid_argument("pipemode::reader: " + s); };
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
    const auto reserved = source_buffers + o.max_record_size + (o.shuffle_records != 0 ? o.shuffle_buffer_bytes + o.max_record_size : 0);
    if (o.memory_budget <= reserved)
        fail("memory_budget (" + std::to_string(o.memory_budget / mib) + " MiB) leaves nothing for decoded batches after "
             + "the source buffers (" + std::to_string(source_buffers / mib)
             + " MiB) and the largest record (max_record_size = " + std::to_string(o.max_record_size / mib)
             + " MiB); raise memory_budget or lower read_size (files), the stream window (HTTP/S3) or max_record_size.");
    return o.memory_budget - reserved;
}

} // namespace detail

inline reader::reader(std::unique_ptr<source_provider> provider, reader_options options)
{
    // Each format is a framing decoder and a record parser from the library, started through
    // the same entry as a caller's own pair. The decoders and parsers are built before
    // `options` is moved into start().
    const std::size_t max = options.max_record_size;
    switch (options.format) {
    case data_format::recordio_protobuf:
        start(std::move(provider), std::move(options), recordio_decoder(recordio_options{.max_record_size = max}),
              protobuf_record_parser{});
        return;
    case data_format::recordio:
        start(std::move(provider), std::move(options), recordio_decoder(recordio_options{.max_record_size = max}),
              raw_record_parser{});
        return;
    case data_format::csv: {
        csv_record_parser parser(csv_options{.label_size = options.csv_label_size});
        start(std::move(provider), std::move(options), line_decoder(line_options{.max_record_size = max}),
              std::move(parser));
        return;
    }
    case data_format::tfrecord:
        start(std::move(provider), std::move(options), tfrecord_decoder(tfrecord_options{.max_record_size = max}),
              raw_record_parser{});
        return;
    case data_format::lines:
        start(std::move(provider), std::move(options), line_decoder(line_options{.max_record_size = max}),
              raw_record_parser{});
        return;
    case data_format::whole_object:
        start(std::move(provider), std::move(options),
              whole_object_decoder(whole_object_options{.max_record_size = max}), raw_record_parser{});
        return;
    case data_format::augmented_manifest: {
        // A record-level shuffle would separate a line's attributes; the store refuses it
        // too, this guards readers built over other providers.
        if (options.shuffle_records != 0)
            throw std::invalid_argument("pipemode::reader: " + (provider ? provider->describe() : std::string("no provider"))
                                        + ": reader_options::shuffle_records must be 0 with data_format::augmented_manifest, "
                                          "since a record-level shuffle would separate a line's attributes; the lines "
                                          "are still shuffled every epoch by the data set's shuffle "
                                          "(plan_options::shuffle_seed)");
        grouped_record_parser parser(options.attribute_names);
        record_group_decoder framing(recordio_decoder(recordio_options{.max_record_size = max}), parser.group_size());
        start(std::move(provider), std::move(options), std::move(framing), std::move(parser));
        return;
    }
    }
    throw std::invalid_argument("pipemode::reader: options.format is not one of the data_format values.");
}

template <record_decoder Framing, record_parser Parser>
reader::reader(std::unique_ptr<source_provider> provider, Framing framing, Parser parser, reader_options options)
{
    start(std::move(provider), std::move(options), std::move(framing), std::move(parser));
}

template <record_decoder Framing, record_parser Parser>
void reader::start(std::unique_ptr<source_provider> provider, reader_options options, Framing framing, Parser parser)
{
    detail::reader_core& core = make_core(std::move(provider), std::move(options));
    // The coroutine's frame takes the pair now; it runs once launch() has spawned it.
    launch(detail::run_pipeline(&core, std::move(framing), std::move(parser)));
}

inline detail::reader_core& reader::make_core(std::unique_ptr<source_provider> provider, reader_options options)
{
    if (!provider)
        throw std::invalid_argument("pipemode::reader: no source provider given.");
    const auto budget = detail::checked_batch_budget(options, provider->reserve_buffers(options));
    core_ = std::make_unique<detail::reader_core>(std::move(provider), std::move(options), budget);
    return *core_;
}

inline void reader::launch(asio::awaitable<void> pipeline)
{
    auto* core = core_.get();
    asio::co_spawn(core->io, std::move(pipeline),
                   asio::bind_cancellation_slot(core->cancel.slot(), [core](std::exception_ptr e) {
                       if (e)
                           core->channel.fail(e);
                   }));
    core->thread = std::thread([core] {
        try {
            core->io.run();
        } catch (...) {
            // Handlers do not throw (the pipeline's completion handler turns exceptions into
            // channel errors); anything else would be a pipemode bug. Make sure the consumer sees it.
            core->channel.fail(std::current_exception());
        }
    });
}

inline reader::reader(std::vector<std::string> paths, reader_options options)
    : reader(local_files(std::move(paths), options.read_size), std::move(options))
{
}

inline reader::reader(reader&&) noexcept = default;
inline reader& reader::operator=(reader&&) noexcept = default;

inline reader::~reader()
{
    if (!core_)
        return;
    auto* core = core_.get();
    // Tell the producer to stop and wake it if it waits for room, then cancel whatever the
    // pipeline awaits (a read, a timer) on its own thread.
    core->channel.cancel();
    asio::post(core->io, [core] { core->cancel.emit(asio::cancellation_type::terminal); });
    // Every operation pipemode awaits honours cancellation, so the thread ends promptly. No
    // time limit: a source that ignored cancellation would be a bug, and a hang shows it where
    // a silent wait of seconds would hide it.
    core->thread.join();
    core->blocking_pool.join();
}

inline void reader::release_current() noexcept
{
    auto& core = *core_;
    core.current = batch{};
    if (core.current_bytes != 0) {
        core.channel.release(core.current_bytes);
        core.current_bytes = 0;
    }
}

inline bool reader::advance()
{
    auto& core = *core_;
    if (core.done)
        return false;
    // Release the batch the consumer is done with before waiting for the next one, so that a
    // budget of one batch cannot deadlock.
    release_current();
    const auto start = std::chrono::steady_clock::now();
    std::optional<detail::queued_batch> item;
    try {
        item = core.channel.receive();
    } catch (...) {
        core.done = true;
        throw;
    }
    detail::stats_counters::add(core.stats.consumer_stall_ns,
                                std::int64_t((std::chrono::steady_clock::now() - start).count()));
    if (!item) {
        core.done = true;
        return false;
    }
    core.current = std::move(item->batch);
    core.current_bytes = item->bytes;
    core.position = item->after;
    return true;
}

inline std::optional<batch> reader::next()
{
    if (!advance())
        return std::nullopt;
    // The caller now owns the batch; its budget is released on the next call.
    return std::move(core_->current);
}

inline bool reader::try_next(batch& out)
{
    auto& core = *core_;
    if (core.done)
        return false;
    detail::queued_batch item;
    channel_status status{};
    try {
        status = core.channel.try_receive(item);
    } catch (...) {
        core.done = true;
        throw;
    }
    if (status == channel_status::closed)
        core.done = true;
    if (status != channel_status::item)
        return false;
    release_current();
    core.current_bytes = item.bytes;
    core.position = item.after;
    out = std::move(item.batch);
    return true;
}

inline bool reader::done() const noexcept { return core_->done; }

inline std::optional<read_position> reader::position() const noexcept { return core_->position; }

inline reader_stats reader::stats() const noexcept { return core_->stats.snapshot(); }

inline const reader_options& reader::options() const noexcept { return core_->options; }

inline reader::iterator reader::begin()
{
    iterator it(this);
    if (advance())
        it.current_ = &core_->current;
    return it;
}

inline reader::iterator& reader::iterator::operator++()
{
    if (!reader_->advance())
        current_ = nullptr;
    return *this;
}

inline std::unique_ptr<source_provider> local_files(std::vector<std::string> paths, std::size_t read_size)
{
    std::vector<source_maker> makers;
    makers.reserve(paths.size());
    for (auto& path : paths) {
        makers.push_back([path = std::move(path), read_size](const source_context& ctx) {
            // Decided when the reader gets to the path, not at construction: a FIFO may be
            // created by its writer only just before it is read.
            struct ::stat st {};
            if (::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode))
                return any_byte_source(fifo_source(ctx.executor, path, fifo_source_options{.read_size = read_size}));
            return any_byte_source(file_source(
                ctx.executor, path,
                file_source_options{.read_size = read_size, .blocking_executor = ctx.blocking_executor}));
        });
    }
    const auto n = makers.size();
    return source_list(std::move(makers), std::to_string(n) + (n == 1 ? " local path" : " local paths"));
}

} // namespace pipemode
