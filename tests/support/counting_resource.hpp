// Test support: a memory resource that counts the allocations and bytes that go through it.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory_resource>

namespace pipemode::test {

/// A `std::pmr::memory_resource` over new and delete that counts allocations and the bytes
/// held, so that tests can prove where memory came from, that it all went back, and that a
/// steady state allocates nothing. Thread-safe, as a reader's `batch_memory` must be.
struct counting_resource : std::pmr::memory_resource {
    std::atomic<std::size_t> allocations{0};  ///< calls to allocate, ever
    std::atomic<std::ptrdiff_t> bytes_held{0};  ///< bytes allocated and not yet deallocated

    void* do_allocate(std::size_t n, std::size_t align) override
    {
        allocations.fetch_add(1, std::memory_order_relaxed);
        bytes_held.fetch_add(static_cast<std::ptrdiff_t>(n), std::memory_order_relaxed);
        return std::pmr::new_delete_resource()->allocate(n, align);
    }

    void do_deallocate(void* p, std::size_t n, std::size_t align) override
    {
        bytes_held.fetch_sub(static_cast<std::ptrdiff_t>(n), std::memory_order_relaxed);
        std::pmr::new_delete_resource()->deallocate(p, n, align);
    }

    bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
};

} // namespace pipemode::test
