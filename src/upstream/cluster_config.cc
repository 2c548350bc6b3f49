// validate() of ClusterConfig and of the blocks inside it: pool, balancing, health checks,
// outlier detection, circuit breakers.
#include <algorithm>

#include <fmt/format.h>

#include "upstream/cluster.h"

namespace sluice::upstream {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
constexpr Duration kZero{0};

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; static_cast<uint64_t>(d) * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

const char* type_name(ClusterConfig::Type t) {
  switch (t) {
    case ClusterConfig::Type::kStatic:
      return "static";
    case ClusterConfig::Type::kStrictDns:
      return "strict_dns";
    case ClusterConfig::Type::kLogicalDns:
      return "logical_dns";
    case ClusterConfig::Type::kDnsSrv:
      return "dns_srv";
    case ClusterConfig::Type::kFile:
      return "file";
    case ClusterConfig::Type::kEtcd:
      return "etcd";
  }
  return "?";
}

}  // namespace

ConfigIssues pool::PoolConfig::validate() const {
  ConfigChecker c;
  c.check_uint("max_connections", max_connections, 1, 1'000'000);
  c.check_uint("max_pending_requests", max_pending, 0, 1'000'000);
  c.check_uint("min_idle", min_idle, 0, 10'000);
  c.check_duration("pending_timeout", pending_timeout, milliseconds(1), hours(1));
  c.check_duration("idle_timeout", idle_timeout, milliseconds(1), hours(24));
  c.check_duration("max_lifetime", max_lifetime, kZero, hours(24 * 7));
  c.check_uint("max_requests_per_connection", max_requests_per_connection, 0, 100'000'000);
  return c.take();
}

ConfigIssues lb::LbConfig::validate() const {
  ConfigChecker c;
  LbConfig defaults;
  // Settings of another policy than the cluster's would be silently unused.
  if (ring_size != defaults.ring_size && policy != Policy::kRingHash) {
    c.error("ring_hash", "only for lb_policy: ring_hash");
  }
  if (maglev_table_size != defaults.maglev_table_size && policy != Policy::kMaglev) {
    c.error("maglev", "only for lb_policy: maglev");
  }
  if (choice_count != defaults.choice_count && policy != Policy::kLeastRequest) {
    c.error("least_request", "only for lb_policy: least_request");
  }
  c.check_uint("ring_hash.ring_size", ring_size, 1, 1'048'576);
  c.check_uint("maglev.table_size", maglev_table_size, 3, 5'000'011);
  if (maglev_table_size >= 3 && maglev_table_size <= 5'000'011 && !is_prime(maglev_table_size)) {
    c.error("maglev.table_size",
            fmt::format("{} is not prime (for example 65537 or 5000011)", maglev_table_size));
  }
  c.check_uint("least_request.choice_count", choice_count, 2, 100);
  return c.take();
}

namespace health {

ConfigIssues HealthCheckConfig::validate() const {
  ConfigChecker c;
  if (type == Type::kNone) return c.take();
  c.check_duration("interval", interval, milliseconds(10), hours(1));
  c.check_duration("jitter", jitter, kZero, hours(1));
  c.check_duration("timeout", timeout, milliseconds(1), minutes(10));
  c.check_uint("healthy_threshold", healthy_threshold, 1, 1000);
  c.check_uint("unhealthy_threshold", unhealthy_threshold, 1, 1000);
  if (type != Type::kGrpc) {
    if (!grpc.service.empty()) c.error("service", "only for type: grpc");
    if (!grpc.authority.empty()) c.error("authority", "only for type: grpc");
  } else {
    // The service goes out as a protobuf string, the authority as :authority: text only.
    if (grpc.service.size() > 1024 || !valid_header_value(grpc.service)) {
      c.error("service", "expected a name of at most 1024 bytes without control characters");
    }
    if (grpc.authority.find_first_of(" \t/@") != std::string::npos ||
        !valid_header_value(grpc.authority)) {
      c.error("authority",
              "expected host or host:port without spaces, '/', '@' or control characters");
    }
  }
  if (type != Type::kHttp) return c.take();
  if (http.method.empty() ||
      http.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) {
    c.error("http.method", "expected an upper-case method such as GET");
  }
  if (http.path.empty() || http.path[0] != '/' ||
      http.path.find_first_of(" \r\n\t") != std::string::npos) {
    c.error("http.path", "expected a path starting with '/' without spaces");
  }
  if (!valid_header_value(http.host)) {
    c.error("http.host", "control characters are not allowed");
  }
  if (http.expected_statuses.empty()) {
    c.error("http.expected_statuses",
            "expected a list of statuses or ranges such as 200 or 200-299");
  }
  for (size_t i = 0; i < http.expected_statuses.size(); ++i) {
    auto [lo, hi] = http.expected_statuses[i];
    if (lo < 100 || hi > 599 || lo > hi) {
      c.error(fmt::format("http.expected_statuses[{}]", i),
              "expected a status from 100 to 599 or a range such as 200-299");
    }
  }
  return c.take();
}

ConfigIssues OutlierConfig::validate() const {
  constexpr uint32_t kMaxHosts = ClusterShared::kMaxEndpoints;
  ConfigChecker c;
  c.check_uint("consecutive_5xx", consecutive_5xx, 0, 100'000);
  c.check_uint("consecutive_gateway_failure", consecutive_gateway_failure, 0, 100'000);
  c.check_duration("interval", interval, milliseconds(10), hours(1));
  c.check_duration("base_ejection_time", base_ejection_time, milliseconds(10), hours(24));
  c.check_duration("max_ejection_time", max_ejection_time, milliseconds(10), hours(24));
  c.check_uint("max_ejection_percent", max_ejection_percent, 0, 100);
  if (max_ejection_time < base_ejection_time) {
    c.error("max_ejection_time", fmt::format("must not be shorter than base_ejection_time ({})",
                                             format_duration(base_ejection_time)));
  }
  if (success_rate) {
    c.check_uint("success_rate.minimum_hosts", success_rate->minimum_hosts, 2, kMaxHosts);
    c.check_uint("success_rate.request_volume", success_rate->request_volume, 1, 1'000'000'000);
    c.check_number("success_rate.stdev_factor", success_rate->stdev_factor, 0.1, 10);
  }
  if (failure_percentage) {
    c.check_uint("failure_percentage.threshold", failure_percentage->threshold, 1, 100);
    c.check_uint("failure_percentage.minimum_hosts", failure_percentage->minimum_hosts, 1,
                 kMaxHosts);
    c.check_uint("failure_percentage.request_volume", failure_percentage->request_volume, 1,
                 1'000'000'000);
  }
  return c.take();
}

}  // namespace health

ConfigIssues CircuitBreakers::validate() const {
  ConfigChecker c;
  c.check_uint("max_active_requests", max_active_requests, 0, 100'000'000);
  c.check_uint("max_active_retries", max_active_retries, 0, 100'000'000);
  // 0: no budget; a budget is 1-100 percent.
  if (budget_percent != 0) c.check_uint("retry_budget.budget_percent", budget_percent, 1, 100);
  c.check_uint("retry_budget.min_retry_concurrency", min_retry_concurrency, 0, 100'000);
  return c.take();
}

ConfigIssues ClusterConfig::validate() const {
  ConfigChecker c;
  ClusterConfig defaults;
  c.check_name("name", name);
  c.check_duration("connect_timeout", connect_timeout, milliseconds(1), hours(1));
  c.check_uint("max_connect_attempts", max_connect_attempts, 1, 100);
  c.nested("socket_options", socket_options.validate(/*listener=*/false));
  c.nested("pool", pool.validate());
  c.nested("", lb.validate());
  c.nested("health_check", health_check.validate());
  if (outlier) c.nested("outlier_detection", outlier->validate());
  c.check_uint("panic_threshold", panic_threshold, 0, 100);
  c.nested("circuit_breakers", circuit_breakers.validate());
  if (tls) c.nested("tls", tls->validate());
  c.nested("http2", http2.validate());
  bool offers_h2 = tls && std::find(tls->alpn.begin(), tls->alpn.end(), "h2") != tls->alpn.end();
  if (protocol != Protocol::kHttp1 && tls && !offers_h2) {
    c.error("tls.alpn",
            fmt::format("protocol: {} needs \"h2\" in the ALPN list", to_string(protocol)));
  }
  if (protocol == Protocol::kHttp2 && offers_h2 && tls->alpn != std::vector<std::string>{"h2"}) {
    c.error("tls.alpn",
            "protocol: http2 offers h2 alone (an endpoint that chose another protocol could not "
            "be spoken to); say protocol: auto to accept both");
  }
  if (protocol == Protocol::kHttp1 && !(http2 == http::http2::ClientOptions{})) {
    c.error("http2", "only with protocol: http2 or auto");
  }
  if (protocol != Protocol::kHttp1 && pool.min_idle > 0) {
    c.error("pool.min_idle",
            fmt::format("keeps HTTP/1.1 connections open ahead of demand; not with protocol: {}",
                        to_string(protocol)));
  }

  bool dns = is_dns(type);
  if (!is_discovered(type) && on_address_change != defaults.on_address_change) {
    c.error("on_address_change", "only for type: strict_dns, logical_dns, dns_srv or file");
  }
  if (!dns && dns_failure_refresh != defaults.dns_failure_refresh) {
    c.error("dns_failure_refresh", "only for type: strict_dns, logical_dns or dns_srv");
  }
  c.check_duration("dns_failure_refresh", dns_failure_refresh, milliseconds(100), hours(1));
  if (type != Type::kLogicalDns && connection_attempt_delay != defaults.connection_attempt_delay) {
    c.error("connection_attempt_delay",
            "only for type: logical_dns (other types make each address an endpoint of its own)");
  }
  c.check_duration("connection_attempt_delay", connection_attempt_delay, milliseconds(10),
                   seconds(2));

  if (type == Type::kDnsSrv) {
    if (srv_name.empty()) {
      c.missing("srv_name");
    } else if (!valid_host_name(srv_name)) {
      c.error("srv_name",
              fmt::format("'{}' is not a DNS name such as _http._tcp.example.com", srv_name));
    }
    if (!endpoints.empty() || !dns_targets.empty()) {
      c.error("endpoints", "not with type: dns_srv (the SRV records list the endpoints)");
    }
    return c.take();
  }
  if (!srv_name.empty()) c.error("srv_name", "only for type: dns_srv");
  if (type == Type::kFile) {
    if (file_path.empty()) c.missing("file.path");
    c.check_duration("file.batch_window", file_batch_window, Duration{0}, std::chrono::seconds(10));
    if (!endpoints.empty() || !dns_targets.empty()) {
      c.error("endpoints", "not with type: file (the file lists the endpoints)");
    }
    return c.take();
  }
  if (!file_path.empty()) c.error("file", "only for type: file");
  if (type == Type::kEtcd) {
    if (etcd.endpoints.empty()) c.missing("etcd.endpoints");
    if (etcd.prefix.empty()) c.missing("etcd.prefix");
    if (etcd.username.empty() != etcd.password.empty()) {
      c.error("etcd", "username and password go together");
    }
    c.check_duration("etcd.watch_timeout", etcd.watch_timeout, std::chrono::seconds(1),
                     std::chrono::hours(1));
    c.check_duration("etcd.batch_window", etcd.batch_window, Duration{0}, std::chrono::seconds(10));
    if (etcd.tls) c.nested("etcd.tls", etcd.tls->validate());
    if (etcd.initial_fetch_timeout != Duration{}) {
      c.check_duration("etcd.initial_fetch_timeout", etcd.initial_fetch_timeout,
                       std::chrono::milliseconds(100), std::chrono::minutes(10));
    }
    if (etcd.max_staleness != Duration{}) {
      c.check_duration("etcd.max_staleness", etcd.max_staleness, std::chrono::seconds(1),
                       std::chrono::hours(24));
    }
    if (!etcd.persist.empty()) {
      if (etcd.persist.front() != '/') {
        c.error("etcd.persist", fmt::format("'{}': expected an absolute path such as "
                                            "/var/lib/sluice/{}.json",
                                            etcd.persist, name.empty() ? "api" : name));
      } else if (etcd.persist.back() == '/') {
        c.error("etcd.persist",
                fmt::format("'{}': expected a file's path, not a directory's", etcd.persist));
      }
    }
    if (!endpoints.empty() || !dns_targets.empty()) {
      c.error("endpoints", "not with type: etcd (the registry lists the endpoints)");
    }
    return c.take();
  }
  if (!(etcd == EtcdSourceConfig{})) c.error("etcd", "only for type: etcd");
  if (dns && !endpoints.empty()) {
    c.error("endpoints",
            fmt::format("type: {} takes names (dns_targets), not addresses", type_name(type)));
  }
  if (!dns && !dns_targets.empty()) {
    c.error("endpoints",
            "type: static takes addresses; names need type: strict_dns or "
            "logical_dns");
  }
  size_t count = dns ? dns_targets.size() : endpoints.size();
  if (count == 0) {
    c.error("endpoints", "expected a non-empty list of endpoints");
    return c.take();
  }
  if (count > health::ClusterShared::kMaxEndpoints) {
    c.error("endpoints", fmt::format("at most {} endpoints", health::ClusterShared::kMaxEndpoints));
    return c.take();
  }
  if (type == Type::kLogicalDns && count != 1) {
    c.error("endpoints", "type: logical_dns takes exactly one endpoint (a name)");
  }
  for (size_t i = 0; i < dns_targets.size(); ++i) {
    const DnsTarget& t = dns_targets[i];
    std::string at = fmt::format("endpoints[{}]", i);
    if (t.host.empty()) {
      c.missing(at + ".address");
    } else if (t.port == 0 ||
               (!valid_host_name(t.host) && !net::Address::parse_ip(t.host, 0).is_ok())) {
      c.error(at + ".address",
              fmt::format("'{}:{}': expected a name and port such as api.internal:8080", t.host,
                          t.port));
    }
    c.check_uint(at + ".weight", t.weight, 1, kMaxWeight);
  }
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const EndpointConfig& e = endpoints[i];
    std::string at = fmt::format("endpoints[{}]", i);
    if (e.address.length() == 0) {
      c.missing(at + ".address");
    } else if (e.address.port() == 0) {
      c.error(at + ".address",
              fmt::format("'{}' needs a port from 1 to 65535", e.address.to_string()));
    } else if (source_address && e.address.family() != source_address->family()) {
      c.error(at + ".address",
              fmt::format("family differs from source_address {}", source_address->to_string()));
    }
    c.check_uint(at + ".weight", e.weight, 1, kMaxWeight);
  }
  return c.take();
}

}  // namespace sluice::upstream
