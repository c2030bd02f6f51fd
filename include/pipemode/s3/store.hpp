// pipemode: S3 objects, prefixes and manifests as an object store, for data sets read over epochs.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/remote/http_store.hpp>
#include <pipemode/s3/data_set.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pipemode::s3 {

namespace detail {

class s3_object_store final : public object_store {
public:
    using lister_factory = std::function<std::unique_ptr<remote::object_lister>(std::shared_ptr<s3_context>)>;

    s3_object_store(lister_factory make_lister, s3_options options, std::string description)
        : make_lister_(std::move(make_lister)), options_(std::move(options)), description_(std::move(description))
    {
        // Resolves endpoint, region, style and CA bundle now, so a misconfiguration throws
        // here; the resolved CA is kept for the listing's and the streams' clients.
        options_.stream = s3_context(options_).stream_options();
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        // The listing runs on the reader's network thread with a client of its own; the
        // context (and its credentials) serve this listing only, since a credentials provider
        // fetches through the client of the thread it was first used on.
        auto context = std::make_shared<s3_context>(options_);
        auto lister = make_lister_(context);
        http::client client(ctx.executor, options_.stream.client);
        std::vector<remote::object_info> infos;
        while (auto info = co_await lister->async_next(client))
            infos.push_back(std::move(*info));
        co_return listed_.remember(std::move(infos));
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        // A fresh context per stream: its credentials provider lives on the stream's thread.
        auto context = std::make_shared<s3_context>(options_);
        return std::make_unique<remote::object_stream>(
            std::make_unique<remote::object_list>(listed_.infos_for(reads), description_),
            std::make_unique<s3_requests>(std::move(context)), options_.stream);
    }

    std::string describe() const override { return description_; }

    std::size_t reserve_buffers(const reader_options& o) override { return remote::size_stream(options_.stream, o.memory_budget).reserved(); }

private:
    lister_factory make_lister_;
    s3_options options_;
    std::string description_;
    remote::detail::listed_objects listed_;
};

} // namespace detail

/// A store over S3 URIs: each `s3://bucket/key` one object, each `s3://bucket/prefix/` (or
/// any URI ending in '/') every object under it, listed with ListObjectsV2, in S3's key order.
/// Listings give sizes, so every sharding mode works.
///
/// Example:
/// \code
/// pipemode::data_set_reader r(pipemode::s3::s3_store({"s3://bucket/train/"}),
///                             {.plan = {.shard = {.rank = r, .world_size = n, .mode = pipemode::shard_mode::by_object}}});
/// \endcode
inline std::unique_ptr<object_store> s3_store(const std::vector<std::string>& uris, s3_options options = {})
{
    std::vector<s3_uri> parsed;
    for (const auto& u : uris)
        parsed.push_back(parse_s3_uri(u));
    if (parsed.empty())
        throw std::invalid_argument("pipemode::s3::s3_store: no URIs given");
    std::string description = uris.size() == 1 ? uris.front() : std::to_string(uris.size()) + " S3 URIs";
    return std::make_unique<detail::s3_object_store>(
        [parsed](std::shared_ptr<s3_context> ctx) { return std::make_unique<uri_lister>(std::move(ctx), parsed); },
        std::move(options), std::move(description));
}

/// A store over the objects a SageMaker manifest file lists (`[{"prefix": "s3://b/p/"},
/// "key1", ...]`), in the manifest's order. Manifests give no sizes: shard by object.
inline std::unique_ptr<object_store> s3_manifest_store(const std::string& manifest_uri, s3_options options = {})
{
    s3_uri uri = parse_s3_uri(manifest_uri);
    return std::make_unique<detail::s3_object_store>(
        [uri](std::shared_ptr<s3_context> ctx) { return std::make_unique<manifest_lister>(std::move(ctx), uri); },
        std::move(options), "the objects of manifest " + manifest_uri);
}

} // namespace pipemode::s3
