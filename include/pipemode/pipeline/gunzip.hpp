// pipemode: gzip decompression for whole data sets: every source of a provider or store.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/sources/gzip_source.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pipemode {

namespace detail {

class gunzip_provider final : public wrapping_provider {
public:
    gunzip_provider(std::unique_ptr<source_provider> inner, gzip_source_options options)
        : wrapping_provider(std::move(inner)), options_(options)
    {
    }

    std::string describe() const override { return inner().describe() + " (gzip)"; }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        // One gzip source is open at a time: the reader reads its sources one after the other.
        return inner().reserve_buffers(o) + gzip_source<any_byte_source>::buffer_bytes(options_);
    }

private:
    any_byte_source wrap(any_byte_source source) const override
    {
        return any_byte_source(gzip_source<any_byte_source>(std::move(source), options_));
    }

    gzip_source_options options_;
};

class gunzip_store final : public object_store {
public:
    gunzip_store(std::unique_ptr<object_store> inner, gzip_source_options options)
        : inner_(std::move(inner)), options_(options)
    {
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        // Listed sizes are compressed sizes: balancing by bytes still balances the transfer.
        co_return co_await inner_->async_list(ctx);
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        for (const auto& r : reads)
            if (r.first != 0)
                throw std::invalid_argument("pipemode: '" + r.uri
                                            + "' is gzip-compressed and cannot be read from the middle; shard compressed "
                                              "data sets by object or by bytes, not by byte range");
        return std::make_unique<gunzip_provider>(inner_->open(std::move(reads)), options_);
    }

    std::string describe() const override { return inner_->describe() + " (gzip)"; }

    std::size_t reserve_buffers(const reader_options& o) override
    {
        return inner_->reserve_buffers(o) + gzip_source<any_byte_source>::buffer_bytes(options_);
    }

    bool splittable() const noexcept override { return false; }

private:
    std::unique_ptr<object_store> inner_;
    gzip_source_options options_;
};

} // namespace detail

/// A provider whose sources are those of `inner`, decompressed: each source is one gzip
/// stream (one or more members), as `gzip_source` reads it.
///
/// Example: `pipemode::reader r(pipemode::gunzip(pipemode::local_files({"a.rec.gz"})));`
inline std::unique_ptr<source_provider> gunzip(std::unique_ptr<source_provider> inner, gzip_source_options options = {})
{
    if (!inner)
        throw std::invalid_argument("pipemode::gunzip: no source provider given");
    return std::make_unique<detail::gunzip_provider>(std::move(inner), options);
}

/// A store whose objects are those of `inner`, each decompressed as it is read (SageMaker's
/// `CompressionType: Gzip`). Compressed objects cannot be entered in the middle, so a data set
/// over this store cannot be sharded by byte range, nor resumed inside an object other than by
/// re-reading it from its start (which a resumed reader does).
inline std::unique_ptr<object_store> gunzip(std::unique_ptr<object_store> inner, gzip_source_options options = {})
{
    if (!inner)
        throw std::invalid_argument("pipemode::gunzip: no object store given");
    return std::make_unique<detail::gunzip_store>(std::move(inner), options);
}

} // namespace pipemode
