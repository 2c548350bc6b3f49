#include "proxy/http/retry_state.h"

#include <gtest/gtest.h>

namespace sluice::proxy::http {
namespace {

using std::chrono::milliseconds;
using K = ErrorKind;

TryOutcome failure(ErrorKind kind, int code = 0, bool reused = false, bool started = false) {
  return TryOutcome{ProxyError::upstream(kind, code), reused, started, false};
}

// A failure after the response head went on to the client.
TryOutcome committed(ErrorKind kind) {
  TryOutcome t = failure(kind, 0, false, true);
  t.response_committed = true;
  return t;
}

TEST(RetryState, PolicyCoversFailures) {
  struct Case {
    const char* name;
    RetryPolicy policy;
    bool idempotent;
    TryOutcome outcome;
    bool allowed;
  };
  RetryPolicy def;  // on_connect_failure only
  RetryPolicy on_reset;
  on_reset.on_reset = true;
  RetryPolicy gateway;
  gateway.on_connect_failure = false;
  gateway.on_gateway_error = true;
  RetryPolicy fives;
  fives.on_5xx = true;
  RetryPolicy listed;
  listed.statuses = {429};
  RetryPolicy none;
  none.num_retries = 0;
  RetryPolicy post_ok = on_reset;
  post_ok.allow_non_idempotent = true;
  const Case cases[] = {
      {"connect failure, default policy", def, true, failure(K::kConnectFailure), true},
      {"connect timeout, default policy", def, true, failure(K::kConnectTimeout), true},
      {"connect failure of a POST (nothing was sent)", def, false, failure(K::kConnectFailure),
       true},
      {"reset, default policy", def, true, failure(K::kReset), false},
      {"reset, on_reset", on_reset, true, failure(K::kReset), true},
      {"reset of a POST, on_reset", on_reset, false, failure(K::kReset), false},
      {"reset of a POST, allow_non_idempotent", post_ok, false, failure(K::kReset), true},
      {"protocol error, on_reset", on_reset, true, failure(K::kProtocol), true},
      {"reset, gateway errors", gateway, true, failure(K::kReset), true},
      {"connect failure, gateway errors", gateway, true, failure(K::kConnectFailure), true},
      {"timeout, gateway errors (504)", gateway, true, failure(K::kTimeout), true},
      {"timeout, default", def, true, failure(K::kTimeout), false},
      {"503 status, gateway errors", gateway, true, failure(K::kRetryableStatus, 503, false, true),
       true},
      {"500 status, gateway errors", gateway, true, failure(K::kRetryableStatus, 500, false, true),
       false},
      {"500 status, on_5xx", fives, true, failure(K::kRetryableStatus, 500, false, true), true},
      {"429 listed", listed, true, failure(K::kRetryableStatus, 429, false, true), true},
      {"pool overflow never", gateway, true, failure(K::kPoolOverflow), false},
      {"pool timeout never", gateway, true, failure(K::kPoolTimeout), false},
      {"no retries configured", none, true, failure(K::kConnectFailure), false},
      {"reset mid-response", on_reset, true, committed(K::kReset), false},
      {"protocol error after response bytes, on_reset", on_reset, true,
       failure(K::kProtocol, 0, false, true), true},
      {"reset after an interim 100, on_reset", on_reset, true, failure(K::kReset, 0, false, true),
       true},
  };
  for (const Case& c : cases) {
    RetryState r(c.policy, c.idempotent);
    EXPECT_EQ(r.policy_allows(c.outcome), c.allowed) << c.name;
  }
}

TEST(RetryState, CountsRetriesAndHonoursAdmission) {
  RetryPolicy p;
  p.num_retries = 2;
  RetryState r(p, true);
  auto f = failure(K::kConnectFailure);
  EXPECT_EQ(r.on_failure(f, /*admitted=*/false, 0.5).verdict, RetryVerdict::kGiveUp);
  EXPECT_EQ(r.retries(), 0u);
  EXPECT_EQ(r.on_failure(f, true, 0.5).verdict, RetryVerdict::kRetry);
  EXPECT_EQ(r.on_failure(f, true, 0.5).verdict, RetryVerdict::kRetry);
  EXPECT_EQ(r.on_failure(f, true, 0.5).verdict, RetryVerdict::kGiveUp);
  EXPECT_EQ(r.retries(), 2u);
}

TEST(RetryState, ReplayBufferGone) {
  RetryPolicy p;
  RetryState r(p, true);
  r.set_not_replayable();
  EXPECT_FALSE(r.policy_allows(failure(K::kConnectFailure)));
  EXPECT_FALSE(r.stale_resend_allowed(failure(K::kReset, 0, true)));
}

TEST(RetryState, Backoff) {
  RetryPolicy p;
  p.backoff_base = milliseconds(25);
  p.backoff_max = milliseconds(250);
  RetryState r(p, true);
  struct Case {
    uint32_t retry;
    double jitter;
    Duration want;
  };
  const Case cases[] = {
      {1, 1.0, milliseconds(25)},   {1, 0.0, Duration(milliseconds(25)) / 2},
      {2, 1.0, milliseconds(50)},   {3, 0.5, Duration(milliseconds(75))},
      {4, 1.0, milliseconds(200)},  {5, 1.0, milliseconds(250)},
      {40, 0.0, milliseconds(125)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(r.backoff(c.retry, c.jitter), c.want) << c.retry << " " << c.jitter;
  }
  // The decision carries the backoff of its retry.
  RetryPolicy q = p;
  q.num_retries = 3;
  RetryState s(q, true);
  auto f = failure(K::kConnectFailure);
  EXPECT_EQ(s.on_failure(f, true, 1.0).after, milliseconds(25));
  EXPECT_EQ(s.on_failure(f, true, 1.0).after, milliseconds(50));
  EXPECT_EQ(s.on_failure(f, true, 0.0).after, milliseconds(50));
}

TEST(RetryState, StaleKeepAliveResendOnce) {
  struct Case {
    const char* name;
    bool idempotent;
    bool allow_non_idempotent;
    TryOutcome outcome;
    RetryVerdict first;
  };
  TryOutcome closed_by_us = failure(K::kReset, 0, true);
  closed_by_us.closed_by_sluice = true;
  const Case cases[] = {
      {"reset on a reused connection", true, false, failure(K::kReset, 0, true),
       RetryVerdict::kResendFresh},
      {"reset on a fresh connection", true, false, failure(K::kReset), RetryVerdict::kGiveUp},
      {"reset after response bytes", true, false, failure(K::kReset, 0, true, true),
       RetryVerdict::kGiveUp},
      {"POST", false, false, failure(K::kReset, 0, true), RetryVerdict::kGiveUp},
      {"POST allowed", false, true, failure(K::kReset, 0, true), RetryVerdict::kResendFresh},
      {"timeout on a reused connection", true, false, failure(K::kTimeout, 0, true),
       RetryVerdict::kGiveUp},
      {"sluice closed it", true, false, closed_by_us, RetryVerdict::kGiveUp},
  };
  for (const Case& c : cases) {
    RetryPolicy p;
    p.num_retries = 0;
    p.allow_non_idempotent = c.allow_non_idempotent;
    RetryState r(p, c.idempotent);
    EXPECT_EQ(r.on_failure(c.outcome, false, 0).verdict, c.first) << c.name;
    // Only once per request.
    EXPECT_EQ(r.on_failure(c.outcome, false, 0).verdict, RetryVerdict::kGiveUp) << c.name;
  }
}

TEST(RetryState, RefusedStreamsGoAgainWhateverTheMethod) {
  RetryPolicy none;
  none.on_connect_failure = false;
  RetryState r(none, /*idempotent_method=*/false);
  TryOutcome refused = failure(K::kReset);
  refused.refused = true;
  for (uint32_t i = 0; i < RetryState::kMaxRefusedResends; ++i) {
    EXPECT_EQ(r.on_failure(refused, false, 0.5).verdict, RetryVerdict::kResendFresh);
  }
  // Bounded: an upstream that refuses everything does not hold the request forever.
  EXPECT_EQ(r.on_failure(refused, false, 0.5).verdict, RetryVerdict::kGiveUp);
  RetryState gone(none, false);
  gone.set_not_replayable();
  EXPECT_EQ(gone.on_failure(refused, false, 0.5).verdict, RetryVerdict::kGiveUp);
}

TEST(RetryState, GrpcStatusesRetryTrailersOnlyAnswers) {
  RetryPolicy p;
  p.grpc_statuses = {14};
  p.num_retries = 2;
  RetryState r(p, /*idempotent_method=*/false);  // gRPC calls are POSTs
  TryOutcome unavailable = failure(K::kRetryableStatus, 200, false, true);
  unavailable.grpc_status = 14;
  EXPECT_TRUE(r.policy_allows(unavailable));
  TryOutcome internal = unavailable;
  internal.grpc_status = 13;
  EXPECT_FALSE(r.policy_allows(internal));
  // A plain 200 without a gRPC status is no failure of any kind.
  EXPECT_FALSE(r.policy_allows(failure(K::kRetryableStatus, 200, false, true)));
  EXPECT_EQ(r.on_failure(unavailable, true, 0.5).verdict, RetryVerdict::kRetry);
}

}  // namespace
}  // namespace sluice::proxy::http
