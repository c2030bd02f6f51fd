// pipemode: configuration, version checks and the project-wide namespace aliases.
//
// This is the only header that checks versions or defines PIPEMODE_ macros; every other
// header includes it first.
#pragma once

#include <boost/version.hpp>

#if BOOST_VERSION < 108100
#error "pipemode needs Boost 1.81 or newer (Debian: libboost1.81-dev); Asio's C++20 coroutine, channel and cancellation support in older Boost is incomplete."
#endif

#if __cplusplus < 202002L
#error "pipemode needs C++20 (-std=c++20)."
#endif

#include <boost/system/error_code.hpp>

/// Library version, as major * 10000 + minor * 100 + patch.
#define PIPEMODE_VERSION 100

namespace boost::asio {}

namespace pipemode {

/// Asio, spelled the way the rest of the library spells it.
namespace asio = boost::asio;

/// The error code type of every pipemode function that reports errors without throwing.
using error_code = boost::system::error_code;

} // namespace pipemode
