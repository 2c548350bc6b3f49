#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "config/yaml_map.h"
#include "config/yaml_reader.h"
#include "stun/binding.h"
#include "tls/cert_store.h"

namespace sluice::config {
namespace {

using std::chrono::hours;

bool uses_hash(const upstream::ClusterConfig& c) {
  return c.lb.policy == upstream::lb::Policy::kRingHash ||
         c.lb.policy == upstream::lb::Policy::kMaglev;
}

const char* policy_name(upstream::lb::Policy p) {
  switch (p) {
    case upstream::lb::Policy::kRoundRobin:
      return "round_robin";
    case upstream::lb::Policy::kLeastRequest:
      return "least_request";
    case upstream::lb::Policy::kRandom:
      return "random";
    case upstream::lb::Policy::kRingHash:
      return "ring_hash";
    case upstream::lb::Policy::kMaglev:
      return "maglev";
  }
  return "?";
}

// Maps the document to a Config; every value rule is left to Config::validate().
std::shared_ptr<Config> map_config(const YAML::Node& root, YamlReader& r) {
  auto cfg = std::make_shared<Config>();
  MapReader top(r, root, "",
                {"workers", "log_level", "drain_timeout", "ready_timeout", "admin", "dns", "event",
                 "listeners", "clusters", "bgp", "registration"});
  if (!top.ok()) return cfg;
  if (top.has("workers")) {
    top.read_uint("workers", cfg->workers);
  } else {
    unsigned cores = std::thread::hardware_concurrency();
    cfg->workers = cores == 0 ? 1 : std::min(cores, Config::kMaxWorkers);
  }
  if (top.has("log_level")) {
    std::string level;
    top.read_string("log_level", level);
    if (!level.empty() && !log::parse_level(level, &cfg->log_level)) {
      r.error(top.get("log_level"), "log_level",
              fmt::format("expected one of: debug, info, warn, error, got '{}'", level));
    }
  }
  top.read_duration("drain_timeout", cfg->drain_timeout);
  top.read_duration("ready_timeout", cfg->ready_timeout);
  if (top.has("dns")) read_dns(r, top.get("dns"), cfg->dns);
  if (top.has("event")) {
    MapReader e(r, top.get("event"), "event", {"backend", "receive"});
    static constexpr const char* kBackends[] = {"epoll", "io_uring", "auto"};
    if (int i = e.ok() ? read_choice(r, e, "backend", kBackends) : -1; i >= 0) {
      cfg->event.backend = *event::parse_backend(kBackends[i]);
    }
    static constexpr const char* kReceives[] = {"completion", "readiness"};
    if (int i = e.ok() ? read_choice(r, e, "receive", kReceives) : -1; i >= 0) {
      cfg->event.receive = *event::parse_receive(kReceives[i]);
    }
  }
  if (top.has("admin")) {
    MapReader a(r, top.get("admin"), "admin", {"address", "dashboard", "events"});
    if (a.ok()) {
      net::Address address = *net::Address::parse("127.0.0.1:9901");
      read_address(r, a, "address", address);
      cfg->admin_address = address;
      if (a.has("dashboard")) {
        bool dashboard = false;
        a.read_bool("dashboard", dashboard);
        cfg->admin_dashboard = dashboard;
      }
      if (a.has("events")) {
        MapReader e(r, a.get("events"), a.path("events"), {"interval", "max_subscribers"});
        if (e.ok()) {
          e.read_duration("interval", cfg->admin_events.interval);
          e.read_uint("max_subscribers", cfg->admin_events.max_subscribers);
        }
      }
    }
  }
  if (top.has("bgp")) cfg->bgp = read_bgp(r, top.get("bgp"));
  if (top.has("registration")) {
    cfg->registration = read_registration(r, top.get("registration"));
  }
  if (top.has("clusters")) {
    YAML::Node list = top.get("clusters");
    if (!list.IsSequence()) {
      r.error(list, "clusters", "expected a list of clusters");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        cfg->clusters.push_back(read_cluster(r, list[i], fmt::format("clusters[{}]", i)));
      }
    }
  }
  if (top.require("listeners")) {
    YAML::Node list = top.get("listeners");
    if (!list.IsSequence()) {
      r.error(list, "listeners", "expected a non-empty list of listeners");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        cfg->listeners.push_back(read_listener(r, list[i], fmt::format("listeners[{}]", i)));
      }
    }
  }
  // HTTP-only blocks of a cluster that only TCP listeners use: TCP sessions neither borrow
  // pooled connections nor pass the circuit breakers.
  std::set<std::string> tcp_only;
  for (const auto& l : cfg->listeners) {
    if (l->protocol != proxy::Protocol::kTcp && l->protocol != proxy::Protocol::kUdp) continue;
    tcp_only.insert(l->cluster);
    for (const auto& route : l->sni_routes) tcp_only.insert(route.cluster);
  }
  for (const auto& l : cfg->listeners) {
    for (const auto& vh : l->http.virtual_hosts) {
      for (const auto& route : vh.routes) tcp_only.erase(route.cluster);
    }
  }
  if (top.has("clusters") && top.get("clusters").IsSequence()) {
    YAML::Node list = top.get("clusters");
    for (size_t i = 0; i < cfg->clusters.size() && i < list.size(); ++i) {
      const std::string& name = cfg->clusters[i]->name;
      if (name.empty() || !tcp_only.count(name) || !list[i].IsMap()) continue;
      for (const char* key : {"pool", "circuit_breakers"}) {
        if (!list[i][key]) continue;
        r.warning(list[i][key], fmt::format("clusters[{}].{}", i, key),
                  fmt::format("not used: only TCP listeners use cluster '{}' (it applies to HTTP "
                              "routes)",
                              name));
      }
    }
  }
  // Resolver settings with no DNS cluster to use them are silently unused.
  bool uses_dns = false;
  for (const auto& c : cfg->clusters) uses_dns |= upstream::is_dns(c->type);
  if (top.has("dns") && !uses_dns) {
    r.warning(top.get("dns"), "dns",
              "not used: no cluster has type strict_dns, logical_dns or dns_srv");
  }
  return cfg;
}

