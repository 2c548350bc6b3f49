#include "discovery/dns_discovery.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "../dns/fake_dns_server.h"
#include "event/loop.h"

namespace sluice::discovery {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using upstream::ClusterConfig;

// A strict_dns cluster kept in step with a loopback DNS server, on a manual clock.
class DnsDiscoveryTest : public ::testing::Test {
 protected:
  void start() {
    dns::ResolverConfig rc;
    rc.servers = {server_.address()};
    rc.hosts_file = "";
    rc.attempts = 1;
    auto r = dns::Resolver::create(loop_, rc);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    resolver_ = std::move(r.value());
    auto cluster = std::make_shared<ClusterConfig>();
    cluster->name = "api";
    cluster->type = ClusterConfig::Type::kStrictDns;
    cluster->dns_targets.push_back(upstream::DnsTarget{"api.example", 8080, 1});
    cluster->panic_threshold = 0;
    clusters_ = {cluster};
    health_ = std::make_unique<upstream::health::HealthManager>(
        loop_, clusters_, [](size_t, std::shared_ptr<const upstream::health::HealthSnapshot>) {});
    discovery_ = std::make_unique<DnsDiscovery>(loop_, *resolver_, *health_, clusters_);
    discovery_->start([this] { first_round_ = true; });
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
  std::vector<std::string> endpoints() const {
    const auto& s = health_->snapshot(0);
    std::vector<std::string> out;
    for (size_t i = 0; i < s.flags.size(); ++i) {
      if (!(s.flags[i] & upstream::health::kRemoved)) {
        out.push_back((*s.endpoints)[i].address.to_string());
      }
    }
    return out;
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  dns::FakeDnsServer server_{loop_};
  std::unique_ptr<dns::Resolver> resolver_;
  std::vector<std::shared_ptr<const ClusterConfig>> clusters_;
  std::unique_ptr<upstream::health::HealthManager> health_;
  std::unique_ptr<DnsDiscovery> discovery_;
  bool first_round_ = false;
};

TEST_F(DnsDiscoveryTest, AGoodAnswerIsRefreshedATenthOfItsTtlEarly) {
  server_.ttl = 100;
  start();
  EXPECT_TRUE(first_round_);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
  EXPECT_EQ(server_.queries(), 1);

  server_.ipv4 = {0xc0000202};  // 192.0.2.2
  advance(seconds(90) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 1);
  advance(milliseconds(1));  // 90 s: the servers are asked although the cache has 10 s left
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.2:8080"}));
  // And again 90 s after that answer.
  advance(seconds(90) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
  advance(milliseconds(1));
  EXPECT_EQ(server_.queries(), 3);
}

TEST_F(DnsDiscoveryTest, TheEarlyRefreshIsAtMostThirtySecondsEarly) {
  server_.ttl = 600;
  start();
  advance(seconds(570) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 1);
  advance(milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
}

TEST_F(DnsDiscoveryTest, ANegativeAnswerIsAskedAgainWhenItsNegativeTtlRunsOut) {
  server_.mode = dns::FakeDnsServer::Mode::kNxDomain;  // SOA MINIMUM 20 s
  start();
  EXPECT_TRUE(first_round_);
  EXPECT_TRUE(endpoints().empty());
  server_.mode = dns::FakeDnsServer::Mode::kAnswer;
  advance(seconds(20) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 1);
  advance(milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
}

TEST_F(DnsDiscoveryTest, AFailedRefreshKeepsTheAddressesAndServesStaleAfterExpiry) {
  server_.ttl = 100;
  start();
  server_.mode = dns::FakeDnsServer::Mode::kServFail;
  advance(seconds(90));  // the early refresh fails: the answer stays good until 100 s
  EXPECT_EQ(server_.queries(), 2);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
  advance(seconds(10) - milliseconds(1));
  EXPECT_EQ(server_.queries(), 2);
  advance(milliseconds(1));  // expired: asked again, served stale
  EXPECT_EQ(server_.queries(), 3);
  EXPECT_EQ(resolver_->stats().stale_served, 1u);
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"192.0.2.1:8080"}));
}

}  // namespace
}  // namespace sluice::discovery
