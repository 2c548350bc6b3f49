// The speaker's decisions on a manual clock: nothing before ready, withdrawal at once when
// a source drops below its threshold, re-announcement only after the hold-down, and the
// stop's GRACEFUL_SHUTDOWN, delay and withdrawal.
#include "bgp/speaker.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace sluice::bgp {
namespace {

using std::chrono::seconds;

class SpeakerTest : public ::testing::Test {
 protected:
  SpeakerTest() {
    auto c = std::make_shared<BgpConfig>();
    c->local_as = 65001;
    c->router_id = 1;
    PeerConfig p;
    p.address = *net::Address::parse("127.0.0.1:1");
    p.remote_as = 65000;
    c->peers.push_back(p);
    AnnounceConfig a;
    a.prefix = Prefix::parse("192.0.2.1/32").value();
    a.target = "api";
    a.min_healthy = 50;
    a.min_healthy_percent = true;
    c->announce.push_back(a);
    c->hold_down = seconds(10);
    c->shutdown_delay = seconds(5);
    speaker_ =
        std::make_unique<Speaker>(loop_, c, [this](const AnnounceConfig&) { return source_; });
  }
  const Speaker::PrefixView view() { return speaker_->prefixes().at(0); }
  void advance(Duration d) {
    clock_.advance(d);
    loop_.run_until_idle();
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  SourceState source_{3, 3, ""};
  std::unique_ptr<Speaker> speaker_;
};

TEST_F(SpeakerTest, FollowsTheClusterWithAHoldDownBeforeComingBack) {
  speaker_->evaluate();
  EXPECT_FALSE(view().announced);
  EXPECT_EQ(view().reason, "waiting for sluice to be ready");
  speaker_->set_ready();
  EXPECT_TRUE(view().announced);
  EXPECT_EQ(view().reason, "cluster api has 3 of 3 endpoints usable (min 50%)");

  source_ = {1, 3, ""};  // 33% < 50%: withdrawn at once
  speaker_->evaluate();
  EXPECT_FALSE(view().announced);
  EXPECT_EQ(view().reason, "withdrawn: cluster api has 1 of 3 endpoints usable (min 50%)");

  source_ = {2, 3, ""};
  speaker_->evaluate();
  EXPECT_FALSE(view().announced);
  EXPECT_EQ(view().reason, "hold-down: cluster api has 2 of 3 endpoints usable (min 50%)");
  advance(seconds(9));
  EXPECT_FALSE(view().announced);
  // A dip during the hold-down starts it again.
  source_ = {0, 3, ""};
  speaker_->evaluate();
  source_ = {3, 3, ""};
  speaker_->evaluate();
  advance(seconds(9));
  EXPECT_FALSE(view().announced);
  advance(seconds(1));
  EXPECT_TRUE(view().announced);
  EXPECT_EQ(view().stats.transitions, 3u);
}

TEST_F(SpeakerTest, ThresholdAsACount) {
  AnnounceConfig a;
  a.min_healthy = 2;
  EXPECT_FALSE(a.enough(1, 10));
  EXPECT_TRUE(a.enough(2, 10));
  a.min_healthy = 50;
  a.min_healthy_percent = true;
  EXPECT_TRUE(a.enough(1, 2));
  EXPECT_FALSE(a.enough(1, 3));
  EXPECT_FALSE(a.enough(0, 0));
}

TEST_F(SpeakerTest, StopWithoutAnEstablishedSessionWithdrawsAtOnce) {
  speaker_->set_ready();
  ASSERT_TRUE(view().announced);
  bool done = false;
  speaker_->shutdown("SIGTERM", [&done] { done = true; });
  EXPECT_TRUE(done);
  EXPECT_FALSE(view().announced);
  EXPECT_EQ(view().reason, "withdrawn: sluice is stopping");
  // Nothing comes back once stopping.
  speaker_->evaluate();
  EXPECT_FALSE(view().announced);
}

TEST_F(SpeakerTest, JsonNamesEveryPeerAndPrefix) {
  speaker_->set_ready();
  EXPECT_EQ(speaker_->render_json(),
            "{\"local_as\":65001,\"router_id\":\"\",\"peers\":[{\"address\":\"127.0.0.1:1\","
            "\"remote_as\":65000,\"state\":\"idle\",\"uptime_seconds\":0,\"hold_time_seconds\":0,"
            "\"updates_sent\":0,\"updates_received\":0,\"notifications_sent\":0,"
            "\"notifications_received\":0,\"received_prefixes\":0,\"md5\":false,"
            "\"last_error\":\"\"}],\"prefixes\":[{\"prefix\":\"192.0.2.1/32\",\"source\":"
            "\"cluster api\",\"usable\":3,\"total\":3,\"min_healthy\":\"50%\",\"announced\":true,"
            "\"graceful_shutdown\":false,\"transitions\":1,\"communities\":[],\"reason\":"
            "\"cluster api has 3 of 3 endpoints usable (min 50%)\"}]}");
}

}  // namespace
}  // namespace sluice::bgp
