// pipemode: the record batch the training loop reads.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/core/batch_allocator.hpp>
#include <pipemode/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace pipemode {

class batch_builder;
class batch_pool;

/// The element type of a tensor, as in SageMaker's `aialgs.data.Value`.
enum class tensor_type : std::uint8_t {
    float32,  ///< `Float32Tensor`, read as `float`
    float64,  ///< `Float64Tensor`, read as `double`
    int32,    ///< `Int32Tensor`, read as `std::int32_t`
    bytes,    ///< `Bytes`, read as `std::byte`
};

/// The name of a tensor type as pipemode prints it ("float32", "float64", "int32", "bytes").
constexpr std::string_view to_string(tensor_type t) noexcept
{
    switch (t) {
    case tensor_type::float32: return "float32";
    case tensor_type::float64: return "float64";
    case tensor_type::int32: return "int32";
    case tensor_type::bytes: return "bytes";
    }
    return "?";
}

/// The C++ element type that stores values of tensor type `T`.
template <class T>
inline constexpr bool is_element_type_v = std::is_same_v<T, float> || std::is_same_v<T, double>
    || std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::byte>;

/// The tensor type whose values are stored as `T`.
template <class T>
    requires is_element_type_v<T>
inline constexpr tensor_type tensor_type_of_v = std::is_same_v<T, float> ? tensor_type::float32
    : std::is_same_v<T, double>                                        ? tensor_type::float64
    : std::is_same_v<T, std::int32_t>                                  ? tensor_type::int32
                                                                       : tensor_type::bytes;

/// One feature (or label) of every record in a batch, stored as a column.
///
/// Layouts:
/// - **dense**: `values<T>()` holds `rows() * row_size()` elements, row-major; `shape()` is the
///   per-record shape (the record's own `shape` field, or `{row_size()}` when it had none).
/// - **sparse** (CSR): `row_offsets()` has `rows() + 1` entries; row `i` owns
///   `values<T>()[row_offsets()[i] .. row_offsets()[i+1])` and the same range of `keys()`
///   (column indices within the row). `shape()` is `{number of columns}`.
/// - **bytes**: each record holds zero or more byte strings ("items"). `row_offsets()` indexes
///   items (`rows() + 1` entries) and `item_offsets()` indexes `values<std::byte>()`
///   (`items + 1` entries). `item(row, j)` does the arithmetic.
///
/// A column is immutable once its batch has been built; it is safe to read from any number of
/// threads at once.
class column {
public:
    /// The feature's name (the key of the `features` or `label` map).
    const std::string& name() const noexcept { return name_; }

    /// The element type.
    tensor_type type() const noexcept { return type_; }

    /// Whether the column is sparse (CSR).
    bool is_sparse() const noexcept { return sparse_; }

    /// The per-record shape; see the class comment.
    std::span<const std::uint64_t> shape() const noexcept { return shape_; }

    /// Number of records (rows) in the column, padding included.
    std::size_t rows() const noexcept { return rows_; }

    /// Elements per record of a dense column (the product of `shape()`); 0 for other layouts.
    std::size_t row_size() const noexcept { return row_size_; }

    /// All values. Throws `std::logic_error` when `T` is not this column's element type.
    template <class T>
        requires is_element_type_v<T>
    std::span<const T> values() const
    {
        if (tensor_type_of_v<T> != type_)
            throw std::logic_error("pipemode: column '" + name_ + "' holds "
                                   + std::string(to_string(type_)) + ", not "
                                   + std::string(to_string(tensor_type_of_v<T>)));
        return std::span<const T>(std::get<batch_vector<T>>(values_).data(), values_size_);
    }

    /// The values of row `i`: a dense row, a sparse row's non-zeros, or a bytes row's items
    /// concatenated.
    template <class T>
        requires is_element_type_v<T>
    std::span<const T> row(std::size_t i) const
    {
        auto all = values<T>();
        if (type_ == tensor_type::bytes) {
            auto first = item_offsets_[row_offsets_[i]];
            auto last = item_offsets_[row_offsets_[i + 1]];
            return all.subspan(first, last - first);
        }
        if (sparse_)
            return all.subspan(row_offsets_[i], row_offsets_[i + 1] - row_offsets_[i]);
        return all.subspan(i * row_size_, row_size_);
    }

