#include "event/timer.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

namespace sluice::event {
namespace {

using std::chrono::milliseconds;

TEST(TimerQueue, FiresInDeadlineOrderAndTiesInArmingOrder) {
  TimerQueue q;
  MonoTime t0{};
  std::vector<int> fired;
  Timer a(q, [&] { fired.push_back(1); });
  Timer b(q, [&] { fired.push_back(2); });
  Timer c(q, [&] { fired.push_back(3); });
  Timer d(q, [&] { fired.push_back(4); });
  a.arm_at(t0 + milliseconds(30));
  b.arm_at(t0 + milliseconds(10));
  c.arm_at(t0 + milliseconds(20));
  d.arm_at(t0 + milliseconds(20));
  q.run_expired(t0 + milliseconds(5));
  EXPECT_TRUE(fired.empty());
  q.run_expired(t0 + milliseconds(20));
  EXPECT_EQ(fired, (std::vector<int>{2, 3, 4}));
  q.run_expired(t0 + milliseconds(100));
  EXPECT_EQ(fired, (std::vector<int>{2, 3, 4, 1}));
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueue, CancelAndRearm) {
  TimerQueue q;
  MonoTime t0{};
  int fired = 0;
  Timer a(q, [&] { ++fired; });
  a.arm_at(t0 + milliseconds(10));
  a.cancel();
  EXPECT_FALSE(a.armed());
  q.run_expired(t0 + milliseconds(50));
  EXPECT_EQ(fired, 0);
  a.arm_at(t0 + milliseconds(10));
  a.arm_at(t0 + milliseconds(60));  // re-arming moves it
  q.run_expired(t0 + milliseconds(50));
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(q.next_deadline(), t0 + milliseconds(60));
  q.run_expired(t0 + milliseconds(60));
  EXPECT_EQ(fired, 1);
}

TEST(TimerQueue, DestroyingAnArmedTimerRemovesIt) {
  TimerQueue q;
  MonoTime t0{};
  {
    Timer a(q, [] { FAIL() << "destroyed timer fired"; });
    a.arm_at(t0 + milliseconds(1));
  }
  EXPECT_EQ(q.size(), 0u);
  q.run_expired(t0 + milliseconds(10));
}

TEST(TimerQueue, CallbackMayCancelOthersAndRearmItself) {
  TimerQueue q;
  MonoTime t0{};
  int a_fired = 0;
  int b_fired = 0;
  Timer b(q, [&] { ++b_fired; });
  Timer* a_ptr = nullptr;
  Timer a(q, [&] {
    ++a_fired;
    b.cancel();
    if (a_fired == 1) a_ptr->arm_at(t0 + milliseconds(40));
  });
  a_ptr = &a;
  a.arm_at(t0 + milliseconds(10));
  b.arm_at(t0 + milliseconds(20));
  q.run_expired(t0 + milliseconds(30));
  EXPECT_EQ(a_fired, 1);
  EXPECT_EQ(b_fired, 0);
  q.run_expired(t0 + milliseconds(40));
  EXPECT_EQ(a_fired, 2);
}

TEST(TimerQueue, PushedBackTimersFireInDeadlineThenArmingOrder) {
  TimerQueue q;
  MonoTime t0{};
  std::vector<int> fired;
  Timer a(q, [&] { fired.push_back(1); });
  Timer b(q, [&] { fired.push_back(2); });
  Timer c(q, [&] { fired.push_back(3); });
  a.arm_at(t0 + milliseconds(10));
  b.arm_at(t0 + milliseconds(15));
  c.arm_at(t0 + milliseconds(30));
  a.arm_at(t0 + milliseconds(30));  // later: a now ties with c, armed after it
  b.arm_at(t0 + milliseconds(40));
  b.arm_at(t0 + milliseconds(20));  // back earlier than its last deadline
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(a.deadline(), t0 + milliseconds(30));
  q.run_expired(t0 + milliseconds(19));
  EXPECT_TRUE(fired.empty());
  q.run_expired(t0 + milliseconds(100));
  EXPECT_EQ(fired, (std::vector<int>{2, 3, 1}));
  EXPECT_EQ(q.size(), 0u);
  EXPECT_FALSE(a.armed());
}

TEST(TimerQueue, CancelledAndRearmedLaterFiresOnceAtTheNewDeadline) {
  TimerQueue q;
  MonoTime t0{};
  int fired = 0;
  Timer a(q, [&] { ++fired; });
  a.arm_at(t0 + milliseconds(10));
  a.cancel();
  EXPECT_EQ(q.size(), 0u);
  a.arm_at(t0 + milliseconds(50));
  EXPECT_TRUE(a.armed());
  q.run_expired(t0 + milliseconds(10));  // its old place: moved, not fired
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(q.next_deadline(), t0 + milliseconds(50));
  q.run_expired(t0 + milliseconds(50));
  EXPECT_EQ(fired, 1);
  q.run_expired(t0 + milliseconds(500));
  EXPECT_EQ(fired, 1);
}

TEST(TimerQueue, ATimerMayOutliveItsQueue) {
  MonoTime t0{};
  auto q = std::make_unique<TimerQueue>();
  Timer a(*q, [] {});
  a.arm_at(t0 + milliseconds(10));
  a.cancel();  // still in the heap until its place comes due
  q.reset();   // destroying `a` afterwards must not reach the queue
}

TEST(TimerQueue, HundredThousandTimersFireInOrder) {
  constexpr int kCount = 100000;
  TimerQueue q;
  MonoTime t0{};
  std::mt19937 rng(42);
  std::vector<std::unique_ptr<Timer>> timers;
  std::vector<MonoTime> fired;
  fired.reserve(kCount);
  timers.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    timers.push_back(
        std::make_unique<Timer>(q, [&, i] { fired.push_back(timers[i]->deadline()); }));
    timers.back()->arm_at(t0 + milliseconds(rng() % 1000000));
  }
  // Cancel every tenth: those must never fire.
  for (int i = 0; i < kCount; i += 10) timers[i]->cancel();
  EXPECT_EQ(q.size(), static_cast<size_t>(kCount - kCount / 10));
  q.run_expired(t0 + milliseconds(1000000));
  ASSERT_EQ(fired.size(), static_cast<size_t>(kCount - kCount / 10));
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
}

}  // namespace
}  // namespace sluice::event
