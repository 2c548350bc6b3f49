#include "net/socket_options.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace sluice::net {

void ack_now(int fd) {
  int one = 1;
  // Best effort: a socket that is closing or not TCP simply keeps the kernel's timing.
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}
namespace {

std::string read_proc(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Status set_int(int fd, int level, int name, int value, const char* what) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) {
    return Status::from_errno(fmt::format("setsockopt {}={}", what, value), errno);
  }
  return Status::ok();
}

int seconds(Duration d) {
  return static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

}  // namespace

PortRange ephemeral_port_range() {
  static const PortRange range = [] {
    std::istringstream in(read_proc("/proc/sys/net/ipv4/ip_local_port_range"));
    PortRange r;
    if (!(in >> r.low >> r.high) || r.high < r.low) return PortRange{32768, 60999};  // default
    return r;
  }();
  return range;
}

uint32_t ephemeral_port_count() {
  return ephemeral_port_range().count();
}

Status check_congestion_available(const std::string& name) {
  const char* path = "/proc/sys/net/ipv4/tcp_available_congestion_control";
  std::string available = read_proc(path);
  std::istringstream words(available);
  std::string w;
  while (words >> w) {
    if (w == name) return Status::ok();
  }
  return Status::error(fmt::format(
      "congestion control '{}' is not available in this kernel "
      "(net.ipv4.tcp_available_congestion_control: {}; a module such as tcp_{} may need loading)",
      name, available.empty() ? "unreadable" : available, name));
}

Status check_fastopen_enabled(bool server) {
  std::string text = read_proc("/proc/sys/net/ipv4/tcp_fastopen");
  int value = text.empty() ? 0 : std::atoi(text.c_str());
  int bit = server ? 2 : 1;
  if (value & bit) return Status::ok();
  return Status::error(fmt::format(
      "TCP Fast Open for {} is disabled in this kernel: net.ipv4.tcp_fastopen is {} and needs "
      "bit {} set (sysctl -w net.ipv4.tcp_fastopen={})",
      server ? "listeners" : "upstream connects", value, bit, value | bit));
}

Status apply_socket_options(int fd, const SocketOptions& o) {
  Status s = set_int(fd, IPPROTO_TCP, TCP_NODELAY, o.tcp_nodelay ? 1 : 0, "TCP_NODELAY");
  if (!s) return s;
  if (o.keepalive) {
    if (!(s = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"))) return s;
    if (!(s = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, seconds(o.keepalive->idle), "TCP_KEEPIDLE")))
      return s;
    if (!(s = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, seconds(o.keepalive->interval),
                      "TCP_KEEPINTVL")))
      return s;
    if (!(s = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, o.keepalive->count, "TCP_KEEPCNT"))) return s;
  }
  if (!o.congestion.empty()) {
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, o.congestion.data(),
                   static_cast<socklen_t>(o.congestion.size())) != 0) {
      return Status::from_errno(fmt::format("setsockopt TCP_CONGESTION={}", o.congestion), errno);
    }
  }
  if (o.send_buffer != 0) {
    if (!(s = set_int(fd, SOL_SOCKET, SO_SNDBUF, static_cast<int>(o.send_buffer), "SO_SNDBUF")))
      return s;
  }
  if (o.receive_buffer != 0) {
    if (!(s = set_int(fd, SOL_SOCKET, SO_RCVBUF, static_cast<int>(o.receive_buffer), "SO_RCVBUF")))
      return s;
  }
  if (o.notsent_lowat != 0) {
    if (!(s = set_int(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, static_cast<int>(o.notsent_lowat),
                      "TCP_NOTSENT_LOWAT")))
      return s;
  }
  return Status::ok();
}

}  // namespace sluice::net
