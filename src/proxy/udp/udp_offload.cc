#include "proxy/udp/udp_offload.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/log.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace sluice::proxy::udp {

namespace {

OffloadSupport probe() {
  OffloadSupport s;
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return s;
  int size = 1200;
  s.gso = ::setsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, sizeof size) == 0;
  int one = 1;
  s.gro = ::setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  ::close(fd);
  LOG_INFO("udp: the kernel offers GSO (UDP_SEGMENT): {}, GRO (UDP_GRO): {}", s.gso ? "yes" : "no",
           s.gro ? "yes" : "no");
  return s;
}

constexpr size_t kMaxMessages = 64;
constexpr size_t kControlSpace = 96;  // a PKTINFO control message and UDP_SEGMENT

bool same_route(const Outgoing& a, const Outgoing& b) {
  if (a.to_length != b.to_length || a.control.size() != b.control.size()) return false;
  if (a.to && std::memcmp(a.to, b.to, a.to_length) != 0) return false;
  return a.control.empty() ||
         std::memcmp(a.control.data(), b.control.data(), a.control.size()) == 0;
}

// The end of the run starting at `first` that one GSO message can carry: one destination,
// every datagram of the first one's size except the last, which may be shorter but not
// empty (an empty segment would vanish), within the kernel's count and size limits.
size_t run_end(std::span<const Outgoing> out, size_t first, const GsoState& gso) {
  size_t size = out[first].size();
  size_t end = first + 1;
  if (!gso.enabled || size == 0 || size > gso.max_segment) return end;
  size_t total = size;
  while (end < out.size() && end - first < kMaxSegments) {
    size_t next = out[end].size();
    if (next == 0 || next > size || total + next > 65000 || !same_route(out[first], out[end]))
      break;
    total += next;
    ++end;
    if (next < size) break;
  }
  return end;
}

// The messages of one sendmmsg call and the iovecs and control buffers they point into.
struct Messages {
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iovs;
  std::vector<std::array<uint8_t, kControlSpace>> controls;
  std::vector<std::pair<size_t, size_t>> runs;  // [first, end) of `out` per message
};

// Fills one message with out[first, end) (GSO when there are several); `m.iovs` and
// `m.controls` must already have room (no reallocation while messages point at them).
void fill(Messages& m, std::span<const Outgoing> out, size_t first, size_t end) {
  mmsghdr h{};
  size_t iov_first = m.iovs.size();
  for (size_t i = first; i < end; ++i) {
    if (!out[i].head.empty())
      m.iovs.push_back({const_cast<uint8_t*>(out[i].head.data()), out[i].head.size()});
    m.iovs.push_back({const_cast<uint8_t*>(out[i].body.data()), out[i].body.size()});
  }
  h.msg_hdr.msg_iov = &m.iovs[iov_first];
  h.msg_hdr.msg_iovlen = m.iovs.size() - iov_first;
  const Outgoing& o = out[first];
  if (o.to) {
    h.msg_hdr.msg_name = const_cast<sockaddr_storage*>(o.to);
    h.msg_hdr.msg_namelen = o.to_length;
  }
  size_t control = o.control.size();
  if (control != 0 || end - first > 1) {
    auto& buffer = m.controls.emplace_back();
    if (control != 0) std::memcpy(buffer.data(), o.control.data(), control);
    if (end - first > 1) {
      auto* c = reinterpret_cast<cmsghdr*>(buffer.data() + control);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      auto segment = static_cast<uint16_t>(o.size());
      std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
      control += CMSG_SPACE(sizeof(uint16_t));
    }
    h.msg_hdr.msg_control = buffer.data();
    h.msg_hdr.msg_controllen = control;
  }
  m.msgs.push_back(h);
  m.runs.emplace_back(first, end);
}

