// Address: an IPv4 or IPv6 socket address (IP literal + port). Plain value type.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sluice::net {

class Address {
 public:
  Address() = default;
  // "127.0.0.1:8080" or "[::1]:8080". Names are not resolved here.
  static Result<Address> parse(std::string_view host_port);
  // An IP literal without port ("127.0.0.2", "::1").
  static Result<Address> parse_ip(std::string_view ip, uint16_t port);
  static Address from_sockaddr(const sockaddr* sa, socklen_t len);

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t length() const { return len_; }
  int family() const { return ss_.ss_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  std::string to_string() const;

  bool operator==(const Address& other) const;

 private:
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

}  // namespace sluice::net
