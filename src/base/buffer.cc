#include "base/buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace sluice::buffer_detail {
namespace {
constexpr size_t kMaxCachedBlocks = 64;

struct BlockCache {
  std::vector<std::unique_ptr<char[]>> blocks;
  // Blocks given back since release_cached_buffer_pages() last ran: their pages are in use.
  size_t touched = 0;
};
thread_local BlockCache t_cache;
}  // namespace

std::unique_ptr<char[]> take_block() {
  auto& c = t_cache.blocks;
  if (c.empty()) return std::unique_ptr<char[]>(new char[Buffer::kInitialCapacity]);
  auto b = std::move(c.back());
  c.pop_back();
  if (t_cache.touched > 0) --t_cache.touched;  // it was one of the last given
  return b;
}

void give_block(std::unique_ptr<char[]> block) {
  auto& c = t_cache;
  if (!block || c.blocks.size() >= kMaxCachedBlocks) return;
  c.blocks.push_back(std::move(block));
  c.touched = std::min(c.touched + 1, c.blocks.size());
}

}  // namespace sluice::buffer_detail

namespace sluice {

void release_cached_buffer_pages() {
  auto& c = buffer_detail::t_cache;
  if (c.touched == 0) return;
  static const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // The most recently given blocks are at the back; the others were released already.
  for (size_t i = c.blocks.size() - c.touched; i < c.blocks.size(); ++i) {
    auto begin = reinterpret_cast<uintptr_t>(c.blocks[i].get());
    uintptr_t first = (begin + page - 1) & ~(page - 1);
    uintptr_t last = (begin + Buffer::kInitialCapacity) & ~(page - 1);
    // malloc's blocks are not page-aligned: the whole pages inside (3 of 4 at least) go.
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
  c.touched = 0;
}

}  // namespace sluice
