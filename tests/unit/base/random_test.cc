#include "base/random.h"

#include <gtest/gtest.h>

#include <array>
#include <thread>

namespace sluice {
namespace {

TEST(Random, IsSplitMix64) {
  // The reference generator's first outputs for seed 1234567.
  Random r(1234567);
  EXPECT_EQ(r.next_u64(), 6457827717110365317ULL);
  EXPECT_EQ(r.next_u64(), 3203168211198807973ULL);
  EXPECT_EQ(r.next_u64(), 9817491932198370423ULL);
}

TEST(Random, TheSameSeedRepeatsTheSequence) {
  Random a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next_u64();
    EXPECT_EQ(x, b.next_u64());
    differs = differs || x != c.next_u64();
  }
  EXPECT_TRUE(differs);
}

TEST(Random, BelowStaysInRangeAndReachesEveryValue) {
  Random r(7);
  std::array<int, 10> seen{};
  for (int i = 0; i < 10000; ++i) {
    uint64_t v = r.below(10);
    ASSERT_LT(v, 10u);
    ++seen[v];
  }
  for (int n : seen) {
    EXPECT_GT(n, 850);  // 1000 expected each; far outside chance to miss these bounds
    EXPECT_LT(n, 1150);
  }
  EXPECT_EQ(r.below(1), 0u);
  EXPECT_EQ(r.below(0), 0u);
}

TEST(Random, UniformIsInTheUnitInterval) {
  Random r(9);
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}

TEST(Random, ChancePercentAtTheEdges) {
  Random r(11);
  int hits = 0;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_FALSE(r.chance_percent(0));
    EXPECT_TRUE(r.chance_percent(100));
    hits += r.chance_percent(25);
  }
  EXPECT_GT(hits, 180);
  EXPECT_LT(hits, 320);
}

TEST(Random, EachThreadHasItsOwnGenerator) {
  Random* here = &thread_rng();
  EXPECT_EQ(&thread_rng(), here);
  Random* there = nullptr;
  std::thread t([&] { there = &thread_rng(); });
  t.join();
  EXPECT_NE(there, here);
}

}  // namespace
}  // namespace sluice
