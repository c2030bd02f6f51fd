// pipemode: small HTTP responses read whole (listings, manifests, metadata, error bodies).
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/http/client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>

namespace pipemode::http {

/// A response handler that keeps the head and up to `limit` body bytes in a string, and fails
/// the transfer when the body is longer (so a wrong URL serving gigabytes cannot exhaust
/// memory).
class string_response final : public response_handler {
public:
    explicit string_response(std::size_t limit) : limit_(limit) {}

    bool on_head(const response_head& h) override
    {
        head = h;
        body.clear();
        return true;
    }

    bool on_body(std::span<const std::byte> bytes) override
    {
        if (body.size() + bytes.size() > limit_) {
            too_large = true;
            return false;
        }
        body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        return true;
    }

    response_head head;
    std::string body;
    bool too_large = false;  ///< the body exceeded the limit (the transfer was aborted)

private:
    std::size_t limit_;
};

/// The outcome of `async_fetch_document`.
struct document_response {
    error_code ec;          ///< transport error (curl_category), or `errc::document_too_large`
    std::string detail;     ///< libcurl's description of a transport error
    response_head head;     ///< valid when `!ec`
    std::string body;
};

/// Performs `req` and returns the whole response, the body capped at `limit` bytes.
/// One attempt: callers decide about retries. `c` must outlive the operation.
inline asio::awaitable<document_response> async_fetch_document(client& c, request req, std::size_t limit = 64 * mib)
{
    string_response handler(limit);
    auto [ec, info] = co_await c.async_perform(std::move(req), handler, asio::as_tuple(asio::use_awaitable));
    if (info.exception)
        std::rethrow_exception(info.exception);
    document_response out;
    if (handler.too_large)
        out.ec = make_error_code(errc::document_too_large);
    else
        out.ec = ec;
    out.detail = std::move(info.detail);
    out.head = std::move(handler.head);
    out.body = std::move(handler.body);
    co_return out;
}

} // namespace pipemode::http
