#include "dns/cache.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::dns {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

net::Address ip(const char* text) {
  return *net::Address::parse_ip(text, 0);
}

Answer good(uint32_t ttl_seconds, const char* address = "192.0.2.1") {
  Answer a;
  a.name = "api.example";
  a.addresses.push_back(ip(address));
  a.record_ttl = ttl_seconds;
  return a;
}

Answer negative(ErrorKind kind, uint32_t ttl_seconds) {
  Answer a;
  a.name = "api.example";
  a.error = kind;
  a.error_text = "no such name (NXDOMAIN)";
  a.record_ttl = ttl_seconds;
  return a;
}

Answer failure(ErrorKind kind) {
  Answer a;
  a.name = "api.example";
  a.error = kind;
  a.error_text = "no answer from 127.0.0.1:53 (2 tries of 2s)";
  return a;
}

const std::string kKey = "addr:api.example";

class CacheTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  Cache cache_{CacheConfig{}};
};

TEST_F(CacheTest, PositiveAnswerIsServedForItsTtlThenExpires) {
  Answer stored = cache_.store(kKey, good(60), clock_.now());
  EXPECT_EQ(stored.ttl, seconds(60));
  EXPECT_FALSE(stored.from_cache);

  clock_.advance(seconds(59) + milliseconds(500));
  auto hit = cache_.find(kKey, clock_.now());
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(hit->from_cache);
  EXPECT_EQ(hit->ttl, milliseconds(500));
  ASSERT_EQ(hit->addresses.size(), 1u);
  EXPECT_EQ(hit->addresses[0], ip("192.0.2.1"));

  clock_.advance(milliseconds(500));
  EXPECT_FALSE(cache_.find(kKey, clock_.now()).has_value());
}

TEST_F(CacheTest, SavedGoodAnswersRestoreWithWhatIsLeftOfTheirTtl) {
  cache_.store(kKey, good(60), clock_.now());
  cache_.store("addr:gone.example", negative(ErrorKind::kNxDomain, 60), clock_.now());
  cache_.store("addr:short.example", good(1), clock_.now());
  clock_.advance(seconds(20));
  auto saved = cache_.save(clock_.now());
  // Only good answers within their TTL: not the negative one, not the expired one.
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].key, kKey);
  EXPECT_EQ(saved[0].left, seconds(40));

  ManualClock other;
  Cache fresh{CacheConfig{}};
  fresh.restore(saved[0], other.now());
  other.advance(seconds(39));
  auto hit = fresh.find(kKey, other.now());
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->ttl, seconds(1));
  EXPECT_EQ(hit->addresses, std::vector<net::Address>{ip("192.0.2.1")});
  other.advance(seconds(1));
  EXPECT_FALSE(fresh.find(kKey, other.now()).has_value());
}

TEST_F(CacheTest, PositiveTtlIsClampedToMinAndMax) {
  EXPECT_EQ(cache_.store(kKey, good(0), clock_.now()).ttl, seconds(1));
  EXPECT_EQ(cache_.store(kKey, good(86400), clock_.now()).ttl, hours(1));
  clock_.advance(hours(1) - milliseconds(1));
  EXPECT_TRUE(cache_.find(kKey, clock_.now()).has_value());
  clock_.advance(milliseconds(1));
  EXPECT_FALSE(cache_.find(kKey, clock_.now()).has_value());
}

TEST_F(CacheTest, EachKeyExpiresOnItsOwn) {
  cache_.store("addr:a.example", good(10), clock_.now());
  cache_.store("addr:b.example", good(20), clock_.now());
  clock_.advance(seconds(10));
  EXPECT_FALSE(cache_.find("addr:a.example", clock_.now()).has_value());
  EXPECT_TRUE(cache_.find("addr:b.example", clock_.now()).has_value());
  EXPECT_FALSE(cache_.find("addr:c.example", clock_.now()).has_value());
}

