#include "net/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace sluice::net {

Result<Address> Address::parse_ip(std::string_view ip, uint16_t port) {
  std::string text(ip);
  Address a;
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&a.ss_, &v4, sizeof v4);
    a.len_ = sizeof v4;
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&a.ss_, &v6, sizeof v6);
    a.len_ = sizeof v6;
    return a;
  }
  return Status::error(fmt::format("'{}' is not an IPv4 or IPv6 address", ip));
}

Result<Address> Address::parse(std::string_view s) {
  std::string_view host;
  std::string_view port_text;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return Status::error(fmt::format("'{}' is not an address of the form [IPv6]:PORT", s));
    }
    host = s.substr(1, close - 1);
    port_text = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon) {
      return Status::error(
          fmt::format("'{}' is not an address of the form IP:PORT or [IPv6]:PORT", s));
    }
    host = s.substr(0, colon);
    port_text = s.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return Status::error(fmt::format("'{}' has an invalid port (expected 0-65535)", s));
  }
  auto a = parse_ip(host, static_cast<uint16_t>(port));
  if (!a) {
    return Status::error(
        fmt::format("'{}': '{}' is not an IP address (names are not resolved here)", s, host));
  }
  return a;
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Address a;
  if (len > sizeof a.ss_) len = sizeof a.ss_;
  std::memcpy(&a.ss_, sa, len);
  a.len_ = len;
  return a;
}

uint16_t Address::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

void Address::set_port(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
}

std::string Address::ip_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    // By hand: glibc's inet_ntop formats IPv4 through sprintf, and this runs per request
    // (X-Forwarded-For).
    const auto* b = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr.s_addr);
    std::string out;
    out.reserve(15);
    for (int i = 0; i < 4; ++i) {
      if (i > 0) out += '.';
      uint8_t v = b[i];
      if (v >= 100) out += static_cast<char>('0' + v / 100);
      if (v >= 10) out += static_cast<char>('0' + v / 10 % 10);
      out += static_cast<char>('0' + v % 10);
    }
    return out;
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof buf);
  } else {
    return "unknown";
  }
  return buf;
}

std::string Address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, port());
  }
  return "unknown";
}

bool Address::operator==(const Address& other) const {
  return len_ == other.len_ && std::memcmp(&ss_, &other.ss_, len_) == 0;
}

}  // namespace sluice::net
