// The io_uring backend of the Poller (io_uring_poller.cc: registrations, the poll loop;
// io_uring_completions.cc: accepts and receives by completion; io_uring_ring.cc: ring setup
// and the probe). Internal to src/event: callers see only poller.h.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/status.h"
#include "event/poller.h"

namespace sluice::event {

// user_data of removals and updates: their completions (only failures are posted) say
// nothing a registration needs.
constexpr uint64_t kInternal = ~uint64_t{0};

// user_data: the top two bits say which request of a registration it is (a poll's results
// are masks, a multishot accept's descriptors, a multishot recv's byte counts, a send's byte
// count), then the fd (30 bits) and the registration's generation. A registration has at
// most one request of each kind in the kernel, so (kind, fd, generation) names it.
constexpr uint64_t kAcceptBit = uint64_t{1} << 63;
constexpr uint64_t kRecvBit = uint64_t{1} << 62;
constexpr uint64_t kKindBits = kAcceptBit | kRecvBit;
constexpr uint64_t kPollKind = 0;
constexpr uint64_t kAcceptKind = kAcceptBit;
constexpr uint64_t kRecvKind = kRecvBit;
constexpr uint64_t kSendKind = kAcceptBit | kRecvBit;

inline uint64_t kind_of(uint64_t user_data) {
  return user_data & kKindBits;
}

inline uint64_t encode(int fd, uint32_t generation, uint64_t kind = 0) {
  return kind | (static_cast<uint64_t>(static_cast<uint32_t>(fd)) << 32) | generation;
}

// The provided-buffer ring that multishot receives fill: shared by every socket of a loop,
// so a socket holds a buffer only while its bytes wait for their handler (within one loop
// iteration). 256 x 4 KiB = 1 MiB per loop, whatever the number of connections; a burst
// that takes them all ends the receives that find none (ENOBUFS), which are armed again
// once the handlers gave the buffers back.
constexpr unsigned kRecvBuffers = 256;  // a power of two
constexpr size_t kRecvBufferSize = kReceivePiece;
constexpr uint16_t kBufferGroup = 0;

class IoUringPoller final : public Poller {
 public:
  IoUringPoller() = default;
  ~IoUringPoller() override;
  Status init();
  Status add(int fd, uint32_t interest, IoHandler* handler) override;
  Status add_acceptor(int fd, AcceptHandler* handler) override;
  Status add_receiver(int fd, RecvHandler* handler) override;
  void pause_receiver(int fd, bool paused) override;
  void stop_receiver(int fd) override;
  bool receive_pending(int fd) override;
  bool can_send() const override { return can_send_; }
  Status send(int fd, Buffer& bytes, int flags) override;
  void resume_acceptor(int fd) override;
  void deliver_accepted(int fd) override;
  void stop_acceptor(int fd, Duration max_wait) override;
  Status modify(int fd, uint32_t interest, IoHandler* handler) override;
  void remove(int fd) override { remove_registration(fd, /*release_now=*/false); }
  void remove_and_release(int fd) override { remove_registration(fd, /*release_now=*/true); }

  int wait(int timeout_ms) override;
  void dispatch() override;
  Backend backend() const override { return Backend::kIoUring; }
  uint64_t gathered() const override { return harvests_; }
  bool submissions_pending() const override {
    return !arm_queue_.empty() || io_uring_sq_ready(&ring_) > 0;
  }

 private:
  // The cancellations are named by (fd, generation), so they end this registration only,
  // whenever they reach the kernel; the generation moves on, so whatever the ended requests
  // still post is dropped, even after the fd number was registered again.
  void remove_registration(int fd, bool release_now);
  // One per descriptor number (an idle TCP proxy session has two, an idle HTTP connection
  // one), where epoll keeps its equivalent in the kernel: so kept at 16 bytes. The handler of
  // an acceptor or of a receiver alone (a few descriptors of a loop) is kept apart, in
  // completion_handlers_, told apart by `role`. A receiver that is also the poll's handler
  // (a connection receiving by completion: one per connection) needs no entry there:
  // kPollReceiver, and `handler` is it.
  enum class Role : uint8_t { kNone, kAcceptor, kReceiver, kPollReceiver };
  struct Slot {
    IoHandler* handler = nullptr;  // a poll (add)
    uint32_t generation = 0;
    uint8_t interest = 0;  // IoEvent bits
    // A multishot accept (instead of a poll) or a multishot recv (beside a poll or alone).
    Role role = Role::kNone;
    bool live : 1 = false;
    bool armed : 1 = false;  // the kernel has (or is about to get) this generation's poll or accept
    bool recv_armed : 1 = false;  // ... its recv
    bool arm_queued : 1 = false;  // in arm_queue_, to be armed by the next wait()
    bool failed : 1 = false;  // the poll or accept ended with an error: not armed again by itself
    bool recv_ended : 1 = false;   // the recv saw the end or an error: not armed again
    bool recv_paused : 1 = false;  // pause_receiver(): cancelled, not armed again until resumed
    // stop_receiver(): cancelled, armed again only by add_receiver().
    bool recv_stopping : 1 = false;
    // A poll report of this generation waits in ready_ (dispatch() clears it): another
    // completion of the poll before then joins that report instead of making a second one.
    bool reported : 1 = false;
    bool send_queued : 1 = false;  // a send (or its rest) for the next wait() to submit
    bool send_armed : 1 = false;   // the kernel has (or is about to get) this generation's send

