// YAML → ListenerConfig, with its HTTP settings and route table.
#include <fmt/format.h>

#include <re2/re2.h>

#include <charconv>

#include "config/yaml_map.h"

namespace sluice::config {
namespace {

constexpr const char* kOnlyForward =
    "only for a route with a cluster (a redirect or direct_response sends nothing upstream)";

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
    T item;
    if (e.ok()) {
      if (e.require("name")) e.read_string("name", item.name);
      if (e.has("value")) {
        std::string v;
        e.read_string("value", v);
        item.value = v;
      } else if (value_required) {
        e.require("value");
      }
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
  m.read_size("max_request_head", o.max_head_bytes);
  m.read_uint("max_headers", o.max_headers);
  m.read_size("max_uri_length", o.max_uri_bytes);
  m.read_size("max_body_size", o.max_body_bytes);
  m.read_duration("header_read_timeout", o.header_read_timeout);
  m.read_duration("body_idle_timeout", o.body_idle_timeout);
  m.read_duration("keepalive_timeout", o.keepalive_timeout);
  m.read_uint("max_requests_per_connection", o.max_requests_per_connection);
  m.read_bool("trust_forwarded_headers", o.trust_forwarded_headers);
  m.read_bool("generate_request_id", o.generate_request_id);
  m.read_bool("allow_connect", o.allow_connect);
  int detail = read_choice(r, m, "local_reply_detail", {"summary", "full"});
  if (detail >= 0) o.local_reply_detail_full = detail == 1;
}

void read_http2_options(YamlReader& r, const YAML::Node& node, const std::string& path,
                        proxy::http::HttpOptions& o) {
  auto& h = o.http2.emplace();
  if (node.IsNull()) return;  // `http2:` alone: HTTP/2 with the defaults
  MapReader m(
      r, node, path,
      {"prior_knowledge", "max_concurrent_streams", "initial_stream_window",
       "initial_connection_window", "max_header_list_size", "max_frame_size", "max_abuse_score",
       "ping_interval", "ping_timeout", "max_connection_age", "send_stall_timeout"});
  if (!m.ok()) return;
  m.read_bool("prior_knowledge", h.prior_knowledge);
  m.read_uint("max_concurrent_streams", h.codec.max_concurrent_streams);
  m.read_size("initial_stream_window", h.codec.initial_stream_window);
  m.read_size("initial_connection_window", h.codec.initial_connection_window);
  m.read_size("max_header_list_size", h.codec.max_header_list_size);
  m.read_size("max_frame_size", h.codec.max_frame_size);
  m.read_uint("max_abuse_score", h.max_abuse_score);
  m.read_duration("ping_interval", h.ping_interval);
  m.read_duration("ping_timeout", h.ping_timeout);
  m.read_duration("max_connection_age", h.max_connection_age);
  m.read_duration("send_stall_timeout", h.send_stall_timeout);
}

// The gRPC status a retry_on name stands for (-1: not one).
int grpc_retry_status(std::string_view name) {
  constexpr std::pair<std::string_view, int> kNames[] = {{"cancelled", 1},
                                                         {"deadline-exceeded", 4},
                                                         {"resource-exhausted", 8},
                                                         {"internal", 13},
                                                         {"unavailable", 14}};
  for (auto [n, code] : kNames) {
    if (n == name) return code;
  }
  return -1;
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
      } else if (int g = grpc_retry_status(v); g >= 0) {
        p.grpc_statuses.push_back(g);
      } else {
        r.error(node_list[i], fmt::format("{}[{}]", m.path("retry_on"), i),
                fmt::format("expected one of: connect-failure, reset-before-response, 5xx, "
                            "gateway-error, retriable-status-codes, cancelled, "
                            "deadline-exceeded, internal, resource-exhausted, unavailable, "
                            "got '{}'",
                            v));
      }
    }
  }
  m.read_uint("num_retries", p.num_retries);
  if (m.has("retriable_status_codes")) {
    YAML::Node list = m.get("retriable_status_codes");
    if (!list.IsSequence()) {
      r.error(list, m.path("retriable_status_codes"), "expected a list of status codes");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        int code = 0;
        std::string text = list[i].IsScalar() ? list[i].Scalar() : "";
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), code);
        if (ec != std::errc() || end != text.data() + text.size()) {
          r.error(list[i], fmt::format("{}[{}]", m.path("retriable_status_codes"), i),
                  "expected a status code from 100 to 599");
        }
        p.statuses.push_back(code);
      }
    }
  }
  if (m.has("backoff")) {
    MapReader b(r, m.get("backoff"), m.path("backoff"), {"base", "max"});
    if (b.ok()) {
      b.read_duration("base", p.backoff_base);
      b.read_duration("max", p.backoff_max);
    }
  }
  m.read_bool("allow_non_idempotent", p.allow_non_idempotent);
  m.read_size("replay_buffer", p.replay_buffer_bytes);
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
    proxy::http::HashPolicy h;
    h.kind = Kind::kSourceIp;
    if (m.ok()) {
      int kinds = m.has("header") + m.has("cookie") + m.has("query_parameter") + m.has("source_ip");
      if (kinds != 1) {
        r.error(list[i], ipath, "needs exactly one of header, cookie, query_parameter, source_ip");
      } else if (m.has("header")) {
        h.kind = Kind::kHeader;
        m.read_string("header", h.name);
      } else if (m.has("cookie")) {
        h.kind = Kind::kCookie;
        m.read_string("cookie", h.name);
      } else if (m.has("query_parameter")) {
        h.kind = Kind::kQueryParameter;
        m.read_string("query_parameter", h.name);
      } else {
        bool on = true;
        m.read_bool("source_ip", on);
        // {source_ip: false} is no policy at all; the indexes of those after it move up.
        if (!on) continue;
      }
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
      if (mm.has("prefix")) {
        route.match.path_kind = RouteMatch::PathKind::kPrefix;
        mm.read_string("prefix", route.match.path);
      } else if (mm.has("path")) {
        route.match.path_kind = RouteMatch::PathKind::kExact;
        mm.read_string("path", route.match.path);
      } else if (mm.has("regex")) {
        route.match.path_kind = RouteMatch::PathKind::kRegex;
        mm.read_string("regex", route.match.path);
        route.match.regex = std::make_shared<re2::RE2>(route.match.path, re2::RE2::Quiet);
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
      rd.read_uint("status", st);
      route.redirect_status = static_cast<int>(std::min<uint32_t>(st, 999));
      if (rd.require("location")) rd.read_string("location", route.redirect_location);
    }
  }
  if (m.has("direct_response")) {
    route.action = Route::Action::kDirectResponse;
    MapReader dr(r, m.get("direct_response"), m.path("direct_response"), {"status", "body"});
    if (dr.ok()) {
      uint32_t st = 200;
      dr.read_uint("status", st);
      route.direct_status = static_cast<int>(std::min<uint32_t>(st, 999));
      dr.read_string("body", route.direct_body);
    }
  }
  if (actions == 1 && route.action != Route::Action::kForward) {
    // Settings with a default cannot tell validate() that they were written here.
    for (const char* key : {"timeout", "per_try_timeout", "upstream_idle_timeout", "retries"}) {
      if (m.has(key)) r.error(m.get(key), m.path(key), kOnlyForward);
    }
  }
  m.read_duration("timeout", route.timeout);
  m.read_duration("per_try_timeout", route.per_try_timeout);
  m.read_duration("upstream_idle_timeout", route.upstream_idle_timeout);
  m.read_size("max_body_size", route.max_body_bytes);
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
  if (!list.IsSequence()) {
    r.error(list, path, "expected a non-empty list of virtual hosts");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string vpath = fmt::format("{}[{}]", path, i);
    MapReader m(r, list[i], vpath, {"name", "domains", "routes"});
    proxy::http::VirtualHost vh;
    if (m.ok()) {
      m.read_string("name", vh.name);
      if (m.require("domains")) vh.domains = read_string_list(r, m, "domains");
      if (m.require("routes")) {
        YAML::Node routes = m.get("routes");
        if (!routes.IsSequence()) {
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
    }
    o.virtual_hosts.push_back(std::move(vh));
  }
}

void read_access_log(YamlReader& r, const YAML::Node& node, const std::string& path,
                     proxy::AccessLogConfig& log) {
  MapReader a(r, node, path, {"path", "mode", "slow_threshold", "sample_percent"});
  if (!a.ok()) return;
  if (a.require("path")) a.read_string("path", log.path);
  if (a.has("path") && log.path.empty()) {
    r.error(a.get("path"), a.path("path"), "expected a file path, or - for standard output");
  }
  int mode = read_choice(r, a, "mode", {"all", "errors_and_slow", "sample"});
  if (mode >= 0) log.mode = static_cast<proxy::AccessLogConfig::Mode>(mode);
  a.read_duration("slow_threshold", log.slow);
  a.read_uint("sample_percent", log.sample_percent);
  // Written but at their default, these would pass validate() while still unused.
  if (a.has("slow_threshold") && log.mode != proxy::AccessLogConfig::Mode::kErrorsAndSlow) {
    r.error(a.get("slow_threshold"), a.path("slow_threshold"), "only for mode: errors_and_slow");
  }
  if (a.has("sample_percent") && log.mode != proxy::AccessLogConfig::Mode::kSample) {
    r.error(a.get("sample_percent"), a.path("sample_percent"), "only for mode: sample");
  }
}

// sni_routes: [{names: [..], cluster: NAME}] and sni_timeout, of a tcp listener.
void read_sni(YamlReader& r, MapReader& m, proxy::ListenerConfig& l) {
  if (m.has("sni_timeout") && !m.has("sni_routes")) {
    r.error(m.get("sni_timeout"), m.path("sni_timeout"), "only with sni_routes");
  }
  m.read_duration("sni_timeout", l.sni_timeout);
  if (!m.has("sni_routes")) return;
  YAML::Node list = m.get("sni_routes");
  if (!list.IsSequence() || list.size() == 0) {
    r.error(list, m.path("sni_routes"), "expected a non-empty list of {names, cluster}");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    MapReader e(r, list[i], fmt::format("{}[{}]", m.path("sni_routes"), i), {"names", "cluster"});
    proxy::SniRoute route;
    if (e.ok()) {
      if (e.require("names")) route.names = read_string_list(r, e, "names");
      if (e.require("cluster")) e.read_string("cluster", route.cluster);
    }
    l.sni_routes.push_back(std::move(route));
  }
}

// stun.credentials: a list of {username, password}.
void read_stun_credentials(YamlReader& r, MapReader& s, std::vector<stun::Credential>& out) {
  const YAML::Node& list = s.get("credentials");
  if (!list.IsSequence()) {
    r.error(list, s.path("credentials"), "expected a list of {username, password}");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    MapReader e(r, list[i], fmt::format("{}[{}]", s.path("credentials"), i),
                {"username", "password"});
    stun::Credential c;
    if (e.ok()) {
      if (e.require("username")) e.read_string("username", c.username);
      if (e.require("password")) e.read_string("password", c.password);
    }
    out.push_back(std::move(c));
  }
}

// The keys of a udp or stun listener: the `udp:` or `stun:` block, and for udp the cluster,
// hash_key and access_log. Every key of the stream protocols is refused by name.
void read_datagram_listener(YamlReader& r, MapReader& m, proxy::ListenerConfig& l) {
  bool udp = l.protocol == proxy::Protocol::kUdp;
  for (const char* key :
       {"backlog", "max_connections", "socket_options", "idle_timeout", "max_duration", "splice",
        "http", "virtual_hosts", "http2", "tls", "sni_routes", "sni_timeout"}) {
    if (m.has(key)) {
      r.error(m.get(key), m.path(key),
              udp ? "not for protocol: udp (session settings go in the udp block)"
                  : "not for protocol: stun");
    }
  }
  const char* other = udp ? "stun" : "udp";
  if (m.has(other))
    r.error(m.get(other), m.path(other), fmt::format("only for protocol: {}", other));
  if (!udp) {
    for (const char* key : {"cluster", "hash_key", "access_log"}) {
      if (m.has(key)) r.error(m.get(key), m.path(key), "not for protocol: stun");
    }
    if (!m.has("stun")) return;
    MapReader s(r, m.get("stun"), m.path("stun"),
                {"software", "rate_limit", "rate_burst", "max_sources", "alternate_address", "tcp",
                 "max_tcp_connections", "tcp_idle_timeout", "credentials"});
    if (!s.ok()) return;
    if (s.has("alternate_address")) {
      net::Address alternate;
      read_address(r, s, "alternate_address", alternate);
      l.stun.alternate_address = alternate;
    }
    s.read_string("software", l.stun.software);
    s.read_uint("rate_limit", l.stun.rate_limit);
    s.read_uint("rate_burst", l.stun.rate_burst);
    s.read_uint("max_sources", l.stun.max_sources);
    s.read_bool("tcp", l.stun.tcp);
    if (s.has("credentials")) read_stun_credentials(r, s, l.stun.credentials);
    s.read_uint("max_tcp_connections", l.stun.max_tcp_connections);
    s.read_duration("tcp_idle_timeout", l.stun.tcp_idle_timeout);
    return;
  }
  if (m.require("cluster")) m.read_string("cluster", l.cluster);
  if (m.has("access_log"))
    read_access_log(r, m.get("access_log"), m.path("access_log"), l.access_log);
  int hk = read_choice(r, m, "hash_key", {"source_ip", "source_ip_port"});
  if (hk == 1) l.hash_key = proxy::ListenerConfig::HashKey::kSourceIpPort;
  if (!m.has("udp")) return;
  MapReader u(r, m.get("udp"), m.path("udp"),
              {"session_key", "idle_timeout", "max_responses", "max_sessions",
               "max_sessions_per_source", "max_datagram_size", "proxy_protocol", "gro", "gso"});
  if (!u.ok()) return;
  int key = read_choice(r, u, "session_key", proxy::udp::kSessionKeyNames);
  if (key >= 0) l.udp.session_key = static_cast<proxy::udp::UdpOptions::SessionKey>(key);
  u.read_duration("idle_timeout", l.udp.idle_timeout);
  u.read_uint("max_responses", l.udp.max_responses);
  u.read_uint("max_sessions", l.udp.max_sessions);
  u.read_uint("max_sessions_per_source", l.udp.max_sessions_per_source);
  u.read_size("max_datagram_size", l.udp.max_datagram_size);
  u.read_bool("proxy_protocol", l.udp.proxy_protocol);
  u.read_bool("gro", l.udp.gro);
  u.read_bool("gso", l.udp.gso);
}

}  // namespace

