// Poller: the narrow seam between the event loop and the kernel's readiness API. The epoll
// backend is the only one today; an io_uring backend can replace it without touching callers,
// who only see IoHandler::on_io() with the readiness bits below.
// Owned by one Loop; called only from that loop's thread.
#pragma once

#include <cstdint>
#include <memory>

#include "base/status.h"

namespace sluice::event {

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

class Poller {
 public:
  virtual ~Poller() = default;
  // Registers fd for the IoEvent mask `interest`, edge-triggered.
  virtual Status add(int fd, uint32_t interest, IoHandler* handler) = 0;
  virtual Status modify(int fd, uint32_t interest, IoHandler* handler) = 0;
  virtual void remove(int fd) = 0;
  // Waits up to timeout_ms (-1: no limit) for readiness; returns how many are ready.
  virtual int wait(int timeout_ms) = 0;
  // Calls the handlers of what the last wait() found ready.
  virtual void dispatch() = 0;
};

std::unique_ptr<Poller> make_epoll_poller();

}  // namespace sluice::event
