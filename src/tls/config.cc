// validate() of the TLS settings of listeners (ServerConfig) and clusters (ClientConfig).
// Only the settings themselves: whether the files they name hold usable certificates is
// checked when they are read (tls/cert_store.h).
#include "tls/config.h"

#include <fmt/format.h>

#include <set>

#include "net/address.h"

namespace sluice::tls {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;

// RFC 7301 §3.1: a protocol name is 1-255 bytes. Any byte is allowed on the wire; names
// written in a configuration are printable ASCII (h2, http/1.1, acme-tls/1).
void check_alpn(ConfigChecker& c, const std::vector<std::string>& alpn) {
  std::set<std::string> seen;
  for (size_t i = 0; i < alpn.size(); ++i) {
    const std::string& p = alpn[i];
    std::string at = fmt::format("alpn[{}]", i);
    bool printable = true;
    for (unsigned char ch : p) printable &= ch > 0x20 && ch < 0x7f;
    if (p.empty() || p.size() > 255 || !printable) {
      c.error(at,
              "expected a protocol name of 1 to 255 printable characters such as h2 or "
              "http/1.1");
    } else if (!seen.insert(p).second) {
      c.error(at, fmt::format("'{}' is listed twice", p));
    }
  }
}

void check_versions(ConfigChecker& c, Version min, Version max) {
  if (min > max) {
    c.error("min_version", fmt::format("must not be above max_version ({}), got {}", to_string(max),
                                       to_string(min)));
  }
}

}  // namespace

ConfigIssues ServerConfig::validate() const {
  ConfigChecker c;
  if (certificates.empty()) c.missing("certificates");
  for (size_t i = 0; i < certificates.size(); ++i) {
    std::string at = fmt::format("certificates[{}]", i);
    if (certificates[i].certificate_chain.empty()) c.missing(at + ".certificate_chain");
    if (certificates[i].private_key.empty()) c.missing(at + ".private_key");
  }
  check_alpn(c, alpn);
  check_versions(c, min_version, max_version);
  c.check_duration("handshake_timeout", handshake_timeout, milliseconds(100), minutes(5));
  c.check_duration("ticket_key_rotation", ticket_key_rotation, minutes(1), hours(24 * 7));
  if (!session_tickets && !ticket_key_files.empty()) {
    c.error("ticket_key_files", "only with session_tickets: true");
  }
  if (early_data.enabled) {
    // Early data rides on a resumed session (RFC 8446 §4.2.10), and only TLS 1.3 has it.
    if (!session_tickets) c.error("early_data.enabled", "needs session_tickets: true");
    if (max_version != Version::kTls13) c.error("early_data.enabled", "needs max_version: 1.3");
    // The client's certificate comes after its early data: a request in it would be acted on
    // before the client is known.
    if (verify != ClientVerify::kNone)
      c.error("early_data.enabled", "cannot be used with verify: optional or required");
    c.check_size("early_data.max_early_data", early_data.max_early_data, 1, 1 << 20);
  }
  if (verify != ClientVerify::kNone && client_ca.empty()) {
    c.error("client_ca", fmt::format("needed by verify: {} (the CAs client certificates must "
                                     "chain to)",
                                     kClientVerifyNames[static_cast<int>(verify)]));
  }
  if (verify == ClientVerify::kNone && !client_ca.empty()) {
    c.warning("client_ca", "not used: verify is none (set verify: optional or required)");
  }
  c.check_uint("verify_depth", verify_depth, 1, 16);
  return c.take();
}

ConfigIssues ClientConfig::validate() const {
  ConfigChecker c;
  if (!certificate_chain.empty() && private_key.empty()) c.missing("private_key");
  if (certificate_chain.empty() && !private_key.empty()) c.missing("certificate_chain");
  if (!sni.empty()) {
    // RFC 6066 §3: SNI carries a host name; an IP literal is not sent.
    if (net::Address::parse_ip(sni, 0).is_ok()) {
      c.error("sni", fmt::format("'{}' is an IP address; SNI takes a DNS name", sni));
    } else if (!valid_host_name(sni)) {
      c.error("sni", fmt::format("'{}' is not a DNS name such as api.example.com", sni));
    }
  }
  if (!verify && !ca.empty()) c.warning("ca", "not used: verify is false");
  check_alpn(c, alpn);
  check_versions(c, min_version, max_version);
  return c.take();
}

}  // namespace sluice::tls
