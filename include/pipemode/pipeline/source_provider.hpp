// pipemode: where a reader gets its byte sources from.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/core/read_position.hpp>
#include <pipemode/sources/any_source.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pipemode {

/// The executors a source provider may use when it opens sources.
struct source_context {
    /// The reader's network thread. Sources run here.
    asio::any_io_executor executor;
    /// A small pool for work that blocks (local file reads). Never the network thread.
    asio::any_io_executor blocking_executor;
};

/// Where a source's records sit in a data set that is read in planned epochs (see
/// `pipeline/plan.hpp`), and which of them the reader keeps.
struct source_plan {
    /// The epoch the source belongs to. A change of epoch ends the previous epoch's last batch.
    std::uint64_t epoch = 0;
    /// The source's place in its epoch's plan; with `records` below, the reader's position.
    std::uint64_t item = 0;
    /// Only records whose first byte is at or after `begin` and before `end` (offsets in the
    /// object, as `start_offset()` counts them) are this source's. A source that starts inside
    /// its object (begin > 0) is first searched for a record start.
    std::uint64_t begin = 0;
    std::optional<std::uint64_t> end{};
    /// Records of the source to drop before delivering any: a resumed position.
    std::uint64_t skip = 0;
    /// The object the source reads, as an index into the data set's listing; with `begin`
    /// and a record's index it names a record independently of any rank's plan.
    std::uint64_t object = 0;
    /// Start a new record-shuffle block at the source's first kept record (ending the block
    /// in progress), and drop the first `block_drop` records of the block's shuffled order:
    /// how a resumed reader re-creates a block it had partly delivered.
    bool block_start = false;
    std::uint64_t block_drop = 0;
    /// End the record-shuffle block in progress at the end of this source.
    bool block_end_after = false;
};

/// A source and its place in the data set.
struct planned_source {
    any_byte_source source;
    source_plan plan{};
};

/// Hands a reader the byte sources of its data set, one after the other, in order.
///
/// The reader calls `async_next_source()` on its network thread and reads each source to its
/// end before asking for the next. A provider may open sources ahead of time (an object store
/// provider fetches the next objects while the current one is decoded); a local provider
/// simply opens the next path. Implementations live as long as their reader and are used from
/// the reader's network thread only.
class source_provider {
public:
    virtual ~source_provider() = default;

    /// The next source, or an empty optional when the data set has been read.
    /// Errors (a missing file, a refused request) are thrown as exceptions naming the source.
    virtual asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) = 0;

    /// The next source with its place in the data set. The default numbers the sources of
    /// `async_next_source()` as the items of epoch 0 and keeps all their records; providers
    /// that plan epochs, shards or byte ranges override it.
    virtual asio::awaitable<std::optional<planned_source>> async_next_planned(source_context ctx)
    {
        auto source = co_await async_next_source(ctx);
        if (!source)
            co_return std::nullopt;
        planned_source out{std::move(*source), {}};
        out.plan.item = sources_handed_out_;
        out.plan.object = sources_handed_out_++;
        co_return out;
    }

    /// A short description of the data set for messages (e.g. "3 local files").
    virtual std::string describe() const = 0;

    /// Called once by the reader, before the first source, with the reader's options: returns
    /// the bytes of buffers this provider's sources will hold at most, which the reader keeps
    /// out of its budget for decoded batches. The default suits sources that read
    /// `options.read_size` at a time with one read ahead.
    virtual std::size_t reserve_buffers(const reader_options& options) { return 2 * options.read_size; }

private:
    std::uint64_t sources_handed_out_ = 0;
};

/// A provider whose sources are another provider's, each passed through `wrap` (to decompress
/// it, say): planned or not, a source keeps its place in the data set. Derived classes give
/// `wrap`, `describe` and, when the wrapping holds buffers, `reserve_buffers`.
class wrapping_provider : public source_provider {
public:
    explicit wrapping_provider(std::unique_ptr<source_provider> inner) : inner_(std::move(inner)) {}

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) final
    {
        auto source = co_await inner_->async_next_source(ctx);
        if (!source)
            co_return std::nullopt;
        co_return wrap(std::move(*source));
    }

    asio::awaitable<std::optional<planned_source>> async_next_planned(source_context ctx) final
    {
        auto planned = co_await inner_->async_next_planned(ctx);
        if (!planned)
            co_return std::nullopt;
        planned->source = wrap(std::move(planned->source));
        co_return planned;
    }

protected:
    /// The source to hand out in place of `source`.
    virtual any_byte_source wrap(any_byte_source source) const = 0;

    /// The provider whose sources are wrapped.
    source_provider& inner() const noexcept { return *inner_; }

private:
    std::unique_ptr<source_provider> inner_;
};

/// Opens one byte source, on the reader's network thread.
using source_maker = std::function<any_byte_source(const source_context&)>;

namespace detail {

class source_list_provider final : public source_provider {
public:
    source_list_provider(std::vector<source_maker> makers, std::string description)
        : makers_(std::move(makers)), description_(std::move(description))
    {
    }

    asio::awaitable<std::optional<any_byte_source>> async_next_source(source_context ctx) override
    {
        if (next_ == makers_.size())
            co_return std::nullopt;
        co_return makers_[next_++](ctx);
    }

    std::string describe() const override { return description_; }

private:
    std::vector<source_maker> makers_;
    std::string description_;
    std::size_t next_ = 0;
};

} // namespace detail

/// A provider that opens the sources of a fixed list, in order, each when the reader gets to
/// it (so at most one is open at a time).
///
/// Example (two in-memory objects, as tests and small programs use them):
/// \code
/// auto provider = pipemode::source_list({
///     [&](const pipemode::source_context&) { return pipemode::any_byte_source(pipemode::memory_source(a, "a")); },
///     [&](const pipemode::source_context&) { return pipemode::any_byte_source(pipemode::memory_source(b, "b")); },
/// }, "two buffers");
/// \endcode
inline std::unique_ptr<source_provider> source_list(std::vector<source_maker> makers,
                                                    std::string description = "a list of sources")
{
    return std::make_unique<detail::source_list_provider>(std::move(makers), std::move(description));
}

} // namespace pipemode
