// The admin views as JSON values, for the admin layer's own renderers (the /clusters and
// /listeners bodies, the dashboard's data). Main thread only.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "admin/metrics.h"

namespace sluice::admin {

// Every declared metric (base/metric.h), the same families and samples as /metrics:
// [{"name", "help", "type", "samples": [...]}] (Exposition::json() in metrics.cc).
nlohmann::json metrics_json(const MetricsInput& in);
// The bodies of GET /clusters and GET /listeners.
nlohmann::json clusters_json(const MetricsInput& in);
nlohmann::json listeners_json(const MetricsInput& in,
                              const std::vector<std::pair<std::string, std::string>>& addresses);

}  // namespace sluice::admin
