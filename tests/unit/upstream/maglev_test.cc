#include "upstream/lb/maglev.h"

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

constexpr uint32_t kTableSize = 65537;

TEST(Maglev, FollowsWeights) {
  // Table shares follow the weights to within a slot or so per round; what remains is the
  // sampling noise of 60000 keys (0.2 points per share).
  const std::vector<uint32_t> weights{1, 2, 3};
  Maglev lb(hosts_with_weights(weights), kTableSize, /*seed=*/1);
  std::vector<double> got = shares(3, 60000, [&](int i) { return lb.pick({.hash = key_hash(i)}); });
  std::vector<double> want = expected_shares(weights);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], 0.01) << "endpoint " << i;
}

TEST(Maglev, SameMappingForEveryInstanceAndHostOrder) {
  // Two workers (different seeds), and one that received the hosts in another order.
  std::vector<LbHost> hosts = hosts_with_weights({1, 2, 3, 1, 1});
  Maglev a(hosts, kTableSize, /*seed=*/1);
  Maglev b(hosts, kTableSize, /*seed=*/2);
  std::reverse(hosts.begin(), hosts.end());
  Maglev c(hosts, kTableSize, /*seed=*/3);
  std::vector<size_t> ma = mapping(a, 20000);
  EXPECT_EQ(ma, mapping(b, 20000));
  EXPECT_EQ(ma, mapping(c, 20000));
}

TEST(Maglev, RemovingAHostMovesFewKeysAndAddingItBackRestoresThem) {
  constexpr int kKeys = 20000;
  constexpr size_t kHosts = 5;
  std::vector<LbHost> all = equal_hosts(kHosts);
  std::vector<size_t> before = [&] {
    Maglev lb(all, kTableSize, /*seed=*/1);
    return mapping(lb, kKeys);
  }();

  std::vector<LbHost> without = all;
  without.erase(without.begin() + 2);
  Maglev lb_without(without, kTableSize, /*seed=*/2);
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
  // The 1/N on the removed host must move; Maglev disturbs the survivors' slots only a little.
  EXPECT_LE(static_cast<double>(moved) / kKeys, 1.5 / kHosts);
  EXPECT_LE(static_cast<double>(survivors_moved) / on_survivors, 0.05);

  Maglev lb_again(all, kTableSize, /*seed=*/3);
  EXPECT_EQ(mapping(lb_again, kKeys), before);
}

TEST(Maglev, WithoutAHashPicksAtRandom) {
  Maglev lb(equal_hosts(4), kTableSize, /*seed=*/5);
  std::vector<double> got = shares(4, 20000, [&](int) { return lb.pick({}); });
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], 0.25, 0.04) << "endpoint " << i;
}

TEST(Maglev, TriedHostPassesToTheNextSlotsHost) {
  Maglev lb(equal_hosts(5), kTableSize, /*seed=*/1);
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

TEST(Maglev, SmallTable) {
  Maglev lb(equal_hosts(3), /*table_size=*/7, /*seed=*/1);
  std::set<size_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(lb.pick({.hash = key_hash(i)}));
  EXPECT_EQ(seen.size(), 3u);
}

TEST(Maglev, HostWithoutASlotIsStillReachedOnRetry) {
  // Weight 1 against 100 in a 7-slot table: endpoint 0 never gets a turn before the table
  // fills, so only the fallback can reach it once endpoint 1 was tried.
  Maglev lb(hosts_with_weights({1, 100}), /*table_size=*/7, /*seed=*/1);
  std::vector<size_t> tried{1};
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(lb.pick({.hash = key_hash(i)}), 1u);
    EXPECT_EQ(lb.pick({.tried = tried, .hash = key_hash(i)}), 0u);
  }
}

}  // namespace
}  // namespace sluice::upstream::lb
