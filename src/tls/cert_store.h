// CertStore: the certificates of one TLS listener, read from their files and checked once
// (main thread), then shared read-only by every worker, each of which builds its own
// SSL_CTX objects from it (tls/context.h). A new set read after a file changed is a new
// CertStore; connections keep the one their handshake used.
//
// Certificates are grouped by the names they serve: an RSA and an ECDSA certificate for the
// same names form one group, and the handshake picks the one the client supports. SNI
// selects a group: an exact name first, then a wildcard ("*.example.com" matches one label),
// then the default (the first group) unless the listener requires SNI.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/validation.h"
#include "tls/config.h"

namespace sluice::tls {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

struct LoadedCertificate {
  std::string chain_file;  // as configured, for messages and metrics labels
  X509Ptr leaf;
  std::vector<X509Ptr> intermediates;  // in chain order
  PkeyPtr key;
  enum class KeyType { kRsa, kEcdsa, kOther } key_type = KeyType::kOther;
  // The DNS names it serves (SAN dNSName entries, or the subject CN when there are none),
  // lower-case; wildcards kept as "*.example.com".
  std::vector<std::string> names;
  std::string subject;  // one-line, for logs
  std::chrono::system_clock::time_point not_after;
  // The DER OCSP response to staple, present only when it was verified against the issuer
  // and is current (tls/ocsp.h); empty otherwise.
  std::string ocsp_der;
  // Its nextUpdate: past it, the response is not stapled any more.
  std::chrono::system_clock::time_point ocsp_next_update{};
};

struct CertGroup {
  std::vector<std::string> names;               // those of its certificates
  std::vector<const LoadedCertificate*> certs;  // at most one per key type
};

class CertStore {
 public:
  // Reads and checks every certificate of `config`. Errors (unreadable file, key not
  // matching its certificate, chain out of order, expired, no names) fail the load;
  // warnings (expiring within 14 days, a stale OCSP response that will not be stapled) are
  // appended to `warnings`. Blocking file reads: main thread only.
  static Result<std::shared_ptr<const CertStore>> load(const ServerConfig& config,
                                                       std::vector<std::string>* warnings);
  // The same, judging validity (expiry, OCSP freshness) at `now`. Several errors are
  // returned one per line.
  static Result<std::shared_ptr<const CertStore>> load(const ServerConfig& config,
                                                       std::vector<std::string>* warnings,
                                                       std::chrono::system_clock::time_point now);

  // The group for a ClientHello's server_name ("" = none sent); nullptr when nothing
  // matches and `require_sni`.
  const CertGroup* select(std::string_view server_name, bool require_sni) const;

  const std::vector<CertGroup>& groups() const { return groups_; }
  const std::vector<std::unique_ptr<LoadedCertificate>>& certificates() const { return certs_; }
  // The files it was read from (certificates, keys, OCSP responses), to be watched.
  const std::vector<std::string>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<LoadedCertificate>> certs_;
  std::vector<CertGroup> groups_;
  std::vector<std::string> files_;
};

// One certificate chain and its key, read and checked as CertStore::load() does (readable,
// in order, the key matching, not expired; warnings for one not yet valid or expiring
// within 14 days), without requiring DNS names and without OCSP: also for a cluster's
// client certificate, whose subject need not be a host name. Main thread.
Result<std::unique_ptr<LoadedCertificate>> load_certificate(
    const std::string& chain_file, const std::string& key_file,
    std::chrono::system_clock::time_point now, std::vector<std::string>* warnings);
// Every PEM certificate of `file`, in order. The error names the file: unreadable, empty,
// or without a PEM certificate. Blocking read: main thread.
Result<std::vector<X509Ptr>> read_pem_certificates(const std::string& file);
// Whether `file` holds PEM CA certificates only (a listener's client_ca, a cluster's ca).
Status check_ca_file(const std::string& file);

// Whether `name` (lower-case) is served by `pattern`: equal, or pattern "*.rest" and name
// "label.rest" with exactly one label in place of the star.
bool name_matches(std::string_view pattern, std::string_view name);

}  // namespace sluice::tls
