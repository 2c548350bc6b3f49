#include "upstream/lb/weighted_random.h"

#include <gtest/gtest.h>

#include <vector>

#include "lb_test_util.h"

namespace sluice::upstream::lb {
namespace {

using testing::expected_shares;
using testing::hosts_with_weights;
using testing::shares;

// 60000 independent draws: one standard deviation of a share is at most 0.2 points.
constexpr double kTolerance = 0.01;

TEST(WeightedRandom, FollowsWeights) {
  const std::vector<uint32_t> weights{1, 2, 3};
  WeightedRandom lb(hosts_with_weights(weights), /*seed=*/42);
  std::vector<double> got = shares(3, 60000, [&](int) { return lb.pick({}); });
  std::vector<double> want = expected_shares(weights);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], kTolerance) << "endpoint " << i;
}

TEST(WeightedRandom, ReturnsClusterIndices) {
  WeightedRandom lb(hosts_with_weights({1, 1}, /*index_offset=*/10), /*seed=*/3);
  for (int i = 0; i < 100; ++i) {
    size_t got = lb.pick({});
    EXPECT_TRUE(got == 10 || got == 11) << got;
  }
}

TEST(WeightedRandom, AvoidsTriedWhileOthersRemain) {
  WeightedRandom lb(hosts_with_weights({1, 1, 1, 1, 1}), /*seed=*/9);
  std::vector<size_t> tried{0, 2};
  std::vector<double> got = shares(5, 30000, [&](int) { return lb.pick({.tried = tried}); });
  EXPECT_EQ(got[0], 0);
  EXPECT_EQ(got[2], 0);
  for (size_t i : {1, 3, 4}) EXPECT_NEAR(got[i], 1.0 / 3, kTolerance) << "endpoint " << i;
}

TEST(WeightedRandom, AvoidsTriedEvenWhenTheyHoldAlmostAllWeight) {
  // Rejection sampling gives up here most of the time; the fallback must stay weighted.
  WeightedRandom lb(hosts_with_weights({1000, 1, 3}), /*seed=*/5);
  std::vector<size_t> tried{0};
  std::vector<double> got = shares(3, 20000, [&](int) { return lb.pick({.tried = tried}); });
  EXPECT_EQ(got[0], 0);
  EXPECT_NEAR(got[1], 0.25, kTolerance);
  EXPECT_NEAR(got[2], 0.75, kTolerance);
}

TEST(WeightedRandom, AnswersWhenEverythingWasTried) {
  WeightedRandom lb(hosts_with_weights({1, 1}), /*seed=*/5);
  std::vector<size_t> tried{1, 0};
  for (int i = 0; i < 10; ++i) EXPECT_LT(lb.pick({.tried = tried}), 2u);
}

}  // namespace
}  // namespace sluice::upstream::lb
