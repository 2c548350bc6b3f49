#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include <re2/re2.h>

#include "config/yaml_reader.h"

namespace sluice::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr Duration kZero{0};
constexpr Duration kDay = hours(24);

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

void read_name(YamlReader& r, MapReader& m, std::string& out) {
  if (!m.require("name")) return;
  m.read_string("name", out);
  if (!out.empty() && !valid_name(out)) {
    r.error(m.get("name"), m.path("name"),
            fmt::format("'{}' is not a valid name (1-64 letters, digits, '_', '-', '.')", out));
  }
}

void read_address(YamlReader& r, MapReader& m, const char* key, net::Address& out,
                  bool port_required) {
  if (!m.has(key)) return;
  auto text = m.scalar(key, "an address such as 127.0.0.1:8080 or [::1]:8080");
  if (!text) return;
  auto a = net::Address::parse(*text);
  if (!a) {
    r.error(m.get(key), m.path(key), a.status().message());
    return;
  }
  if (port_required && a->port() == 0) {
    r.error(m.get(key), m.path(key), fmt::format("'{}' needs a port from 1 to 65535", *text));
    return;
  }
  out = *a;
}

// `listener` selects which Fast Open form applies: a queue length on listeners, an on/off
// switch for upstream connects.
void read_socket_options(YamlReader& r, const YAML::Node& node, const std::string& path,
                         bool listener, net::SocketOptions& out) {
  MapReader m(
      r, node, path,
      {"tcp_nodelay", "keepalive", "fastopen", "congestion", "send_buffer", "receive_buffer"});
  if (!m.ok()) return;
  m.read_bool("tcp_nodelay", out.tcp_nodelay);
  if (m.has("keepalive")) {
    MapReader k(r, m.get("keepalive"), m.path("keepalive"), {"idle", "interval", "count"});
    if (k.ok()) {
      net::KeepaliveOptions ka;
      k.read_duration("idle", ka.idle, seconds(1), kDay);
      k.read_duration("interval", ka.interval, seconds(1), kDay);
      k.read_int("count", ka.count, 1, 127);
      out.keepalive = ka;
    }
  }
  if (m.has("congestion")) {
    m.read_string("congestion", out.congestion);
    if (Status s = net::check_congestion_available(out.congestion); !s) {
      r.error(m.get("congestion"), m.path("congestion"), s.message());
    }
  }
  m.read_size("send_buffer", out.send_buffer, 4096, 256ull << 20);
  m.read_size("receive_buffer", out.receive_buffer, 4096, 256ull << 20);
  if (m.has("fastopen")) {
    bool on = false;
    if (listener) {
      m.read_uint("fastopen", out.fastopen_queue, 0, 65535);
      on = out.fastopen_queue > 0;
    } else {
      m.read_bool("fastopen", out.fastopen_connect);
      on = out.fastopen_connect;
    }
    if (on) {
      if (Status s = net::check_fastopen_enabled(listener); !s) {
        r.error(m.get("fastopen"), m.path("fastopen"), s.message());
      }
    }
  }
}

std::vector<std::string> read_string_list(YamlReader& r, MapReader& m, const char* key) {
  std::vector<std::string> out;
  if (!m.has(key)) return out;
  YAML::Node list = m.get(key);
  if (!list.IsSequence()) {
    r.error(list, m.path(key), "expected a list of strings");
    return out;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].IsScalar()) {
      r.error(list[i], fmt::format("{}[{}]", m.path(key), i), "expected a string");
      continue;
    }
    out.push_back(list[i].Scalar());
  }
  return out;
}

