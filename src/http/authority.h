// Checks of an authority as HTTP carries it (the Host header, an authority-form or
// absolute-form request target, and later HTTP/2's :authority) against RFC 3986 §3.2:
//
//   authority   = host [ ":" port ]        (no userinfo: RFC 9110 §4.2.4, §7.2)
//   host        = IP-literal / IPv4address / reg-name
//   IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
//   IPvFuture   = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
//   reg-name    = *( unreserved / pct-encoded / sub-delims )
//   port        = *DIGIT
//
// An IPv4address is also a reg-name, so it needs no check of its own. The grammar allows an
// empty host and an empty port; a port of more than five digits, or above 65535, cannot name
// a TCP port and is refused too. Pure functions; any thread.
#pragma once

#include <string_view>

#include "base/status.h"

namespace sluice::http {

enum class PortRule {
  kOptional,  // Host, absolute-form: host [ ":" port ]
  kRequired,  // CONNECT's authority-form (RFC 9112 §3.2.3): host ":" port, both non-empty
};

// Ok, or an error whose message says what is wrong with `authority` ("character ' ' is not
// allowed in a host", ...), without repeating the value.
Status check_authority(std::string_view authority, PortRule port_rule);

}  // namespace sluice::http
