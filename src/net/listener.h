// Listener: one listening socket on one worker's loop. Accepts until EAGAIN, at most a batch
// per loop iteration, and hands each new connection to ListenerCallbacks. On a backend that
// accepts by completion (io_uring's multishot accept) the kernel accepts and the listener
// hands over what each loop iteration brought. On descriptor exhaustion
// (EMFILE, ENFILE, ENOBUFS, ENOMEM) it logs once, pauses accepting for a short while and tries
// again, so the worker neither spins nor dies. Loop thread only.
#pragma once

#include <cstdint>
#include <string>

#include "event/loop.h"
#include "net/address.h"
#include "net/socket.h"
#include "net/socket_options.h"

namespace sluice::net {

class ListenerCallbacks {
 public:
  virtual void on_accept(Fd fd, const Address& peer) = 0;

 protected:
  ~ListenerCallbacks() = default;
};

// Creates a bound, listening, non-blocking socket with SO_REUSEPORT so that each worker can
// own one on the same address. Downstream socket options set here are inherited by accepted
// sockets. Without `reuse_port` the address stays exclusive (a second bind fails).
Result<Fd> bind_listener(const Address& address, int backlog, const SocketOptions& options,
                         bool reuse_port = true);

// What a listening socket may change while it listens (a reload applies them to the sockets
// it keeps): TCP_DEFER_ACCEPT, and TCP_NOTSENT_LOWAT for the connections it accepts from now
// on. Both are set, also when 0 (off).
Status apply_listening_options(int fd, const SocketOptions& options);
// Whether a socket bound with `a` serves `b` once apply_listening_options(b) ran: the same
// but for those options.
bool same_listening_socket(const SocketOptions& a, const SocketOptions& b);

class Listener final : public event::IoHandler, public event::AcceptHandler {
 public:
  Listener(event::Loop& loop, Fd fd, std::string name, ListenerCallbacks& callbacks);
  ~Listener();

  Status start();
  // Closes the socket: the kernel refuses new connections once every worker's is closed.
  // Accepting by completion, the connections the kernel already accepted for this listener,
  // and those queued on the socket, are handed over first (see accept_backlog()).
  void close();
  // Accepts the connections already queued, then closes (a listener removed while running:
  // a connection the kernel completed is served, not reset).
  void accept_queued_and_close();
  // Accepts on readiness from now on, as on epoll (a no-op there). A binary upgrade's old
  // process does this before it hands its sockets over: a multishot accept waits as an
  // exclusive waiter, and cancelling it when the process stops accepting could drop a
  // wake-up the new process's accept needed; readiness waiters are woken all. Waits at most
  // `max_wait` for the completion-based accept to end (Poller::stop_acceptor).
  void accept_by_polling(Duration max_wait = kStopWait);
  // How long close() waits for a completion-based accept to end.
  static constexpr Duration kStopWait = std::chrono::seconds(1);
  // Accepted connections go to `callbacks` from now on.
  void set_callbacks(ListenerCallbacks& callbacks) { callbacks_ = &callbacks; }

  void on_io(uint32_t events) override;
  void on_accepted(int fd) override;
  void on_accept_failed(int err) override;

 private:
  void accept_all();
  // accept4() until the queue is empty, without a batch limit (a listener about to close).
  void accept_backlog();
  // Polls for readability and calls accept4() (epoll, or io_uring without multishot accept).
  Status start_polling();
  // Out of descriptors or memory (err): pauses accepting for a while, logged once.
  void pause(int err);
  void log_resumed();

  event::Loop& loop_;
  Fd fd_;
  std::string name_;
  ListenerCallbacks* callbacks_;
  event::Timer resume_timer_;
  bool paused_ = false;
  bool by_completion_ = false;        // the poller accepts (add_acceptor)
  bool resumed_log_pending_ = false;  // an exhaustion episode was logged, its end not yet
  uint64_t pauses_ = 0;
  // The poller's gathered() when accept4() last said the queue was empty.
  uint64_t drained_at_ = 0;
};

}  // namespace sluice::net