    /// Column indices of all sparse values (empty for dense and bytes columns).
    std::span<const std::uint64_t> keys() const noexcept { return {keys_.data(), keys_size_}; }

    /// Column indices of row `i`'s non-zeros (sparse columns only).
    std::span<const std::uint64_t> row_keys(std::size_t i) const
    {
        return keys().subspan(row_offsets_[i], row_offsets_[i + 1] - row_offsets_[i]);
    }

    /// Row boundaries of a sparse or bytes column (`rows() + 1` entries; empty when dense).
    std::span<const std::uint64_t> row_offsets() const noexcept { return row_offsets_; }

    /// Item boundaries of a bytes column (`items + 1` entries).
    std::span<const std::uint64_t> item_offsets() const noexcept { return item_offsets_; }

    /// Number of byte strings in row `i` of a bytes column.
    std::size_t item_count(std::size_t i) const { return row_offsets_[i + 1] - row_offsets_[i]; }

    /// Byte string `j` of row `i` of a bytes column.
    std::span<const std::byte> item(std::size_t i, std::size_t j) const
    {
        auto n = row_offsets_[i] + j;
        return values<std::byte>().subspan(item_offsets_[n], item_offsets_[n + 1] - item_offsets_[n]);
    }

    /// Bytes of memory the column's storage holds.
    std::size_t byte_size() const noexcept
    {
        std::size_t n = std::visit([](const auto& v) { return v.capacity() * sizeof(v[0]); }, values_);
        return n + (keys_.capacity() + row_offsets_.capacity() + item_offsets_.capacity() + shape_.capacity())
            * sizeof(std::uint64_t) + name_.capacity() + sizeof(*this);
    }

    /// An empty column (its storage from `new` and `delete`).
    column() = default;

    /// A copy holding the values and keys in use only, in storage from the same memory resource.
    column(const column& other)
        : name_(other.name_)
        , type_(other.type_)
        , sparse_(other.sparse_)
        , shape_(other.shape_)
        , rows_(other.rows_)
        , row_size_(other.row_size_)
        , values_(std::visit(
              [&](const auto& v) -> decltype(values_) {
                  using vector = std::decay_t<decltype(v)>;
                  return vector(v.begin(), v.begin() + std::ptrdiff_t(other.values_size_), v.get_allocator());
              },
              other.values_))
        , keys_(other.keys_.begin(), other.keys_.begin() + std::ptrdiff_t(other.keys_size_), other.keys_.get_allocator())
        , values_size_(other.values_size_)
        , keys_size_(other.keys_size_)
        , row_offsets_(other.row_offsets_)
        , item_offsets_(other.item_offsets_)
    {
    }

    /// Takes `other`'s storage.
    column(column&&) noexcept = default;

    /// Copies `other` as the copy constructor does.
    column& operator=(const column& other)
    {
        if (this != &other)
            *this = column(other);
        return *this;
    }

    /// Takes `other`'s storage.
    column& operator=(column&&) noexcept = default;

    ~column() = default;

private:
    friend class batch_builder;

    // An empty column whose storage comes from `memory` (nullptr: new and delete).
    explicit column(std::pmr::memory_resource* memory)
        : values_(std::in_place_type<batch_vector<float>>, memory)
        , keys_(memory)
        , row_offsets_(memory)
        , item_offsets_(memory)
    {
    }

    std::string name_;
    tensor_type type_ = tensor_type::float32;
    bool sparse_ = false;
    std::vector<std::uint64_t> shape_;
    std::size_t rows_ = 0;
    std::size_t row_size_ = 0;
    std::variant<batch_vector<float>, batch_vector<double>, batch_vector<std::int32_t>, batch_vector<std::byte>>
        values_;
    batch_vector<std::uint64_t> keys_;
    // The values and keys in use. values_ and keys_ are kept at their full size (their
    // elements past these counts are not initialised), so that refilling recycled storage
    // never constructs or destroys elements, which an unoptimised build does one by one.
    std::size_t values_size_ = 0;
    std::size_t keys_size_ = 0;
    batch_vector<std::uint64_t> row_offsets_;
    batch_vector<std::uint64_t> item_offsets_;
};

/// Where one record of a batch came from.
struct record_origin {
    std::uint32_t source = 0;  ///< index into `batch::sources()`
    std::uint64_t offset = 0;  ///< byte offset of the record in its source
    std::uint64_t index = 0;   ///< index of the record within its source, from 0
};

