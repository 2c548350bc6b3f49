#include "http/authority.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <string>

namespace sluice::http {
namespace {

bool is_alpha(unsigned char c) {
  return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(unsigned char c) {
  return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

// RFC 3986 §2.3.
bool is_unreserved(unsigned char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// RFC 3986 §2.2.
bool is_sub_delim(unsigned char c) {
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

std::string describe(unsigned char c) {
  if (c > 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
  return fmt::format("0x{:02x}", c);
}

Status check_reg_name(std::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (c == '%') {
      if (i + 2 >= name.size() || !is_hex(static_cast<unsigned char>(name[i + 1])) ||
          !is_hex(static_cast<unsigned char>(name[i + 2]))) {
        return Status::error("'%' in the host is not followed by two hex digits");
      }
      i += 2;
      continue;
    }
    if (c == '@') return Status::error("userinfo ('@') is not allowed");
    if (!is_unreserved(c) && !is_sub_delim(c)) {
      return Status::error(fmt::format("character {} is not allowed in a host", describe(c)));
    }
  }
  return Status::ok();
}

// `inside` is what stands between the brackets.
Status check_ip_literal(std::string_view inside) {
  if (!inside.empty() && (inside[0] == 'v' || inside[0] == 'V')) {
    size_t dot = inside.find('.');
    if (dot == std::string_view::npos || dot == 1 || dot + 1 == inside.size()) {
      return Status::error("malformed IPvFuture literal");
    }
    for (size_t i = 1; i < dot; ++i) {
      if (!is_hex(static_cast<unsigned char>(inside[i]))) {
        return Status::error("malformed IPvFuture literal");
      }
    }
    for (size_t i = dot + 1; i < inside.size(); ++i) {
      auto c = static_cast<unsigned char>(inside[i]);
      if (!is_unreserved(c) && !is_sub_delim(c) && c != ':') {
        return Status::error("malformed IPvFuture literal");
      }
    }
    return Status::ok();
  }
  // Longest IPv6 text: 8 groups of 4 hex digits and 7 colons, or 6 groups with an IPv4 tail.
  constexpr size_t kMaxText = 45;
  if (inside.size() > kMaxText) return Status::error("the IP literal is not an IPv6 address");
  std::string text(inside);
  in6_addr addr;
  if (inet_pton(AF_INET6, text.c_str(), &addr) != 1) {
    return Status::error("the IP literal is not an IPv6 address");
  }
  return Status::ok();
}

Status check_port(std::string_view port, PortRule rule) {
  if (port.empty()) {
    if (rule == PortRule::kRequired) return Status::error("the port is empty");
    return Status::ok();
  }
  uint32_t value = 0;
  for (char c : port) {
    if (!is_digit(static_cast<unsigned char>(c))) {
      return Status::error("the port is not a number");
    }
    if (value <= 65535) value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return Status::error("the port is above 65535");
  return Status::ok();
}

}  // namespace

Status check_authority(std::string_view authority, PortRule port_rule) {
  std::string_view host = authority;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Status::error("the IP literal has no ']'");
    if (Status s = check_ip_literal(authority.substr(1, close - 1)); !s) return s;
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        return Status::error(fmt::format("character {} after the IP literal",
                                         describe(static_cast<unsigned char>(rest[0]))));
      }
      has_port = true;
      port = rest.substr(1);
    }
  } else {
    // A reg-name has no ':', so the first one starts the port; any later one makes the
    // port not a number.
    size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (Status s = check_reg_name(host); !s) return s;
    if (port_rule == PortRule::kRequired && host.empty()) return Status::error("the host is empty");
  }
  if (!has_port && port_rule == PortRule::kRequired) return Status::error("there is no port");
  return check_port(port, port_rule);
}

}  // namespace sluice::http
