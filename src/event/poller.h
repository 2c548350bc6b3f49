// Poller: the narrow seam between the event loop and the kernel's readiness API. Two
// backends, epoll (epoll_poller.cc) and io_uring (io_uring_poller.cc), give callers the same
// contract: IoHandler::on_io() with the readiness bits below, edge-triggered.
// Owned by one Loop; called only from that loop's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/buffer.h"
#include "base/status.h"
#include "base/units.h"

namespace sluice::event {

// The kernel interface a Poller uses; kAuto (configuration only) means io_uring when the
// kernel offers it, else epoll.
enum class Backend { kAuto, kEpoll, kIoUring };
// How connections that could receive by completion (raw downstream ones, on io_uring) read:
// kCompletion, the backend receives into buffers the loop shares (Poller::add_receiver);
// kReadiness, a readiness report then a recv(2), as on epoll.
enum class Receive { kCompletion, kReadiness };

enum IoEvent : uint32_t {
  kReadable = 1u << 0,
  kWritable = 1u << 1,
  kPeerClosed = 1u << 2,  // the peer shut down its write side (EPOLLRDHUP)
  kError = 1u << 3,       // error or hang-up on the descriptor
};

class IoHandler {
 public:
  // `events` is a mask of IoEvent. Registration is edge-triggered: a handler must consume
  // until EAGAIN (or remember that it stopped early) to be woken again.
  virtual void on_io(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

// Told of connections a listening socket accepted by completion (Poller::add_acceptor).
class AcceptHandler {
 public:
  // `fd` is a new connection, non-blocking and close-on-exec, owned by the handler from now.
  virtual void on_accepted(int fd) = 0;
  // Accepting stopped on `err` (EMFILE, ENFILE, ENOBUFS, ENOMEM, or one the kernel does not
  // expect); nothing more is accepted until resume_acceptor().
  virtual void on_accept_failed(int err) = 0;

 protected:
  ~AcceptHandler() = default;
};

// The most a receiver is handed at once: a piece this size filled its buffer, so more may wait.
inline constexpr size_t kReceivePiece = 4096;

// Told of bytes a socket received by completion (Poller::add_receiver). An IoHandler too:
// a receiver usually sits beside a poll of the same descriptor (a connection hears of
// writability there), and one object then carries one vtable pointer, not two. A receiver
// without a poll leaves on_io() empty.
class RecvHandler : public IoHandler {
 public:
  // `size` bytes arrived, in order. `data` is a buffer the loop shares among its sockets,
  // valid only during the call: copy what is kept. size == 0: the peer closed its side
  // (FIN) and nothing more is received.
  virtual void on_received(const char* data, size_t size) = 0;
  // Receiving failed with `err` (ECONNRESET, ...); nothing more is received.
  virtual void on_receive_failed(int err) = 0;
  // The receive ended as stop_receiver() asked, after every piece it took was handed over:
  // the socket holds what arrived since, for the handler to read itself.
  virtual void on_receive_stopped() {}
  // Completion-based send (Poller::send): `size` more bytes of the send went into the
  // socket, in order. The send is over once these calls added up to all its bytes.
  virtual void on_sent(size_t /*size*/) {}
  // The send failed with `err` (EPIPE, ECONNRESET, ...): what was not sent is dropped, and
  // nothing more is told of it.
  virtual void on_send_failed(int /*err*/) {}

 protected:
  ~RecvHandler() = default;
};

class Poller {
 public:
  virtual ~Poller() = default;
  // Registers fd for the IoEvent mask `interest`, edge-triggered: readiness already present
  // is reported once. remove() must come before the descriptor is closed.
  virtual Status add(int fd, uint32_t interest, IoHandler* handler) = 0;
  virtual Status modify(int fd, uint32_t interest, IoHandler* handler) = 0;
  // No handler of fd is called after this. The kernel may hold the open file until the
  // loop's next wait() (io_uring: the poll's cancellation rides with that submission), so a
  // close() right after it may release the socket only then: a connection's FIN goes out
  // within the loop iteration, and the descriptor number may be reused at once.
  virtual void remove(int fd) = 0;
  // remove(), and the kernel has let go of the file when this returns: a close() right
  // after it releases the socket at once (a listener that must stop accepting now, a port
  // about to be bound again). Costs a system call on io_uring.
  virtual void remove_and_release(int fd);
  // Waits up to timeout_ms (-1: no limit) for readiness; returns how many are ready.
  virtual int wait(int timeout_ms) = 0;
  // Calls the handlers of what the last wait() found ready. A handler removed (or removed
  // and added again) by an earlier handler of the same batch may still be called under epoll;
  // handlers check that their descriptor is still theirs.
  virtual void dispatch() = 0;
  virtual Backend backend() const = 0;
  // How many times the backend has gathered readiness from the kernel so far, or 0 where it
  // does not count. A handler that drained its descriptor after the latest gathering may
  // ignore the other reports of the same batch: they were gathered before it drained.
  // (io_uring may report a listening socket once per connection that arrived.)
  virtual uint64_t gathered() const { return 0; }
  // Whether requests wait to reach the kernel with the next wait() (io_uring: armings,
  // removals, sends), so that a loop run for tests does not stop before they went.
  virtual bool submissions_pending() const { return false; }

  // Completion-based accept: the backend accepts connections on the listening socket `fd`
  // itself (io_uring: a multishot accept) and hands each to `handler`, in batches of what one
  // wait() found. Backends without it return an error, and the caller polls for readability
  // and calls accept4() as before. remove(fd) stops it; accepted connections not yet handed
  // over then are closed.
  virtual Status add_acceptor(int fd, AcceptHandler* handler);
  // Completion-based receive: the backend reads `fd` itself and hands each piece to
  // `handler` (io_uring: a multishot recv into a ring of buffers the loop shares, so an idle
  // socket holds no buffer). Beside a poll registered with add() for the same fd, or alone.
  // Backends without it return an error (the caller reads on readiness as before). remove(fd)
  // stops both; what was received but not yet handed over is then dropped.
  virtual Status add_receiver(int fd, RecvHandler* handler);
  // Backpressure on a receiver: paused, the backend takes nothing more from the socket (so
  // the peer's window closes as it would with nobody reading); bytes it took before (in the
  // current batch, or racing the cancellation of its receive) are still handed over, in
  // order. Unpaused, it receives again from the next wait(), FIN and errors included.
  virtual void pause_receiver(int fd, bool paused);
  // Ends fd's receiver for good and keeps its poll (a connection that reads large transfers
  // itself, in large reads). Pieces the receive took before it ended are still handed over,
  // in order; then on_receive_stopped(), unless the receive saw the FIN or failed first
  // (that is handed over instead). The registration stays the receiver's: a send in flight
  // (send()) still reports to it, and add_receiver() may start the receive again after that.
  virtual void stop_receiver(int fd);
  // Whether bytes received for fd's receiver wait in the loop's batch, not handed over yet
  // (a socket that looks empty may still have something to say). Takes in the completions
  // the kernel posted since the last wait() to tell (they are handed over as usual).
  virtual bool receive_pending(int fd);
  // Completion-based send, for the descriptor of a receiver (add_receiver): whether send()
  // works here (io_uring with IORING_OP_SEND, unless SLUICE_IO_URING_SEND=direct).
  virtual bool can_send() const { return false; }
  // Takes `bytes` (the Buffer is left empty, holding no storage) and sends them in order,
  // with the loop's next wait() (io_uring: an IORING_OP_SEND, no system call of its own).
  // A short send goes on from where it stopped with a later wait(); the receiver hears of
  // each piece (on_sent) or of the failure (on_send_failed). One send at a time per
  // descriptor: another only after the last on_sent() of this one. The backend keeps the
  // bytes until the kernel is done with them, after remove() too: remove() cancels the send
  // (what was not sent is dropped) and the bytes are freed once the cancellation ended it.
  // `flags`: MSG_* of send(2). Fails (EOPNOTSUPP) where can_send() is false.
  virtual Status send(int fd, Buffer& bytes, int flags);
  // Accepts again after on_accept_failed().
  virtual void resume_acceptor(int fd);
  // Hands `fd`'s handler, now, the connections already accepted for it but not yet delivered
  // (a listener about to close serves them instead of resetting them).
  virtual void deliver_accepted(int fd);
  // Stops a completion-based accept and hands `fd`'s handler every connection accepted for it
  // until the accept ended (none is closed), then removes fd, as remove(). The connections
  // still queued on the socket stay there (the caller accepts them or leaves them to another
  // process). Waits at most `max_wait` for the accept to end; past it, what it accepts
  // after is closed, as by remove().
  virtual void stop_acceptor(int fd, Duration max_wait);
};

std::unique_ptr<Poller> make_epoll_poller();
// Fails when the kernel refuses a ring (the message says why).
Result<std::unique_ptr<Poller>> make_io_uring_poller();
// Whether io_uring can serve as the backend here: a ring with the features the io_uring
// poller uses, tried for real. SLUICE_IO_URING_PROBE=fail in the environment makes it fail
// (for tests of the fallback). When `setup` is given, it is set to how the rings are set up
// (io_uring_ring_setup()).
Status probe_io_uring(std::string* setup = nullptr);

// How io_uring rings are created here: "cooperative task work" (COOP_TASKRUN, 5.19), else
// "plain (...: REASON)". With SLUICE_IO_URING_SETUP=single_issuer in the environment (opt-in
// for now), "single issuer, cooperative task work" where the kernel takes
// IORING_SETUP_SINGLE_ISSUER (6.0), else the next with "(SINGLE_ISSUER refused: REASON)".
std::string io_uring_ring_setup();

}  // namespace sluice::event
