// pipemode: the framing decoder and record parser each data_format stands for.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/options.hpp>
#include <pipemode/framing/grouped_record.hpp>
#include <pipemode/framing/lines.hpp>
#include <pipemode/framing/recordio.hpp>
#include <pipemode/framing/tfrecord.hpp>
#include <pipemode/framing/whole_object.hpp>
#include <pipemode/parsers/csv.hpp>
#include <pipemode/parsers/protobuf_record.hpp>
#include <pipemode/parsers/raw_record.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace pipemode {

/// Calls `f(framing, parser)` with the library's framing decoder and record parser for
/// `options.format` (sized by `max_record_size`, with `csv_label_size` and
/// `attribute_names`), and returns what `f` returns: how `reader`'s `data_format` constructor
/// and `pipemode-cat` compose a pipeline for a format (`run_pipeline(provider, framing,
/// parser, sink, options)` inside `f`).
///
/// `f` is called once, with one of several pairs of types: a generic lambda. Throws
/// `std::invalid_argument` (starting with `who`) for a format that is not a `data_format`
/// value, and for `augmented_manifest` with a record-level shuffle, which would separate a
/// line's attributes.
///
/// \code
/// pipemode::visit_format_stages(options, [&](auto framing, auto parser) {
///     return pipemode::run_pipeline(std::move(provider), std::move(framing), std::move(parser), sink, options);
/// });
/// \endcode
template <class F>
decltype(auto) visit_format_stages(const reader_options& options, F&& f, std::string_view who = "pipemode::reader")
{
    const std::size_t max = options.max_record_size;
    switch (options.format) {
    case data_format::recordio_protobuf:
        return std::forward<F>(f)(recordio_decoder(recordio_options{.max_record_size = max}), protobuf_record_parser{});
    case data_format::recordio:
        return std::forward<F>(f)(recordio_decoder(recordio_options{.max_record_size = max}), raw_record_parser{});
    case data_format::csv:
        return std::forward<F>(f)(line_decoder(line_options{.max_record_size = max}),
                                  csv_record_parser(csv_options{.label_size = options.csv_label_size}));
    case data_format::tfrecord:
        return std::forward<F>(f)(tfrecord_decoder(tfrecord_options{.max_record_size = max}), raw_record_parser{});
    case data_format::lines:
        return std::forward<F>(f)(line_decoder(line_options{.max_record_size = max}), raw_record_parser{});
    case data_format::whole_object:
        return std::forward<F>(f)(whole_object_decoder(whole_object_options{.max_record_size = max}),
                                  raw_record_parser{});
    case data_format::augmented_manifest: {
        // A record-level shuffle would separate a line's attributes; the store refuses it
        // too, this guards pipelines built over other providers.
        if (options.shuffle_records != 0)
            throw std::invalid_argument(std::string(who)
                                        + ": reader_options::shuffle_records must be 0 with data_format::augmented_manifest, "
                                          "since a record-level shuffle would separate a line's attributes; the lines "
                                          "are still shuffled every epoch by the data set's shuffle "
                                          "(plan_options::shuffle_seed)");
        grouped_record_parser parser(options.attribute_names);
        record_group_decoder framing(recordio_decoder(recordio_options{.max_record_size = max}), parser.group_size());
        return std::forward<F>(f)(std::move(framing), std::move(parser));
    }
    }
    throw std::invalid_argument(std::string(who) + ": options.format is not one of the data_format values.");
}

} // namespace pipemode
