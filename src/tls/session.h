// Session: one TLS connection, server or client side, as a net::Transport over the
// connection's socket (OpenSSL reads and writes the socket itself, non-blocking). Made by
// a ServerContext or ClientContext (tls/context.h), which it keeps alive. After the
// handshake it answers what logs and headers need: version, cipher, SNI, ALPN, whether the
// session was resumed, and the verified peer certificate. Loop thread only.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/transport.h"

namespace sluice::tls {

class ServerContext;
class ClientContext;

// What the peer's verified certificate says, for logs and x-forwarded-client-cert.
struct PeerIdentity {
  bool present = false;           // the peer sent a certificate
  bool verified = false;          // and it chained to a trusted CA
  std::string subject;            // RFC 2253 one-line
  std::string sha256;             // hex fingerprint of the DER certificate
  std::vector<std::string> uris;  // SAN URIs
  std::vector<std::string> dns;   // SAN DNS names
};

class Session final : public net::Transport {
 public:
  enum class Side { kServer, kClient };

  // Takes ownership of `ssl`; `owner` keeps the context (and its callbacks) alive.
  Session(SSL* ssl, Side side, std::shared_ptr<const void> owner);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Binds the session to the socket; call once before the first handshake().
  bool attach(int fd);
  // Server side: read early data (up to `limit` bytes) before completing the handshake.
  void accept_early_data(size_t limit) {
    early_limit_ = limit;
    read_early_ = true;
  }
  // The ClientHello's pre_shared_key extension, digested (set by the context's ClientHello
  // callback; the replay guard's key).
  void set_replay_key(std::string key) { replay_key_ = std::move(key); }
  const std::string& replay_key() const { return replay_key_; }

  // net::Transport
  Step handshake() override;
  bool established() const override { return established_; }
  ssize_t read(char* data, size_t size) override;
  ssize_t write(const char* data, size_t size) override;
  bool has_pending() const override;
  bool take_early_data(std::string& out) override;
  bool shutdown() override;
  std::string_view failure() const override { return failure_; }
  // The handshake failed because the peer closed the connection (no alert, no garbage).
  bool closed_in_handshake() const { return closed_in_handshake_; }
  const char* name() const override { return "tls"; }

  // After the handshake.
  const char* version() const;  // "TLSv1.3"
  const char* cipher() const;
  std::string_view sni() const;
  std::string_view alpn() const;
  bool resumed() const;
  // Early data: whether the client's was accepted.
  bool early_data_accepted() const;
  PeerIdentity peer_identity() const;
  // The reason of a failed verification of the peer ("" when none failed).
  std::string verify_failure() const;

  SSL* ssl() { return ssl_; }
  Side side() const { return side_; }

 private:
  // Maps an OpenSSL result to recv(2)-like: sets errno and failure_.
  ssize_t io_error(int ret);
  void set_failure();

  SSL* ssl_;
  Side side_;
  std::shared_ptr<const void> owner_;
  std::string failure_;
  bool established_ = false;
  bool shutdown_sent_ = false;
  bool closed_in_handshake_ = false;
  bool read_early_ = false;  // still reading early data
  size_t early_limit_ = 0;
  std::string early_;  // early data not yet taken
  std::string replay_key_;
};

}  // namespace sluice::tls