std::shared_ptr<proxy::ListenerConfig> read_listener(YamlReader& r, const YAML::Node& node,
                                                     const std::string& path) {
  auto l = std::make_shared<proxy::ListenerConfig>();
  MapReader m(r, node, path,
              {"name",
               "address",
               "protocol",
               "cluster",
               "backlog",
               "max_connections",
               "socket_options",
               "idle_timeout",
               "max_duration",
               "splice",
               "http",
               "virtual_hosts",
               "hash_key",
               "access_log",
               "tls",
               "sni_routes",
               "sni_timeout",
               "http2",
               "udp",
               "stun"});
  if (!m.ok()) return l;
  read_name(m, l->name);
  if (m.require("address")) read_address(r, m, "address", l->address);
  if (m.has("protocol")) {
    std::string p;
    m.read_string("protocol", p);
    if (p == "http") {
      l->protocol = proxy::Protocol::kHttp;
    } else if (p == "udp") {
      l->protocol = proxy::Protocol::kUdp;
    } else if (p == "stun") {
      l->protocol = proxy::Protocol::kStun;
    } else if (p != "tcp") {
      r.error(m.get("protocol"), m.path("protocol"),
              fmt::format("expected one of: tcp, http, udp, stun, got '{}'", p));
    }
  }
  if (proxy::is_datagram(l->protocol)) {
    read_datagram_listener(r, m, *l);
    return l;
  }
  for (const char* key : {"udp", "stun"}) {
    if (m.has(key)) r.error(m.get(key), m.path(key), fmt::format("only for protocol: {}", key));
  }
  if (l->protocol == proxy::Protocol::kTcp) {
    if (m.require("cluster")) m.read_string("cluster", l->cluster);
    for (const char* key : {"http", "virtual_hosts", "http2"}) {
      if (m.has(key)) r.error(m.get(key), m.path(key), "only for protocol: http");
    }
    read_sni(r, m, *l);
  } else {
    for (const char* key : {"cluster", "splice", "idle_timeout", "max_duration", "hash_key",
                            "sni_routes", "sni_timeout"}) {
      if (m.has(key)) r.error(m.get(key), m.path(key), "only for protocol: tcp");
    }
    if (m.has("http")) read_http_options(r, m.get("http"), m.path("http"), l->http);
    if (m.has("http2")) read_http2_options(r, m.get("http2"), m.path("http2"), l->http);
    if (m.require("virtual_hosts")) {
      read_virtual_hosts(r, m.get("virtual_hosts"), m.path("virtual_hosts"), l->http);
    }
  }
  m.read_int("backlog", l->backlog);
  m.read_uint("max_connections", l->max_connections);
  // An HTTP client speaks first: its connections wait in the kernel until it does.
  if (l->protocol == proxy::Protocol::kHttp) {
    l->socket_options.defer_accept = proxy::kDefaultHttpDeferAccept;
  }
  if (m.has("socket_options")) {
    read_socket_options(r, m.get("socket_options"), m.path("socket_options"), true,
                        l->socket_options);
  }
  m.read_duration("idle_timeout", l->idle_timeout);
  m.read_duration("max_duration", l->max_duration);
  m.read_bool("splice", l->splice);
  if (m.has("access_log"))
    read_access_log(r, m.get("access_log"), m.path("access_log"), l->access_log);
  if (m.has("tls")) {
    l->tls.emplace();
    read_server_tls(r, m.get("tls"), m.path("tls"), *l->tls);
  }
  // A TLS listener serving HTTP/2 offers h2 first unless its ALPN list is written out.
  if (l->tls && l->http.http2 && l->tls->alpn.empty())
    l->tls->alpn = {"h2", "http/1.1", "http/1.0"};
  int hk = read_choice(r, m, "hash_key", {"source_ip", "source_ip_port"});
  if (hk == 1) l->hash_key = proxy::ListenerConfig::HashKey::kSourceIpPort;
  return l;
}

}  // namespace sluice::config
