// pipemode: AWS credentials, region and endpoint for the S3 source, resolved the way the AWS
// CLI resolves them, without I/O of its own.
//
// Environment variables and files are read through an injectable `environment`, and the HTTP
// calls to the container and instance metadata services go through an injected
// `metadata_fetcher`, so every rule here is tested without touching the process's environment,
// ~/.aws or the network. Secrets never appear in an exception message: errors name the
// variable, file, line or JSON member at fault, never its value. See docs/s3-credentials.md.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/s3/sigv4.hpp>
#include <pipemode/s3/uri.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pipemode::s3 {

/// The largest settings file (`~/.aws/config`, `~/.aws/credentials`, a token file) read.
inline constexpr std::size_t max_settings_file_size = std::size_t{1} << 20;

/// Expiring credentials are refreshed once they are this close to their expiration, so that a
/// request signed just before never reaches S3 with an expired key.
inline constexpr std::chrono::minutes credentials_refresh_window{5};

/// After a refresh attempt, credentials that are still valid are reused for this long before
/// another attempt, so that an unreachable metadata service (or credentials issued with less
/// than `credentials_refresh_window` to live) cost one attempt per interval, not one per request.
inline constexpr std::chrono::seconds credentials_retry_interval{10};

/// Where settings come from: environment variables and files.
///
/// Both functions are called on the thread that resolves settings or credentials. Tests give
/// lambdas over a map; `process()` reads the real process environment and file system.
struct environment {
    /// The value of an environment variable, or nothing when it is not set.
    std::function<std::optional<std::string>(std::string_view name)> get_env;
    /// The whole contents of a file, or nothing when it does not exist. Throws
    /// `std::runtime_error` for a file that exists but cannot be used (a directory, larger than
    /// `max_settings_file_size`, unreadable).
    std::function<std::optional<std::string>(const std::string& path)> read_file;

    /// The process's own: `getenv` and the file system. Reading a file blocks, briefly: the
    /// files are small and read once per credentials resolution.
    static environment process();
};

/// One HTTP request of a credentials source: to a metadata service (container credentials,
/// EC2 instance metadata) or to AWS STS (web identity, assumed roles).
struct metadata_request {
    std::string method = "GET";  ///< "GET", "PUT" or "POST"
    std::string url;             ///< absolute http(s) URL
    std::vector<std::pair<std::string, std::string>> headers{};
    /// The whole request, connection included, must finish within this.
    std::chrono::milliseconds timeout{1000};
    /// The body sent with a PUT or POST (its `Content-Type` is in `headers`); empty: none. May
    /// hold a secret (a web identity token): never log it.
    std::string body{};
};

/// The answer to a `metadata_request`.
struct metadata_response {
    unsigned status = 0;  ///< HTTP status code
    std::string body;     ///< may hold credentials: never log it
};

/// Performs one HTTP request (sending its body, if any) and returns the response whatever its
/// status, or nothing when no connection could be made or the timeout passed. Supplied by the
/// network code (`make_metadata_fetcher`); tests give a scripted fake. It may throw only for
/// programming errors: an unreachable service is nothing, not an exception.
using metadata_fetcher = std::function<asio::awaitable<std::optional<metadata_response>>(metadata_request)>;

/// A PEM bundle of CA certificates to trust instead of the system's, and the setting that
/// named it (for messages: "AWS_CA_BUNDLE", "PATH, profile 'NAME', setting 'ca_bundle'",
/// "--ca-file"...).
struct ca_bundle_setting {
    std::string path;
    std::string origin;
};

/// The S3 settings of a profile: the region, an endpoint override, the addressing style and
/// the CA bundle.
struct s3_settings {
    std::string profile;                ///< the profile the settings came from ("default")
    std::string region;                 ///< e.g. "eu-west-3"; "us-east-1" when none is configured
    std::optional<http_url> endpoint;   ///< an override of AWS's endpoint (MinIO, moto...)
    std::optional<addressing> addressing_style;  ///< nothing means "choose" (`choose_addressing`)
    /// `AWS_CA_BUNDLE`, else the profile's `ca_bundle`; nothing: the system's CAs.
    std::optional<ca_bundle_setting> ca_bundle;
};

/// The CA bundle the AWS CLI would trust: `AWS_CA_BUNDLE`, else the `ca_bundle` setting of the
/// profile (`profile_override`, else `AWS_PROFILE`, `AWS_DEFAULT_PROFILE`, "default") in the
/// config file; nothing when neither is set (the system's CAs). The config file is read only
/// when the variable is unset. The path is not checked here (see `check_ca_bundle`); an
/// explicit option, such as `http::client_options::ca_file`, wins over both.
///
/// Throws `std::runtime_error` for a malformed config file.
inline std::optional<ca_bundle_setting> resolve_ca_bundle(const environment& env,
                                                          std::string_view profile_override = {});