TEST(RefreshAfter, ATenthOfTheTtlEarlyAtMostThirtySeconds) {
  EXPECT_EQ(refresh_after(seconds(10)), seconds(9));
  EXPECT_EQ(refresh_after(seconds(60)), seconds(54));
  EXPECT_EQ(refresh_after(seconds(300)), seconds(270));  // exactly 30 s early
  EXPECT_EQ(refresh_after(seconds(600)), seconds(570));  // capped at 30 s early
  EXPECT_EQ(refresh_after(hours(1)), hours(1) - seconds(30));
  EXPECT_EQ(refresh_after(seconds(1)), milliseconds(900));
}

TEST_F(CacheTest, AnEarlyRefreshFindsTheAnswerStillCachedAndReplacesIt) {
  cache_.store(kKey, good(100), clock_.now());
  // A caller refreshes at refresh_after(100 s) = 90 s: the cached answer still has 10 s.
  clock_.advance(refresh_after(seconds(100)));
  auto hit = cache_.find(kKey, clock_.now());
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->ttl, seconds(10));
  // The refresh's answer starts a new TTL from now.
  Answer fresh = cache_.store(kKey, good(100, "192.0.2.2"), clock_.now());
  EXPECT_EQ(fresh.ttl, seconds(100));
  clock_.advance(seconds(99));
  hit = cache_.find(kKey, clock_.now());
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->addresses[0], ip("192.0.2.2"));
  EXPECT_EQ(hit->ttl, seconds(1));
}

TEST_F(CacheTest, AFailedEarlyRefreshKeepsTheAnswerForTheRestOfItsTtl) {
  cache_.store(kKey, good(100), clock_.now());
  clock_.advance(seconds(90));
  Answer kept = cache_.store(kKey, failure(ErrorKind::kTimeout), clock_.now());
  EXPECT_TRUE(kept.ok());
  EXPECT_TRUE(kept.refresh_failed);
  EXPECT_FALSE(kept.stale);
  EXPECT_TRUE(kept.from_cache);
  EXPECT_EQ(kept.ttl, seconds(10));
  EXPECT_EQ(kept.error_text, "no answer from 127.0.0.1:53 (2 tries of 2s)");
  auto hit = cache_.find(kKey, clock_.now() + seconds(9));
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(hit->refresh_failed);
  EXPECT_EQ(hit->ttl, seconds(1));
  EXPECT_FALSE(cache_.find(kKey, clock_.now() + seconds(10)).has_value());
}

TEST_F(CacheTest, NegativeAnswerIsCachedForItsClampedNegativeTtl) {
  Answer nx = cache_.store(kKey, negative(ErrorKind::kNxDomain, 30), clock_.now());
  EXPECT_EQ(nx.ttl, seconds(30));
  clock_.advance(seconds(29));
  auto hit = cache_.find(kKey, clock_.now());
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->error, ErrorKind::kNxDomain);
  EXPECT_EQ(hit->ttl, seconds(1));
  clock_.advance(seconds(1));
  EXPECT_FALSE(cache_.find(kKey, clock_.now()).has_value());

  EXPECT_EQ(cache_.store(kKey, negative(ErrorKind::kNoData, 0), clock_.now()).ttl, seconds(1));
  EXPECT_EQ(cache_.store(kKey, negative(ErrorKind::kNoData, 3600), clock_.now()).ttl, minutes(5));
}

TEST_F(CacheTest, FailuresAreNotCachedWithoutAGoodAnswer) {
  Answer a = cache_.store(kKey, failure(ErrorKind::kServFail), clock_.now());
  EXPECT_EQ(a.error, ErrorKind::kServFail);
  EXPECT_EQ(a.ttl, Duration(0));
  EXPECT_FALSE(a.stale);
  EXPECT_FALSE(cache_.find(kKey, clock_.now()).has_value());
}