bool valid_header_name(const std::string& n) {
  if (n.empty()) return false;
  for (unsigned char c : n) {
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                 std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

bool valid_header_value(const std::string& v) {
  for (unsigned char c : v) {
    if (c != '\t' && (c < 0x20 || c == 0x7f)) return false;
  }
  return true;
}

// A list of {name, value} (value optional when `value_required` is false).
template <typename T>
std::vector<T> read_name_values(YamlReader& r, MapReader& m, const char* key, bool value_required) {
  std::vector<T> out;
  if (!m.has(key)) return out;
  YAML::Node list = m.get(key);
  if (!list.IsSequence()) {
    r.error(list, m.path(key), "expected a list of {name, value}");
    return out;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string path = fmt::format("{}[{}]", m.path(key), i);
    MapReader e(r, list[i], path, {"name", "value"});
    if (!e.ok()) continue;
    T item;
    if (e.require("name")) e.read_string("name", item.name);
    if (!item.name.empty() && !valid_header_name(item.name)) {
      r.error(e.get("name"), e.path("name"), fmt::format("'{}' is not a valid name", item.name));
    }
    if (e.has("value")) {
      std::string v;
      e.read_string("value", v);
      if (!valid_header_value(v)) {
        r.error(e.get("value"), e.path("value"), "control characters are not allowed");
      }
      item.value = v;
    } else if (value_required) {
      e.require("value");
    }
    out.push_back(std::move(item));
  }
  return out;
}

void read_http_options(YamlReader& r, const YAML::Node& node, const std::string& path,
                       proxy::http::HttpOptions& o) {
  MapReader m(
      r, node, path,
      {"max_request_head", "max_headers", "max_uri_length", "max_body_size", "header_read_timeout",
       "body_idle_timeout", "keepalive_timeout", "max_requests_per_connection",
       "trust_forwarded_headers", "generate_request_id", "allow_connect", "local_reply_detail"});
  if (!m.ok()) return;
  m.read_size("max_request_head", o.max_head_bytes, 1024, 1ull << 20);
  m.read_uint("max_headers", o.max_headers, 1, 10000);
  m.read_size("max_uri_length", o.max_uri_bytes, 64, 1ull << 20);
  if (m.has("max_body_size")) {
    uint32_t v = 0;
    m.read_size("max_body_size", v, 0, 0xffffffffull);
    o.max_body_bytes = v;
  }
  m.read_duration("header_read_timeout", o.header_read_timeout, milliseconds(1), hours(1));
  m.read_duration("body_idle_timeout", o.body_idle_timeout, milliseconds(1), hours(1));
  m.read_duration("keepalive_timeout", o.keepalive_timeout, kZero, hours(24));
  m.read_uint("max_requests_per_connection", o.max_requests_per_connection, 0, 100'000'000);
  m.read_bool("trust_forwarded_headers", o.trust_forwarded_headers);
  m.read_bool("generate_request_id", o.generate_request_id);
  m.read_bool("allow_connect", o.allow_connect);
  if (m.has("local_reply_detail")) {
    std::string v;
    m.read_string("local_reply_detail", v);
    if (v == "full" || v == "summary") {
      o.local_reply_detail_full = v == "full";
    } else {
      r.error(m.get("local_reply_detail"), m.path("local_reply_detail"),
              fmt::format("'{}' is not one of: summary, full", v));
    }
  }
}

void read_retry(YamlReader& r, const YAML::Node& node, const std::string& path,
                proxy::http::RetryPolicy& p) {
  MapReader m(r, node, path,
              {"retry_on", "num_retries", "retriable_status_codes", "backoff",
               "allow_non_idempotent", "replay_buffer"});
  if (!m.ok()) return;
  if (m.has("retry_on")) {
    p.on_connect_failure = p.on_reset = p.on_5xx = p.on_gateway_error = false;
    auto list = read_string_list(r, m, "retry_on");
    YAML::Node node_list = m.get("retry_on");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string& v = list[i];
      if (v == "connect-failure") {
        p.on_connect_failure = true;
      } else if (v == "reset-before-response" || v == "reset") {
        p.on_reset = true;
      } else if (v == "5xx") {
        p.on_5xx = true;
      } else if (v == "gateway-error") {
        p.on_gateway_error = true;
      } else if (v == "retriable-status-codes") {
        // the codes themselves are in retriable_status_codes
      } else {
        r.error(node_list[i], fmt::format("{}[{}]", m.path("retry_on"), i),
                fmt::format("expected one of: connect-failure, reset-before-response, 5xx, "
                            "gateway-error, retriable-status-codes, got '{}'",
                            v));
      }
    }
  }
  m.read_uint("num_retries", p.num_retries, 0, 10);
  if (m.has("retriable_status_codes")) {
    YAML::Node list = m.get("retriable_status_codes");
    if (!list.IsSequence()) {
      r.error(list, m.path("retriable_status_codes"), "expected a list of status codes");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        int code = 0;
        std::string text = list[i].IsScalar() ? list[i].Scalar() : "";
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), code);
        if (ec != std::errc() || end != text.data() + text.size() || code < 100 || code > 599) {
          r.error(list[i], fmt::format("{}[{}]", m.path("retriable_status_codes"), i),
                  "expected a status code from 100 to 599");
          continue;
        }
        p.statuses.push_back(code);
      }
    }
  }
  if (m.has("backoff")) {
    MapReader b(r, m.get("backoff"), m.path("backoff"), {"base", "max"});
    if (b.ok()) {
      b.read_duration("base", p.backoff_base, milliseconds(1), seconds(60));
      b.read_duration("max", p.backoff_max, milliseconds(1), seconds(600));
    }
  }
  m.read_bool("allow_non_idempotent", p.allow_non_idempotent);
  m.read_size("replay_buffer", p.replay_buffer_bytes, 0, 64ull << 20);
}

void read_hash_policy(YamlReader& r, const YAML::Node& list, const std::string& path,
                      proxy::http::Route& route) {
  using Kind = proxy::http::HashPolicy::Kind;
  if (!list.IsSequence() || list.size() == 0) {
    r.error(list, path,
            "expected a list such as [{header: x-user}, {cookie: session}, "
            "{query_parameter: id}, {source_ip: true}]");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string ipath = fmt::format("{}[{}]", path, i);
    MapReader m(r, list[i], ipath, {"header", "cookie", "query_parameter", "source_ip"});
    if (!m.ok()) continue;
    int kinds = m.has("header") + m.has("cookie") + m.has("query_parameter") + m.has("source_ip");
    if (kinds != 1) {
      r.error(list[i], ipath, "needs exactly one of header, cookie, query_parameter, source_ip");
      continue;
    }
    proxy::http::HashPolicy h;
    if (m.has("header")) {
      h.kind = Kind::kHeader;
      m.read_string("header", h.name);
    } else if (m.has("cookie")) {
      h.kind = Kind::kCookie;
      m.read_string("cookie", h.name);
    } else if (m.has("query_parameter")) {
      h.kind = Kind::kQueryParameter;
      m.read_string("query_parameter", h.name);
    } else {
      h.kind = Kind::kSourceIp;
      bool on = true;
      m.read_bool("source_ip", on);
      if (!on) continue;
    }
    if (h.kind != Kind::kSourceIp && h.name.empty()) {
      r.error(list[i], ipath, "needs a non-empty name");
      continue;
    }
    route.hash_policy.push_back(std::move(h));
  }
}

