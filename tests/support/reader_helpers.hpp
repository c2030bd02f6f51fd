// Test support: draining a reader and catching the error it raises.
#pragma once

#include <pipemode/core/error.hpp>
#include <pipemode/pipeline/reader.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pipemode::test {

/// The `data_error` that `f` throws; fails the test if it throws none.
template <class F>
data_error error_from(F&& f)
{
    try {
        f();
    } catch (const data_error& e) {
        return e;
    }
    FAIL("no data_error was thrown");
    throw std::logic_error("unreachable");
}

/// Iterates `r` until it throws; returns the rows delivered before the error and the error.
inline std::pair<std::size_t, data_error> rows_until_error(reader& r)
{
    std::size_t rows = 0;
    auto e = error_from([&] {
        for (auto& b : r)
            rows += b.size();
    });
    return {rows, e};
}

/// Every record of a reader (`reader`, `data_set_reader`) with `data_format::recordio`, in
/// order: each row's "payload".
template <class Reader>
std::vector<std::string> payloads_of(Reader& r)
{
    std::vector<std::string> out;
    for (auto& b : r) {
        const auto& col = b.feature("payload");
        for (std::size_t i = 0; i < b.size(); ++i) {
            auto bytes = col.item(i, 0);
            out.emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
    }
    return out;
}

/// Like `payloads_of`, grouped by the epoch each batch carries.
template <class Reader>
std::map<std::uint64_t, std::vector<std::string>> payloads_by_epoch(Reader& r)
{
    std::map<std::uint64_t, std::vector<std::string>> out;
    for (auto& b : r) {
        const auto& col = b.feature("payload");
        for (std::size_t i = 0; i < b.size(); ++i) {
            const auto bytes = col.item(i, 0);
            out[b.epoch()].emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
    }
    return out;
}

} // namespace pipemode::test
