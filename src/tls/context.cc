#include "tls/context.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "base/log.h"

namespace sluice::tls {
namespace {

// Modern defaults: ECDHE with AEAD ciphers for TLS 1.2, OpenSSL's TLS 1.3 suites, X25519
// first.
constexpr const char* kCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:P-256:P-384";
// Upstream sessions kept per worker and cluster, one per endpoint.
constexpr size_t kMaxClientSessions = 1024;
// AES-128-GCM first: as safe as AES-256 for TLS and cheaper per byte.
constexpr const char* kCiphers13 =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
// Sessions resume only where they were made under the same rules: the same listener (its
// scope), the same client-certificate demands and the same CAs. A ticket from a listener
// that asks for no certificate must not resume on one that requires it, nor one made under
// a CA a reload has since removed.
std::string session_id_context(const ServerConfig& config, std::string_view scope) {
  std::string material = fmt::format("sluice\n{}\n{}\n{}\n", scope, static_cast<int>(config.verify),
                                     config.verify_depth);
  if (!config.client_ca.empty()) {
    std::ifstream in(config.client_ca, std::ios::binary);
    material.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(material.data(), material.size(), md, &len, EVP_sha256(), nullptr);
  static_assert(SSL_MAX_SID_CTX_LENGTH >= 32);
  return std::string(reinterpret_cast<char*>(md), len);
}

int openssl_version(Version v) {
  return v == Version::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

std::string openssl_errors(std::string_view what) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return std::string(what);
  const char* reason = ERR_reason_error_string(e);
  return fmt::format("{}: {}", what, reason ? reason : "unknown error");
}

Status common_setup(SSL_CTX* ctx, Version min, Version max) {
  if (SSL_CTX_set_min_proto_version(ctx, openssl_version(min)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, openssl_version(max)) != 1)
    return Status::error(openssl_errors("cannot set the TLS versions"));
  if (SSL_CTX_set_cipher_list(ctx, kCiphers12) != 1)
    return Status::error(openssl_errors("cannot set the ciphers"));
  if (SSL_CTX_set_ciphersuites(ctx, kCiphers13) != 1)
    return Status::error(openssl_errors("cannot set the TLS 1.3 cipher suites"));
  if (SSL_CTX_set1_groups_list(ctx, kGroups) != 1)
    return Status::error(openssl_errors("cannot set the groups"));
  // Partial writes let a Connection hand SSL_write what its buffer holds and keep the rest;
  // the buffer may move between a retried write and the next.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // No renegotiation (TLS 1.2), no compression; a peer that closes without close_notify
  // ends the stream like a FIN (HTTP framing tells truncation apart).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
  return Status::ok();
}

}  // namespace

bool kernel_tls_available() {
  std::ifstream ulp("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string word;
  while (ulp >> word) {
    if (word == "tls") return true;
  }
  struct utsname u {};
  if (uname(&u) != 0) return false;
  for (const char* ext : {".ko", ".ko.xz", ".ko.zst", ".ko.gz"}) {
    std::string path = fmt::format("/lib/modules/{}/kernel/net/tls/tls{}", u.release, ext);
    if (access(path.c_str(), F_OK) == 0) return true;
  }
  return false;
}

std::string alpn_wire(const std::vector<std::string>& protocols) {
  std::string out;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) continue;
    out += static_cast<char>(p.size());
    out += p;
  }
  return out;
}

// ---- server ----

ServerContext::ServerContext(const ServerConfig& config, std::shared_ptr<const CertStore> store,
                             std::shared_ptr<TicketKeys> keys, std::shared_ptr<ReplayGuard> replays)
    : config_(config),
      store_(std::move(store)),
      keys_(std::move(keys)),
      replays_(std::move(replays)) {}

ServerContext::~ServerContext() = default;

Status ServerContext::configure(SSL_CTX* ctx, size_t group) {
  if (Status s = common_setup(ctx, config_.min_version, config_.max_version); !s) return s;
  if (config_.ktls && kernel_tls_available()) SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
  SSL_CTX_set_session_id_context(ctx,
                                 reinterpret_cast<const unsigned char*>(session_id_context_.data()),
                                 static_cast<unsigned>(session_id_context_.size()));
  SSL_CTX_set_client_hello_cb(ctx, &ServerContext::on_client_hello, this);
  if (!alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(ctx, &ServerContext::on_alpn, this);
  if (config_.session_tickets) {
    // Stateless tickets only: no per-context session cache (it would not be shared).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    keys_->install(ctx);
    SSL_CTX_set_num_tickets(ctx, 1);
    // A ticket is good for as long as its key decrypts: two rotation periods.
    SSL_CTX_set_timeout(ctx, static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                                                   config_.ticket_key_rotation * 2)
                                                   .count()));
    // Not with client certificates: early data comes before the client's certificate.
    if (config_.early_data.enabled && replays_ && config_.verify == ClientVerify::kNone) {
      // OpenSSL's anti-replay needs a per-context session cache, which stateless tickets
      // shared by every worker do not have: the ReplayGuard takes its place.
      SSL_CTX_set_options(ctx, SSL_OP_NO_ANTI_REPLAY);
      SSL_CTX_set_max_early_data(ctx, config_.early_data.max_early_data);
      SSL_CTX_set_recv_max_early_data(ctx, config_.early_data.max_early_data);
      SSL_CTX_set_allow_early_data_cb(ctx, &ServerContext::on_allow_early_data, this);
    }
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  if (config_.verify != ClientVerify::kNone) {
    int mode = SSL_VERIFY_PEER;
    if (config_.verify == ClientVerify::kRequired) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
    SSL_CTX_set_verify_depth(ctx, static_cast<int>(config_.verify_depth));
    if (SSL_CTX_load_verify_locations(ctx, config_.client_ca.c_str(), nullptr) != 1)
      return Status::error(openssl_errors(fmt::format("client_ca {}", config_.client_ca)));
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config_.client_ca.c_str());
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();
  }
  for (const LoadedCertificate* cert : store_->groups()[group].certs) {
    STACK_OF(X509)* chain = sk_X509_new_null();
    for (const auto& x : cert->intermediates) sk_X509_push(chain, x.get());
    int ok = SSL_CTX_use_cert_and_key(ctx, cert->leaf.get(), cert->key.get(), chain, 1);
    sk_X509_free(chain);  // the context took its own references
    if (ok != 1)
      return Status::error(openssl_errors(fmt::format("certificate {}", cert->chain_file)));
  }
  SSL_CTX_set_tlsext_status_cb(ctx, &ServerContext::on_status_request);
  SSL_CTX_set_tlsext_status_arg(ctx, this);
  return Status::ok();
}

