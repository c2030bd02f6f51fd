// pipemode: HTTP(S) objects as an object store, for data sets read over epochs.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/http/object_stream.hpp>
#include <pipemode/pipeline/data_set.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace pipemode::http {

namespace detail {

/// What the HTTP and S3 stores share: the objects as listed (with their ETags, so that a
/// replaced object is an error from the first byte), and the object stream each epoch reads
/// through.
class listed_objects {
public:
    /// Remembers a listing; returns it as the planner sees it.
    std::vector<object_entry> remember(std::vector<object_info> infos)
    {
        infos_ = std::move(infos);
        index_.clear();
        std::vector<object_entry> out;
        out.reserve(infos_.size());
        for (std::size_t i = 0; i < infos_.size(); ++i) {
            index_.emplace(infos_[i].name, i);
            out.push_back(object_entry{infos_[i].name, infos_[i].size});
        }
        return out;
    }

    /// The listed objects of `reads`, each with its byte range.
    std::vector<object_info> infos_for(const std::vector<object_read>& reads) const
    {
        std::vector<object_info> out;
        out.reserve(reads.size());
        for (const auto& r : reads) {
            const auto it = index_.find(r.uri);
            if (it == index_.end())
                throw std::logic_error("pipemode: '" + r.uri + "' was not in the listing");
            object_info info = infos_[it->second];
            info.first = r.first;
            info.end = r.end;
            out.push_back(std::move(info));
        }
        return out;
    }

private:
    std::vector<object_info> infos_;
    std::unordered_map<std::string, std::size_t> index_;
};

class url_store final : public object_store {
public:
    url_store(std::vector<std::string> urls, stream_options options) : urls_(std::move(urls)), options_(std::move(options))
    {
        if (urls_.empty())
            throw std::invalid_argument("pipemode::http::http_store: no URLs given");
        for (const auto& u : urls_)
            if (!u.starts_with("http://") && !u.starts_with("https://"))
                throw std::invalid_argument("pipemode::http::http_store: '" + u + "' is not an http:// or https:// URL");
            else if (u.ends_with('/'))
                throw std::invalid_argument("pipemode::http::http_store: '" + u
                                            + "' is a prefix, and plain HTTP servers cannot list one; give the objects' "
                                              "URLs, or serve the data through an S3-compatible endpoint");
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context) override
    {
        // Nothing to ask the server: sizes and ETags come with each object's first response.
        std::vector<object_info> infos;
        for (const auto& u : urls_)
            infos.push_back(object_info{.url = u, .name = u});
        co_return listed_.remember(std::move(infos));
    }

    std::unique_ptr<source_provider> open(std::vector<object_read> reads) override
    {
        return std::make_unique<object_stream>(std::make_unique<object_list>(listed_.infos_for(reads), describe()),
                                               std::make_unique<plain_http_requests>(), options_);
    }

    std::string describe() const override
    {
        return urls_.size() == 1 ? urls_.front() : std::to_string(urls_.size()) + " URLs";
    }

    std::size_t reserve_buffers(const reader_options& o) override { return detail::choose_window(options_, o); }

private:
    std::vector<std::string> urls_;
    stream_options options_;
    listed_objects listed_;
};

} // namespace detail

/// A store over HTTP(S) objects given by URL, read with the ranged-GET object stream.
/// Plain HTTP servers cannot list, so a URL ending in '/' is refused; object sizes are unknown
/// until read, so sharding by bytes or byte range is refused too (shard by object).
inline std::unique_ptr<object_store> http_store(std::vector<std::string> urls, stream_options options = {})
{
    return std::make_unique<detail::url_store>(std::move(urls), std::move(options));
}

} // namespace pipemode::http
