#include "upstream/lb/round_robin.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "lb_test_util.h"

namespace sluice::upstream::lb {
namespace {

using testing::hosts_with_weights;

TEST(RoundRobin, HonoursWeightsExactlyOverACycle) {
  RoundRobin rr(hosts_with_weights({1, 2, 3}), /*seed=*/7);
  std::vector<int> counts(3);
  for (int i = 0; i < 600; ++i) counts[rr.pick({})]++;
  EXPECT_EQ(counts, (std::vector<int>{100, 200, 300}));
}

TEST(RoundRobin, EveryWindowOfOneCycleHoldsEachWeightExactly) {
  const std::vector<uint32_t> weights{5, 1, 3, 2};
  for (uint64_t seed = 1; seed <= 11; ++seed) {
    RoundRobin rr(hosts_with_weights(weights), seed);
    std::vector<size_t> picks;
    for (int i = 0; i < 55; ++i) picks.push_back(rr.pick({}));
    for (size_t start = 0; start + 11 <= picks.size(); ++start) {
      std::vector<uint32_t> counts(weights.size());
      for (size_t j = start; j < start + 11; ++j) counts[picks[j]]++;
      EXPECT_EQ(counts, weights) << "seed " << seed << " window at " << start;
    }
  }
}

TEST(RoundRobin, InterleavesInsteadOfBursting) {
  RoundRobin rr(hosts_with_weights({1, 1, 2}), /*seed=*/4);
  // Within any 4 consecutive picks, the weight-2 endpoint appears exactly twice.
  std::vector<size_t> picks;
  for (int i = 0; i < 40; ++i) picks.push_back(rr.pick({}));
  for (size_t i = 0; i + 4 <= picks.size(); i += 4) {
    int heavy = 0;
    for (size_t j = i; j < i + 4; ++j) heavy += picks[j] == 2;
    EXPECT_EQ(heavy, 2);
  }
}

TEST(RoundRobin, SpreadsEachEndpointsTurnsOverTheCycle) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    // The heavy endpoint's turns sit between the light ones: never two light ones in a row.
    RoundRobin a(hosts_with_weights({5, 1, 1}), seed);
    size_t prev = a.pick({});
    for (int i = 0; i < 70; ++i) {
      size_t cur = a.pick({});
      EXPECT_FALSE(prev != 0 && cur != 0) << "seed " << seed << " at " << i;
      prev = cur;
    }
    // The weight-2 endpoint's two turns are half a cycle apart: never back to back.
    RoundRobin b(hosts_with_weights({1, 1, 2}), seed);
    prev = b.pick({});
    for (int i = 0; i < 40; ++i) {
      size_t cur = b.pick({});
      EXPECT_FALSE(prev == 2 && cur == 2) << "seed " << seed << " at " << i;
      prev = cur;
    }
  }
}

TEST(RoundRobin, ReturnsClusterIndices) {
  RoundRobin rr(hosts_with_weights({1, 1}, /*index_offset=*/10), /*seed=*/1);
  std::vector<size_t> seen;
  for (int i = 0; i < 4; ++i) seen.push_back(rr.pick({}));
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<size_t>{10, 10, 11, 11}));
}

TEST(RoundRobin, SkipsTriedEndpointsWhileOthersRemain) {
  RoundRobin rr(hosts_with_weights({5, 1, 1}), /*seed=*/1);
  std::vector<size_t> tried{0, 1};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rr.pick({.tried = tried}), 2u);
  std::vector<size_t> all{0, 1, 2};
  rr.pick({.tried = all});  // everything tried: any answer, but an answer
  // Indices outside the balancer's set and duplicates do not count as "everything tried".
  std::vector<size_t> odd{0, 0, 1, 7};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rr.pick({.tried = odd}), 2u);
}

TEST(RoundRobin, TriedEndpointsKeepTheirTurn) {
  // Skipping a tried endpoint for one request does not cost it its share of the others.
  RoundRobin rr(hosts_with_weights({1, 1, 1}), /*seed=*/5);
  std::vector<size_t> tried{0};
  std::vector<int> counts(3);
  for (int i = 0; i < 300; ++i) {
    counts[rr.pick({.tried = tried})]++;
    counts[rr.pick({})]++;
    counts[rr.pick({})]++;
  }
  EXPECT_EQ(counts[1] + counts[2], 600);
  EXPECT_EQ(counts[0], 300);
}

TEST(RoundRobin, DifferentSeedsStartAtDifferentPoints) {
  std::vector<size_t> firsts;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    RoundRobin rr(hosts_with_weights({1, 1, 1, 1}), seed);
    firsts.push_back(rr.pick({}));
  }
  std::sort(firsts.begin(), firsts.end());
  EXPECT_GT(std::unique(firsts.begin(), firsts.end()) - firsts.begin(), 1);
}

TEST(RoundRobin, HandlesLargeWeights) {
  // Weight sums beyond 32 bits: the start offset and deadline arithmetic must not overflow.
  RoundRobin rr(hosts_with_weights({4'000'000'000u, 4'000'000'000u, 2'000'000'000u}),
                /*seed=*/123'456'789'012ULL);
  std::vector<int> counts(3);
  for (int i = 0; i < 5000; ++i) counts[rr.pick({})]++;
  // Far less than a cycle (10^10 picks), but deadlines keep every prefix within a pick or two
  // of the weights.
  EXPECT_NEAR(counts[0], 2000, 2);
  EXPECT_NEAR(counts[1], 2000, 2);
  EXPECT_NEAR(counts[2], 1000, 2);
}

}  // namespace
}  // namespace sluice::upstream::lb
