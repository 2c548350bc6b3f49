// What a reload changes, worked out on the main thread before anything is applied
// (reload.cc); private to the Server.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "admin/admin_api.h"
#include "base/clock.h"
#include "config/config.h"
#include "server/server.h"
#include "server/worker.h"

namespace sluice::server {

struct Server::ReloadPlan {
  std::shared_ptr<const config::Config> next;
  uint64_t generation = 0;
  // Clusters, by name: new ones and those whose settings changed.
  std::vector<std::shared_ptr<const upstream::ClusterConfig>> clusters;
  std::vector<std::string> removed_clusters;
  // Listeners: to bind (new, or their address or socket settings changed), to keep on their
  // sockets with new settings, and to stop (removed, or re-bound).
  std::vector<std::shared_ptr<const proxy::ListenerConfig>> bind;
  std::vector<std::shared_ptr<const proxy::ListenerConfig>> changed;
  std::vector<std::string> stop;
  // Filled by apply_reload(): the clusters' indices, and those of clusters new to the workers
  // (their first DNS answers and health checks are awaited before routes lead to them).
  std::vector<size_t> touched;
  std::vector<size_t> removed;
  std::vector<size_t> fresh;
  std::vector<std::vector<ListenerHandoff>> bound;  // per worker
  std::map<std::string, HandedListener> dups;       // of `bound`, for Server::listener_fds_
  admin::ReloadOutcome outcome;
  MonoTime gate_deadline{};
};

}  // namespace sluice::server
