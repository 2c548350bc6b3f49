// The admin API's endpoints: /live, /ready, endpoint drain, /metrics, /clusters, /listeners,
// /connections, /config and /reload. The Server owns everything they read (the lifecycle, the
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
#include "event/backend.h"
#include "proxy/listener_config.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::admin {

// The process-wide settings /config shows beside the listeners and clusters.
struct ProcessSettings {
  uint32_t workers = 0;
  Duration drain_timeout{0};
  Duration ready_timeout{0};
  event::Backend event_backend = event::Backend::kAuto;  // as configured
  event::Backend event_in_use = event::Backend::kEpoll;  // what the loops run on
};
// sluice_event_backend{backend="..."}: 1 for the backend in use, 0 for the other.
std::string render_event_backend_metrics(event::Backend in_use);

// The configuration in force, as the admin API reads it; a reload replaces it.
struct ConfigView {
  std::shared_ptr<const void> keep;  // keeps what the pointers point into alive
  ProcessSettings settings;
  const std::vector<std::shared_ptr<const proxy::ListenerConfig>>* listeners = nullptr;
  const std::vector<std::shared_ptr<const upstream::ClusterConfig>>* clusters = nullptr;
  // Per listener, in config order: its name and the address it is bound to.
  std::vector<std::pair<std::string, std::string>> listener_addresses;
};

// What a reload did (or, as a dry run, would do).
struct ReloadOutcome {
  enum class Result { kApplied, kUnchanged, kFailed };
  Result result = Result::kUnchanged;
  bool dry_run = false;
  uint64_t generation = 0;            // in force after it
  std::vector<std::string> changes;   // in words, one per change
  std::vector<std::string> errors;    // located: FILE:LINE:COL: ...
  std::vector<std::string> warnings;  // settings that need a restart, kept as they were
  double apply_seconds = 0;
};
// POST /reload's body: {"result", "dry_run", "generation", "changes", "errors", "warnings",
// "apply_seconds"}.
std::string render_reload_json(const ReloadOutcome& outcome);

// What a binary upgrade did: the new process serves (this one drains), or it failed (this one
// keeps serving).
struct UpgradeOutcome {
  bool ok = false;
  int pid = 0;        // the new process's
  std::string error;  // why it failed
};
// POST /upgrade's body: {"result": "upgraded"|"failed", "pid", "error"}.
std::string render_upgrade_json(const UpgradeOutcome& outcome);

struct AdminContext {
  // Asks every worker for a copy of its counters (and what `scope` adds) and calls `render`
  // on the main loop once the last one answered.
  using Gather = std::function<void(GatherScope scope, std::function<void(MetricsInput&)> render)>;
  // Reads the configuration file again and applies it (or only compares, `dry_run`);
  // `done` hears the outcome once every worker runs on it.
  using Reload = std::function<void(bool dry_run, std::function<void(ReloadOutcome)> done)>;

  const Lifecycle* lifecycle = nullptr;
  const ReloadStats* reloads = nullptr;
  std::function<ConfigView()> view;
  upstream::health::HealthManager* health = nullptr;
  Gather gather;
  Reload reload;  // null: POST /reload answers 501
  // Starts the binary at the path this one was started from, hands it the listening
  // sockets, and calls `done` once it serves (or failed).
  std::function<void(std::function<void(UpgradeOutcome)> done)> upgrade;
  // GET /bgp: the speaker's sessions and prefixes (null: no `bgp:` block, 404).
  std::function<std::string()> bgp;
  // Why a ready sluice should answer /ready 503 all the same (an endpoint source stale past
  // its max_staleness); "" or null: no such reason.
  std::function<std::string()> not_ready;
  // GET /registration: sluice's own key in etcd (null: no `registration:` block, 404).
  std::function<std::string()> registration;
};

// Registers every endpoint above on `server`.
void register_admin_api(AdminServer& server, AdminContext context);

// GET /ready: 200 "ready" when ready, 503 with the state's name otherwise.
AdminResponse ready_response(LifecycleState state, bool replaced = false);
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
