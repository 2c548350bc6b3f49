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

bool Lifecycle::allowed(LifecycleState from, LifecycleState to) {
  using S = LifecycleState;
  switch (from) {
    case S::kStarting:
      // stopped: a start that failed (a bind error) before anything was served.
      return to == S::kReady || to == S::kDraining || to == S::kStopped;
    case S::kReady:
      return to == S::kDraining;
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