Result<std::shared_ptr<ServerContext>> ServerContext::create(const ServerConfig& config,
                                                             std::string_view scope,
                                                             std::shared_ptr<const CertStore> store,
                                                             std::shared_ptr<TicketKeys> keys,
                                                             std::shared_ptr<ReplayGuard> replays) {
  if (!store || store->groups().empty()) return Status::error("no certificate");
  std::shared_ptr<ServerContext> c(
      new ServerContext(config, std::move(store), std::move(keys), std::move(replays)));
  c->alpn_wire_ = alpn_wire(config.alpn);
  c->session_id_context_ = session_id_context(config, scope);
  for (size_t g = 0; g < c->store_->groups().size(); ++g) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) return Status::error(openssl_errors("cannot make a TLS context"));
    if (Status s = c->configure(ctx.get(), g); !s) return s;
    c->groups_.push_back(std::move(ctx));
  }
  return c;
}

std::unique_ptr<Session> ServerContext::new_session(int fd, bool early_data) {
  // Sessions start on the default group's context; the ClientHello callback moves those
  // whose SNI selects another group (most handshakes need no move).
  SSL* ssl = SSL_new(groups_[0].get());
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  auto s = std::make_unique<Session>(ssl, Session::Side::kServer, shared_from_this());
  SSL_set_app_data(ssl, s.get());
  if (early_data && config_.early_data.enabled && replays_ &&
      config_.verify == ClientVerify::kNone) {
    SSL_set_max_early_data(ssl, config_.early_data.max_early_data);
    SSL_set_recv_max_early_data(ssl, config_.early_data.max_early_data);
    s->accept_early_data(config_.early_data.max_early_data);
  }
  if (!s->attach(fd)) return nullptr;
  return s;
}

