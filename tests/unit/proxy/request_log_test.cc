#include "proxy/http/request_log.h"

#include "proxy/tls_info.h"

#include <gtest/gtest.h>

namespace sluice::proxy::http {
namespace {

TEST(ResponseFlags, EveryFlagHasItsOwnName) {
  const std::pair<ResponseFlag, const char*> table[] = {
      {ResponseFlag::kNoRoute, "no_route"},
      {ResponseFlag::kDirectResponse, "direct_response"},
      {ResponseFlag::kRedirect, "redirect"},
      {ResponseFlag::kUpstreamConnectFailure, "upstream_connect_failure"},
      {ResponseFlag::kUpstreamResetBeforeResponse, "upstream_reset_before_response"},
      {ResponseFlag::kUpstreamTimeout, "upstream_timeout"},
      {ResponseFlag::kUpstreamProtocolError, "upstream_protocol_error"},
      {ResponseFlag::kPoolOverflow, "pool_overflow"},
      {ResponseFlag::kPoolTimeout, "pool_timeout"},
      {ResponseFlag::kOverflowActiveRequests, "overflow_active_requests"},
      {ResponseFlag::kRetryOverflow, "retry_overflow"},
      {ResponseFlag::kRetried, "retried"},
      {ResponseFlag::kStaleConnectionRetried, "stale_connection_retried"},
      {ResponseFlag::kRequestNotReplayable, "request_not_replayable"},
      {ResponseFlag::kRequestTooLarge, "request_too_large"},
      {ResponseFlag::kDownstreamHeaderTimeout, "downstream_header_timeout"},
      {ResponseFlag::kDownstreamBodyTimeout, "downstream_body_timeout"},
      {ResponseFlag::kDownstreamProtocolError, "downstream_protocol_error"},
      {ResponseFlag::kDownstreamReset, "downstream_reset"},
      {ResponseFlag::kNoHealthyUpstream, "no_healthy_upstream"},
      {ResponseFlag::kIncomplete, "incomplete"},
      {ResponseFlag::kUpstreamPortsExhausted, "upstream_ports_exhausted"},
      {ResponseFlag::kTrailerDropped, "trailer_dropped"},
      {ResponseFlag::kRefusedStreamResent, "refused_stream_resent"},
      {ResponseFlag::kDelayedAckStall, "delayed_ack_stall"},
  };
  static_assert(std::size(table) == static_cast<size_t>(ResponseFlag::kCount));
  for (auto [flag, text] : table) EXPECT_EQ(name(flag), text);
}

TEST(ResponseFlags, SetOnceNamedInTableOrder) {
  ResponseFlags f;
  std::string s;
  f.append_names(s);
  EXPECT_EQ(s, "-");
  f.set(ResponseFlag::kRetried);
  f.set(ResponseFlag::kUpstreamConnectFailure);
  f.set(ResponseFlag::kRetried);
  s.clear();
  f.append_names(s);
  EXPECT_EQ(s, "upstream_connect_failure,retried");
  EXPECT_TRUE(f.has(ResponseFlag::kRetried));
  EXPECT_FALSE(f.has(ResponseFlag::kNoRoute));
}

TEST(ResponseFlags, WhichMarkAFailure) {
  struct Case {
    ResponseFlag flag;
    bool failed;
  };
  const Case cases[] = {
      {ResponseFlag::kUpstreamConnectFailure, true},
      {ResponseFlag::kUpstreamTimeout, true},
      {ResponseFlag::kNoHealthyUpstream, true},
      {ResponseFlag::kDownstreamReset, true},
      {ResponseFlag::kIncomplete, true},
      {ResponseFlag::kRetried, false},
      {ResponseFlag::kDirectResponse, false},
      {ResponseFlag::kNoRoute, false},
      {ResponseFlag::kOverflowActiveRequests, false},
  };
  for (const Case& c : cases) {
    RequestLog r;
    r.add(c.flag);
    EXPECT_EQ(r.failed(), c.failed) << name(c.flag);
  }
}

TEST(RequestLog, Json) {
  RequestLog r;
  MonoTime t0 = MonoTime() + std::chrono::seconds(100);
  r.wall_start = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  r.first_byte_in = t0;
  r.head_done = t0 + std::chrono::microseconds(10);
  r.attempt_started = t0 + std::chrono::microseconds(20);
  r.pool_ready = t0 + std::chrono::microseconds(120);
  r.upstream_connect = std::chrono::microseconds(50);
  r.request_sent = t0 + std::chrono::microseconds(130);
  r.status = 502;
  r.config_generation = 4;  // started after the fourth reload
  r.attempts = 2;
  r.request_body_bytes = 3;
  r.response_body_bytes = 40;
  r.request_id = "request-id-0123456789";
  r.traceparent = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";
  r.detail = "connect to 10.0.0.1:80: connection refused";
  r.add(ResponseFlag::kRetried);
  r.add(ResponseFlag::kUpstreamConnectFailure);
  std::string out;
  r.append_json(
      {"web", "127.0.0.1:5000", "GET", "/x", "www.example.com:8080", "app", "10.0.0.1:80"},
      t0 + std::chrono::microseconds(200), out);
  EXPECT_EQ(out,
            "{\"time\":\"2023-11-14T22:13:20.000Z\",\"listener\":\"web\",\"config_generation\":4,"
            "\"downstream\":"
            "\"127.0.0.1:5000\",\"method\":\"GET\",\"target\":\"/"
            "x\",\"host\":\"www.example.com:8080\",\"protocol\":\"HTTP/1.1\","
            "\"cluster\":\"app\",\"endpoint\":\"10.0.0.1:80\",\"status\":502,"
            "\"request_body_bytes\":3,\"response_body_bytes\":40,\"attempts\":2,\"flags\":["
            "\"upstream_connect_failure\",\"retried\"],\"request_id\":\"request-id-0123456789\","
            "\"traceparent\":"
            "\"00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\",\"timings_us\":{"
            "\"downstream_tls\":-1,\"downstream_headers\":10,\"pool_wait\":50,"
            "\"upstream_connect\":50,\"upstream_tls\":0,\"request_sent\":130,"
            "\"upstream_first_byte\":-1,"
            "\"response_done\":200},\"detail\":\"connect to 10.0.0.1:80: connection refused\"}");
}

// A request on a TLS connection: the client's handshake in the waterfall, the upstream's
// after its connect, and what the handshake settled.
TEST(RequestLog, JsonWithTls) {
  RequestLog r;
  MonoTime t0 = MonoTime() + std::chrono::seconds(100);
  r.wall_start = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  r.first_byte_in = t0;
  r.head_done = t0 + std::chrono::microseconds(10);
  r.attempt_started = t0 + std::chrono::microseconds(20);
  r.pool_ready = t0 + std::chrono::microseconds(420);
  r.upstream_connect = std::chrono::microseconds(50);
  r.upstream_tls = std::chrono::microseconds(300);
  r.status = 200;
  r.attempts = 1;
  DownstreamTls tls;
  tls.version = "TLSv1.3";
  tls.cipher = "TLS_AES_128_GCM_SHA256";
  tls.sni = "www.example.com";
  tls.alpn = "http/1.1";
  tls.resumed = true;
  tls.client_subject = "CN=client";
  tls.handshake = std::chrono::microseconds(900);
  std::string out;
  RequestLog::Names names{"web", "127.0.0.1:5000", "GET", "/", "www.example.com",
                          "app", "10.0.0.1:443"};
  names.tls = &tls;
  r.append_json(names, t0 + std::chrono::microseconds(500), out);
  EXPECT_EQ(out,
            "{\"time\":\"2023-11-14T22:13:20.000Z\",\"listener\":\"web\",\"config_generation\":0,"
            "\"downstream\":"
            "\"127.0.0.1:5000\",\"method\":\"GET\",\"target\":\"/"
            "\",\"host\":\"www.example.com\",\"protocol\":\"HTTP/1.1\","
            "\"cluster\":\"app\",\"endpoint\":\"10.0.0.1:443\",\"status\":200,"
            "\"request_body_bytes\":0,\"response_body_bytes\":0,\"attempts\":1,\"flags\":[],"
            "\"request_id\":\"\",\"traceparent\":\"\",\"timings_us\":{\"downstream_tls\":900,"
            "\"downstream_headers\":10,\"pool_wait\":50,\"upstream_connect\":50,"
            "\"upstream_tls\":300,\"request_sent\":-1,\"upstream_first_byte\":-1,"
            "\"response_done\":500},\"tls\":{\"version\":\"TLSv1.3\",\"cipher\":"
            "\"TLS_AES_128_GCM_SHA256\",\"sni\":\"www.example.com\",\"alpn\":\"http/1.1\","
            "\"resumed\":true,\"early_data\":false,\"client\":\"CN=client\"}}");
}

}  // namespace
}  // namespace sluice::proxy::http
