#include <pipemode/detail/page_buffer.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <utility>

using pipemode::detail::page_buffer;

namespace {

/// Writes a pattern over the whole buffer and reads it back: every byte is usable memory.
bool holds_pattern(page_buffer& b, unsigned seed)
{
    for (std::size_t i = 0; i < b.size(); ++i)
        b.get()[i] = std::byte((i * 131 + seed) & 0xff);
    for (std::size_t i = 0; i < b.size(); ++i)
        if (b.get()[i] != std::byte((i * 131 + seed) & 0xff))
            return false;
    return true;
}

}  // namespace

TEST_CASE("an empty buffer owns nothing")
{
    page_buffer none;
    CHECK_FALSE(none);
    CHECK(none.get() == nullptr);
    CHECK(none.size() == 0);
    page_buffer zero(0);
    CHECK_FALSE(zero);
    zero.reset();  // a no-op, not a double free
}

TEST_CASE("buffers of every size class hold all their bytes")
{
    constexpr std::size_t huge = page_buffer::huge_page_size;
    for (std::size_t size : {std::size_t(1), std::size_t(4095), std::size_t(65536), huge - 1, huge, huge + 1,
                             4 * huge + 12345}) {
        INFO("size " << size);
        page_buffer b(size);
        REQUIRE(b);
        CHECK(b.size() == size);
        CHECK(holds_pattern(b, unsigned(size)));
        if (size >= huge) {
            // Mapped on its own and aligned, so that huge pages can back all of it.
            CHECK(reinterpret_cast<std::uintptr_t>(b.get()) % huge == 0);
        }
    }
}

TEST_CASE("moving a buffer moves its memory and empties the source")
{
    page_buffer a(3 * page_buffer::huge_page_size);
    REQUIRE(holds_pattern(a, 7));
    std::byte* const memory = a.get();

    page_buffer b(std::move(a));
    CHECK_FALSE(a);
    CHECK(a.size() == 0);
    CHECK(b.get() == memory);
    CHECK(b.size() == 3 * page_buffer::huge_page_size);

    page_buffer c(100);
    c = std::move(b);  // frees c's own 100 bytes (ASan would report a leak otherwise)
    CHECK(c.get() == memory);
    CHECK_FALSE(b);
    CHECK(c.get()[12345] == std::byte((12345 * 131 + 7) & 0xff));

    c.reset();
    CHECK_FALSE(c);
    CHECK(c.size() == 0);
}
