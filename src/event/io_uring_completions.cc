// The io_uring backend's requests that complete with more than readiness: multishot
// accepts (Poller::add_acceptor), multishot receives into provided buffers
// (Poller::add_receiver) and sends (Poller::send).
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "base/clock.h"
#include "base/log.h"
#include "event/io_uring_poller.h"

namespace sluice::event {

Status IoUringPoller::add_acceptor(int fd, AcceptHandler* handler) {
  Slot* s = new_slot(fd);
  if (!s) return Status::from_errno("io_uring accept", EBADF);
  set_completion_handler(fd, *s, Role::kAcceptor, handler);
  queue_arm(fd, *s);
  return Status::ok();
}

Status IoUringPoller::add_receiver(int fd, RecvHandler* handler) {
  // Beside the poll of a registered fd, or alone.
  Slot* s = live_slot(fd);
  // The same receiver again, after its receive ended (stop_receiver(), the FIN, a failure):
  // its registration, and the poll beside it, stay.
  const bool again =
      s && s->is_receiver() && s->recv_ended && !s->recv_stopping && receiver(fd) == handler;
  if (!s || (s->role != Role::kNone && !again)) s = new_slot(fd);
  if (!s) return Status::from_errno("io_uring recv", EBADF);
  if (s->handler == static_cast<IoHandler*>(handler)) {
    s->role = Role::kPollReceiver;  // no entry in completion_handlers_
  } else {
    set_completion_handler(fd, *s, Role::kReceiver, handler);
  }
  s->recv_ended = false;
  s->recv_paused = false;
  queue_arm(fd, *s);
  return Status::ok();
}

void IoUringPoller::pause_receiver(int fd, bool paused) {
  Slot* s = live_slot(fd);
  if (!s || !s->is_receiver() || s->recv_paused == paused) return;
  s->recv_paused = paused;
  if (!paused) {
    // Armed still (its cancellation has not ended it yet): the ending completion arms it
    // again, as the pause is over by then.
    if (!s->recv_armed && !s->recv_ended) queue_arm(fd, *s);
    return;
  }
  if (!s->recv_armed) return;
  // Rides with the next wait(). Until the kernel runs it, the recv may take more: those
  // pieces come in completions ahead of its last one, with this generation, and are handed
  // over like any other (the handler keeps them until it reads again).
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, encode(fd, s->generation, kRecvKind), 0);
  finish_internal(sqe);
}

void IoUringPoller::stop_receiver(int fd) {
  Slot* s = live_slot(fd);
  if (!s || !s->is_receiver() || s->recv_stopping) return;
  s->recv_stopping = true;
  if (s->recv_ended) return;  // its FIN or failure is (or was) handed over instead
  if (!s->recv_armed) return queue_recv_stopped(fd, *s);
  // Paused, its cancellation is on its way already; otherwise as pause_receiver(): the
  // pieces it takes until the kernel runs the cancellation come ahead of its last completion.
  if (s->recv_paused) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, encode(fd, s->generation, kRecvBit), 0);
  finish_internal(sqe);
}

void IoUringPoller::queue_recv_stopped(int fd, Slot& s) {
  s.recv_ended = true;
  ready_.push_back({fd, s.generation, 0, -1, 0, Kind::kRecvStopped});
}

void IoUringPoller::deliver_recv_stopped(const Ready& r) {
  Slot& s = slots_[static_cast<size_t>(r.fd)];
  // Still the handler's registration, with its receive ended (recv_ended): a send in flight
  // reports to it, and add_receiver() may start the receive again.
  s.recv_stopping = false;
  s.recv_paused = false;
  if (RecvHandler* h = receiver(r.fd)) h->on_receive_stopped();
}

bool IoUringPoller::receive_pending(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return false;
  if (!slots_[static_cast<size_t>(fd)].live || !slots_[static_cast<size_t>(fd)].is_receiver()) {
    return false;
  }
  // Completions not taken in yet may be this socket's: taken into the batch now (dispatch()
  // goes through it by index and delivers them in this same pass, or the next wait() does).
  if (io_uring_cq_ready(&ring_) > 0) harvest();
  const Slot& s = slots_[static_cast<size_t>(fd)];
  for (const Ready& r : ready_) {
    // Pieces already handed over had their buffer (or copy) taken in dispatch().
    if (r.fd == fd && r.generation == s.generation && r.kind == Kind::kRecv &&
        (r.buffer >= 0 || r.moved >= 0)) {
      return true;
    }
  }
  return false;
}

