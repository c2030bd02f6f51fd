// pipemode: builds batches row by row for the record parsers.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch.hpp>
#include <pipemode/core/error.hpp>
#include <pipemode/core/record_view.hpp>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <memory_resource>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace pipemode {

/// Which map of a record a tensor belongs to.
enum class record_section : std::uint8_t {
    features,  ///< `Record.features`, delivered as `batch::features()`
    label,     ///< `Record.label`, delivered as `batch::labels()`
};

/// "feature" or "label", as error messages name a tensor of that section.
constexpr std::string_view to_string(record_section s) noexcept
{
    return s == record_section::features ? "feature" : "label";
}

/// Builds `batch` objects one record (row) at a time; every record parser writes through it.
///
/// A record is written as `begin_record`, then for each of its tensors `begin_tensor`, the
/// tensor's values (and keys, shape dimensions or byte strings), `end_tensor`, and finally
/// `end_record`, which commits the row (`write_tensor` does a tensor of packed numbers in one
/// call). `abort_record` rolls back everything written since `begin_record`, so a bad record
/// leaves no trace.
///
/// **Schema.** The first record ever committed fixes the schema for the builder's life: its
/// features and labels (names and order), and for each one the element type, the layout and
/// the dense shape or the sparse column count. Every later record must have exactly the same
/// tensors; a difference is `errc::schema_mismatch` with a sentence in `error_detail()`.
///
/// **Layout of one tensor.** A numeric tensor with keys is sparse; so is one with no values
/// and a shape whose product is not zero (an empty sparse row: protobuf omits empty packed
/// fields, so only its shape is left). Any other numeric tensor is dense, with the given shape
/// (whose product must equal the number of values) or, without one, the shape `{values}`.
/// A sparse tensor needs a one-element shape (the column count), as many keys as values and
/// every key below the column count; a tensor that breaks these rules is
/// `errc::unsupported_value`.
///
/// **Memory.** Values are copied once, straight into the batch's columns, whose storage is
/// never zeroed first (`batch_allocator`) and comes from the builder's memory resource.
/// `take()` sizes the next batch's storage from the previous one, so in steady state a batch
/// never reallocates while it fills. Given a `batch_pool`, `take()` also refills storage that
/// batches gave back when they were destroyed, so that nothing is allocated per batch.
///
/// Example (a parser writing one dense float32 feature):
/// @code
/// builder.begin_record(source, rec);
/// builder.begin_tensor(builder.find_column(record_section::features, "values"), tensor_type::float32);
/// builder.append_values(packed_le_bytes);
/// if (!builder.end_tensor(ec)) { builder.abort_record(); return; }
/// bool full = builder.end_record(ec);
/// @endcode
///
/// Not thread-safe; the batches it hands out are independent values, which may be destroyed
/// on any thread (giving storage back to the pool is thread-safe).
class batch_builder {
public:
    /// What `find_column` returns for a name the schema does not have.
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

    /// A builder of batches of `batch_size` rows whose storage comes from `memory` (nullptr:
    /// `new` and `delete`; otherwise it must outlive the builder and every batch it makes).
    /// Each batch is allocated afresh. Throws `std::invalid_argument` when `batch_size` is 0.
    explicit batch_builder(std::size_t batch_size, std::pmr::memory_resource* memory = nullptr)
        : batch_size_(batch_size)
        , memory_(memory)
    {
        start();
    }

    /// A builder of batches of `batch_size` rows whose storage is taken from `pool` (and from
    /// `pool->memory()` when the pool has none idle); the batches give it back when they are
    /// destroyed, so a builder whose batches are let go allocates nothing in its steady state.
    /// Throws `std::invalid_argument` when `batch_size` is 0 or `pool` is null.
    batch_builder(std::size_t batch_size, std::shared_ptr<batch_pool> pool)
        : batch_size_(batch_size)
        , memory_(pool ? pool->memory() : nullptr)
        , pool_(std::move(pool))
    {
        if (!pool_)
            throw std::invalid_argument("pipemode: batch_builder was given a null batch_pool");
        start();
    }

    /// Rows per full batch.
    std::size_t batch_size() const noexcept { return batch_size_; }

    /// Rows in the batch being built, committed records and padding.
    std::size_t size() const noexcept { return batch_.rows_; }

    /// Whether the batch being built has `batch_size()` rows; `take()` it before the next record.
    bool full() const noexcept { return batch_.rows_ >= batch_size_; }

    /// Whether the batch being built has no rows.
    bool empty() const noexcept { return batch_.rows_ == 0; }

    /// Whether the first record has fixed the schema.
    bool has_schema() const noexcept { return locked_; }

