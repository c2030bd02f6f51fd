// pipemode: definitions of data_set.hpp. Included at the bottom of data_set.hpp only.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pipemode::s3 {

inline metadata_fetcher make_metadata_fetcher(http::client& c)
{
    // Each source sets its own timeout (short for the metadata services, which answer in
    // milliseconds or not at all); an unreachable service is "no answer", so that the chain can
    // say what it tried.
    http::client* client = &c;
    return [client](metadata_request m) -> asio::awaitable<std::optional<metadata_response>> {
        http::request r;
        r.method = std::move(m.method);
        r.url = std::move(m.url);
        r.headers = std::move(m.headers);
        r.body = std::move(m.body);
        r.timeout = m.timeout;
        auto resp = co_await http::async_fetch_document(*client, std::move(r), 1 * mib);
        if (resp.ec)
            co_return std::nullopt;
        metadata_response out;
        out.status = resp.head.status;
        out.body = std::move(resp.body);
        co_return out;
    };
}

namespace detail {

/// Sets `client.ca_file` from `configured` (AWS_CA_BUNDLE or the profile's ca_bundle) unless
/// the caller gave one, checking that the file exists. Without verification there is nothing
/// to trust, so nothing is resolved or checked.
inline void apply_ca_bundle(http::client_options& client, const std::optional<ca_bundle_setting>& configured)
{
    if (!client.verify_tls)
        return;
    if (!client.ca_file.empty()) {
        check_ca_bundle({client.ca_file, "s3_options::stream.client.ca_file"});
    } else if (configured) {
        check_ca_bundle(*configured);
        client.ca_file = configured->path;
    }
}

} // namespace detail

inline http::client_options client_options_for(const s3_options& options)
{
    http::client_options client = options.stream.client;
    if (client.verify_tls && client.ca_file.empty())
        detail::apply_ca_bundle(client, resolve_ca_bundle(options.env ? *options.env : environment::process(),
                                                          options.profile));
    else
        detail::apply_ca_bundle(client, std::nullopt);
    return client;
}

inline s3_context::s3_context(s3_options options)
    : options_(std::move(options)), env_(options_.env ? *options_.env : environment::process())
{
    // Only what the caller left open comes from the environment and the profile.
    const s3_settings settings = resolve_settings(env_, options_.profile);
    region_ = options_.region.empty() ? settings.region : options_.region;
    if (!options_.endpoint_url.empty())
        endpoint_ = parse_http_url(options_.endpoint_url);
    else if (settings.endpoint)
        endpoint_ = *settings.endpoint;
    else
        endpoint_ = aws_endpoint(region_);
    style_ = options_.addressing_style ? options_.addressing_style : settings.addressing_style;

    // The CA goes into the stream's client options, from which every client of this context
    // is built (ranged GETs, listings, manifests, and the STS and metadata calls of the
    // credentials chain), so that all of them trust the same CA.
    detail::apply_ca_bundle(options_.stream.client, settings.ca_bundle);
}

inline addressing s3_context::style_for(std::string_view bucket) const
{
    return style_ ? *style_ : choose_addressing(endpoint_, bucket);
}

