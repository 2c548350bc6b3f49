// hash_key() stability and the make_load_balancer() factory.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "lb_test_util.h"
#include "upstream/lb/hash.h"
#include "upstream/lb/load_balancer.h"

namespace sluice::upstream::lb {
namespace {

using testing::hosts_with_weights;

TEST(LbHash, HashKeyIsStable) {
  // Fixed values: a change here re-maps every hash-balanced key in every deployment.
  EXPECT_EQ(hash_key(""), 0xefd01f60ba992926ULL);
  EXPECT_EQ(hash_key("10.0.0.1:8080"), 0x3dde85880dbc413eULL);
  EXPECT_EQ(hash_key("GET /index.html"), 0x495a103f218dbdf4ULL);
}

TEST(LbHash, SeedsGiveDifferentHashes) {
  EXPECT_EQ(hash_bytes("10.0.0.1:8080", 0), hash_key("10.0.0.1:8080"));
  EXPECT_NE(hash_bytes("10.0.0.1:8080", 1), hash_key("10.0.0.1:8080"));
}

TEST(LbHash, SimilarKeysSpreadOverTheRange) {
  // Keys differing in a trailing digit must not cluster (they are ring node names).
  int high_bit = 0;
  for (int i = 0; i < 1000; ++i) high_bit += hash_key("10.0.0.1:8080_" + std::to_string(i)) >> 63;
  EXPECT_NEAR(high_bit, 500, 60);
}

TEST(LbFactory, BuildsEveryPolicy) {
  std::vector<uint32_t> active(13, 0);
  for (Policy p : {Policy::kRoundRobin, Policy::kLeastRequest, Policy::kRandom, Policy::kRingHash,
                   Policy::kMaglev}) {
    LbConfig config;
    config.policy = p;
    config.maglev_table_size = 251;
    std::unique_ptr<LoadBalancer> lb =
        make_load_balancer(config, hosts_with_weights({1, 2, 3}, /*index_offset=*/10), &active,
                           /*seed=*/1);
    ASSERT_NE(lb, nullptr);
    std::vector<size_t> tried{10, 11};
    for (int i = 0; i < 50; ++i) {
      size_t got = lb->pick({.hash = testing::key_hash(i)});
      EXPECT_TRUE(got >= 10 && got <= 12) << got;
      EXPECT_EQ(lb->pick({.tried = tried, .hash = testing::key_hash(i)}), 12u);
    }
  }
}

}  // namespace
}  // namespace sluice::upstream::lb