void add_issue(YamlReader& r, ConfigIssue::Severity severity, std::string path,
               std::string message) {
  ConfigIssue issue;
  issue.severity = severity;
  issue.path = std::move(path);
  issue.message = std::move(message);
  r.add(issue);
}

// Reads the files TLS settings name, once per load, so that `sluice check` and a reload
// find a certificate that would fail handshakes before it is used. Problems are placed at
// the listener's or cluster's tls block; the listeners' certificate stores are kept for the
// workers. Blocking reads: main thread, at load time.
void load_tls_files(const Config& cfg, YamlReader& r) {
  using Severity = ConfigIssue::Severity;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const proxy::ListenerConfig& l = *cfg.listeners[i];
    if (!l.tls) continue;
    std::string at = fmt::format("listeners[{}].tls", i);
    if (!l.tls->client_ca.empty()) {
      Status ca = tls::check_ca_file(l.tls->client_ca);
      if (!ca) add_issue(r, Severity::kError, at + ".client_ca", ca.message());
    }
    if (has_errors(l.tls->validate())) continue;  // already reported
    std::vector<std::string> warnings;
    auto store = tls::CertStore::load(*l.tls, &warnings);
    for (std::string& w : warnings) add_issue(r, Severity::kWarning, at, std::move(w));
    if (!store) {
      std::istringstream lines(store.status().message());
      for (std::string line; std::getline(lines, line);) {
        add_issue(r, Severity::kError, at, line);
      }
      continue;
    }
    l.cert_store = std::move(*store);
  }
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    const upstream::ClusterConfig& c = *cfg.clusters[i];
    if (!c.tls) continue;
    std::string at = fmt::format("clusters[{}].tls", i);
    if (!c.tls->ca.empty()) {
      Status ca = tls::check_ca_file(c.tls->ca);
      if (!ca) add_issue(r, Severity::kError, at + ".ca", ca.message());
    }
    if (c.tls->certificate_chain.empty() || has_errors(c.tls->validate())) continue;
    std::vector<std::string> warnings;
    auto cert = tls::load_certificate(c.tls->certificate_chain, c.tls->private_key,
                                      std::chrono::system_clock::now(), &warnings);
    for (std::string& w : warnings) add_issue(r, Severity::kWarning, at, std::move(w));
    if (!cert) add_issue(r, Severity::kError, at, cert.status().message());
  }
}

}  // namespace

