#include "proxy/http/proxy_error.h"

#include "net/connect.h"

namespace sluice::proxy::http {

int ProxyError::status() const {
  switch (kind) {
    case ErrorKind::kConnectFailure:
    case ErrorKind::kConnectTimeout:
    case ErrorKind::kReset:
    case ErrorKind::kProtocol:
    case ErrorKind::kNotReplayable:
      return 502;
    case ErrorKind::kRetryableStatus:
      return code;
    case ErrorKind::kTimeout:
    case ErrorKind::kRouteTimeout:
      return 504;
    case ErrorKind::kPoolOverflow:
    case ErrorKind::kPoolTimeout:
    case ErrorKind::kPortsExhausted:
    case ErrorKind::kUnknownCluster:
    case ErrorKind::kOverflowActiveRequests:
    case ErrorKind::kNoHealthyUpstream:
      return 503;
    case ErrorKind::kNoRoute:
      return 404;
    case ErrorKind::kConnectNotAllowed:
      return 405;
    case ErrorKind::kHeaderTimeout:
    case ErrorKind::kBodyTimeout:
      return 408;
    case ErrorKind::kBadRequest:
      return code >= 400 && code < 600 ? code : 400;
    case ErrorKind::kBodyTooLarge:
      return 413;
    case ErrorKind::kTooEarly:
      return 425;
    case ErrorKind::kDownstreamReset:
      return 0;
  }
  return 502;
}

std::optional<ResponseFlag> ProxyError::flag() const {
  switch (kind) {
    case ErrorKind::kConnectFailure:
    case ErrorKind::kConnectTimeout:
      return ResponseFlag::kUpstreamConnectFailure;
    case ErrorKind::kReset:
      return ResponseFlag::kUpstreamResetBeforeResponse;
    case ErrorKind::kTimeout:
    case ErrorKind::kRouteTimeout:
      return ResponseFlag::kUpstreamTimeout;
    case ErrorKind::kProtocol:
      return ResponseFlag::kUpstreamProtocolError;
    case ErrorKind::kPoolOverflow:
      return ResponseFlag::kPoolOverflow;
    case ErrorKind::kPoolTimeout:
      return ResponseFlag::kPoolTimeout;
    case ErrorKind::kPortsExhausted:
      return ResponseFlag::kUpstreamPortsExhausted;
    case ErrorKind::kNoRoute:
      return ResponseFlag::kNoRoute;
    case ErrorKind::kOverflowActiveRequests:
      return ResponseFlag::kOverflowActiveRequests;
    case ErrorKind::kNoHealthyUpstream:
      return ResponseFlag::kNoHealthyUpstream;
    case ErrorKind::kNotReplayable:
      return ResponseFlag::kRequestNotReplayable;
    case ErrorKind::kHeaderTimeout:
      return ResponseFlag::kDownstreamHeaderTimeout;
    case ErrorKind::kBodyTimeout:
      return ResponseFlag::kDownstreamBodyTimeout;
    case ErrorKind::kBadRequest:
      return ResponseFlag::kDownstreamProtocolError;
    case ErrorKind::kBodyTooLarge:
      return ResponseFlag::kRequestTooLarge;
    case ErrorKind::kDownstreamReset:
      return ResponseFlag::kDownstreamReset;
    case ErrorKind::kRetryableStatus:
    case ErrorKind::kUnknownCluster:
    case ErrorKind::kConnectNotAllowed:
    case ErrorKind::kTooEarly:
      return std::nullopt;
  }
  return std::nullopt;
}

std::string_view ProxyError::summary() const {
  switch (kind) {
    case ErrorKind::kConnectFailure:
    case ErrorKind::kConnectTimeout:
      return "upstream connect error";
    case ErrorKind::kReset:
      return "upstream reset before the response";
    case ErrorKind::kTimeout:
      return "upstream timed out";
    case ErrorKind::kProtocol:
      return "invalid response from upstream";
    case ErrorKind::kRetryableStatus:
      return "upstream error status";
    case ErrorKind::kPoolOverflow:
      return "upstream connection pool overflow";
    case ErrorKind::kPoolTimeout:
      return "timed out waiting for an upstream connection";
    case ErrorKind::kPortsExhausted:
      return "no local port left for an upstream connection";
    case ErrorKind::kNoRoute:
      return "no route matches this request";
    case ErrorKind::kUnknownCluster:
      return "the route's cluster is unknown";
    case ErrorKind::kConnectNotAllowed:
      return "CONNECT is not enabled on this listener";
    case ErrorKind::kOverflowActiveRequests:
      return "too many active requests";
    case ErrorKind::kNoHealthyUpstream:
      return "no healthy endpoint";
    case ErrorKind::kRouteTimeout:
      return "upstream did not answer in time";
    case ErrorKind::kNotReplayable:
      return "the request body outgrew the replay buffer before a retry";
    case ErrorKind::kTooEarly:
      return "this request may not be sent in TLS early data: send it again after the handshake";
    case ErrorKind::kHeaderTimeout:
      return "request head not received in time";
    case ErrorKind::kBodyTimeout:
      return "request body stalled";
    case ErrorKind::kBadRequest:
      return "bad request";
    case ErrorKind::kBodyTooLarge:
      return "request body too large";
    case ErrorKind::kDownstreamReset:
      return "client reset";
  }
  return "error";
}

void ProxyError::append_client_body(bool full_detail, std::string& out) const {
  if (full_detail && !detail.empty()) {
    // The detail often begins with the summary already ("upstream connect error: ...").
    if (detail.substr(0, summary().size()) != summary()) {
      out += summary();
      out += ": ";
    }
    out += detail;
    out += '\n';
    return;
  }
  out += summary();
  if (kind == ErrorKind::kConnectTimeout) {
    out += ": timed out";
  } else if (code > 0 && (kind == ErrorKind::kConnectFailure || kind == ErrorKind::kReset)) {
    out += ": ";
    out += net::error_text(code);
  }
  out += '\n';
}

}  // namespace sluice::proxy::http
