// See test_channel.hpp.
#include "test_channel.hpp"

#include <pipemode/pipeline/reader.hpp>

namespace pipemode::examples::rcf {

void read_csv_channel(const std::vector<std::string>& paths, std::size_t batch_size,
                      const std::function<void(const batch&)>& each)
{
    reader r(paths, reader_options{.batch_size = batch_size, .format = data_format::csv, .csv_label_size = 1});
    while (auto b = r.next())
        each(*b);
}

} // namespace pipemode::examples::rcf
