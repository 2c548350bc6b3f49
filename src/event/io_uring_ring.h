// How the io_uring backend creates its rings: the setups tried, best first, and the
// kernel features it needs (io_uring_poller.h). Internal to src/event.
#pragma once

#include <liburing.h>

#include <string>

#include "base/status.h"

namespace sluice::event {

// Creates `ring` with the best setup the kernel takes. `setup` says which, and why the better
// ones were refused.
Status init_ring(io_uring& ring, std::string* setup);
// Whether `ring` was created disabled (R_DISABLED, for SINGLE_ISSUER): enable_ring() binds it
// to the calling thread.
bool ring_disabled(const io_uring& ring);
// IORING_REGISTER_ENABLE_RINGS. Returns 0 or -errno.
int enable_ring(io_uring& ring);
// Whether the kernel has IORING_OP_SEND (5.6), asked once per process with
// IORING_REGISTER_PROBE (5.6 too: a kernel without the probe has neither).
bool kernel_can_send();
// Whether completion-based sends are wanted: yes, unless SLUICE_IO_URING_SEND=direct is in
// the environment (to measure or rule out the difference with one binary).
bool completion_send_wanted();

}  // namespace sluice::event
