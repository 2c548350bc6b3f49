#include "proxy/http/retry_state.h"

#include <algorithm>

namespace sluice::proxy::http {

bool RetryState::stale_resend_allowed(const TryOutcome& t) const {
  return t.reused_connection && !t.response_started && t.error.kind == ErrorKind::kReset &&
         t.error.retryable && !t.closed_by_sluice && stale_resend_possible();
}

bool RetryState::refused_resend_allowed(const TryOutcome& t) const {
  return t.refused && !t.response_started && replayable_ && refused_resends_ < kMaxRefusedResends;
}

bool RetryState::policy_allows(const TryOutcome& t) const {
  const RetryPolicy& p = *policy_;
  if (t.response_committed) return false;
  if (!t.error.retryable) return false;  // e.g. the pool is full: do not add load
  if (retries_ >= p.num_retries || !replayable_) return false;
  if (t.grpc_status >= 0) {
    // Naming gRPC statuses opts every call in, whatever its method (gRPC calls are POSTs).
    return std::find(p.grpc_statuses.begin(), p.grpc_statuses.end(), t.grpc_status) !=
           p.grpc_statuses.end();
  }
  // Nothing reached the upstream after a failed connect, so any method may go again.
  bool connect =
      t.error.kind == ErrorKind::kConnectFailure || t.error.kind == ErrorKind::kConnectTimeout;
  if (!connect && !p.allow_non_idempotent && !idempotent_) return false;
  int status = 0;
  switch (t.error.kind) {
    case ErrorKind::kConnectFailure:
    case ErrorKind::kConnectTimeout:
      return p.on_connect_failure || p.on_gateway_error;
    case ErrorKind::kReset:
    case ErrorKind::kProtocol:
      return p.on_reset || p.on_gateway_error;
    case ErrorKind::kTimeout:
      status = 504;
      break;
    case ErrorKind::kRetryableStatus:
      status = t.error.code;
      break;
    default:
      return false;
  }
  if (status >= 500 && p.on_5xx) return true;
  if ((status == 502 || status == 503 || status == 504) && p.on_gateway_error) return true;
  return std::find(p.statuses.begin(), p.statuses.end(), status) != p.statuses.end();
}

Duration RetryState::backoff(uint32_t retry, double jitter) const {
  const RetryPolicy& p = *policy_;
  Duration d = p.backoff_base * (1u << std::min<uint32_t>(retry == 0 ? 0 : retry - 1, 16));
  if (d > p.backoff_max) d = p.backoff_max;
  jitter = std::clamp(jitter, 0.0, 1.0);
  return Duration(static_cast<int64_t>(static_cast<double>(d.count()) * (0.5 + 0.5 * jitter)));
}

RetryDecision RetryState::on_failure(const TryOutcome& t, bool admitted, double jitter) {
  if (refused_resend_allowed(t)) {
    ++refused_resends_;
    return {RetryVerdict::kResendFresh, Duration(0)};
  }
  if (stale_resend_allowed(t)) {
    stale_resend_used_ = true;
    return {RetryVerdict::kResendFresh, Duration(0)};
  }
  if (!admitted || !policy_allows(t)) return {};
  ++retries_;
  return {RetryVerdict::kRetry, backoff(retries_, jitter)};
}

}  // namespace sluice::proxy::http