/// A batch of decoded records: the unit the training loop iterates.
///
/// Features and labels are columns (see `column`), in the order of the first record's map
/// entries as they appeared on the wire. The last `padding()` rows, if any, are padding added
/// under `last_batch::pad`: zeros in dense columns, empty rows in sparse and bytes columns,
/// and no origin (`origins()` has `size() - padding()` entries).
///
/// A batch is a value: move it, keep it, or let it go. A batch made by a reader (or by a
/// `batch_builder` given a `batch_pool`) gives its storage back to that pool when it is
/// destroyed or assigned over, and the builder fills it again, so that a reader in its steady
/// state allocates no batch memory. Reading a batch from several threads at once is safe.
class batch {
public:
    /// An empty batch.
    batch() = default;

    /// A copy, whose storage comes from the same memory resource and goes back to the same
    /// pool, if any.
    batch(const batch&) = default;

    /// Takes `other`'s storage (and its pool); `other` is left empty.
    batch(batch&& other) noexcept = default;

    /// Gives this batch's storage back to its pool (if any) and copies `other`.
    batch& operator=(const batch& other)
    {
        if (this != &other)
            *this = batch(other);
        return *this;
    }

    /// Gives this batch's storage back to its pool (if any) and takes `other`'s.
    batch& operator=(batch&& other) noexcept
    {
        if (this != &other) {
            recycle();
            rows_ = other.rows_;
            padding_ = other.padding_;
            epoch_ = other.epoch_;
            features_ = std::move(other.features_);
            labels_ = std::move(other.labels_);
            origins_ = std::move(other.origins_);
            sources_ = std::move(other.sources_);
            pool_ = std::move(other.pool_);
        }
        return *this;
    }

    /// Gives the storage back to the pool it came from, if any (see the class comment).
    ~batch() { recycle(); }

    /// Number of rows, padding included.
    std::size_t size() const noexcept { return rows_; }

    /// Whether the batch has no rows.
    bool empty() const noexcept { return rows_ == 0; }

    /// Number of trailing padding rows (0 unless the last batch was padded).
    std::size_t padding() const noexcept { return padding_; }

    /// The epoch the batch belongs to, from 0.
    std::uint64_t epoch() const noexcept { return epoch_; }

    /// Feature columns.
    std::span<const column> features() const noexcept { return features_; }

    /// Label columns (empty when the records had no label).
    std::span<const column> labels() const noexcept { return labels_; }

    /// The feature column called `name`, or nullptr.
    const column* find_feature(std::string_view name) const noexcept { return find(features_, name); }

    /// The label column called `name`, or nullptr.
    const column* find_label(std::string_view name) const noexcept { return find(labels_, name); }

    /// The feature column called `name`; throws `std::out_of_range` listing the names there are.
    const column& feature(std::string_view name) const { return get(features_, name, "feature"); }

    /// The label column called `name`; throws `std::out_of_range` listing the names there are.
    const column& label(std::string_view name) const { return get(labels_, name, "label"); }

    /// Where each (non-padding) record came from.
    std::span<const record_origin> origins() const noexcept { return origins_; }

    /// Names of the sources the batch's records came from, indexed by `record_origin::source`.
    std::span<const std::string> sources() const noexcept { return sources_; }

    /// Source, byte offset and record index of row `i` (for error messages).
    data_location location(std::size_t i) const
    {
        const auto& o = origins_.at(i);
        return {sources_.at(o.source), o.offset, o.index};
    }

    /// Bytes of memory the batch holds (what the reader's memory budget counts).
    std::size_t byte_size() const noexcept
    {
        std::size_t n = sizeof(*this) + origins_.capacity() * sizeof(record_origin);
        for (const auto& c : features_)
            n += c.byte_size();
        for (const auto& c : labels_)
            n += c.byte_size();
        for (const auto& s : sources_)
            n += s.capacity() + sizeof(s);
        return n;
    }

private:
    friend class batch_builder;
    friend class batch_pool;

    // An empty batch whose storage comes from `memory` (nullptr: new and delete).
    explicit batch(std::pmr::memory_resource* memory) : origins_(memory) {}

    inline void recycle() noexcept;