// A joined message the kernel refused: its datagrams one by one (a sendmsg each; `m` is
// still in use by the caller).
void send_singly(int fd, std::span<const Outgoing> out, size_t first, size_t end,
                 SendCounts& counts) {
  for (size_t i = first; i < end; ++i) {
    const Outgoing& o = out[i];
    iovec iov[2];
    size_t n_iov = 0;
    if (!o.head.empty()) iov[n_iov++] = {const_cast<uint8_t*>(o.head.data()), o.head.size()};
    iov[n_iov++] = {const_cast<uint8_t*>(o.body.data()), o.body.size()};
    msghdr h{};
    h.msg_iov = iov;
    h.msg_iovlen = n_iov;
    h.msg_name = const_cast<sockaddr_storage*>(o.to);
    h.msg_namelen = o.to ? o.to_length : 0;
    if (!o.control.empty()) {
      h.msg_control = const_cast<uint8_t*>(o.control.data());
      h.msg_controllen = o.control.size();
    }
    ssize_t rc;
    do {
      rc = ::sendmsg(fd, &h, MSG_DONTWAIT);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (rc < 0) {
      if (counts.failed++ == 0 && counts.first_error == 0) counts.first_error = errno;
    } else {
      ++counts.sent;
      ++counts.calls;
    }
  }
}

}  // namespace

const OffloadSupport& offload_support() {
  static const OffloadSupport support = probe();
  return support;
}

bool set_gro(int fd, bool on) {
  int value = on ? 1 : 0;
  return ::setsockopt(fd, SOL_UDP, UDP_GRO, &value, sizeof value) == 0;
}

SendCounts send_datagrams(int fd, std::span<const Outgoing> out, GsoState& gso) {
  SendCounts counts;
  // One plain datagram (a session's request, a lone answer): one sendto, which needs neither
  // a message header from user space nor the batch's bookkeeping. The same outcomes as one
  // message of a sendmmsg.
  if (out.size() == 1 && out[0].head.empty() && out[0].control.empty()) {
    const Outgoing& o = out[0];
    ssize_t rc;
    do {
      rc = ::sendto(fd, o.body.data(), o.body.size(), MSG_DONTWAIT,
                    reinterpret_cast<const sockaddr*>(o.to), o.to ? o.to_length : 0);
    } while (rc < 0 && errno == EINTR);
    if (rc >= 0) {
      counts.sent = counts.calls = 1;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      counts.failed = 1;
      counts.first_error = errno;
    }
    return counts;
  }
  thread_local Messages m;
  size_t next = 0;
  while (next < out.size()) {
    m.msgs.clear();
    m.iovs.clear();
    m.controls.clear();
    m.runs.clear();
    m.iovs.reserve(2 * out.size());
    m.controls.reserve(kMaxMessages);
    while (next < out.size() && m.msgs.size() < kMaxMessages) {
      size_t end = run_end(out, next, gso);
      fill(m, out, next, end);
      next = end;
    }
    size_t done = 0;
    while (done < m.msgs.size()) {
      int n =
          ::sendmmsg(fd, &m.msgs[done], static_cast<unsigned>(m.msgs.size() - done), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return counts;
      if (n > 0) {
        ++counts.calls;
        for (size_t i = done; i < done + static_cast<size_t>(n); ++i) {
          auto [first, end] = m.runs[i];
          counts.sent += end - first;
          if (end - first > 1) counts.gso_datagrams += end - first;
        }
        done += static_cast<size_t>(n);
        continue;
      }
      // The message at `done` was refused. A datagram: skip it, so that one bad
      // destination does not stop the others. A joined one: learn, and send it unjoined.
      auto [first, end] = m.runs[done];
      int error = errno;
      if (counts.first_error == 0) counts.first_error = error;
      // A connected socket's ICMP port unreachable: nothing listens there; the caller ends.
      if (error == ECONNREFUSED) {
        counts.failed += end - first;
        return counts;
      }
      if (end - first > 1 && (error == EIO || error == EINVAL || error == EMSGSIZE)) {
        if (error == EIO) {
          gso.enabled = false;
        } else {
          gso.max_segment = out[first].size() - 1;
        }
        send_singly(fd, out, first, end, counts);
      } else {
        counts.failed += end - first;
      }
      ++done;
    }
  }
  return counts;
}

}  // namespace sluice::proxy::udp
