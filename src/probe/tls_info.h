// What `sluice probe https://...` reports about a TLS handshake: the negotiated version,
// cipher and ALPN, whether the session was resumed, the certificate chain the server sent,
// its stapled OCSP response and what verification said. Read from the SSL object once the
// handshake is done; plain values after that. Any thread (the SSL is not shared).
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <vector>

namespace sluice::probe {

struct CertSummary {
  std::string subject;  // RFC 2253 one-line
  std::string issuer;
  std::vector<std::string> dns;  // SAN dNSName entries
  std::vector<std::string> ips;  // SAN iPAddress entries, as text
  std::string not_after;         // "2027-12-03T08:27:00Z"
};

// The stapled OCSP response (RFC 6960), if the server sent one.
struct OcspSummary {
  // "none" (nothing stapled), "good", "revoked", "unknown" (the responder does not know the
  // certificate), or "invalid" (unparsable, unsuccessful, or not about the leaf; `detail`
  // says why).
  std::string status = "none";
  std::string detail;         // revocation time, or why it is invalid
  bool signature_ok = false;  // signed by the issuer or its responder, chaining to the CAs
  std::string this_update;
  std::string next_update;
};

struct TlsPhase {
  std::string sni;      // the server_name sent ("" for an IP host)
  std::string checked;  // the name or IP address the certificate is checked against
  std::string version;  // "TLSv1.3"; "" when the handshake did not complete
  std::string cipher;
  std::string alpn;  // "" when the server selected none
  bool resumed = false;
  std::vector<CertSummary> chain;  // as the server sent it, the leaf first
  OcspSummary ocsp;
  // "" when the certificate verified, else "certificate verify failed: <OpenSSL reason>".
  std::string verify_error;
  bool verify_skipped = false;  // --insecure: the result is shown, not enforced
  bool verified() const { return verify_error.empty(); }
};

// Fills the handshake's results into `phase` (after the handshake completed).
void describe_handshake(SSL* ssl, TlsPhase& phase);

}  // namespace sluice::probe