/// Throws `std::invalid_argument` naming `bundle.origin` when `bundle.path` does not exist or
/// is a directory, so that a mistyped setting fails at construction with a sentence saying
/// where it came from, not later as libcurl's "error setting certificate file". Reads the file
/// system (a stat, no read).
inline void check_ca_bundle(const ca_bundle_setting& bundle);

/// Resolves the profile, region, endpoint and addressing style as the AWS CLI does.
///
/// - profile: `profile_override`, else `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else "default";
/// - region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` in the config file
///   (`AWS_CONFIG_FILE` or `~/.aws/config`), else "us-east-1";
/// - endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, then from the profile: `endpoint_url`
///   of `s3` in its `[services NAME]` section, of its own nested `s3 =` block, then its
///   `endpoint_url`; none of them when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (or the profile's
///   `ignore_configured_endpoint_urls`) is true;
/// - addressing style: the profile's nested `s3 = ... addressing_style = path|virtual|auto`;
/// - CA bundle: `AWS_CA_BUNDLE`, else the profile's `ca_bundle` (as `resolve_ca_bundle`).
///
/// Throws `std::invalid_argument` naming the variable or file entry at fault for an unusable
/// region, endpoint or addressing style, and `std::runtime_error` for a malformed config file.
inline s3_settings resolve_settings(const environment& env, std::string_view profile_override = {});

/// Credentials with the time they expire (nothing for long-term keys) and where they came from.
struct timed_credentials {
    aws_credentials credentials;
    std::optional<std::chrono::system_clock::time_point> expiration;
    /// "explicit", "environment", "assumed role ROLE_ARN (from profile 'NAME')" (or "(from
    /// credential_source KIND)"), "web identity (ROLE_ARN)", "shared credentials file (profile
    /// NAME)", "config file (profile NAME)", "container credentials" or "instance metadata (IMDSv2)".
    std::string source;
};

namespace detail {
// Defined in impl/credentials.hpp.
struct web_identity_settings;
struct role_chain;
struct assume_role_step;
struct hidden_text;
}

/// Settings of the default credentials chain.
struct credentials_options {
    /// The profile to use; empty means `AWS_PROFILE`, `AWS_DEFAULT_PROFILE`, then "default".
    std::string profile{};
    /// The wall clock that expirations are compared with; tests inject their own.
    std::function<std::chrono::system_clock::time_point()> clock{};
};

/// Supplies the credentials S3 requests are signed with: fixed ones, or the first that the
/// default chain finds, cached and refreshed before they expire.
///
/// The default chain, in order (docs/s3-credentials.md):
/// 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`
///    (and `AWS_CREDENTIAL_EXPIRATION`), unless the profile assumes its role from them;
/// 2. an assumed role: the profile's `role_arn` with `source_profile` (that profile's keys, web
///    identity or own role, chained up to 8 roles) or `credential_source` (`Environment`,
///    `Ec2InstanceMetadata`, `EcsContainer`) in the config file, optionally
///    `role_session_name`, `external_id` and `duration_seconds`. STS `AssumeRole` is called,
///    signed with SigV4 with the source credentials, at the endpoint web identity uses;
/// 3. web identity federation (EKS IAM roles for service accounts): `AWS_ROLE_ARN` and
///    `AWS_WEB_IDENTITY_TOKEN_FILE` (optionally `AWS_ROLE_SESSION_NAME`), else the profile's
///    `role_arn` and `web_identity_token_file` (optionally `role_session_name`) in the config
///    file. The token file is read at every fetch and sent, unsigned, to STS
///    `AssumeRoleWithWebIdentity` at `https://sts.REGION.amazonaws.com/` (region as
///    `resolve_settings` finds it; `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL` or the profile's
///    `sts` endpoint override it), with a 10 s timeout;
/// 4. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`),
///    section `[PROFILE]`: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`;
/// 5. the config file (`AWS_CONFIG_FILE` or `~/.aws/config`), section `[profile PROFILE]`
///    (`[default]`), the same keys;
/// 6. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (fetched from
///    `http://169.254.170.2`) or `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with an `Authorization`
///    header from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`;
/// 7. EC2 instance metadata, IMDSv2 only (`AWS_EC2_METADATA_DISABLED=true` skips it,
///    `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
///
/// A source that is configured but broken (a key id without its secret, a role ARN without its
/// token file or source, a missing source profile, a cycle of source profiles, a container
/// endpoint or STS that refuses or does not answer) stops the chain with an error instead of
/// falling through to the next one, so that a typo never silently selects other credentials.
/// Profiles that run a `credential_process`, use SSO or need an MFA code are refused with an
/// error, not skipped. Anonymous access is not part of the chain: finding nothing is
/// an error, and unsigned requests are a separate, explicit choice.
///
/// Thread safety: use a provider from one thread (the network thread) only. Any number of
/// coroutines may call `async_get` at once; they share one resolution or refresh. The provider
/// must outlive every `async_get` call.
class credentials_provider {
public:
    /// Fixed credentials, which never expire. Throws `std::invalid_argument` when the key id
    /// or the secret is empty.
    ///
    /// Example: `credentials_provider p(aws_credentials{"AKIA...", "secret", ""});`
    explicit credentials_provider(aws_credentials credentials);

