// YAML → ClusterConfig (with its pool, balancing, health and breaker blocks) and the
// resolver's ResolverConfig.
#include <fmt/format.h>

#include <charconv>

#include "config/yaml_map.h"

namespace sluice::config {
namespace {

void read_pool(YamlReader& r, const YAML::Node& node, const std::string& path,
               upstream::pool::PoolConfig& p) {
  MapReader m(r, node, path,
              {"max_connections", "max_pending_requests", "pending_timeout", "idle_timeout",
               "max_lifetime", "max_requests_per_connection", "min_idle"});
  if (!m.ok()) return;
  m.read_uint("max_connections", p.max_connections);
  m.read_uint("max_pending_requests", p.max_pending);
  m.read_uint("min_idle", p.min_idle);
  m.read_duration("pending_timeout", p.pending_timeout);
  m.read_duration("idle_timeout", p.idle_timeout);
  m.read_duration("max_lifetime", p.max_lifetime);
  m.read_uint("max_requests_per_connection", p.max_requests_per_connection);
}

void read_balancing(YamlReader& r, MapReader& m, upstream::lb::LbConfig& lb) {
  using upstream::lb::Policy;
  int p = read_choice(r, m, "lb_policy", upstream::lb::kPolicyNames);
  if (p >= 0) lb.policy = static_cast<Policy>(p);
  // A block of another policy is an error even when its values are the defaults (which
  // validate() cannot tell from nothing written).
  // A policy's settings sit in a block named after it.
  auto only_for = [&](Policy policy) {
    const char* key = upstream::lb::to_string(policy);
    if (m.has(key) && lb.policy != policy) {
      r.error(m.get(key), m.path(key), fmt::format("only for lb_policy: {}", key));
      return false;
    }
    return m.has(key);
  };
  if (only_for(Policy::kRingHash)) {
    MapReader rh(r, m.get("ring_hash"), m.path("ring_hash"), {"ring_size"});
    if (rh.ok()) rh.read_uint("ring_size", lb.ring_size);
  }
  if (only_for(Policy::kMaglev)) {
    MapReader mg(r, m.get("maglev"), m.path("maglev"), {"table_size"});
    if (mg.ok()) mg.read_uint("table_size", lb.maglev_table_size);
  }
  if (only_for(Policy::kLeastRequest)) {
    MapReader lr(r, m.get("least_request"), m.path("least_request"), {"choice_count"});
    if (lr.ok()) lr.read_uint("choice_count", lb.choice_count);
  }
}

void read_status_ranges(YamlReader& r, MapReader& m, const char* key,
                        std::vector<std::pair<int, int>>& out) {
  if (!m.has(key)) return;
  YAML::Node list = m.get(key);
  if (!list.IsSequence()) {
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
    if (!ok) {
      r.error(list[i], fmt::format("{}[{}]", m.path(key), i),
              "expected a status from 100 to 599 or a range such as 200-299");
    }
    out.emplace_back(lo, hi);
  }
}

void read_health_check(YamlReader& r, const YAML::Node& node, const std::string& path,
                       upstream::health::HealthCheckConfig& h) {
  using Type = upstream::health::HealthCheckConfig::Type;
  MapReader m(r, node, path,
              {"type", "interval", "jitter", "timeout", "healthy_threshold", "unhealthy_threshold",
               "initial_state", "http", "service", "authority"});
  if (!m.ok()) return;
  h.type = Type::kTcp;
  if (!m.require("type")) {
    r.failed(path);  // the rest would be judged as a TCP check's
    return;
  }
  int t = read_choice(r, m, "type", {"tcp", "http", "grpc"});
  if (t == 1) h.type = Type::kHttp;
  if (t == 2) h.type = Type::kGrpc;
  m.read_string("service", h.grpc.service);  // validate() says which types take these
  m.read_string("authority", h.grpc.authority);
  m.read_duration("interval", h.interval);
  m.read_duration("jitter", h.jitter);
  m.read_duration("timeout", h.timeout);
  m.read_uint("healthy_threshold", h.healthy_threshold);
  m.read_uint("unhealthy_threshold", h.unhealthy_threshold);
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
    hm.read_string("path", h.http.path);
    hm.read_string("host", h.http.host);
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
  if (m.has("success_rate")) {
    auto& sr = o.success_rate.emplace();
    MapReader s(r, m.get("success_rate"), m.path("success_rate"),
                {"minimum_hosts", "request_volume", "stdev_factor"});
    if (s.ok()) {
      s.read_uint("minimum_hosts", sr.minimum_hosts);
      s.read_uint("request_volume", sr.request_volume);
      s.read_number("stdev_factor", sr.stdev_factor);
    }
  }
  if (m.has("failure_percentage")) {
    auto& fp = o.failure_percentage.emplace();
    MapReader f(r, m.get("failure_percentage"), m.path("failure_percentage"),
                {"threshold", "minimum_hosts", "request_volume"});
    if (f.ok()) {
      f.read_uint("threshold", fp.threshold);
      f.read_uint("minimum_hosts", fp.minimum_hosts);
      f.read_uint("request_volume", fp.request_volume);
    }
  }
  m.read_uint("consecutive_5xx", o.consecutive_5xx);
  m.read_uint("consecutive_gateway_failure", o.consecutive_gateway_failure);
  m.read_duration("interval", o.interval);
  m.read_duration("base_ejection_time", o.base_ejection_time);
  m.read_duration("max_ejection_time", o.max_ejection_time);
  m.read_uint("max_ejection_percent", o.max_ejection_percent);
}

void read_circuit_breakers(YamlReader& r, const YAML::Node& node, const std::string& path,
                           upstream::CircuitBreakers& cb) {
  MapReader m(r, node, path, {"max_active_requests", "max_active_retries", "retry_budget"});
  if (!m.ok()) return;
  m.read_uint("max_active_requests", cb.max_active_requests);
  m.read_uint("max_active_retries", cb.max_active_retries);
  if (m.has("retry_budget")) {
    MapReader b(r, m.get("retry_budget"), m.path("retry_budget"),
                {"budget_percent", "min_retry_concurrency"});
    if (!b.ok()) return;
    cb.budget_percent = 20;
    b.read_uint("budget_percent", cb.budget_percent);
    // 0 turns the budget off in the struct; written in a retry_budget block it is a mistake.
    if (b.has("budget_percent") && cb.budget_percent == 0) {
      r.error(b.get("budget_percent"), b.path("budget_percent"),
              "expected an integer from 1 to 100, got 0");
    }
    b.read_uint("min_retry_concurrency", cb.min_retry_concurrency);
  }
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

void read_endpoints(YamlReader& r, MapReader& m, upstream::ClusterConfig& c) {
  YAML::Node eps = m.get("endpoints");
  if (!eps.IsSequence()) {
    r.error(eps, m.path("endpoints"), "expected a non-empty list of endpoints");
    return;
  }
  bool dns = upstream::is_dns(c.type);
  // The list is read up to one past the limit: validate() reports a longer one.
  size_t n = std::min<size_t>(eps.size(), upstream::health::ClusterShared::kMaxEndpoints + 1);
  for (size_t i = 0; i < n; ++i) {
    std::string epath = fmt::format("{}[{}]", m.path("endpoints"), i);
    MapReader e(r, eps[i], epath, {"address", "weight"});
    upstream::EndpointConfig ep;
    upstream::DnsTarget target;
    if (e.ok()) {
      e.read_uint("weight", ep.weight);
      if (e.require("address")) {
        if (dns) {
          auto text = e.scalar("address", "a name and port such as api.internal:8080");
          if (text) {
            auto parsed = parse_host_port(*text);
            if (parsed) {
              target = *parsed;
            } else {
              r.error(
                  e.get("address"), e.path("address"),
                  fmt::format("'{}': expected a name and port such as api.internal:8080", *text));
            }
          }
        } else {
          read_address(r, e, "address", ep.address);
        }
      }
    }
    // Pushed even when unreadable, so that the indexes validate() names are the document's.
    if (dns) {
      target.weight = ep.weight;
      c.dns_targets.push_back(target);
    } else {
      c.endpoints.push_back(ep);
    }
  }
}

}  // namespace

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
  m.read_duration("timeout", d.timeout);
  m.read_uint("attempts", d.attempts);
  m.read_bool("rotate", d.rotate);
  m.read_string("hosts_file", d.hosts_file);
  int family = read_choice(r, m, "family", {"v4", "v6", "both"});
  if (family >= 0) d.family = static_cast<dns::Family>(family);
  m.read_duration("min_ttl", d.min_ttl);
  m.read_duration("max_ttl", d.max_ttl);
  m.read_duration("negative_min_ttl", d.negative_min_ttl);
  m.read_duration("negative_max_ttl", d.negative_max_ttl);
  m.read_duration("stale_ttl", d.stale_ttl);
  m.read_uint("max_cname_chain", d.max_cname_chain);
}

void read_client_http2(YamlReader& r, const YAML::Node& node, const std::string& path,
                       http::http2::ClientOptions& o) {
  if (node.IsNull()) return;  // `http2:` alone: the defaults
  MapReader m(r, node, path,
              {"initial_stream_window", "initial_connection_window", "max_header_list_size",
               "max_frame_size"});
  if (!m.ok()) return;
  m.read_size("initial_stream_window", o.initial_stream_window);
  m.read_size("initial_connection_window", o.initial_connection_window);
  m.read_size("max_header_list_size", o.max_header_list_size);
  m.read_size("max_frame_size", o.max_frame_size);
}

std::shared_ptr<upstream::ClusterConfig> read_cluster(YamlReader& r, const YAML::Node& node,
                                                      const std::string& path) {
  auto c = std::make_shared<upstream::ClusterConfig>();
  MapReader m(r, node, path,
              {"name",
               "type",
               "srv_name",
               "file",
               "etcd",
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
               "circuit_breakers",
               "tls",
               "protocol",
               "http2"});
  if (!m.ok()) return c;
  read_name(m, c->name);
  m.read_duration("connect_timeout", c->connect_timeout);
  m.read_uint("max_connect_attempts", c->max_connect_attempts);
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
  m.read_uint("panic_threshold", c->panic_threshold);
  if (m.has("circuit_breakers")) {
    read_circuit_breakers(r, m.get("circuit_breakers"), m.path("circuit_breakers"),
                          c->circuit_breakers);
  }
  if (m.has("tls")) {
    c->tls.emplace();
    read_client_tls(r, m.get("tls"), m.path("tls"), *c->tls);
  }
  int protocol = read_choice(r, m, "protocol", upstream::kClusterProtocolNames);
  if (protocol >= 0) c->protocol = static_cast<upstream::ClusterConfig::Protocol>(protocol);
  if (m.has("http2")) read_client_http2(r, m.get("http2"), m.path("http2"), c->http2);
  if (c->tls && c->tls->alpn.empty()) {
    // What the protocol asks ALPN to agree on (RFC 7301).
    if (c->protocol == upstream::ClusterConfig::Protocol::kHttp2) c->tls->alpn = {"h2"};
    if (c->protocol == upstream::ClusterConfig::Protocol::kAuto) c->tls->alpn = {"h2", "http/1.1"};
  }
  using Type = upstream::ClusterConfig::Type;
  int type = read_choice(r, m, "type", upstream::kClusterTypeNames);
  if (type >= 0) c->type = static_cast<Type>(type);
  bool dns = upstream::is_dns(c->type);
  int change = read_choice(r, m, "on_address_change", {"drain", "keep", "close"});
  if (change >= 0) {
    c->on_address_change = static_cast<upstream::ClusterConfig::OnAddressChange>(change);
  }
  m.read_duration("dns_failure_refresh", c->dns_failure_refresh);
  // Written but at their default, these would pass validate() while still unused.
  if (!upstream::is_discovered(c->type) && m.has("on_address_change")) {
    r.error(m.get("on_address_change"), m.path("on_address_change"),
            "only for type: strict_dns, logical_dns, dns_srv or file");
  }
  if (!dns && m.has("dns_failure_refresh")) {
    r.error(m.get("dns_failure_refresh"), m.path("dns_failure_refresh"),
            "only for type: strict_dns, logical_dns or dns_srv");
  }
  m.read_duration("connection_attempt_delay", c->connection_attempt_delay);
  if (m.has("connection_attempt_delay") && c->type != Type::kLogicalDns) {
    r.error(m.get("connection_attempt_delay"), m.path("connection_attempt_delay"),
            "only for type: logical_dns (other types make each address an endpoint of its own)");
  }
  if (c->type == Type::kFile) {
    if (m.require("file")) {
      MapReader f(r, m.get("file"), m.path("file"), {"path", "batch_window"});
      if (f.ok() && f.require("path")) f.read_string("path", c->file_path);
      if (f.ok()) f.read_duration("batch_window", c->file_batch_window);
    }
    if (m.has("endpoints")) {
      r.error(m.get("endpoints"), m.path("endpoints"),
              "not with type: file (the file lists the endpoints)");
    }
    return c;
  }
  if (m.has("file")) r.error(m.get("file"), m.path("file"), "only for type: file");
  if (c->type == Type::kEtcd) {
    if (m.require("etcd")) {
      MapReader e(r, m.get("etcd"), m.path("etcd"),
                  {"endpoints", "prefix", "username", "password", "watch_timeout", "tls",
                   "max_staleness", "initial_fetch_timeout", "persist", "batch_window"});
      if (e.ok()) {
        read_etcd_endpoints(r, e, c->etcd.endpoints);
        if (e.require("prefix")) e.read_string("prefix", c->etcd.prefix);
        e.read_string("username", c->etcd.username);
        e.read_string("password", c->etcd.password);
        e.read_duration("watch_timeout", c->etcd.watch_timeout);
        e.read_duration("max_staleness", c->etcd.max_staleness);
        e.read_duration("initial_fetch_timeout", c->etcd.initial_fetch_timeout);
        e.read_string("persist", c->etcd.persist);
        e.read_duration("batch_window", c->etcd.batch_window);
        if (e.has("tls")) {
          c->etcd.tls.emplace();
          read_client_tls(r, e.get("tls"), e.path("tls"), *c->etcd.tls);
        }
      }
    }
    if (m.has("endpoints")) {
      r.error(m.get("endpoints"), m.path("endpoints"),
              "not with type: etcd (the registry lists the endpoints)");
    }
    return c;
  }
  if (m.has("etcd")) r.error(m.get("etcd"), m.path("etcd"), "only for type: etcd");
  if (c->type == Type::kDnsSrv) {
    if (m.require("srv_name")) m.read_string("srv_name", c->srv_name);
    if (m.has("endpoints")) {
      r.error(m.get("endpoints"), m.path("endpoints"),
              "not with type: dns_srv (the SRV records list the endpoints)");
    }
    return c;
  }
  m.read_string("srv_name", c->srv_name);
  if (m.require("endpoints")) read_endpoints(r, m, *c);
  return c;
}

}  // namespace sluice::config
