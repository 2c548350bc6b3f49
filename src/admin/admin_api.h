// The admin API's endpoints: /live, /ready, endpoint drain, /metrics, /clusters, /listeners,
// /connections and /config. The Server owns everything they read (the lifecycle, the
// configuration, the health manager) and keeps it alive as long as the AdminServer.
// Main thread only.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "admin/admin_server.h"
#include "admin/lifecycle.h"
#include "admin/metrics.h"
#include "base/units.h"
#include "proxy/listener_config.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::admin {

// The process-wide settings /config shows beside the listeners and clusters.
struct ProcessSettings {
  uint32_t workers = 0;
  Duration drain_timeout{0};
  Duration ready_timeout{0};
};

struct AdminContext {
  // Asks every worker for a copy of its counters (with `connections`, also its open
  // connections) and calls `render` on the main loop once the last one answered.
  using Gather = std::function<void(bool connections, std::function<void(MetricsInput&)> render)>;

  const Lifecycle* lifecycle = nullptr;
  ProcessSettings settings;
  const std::vector<std::shared_ptr<const proxy::ListenerConfig>>* listeners = nullptr;
  const std::vector<std::shared_ptr<const upstream::ClusterConfig>>* clusters = nullptr;
  upstream::health::HealthManager* health = nullptr;
  // Per listener, in config order: its name and the address it is bound to.
  const std::vector<std::pair<std::string, std::string>>* listener_addresses = nullptr;
  Gather gather;
};

// Registers every endpoint above on `server`.
void register_admin_api(AdminServer& server, AdminContext context);

// GET /ready: 200 "ready" when ready, 503 with the state's name otherwise.
AdminResponse ready_response(LifecycleState state);
// POST /clusters/{cluster}/endpoints/{ip:port}/drain, and .../undrain to take it back.
AdminResponse endpoint_drain(
    const AdminRequest& req,
    const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters,
    upstream::health::HealthManager& health);
// GET /config: the effective configuration, defaults applied.
std::string render_config_json(
    const ProcessSettings& settings,
    const std::vector<std::shared_ptr<const proxy::ListenerConfig>>& listeners,
    const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters,
    const std::vector<std::pair<std::string, std::string>>& addresses);
// The value of `name` in a query string ("" when absent).
std::string query_value(std::string_view query, std::string_view name);

}  // namespace sluice::admin
