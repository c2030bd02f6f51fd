// Fuzz target for csv_record_parser: on any row it must not crash or read out of bounds; a row
// it accepts is one row of the right widths, a row it refuses leaves the batch as it was and
// comes with a short detail.
#include <pipemode/parsers/csv.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

namespace {

void check(bool condition)
{
    if (!condition)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using namespace pipemode;
    if (size == 0)
        return 0;
    const std::size_t label_size = data[0] % 3;
    const std::span<const std::byte> row(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
    csv_record_parser parser(csv_options{.label_size = label_size});
    batch_builder builder(4);
    error_code ec;
    parser.parse(record_view{row, 0, 0}, "fuzz", builder, ec);
    if (ec) {
        check(builder.empty());
        check(!parser.error_detail().empty() && parser.error_detail().size() < 200);
        check(ec == errc::bad_csv_field || ec == errc::ragged_csv_row);
        return 0;
    }
    check(builder.size() == 1);
    // The same row again is accepted again, with the same widths.
    parser.parse(record_view{row, 1, 1}, "fuzz", builder, ec);
    check(!ec);
    const batch b = builder.take();
    check(b.feature("values").row_size() + label_size == parser.columns());
    check(label_size == 0 ? b.labels().empty() : b.label("values").row_size() == label_size);
    return 0;
}
