#include "net/socket.h"

#include <sys/socket.h>

#include <cerrno>

namespace sluice::net {

Result<Fd> tcp_socket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return Status::from_errno("socket", errno);
  return Fd(fd);
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

Result<Address> local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Status::from_errno("getsockname", errno);
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Result<Address> peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Status::from_errno("getpeername", errno);
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

void set_reset_on_close(int fd) {
  linger l{};
  l.l_onoff = 1;
  l.l_linger = 0;
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

}  // namespace sluice::net