inline asio::awaitable<http::request> s3_context::async_make(http::client& c, std::string method, std::string bucket,
                                                             std::string key,
                                                             std::vector<std::pair<std::string, std::string>> query,
                                                             std::vector<std::pair<std::string, std::string>> headers)
{
    const addressing style = style_for(bucket);
    http::request req;
    req.method = method;
    req.url = key.empty() ? bucket_url(endpoint_, bucket, style) : object_url(endpoint_, bucket, key, style);
    if (!query.empty())
        req.url += '?' + encode_query(query);
    req.headers = headers;
    if (options_.anonymous)
        co_return req;

    if (!credentials_) {
        if (options_.credentials) {
            credentials_ = std::make_unique<credentials_provider>(*options_.credentials);
        } else {
            credentials_options co;
            co.profile = options_.profile;
            credentials_ = std::make_unique<credentials_provider>(env_, make_metadata_fetcher(c), std::move(co));
        }
    }
    const timed_credentials creds = co_await credentials_->async_get();

    signing_request sr;
    sr.method = method;
    sr.host = style == addressing::virtual_hosted ? bucket + '.' + endpoint_.authority() : endpoint_.authority();
    std::string path(endpoint_.path);
    while (!path.empty() && path.back() == '/')
        path.pop_back();
    if (style == addressing::path)
        path += '/' + bucket;
    if (!key.empty() || style == addressing::virtual_hosted)
        path += '/' + key;
    sr.path = path;
    sr.query = std::move(query);
    sr.headers = std::move(headers);
    const signed_headers sig = sign_s3_request(sr, creds.credentials, region_, std::chrono::system_clock::now());
    for (auto& field : sig.fields())
        req.headers.push_back(std::move(field));
    co_return req;
}

inline asio::awaitable<http::request> s3_requests::async_make(http::client& c, const remote::object_info& object,
                                                              std::uint64_t first, std::uint64_t last,
                                                              std::string if_match)
{
    const s3_uri uri = parse_s3_uri(object.name);
    std::vector<std::pair<std::string, std::string>> headers;
    headers.emplace_back("Range", "bytes=" + std::to_string(first) + '-' + std::to_string(last));
    if (!if_match.empty())
        headers.emplace_back("If-Match", std::move(if_match));
    // Named, not `{}`: GCC 12 destroys brace-initialised temporaries in a co_await
    // expression twice.
    std::vector<std::pair<std::string, std::string>> no_query;
    co_return co_await ctx_->async_make(c, "GET", uri.bucket, uri.key, std::move(no_query), std::move(headers));
}

inline asio::awaitable<std::string> async_fetch_s3_document(http::client& c, std::shared_ptr<s3_context> ctx,
                                                            std::string bucket, std::string key,
                                                            std::vector<std::pair<std::string, std::string>> query,
                                                            std::string what, std::size_t limit)
{
    http::retry_policy policy(1, ctx->stream_options().retry);
    http::retry_policy::request_state attempt;
    asio::steady_timer backoff(c.get_executor());
    for (;;) {
        std::vector<std::pair<std::string, std::string>> no_headers;  // not `{}`: see s3_requests::async_make
        http::request req = co_await ctx->async_make(c, "GET", bucket, key, query, std::move(no_headers));
        policy.begin_attempt(attempt);
        http::document_response resp = co_await http::async_fetch_document(c, std::move(req), limit);
        std::string why;
        http::failure_kind kind{};
        if (resp.ec == errc::document_too_large) {
            throw std::runtime_error(what + ": the response is larger than " + std::to_string(limit / mib) + " MiB");
        } else if (resp.ec) {
            kind = http::classify_transport(resp.ec);
            why = what + ": " + resp.ec.message() + (resp.detail.empty() ? "" : ": " + resp.detail);
        } else if (resp.head.status >= 300) {
            const s3_error e = parse_error_response(resp.head.status, resp.body);
            kind = classify_failure(resp.head.status, e.code);
            why = describe(e, what);
        } else {
            co_return std::move(resp.body);
        }
        const auto delay = policy.next_delay(attempt, kind);
        if (!delay)
            throw std::runtime_error(why);
        backoff.expires_after(*delay);
        co_await backoff.async_wait(asio::use_awaitable);
    }
}

