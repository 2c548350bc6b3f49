// The io_uring backend of the Poller: one ring per Loop, each registration a multishot
// IORING_OP_POLL_ADD.
//
// Readiness semantics. A multishot poll posts a completion each time the descriptor's wait
// queue wakes it with a mask that matches the interest (or, when the wake-up carries no mask
// or several wake-ups were merged, with what vfs_poll() says then); arming it reports the
// readiness already present. That is the contract of EPOLLET that callers rely on: a handler
// reads or writes until EAGAIN and is told again only when something new happens. The
// differences from epoll are extra reports (a merged wake-up may show readiness the handler
// already consumed), which handlers tolerate as they tolerate them under epoll, and the
// kernel ending a multishot poll on its own (completion queue overflow, cancellation when
// the submitting thread exits): a completion without IORING_CQE_F_MORE for a live
// registration is delivered and the poll armed again, and arming reports what is ready
// then, so no edge is lost.
//
// Descriptor reuse. A registration is named in user_data by (fd, generation); remove()
// moves the fd's generation on, so a completion for a removed registration — already in the
// completion queue, or posted while the kernel processes the removal — is dropped, even when
// a new registration for the same fd number came meanwhile. A poll holds a reference to the
// file, so the removal must reach the kernel before the socket is really released: a removal
// is submitted at once (one syscall, as EPOLL_CTL_DEL), before the caller closes the fd.
//
// Arming is deferred to wait(): an fd added and removed (and perhaps closed and reused)
// before the next wait() never reaches the kernel under its old identity.
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "event/poller.h"

namespace sluice::event {
namespace {

constexpr unsigned kSqEntries = 256;
// Completions beyond this wait in the kernel's overflow list (IORING_FEAT_NODROP) and end
// multishot polls, which are then armed again: sized so that it takes a very busy iteration.
constexpr unsigned kCqEntries = 8192;
// user_data of removals and updates: their completions (only failures are posted) say
// nothing a registration needs.
constexpr uint64_t kInternal = ~uint64_t{0};

unsigned to_poll(uint32_t interest) {
  unsigned m = 0;
  if (interest & kReadable) m |= POLLIN;
  if (interest & kWritable) m |= POLLOUT;
  if (interest & kPeerClosed) m |= POLLRDHUP;
  return m;
}

uint32_t from_poll(unsigned m) {
  uint32_t out = 0;
  if (m & POLLIN) out |= kReadable;
  if (m & POLLOUT) out |= kWritable;
  if (m & POLLRDHUP) out |= kPeerClosed;
  if (m & (POLLERR | POLLHUP | POLLNVAL)) out |= kError;
  return out;
}

uint64_t encode(int fd, uint32_t generation) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(fd)) << 32) | generation;
}

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

Status init_ring(io_uring& ring) {
  io_uring_params p{};
  // SUBMIT_ALL (5.18): one bad SQE does not stop the rest of the batch. COOP_TASKRUN (5.19):
  // completions run when the loop enters the kernel anyway, not by interrupting it.
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  p.cq_entries = kCqEntries;
  int rc = io_uring_queue_init_params(kSqEntries, &ring, &p);
  if (rc == -EINVAL) {  // an older kernel without those flags
    p = io_uring_params{};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = kCqEntries;
    rc = io_uring_queue_init_params(kSqEntries, &ring, &p);
  }
  if (rc < 0) return Status::error(setup_error(-rc), -rc);
  // One io_uring_enter per iteration needs the wait timeout passed as an argument (5.11),
  // and multishot polls need completions that are never dropped (5.5).
  unsigned need = IORING_FEAT_EXT_ARG | IORING_FEAT_NODROP;
  if ((p.features & need) != need) {
    io_uring_queue_exit(&ring);
    return Status::error("the kernel's io_uring lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP");
  }
  return Status::ok();
}

class IoUringPoller final : public Poller {
 public:
  IoUringPoller() = default;
  ~IoUringPoller() override {
    if (ready_to_use_) io_uring_queue_exit(&ring_);
  }
  Status init() {
    Status s = init_ring(ring_);
    ready_to_use_ = s.is_ok();
    return s;
  }

  Status add(int fd, uint32_t interest, IoHandler* handler) override {
    if (fd < 0) return Status::from_errno("io_uring poll add", EBADF);
    if (static_cast<size_t>(fd) >= slots_.size()) slots_.resize(static_cast<size_t>(fd) + 1);
    // A descriptor closed without remove() and reused: epoll forgets the old one on close;
    // here the old poll still holds its file, so it goes first.
    if (slots_[static_cast<size_t>(fd)].live) remove(fd);
    Slot& s = slots_[static_cast<size_t>(fd)];
    s.live = true;
    s.failed = false;
    s.handler = handler;
    s.interest = interest;
    queue_arm(fd, s);
    return Status::ok();
  }

