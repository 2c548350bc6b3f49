#include "base/memory.h"

#include <dlfcn.h>
#include <malloc.h>

#include <cstdint>
#include <cstdlib>

#include "base/buffer.h"

namespace sluice {
namespace {

#ifdef __GLIBC__
// Whether malloc is glibc's own: the malloc every object resolves to is libc.so.6's, not
// one that stands in for it (a sanitizer's, or jemalloc or tcmalloc linked in or loaded with
// LD_PRELOAD, which may also define glibc's internal names). malloc_trim() would otherwise
// set up glibc's unused heap on the calling thread, which glibc's thread exit trips over.
bool glibc_malloc_in_use() {
  static const bool in_use = [] {
    void* libc = ::dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc) return false;
    bool same = ::dlsym(RTLD_DEFAULT, "malloc") == ::dlsym(libc, "malloc");
    ::dlclose(libc);
    return same;
  }();
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