ConfigIssues Config::validate() const {
  ConfigChecker c;
  c.check_uint("workers", workers, 1, kMaxWorkers);
  c.check_duration("drain_timeout", drain_timeout, Duration{0}, hours(1));
  c.check_duration("ready_timeout", ready_timeout, Duration{0}, hours(1));
  c.nested("dns", dns.validate());
  c.nested("event", event.validate());
  c.nested("admin.events", admin_events.validate());

  std::map<std::string, size_t> cluster_index;
  std::map<std::string, size_t> persisted_by;  // etcd.persist path -> the cluster writing it
  bool every_cluster_named = true;             // else "no cluster named" would only echo that error
  for (size_t i = 0; i < clusters.size(); ++i) {
    std::string at = fmt::format("clusters[{}]", i);
    c.nested(at, clusters[i]->validate());
    if (const std::string& p = clusters[i]->etcd.persist; !p.empty()) {
      auto [first, fresh] = persisted_by.emplace(p, i);
      if (!fresh) {
        c.duplicate(at + ".etcd.persist",
                    fmt::format("'{}' is the persist file of another cluster already", p),
                    fmt::format("clusters[{}].etcd.persist", first->second));
      }
    }
    const std::string& name = clusters[i]->name;
    if (name.empty()) {
      every_cluster_named = false;
      continue;
    }
    auto [it, fresh] = cluster_index.emplace(name, i);
    if (!fresh) {
      c.duplicate(at + ".name", fmt::format("duplicate cluster name '{}'", name),
                  fmt::format("clusters[{}].name", it->second));
    }
  }
  auto cluster_named = [&](const std::string& name) -> const upstream::ClusterConfig* {
    auto it = cluster_index.find(name);
    return it == cluster_index.end() ? nullptr : clusters[it->second].get();
  };

  std::set<std::string> used;
  for (const auto& l : listeners) {
    used.insert(l->cluster);
    for (const auto& route : l->sni_routes) used.insert(route.cluster);
    for (const auto& vh : l->http.virtual_hosts) {
      for (const auto& route : vh.routes) used.insert(route.cluster);
    }
  }
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (clusters[i]->name.empty() || used.count(clusters[i]->name)) continue;
    // Still resolved and health-checked, but no request or connection ever reaches it.
    c.warning(fmt::format("clusters[{}]", i),
              fmt::format("not used: no listener or route names cluster '{}'", clusters[i]->name));
  }

  if (registration) c.nested("registration", registration->validate());
  if (bgp) {
    c.nested("bgp", bgp->validate());
    for (size_t i = 0; i < bgp->announce.size(); ++i) {
      const bgp::AnnounceConfig& a = bgp->announce[i];
      if (a.target.empty()) continue;
      bool found = false;
      if (a.source == bgp::AnnounceConfig::Source::kCluster) {
        found = cluster_index.count(a.target) != 0 || !every_cluster_named;
      } else {
        for (const auto& l : listeners) found |= l->name == a.target;
      }
      if (!found) {
        bool cluster = a.source == bgp::AnnounceConfig::Source::kCluster;
        c.error(fmt::format("bgp.announce[{}].when.{}", i, cluster ? "cluster" : "listener"),
                fmt::format("no {} named '{}'", cluster ? "cluster" : "listener", a.target));
      }
    }
  }

  if (listeners.empty()) c.error("listeners", "expected a non-empty list of listeners");
  std::map<std::string, size_t> listener_index;
  std::map<std::string, std::string> addresses;
  for (size_t i = 0; i < listeners.size(); ++i) {
    const proxy::ListenerConfig& l = *listeners[i];
    std::string at = fmt::format("listeners[{}]", i);
    c.nested(at, l.validate());
    if (!l.name.empty()) {
      auto [it, fresh] = listener_index.emplace(l.name, i);
      if (!fresh) {
        c.duplicate(at + ".name", fmt::format("duplicate listener name '{}'", l.name),
                    fmt::format("listeners[{}].name", it->second));
      }
    }
    if (l.address.length() != 0 && l.address.port() != 0) {
      auto [it, fresh] = addresses.emplace(l.address.to_string(), l.name);
      if (!fresh) {
        c.error(at + ".address", fmt::format("{} is already used by listener '{}'",
                                             l.address.to_string(), it->second));
      }
    }
    // A stun listener's alternate address (RFC 5780) binds three more addresses.
    const auto& alt = l.stun.alternate_address;
    if (alt && alt->port() != 0 && l.address.port() != 0 && alt->family() == l.address.family()) {
      for (const net::Address& a :
           {stun::combine(l.address, *alt), stun::combine(*alt, l.address), *alt}) {
        auto [it, fresh] = addresses.emplace(a.to_string(), l.name);
        if (!fresh && it->second != l.name) {
          c.error(at + ".stun.alternate_address",
                  fmt::format("{} is already used by listener '{}'", a.to_string(), it->second));
        }
      }
    }
    if (!every_cluster_named) continue;
    auto no_cluster = [&](const std::string& key, const std::string& name) {
      std::string known;
      for (const auto& [defined, index] : cluster_index) {
        known += known.empty() ? defined : ", " + defined;
      }
      c.error(key, fmt::format("no cluster named '{}' (defined clusters: {})", name,
                               known.empty() ? "none" : known));
    };
    for (size_t k = 0; l.protocol == proxy::Protocol::kTcp && k < l.sni_routes.size(); ++k) {
      const std::string& name = l.sni_routes[k].cluster;
      if (!name.empty() && !cluster_named(name)) {
        no_cluster(fmt::format("{}.sni_routes[{}].cluster", at, k), name);
      }
    }
    bool has_cluster = l.protocol == proxy::Protocol::kTcp || l.protocol == proxy::Protocol::kUdp;
    if (has_cluster && !l.cluster.empty()) {
      const upstream::ClusterConfig* cl = cluster_named(l.cluster);
      if (!cl) {
        no_cluster(at + ".cluster", l.cluster);
      } else if (l.hash_key != proxy::ListenerConfig::HashKey::kSourceIp && !uses_hash(*cl)) {
        c.warning(at + ".hash_key",
                  fmt::format("ignored: cluster '{}' balances with lb_policy: {} (hash_key "
                              "steers ring_hash and maglev only)",
                              cl->name, policy_name(cl->lb.policy)));
      }
    }
    const auto& vhosts = l.http.virtual_hosts;
    for (size_t v = 0; v < vhosts.size(); ++v) {
      for (size_t k = 0; k < vhosts[v].routes.size(); ++k) {
        const proxy::http::Route& route = vhosts[v].routes[k];
        if (route.action != proxy::http::Route::Action::kForward || route.cluster.empty()) {
          continue;
        }
        std::string rat = fmt::format("{}.virtual_hosts[{}].routes[{}]", at, v, k);
        const upstream::ClusterConfig* cl = cluster_named(route.cluster);
        if (!cl) {
          c.error(rat + ".cluster", fmt::format("no cluster named '{}'", route.cluster));
        } else if (!route.hash_policy.empty() && !uses_hash(*cl)) {
          c.warning(rat + ".hash_policy",
                    fmt::format("ignored: cluster '{}' balances with lb_policy: {} (hash_policy "
                                "steers ring_hash and maglev only)",
                                cl->name, policy_name(cl->lb.policy)));
        }
      }
    }
  }
  return c.take();
}