TEST_F(CacheTest, AfterExpiryAFailureServesTheLastGoodAnswerStaleUntilStaleTtl) {
  cache_.store(kKey, good(60), clock_.now());
  clock_.advance(seconds(60));
  ASSERT_FALSE(cache_.find(kKey, clock_.now()).has_value());

  Answer stale = cache_.store(kKey, failure(ErrorKind::kTimeout), clock_.now());
  EXPECT_TRUE(stale.ok());
  EXPECT_TRUE(stale.stale);
  EXPECT_TRUE(stale.from_cache);
  EXPECT_EQ(stale.addresses[0], ip("192.0.2.1"));
  EXPECT_EQ(stale.ttl, seconds(1));  // ask again soon: max(min_ttl, 1 s)
  // A stale answer is handed out, never cached: the next lookup asks the servers.
  EXPECT_FALSE(cache_.find(kKey, clock_.now()).has_value());

  // Near the end of stale_ttl (5 min), the TTL is what is left of the window.
  clock_.advance(minutes(5) - milliseconds(300));
  stale = cache_.store(kKey, failure(ErrorKind::kRefused), clock_.now());
  EXPECT_TRUE(stale.stale);
  EXPECT_EQ(stale.ttl, milliseconds(300));

  clock_.advance(milliseconds(300));
  Answer gone = cache_.store(kKey, failure(ErrorKind::kTimeout), clock_.now());
  EXPECT_EQ(gone.error, ErrorKind::kTimeout);
  EXPECT_FALSE(gone.stale);
  EXPECT_EQ(gone.ttl, Duration(0));
}

TEST_F(CacheTest, StaleWindowEndsForGoodOnceItPassed) {
  cache_.store(kKey, good(10), clock_.now());
  clock_.advance(seconds(10) + minutes(5));
  EXPECT_FALSE(cache_.store(kKey, failure(ErrorKind::kTimeout), clock_.now()).ok());
  // The last good answer is forgotten: even a failure right after is not stale.
  EXPECT_FALSE(cache_.store(kKey, failure(ErrorKind::kTimeout), clock_.now()).stale);
}

TEST_F(CacheTest, ANegativeAnswerForgetsTheLastGoodOne) {
  cache_.store(kKey, good(10), clock_.now());
  clock_.advance(seconds(10));
  cache_.store(kKey, negative(ErrorKind::kNxDomain, 5), clock_.now());
  clock_.advance(seconds(5));
  Answer a = cache_.store(kKey, failure(ErrorKind::kServFail), clock_.now());
  EXPECT_EQ(a.error, ErrorKind::kServFail);
  EXPECT_FALSE(a.stale);
}

TEST(CacheConfigTest, StaleTtlAndMinTtlComeFromTheConfig) {
  CacheConfig config;
  config.min_ttl = seconds(5);
  config.stale_ttl = seconds(30);
  Cache cache(config);
  ManualClock clock;
  cache.store(kKey, good(2), clock.now());  // clamped up to 5 s
  clock.advance(seconds(5));
  Answer stale = cache.store(kKey, failure(ErrorKind::kTimeout), clock.now());
  EXPECT_TRUE(stale.stale);
  EXPECT_EQ(stale.ttl, seconds(5));  // max(min_ttl, 1 s)
  clock.advance(seconds(30));
  EXPECT_FALSE(cache.store(kKey, failure(ErrorKind::kTimeout), clock.now()).ok());
}

TEST_F(CacheTest, ReportShowsEachNameFreshExpiredOrStale) {
  cache_.store(kKey, good(60), clock_.now());
  cache_.store("addr:gone.example", negative(ErrorKind::kNxDomain, 30), clock_.now());
  clock_.advance(seconds(20));
  auto r = cache_.report(clock_.now());
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].key, kKey);
  EXPECT_EQ(r[0].left, seconds(40));
  EXPECT_FALSE(r[0].answer.stale);
  EXPECT_EQ(r[1].answer.error, ErrorKind::kNxDomain);
  EXPECT_EQ(r[1].left, seconds(10));

  clock_.advance(seconds(40));  // expired, not yet refreshed
  r = cache_.report(clock_.now());
  EXPECT_EQ(r[0].left, Duration(0));
  cache_.store(kKey, failure(ErrorKind::kTimeout), clock_.now());  // the refresh failed
  clock_.advance(seconds(2));
  r = cache_.report(clock_.now());
  ASSERT_EQ(r[0].key, kKey);
  EXPECT_TRUE(r[0].answer.stale);
  EXPECT_EQ(r[0].answer.addresses[0], ip("192.0.2.1"));
  EXPECT_EQ(r[0].left, -seconds(2));

  clock_.advance(minutes(5));  // past stale_ttl: nothing to serve, nothing to show
  r = cache_.report(clock_.now());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].key, "addr:gone.example");
}

}  // namespace
}  // namespace sluice::dns
