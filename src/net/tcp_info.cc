#include "net/tcp_info.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <linux/tcp.h>  // the full struct tcp_info (glibc's is older)
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sluice::net {

Result<TcpInfo> read_tcp_info(int fd, bool congestion) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    return Status::from_errno("getsockopt TCP_INFO", errno);
  }
  TcpInfo out;
  out.rtt_us = ti.tcpi_rtt;
  out.rttvar_us = ti.tcpi_rttvar;
  out.min_rtt_us = ti.tcpi_min_rtt;
  out.retransmits = ti.tcpi_retransmits;
  out.total_retrans = ti.tcpi_total_retrans;
  out.lost = ti.tcpi_lost;
  out.snd_cwnd = ti.tcpi_snd_cwnd;
  out.snd_ssthresh = ti.tcpi_snd_ssthresh;
  out.snd_mss = ti.tcpi_snd_mss;
  out.delivery_rate = ti.tcpi_delivery_rate;
  out.bytes_acked = ti.tcpi_bytes_acked;
  out.bytes_received = ti.tcpi_bytes_received;
  char cc[16] = {};
  socklen_t cc_len = sizeof cc;
  if (congestion && ::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, &cc_len) == 0) {
    out.congestion.assign(cc, strnlen(cc, sizeof cc));
  }
  return out;
}

Result<KernelQueues> read_kernel_queues(int fd) {
  int outq = 0, unsent = 0, inq = 0;
  if (::ioctl(fd, SIOCOUTQ, &outq) != 0) return Status::from_errno("ioctl SIOCOUTQ", errno);
  if (::ioctl(fd, SIOCOUTQNSD, &unsent) != 0) {
    return Status::from_errno("ioctl SIOCOUTQNSD", errno);
  }
  if (::ioctl(fd, SIOCINQ, &inq) != 0) return Status::from_errno("ioctl SIOCINQ", errno);
  KernelQueues q;
  q.unsent = static_cast<uint32_t>(unsent);
  q.unacked = static_cast<uint32_t>(outq > unsent ? outq - unsent : 0);
  q.unread = static_cast<uint32_t>(inq);
  return q;
}

ConnectionReport describe_connection(int fd, std::string role, std::string owner,
                                     std::string state) {
  ConnectionReport r;
  r.role = std::move(role);
  r.owner = std::move(owner);
  r.state = std::move(state);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    r.local = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    r.peer = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  if (auto ti = read_tcp_info(fd)) r.tcp = *ti;
  if (auto q = read_kernel_queues(fd)) r.queues = *q;
  return r;
}

}  // namespace sluice::net