  Status modify(int fd, uint32_t interest, IoHandler* handler) override {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size() ||
        !slots_[static_cast<size_t>(fd)].live) {
      return Status::from_errno("io_uring poll modify", ENOENT);
    }
    Slot& s = slots_[static_cast<size_t>(fd)];
    s.handler = handler;
    s.interest = interest;
    s.failed = false;
    if (s.armed) {
      // Like EPOLL_CTL_MOD, an update re-arms the poll, which reports what is ready now. If
      // the multishot poll already ended, the update fails unseen and the ending completion
      // arms it again with the interest set here.
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_poll_update(sqe, encode(fd, s.generation), 0, to_poll(interest),
                                IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI);
      finish_internal(sqe);
    } else {
      queue_arm(fd, s);
    }
    return Status::ok();
  }

  void remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return;
    Slot& s = slots_[static_cast<size_t>(fd)];
    if (!s.live) return;
    if (s.armed) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_poll_remove(sqe, encode(fd, s.generation));
      finish_internal(sqe);
      // Submitted now, not with the next wait(): the poll holds a reference to the file, and
      // the caller's close() right after this must release the socket at once, as it does
      // under epoll (a removed listener stops accepting before its worker says it is done).
      // One syscall per removal, as epoll_ctl(EPOLL_CTL_DEL) is.
      submit();
    }
    s.live = false;
    s.armed = false;
    s.handler = nullptr;
    ++s.generation;
  }

  int wait(int timeout_ms) override {
    arm_queued();
    io_uring_cqe* cqe = nullptr;
    int rc;
    if (timeout_ms < 0) {
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, nullptr, nullptr);
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      LOG_ERROR("io_uring_enter: {}", std::strerror(-rc));
    }
    harvest();
    return static_cast<int>(ready_.size());
  }

  void dispatch() override {
    // By index: a handler's remove() may find the submission queue full and harvest more
    // completions into ready_ (delivered in this same pass).
    for (size_t i = 0; i < ready_.size(); ++i) {
      const Ready r = ready_[i];
      // Index every time: a handler may add a larger fd and grow the table.
      const Slot& s = slots_[static_cast<size_t>(r.fd)];
      // Removed (or removed and added again) by an earlier handler of this iteration.
      if (!s.live || s.generation != r.generation) continue;
      s.handler->on_io(r.events);
    }
    ready_.clear();
  }

  Backend backend() const override { return Backend::kIoUring; }

 private:
  struct Slot {
    IoHandler* handler = nullptr;
    uint32_t interest = 0;
    uint32_t generation = 0;
    bool live = false;
    bool armed = false;       // the kernel has (or is about to get) this generation's poll
    bool arm_queued = false;  // in arm_queue_, to be armed by the next wait()
    bool failed = false;      // the poll ended with an error: not armed again by itself
  };
  struct Ready {
    int fd;
    uint32_t generation;
    uint32_t events;
  };

  void queue_arm(int fd, Slot& s) {
    if (s.arm_queued) return;
    s.arm_queued = true;
    arm_queue_.push_back(fd);
  }

  void arm_queued() {
    for (size_t i = 0; i < arm_queue_.size(); ++i) {
      int fd = arm_queue_[i];
      Slot& s = slots_[static_cast<size_t>(fd)];
      if (!s.arm_queued) continue;
      s.arm_queued = false;
      if (!s.live || s.armed) continue;
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_poll_multishot(sqe, fd, to_poll(s.interest));
      io_uring_sqe_set_data64(sqe, encode(fd, s.generation));
      s.armed = true;
    }
    arm_queue_.clear();
  }

  void finish_internal(io_uring_sqe* sqe) {
    io_uring_sqe_set_data64(sqe, kInternal);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
  }

  void submit() {
    int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      LOG_ERROR("io_uring_submit: {}", std::strerror(-rc));
    }
  }

  // A free submission entry; when the queue is full, what it holds is submitted first.
  io_uring_sqe* get_sqe() {
    for (int tries = 0; tries < 64; ++tries) {
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
      int rc = io_uring_submit(&ring_);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        LOG_ERROR("io_uring_submit: {}", std::strerror(-rc));
      }
      // Completions the kernel holds back for want of room can block submission.
      if (rc == -EBUSY || rc == -EAGAIN) harvest();
    }
    SLUICE_CHECK(false && "io_uring submission queue stays full");
    return nullptr;
  }

  void harvest() {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      on_completion(cqe->user_data, cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&ring_, seen);
  }

  void on_completion(uint64_t user_data, int res, unsigned flags) {
    if (user_data == kInternal) return;  // a removal or update of a poll that had ended
    auto fd = static_cast<size_t>(user_data >> 32);
    auto generation = static_cast<uint32_t>(user_data);
    if (fd >= slots_.size()) return;
    Slot& s = slots_[fd];
    if (!s.live || s.generation != generation) return;  // a removed registration's
    if (!(flags & IORING_CQE_F_MORE)) {
      // The poll ended: arm it again, unless the kernel refuses this descriptor.
      s.armed = false;
      if (res >= 0 || res == -ECANCELED) {
        queue_arm(static_cast<int>(fd), s);
      } else if (!s.failed) {
        s.failed = true;
        LOG_WARN("io_uring poll on fd {}: {}", fd, std::strerror(-res));
      }
    }
    uint32_t events = 0;
    if (res > 0) {
      // The kernel always watches for errors, hang-ups and RDHUP; report, as epoll does, only
      // what was asked for besides errors.
      events = from_poll(static_cast<unsigned>(res)) & (s.interest | kError);
    } else if (res < 0 && res != -ECANCELED) {
      events = kError;  // the handler's next read or write finds out what is wrong
    }
    if (events) ready_.push_back({static_cast<int>(fd), generation, events});
  }

  io_uring ring_{};
  bool ready_to_use_ = false;
  std::vector<Slot> slots_;  // by fd
  std::vector<int> arm_queue_;
  std::vector<Ready> ready_;
};

}  // namespace

Result<std::unique_ptr<Poller>> make_io_uring_poller() {
  auto poller = std::make_unique<IoUringPoller>();
  if (Status s = poller->init(); !s) return s;
  return std::unique_ptr<Poller>(std::move(poller));
}

Status probe_io_uring() {
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
  if (Status s = init_ring(ring); !s) return s;
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

}  // namespace sluice::event
