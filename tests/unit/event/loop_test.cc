#include "event/loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sluice::event {
namespace {

TEST(Loop, PostFromOtherThreadsRunsEverythingInOrderPerThread) {
  Loop loop;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10000;
  std::vector<std::vector<int>> seen(kThreads);
  int total = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop.post([&, t, i] {
          seen[t].push_back(i);
          if (++total == kThreads * kPerThread) loop.stop();
        });
      }
    });
  }
  loop.run();
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

TEST(Loop, TimersWakeTheLoop) {
  Loop loop;
  auto start = MonoClock::now();
  Timer t(loop.timers(), [&] { loop.stop(); });
  t.arm_at(loop.now() + std::chrono::milliseconds(20));
  loop.run();
  EXPECT_GE(MonoClock::now() - start, std::chrono::milliseconds(20));
}

struct Tracked : DeferredDeletable {
  explicit Tracked(bool* deleted) : deleted_(deleted) {}
  ~Tracked() override { *deleted_ = true; }
  bool* deleted_;
};

TEST(Loop, DeferredDeletionHappensAfterTheCurrentIteration) {
  Loop loop;
  bool deleted = false;
  loop.post([&] {
    loop.defer_delete(std::make_unique<Tracked>(&deleted));
    EXPECT_FALSE(deleted);  // still usable by the rest of this iteration
    loop.post([&] {
      EXPECT_TRUE(deleted);
      loop.stop();
    });
  });
  loop.run();
  EXPECT_TRUE(deleted);
}

}  // namespace
}  // namespace sluice::event

namespace sluice::event {
namespace {

TEST(Loop, ManualClockFiresTimersOnlyWhenTimeIsMoved) {
  ManualClock clock;
  Loop loop(clock);
  int fired = 0;
  Timer t(loop.timers(), [&] { ++fired; });
  t.arm_at(clock.now() + std::chrono::seconds(30));
  loop.run_until_idle();
  EXPECT_EQ(fired, 0);
  clock.advance(std::chrono::seconds(29));
  loop.run_until_idle();
  EXPECT_EQ(fired, 0);
  clock.advance(std::chrono::seconds(1));
  loop.run_until_idle();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(loop.now(), clock.now());
}

TEST(Loop, RunUntilIdleRunsPostedWorkAndWhatItPosts) {
  ManualClock clock;
  Loop loop(clock);
  std::vector<int> order;
  loop.post([&] {
    order.push_back(1);
    loop.post([&] { order.push_back(2); });
  });
  loop.run_until_idle();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace sluice::event
