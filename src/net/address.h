// Address: an IPv4 or IPv6 socket address (IP literal + port). Plain value type.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sluice::net {

class Address {
 public:
  Address() { std::memset(&ss_, 0, sizeof ss_); }
  // "127.0.0.1:8080" or "[::1]:8080". Names are not resolved here.
  static Result<Address> parse(std::string_view host_port);
  // An IP literal without port ("127.0.0.2", "::1").
  static Result<Address> parse_ip(std::string_view ip, uint16_t port);
  static Address from_sockaddr(const sockaddr* sa, socklen_t len);

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t length() const { return len_; }
  int family() const { return ss_.sa.sa_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  std::string to_string() const;
  // The address without the port and without brackets ("10.0.0.1", "::1").
  std::string ip_string() const;

  bool operator==(const Address& other) const;

 private:
  // IPv4 or IPv6 only: 28 bytes rather than sockaddr_storage's 128, since every
  // connection keeps its peer's address.
  union Storage {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  };
  Storage ss_;
  socklen_t len_ = 0;
};

}  // namespace sluice::net
