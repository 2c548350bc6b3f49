#include "admin/lifecycle.h"

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"

namespace sluice::admin {

std::string_view to_string(LifecycleState state) {
  switch (state) {
    case LifecycleState::kStarting:
      return "starting";
    case LifecycleState::kReady:
      return "ready";
    case LifecycleState::kReloading:
      return "reloading";
    case LifecycleState::kUpgrading:
      return "upgrading";
    case LifecycleState::kDraining:
      return "draining";
    case LifecycleState::kStopped:
      return "stopped";
  }
  return "unknown";
}

std::string render_lifecycle_metrics(LifecycleState state) {
  std::string out =
      "# HELP sluice_lifecycle_state The process's lifecycle state (1 for the current one).\n"
      "# TYPE sluice_lifecycle_state gauge\n";
  for (LifecycleState s : kLifecycleStates) {
    out += fmt::format("sluice_lifecycle_state{{state=\"{}\"}} {}\n", to_string(s),
                       s == state ? 1 : 0);
  }
  return out;
}

std::string render_reload_metrics(const ReloadStats& s) {
  std::string out =
      "# HELP sluice_config_generation The configuration in force: 0 at start, one more for "
      "each reload that changed something.\n"
      "# TYPE sluice_config_generation gauge\n";
  out += fmt::format("sluice_config_generation {}\n", s.generation);
  out +=
      "# HELP sluice_config_reloads_total Configuration reloads, by result: applied, "
      "unchanged (the file said nothing new) or failed (the running configuration stayed).\n"
      "# TYPE sluice_config_reloads_total counter\n";
  out += fmt::format("sluice_config_reloads_total{{result=\"applied\"}} {}\n", s.applied);
  out += fmt::format("sluice_config_reloads_total{{result=\"unchanged\"}} {}\n", s.unchanged);
  out += fmt::format("sluice_config_reloads_total{{result=\"failed\"}} {}\n", s.failed);
  out +=
      "# HELP sluice_config_last_reload_seconds How long the last applied reload took, from "
      "reading the file until every worker ran on it.\n"
      "# TYPE sluice_config_last_reload_seconds gauge\n";
  out += fmt::format("sluice_config_last_reload_seconds {}\n", s.last_apply_seconds);
  return out;
}

bool Lifecycle::allowed(LifecycleState from, LifecycleState to) {
  using S = LifecycleState;
  switch (from) {
    case S::kStarting:
      // stopped: a start that failed (a bind error) before anything was served.
      return to == S::kReady || to == S::kDraining || to == S::kStopped;
    case S::kReady:
      return to == S::kReloading || to == S::kUpgrading || to == S::kDraining;
    case S::kUpgrading:
      return to == S::kReady || to == S::kDraining;
    case S::kReloading:
      return to == S::kReady || to == S::kDraining;
    case S::kDraining:
      return to == S::kStopped;
    case S::kStopped:
      return false;
  }
  return false;
}

void Lifecycle::transition(LifecycleState to, std::string_view detail) {
  SLUICE_CHECK(allowed(state_, to));
  state_ = to;
  if (detail.empty()) {
    LOG_INFO("sluice {}", to_string(to));
  } else {
    LOG_INFO("sluice {}: {}", to_string(to), detail);
  }
}

}  // namespace sluice::admin
