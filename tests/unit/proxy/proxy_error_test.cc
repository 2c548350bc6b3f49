#include "proxy/http/proxy_error.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace sluice::proxy::http {
namespace {

struct Case {
  ProxyError error;
  int status;
  std::optional<ResponseFlag> flag;
  const char* body;  // without full detail
};

TEST(ProxyError, DecidesStatusFlagAndBody) {
  using K = ErrorKind;
  using F = ResponseFlag;
  const Case cases[] = {
      {ProxyError::upstream(K::kConnectFailure, ECONNREFUSED, "connect to 10.0.0.1:80"), 502,
       F::kUpstreamConnectFailure, "upstream connect error: connection refused\n"},
      {ProxyError::upstream(K::kConnectTimeout, 0, "10.0.0.1:80"), 502, F::kUpstreamConnectFailure,
       "upstream connect error: timed out\n"},
      {ProxyError::upstream(K::kReset, ECONNRESET, "10.0.0.1:80"), 502,
       F::kUpstreamResetBeforeResponse,
       "upstream reset before the response: connection reset by peer\n"},
      {ProxyError::upstream(K::kReset, 0, "10.0.0.1:80 closed"), 502,
       F::kUpstreamResetBeforeResponse, "upstream reset before the response\n"},
      {ProxyError::upstream(K::kTimeout), 504, F::kUpstreamTimeout, "upstream timed out\n"},
      {ProxyError::upstream(K::kProtocol, 0, "bad chunk from 10.0.0.1:80"), 502,
       F::kUpstreamProtocolError, "invalid response from upstream\n"},
      {ProxyError::upstream(K::kPoolOverflow), 503, F::kPoolOverflow,
       "upstream connection pool overflow\n"},
      {ProxyError::upstream(K::kPoolTimeout), 503, F::kPoolTimeout,
       "timed out waiting for an upstream connection\n"},
      {ProxyError::local(K::kNoRoute), 404, F::kNoRoute, "no route matches this request\n"},
      {ProxyError::local(K::kOverflowActiveRequests), 503, F::kOverflowActiveRequests,
       "too many active requests\n"},
      {ProxyError::local(K::kConnectNotAllowed), 405, std::nullopt,
       "CONNECT is not enabled on this listener\n"},
      {ProxyError::local(K::kRouteTimeout), 504, F::kUpstreamTimeout,
       "upstream did not answer in time\n"},
      {ProxyError::downstream(K::kHeaderTimeout), 408, F::kDownstreamHeaderTimeout,
       "request head not received in time\n"},
      {ProxyError::downstream(K::kBodyTimeout), 408, F::kDownstreamBodyTimeout,
       "request body stalled\n"},
      {ProxyError::downstream(K::kBadRequest, 431), 431, F::kDownstreamProtocolError,
       "bad request\n"},
      {ProxyError::downstream(K::kBodyTooLarge), 413, F::kRequestTooLarge,
       "request body too large\n"},
      {ProxyError::downstream(K::kDownstreamReset), 0, F::kDownstreamReset, "client reset\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.error.summary()));
    EXPECT_EQ(c.error.status(), c.status);
    EXPECT_EQ(c.error.flag(), c.flag);
    std::string body;
    c.error.append_client_body(false, body);
    EXPECT_EQ(body, c.body);
  }
}

TEST(ProxyError, FullDetailOnlyWhenAsked) {
  auto e = ProxyError::upstream(ErrorKind::kConnectFailure, ECONNREFUSED,
                                "connection refused (127.0.0.1:9)");
  std::string body;
  e.append_client_body(false, body);
  EXPECT_EQ(body.find("127.0.0.1"), std::string::npos);
  body.clear();
  e.append_client_body(true, body);
  EXPECT_EQ(body, "upstream connect error: connection refused (127.0.0.1:9)\n");
  // A detail that already starts with the summary is not prefixed twice.
  auto pool = ProxyError::upstream(ErrorKind::kConnectFailure, ECONNREFUSED,
                                   "upstream connect error: connection refused (127.0.0.1:9)");
  body.clear();
  pool.append_client_body(true, body);
  EXPECT_EQ(body, "upstream connect error: connection refused (127.0.0.1:9)\n");
}

TEST(ProxyError, RetryableBySide) {
  EXPECT_TRUE(ProxyError::upstream(ErrorKind::kConnectFailure).retryable);
  EXPECT_TRUE(ProxyError::upstream(ErrorKind::kReset).retryable);
  EXPECT_FALSE(ProxyError::upstream(ErrorKind::kPoolOverflow).retryable);
  EXPECT_FALSE(ProxyError::upstream(ErrorKind::kPoolTimeout).retryable);
  EXPECT_FALSE(ProxyError::local(ErrorKind::kNoRoute).retryable);
  EXPECT_FALSE(ProxyError::downstream(ErrorKind::kBodyTimeout).retryable);
  EXPECT_EQ(ProxyError::upstream(ErrorKind::kReset).side, ErrorSide::kUpstream);
  EXPECT_EQ(ProxyError::downstream(ErrorKind::kBadRequest).side, ErrorSide::kDownstream);
}

}  // namespace
}  // namespace sluice::proxy::http
