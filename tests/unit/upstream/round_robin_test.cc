#include "upstream/lb/round_robin.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice::upstream::lb {
namespace {

TEST(RoundRobin, HonoursWeightsExactlyOverACycle) {
  RoundRobin rr({1, 2, 3}, /*seed=*/7);
  std::vector<int> counts(3);
  for (int i = 0; i < 600; ++i) counts[rr.pick({})]++;
  EXPECT_EQ(counts, (std::vector<int>{100, 200, 300}));
}

TEST(RoundRobin, InterleavesInsteadOfBursting) {
  RoundRobin rr({1, 1, 2}, /*seed=*/4);
  // Within any 4 consecutive picks, the weight-2 endpoint appears exactly twice.
  std::vector<size_t> picks;
  for (int i = 0; i < 40; ++i) picks.push_back(rr.pick({}));
  for (size_t i = 0; i + 4 <= picks.size(); i += 4) {
    int heavy = 0;
    for (size_t j = i; j < i + 4; ++j) heavy += picks[j] == 2;
    EXPECT_EQ(heavy, 2);
  }
}

TEST(RoundRobin, SkipsTriedEndpointsWhileOthersRemain) {
  RoundRobin rr({5, 1, 1}, /*seed=*/1);
  std::vector<size_t> tried{0, 1};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rr.pick(tried), 2u);
  std::vector<size_t> all{0, 1, 2};
  rr.pick(all);  // everything tried: any answer, but an answer
}

TEST(RoundRobin, DifferentSeedsStartAtDifferentPoints) {
  std::vector<size_t> firsts;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    RoundRobin rr({1, 1, 1, 1}, seed);
    firsts.push_back(rr.pick({}));
  }
  std::sort(firsts.begin(), firsts.end());
  EXPECT_GT(std::unique(firsts.begin(), firsts.end()) - firsts.begin(), 1);
}

}  // namespace
}  // namespace sluice::upstream::lb
