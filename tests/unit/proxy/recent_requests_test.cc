#include "proxy/http/recent_requests.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

namespace sluice::proxy::http {
namespace {

RecentRequest request(uint64_t us, int64_t id = 0) {
  return RecentRequest{us, id, false, "{\"id\":" + std::to_string(id) + "}"};
}

std::vector<uint64_t> slow_durations(const RecentRequests& r, MonoTime now) {
  std::vector<RecentRequest> slow, failed;
  r.report(slow, failed, now);
  std::vector<uint64_t> out;
  for (const auto& s : slow) out.push_back(s.duration_us);
  std::sort(out.begin(), out.end());
  return out;
}

// A time well after the clock's zero (a zero MonoTime means "never").
const MonoTime kT0 = MonoTime{} + std::chrono::hours(1);

TEST(RecentRequests, KeepsTheSlowestOfTheWindow) {
  RecentRequests r;
  for (uint64_t us = 1; us <= 40; ++us) {
    if (r.wants_slow(us, kT0)) r.add_slow(request(us), kT0);
  }
  std::vector<uint64_t> want;
  for (uint64_t us = 25; us <= 40; ++us) want.push_back(us);
  EXPECT_EQ(slow_durations(r, kT0), want);
  // Full: a faster request is not wanted (one comparison), a slower one is.
  EXPECT_FALSE(r.wants_slow(25, kT0));
  EXPECT_TRUE(r.wants_slow(26, kT0));
  r.add_slow(request(100), kT0);
  EXPECT_EQ(slow_durations(r, kT0).front(), 26u);
  EXPECT_EQ(slow_durations(r, kT0).back(), 100u);
}

TEST(RecentRequests, SlowRequestsLeaveAfterTheWindow) {
  RecentRequests r;
  for (uint64_t us = 1000; us < 1000 + RecentRequests::kSlowest; ++us) r.add_slow(request(us), kT0);
  MonoTime later = kT0 + RecentRequests::kWindow;
  EXPECT_TRUE(slow_durations(r, later).empty());
  // A fast request is wanted again once the old ones are out of the window, and it evicts
  // them all.
  EXPECT_TRUE(r.wants_slow(5, later));
  r.add_slow(request(5), later);
  EXPECT_EQ(slow_durations(r, later), std::vector<uint64_t>{5});
}

TEST(RecentRequests, KeepsTheLatestFailed) {
  RecentRequests r;
  for (int64_t id = 1; id <= 20; ++id) r.add_failed(request(1, id));
  std::vector<RecentRequest> slow, failed;
  r.report(slow, failed, kT0);
  EXPECT_TRUE(slow.empty());
  std::set<int64_t> ids;
  for (const auto& f : failed) ids.insert(f.ended_ms);
  std::set<int64_t> want;
  for (int64_t id = 5; id <= 20; ++id) want.insert(id);
  EXPECT_EQ(ids, want);
  EXPECT_EQ(failed.size(), RecentRequests::kFailed);
}

}  // namespace
}  // namespace sluice::proxy::http
