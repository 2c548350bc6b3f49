// Lifecycle: the process's one state machine, on the main thread. The Server moves it
// through its steps; /ready and the sluice_lifecycle_state gauges read it.
//
//   starting ──> ready ──> draining ──> stopped
//       │        │ ^ ^ │      ^ ^ ^        ^
//       │        v │ │ v      │ │ │        │
//       │  reloading upgrading ┘ │ │       │
//       │        └───────────────┘ │       │
//       └──────────────────────────┴───────┘   (a signal, or a failed start, before ready)
//
// Reloading lasts from reading the new file until every worker runs on it; upgrading from
// starting a new binary until it serves (then this process drains) or fails (then this one
// stays ready). The process serves (and /ready answers 200) throughout both.
// Main thread only.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::admin {

enum class LifecycleState : uint8_t {
  kStarting,
  kReady,
  kReloading,
  kUpgrading,
  kDraining,
  kStopped
};

inline constexpr std::array<LifecycleState, 6> kLifecycleStates{
    LifecycleState::kStarting,  LifecycleState::kReady,    LifecycleState::kReloading,
    LifecycleState::kUpgrading, LifecycleState::kDraining, LifecycleState::kStopped};

// "starting", "ready", "reloading", "upgrading", "draining", "stopped": the /ready body and
// the metric label.
std::string_view to_string(LifecycleState state);

// The sluice_lifecycle_state gauge family in Prometheus text: one sample per state, 1 for
// the current one and 0 for the others.
std::string render_lifecycle_metrics(LifecycleState state);

// Configuration reloads so far (main thread).
struct ReloadStats {
  uint64_t generation = 0;  // 0: the configuration sluice started with
  uint64_t applied = 0;
  uint64_t unchanged = 0;
  uint64_t failed = 0;
  double last_apply_seconds = 0;  // from reading the file until every worker ran on it
};

// sluice_config_generation, sluice_config_reloads_total{result} and
// sluice_config_last_reload_seconds in Prometheus text.
std::string render_reload_metrics(const ReloadStats& stats);

class Lifecycle {
 public:
  LifecycleState state() const { return state_; }
  bool is(LifecycleState s) const { return state_ == s; }
  // Ready or reloading: serving on a configuration that was applied.
  bool serving() const {
    return state_ == LifecycleState::kReady || state_ == LifecycleState::kReloading ||
           state_ == LifecycleState::kUpgrading;
  }

  // A binary upgrade's new process serves on this one's sockets (this one drains): the
  // addresses stay in service, so /ready on a connection this process still holds says so.
  void mark_replaced() { replaced_ = true; }
  bool replaced() const { return replaced_; }

  // Whether the table allows moving from `from` to `to`.
  static bool allowed(LifecycleState from, LifecycleState to);
  // Every state change goes through here: it logs "sluice <to>: <detail>" once at info.
  // A move the table does not allow is a bug (SLUICE_CHECK).
  void transition(LifecycleState to, std::string_view detail);

 private:
  LifecycleState state_ = LifecycleState::kStarting;
  bool replaced_ = false;
};

}  // namespace sluice::admin