    /// The default chain, read through `env`; `fetch` performs the metadata services' and
    /// STS's HTTP requests (when empty, the container and instance metadata sources are
    /// skipped, and a configured web identity or assumed role is an error).
    /// Nothing is read until the first `async_get`.
    credentials_provider(environment env, metadata_fetcher fetch, credentials_options options = {});

    credentials_provider(const credentials_provider&) = delete;
    credentials_provider& operator=(const credentials_provider&) = delete;

    /// The current credentials: resolved on first use, then cached, and refreshed from the
    /// same source once within `credentials_refresh_window` of their expiration.
    ///
    /// While a refresh is running, callers whose cached credentials are still valid get those
    /// at once, and the others wait for the refresh and share its result. A failed refresh is
    /// not an error while the cached credentials are still valid; they are used and the refresh
    /// is attempted again after `credentials_retry_interval`.
    ///
    /// Throws `std::runtime_error` with a sentence naming every source tried and why it gave
    /// nothing, or the configured source that failed; `std::invalid_argument` for an unusable
    /// setting (such as a container URL that is not http(s)).
    asio::awaitable<timed_credentials> async_get();

private:
    enum class source_kind {
        explicit_keys,
        environment,
        assume_role,
        web_identity,
        credentials_file,
        config_file,
        container,
        instance_metadata
    };
    struct resolved {
        timed_credentials credentials;
        source_kind kind;
    };

    asio::awaitable<resolved> resolve(std::optional<source_kind> only);
    asio::awaitable<timed_credentials> from_web_identity(detail::web_identity_settings settings);
    asio::awaitable<timed_credentials> from_assume_role(detail::role_chain chain);
    asio::awaitable<timed_credentials> assume_role(std::string url, std::string region, detail::assume_role_step step,
                                                   aws_credentials source);
    /// One STS call: the request from `make` (built again for each of up to 3 attempts, when
    /// there is no answer or a 5xx), then the credentials of STS's answer to `action`. Errors
    /// start with `what`, name `url` and never quote a `hidden` text.
    asio::awaitable<timed_credentials> call_sts(std::function<metadata_request()> make, std::string action,
                                                std::string what, std::string url,
                                                std::vector<detail::hidden_text> hidden);
    /// "pipemode-" and the Unix time in milliseconds: the session name when none is configured.
    std::string default_session_name() const;
    asio::awaitable<std::optional<timed_credentials>> from_container(std::string& note);
    asio::awaitable<std::optional<timed_credentials>> from_instance_metadata(std::string& note);
    asio::awaitable<void> wait_for_refresh();
    void finish_refresh(std::exception_ptr failure);

    // Scope guards of the coroutines above. Declared here rather than inside the coroutines:
    // GCC 12 cannot mangle a class local to a coroutine when it writes a precompiled header.
    struct refresh_guard;  // ends an abandoned refresh so that its waiters do not wait for ever
    struct waiter_guard;   // takes a waiting coroutine's timer off the list, however it ends
    std::chrono::system_clock::time_point now() const;

    environment env_;
    metadata_fetcher fetch_;
    credentials_options options_;
    std::optional<resolved> cached_;
    bool refreshing_ = false;
    std::uint64_t generation_ = 0;           // completed refreshes, so waiters see "theirs" ended
    std::exception_ptr failure_;             // the last refresh's error, shared with its waiters
    std::chrono::system_clock::time_point next_attempt_{};
    std::vector<asio::steady_timer*> waiters_;  // coroutines waiting for the running refresh
};

} // namespace pipemode::s3

#include <pipemode/s3/impl/credentials.hpp>
