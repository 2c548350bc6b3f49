// Helpers around OpenSSL's thread-local error queue, its time type and names, shared by the files
// of this layer. Any thread.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <string>

namespace sluice::tls {

// The reasons OpenSSL queued on this thread ("certificate verify error"), "; "-separated, oldest
// first ("" when none), and the queue emptied so that the next call starts clean.
inline std::string take_openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason ? reason : "unknown error";
  }
  return out;
}

inline std::optional<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// "CN=www.example.com,O=Example" (RFC 2253), for messages.
inline std::string subject_of(const X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  std::string out = "?";
  if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    out.assign(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  return out;
}

}  // namespace sluice::tls
