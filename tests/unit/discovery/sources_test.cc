#include "discovery/sources.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "../dns/fake_dns_server.h"
#include "event/loop.h"

namespace sluice::discovery {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using upstream::ClusterConfig;
using upstream::SourceState;

std::shared_ptr<ClusterConfig> dns_cluster(std::string name, std::string host) {
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = std::move(name);
  cluster->type = ClusterConfig::Type::kStrictDns;
  cluster->dns_targets.push_back(upstream::DnsTarget{std::move(host), 8080, 1});
  cluster->panic_threshold = 0;
  return cluster;
}

// Clusters' endpoint sources (a strict_dns cluster kept in step with a loopback DNS server
// unless a test says otherwise), on a manual clock.
class SourcesTest : public ::testing::Test {
 protected:
  void start() {
    if (clusters_.empty()) clusters_ = {dns_cluster("api", "api.example")};
    dns::ResolverConfig rc;
    rc.servers = {server_.address()};
    rc.hosts_file = "";
    rc.attempts = 1;
    health_ = std::make_unique<upstream::health::HealthManager>(
        loop_, clusters_, [](size_t, std::shared_ptr<const upstream::health::HealthSnapshot>) {});
    auto s = Sources::create(loop_, *health_, clusters_, rc);
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    sources_ = std::move(s.value());
    sources_->start([this] { first_round_ = true; });
    run();
  }
  void run() {
    // Bounded: an answer needs a few iterations (query, reply, callback).
    for (int i = 0; i < 10; ++i) loop_.run_until_idle();
  }
  void advance(Duration d) {
    clock_.advance(d);
    run();
  }
  // The endpoints the cluster has (not flagged removed), as "ip:port".
  std::vector<std::string> endpoints(size_t cluster = 0) const {
    const auto& s = health_->snapshot(cluster);
    std::vector<std::string> out;
    for (size_t i = 0; i < s.flags.size(); ++i) {
      if (!(s.flags[i] & upstream::health::kRemoved)) {
        out.push_back((*s.endpoints)[i].address.to_string());
      }
    }
    return out;
  }
  SourceState state(size_t cluster = 0) const { return sources_->source(cluster)->state(); }
  const upstream::SourceStats& stats(size_t cluster = 0) const {
    return sources_->source(cluster)->stats();
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  dns::FakeDnsServer server_{loop_};
  std::vector<std::shared_ptr<const ClusterConfig>> clusters_;
  std::unique_ptr<upstream::health::HealthManager> health_;
  std::unique_ptr<Sources> sources_;
  bool first_round_ = false;
};

TEST_F(SourcesTest, AGoodAnswerIsRefreshedATenthOfItsTtlEarly) {
  server_.ttl = 100;
  start();
  EXPECT_TRUE(first_round_);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
  EXPECT_EQ(server_.queries(), 1);
  EXPECT_STREQ(sources_->source(0)->kind(), "strict_dns");
  EXPECT_EQ(sources_->source(0)->target(), "api.example:8080");
  EXPECT_EQ(state(), SourceState::kSynced);
  EXPECT_EQ(stats().endpoints, 1u);
  EXPECT_EQ(stats().updates, 1u);
  EXPECT_EQ(stats().failures, 0u);

  server_.ipv4 = {0xc0000202};  // 192.0.2.2
  advance(seconds(90) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 1);
  advance(milliseconds(1));  // 90 s: the servers are asked although the cache has 10 s left
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.2:8080"}));
  EXPECT_EQ(stats().updates, 2u);
  // And again 90 s after that answer.
  advance(seconds(90) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
  advance(milliseconds(1));
  EXPECT_EQ(server_.queries(), 3);
}

TEST_F(SourcesTest, TheEarlyRefreshIsAtMostThirtySecondsEarly) {
  server_.ttl = 600;
  start();
  advance(seconds(570) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 1);
  advance(milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
}

TEST_F(SourcesTest, ANegativeAnswerIsAskedAgainWhenItsNegativeTtlRunsOut) {
  server_.mode = dns::FakeDnsServer::Mode::kNxDomain;  // SOA MINIMUM 20 s
  start();
  EXPECT_TRUE(first_round_);
  EXPECT_TRUE(endpoints().empty());
  EXPECT_EQ(state(), SourceState::kStale);  // nothing to serve: not what DNS will say
  EXPECT_EQ(stats().endpoints, 0u);
  EXPECT_EQ(stats().updates, 0u);
  EXPECT_EQ(stats().failures, 1u);
  server_.mode = dns::FakeDnsServer::Mode::kAnswer;
  advance(seconds(20) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 1);
  advance(milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
  EXPECT_EQ(state(), SourceState::kSynced);
}

TEST_F(SourcesTest, AFailedRefreshKeepsTheAddressesAndServesStaleAfterExpiry) {
  server_.ttl = 100;
  start();
  server_.mode = dns::FakeDnsServer::Mode::kServFail;
  advance(seconds(90));  // the early refresh fails: the answer stays good until 100 s
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
  EXPECT_EQ(state(), SourceState::kSynced);
  advance(seconds(10) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
  advance(milliseconds(1));  // expired: asked again, served stale
  EXPECT_EQ(server_.queries(), 3);
  EXPECT_EQ(sources_->resolver()->stats().stale_served, 1u);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
  EXPECT_EQ(state(), SourceState::kStale);
  EXPECT_EQ(stats().endpoints, 1u);
  EXPECT_EQ(stats().failures, 1u);
  // The servers answer again: synced.
  server_.mode = dns::FakeDnsServer::Mode::kAnswer;
  advance(seconds(5));
  EXPECT_EQ(server_.queries(), 4);
  EXPECT_EQ(state(), SourceState::kSynced);
}

TEST_F(SourcesTest, AStaticClusterReportsItsEndpointsOnceAndIsSyncedAtOnce) {
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = "web";
  cluster->endpoints = {{net::Address::parse("127.0.0.1:81").value(), 1},
                        {net::Address::parse("127.0.0.2:82").value(), 3}};
  clusters_ = {cluster};
  start();
  EXPECT_TRUE(first_round_);
  EXPECT_EQ(sources_->resolver(), nullptr);  // no DNS cluster: no resolver
  EXPECT_STREQ(sources_->source(0)->kind(), "static");
  EXPECT_EQ(sources_->source(0)->target(), "configuration");
  EXPECT_EQ(state(), SourceState::kSynced);
  EXPECT_EQ(stats().endpoints, 2u);
  EXPECT_EQ(stats().updates, 1u);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"127.0.0.1:81", "127.0.0.2:82"}));

  // A reload with the same list keeps the source; a new list comes from a new one.
  const EndpointSource* before = sources_->source(0);
  auto same = std::make_shared<ClusterConfig>(*cluster);
  same->panic_threshold = 10;
  sources_->set_cluster(0, same);
  EXPECT_EQ(sources_->source(0), before);
  auto changed = std::make_shared<ClusterConfig>(*cluster);
  changed->endpoints.pop_back();
  health_->update_cluster(0, changed, nullptr);
  sources_->set_cluster(0, changed);
  run();
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"127.0.0.1:81"}));
  EXPECT_EQ(stats().endpoints, 1u);
}

