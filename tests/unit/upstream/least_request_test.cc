#include "upstream/lb/least_request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "lb_test_util.h"

namespace sluice::upstream::lb {
namespace {

using testing::expected_shares;
using testing::hosts_with_weights;
using testing::shares;

constexpr double kTolerance = 0.01;

TEST(LeastRequest, IdleFollowsWeights) {
  // No load: every comparison ties, so picks follow the weighted sampling alone.
  const std::vector<uint32_t> weights{1, 2, 3};
  std::vector<uint32_t> active(3, 0);
  LeastRequest lb(hosts_with_weights(weights), &active, /*choice_count=*/2, /*seed=*/42);
  std::vector<double> got = shares(3, 60000, [&](int) { return lb.pick({}); });
  std::vector<double> want = expected_shares(weights);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], kTolerance) << "endpoint " << i;
}

TEST(LeastRequest, PowerOfTwoPrefersTheIdleEndpoint) {
  // Two candidates drawn with replacement out of three equal hosts: the idle one wins
  // whenever it is drawn, 1 - (2/3)^2 = 5/9 of the time (vs 1/3 for random). A loaded host
  // wins only against itself or the other loaded one.
  std::vector<uint32_t> active{100, 0, 100};
  LeastRequest lb(hosts_with_weights({1, 1, 1}), &active, /*choice_count=*/2, /*seed=*/7);
  std::vector<double> got = shares(3, 60000, [&](int) { return lb.pick({}); });
  EXPECT_NEAR(got[1], 5.0 / 9, kTolerance);
  EXPECT_NEAR(got[0], 2.0 / 9, kTolerance);
  EXPECT_NEAR(got[2], 2.0 / 9, kTolerance);
}

TEST(LeastRequest, MoreChoicesPickTheIdleEndpointAlmostAlways) {
  // Eight candidates: the idle host is missed only with (2/3)^8 = 3.9%.
  std::vector<uint32_t> active{100, 0, 100};
  LeastRequest lb(hosts_with_weights({1, 1, 1}), &active, /*choice_count=*/8, /*seed=*/7);
  std::vector<double> got = shares(3, 60000, [&](int) { return lb.pick({}); });
  EXPECT_GT(got[1], 0.9);
}

TEST(LeastRequest, ComparesActiveRequestsPerUnitOfWeight) {
  // 10 active on weight 1 is busier than 20 active on weight 4 (10 vs 5 per unit), so the
  // heavier endpoint wins unless both candidates are the light one: (1/5)^2 = 4%.
  std::vector<uint32_t> active{10, 20};
  LeastRequest lb(hosts_with_weights({1, 4}), &active, /*choice_count=*/2, /*seed=*/11);
  std::vector<double> got = shares(2, 60000, [&](int) { return lb.pick({}); });
  EXPECT_NEAR(got[0], 0.04, kTolerance);
  EXPECT_GT(got[1], 0.9);
}

TEST(LeastRequest, KeepsInFlightRequestsInProportionToWeight) {
  // Closed loop: each pick adds a request in flight, and the oldest one completes once 60
  // are in flight. Averaged over time, in-flight counts sit in proportion to the weights
  // (any single moment fluctuates by several requests).
  std::vector<uint32_t> active(3, 0);
  LeastRequest lb(hosts_with_weights({1, 2, 3}), &active, /*choice_count=*/2, /*seed=*/13);
  std::deque<size_t> in_flight;
  std::vector<double> sum(3);
  int samples = 0;
  for (int i = 0; i < 50000; ++i) {
    size_t ep = lb.pick({});
    ++active[ep];
    in_flight.push_back(ep);
    if (in_flight.size() > 60) {
      --active[in_flight.front()];
      in_flight.pop_front();
    }
    if (i >= 1000) {
      for (size_t j = 0; j < 3; ++j) sum[j] += active[j];
      ++samples;
    }
  }
  EXPECT_NEAR(sum[0] / samples, 10, 1);
  EXPECT_NEAR(sum[1] / samples, 20, 1);
  EXPECT_NEAR(sum[2] / samples, 30, 1);
}

TEST(LeastRequest, ShiftsLoadAwayFromASlowEndpoint) {
  // Endpoint 1 takes three times as long to answer. Random would still send it a third of
  // the requests; least request sends it clearly fewer.
  std::vector<uint32_t> active(3, 0);
  LeastRequest lb(hosts_with_weights({1, 1, 1}), &active, /*choice_count=*/2, /*seed=*/17);
  std::deque<std::pair<int, size_t>> in_flight;  // (completion tick, endpoint), by tick
  std::vector<int> picks(3);
  for (int tick = 0; tick < 30000; ++tick) {
    while (!in_flight.empty() && in_flight.front().first <= tick) {
      --active[in_flight.front().second];
      in_flight.pop_front();
    }
    size_t ep = lb.pick({});
    ++active[ep];
    ++picks[ep];
    const int done = tick + (ep == 1 ? 60 : 20);
    auto at = std::upper_bound(in_flight.begin(), in_flight.end(), std::make_pair(done, ep));
    in_flight.insert(at, {done, ep});
  }
  EXPECT_LT(picks[1], 30000 / 4);
}

TEST(LeastRequest, AvoidsTriedWhileOthersRemain) {
  std::vector<uint32_t> active{0, 100, 100};
  LeastRequest lb(hosts_with_weights({1, 1, 1}), &active, /*choice_count=*/2, /*seed=*/3);
  std::vector<size_t> tried{0};
  std::vector<double> got = shares(3, 10000, [&](int) { return lb.pick({.tried = tried}); });
  EXPECT_EQ(got[0], 0);
  std::vector<size_t> all{0, 1, 2};
  EXPECT_LT(lb.pick({.tried = all}), 3u);
}

TEST(LeastRequest, ReadsActiveRequestsByClusterIndex) {
  // Hosts 5 and 7 of a larger cluster: the balancer must read active[5] and active[7].
  std::vector<uint32_t> active(8, 1000);
  active[7] = 0;
  std::vector<LbHost> hosts{{5, 1, "a:1"}, {7, 1, "b:1"}};
  LeastRequest lb(std::move(hosts), &active, /*choice_count=*/2, /*seed=*/3);
  std::vector<double> got = shares(8, 10000, [&](int) { return lb.pick({}); });
  EXPECT_NEAR(got[7], 0.75, kTolerance);  // 1 - (1/2)^2
  EXPECT_NEAR(got[5], 0.25, kTolerance);
}

}  // namespace
}  // namespace sluice::upstream::lb
