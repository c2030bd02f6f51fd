// pipemode: definitions for s3/credentials.hpp (included at its bottom).
#pragma once

#include <pipemode/s3/credentials.hpp>
#include <pipemode/detail/json.hpp>
#include <pipemode/s3/xml.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <span>
#include <system_error>

namespace pipemode::s3 {

namespace detail {

inline constexpr bool is_space(char c) noexcept
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

inline std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

// True for the text "true" in any case, as the AWS CLI reads boolean settings.
inline bool is_true(std::string_view s) noexcept { return iequals(trim(s), "true"); }

// Control characters in a value that goes into an HTTP header would split the header.
inline bool has_control_character(std::string_view s) noexcept
{
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == '\x7f')
            return true;
    return false;
}

/// One section of an AWS config or credentials file.
///
/// Top-level keys are lowercased (the CLI's INI reader does so); the keys of a nested block
/// (`s3 =` followed by indented `name = value` lines) are kept as written, as the CLI keeps them.
struct ini_section {
    std::map<std::string, std::string, std::less<>> values;
    std::map<std::string, std::map<std::string, std::string, std::less<>>, std::less<>> nested;

    /// A top-level value, or null.
    const std::string* find(std::string_view key) const
    {
        auto it = values.find(key);
        return it == values.end() ? nullptr : &it->second;
    }

    /// A value of the nested block `block`, or null.
    const std::string* find(std::string_view block, std::string_view key) const
    {
        auto b = nested.find(block);
        if (b == nested.end())
            return nullptr;
        auto it = b->second.find(key);
        return it == b->second.end() ? nullptr : &it->second;
    }
};

/// The sections of an INI file by name; "profile  x" is normalised to "profile x".
using ini_file = std::map<std::string, ini_section, std::less<>>;

/// Parses an AWS config or credentials file the way the AWS CLI does: `[section]` headers,
/// `name = value` (or `name: value`) settings, whole-line comments starting with '#' or ';',
/// indented lines continuing the previous setting (a nested block when its value was empty).
/// A later duplicate of a setting replaces the earlier one.
///
/// Throws `std::runtime_error` naming `what` (the file) and the line number, never the line's
/// text: a malformed line may hold a secret.
inline ini_file parse_ini(std::string_view text, std::string_view what)
{
    if (text.size() > max_settings_file_size)
        throw std::runtime_error(std::string(what) + " is larger than 1 MiB, too large for a settings file");
    if (text.substr(0, 3) == "\xEF\xBB\xBF")
        text.remove_prefix(3);
    ini_file out;
    ini_section* section = nullptr;
    std::string key;          // the setting that indented lines continue; empty when none
    bool block = false;       // that setting's value was empty: indented lines are a nested block
    std::size_t line_number = 0;
    auto fail = [&](std::string_view why) {
        return std::runtime_error(std::string(what) + ", line " + std::to_string(line_number) + ": "
                                  + std::string(why));
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos)
            eol = text.size();
        const std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        ++line_number;
        const std::string_view t = trim(line);
        if (t.empty() || t.front() == '#' || t.front() == ';')
            continue;
        if (is_space(line.front()) && section && !key.empty()) {
            if (block) {
                std::size_t eq = t.find('=');
                if (eq == std::string_view::npos)
                    throw fail("an indented line under '" + key + " =' must be 'name = value'");
                std::string_view name = trim(t.substr(0, eq));
                if (name.empty())
                    throw fail("a nested setting without a name");
                section->nested[key][std::string(name)] = std::string(trim(t.substr(eq + 1)));
                section->values.erase(key);
            } else {
                std::string& value = section->values[key];
                value += '\n';
                value.append(t);
            }
            continue;
        }
        if (t.front() == '[') {
            if (t.back() != ']')
                throw fail("a section header must end with ']'");
            std::string_view inner = trim(t.substr(1, t.size() - 2));
            if (inner.empty())
                throw fail("the section name is empty");
            std::string name;
            std::size_t space = 0;
            while (space < inner.size() && !is_space(inner[space]))
                ++space;
            name.assign(inner.substr(0, space));
            if (space < inner.size()) {
                name += ' ';
                name.append(trim(inner.substr(space)));
            }
            section = &out[name];
            key.clear();
            continue;
        }
        if (!section)
            throw fail("a setting before the first [section]");
        std::size_t d = t.find_first_of("=:");
        if (d == std::string_view::npos)
            throw fail("expected 'name = value'");
        std::string_view name = trim(t.substr(0, d));
        if (name.empty())
            throw fail("a setting without a name");
        key.clear();
        for (char c : name)
            key += ascii_lower(c);
        std::string_view value = trim(t.substr(d + 1));
        section->values[key] = std::string(value);
        section->nested.erase(key);
        block = value.empty();
    }
    return out;
}

/// The profile's section of a config file: `[profile NAME]`, or `[default]` (then
/// `[profile default]`) for "default"; null when absent.
inline const ini_section* config_profile(const ini_file& file, std::string_view profile)
{
    if (profile == "default")
        if (auto it = file.find("default"); it != file.end())
            return &it->second;
    auto it = file.find("profile " + std::string(profile));
    return it == file.end() ? nullptr : &it->second;
}

/// The profile's section of a shared credentials file: `[NAME]`; null when absent.
inline const ini_section* credentials_profile(const ini_file& file, std::string_view profile)
{
    auto it = file.find(profile);
    return it == file.end() ? nullptr : &it->second;
}

/// An environment variable's value, or nothing when it is unset or empty (as the CLI treats it).
inline std::optional<std::string> env_value(const environment& env, std::string_view name)
{
    auto v = env.get_env(name);
    if (!v || v->empty())
        return std::nullopt;
    return v;
}

/// The profile name and where it came from ("" when it is the default).
struct profile_choice {
    std::string name;
    std::string origin;
};

inline profile_choice choose_profile(const environment& env, std::string_view override_name)
{
    if (!override_name.empty())
        return {std::string(override_name), "the options"};
    if (auto v = env_value(env, "AWS_PROFILE"))
        return {*v, "AWS_PROFILE"};
    if (auto v = env_value(env, "AWS_DEFAULT_PROFILE"))
        return {*v, "AWS_DEFAULT_PROFILE"};
    return {"default", ""};
}

/// The path of a settings file: `variable` when set ("~/" expanded), else `~/.aws/NAME`;
/// empty when neither is known (no HOME).
inline std::string settings_path(const environment& env, std::string_view variable, std::string_view name)
{
    auto home = env_value(env, "HOME");
    auto under_home = [&](std::string_view rest) {
        std::string p = *home;
        if (p.back() != '/')
            p += '/';
        p.append(rest);
        return p;
    };
    if (auto v = env_value(env, variable)) {
        if (v->size() >= 2 && (*v)[0] == '~' && (*v)[1] == '/' && home)
            return under_home(std::string_view(*v).substr(2));
        return *v;
    }
    if (!home)
        return {};
    return under_home(".aws/" + std::string(name));
}

/// A settings file read and parsed: its path ("" when unknown) and contents (none when absent).
struct settings_file {
    std::string path;
    std::optional<ini_file> contents;

    /// "PATH", or "~/.aws/NAME (HOME is not set)" when there is no path.
    std::string describe(std::string_view name) const
    {
        return path.empty() ? "~/.aws/" + std::string(name) + " (HOME is not set)" : path;
    }
};

inline settings_file load_settings_file(const environment& env, std::string_view variable, std::string_view name,
                                        std::string_view kind)
{
    settings_file f;
    f.path = settings_path(env, variable, name);
    if (f.path.empty())
        return f;
    if (auto text = env.read_file(f.path))
        f.contents = parse_ini(*text, std::string(kind) + " " + f.path);
    return f;
}

/// Parses a URL from a setting, naming the setting on failure. A URL with an '@' anywhere is
/// refused without being repeated: it may hold a password, and one containing '/' or '?' would
/// hide the '@' from a look at the authority alone.
inline http_url parse_configured_url(std::string_view text, std::string_view origin)
{
    if (text.find('@') != std::string_view::npos)
        throw std::invalid_argument(std::string(origin)
                                    + " holds a URL with user information (user@host), which is not accepted: "
                                      "credentials belong in the AWS credential settings");
    try {
        return parse_http_url(text);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string(origin) + ": " + e.what());
    }
}

