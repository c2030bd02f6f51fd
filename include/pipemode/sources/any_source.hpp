// pipemode: a type-erased byte source.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/concepts.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace pipemode {

/// Any `byte_source`, behind one virtual call per chunk.
///
/// The pipeline reads sources of different kinds (files, FIFOs, HTTP ranges) one after the
/// other; erasing their type costs one indirect call per chunk of megabytes, which is nothing,
/// and keeps the decode loop a single instantiation per format.
///
/// Move-only. Not thread-safe, like the source it holds.
class any_byte_source {
public:
    /// Wraps `source`, taking ownership.
    template <byte_source S>
        requires(!std::is_same_v<std::remove_cvref_t<S>, any_byte_source>)
    any_byte_source(S source) : impl_(std::make_unique<model<S>>(std::move(source)))
    {
    }

    any_byte_source(any_byte_source&&) noexcept = default;
    any_byte_source& operator=(any_byte_source&&) noexcept = default;

    /// The next chunk; see `byte_source`.
    asio::awaitable<chunk_result> async_next() { return impl_->async_next(); }

    /// The source's name for messages.
    std::string_view name() const noexcept { return impl_->name(); }

    /// Offset of the first delivered byte within the object.
    std::uint64_t start_offset() const noexcept { return impl_->start_offset(); }

    /// The source's description of its last error, or "" when it has none to give.
    std::string error_detail() const { return impl_->error_detail(); }

private:
    struct concept_t {
        virtual ~concept_t() = default;
        virtual asio::awaitable<chunk_result> async_next() = 0;
        virtual std::string_view name() const noexcept = 0;
        virtual std::uint64_t start_offset() const noexcept = 0;
        virtual std::string error_detail() const = 0;
    };

    template <class S>
    struct model final : concept_t {
        explicit model(S s) : source(std::move(s)) {}
        asio::awaitable<chunk_result> async_next() override { return source.async_next(); }
        std::string_view name() const noexcept override { return source.name(); }
        std::uint64_t start_offset() const noexcept override { return source.start_offset(); }
        std::string error_detail() const override
        {
            if constexpr (requires { source.error_detail(); })
                return std::string(source.error_detail());
            else
                return {};
        }
        S source;
    };

    std::unique_ptr<concept_t> impl_;
};

static_assert(byte_source<any_byte_source>);

} // namespace pipemode
