// Transport: what stands between a socket and the bytes a protocol reads and writes. Plain
// TCP needs none (the Connection reads the socket itself); TLS (src/tls) is one. A transport
// works on the connection's socket directly, non-blocking, and reports like recv(2) and
// send(2) do, so the code above it is the same with or without one. Loop thread only.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::net {

class Transport {
 public:
  enum class Step {
    kDone,       // the handshake is complete: read and write plaintext from now on
    kWantRead,   // wait until the socket is readable, then call handshake() again
    kWantWrite,  // wait until the socket is writable, then call handshake() again
    kFailed,     // failure() says why; the connection must be closed
  };

  virtual ~Transport() = default;

  // Drives the handshake as far as the socket allows.
  virtual Step handshake() = 0;
  virtual bool established() const = 0;
  // Like recv(2): bytes read (> 0); 0 when the peer closed its side in order; -1 with errno
  // set: EAGAIN when it must wait for the socket, EPROTO (failure() says why) or the
  // socket's error otherwise.
  virtual ssize_t read(char* data, size_t size) = 0;
  // Like send(2): bytes taken (> 0), or -1 with errno as for read().
  virtual ssize_t write(const char* data, size_t size) = 0;
  // Whether bytes already read from the socket wait inside the transport: a short read()
  // does not mean the socket is drained.
  virtual bool has_pending() const = 0;
  // Application data the peer sent before the handshake completed (TLS 1.3 early data):
  // appended to `out`; false when there is none. Its sender may be replaying it: the
  // protocol above decides what is safe to act on.
  virtual bool take_early_data(std::string& out) {
    (void)out;
    return false;
  }
  // Says goodbye in the protocol (TLS close_notify), before the socket's FIN. False when the
  // socket cannot take it yet: call again once it is writable, and send the FIN after.
  virtual bool shutdown() = 0;
  // Why the handshake or the last read or write failed ("" when it did not).
  virtual std::string_view failure() const = 0;
  // The name of the transport's protocol for logs and /connections ("tls").
  virtual const char* name() const = 0;
};

}  // namespace sluice::net
