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
// then, so no edge is lost. The completions of one registration that one harvest gathers are
// one report, as epoll gives one event per descriptor per wait (on_completion).
//
// Descriptor reuse. A registration is named in user_data by (fd, generation); remove()
// moves the fd's generation on, so a completion for a removed registration — already in the
// completion queue, or posted while the kernel processes the removal — is dropped, even when
// a new registration for the same fd number came meanwhile. The removal itself (a
// cancellation of that (fd, generation)) rides with the next wait()'s submission: closing a
// connection costs no system call of its own. A poll holds a reference to the file, so the
// socket is released at that wait; remove_and_release() (listeners) and an acceptor's
// removal submit at once instead.
//
// Arming is deferred to wait(): an fd added and removed (and perhaps closed and reused)
// before the next wait() never reaches the kernel under its old identity.
#include "event/io_uring_poller.h"

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/log.h"
#include "event/io_uring_ring.h"

namespace sluice::event {
namespace {

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

}  // namespace

IoUringPoller::~IoUringPoller() {
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
  for (char* old : retired_buffers_) ::munmap(old, buffers_bytes());
}

Status IoUringPoller::init() {
  Status s = init_ring(ring_, nullptr);
  ready_to_use_ = s.is_ok();
  enabled_ = ready_to_use_ && !ring_disabled(ring_);
  can_send_ = ready_to_use_ && completion_send_wanted() && kernel_can_send();
  return s;
}

Status IoUringPoller::add(int fd, uint32_t interest, IoHandler* handler) {
  Slot* s = new_slot(fd);
  if (!s) return Status::from_errno("io_uring poll add", EBADF);
  s->handler = handler;
  s->interest = static_cast<uint8_t>(interest);
  queue_arm(fd, *s);
  return Status::ok();
}

Status IoUringPoller::modify(int fd, uint32_t interest, IoHandler* handler) {
  Slot* sp = live_slot(fd);
  if (!sp || sp->is_acceptor()) return Status::from_errno("io_uring poll modify", ENOENT);
  // A receiver's fd without a poll yet gets one (armed with the next wait()).
  Slot& s = *sp;
  if (s.role == Role::kPollReceiver && handler != s.handler) {
    // The receiver stays who it was: kept apart from the poll's new handler.
    set_completion_handler(fd, s, Role::kReceiver, static_cast<RecvHandler*>(s.handler));
  }
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

void IoUringPoller::remove_registration(int fd, bool release_now) {
  Slot* sp = live_slot(fd);
  if (!sp) return;
  Slot& s = *sp;
  const bool was_acceptor = s.is_acceptor();
  if (s.armed) {
    io_uring_sqe* sqe = get_sqe();
    if (was_acceptor) {
      io_uring_prep_cancel64(sqe, encode(fd, s.generation, kAcceptKind), 0);
    } else {
      io_uring_prep_poll_remove(sqe, encode(fd, s.generation));
    }
    finish_internal(sqe);
  }
  if (s.recv_armed) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, encode(fd, s.generation, kRecvKind), 0);
    finish_internal(sqe);
  }
  if (s.send_armed) {
    // Its bytes stay (sends_) until the send's last completion, which the cancellation
    // brings: the kernel may be reading them until then.
    io_uring_sqe* sqe = get_sqe();
    // (Getting the entry may have taken in the send's completion: nothing to cancel then.)
    if (s.send_armed) {
      io_uring_prep_cancel64(sqe, encode(fd, s.generation, kSendKind), 0);
    } else {
      io_uring_prep_nop(sqe);
    }
    finish_internal(sqe);
  }
  if (!s.send_armed && s.send_queued) {
    // Never reached the kernel (or its rest did not): nobody reads these bytes.
    if (auto it = sends_.find(encode(fd, s.generation)); it != sends_.end()) end_send(it);
  }
  // Usually the cancellations ride with the next wait()'s submission: no system call
  // here. Until then the request holds the file, so the caller's close() releases the
  // socket only at that wait (within the loop iteration). A listening socket must stop
  // accepting at once (a reload's removed listener, before its worker says it is done):
  // its removal, and an accept's, is submitted now, and the loop asks the kernel until
  // the requests' last completions came (they drop the file): a wake-up racing the
  // cancellation can leave the end of the request to task work this thread runs only
  // when it asks again.
  if ((release_now || was_acceptor) && (s.armed || s.recv_armed || s.send_armed)) {
    ending_ = Ending{fd, s.generation,
                     (s.armed ? 1 : 0) + (s.recv_armed ? 1 : 0) + (s.send_armed ? 1 : 0)};
    submit_and_get_events();
    for (int i = 0; ending_.pending > 0 && i < 8 && enabled_ && on_owner_thread(); ++i) {
      io_uring_get_events(&ring_);
      harvest();
    }
    ending_.pending = 0;
  }
  s.live = false;
  s.armed = false;
  s.recv_armed = false;
  s.reported = false;
  s.send_armed = false;
  s.send_queued = false;
  clear_handlers(fd, s);
  ++s.generation;
  if (was_acceptor) close_undelivered(fd);
}

