#include "proxy/udp/datagram_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#include "base/random.h"

namespace sluice::proxy::udp {

Result<net::Fd> bind_udp_socket(const net::Address& address) {
  net::Fd fd(::socket(address.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno("socket", errno);
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    return Status::from_errno("SO_REUSEPORT", errno);
  }
  if (address.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
    return Status::from_errno("IPV6_V6ONLY", errno);
  }
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length()) != 0) {
    return Status::from_errno("bind " + address.to_string() + " (udp)", errno);
  }
  bool wildcard = address.ip_string() == "0.0.0.0" || address.ip_string() == "::";
  if (wildcard) {
    int rc = address.family() == AF_INET6
                 ? ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one)
                 : ::setsockopt(fd.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    if (rc != 0) return Status::from_errno("IP_PKTINFO", errno);
  }
  return fd;
}

Result<net::Fd> connected_udp_socket(const net::Address& to,
                                     const std::optional<net::Address>& source) {
  net::Fd fd(::socket(to.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno("socket", errno);
  if (source && source->family() == to.family() &&
      ::bind(fd.get(), source->sockaddr_ptr(), source->length()) != 0) {
    return Status::from_errno("bind " + source->to_string(), errno);
  }
  if (::connect(fd.get(), to.sockaddr_ptr(), to.length()) != 0) {
    return Status::from_errno("connect " + to.to_string(), errno);
  }
  return fd;
}

AddressKey address_key(const net::Address& a, bool with_port) {
  AddressKey k;
  k.family = static_cast<uint8_t>(a.family());
  const sockaddr* sa = a.sockaddr_ptr();
  if (a.family() == AF_INET) {
    std::memcpy(k.ip.data(), &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
  } else if (a.family() == AF_INET6) {
    std::memcpy(k.ip.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
  }
  if (with_port) k.port = a.port();
  return k;
}

size_t AddressKeyHash::operator()(const AddressKey& k) const {
  static const uint64_t seed = Random::random_seed();
  uint64_t words[2];
  std::memcpy(words, k.ip.data(), 16);
  uint64_t h = seed ^ (uint64_t{k.port} << 8 | k.family);
  for (uint64_t w : words) {
    h ^= w;
    h *= 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
  }
  return static_cast<size_t>(h ^ (h >> 32));
}

std::vector<uint8_t> proxy_v2_header(const net::Address& client, const net::Address& listener) {
  // The v2 signature, then version 2 / command PROXY, then the family and transport.
  static constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                             0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  bool v6 = client.family() == AF_INET6;
  size_t ip = v6 ? 16 : 4;
  std::vector<uint8_t> h(16 + 2 * ip + 4);
  std::memcpy(h.data(), kSignature, sizeof kSignature);
  h[12] = 0x21;
  h[13] = v6 ? 0x22 : 0x12;  // AF_INET6 or AF_INET, over DGRAM
  h[14] = static_cast<uint8_t>((h.size() - 16) >> 8);
  h[15] = static_cast<uint8_t>(h.size() - 16);
  AddressKey src = address_key(client, true);
  AddressKey dst = address_key(listener, true);
  std::memcpy(&h[16], src.ip.data(), ip);
  std::memcpy(&h[16 + ip], dst.ip.data(), ip);
  h[16 + 2 * ip] = static_cast<uint8_t>(src.port >> 8);
  h[17 + 2 * ip] = static_cast<uint8_t>(src.port);
  h[18 + 2 * ip] = static_cast<uint8_t>(dst.port >> 8);
  h[19 + 2 * ip] = static_cast<uint8_t>(dst.port);
  return h;
}

void DatagramBatch::allocate() {
  if (s_) return;
  buffer_.resize(slots_ * slot());
  s_ = std::make_unique<Slots>();
  for (size_t i = 0; i < slots_; ++i) {
    s_->iov[i] = {&buffer_[i * slot()], slot()};
    mmsghdr& m = s_->msgs[i];
    m = {};
    m.msg_hdr.msg_iov = &s_->iov[i];
    m.msg_hdr.msg_iovlen = 1;
    m.msg_hdr.msg_name = &s_->addresses[i];
    m.msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    m.msg_hdr.msg_control = s_->control[i].data();
    m.msg_hdr.msg_controllen = kControlSize;
  }
}

namespace {

// The segment size of a read the kernel joined (UDP_GRO), or 0.
size_t gro_segment_size(const msghdr& h) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int size = 0;
      std::memcpy(&size, CMSG_DATA(c), sizeof size);
      return size > 0 ? static_cast<size_t>(size) : 0;
    }
  }
  return 0;
}

}  // namespace

Result<size_t> DatagramBatch::receive(int fd, size_t max_messages) {
  allocate();
  mmsghdr* msgs = s_->msgs.data();
  // What the kernel wrote in the messages of the last call: set back.
  for (size_t i = 0; i < written_; ++i) {
    msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    msgs[i].msg_hdr.msg_controllen = kControlSize;
    msgs[i].msg_hdr.msg_flags = 0;
  }
  requested_ = std::clamp<size_t>(max_messages, 1, slots_);
  int n;
  do {
    n = ::recvmmsg(fd, msgs, static_cast<unsigned>(requested_), MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  received_.clear();
  gro_datagrams_ = 0;
  messages_ = n < 0 ? 0 : static_cast<size_t>(n);
  written_ = std::max<size_t>(messages_, 1);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return size_t{0};
    return Status::from_errno("recvmmsg", errno);
  }
  for (int i = 0; i < n; ++i) {
    const msghdr& h = msgs[i].msg_hdr;
    size_t length = msgs[i].msg_len;
    bool truncated = (h.msg_flags & MSG_TRUNC) != 0;
    s_->control_lengths[i] = h.msg_controllen;
    auto message = static_cast<uint32_t>(i);
    size_t segment = gro_ ? gro_segment_size(h) : 0;
    if (segment == 0 || segment >= length) {
      received_.push_back(
          {message, 0, static_cast<uint32_t>(length), truncated || length > max_size_});
      continue;
    }
    // Joined by GRO: every datagram `segment` bytes but the last. A cut read (it cannot
    // be: the slot holds the largest) loses its tail, not its boundaries.
    for (size_t offset = 0; offset < length; offset += segment) {
      size_t part = std::min(segment, length - offset);
      received_.push_back({message, static_cast<uint32_t>(offset), static_cast<uint32_t>(part),
                           part > max_size_ || (truncated && offset + part == length)});
      ++gro_datagrams_;
    }
  }
  return received_.size();
}

net::Address DatagramBatch::source(size_t i) const {
  const sockaddr_storage& a = s_->addresses[received_[i].message];
  socklen_t len = a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return net::Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&a), len);
}

