// Lifecycle: the process's one state machine, on the main thread. The Server moves it
// through its steps; /ready and the sluice_lifecycle_state gauges read it.
//
//   starting ──> ready ──> draining ──> stopped
//       │                     ^            ^
//       └─────────────────────┴────────────┘   (a signal, or a failed start, before ready)
//
// Reloading and upgrading slot in beside ready (ready → reloading → ready, ready → upgrading
// → draining) when those features exist; until then they are not states, so no gauge
// exports a state the process can never be in.
// Main thread only.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::admin {

enum class LifecycleState : uint8_t { kStarting, kReady, kDraining, kStopped };

inline constexpr std::array<LifecycleState, 4> kLifecycleStates{
    LifecycleState::kStarting, LifecycleState::kReady, LifecycleState::kDraining,
    LifecycleState::kStopped};

// "starting", "ready", "draining", "stopped": the /ready body and the metric label.
std::string_view to_string(LifecycleState state);

// The sluice_lifecycle_state gauge family in Prometheus text: one sample per state, 1 for
// the current one and 0 for the others.
std::string render_lifecycle_metrics(LifecycleState state);

class Lifecycle {
 public:
  LifecycleState state() const { return state_; }
  bool is(LifecycleState s) const { return state_ == s; }

  // Whether the table allows moving from `from` to `to`.
  static bool allowed(LifecycleState from, LifecycleState to);
  // Every state change goes through here: it logs "sluice <to>: <detail>" once at info.
  // A move the table does not allow is a bug (SLUICE_CHECK).
  void transition(LifecycleState to, std::string_view detail);

 private:
  LifecycleState state_ = LifecycleState::kStarting;
};

}  // namespace sluice::admin
