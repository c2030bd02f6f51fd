// Fuzz target for the augmented manifest reader's parser: the line indexer behind
// augmented_manifest_store's listing (index_manifest), attribute_json_text and the compact
// JSON form attributes are delivered in.
//
// On any input, with attribute lists fixed ("source-ref" + "class", "class") and taken from the
// first line's own keys, framed (RecordIO) and unframed:
// - indexing either succeeds or throws data_error(malformed_manifest) naming the manifest, an
//   offset that starts a line of the input and the number of lines accepted before it; never
//   another exception, a crash or an out-of-bounds read;
// - a listing has one entry per non-blank line, in order, named "MANIFEST#line N" with N the
//   line's number in the file, and line_index() maps each name back to its position;
// - a line without -ref attributes has a known size, equal to the bytes Pipe mode writes for it;
//   those bytes decode (as RecordIO when framed) to each attribute's compact JSON, which is
//   what attribute_json_text gives, and which reads back to the same compact text.
//
// The seeds in augmented_manifest.corpus/ are manifests of the kinds SageMaker Ground Truth
// writes: image references with class labels and metadata objects, Windows line ends, blank
// lines, and a line that is not JSON.
#include <pipemode/framing/recordio.hpp>
#include <pipemode/sagemaker/augmented_manifest.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace pipemode;
namespace sd = pipemode::sagemaker::detail;

void check(bool condition)
{
    if (!condition)
        std::abort();
}

// The keys of the first line's JSON object (at most four), or nothing.
std::vector<std::string> first_line_keys(std::string_view text)
{
    std::vector<std::string> names;
    pipemode::detail::parse_error err;
    const auto doc = pipemode::detail::json::parse(text.substr(0, text.find('\n')), err);
    if (doc && doc->is_object())
        for (const auto& [name, value] : doc->as_object()) {
            if (names.size() == 4)
                break;
            bool seen = false;
            for (const auto& n : names)
                seen = seen || n == name;
            if (!seen)
                names.push_back(name);
        }
    return names;
}

// Checks a line without -ref attributes: its bytes as Pipe mode writes them.
void check_line(std::string_view line, const std::vector<std::string>& names, bool recordio, std::uint64_t size)
{
    std::vector<std::string> texts;
    std::vector<std::byte> bytes;
    for (const auto& name : names) {
        const std::string text = sagemaker::attribute_json_text(line, name);
        // Compact text reads back to itself.
        pipemode::detail::parse_error err;
        const auto again = pipemode::detail::json::parse(text, err);
        check(again.has_value());
        std::string compact;
        sd::append_compact_json(compact, *again);
        check(compact == text);
        sd::append_attribute(bytes, std::as_bytes(std::span(text)), recordio);
        texts.push_back(text);
    }
    check(bytes.size() == size);
    if (!recordio) {
        std::string joined;
        for (const auto& t : texts)
            joined += t;
        check(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()) == joined);
        return;
    }
    recordio_decoder d;
    std::span<const std::byte> in(bytes);
    std::size_t k = 0;
    while (!in.empty()) {
        error_code ec;
        in = in.subspan(d.put(in, ec));
        check(!ec);
        if (d.has_record()) {
            const auto p = d.record().payload;
            check(k < texts.size() && std::string_view(reinterpret_cast<const char*>(p.data()), p.size()) == texts[k]);
            ++k;
            d.pop();
        }
    }
    error_code ec;
    d.finish(ec);
    check(!ec && k == texts.size());
}

void fuzz_names(std::string_view input, const std::vector<std::string>& names, bool recordio)
{
    sd::manifest_data d;
    d.uri = "s3://bucket/train.manifest";
    d.text = std::string(input);
    d.names = names;
    std::vector<object_entry> entries;
    try {
        entries = sd::index_manifest(d, recordio);
    } catch (const data_error& e) {
        check(e.code() == errc::malformed_manifest);
        check(e.where().source == d.uri);
        const auto at = e.where().byte_offset;
        check(at < input.size() && (at == 0 || input[at - 1] == '\n'));
        check(e.where().record_index == d.lines.size());
        check(std::string_view(e.what()).find("line ") != std::string_view::npos);
        return;
    }
    check(entries.size() == d.lines.size());
    std::uint64_t last = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& l = d.lines[i];
        check(l.number > last);
        last = l.number;
        check(l.begin + l.size <= input.size() && (l.begin == 0 || input[l.begin - 1] == '\n'));
        std::uint64_t newlines = 0;
        for (std::size_t k = 0; k < l.begin; ++k)
            newlines += input[k] == '\n';
        check(l.number == newlines + 1);
        check(entries[i].uri == d.uri + "#line " + std::to_string(l.number));
        check(d.line_index(entries[i].uri) == i);
        bool refs = false;
        for (const auto& n : names)
            refs = refs || sd::is_ref_attribute(n);
        check(entries[i].size.has_value() == !refs);
        if (!refs)
            check_line(d.line_text(l), names, recordio, *entries[i].size);
    }
    // Names that are not lines of this manifest are refused; a name that is one maps to it.
    for (const std::string& bad : {d.uri + "#line 0", d.uri + "#line " + std::to_string(last + 1), d.uri + "#line 1x"}) {
        bool refused = false;
        try {
            (void)d.line_index(bad);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        check(refused);
    }
    try {
        const std::string name(input.substr(0, 48));
        check(entries.at(d.line_index(name)).uri == name);
    } catch (const std::invalid_argument&) {
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::vector<std::vector<std::string>> lists{{"source-ref", "class"}, {"class"}, first_line_keys(input)};
    for (const auto& names : lists) {
        if (names.empty())
            continue;
        fuzz_names(input, names, true);
        fuzz_names(input, names, false);
    }
    return 0;
}
