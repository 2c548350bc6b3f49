// Fd (an owned file descriptor) and the small socket calls every layer above needs.
// Plain functions on descriptors; any thread.
#pragma once

#include <unistd.h>

#include <utility>

#include "base/status.h"
#include "net/address.h"

namespace sluice::net {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

// A non-blocking, close-on-exec TCP socket of the address's family.
Result<Fd> tcp_socket(int family);
// The pending error of a socket (SO_ERROR), 0 when none.
int socket_error(int fd);
Result<Address> local_address(int fd);
Result<Address> peer_address(int fd);
// Makes close() send a RST instead of a FIN (SO_LINGER with a zero timeout).
void set_reset_on_close(int fd);

}  // namespace sluice::net
