// Giving memory back while quiet. Loop thread (any thread: it acts on the calling thread's
// caches and on the process's malloc heaps).
#pragma once

namespace sluice {

// For a loop with nothing to do for a while after some work: the pages of the buffer blocks
// cached on this thread (release_cached_buffer_pages()) and the free pages inside malloc's
// heaps (what a burst of requests allocated and freed between connections that stay) go back
// to the kernel, so an idle worker's memory is what its open connections hold. It costs a
// walk of malloc's free lists, each heap locked in turn while it is trimmed: a few hundred
// microseconds for a heap of several MiB, once per quiet period.
void release_idle_memory();

}  // namespace sluice
