#include "tls/ocsp.h"

#include <fmt/format.h>
#include <openssl/ocsp.h>
#include <openssl/x509_vfy.h>

#include <memory>

#include "base/log.h"
#include "tls/openssl_util.h"

namespace sluice::tls {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using ResponsePtr = std::unique_ptr<OCSP_RESPONSE, Deleter<OCSP_RESPONSE, OCSP_RESPONSE_free>>;
using BasicPtr = std::unique_ptr<OCSP_BASICRESP, Deleter<OCSP_BASICRESP, OCSP_BASICRESP_free>>;
using CertIdPtr = std::unique_ptr<OCSP_CERTID, Deleter<OCSP_CERTID, OCSP_CERTID_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;

void free_x509_stack(STACK_OF(X509) * s) {
  sk_X509_free(s);  // the certificates belong to the caller
}
using StackPtr = std::unique_ptr<STACK_OF(X509), Deleter<STACK_OF(X509), free_x509_stack>>;

std::string format_time(std::chrono::system_clock::time_point t) {
  return log::format_time(t);
}

}  // namespace

Result<OcspStatus> check_ocsp_response(std::string_view der, X509* leaf, X509* issuer,
                                       std::chrono::system_clock::time_point now) {
  ERR_clear_error();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ResponsePtr response(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (!response || p != reinterpret_cast<const unsigned char*>(der.data() + der.size())) {
    take_openssl_errors();
    return Status::error("not a DER-encoded OCSP response");
  }
  int status = OCSP_response_status(response.get());
  if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    return Status::error(fmt::format("the responder answered '{}', not successful",
                                     OCSP_response_status_str(status)));
  }
  BasicPtr basic(OCSP_response_get1_basic(response.get()));
  if (!basic) {
    take_openssl_errors();
    return Status::error("not a basic OCSP response");
  }

  // The issuer is the trust anchor (a partial chain): the signer is the issuer itself or a
  // responder certificate it issued; OCSP_NOEXPLICIT refuses any other signer that merely
  // chains to a trusted root.
  StorePtr store(X509_STORE_new());
  StackPtr untrusted(sk_X509_new_null());
  if (!store || !untrusted || X509_STORE_add_cert(store.get(), issuer) != 1 ||
      X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN) != 1 ||
      sk_X509_push(untrusted.get(), issuer) <= 0) {
    return Status::error(fmt::format("cannot set up verification: {}", take_openssl_errors()));
  }
  if (OCSP_basic_verify(basic.get(), untrusted.get(), store.get(), OCSP_NOEXPLICIT) != 1) {
    return Status::error(fmt::format("its signature does not verify against the issuer {} ({})",
                                     subject_of(issuer), take_openssl_errors()));
  }

  CertIdPtr id(OCSP_cert_to_id(nullptr, leaf, issuer));
  int cert_status = -1, reason = -1;
  ASN1_GENERALIZEDTIME *revoked_at = nullptr, *this_update = nullptr, *next_update = nullptr;
  if (!id || OCSP_resp_find_status(basic.get(), id.get(), &cert_status, &reason, &revoked_at,
                                   &this_update, &next_update) != 1) {
    take_openssl_errors();
    return Status::error(
        fmt::format("it has no status for this certificate ({})", subject_of(leaf)));
  }
  if (cert_status != V_OCSP_CERTSTATUS_GOOD) {
    return Status::error(
        fmt::format("the certificate's status is {}, not good", OCSP_cert_status_str(cert_status)));
  }
  OcspStatus out;
  auto this_time = to_time_point(this_update);
  if (!this_time) return Status::error("its thisUpdate is not a valid time");
  out.this_update = *this_time;
  if (out.this_update > now + kOcspClockSkew) {
    return Status::error(
        fmt::format("its thisUpdate {} is in the future", format_time(out.this_update)));
  }
  if (next_update == nullptr) {
    return Status::error("it has no nextUpdate, so nothing says until when it holds");
  }
  auto next_time = to_time_point(next_update);
  if (!next_time) return Status::error("its nextUpdate is not a valid time");
  out.next_update = *next_time;
  if (out.next_update <= now) {
    return Status::error(
        fmt::format("it is stale: its nextUpdate {} has passed", format_time(out.next_update)));
  }
  return out;
}

}  // namespace sluice::tls
