// Poller: the narrow seam between the event loop and the kernel's readiness API. Two
// backends, epoll (epoll_poller.cc) and io_uring (io_uring_poller.cc), give callers the same
// contract: IoHandler::on_io() with the readiness bits below, edge-triggered.
// Owned by one Loop; called only from that loop's thread.
#pragma once

#include <cstdint>
#include <memory>

#include "base/status.h"

namespace sluice::event {

// The kernel interface a Poller uses; kAuto (configuration only) means io_uring when the
// kernel offers it, else epoll.
enum class Backend { kAuto, kEpoll, kIoUring };

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
  // Registers fd for the IoEvent mask `interest`, edge-triggered: readiness already present
  // is reported once. remove() must come before the descriptor is closed.
  virtual Status add(int fd, uint32_t interest, IoHandler* handler) = 0;
  virtual Status modify(int fd, uint32_t interest, IoHandler* handler) = 0;
  virtual void remove(int fd) = 0;
  // Waits up to timeout_ms (-1: no limit) for readiness; returns how many are ready.
  virtual int wait(int timeout_ms) = 0;
  // Calls the handlers of what the last wait() found ready. A handler removed (or removed
  // and added again) by an earlier handler of the same batch may still be called under epoll;
  // handlers check that their descriptor is still theirs.
  virtual void dispatch() = 0;
  virtual Backend backend() const = 0;
};

std::unique_ptr<Poller> make_epoll_poller();
// Fails when the kernel refuses a ring (the message says why).
Result<std::unique_ptr<Poller>> make_io_uring_poller();
// Whether io_uring can serve as the backend here: a ring with the features the io_uring
// poller uses, tried for real. SLUICE_IO_URING_PROBE=fail in the environment makes it fail
// (for tests of the fallback).
Status probe_io_uring();

}  // namespace sluice::event