    static const column* find(const std::vector<column>& cs, std::string_view name) noexcept
    {
        for (const auto& c : cs)
            if (c.name() == name)
                return &c;
        return nullptr;
    }

    static const column& get(const std::vector<column>& cs, std::string_view name, const char* what)
    {
        if (const auto* c = find(cs, name))
            return *c;
        std::string names;
        for (const auto& c : cs)
            names += (names.empty() ? "" : ", ") + c.name();
        throw std::out_of_range("pipemode: no " + std::string(what) + " named '" + std::string(name)
                                + "' (the records have: " + (names.empty() ? "none" : names) + ")");
    }

    std::size_t rows_ = 0;
    std::size_t padding_ = 0;
    std::uint64_t epoch_ = 0;
    std::vector<column> features_;
    std::vector<column> labels_;
    batch_vector<record_origin> origins_;
    std::vector<std::string> sources_;
    std::shared_ptr<batch_pool> pool_;  // where the storage goes back to; null for a plain value
};

/// A bounded free list of batch storage, shared by a `batch_builder` (which takes storage
/// from it) and the batches it made (which give theirs back when destroyed).
///
/// A reader makes one, bounded to `prefetch_batches + 2` idle batches: those waiting in the
/// channel, the one the training loop holds, one waiting for a slot and the one being built are
/// every batch in circulation, and the builder always holds one, so in the steady state each
/// batch's storage is refilled rather than allocated. A batch given back when the pool is full
/// is freed. Storage keeps its capacity (and its columns' names and shapes) across uses, and
/// all of it comes from `memory()`.
///
/// Thread safety: batches may be given back, and the builder may take storage, from any
/// threads at once (a mutex, taken once per batch). Own it with `std::shared_ptr`
/// (`batch_pool::make`): the batches it made keep it alive, so a batch may outlive its reader.
class batch_pool : public std::enable_shared_from_this<batch_pool> {
public:
    /// A pool holding at most `capacity` idle batches, whose storage comes from `memory`
    /// (nullptr: new and delete). `memory` must outlive the pool and every batch made from it.
    static std::shared_ptr<batch_pool> make(std::size_t capacity, std::pmr::memory_resource* memory = nullptr)
    {
        return std::shared_ptr<batch_pool>(new batch_pool(capacity, memory));
    }

    /// The most idle batches kept.
    std::size_t capacity() const noexcept { return capacity_; }

    /// Where batch storage comes from; nullptr for `new` and `delete`.
    std::pmr::memory_resource* memory() const noexcept { return memory_; }

    /// Idle batches held now.
    std::size_t idle() const
    {
        std::lock_guard lock(mutex_);
        return free_.size();
    }

private:
    friend class batch;
    friend class batch_builder;

    batch_pool(std::size_t capacity, std::pmr::memory_resource* memory)
        : capacity_(capacity)
        , memory_(memory)
    {
        // Reserved now, so that giving a batch back (from a destructor) does not allocate, up
        // to a bound: a pool sized for a huge prefetch_batches grows (rarely) as it fills.
        free_.reserve(std::min<std::size_t>(capacity_, 256));
    }

    // Idle storage with its old contents (the builder resets it), or a new empty batch over
    // memory_; either way tied to this pool.
    batch take()
    {
        batch b(memory_);
        {
            std::lock_guard lock(mutex_);
            if (!free_.empty()) {
                b = std::move(free_.back());
                free_.pop_back();
            }
        }
        b.pool_ = shared_from_this();
        return b;
    }

    void give_back(batch&& b) noexcept
    {
        try {
            std::lock_guard lock(mutex_);
            if (free_.size() < capacity_)
                free_.push_back(std::move(b));  // within the reserved capacity: no allocation
        } catch (...) {
            // A mutex that cannot be locked, or no memory to grow the list: the storage is
            // simply freed.
        }
    }

    const std::size_t capacity_;
    std::pmr::memory_resource* const memory_;
    mutable std::mutex mutex_;
    std::vector<batch> free_;  // idle storage; each with a null pool_, so no cycle keeps the pool alive
};

inline void batch::recycle() noexcept
{
    if (!pool_)
        return;
    // The pool may be kept alive by this batch alone; hold it until give_back returns.
    auto pool = std::move(pool_);
    pool->give_back(std::move(*this));
}

} // namespace pipemode
