// ServerContext and ClientContext: the OpenSSL contexts of one TLS listener or one TLS
// cluster on one worker. Each worker has its own (OpenSSL 3.0 serialises handshakes that
// share a context), all built on the main thread, which reads every file, from one
// immutable CertStore or CA file; a worker then only makes Sessions from them.
//
// Server side: one SSL_CTX per certificate group (RSA and ECDSA for the same names share
// one, and OpenSSL gives each client the certificate it supports); the ClientHello callback
// moves a handshake to the group its SNI selects, or refuses it with unrecognized_name.
// Session tickets use the process's TicketKeys, so a session resumes on any worker.
// Client side: verification on unless turned off, SNI and the name check per connection,
// and a session cache per upstream endpoint so reconnects resume.
#pragma once

#include <openssl/ssl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "net/address.h"
#include "tls/cert_store.h"
#include "tls/config.h"
#include "tls/replay_guard.h"
#include "tls/session.h"
#include "tls/ticket_keys.h"

namespace sluice::tls {

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

class ServerContext : public std::enable_shared_from_this<ServerContext> {
 public:
  // Main thread (reads the client CA file). `scope` names what sessions may resume across
  // (the listener): a session made under another scope gets a full handshake.
  static Result<std::shared_ptr<ServerContext>> create(
      const ServerConfig& config, std::string_view scope, std::shared_ptr<const CertStore> store,
      std::shared_ptr<TicketKeys> keys, std::shared_ptr<ReplayGuard> replays = nullptr);
  ~ServerContext();

  // A server session for an accepted socket; nullptr when OpenSSL cannot make one.
  // `early_data`: the protocol above can judge early data (HTTP); a TCP listener cannot.
  std::unique_ptr<Session> new_session(int fd, bool early_data = true);

  const ServerConfig& config() const { return config_; }
  const CertStore& store() const { return *store_; }

 private:
  ServerContext(const ServerConfig& config, std::shared_ptr<const CertStore> store,
                std::shared_ptr<TicketKeys> keys, std::shared_ptr<ReplayGuard> replays);
  static int on_allow_early_data(SSL* ssl, void* arg);
  static int on_client_hello(SSL* ssl, int* alert, void* arg);
  static int on_status_request(SSL* ssl, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);
  // Everything but the certificates, then those of the store's `group`-th group.
  Status configure(SSL_CTX* ctx, size_t group);

  ServerConfig config_;
  std::shared_ptr<const CertStore> store_;
  std::shared_ptr<TicketKeys> keys_;
  std::shared_ptr<ReplayGuard> replays_;  // with early data
  std::vector<SslCtxPtr> groups_;         // by CertStore group
  std::string alpn_wire_;                 // the configured ALPN list, length-prefixed
  // Which sessions may resume here (tls/context.cc session_id_context()).
  std::string session_id_context_;
  bool stale_ocsp_logged_ = false;  // this worker said so once
};

class ClientContext : public std::enable_shared_from_this<ClientContext> {
 public:
  // Main thread (reads the CA and client certificate files).
  static Result<std::shared_ptr<ClientContext>> create(const ClientConfig& config);
  ~ClientContext();

  // A client session for a socket connecting to `address`; `host` is the endpoint's DNS
  // name ("" for an IP literal). Resumes the endpoint's last session when it has one.
  // `alpn`, when not empty, is offered by ALPN instead of the configured list (alpn_wire()
  // format): a connection that must speak one protocol (a gRPC health check: h2) says so.
  std::unique_ptr<Session> new_session(int fd, std::string_view host, const net::Address& address,
                                       std::string_view alpn = {});

  const ClientConfig& config() const { return config_; }

 private:
  explicit ClientContext(const ClientConfig& config) : config_(config) {}
  static int on_new_session(SSL* ssl, SSL_SESSION* session);

  ClientConfig config_;
  SslCtxPtr ctx_;
  std::string alpn_wire_;
  // The last session per endpoint ("host|address"); SSL_SESSION references are owned.
  std::map<std::string, SSL_SESSION*, std::less<>> sessions_;
};

// Whether the kernel can take over the TLS record layer (kTLS: the `tls` upper-layer
// protocol is loaded, or its module is installed). Reads /proc and /lib/modules: main thread.
bool kernel_tls_available();

// "h2", "http/1.1" → "\x02h2\x08http/1.1".
std::string alpn_wire(const std::vector<std::string>& protocols);

}  // namespace sluice::tls