int ServerContext::on_client_hello(SSL* ssl, int* alert, void* arg) {
  auto* self = static_cast<ServerContext*>(arg);
  std::string name;
  const unsigned char* p = nullptr;
  size_t len = 0;
  // server_name: list length (2), then entries of type (1), length (2), name.
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1 && len > 5 &&
      p[2] == TLSEXT_NAMETYPE_host_name) {
    size_t n = (static_cast<size_t>(p[3]) << 8) | p[4];
    if (n <= len - 5) {
      name.assign(reinterpret_cast<const char*>(p + 5), n);
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
  }
  if (self->replays_ && SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_early_data, &p, &len) == 1 &&
      SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_psk, &p, &len) == 1) {
    // What a replay repeats byte for byte: the ticket, its obfuscated age and the binder.
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(p, len, md, &md_len, EVP_sha256(), nullptr) == 1) {
      if (auto* session = static_cast<Session*>(SSL_get_app_data(ssl)))
        session->set_replay_key(std::string(reinterpret_cast<char*>(md), md_len));
    }
  }
  const CertGroup* group = self->store_->select(name, self->config_.require_sni);
  if (!group) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
  }
  size_t index = static_cast<size_t>(group - self->store_->groups().data());
  if (index >= self->groups_.size()) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  if (SSL_get_SSL_CTX(ssl) != self->groups_[index].get())
    SSL_set_SSL_CTX(ssl, self->groups_[index].get());
  return SSL_CLIENT_HELLO_SUCCESS;
}

int ServerContext::on_allow_early_data(SSL* ssl, void* arg) {
  auto* self = static_cast<ServerContext*>(arg);
  auto* session = static_cast<Session*>(SSL_get_app_data(ssl));
  if (!session || session->replay_key().empty()) return 0;
  return self->replays_->first_use(session->replay_key()) ? 1 : 0;
}

