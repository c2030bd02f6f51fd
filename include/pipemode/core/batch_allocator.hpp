// pipemode: the allocator of batch storage.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <memory_resource>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace pipemode {

/// The allocator of every vector a `batch` stores its rows in: memory from a caller's
/// `std::pmr::memory_resource`, and elements that are default-initialised, not zeroed.
///
/// Batch storage is grown ahead of the values the parsers then write into it
/// (`std::vector::resize`); a standard allocator value-initialises those elements, which for
/// numbers means writing zeros that are overwritten at once: a second pass over every byte of
/// the batch. Here `construct(p)` without arguments default-initialises (`::new (p) T`), which
/// for the arithmetic element types of a batch is no work at all. Constructions with arguments
/// (`push_back`, `insert`, `assign`) are unchanged.
///
/// The memory comes from `resource()`, or from plain `operator new` when that is nullptr (the
/// default, so that batch storage is then exactly what `std::allocator` would give), so that batches can live in memory the caller chose: pinned
/// host memory that a GPU copies from without staging, a NUMA node's memory, an arena. The
/// allocator propagates with its container on copy, move and swap, so a batch moved or
/// swapped keeps returning memory to the resource it came from.
///
/// Thread safety: as the resource's. A batch built on one thread and freed on another calls
/// the resource from both.
template <class T>
class batch_allocator {
public:
    /// The element type.
    using value_type = T;
    /// Containers move the allocator with their storage, so memory always returns to its resource.
    using propagate_on_container_move_assignment = std::true_type;
    /// As for move assignment: a copy-assigned container takes the source's resource.
    using propagate_on_container_copy_assignment = std::true_type;
    /// As for move assignment: swapped containers swap resources.
    using propagate_on_container_swap = std::true_type;
    /// Two allocators over different resources are not interchangeable.
    using is_always_equal = std::false_type;

    /// An allocator of plain `operator new` and `operator delete`.
    batch_allocator() noexcept = default;

    /// An allocator over `resource` (nullptr: `new` and `delete`). `resource` must outlive
    /// every allocation made through this allocator and its copies.
    batch_allocator(std::pmr::memory_resource* resource) noexcept  // NOLINT: implicit on purpose, like polymorphic_allocator
        : resource_(resource)
    {
    }

    /// The same resource, for another element type (what containers rebind to).
    template <class U>
    batch_allocator(const batch_allocator<U>& other) noexcept : resource_(other.resource())
    {
    }

    /// Memory for `n` elements from the resource, aligned for `T`.
    T* allocate(std::size_t n)
    {
        if (n > std::size_t(-1) / sizeof(T))
            throw std::bad_array_new_length();
        if (resource_ == nullptr)
            return static_cast<T*>(::operator new(n * sizeof(T)));
        return static_cast<T*>(resource_->allocate(n * sizeof(T), alignof(T)));
    }

    /// Returns `n` elements at `p` (from `allocate(n)`) to the resource.
    void deallocate(T* p, std::size_t n) noexcept
    {
        if (resource_ == nullptr)
            ::operator delete(p);  // unsized: clang declares the sized form only with -fsized-deallocation
        else
            resource_->deallocate(p, n * sizeof(T), alignof(T));
    }

    /// Default-initialises a `U` at `p`: no zeroing of numbers about to be overwritten.
    template <class U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>)
    {
        ::new (static_cast<void*>(p)) U;
    }

    /// Constructs a `U` at `p` from `args`, as `std::allocator` does.
    template <class U, class... Args>
    void construct(U* p, Args&&... args)
    {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }

    /// The resource the memory comes from; nullptr for `operator new` and `delete`.
    std::pmr::memory_resource* resource() const noexcept { return resource_; }

    /// Whether memory from one may be freed by the other: the same resource, or equal ones.
    template <class U>
    friend bool operator==(const batch_allocator& a, const batch_allocator<U>& b) noexcept
    {
        return a.resource() == b.resource()
            || (a.resource() != nullptr && b.resource() != nullptr && a.resource()->is_equal(*b.resource()));
    }

private:
    std::pmr::memory_resource* resource_ = nullptr;
};

/// A vector of batch storage: `batch_allocator`'s memory, default-initialised growth.
template <class T>
using batch_vector = std::vector<T, batch_allocator<T>>;

} // namespace pipemode
