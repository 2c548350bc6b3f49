#include "tls/session.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <cerrno>

#include <fmt/format.h>

namespace sluice::tls {
namespace {

std::string x509_name_line(X509_NAME* name) {
  if (!name) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(bio);
  return out;
}

}  // namespace

Session::Session(SSL* ssl, Side side, std::shared_ptr<const void> owner)
    : ssl_(ssl), side_(side), owner_(std::move(owner)) {
  if (side_ == Side::kServer) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

Session::~Session() {
  SSL_free(ssl_);
}

bool Session::attach(int fd) {
  return SSL_set_fd(ssl_, fd) == 1;
}

void Session::set_failure() {
  // The first error on the thread's queue is the cause; the ones after it are context.
  unsigned long e = ERR_get_error();
  if (side_ == Side::kClient && SSL_get_verify_mode(ssl_) != SSL_VERIFY_NONE &&
      SSL_get_verify_result(ssl_) != X509_V_OK) {
    failure_ = verify_failure();
  } else if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    failure_ = reason ? reason : fmt::format("error {:x}", e);
  } else {
    failure_ = "protocol error";
  }
  ERR_clear_error();
}

ssize_t Session::io_error(int ret) {
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL: {
      int saved = errno;
      ERR_clear_error();
      if (saved == 0) return 0;  // end of stream without close_notify
      failure_ = std::string(strerror(saved));
      errno = saved;
      return -1;
    }
    default:
      set_failure();
      errno = EPROTO;
      return -1;
  }
}

net::Transport::Step Session::handshake() {
  if (established_) return Step::kDone;
  ERR_clear_error();
  errno = 0;  // SSL_ERROR_SYSCALL with errno 0 means the peer closed
  while (read_early_) {
    // Early data comes before the client's Finished: read it first (this also sends our
    // flight), then complete the handshake below.
    char buf[4096];
    size_t n = 0;
    int r = SSL_read_early_data(ssl_, buf, sizeof(buf), &n);
    if (n > 0) {
      if (early_.size() + n > early_limit_) {
        failure_ = "too much early data";
        return Step::kFailed;
      }
      early_.append(buf, n);
    }
    if (r == SSL_READ_EARLY_DATA_SUCCESS) continue;
    if (r == SSL_READ_EARLY_DATA_FINISH) {
      read_early_ = false;
      break;
    }
    switch (SSL_get_error(ssl_, 0)) {
      case SSL_ERROR_WANT_READ:
        return Step::kWantRead;
      case SSL_ERROR_WANT_WRITE:
        return Step::kWantWrite;
      default:
        set_failure();
        return Step::kFailed;
    }
  }
  // Early data goes up as such before the handshake completes, even when the client's
  // Finished is already here: what arrived as early data is judged as early data. The
  // owner takes it and calls again.
  if (!early_.empty()) return Step::kWantRead;
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    established_ = true;
    return Step::kDone;
  }
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return Step::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Step::kWantWrite;
    case SSL_ERROR_SYSCALL: {
      int saved = errno;
      ERR_clear_error();
      closed_in_handshake_ = saved == 0 || saved == ECONNRESET;
      failure_ = saved == 0 ? "connection closed during the handshake"
                            : fmt::format("handshake: {}", strerror(saved));
      return Step::kFailed;
    }
    case SSL_ERROR_ZERO_RETURN:
      closed_in_handshake_ = true;
      failure_ = "connection closed during the handshake";
      return Step::kFailed;
    default:
      set_failure();
      return Step::kFailed;
  }
}

ssize_t Session::read(char* data, size_t size) {
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int ret = SSL_read_ex(ssl_, data, size, &n);
  if (ret == 1) return static_cast<ssize_t>(n);
  return io_error(ret);
}

ssize_t Session::write(const char* data, size_t size) {
  if (size == 0) return 0;
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int ret = SSL_write_ex(ssl_, data, size, &n);
  if (ret == 1) return static_cast<ssize_t>(n);
  ssize_t r = io_error(ret);
  if (r == 0) {  // the peer closed while we write: like send() on a closed socket
    errno = EPIPE;
    return -1;
  }
  return r;
}

bool Session::take_early_data(std::string& out) {
  if (early_.empty()) return false;
  out += early_;
  early_.clear();
  return true;
}

bool Session::has_pending() const {
  return SSL_has_pending(ssl_) == 1;
}

bool Session::shutdown() {
  if (!established_ || shutdown_sent_) return true;
  ERR_clear_error();
  int r = SSL_shutdown(ssl_);  // sends close_notify; not waiting for the peer's
  if (r < 0 && SSL_get_error(ssl_, r) == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return false;  // the alert waits in OpenSSL's buffer; called again when writable
  }
  ERR_clear_error();
  shutdown_sent_ = true;
  return true;
}

const char* Session::version() const {
  return SSL_get_version(ssl_);
}

const char* Session::cipher() const {
  return SSL_get_cipher_name(ssl_);
}

std::string_view Session::sni() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name ? std::string_view(name) : std::string_view();
}

std::string_view Session::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
}

bool Session::resumed() const {
  return SSL_session_reused(ssl_) == 1;
}

bool Session::early_data_accepted() const {
  return SSL_get_early_data_status(ssl_) == SSL_EARLY_DATA_ACCEPTED;
}

std::string Session::verify_failure() const {
  long r = SSL_get_verify_result(ssl_);
  if (r == X509_V_OK) return {};
  return fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(r));
}

PeerIdentity Session::peer_identity() const {
  PeerIdentity id;
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return id;
  id.present = true;
  id.verified = SSL_get_verify_result(ssl_) == X509_V_OK;
  id.subject = x509_name_line(X509_get_subject_name(cert));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1) {
    id.sha256.reserve(md_len * 2);
    for (unsigned i = 0; i < md_len; ++i) id.sha256 += fmt::format("{:02x}", md[i]);
  }
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_URI && g->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = g->type == GEN_URI ? g->d.uniformResourceIdentifier : g->d.dNSName;
      std::string v(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
      (g->type == GEN_URI ? id.uris : id.dns).push_back(std::move(v));
    }
    GENERAL_NAMES_free(sans);
  }
  return id;
}

}  // namespace sluice::tls