/// "PATH, profile 'NAME'": where a profile's settings in the config file are named in messages.
inline std::string profile_origin(const settings_file& config, std::string_view profile)
{
    return config.path + ", profile '" + std::string(profile) + "'";
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` (`section`, named
/// `where` in messages; null when the profile has no section), else "us-east-1". Throws
/// `std::invalid_argument` naming the setting when it is not a region name.
inline std::string configured_region(const environment& env, const ini_section* section, std::string_view where)
{
    std::string region;
    std::string origin;
    const std::string* in_profile = section ? section->find("region") : nullptr;
    if (auto v = env_value(env, "AWS_REGION")) {
        region = *v;
        origin = "AWS_REGION";
    } else if (auto d = env_value(env, "AWS_DEFAULT_REGION")) {
        region = *d;
        origin = "AWS_DEFAULT_REGION";
    } else if (in_profile && !in_profile->empty()) {
        region = *in_profile;
        origin = std::string(where) + ", setting 'region'";
    } else {
        region = "us-east-1";
    }
    try {
        (void)aws_endpoint(region);  // validates the name
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(origin + ": " + e.what());
    }
    return region;
}

/// The configured endpoint of `service` ("s3", "sts"), or nothing for AWS's own: the variable
/// `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, then from the profile (`section` of
/// `config`, named `where`): `endpoint_url` of `service` in its `[services NAME]` section, in
/// its own nested `service =` block, then its `endpoint_url`. None of them when
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (else the profile's `ignore_configured_endpoint_urls`)
/// is true. Throws `std::invalid_argument` naming the setting for an unusable URL.
inline std::optional<http_url> configured_endpoint(const environment& env, const settings_file& config,
                                                   const ini_section* section, std::string_view where,
                                                   std::string_view service)
{
    bool ignore_endpoints = false;
    const std::string* ignore_in_profile = section ? section->find("ignore_configured_endpoint_urls") : nullptr;
    if (auto v = env_value(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"))
        ignore_endpoints = is_true(*v);
    else if (ignore_in_profile && !ignore_in_profile->empty())
        ignore_endpoints = is_true(*ignore_in_profile);
    if (ignore_endpoints)
        return std::nullopt;
    std::string variable = "AWS_ENDPOINT_URL_";
    for (char c : service)
        variable += c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    if (auto v = env_value(env, variable))
        return parse_configured_url(*v, variable);
    if (auto g = env_value(env, "AWS_ENDPOINT_URL"))
        return parse_configured_url(*g, "AWS_ENDPOINT_URL");
    if (!section)
        return std::nullopt;
    // Service-specific before global, as the CLI orders them.
    const std::string* services = section->find("services");
    const ini_section* services_section = nullptr;
    if (services && config.contents)
        if (auto it = config.contents->find("services " + *services); it != config.contents->end())
            services_section = &it->second;
    const std::string* url = nullptr;
    std::string origin;
    const std::string name(service);
    if (services_section && (url = services_section->find(name, "endpoint_url")) && !url->empty())
        origin = config.path + ", [services " + *services + "] " + name + " endpoint_url";
    else if ((url = section->find(name, "endpoint_url")) && !url->empty())
        origin = std::string(where) + ", " + name + " endpoint_url";
    else if ((url = section->find("endpoint_url")) && !url->empty())
        origin = std::string(where) + ", setting 'endpoint_url'";
    if (origin.empty())
        return std::nullopt;
    return parse_configured_url(*url, origin);
}

/// The CA bundle: `AWS_CA_BUNDLE`, else the `ca_bundle` of the profile (`section`, named `where`).
inline std::optional<ca_bundle_setting> configured_ca_bundle(const environment& env, const ini_section* section,
                                                             std::string_view where)
{
    if (auto v = env_value(env, "AWS_CA_BUNDLE"))
        return ca_bundle_setting{*v, "AWS_CA_BUNDLE"};
    if (section)
        if (const std::string* path = section->find("ca_bundle"); path && !path->empty())
            return ca_bundle_setting{*path, std::string(where) + ", setting 'ca_bundle'"};
    return std::nullopt;
}

/// Parses an ISO 8601 time with a date, a time, optional fractional seconds and a UTC offset:
/// "2026-11-28T12:00:00Z", "2026-11-28T12:00:00.123+01:00". No locale is involved.
inline std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view s)
{
    using namespace std::chrono;
    std::size_t i = 0;
    auto digits = [&](std::size_t n, int& out) {
        if (s.size() - i < n)
            return false;
        out = 0;
        for (std::size_t k = 0; k < n; ++k) {
            char c = s[i + k];
            if (c < '0' || c > '9')
                return false;
            out = out * 10 + (c - '0');
        }
        i += n;
        return true;
    };
    auto literal = [&](char c) {
        if (i < s.size() && s[i] == c) {
            ++i;
            return true;
        }
        return false;
    };
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    if (!digits(4, y) || !literal('-') || !digits(2, mo) || !literal('-') || !digits(2, d))
        return std::nullopt;
    if (!literal('T') && !literal('t'))
        return std::nullopt;
    if (!digits(2, h) || !literal(':') || !digits(2, mi) || !literal(':') || !digits(2, sec))
        return std::nullopt;
    nanoseconds fraction{0};
    if (literal('.')) {
        std::size_t start = i;
        long long ns = 0;
        int kept = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            if (kept < 9) {
                ns = ns * 10 + (s[i] - '0');
                ++kept;
            }
            ++i;
        }
        if (i == start)
            return std::nullopt;
        for (; kept < 9; ++kept)
            ns *= 10;
        fraction = nanoseconds(ns);
    }
    minutes offset{0};
    if (!literal('Z') && !literal('z')) {
        if (i >= s.size() || (s[i] != '+' && s[i] != '-'))
            return std::nullopt;
        int sign = s[i] == '+' ? 1 : -1;
        ++i;
        int oh = 0, om = 0;
        if (!digits(2, oh))
            return std::nullopt;
        literal(':');
        if (!digits(2, om) || oh > 23 || om > 59)
            return std::nullopt;
        offset = minutes(sign * (oh * 60 + om));
    }
    if (i != s.size() || h > 23 || mi > 59 || sec > 60)
        return std::nullopt;
    const year_month_day date{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
    if (!date.ok())
        return std::nullopt;
    const auto t = sys_days{date} + hours{h} + minutes{mi} + seconds{sec} + fraction - offset;
    return time_point_cast<system_clock::duration>(t);
}

/// Renders a time as "2026-11-28T12:00:00Z" (whole seconds, UTC).
inline std::string format_iso8601(std::chrono::system_clock::time_point t)
{
    using namespace std::chrono;
    const auto day_start = floor<days>(t);
    const year_month_day date{day_start};
    const hh_mm_ss clock{floor<seconds>(t - day_start)};
    auto put = [](std::string& out, long long v, int width) {
        std::string d = std::to_string(v < 0 ? -v : v);
        if (v < 0)
            out += '-';
        out.append(d.size() < static_cast<std::size_t>(width) ? width - d.size() : 0, '0');
        out += d;
    };
    std::string out;
    put(out, static_cast<int>(date.year()), 4);
    out += '-';
    put(out, static_cast<unsigned>(date.month()), 2);
    out += '-';
    put(out, static_cast<unsigned>(date.day()), 2);
    out += 'T';
    put(out, clock.hours().count(), 2);
    out += ':';
    put(out, clock.minutes().count(), 2);
    out += ':';
    put(out, clock.seconds().count(), 2);
    out += 'Z';
    return out;
}

/// Reads the credentials document of the container and instance metadata services:
/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"[, "Code": "Success"]}`. On failure
/// returns nothing and sets `why` to a reason that never quotes the document.
inline std::optional<timed_credentials> parse_credentials_document(std::string_view body, std::string& why)
{
    namespace json = pipemode::detail::json;
    pipemode::detail::parse_error err;
    json::limits lim;
    lim.max_input = 64 * 1024;
    lim.max_depth = 8;
    auto doc = json::parse(body, err, lim);
    if (!doc) {
        why = "the response is not a JSON credentials document (" + err.to_string() + ")";
        return std::nullopt;
    }
    if (!doc->is_object()) {
        why = "the response is not a JSON object";
        return std::nullopt;
    }
    if (const auto* code = doc->find("Code"); code && !(code->is_string() && code->as_string() == "Success")) {
        why = "the response reports a failure (its Code is not \"Success\")";
        return std::nullopt;
    }
    auto member = [&](std::string_view name, bool required) -> std::optional<std::string> {
        const auto* v = doc->find(name);
        if (!v || (!required && v->is_null()))
            return std::string();
        if (!v->is_string() || has_control_character(v->as_string()))
            return std::nullopt;
        return v->as_string();
    };
    timed_credentials c;
    auto id = member("AccessKeyId", true);
    auto secret = member("SecretAccessKey", true);
    auto token = member("Token", false);
    auto expiration = member("Expiration", false);
    if (!id || id->empty()) {
        why = "the response has no usable AccessKeyId (a string without control characters)";
        return std::nullopt;
    }
    if (!secret || secret->empty()) {
        why = "the response has no usable SecretAccessKey (a string without control characters)";
        return std::nullopt;
    }
    if (!token) {
        why = "the response's Token is not a string without control characters";
        return std::nullopt;
    }
    if (!expiration) {
        why = "the response's Expiration is not a string";
        return std::nullopt;
    }
    if (!expiration->empty()) {
        c.expiration = parse_iso8601(*expiration);
        if (!c.expiration) {
            why = "the response's Expiration is not an ISO 8601 time such as 2026-11-28T12:00:00Z";
            return std::nullopt;
        }
    }
    c.credentials = {std::move(*id), std::move(*secret), std::move(*token)};
    return c;
}

/// Throws when a credential from `origin` would break the HTTP header it goes into. The
/// message names the field, never its value.
inline void check_credential_text(const aws_credentials& c, std::string_view origin)
{
    auto check = [&](const std::string& v, std::string_view field) {
        if (has_control_character(v))
            throw std::runtime_error(std::string(origin) + ": the " + std::string(field)
                                     + " contains a control character (a line break?)");
    };
    check(c.access_key_id, "access key id");
    check(c.secret_access_key, "secret access key");
    check(c.session_token, "session token");
}

/// Credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
/// AWS_CREDENTIAL_EXPIRATION; nothing (with `note` saying why) when none is set.
inline std::optional<timed_credentials> from_environment(const environment& env, std::string& note)
{
    auto id = env_value(env, "AWS_ACCESS_KEY_ID");
    auto secret = env_value(env, "AWS_SECRET_ACCESS_KEY");
    if (!id && !secret) {
        note = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set";
        return std::nullopt;
    }
    if (!secret)
        throw std::runtime_error("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or unset "
                                 "AWS_ACCESS_KEY_ID to use other credentials");
    if (!id)
        throw std::runtime_error("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both, or unset "
                                 "AWS_SECRET_ACCESS_KEY to use other credentials");
    timed_credentials c;
    c.credentials.access_key_id = std::move(*id);
    c.credentials.secret_access_key = std::move(*secret);
    if (auto token = env_value(env, "AWS_SESSION_TOKEN"))
        c.credentials.session_token = std::move(*token);
    else if (auto legacy = env_value(env, "AWS_SECURITY_TOKEN"))
        c.credentials.session_token = std::move(*legacy);
    if (auto e = env_value(env, "AWS_CREDENTIAL_EXPIRATION")) {
        c.expiration = parse_iso8601(*e);
        if (!c.expiration)
            throw std::runtime_error("AWS_CREDENTIAL_EXPIRATION is not an ISO 8601 time such as 2026-11-28T12:00:00Z");
    }
    check_credential_text(c.credentials, "the credentials in the environment");
    c.source = "environment";
    return c;
}

/// Credentials from a profile's section of the credentials or config file; nothing (with `note`
/// saying why) when the section is absent or holds no key. Throws for a key id without its
/// secret (or the reverse), and for a profile that gets credentials in a way pipemode does not
/// support, rather than fall through to other credentials.
inline std::optional<timed_credentials> from_profile(const settings_file& file, const ini_section* section,
                                                     std::string_view file_name, std::string_view profile,
                                                     std::string_view source_name, std::string& note)
{
    const std::string where = "profile '" + std::string(profile) + "' in " + file.describe(file_name);
    if (!file.contents) {
        note = file.describe(file_name) + (file.path.empty() ? "" : " does not exist");
        return std::nullopt;
    }
    if (!section) {
        note = file.describe(file_name) + " has no profile '" + std::string(profile) + "'";
        return std::nullopt;
    }
    auto get = [&](std::string_view key) -> std::string {
        const std::string* v = section->find(key);
        return v ? *v : std::string();
    };
    std::string id = get("aws_access_key_id");
    std::string secret = get("aws_secret_access_key");
    if (id.empty() && secret.empty()) {
        if (file_name == "credentials")
            for (std::string_view key : {"role_arn", "web_identity_token_file", "source_profile", "credential_source"})
                if (section->find(key))
                    throw std::runtime_error(where + " has '" + std::string(key) + "', which pipemode reads only in "
                                             "the config file: move the profile's role settings to its "
                                             + (profile == "default" ? std::string("[default]")
                                                                     : "[profile " + std::string(profile) + "]")
                                             + " section there");
        for (std::string_view key : {"role_arn", "credential_process", "sso_session", "sso_start_url",
                                     "web_identity_token_file"})
            if (section->find(key))
                throw std::runtime_error(where + " gets its credentials through '" + std::string(key)
                                         + "', which pipemode does not support: export them first (for example "
                                           "with 'aws configure export-credentials --format env') or use a profile "
                                           "with aws_access_key_id and aws_secret_access_key");
        note = where + " has no aws_access_key_id";
        return std::nullopt;
    }
    if (secret.empty())
        throw std::runtime_error(where + " has aws_access_key_id but no aws_secret_access_key");
    if (id.empty())
        throw std::runtime_error(where + " has aws_secret_access_key but no aws_access_key_id");
    timed_credentials c;
    c.credentials.access_key_id = std::move(id);
    c.credentials.secret_access_key = std::move(secret);
    c.credentials.session_token = get("aws_session_token");
    if (c.credentials.session_token.empty())
        c.credentials.session_token = get("aws_security_token");
    check_credential_text(c.credentials, where);
    c.source = std::string(source_name) + " (profile " + std::string(profile) + ")";
    return c;
}

// The hosts to which container credentials may be fetched over plain http: loopback and the
// link-local addresses of ECS and EKS Pod Identity, none of which leaves the machine.
inline bool is_allowed_container_host(std::string_view host) noexcept
{
    if (host == "localhost" || host == "[::1]" || host == "169.254.170.2" || host == "169.254.170.23"
        || host == "[fd00:ec2::23]")
        return true;
    return host.substr(0, 4) == "127." && looks_like_ipv4(host);
}

// An IAM role name as IAM allows it, and never "." or "..", since it becomes a path segment.
inline bool is_valid_role_name(std::string_view name) noexcept
{
    if (name.empty() || name.size() > 128 || name.find_first_not_of('.') == std::string_view::npos)
        return false;
    for (char c : name)
        if (!(is_alnum(c) || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == '_' || c == '-'))
            return false;
    return true;
}

// Requests are built by this plain function and held in named variables: GCC 12 miscompiles
// aggregate temporaries inside co_await expressions (destroying them twice) and rejects
// brace-initialised pairs of string literals inside a coroutine.
inline metadata_request make_request(std::string method, std::string url,
                                     std::vector<std::pair<std::string, std::string>> headers,
                                     std::chrono::milliseconds timeout)
{
    metadata_request r;
    r.method = std::move(method);
    r.url = std::move(url);
    r.headers = std::move(headers);
    r.timeout = timeout;
    return r;
}

/// A web identity configuration: the role to assume, the file that holds the token, the
/// session name, and the STS endpoint to ask, with the names of their settings for messages.
/// The token itself is read from `token_file` at every fetch: EKS rotates it.
struct web_identity_settings {
    std::string role_arn;
    std::string token_file;
    std::string session_name;         // empty: "pipemode-<unix time in ms>" at every fetch
    std::string token_file_setting;   // "AWS_WEB_IDENTITY_TOKEN_FILE" or the profile's setting
    std::string url;                  // where AssumeRoleWithWebIdentity is POSTed
};

// An STS role session name: 2 to 64 of letters, digits and _+=,.@-.
inline bool is_valid_role_session_name(std::string_view name) noexcept
{
    if (name.size() < 2 || name.size() > 64)
        return false;
    for (char c : name)
        if (!(is_alnum(c) || c == '_' || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == '-'))
            return false;
    return true;
}

/// Throws `std::invalid_argument` naming `setting` when `arn` cannot be a role ARN.
inline void check_role_arn(std::string_view arn, std::string_view setting)
{
    if (arn.size() > 2048 || has_control_character(arn))
        throw std::invalid_argument(std::string(setting) + " is not a role ARN (longer than 2048 characters, or "
                                                           "with a control character)");
}

/// Throws `std::invalid_argument` naming `setting` when `name`, if set, is not a session name.
inline void check_role_session_name(std::string_view name, std::string_view setting)
{
    if (!name.empty() && !is_valid_role_session_name(name))
        throw std::invalid_argument(std::string(setting)
                                    + " must be 2 to 64 characters among letters, digits and _+=,.@-");
}

/// STS's URL for a profile: its configured `sts` endpoint (a URL without a path gets "/"),
/// else `https://sts.REGION.amazonaws.com/`.
inline std::string sts_url(const environment& env, const settings_file& config, const ini_section* section,
                           std::string_view where, std::string_view region)
{
    if (auto endpoint = configured_endpoint(env, config, section, where, "sts")) {
        if (endpoint->path.empty())
            endpoint->path = "/";
        return endpoint->to_string();
    }
    return "https://sts." + std::string(region) + ".amazonaws.com/";
}

/// The web identity configuration of the environment (`AWS_ROLE_ARN`,
/// `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_SESSION_NAME`), else of the profile's section of
/// the config file (`role_arn`, `web_identity_token_file`, `role_session_name`); nothing (with
/// `note` saying why) when neither configures it. The region and the STS endpoint come from
/// the same settings as S3's (`AWS_ENDPOINT_URL_STS` and the profile's `sts` endpoint instead
/// of S3's).
///
/// Throws `std::runtime_error` naming the missing setting when only one of the role and the
/// token file is set, and `std::invalid_argument` for an unusable role ARN, session name,
/// region or endpoint. Reads no token.
inline std::optional<web_identity_settings> find_web_identity(const environment& env, const settings_file& config,
                                                              const ini_section* section, std::string_view profile,
                                                              std::string& note)
{
    const std::string where = profile_origin(config, profile);
    web_identity_settings w;
    std::string role_setting;
    std::string session_setting;
    auto role = env_value(env, "AWS_ROLE_ARN");
    auto file = env_value(env, "AWS_WEB_IDENTITY_TOKEN_FILE");
    if (role && !file)
        throw std::runtime_error("AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not: set both for web "
                                 "identity federation, or unset AWS_ROLE_ARN to use other credentials");
    if (file && !role)
        throw std::runtime_error("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: set both for web "
                                 "identity federation, or unset AWS_WEB_IDENTITY_TOKEN_FILE to use other credentials");
    if (role) {
        w.role_arn = std::move(*role);
        w.token_file = std::move(*file);
        w.session_name = env_value(env, "AWS_ROLE_SESSION_NAME").value_or("");
        role_setting = "AWS_ROLE_ARN";
        w.token_file_setting = "AWS_WEB_IDENTITY_TOKEN_FILE";
        session_setting = "AWS_ROLE_SESSION_NAME";
    } else {
        const std::string not_set = "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set";
        if (!section) {
            note = not_set;
            return std::nullopt;
        }
        auto get = [&](std::string_view key) -> std::string {
            const std::string* v = section->find(key);
            return v ? *v : std::string();
        };
        w.role_arn = get("role_arn");
        w.token_file = get("web_identity_token_file");
        if (w.role_arn.empty() && w.token_file.empty()) {
            note = not_set + ", and " + where + " has no web_identity_token_file";
            return std::nullopt;
        }
        if (w.role_arn.empty())
            throw std::runtime_error(where + " has web_identity_token_file but no role_arn: set both for web identity "
                                     "federation");
        if (w.token_file.empty()) {
            // Another way to assume the role: the assumed-role source's, not web identity's.
            if (section->find("source_profile") || section->find("credential_source")) {
                note = not_set + ", and " + where + " assumes its role from another source, not a web identity";
                return std::nullopt;
            }
            throw std::runtime_error(where + " has role_arn but none of web_identity_token_file, source_profile and "
                                     "credential_source: set web_identity_token_file for web identity federation, or "
                                     "source_profile or credential_source to assume the role from other credentials");
        }
        w.session_name = get("role_session_name");
        role_setting = where + ", setting 'role_arn'";
        w.token_file_setting = where + ", setting 'web_identity_token_file'";
        session_setting = where + ", setting 'role_session_name'";
    }
    check_role_arn(w.role_arn, role_setting);
    check_role_session_name(w.session_name, session_setting);

    const std::string region = configured_region(env, section, where);
    w.url = sts_url(env, config, section, where, region);
    return w;
}

/// The STS `AssumeRoleWithWebIdentity` request: an unsigned form POST (the token is the proof).
inline metadata_request web_identity_request(const web_identity_settings& w, std::string_view session_name,
                                             std::string_view token, std::chrono::milliseconds timeout)
{
    metadata_request r;
    r.method = "POST";
    r.url = w.url;
    r.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
    r.timeout = timeout;
    std::vector<std::pair<std::string, std::string>> form;
    form.emplace_back("Action", "AssumeRoleWithWebIdentity");
    form.emplace_back("Version", "2011-06-15");
    form.emplace_back("RoleArn", w.role_arn);
    form.emplace_back("RoleSessionName", std::string(session_name));
    form.emplace_back("WebIdentityToken", std::string(token));
    r.body = encode_query(form);
    return r;
}

/// How long one STS call may take: STS is a remote service, not a link-local metadata endpoint.
inline constexpr std::chrono::milliseconds sts_timeout{10000};

/// Bounds for STS's answers, which are a few hundred bytes of shallow XML.
inline xml::limits sts_document_limits() noexcept
{
    xml::limits lim;
    lim.max_input = 64 * 1024;
    lim.max_depth = 8;
    lim.max_elements = 256;
    return lim;
}

/// Reads the credentials of the answer to STS's `action` ("AssumeRoleWithWebIdentity",
/// "AssumeRole"): `ACTIONResponse/ACTIONResult/Credentials`. On failure returns nothing and sets
/// `why` to a reason that never quotes the document.
inline std::optional<timed_credentials> parse_sts_credentials(std::string_view body, std::string_view action,
                                                              std::string& why)
{
    xml::parse_error err;
    auto root = xml::parse(body, err, sts_document_limits());
    if (!root) {
        why = "the response is not an XML document (" + err.to_string() + ")";
        return std::nullopt;
    }
    const std::string response_name = std::string(action) + "Response";
    const std::string result_name = std::string(action) + "Result";
    const xml::element* credentials = nullptr;
    if (root->name == response_name)
        if (const xml::element* result = root->child(result_name))
            credentials = result->child("Credentials");
    if (!credentials) {
        why = "the response has no " + response_name + "/" + result_name + "/Credentials";
        return std::nullopt;
    }
    auto field = [&](std::string_view name) -> std::optional<std::string> {
        auto text = credentials->child_text(name);
        if (!text)
            return std::nullopt;
        const std::string_view t = trim(*text);
        if (t.empty() || has_control_character(t))
            return std::nullopt;
        return std::string(t);
    };
    timed_credentials c;
    auto id = field("AccessKeyId");
    auto secret = field("SecretAccessKey");
    auto token = field("SessionToken");
    auto expiration = field("Expiration");
    for (auto [value, name] : {std::pair{&id, "AccessKeyId"}, std::pair{&secret, "SecretAccessKey"},
                               std::pair{&token, "SessionToken"}, std::pair{&expiration, "Expiration"}})
        if (!*value) {
            why = std::string("the response's Credentials have no usable ") + name
                + " (a non-empty text without control characters)";
            return std::nullopt;
        }
    c.expiration = parse_iso8601(*expiration);
    if (!c.expiration) {
        why = "the response's Expiration is not an ISO 8601 time such as 2026-11-28T12:00:00Z";
        return std::nullopt;
    }
    c.credentials = {std::move(*id), std::move(*secret), std::move(*token)};
    return c;
}

/// A text an STS error message must not quote, and how a message names it when it does.
struct hidden_text {
    std::string_view text;
    std::string_view name;  // "the web identity token"
};

/// The error of a failed STS call, "HTTP 403 (AccessDenied: Not authorized...)", from its
/// `ErrorResponse/Error/{Code,Message}` document when it has one. STS's message is left out
/// when it quotes any part of a `hidden` text (the whole text, or a dot-separated part of 8
/// characters or more, as a JWT has); control characters and excess length are cut.
inline std::string describe_sts_error(unsigned status, std::string_view body, std::span<const hidden_text> hidden)
{
    std::string out = "HTTP " + std::to_string(status);
    xml::parse_error err;
    auto root = xml::parse(body, err, sts_document_limits());
    const xml::element* error = root && root->name == "ErrorResponse" ? root->child("Error") : nullptr;
    if (!error)
        return out;
    std::string code(trim(error->child_text("Code").value_or("")));
    if (code.size() > 128 || code.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
                                 != std::string::npos)
        code = "an unreadable error code";
    std::string message(trim(error->child_text("Message").value_or("")));
    for (const hidden_text& h : hidden) {
        const std::string_view token = h.text;
        bool quotes_token = !token.empty() && message.find(token) != std::string::npos;
        for (std::size_t begin = 0; !quotes_token && begin < token.size();) {
            std::size_t end = std::min(token.find('.', begin), token.size());
            if (end - begin >= 8 && message.find(token.substr(begin, end - begin)) != std::string::npos)
                quotes_token = true;
            begin = end + 1;
        }
        if (quotes_token) {
            message = "(STS's message is left out: it quotes " + std::string(h.name) + ")";
            break;
        }
    }
    for (char& c : message)
        if (static_cast<unsigned char>(c) < 0x20 || c == '\x7f')
            c = ' ';
    if (message.size() > 512)
        message = message.substr(0, 512) + "...";
    if (code.empty() && message.empty())
        return out;
    out += " (";
    out += code.empty() ? "no error code" : code;
    if (!message.empty())
        out += ": " + message;
    out += ')';
    return out;
}

/// The longest chain of roles assumed one from another (`source_profile` naming a profile
/// that itself assumes a role), counting the chosen profile's own role.
inline constexpr std::size_t max_role_chain = 8;

/// Where the first role of a chain gets the credentials that sign its `AssumeRole` call.
enum class role_source {
    profile_keys,       // a source profile's aws_access_key_id and aws_secret_access_key
    web_identity,       // a source profile's role_arn and web_identity_token_file
    environment,        // credential_source = Environment
    instance_metadata,  // credential_source = Ec2InstanceMetadata
    container,          // credential_source = EcsContainer
};

/// One role to assume with STS `AssumeRole`, as a profile of the config file configures it.
struct assume_role_step {
    std::string profile;          // the profile with the role_arn
    std::string role_arn;
    std::string session_name;     // empty: "pipemode-<unix time in ms>" at every fetch
    std::string external_id;      // empty: none; kept out of messages
    std::uint32_t duration_seconds = 0;  // 0: STS's default (one hour)
    std::string source;           // what signs the call, for `timed_credentials::source`: "profile 'base'"
};

/// A chosen profile's role and what it is assumed from: the base credentials, then each role
/// in turn with the credentials of the one before.
struct role_chain {
    role_source base = role_source::profile_keys;
    std::optional<timed_credentials> keys;             // profile_keys: read with the settings
    std::optional<web_identity_settings> web_identity;  // web_identity
    std::vector<assume_role_step> roles;  // roles.front() is assumed from the base, roles.back() is the chosen profile's
    std::string url;                      // where AssumeRole is POSTed
    std::string region;                   // the region the calls are signed for
};

inline bool has_static_keys(const ini_section* section)
{
    if (!section)
        return false;
    for (std::string_view key : {"aws_access_key_id", "aws_secret_access_key"})
        if (const std::string* v = section->find(key); v && !v->empty())
            return true;
    return false;
}

inline bool has_setting(const ini_section* section, std::string_view key)
{
    const std::string* v = section ? section->find(key) : nullptr;
    return v && !v->empty();
}

/// True when `section` assumes a role from another profile or source (rather than with a web
/// identity token).
inline bool is_role_profile(const ini_section* section)
{
    return has_setting(section, "role_arn") && !has_setting(section, "web_identity_token_file")
        && (has_setting(section, "source_profile") || has_setting(section, "credential_source"));
}

// An STS external id: 2 to 1224 of letters, digits and _+=,.@:/-.
inline bool is_valid_external_id(std::string_view id) noexcept
{
    if (id.size() < 2 || id.size() > 1224)
        return false;
    for (char c : id)
        if (!(is_alnum(c) || c == '_' || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == ':'
              || c == '/' || c == '-'))
            return false;
    return true;
}

/// The role settings of a role profile (`section`, named `where`), checked. Messages name the
/// setting at fault, never the external id.
inline assume_role_step read_role_step(const ini_section& section, std::string_view profile, std::string_view where)
{
    auto get = [&](std::string_view key) -> std::string {
        const std::string* v = section.find(key);
        return v ? *v : std::string();
    };
    const std::string w(where);
    assume_role_step step;
    step.profile = std::string(profile);
    step.role_arn = get("role_arn");
    check_role_arn(step.role_arn, w + ", setting 'role_arn'");
    if (has_setting(&section, "source_profile") && has_setting(&section, "credential_source"))
        throw std::runtime_error(w + " has both source_profile and credential_source: keep the one that says where "
                                     "the credentials that assume role " + step.role_arn + " come from");
    if (has_setting(&section, "mfa_serial"))
        throw std::runtime_error(w + " has mfa_serial, which pipemode does not support (it cannot ask for an MFA "
                                     "code): export the role's credentials first (for example with 'aws configure "
                                     "export-credentials --format env')");
    step.session_name = get("role_session_name");
    check_role_session_name(step.session_name, w + ", setting 'role_session_name'");
    step.external_id = get("external_id");
    if (!step.external_id.empty() && !is_valid_external_id(step.external_id))
        throw std::invalid_argument(w + ", setting 'external_id' must be 2 to 1224 characters among letters, "
                                        "digits and _+=,.@:/-");
    const std::string duration(trim(get("duration_seconds")));
    if (!duration.empty()) {
        const bool digits = duration.size() <= 5 && duration.find_first_not_of("0123456789") == std::string::npos;
        const unsigned long value = digits ? std::stoul(duration) : 0;
        if (!digits || value < 900 || value > 43200)
            throw std::invalid_argument(w + ", setting 'duration_seconds' must be a whole number of seconds from "
                                            "900 to 43200");
        step.duration_seconds = static_cast<std::uint32_t>(value);
    }
    return step;
}

/// The web identity of a source profile (its own `role_arn` and `web_identity_token_file`,
/// not the environment's), asked at `url`.
inline web_identity_settings source_web_identity(const ini_section& section, std::string_view where, std::string url)
{
    const std::string w(where);
    web_identity_settings s;
    s.role_arn = *section.find("role_arn");
    s.token_file = *section.find("web_identity_token_file");
    if (const std::string* name = section.find("role_session_name"))
        s.session_name = *name;
    s.token_file_setting = w + ", setting 'web_identity_token_file'";
    s.url = std::move(url);
    check_role_arn(s.role_arn, w + ", setting 'role_arn'");
    check_role_session_name(s.session_name, w + ", setting 'role_session_name'");
    return s;
}

/// "a -> b -> c": profile names in the order one names the next as its source_profile.
inline std::string profile_path(const std::vector<std::string>& names)
{
    std::string out;
    for (const std::string& n : names) {
        if (!out.empty())
            out += " -> ";
        out += "'" + n + "'";
    }
    return out;
}

/// The role chain of the chosen profile (`section` of the config file) when it assumes a role
/// with `source_profile` or `credential_source`; nothing (with `note` saying why) otherwise.
///
/// A source profile gives its static keys when it has some (shared credentials file first,
/// then config file), else its web identity, else its own role, assumed in turn; a cycle, a
/// chain longer than `max_role_chain` roles, a missing source profile, a source profile without
/// credentials and both source settings in one profile are errors naming the profiles. The
/// region and STS endpoint are the chosen profile's, for every call of the chain.
inline std::optional<role_chain> find_assume_role(const environment& env, const settings_file& credentials,
                                                  const settings_file& config, const ini_section* section,
                                                  std::string_view profile, std::string& note)
{
    const std::string chosen_where = profile_origin(config, profile);
    if (!is_role_profile(section)) {
        note = config.contents ? (section ? chosen_where + " has no role_arn with source_profile or credential_source"
                                          : config.describe("config") + " has no profile '" + std::string(profile) + "'")
                               : config.describe("config") + (config.path.empty() ? "" : " does not exist");
        return std::nullopt;
    }
    role_chain chain;
    chain.region = configured_region(env, section, chosen_where);
    chain.url = sts_url(env, config, section, chosen_where, chain.region);

    std::vector<std::string> visited{std::string(profile)};
    std::string name(profile);
    const ini_section* current = section;
    for (;;) {
        const std::string where = profile_origin(config, name);
        assume_role_step step = read_role_step(*current, name, where);
        if (const std::string* kind = current->find("credential_source"); kind && !kind->empty()) {
            if (*kind == "Environment")
                chain.base = role_source::environment;
            else if (*kind == "Ec2InstanceMetadata")
                chain.base = role_source::instance_metadata;
            else if (*kind == "EcsContainer")
                chain.base = role_source::container;
            else
                throw std::invalid_argument(where + ", setting 'credential_source' must be Environment, "
                                                    "Ec2InstanceMetadata or EcsContainer");
            step.source = "credential_source " + *kind;
            chain.roles.push_back(std::move(step));
            break;
        }
        const std::string source = std::string(trim(*current->find("source_profile")));
        step.source = "profile '" + source + "'";
        chain.roles.push_back(std::move(step));
        const ini_section* in_credentials =
            credentials.contents ? credentials_profile(*credentials.contents, source) : nullptr;
        const ini_section* in_config = config.contents ? config_profile(*config.contents, source) : nullptr;
        const std::string named = where + " names source_profile '" + source + "'";
        if (!in_credentials && !in_config)
            throw std::runtime_error(named + ", which is in neither " + credentials.describe("credentials") + " nor "
                                     + config.describe("config"));
        // A source profile's own keys win over its own role settings: the role is its own
        // profile's, assumed only when that profile is the one chosen.
        std::string unused;
        if (has_static_keys(in_credentials)) {
            chain.keys = from_profile(credentials, in_credentials, "credentials", source, "shared credentials file", unused);
            break;
        }
        if (has_static_keys(in_config)) {
            chain.keys = from_profile(config, in_config, "config", source, "config file", unused);
            break;
        }
        if (has_setting(in_config, "role_arn") && has_setting(in_config, "web_identity_token_file")) {
            chain.base = role_source::web_identity;
            chain.web_identity = source_web_identity(*in_config, profile_origin(config, source), chain.url);
            break;
        }
        if (!is_role_profile(in_config)) {
            for (std::string_view key : {"credential_process", "sso_session", "sso_start_url"})
                if (has_setting(in_credentials, key) || has_setting(in_config, key))
                    throw std::runtime_error(named + ", which gets its credentials through '" + std::string(key)
                                             + "', which pipemode does not support: export them first (for example "
                                               "with 'aws configure export-credentials --format env') or give '"
                                             + source + "' aws_access_key_id and aws_secret_access_key");
            throw std::runtime_error(named + ", which has no credentials: give it aws_access_key_id and "
                                             "aws_secret_access_key, role_arn and web_identity_token_file, or a role "
                                             "of its own (role_arn with source_profile or credential_source)");
        }
        visited.push_back(source);
        if (std::find(visited.begin(), visited.end() - 1, source) != visited.end() - 1)
            throw std::runtime_error("the source_profile settings of " + config.describe("config")
                                     + " form a cycle: " + profile_path(visited));
        if (chain.roles.size() >= max_role_chain)
            throw std::runtime_error("the source_profile settings of " + config.describe("config") + " chain more than "
                                     + std::to_string(max_role_chain) + " roles: " + profile_path(visited));
        name = source;
        current = in_config;
    }
    std::reverse(chain.roles.begin(), chain.roles.end());
    return chain;
}

/// True when the chosen profile of the config file assumes its role from the environment's
/// keys (`credential_source = Environment`), which then sign that call instead of being used
/// directly. A config file that cannot be read or parsed is "no": the chain reports it later.
inline bool assumes_role_from_environment(const environment& env, std::string_view profile)
{
    try {
        const settings_file config = load_settings_file(env, "AWS_CONFIG_FILE", "config", "the config file");
        const ini_section* section = config.contents ? config_profile(*config.contents, profile) : nullptr;
        const std::string* kind = section ? section->find("credential_source") : nullptr;
        return is_role_profile(section) && kind && *kind == "Environment" && !has_setting(section, "source_profile");
    } catch (const std::exception&) {
        return false;
    }
}

/// The STS `AssumeRole` request for `step`, signed with SigV4 for service "sts" in `region`
/// with the `source` credentials at `now`: a form POST whose body is signed too.
inline metadata_request assume_role_request(const std::string& url, const std::string& region,
                                            const assume_role_step& step, std::string_view session_name,
                                            const aws_credentials& source, std::chrono::system_clock::time_point now,
                                            std::chrono::milliseconds timeout)
{
    std::vector<std::pair<std::string, std::string>> form;
    form.emplace_back("Action", "AssumeRole");
    form.emplace_back("Version", "2011-06-15");
    form.emplace_back("RoleArn", step.role_arn);
    form.emplace_back("RoleSessionName", std::string(session_name));
    if (!step.external_id.empty())
        form.emplace_back("ExternalId", step.external_id);
    if (step.duration_seconds != 0)
        form.emplace_back("DurationSeconds", std::to_string(step.duration_seconds));

    metadata_request r;
    r.method = "POST";
    r.url = url;
    r.timeout = timeout;
    r.body = encode_query(form);
    r.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");

    const http_url u = parse_http_url(url);
    signing_request s;
    s.method = "POST";
    s.host = u.authority();
    s.path = u.path.empty() ? "/" : u.path;
    s.headers = r.headers;
    s.payload_sha256 = sha256_hex(r.body);
    for (auto& field : sign_request(s, source, region, "sts", sigv4_rules::generic, now).fields())
        r.headers.push_back(std::move(field));
    return r;
}

inline bool is_cancellation(const std::exception_ptr& e)
{
    if (!e)
        return false;
    try {
        std::rethrow_exception(e);
    } catch (const boost::system::system_error& s) {
        return s.code() == asio::error::operation_aborted;
    } catch (...) {
        return false;
    }
}

} // namespace detail

inline environment environment::process()
{
    environment env;
    env.get_env = [](std::string_view name) -> std::optional<std::string> {
        const char* v = std::getenv(std::string(name).c_str());
        if (!v)
            return std::nullopt;
        return std::string(v);
    };
    env.read_file = [](const std::string& path) -> std::optional<std::string> {
        namespace fs = std::filesystem;
        std::error_code ec;
        const fs::file_status st = fs::status(path, ec);
        if (st.type() == fs::file_type::not_found)
            return std::nullopt;
        if (ec)
            throw std::runtime_error("cannot read " + path + ": " + ec.message());
        // AWS_CONFIG_FILE=/dev/null is the usual way to say "no config file": the AWS CLI
        // reads it as empty, and so does pipemode. Other character devices and FIFOs could
        // block or never end.
        if (st.type() == fs::file_type::character && fs::canonical(path, ec) == "/dev/null")
            return std::string();
        if (st.type() != fs::file_type::regular)
            throw std::runtime_error(path + " is not a regular file");
        std::ifstream in(path, std::ios::binary);
        if (!in)
            throw std::runtime_error("cannot open " + path);
        std::string data;
        char buffer[16384];
        // Read one byte past the limit, so a file that grew after the status check is refused too.
        while (data.size() <= max_settings_file_size) {
            in.read(buffer, sizeof buffer);
            data.append(buffer, static_cast<std::size_t>(in.gcount()));
            if (!in)
                break;
        }
        if (in.bad())
            throw std::runtime_error("cannot read " + path);
        if (data.size() > max_settings_file_size)
            throw std::runtime_error(path + " is larger than 1 MiB, too large for a settings file");
        return data;
    };
    return env;
}

inline s3_settings resolve_settings(const environment& env, std::string_view profile_override)
{
    const auto profile = detail::choose_profile(env, profile_override);
    s3_settings out;
    out.profile = profile.name;
    const auto config = detail::load_settings_file(env, "AWS_CONFIG_FILE", "config", "the config file");
    const detail::ini_section* section = config.contents ? detail::config_profile(*config.contents, profile.name) : nullptr;
    const std::string where = detail::profile_origin(config, profile.name);
    out.region = detail::configured_region(env, section, where);
    out.endpoint = detail::configured_endpoint(env, config, section, where, "s3");
    if (section)
        if (const std::string* style = section->find("s3", "addressing_style")) {
            if (*style == "path")
                out.addressing_style = addressing::path;
            else if (*style == "virtual")
                out.addressing_style = addressing::virtual_hosted;
            else if (*style != "auto")
                throw std::invalid_argument(where + ": s3 addressing_style must be path, virtual or auto");
        }
    out.ca_bundle = detail::configured_ca_bundle(env, section, where);
    return out;
}

inline std::optional<ca_bundle_setting> resolve_ca_bundle(const environment& env, std::string_view profile_override)
{
    // The variable wins, and then the config file is not even read (it may be absent or, on a
    // machine set up only through the environment, unreadable).
    if (auto v = detail::env_value(env, "AWS_CA_BUNDLE"))
        return ca_bundle_setting{*v, "AWS_CA_BUNDLE"};
    const auto profile = detail::choose_profile(env, profile_override);
    const auto config = detail::load_settings_file(env, "AWS_CONFIG_FILE", "config", "the config file");
    const detail::ini_section* section = config.contents ? detail::config_profile(*config.contents, profile.name) : nullptr;
    return detail::configured_ca_bundle(env, section, detail::profile_origin(config, profile.name));
}

inline void check_ca_bundle(const ca_bundle_setting& bundle)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(bundle.path, ec);
    if (st.type() == fs::file_type::not_found)
        throw std::invalid_argument(bundle.origin + " names the CA bundle '" + bundle.path
                                    + "', which does not exist: give the path of a PEM file of CA certificates");
    if (ec)
        throw std::invalid_argument(bundle.origin + " names the CA bundle '" + bundle.path + "', which cannot be used: "
                                    + ec.message());
    if (st.type() == fs::file_type::directory)
        throw std::invalid_argument(bundle.origin + " names '" + bundle.path
                                    + "', a directory: give the path of a PEM file of CA certificates");
}

inline credentials_provider::credentials_provider(aws_credentials credentials)
{
    if (credentials.access_key_id.empty() || credentials.secret_access_key.empty())
        throw std::invalid_argument("explicit AWS credentials need both an access key id and a secret access key");
    try {
        detail::check_credential_text(credentials, "the explicit credentials");
    } catch (const std::runtime_error& e) {
        throw std::invalid_argument(e.what());
    }
    cached_ = resolved{timed_credentials{std::move(credentials), std::nullopt, "explicit"}, source_kind::explicit_keys};
}

inline credentials_provider::credentials_provider(environment env, metadata_fetcher fetch, credentials_options options)
    : env_(std::move(env)), fetch_(std::move(fetch)), options_(std::move(options))
{
    if (!env_.get_env || !env_.read_file)
        throw std::invalid_argument("the credentials environment needs both get_env and read_file "
                                    "(environment::process() is the process's own)");
}

inline std::chrono::system_clock::time_point credentials_provider::now() const
{
    return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

struct credentials_provider::refresh_guard {
    credentials_provider* self;
    bool armed = true;
    ~refresh_guard()
    {
        if (armed)
            self->finish_refresh(nullptr);
    }
};

struct credentials_provider::waiter_guard {
    std::vector<asio::steady_timer*>& list;
    asio::steady_timer* timer;
    ~waiter_guard() { std::erase(list, timer); }
};

inline asio::awaitable<timed_credentials> credentials_provider::async_get()
{
    auto usable = [this](std::chrono::system_clock::time_point t) {
        return cached_ && (!cached_->credentials.expiration || t < *cached_->credentials.expiration);
    };
    for (;;) {
        const auto t = now();
        if (cached_) {
            const auto& expiration = cached_->credentials.expiration;
            if (!expiration || t < *expiration - credentials_refresh_window)
                co_return cached_->credentials;
            // Still valid: no need to wait for a refresh someone else runs, nor to retry at once.
            if (t < *expiration && (refreshing_ || t < next_attempt_))
                co_return cached_->credentials;
        }
        if (!refreshing_)
            break;
        const std::uint64_t generation = generation_;
        co_await wait_for_refresh();
        // Share the outcome of the refresh that was waited for instead of repeating it.
        if (generation_ != generation && failure_ && !usable(now()))
            std::rethrow_exception(failure_);
    }

    refreshing_ = true;
    // If this coroutine is destroyed while suspended, the waiters must not wait forever.
    refresh_guard guard{this};
    std::optional<resolved> fresh;
    std::exception_ptr failure;
    try {
        std::optional<source_kind> only;
        if (cached_)
            only = cached_->kind;  // refresh from the source that gave the credentials
        fresh = co_await resolve(only);
    } catch (...) {
        failure = std::current_exception();
    }
    guard.armed = false;
    if (fresh)
        cached_ = std::move(*fresh);
    finish_refresh(failure);
    if (failure) {
        if (usable(now()))
            co_return cached_->credentials;
        std::rethrow_exception(failure);
    }
    co_return cached_->credentials;
}

inline void credentials_provider::finish_refresh(std::exception_ptr failure)
{
    refreshing_ = false;
    ++generation_;
    // A cancelled refresher's cancellation is its own: its waiters try again themselves.
    failure_ = detail::is_cancellation(failure) ? nullptr : std::move(failure);
    next_attempt_ = now() + credentials_retry_interval;
    for (asio::steady_timer* t : waiters_)
        t->cancel();
    waiters_.clear();
}

inline asio::awaitable<void> credentials_provider::wait_for_refresh()
{
    asio::steady_timer timer(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
    waiters_.push_back(&timer);
    waiter_guard guard{waiters_, &timer};
    // Woken by cancel(): the result is always operation_aborted and carries no information.
    (void)co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

inline asio::awaitable<credentials_provider::resolved> credentials_provider::resolve(std::optional<source_kind> only)
{
    std::vector<std::string> tried;
    auto wanted = [&](source_kind k) { return !only || *only == k; };
    auto check_expiration = [&](const timed_credentials& c) {
        const auto t = now();
        if (c.expiration && *c.expiration <= t)
            throw std::runtime_error(c.source + " gave credentials that expired at "
                                     + detail::format_iso8601(*c.expiration) + " while the clock reads "
                                     + detail::format_iso8601(t) + ": check the system clock");
    };
    const auto profile = detail::choose_profile(env_, options_.profile);

    if (wanted(source_kind::environment)) {
        std::string note;
        if (auto c = detail::from_environment(env_, note)) {
            // Unless the chosen profile assumes its role from them: then they sign that call.
            if (only || !detail::assumes_role_from_environment(env_, profile.name)) {
                check_expiration(*c);
                co_return resolved{std::move(*c), source_kind::environment};
            }
        } else {
            tried.push_back("the environment (" + note + ")");
        }
    }
    // The files are read once, for web identity (the config file's profile may configure it)
    // and for the keys they hold.
    detail::settings_file credentials_file;
    detail::settings_file config_file;
    const detail::ini_section* in_credentials = nullptr;
    const detail::ini_section* in_config = nullptr;
    if (wanted(source_kind::assume_role) || wanted(source_kind::web_identity)
        || wanted(source_kind::credentials_file) || wanted(source_kind::config_file)) {
        if (wanted(source_kind::credentials_file) || wanted(source_kind::assume_role)) {
            credentials_file = detail::load_settings_file(env_, "AWS_SHARED_CREDENTIALS_FILE", "credentials",
                                                          "the shared credentials file");
            if (credentials_file.contents)
                in_credentials = detail::credentials_profile(*credentials_file.contents, profile.name);
        }
        config_file = detail::load_settings_file(env_, "AWS_CONFIG_FILE", "config", "the config file");
        if (config_file.contents)
            in_config = detail::config_profile(*config_file.contents, profile.name);
        if (!only && !profile.origin.empty() && !in_credentials && !in_config)
            throw std::runtime_error("the profile '" + profile.name + "' named by " + profile.origin + " is in neither "
                                     + credentials_file.describe("credentials") + " nor "
                                     + config_file.describe("config"));
    }

    if (wanted(source_kind::assume_role)) {
        std::string note;
        if (auto chain = detail::find_assume_role(env_, credentials_file, config_file, in_config, profile.name, note)) {
            auto c = co_await from_assume_role(std::move(*chain));
            check_expiration(c);
            co_return resolved{std::move(c), source_kind::assume_role};
        }
        tried.push_back("an assumed role (" + note + ")");
    }

    if (wanted(source_kind::web_identity)) {
        std::string note;
        if (auto w = detail::find_web_identity(env_, config_file, in_config, profile.name, note)) {
            auto c = co_await from_web_identity(std::move(*w));
            check_expiration(c);
            co_return resolved{std::move(c), source_kind::web_identity};
        }
        tried.push_back("web identity (" + note + ")");
    }

    if (wanted(source_kind::credentials_file)) {
        std::string note;
        if (auto c = detail::from_profile(credentials_file, in_credentials, "credentials", profile.name,
                                          "shared credentials file", note)) {
            check_expiration(*c);
            co_return resolved{std::move(*c), source_kind::credentials_file};
        }
        tried.push_back("the shared credentials file (" + note + ")");
    }
    if (wanted(source_kind::config_file)) {
        std::string note;
        if (auto c = detail::from_profile(config_file, in_config, "config", profile.name, "config file", note)) {
            check_expiration(*c);
            co_return resolved{std::move(*c), source_kind::config_file};
        }
        tried.push_back("the config file (" + note + ")");
    }

    if (wanted(source_kind::container)) {
        std::string note;
        if (auto c = co_await from_container(note)) {
            check_expiration(*c);
            co_return resolved{std::move(*c), source_kind::container};
        }
        tried.push_back("container credentials (" + note + ")");
    }
    if (wanted(source_kind::instance_metadata)) {
        std::string note;
        if (auto c = co_await from_instance_metadata(note)) {
            check_expiration(*c);
            co_return resolved{std::move(*c), source_kind::instance_metadata};
        }
        tried.push_back("instance metadata (" + note + ")");
    }

    std::string message;
    if (only) {
        message = "could not refresh the AWS credentials: ";
    } else {
        message = "no AWS credentials found for profile '" + profile.name + "'. Tried: ";
    }
    for (std::size_t i = 0; i < tried.size(); ++i) {
        if (i > 0)
            message += "; ";
        message += tried[i];
    }
    if (!only)
        message += ". Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure the profile in "
                   "~/.aws/credentials, or run with a container or instance role; for public buckets, "
                   "choose anonymous access explicitly";
    throw std::runtime_error(message);
}

inline asio::awaitable<timed_credentials> credentials_provider::from_web_identity(detail::web_identity_settings w)
{
    const std::string what = "web identity for role " + w.role_arn;
    // Read at every fetch: EKS replaces the token file well before the token expires.
    const auto text = env_.read_file(w.token_file);
    if (!text)
        throw std::runtime_error(what + ": " + w.token_file_setting + " names " + w.token_file
                                 + ", which does not exist");
    const std::string token(detail::trim(*text));
    if (token.empty())
        throw std::runtime_error(what + ": the web identity token file " + w.token_file + " is empty");
    const std::string session_name = w.session_name.empty() ? default_session_name() : w.session_name;
    // Named, not temporaries of the co_await expression (GCC 12 mishandles some of those).
    std::function<metadata_request()> make = [&] {
        return detail::web_identity_request(w, session_name, token, detail::sts_timeout);
    };
    std::vector<detail::hidden_text> hidden{{token, "the web identity token"}};
    auto c = co_await call_sts(std::move(make), "AssumeRoleWithWebIdentity", what, w.url, std::move(hidden));
    c.source = "web identity (" + w.role_arn + ")";
    co_return c;
}

inline asio::awaitable<timed_credentials> credentials_provider::from_assume_role(detail::role_chain chain)
{
    const detail::assume_role_step& first = chain.roles.front();
    const std::string what = "role " + first.role_arn + " of profile '" + first.profile + "'";
    timed_credentials current;
    if (chain.base == detail::role_source::profile_keys) {
        current = std::move(*chain.keys);
    } else if (chain.base == detail::role_source::web_identity) {
        current = co_await from_web_identity(std::move(*chain.web_identity));
    } else if (chain.base == detail::role_source::environment) {
        std::string note;
        auto c = detail::from_environment(env_, note);
        if (!c)
            throw std::runtime_error(what + " is assumed with credential_source Environment, but " + note);
        current = std::move(*c);
    } else {
        std::string note;
        const bool imds = chain.base == detail::role_source::instance_metadata;
        std::optional<timed_credentials> c;
        if (imds)
            c = co_await from_instance_metadata(note);
        else
            c = co_await from_container(note);
        if (!c)
            throw std::runtime_error(what + " is assumed with credential_source "
                                     + (imds ? "Ec2InstanceMetadata" : "EcsContainer") + ", which gave nothing: " + note);
        current = std::move(*c);
    }
    for (const detail::assume_role_step& step : chain.roles)
        current = co_await assume_role(chain.url, chain.region, step, current.credentials);
    co_return current;
}

inline asio::awaitable<timed_credentials> credentials_provider::assume_role(std::string url, std::string region,
                                                                            detail::assume_role_step step,
                                                                            aws_credentials source)
{
    const std::string what = "role " + step.role_arn + " of profile '" + step.profile + "'";
    const std::string session_name = step.session_name.empty() ? default_session_name() : step.session_name;
    // Signed again for each attempt: the signature covers the time.
    std::function<metadata_request()> make = [&] {
        return detail::assume_role_request(url, region, step, session_name, source, now(), detail::sts_timeout);
    };
    std::vector<detail::hidden_text> hidden{{source.secret_access_key, "the source credentials"},
                                            {source.session_token, "the source credentials"},
                                            {step.external_id, "the external id"}};
    auto c = co_await call_sts(std::move(make), "AssumeRole", what, url, std::move(hidden));
    c.source = "assumed role " + step.role_arn + " (from " + step.source + ")";
    co_return c;
}

inline std::string credentials_provider::default_session_name() const
{
    return "pipemode-"
        + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now().time_since_epoch()).count());
}

inline asio::awaitable<timed_credentials> credentials_provider::call_sts(std::function<metadata_request()> make,
                                                                         std::string action, std::string what,
                                                                         std::string url,
                                                                         std::vector<detail::hidden_text> hidden)
{
    constexpr int attempts = 3;
    if (!fetch_)
        throw std::runtime_error(what + ": no HTTP fetcher was given to reach STS at " + url);
    std::optional<metadata_response> response;
    for (int i = 0; i < attempts; ++i) {
        response = co_await fetch_(make());
        // Only "no answer" and server errors are worth another try; a refusal will not change.
        if (response && response->status < 500)
            break;
    }
    if (!response)
        throw std::runtime_error(what + ": no answer from STS at " + url + " within "
                                 + std::to_string(detail::sts_timeout.count()) + " ms (" + std::to_string(attempts)
                                 + " attempts)");
    if (response->status != 200)
        throw std::runtime_error(what + ": STS at " + url + " refused " + action + ": "
                                 + detail::describe_sts_error(response->status, response->body, hidden));
    std::string why;
    auto c = detail::parse_sts_credentials(response->body, action, why);
    if (!c)
        throw std::runtime_error(what + ": the answer of STS at " + url + " is unusable: " + why);
    co_return std::move(*c);
}

inline asio::awaitable<std::optional<timed_credentials>> credentials_provider::from_container(std::string& note)
{
    constexpr std::chrono::milliseconds timeout{2000};
    constexpr int attempts = 3;
    const auto relative = detail::env_value(env_, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const auto full = detail::env_value(env_, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!relative && !full) {
        note = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI are not set";
        co_return std::nullopt;
    }
    std::string url;
    if (relative) {
        if (relative->front() != '/' || relative->find_first_of(" \t") != std::string::npos
            || detail::has_control_character(*relative))
            throw std::invalid_argument("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting with '/'");
        url = "http://169.254.170.2" + *relative;
    } else {
        const http_url u = detail::parse_configured_url(*full, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
        if (!u.is_https() && !detail::is_allowed_container_host(u.host))
            throw std::invalid_argument(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI must use https, or http to a loopback address or to "
                "169.254.170.2, 169.254.170.23 or [fd00:ec2::23], so that credentials never cross a network "
                "unencrypted");
        url = u.to_string();
    }
    std::vector<std::pair<std::string, std::string>> headers;
    if (auto file = detail::env_value(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) {
        auto text = env_.read_file(*file);
        if (!text)
            throw std::runtime_error("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE names " + *file + ", which does not exist");
        const std::string_view token = detail::trim(*text);
        if (token.empty() || detail::has_control_character(token))
            throw std::runtime_error("the container authorization token in " + *file
                                     + " is empty or contains a control character");
        headers.emplace_back("Authorization", std::string(token));
    } else if (auto token = detail::env_value(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
        if (detail::has_control_character(*token))
            throw std::runtime_error("AWS_CONTAINER_AUTHORIZATION_TOKEN contains a control character");
        headers.emplace_back("Authorization", std::move(*token));
    }
    if (!fetch_) {
        note = "no HTTP fetcher was given to reach " + url;
        co_return std::nullopt;
    }
    std::optional<metadata_response> response;
    for (int i = 0; i < attempts; ++i) {
        metadata_request request = detail::make_request("GET", url, headers, timeout);
        response = co_await fetch_(std::move(request));
        // Only "no answer" and server errors are worth another try; a 4xx will not change.
        if (response && response->status < 500)
            break;
    }
    if (!response)
        throw std::runtime_error("container credentials: no answer from " + url + " within "
                                 + std::to_string(timeout.count()) + " ms (" + std::to_string(attempts) + " attempts)");
    if (response->status != 200)
        throw std::runtime_error("container credentials: " + url + " answered HTTP " + std::to_string(response->status));
    std::string why;
    auto c = detail::parse_credentials_document(response->body, why);
    if (!c)
        throw std::runtime_error("container credentials from " + url + ": " + why);
    c->source = "container credentials";
    co_return c;
}

inline asio::awaitable<std::optional<timed_credentials>> credentials_provider::from_instance_metadata(std::string& note)
{
    constexpr std::chrono::milliseconds timeout{1000};
    if (auto disabled = detail::env_value(env_, "AWS_EC2_METADATA_DISABLED"); disabled && detail::is_true(*disabled)) {
        note = "AWS_EC2_METADATA_DISABLED is true";
        co_return std::nullopt;
    }
    std::string base;
    if (auto endpoint = detail::env_value(env_, "AWS_EC2_METADATA_SERVICE_ENDPOINT")) {
        const http_url u = detail::parse_configured_url(*endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
        base = u.scheme + "://" + u.authority() + u.path;
        while (!base.empty() && base.back() == '/')
            base.pop_back();
    } else {
        const auto mode = detail::env_value(env_, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
        if (!mode || detail::iequals(*mode, "ipv4"))
            base = "http://169.254.169.254";
        else if (detail::iequals(*mode, "ipv6"))
            base = "http://[fd00:ec2::254]";
        else
            throw std::invalid_argument("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE must be IPv4 or IPv6");
    }
    if (!fetch_) {
        note = "no HTTP fetcher was given to reach " + base;
        co_return std::nullopt;
    }
    const std::string no_answer = "no answer from " + base + " within " + std::to_string(timeout.count()) + " ms";

    metadata_request token_request = detail::make_request("PUT", base + "/latest/api/token",
                                                  {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}}, timeout);
    auto token = co_await fetch_(std::move(token_request));
    if (!token) {
        note = no_answer;
        co_return std::nullopt;
    }
    if (token->status != 200) {
        note = base + " refused an IMDSv2 session token (HTTP " + std::to_string(token->status) + ")";
        co_return std::nullopt;
    }
    const std::string_view session = detail::trim(token->body);
    if (session.empty() || session.size() > 4096 || detail::has_control_character(session)) {
        note = base + " answered with an unusable IMDSv2 session token";
        co_return std::nullopt;
    }
    const std::vector<std::pair<std::string, std::string>> headers{{"X-aws-ec2-metadata-token", std::string(session)}};
    const std::string prefix = base + "/latest/meta-data/iam/security-credentials/";

    metadata_request roles_request = detail::make_request("GET", prefix, headers, timeout);
    auto roles = co_await fetch_(std::move(roles_request));
    if (!roles) {
        note = no_answer;
        co_return std::nullopt;
    }
    if (roles->status == 404) {
        note = "no IAM role is attached to this instance";
        co_return std::nullopt;
    }
    if (roles->status != 200) {
        note = base + " answered HTTP " + std::to_string(roles->status) + " for the instance's role name";
        co_return std::nullopt;
    }
    std::string_view role = roles->body;
    role = detail::trim(role.substr(0, role.find('\n')));
    if (role.empty()) {
        note = "no IAM role is attached to this instance";
        co_return std::nullopt;
    }
    if (!detail::is_valid_role_name(role)) {
        note = base + " answered with a role name that is not a valid IAM role name";
        co_return std::nullopt;
    }
    const std::string role_name(role);

    metadata_request document_request = detail::make_request("GET", prefix + role_name, headers, timeout);
    auto document = co_await fetch_(std::move(document_request));
    if (!document) {
        note = no_answer;
        co_return std::nullopt;
    }
    if (document->status != 200) {
        note = base + " answered HTTP " + std::to_string(document->status) + " for the credentials of role '"
             + role_name + "'";
        co_return std::nullopt;
    }
    std::string why;
    auto c = detail::parse_credentials_document(document->body, why);
    if (!c) {
        note = "the credentials of role '" + role_name + "': " + why;
        co_return std::nullopt;
    }
    c->source = "instance metadata (IMDSv2)";
    co_return c;
}

} // namespace pipemode::s3