int IoUringPoller::wait(int timeout_ms) {
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

void IoUringPoller::dispatch() {
  // By index: a handler's remove() may find the submission queue full and harvest more
  // completions into ready_ (delivered in this same pass).
  for (size_t i = 0; i < ready_.size(); ++i) {
    const Ready r = ready_[i];
    // Taken: a handler below may call deliver_accepted() or remove(), which look through
    // ready_ for connections not handed over yet; this one is handed over (or closed) here.
    ready_[i].accepted = -1;
    ready_[i].buffer = -1;
    ready_[i].moved = -1;
    // Index every time: a handler may add a larger fd and grow the table.
    Slot& s = slots_[static_cast<size_t>(r.fd)];
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
    if (r.kind == Kind::kRecvStopped) {
      deliver_recv_stopped(r);
      continue;
    }
    if (r.kind == Kind::kSend) {
      deliver_sent(r);
      continue;
    }
    if (s.is_acceptor()) {
      if (r.accepted >= 0) {
        acceptor(r.fd)->on_accepted(r.accepted);
      } else if (r.error != 0) {
        acceptor(r.fd)->on_accept_failed(r.error);
      }
      continue;
    }
    // Reported now: a completion from here on is a new report.
    s.reported = false;
    s.handler->on_io(r.events);
  }
  ready_.clear();
  moved_bytes_.clear();
}

IoUringPoller::Slot* IoUringPoller::new_slot(int fd) {
  if (fd < 0) return nullptr;
  if (static_cast<size_t>(fd) >= slots_.size()) slots_.resize(static_cast<size_t>(fd) + 1);
  if (slots_[static_cast<size_t>(fd)].live) remove(fd);
  Slot& s = slots_[static_cast<size_t>(fd)];
  s.live = true;
  s.failed = false;
  s.reported = false;
  clear_handlers(fd, s);
  s.recv_ended = false;
  s.recv_paused = false;
  s.recv_stopping = false;
  s.send_queued = false;
  s.send_armed = false;
  s.interest = 0;
  return &s;
}

void* IoUringPoller::completion_handler(int fd, Role role) const {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  if (slots_[static_cast<size_t>(fd)].role != role) return nullptr;
  auto it = completion_handlers_.find(fd);
  return it == completion_handlers_.end() ? nullptr : it->second;
}

RecvHandler* IoUringPoller::receiver(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  const Slot& s = slots_[static_cast<size_t>(fd)];
  // add_receiver() saw that the poll's handler is this receiver.
  if (s.role == Role::kPollReceiver) return static_cast<RecvHandler*>(s.handler);
  return static_cast<RecvHandler*>(completion_handler(fd, Role::kReceiver));
}

void IoUringPoller::set_completion_handler(int fd, Slot& s, Role role, void* handler) {
  s.role = role;
  completion_handlers_[fd] = handler;
}

void IoUringPoller::clear_handlers(int fd, Slot& s) {
  s.handler = nullptr;
  if (s.role == Role::kAcceptor || s.role == Role::kReceiver) completion_handlers_.erase(fd);
  s.role = Role::kNone;
}

IoUringPoller::Slot* IoUringPoller::live_slot(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  Slot& s = slots_[static_cast<size_t>(fd)];
  return s.live ? &s : nullptr;
}

void IoUringPoller::enable() {
  int rc = enable_ring(ring_);
  if (rc < 0) LOG_ERROR("io_uring enable: {}", std::strerror(-rc));
  enabled_ = true;
  owner_ = std::this_thread::get_id();
}

void IoUringPoller::move_to_this_thread() {
  harvest();  // what the old ring had already posted
  io_uring_queue_exit(&ring_);
  enabled_ = false;
  retire_sends();
  if (buffers_) {
    for (Ready& r : ready_) {
      if (r.buffer < 0) continue;
      r.moved = static_cast<int>(moved_bytes_.size());
      moved_bytes_.emplace_back(buffer(r.buffer), r.size);
      r.buffer = -1;
    }
    retired_buffers_.push_back(std::exchange(buffers_, nullptr));
    buf_ring_ = nullptr;
  }
  if (Status st = init_ring(ring_, nullptr); !st) {
    SLUICE_CHECK(false && "io_uring: no new ring for a loop moved to another thread");
  }
  for (size_t fd = 0; fd < slots_.size(); ++fd) {
    Slot& s = slots_[fd];
    if (!s.live) continue;
    s.armed = false;
    s.recv_armed = false;
    s.failed = false;
    // A receive being stopped ended with the old ring: its last completion will not come.
    if (s.recv_stopping && !s.recv_ended) queue_recv_stopped(static_cast<int>(fd), s);
    queue_arm(static_cast<int>(fd), s);
  }
  if (ring_disabled(ring_)) {
    enable();
  } else {
    enabled_ = true;
  }
}

bool IoUringPoller::on_owner_thread() const {
  return !ring_disabled(ring_) || owner_ == std::this_thread::get_id();
}

void IoUringPoller::queue_arm(int fd, Slot& s) {
  if (s.arm_queued) return;
  s.arm_queued = true;
  arm_queue_.push_back(fd);
}

void IoUringPoller::arm_queued() {
  for (size_t i = 0; i < arm_queue_.size(); ++i) {
    int fd = arm_queue_[i];
    Slot& s = slots_[static_cast<size_t>(fd)];
    if (!s.arm_queued) continue;
    s.arm_queued = false;
    if (!s.live) continue;
    if (s.is_receiver() && !s.recv_armed && !s.recv_ended && !s.recv_paused && !s.recv_stopping) {
      arm_recv(fd, s);
    }
    if (s.send_queued && !s.send_armed) arm_send(fd, s);
    if (s.armed || s.failed || (!s.is_acceptor() && !s.handler)) continue;
    io_uring_sqe* sqe = get_sqe();
    if (s.is_acceptor()) {
      // No address: one buffer would serve every completion of the request; the handler
      // asks getpeername() for it.
      io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } else {
      io_uring_prep_poll_multishot(sqe, fd, to_poll(s.interest));
    }
    io_uring_sqe_set_data64(sqe,
                            encode(fd, s.generation, s.is_acceptor() ? kAcceptKind : kPollKind));
    s.armed = true;
  }
  arm_queue_.clear();
}

void IoUringPoller::finish_internal(io_uring_sqe* sqe) {
  io_uring_sqe_set_data64(sqe, kInternal);
  io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
}

void IoUringPoller::submit_and_get_events() {
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

io_uring_sqe* IoUringPoller::get_sqe() {
  for (int tries = 0; tries < 64; ++tries) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
    // Completions the kernel holds back for want of room can block submission: taking
    // them (harvest) makes room.
    submit_and_get_events();
  }
  SLUICE_CHECK(false && "io_uring submission queue stays full");
  return nullptr;
}

void IoUringPoller::harvest() {
  ++harvests_;
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    on_completion(cqe->user_data, cqe->res, cqe->flags);
  }
  io_uring_cq_advance(&ring_, seen);
}

