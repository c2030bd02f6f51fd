// pipemode: everything that needs nothing beyond Boost and the standard library.
//
// Include this for the reader, the local sources, the framing decoders and the record parsers.
// Parts that need libcurl (HTTP/S3), zlib or libprotobuf have their own headers and CMake
// targets, so a program that reads local RecordIO files never needs their headers or libraries.
#pragma once

#include <pipemode/config.hpp>

#include <pipemode/core/batch.hpp>
#include <pipemode/core/batch_builder.hpp>
#include <pipemode/core/concepts.hpp>
#include <pipemode/core/content_type.hpp>
#include <pipemode/core/digest.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/core/record_view.hpp>

#include <pipemode/framing/chunks.hpp>
#include <pipemode/framing/lines.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/framing/tfrecord.hpp>
#include <pipemode/framing/whole_object.hpp>

#include <pipemode/parsers/csv.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/protobuf_writer.hpp>
#include <pipemode/parsers/raw_record.hpp>

#include <pipemode/concurrency/bounded_channel.hpp>

#include <pipemode/sources/any_source.hpp>
#include <pipemode/sources/fifo_source.hpp>
#include <pipemode/sources/file_source.hpp>
#include <pipemode/sources/memory_source.hpp>

#include <pipemode/pipeline/data_set.hpp>
#include <pipemode/pipeline/plan.hpp>
#include <pipemode/pipeline/reader.hpp>
#include <pipemode/pipeline/source_provider.hpp>
#include <pipemode/pipeline/stats.hpp>
