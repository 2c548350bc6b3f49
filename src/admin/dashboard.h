// The admin dashboard: GET / (a live page whose files are embedded at build time, see
// dashboard_assets.h), GET /dashboard/data (what the page shows, as JSON), GET
// /dashboard/events (the same as Server-Sent Events, dashboard_events.h) and the page's
// actions (POST /dashboard/drain, /dashboard/undrain, /dashboard/reload), which need the
// process's token. docs/dashboard.md describes them. Main thread only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "admin/admin_api.h"
#include "admin/dashboard_events.h"

namespace sluice::admin {

// A token for the actions: 32 hex digits from the kernel's random source.
std::string make_action_token();

// What the data shows beyond the gathered metrics.
struct DashboardInfo {
  LifecycleState state = LifecycleState::kStarting;
  uint64_t generation = 0;
  std::vector<std::pair<std::string, std::string>> listener_addresses;
  std::string bgp;  // GET /bgp's body; empty: no `bgp:` block
};
// GET /dashboard/data's body: {"time_ms", "state", "generation", "metrics" (every declared
// family, as /metrics has them), "listeners", "clusters" (as /listeners and /clusters),
// "dns" (the resolver's cache), "slow" and "failed" (the recent requests of every worker,
// each with its access-log record), "bgp" (as GET /bgp; only with a `bgp:` block)}.
std::string render_dashboard_json(const MetricsInput& in, const DashboardInfo& info);

// "%3A" -> ":" (a '+' stays).
std::string percent_decode(std::string_view s);

// Registers the page, its data, its event stream (when `events` is given; it must outlive
// `server`'s handlers) and its actions on `server`, which from now on asks browsers for
// `token` (AdminServer::require_browser_token).
void register_dashboard(AdminServer& server, AdminContext context, std::string token,
                        DashboardEvents* events = nullptr);

}  // namespace sluice::admin