    bool is_acceptor() const { return role == Role::kAcceptor; }
    bool is_receiver() const { return role == Role::kReceiver || role == Role::kPollReceiver; }
  };
  static_assert(sizeof(Slot) <= 16);
  AcceptHandler* acceptor(int fd) const {
    return static_cast<AcceptHandler*>(completion_handler(fd, Role::kAcceptor));
  }
  RecvHandler* receiver(int fd) const;
  void* completion_handler(int fd, Role role) const;
  void set_completion_handler(int fd, Slot& s, Role role, void* handler);
  void clear_handlers(int fd, Slot& s);
  // kRecvStopped: a receive ended by stop_receiver(), after its last piece.
  enum class Kind : uint8_t { kPoll, kAccept, kRecv, kRecvStopped, kSend };
  struct Ready {
    int fd;
    uint32_t generation;
    uint32_t events;
    int accepted = -1;  // an acceptor's new connection
    int error = 0;      // an acceptor's, receiver's or send's failure (errno)
    Kind kind = Kind::kPoll;
    int buffer = -1;    // a receiver's bytes: the provided buffer's id, and how many
    uint32_t size = 0;  // (or what a send put into the socket)
    int moved = -1;     // or their copy in moved_bytes_ (move_to_this_thread())
  };

  // A fresh registration for fd (an old one, of a descriptor closed without remove() and
  // reused, goes first: epoll forgets it on close; here the request still holds the file).
  Slot* new_slot(int fd);
  Slot* live_slot(int fd);

  // A single-issuer ring belongs to the thread that enables it: the one that runs the loop.
  void enable();

  // A single-issuer ring refuses every thread but its owner. A loop run by another thread
  // than before (not done by sluice's own loops, each run by one thread) gets a new ring,
  // with every registration armed again: arming reports what is ready, so nothing is lost.
  // The provided buffers were registered with the old ring: bytes already taken into them
  // are copied out for their handlers, and the new ring gets buffers of its own when a
  // receive is armed. The old mapping is kept until the poller goes (the old ring's
  // teardown runs in the kernel after ours returns; nothing may be mapped at its addresses
  // meanwhile).
  void move_to_this_thread();
  bool on_owner_thread() const;
  void queue_arm(int fd, Slot& s);
  void arm_queued();
  void arm_recv(int fd, Slot& s);
  void arm_send(int fd, Slot& s);

  // The buffer ring, set up by hand: liburing 2.3 has io_uring_register_buf_ring() but not
  // the io_uring_setup_buf_ring() helper. The ring of descriptors and the buffers are one
  // anonymous mapping (page-aligned, as the kernel requires of the ring); pages the kernel
  // never writes into cost nothing.
  Status setup_buffers();
  static size_t ring_bytes();
  static size_t buffers_bytes() { return ring_bytes() + kRecvBuffers * kRecvBufferSize; }
  char* buffer(int id);

  // Gives a provided buffer back to the kernel once its bytes were handed over.
  void return_buffer(int id);
  void deliver_received(const Ready& r);

  // Accepted connections of fd's removed acceptor that no handler will take.
  void close_undelivered(int fd);
  void finish_internal(io_uring_sqe* sqe);
  void submit_and_get_events();

  // A free submission entry; when the queue is full, what it holds is submitted first.
  io_uring_sqe* get_sqe();
  void harvest();
  void on_completion(uint64_t user_data, int res, unsigned flags);
  void on_recv_completion(int fd, Slot& s, int res, unsigned flags);
  // The stopped receive's last word (queued behind its pieces), and its end as a receiver.
  void queue_recv_stopped(int fd, Slot& s);
  void deliver_recv_stopped(const Ready& r);
  void on_accept_completion(int fd, Slot& s, int res, unsigned flags);
  void on_send_completion(int fd, uint32_t generation, int res);
  void deliver_sent(const Ready& r);

  // Sends (send()): the bytes of each, kept from send() until the kernel's last completion
  // of it (after a remove() too: its cancellation's), by encode(fd, generation). Few at a
  // time (those of this iteration, and those waiting for a slow reader's window), so kept
  // apart from the slots; the map's nodes are reused (spare_sends_): no allocation per send.
  struct Send {
    Buffer bytes;  // what is left to send; never appended to while the kernel has it
    int flags = 0;
  };
  using Sends = std::unordered_map<uint64_t, Send>;
  // Lets the bytes of a send go (its last completion came, or it never reached the kernel).
  void end_send(Sends::iterator it);
  // A ring replaced by move_to_this_thread() had these sends: it may read their bytes until
  // its teardown in the kernel is over, so they are kept until the poller goes.
  void retire_sends();

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
  std::vector<char*> retired_buffers_;    // those of rings replaced by move_to_this_thread()
  std::vector<std::string> moved_bytes_;  // bytes taken out of them, for ready_
  std::vector<Slot> slots_;               // by fd
  std::unordered_map<int, void*> completion_handlers_;  // of acceptors and receivers, by fd
  Sends sends_;
  std::vector<Sends::node_type> spare_sends_;
  std::vector<Sends::node_type> retired_sends_;
  bool can_send_ = false;
  std::vector<int> arm_queue_;
  std::vector<Ready> ready_;
  uint64_t harvests_ = 0;  // gathered(): how many times the completion queue was harvested
};

}  // namespace sluice::event
