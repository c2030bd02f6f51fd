// pipemode: SHA-256 and HMAC-SHA256 for the SigV4 signer, from OpenSSL 3's libcrypto.
//
// Taken from libcrypto rather than written here: a digest is exactly the code a well-kept,
// audited library does better (constant-time where it matters, CPU extensions, FIPS
// providers), and libcurl already loads the same libcrypto for TLS, so it costs no new
// dependency at run time. The signer stays sans-I/O: these are pure functions of their input.
//
// The algorithms are fetched once per process (EVP_MD_fetch / EVP_MAC_fetch) instead of at every
// call, which OpenSSL 3's implicit fetches would otherwise do under a lock for each request.
//
// The OpenSSL version is checked here rather than in config.hpp so that a program that reads
// only local files never needs OpenSSL's headers.
#pragma once

#include <pipemode/config.hpp>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>

#if OPENSSL_VERSION_MAJOR < 3
#error "pipemode's S3 signer needs OpenSSL 3 or newer (Debian: libssl-dev); EVP_MAC is new in 3.0."
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pipemode::s3::detail {

/// A SHA-256 digest: 32 bytes.
using sha256_digest = std::array<std::uint8_t, 32>;

namespace openssl {

/// Throws std::runtime_error naming the libcrypto call `what` that failed.
[[noreturn]] inline void fail(std::string_view what)
{
    throw std::runtime_error("pipemode: OpenSSL's libcrypto failed in " + std::string(what)
                             + " while computing a SigV4 signature; check that the OpenSSL 3 "
                               "default provider is available (OPENSSL_CONF, OPENSSL_MODULES)");
}

/// SHA-256 as fetched from the default provider, once per process; never null.
///
/// The object is immutable once fetched and libcrypto allows sharing it between threads; it
/// is kept until exit (freeing it from a static destructor could race threads still signing).
inline const EVP_MD* sha256_md()
{
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (md == nullptr)
        fail("EVP_MD_fetch(SHA256)");
    return md;
}

/// The HMAC algorithm as fetched from the default provider, once per process; never null.
inline EVP_MAC* hmac_mac()
{
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr)
        fail("EVP_MAC_fetch(HMAC)");
    return mac;
}

/// Frees an EVP_MD_CTX.
struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};

/// Frees an EVP_MAC_CTX.
struct mac_ctx_deleter {
    void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};

} // namespace openssl

/// An incremental SHA-256 hash over libcrypto's EVP_MD_CTX.
///
/// Feed bytes with `update()` any number of times, then call `finish()` once. Every libcrypto
/// failure throws `std::runtime_error`. Not thread-safe; movable, not copyable.
class sha256 {
public:
    /// Starts an empty hash. Throws `std::runtime_error` when libcrypto cannot.
    sha256() : ctx_(EVP_MD_CTX_new())
    {
        if (!ctx_)
            openssl::fail("EVP_MD_CTX_new");
        if (EVP_DigestInit_ex2(ctx_.get(), openssl::sha256_md(), nullptr) != 1)
            openssl::fail("EVP_DigestInit_ex2");
    }

    /// Absorbs `data`.
    void update(std::string_view data)
    {
        if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1)
            openssl::fail("EVP_DigestUpdate");
    }

    /// Returns the digest of everything absorbed. The object must not be used afterwards.
    sha256_digest finish()
    {
        sha256_digest out{};
        unsigned int length = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &length) != 1 || length != out.size())
            openssl::fail("EVP_DigestFinal_ex");
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, openssl::md_ctx_deleter> ctx_;
};

/// The SHA-256 digest of `data` (one EVP_Digest call).
inline sha256_digest sha256_of(std::string_view data)
{
    sha256_digest out{};
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &length, openssl::sha256_md(), nullptr)
            != 1
        || length != out.size())
        openssl::fail("EVP_Digest");
    return out;
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104), by libcrypto's EVP_MAC.
inline sha256_digest hmac_sha256(std::string_view key, std::string_view message)
{
    std::unique_ptr<EVP_MAC_CTX, openssl::mac_ctx_deleter> ctx(
        EVP_MAC_CTX_new(openssl::hmac_mac()));
    if (!ctx)
        openssl::fail("EVP_MAC_CTX_new");

    char digest_name[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    // An empty key is legal HMAC, but EVP_MAC_init reads a null key as "keep the previous
    // one" (there is none), so an empty view must still point somewhere.
    static constexpr unsigned char no_key = 0;
    const auto* key_bytes =
        key.empty() ? &no_key : reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_MAC_init(ctx.get(), key_bytes, key.size(), params) != 1)
        openssl::fail("EVP_MAC_init");
    if (EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size())
        != 1)
        openssl::fail("EVP_MAC_update");

    sha256_digest out{};
    std::size_t length = 0;
    if (EVP_MAC_final(ctx.get(), out.data(), &length, out.size()) != 1 || length != out.size())
        openssl::fail("EVP_MAC_final");
    return out;
}

/// HMAC-SHA256 keyed by an earlier digest: the step of SigV4's signing-key chain.
inline sha256_digest hmac_sha256(const sha256_digest& key, std::string_view message)
{
    return hmac_sha256(std::string_view{reinterpret_cast<const char*>(key.data()), key.size()},
                       message);
}

/// `digest` as 64 lowercase hexadecimal digits.
inline std::string to_hex(const sha256_digest& digest)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * digest.size());
    for (std::uint8_t byte : digest) {
        out.push_back(digits[byte >> 4]);
        out.push_back(digits[byte & 0x0f]);
    }
    return out;
}

/// The hexadecimal SHA-256 of `data`, as SigV4 writes payload and canonical-request hashes.
inline std::string sha256_hex(std::string_view data)
{
    return to_hex(sha256_of(data));
}

} // namespace pipemode::s3::detail