void read_route(YamlReader& r, const YAML::Node& node, const std::string& path,
                proxy::http::Route& route) {
  using proxy::http::Route;
  using proxy::http::RouteMatch;
  MapReader m(r, node, path,
              {"name", "match", "cluster", "prefix_rewrite", "redirect", "direct_response",
               "timeout", "per_try_timeout", "upstream_idle_timeout", "max_body_size", "retries",
               "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add",
               "response_headers_to_remove", "hash_policy"});
  if (!m.ok()) return;
  m.read_string("name", route.name);
  if (m.require("match")) {
    MapReader mm(r, m.get("match"), m.path("match"),
                 {"prefix", "path", "regex", "methods", "headers", "query"});
    if (mm.ok()) {
      int kinds = mm.has("prefix") + mm.has("path") + mm.has("regex");
      if (kinds > 1) {
        r.error(m.get("match"), m.path("match"), "use only one of prefix, path, regex");
      }
      auto check_path = [&](const char* key) {
        if (!route.match.path.empty() && route.match.path[0] != '/') {
          r.error(mm.get(key), mm.path(key), "must start with '/'");
        }
      };
      if (mm.has("prefix")) {
        route.match.path_kind = RouteMatch::PathKind::kPrefix;
        mm.read_string("prefix", route.match.path);
        check_path("prefix");
      } else if (mm.has("path")) {
        route.match.path_kind = RouteMatch::PathKind::kExact;
        mm.read_string("path", route.match.path);
        check_path("path");
      } else if (mm.has("regex")) {
        route.match.path_kind = RouteMatch::PathKind::kRegex;
        mm.read_string("regex", route.match.path);
        auto re = std::make_shared<re2::RE2>(route.match.path, re2::RE2::Quiet);
        if (!re->ok()) {
          r.error(mm.get("regex"), mm.path("regex"),
                  fmt::format("invalid regular expression: {}", re->error()));
        }
        route.match.regex = std::move(re);
      }
      route.match.methods = read_string_list(r, mm, "methods");
      route.match.headers = read_name_values<proxy::http::HeaderMatch>(r, mm, "headers", false);
      route.match.query = read_name_values<proxy::http::QueryMatch>(r, mm, "query", false);
    }
  }
  int actions = m.has("cluster") + m.has("redirect") + m.has("direct_response");
  if (actions != 1) {
    r.error(node, path, "needs exactly one action: cluster, redirect or direct_response");
  }
  if (m.has("cluster")) {
    route.action = Route::Action::kForward;
    m.read_string("cluster", route.cluster);
  }
  if (m.has("prefix_rewrite")) {
    std::string v;
    m.read_string("prefix_rewrite", v);
    route.prefix_rewrite = v;
  }
  if (m.has("redirect")) {
    route.action = Route::Action::kRedirect;
    MapReader rd(r, m.get("redirect"), m.path("redirect"), {"status", "location"});
    if (rd.ok()) {
      uint32_t st = 302;
      rd.read_uint("status", st, 300, 399);
      if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308) {
        r.error(rd.get("status"), rd.path("status"), "expected 301, 302, 303, 307 or 308");
      }
      route.redirect_status = static_cast<int>(st);
      if (rd.require("location")) rd.read_string("location", route.redirect_location);
      if (!valid_header_value(route.redirect_location)) {
        r.error(rd.get("location"), rd.path("location"), "control characters are not allowed");
      }
    }
  }
  if (m.has("direct_response")) {
    route.action = Route::Action::kDirectResponse;
    MapReader dr(r, m.get("direct_response"), m.path("direct_response"), {"status", "body"});
    if (dr.ok()) {
      uint32_t st = 200;
      dr.read_uint("status", st, 200, 599);
      route.direct_status = static_cast<int>(st);
      dr.read_string("body", route.direct_body);
    }
  }
  m.read_duration("timeout", route.timeout, kZero, hours(24));
  m.read_duration("per_try_timeout", route.per_try_timeout, kZero, hours(24));
  m.read_duration("upstream_idle_timeout", route.upstream_idle_timeout, kZero, hours(24));
  if (m.has("max_body_size")) {
    uint32_t v = 0;
    m.read_size("max_body_size", v, 0, 0xffffffffull);
    route.max_body_bytes = v;
  }
  if (m.has("retries")) read_retry(r, m.get("retries"), m.path("retries"), route.retry);
  if (m.has("hash_policy")) read_hash_policy(r, m.get("hash_policy"), m.path("hash_policy"), route);
  route.request_headers_to_add =
      read_name_values<proxy::http::HeaderToAdd>(r, m, "request_headers_to_add", true);
  route.response_headers_to_add =
      read_name_values<proxy::http::HeaderToAdd>(r, m, "response_headers_to_add", true);
  route.request_headers_to_remove = read_string_list(r, m, "request_headers_to_remove");
  route.response_headers_to_remove = read_string_list(r, m, "response_headers_to_remove");
}

void read_virtual_hosts(YamlReader& r, const YAML::Node& list, const std::string& path,
                        proxy::http::HttpOptions& o) {
  uint32_t route_count = 0;
  if (!list.IsSequence() || list.size() == 0) {
    r.error(list, path, "expected a non-empty list of virtual hosts");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string vpath = fmt::format("{}[{}]", path, i);
    MapReader m(r, list[i], vpath, {"name", "domains", "routes"});
    if (!m.ok()) continue;
    proxy::http::VirtualHost vh;
    m.read_string("name", vh.name);
    if (m.require("domains")) vh.domains = read_string_list(r, m, "domains");
    for (size_t d = 0; d < vh.domains.size(); ++d) {
      const std::string& dom = vh.domains[d];
      if (dom.empty() || (dom.find('*') != std::string::npos && dom != "*" &&
                          !(dom.rfind("*.", 0) == 0 && dom.find('*', 1) == std::string::npos))) {
        r.error(m.get("domains")[d], fmt::format("{}[{}]", m.path("domains"), d),
                fmt::format("'{}': expected a host name, '*.suffix' or '*'", dom));
      }
    }
    if (m.require("routes")) {
      YAML::Node routes = m.get("routes");
      if (!routes.IsSequence() || routes.size() == 0) {
        r.error(routes, m.path("routes"), "expected a non-empty list of routes");
      } else {
        for (size_t k = 0; k < routes.size(); ++k) {
          proxy::http::Route route;
          read_route(r, routes[k], fmt::format("{}[{}]", m.path("routes"), k), route);
          route.id = route_count++;
          if (route.name.empty()) {
            route.name = fmt::format("{}/{}", vh.name.empty() ? std::to_string(i) : vh.name, k);
          }
          vh.routes.push_back(std::move(route));
        }
      }
    }
    o.virtual_hosts.push_back(std::move(vh));
  }
}

