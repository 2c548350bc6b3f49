// The endpoint table under churn: the health manager and two workers' Cluster objects on one
// loop and a manual clock. Departed endpoints' slots are reused once both workers released
// them, so a cluster follows any number of distinct addresses.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/clock.h"
#include "event/loop.h"
#include "upstream/cluster.h"
#include "upstream/health/health_manager.h"

namespace sluice::upstream {
namespace {

using health::HealthManager;
using health::HealthSnapshot;

EndpointConfig endpoint(uint32_t n) {
  // 10.a.b.c:8080: n up to 2^24 distinct addresses.
  auto a = net::Address::parse_ip(
      fmt::format("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255), 8080);
  EndpointConfig e;
  e.address = a.value();
  return e;
}

class EndpointTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = std::make_shared<ClusterConfig>();
    config->name = "api";
    config->type = ClusterConfig::Type::kStrictDns;
    config->panic_threshold = 0;
    config_ = config;
    health_ = std::make_unique<HealthManager>(
        loop_, std::vector<std::shared_ptr<const ClusterConfig>>{config_},
        [this](size_t, std::shared_ptr<const HealthSnapshot> s) {
          if (hold_) {
            held_ = std::move(s);
            return;
          }
          for (auto& w : workers_) w->set_health(s);
        });
    health_->set_worker_count(2);
    for (int i = 0; i < 2; ++i) {
      workers_.push_back(
          std::make_unique<Cluster>(loop_, config_, 2, 0, health_->shared(0), nullptr));
      workers_.back()->set_health(health_->snapshot_ptr(0));
    }
  }
  // Lets the workers' release checks run (two of them, an iteration apart) and the manager
  // hear the releases.
  void settle() {
    for (int i = 0; i < 3; ++i) {
      clock_.advance(std::chrono::milliseconds(600));
      loop_.run_until_idle();
    }
  }
  void set(const std::vector<EndpointConfig>& eps) {
    ASSERT_TRUE(health_->set_endpoints(0, eps));
    loop_.run_until_idle();
  }
  // What the workers' balancers pick over `n` picks, as "ip:port".
  std::set<std::string> picked(Cluster& c, int n) {
    std::set<std::string> out;
    for (int i = 0; i < n && c.has_endpoints(); ++i) {
      out.insert(c.endpoint(c.pick(lb::PickContext{})).address.to_string());
    }
    return out;
  }
  std::set<std::string> names(const std::vector<EndpointConfig>& eps) {
    std::set<std::string> out;
    for (const auto& e : eps) out.insert(e.address.to_string());
    return out;
  }

  // With hold_, snapshots wait in held_ until deliver(): workers that see only the latest.
  void deliver() {
    if (!held_) return;
    for (auto& w : workers_) w->set_health(held_);
    held_.reset();
  }

  bool hold_ = false;
  std::shared_ptr<const HealthSnapshot> held_;
  ManualClock clock_;
  event::Loop loop_{clock_};
  std::shared_ptr<const ClusterConfig> config_;
  std::unique_ptr<HealthManager> health_;
  std::vector<std::unique_ptr<Cluster>> workers_;
};

TEST_F(EndpointTableTest, ChurnFarPastTheTableLimitKeepsFollowingWithABoundedTable) {
  // 40 live at a time, 10 replaced per step: 5,040 distinct addresses, more than the most
  // slots a table may have.
  constexpr uint32_t kLive = 40, kStep = 10, kSteps = 500;
  std::vector<EndpointConfig> live;
  uint32_t next = 0;
  for (; next < kLive; ++next) live.push_back(endpoint(next));
  set(live);
  size_t largest = 0;
  for (uint32_t step = 0; step < kSteps; ++step) {
    live.erase(live.begin(), live.begin() + kStep);
    for (uint32_t i = 0; i < kStep; ++i) live.push_back(endpoint(next++));
    set(live);
    // Both workers balance over exactly the listed endpoints at once.
    for (auto& w : workers_) ASSERT_EQ(picked(*w, 4 * kLive), names(live)) << "step " << step;
    settle();
    largest = std::max(largest, health_->table_size(0));
  }
  EXPECT_GT(next, health::ClusterShared::kMaxEndpoints);
  EXPECT_EQ(health_->stats().endpoint_sets_refused, 0u);
  // The departed endpoints of the last step are released; the table holds the live ones and
  // at most one step's departed ones in between.
  EXPECT_LE(largest, kLive + kStep);
  EXPECT_EQ(health_->stats().slots_reclaimed, next - kLive);
  const HealthSnapshot& s = health_->snapshot(0);
  std::set<std::string> held;
  for (size_t i = 0; i < s.flags.size(); ++i) {
    if (!(s.flags[i] & health::kFree)) held.insert((*s.endpoints)[i].address.to_string());
  }
  EXPECT_EQ(held, names(live));
  for (auto& w : workers_) EXPECT_EQ(w->endpoint_count(), health_->table_size(0));
}

TEST_F(EndpointTableTest, ASlotIsKeptWhileAnyWorkerStillUsesItsEndpoint) {
  set({endpoint(1), endpoint(2)});
  // Worker 1 has a request in flight to 10.0.0.1 when it leaves.
  workers_[1]->request_started(0);
  set({endpoint(2)});
  settle();
  EXPECT_EQ(health_->table_size(0), 2u);
  EXPECT_EQ(health_->snapshot(0).flags[0], health::kRemoved);
  // A new endpoint takes a new slot meanwhile.
  set({endpoint(2), endpoint(3)});
  EXPECT_EQ(health_->table_size(0), 3u);
  EXPECT_EQ((*health_->snapshot(0).endpoints)[2].address.to_string(), "10.0.0.3:8080");
  workers_[1]->request_finished(0);
  settle();
  EXPECT_EQ(health_->snapshot(0).flags[0], health::kRemoved | health::kFree);
  // The next new endpoint takes the freed slot.
  set({endpoint(2), endpoint(3), endpoint(4)});
  EXPECT_EQ(health_->table_size(0), 3u);
  EXPECT_EQ((*health_->snapshot(0).endpoints)[0].address.to_string(), "10.0.0.4:8080");
  EXPECT_EQ(health_->snapshot(0).flags[0], 0);
  for (auto& w : workers_) {
    EXPECT_EQ(picked(*w, 30),
              (std::set<std::string>{"10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"}));
  }
}

TEST_F(EndpointTableTest, WorkersThatSkipSnapshotsStillReleaseEverySlot) {
  // Slots go free and leave the end of the table, and new endpoints take their places again,
  // without the workers ever seeing the shorter table: a new removal in such a slot must not
  // look like one they released already.
  constexpr uint32_t kLive = 8, kSteps = 50;
  std::vector<EndpointConfig> live;
  uint32_t next = 0;
  for (; next < kLive; ++next) live.push_back(endpoint(next));
  set(live);
  hold_ = true;
  for (uint32_t step = 0; step < kSteps; ++step) {
    live.clear();
    for (uint32_t i = 0; i < kLive; ++i) live.push_back(endpoint(next++));
    set(live);
    deliver();
    settle();  // the departed are released; the shorter table is held back
  }
  deliver();
  settle();
  EXPECT_EQ(health_->stats().slots_reclaimed, next - kLive);
  EXPECT_EQ(health_->table_size(0), kLive);
}

TEST_F(EndpointTableTest, AReleaseOfAnEarlierRemovalDoesNotFreeTheSlot) {
  set({endpoint(1), endpoint(2)});
  workers_[1]->request_started(0);
  set({endpoint(2)});
  settle();  // worker 0 released the first removal; worker 1 still uses the endpoint
  set({endpoint(1), endpoint(2)});  // back, same slot
  EXPECT_EQ(health_->snapshot(0).flags[0], 0);
  set({endpoint(2)});  // the second removal: worker 0's earlier release does not count
  workers_[1]->request_finished(0);
  loop_.run_until_idle();
  EXPECT_EQ(health_->snapshot(0).flags[0], health::kRemoved);
  settle();  // both release the second removal; the last slot leaves the table
  EXPECT_EQ(health_->table_size(0), 2u);
  EXPECT_EQ(health_->snapshot(0).flags[0], health::kRemoved | health::kFree);
}

}  // namespace
}  // namespace sluice::upstream
