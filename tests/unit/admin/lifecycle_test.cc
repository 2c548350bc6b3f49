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
  r = ready_response(S::kDraining);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "draining\n");
}

TEST(Lifecycle, OneGaugePerState) {
  EXPECT_EQ(render_lifecycle_metrics(S::kDraining),
            "# HELP sluice_lifecycle_state The process's lifecycle state (1 for the current "
            "one).\n"
            "# TYPE sluice_lifecycle_state gauge\n"
            "sluice_lifecycle_state{state=\"starting\"} 0\n"
            "sluice_lifecycle_state{state=\"ready\"} 0\n"
            "sluice_lifecycle_state{state=\"draining\"} 1\n"
            "sluice_lifecycle_state{state=\"stopped\"} 0\n");
}

}  // namespace
}  // namespace sluice::admin