bool Config::dashboard_enabled() const {
  if (!admin_address) return false;
  if (admin_dashboard) return *admin_dashboard;
  // Only where the admin endpoint is not reachable from elsewhere.
  std::string ip = admin_address->ip_string();
  return ip.starts_with("127.") || ip == "::1";
}

const upstream::ClusterConfig* Config::find_cluster(std::string_view name) const {
  for (const auto& c : clusters) {
    if (c->name == name) return c.get();
  }
  return nullptr;
}

Result<std::shared_ptr<const Config>> load_string(const std::string& yaml,
                                                  const std::string& file_name,
                                                  std::vector<std::string>* warnings) {
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
  std::shared_ptr<Config> cfg;
  try {
    r.index(root);
    cfg = map_config(root, r);
    for (const ConfigIssue& issue : cfg->validate()) r.add(issue);
    load_tls_files(*cfg, r);
  } catch (const YAML::Exception& e) {
    return Status::error(fmt::format("{}: {}", r.location(e.mark), e.msg));
  }
  if (r.has_errors()) return Status::error(r.report(/*warnings=*/false));
  if (warnings) {
    std::string all = r.report(/*warnings=*/true);
    std::istringstream lines(all);
    for (std::string line; std::getline(lines, line);) warnings->push_back(line);
  }
  return std::shared_ptr<const Config>(std::move(cfg));
}

Result<std::shared_ptr<const Config>> load_file(const std::string& path,
                                                std::vector<std::string>* warnings) {
  std::ifstream in(path);
  if (!in) return Status::error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path, warnings);
}

}  // namespace sluice::config
