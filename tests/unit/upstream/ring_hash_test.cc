#include "upstream/lb/ring_hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "lb_test_util.h"

namespace sluice::upstream::lb {
namespace {

using testing::equal_hosts;
using testing::expected_shares;
using testing::hosts_with_weights;
using testing::key_hash;
using testing::mapping;
using testing::shares;

constexpr uint32_t kRingSize = 1024;

TEST(RingHash, FollowsWeights) {
  // A ring's arcs are uneven: with ~170 nodes for the lightest host its share has a relative
  // spread of about 1/sqrt(170) = 8%. The tolerance is that, not sampling noise.
  const std::vector<uint32_t> weights{1, 2, 3};
  RingHash lb(hosts_with_weights(weights), kRingSize, /*total_weight=*/0, /*seed=*/1);
  std::vector<double> got = shares(3, 60000, [&](int i) { return lb.pick({.hash = key_hash(i)}); });
  std::vector<double> want = expected_shares(weights);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], 0.03) << "endpoint " << i;
}

TEST(RingHash, SameMappingForEveryInstanceAndHostOrder) {
  // Two workers (different seeds), and one that received the hosts in another order.
  std::vector<LbHost> hosts = hosts_with_weights({1, 2, 3, 1, 1});
  RingHash a(hosts, kRingSize, /*total_weight=*/0, /*seed=*/1);
  RingHash b(hosts, kRingSize, /*total_weight=*/0, /*seed=*/2);
  std::reverse(hosts.begin(), hosts.end());
  RingHash c(hosts, kRingSize, /*total_weight=*/0, /*seed=*/3);
  std::vector<size_t> ma = mapping(a, 20000);
  EXPECT_EQ(ma, mapping(b, 20000));
  EXPECT_EQ(ma, mapping(c, 20000));
}

TEST(RingHash, RemovingAHostMovesFewKeysAndAddingItBackRestoresThem) {
  constexpr int kKeys = 20000;
  constexpr size_t kHosts = 5;
  std::vector<LbHost> all = equal_hosts(kHosts);
  std::vector<size_t> before = [&] {
    RingHash lb(all, kRingSize, /*total_weight=*/0, /*seed=*/1);
    return mapping(lb, kKeys);
  }();

  std::vector<LbHost> without = all;
  without.erase(without.begin() + 2);
  // The balancer is rebuilt over the usable hosts, with the cluster's whole weight.
  RingHash lb_without(without, kRingSize, /*total_weight=*/kHosts, /*seed=*/2);
  std::vector<size_t> after = mapping(lb_without, kKeys);
  int moved = 0;
  int on_survivors = 0;
  int survivors_moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_NE(after[i], 2u);
    moved += before[i] != after[i];
    if (before[i] != 2) {
      ++on_survivors;
      survivors_moved += before[i] != after[i];
    }
  }
  // Only the keys of the removed host move (about 1/N); survivors keep their nodes.
  EXPECT_LE(static_cast<double>(moved) / kKeys, 1.5 / kHosts);
  EXPECT_EQ(survivors_moved, 0);

  RingHash lb_again(all, kRingSize, /*total_weight=*/0, /*seed=*/3);
  EXPECT_EQ(mapping(lb_again, kKeys), before);
}

TEST(RingHash, WithoutAHashPicksAtRandom) {
  RingHash lb(equal_hosts(4), kRingSize, /*total_weight=*/0, /*seed=*/5);
  std::vector<double> got = shares(4, 20000, [&](int) { return lb.pick({}); });
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], 0.25, 0.04) << "endpoint " << i;
}

TEST(RingHash, TriedHostPassesToTheNextHostOnTheRing) {
  RingHash lb(equal_hosts(5), kRingSize, /*total_weight=*/0, /*seed=*/1);
  std::vector<int> retried_to(5);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t h = key_hash(i);
    const size_t first = lb.pick({.hash = h});
    std::vector<size_t> tried{first};
    const size_t second = lb.pick({.tried = tried, .hash = h});
    EXPECT_NE(second, first);
    // Deterministic: every worker retries a key on the same host.
    EXPECT_EQ(lb.pick({.tried = tried, .hash = h}), second);
    retried_to[second]++;
  }
  // The retries spread over the other hosts rather than all landing on one.
  for (int n : retried_to) EXPECT_GT(n, 200);

  std::vector<size_t> all_but_3{0, 1, 2, 4};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lb.pick({.tried = all_but_3, .hash = key_hash(i)}), 3u);
  std::vector<size_t> all{0, 1, 2, 3, 4};
  EXPECT_LT(lb.pick({.tried = all, .hash = key_hash(0)}), 5u);
}

TEST(RingHash, EveryHostGetsANodeOnATinyRing) {
  RingHash lb(hosts_with_weights({1, 1, 1, 1, 100}), /*ring_size=*/2, /*total_weight=*/0,
              /*seed=*/1);
  std::set<size_t> seen;
  for (int i = 0; i < 5000; ++i) seen.insert(lb.pick({.hash = key_hash(i)}));
  EXPECT_EQ(seen.size(), 5u);
}

}  // namespace
}  // namespace sluice::upstream::lb
