// TLS settings of a listener (ServerConfig: sluice terminates) and of a cluster
// (ClientConfig: sluice originates). Plain data, immutable once loaded; the files they name
// are read on the main thread when the configuration is loaded (tls/cert_store.h), never on
// a worker. validate() checks the settings themselves; whether the files hold what they
// should is checked when they are loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"

namespace sluice::tls {

enum class Version { kTls12, kTls13 };
inline constexpr const char* kVersionNames[] = {"1.2", "1.3"};
constexpr const char* to_string(Version v) {
  return kVersionNames[static_cast<int>(v)];
}

// One certificate: a PEM chain (the leaf first, then the intermediates that lead to the
// root, without the root) and its PEM private key. RSA and ECDSA certificates for the same
// names may both be listed: each handshake gets the one the client supports.
struct CertificateConfig {
  std::string certificate_chain;  // file
  std::string private_key;        // file
  std::string ocsp_response;      // DER file stapled when valid; "" = no stapling
  bool operator==(const CertificateConfig&) const = default;
};

// How a listener treats client certificates.
enum class ClientVerify { kNone, kOptional, kRequired };
inline constexpr const char* kClientVerifyNames[] = {"none", "optional", "required"};

// What a handshake offering early data (0-RTT) gets.
struct EarlyDataConfig {
  bool enabled = false;
  // A request other than GET, HEAD or OPTIONS that arrives in early data: held until the
  // handshake completes (false) or answered 425 Too Early (true).
  bool reject_unsafe = false;
  uint32_t max_early_data = 16 * 1024;  // bytes
  bool operator==(const EarlyDataConfig&) const = default;
};

struct ServerConfig {
  std::vector<CertificateConfig> certificates;  // the first one's names are the default
  // Protocols offered by ALPN, in preference order.
  std::vector<std::string> alpn;
  Version min_version = Version::kTls12;
  Version max_version = Version::kTls13;
  // A ClientHello without server_name, or naming none of the certificates' names, is
  // refused (unrecognized_name) instead of getting the default certificate.
  bool require_sni = false;
  Duration handshake_timeout = std::chrono::seconds(10);

  // Resumption with stateless session tickets, their keys shared by every worker. Each key
  // encrypts new tickets for `ticket_key_rotation`, then only decrypts for as long again.
  bool session_tickets = true;
  Duration ticket_key_rotation = std::chrono::hours(1);
  // Optional: 80-byte key files shared by a fleet (name 16, AES key 32, HMAC key 32), the
  // newest first; when set, they replace the in-memory keys.
  std::vector<std::string> ticket_key_files;
  EarlyDataConfig early_data;

  // Client certificates (mTLS).
  std::string client_ca;  // PEM file of the CAs clients' certificates must chain to
  ClientVerify verify = ClientVerify::kNone;
  uint32_t verify_depth = 4;

  // Hand the record layer to the kernel after the handshake, where it offers kTLS.
  bool ktls = false;

  ConfigIssues validate() const;

  bool operator==(const ServerConfig&) const = default;
};

struct ClientConfig {
  // Verify the upstream's certificate (chain and name). Off only when asked.
  bool verify = true;
  std::string ca;  // PEM file; "" = the system's store
  // The name sent as SNI and checked against the certificate. "": the endpoint's DNS name
  // when it has one; an IP-literal endpoint is then checked against the certificate's IP
  // SANs and sends no SNI.
  std::string sni;
  std::vector<std::string> alpn;
  // A client certificate for upstreams that require one.
  std::string certificate_chain;
  std::string private_key;
  Version min_version = Version::kTls12;
  Version max_version = Version::kTls13;
  // Resume sessions per endpoint.
  bool session_resumption = true;
  bool ktls = false;

  ConfigIssues validate() const;

  bool operator==(const ClientConfig&) const = default;
};

}  // namespace sluice::tls
