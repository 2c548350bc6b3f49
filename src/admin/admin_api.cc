#include "admin/admin_api.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace sluice::admin {
namespace {

AdminResponse text(int status, std::string body) {
  return AdminResponse{status, "text/plain; charset=utf-8", std::move(body)};
}

AdminResponse json(std::string body) {
  return AdminResponse{200, "application/json", std::move(body)};
}

const upstream::ClusterConfig* find_cluster(
    const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters,
    std::string_view name) {
  for (const auto& c : clusters) {
    if (c->name == name) return c.get();
  }
  return nullptr;
}

}  // namespace

AdminResponse ready_response(LifecycleState state, bool replaced) {
  // A reload does not take sluice out of service, nor does an upgrade: once the new process
  // serves, an admin connection the old one accepted before still gets the address's answer.
  if (state == LifecycleState::kReady || state == LifecycleState::kReloading ||
      state == LifecycleState::kUpgrading || (state == LifecycleState::kDraining && replaced)) {
    return text(200, "ready\n");
  }
  return text(503, fmt::format("{}\n", to_string(state)));
}

AdminResponse endpoint_drain(
    const AdminRequest& req,
    const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters,
    upstream::health::HealthManager& health) {
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
  if (!find_cluster(clusters, cluster)) {
    return text(404, fmt::format("no cluster named {}\n", cluster));
  }
  auto found = health.find_endpoint(cluster, endpoint);
  if (!found) return text(404, fmt::format("cluster {} has no endpoint {}\n", cluster, endpoint));
  health.set_draining(found->first, found->second, drain);
  return text(200, fmt::format("endpoint {} of cluster {} {}\n", endpoint, cluster,
                               drain ? "is draining" : "takes new requests again"));
}

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

