// Buffer: a contiguous byte queue for buffered I/O. Bytes are appended at the back and
// consumed from the front; storage is allocated on first use, compacted when the front is
// consumed, and given back by release() when empty, so an idle connection holds no memory.
// Not thread-safe: one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace sluice {

// Storage blocks of the initial size are recycled through a small per-thread cache, so a
// connection that empties its buffer after every request does not pay malloc each time.
namespace buffer_detail {
std::unique_ptr<char[]> take_block();
void give_block(std::unique_ptr<char[]> block);
}  // namespace buffer_detail

// Gives the kernel back the pages of the blocks cached on this thread: they keep their
// addresses, and a page comes back (zeroed) when a buffer next writes to it. For a loop with
// nothing to do for a while, so that a quiet worker holds no buffer memory either. Cheap when
// no block was cached since the last call.
void release_cached_buffer_pages();

class Buffer {
 public:
  Buffer() = default;
  // A moved-from Buffer is empty and holds no storage.
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release_storage();
      swap(other);
    }
    return *this;
  }
  ~Buffer() { release_storage(); }
  // Exchanges contents and storage: the bytes stay where they are in memory.
  void swap(Buffer& other) noexcept {
    storage_.swap(other.storage_);
    std::swap(capacity_, other.capacity_);
    std::swap(begin_, other.begin_);
    std::swap(end_, other.end_);
  }
  static constexpr size_t kInitialCapacity = 16 * 1024;

  const char* data() const { return storage_.get() + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {data(), size()}; }

  // Space for at least `min` more bytes at the back; commit() what was written there.
  char* prepare(size_t min);
  size_t writable() const { return capacity_ - end_; }
  void commit(size_t n) { end_ += static_cast<uint32_t>(n); }

  void append(std::string_view bytes) {
    std::memcpy(prepare(bytes.size()), bytes.data(), bytes.size());
    commit(bytes.size());
  }
  void consume(size_t n) {
    begin_ += static_cast<uint32_t>(n < size() ? n : size());
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }
  // Frees the storage if nothing is buffered.
  void release() {
    if (empty()) release_storage();
  }
  size_t capacity() const { return capacity_; }

 private:
  void release_storage() {
    if (capacity_ == kInitialCapacity) buffer_detail::give_block(std::move(storage_));
    storage_.reset();
    capacity_ = 0;
    begin_ = end_ = 0;
  }

  // 32-bit offsets keep a Buffer at 24 bytes (connections hold two); buffers stay far
  // below 4 GiB since writers stop at their high watermark.
  std::unique_ptr<char[]> storage_;
  uint32_t capacity_ = 0;
  uint32_t begin_ = 0;
  uint32_t end_ = 0;
};

inline char* Buffer::prepare(size_t min) {
  if (capacity_ - end_ >= min) return storage_.get() + end_;
  size_t used = size();
  if (begin_ > 0 && capacity_ - used >= min && storage_) {
    std::memmove(storage_.get(), storage_.get() + begin_, used);
    begin_ = 0;
    end_ = static_cast<uint32_t>(used);
    return storage_.get() + end_;
  }
  size_t cap = capacity_ == 0 ? kInitialCapacity : capacity_;
  while (cap - used < min) cap *= 2;
  auto fresh = cap == kInitialCapacity ? buffer_detail::take_block()
                                       : std::unique_ptr<char[]>(new char[cap]);
  if (used) std::memcpy(fresh.get(), storage_.get() + begin_, used);
  if (capacity_ == kInitialCapacity) buffer_detail::give_block(std::move(storage_));
  storage_ = std::move(fresh);
  capacity_ = static_cast<uint32_t>(cap);
  begin_ = 0;
  end_ = static_cast<uint32_t>(used);
  return storage_.get() + end_;
}

}  // namespace sluice
