// Recycled<T>: a base that gives T its own operator new and delete, keeping up to kKeep
// freed blocks of T's size per thread for the next new T. For objects made and destroyed
// once per request or connection on a worker (a connection, a stream, an upstream
// exchange): larger than the allocator's per-thread cache takes (about 1 KiB with glibc),
// each would otherwise cost a trip through malloc's bins, and at the large-bin sizes a
// consolidation of its fast bins. Under AddressSanitizer nothing is kept (unless the class
// asks for it, as the tests of this class do): a block reused at once would hide a use after
// free behind the next object; a kept block is poisoned. Any thread; blocks stay with the
// thread that freed them.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

#if defined(__has_include)
#if __has_include(<sanitizer/asan_interface.h>)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

namespace sluice {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizedAddresses = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitizedAddresses = true;
#else
inline constexpr bool kSanitizedAddresses = false;
#endif
#else
inline constexpr bool kSanitizedAddresses = false;
#endif

template <typename T, size_t kKeep = 64, bool kEvenWhenSanitized = false>
class Recycled {
  static constexpr bool kKeeps = kEvenWhenSanitized || !kSanitizedAddresses;

 public:
  static void* operator new(size_t size) {
    if (kKeeps && size == sizeof(T) && !thread_ended()) {
      Cache& c = cache();
      if (!c.blocks.empty()) {
        void* p = c.blocks.back();
        c.blocks.pop_back();
        ASAN_UNPOISON_MEMORY_REGION(p, size);
        return p;
      }
    }
    return ::operator new(size);
  }
  static void operator delete(void* p, size_t size) {
    if (kKeeps && size == sizeof(T) && !thread_ended()) {
      Cache& c = cache();
      if (c.blocks.size() < kKeep) {
        ASAN_POISON_MEMORY_REGION(p, size);
        c.blocks.push_back(p);
        return;
      }
    }
    ::operator delete(p);
  }

 protected:
  Recycled() = default;

 private:
  struct Cache {
    Cache() { blocks.reserve(kKeep); }
    ~Cache() {
      thread_ended() = true;  // objects freed later in the thread's exit go straight back
      for (void* p : blocks) {
        ASAN_UNPOISON_MEMORY_REGION(p, sizeof(T));
        ::operator delete(p);
      }
    }
    std::vector<void*> blocks;
  };
  static Cache& cache() {
    thread_local Cache c;
    return c;
  }
  // A plain flag (nothing to destroy): still readable after the cache is gone.
  static bool& thread_ended() {
    thread_local bool ended = false;
    return ended;
  }
};

}  // namespace sluice