void IoUringPoller::resume_acceptor(int fd) {
  Slot* s = live_slot(fd);
  if (!s || !s->is_acceptor() || s->armed) return;
  s->failed = false;
  queue_arm(fd, *s);
}

void IoUringPoller::deliver_accepted(int fd) {
  Slot* s = live_slot(fd);
  if (!s || !s->is_acceptor()) return;
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
    acceptor(fd)->on_accepted(accepted);
  }
}

void IoUringPoller::stop_acceptor(int fd, Duration max_wait) {
  Slot* s = live_slot(fd);
  if (!s || !s->is_acceptor()) return remove_and_release(fd);
  const uint32_t generation = s->generation;
  if (s->armed && enabled_ && on_owner_thread()) {
    // Cancel the multishot accept and wait for its last completion: every connection it
    // accepted comes in a completion ahead of that one. remove() would close those that
    // came during the cancellation; here they are handed over.
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, encode(fd, generation, kAcceptKind), 0);
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

void IoUringPoller::arm_recv(int fd, Slot& s) {
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
  io_uring_sqe_set_data64(sqe, encode(fd, s.generation, kRecvKind));
  s.recv_armed = true;
}

Status IoUringPoller::setup_buffers() {
  void* mem =
      ::mmap(nullptr, buffers_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return Status::from_errno("mmap provided buffers", errno);
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = kRecvBuffers;
  reg.bgid = kBufferGroup;
  if (int rc = io_uring_register_buf_ring(&ring_, &reg, 0); rc < 0) {
    ::munmap(mem, buffers_bytes());
    return Status::error(
        fmt::format("io_uring_register_buf_ring: {} (needs Linux 5.19)", std::strerror(-rc)), -rc);
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

size_t IoUringPoller::ring_bytes() {
  size_t bytes = kRecvBuffers * sizeof(io_uring_buf);
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

char* IoUringPoller::buffer(int id) {
  return buffers_ + ring_bytes() + static_cast<size_t>(id) * kRecvBufferSize;
}

void IoUringPoller::return_buffer(int id) {
  io_uring_buf_ring_add(buf_ring_, buffer(id), kRecvBufferSize, static_cast<uint16_t>(id),
                        io_uring_buf_ring_mask(kRecvBuffers), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

void IoUringPoller::deliver_received(const Ready& r) {
  RecvHandler* h = receiver(r.fd);
  if (r.moved >= 0) {
    const std::string& bytes = moved_bytes_[static_cast<size_t>(r.moved)];
    if (h) h->on_received(bytes.data(), bytes.size());
    return;
  }
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

void IoUringPoller::close_undelivered(int fd) {
  for (Ready& r : ready_) {
    if (r.fd == fd && r.accepted >= 0) {
      ::close(r.accepted);
      r.accepted = -1;
    }
  }
}

void IoUringPoller::on_recv_completion(int fd, Slot& s, int res, unsigned flags) {
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    Ready r{fd, s.generation, 0, -1, 0, Kind::kRecv};
    r.buffer = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
    r.size = static_cast<uint32_t>(res);
    ready_.push_back(r);
  }
  if (flags & IORING_CQE_F_MORE) return;
  s.recv_armed = false;
  // The buffers ran out (they come back as handlers take their bytes), the kernel ended the
  // request, or it simply stopped after data: receive again with the next wait(), unless
  // it was stopped for good.
  if (res > 0 || res == -ENOBUFS || res == -ECANCELED || res == -EINTR) {
    if (s.recv_stopping) return queue_recv_stopped(fd, s);
    queue_arm(fd, s);
    return;
  }
  s.recv_ended = true;
  ready_.push_back({fd, s.generation, 0, -1, res < 0 ? -res : 0, Kind::kRecv});
}

Status IoUringPoller::send(int fd, Buffer& bytes, int flags) {
  Slot* s = live_slot(fd);
  if (!can_send_ || !s || !s->is_receiver()) {
    return Status::error("io_uring: no completion-based send for this descriptor", EOPNOTSUPP);
  }
  if (s->send_queued || s->send_armed) {
    return Status::error("io_uring: a send is already in flight", EBUSY);
  }
  if (bytes.empty()) return Status::ok();
  const uint64_t key = encode(fd, s->generation);
  Sends::iterator it;
  if (!spare_sends_.empty()) {
    Sends::node_type node = std::move(spare_sends_.back());
    spare_sends_.pop_back();
    node.key() = key;
    auto inserted = sends_.insert(std::move(node));
    if (!inserted.inserted) {
      return Status::error("io_uring: a send is already in flight", EBUSY);
    }
    it = inserted.position;
  } else {
    bool inserted;
    std::tie(it, inserted) = sends_.try_emplace(key);
    if (!inserted) return Status::error("io_uring: a send is already in flight", EBUSY);
  }
  it->second.bytes.swap(bytes);
  it->second.flags = flags;
  // Prepared by the next wait(), like an arming: a send of a descriptor removed (and
  // perhaps closed and reused) before then never reaches the kernel.
  s->send_queued = true;
  queue_arm(fd, *s);
  return Status::ok();
}

void IoUringPoller::arm_send(int fd, Slot& s) {
  // The entry first: getting one may harvest completions, never this send's (it is not in
  // the kernel).
  io_uring_sqe* sqe = get_sqe();
  auto it = sends_.find(encode(fd, s.generation));
  if (it == sends_.end()) {
    // Cannot happen (send() made it, only its end or a removal lets it go): nothing to send.
    io_uring_prep_nop(sqe);
    finish_internal(sqe);
    s.send_queued = false;
    return;
  }
  const Buffer& bytes = it->second.bytes;
  io_uring_prep_send(sqe, fd, bytes.data(), bytes.size(), it->second.flags | MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, encode(fd, s.generation, kSendKind));
  s.send_queued = false;
  s.send_armed = true;
}

void IoUringPoller::on_send_completion(int fd, uint32_t generation, int res) {
  auto it = sends_.find(encode(fd, generation));
  if (it == sends_.end()) return;  // cannot happen: a send's bytes stay until its end
  Slot* s = live_slot(fd);
  if (!s || s->generation != generation) {
    // A removed registration's (ended by its cancellation, -ECANCELED, or before it): the
    // kernel is done with the bytes.
    end_send(it);
    return;
  }
  s->send_armed = false;
  Buffer& bytes = it->second.bytes;
  if (res > 0) {
    // A short send (the socket's buffer was full) goes on with the next wait(), from where
    // it stopped: nothing else is sent on this descriptor meanwhile.
    bytes.consume(static_cast<size_t>(res));
    Ready r{fd, generation, 0, -1, 0, Kind::kSend};
    r.size = static_cast<uint32_t>(res);
    ready_.push_back(r);
    if (bytes.empty()) {
      end_send(it);
    } else {
      s->send_queued = true;
      queue_arm(fd, *s);
    }
    return;
  }
  // Interrupted, or ended by the kernel (not by remove(): the registration is current, as
  // when the thread that submitted it exited): again, as it was.
  if (res == -EAGAIN || res == -EINTR || res == -ECANCELED) {
    s->send_queued = true;
    queue_arm(fd, *s);
    return;
  }
  end_send(it);
  // 0 bytes of a non-empty send: the socket takes nothing more, as a send(2) that returns 0.
  ready_.push_back({fd, generation, 0, -1, res < 0 ? -res : EPIPE, Kind::kSend});
}

void IoUringPoller::end_send(Sends::iterator it) {
  Sends::node_type node = sends_.extract(it);
  node.mapped().bytes.clear();
  node.mapped().bytes.release();  // the storage goes back to the thread's cache
  // Kept for the next send, up to a bound: a burst of sends does not keep its nodes.
  constexpr size_t kSpareSends = 256;
  if (spare_sends_.size() < kSpareSends) spare_sends_.push_back(std::move(node));
}

void IoUringPoller::retire_sends() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    const auto fd = static_cast<int>((it->first & ~kKindBits) >> 32);
    const auto generation = static_cast<uint32_t>(it->first);
    Slot* s = live_slot(fd);
    const bool current = s && s->generation == generation;
    if (current && s->send_queued) {
      ++it;  // not in the kernel yet: the new ring gets it
      continue;
    }
    if (current && s->send_armed) {
      // How much of it the old ring sent cannot be known: sending the rest again could
      // repeat bytes, so the send failed.
      s->send_armed = false;
      ready_.push_back({fd, generation, 0, -1, ECANCELED, Kind::kSend});
    }
    auto next = std::next(it);
    retired_sends_.push_back(sends_.extract(it));
    it = next;
  }
}

void IoUringPoller::deliver_sent(const Ready& r) {
  RecvHandler* h = receiver(r.fd);
  if (!h) return;
  if (r.error != 0) {
    h->on_send_failed(r.error);
  } else {
    h->on_sent(r.size);
  }
}

void IoUringPoller::on_accept_completion(int fd, Slot& s, int res, unsigned flags) {
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

}  // namespace sluice::event
