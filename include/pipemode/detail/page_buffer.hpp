// pipemode: a large byte buffer taken from the kernel in huge pages where it can be.
//
// The object stream receives every byte into part buffers of several MiB. Buffers it can recycle
// cost nothing after their first use, but the first use of each one faults its pages in: with
// 4 KiB pages that is one page fault and one zeroed page per 4 KiB, about a second of system
// time per GB on the machines measured (docs/http.md, "Loopback"), as much as the rest of the
// transport together. Asking for transparent huge pages (2 MiB) makes that one fault per 2 MiB,
// and mapping the buffer directly keeps malloc from trimming it back to the kernel between uses.
#pragma once

#include <pipemode/config.hpp>

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pipemode::detail {

/// An owned, uninitialised buffer of `size()` bytes; movable, not copyable. Buffers of at least
/// `huge_page_size` are mapped on their own, aligned to it and advised as huge pages (Linux;
/// the kernel decides, and falls back to small pages when it has none to give); smaller ones,
/// and every buffer elsewhere, come from `operator new`.
class page_buffer {
public:
    /// The transparent huge page size of x86-64 and of arm64 with 4 KiB base pages.
    static constexpr std::size_t huge_page_size = std::size_t(2) << 20;

    page_buffer() noexcept = default;

    /// Allocates `bytes` bytes; throws `std::bad_alloc` when there is no memory for them.
    explicit page_buffer(std::size_t bytes) : size_(bytes)
    {
        if (bytes == 0)
            return;
#if defined(__linux__)
        if (bytes >= huge_page_size) {
            mapped_ = round_up(bytes, huge_page_size);
            data_ = map_aligned(mapped_);
            return;
        }
#endif
        data_ = static_cast<std::byte*>(::operator new(bytes));
    }

    page_buffer(page_buffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
          mapped_(std::exchange(o.mapped_, 0))
    {
    }

    page_buffer& operator=(page_buffer&& o) noexcept
    {
        if (this != &o) {
            reset();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            mapped_ = std::exchange(o.mapped_, 0);
        }
        return *this;
    }

    page_buffer(const page_buffer&) = delete;
    page_buffer& operator=(const page_buffer&) = delete;

    ~page_buffer() { reset(); }

    /// Gives the memory back; the buffer is then empty.
    void reset() noexcept
    {
        if (!data_)
            return;
#if defined(__linux__)
        if (mapped_ != 0)
            ::munmap(data_, mapped_);
        else
#endif
            ::operator delete(data_);
        data_ = nullptr;
        size_ = 0;
        mapped_ = 0;
    }

    std::byte* get() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    explicit operator bool() const noexcept { return data_ != nullptr; }

private:
    static constexpr std::size_t round_up(std::size_t n, std::size_t to) noexcept { return (n + to - 1) / to * to; }

#if defined(__linux__)
    /// Maps `bytes` (a multiple of the huge page size) at an address aligned to it: a huge page
    /// can only back an aligned 2 MiB range, so an unaligned mapping would lose one at each end.
    static std::byte* map_aligned(std::size_t bytes)
    {
        const std::size_t span = bytes + huge_page_size;
        void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            throw std::bad_alloc();
        auto* base = static_cast<std::byte*>(p);
        const auto addr = reinterpret_cast<std::uintptr_t>(base);
        const std::size_t head = round_up(addr, huge_page_size) - addr;
        if (head != 0)
            ::munmap(base, head);
        const std::size_t tail = span - head - bytes;
        if (tail != 0)
            ::munmap(base + head + bytes, tail);
#if defined(MADV_HUGEPAGE)
        ::madvise(base + head, bytes, MADV_HUGEPAGE);  // advice only: failing it costs speed, not bytes
#endif
        return base + head;
    }
#endif

    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t mapped_ = 0;  ///< bytes mapped with mmap (0: from operator new)
};

}  // namespace pipemode::detail
