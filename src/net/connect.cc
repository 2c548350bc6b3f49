#include "net/connect.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace sluice::net {

std::string error_text(int err) {
  std::string s = std::strerror(err);
  if (!s.empty() && std::isupper(static_cast<unsigned char>(s[0])) &&
      !(s.size() > 1 && std::isupper(static_cast<unsigned char>(s[1])))) {
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  }
  return s;
}

Result<PendingConnect> start_connect(const Address& target, const SocketOptions& options,
                                     const std::optional<Address>& source, bool fastopen) {
  auto sock = tcp_socket(target.family());
  if (!sock) return sock.status();
  int fd = sock->get();
  if (Status s = apply_socket_options(fd, options); !s) return s;
  if (source) {
    // Let connect() pick the port together with the whole 4-tuple, so one source address
    // can reach many endpoints without running out of ports at bind() time.
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (::bind(fd, source->sockaddr_ptr(), source->length()) != 0) {
      return Status::error(fmt::format("bind {}: {}", source->to_string(), error_text(errno)),
                           errno);
    }
  }
  if (options.fastopen_connect && fastopen) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof one);
  }
  PendingConnect pc{std::move(sock.value()), false};
  if (::connect(fd, target.sockaddr_ptr(), target.length()) == 0) {
    pc.connected = true;
  } else if (errno != EINPROGRESS) {
    return Status::error(error_text(errno), errno);
  }
  return pc;
}

ConnectState check_connect(int fd, int* err) {
  *err = socket_error(fd);
  if (*err != 0) return ConnectState::kFailed;
  // A readiness event can be stale (meant for an earlier socket with the same number):
  // only a peer address proves the handshake completed.
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return ConnectState::kInProgress;
  }
  return ConnectState::kConnected;
}

}  // namespace sluice::net
