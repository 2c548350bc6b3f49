#include "proxy/http/request_log.h"

#include "proxy/tls_info.h"

#include <array>
#include <iterator>

#include <fmt/format.h>

#include "base/json.h"
#include "base/log.h"

namespace sluice::proxy::http {
namespace {

constexpr std::array<std::string_view, static_cast<size_t>(ResponseFlag::kCount)> kNames = {
    "no_route",
    "direct_response",
    "redirect",
    "upstream_connect_failure",
    "upstream_reset_before_response",
    "upstream_timeout",
    "upstream_protocol_error",
    "pool_overflow",
    "pool_timeout",
    "overflow_active_requests",
    "retry_overflow",
    "retried",
    "stale_connection_retried",
    "request_not_replayable",
    "request_too_large",
    "downstream_header_timeout",
    "downstream_body_timeout",
    "downstream_protocol_error",
    "downstream_reset",
    "no_healthy_upstream",
    "incomplete",
    "upstream_ports_exhausted",
    "trailer_dropped",
    "refused_stream_resent",
    "delayed_ack_stall",
};

int64_t micros(Duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

std::string_view name(ResponseFlag f) {
  auto i = static_cast<size_t>(f);
  return i < kNames.size() ? kNames[i] : std::string_view("?");
}

void ResponseFlags::append_names(std::string& out) const {
  if (empty()) {
    out += '-';
    return;
  }
  bool first = true;
  for_each([&](ResponseFlag f) {
    if (!first) out += ',';
    first = false;
    out += name(f);
  });
}

void RequestLog::append_json(const Names& n, MonoTime now, std::string& line) const {
  auto us = [&](MonoTime t) -> int64_t {
    if (t == MonoTime{}) return -1;
    return micros(t - first_byte_in);
  };
  line += "{\"time\":";
  auto wall = wall_start == std::chrono::system_clock::time_point{}
                  ? std::chrono::system_clock::now()
                  : wall_start;
  append_json_string(log::format_time(wall), line);
  line += ",\"listener\":";
  append_json_string(n.listener, line);
  fmt::format_to(std::back_inserter(line), ",\"config_generation\":{}", config_generation);
  line += ",\"downstream\":";
  append_json_string(n.downstream, line);
  line += ",\"method\":";
  append_json_string(n.method, line);
  line += ",\"target\":";
  append_json_string(n.target, line);
  line += ",\"host\":";
  append_json_string(n.host, line);
  line += ",\"protocol\":";
  append_json_string(protocol, line);
  if (stream != 0) fmt::format_to(std::back_inserter(line), ",\"stream\":{}", stream);
  line += ",\"cluster\":";
  append_json_string(n.cluster, line);
  line += ",\"endpoint\":";
  append_json_string(n.endpoint, line);
  fmt::format_to(std::back_inserter(line),
                 ",\"status\":{},\"request_body_bytes\":{},\"response_body_bytes\":{},"
                 "\"attempts\":{}",
                 status, request_body_bytes, response_body_bytes, attempts);
  if (grpc_status >= 0)
    fmt::format_to(std::back_inserter(line), ",\"grpc_status\":{}", grpc_status);
  line += ",\"flags\":[";
  bool first = true;
  flags.for_each([&](ResponseFlag f) {
    if (!first) line += ',';
    first = false;
    append_json_string(name(f), line);
  });
  line += "],\"request_id\":";
  append_json_string(request_id, line);
  line += ",\"traceparent\":";
  append_json_string(traceparent, line);
  // The waterfall: microseconds from the request's first byte (-1: did not happen).
  int64_t pool_wait = pool_ready == MonoTime{} || attempt_started == MonoTime{}
                          ? -1
                          : micros(pool_ready - attempt_started - upstream_connect - upstream_tls);
  bool connected = pool_ready != MonoTime{};
  fmt::format_to(
      std::back_inserter(line),
      ",\"timings_us\":{{\"downstream_tls\":{},\"downstream_headers\":{},\"pool_wait\":{},"
      "\"upstream_connect\":{},\"upstream_tls\":{},\"request_sent\":{},"
      "\"upstream_first_byte\":{},\"response_done\":{}}}",
      n.tls ? micros(n.tls->handshake) : -1, us(head_done), pool_wait,
      connected ? micros(upstream_connect) : -1, connected ? micros(upstream_tls) : -1,
      us(request_sent), us(upstream_first_byte), us(now));
  if (n.tls) append_tls_json(*n.tls, line);
  if (!upstream_address.empty()) {
    line += ",\"upstream_address\":";
    append_json_string(upstream_address, line);
  }
  if (have_tcp_info) {
    fmt::format_to(std::back_inserter(line),
                   ",\"upstream_tcp\":{{\"rtt_us\":{},\"retransmits\":{}}}", upstream_rtt_us,
                   upstream_retransmits);
  }
  if (!detail.empty()) {
    line += ",\"detail\":";
    append_json_string(detail, line);
  }
  line += '}';
}

}  // namespace sluice::proxy::http