void IoUringPoller::on_completion(uint64_t user_data, int res, unsigned flags) {
  if (user_data == kInternal) return;  // a removal or update of a request that had ended
  auto fd = static_cast<size_t>((user_data & ~kKindBits) >> 32);
  auto generation = static_cast<uint32_t>(user_data);
  const uint64_t kind = kind_of(user_data);
  if (ending_.pending > 0 && !(flags & IORING_CQE_F_MORE) && static_cast<int>(fd) == ending_.fd &&
      generation == ending_.generation) {
    --ending_.pending;
  }
  // Current or not: the send's bytes are let go at its last completion either way.
  if (kind == kSendKind) return on_send_completion(static_cast<int>(fd), generation, res);
  bool current = fd < slots_.size() && slots_[fd].live && slots_[fd].generation == generation;
  if (!current) {
    // A removed registration's. A connection it accepted is nobody's: closed; a buffer
    // it filled goes back.
    if (res >= 0 && kind == kAcceptKind) ::close(res);
    if (kind == kRecvKind && (flags & IORING_CQE_F_BUFFER)) {
      return_buffer(static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT));
    }
    return;
  }
  Slot& s = slots_[fd];
  if (kind == kRecvKind) {
    on_recv_completion(static_cast<int>(fd), s, res, flags);
    return;
  }
  if (s.is_acceptor()) {
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
  if (events == 0) return;
  // A socket woken several times since the loop last looked (a busy UDP socket: a wake-up,
  // and so a completion, per datagram that arrived while the loop was in the kernel) gets
  // one report: its handler reads until the socket is empty, and what arrives after that
  // read posts a completion of its own, harvested later. A second report would only cost
  // the handler a read that finds nothing.
  if (s.reported) {
    for (size_t i = ready_.size(); i-- > 0;) {
      Ready& r = ready_[i];
      if (r.kind == Kind::kPoll && r.fd == static_cast<int>(fd) && r.generation == generation) {
        r.events |= events;
        return;
      }
    }
  }
  s.reported = true;
  ready_.push_back({static_cast<int>(fd), generation, events});
}

Result<std::unique_ptr<Poller>> make_io_uring_poller() {
  auto poller = std::make_unique<IoUringPoller>();
  if (Status s = poller->init(); !s) return s;
  return std::unique_ptr<Poller>(std::move(poller));
}

}  // namespace sluice::event