    /// Whether both builders have fixed the same schema: the same columns in the same order,
    /// with the same names, types, layouts and shapes. A batch built by one then holds exactly
    /// what the other would have built from the same records (the decode workers check this
    /// before their batches stand in for the reader's own). False while either has none.
    bool same_schema(const batch_builder& other) const noexcept
    {
        if (!locked_ || !other.locked_ || slots_.size() != other.slots_.size())
            return false;
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            const slot& a = slots_[i];
            const slot& b = other.slots_[i];
            if (a.section != b.section || a.kind != b.kind || a.rank1 != b.rank1 || a.position != b.position
                || a.row_size != b.row_size || a.name != b.name)
                return false;
            const column& ca = column_of(a);
            const column& cb = other.column_of(b);
            if (ca.type_ != cb.type_ || ca.sparse_ != cb.sparse_ || ca.shape_ != cb.shape_)
                return false;
        }
        return true;
    }

    /// Starts a row for record `rec` read from `source` (a name for error messages, interned
    /// once per batch). An open record that was neither ended nor aborted is aborted.
    /// Precondition: `!full()`.
    void begin_record(std::string_view source, const record_view& rec)
    {
        if (record_open_)
            abort_record();
        assert(!full() && "take() the full batch before the next record");
        ++serial_;
        record_open_ = true;
        present_ = 0;
        cursor_ = 0;
        failed_ = {};
        added_source_ = false;
        auto& sources = batch_.sources_;
        if (sources.empty() || !same(sources[last_source_], source)) [[unlikely]]
            intern(source);
        origin_ = {static_cast<std::uint32_t>(last_source_), rec.offset, rec.index};
    }

    /// The index of the column for tensor `name` of `section`, for `begin_tensor`.
    ///
    /// Before the schema is fixed (while the first record is written) an unknown name creates
    /// a column; afterwards it gives `npos`. Looking names up in the schema's order is fastest.
    std::size_t find_column(record_section section, std::string_view name)
    {
        if (cursor_ < slots_.size()) {
            const auto& s = slots_[cursor_];
            if (s.section == section && same(s.name, name)) [[likely]]
                return cursor_++;
        }
        return find_column_slow(section, name);
    }

    /// Starts the current record's tensor for column `column` (from `find_column`), whose
    /// elements are of type `type`.
    ///
    /// A type other than the schema's, or a column already written in this record, is not
    /// rejected here: the values are still taken (into scratch space) so that `end_tensor` can
    /// describe the whole tensor when it reports the mismatch.
    void begin_tensor(std::size_t column, tensor_type type)
    {
        assert(record_open_ && !tensor_.open && column < slots_.size());
        auto& s = slots_[column];
        auto& c = col(s);
        tensor_.column = column;
        tensor_.issue = tensor_issue::none;
        if (s.stamp == serial_) [[unlikely]]
            tensor_.issue = tensor_issue::duplicate;
        else if (s.kind == layout::undefined)
            set_type(c, type);
        else if (c.type_ != type) [[unlikely]]
            tensor_.issue = tensor_issue::wrong_type;
        s.stamp = serial_;
        if (tensor_.issue == tensor_issue::none)
            open(c, s, type);
        else
            open_scratch(type);
    }

    /// Starts a tensor by name: `begin_tensor(find_column(section, name), type)`, except that a
    /// name missing from a fixed schema is taken into scratch space and reported by
    /// `end_tensor` as `errc::schema_mismatch`.
    void begin_tensor(record_section section, std::string_view name, tensor_type type)
    {
        auto column = find_column(section, name);
        if (column != npos)
            return begin_tensor(column, type);
        assert(record_open_ && !tensor_.open);
        tensor_.column = npos;
        tensor_.issue = tensor_issue::unknown;
        unknown_section_ = section;
        unknown_name_.assign(name);
        open_scratch(type);
    }

    /// Writes a whole numeric tensor of the current record, given as packed little-endian
    /// elements of `type` with no keys and no shape: the same as `begin_tensor(column, type)`,
    /// `append_values(bytes)` and `end_tensor(ec)`, with the same outcome, in one call whose
    /// usual case (a dense rank-1 column of the schema's type and row size, not yet written in
    /// this record) is a check and a copy. `type` must not be `tensor_type::bytes`.
    bool write_tensor(std::size_t column, tensor_type type, std::span<const std::byte> bytes, error_code& ec)
    {
        assert(record_open_ && !tensor_.open && column < slots_.size() && type != tensor_type::bytes);
        auto& s = slots_[column];
        if (s.kind == layout::dense && s.rank1 && s.type == type && s.stamp != serial_
            && bytes.size() == s.row_size * element_size(type)) [[likely]] {
            s.stamp = serial_;
            auto& c = col(s);
            switch (type) {
            case tensor_type::float32: store_values<float>(c, s, bytes); break;
            case tensor_type::float64: store_values<double>(c, s, bytes); break;
            case tensor_type::int32: store_values<std::int32_t>(c, s, bytes); break;
            case tensor_type::bytes: break;
            }
            ++present_;
            return true;
        }
        begin_tensor(column, type);
        append_values(bytes);
        return end_tensor(ec);
    }

    /// Appends numeric values given as packed little-endian elements of the tensor's type
    /// (`bytes.size()` a multiple of the element size): one copy, as they come off the wire.
    void append_values(std::span<const std::byte> bytes)
    {
        assert(tensor_.open);
        switch (tensor_.type) {
        case tensor_type::float32: return copy_values<float>(bytes);
        case tensor_type::float64: return copy_values<double>(bytes);
        case tensor_type::int32: return copy_values<std::int32_t>(bytes);
        case tensor_type::bytes: assert(!"append_item() adds byte strings"); return;
        }
    }

    /// Makes room for `n` more values of the tensor and returns where to write them (for
    /// values that must be decoded, such as varints). `T` must be the tensor's element type.
    template <class T>
        requires(is_element_type_v<T> && !std::is_same_v<T, std::byte>)
    T* extend_values(std::size_t n)
    {
        assert(tensor_.open && tensor_.type == tensor_type_of_v<T>);
        return grow(*std::get_if<batch_vector<T>>(&tensor_.target->values_), tensor_.target_slot->values, n);
    }

    /// Makes room for `n` more sparse keys (column indices) and returns where to write them.
    std::uint64_t* extend_keys(std::size_t n)
    {
        assert(tensor_.open);
        return grow(tensor_.target->keys_, tensor_.target_slot->keys, n);
    }

    /// Appends one dimension to the tensor's shape.
    void append_shape(std::uint64_t extent)
    {
        assert(tensor_.open);
        shape_.push_back(extent);
    }

    /// Appends one byte string to a `bytes` tensor.
    void append_item(std::span<const std::byte> item)
    {
        assert(tensor_.open && tensor_.type == tensor_type::bytes);
        auto& c = *tensor_.target;
        auto& s = *tensor_.target_slot;
        auto* p = grow(*std::get_if<batch_vector<std::byte>>(&c.values_), s.values, item.size());
        if (!item.empty())
            std::memcpy(p, item.data(), item.size());
        c.item_offsets_.push_back(s.values);
    }

    /// Ends the current tensor: works out its layout, checks it (`errc::unsupported_value`) and
    /// compares it with the schema (`errc::schema_mismatch`), or, in the first record, adds it
    /// to the schema. On failure returns false with `ec` set and `error_detail()` saying why;
    /// the record then cannot be committed and should be aborted.
    bool end_tensor(error_code& ec)
    {
        assert(tensor_.open);
        // The common case decided without touching the column: a dense tensor without a shape,
        // of the schema's size, in a rank-1 column.
        const auto& ts = *tensor_.target_slot;
        if (ts.keys == tensor_.keys_start && shape_.empty() && tensor_.issue == tensor_issue::none
            && ts.kind == layout::dense && ts.rank1 && ts.values - tensor_.values_start == ts.row_size) [[likely]] {
            tensor_.open = false;
            ++present_;
            return true;
        }
        return end_tensor_slow(ec);
    }

    /// Commits the current record as a row. Fails with `errc::schema_mismatch` when a column of
    /// the schema was not written, and with the earlier error when a tensor failed; a failed
    /// record is rolled back. Returns whether the batch is now full.
    bool end_record(error_code& ec)
    {
        assert(record_open_);
        if (tensor_.open || failed_ || present_ != slots_.size()) [[unlikely]]
            return end_record_failed(ec);
        for (auto i : varying_) {
            auto& s = slots_[i];
            auto& c = col(s);
            if (s.kind == layout::sparse)
                c.row_offsets_.push_back(s.keys);
            else
                c.row_offsets_.push_back(c.item_offsets_.size() - 1);
        }
        batch_.origins_.push_back(origin_);
        ++batch_.rows_;
        record_open_ = false;
        if (!locked_) [[unlikely]]
            lock();
        ec = {};
        return full();
    }

    /// Rolls back everything written since `begin_record` (values, keys, byte strings, an
    /// interned source name, and in the first record the columns it created). Does nothing
    /// when no record is open.
    void abort_record()
    {
        if (!record_open_)
            return;
        record_open_ = false;
        tensor_.open = false;
        failed_ = {};
        if (added_source_) {
            spare_names_.push_back(std::move(batch_.sources_.back()));
            batch_.sources_.pop_back();
            last_source_ = 0;
        }
        if (!locked_) {
            slots_.clear();
            varying_.clear();
            batch_.features_.clear();
            batch_.labels_.clear();
            names_[0].clear();
            names_[1].clear();
            return;
        }
        for (auto& s : slots_) {
            auto& c = col(s);
            switch (s.kind) {
            case layout::dense:
                s.values = batch_.rows_ * c.row_size_;
                s.keys = 0;  // a sparse tensor of the same type may have been written here
                break;
            case layout::sparse: s.values = s.keys = c.row_offsets_.back(); break;
            case layout::bytes:
                c.item_offsets_.resize(c.row_offsets_.back() + 1);
                s.values = c.item_offsets_.back();
                s.keys = 0;
                break;
            case layout::undefined: break;
            }
        }
    }

    /// Pads the batch being built to `batch_size()` rows: zeros in dense columns, empty rows in
    /// sparse and bytes columns, no origins; `batch::padding()` counts them. A batch with no
    /// rows stays empty (there is nothing to pad). Precondition: no open record.
    void pad()
    {
        assert(!record_open_);
        if (empty() || full())
            return;
        std::size_t k = batch_size_ - batch_.rows_;
        for (auto& s : slots_) {
            auto& c = col(s);
            if (s.kind == layout::dense) {
                std::visit(
                    [&](auto& v) {
                        auto* p = grow(v, s.values, k * c.row_size_);
                        std::fill_n(p, k * c.row_size_, typename std::decay_t<decltype(v)>::value_type{});
                    },
                    c.values_);
            }
            else {
                std::uint64_t end = s.kind == layout::sparse ? s.keys : c.item_offsets_.size() - 1;
                c.row_offsets_.insert(c.row_offsets_.end(), k, end);
            }
        }
        batch_.rows_ += k;
        batch_.padding_ += k;
    }

    /// Moves the batch out, stamped with `epoch`, and starts a new, empty one of the same
    /// schema whose storage is sized from this one. Precondition: no open record.
    batch take(std::uint64_t epoch = 0)
    {
        assert(!record_open_);
        batch next = fresh_batch();
        next.origins_.reserve(batch_size_);
        next.sources_.reserve(std::max<std::size_t>(batch_.sources_.size(), 1));
        next.features_.reserve(batch_.features_.size());
        next.labels_.reserve(batch_.labels_.size());
        // Recycled storage of another schema (a pool shared with another builder) loses the
        // columns this one does not have.
        if (next.features_.size() > batch_.features_.size())
            next.features_.erase(next.features_.begin() + std::ptrdiff_t(batch_.features_.size()), next.features_.end());
        if (next.labels_.size() > batch_.labels_.size())
            next.labels_.erase(next.labels_.begin() + std::ptrdiff_t(batch_.labels_.size()), next.labels_.end());
        for (auto& s : slots_) {
            auto& c = col(s);
            std::size_t rows = batch_.rows_;
            c.rows_ = rows;  // kept here, not per row: every column has the batch's rows
            // The logical ends (the vectors stay at their full size), and the next batch sized
            // from this one scaled to a full batch, with slack where row sizes vary.
            c.values_size_ = s.values;
            c.keys_size_ = s.keys;
            if (rows != 0) {
                auto scale = [&](std::size_t n) {
                    auto full = n / rows * batch_size_ + (n % rows) * batch_size_ / rows;
                    return s.kind == layout::dense ? full : full + full / 8 + 16;
                };
                s.hint_values = scale(s.values);
                s.hint_keys = scale(s.keys);
                s.hint_items = c.item_offsets_.empty() ? 0 : scale(c.item_offsets_.size() - 1);
            }
            // Columns are visited in creation order, so position p of a section comes after
            // positions 0..p-1 of it.
            auto& columns = s.section == record_section::features ? next.features_ : next.labels_;
            if (columns.size() <= s.position)
                columns.push_back(column(memory_));
            column& fresh = columns[s.position];
            // Assignments into recycled storage reuse its capacity: no allocation once the
            // names and shapes have been stored there before.
            fresh.name_ = c.name_;
            fresh.sparse_ = c.sparse_;
            fresh.shape_ = c.shape_;
            fresh.row_size_ = c.row_size_;
            fresh.rows_ = 0;
            set_type(fresh, c.type_);
            fresh.row_offsets_.clear();
            // reserve() keeps what recycled storage already has; only new or outgrown storage
            // allocates.
            std::visit([&](auto& v) { v.reserve(s.hint_values); }, fresh.values_);
            if (s.kind == layout::sparse)
                fresh.keys_.reserve(s.hint_keys);
            if (s.kind != layout::dense) {
                fresh.row_offsets_.reserve(batch_size_ + 1);
                fresh.row_offsets_.push_back(0);
            }
            if (s.kind == layout::bytes)
                fresh.item_offsets_.reserve(s.hint_items + 1);  // set_type() put in the leading 0
            s.values = 0;
            s.keys = 0;
        }
        batch_.epoch_ = epoch;
        batch out = std::move(batch_);
        batch_ = std::move(next);
        last_source_ = 0;
        return out;
    }

    /// After a failure, a sentence naming the tensor and what was wrong, e.g.
    /// "feature 'values': expected float32 dense of shape [50], got float64 dense of shape [49]".
    std::string_view error_detail() const noexcept { return detail_; }

