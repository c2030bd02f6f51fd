// pipemode: HTTP status codes: the reason phrases of those pipemode meets, for messages.
#pragma once

#include <pipemode/config.hpp>

#include <string_view>

namespace pipemode::http {

/// The reason phrase of an HTTP status pipemode is likely to meet ("Not Found" for 404), or ""
/// for others. For messages only: HTTP/2 responses carry no phrase, so pipemode never reads
/// the server's.
constexpr std::string_view reason_phrase(unsigned status) noexcept
{
    switch (status) {
    case 301: return "Moved Permanently";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

} // namespace pipemode::http
