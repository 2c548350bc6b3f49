// The STUN listener's per-source token buckets: the burst, the refill rate, and a table
// that never grows past max_sources.
#include "proxy/stun/rate_limiter.h"

#include <gtest/gtest.h>

namespace sluice::proxy::stun {
namespace {

udp::AddressKey source(int n) {
  return udp::address_key(*net::Address::parse("10.0.0." + std::to_string(n) + ":1"), false);
}

TEST(SourceRateLimiter, BurstThenRefillAtTheRate) {
  SourceRateLimiter l(10, 3, 100);
  MonoTime t(std::chrono::hours(1));
  EXPECT_TRUE(l.allow(source(1), t));
  EXPECT_TRUE(l.allow(source(1), t));
  EXPECT_TRUE(l.allow(source(1), t));
  EXPECT_FALSE(l.allow(source(1), t));
  EXPECT_TRUE(l.allow(source(2), t)) << "another source has its own bucket";
  t += std::chrono::milliseconds(99);
  EXPECT_FALSE(l.allow(source(1), t)) << "0.99 tokens after 99 ms at 10/s";
  t += std::chrono::milliseconds(1);
  EXPECT_TRUE(l.allow(source(1), t));
  EXPECT_FALSE(l.allow(source(1), t));
  t += std::chrono::seconds(10);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(l.allow(source(1), t)) << "refilled to the burst";
  EXPECT_FALSE(l.allow(source(1), t)) << "not beyond it";
}

TEST(SourceRateLimiter, TheTableForgetsTheLeastRecentlySeenSource) {
  SourceRateLimiter l(1, 1, 16);
  MonoTime t(std::chrono::hours(1));
  EXPECT_TRUE(l.allow(source(1), t));
  EXPECT_FALSE(l.allow(source(1), t));
  for (int i = 2; i <= 16; ++i) EXPECT_TRUE(l.allow(source(i), t));
  EXPECT_EQ(l.tracked(), 16u);
  EXPECT_FALSE(l.allow(source(1), t)) << "seen again: most recent now";
  EXPECT_TRUE(l.allow(source(100), t));  // evicts source 2, the least recently seen
  EXPECT_EQ(l.tracked(), 16u);
  EXPECT_FALSE(l.allow(source(1), t)) << "source 1 was kept";
  EXPECT_TRUE(l.allow(source(2), t)) << "source 2 was forgotten: a fresh bucket";
  for (int i = 200; i < 1200; ++i) l.allow(source(i % 250), t);
  EXPECT_EQ(l.tracked(), 16u) << "a flood of sources costs the table, never more";
}

TEST(SourceRateLimiter, ZeroRateLetsEverythingThrough) {
  SourceRateLimiter l(0, 0, 16);
  MonoTime t(std::chrono::hours(1));
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(l.allow(source(1), t));
  EXPECT_EQ(l.tracked(), 0u);
}

}  // namespace
}  // namespace sluice::proxy::stun
