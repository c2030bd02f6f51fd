// pipemode: S3 objects, prefixes and manifests as a data set streamed by ranged GETs.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/http/document.hpp>
#include <pipemode/remote/object_stream.hpp>
#include <pipemode/s3/credentials.hpp>
#include <pipemode/s3/error_response.hpp>
#include <pipemode/s3/listing.hpp>
#include <pipemode/s3/manifest.hpp>
#include <pipemode/s3/sigv4.hpp>
#include <pipemode/s3/uri.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipemode::s3 {

/// How to reach S3 and sign requests. Everything left empty is resolved the way the AWS CLI
/// resolves it (environment variables, then `~/.aws/config`; see docs/s3-credentials.md).
struct s3_options {
    /// An S3-compatible endpoint such as "http://127.0.0.1:9000" (MinIO, moto); overrides
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`. Empty: from the environment, else AWS.
    std::string endpoint_url{};
    /// The region signatures are scoped to; empty: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile.
    std::string region{};
    /// Path or virtual-hosted addressing; empty: the profile's, else `choose_addressing`.
    std::optional<addressing> addressing_style{};
    /// The profile for region, endpoint and credentials; empty: `AWS_PROFILE`, else "default".
    std::string profile{};
    /// Fixed credentials instead of the default chain.
    std::optional<aws_credentials> credentials{};
    /// Send unsigned requests (public buckets, plain HTTP servers that ignore signatures).
    bool anonymous = false;
    /// Where environment variables and settings files are read (tests substitute their own).
    std::optional<environment> env{};
    /// The ranged-GET stream's options (part size, connections, window, retries, TLS). An
    /// empty `stream.client.ca_file` is filled from `AWS_CA_BUNDLE` or the profile's `ca_bundle`.
    remote::stream_options stream{};
};

/// The client options of `options.stream.client` with the CA bundle resolved as the AWS CLI
/// resolves it: `ca_file` when set, else `AWS_CA_BUNDLE`, else the profile's `ca_bundle` (from
/// `options.env`, else the process's), else empty (the system's CAs); left alone when
/// `verify_tls` is off. For clients built outside an `s3_context` that reach S3 or AWS
/// (`s3_context` does the same itself).
///
/// Throws `std::invalid_argument` naming the setting when the bundle does not exist, and
/// `std::runtime_error` for a malformed config file.
///
/// Example: `http::client c(ex, s3::client_options_for(options));`
http::client_options client_options_for(const s3_options& options);

/// The endpoint, region, addressing and credentials of S3 requests, resolved once.
///
/// Signing happens on the stream's network thread; the credentials provider (the default
/// chain, or fixed credentials) is created there on first use, since it fetches from metadata
/// services with the stream's HTTP client.
class s3_context {
public:
    /// Resolves endpoint, region, addressing and the CA bundle now (so a bad setting fails at
    /// once, with a sentence naming it); credentials are resolved on first use.
    ///
    /// The CA bundle follows the AWS CLI: `options.stream.client.ca_file`, else `AWS_CA_BUNDLE`,
    /// else the profile's `ca_bundle`, else the system's CAs (none when `verify_tls` is off).
    /// Throws `std::invalid_argument` naming the setting when its file does not exist.
    explicit s3_context(s3_options options);

    /// The endpoint requests go to.
    const http_url& endpoint() const noexcept { return endpoint_; }
    /// The signing region.
    const std::string& region() const noexcept { return region_; }
    /// The addressing style for `bucket`.
    addressing style_for(std::string_view bucket) const;
    /// The stream options, with `client.ca_file` set to the CA bundle resolved from the
    /// environment or the profile when the caller gave none.
    const remote::stream_options& stream_options() const noexcept { return options_.stream; }

    /// A request for `method` on bucket/key (key empty: the bucket) with `query` and extra
    /// `headers`, signed unless anonymous. `c` is the network thread's client.
    asio::awaitable<http::request> async_make(http::client& c, std::string method, std::string bucket,
                                              std::string key, std::vector<std::pair<std::string, std::string>> query,
                                              std::vector<std::pair<std::string, std::string>> headers);

private:
    s3_options options_;
    environment env_;
    http_url endpoint_;
    std::string region_;
    std::optional<addressing> style_;
    std::unique_ptr<credentials_provider> credentials_;
};

/// The fetcher that the default credentials chain of an S3 stream uses: performs each
/// `metadata_request` (method, headers, body and timeout) with `c`, keeping at most 1 MiB of
/// the response, and answers nothing for a transport failure (no connection, timeout, TLS
/// error). `c` must outlive the fetcher, and the fetcher must be used on `c`'s thread.
///
/// Example: `credentials_provider p(environment::process(), make_metadata_fetcher(client));`
metadata_fetcher make_metadata_fetcher(http::client& c);

/// Ranged GETs of S3 objects (`object_info::name` is the object's `s3://bucket/key`).
/// Error responses are read as S3 error documents (`remote::s3_compatible_builder`).
class s3_requests final : public remote::s3_compatible_builder {
public:
    explicit s3_requests(std::shared_ptr<s3_context> ctx) : ctx_(std::move(ctx)) {}
    asio::awaitable<http::request> async_make(http::client& c, const remote::object_info& object, std::uint64_t first,
                                              std::uint64_t last, std::string if_match) override;

private:
    std::shared_ptr<s3_context> ctx_;
};

/// Performs a small S3 request whole (a listing page, a manifest), retrying transient failures
/// with `policy`; throws `std::runtime_error` with S3's error code and message otherwise.
/// `what` names the target in messages ("s3://bucket/prefix/").
asio::awaitable<std::string> async_fetch_s3_document(http::client& c, std::shared_ptr<s3_context> ctx,
                                                     std::string bucket, std::string key,
                                                     std::vector<std::pair<std::string, std::string>> query,
                                                     std::string what, std::size_t limit);

/// Lists `s3://bucket/prefix/` page by page with ListObjectsV2 (1,000 keys a page), yielding
/// each object with the size and ETag the listing gives. Folder markers (keys ending in '/'
/// with no bytes) are left out.
class prefix_lister final : public remote::object_lister {
public:
    prefix_lister(std::shared_ptr<s3_context> ctx, s3_uri prefix) : ctx_(std::move(ctx)), prefix_(std::move(prefix)) {}
    asio::awaitable<std::optional<remote::object_info>> async_next(http::client& c) override;
    std::string describe() const override { return prefix_.to_string(); }

private:
    std::shared_ptr<s3_context> ctx_;
    s3_uri prefix_;
    std::vector<object_summary> page_;
    std::size_t next_ = 0;
    std::string continuation_;
    bool listed_all_ = false;
};

/// The objects of several S3 URIs in order: each key as one object, each prefix (ending in
/// '/') listed.
class uri_lister final : public remote::object_lister {
public:
    uri_lister(std::shared_ptr<s3_context> ctx, std::vector<s3_uri> uris);
    asio::awaitable<std::optional<remote::object_info>> async_next(http::client& c) override;
    std::string describe() const override { return description_; }

private:
    std::shared_ptr<s3_context> ctx_;
    std::vector<s3_uri> uris_;
    std::size_t next_ = 0;
    std::unique_ptr<prefix_lister> listing_;
    std::string description_;
};

/// The objects a SageMaker manifest file names (`[{"prefix": "s3://b/p/"}, "key1", ...]`),
/// fetched from S3 when the stream starts.
class manifest_lister final : public remote::object_lister {
public:
    manifest_lister(std::shared_ptr<s3_context> ctx, s3_uri manifest) : ctx_(std::move(ctx)), manifest_(std::move(manifest)) {}
    asio::awaitable<std::optional<remote::object_info>> async_next(http::client& c) override;
    std::string describe() const override { return "the objects of manifest " + manifest_.to_string(); }

private:
    std::shared_ptr<s3_context> ctx_;
    s3_uri manifest_;
    std::optional<std::vector<s3_uri>> entries_;
    std::size_t next_ = 0;
};

/// Streams S3 objects and prefixes (`s3://bucket/key`, `s3://bucket/prefix/`), in the order
/// given, prefixes in S3's key order.
///
/// Example:
/// \code
/// pipemode::reader reader(pipemode::s3::s3_objects({"s3://my-bucket/train/"}), {.batch_size = 512});
/// \endcode
std::unique_ptr<remote::object_stream> s3_objects(const std::vector<std::string>& uris, s3_options options = {});

/// Streams the objects a SageMaker manifest file at `manifest_uri` lists.
std::unique_ptr<remote::object_stream> s3_manifest(const std::string& manifest_uri, s3_options options = {});

} // namespace pipemode::s3

#include <pipemode/s3/impl/data_set.hpp>
