// OCSP stapling: checks a DER OCSP response (RFC 6960) read from a file before it is handed
// to clients. A response that fails any check is not stapled: a client that requires a
// staple then refuses the certificate, which is louder than a wrong one, but a client that
// does not learns nothing false. Pure function of its inputs; any thread.
#pragma once

#include <openssl/x509.h>

#include <chrono>
#include <string_view>

#include "base/status.h"

namespace sluice::tls {

struct OcspStatus {
  std::chrono::system_clock::time_point this_update;
  std::chrono::system_clock::time_point next_update;
};

// The clock difference tolerated between the responder and this host for thisUpdate.
inline constexpr std::chrono::minutes kOcspClockSkew{5};

// Whether `der` is a response that may be stapled for `leaf` at time `now`: status
// successful; a basic response signed by `issuer` (the next certificate of the chain) or by
// a responder certificate that `issuer` issued for OCSP signing (RFC 6960 §4.2.2.2; the
// issuer is the only trust anchor needed, so no CA file is read); a single response for the
// leaf's certificate id whose status is good; thisUpdate not after now + kOcspClockSkew;
// nextUpdate present and after now. The error says which check failed.
Result<OcspStatus> check_ocsp_response(std::string_view der, X509* leaf, X509* issuer,
                                       std::chrono::system_clock::time_point now);

}  // namespace sluice::tls
