#include "server/server.h"

#include <signal.h>

#include <map>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "admin/admin_server.h"
#include "admin/metrics.h"
#include "base/log.h"
#include "discovery/dns_discovery.h"
#include "dns/resolver.h"
#include "event/signals.h"
#include "server/worker.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {
namespace {

// POST /clusters/{cluster}/endpoints/{ip:port}/drain, and .../undrain to take it back.
admin::AdminResponse drain_endpoint(const admin::AdminRequest& req, const config::Config& config,
                                    upstream::health::HealthManager& health) {
  auto text = [](int status, std::string body) {
    return admin::AdminResponse{status, "text/plain; charset=utf-8", std::move(body)};
  };
  std::string_view path = req.path;
  path.remove_prefix(std::string_view("/clusters/").size());
  size_t slash = path.find('/');
  std::string_view cluster = path.substr(0, slash);
  std::string_view rest = slash == std::string_view::npos ? "" : path.substr(slash);
  constexpr std::string_view kEndpoints = "/endpoints/";
  size_t last = rest.rfind('/');
  std::string_view action = last == std::string_view::npos ? "" : rest.substr(last + 1);
  if (rest.substr(0, kEndpoints.size()) != kEndpoints || last <= kEndpoints.size() ||
      (action != "drain" && action != "undrain")) {
    return text(404, "expected /clusters/{cluster}/endpoints/{ip:port}/drain or .../undrain\n");
  }
  std::string_view endpoint = rest.substr(kEndpoints.size(), last - kEndpoints.size());
  bool drain = action == "drain";
  if (req.method != "POST") return text(405, fmt::format("use POST to {} an endpoint\n", action));
  if (!config.find_cluster(cluster))
    return text(404, fmt::format("no cluster named {}\n", cluster));
  auto found = health.find_endpoint(cluster, endpoint);
  if (!found) return text(404, fmt::format("cluster {} has no endpoint {}\n", cluster, endpoint));
  health.set_draining(found->first, found->second, drain);
  return text(200, fmt::format("endpoint {} of cluster {} {}\n", endpoint, cluster,
                               drain ? "is draining" : "takes new requests again"));
}

// The value of `name` in a query string ("" when absent).
std::string query_value(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return std::string(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

// GET /config: the effective configuration, defaults applied.
std::string config_json(const config::Config& c,
                        const std::vector<std::pair<std::string, std::string>>& addresses) {
  using nlohmann::json;
  auto secs = [](Duration d) { return format_duration(d); };
  json out;
  out["workers"] = c.workers;
  out["drain_timeout"] = secs(c.drain_timeout);
  out["ready_timeout"] = secs(c.ready_timeout);
  json listeners = json::array();
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const auto& l = *c.listeners[i];
    json j;
    j["name"] = l.name;
    j["address"] = i < addresses.size() ? addresses[i].second : l.address.to_string();
    j["protocol"] = l.protocol == proxy::Protocol::kHttp ? "http" : "tcp";
    j["max_connections"] = l.max_connections;
    if (l.protocol == proxy::Protocol::kTcp) {
      j["cluster"] = l.cluster;
      j["idle_timeout"] = secs(l.idle_timeout);
      j["splice"] = l.splice;
    } else {
      json vhosts = json::array();
      for (const auto& vh : l.http.virtual_hosts) {
        json routes = json::array();
        for (const auto& r : vh.routes) {
          json rj;
          rj["match"] = r.match.path;
          if (r.action == proxy::http::Route::Action::kForward) {
            rj["cluster"] = r.cluster;
            rj["timeout"] = secs(r.timeout);
            rj["num_retries"] = r.retry.num_retries;
          }
          routes.push_back(std::move(rj));
        }
        vhosts.push_back({{"name", vh.name}, {"domains", vh.domains}, {"routes", routes}});
      }
      j["virtual_hosts"] = std::move(vhosts);
      j["keepalive_timeout"] = secs(l.http.keepalive_timeout);
    }
    if (!l.access_log.path.empty()) j["access_log"] = l.access_log.path;
    listeners.push_back(std::move(j));
  }
  out["listeners"] = std::move(listeners);
  json clusters = json::array();
  for (const auto& cp : c.clusters) {
    const auto& cl = *cp;
    json j;
    j["name"] = cl.name;
    j["type"] = upstream::to_string(cl.type);
    j["lb_policy"] = upstream::lb::to_string(cl.lb.policy);
    j["connect_timeout"] = secs(cl.connect_timeout);
    j["panic_threshold"] = cl.panic_threshold;
    json eps = json::array();
    for (const auto& e : cl.endpoints) {
      eps.push_back({{"address", e.address.to_string()}, {"weight", e.weight}});
    }
    for (const auto& t : cl.dns_targets) {
      eps.push_back({{"address", t.host + ":" + std::to_string(t.port)}, {"weight", t.weight}});
    }
    j["endpoints"] = std::move(eps);
    if (!cl.srv_name.empty()) j["srv_name"] = cl.srv_name;
    j["pool"] = {{"max_connections", cl.pool.max_connections},
                 {"max_pending_requests", cl.pool.max_pending},
                 {"idle_timeout", secs(cl.pool.idle_timeout)},
                 {"max_lifetime", secs(cl.pool.max_lifetime)},
                 {"min_idle", cl.pool.min_idle}};
    if (cl.health_check.type != upstream::health::HealthCheckConfig::Type::kNone) {
      j["health_check"] = {
          {"type", cl.health_check.type == upstream::health::HealthCheckConfig::Type::kTcp
                       ? "tcp"
                       : "http"},
          {"interval", secs(cl.health_check.interval)},
          {"timeout", secs(cl.health_check.timeout)},
          {"healthy_threshold", cl.health_check.healthy_threshold},
          {"unhealthy_threshold", cl.health_check.unhealthy_threshold}};
    }
    if (cl.outlier) {
      j["outlier_detection"] = {
          {"consecutive_5xx", cl.outlier->consecutive_5xx},
          {"consecutive_gateway_failure", cl.outlier->consecutive_gateway_failure},
          {"base_ejection_time", secs(cl.outlier->base_ejection_time)},
          {"max_ejection_percent", cl.outlier->max_ejection_percent}};
    }
    j["circuit_breakers"] = {{"max_active_requests", cl.circuit_breakers.max_active_requests},
                             {"max_active_retries", cl.circuit_breakers.max_active_retries},
                             {"retry_budget_percent", cl.circuit_breakers.budget_percent}};
    clusters.push_back(std::move(j));
  }
  out["clusters"] = std::move(clusters);
  return out.dump(2) + "\n";
}

}  // namespace

Server::Server(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {}

int Server::run() {
  // Before any thread starts, so that every thread inherits the mask and only the main
  // loop's signalfd sees these.
  event::block_process_signals({SIGTERM, SIGINT});
  ::signal(SIGPIPE, SIG_IGN);

  // Upstream socket options are applied on every connect; try them once now so that a value
  // the kernel refuses stops startup with a clear message instead of failing each connect.
  for (const auto& c : config_->clusters) {
    int family = c->endpoints.empty() ? AF_INET : c->endpoints.front().address.family();
    auto probe = net::tcp_socket(family);
    if (!probe) {
      LOG_ERROR("cluster {}: {}", c->name, probe.status().message());
      return 1;
    }
    if (Status s = net::apply_socket_options(probe->get(), c->socket_options); !s) {
      LOG_ERROR("cluster {}: socket_options: {}", c->name, s.message());
      return 1;
    }
  }

  net::ephemeral_port_count();  // read the port range now, off the workers' path

  // Access logs, one writer per file however many listeners share it.
  std::map<std::string, std::shared_ptr<proxy::AccessLog>> access_logs;
  for (const auto& l : config_->listeners) {
    const std::string& path = l->access_log.path;
    if (path.empty() || access_logs.count(path)) continue;
    auto log = proxy::AccessLog::open(path);
    if (!log) {
      LOG_ERROR("listener {}: {}", l->name, log.status().message());
      return 1;
    }
    access_logs.emplace(path, std::move(log.value()));
  }

  const size_t n = config_->workers;
  std::vector<std::vector<ListenerHandoff>> per_worker(n);
  std::vector<std::pair<std::string, std::string>> listener_addresses;  // name, bound address
  std::vector<std::shared_ptr<std::atomic<uint32_t>>> counts;
  for (const auto& l : config_->listeners) {
    auto count = std::make_shared<std::atomic<uint32_t>>(0);
    counts.push_back(count);
    net::Address address = l->address;
    for (size_t w = 0; w < n; ++w) {
      auto fd = net::bind_listener(address, l->backlog, l->socket_options);
      if (!fd) {
        LOG_ERROR("listener {}: {}", l->name, fd.status().message());
        return 1;
      }
      if (address.port() == 0) {
        // Port 0: the first socket picks the port; every other worker binds that same port.
        auto bound = net::local_address(fd->get());
        if (!bound) {
          LOG_ERROR("listener {}: {}", l->name, bound.status().message());
          return 1;
        }
        address = *bound;
      }
      std::shared_ptr<proxy::AccessLog> access_log;
      if (!l->access_log.path.empty()) access_log = access_logs.at(l->access_log.path);
      per_worker[w].push_back(ListenerHandoff{l, std::move(fd.value()), count, access_log});
    }
    listener_addresses.emplace_back(l->name, address.to_string());
    if (l->protocol == proxy::Protocol::kHttp) {
      LOG_INFO("listener {} listening on {} (http, {} virtual hosts)", l->name, address.to_string(),
               l->http.virtual_hosts.size());
    } else {
      LOG_INFO("listener {} listening on {} (tcp, cluster {})", l->name, address.to_string(),
               l->cluster);
    }
  }

  event::Loop main_loop;
  std::vector<std::unique_ptr<Worker>> workers;
  upstream::health::HealthManager health(
      main_loop, config_->clusters,
      [&workers](size_t cluster, std::shared_ptr<const upstream::health::HealthSnapshot> s) {
        for (auto& w : workers) w->set_health(cluster, s);
      });
  // Workers report outcomes to the health manager and read its shared cluster state until
  // they are joined: join them before it goes, on every way out of this function.
  struct JoinWorkers {
    std::vector<std::unique_ptr<Worker>>& workers;
    ~JoinWorkers() {
      for (auto& w : workers) w->stop_and_join();
    }
  } join_workers{workers};

  // Ready once every endpoint with health checks has had its first answer: until then a
  // load balancer in front of sluice should not send it traffic.
  bool ready = false;
  bool draining = false;
  // DNS clusters are resolved on this loop; `sluice ready` waits for their first answers.
  std::unique_ptr<dns::Resolver> resolver;
  std::unique_ptr<discovery::DnsDiscovery> dns_discovery;
  bool uses_dns =
      std::any_of(config_->clusters.begin(), config_->clusters.end(),
                  [](const auto& c) { return c->type != upstream::ClusterConfig::Type::kStatic; });
  if (uses_dns) {
    auto r = dns::Resolver::create(main_loop, config_->dns);
    if (!r) {
      LOG_ERROR("dns: {}", r.status().message());
      return 1;
    }
    resolver = std::move(r.value());
    dns_discovery =
        std::make_unique<discovery::DnsDiscovery>(main_loop, *resolver, health, config_->clusters);
  }
  // Asks every worker for a copy of its counters (and connections) and calls `render`
  // on this loop once the last one arrived. Outlives the admin handlers that call it.
  auto gather = [&](bool connections, std::function<void(admin::MetricsInput&)> render) {
    struct Pending {
      admin::MetricsInput input;
      size_t waiting = 0;
      std::function<void(admin::MetricsInput&)> render;
    };
    auto pending = std::make_shared<Pending>();
    pending->render = std::move(render);
    pending->input.workers.resize(workers.size());
    pending->input.clusters = &config_->clusters;
    pending->input.listeners = &config_->listeners;
    pending->input.health = &health;
    pending->input.dns = resolver ? &resolver->stats() : nullptr;
    for (size_t i = 0; i < config_->listeners.size(); ++i) {
      pending->input.active_connections[config_->listeners[i]->name] = counts[i]->load();
    }
    pending->waiting = workers.size();
    for (size_t i = 0; i < workers.size(); ++i) {
      workers[i]->collect(connections, [&main_loop, pending, i](admin::WorkerReport r) {
        main_loop.post([pending, i, r = std::move(r)]() mutable {
          pending->input.workers[i] = std::move(r);
          if (--pending->waiting == 0) pending->render(pending->input);
        });
      });
    }
  };
  auto json = [](std::string body) {
    return admin::AdminResponse{200, "application/json", std::move(body)};
  };
  admin::AdminServer admin(main_loop);
  if (config_->admin_address) {
    admin.handle_sync("/live", [](const admin::AdminRequest&) {
      return admin::AdminResponse{200, "text/plain; charset=utf-8", "live\n"};
    });
    admin.handle_sync("/ready", [&](const admin::AdminRequest&) {
      if (draining) return admin::AdminResponse{503, "text/plain; charset=utf-8", "draining\n"};
      if (!ready) return admin::AdminResponse{503, "text/plain; charset=utf-8", "starting\n"};
      return admin::AdminResponse{200, "text/plain; charset=utf-8", "ready\n"};
    });
    admin.handle_sync("/clusters/", [&](const admin::AdminRequest& req) {
      return drain_endpoint(req, *config_, health);
    });
    admin.handle("/metrics", [&](const admin::AdminRequest&, admin::AdminServer::Respond respond) {
      gather(false, [respond](admin::MetricsInput& in) {
        respond(admin::AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                     admin::render_prometheus(in)});
      });
    });
    admin.handle("/clusters", [&](const admin::AdminRequest&, admin::AdminServer::Respond respond) {
      gather(false, [respond, json](admin::MetricsInput& in) {
        respond(json(admin::render_clusters_json(in)));
      });
    });
    admin.handle("/listeners",
                 [&](const admin::AdminRequest&, admin::AdminServer::Respond respond) {
                   gather(false, [respond, json, &listener_addresses](admin::MetricsInput& in) {
                     respond(json(admin::render_listeners_json(in, listener_addresses)));
                   });
                 });
    admin.handle("/connections",
                 [&](const admin::AdminRequest& req, admin::AdminServer::Respond respond) {
                   std::string cluster = query_value(req.query, "cluster");
                   std::string listener = query_value(req.query, "listener");
                   if (!cluster.empty() && !config_->find_cluster(cluster)) {
                     return respond(admin::AdminResponse{404, "text/plain; charset=utf-8",
                                                         "no cluster named " + cluster + "\n"});
                   }
                   gather(true, [respond, json, cluster, listener](admin::MetricsInput& in) {
                     respond(json(admin::render_connections_json(in, cluster, listener)));
                   });
                 });
    admin.handle_sync("/config", [&](const admin::AdminRequest&) {
      return json(config_json(*config_, listener_addresses));
    });
    auto bound = admin.start(*config_->admin_address);
    if (!bound) {
      LOG_ERROR("admin: {}", bound.status().message());
      return 1;
    }
    LOG_INFO("admin listening on {}", bound->to_string());
  }

  for (size_t w = 0; w < n; ++w) {
    workers.push_back(std::make_unique<Worker>(w, config_, std::move(per_worker[w]), health));
    workers.back()->start();
  }
  auto start_health = [&] {
    health.start(config_->ready_timeout, [&] {
      // Ready once every worker has applied the snapshots published so far: a client that
      // connects the moment sluice says ready must find the endpoints in place.
      auto pending = std::make_shared<size_t>(workers.size());
      for (auto& w : workers) {
        w->after_pending([&main_loop, &ready, pending, n, this] {
          main_loop.post([&ready, pending, n, this] {
            if (--*pending != 0) return;
            ready = true;
            log::write(log::Level::kInfo, fmt::format("sluice ready: {} workers, {} listeners", n,
                                                      config_->listeners.size()));
          });
        });
      }
    });
  };
  if (dns_discovery) {
    dns_discovery->start(start_health);
  } else {
    start_health();
  }

  size_t drained = 0;
  event::Timer drain_deadline(main_loop.timers(), [&] {
    uint64_t open = 0;
    for (const auto& c : counts) open += c->load();
    LOG_WARN("drain timeout after {}: closing {} open connections",
             format_duration(config_->drain_timeout), open);
    for (auto& w : workers) w->close_all();
  });
  event::SignalSet signals(main_loop, {SIGTERM, SIGINT}, [&](int sig) {
    if (draining) {
      LOG_WARN("{} again: closing every connection now", strsignal(sig));
      for (auto& w : workers) w->close_all();
      return;
    }
    draining = true;
    health.stop();
    if (dns_discovery) dns_discovery->stop();
    uint64_t open = 0;
    for (const auto& c : counts) open += c->load();
    LOG_INFO("{}: draining: stopped accepting, waiting up to {} for {} open connections",
             strsignal(sig), format_duration(config_->drain_timeout), open);
    drain_deadline.arm_at(main_loop.now() + config_->drain_timeout);
    for (auto& w : workers) {
      w->drain([&main_loop, &drained, n] {
        main_loop.post([&main_loop, &drained, n] {
          if (++drained == n) main_loop.stop();
        });
      });
    }
  });
  main_loop.run();
  drain_deadline.cancel();
  health.stop();

  // The exit summary: every declared counter, merged over the workers.
  admin::MetricsInput totals;
  totals.clusters = &config_->clusters;
  totals.health = &health;
  totals.dns = resolver ? &resolver->stats() : nullptr;
  for (auto& w : workers) {
    w->stop_and_join();
    admin::WorkerReport& r = totals.workers.emplace_back();
    r.tcp = w->final_stats();
    r.http = w->final_http_stats();
    for (const auto& c : w->final_cluster_stats()) r.clusters.push_back({.stats = c});
  }
  for (const auto& line : admin::exit_summary(totals)) LOG_INFO("{}", line);
  for (const auto& [path, log] : access_logs) {
    if (uint64_t dropped = log->dropped()) {
      LOG_WARN("access log {}: {} lines dropped (the writer could not keep up)", path, dropped);
    }
  }
  LOG_INFO("drained; exiting");
  return 0;
}

}  // namespace sluice::server
