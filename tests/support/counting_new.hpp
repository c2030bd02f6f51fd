// Test and benchmark support: replaces the global operator new and delete with versions that
// count every allocation, so that a steady state can be shown to allocate nothing.
//
// Include it in exactly one translation unit of a program (it defines the replaceable
// allocation functions); read `pipemode::test::heap_allocations` from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace pipemode::test {
/// Allocations through any form of operator new since the program started.
inline std::atomic<std::uint64_t> heap_allocations{0};
} // namespace pipemode::test

// GCC sees malloc and free paired through the replaced operators and warns of a mismatch that
// is not one: these two are the program's only allocation functions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n)
{
    pipemode::test::heap_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1))
        return p;
    throw std::bad_alloc();
}

// Every other plain form goes through the one above and below, so that all of them pair up
// (AddressSanitizer checks that they do).
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept
{
    try {
        return ::operator new(n);
    }
    catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return ::operator new(n, t); }

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

#pragma GCC diagnostic pop