std::string render_config_json(
    const ProcessSettings& settings,
    const std::vector<std::shared_ptr<const proxy::ListenerConfig>>& listener_configs,
    const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& cluster_configs,
    const std::vector<std::pair<std::string, std::string>>& addresses) {
  using nlohmann::json;
  auto secs = [](Duration d) { return format_duration(d); };
  json out;
  out["workers"] = settings.workers;
  out["drain_timeout"] = secs(settings.drain_timeout);
  out["ready_timeout"] = secs(settings.ready_timeout);
  out["event"] = {{"backend", event::backend_name(settings.event_backend)},
                  {"in_use", event::backend_name(settings.event_in_use)}};
  json listeners = json::array();
  for (size_t i = 0; i < listener_configs.size(); ++i) {
    const auto& l = *listener_configs[i];
    json j;
    j["name"] = l.name;
    j["address"] = i < addresses.size() ? addresses[i].second : l.address.to_string();
    j["protocol"] = proxy::to_string(l.protocol);
    if (l.protocol == proxy::Protocol::kUdp) {
      const auto& u = l.udp;
      j["cluster"] = l.cluster;
      j["udp"] = {{"session_key", proxy::udp::kSessionKeyNames[static_cast<size_t>(u.session_key)]},
                  {"idle_timeout", secs(u.idle_timeout)},
                  {"max_responses", u.max_responses},
                  {"max_sessions", u.max_sessions},
                  {"max_sessions_per_source", u.max_sessions_per_source},
                  {"max_datagram_size", u.max_datagram_size},
                  {"proxy_protocol", u.proxy_protocol},
                  {"gro", u.gro},
                  {"gso", u.gso}};
    } else if (l.protocol == proxy::Protocol::kStun) {
      const auto& st = l.stun;
      j["stun"] = {{"software", st.software},
                   {"rate_limit", st.rate_limit},
                   {"rate_burst", st.rate_burst},
                   {"max_sources", st.max_sources}};
      if (st.alternate_address) j["stun"]["alternate_address"] = st.alternate_address->to_string();
      j["stun"]["tcp"] = st.tcp;
    } else {
      j["max_connections"] = l.max_connections;
    }
    if (l.protocol == proxy::Protocol::kTcp) {
      j["cluster"] = l.cluster;
      j["idle_timeout"] = secs(l.idle_timeout);
      j["splice"] = l.splice;
      if (!l.sni_routes.empty()) {
        json routes = json::array();
        for (const auto& r : l.sni_routes) {
          routes.push_back({{"names", r.names}, {"cluster", r.cluster}});
        }
        j["sni_routes"] = std::move(routes);
        j["sni_timeout"] = secs(l.sni_timeout);
      }
    } else if (l.protocol == proxy::Protocol::kHttp) {
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
  for (const auto& cp : cluster_configs) {
    const auto& cl = *cp;
    json j;
    j["name"] = cl.name;
    j["type"] = upstream::to_string(cl.type);
    j["lb_policy"] = upstream::lb::to_string(cl.lb.policy);
    j["protocol"] = upstream::to_string(cl.protocol);
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
          {"type", cl.health_check.type == upstream::health::HealthCheckConfig::Type::kTcp ? "tcp"
                   : cl.health_check.type == upstream::health::HealthCheckConfig::Type::kGrpc
                       ? "grpc"
                       : "http"},
          {"interval", secs(cl.health_check.interval)},
          {"timeout", secs(cl.health_check.timeout)},
          {"healthy_threshold", cl.health_check.healthy_threshold},
          {"unhealthy_threshold", cl.health_check.unhealthy_threshold}};
      if (cl.health_check.type == upstream::health::HealthCheckConfig::Type::kGrpc) {
        j["health_check"]["service"] = cl.health_check.grpc.service;
      }
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

std::string render_event_backend_metrics(event::Backend in_use) {
  std::string out =
      "# HELP sluice_event_backend The kernel interface the event loops use (1 for the one in "
      "use).\n"
      "# TYPE sluice_event_backend gauge\n";
  for (event::Backend b : {event::Backend::kEpoll, event::Backend::kIoUring}) {
    out += fmt::format("sluice_event_backend{{backend=\"{}\"}} {}\n", event::backend_name(b),
                       b == in_use ? 1 : 0);
  }
  return out;
}

std::string render_reload_json(const ReloadOutcome& o) {
  nlohmann::json j;
  using R = ReloadOutcome::Result;
  j["result"] = o.result == R::kApplied  ? "applied"
                : o.result == R::kFailed ? "failed"
                                         : "unchanged";
  j["dry_run"] = o.dry_run;
  j["generation"] = o.generation;
  j["changes"] = o.changes;
  j["errors"] = o.errors;
  j["warnings"] = o.warnings;
  j["apply_seconds"] = o.apply_seconds;
  return j.dump(2) + "\n";
}

std::string render_upgrade_json(const UpgradeOutcome& o) {
  nlohmann::json j;
  j["result"] = o.ok ? "upgraded" : "failed";
  j["pid"] = o.pid;
  j["error"] = o.error;
  return j.dump(2) + "\n";
}

void register_admin_api(AdminServer& server, AdminContext context) {
  auto ctx = std::make_shared<const AdminContext>(std::move(context));
  server.handle_sync("/live", [](const AdminRequest&) { return text(200, "live\n"); });
  server.handle_sync("/ready", [ctx](const AdminRequest&) {
    AdminResponse r = ready_response(ctx->lifecycle->state(), ctx->lifecycle->replaced());
    if (r.status == 200 && ctx->not_ready) {
      // Still serving (the last good endpoints): only /ready says so, for the orchestrator.
      if (std::string why = ctx->not_ready(); !why.empty()) {
        return text(503, fmt::format("not ready: {}\n", why));
      }
    }
    return r;
  });
  server.handle_sync("/clusters/", [ctx](const AdminRequest& req) {
    ConfigView view = ctx->view();
    return endpoint_drain(req, *view.clusters, *ctx->health);
  });
  server.handle("/metrics", [ctx](const AdminRequest& req, AdminServer::Respond respond) {
    const std::string* accept = req.headers.get("accept");
    bool open = accept && wants_openmetrics(*accept);
    // OpenMetrics: with exemplars, from the recent requests.
    ctx->gather({.recent = open}, [respond, ctx, open](MetricsInput& in) {
      std::string body = (open ? render_openmetrics(in) : render_prometheus(in)) +
                         render_lifecycle_metrics(ctx->lifecycle->state());
      if (ctx->reloads) body += render_reload_metrics(*ctx->reloads);
      if (ctx->view) body += render_event_backend_metrics(ctx->view().settings.event_in_use);
      if (open) {
        return respond(AdminResponse{200,
                                     "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                     to_openmetrics(body)});
      }
      respond(AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", std::move(body)});
    });
  });
  server.handle("/upgrade", [ctx](const AdminRequest& req, AdminServer::Respond respond) {
    if (req.method != "POST") return respond(text(405, "POST /upgrade starts a new binary\n"));
    if (!ctx->upgrade) return respond(text(501, "upgrading is not available\n"));
    ctx->upgrade([respond](UpgradeOutcome o) {
      respond(AdminResponse{o.ok ? 200 : 500, "application/json", render_upgrade_json(o)});
    });
  });
  server.handle("/reload", [ctx](const AdminRequest& req, AdminServer::Respond respond) {
    if (req.method != "POST") return respond(text(405, "POST /reload reloads the configuration\n"));
    if (!ctx->reload) return respond(text(501, "reloading is not available\n"));
    std::string dry = query_value(req.query, "dry_run");
    ctx->reload(dry == "1" || dry == "true", [respond](ReloadOutcome o) {
      int status = o.result == ReloadOutcome::Result::kFailed ? 400 : 200;
      respond(AdminResponse{status, "application/json", render_reload_json(o)});
    });
  });
  server.handle_sync("/registration", [ctx](const AdminRequest&) {
    if (!ctx->registration) return text(404, "no registration: block in the configuration\n");
    return json(ctx->registration());
  });
  server.handle_sync("/bgp", [ctx](const AdminRequest&) {
    if (!ctx->bgp) return text(404, "no bgp: block in the configuration\n");
    return json(ctx->bgp());
  });
  server.handle("/clusters", [ctx](const AdminRequest&, AdminServer::Respond respond) {
    ctx->gather({}, [respond](MetricsInput& in) { respond(json(render_clusters_json(in))); });
  });
  server.handle("/listeners", [ctx](const AdminRequest&, AdminServer::Respond respond) {
    ctx->gather({}, [respond, ctx](MetricsInput& in) {
      respond(json(render_listeners_json(in, ctx->view().listener_addresses)));
    });
  });
  server.handle("/connections", [ctx](const AdminRequest& req, AdminServer::Respond respond) {
    std::string cluster = query_value(req.query, "cluster");
    std::string listener = query_value(req.query, "listener");
    if (!cluster.empty() && !find_cluster(*ctx->view().clusters, cluster)) {
      return respond(text(404, "no cluster named " + cluster + "\n"));
    }
    ctx->gather({.connections = true}, [respond, cluster, listener](MetricsInput& in) {
      respond(json(render_connections_json(in, cluster, listener)));
    });
  });
  server.handle_sync("/config", [ctx](const AdminRequest&) {
    ConfigView view = ctx->view();
    return json(render_config_json(view.settings, *view.listeners, *view.clusters,
                                   view.listener_addresses));
  });
}

}  // namespace sluice::admin
