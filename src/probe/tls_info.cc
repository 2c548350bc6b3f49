#include "probe/tls_info.h"

#include <arpa/inet.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

#include <fmt/format.h>

#include "tls/openssl_util.h"

namespace sluice::probe {
namespace {

std::string name_line(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return "?";
  std::string out = "?";
  if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    out.assign(data, n > 0 ? static_cast<size_t>(n) : 0);
  }
  BIO_free(bio);
  return out;
}

std::string time_text(const ASN1_TIME* t) {
  auto tp = tls::to_time_point(t);
  if (!tp) return "";
  std::time_t secs = std::chrono::system_clock::to_time_t(*tp);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string ip_text(const ASN1_OCTET_STRING* ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  int len = ASN1_STRING_length(ip);
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
  if (family == 0 || !inet_ntop(family, data, buf, sizeof buf)) return "?";
  return buf;
}

CertSummary summarize(X509* cert) {
  CertSummary c;
  c.subject = name_line(X509_get_subject_name(cert));
  c.issuer = name_line(X509_get_issuer_name(cert));
  c.not_after = time_text(X509_get0_notAfter(cert));
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type == GEN_DNS) {
        c.dns.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                           static_cast<size_t>(ASN1_STRING_length(g->d.dNSName)));
      } else if (g->type == GEN_IPADD) {
        c.ips.push_back(ip_text(g->d.iPAddress));
      }
    }
    GENERAL_NAMES_free(sans);
  }
  return c;
}

struct OcspResponseDeleter {
  void operator()(OCSP_RESPONSE* r) const { OCSP_RESPONSE_free(r); }
};
struct OcspBasicDeleter {
  void operator()(OCSP_BASICRESP* b) const { OCSP_BASICRESP_free(b); }
};

// The single response about `leaf`: the one whose serial number is the leaf's (the issuer
// name and key hashes are checked by the signature verification, which needs the issuer).
OCSP_SINGLERESP* find_single(OCSP_BASICRESP* basic, X509* leaf) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(leaf);
  for (int i = 0; i < OCSP_resp_count(basic); ++i) {
    OCSP_SINGLERESP* single = OCSP_resp_get0(basic, i);
    ASN1_INTEGER* id_serial = nullptr;
    if (OCSP_id_get0_info(nullptr, nullptr, nullptr, &id_serial,
                          const_cast<OCSP_CERTID*>(OCSP_SINGLERESP_get0_id(single))) == 1 &&
        ASN1_INTEGER_cmp(id_serial, serial) == 0) {
      return single;
    }
  }
  return nullptr;
}

OcspSummary read_ocsp(SSL* ssl, X509* leaf, STACK_OF(X509) * chain) {
  OcspSummary o;
  const unsigned char* p = nullptr;
  long len = SSL_get_tlsext_status_ocsp_resp(ssl, &p);
  if (len <= 0 || p == nullptr) return o;
  o.status = "invalid";
  std::unique_ptr<OCSP_RESPONSE, OcspResponseDeleter> resp(d2i_OCSP_RESPONSE(nullptr, &p, len));
  if (!resp) {
    o.detail = "not a DER OCSP response";
    return o;
  }
  int rs = OCSP_response_status(resp.get());
  if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    o.detail = fmt::format("responder status {}", OCSP_response_status_str(rs));
    return o;
  }
  std::unique_ptr<OCSP_BASICRESP, OcspBasicDeleter> basic(OCSP_response_get1_basic(resp.get()));
  if (!basic) {
    o.detail = "not a basic OCSP response";
    return o;
  }
  OCSP_SINGLERESP* single = leaf ? find_single(basic.get(), leaf) : nullptr;
  if (!single) {
    o.detail = "no status for the server's certificate";
    return o;
  }
  int reason = 0;
  ASN1_GENERALIZEDTIME* revoked_at = nullptr;
  ASN1_GENERALIZEDTIME* this_update = nullptr;
  ASN1_GENERALIZEDTIME* next_update = nullptr;
  int status = OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);
  o.this_update = time_text(this_update);
  o.next_update = time_text(next_update);
  switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
      o.status = "good";
      break;
    case V_OCSP_CERTSTATUS_REVOKED:
      o.status = "revoked";
      o.detail = fmt::format("revoked at {}", time_text(revoked_at));
      if (reason >= 0) o.detail += fmt::format(" ({})", OCSP_crl_reason_str(reason));
      break;
    default:
      o.status = "unknown";
      break;
  }
  X509_STORE* store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
  o.signature_ok = OCSP_basic_verify(basic.get(), chain, store, 0) == 1;
  ERR_clear_error();
  return o;
}

}  // namespace

void describe_handshake(SSL* ssl, TlsPhase& phase) {
  phase.version = SSL_get_version(ssl);
  const char* cipher = SSL_get_cipher_name(ssl);
  phase.cipher = cipher ? cipher : "";
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn) phase.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  phase.resumed = SSL_session_reused(ssl) == 1;

  X509* leaf = SSL_get0_peer_certificate(ssl);
  // The client side's chain starts with the leaf (SSL_get_peer_cert_chain(3)).
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  if (chain && sk_X509_num(chain) > 0) {
    for (int i = 0; i < sk_X509_num(chain); ++i) {
      phase.chain.push_back(summarize(sk_X509_value(chain, i)));
    }
  } else if (leaf) {
    phase.chain.push_back(summarize(leaf));
  }
  phase.ocsp = read_ocsp(ssl, leaf, chain);

  long result = SSL_get_verify_result(ssl);
  if (!leaf) {
    phase.verify_error = "certificate verify failed: the server sent no certificate";
  } else if (result != X509_V_OK) {
    phase.verify_error =
        fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(result));
  }
  ERR_clear_error();
}

}  // namespace sluice::probe
