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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "base/check.h"
#include "base/clock.h"
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

// user_data: the top bits say which request of a registration it is (a poll's results are
// masks, a multishot accept's descriptors, a multishot recv's byte counts), then the fd (30
// bits) and the registration's generation.
constexpr uint64_t kAcceptBit = uint64_t{1} << 63;
constexpr uint64_t kRecvBit = uint64_t{1} << 62;
constexpr uint64_t kKindBits = kAcceptBit | kRecvBit;

uint64_t encode(int fd, uint32_t generation, uint64_t kind = 0) {
  return kind | (static_cast<uint64_t>(static_cast<uint32_t>(fd)) << 32) | generation;
}

// The provided-buffer ring that multishot receives fill: shared by every socket of a loop,
// so a socket holds a buffer only while its bytes wait for their handler (within one loop
// iteration). 256 x 4 KiB = 1 MiB per loop, whatever the number of connections; a burst
// that takes them all ends the receives that find none (ENOBUFS), which are armed again
// once the handlers gave the buffers back.
constexpr unsigned kRecvBuffers = 256;  // a power of two
constexpr size_t kRecvBufferSize = 4096;
constexpr uint16_t kBufferGroup = 0;

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

// Creates `ring` with the best setup the kernel takes. `setup` says which, and why the better
// ones were refused.
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

class IoUringPoller final : public Poller {
 public:
  IoUringPoller() = default;
  ~IoUringPoller() override {
    if (!ready_to_use_) return;
    // Connections accepted for nobody any more: closed, not leaked.
    if (enabled_) {
      harvest();
      for (const Ready& r : ready_) {
        if (r.accepted >= 0) ::close(r.accepted);
      }
    }
    io_uring_queue_exit(&ring_);
    if (buffers_) ::munmap(buffers_, buffers_bytes());
  }
  Status init() {
    Status s = init_ring(ring_, nullptr);
    ready_to_use_ = s.is_ok();
    enabled_ = ready_to_use_ && !ring_disabled(ring_);
    return s;
  }

  Status add(int fd, uint32_t interest, IoHandler* handler) override {
    Slot* s = new_slot(fd);
    if (!s) return Status::from_errno("io_uring poll add", EBADF);
    s->handler = handler;
    s->interest = static_cast<uint8_t>(interest);
    queue_arm(fd, *s);
    return Status::ok();
  }

  Status add_acceptor(int fd, AcceptHandler* handler) override {
    Slot* s = new_slot(fd);
    if (!s) return Status::from_errno("io_uring accept", EBADF);
    s->set(handler);
    queue_arm(fd, *s);
    return Status::ok();
  }

  Status add_receiver(int fd, RecvHandler* handler) override {
    // Beside the poll of a registered fd, or alone.
    Slot* s = live_slot(fd);
    if (!s || s->receiver() || s->acceptor()) s = new_slot(fd);
    if (!s) return Status::from_errno("io_uring recv", EBADF);
    s->set(handler);
    s->recv_ended = false;
    queue_arm(fd, *s);
    return Status::ok();
  }

  void resume_acceptor(int fd) override {
    Slot* s = live_slot(fd);
    if (!s || !s->acceptor() || s->armed) return;
    s->failed = false;
    queue_arm(fd, *s);
  }

  void deliver_accepted(int fd) override {
    Slot* s = live_slot(fd);
    if (!s || !s->acceptor()) return;
    if (enabled_ && on_owner_thread()) {
      // Completions the kernel holds for this loop (task work of this thread runs here).
      io_uring_get_events(&ring_);
      harvest();
    }
    const uint32_t generation = s->generation;
    for (size_t i = 0; i < ready_.size(); ++i) {
      Ready& r = ready_[i];
      if (r.fd != fd || r.generation != generation || r.accepted < 0) continue;
      int accepted = std::exchange(r.accepted, -1);
      s = live_slot(fd);  // the handler may have removed it, or grown the table
      if (!s || s->generation != generation) {
        ::close(accepted);
        continue;
      }
      s->acceptor()->on_accepted(accepted);
    }
  }

