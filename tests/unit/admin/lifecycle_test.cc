#include "admin/lifecycle.h"

#include <gtest/gtest.h>

#include "admin/admin_api.h"

namespace sluice::admin {
namespace {

using S = LifecycleState;

TEST(Lifecycle, StartsStartingAndMovesThroughItsSteps) {
  Lifecycle l;
  EXPECT_EQ(l.state(), S::kStarting);
  l.transition(S::kReady, "2 workers, 1 listeners");
  EXPECT_EQ(l.state(), S::kReady);
  l.transition(S::kDraining, "");
  l.transition(S::kStopped, "drained; exiting");
  EXPECT_EQ(l.state(), S::kStopped);
}

TEST(Lifecycle, TheTableAllowsOnlyForwardMoves) {
  EXPECT_TRUE(Lifecycle::allowed(S::kStarting, S::kReady));
  EXPECT_TRUE(Lifecycle::allowed(S::kStarting, S::kDraining));  // a signal before ready
  EXPECT_TRUE(Lifecycle::allowed(S::kStarting, S::kStopped));   // a failed start
  EXPECT_TRUE(Lifecycle::allowed(S::kReady, S::kDraining));
  EXPECT_TRUE(Lifecycle::allowed(S::kDraining, S::kStopped));
  EXPECT_FALSE(Lifecycle::allowed(S::kDraining, S::kReady));
  EXPECT_FALSE(Lifecycle::allowed(S::kReady, S::kStarting));
  EXPECT_FALSE(Lifecycle::allowed(S::kReady, S::kStopped));
  EXPECT_FALSE(Lifecycle::allowed(S::kReady, S::kReady));
  // A reload goes back to ready, or gives way to a drain.
  EXPECT_TRUE(Lifecycle::allowed(S::kReady, S::kReloading));
  EXPECT_TRUE(Lifecycle::allowed(S::kReloading, S::kReady));
  EXPECT_TRUE(Lifecycle::allowed(S::kReloading, S::kDraining));
  EXPECT_FALSE(Lifecycle::allowed(S::kReloading, S::kStarting));
  EXPECT_FALSE(Lifecycle::allowed(S::kStarting, S::kReloading));
  EXPECT_FALSE(Lifecycle::allowed(S::kDraining, S::kReloading));
  // An upgrade ends in a drain (the new process serves) or back in ready (it failed).
  EXPECT_TRUE(Lifecycle::allowed(S::kReady, S::kUpgrading));
  EXPECT_TRUE(Lifecycle::allowed(S::kUpgrading, S::kReady));
  EXPECT_TRUE(Lifecycle::allowed(S::kUpgrading, S::kDraining));
  EXPECT_FALSE(Lifecycle::allowed(S::kUpgrading, S::kReloading));
  EXPECT_FALSE(Lifecycle::allowed(S::kReloading, S::kUpgrading));
  for (S to : kLifecycleStates) EXPECT_FALSE(Lifecycle::allowed(S::kStopped, to));
}

TEST(Lifecycle, AnIllegalMoveIsABug) {
  EXPECT_DEATH(
      {
        Lifecycle l;
        l.transition(S::kDraining, "");
        l.transition(S::kReady, "");
      },
      "allowed");
}

TEST(Lifecycle, ReadyAnswersWithTheState) {
  AdminResponse r = ready_response(S::kStarting);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "starting\n");
  r = ready_response(S::kReady);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");
  r = ready_response(S::kReloading);  // still serving
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");
  r = ready_response(S::kDraining);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "draining\n");
  // Draining because a new binary serves on the same sockets: the address is in service.
  r = ready_response(S::kDraining, /*replaced=*/true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready\n");
  r = ready_response(S::kStopped, /*replaced=*/true);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "stopped\n");
}

TEST(Lifecycle, OneGaugePerState) {
  EXPECT_EQ(render_lifecycle_metrics(S::kDraining),
            "# HELP sluice_lifecycle_state The process's lifecycle state (1 for the current "
            "one).\n"
            "# TYPE sluice_lifecycle_state gauge\n"
            "sluice_lifecycle_state{state=\"starting\"} 0\n"
            "sluice_lifecycle_state{state=\"ready\"} 0\n"
            "sluice_lifecycle_state{state=\"reloading\"} 0\n"
            "sluice_lifecycle_state{state=\"upgrading\"} 0\n"
            "sluice_lifecycle_state{state=\"draining\"} 1\n"
            "sluice_lifecycle_state{state=\"stopped\"} 0\n");
}

TEST(Lifecycle, ReloadMetricsNameEveryResult) {
  ReloadStats s{
      .generation = 3, .applied = 3, .unchanged = 1, .failed = 2, .last_apply_seconds = 0.25};
  EXPECT_EQ(render_reload_metrics(s),
            "# HELP sluice_config_generation The configuration in force: 0 at start, one more "
            "for each reload that changed something.\n"
            "# TYPE sluice_config_generation gauge\n"
            "sluice_config_generation 3\n"
            "# HELP sluice_config_reloads_total Configuration reloads, by result: applied, "
            "unchanged (the file said nothing new) or failed (the running configuration "
            "stayed).\n"
            "# TYPE sluice_config_reloads_total counter\n"
            "sluice_config_reloads_total{result=\"applied\"} 3\n"
            "sluice_config_reloads_total{result=\"unchanged\"} 1\n"
            "sluice_config_reloads_total{result=\"failed\"} 2\n"
            "# HELP sluice_config_last_reload_seconds How long the last applied reload took, "
            "from reading the file until every worker ran on it.\n"
            "# TYPE sluice_config_last_reload_seconds gauge\n"
            "sluice_config_last_reload_seconds 0.25\n");
}

}  // namespace
}  // namespace sluice::admin
