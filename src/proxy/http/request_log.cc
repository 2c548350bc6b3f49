#include "proxy/http/request_log.h"

#include "proxy/tls_info.h"

#include <array>
#include <charconv>
#include <cstring>
#include <iterator>

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

// The line is built with plain appends: no format strings parsed per request, no temporary
// strings (this runs for every logged request).
void append_int(int64_t v, std::string& out) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// `"key":value`, preceded by a comma.
void append_field(std::string_view key, int64_t v, std::string& out) {
  out += ",\"";
  out += key;
  out += "\":";
  append_int(v, out);
}

// The quoted UTC time as log::format_time() writes it ("2026-01-02T03:04:05.678Z"). The
// date and the time of day are formatted once per second per thread.
void append_time(std::chrono::system_clock::time_point t, std::string& out) {
  struct Cache {
    int64_t secs = -1;
    char text[19] = {};  // "YYYY-MM-DDTHH:MM:SS"
  };
  thread_local Cache cache;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {  // before 1970: floor, as format_time does with whole seconds
    frac += 1000;
    --secs;
  }
  if (secs != cache.secs) {
    auto text = log::format_time(std::chrono::system_clock::time_point(std::chrono::seconds(secs)));
    if (text.size() != sizeof cache.text + 5) {  // a year outside 0000-9999: no shortcut
      cache.secs = -1;
      out += '"';
      out += log::format_time(t);
      out += '"';
      return;
    }
    std::memcpy(cache.text, text.data(), sizeof cache.text);
    cache.secs = secs;
  }
  char tail[6] = {'.',
                  static_cast<char>('0' + frac / 100),
                  static_cast<char>('0' + frac / 10 % 10),
                  static_cast<char>('0' + frac % 10),
                  'Z',
                  '"'};
  out += '"';
  out.append(cache.text, sizeof cache.text);
  out.append(tail, sizeof tail);
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
  append_time(wall_start == std::chrono::system_clock::time_point{}
                  ? std::chrono::system_clock::now()
                  : wall_start,
              line);
  line += ",\"listener\":";
  append_json_string(n.listener, line);
  append_field("config_generation", static_cast<int64_t>(config_generation), line);
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
  if (stream != 0) append_field("stream", stream, line);
  line += ",\"cluster\":";
  append_json_string(n.cluster, line);
  line += ",\"endpoint\":";
  append_json_string(n.endpoint, line);
  append_field("status", status, line);
  append_field("request_body_bytes", static_cast<int64_t>(request_body_bytes), line);
  append_field("response_body_bytes", static_cast<int64_t>(response_body_bytes), line);
  append_field("attempts", attempts, line);
  if (grpc_status >= 0) append_field("grpc_status", grpc_status, line);
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
  line += ",\"timings_us\":{\"downstream_tls\":";
  append_int(n.tls ? micros(n.tls->handshake) : -1, line);
  append_field("downstream_headers", us(head_done), line);
  append_field("pool_wait", pool_wait, line);
  append_field("upstream_connect", connected ? micros(upstream_connect) : -1, line);
  append_field("upstream_tls", connected ? micros(upstream_tls) : -1, line);
  append_field("request_sent", us(request_sent), line);
  append_field("upstream_first_byte", us(upstream_first_byte), line);
  append_field("response_done", us(now), line);
  line += '}';
  if (n.tls) append_tls_json(*n.tls, line);
  if (!upstream_address.empty()) {
    line += ",\"upstream_address\":";
    append_json_string(upstream_address, line);
  }
  if (have_tcp_info) {
    line += ",\"upstream_tcp\":{\"rtt_us\":";
    append_int(upstream_rtt_us, line);
    append_field("retransmits", upstream_retransmits, line);
    line += '}';
  }
  if (!detail.empty()) {
    line += ",\"detail\":";
    append_json_string(detail, line);
  }
  line += '}';
}

}  // namespace sluice::proxy::http