  void stop_acceptor(int fd, Duration max_wait) override {
    Slot* s = live_slot(fd);
    if (!s || !s->acceptor()) return remove(fd);
    const uint32_t generation = s->generation;
    if (s->armed && enabled_ && on_owner_thread()) {
      // Cancel the multishot accept and wait for its last completion: every connection it
      // accepted comes in a completion ahead of that one. remove() would close those that
      // came during the cancellation; here they are handed over.
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, encode(fd, generation, kAcceptBit), 0);
      finish_internal(sqe);
      ending_ = Ending{fd, generation, 1};
      submit_and_get_events();
      // Bounded: the cancellation runs at once, or in task work of this thread that waiting
      // runs.
      const MonoTime until = MonoClock::now() + max_wait;
      while (ending_.pending > 0 && MonoClock::now() < until) {
        __kernel_timespec ts{};
        ts.tv_nsec = 5'000'000;
        io_uring_cqe* cqe = nullptr;
        io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
        harvest();
      }
      // Not ended in time: remove() below cancels again and closes what comes after.
      if (ending_.pending > 0) LOG_WARN("io_uring: the accept on fd {} did not end in time", fd);
      ending_.pending = 0;
    }
    deliver_accepted(fd);
    s = live_slot(fd);
    if (s && s->generation == generation) remove(fd);
  }

  Status modify(int fd, uint32_t interest, IoHandler* handler) override {
    Slot* sp = live_slot(fd);
    if (!sp || sp->acceptor()) return Status::from_errno("io_uring poll modify", ENOENT);
    // A receiver's fd without a poll yet gets one (armed with the next wait()).
    Slot& s = *sp;
    s.handler = handler;
    s.interest = static_cast<uint8_t>(interest);
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
    Slot* sp = live_slot(fd);
    if (!sp) return;
    Slot& s = *sp;
    const bool was_acceptor = s.acceptor() != nullptr;
    if (s.armed) {
      io_uring_sqe* sqe = get_sqe();
      if (was_acceptor) {
        io_uring_prep_cancel64(sqe, encode(fd, s.generation, kAcceptBit), 0);
      } else {
        io_uring_prep_poll_remove(sqe, encode(fd, s.generation));
      }
      finish_internal(sqe);
    }
    if (s.recv_armed) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, encode(fd, s.generation, kRecvBit), 0);
      finish_internal(sqe);
    }
    if (s.armed || s.recv_armed) {
      // Submitted now, not with the next wait(): the request holds a reference to the file,
      // and the caller's close() right after this must release the socket at once, as it
      // does under epoll (a removed listener stops accepting before its worker says it is
      // done). The kernel may finish the removal in task work of this thread: asking for
      // events runs it. One syscall per removal, as epoll_ctl(EPOLL_CTL_DEL).
      ending_ = Ending{fd, s.generation, (s.armed ? 1 : 0) + (s.recv_armed ? 1 : 0)};
      submit_and_get_events();
      // A wake-up racing the cancellation (a connection arriving on a listener under load)
      // can leave the end of the request to task work queued anew, which runs only when this
      // thread asks again: ask until the last completions of the requests came (they drop
      // the file), a few times at most.
      for (int i = 0; ending_.pending > 0 && i < 8 && enabled_ && on_owner_thread(); ++i) {
        io_uring_get_events(&ring_);
        harvest();
      }
      ending_.pending = 0;
    }
    s.live = false;
    s.armed = false;
    s.recv_armed = false;
    s.clear_handlers();
    ++s.generation;
    if (was_acceptor) close_undelivered(fd);
  }

  int wait(int timeout_ms) override {
    if (!enabled_) {
      enable();
    } else if (!on_owner_thread()) {
      move_to_this_thread();
    }
    arm_queued();
    // Completions already harvested (a remove() or a full submission queue outside
    // dispatch(), in a timer or posted work) are events to hand over now: sleeping until the
    // next one would hold them back, perhaps until the next timer (a worker's post, unseen).
    if (!ready_.empty()) timeout_ms = 0;
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
      // Taken: a handler below may call deliver_accepted() or remove(), which look through
      // ready_ for connections not handed over yet; this one is handed over (or closed) here.
      ready_[i].accepted = -1;
      ready_[i].buffer = -1;
      // Index every time: a handler may add a larger fd and grow the table.
      const Slot& s = slots_[static_cast<size_t>(r.fd)];
      // Removed (or removed and added again) by an earlier handler of this iteration.
      if (!s.live || s.generation != r.generation) {
        if (r.accepted >= 0) ::close(r.accepted);
        if (r.buffer >= 0) return_buffer(r.buffer);
        continue;
      }
      if (r.kind == Kind::kRecv) {
        deliver_received(r);
        continue;
      }
      if (s.acceptor()) {
        if (r.accepted >= 0) {
          s.acceptor()->on_accepted(r.accepted);
        } else if (r.error != 0) {
          s.acceptor()->on_accept_failed(r.error);
        }
        continue;
      }
      s.handler->on_io(r.events);
    }
    ready_.clear();
  }

  Backend backend() const override { return Backend::kIoUring; }

 private:
  // One per descriptor number, so kept at 24 bytes (as many as an idle TCP proxy session
  // has descriptors): an acceptor or a receiver shares one pointer, told apart by `role`.
  enum class Role : uint8_t { kNone, kAcceptor, kReceiver };
  struct Slot {
    IoHandler* handler = nullptr;  // a poll (add)
    // A multishot accept (instead of a poll) or a multishot recv (beside a poll or alone).
    void* completion_handler = nullptr;
    uint32_t generation = 0;
    uint8_t interest = 0;  // IoEvent bits
    Role role = Role::kNone;
    bool live : 1 = false;
    bool armed : 1 = false;  // the kernel has (or is about to get) this generation's poll or accept
    bool recv_armed : 1 = false;  // ... its recv
    bool arm_queued : 1 = false;  // in arm_queue_, to be armed by the next wait()
    bool failed : 1 = false;  // the poll or accept ended with an error: not armed again by itself
    bool recv_ended : 1 = false;  // the recv saw the end or an error: not armed again

    AcceptHandler* acceptor() const {
      return role == Role::kAcceptor ? static_cast<AcceptHandler*>(completion_handler) : nullptr;
    }
    RecvHandler* receiver() const {
      return role == Role::kReceiver ? static_cast<RecvHandler*>(completion_handler) : nullptr;
    }
    void set(AcceptHandler* h) {
      role = Role::kAcceptor;
      completion_handler = h;
    }
    void set(RecvHandler* h) {
      role = Role::kReceiver;
      completion_handler = h;
    }
    void clear_handlers() {
      handler = nullptr;
      completion_handler = nullptr;
      role = Role::kNone;
    }
  };
  static_assert(sizeof(Slot) <= 24);
  enum class Kind : uint8_t { kPoll, kAccept, kRecv };
  struct Ready {
    int fd;
    uint32_t generation;
    uint32_t events;
    int accepted = -1;  // an acceptor's new connection
    int error = 0;      // an acceptor's or receiver's failure (errno)
    Kind kind = Kind::kPoll;
    int buffer = -1;  // a receiver's bytes: the provided buffer's id, and how many
    uint32_t size = 0;
  };

  // A fresh registration for fd (an old one, of a descriptor closed without remove() and
  // reused, goes first: epoll forgets it on close; here the request still holds the file).
  Slot* new_slot(int fd) {
    if (fd < 0) return nullptr;
    if (static_cast<size_t>(fd) >= slots_.size()) slots_.resize(static_cast<size_t>(fd) + 1);
    if (slots_[static_cast<size_t>(fd)].live) remove(fd);
    Slot& s = slots_[static_cast<size_t>(fd)];
    s.live = true;
    s.failed = false;
    s.clear_handlers();
    s.recv_ended = false;
    s.interest = 0;
    return &s;
  }

  Slot* live_slot(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
    Slot& s = slots_[static_cast<size_t>(fd)];
    return s.live ? &s : nullptr;
  }

  // A single-issuer ring belongs to the thread that enables it: the one that runs the loop.
  void enable() {
    int rc = enable_ring(ring_);
    if (rc < 0) LOG_ERROR("io_uring enable: {}", std::strerror(-rc));
    enabled_ = true;
    owner_ = std::this_thread::get_id();
  }

  // A single-issuer ring refuses every thread but its owner. A loop run by another thread
  // than before (not done by sluice's own loops, each run by one thread) gets a new ring,
  // with every registration armed again: arming reports what is ready, so nothing is lost.
  void move_to_this_thread() {
    harvest();  // what the old ring had already posted
    io_uring_queue_exit(&ring_);
    enabled_ = false;
    if (Status st = init_ring(ring_, nullptr); !st) {
      SLUICE_CHECK(false && "io_uring: no new ring for a loop moved to another thread");
    }
    for (size_t fd = 0; fd < slots_.size(); ++fd) {
      Slot& s = slots_[fd];
      if (!s.live) continue;
      s.armed = false;
      s.failed = false;
      queue_arm(static_cast<int>(fd), s);
    }
    if (ring_disabled(ring_)) {
      enable();
    } else {
      enabled_ = true;
    }
  }

  bool on_owner_thread() const {
    return !ring_disabled(ring_) || owner_ == std::this_thread::get_id();
  }

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
      if (!s.live) continue;
      if (s.receiver() && !s.recv_armed && !s.recv_ended) arm_recv(fd, s);
      if (s.armed || s.failed || (!s.acceptor() && !s.handler)) continue;
      io_uring_sqe* sqe = get_sqe();
      if (s.acceptor()) {
        // No address: one buffer would serve every completion of the request; the handler
        // asks getpeername() for it.
        io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      } else {
        io_uring_prep_poll_multishot(sqe, fd, to_poll(s.interest));
      }
      io_uring_sqe_set_data64(sqe, encode(fd, s.generation, s.acceptor() ? kAcceptBit : 0));
      s.armed = true;
    }
    arm_queue_.clear();
  }

  void arm_recv(int fd, Slot& s) {
    if (!buffers_) {
      if (Status st = setup_buffers(); !st) {
        LOG_WARN("io_uring: no provided buffers for receives: {}", st.message());
        s.recv_ended = true;
        ready_.push_back({fd, s.generation, 0, -1, EOPNOTSUPP, Kind::kRecv});
        return;
      }
    }
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, encode(fd, s.generation, kRecvBit));
    s.recv_armed = true;
  }

  // The buffer ring, set up by hand: liburing 2.3 has io_uring_register_buf_ring() but not
  // the io_uring_setup_buf_ring() helper. The ring of descriptors and the buffers are one
  // anonymous mapping (page-aligned, as the kernel requires of the ring); pages the kernel
  // never writes into cost nothing.
  Status setup_buffers() {
    void* mem = ::mmap(nullptr, buffers_bytes(), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return Status::from_errno("mmap provided buffers", errno);
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(br);
    reg.ring_entries = kRecvBuffers;
    reg.bgid = kBufferGroup;
    if (int rc = io_uring_register_buf_ring(&ring_, &reg, 0); rc < 0) {
      ::munmap(mem, buffers_bytes());
      return Status::error(
          fmt::format("io_uring_register_buf_ring: {} (needs Linux 5.19)", std::strerror(-rc)),
          -rc);
    }
    buffers_ = static_cast<char*>(mem);
    buf_ring_ = br;
    io_uring_buf_ring_init(buf_ring_);
    for (unsigned i = 0; i < kRecvBuffers; ++i) {
      io_uring_buf_ring_add(buf_ring_, buffer(static_cast<int>(i)), kRecvBufferSize,
                            static_cast<uint16_t>(i), io_uring_buf_ring_mask(kRecvBuffers),
                            static_cast<int>(i));
    }
    io_uring_buf_ring_advance(buf_ring_, kRecvBuffers);
    return Status::ok();
  }

  static size_t ring_bytes() {
    size_t bytes = kRecvBuffers * sizeof(io_uring_buf);
    size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
  }
  static size_t buffers_bytes() { return ring_bytes() + kRecvBuffers * kRecvBufferSize; }
  char* buffer(int id) {
    return buffers_ + ring_bytes() + static_cast<size_t>(id) * kRecvBufferSize;
  }

  // Gives a provided buffer back to the kernel once its bytes were handed over.
  void return_buffer(int id) {
    io_uring_buf_ring_add(buf_ring_, buffer(id), kRecvBufferSize, static_cast<uint16_t>(id),
                          io_uring_buf_ring_mask(kRecvBuffers), 0);
    io_uring_buf_ring_advance(buf_ring_, 1);
  }

  void deliver_received(const Ready& r) {
    RecvHandler* h = slots_[static_cast<size_t>(r.fd)].receiver();
    if (r.buffer >= 0) {
      // Given back only after the handler: any system call it makes may run the kernel's
      // pending receives, which would fill a buffer given back already.
      if (h) h->on_received(buffer(r.buffer), r.size);
      return_buffer(r.buffer);
      return;
    }
    if (!h) return;
    if (r.error != 0) {
      h->on_receive_failed(r.error);
    } else {
      h->on_received(nullptr, 0);  // the peer's FIN
    }
  }

  // Accepted connections of fd's removed acceptor that no handler will take.
  void close_undelivered(int fd) {
    for (Ready& r : ready_) {
      if (r.fd == fd && r.accepted >= 0) {
        ::close(r.accepted);
        r.accepted = -1;
      }
    }
  }

  void finish_internal(io_uring_sqe* sqe) {
    io_uring_sqe_set_data64(sqe, kInternal);
    io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
  }

  void submit_and_get_events() {
    // A loop torn down on another thread than the one that ran it (a worker's, after its
    // thread ended): a single-issuer ring refuses that thread, and the ring's teardown ends
    // every request anyway.
    if (!enabled_ || !on_owner_thread()) return;
    int rc = io_uring_submit_and_get_events(&ring_);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      LOG_ERROR("io_uring_submit: {}", std::strerror(-rc));
    }
    harvest();
  }

  // A free submission entry; when the queue is full, what it holds is submitted first.
  io_uring_sqe* get_sqe() {
    for (int tries = 0; tries < 64; ++tries) {
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
      // Completions the kernel holds back for want of room can block submission: taking
      // them (harvest) makes room.
      submit_and_get_events();
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
    if (user_data == kInternal) return;  // a removal or update of a request that had ended
    auto fd = static_cast<size_t>((user_data & ~kKindBits) >> 32);
    auto generation = static_cast<uint32_t>(user_data);
    if (ending_.pending > 0 && !(flags & IORING_CQE_F_MORE) && static_cast<int>(fd) == ending_.fd &&
        generation == ending_.generation) {
      --ending_.pending;
    }
    bool current = fd < slots_.size() && slots_[fd].live && slots_[fd].generation == generation;
    if (!current) {
      // A removed registration's. A connection it accepted is nobody's: closed; a buffer
      // it filled goes back.
      if (res >= 0 && (user_data & kAcceptBit)) ::close(res);
      if ((user_data & kRecvBit) && (flags & IORING_CQE_F_BUFFER)) {
        return_buffer(static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT));
      }
      return;
    }
    Slot& s = slots_[fd];
    if (user_data & kRecvBit) {
      on_recv_completion(static_cast<int>(fd), s, res, flags);
      return;
    }
    if (s.acceptor()) {
      on_accept_completion(static_cast<int>(fd), s, res, flags);
      return;
    }
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

  void on_recv_completion(int fd, Slot& s, int res, unsigned flags) {
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
      Ready r{fd, s.generation, 0, -1, 0, Kind::kRecv};
      r.buffer = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
      r.size = static_cast<uint32_t>(res);
      ready_.push_back(r);
    }
    if (flags & IORING_CQE_F_MORE) return;
    s.recv_armed = false;
    // The buffers ran out (they come back as handlers take their bytes), the kernel ended the
    // request, or it simply stopped after data: receive again with the next wait().
    if (res > 0 || res == -ENOBUFS || res == -ECANCELED || res == -EINTR) {
      queue_arm(fd, s);
      return;
    }
    s.recv_ended = true;
    ready_.push_back({fd, s.generation, 0, -1, res < 0 ? -res : 0, Kind::kRecv});
  }

  void on_accept_completion(int fd, Slot& s, int res, unsigned flags) {
    if (res >= 0) ready_.push_back({fd, s.generation, 0, res, 0, Kind::kAccept});
    if (flags & IORING_CQE_F_MORE) return;
    s.armed = false;
    // Any failure ends a multishot accept. A connection that went away before it was taken,
    // a signal or the kernel ending the request: accept again. Out of descriptors or
    // memory: the handler pauses and resumes (the connection waits in the backlog).
    int err = res < 0 ? -res : 0;
    if (err == 0 || err == ECANCELED || err == EINTR || err == ECONNABORTED || err == EPROTO ||
        err == EPERM || err == EAGAIN) {
      queue_arm(fd, s);
      return;
    }
    s.failed = true;
    ready_.push_back({fd, s.generation, 0, -1, err, Kind::kAccept});
  }

  // The requests remove() waits to see end.
  struct Ending {
    int fd = -1;
    uint32_t generation = 0;
    int pending = 0;
  };
  Ending ending_;
  io_uring ring_{};
  bool ready_to_use_ = false;
  bool enabled_ = false;
  std::thread::id owner_;
  char* buffers_ = nullptr;  // the provided buffers' ring then the buffers (setup_buffers())
  io_uring_buf_ring* buf_ring_ = nullptr;
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
