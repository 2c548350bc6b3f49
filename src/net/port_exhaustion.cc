#include "net/port_exhaustion.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "net/connect.h"
#include "net/socket.h"
#include "net/socket_options.h"

namespace sluice::net {
Result<uint64_t> count_time_wait_towards(const Address& destination) {
  int family = destination.family();
  if (family != AF_INET && family != AF_INET6) {
    return Status::error("not an IP address: " + destination.to_string());
  }
  // One inet_diag dump request of TIME_WAIT sockets with a bytecode filter of one D_COND
  // (destination address and port): the kernel sends back only the matching sockets.
  size_t address_len = family == AF_INET ? 4 : 16;
  size_t filter_len = sizeof(inet_diag_bc_op) + sizeof(inet_diag_hostcond) + address_len;
  nlmsghdr header{};
  header.nlmsg_len =
      static_cast<uint32_t>(NLMSG_LENGTH(sizeof(inet_diag_req_v2)) + NLA_HDRLEN + filter_len);
  header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  inet_diag_req_v2 request{};
  request.sdiag_family = static_cast<uint8_t>(family);
  request.sdiag_protocol = IPPROTO_TCP;
  request.idiag_states = 1u << TCP_TIME_WAIT;
  nlattr filter{};
  filter.nla_type = INET_DIAG_REQ_BYTECODE;
  filter.nla_len = static_cast<uint16_t>(NLA_HDRLEN + filter_len);
  inet_diag_bc_op op{};
  op.code = INET_DIAG_BC_D_COND;
  // On a match jump to the end (accept); otherwise past it (reject).
  op.yes = static_cast<uint8_t>(filter_len);
  op.no = static_cast<uint16_t>(filter_len + 4);
  inet_diag_hostcond cond{};
  cond.family = static_cast<uint8_t>(family);
  cond.prefix_len = static_cast<uint8_t>(address_len * 8);
  cond.port = destination.port();
  const sockaddr* sa = destination.sockaddr_ptr();
  const void* address =
      family == AF_INET
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  char req[NLMSG_LENGTH(sizeof(inet_diag_req_v2)) + NLA_HDRLEN + sizeof(inet_diag_bc_op) +
           sizeof(inet_diag_hostcond) + 16] = {};
  char* at = req;
  auto put = [&at](const void* p, size_t n) {
    std::memcpy(at, p, n);
    at += n;
  };
  put(&header, sizeof header);
  put(&request, sizeof request);
  put(&filter, NLA_HDRLEN);
  put(&op, sizeof op);
  put(&cond, sizeof cond);
  put(address, address_len);

  Fd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd.valid()) return Status::from_errno("sock_diag socket", errno);
  // The kernel answers at once; the timeout only guards against the unexpected.
  timeval timeout{0, 200 * 1000};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), req, header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    return Status::from_errno("sock_diag request", errno);
  }
  uint64_t count = 0;
  alignas(nlmsghdr) char buf[16384];
  // A dump ends with NLMSG_DONE; bounded in case it never comes.
  for (int reads = 0; reads < 100000; ++reads) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno("sock_diag reply", errno);
    }
    if (n == 0) break;
    size_t left = static_cast<size_t>(n);
    const char* p = buf;
    while (left >= sizeof(nlmsghdr)) {
      nlmsghdr h;
      std::memcpy(&h, p, sizeof h);
      if (h.nlmsg_len < sizeof h || h.nlmsg_len > left) break;
      if (h.nlmsg_type == NLMSG_DONE) return count;
      if (h.nlmsg_type == NLMSG_ERROR) {
        nlmsgerr e;
        if (h.nlmsg_len < NLMSG_LENGTH(sizeof e)) return Status::error("sock_diag: short error");
        std::memcpy(&e, p + NLMSG_HDRLEN, sizeof e);
        return Status::from_errno("sock_diag", -e.error);
      }
      if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) ++count;
      size_t step = NLMSG_ALIGN(h.nlmsg_len);
      if (step >= left) break;
      p += step;
      left -= step;
    }
  }
  return Status::error("sock_diag: the dump did not end");
}

std::string ports_exhausted_detail(const Address& destination, MonoTime now,
                                   std::string_view advice) {
  struct Cached {
    Address destination;
    MonoTime at{};
    std::string time_wait;
  };
  thread_local Cached cache;
  if (cache.at == MonoTime{} || !(cache.destination == destination) ||
      now - cache.at >= std::chrono::seconds(1) || now < cache.at) {
    Result<uint64_t> n = count_time_wait_towards(destination);
    cache.destination = destination;
    cache.at = now;
    cache.time_wait = n ? fmt::format("{} sockets towards it in TIME_WAIT", *n)
                        : fmt::format("sockets in TIME_WAIT unknown ({})", n.status().message());
  }
  PortRange range = ephemeral_port_range();
  return fmt::format(
      "no free local port to connect to {}: the {} ephemeral ports "
      "(net.ipv4.ip_local_port_range {}-{}) are exhausted towards it, {} (to fix: {})",
      destination.to_string(), range.count(), range.low, range.high, cache.time_wait, advice);
}

}  // namespace sluice::net
