// The target of `sluice probe`: an http:// or https:// URL, and the curl-style overrides of where
// it goes (--resolve host:port:addr, --connect-to host:port:host2:port2). Plain value types and
// parsing functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "net/address.h"

namespace sluice::probe {

struct Url {
  std::string text;    // as given
  bool https = false;  // the scheme is https: TLS over the connection
  std::string host;    // without the brackets of an IPv6 literal
  bool ipv6 = false;   // host is an IPv6 literal
  uint16_t port = 80;  // explicit or the scheme's default (80, 443)
  std::string target;  // path and query ("/" when the URL has no path); never the fragment

  uint16_t default_port() const { return https ? 443 : 80; }
  // The Host field (RFC 9112 §3.2): the authority, the port only when it is not the
  // scheme's default.
  std::string authority() const;
};

// Accepts http[s]://host[:port][/path][?query][#fragment]; anything else is an error whose
// message fits on one line ("bad URL: scheme 'ftp' is not supported (only http:// and
// https://)").
Result<Url> parse_url(std::string_view text);

// --resolve HOST:PORT:ADDR[,ADDR...]: HOST:PORT is answered with these addresses, no DNS.
struct ResolveOverride {
  std::string host;
  uint16_t port = 0;
  std::vector<net::Address> addresses;  // port 0
};
Result<ResolveOverride> parse_resolve(std::string_view text);

// --connect-to HOST:PORT:HOST2:PORT2: a request for HOST:PORT (empty: any) connects to
// HOST2:PORT2 instead (empty: unchanged) while the Host field still names the URL's host.
struct ConnectTo {
  std::string host;              // empty: any host
  std::optional<uint16_t> port;  // empty: any port
  std::string target_host;       // empty: the URL's host
  std::optional<uint16_t> target_port;
};
Result<ConnectTo> parse_connect_to(std::string_view text);

// A host name as DNS knows it (letters, digits, '-', '_', '.'), or an IP literal.
bool valid_host(std::string_view host);

}  // namespace sluice::probe