namespace {

// Writes one control message of `value` at `buffer`; returns the bytes it takes.
template <typename T>
size_t put_control(uint8_t* buffer, int level, int type, const T& value) {
  auto* c = reinterpret_cast<cmsghdr*>(buffer);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(sizeof value);
  std::memcpy(CMSG_DATA(c), &value, sizeof value);
  return CMSG_SPACE(sizeof value);
}

}  // namespace

PacketInfo DatagramBatch::destination(size_t i) const {
  PacketInfo info;
  size_t message = received_[i].message;
  msghdr h{};
  h.msg_control = const_cast<uint8_t*>(s_->control[message].data());
  h.msg_controllen = s_->control_lengths[message];
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo p;
      std::memcpy(&p, CMSG_DATA(c), sizeof p);
      info.family = AF_INET;
      std::memcpy(info.ip.data(), &p.ipi_addr, 4);  // the datagram's destination
      info.ifindex = p.ipi_ifindex;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo p;
      std::memcpy(&p, CMSG_DATA(c), sizeof p);
      info.family = AF_INET6;
      std::memcpy(info.ip.data(), &p.ipi6_addr, 16);
      info.ifindex = static_cast<int>(p.ipi6_ifindex);
    }
  }
  return info;
}

bool DatagramBatch::push(const net::Address& to, std::span<const uint8_t> data,
                         const PacketInfo& from) {
  if (full() || data.size() > max_size_) return false;
  allocate();
  std::memcpy(&buffer_[queued_ * slot()], data.data(), data.size());
  std::memcpy(&s_->addresses[queued_], to.sockaddr_ptr(), to.length());
  s_->lengths[queued_] = data.size();
  s_->control_lengths[queued_] = 0;
  if (from.family == AF_INET && to.family() == AF_INET) {
    // The source address only: the routing table still picks the interface (ifindex 0).
    in_pktinfo p{};
    std::memcpy(&p.ipi_spec_dst, from.ip.data(), 4);
    s_->control_lengths[queued_] =
        put_control(s_->control[queued_].data(), IPPROTO_IP, IP_PKTINFO, p);
  } else if (from.family == AF_INET6 && to.family() == AF_INET6) {
    // A link-local destination needs its interface; any other address leaves it to routing.
    in6_pktinfo p{};
    std::memcpy(&p.ipi6_addr, from.ip.data(), 16);
    if (IN6_IS_ADDR_LINKLOCAL(&p.ipi6_addr)) p.ipi6_ifindex = static_cast<unsigned>(from.ifindex);
    s_->control_lengths[queued_] =
        put_control(s_->control[queued_].data(), IPPROTO_IPV6, IPV6_PKTINFO, p);
  }
  ++queued_;
  return true;
}

SendCounts DatagramBatch::flush(int fd, GsoState& gso) {
  if (queued_ == 0) return {};
  auto& out = s_->out;
  for (size_t i = 0; i < queued_; ++i) {
    out[i].body = {&buffer_[i * slot()], s_->lengths[i]};
    out[i].to = &s_->addresses[i];
    out[i].to_length =
        s_->addresses[i].ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    out[i].control = {s_->control[i].data(), s_->control_lengths[i]};
  }
  SendCounts counts = send_datagrams(fd, std::span(out.data(), queued_), gso);
  queued_ = 0;
  return counts;
}

}  // namespace sluice::proxy::udp
