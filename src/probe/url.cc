#include "probe/url.h"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "http/headers.h"

namespace sluice::probe {
namespace {

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && http::iequals(s.substr(0, prefix.size()), prefix);
}

std::optional<uint16_t> parse_port(std::string_view text) {
  unsigned port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || port == 0 ||
      port > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(port);
}

// Splits "a:b:c" on colons outside square brackets, so "[::1]:80" stays one host field.
std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  bool in_brackets = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') in_brackets = true;
    if (s[i] == ']') in_brackets = false;
    if (s[i] == ':' && !in_brackets) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

std::string_view strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

}  // namespace

bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (net::Address::parse_ip(host, 0)) return true;
  for (char c : host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return host.find("..") == std::string_view::npos && host.front() != '.';
}

std::string Url::authority() const {
  std::string h = ipv6 ? "[" + host + "]" : host;
  if (port != default_port()) h += fmt::format(":{}", port);
  return h;
}

Result<Url> parse_url(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c <= 0x20 || c >= 0x7f) {
      return Status::error(fmt::format(
          "bad URL: a space, control or non-ASCII byte at offset {} (percent-encode it)", i));
    }
  }
  Url url;
  url.https = starts_with_nocase(text, "https://");
  if (!url.https && !starts_with_nocase(text, "http://")) {
    size_t scheme_end = text.find("://");
    if (scheme_end != std::string_view::npos) {
      return Status::error(
          fmt::format("bad URL: scheme '{}' is not supported (only http:// and https://)",
                      text.substr(0, scheme_end)));
    }
    return Status::error(fmt::format("bad URL '{}': it must start with http:// or https://", text));
  }
  url.text = std::string(text);
  url.port = url.default_port();
  std::string_view rest = text.substr(url.https ? 8 : 7);
  rest = rest.substr(0, rest.find('#'));  // the fragment stays with the client (RFC 9110 §4.2.4)
  size_t auth_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, auth_end);
  std::string_view path = auth_end == std::string_view::npos ? "" : rest.substr(auth_end);
  if (authority.find('@') != std::string_view::npos) {
    return Status::error("bad URL: credentials in the URL are not supported");
  }
  std::string_view host = authority;
  std::string_view port_text;
  bool has_port = false;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) {
      return Status::error("bad URL: an IPv6 address without its closing ']'");
    }
    std::string_view after = host.substr(close + 1);
    host = host.substr(1, close - 1);
    url.ipv6 = true;
    if (!after.empty()) {
      if (after.front() != ':') {
        return Status::error(fmt::format("bad URL: '{}' after the IPv6 address", after));
      }
      has_port = true;
      port_text = after.substr(1);
    }
    auto ip = net::Address::parse_ip(host, 0);
    if (!ip || ip->family() != AF_INET6) {
      return Status::error(fmt::format("bad URL: '[{}]' is not an IPv6 address", host));
    }
  } else {
    size_t colon = host.find(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
  }
  if (host.empty()) return Status::error(fmt::format("bad URL '{}': no host", text));
  if (!url.ipv6 && !valid_host(host)) {
    return Status::error(fmt::format("bad URL: '{}' is not a valid host name", host));
  }
  if (has_port) {
    auto port = parse_port(port_text);
    if (!port) {
      return Status::error(fmt::format("bad URL: port '{}' is not a number in 1-65535", port_text));
    }
    url.port = *port;
  }
  url.host = std::string(host);
  // "http://h" and "http://h?q" ask for "/" and "/?q" (RFC 9112 §3.2.1).
  if (path.empty() || path.front() == '?') url.target.push_back('/');
  url.target.append(path);
  return url;
}

Result<ResolveOverride> parse_resolve(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status::error(
        fmt::format("--resolve '{}': {} (expected HOST:PORT:ADDR[,ADDR...])", text, why));
  };
  // The address list may hold bare IPv6 literals ("h:80:::1"): split off two fields only.
  auto fields = split_fields(text);
  if (fields.size() < 3) return bad("too few fields");
  ResolveOverride r;
  std::string_view host = strip_brackets(fields[0]);
  if (!valid_host(host)) return bad("not a valid host");
  auto port = parse_port(fields[1]);
  if (!port) return bad("not a valid port");
  size_t prefix = fields[0].size() + fields[1].size() + 2;
  std::string_view list = text.substr(prefix);
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = strip_brackets(list.substr(0, comma));
    auto addr = net::Address::parse_ip(item, 0);
    if (!addr) return bad(fmt::format("'{}' is not an IP address", item));
    r.addresses.push_back(*addr);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (r.addresses.empty()) return bad("no address");
  r.host = std::string(host);
  r.port = *port;
  return r;
}

Result<ConnectTo> parse_connect_to(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status::error(
        fmt::format("--connect-to '{}': {} (expected HOST:PORT:HOST2:PORT2)", text, why));
  };
  auto fields = split_fields(text);
  if (fields.size() != 4) return bad("not four fields");
  ConnectTo c;
  std::string_view host = strip_brackets(fields[0]);
  std::string_view target = strip_brackets(fields[2]);
  if (!host.empty() && !valid_host(host)) return bad("not a valid host");
  if (!target.empty() && !valid_host(target)) return bad("not a valid target host");
  if (!fields[1].empty()) {
    c.port = parse_port(fields[1]);
    if (!c.port) return bad("not a valid port");
  }
  if (!fields[3].empty()) {
    c.target_port = parse_port(fields[3]);
    if (!c.target_port) return bad("not a valid target port");
  }
  c.host = std::string(host);
  c.target_host = std::string(target);
  return c;
}

}  // namespace sluice::probe
