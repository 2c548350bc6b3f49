// io_uring ring setup and the probe that decides whether the backend can serve here.
#include "event/io_uring_ring.h"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "event/poller.h"

namespace sluice::event {
namespace {

constexpr unsigned kSqEntries = 256;
// Completions beyond this wait in the kernel's overflow list (IORING_FEAT_NODROP) and end
// multishot polls, which are then armed again: sized so that it takes a very busy iteration.
constexpr unsigned kCqEntries = 8192;

// Why io_uring_queue_init_params() failed, in an operator's words.
std::string setup_error(int err) {
  switch (err) {
    case ENOSYS:
      return "io_uring_setup: the kernel has no io_uring (ENOSYS), or a seccomp filter hides it";
    case EPERM:
      return "io_uring_setup: not permitted (EPERM): kernel.io_uring_disabled, a seccomp "
             "filter or a container policy forbids it";
    case ENOMEM:
      return "io_uring_setup: cannot allocate the ring (ENOMEM): RLIMIT_MEMLOCK is too low on "
             "kernels before 5.12";
    default:
      return fmt::format("io_uring_setup: {}", std::strerror(err));
  }
}

constexpr unsigned kBaseFlags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;

// The setups tried, best first. SINGLE_ISSUER (6.0): the ring takes requests from one thread
// only, so the kernel skips the locking a second submitter would need. A ring that is bound
// to one thread is created disabled (R_DISABLED, 5.10) and enabled by the first wait(): a
// worker's loop is built on the main thread and runs on its own. COOP_TASKRUN (5.19):
// completions run when the loop enters or leaves the kernel anyway, not by interrupting it.
// SUBMIT_ALL (5.18): one bad entry does not stop the rest of a batch. Not DEFER_TASKRUN
// (6.1): with it, the end of a poll removed while a wake-up raced it (a listener removed
// under load) waited for a later wait(), and the closed socket kept listening meanwhile.
struct RingSetup {
  unsigned flags;
  const char* name;
  const char* flag_names;
  const char* needs;
};
constexpr RingSetup kSetups[] = {
    {kBaseFlags | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED,
     "single issuer, cooperative task work", "SINGLE_ISSUER", "Linux 6.0"},
    {kBaseFlags | IORING_SETUP_COOP_TASKRUN, "cooperative task work", "COOP_TASKRUN|SUBMIT_ALL",
     "Linux 5.19"},
    {IORING_SETUP_CQSIZE, "plain", "", ""},
};

// SINGLE_ISSUER is opt-in for now (SLUICE_IO_URING_SETUP=single_issuer): with it, a TCP
// tunnel that should outlive reloads was closed in some runs of test_reload.py, never
// without it (docs/event-backends.md).
bool single_issuer_wanted() {
  const char* v = std::getenv("SLUICE_IO_URING_SETUP");
  return v && std::string_view(v) == "single_issuer";
}

}  // namespace

Status init_ring(io_uring& ring, std::string* setup) {
  std::string refused;
  int rc = -EINVAL;
  io_uring_params p{};
  size_t i = single_issuer_wanted() ? 0 : 1;
  for (; i < std::size(kSetups); ++i) {
    p = io_uring_params{};
    p.flags = kSetups[i].flags;
    p.cq_entries = kCqEntries;
    rc = io_uring_queue_init_params(kSqEntries, &ring, &p);
    if (rc != -EINVAL || i + 1 == std::size(kSetups)) break;
    // Only EINVAL means "an older kernel without those flags"; anything else (EPERM, ENOMEM)
    // would refuse every setup alike.
    if (refused.empty()) {
      refused =
          fmt::format("{} refused: EINVAL, needs {}", kSetups[i].flag_names, kSetups[i].needs);
    }
  }
  if (rc < 0) return Status::error(setup_error(-rc), -rc);
  // One io_uring_enter per iteration needs the wait timeout passed as an argument (5.11),
  // and multishot requests need completions that are never dropped (5.5).
  unsigned need = IORING_FEAT_EXT_ARG | IORING_FEAT_NODROP;
  if ((p.features & need) != need) {
    io_uring_queue_exit(&ring);
    return Status::error("the kernel's io_uring lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP");
  }
  if (setup) {
    *setup = refused.empty() ? std::string(kSetups[i].name)
                             : fmt::format("{} ({})", kSetups[i].name, refused);
  }
  return Status::ok();
}

bool ring_disabled(const io_uring& ring) {
  return (ring.flags & IORING_SETUP_R_DISABLED) != 0;
}

// IORING_REGISTER_ENABLE_RINGS: Debian's liburing 2.3 declares io_uring_enable_rings() but
// does not export it, so the register call is made directly. Returns 0 or -errno.
int enable_ring(io_uring& ring) {
  long rc =
      ::syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  return rc < 0 ? -errno : 0;
}

bool kernel_can_send() {
  // A ring of its own (liburing makes and ends it): the loops' rings may be bound to a
  // thread that has not run them yet.
  static const bool can = [] {
    io_uring_probe* probe = io_uring_get_probe();
    if (!probe) return false;
    bool supported = io_uring_opcode_supported(probe, IORING_OP_SEND) != 0;
    io_uring_free_probe(probe);
    return supported;
  }();
  return can;
}

bool completion_send_wanted() {
  const char* v = std::getenv("SLUICE_IO_URING_SEND");
  return !(v && std::string_view(v) == "direct");
}

Status probe_io_uring(std::string* setup) {
  if (const char* forced = std::getenv("SLUICE_IO_URING_PROBE");
      forced && std::string_view(forced) == "fail") {
    return Status::error("the probe was told to fail (SLUICE_IO_URING_PROBE=fail)");
  }
  if (std::ifstream f("/proc/sys/kernel/io_uring_disabled"); f) {
    int disabled = 0;
    if (f >> disabled && disabled == 2) {
      return Status::error("kernel.io_uring_disabled=2 forbids io_uring");
    }
  }
  io_uring ring;
  if (Status s = init_ring(ring, setup); !s) return s;
  if (ring_disabled(ring)) {
    if (int rc = enable_ring(ring); rc < 0) {
      io_uring_queue_exit(&ring);
      return Status::error(fmt::format("io_uring enable: {}", std::strerror(-rc)));
    }
  }
  // What the backend relies on, tried for real: a multishot poll reports readiness and stays
  // armed (IORING_CQE_F_MORE, 5.13), and a removal with CQE_SKIP_SUCCESS (5.17) is accepted.
  Status result = Status::ok();
  int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    io_uring_queue_exit(&ring);
    return Status::from_errno("eventfd", errno);
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_poll_multishot(sqe, efd, POLLIN);
  io_uring_sqe_set_data64(sqe, 1);
  __kernel_timespec ts{};
  ts.tv_sec = 1;
  io_uring_cqe* cqe = nullptr;
  int rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, nullptr);
  if (rc < 0 || !cqe) {
    result = Status::error(fmt::format("io_uring poll: {}", std::strerror(rc < 0 ? -rc : EIO)));
  } else if (cqe->res < 0) {
    result = Status::error(fmt::format("io_uring poll: {}", std::strerror(-cqe->res)));
  } else if (!(cqe->flags & IORING_CQE_F_MORE)) {
    result = Status::error("the kernel's io_uring has no multishot poll (needs 5.13)");
  }
  if (cqe) io_uring_cqe_seen(&ring, cqe);
  if (result) {
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_poll_remove(sqe, 1);
    io_uring_sqe_set_data64(sqe, 2);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    rc = io_uring_submit(&ring);
    if (rc < 0) result = Status::error(fmt::format("io_uring submit: {}", std::strerror(-rc)));
    // The removal's own completion is skipped; the poll's last one says whether the kernel
    // took the flags (an old kernel answers -EINVAL on the removal instead).
    for (int i = 0; result && i < 4; ++i) {
      cqe = nullptr;
      rc = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
      if (rc < 0 || !cqe) break;
      if (cqe->user_data == 2 && cqe->res < 0) {
        result = Status::error(fmt::format("io_uring poll removal: {}", std::strerror(-cqe->res)));
      }
      bool last = cqe->user_data == 1 && !(cqe->flags & IORING_CQE_F_MORE);
      io_uring_cqe_seen(&ring, cqe);
      if (last) break;
    }
  }
  ::close(efd);
  io_uring_queue_exit(&ring);
  return result;
}

std::string io_uring_ring_setup() {
  std::string setup;
  if (Status s = probe_io_uring(&setup); !s) return "unavailable: " + s.message();
  return setup;
}

}  // namespace sluice::event
