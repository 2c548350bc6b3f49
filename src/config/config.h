// Config: the whole validated configuration, loaded from YAML. Immutable once built; the
// main thread publishes it to workers as std::shared_ptr<const Config>, so a reload can swap
// it between events while in-flight connections keep the snapshot they started with.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/dashboard_events_types.h"
#include "base/log.h"
#include "base/status.h"
#include "bgp/config.h"
#include "discovery/registration_config.h"
#include "dns/resolver.h"
#include "event/backend.h"
#include "proxy/listener_config.h"
#include "upstream/cluster.h"

namespace sluice::config {

struct Config {
  static constexpr uint32_t kMaxWorkers = 256;

  // Loading from YAML without the key gives the number of cores.
  uint32_t workers = 1;
  log::Level log_level = log::Level::kInfo;
  Duration drain_timeout = std::chrono::seconds(30);
  // How long startup waits for every endpoint's first health check before "ready".
  Duration ready_timeout = std::chrono::seconds(10);
  // The operator endpoint (/ready, /live, endpoint drain); absent: not served.
  std::optional<net::Address> admin_address;
  // admin.dashboard: serve the dashboard (GET /); unset: only on a loopback address.
  std::optional<bool> admin_dashboard;
  bool dashboard_enabled() const;
  // admin.events: the dashboard's Server-Sent Events stream.
  admin::DashboardEventsConfig admin_events;
  dns::ResolverConfig dns;
  event::EventConfig event;  // the event backend: read at startup only
  std::vector<std::shared_ptr<const proxy::ListenerConfig>> listeners;
  std::vector<std::shared_ptr<const upstream::ClusterConfig>> clusters;
  // The BGP speaker (bgp/speaker.h); absent: none. Read at startup only.
  std::shared_ptr<const bgp::BgpConfig> bgp;
  // sluice's own key in etcd while it is ready; absent: none. Read at startup only.
  std::shared_ptr<const discovery::RegistrationConfig> registration;

  const upstream::ClusterConfig* find_cluster(std::string_view name) const;

  // Every module's rules (each block's own validate()) and those across blocks: unique
  // names and addresses, clusters that exist, hash settings a cluster would ignore. A
  // Config built in code gets the same issues as one read from YAML, named by key path.
  ConfigIssues validate() const;
};

// Loads and validates. On failure the Status message holds one located error per line, in
// document order: "FILE:LINE:COL: key.path: what was expected". Warnings (settings that
// load but have no effect) go to `warnings` when given, one per line:
// "FILE:LINE:COL: warning: key.path: why".
Result<std::shared_ptr<const Config>> load_file(const std::string& path,
                                                std::vector<std::string>* warnings = nullptr);
Result<std::shared_ptr<const Config>> load_string(const std::string& yaml,
                                                  const std::string& file_name,
                                                  std::vector<std::string>* warnings = nullptr);

}  // namespace sluice::config
