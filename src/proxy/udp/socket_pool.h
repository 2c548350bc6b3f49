// UpstreamSocket and UpstreamSocketPool: the upstream sockets of a UDP listener's sessions on
// one worker, and the ended sessions' sockets kept for the next sessions. A session per
// request (DNS, `max_responses: 1`) would otherwise create, register, unregister and close a
// socket per request, which is most of what the kernel spends on it. A socket a session ended
// with is disconnected instead (connect AF_UNSPEC: the kernel forgets its port and peer, so
// the next connect picks a new random port, as a new socket would get) and stays registered
// with the loop; the next session connects it to its own endpoint. Loop thread only; one pool
// per UdpProxy.
//
// What a pooled socket must never do is hand the next session a datagram meant for the last:
// - what its session did not read is read and thrown away before it goes into the pool
//   (unless the session's last read found the socket empty), as close() would have;
// - what arrives while it waits in the pool (a datagram the kernel had already matched to
//   the socket when it was disconnected) is read and thrown away when the loop reports it;
//   an error (an ICMP unreachable from before) closes it;
// - it is lent again no sooner than `kQuarantine` after it came back (the kernel delivers
//   what it matched to the socket before the disconnect within microseconds), once the loop
//   has handled, in an earlier iteration, what the kernel reported for it by then, or else
//   after one more read to see it empty.
// Sockets with options of their own (a `source_address` bind, UDP_GRO) are not kept.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>

#include "base/clock.h"
#include "event/loop.h"
#include "event/timer.h"
#include "net/address.h"
#include "net/socket.h"

namespace sluice::proxy::udp {

// One upstream socket, registered with the loop for as long as it is open; its reports go to
// the session using it, or (in the pool) to the pool. Deleted after the loop iteration that
// closed it (a report of it may still be in the batch being dispatched).
class UpstreamSocket final : public event::IoHandler, public event::DeferredDeletable {
 public:
  explicit UpstreamSocket(net::Fd fd) : fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }
  // Who hears the socket's reports (null: the pool).
  void set_user(event::IoHandler* user) { user_ = user; }
  void on_io(uint32_t events) override;

 private:
  friend class UpstreamSocketPool;
  net::Fd fd_;
  event::IoHandler* user_ = nullptr;
  class UpstreamSocketPool* pool_ = nullptr;
  bool registered_ = false;
  int family_ = 0;
  MonoTime since_{};  // when it came back to the pool
};

class UpstreamSocketPool {
 public:
  // Sockets kept at most; a socket is lent again no sooner than kQuarantine after it came
  // back, and closed after kIdle unused.
  static constexpr size_t kMaxKept = 512;
  static constexpr Duration kQuarantine = std::chrono::milliseconds(5);
  static constexpr Duration kIdle = std::chrono::seconds(1);

  explicit UpstreamSocketPool(event::Loop& loop);
  ~UpstreamSocketPool();
  UpstreamSocketPool(const UpstreamSocketPool&) = delete;
  UpstreamSocketPool& operator=(const UpstreamSocketPool&) = delete;

  // A socket connected to `to`, registered with the loop and reporting to `user`: a kept one
  // when one is ready, else a new one (bound to `source` first when given; such a socket is
  // never kept).
  Result<std::unique_ptr<UpstreamSocket>> connect(const net::Address& to,
                                                  const std::optional<net::Address>& source,
                                                  event::IoHandler* user);
  // A session is done with `socket`. `keep`: it may serve another session (nothing set on
  // it but its peer); `empty`: the session's last read found it empty.
  void give_back(std::unique_ptr<UpstreamSocket> socket, bool keep, bool empty);
  // Closes every kept socket and keeps none from now on (a drain, a shutdown).
  void stop();
  size_t kept() const { return kept_.size(); }
  // Of the sockets connect() handed out, those that were kept ones.
  uint64_t reused() const { return reused_; }

 private:
  friend class UpstreamSocket;
  void on_pooled_io(UpstreamSocket& socket, uint32_t events);
  // Reads and throws away what the socket holds; false on an error (it must not be lent).
  bool discard_queued(UpstreamSocket& socket);
  // Unregisters and closes.
  void close(std::unique_ptr<UpstreamSocket> socket);
  void close_idle();

  event::Loop& loop_;
  std::deque<std::unique_ptr<UpstreamSocket>> kept_;  // oldest first
  event::Timer idle_timer_;
  uint64_t reused_ = 0;
  bool stopped_ = false;
};

}  // namespace sluice::proxy::udp
