// pipemode: HTTP(S) objects as an object store, for data sets read over epochs.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/http/directory_index.hpp>
#include <pipemode/http/document.hpp>
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/http/retry.hpp>
#include <pipemode/pipeline/data_set.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace pipemode::remote {

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
            out.push_back(object_entry{infos_[i].name, infos_[i].size, infos_[i].etag});
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

/// Limits of a directory walk over HTTP: a generated listing is a few hundred bytes per
/// entry, so these allow millions of objects while bounding a hostile or looping server.
inline constexpr std::size_t max_index_page_bytes = 64 * mib;
inline constexpr std::size_t max_index_pages = 100'000;
inline constexpr std::size_t max_index_depth = 32;

class url_store final : public object_store {
public:
    url_store(std::vector<std::string> urls, stream_options options) : urls_(std::move(urls)), options_(std::move(options))
    {
        if (urls_.empty())
            throw std::invalid_argument("pipemode::remote::http_store: no URLs given");
        for (const auto& u : urls_)
            if (!u.starts_with("http://") && !u.starts_with("https://"))
                throw std::invalid_argument("pipemode::remote::http_store: '" + u + "' is not an http:// or https:// URL");
    }

    asio::awaitable<std::vector<object_entry>> async_list(source_context ctx) override
    {
        // Object URLs need nothing from the server (sizes and ETags come with each object's
        // first response); prefixes are walked through the server's directory listings.
        std::vector<object_info> infos;
        std::optional<http::client> c;
        for (const auto& u : urls_) {
            if (!u.ends_with('/')) {
                infos.push_back(object_info{.url = u, .name = u});
                continue;
            }
            if (!c)
                c.emplace(ctx.executor, options_.client);
            const auto before = infos.size();
            std::size_t pages = 0;
            co_await walk(*c, u, 0, pages, infos);
            if (infos.size() == before)
                throw data_error(errc::empty_data_set, {u, 0, 0},
                                 "the server's listing of this prefix names no objects (is directory listing, "
                                 "such as nginx's autoindex, enabled?)");
        }
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

    std::size_t reserve_buffers(const reader_options& o) override { return size_stream(options_, o.memory_budget).reserved(); }

private:
    /// Appends the objects below `dir` (a URL ending in '/'), in name order, subdirectories
    /// walked where they sort.
    asio::awaitable<void> walk(http::client& c, std::string dir, std::size_t depth, std::size_t& pages,
                               std::vector<object_info>& out)
    {
        if (depth > max_index_depth || ++pages > max_index_pages)
            throw data_error(errc::document_too_large, {dir, 0, 0},
                             "the directory listings go deeper than " + std::to_string(max_index_depth)
                                 + " levels or past " + std::to_string(max_index_pages) + " pages");
        const std::string body = co_await fetch_index(c, dir);
        for (auto& e : http::parse_directory_index(body)) {
            std::string url = dir + e.href;
            if (e.is_directory()) {
                co_await walk(c, std::move(url), depth + 1, pages, out);
                continue;
            }
            out.push_back(object_info{.url = url, .name = url, .size = e.size});
        }
    }

    /// The listing page at `url`, retrying transient failures a few times.
    asio::awaitable<std::string> fetch_index(http::client& c, const std::string& url)
    {
        http::backoff delays(std::chrono::milliseconds(100), std::chrono::seconds(2), 1);
        for (int attempt = 1;; ++attempt) {
            http::request req;
            req.url = url;
            req.timeout = std::chrono::seconds(60);
            auto resp = co_await http::async_fetch_document(c, std::move(req), max_index_page_bytes);
            http::failure_kind kind = http::failure_kind::connect;
            std::string why;
            if (resp.ec == errc::document_too_large) {
                throw data_error(resp.ec, {url, 0, 0},
                                 "a directory listing larger than " + std::to_string(max_index_page_bytes / mib) + " MiB");
            } else if (resp.ec) {
                why = resp.detail.empty() ? resp.ec.message() : resp.detail;
            } else if (resp.head.status == 200) {
                co_return std::move(resp.body);
            } else {
                kind = http::classify_status(resp.head.status);
                why = "HTTP status " + std::to_string(resp.head.status);
            }
            if (!http::is_retryable(kind) || attempt == 5)
                throw data_error(errc::http_error, {url, 0, 0}, "listing the prefix failed: " + why);
            asio::steady_timer timer(c.get_executor(), delays.delay(static_cast<unsigned>(attempt)));
            co_await timer.async_wait(asio::use_awaitable);
        }
    }

    std::vector<std::string> urls_;
    stream_options options_;
    listed_objects listed_;
};

} // namespace detail

/// A store over HTTP(S) objects, read with the ranged-GET object stream. A URL is one object;
/// a URL ending in '/' is a prefix, listed by walking the server's generated directory
/// listings (nginx or Apache `autoindex`, HTML or nginx's JSON; see `parse_directory_index`),
/// subdirectories included, in name order. Sizes are known only from nginx's JSON listings:
/// otherwise sharding by bytes or byte range is refused (shard by object).
inline std::unique_ptr<object_store> http_store(std::vector<std::string> urls, stream_options options = {})
{
    return std::make_unique<detail::url_store>(std::move(urls), std::move(options));
}

} // namespace pipemode::remote
