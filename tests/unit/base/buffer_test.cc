#include "base/buffer.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace sluice {
namespace {

// Whether the page holding `p` is in memory.
bool resident(const char* p) {
  auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto start = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  unsigned char v = 0;
  EXPECT_EQ(::mincore(reinterpret_cast<void*>(start), page, &v), 0);
  return (v & 1) != 0;
}

TEST(Buffer, ReleasedWhenEmptied) {
  Buffer b;
  EXPECT_EQ(b.capacity(), 0u);
  b.append("hello");
  EXPECT_EQ(b.capacity(), Buffer::kInitialCapacity);
  EXPECT_EQ(b.view(), "hello");
  b.consume(5);
  b.release();
  EXPECT_EQ(b.capacity(), 0u);
}

TEST(Buffer, CachedBlocksGiveTheirPagesBackAndStayUsable) {
  std::string bytes(Buffer::kInitialCapacity, 'x');
  const char* block = nullptr;
  {
    Buffer b;
    b.append(bytes);
    block = b.data();
    b.consume(bytes.size());
    b.release();  // into this thread's cache, its pages still in memory
  }
  const char* inner = block + Buffer::kInitialCapacity / 2;  // inside a whole page of it
  EXPECT_TRUE(resident(inner));
  release_cached_buffer_pages();
  EXPECT_FALSE(resident(inner));
  release_cached_buffer_pages();  // nothing more to do

  Buffer again;
  char* at = again.prepare(bytes.size());
  EXPECT_EQ(at, block);  // the same block, from the cache
  again.append(bytes);
  EXPECT_EQ(again.view(), bytes);
}

}  // namespace
}  // namespace sluice