void read_pool(YamlReader& r, const YAML::Node& node, const std::string& path,
               upstream::pool::PoolConfig& p) {
  MapReader m(r, node, path,
              {"max_connections", "max_pending_requests", "pending_timeout", "idle_timeout",
               "max_lifetime", "max_requests_per_connection", "min_idle"});
  if (!m.ok()) return;
  m.read_uint("max_connections", p.max_connections, 1, 1'000'000);
  m.read_uint("max_pending_requests", p.max_pending, 0, 1'000'000);
  m.read_uint("min_idle", p.min_idle, 0, 10'000);
  m.read_duration("pending_timeout", p.pending_timeout, milliseconds(1), hours(1));
  m.read_duration("idle_timeout", p.idle_timeout, milliseconds(1), hours(24));
  m.read_duration("max_lifetime", p.max_lifetime, kZero, hours(24 * 7));
  m.read_uint("max_requests_per_connection", p.max_requests_per_connection, 0, 100'000'000);
}

// One of a fixed set of words; reports the choices otherwise. Returns the index, or -1.
int read_choice(YamlReader& r, MapReader& m, const char* key,
                std::initializer_list<const char*> choices) {
  if (!m.has(key)) return -1;
  std::string v;
  m.read_string(key, v);
  int i = 0;
  std::string list;
  for (const char* c : choices) {
    if (v == c) return i;
    list += (i++ ? ", " : "");
    list += c;
  }
  r.error(m.get(key), m.path(key), fmt::format("expected one of: {}, got '{}'", list, v));
  return -1;
}

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; static_cast<uint64_t>(d) * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

void read_balancing(YamlReader& r, MapReader& m, upstream::lb::LbConfig& lb) {
  using upstream::lb::Policy;
  int p = read_choice(r, m, "lb_policy",
                      {"round_robin", "least_request", "random", "ring_hash", "maglev"});
  if (p >= 0) lb.policy = static_cast<Policy>(p);
  auto only_for = [&](const char* key, Policy policy, const char* name) {
    if (m.has(key) && lb.policy != policy) {
      r.error(m.get(key), m.path(key), fmt::format("only for lb_policy: {}", name));
      return false;
    }
    return m.has(key);
  };
  if (only_for("ring_hash", Policy::kRingHash, "ring_hash")) {
    MapReader rh(r, m.get("ring_hash"), m.path("ring_hash"), {"ring_size"});
    if (rh.ok()) rh.read_uint("ring_size", lb.ring_size, 1, 1'048'576);
  }
  if (only_for("maglev", Policy::kMaglev, "maglev")) {
    MapReader mg(r, m.get("maglev"), m.path("maglev"), {"table_size"});
    if (mg.ok() && mg.has("table_size")) {
      mg.read_uint("table_size", lb.maglev_table_size, 3, 5'000'011);
      if (!is_prime(lb.maglev_table_size)) {
        r.error(
            mg.get("table_size"), mg.path("table_size"),
            fmt::format("{} is not prime (for example 65537 or 5000011)", lb.maglev_table_size));
      }
    }
  }
  if (only_for("least_request", Policy::kLeastRequest, "least_request")) {
    MapReader lr(r, m.get("least_request"), m.path("least_request"), {"choice_count"});
    if (lr.ok()) lr.read_uint("choice_count", lb.choice_count, 2, 100);
  }
}

void read_status_ranges(YamlReader& r, MapReader& m, const char* key,
                        std::vector<std::pair<int, int>>& out) {
  if (!m.has(key)) return;
  YAML::Node list = m.get(key);
  if (!list.IsSequence() || list.size() == 0) {
    r.error(list, m.path(key), "expected a list of statuses or ranges such as 200 or 200-299");
    return;
  }
  out.clear();
  for (size_t i = 0; i < list.size(); ++i) {
    std::string text = list[i].IsScalar() ? list[i].Scalar() : "";
    int lo = 0, hi = 0;
    const char* b = text.data();
    const char* e = b + text.size();
    auto [p1, ec1] = std::from_chars(b, e, lo);
    hi = lo;
    bool ok = ec1 == std::errc();
    if (ok && p1 != e) {
      auto [p2, ec2] = (*p1 == '-') ? std::from_chars(p1 + 1, e, hi)
                                    : std::from_chars_result{p1, std::errc::invalid_argument};
      ok = ec2 == std::errc() && p2 == e;
    }
    if (!ok || lo < 100 || hi > 599 || lo > hi) {
      r.error(list[i], fmt::format("{}[{}]", m.path(key), i),
              "expected a status from 100 to 599 or a range such as 200-299");
      continue;
    }
    out.emplace_back(lo, hi);
  }
}

void read_health_check(YamlReader& r, const YAML::Node& node, const std::string& path,
                       upstream::health::HealthCheckConfig& h) {
  using Type = upstream::health::HealthCheckConfig::Type;
  MapReader m(r, node, path,
              {"type", "interval", "jitter", "timeout", "healthy_threshold", "unhealthy_threshold",
               "initial_state", "http"});
  if (!m.ok()) return;
  h.type = Type::kTcp;
  if (!m.require("type")) return;
  int t = read_choice(r, m, "type", {"tcp", "http"});
  if (t == 1) h.type = Type::kHttp;
  m.read_duration("interval", h.interval, milliseconds(10), hours(1));
  m.read_duration("jitter", h.jitter, kZero, hours(1));
  m.read_duration("timeout", h.timeout, milliseconds(1), minutes(10));
  m.read_uint("healthy_threshold", h.healthy_threshold, 1, 1000);
  m.read_uint("unhealthy_threshold", h.unhealthy_threshold, 1, 1000);
  int init = read_choice(r, m, "initial_state", {"unhealthy", "healthy"});
  if (init >= 0) h.initially_healthy = init == 1;
  if (m.has("http")) {
    if (h.type != Type::kHttp) {
      r.error(m.get("http"), m.path("http"), "only for type: http");
      return;
    }
    MapReader hm(r, m.get("http"), m.path("http"),
                 {"method", "path", "host", "expected_statuses", "body_contains"});
    if (!hm.ok()) return;
    hm.read_string("method", h.http.method);
    if (h.http.method.empty() ||
        h.http.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) {
      r.error(hm.get("method"), hm.path("method"), "expected an upper-case method such as GET");
    }
    hm.read_string("path", h.http.path);
    if (h.http.path.empty() || h.http.path[0] != '/' ||
        h.http.path.find_first_of(" \r\n\t") != std::string::npos) {
      r.error(hm.get("path"), hm.path("path"), "expected a path starting with '/' without spaces");
    }
    hm.read_string("host", h.http.host);
    if (!valid_header_value(h.http.host)) {
      r.error(hm.get("host"), hm.path("host"), "control characters are not allowed");
    }
    read_status_ranges(r, hm, "expected_statuses", h.http.expected_statuses);
    hm.read_string("body_contains", h.http.body_contains);
  }
}

void read_outlier(YamlReader& r, const YAML::Node& node, const std::string& path,
                  upstream::health::OutlierConfig& o) {
  MapReader m(r, node, path,
              {"consecutive_5xx", "consecutive_gateway_failure", "interval", "base_ejection_time",
               "max_ejection_time", "max_ejection_percent", "success_rate", "failure_percentage"});
  if (!m.ok()) return;
  constexpr uint32_t kMaxHosts = upstream::health::ClusterShared::kMaxEndpoints;
  if (m.has("success_rate")) {
    auto& sr = o.success_rate.emplace();
    MapReader s(r, m.get("success_rate"), m.path("success_rate"),
                {"minimum_hosts", "request_volume", "stdev_factor"});
    if (s.ok()) {
      s.read_uint("minimum_hosts", sr.minimum_hosts, 2, kMaxHosts);
      s.read_uint("request_volume", sr.request_volume, 1, 1'000'000'000);
      s.read_number("stdev_factor", sr.stdev_factor, 0.1, 10);
    }
  }
  if (m.has("failure_percentage")) {
    auto& fp = o.failure_percentage.emplace();
    MapReader f(r, m.get("failure_percentage"), m.path("failure_percentage"),
                {"threshold", "minimum_hosts", "request_volume"});
    if (f.ok()) {
      f.read_uint("threshold", fp.threshold, 1, 100);
      f.read_uint("minimum_hosts", fp.minimum_hosts, 1, kMaxHosts);
      f.read_uint("request_volume", fp.request_volume, 1, 1'000'000'000);
    }
  }
  m.read_uint("consecutive_5xx", o.consecutive_5xx, 0, 100'000);
  m.read_uint("consecutive_gateway_failure", o.consecutive_gateway_failure, 0, 100'000);
  m.read_duration("interval", o.interval, milliseconds(10), hours(1));
  m.read_duration("base_ejection_time", o.base_ejection_time, milliseconds(10), hours(24));
  m.read_duration("max_ejection_time", o.max_ejection_time, milliseconds(10), hours(24));
  m.read_uint("max_ejection_percent", o.max_ejection_percent, 0, 100);
  if (o.max_ejection_time < o.base_ejection_time) {
    r.error(m.has("max_ejection_time") ? m.get("max_ejection_time") : node,
            m.path("max_ejection_time"),
            fmt::format("must not be shorter than base_ejection_time ({})",
                        format_duration(o.base_ejection_time)));
  }
}

void read_circuit_breakers(YamlReader& r, const YAML::Node& node, const std::string& path,
                           upstream::CircuitBreakers& cb) {
  MapReader m(r, node, path, {"max_active_requests", "max_active_retries", "retry_budget"});
  if (!m.ok()) return;
  m.read_uint("max_active_requests", cb.max_active_requests, 0, 100'000'000);
  m.read_uint("max_active_retries", cb.max_active_retries, 0, 100'000'000);
  if (m.has("retry_budget")) {
    MapReader b(r, m.get("retry_budget"), m.path("retry_budget"),
                {"budget_percent", "min_retry_concurrency"});
    if (!b.ok()) return;
    cb.budget_percent = 20;
    b.read_uint("budget_percent", cb.budget_percent, 1, 100);
    b.read_uint("min_retry_concurrency", cb.min_retry_concurrency, 0, 100'000);
  }
}

// A DNS name: labels of letters, digits, '-' and '_', 1-63 bytes each, 253 in all.
bool valid_host_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char ch : name) {
    if (ch == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_')) return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

// "api.internal:8080" → name and port; IP literals are names too ("10.0.0.1:80").
std::optional<upstream::DnsTarget> parse_host_port(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (!valid_host_name(host) && !net::Address::parse_ip(host, 0)) {
    return std::nullopt;
  }
  uint32_t port = 0;
  auto digits = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535) {
    return std::nullopt;
  }
  upstream::DnsTarget t;
  t.host = std::string(host);
  t.port = static_cast<uint16_t>(port);
  return t;
}

void read_dns(YamlReader& r, const YAML::Node& node, dns::ResolverConfig& d) {
  MapReader m(r, node, "dns",
              {"servers", "timeout", "attempts", "rotate", "hosts_file", "family", "min_ttl",
               "max_ttl", "negative_min_ttl", "negative_max_ttl", "stale_ttl", "max_cname_chain"});
  if (!m.ok()) return;
  if (m.has("servers")) {
    YAML::Node list = m.get("servers");
    if (!list.IsSequence()) {
      r.error(list, m.path("servers"), "expected a list of addresses such as 127.0.0.1:53");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        std::string text = list[i].IsScalar() ? list[i].Scalar() : "";
        auto a = net::Address::parse(text);
        if (!a) {
          // A bare IP means port 53.
          a = net::Address::parse_ip(text, 53);
        }
        if (!a || a->port() == 0) {
          r.error(list[i], fmt::format("{}[{}]", m.path("servers"), i),
                  fmt::format("'{}': expected an address such as 127.0.0.1:53 or [::1]:53", text));
          continue;
        }
        d.servers.push_back(*a);
      }
    }
  }
  m.read_duration("timeout", d.timeout, milliseconds(10), minutes(1));
  m.read_uint("attempts", d.attempts, 1, 10);
  m.read_bool("rotate", d.rotate);
  m.read_string("hosts_file", d.hosts_file);
  int family = read_choice(r, m, "family", {"v4", "v6", "both"});
  if (family >= 0) d.family = static_cast<dns::Family>(family);
  m.read_duration("min_ttl", d.min_ttl, kZero, hours(24));
  m.read_duration("max_ttl", d.max_ttl, seconds(1), hours(24 * 7));
  m.read_duration("negative_min_ttl", d.negative_min_ttl, kZero, hours(24));
  m.read_duration("negative_max_ttl", d.negative_max_ttl, seconds(1), hours(24));
  m.read_duration("stale_ttl", d.stale_ttl, kZero, hours(24 * 7));
  m.read_uint("max_cname_chain", d.max_cname_chain, 1, 32);
  if (d.min_ttl > d.max_ttl) {
    r.error(m.get(m.has("min_ttl") ? "min_ttl" : "max_ttl"), m.path("min_ttl"),
            "must not be longer than max_ttl");
  }
  if (d.negative_min_ttl > d.negative_max_ttl) {
    r.error(m.get(m.has("negative_min_ttl") ? "negative_min_ttl" : "negative_max_ttl"),
            m.path("negative_min_ttl"), "must not be longer than negative_max_ttl");
  }
}

std::shared_ptr<upstream::ClusterConfig> read_cluster(YamlReader& r, const YAML::Node& node,
                                                      const std::string& path) {
  auto c = std::make_shared<upstream::ClusterConfig>();
  MapReader m(r, node, path,
              {"name",
               "type",
               "srv_name",
               "on_address_change",
               "dns_failure_refresh",
               "connection_attempt_delay",
               "connect_timeout",
               "max_connect_attempts",
               "source_address",
               "socket_options",
               "pool",
               "endpoints",
               "lb_policy",
               "ring_hash",
               "maglev",
               "least_request",
               "health_check",
               "outlier_detection",
               "panic_threshold",
               "circuit_breakers"});
  if (!m.ok()) return c;
  read_name(r, m, c->name);
  m.read_duration("connect_timeout", c->connect_timeout, milliseconds(1), hours(1));
  m.read_uint("max_connect_attempts", c->max_connect_attempts, 1, 100);
  if (m.has("source_address")) {
    auto text = m.scalar("source_address", "an IP address such as 127.0.0.2");
    if (text) {
      auto a = net::Address::parse_ip(*text, 0);
      if (a) {
        c->source_address = *a;
      } else {
        r.error(m.get("source_address"), m.path("source_address"), a.status().message());
      }
    }
  }
  if (m.has("socket_options")) {
    read_socket_options(r, m.get("socket_options"), m.path("socket_options"), false,
                        c->socket_options);
  }
  if (m.has("pool")) read_pool(r, m.get("pool"), m.path("pool"), c->pool);
  read_balancing(r, m, c->lb);
  if (m.has("health_check")) {
    read_health_check(r, m.get("health_check"), m.path("health_check"), c->health_check);
  }
  if (m.has("outlier_detection")) {
    c->outlier.emplace();
    read_outlier(r, m.get("outlier_detection"), m.path("outlier_detection"), *c->outlier);
  }
  m.read_uint("panic_threshold", c->panic_threshold, 0, 100);
  if (m.has("circuit_breakers")) {
    read_circuit_breakers(r, m.get("circuit_breakers"), m.path("circuit_breakers"),
                          c->circuit_breakers);
  }
  using Type = upstream::ClusterConfig::Type;
  int type = read_choice(r, m, "type", {"static", "strict_dns", "logical_dns", "dns_srv"});
  if (type >= 0) c->type = static_cast<Type>(type);
  bool dns = c->type != Type::kStatic;
  int change = read_choice(r, m, "on_address_change", {"drain", "keep", "close"});
  if (change >= 0) {
    c->on_address_change = static_cast<upstream::ClusterConfig::OnAddressChange>(change);
  }
  m.read_duration("dns_failure_refresh", c->dns_failure_refresh, milliseconds(100), hours(1));
  for (const char* key : {"on_address_change", "dns_failure_refresh"}) {
    if (!dns && m.has(key)) {
      r.error(m.get(key), m.path(key), "only for type: strict_dns, logical_dns or dns_srv");
    }
  }
  m.read_duration("connection_attempt_delay", c->connection_attempt_delay, milliseconds(10),
                  seconds(2));
  if (m.has("connection_attempt_delay") && c->type != Type::kLogicalDns) {
    r.error(m.get("connection_attempt_delay"), m.path("connection_attempt_delay"),
            "only for type: logical_dns (other types make each address an endpoint of its own)");
  }
  if (c->type == Type::kDnsSrv) {
    if (m.require("srv_name")) {
      m.read_string("srv_name", c->srv_name);
      if (!valid_host_name(c->srv_name)) {
        r.error(m.get("srv_name"), m.path("srv_name"),
                fmt::format("'{}' is not a DNS name such as _http._tcp.example.com", c->srv_name));
      }
    }
    if (m.has("endpoints")) {
      r.error(m.get("endpoints"), m.path("endpoints"),
              "not with type: dns_srv (the SRV records list the endpoints)");
    }
    return c;
  }
  if (m.has("srv_name")) r.error(m.get("srv_name"), m.path("srv_name"), "only for type: dns_srv");
  if (!m.require("endpoints")) return c;
  YAML::Node eps = m.get("endpoints");
  if (!eps.IsSequence() || eps.size() == 0) {
    r.error(eps, m.path("endpoints"), "expected a non-empty list of endpoints");
    return c;
  }
  if (eps.size() > upstream::health::ClusterShared::kMaxEndpoints) {
    r.error(eps, m.path("endpoints"),
            fmt::format("at most {} endpoints", upstream::health::ClusterShared::kMaxEndpoints));
    return c;
  }
  if (c->type == Type::kLogicalDns && eps.size() != 1) {
    r.error(eps, m.path("endpoints"), "type: logical_dns takes exactly one endpoint (a name)");
  }
  for (size_t i = 0; i < eps.size(); ++i) {
    std::string epath = fmt::format("{}[{}]", m.path("endpoints"), i);
    MapReader e(r, eps[i], epath, {"address", "weight"});
    if (!e.ok()) continue;
    upstream::EndpointConfig ep;
    e.read_uint("weight", ep.weight, 1, upstream::ClusterConfig::kMaxWeight);
    if (dns) {
      if (!e.require("address")) continue;
      auto text = e.scalar("address", "a name and port such as api.internal:8080");
      if (!text) continue;
      auto target = parse_host_port(*text);
      if (!target) {
        r.error(e.get("address"), e.path("address"),
                fmt::format("'{}': expected a name and port such as api.internal:8080", *text));
        continue;
      }
      target->weight = ep.weight;
      c->dns_targets.push_back(*target);
      continue;
    }
    if (e.require("address")) read_address(r, e, "address", ep.address, true);
    if (c->source_address && ep.address.length() != 0 &&
        ep.address.family() != c->source_address->family()) {
      r.error(eps[i]["address"], e.path("address"),
              fmt::format("family differs from source_address {}", c->source_address->to_string()));
    }
    c->endpoints.push_back(ep);
  }
  return c;
}

std::shared_ptr<proxy::ListenerConfig> read_listener(YamlReader& r, const YAML::Node& node,
                                                     const std::string& path) {
  auto l = std::make_shared<proxy::ListenerConfig>();
  MapReader m(r, node, path,
              {"name", "address", "protocol", "cluster", "backlog", "max_connections",
               "socket_options", "idle_timeout", "max_duration", "splice", "http", "virtual_hosts",
               "hash_key", "access_log"});
  if (!m.ok()) return l;
  read_name(r, m, l->name);
  if (m.require("address")) read_address(r, m, "address", l->address, false);
  if (m.has("protocol")) {
    std::string p;
    m.read_string("protocol", p);
    if (p == "http") {
      l->protocol = proxy::Protocol::kHttp;
    } else if (p != "tcp") {
      r.error(m.get("protocol"), m.path("protocol"),
              fmt::format("expected one of: tcp, http, got '{}'", p));
    }
  }
  if (l->protocol == proxy::Protocol::kTcp) {
    if (m.require("cluster")) m.read_string("cluster", l->cluster);
    for (const char* key : {"http", "virtual_hosts"}) {
      if (m.has(key)) r.error(m.get(key), m.path(key), "only for protocol: http");
    }
  } else {
    for (const char* key : {"cluster", "splice", "idle_timeout", "max_duration", "hash_key"}) {
      if (m.has(key)) r.error(m.get(key), m.path(key), "only for protocol: tcp");
    }
    if (m.has("http")) read_http_options(r, m.get("http"), m.path("http"), l->http);
    if (m.require("virtual_hosts")) {
      read_virtual_hosts(r, m.get("virtual_hosts"), m.path("virtual_hosts"), l->http);
    }
  }
  m.read_int("backlog", l->backlog, 1, 65535);
  m.read_uint("max_connections", l->max_connections, 0, 10'000'000);
  if (m.has("socket_options")) {
    read_socket_options(r, m.get("socket_options"), m.path("socket_options"), true,
                        l->socket_options);
  }
  m.read_duration("idle_timeout", l->idle_timeout, kZero, kDay * 7);
  m.read_duration("max_duration", l->max_duration, kZero, kDay * 7);
  m.read_bool("splice", l->splice);
  if (m.has("access_log")) {
    MapReader a(r, m.get("access_log"), m.path("access_log"),
                {"path", "mode", "slow_threshold", "sample_percent"});
    if (a.ok()) {
      if (a.require("path")) a.read_string("path", l->access_log.path);
      if (a.has("path") && l->access_log.path.empty()) {
        r.error(a.get("path"), a.path("path"), "expected a file path, or - for standard output");
      }
      int mode = read_choice(r, a, "mode", {"all", "errors_and_slow", "sample"});
      if (mode >= 0) l->access_log.mode = static_cast<proxy::AccessLogConfig::Mode>(mode);
      a.read_duration("slow_threshold", l->access_log.slow, kZero, hours(1));
      a.read_uint("sample_percent", l->access_log.sample_percent, 0, 100);
    }
  }
  int hk = read_choice(r, m, "hash_key", {"source_ip", "source_ip_port"});
  if (hk == 1) l->hash_key = proxy::ListenerConfig::HashKey::kSourceIpPort;
  return l;
}

Result<std::shared_ptr<const Config>> build(const YAML::Node& root, YamlReader& r) {
  auto cfg = std::make_shared<Config>();
  MapReader top(r, root, "",
                {"workers", "log_level", "drain_timeout", "ready_timeout", "admin", "dns",
                 "listeners", "clusters"});
  if (top.ok()) {
    top.read_uint("workers", cfg->workers, 1, Config::kMaxWorkers);
    if (top.has("log_level")) {
      std::string level;
      top.read_string("log_level", level);
      if (!level.empty() && !log::parse_level(level, &cfg->log_level)) {
        r.error(top.get("log_level"), "log_level",
                fmt::format("expected one of: debug, info, warn, error, got '{}'", level));
      }
    }
    top.read_duration("drain_timeout", cfg->drain_timeout, kZero, hours(1));
    top.read_duration("ready_timeout", cfg->ready_timeout, kZero, hours(1));
    if (top.has("dns")) read_dns(r, top.get("dns"), cfg->dns);
    if (top.has("admin")) {
      MapReader a(r, top.get("admin"), "admin", {"address"});
      if (a.ok()) {
        net::Address address = *net::Address::parse("127.0.0.1:9901");
        read_address(r, a, "address", address, false);
        cfg->admin_address = address;
      }
    }

    std::map<std::string, YAML::Mark> cluster_names;
    bool every_cluster_named = true;  // else "no cluster named" would only echo that error
    if (top.has("clusters")) {
      YAML::Node list = top.get("clusters");
      if (!list.IsSequence()) {
        r.error(list, "clusters", "expected a list of clusters");
      } else {
        for (size_t i = 0; i < list.size(); ++i) {
          std::string path = fmt::format("clusters[{}]", i);
          auto c = read_cluster(r, list[i], path);
          if (c->name.empty()) {
            every_cluster_named = false;
            continue;
          }
          auto [it, fresh] = cluster_names.emplace(c->name, list[i]["name"].Mark());
          if (!fresh) {
            r.error(list[i]["name"], path + ".name",
                    fmt::format("duplicate cluster name '{}' (first defined at line {})", c->name,
                                it->second.line + 1));
          }
          cfg->clusters.push_back(std::move(c));
        }
      }
    }

    std::map<std::string, YAML::Mark> listener_names;
    std::map<std::string, std::string> addresses;
    if (top.require("listeners")) {
      YAML::Node list = top.get("listeners");
      if (!list.IsSequence() || list.size() == 0) {
        r.error(list, "listeners", "expected a non-empty list of listeners");
      } else {
        for (size_t i = 0; i < list.size(); ++i) {
          std::string path = fmt::format("listeners[{}]", i);
          auto l = read_listener(r, list[i], path);
          if (!l->name.empty()) {
            auto [it, fresh] = listener_names.emplace(l->name, list[i]["name"].Mark());
            if (!fresh) {
              r.error(list[i]["name"], path + ".name",
                      fmt::format("duplicate listener name '{}' (first defined at line {})",
                                  l->name, it->second.line + 1));
            }
          }
          if (l->address.length() != 0 && l->address.port() != 0) {
            auto [it, fresh] = addresses.emplace(l->address.to_string(), l->name);
            if (!fresh) {
              r.error(list[i]["address"], path + ".address",
                      fmt::format("{} is already used by listener '{}'", l->address.to_string(),
                                  it->second));
            }
          }
          for (size_t v = 0; v < l->http.virtual_hosts.size(); ++v) {
            const auto& routes = l->http.virtual_hosts[v].routes;
            for (size_t k = 0; k < routes.size(); ++k) {
              const auto& cl = routes[k].cluster;
              if (cl.empty() || !every_cluster_named || cluster_names.count(cl)) continue;
              YAML::Node rn = list[i]["virtual_hosts"][v]["routes"][k]["cluster"];
              r.error(rn, fmt::format("{}.virtual_hosts[{}].routes[{}].cluster", path, v, k),
                      fmt::format("no cluster named '{}'", cl));
            }
          }
          if (!l->cluster.empty() && every_cluster_named && !cluster_names.count(l->cluster)) {
            std::string known;
            for (const auto& [name, mark] : cluster_names) {
              known += known.empty() ? name : ", " + name;
            }
            r.error(list[i]["cluster"], path + ".cluster",
                    fmt::format("no cluster named '{}' (defined clusters: {})", l->cluster,
                                known.empty() ? "none" : known));
          }
          cfg->listeners.push_back(std::move(l));
        }
      }
    }
  }
  if (!r.errors().empty()) {
    std::string all;
    for (const auto& e : r.errors()) all += (all.empty() ? "" : "\n") + e;
    return Status::error(all);
  }
  if (cfg->workers == 0) {
    unsigned cores = std::thread::hardware_concurrency();
    cfg->workers = cores == 0 ? 1 : std::min(cores, Config::kMaxWorkers);
  }
  return std::shared_ptr<const Config>(std::move(cfg));
}

}  // namespace

const upstream::ClusterConfig* Config::find_cluster(std::string_view name) const {
  for (const auto& c : clusters) {
    if (c->name == name) return c.get();
  }
  return nullptr;
}

Result<std::shared_ptr<const Config>> load_string(const std::string& yaml,
                                                  const std::string& file_name) {
  YamlReader r(file_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Status::error(fmt::format("{}: invalid YAML: {}", r.location(e.mark), e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) {
    return Status::error(fmt::format("{}: the configuration is empty", file_name));
  }
  try {
    return build(root, r);
  } catch (const YAML::Exception& e) {
    return Status::error(fmt::format("{}: {}", r.location(e.mark), e.msg));
  }
}

Result<std::shared_ptr<const Config>> load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path);
}

}  // namespace sluice::config
