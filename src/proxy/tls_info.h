// DownstreamTls: what a client connection's TLS handshake settled, kept by the connection
// for the access log of each of its requests and for the headers sent upstream
// (X-Forwarded-Proto, x-forwarded-client-cert). Loop thread only.
#pragma once

#include <string>

#include "base/units.h"
#include "tls/session.h"

namespace sluice::proxy {

struct DownstreamTls {
  std::string version;  // "TLSv1.3"
  std::string cipher;
  std::string sni;
  std::string alpn;
  bool resumed = false;
  bool early_data = false;
  std::string client_subject;  // of a verified client certificate ("" none)
  // The x-forwarded-client-cert value for a verified client certificate ("" none).
  std::string client_cert_header;
  Duration handshake{0};  // from accept to the finished handshake
};

DownstreamTls describe_tls(const tls::Session& session, Duration handshake);

// Appends `,"tls":{"version":…,"cipher":…,"sni":…,"alpn":…,"resumed":…,"early_data":…
// [,"client":…]}` to an access log line.
void append_tls_json(const DownstreamTls& t, std::string& line);

// The verified identity in the x-forwarded-client-cert format (Hash, Subject, URI, DNS:
// `Hash=<sha256 hex>;Subject="<RFC 2253>";URI=<uri>;DNS=<name>`), "" when unverified.
std::string client_cert_header(const tls::PeerIdentity& id);

}  // namespace sluice::proxy
