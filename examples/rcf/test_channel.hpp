// pipemode-rcf's test channel: SageMaker's RCF reads it as text/csv;label_size=1 (the label,
// 0 or 1, in the first column), unlike the train channel's RecordIO-protobuf, which the training
// library's channel_reader reads. Kept in a translation unit of its own (test_channel.cpp) because
// it instantiates pipemode's reader for CSV, which takes a while to compile and never changes
// with the algorithm.
#pragma once

#include <pipemode/core/batch.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace pipemode::examples::rcf {

/// Reads local CSV files or FIFOs `paths` in order through pipemode's reader (format csv,
/// label_size 1) and calls `each` with every batch of at most `batch_size` rows: feature
/// "values" (the columns after the first) and label "values" (the first), dense float32.
/// Errors of the data are exceptions naming the file, the byte offset and the row.
void read_csv_channel(const std::vector<std::string>& paths, std::size_t batch_size,
                      const std::function<void(const batch&)>& each);

} // namespace pipemode::examples::rcf