inline asio::awaitable<std::optional<remote::object_info>> prefix_lister::async_next(http::client& c)
{
    for (;;) {
        while (next_ < page_.size()) {
            object_summary& o = page_[next_++];
            if (!o.key.empty() && o.key.back() == '/' && o.size == 0)
                continue;  // a folder marker made by a console, not data
            remote::object_info info;
            const s3_uri uri{prefix_.bucket, o.key};
            info.name = uri.to_string();
            info.url = object_url(ctx_->endpoint(), uri.bucket, uri.key, ctx_->style_for(uri.bucket));
            info.size = o.size;
            info.etag = std::move(o.etag);
            co_return info;
        }
        if (listed_all_)
            co_return std::nullopt;
        const std::string body = co_await async_fetch_s3_document(
            c, ctx_, prefix_.bucket, "", list_objects_query(prefix_.key, continuation_), prefix_.to_string(), 64 * mib);
        parse_error err;
        auto page = parse_list_objects(body, err);
        if (!page)
            throw data_error(err.code, {prefix_.to_string() + " (ListObjectsV2 response)", err.offset, 0}, err.reason);
        page_ = std::move(page->contents);
        next_ = 0;
        continuation_ = page->next_continuation_token;
        listed_all_ = !page->is_truncated;
    }
}

inline uri_lister::uri_lister(std::shared_ptr<s3_context> ctx, std::vector<s3_uri> uris)
    : ctx_(std::move(ctx)), uris_(std::move(uris))
{
    description_ = uris_.size() == 1 ? uris_.front().to_string() : std::to_string(uris_.size()) + " S3 URIs";
}

inline asio::awaitable<std::optional<remote::object_info>> uri_lister::async_next(http::client& c)
{
    for (;;) {
        if (listing_) {
            if (auto o = co_await listing_->async_next(c))
                co_return o;
            listing_.reset();
        }
        if (next_ == uris_.size())
            co_return std::nullopt;
        const s3_uri& uri = uris_[next_++];
        if (uri.is_prefix()) {
            listing_ = std::make_unique<prefix_lister>(ctx_, uri);
            continue;
        }
        remote::object_info info;
        info.name = uri.to_string();
        info.url = object_url(ctx_->endpoint(), uri.bucket, uri.key, ctx_->style_for(uri.bucket));
        co_return info;
    }
}

inline asio::awaitable<std::optional<remote::object_info>> manifest_lister::async_next(http::client& c)
{
    if (!entries_) {
        std::vector<std::pair<std::string, std::string>> no_query;  // not `{}`: see s3_requests::async_make
        const std::string body = co_await async_fetch_s3_document(c, ctx_, manifest_.bucket, manifest_.key,
                                                                  std::move(no_query), manifest_.to_string(), 256 * mib);
        parse_error err;
        entries_ = parse_manifest(body, err);
        if (!entries_)
            throw data_error(err.code, {manifest_.to_string(), err.offset, 0}, err.reason);
    }
    if (next_ == entries_->size())
        co_return std::nullopt;
    const s3_uri& uri = (*entries_)[next_++];
    remote::object_info info;
    info.name = uri.to_string();
    info.url = object_url(ctx_->endpoint(), uri.bucket, uri.key, ctx_->style_for(uri.bucket));
    co_return info;
}

inline std::unique_ptr<remote::object_stream> s3_objects(const std::vector<std::string>& uris, s3_options options)
{
    std::vector<s3_uri> parsed;
    parsed.reserve(uris.size());
    for (const auto& u : uris)
        parsed.push_back(parse_s3_uri(u));
    auto ctx = std::make_shared<s3_context>(std::move(options));
    // The context's stream options, not the caller's: they carry the CA bundle it resolved.
    auto stream_opts = ctx->stream_options();
    return std::make_unique<remote::object_stream>(std::make_unique<uri_lister>(ctx, std::move(parsed)),
                                                 std::make_unique<s3_requests>(ctx), std::move(stream_opts));
}

inline std::unique_ptr<remote::object_stream> s3_manifest(const std::string& manifest_uri, s3_options options)
{
    s3_uri uri = parse_s3_uri(manifest_uri);
    auto ctx = std::make_shared<s3_context>(std::move(options));
    auto stream_opts = ctx->stream_options();  // with the resolved CA bundle, as in s3_objects
    return std::make_unique<remote::object_stream>(std::make_unique<manifest_lister>(ctx, std::move(uri)),
                                                 std::make_unique<s3_requests>(ctx), std::move(stream_opts));
}

} // namespace pipemode::s3
