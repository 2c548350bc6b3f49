// ProxyError: why sluice could not forward a request, as one value. Its side says who failed
// (the client, the upstream, or sluice's own policy), its kind what happened; from those two
// follow the status the client gets, the response flag, the text of the client's body and
// whether another try may help. `detail` is the full story for the log (addresses, errno
// text); it is never sent to the client unless the listener asks for full detail.
// Plain value, no I/O; `detail` views a string that outlives the error's use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/http/request_log.h"

namespace sluice::proxy::http {

enum class ErrorSide : uint8_t { kDownstream, kUpstream, kLocal };

enum class ErrorKind : uint8_t {
  // kUpstream: one try against one endpoint failed.
  kConnectFailure,   // the connection could not be opened (refused, unreachable, ...)
  kConnectTimeout,   // ... within connect_timeout
  kReset,            // the connection failed or closed before the whole response
  kTimeout,          // per-try or upstream idle timeout
  kProtocol,         // the response was malformed
  kRetryableStatus,  // a complete response whose status the retry policy covers
  kPoolOverflow,     // the endpoint's pool and its queue are full
  kPoolTimeout,      // no pooled connection became free in time
  kPortsExhausted,   // no local port left for a new connection
  // kLocal: sluice's own decision.
  kNoRoute,
  kUnknownCluster,
  kConnectNotAllowed,  // CONNECT on a listener without allow_connect
  kOverflowActiveRequests,
  kNoHealthyUpstream,
  kRouteTimeout,   // the route's whole-request timeout
  kNotReplayable,  // a retry was due but the body outgrew the replay buffer
  kTooEarly,       // a request that is not safe to replay came in TLS early data (425)
  // kDownstream: the client.
  kHeaderTimeout,
  kBodyTimeout,
  kBadRequest,  // a parse error; `code` is the status to answer (400, 414, 431, ...)
  kBodyTooLarge,
  kDownstreamReset,
};

struct ProxyError {
  ErrorSide side = ErrorSide::kLocal;
  ErrorKind kind = ErrorKind::kNoRoute;
  // Whether another try (elsewhere, or on a fresh connection) may succeed.
  bool retryable = false;
  // errno for connect failures and resets; the status for kBadRequest and
  // kRetryableStatus; 0 otherwise.
  int code = 0;
  std::string_view detail;

  static constexpr ProxyError upstream(ErrorKind kind, int code = 0, std::string_view detail = {}) {
    bool retryable = kind != ErrorKind::kPoolOverflow && kind != ErrorKind::kPoolTimeout &&
                     kind != ErrorKind::kPortsExhausted;
    return ProxyError{ErrorSide::kUpstream, kind, retryable, code, detail};
  }
  static constexpr ProxyError local(ErrorKind kind, std::string_view detail = {}) {
    return ProxyError{ErrorSide::kLocal, kind, false, 0, detail};
  }
  static constexpr ProxyError downstream(ErrorKind kind, int code = 0,
                                         std::string_view detail = {}) {
    return ProxyError{ErrorSide::kDownstream, kind, false, code, detail};
  }

  // The status of the local reply this error turns into (0: none, the client is gone).
  int status() const;
  // The response flag it sets (nullopt: none of its own).
  std::optional<ResponseFlag> flag() const;
  // A short public description: "upstream connect error".
  std::string_view summary() const;
  // The client's body (ends with a newline): the summary and, for errno-carrying errors, the
  // cause ("upstream connect error: connection refused"); with `full_detail`, `detail` too.
  void append_client_body(bool full_detail, std::string& out) const;
};

}  // namespace sluice::proxy::http