int ServerContext::on_status_request(SSL* ssl, void* arg) {
  auto* self = static_cast<ServerContext*>(arg);
  // The certificate this handshake got (RSA or ECDSA) is one of the store's: staple its
  // response when it has a verified, current one.
  X509* leaf = SSL_get_certificate(ssl);
  for (const auto& cert : self->store_->certificates()) {
    if (cert->leaf.get() != leaf || cert->ocsp_der.empty()) continue;
    if (std::chrono::system_clock::now() >= cert->ocsp_next_update) {
      // Went stale while served: a client that insists on a staple would fail on this one.
      if (!self->stale_ocsp_logged_) {
        self->stale_ocsp_logged_ = true;
        LOG_WARN("tls: the OCSP response of {} is past its nextUpdate: no longer stapled",
                 cert->chain_file);
      }
      return SSL_TLSEXT_ERR_NOACK;
    }
    auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(cert->ocsp_der.size()));
    if (!copy) return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, cert->ocsp_der.data(), cert->ocsp_der.size());
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(cert->ocsp_der.size()));
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int ServerContext::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                           const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<ServerContext*>(arg);
  unsigned char* selected = nullptr;
  // Our preference order wins.
  if (SSL_select_next_proto(
          &selected, outlen, reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
          static_cast<unsigned>(self->alpn_wire_.size()), in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // no protocol in common (RFC 7301 §3.2)
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// ---- client ----

ClientContext::~ClientContext() {
  for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
}

namespace {
void free_session_key(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::string*>(ptr);
}
// The endpoint key of a client SSL (a std::string it owns), for the new-session callback.
int client_ex_index() {
  static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_session_key);
  return index;
}
int client_ctx_ex_index() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
}  // namespace

Result<std::shared_ptr<ClientContext>> ClientContext::create(const ClientConfig& config) {
  std::shared_ptr<ClientContext> c(new ClientContext(config));
  c->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = c->ctx_.get();
  if (!ctx) return Status::error(openssl_errors("cannot make a TLS context"));
  if (Status s = common_setup(ctx, config.min_version, config.max_version); !s) return s;
  if (config.ktls && kernel_tls_available()) SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
  if (config.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    int ok = config.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                               : SSL_CTX_load_verify_locations(ctx, config.ca.c_str(), nullptr);
    if (ok != 1)
      return Status::error(
          openssl_errors(fmt::format("ca {}", config.ca.empty() ? "(system)" : config.ca)));
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!config.certificate_chain.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, config.certificate_chain.c_str()) != 1)
      return Status::error(
          openssl_errors(fmt::format("certificate_chain {}", config.certificate_chain)));
    if (SSL_CTX_use_PrivateKey_file(ctx, config.private_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return Status::error(openssl_errors(fmt::format("private_key {}", config.private_key)));
    if (SSL_CTX_check_private_key(ctx) != 1)
      return Status::error(
          openssl_errors(fmt::format("private_key {} does not match certificate_chain {}",
                                     config.private_key, config.certificate_chain)));
  }
  c->alpn_wire_ = alpn_wire(config.alpn);
  if (!c->alpn_wire_.empty())
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(c->alpn_wire_.data()),
                            static_cast<unsigned>(c->alpn_wire_.size()));
  if (config.session_resumption) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &ClientContext::on_new_session);
    SSL_CTX_set_ex_data(ctx, client_ctx_ex_index(), c.get());
  } else {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  return c;
}

std::unique_ptr<Session> ClientContext::new_session(int fd, std::string_view host,
                                                    const net::Address& address,
                                                    std::string_view alpn) {
  SSL* ssl = SSL_new(ctx_.get());
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  auto s = std::make_unique<Session>(ssl, Session::Side::kClient, shared_from_this());
  // SSL_set_alpn_protos returns 0 on success.
  if (!alpn.empty() && SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn.data()),
                                           static_cast<unsigned>(alpn.size())) != 0) {
    ERR_clear_error();
    return nullptr;
  }
  std::string name = !config_.sni.empty() ? config_.sni : std::string(host);
  std::string ip = address.ip_string();
  if (!name.empty()) {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    if (config_.verify) SSL_set1_host(ssl, name.c_str());
  } else if (config_.verify) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip.c_str());
  }
  if (config_.session_resumption) {
    std::string key = fmt::format("{}|{}", name, address.to_string());
    auto it = sessions_.find(key);
    if (it != sessions_.end()) SSL_set_session(ssl, it->second);
    auto* stored = new std::string(std::move(key));
    SSL_set_ex_data(ssl, client_ex_index(), stored);
  }
  if (!s->attach(fd)) return nullptr;
  return s;
}

int ClientContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self =
      static_cast<ClientContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), client_ctx_ex_index()));
  auto* key = static_cast<std::string*>(SSL_get_ex_data(ssl, client_ex_index()));
  if (!self || !key) return 0;
  auto [it, inserted] = self->sessions_.try_emplace(*key, session);
  if (!inserted) {
    SSL_SESSION_free(it->second);
    it->second = session;
  } else if (self->sessions_.size() > kMaxClientSessions) {
    // Endpoints come and go (DNS): forget some other endpoint's session, never grow.
    auto victim = it == self->sessions_.begin() ? std::next(it) : self->sessions_.begin();
    SSL_SESSION_free(victim->second);
    self->sessions_.erase(victim);
  }
  return 1;  // we keep the reference
}

}  // namespace sluice::tls