TEST_F(SourcesTest, AStaticClusterListingAnAddressTwiceKeepsBothEntries) {
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = "web";
  auto a = net::Address::parse("127.0.0.1:81").value();
  cluster->endpoints = {{a, 1}, {a, 2}};
  clusters_ = {cluster};
  start();
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"127.0.0.1:81", "127.0.0.1:81"}));
  // A reload adding a third entry keeps the two.
  auto more = std::make_shared<ClusterConfig>(*cluster);
  more->endpoints.push_back({net::Address::parse("127.0.0.3:83").value(), 1});
  health_->update_cluster(0, more, nullptr);
  sources_->set_cluster(0, more);
  run();
  EXPECT_EQ(endpoints(),
            (std::vector<std::string>{"127.0.0.1:81", "127.0.0.1:81", "127.0.0.3:83"}));
  EXPECT_EQ((*health_->snapshot(0).endpoints)[1].weight, 2u);
}

TEST_F(SourcesTest, AReloadKeepsTheAnswersWhenTheNamesAreTheSame) {
  server_.ttl = 100;
  start();
  EXPECT_EQ(server_.queries(), 1);
  const EndpointSource* before = sources_->source(0);
  auto same = std::make_shared<ClusterConfig>(*clusters_[0]);
  same->dns_failure_refresh = seconds(7);
  sources_->set_cluster(0, same);
  run();
  EXPECT_EQ(sources_->source(0), before);
  EXPECT_EQ(server_.queries(), 1);
  EXPECT_TRUE(sources_->answered(0));

  // Another name: a new source, which asks at once.
  server_.ipv4 = {0xc0000203};  // 192.0.2.3
  sources_->set_cluster(0, dns_cluster("api", "other.example"));
  EXPECT_FALSE(sources_->answered(0));
  run();
  EXPECT_TRUE(sources_->answered(0));
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(sources_->source(0)->target(), "other.example:8080");
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.3:8080"}));
}

TEST_F(SourcesTest, AnAnswerArrivingAfterItsClusterLeftIsIgnored) {
  clusters_ = {dns_cluster("api", "api.example"), dns_cluster("db", "db.example")};
  start();
  EXPECT_EQ(server_.queries(), 2);
  // Asked again (a new name), then removed before the answer comes back.
  sources_->set_cluster(1, dns_cluster("db", "db2.example"));
  sources_->remove_cluster(1);
  EXPECT_EQ(sources_->source(1), nullptr);
  EXPECT_TRUE(sources_->answered(1));
  run();  // the answer arrives for a source deleted since
  EXPECT_EQ(server_.queries(), 3);
  EXPECT_EQ(endpoints(1), (std::vector<std::string>{"192.0.2.1:8080"}));
  EXPECT_EQ(state(0), SourceState::kSynced);
}

}  // namespace
}  // namespace sluice::discovery
