#include "base/memory.h"

#include <malloc.h>

#include "base/buffer.h"

namespace sluice {

void release_idle_memory() {
  release_cached_buffer_pages();
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

}  // namespace sluice
