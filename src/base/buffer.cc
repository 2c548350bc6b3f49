#include "base/buffer.h"

#include <vector>

namespace sluice::buffer_detail {
namespace {
constexpr size_t kMaxCachedBlocks = 64;

struct BlockCache {
  std::vector<std::unique_ptr<char[]>> blocks;
};
thread_local BlockCache t_cache;
}  // namespace

std::unique_ptr<char[]> take_block() {
  auto& c = t_cache.blocks;
  if (c.empty()) return std::unique_ptr<char[]>(new char[Buffer::kInitialCapacity]);
  auto b = std::move(c.back());
  c.pop_back();
  return b;
}

void give_block(std::unique_ptr<char[]> block) {
  if (block && t_cache.blocks.size() < kMaxCachedBlocks) t_cache.blocks.push_back(std::move(block));
}

}  // namespace sluice::buffer_detail