private:
    void start()
    {
        if (batch_size_ == 0)
            throw std::invalid_argument("pipemode: batch_size must be at least 1");
        batch_ = fresh_batch();
        batch_.origins_.reserve(batch_size_);
    }

    // Storage for the next batch, emptied: recycled from the pool when it has some (columns,
    // names and capacity kept for take() to reuse), otherwise new.
    batch fresh_batch()
    {
        batch b = pool_ ? pool_->take() : batch(memory_);
        b.rows_ = 0;
        b.padding_ = 0;
        b.epoch_ = 0;
        b.origins_.clear();
        // Source names are kept as strings to be assigned again, each keeping its capacity.
        for (auto& name : b.sources_)
            if (spare_names_.size() < max_spare_names)
                spare_names_.push_back(std::move(name));
        b.sources_.clear();
        return b;
    }

    [[gnu::noinline]] bool end_tensor_slow(error_code& ec)
    {
        tensor_.open = false;
        const auto& t = *tensor_.target;
        const auto& ts = *tensor_.target_slot;
        std::size_t n = ts.values - tensor_.values_start;
        std::size_t k = ts.keys - tensor_.keys_start;

        layout got = classify(tensor_.type, n, k);
        if (got == layout::sparse) [[unlikely]] {
            if (!check_sparse(t, n, k))
                return fail(ec, errc::unsupported_value);
        }
        else if (got == layout::dense && !shape_.empty()) [[unlikely]] {
            if (!check_dense_shape(n))
                return fail(ec, errc::unsupported_value);
        }

        if (tensor_.issue != tensor_issue::none) [[unlikely]]
            return fail(ec, errc::schema_mismatch, describe_issue(got, n));

        auto& s = slots_[tensor_.column];
        auto& c = col(s);
        if (s.kind == layout::undefined) {
            define(c, s, got, n);
        }
        else if (!matches(c, s, got, n)) [[unlikely]] {
            return fail(ec, errc::schema_mismatch,
                        std::string(to_string(s.section)) + " '" + c.name_ + "': expected "
                            + describe(c.type_, s.kind, c.shape_) + ", got " + describe_got(got, n));
        }
        ++present_;
        return true;
    }

    [[gnu::cold, gnu::noinline]] bool end_record_failed(error_code& ec)
    {
        if (tensor_.open) {
            tensor_.open = false;
            if (!failed_)
                fail(ec, errc::schema_mismatch, "a tensor was begun but not ended");
        }
        if (failed_) {
            ec = failed_;
            abort_record();
            return false;
        }
        for (const auto& s : slots_) {
            if (s.stamp != serial_) {
                fail(ec, errc::schema_mismatch,
                     std::string(to_string(s.section)) + " '" + col(s).name_ + "' is missing"
                         + (locked_ ? " (the first record had it)" : " (it has no value)"));
                break;
            }
        }
        abort_record();
        return false;
    }

    enum class layout : std::uint8_t { undefined, dense, sparse, bytes };
    enum class tensor_issue : std::uint8_t { none, wrong_type, duplicate, unknown };

    // The builder's side of one column: where its logical end is (the vectors' sizes run ahead,
    // uninitialised, so that appending is a bounds check and a copy), and its schema layout.
    struct slot {
        record_section section = record_section::features;
        layout kind = layout::undefined;
        bool rank1 = false;          // dense with a one-element shape
        tensor_type type = tensor_type::float32;  // the column's element type, once kind is defined
        std::uint32_t position = 0;  // index in batch::features_ or batch::labels_
        std::size_t row_size = 0;    // dense: values per row
        std::size_t values = 0;      // elements of column::values_ in use
        std::size_t keys = 0;        // elements of column::keys_ in use
        std::uint64_t stamp = 0;     // serial of the last record that wrote the column
        std::size_t hint_values = 0;
        std::size_t hint_keys = 0;
        std::size_t hint_items = 0;
        std::string name;            // the column's name, kept here to be compared in place
    };

    struct open_tensor {
        bool open = false;
        tensor_issue issue = tensor_issue::none;
        tensor_type type = tensor_type::float32;
        std::size_t column = npos;
        pipemode::column* target = nullptr;  // the schema column, or scratch_ when something is wrong
        slot* target_slot = nullptr;
        std::size_t values_start = 0;
        std::size_t keys_start = 0;
    };

    struct name_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    using name_map = std::unordered_map<std::string, std::size_t, name_hash, std::equal_to<>>;

    // a == b, without a call to memcmp for the short strings that names usually are: two
    // overlapping word loads cover any length from 4 to 16 without reading out of bounds.
    static bool same(const std::string& a, std::string_view b) noexcept
    {
        auto n = a.size();
        if (n != b.size())
            return false;
        const char* x = a.data();
        const char* y = b.data();
        auto load = [](const char* p, auto word) {
            std::memcpy(&word, p, sizeof word);
            return word;
        };
        if (n >= 8) {
            if (n > 16)
                return std::memcmp(x, y, n) == 0;
            return load(x, std::uint64_t{}) == load(y, std::uint64_t{})
                && load(x + n - 8, std::uint64_t{}) == load(y + n - 8, std::uint64_t{});
        }
        if (n >= 4)
            return load(x, std::uint32_t{}) == load(y, std::uint32_t{})
                && load(x + n - 4, std::uint32_t{}) == load(y + n - 4, std::uint32_t{});
        for (std::size_t i = 0; i < n; ++i)
            if (x[i] != y[i])
                return false;
        return true;
    }

    column& col(const slot& s) noexcept
    {
        return s.section == record_section::features ? batch_.features_[s.position] : batch_.labels_[s.position];
    }

    const column& column_of(const slot& s) const noexcept
    {
        return s.section == record_section::features ? batch_.features_[s.position] : batch_.labels_[s.position];
    }

    // Gives `c` empty storage for elements of `type`, from the memory its storage already
    // comes from; storage of the same type is reused whole.
    static void set_type(column& c, tensor_type type)
    {
        // The variant's alternatives are in tensor_type's order.
        static_assert(std::is_same_v<std::variant_alternative_t<std::size_t(tensor_type::float64), decltype(c.values_)>,
                                     batch_vector<double>>
                      && std::is_same_v<std::variant_alternative_t<std::size_t(tensor_type::bytes), decltype(c.values_)>,
                                        batch_vector<std::byte>>);
        c.type_ = type;
        // Storage of the same type is kept whole: its size runs ahead of the values in use
        // (values_size_, and the builder's slot), so nothing is constructed or destroyed.
        c.values_size_ = 0;
        c.keys_size_ = 0;
        if (c.values_.index() != static_cast<std::size_t>(type)) {
            auto* memory = c.keys_.get_allocator().resource();
            switch (type) {
            case tensor_type::float32: c.values_.emplace<batch_vector<float>>(memory); break;
            case tensor_type::float64: c.values_.emplace<batch_vector<double>>(memory); break;
            case tensor_type::int32: c.values_.emplace<batch_vector<std::int32_t>>(memory); break;
            case tensor_type::bytes: c.values_.emplace<batch_vector<std::byte>>(memory); break;
            }
        }
        c.item_offsets_.clear();
        if (type == tensor_type::bytes)
            c.item_offsets_.push_back(0);
    }

    void open(column& c, slot& s, tensor_type type)
    {
        tensor_.open = true;
        tensor_.type = type;
        tensor_.target = &c;
        tensor_.target_slot = &s;
        tensor_.values_start = s.values;
        tensor_.keys_start = s.keys;
        shape_.clear();
    }

    [[gnu::cold]] void open_scratch(tensor_type type)
    {
        set_type(scratch_, type);
        scratch_slot_.values = 0;
        scratch_slot_.keys = 0;
        open(scratch_, scratch_slot_, type);
    }

    template <class T>
    static T* grow(batch_vector<T>& v, std::size_t& end, std::size_t n)
    {
        if (v.size() - end < n) [[unlikely]]
            enlarge(v, end + n);
        T* p = v.data() + end;
        end += n;
        return p;
    }

    // Makes v.size() at least `need`. Growing the size costs nothing (batch_allocator does not
    // zero the elements), so within the capacity reserved for the batch the size jumps to the
    // whole capacity and this is called once per batch; past it, the storage doubles.
    template <class T>
    [[gnu::cold, gnu::noinline]] static void enlarge(batch_vector<T>& v, std::size_t need)
    {
        if (need <= v.capacity())
            v.resize(v.capacity());
        else
            v.resize(std::max({need, v.size() * 2, std::size_t{64}}));
    }

    static constexpr std::size_t element_size(tensor_type type) noexcept
    {
        return type == tensor_type::float64 ? sizeof(double) : type == tensor_type::bytes ? 1 : 4;
    }

    // write_tensor's copy of a whole row into column `c`.
    template <class T>
    static void store_values(column& c, slot& s, std::span<const std::byte> bytes)
    {
        auto* p = grow(*std::get_if<batch_vector<T>>(&c.values_), s.values, bytes.size() / sizeof(T));
        if (!bytes.empty())
            std::memcpy(p, bytes.data(), bytes.size());
    }

    template <class T>
    void copy_values(std::span<const std::byte> bytes)
    {
        assert(bytes.size() % sizeof(T) == 0);
        auto n = bytes.size() / sizeof(T);
        auto* p = grow(*std::get_if<batch_vector<T>>(&tensor_.target->values_), tensor_.target_slot->values, n);
        if (n != 0)
            std::memcpy(p, bytes.data(), bytes.size());
    }

    layout classify(tensor_type type, std::size_t n, std::size_t k) const noexcept
    {
        if (type == tensor_type::bytes)
            return layout::bytes;
        if (k != 0)
            return layout::sparse;
        // No keys and no values but a shape with room for values: an empty sparse row.
        if (n == 0 && !shape_.empty() && std::ranges::find(shape_, std::uint64_t{0}) == shape_.end())
            return layout::sparse;
        return layout::dense;
    }

    bool check_sparse(const column& t, std::size_t n, std::size_t k)
    {
        auto what = [&] { return tensor_name() + ": "; };
        if (shape_.size() != 1) {
            detail_ = what() + "a sparse tensor needs a one-element shape (its column count), got "
                + format_shape(shape_);
            return false;
        }
        if (k != n) {
            detail_ = what() + "a sparse tensor has " + std::to_string(k) + " keys for " + std::to_string(n)
                + " values";
            return false;
        }
        const auto* keys = t.keys_.data() + tensor_.keys_start;
        std::uint64_t columns = shape_[0];
        // Counted without a branch per key (a row has hundreds); the first one outside is
        // looked for only when there is one.
        std::size_t outside = 0;
        for (std::size_t i = 0; i < k; ++i)
            outside += keys[i] >= columns;
        if (outside == 0) [[likely]]
            return true;
        const auto* bad = std::find_if(keys, keys + k, [columns](std::uint64_t key) { return key >= columns; });
        detail_ = what() + "key " + std::to_string(*bad) + " is outside the tensor's " + std::to_string(columns)
            + " columns";
        return false;
    }

    bool check_dense_shape(std::size_t n)
    {
        // The product, or a value above n when it would overflow; a zero dimension makes it 0
        // whatever the others are.
        std::uint64_t product = 1;
        if (std::ranges::find(shape_, std::uint64_t{0}) != shape_.end()) {
            product = 0;
        }
        else {
            for (auto d : shape_) {
                if (d > n / product) {
                    product = std::uint64_t{n} + 1;
                    break;
                }
                product *= d;
            }
        }
        if (product == n)
            return true;
        detail_ = tensor_name() + ": shape " + format_shape(shape_) + " does not hold its " + std::to_string(n)
            + " values";
        return false;
    }

    bool matches(const column& c, const slot& s, layout got, std::size_t n) const noexcept
    {
        if (got != s.kind)
            return false;
        if (got == layout::dense) {
            if (shape_.empty())
                return c.row_size_ == n && c.shape_.size() == 1;
            return std::ranges::equal(shape_, c.shape_);
        }
        if (got == layout::sparse)
            return shape_[0] == c.shape_[0];
        return true;
    }

    void define(column& c, slot& s, layout got, std::size_t n)
    {
        s.kind = got;
        s.type = c.type_;
        s.row_size = got == layout::dense ? n : 0;
        s.rank1 = got == layout::dense && shape_.size() <= 1;
        if (got != layout::dense)
            varying_.push_back(static_cast<std::size_t>(&s - slots_.data()));
        c.sparse_ = got == layout::sparse;
        c.shape_.clear();
        if (got == layout::dense) {
            if (shape_.empty())
                c.shape_.push_back(n);
            else
                c.shape_.assign(shape_.begin(), shape_.end());
            c.row_size_ = n;
        }
        else if (got == layout::sparse) {
            c.shape_.push_back(shape_[0]);
        }
        if (got != layout::dense)
            c.row_offsets_.assign(1, 0);
    }

    // The first record has been committed: the schema is now fixed. Dense columns know their
    // final size, so the rest of this first batch is allocated at once.
    void lock()
    {
        locked_ = true;
        for (auto& s : slots_) {
            auto& c = col(s);
            if (s.kind == layout::dense)
                std::visit([&](auto& v) { v.reserve(batch_size_ * c.row_size_); }, c.values_);
            else
                c.row_offsets_.reserve(batch_size_ + 1);
        }
    }

    [[gnu::noinline]] std::size_t find_column_slow(record_section section, std::string_view name)
    {
        auto& names = names_[static_cast<int>(section)];
        if (auto it = names.find(name); it != names.end()) {
            cursor_ = it->second + 1;
            return it->second;
        }
        if (locked_)
            return npos;
        return create_column(section, name);
    }

    std::size_t create_column(record_section section, std::string_view name)
    {
        auto& columns = section == record_section::features ? batch_.features_ : batch_.labels_;
        slot s;
        s.section = section;
        s.name.assign(name);
        s.position = static_cast<std::uint32_t>(columns.size());
        columns.push_back(column(memory_));
        columns.back().name_.assign(name);
        slots_.push_back(s);
        auto index = slots_.size() - 1;
        names_[static_cast<int>(section)].emplace(std::string(name), index);
        cursor_ = index + 1;
        return index;
    }

    [[gnu::cold]] void intern(std::string_view source)
    {
        auto& sources = batch_.sources_;
        for (std::size_t i = 0; i < sources.size(); ++i) {
            if (sources[i] == source) {
                last_source_ = i;
                return;
            }
        }
        if (spare_names_.empty()) {
            sources.emplace_back(source);
        }
        else {
            // A string from recycled storage: assigning a name no longer than one it held
            // before does not allocate.
            sources.push_back(std::move(spare_names_.back()));
            spare_names_.pop_back();
            sources.back().assign(source);
        }
        last_source_ = sources.size() - 1;
        added_source_ = true;
    }

    [[gnu::cold]] bool fail(error_code& ec, errc e, std::string detail = {})
    {
        if (!detail.empty())
            detail_ = std::move(detail);
        ec = make_error_code(e);
        if (!failed_)
            failed_ = ec;
        return false;
    }

    std::string tensor_name() const
    {
        if (tensor_.issue == tensor_issue::unknown)
            return std::string(to_string(unknown_section_)) + " '" + unknown_name_ + "'";
        const auto& s = slots_[tensor_.column];
        const auto& c = s.section == record_section::features ? batch_.features_[s.position]
                                                              : batch_.labels_[s.position];
        return std::string(to_string(s.section)) + " '" + c.name_ + "'";
    }

    // "[2, 3]"; a shape of more than 8 dimensions (damaged data, most likely) is cut short so
    // that a message never grows with the input.
    static std::string format_shape(std::span<const std::uint64_t> shape)
    {
        std::string r = "[";
        for (std::size_t i = 0; i < shape.size() && i < 8; ++i)
            r += (i ? ", " : "") + std::to_string(shape[i]);
        if (shape.size() > 8)
            r += ", ... (" + std::to_string(shape.size()) + " dimensions)";
        return r + "]";
    }

    static std::string describe(tensor_type type, layout kind, std::span<const std::uint64_t> shape)
    {
        std::string r(to_string(type));
        if (kind == layout::dense)
            r += " dense of shape " + format_shape(shape);
        else if (kind == layout::sparse)
            r += " sparse of " + std::to_string(shape.empty() ? 0 : shape[0]) + " columns";
        return r;
    }

    std::string describe_got(layout got, std::size_t n) const
    {
        if (got == layout::dense && shape_.empty()) {
            std::uint64_t d = n;
            return describe(tensor_.type, got, std::span(&d, 1));
        }
        return describe(tensor_.type, got, shape_);
    }

    std::string describe_issue(layout got, std::size_t n) const
    {
        if (tensor_.issue == tensor_issue::unknown) {
            std::string names;
            for (const auto& s : slots_)
                if (s.section == unknown_section_)
                    names += (names.empty() ? "" : ", ") + col_name(s);
            return tensor_name() + " (" + describe_got(got, n) + ") is not in the first record, whose "
                + (unknown_section_ == record_section::features ? "features" : "labels") + " are: "
                + (names.empty() ? "none" : names);
        }
        if (tensor_.issue == tensor_issue::duplicate)
            return tensor_name() + " appears more than once in the record";
        const auto& s = slots_[tensor_.column];
        const auto& c = s.section == record_section::features ? batch_.features_[s.position]
                                                              : batch_.labels_[s.position];
        return tensor_name() + ": expected " + describe(c.type_, s.kind, c.shape_) + ", got " + describe_got(got, n);
    }

    const std::string& col_name(const slot& s) const
    {
        return (s.section == record_section::features ? batch_.features_[s.position]
                                                       : batch_.labels_[s.position])
            .name_;
    }

    // More source names than a batch usually spans are not worth keeping.
    static constexpr std::size_t max_spare_names = 64;

    std::size_t batch_size_;
    std::pmr::memory_resource* memory_ = nullptr;  // where new batch storage comes from (nullptr: new/delete)
    std::shared_ptr<batch_pool> pool_;             // where recycled storage comes from, if any
    std::vector<std::string> spare_names_;         // source-name strings of recycled batches
    batch batch_;
    std::vector<slot> slots_;  // every column of the schema, in first-record order
    std::vector<std::size_t> varying_;  // the sparse and bytes ones, whose rows need offsets
    name_map names_[2];        // column index by name, per section
    bool locked_ = false;

    // The open record.
    bool record_open_ = false;
    std::uint64_t serial_ = 0;   // counts records begun; stamps the columns a record wrote
    std::size_t present_ = 0;    // schema columns written correctly in this record
    std::size_t cursor_ = 0;     // where find_column expects the next name
    error_code failed_;          // the record's first failure
    record_origin origin_;
    std::size_t last_source_ = 0;
    bool added_source_ = false;  // the record interned a new source name

    // The open tensor.
    open_tensor tensor_;
    std::vector<std::uint64_t> shape_;
    column scratch_;             // takes a tensor that cannot go into its column
    slot scratch_slot_;
    record_section unknown_section_ = record_section::features;
    std::string unknown_name_;

    std::string detail_;
};

} // namespace pipemode
