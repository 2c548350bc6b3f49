// StunTcpConnection: one STUN-over-TCP connection of a StunListener (RFC 8489 §6.2.2). Reads
// messages sent back to back, each framed by its header's length, and writes each answer
// (StunListener::answer decides it, with the rate limit and counters shared with UDP). A
// stream that is not STUN (first two bits, magic cookie), a length that is not a multiple of
// 4 or over kMaxMessage, an idle connection, a client that reads no answers, or a closed
// peer end the connection. Owned by its StunListener; loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "event/loop.h"
#include "event/timer.h"
#include "net/address.h"
#include "net/socket.h"

namespace sluice::proxy::stun {

class StunListener;

class StunTcpConnection final : public event::IoHandler, public event::DeferredDeletable {
 public:
  // A Binding request and its answer stay well under this.
  static constexpr size_t kMaxMessage = 2048;
  // Answers not yet read by the client beyond this close the connection.
  static constexpr size_t kMaxPendingOutput = 64 * 1024;

  StunTcpConnection(StunListener& owner, event::Loop& loop, net::Fd fd, net::Address peer);
  ~StunTcpConnection() override;

  Status start();
  void on_io(uint32_t events) override;
  // Unregisters and closes the socket (the owner deletes the object later).
  void shut();

 private:
  void read_all();
  // Consumes the complete messages in in_; false: the stream is not STUN, close.
  bool handle_messages();
  void write_pending();
  void close();

  StunListener& owner_;
  event::Loop& loop_;
  net::Fd fd_;
  net::Address peer_;
  std::vector<uint8_t> in_;
  std::vector<uint8_t> out_;
  bool writable_interest_ = false;
  bool closed_ = false;
  event::Timer idle_;
};

}  // namespace sluice::proxy::stun
