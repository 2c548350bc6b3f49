#include "base/memory.h"

#include <malloc.h>

#include <cstdint>
#include <cstdlib>

#include "base/buffer.h"

#ifdef __GLIBC__
extern "C" void* __libc_malloc(size_t) noexcept;
#endif

namespace sluice {
namespace {

#ifdef __GLIBC__
// Whether malloc is glibc's own: not when another allocator (a sanitizer's, or one loaded
// with LD_PRELOAD) stands in for it. malloc_trim() would then set up glibc's unused heap on
// the calling thread, which glibc's thread exit later trips over.
bool glibc_malloc_in_use() {
  static const bool in_use =
      reinterpret_cast<uintptr_t>(&::malloc) == reinterpret_cast<uintptr_t>(&__libc_malloc);
  return in_use;
}
#endif

}  // namespace

void release_idle_memory() {
  release_cached_buffer_pages();
#ifdef __GLIBC__
  if (glibc_malloc_in_use()) ::malloc_trim(0);
#endif
}

}  // namespace sluice
