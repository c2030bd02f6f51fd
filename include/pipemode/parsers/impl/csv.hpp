// pipemode: definitions for parsers/csv.hpp (included at its bottom).
#pragma once

#include <pipemode/parsers/csv.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>

namespace pipemode {

namespace detail {

inline bool csv_space(char c) noexcept { return c == ' ' || c == '\t'; }

// The float32 value of a number std::from_chars<float> found out of range: rounded through
// double when double holds it, else an infinity or a zero of the number's sign.
[[gnu::cold]] inline float csv_out_of_range(const char* begin, const char* end) noexcept
{
    const bool negative = *begin == '-';
    double d = 0;
    const auto [q, ec] = std::from_chars(begin, end, d);
    if (ec == std::errc{}) {
        if (std::fabs(d) > double{std::numeric_limits<float>::max()})
            return negative ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
        return static_cast<float>(d);
    }
    const char* e = std::find_if(begin, end, [](char c) { return c == 'e' || c == 'E'; });
    const bool tiny = e != end && e + 1 != end && e[1] == '-';
    if (tiny)
        return negative ? -0.0f : 0.0f;
    return negative ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
}

// Exactly the float32 values of 10^0 .. 10^10 (5^10 < 2^24, so each is a float exactly).
inline constexpr float csv_powers_of_ten[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f, 1e8f, 1e9f, 1e10f};

// Clinger's fast path for the numbers CSV writers usually print ("%.6g", "%g", numpy.savetxt):
// a mantissa of at most 2^24 and a decimal exponent within +-10 are both exact floats, so one
// IEEE float multiplication or division rounds correctly, and the result is bit for bit what
// std::from_chars gives. Returns the end of the number, or nullptr when the text is not of
// that simple kind (the caller then asks std::from_chars).
inline const char* csv_fast_float(const char* p, const char* end, float& out) noexcept
{
    const bool negative = p != end && *p == '-';
    p += negative;
    std::uint32_t mantissa = 0;
    int digits = 0;     // digits read into the mantissa (leading zeros included)
    int exponent = 0;   // minus the digits after the point
    while (p != end && static_cast<unsigned>(*p - '0') < 10) {
        mantissa = mantissa * 10 + static_cast<unsigned>(*p - '0');
        ++digits;
        ++p;
    }
    if (p != end && *p == '.') {
        ++p;
        while (p != end && static_cast<unsigned>(*p - '0') < 10) {
            mantissa = mantissa * 10 + static_cast<unsigned>(*p - '0');
            ++digits;
            --exponent;
            ++p;
        }
    }
    if (digits == 0 || digits > 9)
        return nullptr;  // no digits, or more than fit: the general path
    if (p != end && (*p == 'e' || *p == 'E')) {
        const char* q = p + 1;
        const bool minus = q != end && *q == '-';
        q += (q != end && (*q == '-' || *q == '+'));
        int e = 0;
        int n = 0;
        while (q != end && static_cast<unsigned>(*q - '0') < 10 && n < 4) {
            e = e * 10 + (*q - '0');
            ++q;
            ++n;
        }
        if (n == 0 || n == 4)
            return nullptr;  // "1e" (from_chars stops before the 'e') or a long exponent
        exponent += minus ? -e : e;
        p = q;
    }
    if (mantissa > (1U << 24) || exponent < -10 || exponent > 10)
        return nullptr;
    float v = static_cast<float>(mantissa);
    v = exponent < 0 ? v / csv_powers_of_ten[-exponent] : v * csv_powers_of_ten[exponent];
    out = negative ? -v : v;
    return p;
}

} // namespace detail

inline bool csv_record_parser::parse(const record_view& rec, std::string_view source, batch_builder& out,
                                     error_code& ec)
{
    ec = {};
    const auto* p = reinterpret_cast<const char*>(rec.payload.data());
    if (!parse_row(p, p + rec.payload.size())) {
        ec = errc::bad_csv_field;
        return false;
    }
    const std::size_t n = row_.size();
    const std::size_t labels = options_.label_size;
    if (columns_ == 0 ? n <= labels : n != columns_) [[unlikely]] {
        detail_ = "the row has " + std::to_string(n) + (n == 1 ? " column" : " columns") + ", ";
        if (columns_ == 0)
            detail_ += "but with label_size=" + std::to_string(labels) + " a row needs at least "
                + std::to_string(labels + 1) + " (the label and at least one feature)";
        else
            detail_ += "the first row had " + std::to_string(columns_);
        ec = errc::ragged_csv_row;
        return false;
    }
    out.begin_record(source, rec);
    if (!write(out, labels, n - labels, record_section::features, ec))
        return false;
    if (labels != 0 && !write(out, 0, labels, record_section::label, ec))
        return false;
    const bool full = out.end_record(ec);
    if (ec) {
        detail_ = out.error_detail();
        return false;
    }
    columns_ = n;
    return full;
}

inline bool csv_record_parser::write(batch_builder& out, std::size_t first, std::size_t count, record_section section,
                                     error_code& ec)
{
    out.begin_tensor(section, csv_values_name, tensor_type::float32);
    std::memcpy(out.extend_values<float>(count), row_.data() + first, count * sizeof(float));
    if (out.end_tensor(ec))
        return true;
    detail_ = out.error_detail();
    out.abort_record();
    return false;
}

inline bool csv_record_parser::parse_row(const char* p, const char* const end)
{
    using detail::csv_space;
    row_.clear();
    std::size_t column = 0;
    for (;;) {
        ++column;
        while (p != end && csv_space(*p))
            ++p;
        const char* const field = p;
        const char* stop = end;  // where the number must end
        const bool quoted = p != end && *p == '"';
        if (quoted) {
            const auto* close = static_cast<const char*>(std::memchr(p + 1, '"', static_cast<std::size_t>(end - p - 1)));
            if (close == nullptr)
                return bad_field(column, field, end, "has an opening quote and no closing one");
            stop = close;
            ++p;
            while (p != stop && csv_space(*p))
                ++p;
        }
        if (p == stop || (!quoted && *p == ','))
            return bad_field(column, field, end, "is empty");
        // std::from_chars takes no '+'; CSV writers sometimes do.
        const char* number = p;
        if (*number == '+') {
            ++number;
            if (number == stop || *number == '-')
                return bad_field(column, field, end, "is not a number");
        }
        float v;
        if (const char* q = detail::csv_fast_float(number, stop, v); q != nullptr) [[likely]] {
            p = q;
        } else {
            auto [r, e] = std::from_chars(number, stop, v);
            if (e == std::errc::invalid_argument) [[unlikely]]
                return bad_field(column, field, end, "is not a number");
            if (e == std::errc::result_out_of_range) [[unlikely]]
                v = detail::csv_out_of_range(number, r);
            p = r;
        }
        if (quoted) {
            while (p != stop && csv_space(*p))
                ++p;
            if (p != stop)
                return bad_field(column, field, end, "is not a number");
            ++p;  // the closing quote
        }
        while (p != end && csv_space(*p))
            ++p;
        row_.push_back(v);
        if (p == end)
            return true;
        if (*p != ',') [[unlikely]]
            return bad_field(column, field, end, "is not a number");
        ++p;
    }
}

inline bool csv_record_parser::bad_field(std::size_t column, const char* begin, const char* end, const char* why)
{
    // The field's text up to its comma (or, in quotes, its closing quote and comma), cut to 40
    // bytes so that a message never grows with the input.
    constexpr std::size_t most = 40;
    const char* stop = begin;
    bool in_quotes = false;
    while (stop != end && (in_quotes || *stop != ',')) {
        if (*stop == '"')
            in_quotes = !in_quotes;
        ++stop;
    }
    const auto n = static_cast<std::size_t>(stop - begin);
    detail_ = "column " + std::to_string(column) + " ('" + std::string(begin, std::min(n, most))
        + (n > most ? "...'" : "'") + ") " + why;
    return false;
}

} // namespace pipemode
