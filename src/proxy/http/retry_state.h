// RetryState: the pure decision whether, and when, a failed try of a request goes again.
// It knows the route's retry policy, what the request allows (idempotent method, body still
// in the replay buffer) and how many tries were made; the caller passes in what it cannot
// know itself (the retry budget's admission, a random value for the jitter). No I/O, no
// clock. Owned by the Stream; loop thread only.
#pragma once

#include <cstdint>

#include "base/units.h"
#include "proxy/http/proxy_error.h"
#include "proxy/http/route_config.h"

namespace sluice::proxy::http {

// What happened to the try, besides its ProxyError.
struct TryOutcome {
  ProxyError error;
  bool reused_connection = false;  // the try went out on a pooled keep-alive connection
  bool response_started = false;   // a response byte arrived
  bool closed_by_sluice = false;   // sluice closed the connection (its address departed)
  // The response head went on to the client: nothing can be tried again. Bytes of a head
  // still being read, an interim 1xx or an invalid response do not count.
  bool response_committed = false;
  // The upstream did not process the request (HTTP/2 REFUSED_STREAM, or a stream above a
  // GOAWAY's last stream id): it may go again whatever its method (RFC 9113 §8.7).
  bool refused = false;
  // The grpc-status of a trailers-only gRPC answer (-1: none).
  int grpc_status = -1;
};

enum class RetryVerdict {
  kGiveUp,
  // At once, to the same endpoint, outside the budget: on a fresh connection (a stale
  // keep-alive one failed), or on any (HTTP/2: the upstream refused the stream).
  kResendFresh,
  kRetry,  // after `after`, on an endpoint not tried yet where possible
};

struct RetryDecision {
  RetryVerdict verdict = RetryVerdict::kGiveUp;
  Duration after{0};
};

class RetryState {
 public:
  RetryState(const RetryPolicy& policy, bool idempotent_method)
      : policy_(&policy), idempotent_(idempotent_method) {}

  // The body outgrew the replay buffer: what was sent cannot be re-sent.
  void set_not_replayable() { replayable_ = false; }
  bool replayable() const { return replayable_; }
  // The request switched to a tunnel, or its response was committed: no more tries.
  uint32_t retries() const { return retries_; }

  // A reused connection that failed before any response byte most likely crossed the
  // upstream's keep-alive close: the request may go again once, at once, on a fresh
  // connection (RFC 9112 §9.3.1), when it can safely be sent twice.
  bool stale_resend_allowed(const TryOutcome& t) const;
  // Whether a try that meets a stale connection could still go again that way.
  bool stale_resend_possible() const {
    return !stale_resend_used_ && replayable_ && (idempotent_ || policy_->allow_non_idempotent);
  }
  // A refused request goes again, a few times, while its body can be re-sent.
  bool refused_resend_allowed(const TryOutcome& t) const;
  static constexpr uint32_t kMaxRefusedResends = 3;
  // Whether the policy covers this failure with a retry (the budget not yet asked).
  bool policy_allows(const TryOutcome& t) const;
  // The decision. `admitted`: the cluster's retry budget allowed one more (asked only when
  // policy_allows() said yes). `jitter` in [0, 1) scales the backoff to 50-100%.
  RetryDecision on_failure(const TryOutcome& t, bool admitted, double jitter);
  // base·2^(n-1), capped at backoff_max, then scaled to 50-100% by `jitter`.
  Duration backoff(uint32_t retry, double jitter) const;

 private:
  const RetryPolicy* policy_;
  bool idempotent_;
  bool replayable_ = true;
  bool stale_resend_used_ = false;
  uint32_t refused_resends_ = 0;
  uint32_t retries_ = 0;
};

}  // namespace sluice::proxy::http
