#include "upstream/health/outlier.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "event/loop.h"
#include "upstream/health/health_manager.h"

namespace sluice::upstream::health {
namespace {

using std::chrono::seconds;

// --- the judgements alone -------------------------------------------------------------

TEST(SuccessRate, EjectsBelowMeanMinusFactorTimesStdev) {
  // Success rates 100, 100, 100, 100, 50: mean 90, population stdev 20, threshold
  // 90 - 1.9 x 20 = 52.
  std::vector<RateSample> samples{{0, 100, 0}, {1, 100, 0}, {2, 100, 0}, {3, 100, 0}, {4, 100, 50}};
  SuccessRateVerdict v = judge_success_rate(samples, SuccessRateEjection{});
  ASSERT_TRUE(v.judged);
  EXPECT_EQ(v.hosts, 5u);
  EXPECT_DOUBLE_EQ(v.mean, 90.0);
  EXPECT_DOUBLE_EQ(v.stdev, 20.0);
  EXPECT_DOUBLE_EQ(v.threshold, 52.0);
  EXPECT_EQ(v.outliers, (std::vector<size_t>{4}));
}

TEST(SuccessRate, TheFactorMovesTheThreshold) {
  std::vector<RateSample> samples{{0, 100, 0}, {1, 100, 0}, {2, 100, 0}, {3, 100, 0}, {4, 100, 50}};
  SuccessRateEjection config;
  config.stdev_factor = 2.5;  // threshold 90 - 50 = 40: 50% is not an outlier
  SuccessRateVerdict v = judge_success_rate(samples, config);
  ASSERT_TRUE(v.judged);
  EXPECT_DOUBLE_EQ(v.threshold, 40.0);
  EXPECT_TRUE(v.outliers.empty());
}

TEST(SuccessRate, OnlyEndpointsWithRequestVolumeCountAndMinimumHostsMustHaveIt) {
  // Endpoint 5 has too few requests: it is neither judged nor part of the statistics.
  std::vector<RateSample> samples{{0, 100, 0}, {1, 100, 0},  {2, 100, 0},
                                  {3, 100, 0}, {4, 100, 50}, {5, 99, 99}};
  SuccessRateVerdict v = judge_success_rate(samples, SuccessRateEjection{});
  EXPECT_EQ(v.hosts, 5u);
  EXPECT_DOUBLE_EQ(v.mean, 90.0);
  EXPECT_EQ(v.outliers, (std::vector<size_t>{4}));

  SuccessRateEjection six;
  six.minimum_hosts = 6;
  v = judge_success_rate(samples, six);
  EXPECT_FALSE(v.judged);
  EXPECT_EQ(v.hosts, 5u);
  EXPECT_TRUE(v.outliers.empty());
}

// Five endpoints each failing a third of their requests, split unevenly by an interval's
// edges: 65.2% is under the threshold of a tiny spread, but 1.2 points from the mean is less
// than one of its 23 requests (4.3 points): chance, not an outlier.
TEST(SuccessRate, AGapSmallerThanOneRequestIsNoOutlier) {
  std::vector<RateSample> samples{
      {0, 23, 8}, {1, 24, 8}, {2, 24, 8}, {3, 24, 8}, {4, 24, 8}};  // 65.2%, then 66.7% x4
  SuccessRateEjection config;
  config.request_volume = 3;
  SuccessRateVerdict v = judge_success_rate(samples, config);
  ASSERT_TRUE(v.judged);
  EXPECT_LT(samples[0].success_percent(), v.threshold);
  EXPECT_TRUE(v.outliers.empty());
}

TEST(SuccessRate, EqualRatesEjectNobody) {
  std::vector<RateSample> samples{{0, 200, 20}, {1, 100, 10}, {2, 300, 30}};
  SuccessRateEjection config;
  config.minimum_hosts = 3;
  SuccessRateVerdict v = judge_success_rate(samples, config);
  ASSERT_TRUE(v.judged);
  EXPECT_DOUBLE_EQ(v.mean, 90.0);
  EXPECT_DOUBLE_EQ(v.stdev, 0.0);
  EXPECT_TRUE(v.outliers.empty());
}

TEST(FailurePercentage, EjectsFromTheThresholdOn) {
  FailurePercentageEjection config;  // 85%, 5 hosts, 50 requests
  std::vector<RateSample> samples{{0, 100, 85}, {1, 100, 84}, {2, 50, 50},
                                  {3, 100, 0},  {4, 100, 0},  {5, 49, 49}};
  EXPECT_EQ(judge_failure_percentage(samples, config), (std::vector<size_t>{0, 2}));
  config.minimum_hosts = 6;  // endpoint 5 lacks request_volume: only 5 hosts qualify
  EXPECT_TRUE(judge_failure_percentage(samples, config).empty());
  config.minimum_hosts = 5;
  config.request_volume = 100;  // now only 0, 1, 3, 4 qualify: 4 hosts
  EXPECT_TRUE(judge_failure_percentage(samples, config).empty());
}

TEST(EjectionTime, GrowsWithEachEjectionUpToTheMaximum) {
  OutlierConfig config;  // 30 s base, 300 s max
  EXPECT_EQ(ejection_time(config, 1), seconds(30));
  EXPECT_EQ(ejection_time(config, 2), seconds(60));
  EXPECT_EQ(ejection_time(config, 9), seconds(270));
  EXPECT_EQ(ejection_time(config, 10), seconds(300));
  EXPECT_EQ(ejection_time(config, 11), seconds(300));
  EXPECT_EQ(ejection_time(config, 1000), seconds(300));
}

TEST(MaxEjected, PercentOfMembersRoundedDownButAtLeastOne) {
  OutlierConfig config;  // 50%
  EXPECT_EQ(max_ejected(config, 1), 1u);
  EXPECT_EQ(max_ejected(config, 3), 1u);
  EXPECT_EQ(max_ejected(config, 4), 2u);
  EXPECT_EQ(max_ejected(config, 5), 2u);
  config.max_ejection_percent = 0;
  EXPECT_EQ(max_ejected(config, 10), 1u);
  config.max_ejection_percent = 100;
  EXPECT_EQ(max_ejected(config, 10), 10u);
}

// --- the HealthManager on a manual clock --------------------------------------------

class OutlierManager : public ::testing::Test {
 protected:
  void start(OutlierConfig outlier, size_t endpoints) {
    auto config = std::make_shared<ClusterConfig>();
    config->name = "api";
    config->panic_threshold = 0;
    for (size_t i = 0; i < endpoints; ++i) {
      config->endpoints.push_back(
          EndpointConfig{*net::Address::parse_ip("127.0.0.1", static_cast<uint16_t>(8001 + i))});
    }
    config->outlier = outlier;
    manager_ = std::make_unique<HealthManager>(
        loop_, std::vector<std::shared_ptr<const ClusterConfig>>{config},
        [this](size_t, std::shared_ptr<const HealthSnapshot>) { ++published_; });
    manager_->start(seconds(1), [] {});
  }
  // What a worker's Cluster::report counts for success-rate and failure-percentage ejection.
  void count(size_t endpoint, uint32_t requests, uint32_t failures) {
    manager_->shared(0).requests[endpoint] += requests;
    manager_->shared(0).failures[endpoint] += failures;
  }
  void report(size_t endpoint, Outcome outcome, int times) {
    for (int i = 0; i < times; ++i) manager_->report(0, endpoint, outcome);
    loop_.run_until_idle();
  }
  void advance(Duration d) {
    clock_.advance(d);
    loop_.run_until_idle();
  }
  bool ejected(size_t endpoint) const {
    return (manager_->snapshot(0).flags[endpoint] & kEjected) != 0;
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  std::unique_ptr<HealthManager> manager_;
  int published_ = 0;
};

TEST_F(OutlierManager, SuccessRateIsJudgedAtTheEndOfEachInterval) {
  OutlierConfig o;
  o.consecutive_5xx = 0;
  o.consecutive_gateway_failure = 0;
  o.success_rate = SuccessRateEjection{};  // 5 hosts, 100 requests, 1.9
  start(o, 5);
  for (size_t e = 0; e < 4; ++e) count(e, 100, 0);
  count(4, 100, 50);
  advance(seconds(10) - std::chrono::milliseconds(1));
  EXPECT_FALSE(ejected(4));
  advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(ejected(4));
  for (size_t e = 0; e < 4; ++e) EXPECT_FALSE(ejected(e));
  EXPECT_EQ(manager_->stats().ejections, 1u);
  // Back after base_ejection_time (30 s) from the ejection.
  advance(seconds(29));
  EXPECT_TRUE(ejected(4));
  advance(seconds(1));
  EXPECT_FALSE(ejected(4));
}

TEST_F(OutlierManager, SuccessRateNeedsMinimumHostsWithRequestVolume) {
  OutlierConfig o;
  o.consecutive_5xx = 0;
  o.consecutive_gateway_failure = 0;
  o.success_rate = SuccessRateEjection{};
  start(o, 5);
  for (size_t e = 0; e < 3; ++e) count(e, 100, 0);
  count(3, 99, 0);  // one request short of request_volume
  count(4, 100, 50);
  advance(seconds(10));
  EXPECT_FALSE(ejected(4));
  // Counts are per interval: the next one starts from zero.
  for (size_t e = 0; e < 4; ++e) count(e, 100, 0);
  count(4, 100, 50);
  advance(seconds(10));
  EXPECT_TRUE(ejected(4));
}

TEST_F(OutlierManager, FailurePercentageEjectsEveryEndpointAtTheThresholdWithinTheLimit) {
  OutlierConfig o;
  o.consecutive_5xx = 0;
  o.consecutive_gateway_failure = 0;
  o.failure_percentage = FailurePercentageEjection{};  // 85%, 5 hosts, 50 requests
  o.max_ejection_percent = 20;                         // 1 of 6
  start(o, 6);
  for (size_t e = 0; e < 4; ++e) count(e, 50, 0);
  count(4, 50, 45);  // 90%
  count(5, 50, 43);  // 86%
  advance(seconds(10));
  EXPECT_TRUE(ejected(4));
  EXPECT_FALSE(ejected(5));  // max_ejection_percent: one of six
  EXPECT_EQ(manager_->stats().ejections, 1u);
  EXPECT_EQ(manager_->stats().ejections_refused_max_percent, 1u);
}

TEST_F(OutlierManager, EjectionTimeGrowsWithEachEjectionAndDecaysInService) {
  OutlierConfig o;  // 5 consecutive 5xx; interval 10 s; 30 s base
  start(o, 3);
  advance(seconds(1));
  report(0, Outcome::kError5xx, 5);
  EXPECT_TRUE(ejected(0));
  EXPECT_EQ(manager_->ejections(0, 0), 1u);
  advance(seconds(29));  // t = 30: the decay at 10, 20, 30 skips an ejected endpoint
  EXPECT_TRUE(ejected(0));
  EXPECT_EQ(manager_->ejections(0, 0), 1u);
  advance(seconds(1));  // t = 31
  EXPECT_FALSE(ejected(0));

  // The second ejection lasts twice as long.
  report(0, Outcome::kError5xx, 5);
  EXPECT_TRUE(ejected(0));
  EXPECT_EQ(manager_->ejections(0, 0), 2u);
  advance(seconds(59));  // t = 90
  EXPECT_TRUE(ejected(0));
  advance(seconds(1));  // t = 91
  EXPECT_FALSE(ejected(0));

  // Each interval in service earns one back.
  advance(seconds(9));  // t = 100
  EXPECT_EQ(manager_->ejections(0, 0), 1u);
  advance(seconds(10));  // t = 110
  EXPECT_EQ(manager_->ejections(0, 0), 0u);
  advance(seconds(10));
  EXPECT_EQ(manager_->ejections(0, 0), 0u);

  // So the next ejection is a first one again.
  report(0, Outcome::kError5xx, 5);
  EXPECT_EQ(manager_->ejections(0, 0), 1u);
  advance(seconds(30));
  EXPECT_FALSE(ejected(0));
}

TEST_F(OutlierManager, ASuccessBreaksTheStreak) {
  OutlierConfig o;
  start(o, 2);
  report(1, Outcome::kError5xx, 4);
  report(1, Outcome::kSuccess, 1);
  report(1, Outcome::kError5xx, 4);
  EXPECT_FALSE(ejected(1));
  report(1, Outcome::kError5xx, 1);
  EXPECT_TRUE(ejected(1));
}

TEST_F(OutlierManager, GatewayFailuresEjectOnTheirOwnStreak) {
  OutlierConfig o;
  o.consecutive_5xx = 0;
  o.consecutive_gateway_failure = 3;
  start(o, 2);
  report(0, Outcome::kError5xx, 10);
  EXPECT_FALSE(ejected(0));
  report(0, Outcome::kGatewayFailure, 3);
  EXPECT_TRUE(ejected(0));
}

TEST_F(OutlierManager, MaxEjectionPercentRefusesPastTheLimit) {
  OutlierConfig o;  // 50%
  start(o, 4);
  report(0, Outcome::kError5xx, 5);
  report(1, Outcome::kError5xx, 5);
  report(2, Outcome::kError5xx, 5);
  EXPECT_TRUE(ejected(0));
  EXPECT_TRUE(ejected(1));
  EXPECT_FALSE(ejected(2));
  EXPECT_EQ(manager_->stats().ejections, 2u);
  EXPECT_EQ(manager_->stats().ejections_refused_max_percent, 1u);
  EXPECT_EQ(manager_->ejections(0, 2), 0u);
  // Once one is back, the next streak may eject another.
  advance(seconds(30));
  EXPECT_FALSE(ejected(0));
  report(2, Outcome::kError5xx, 5);
  EXPECT_TRUE(ejected(2));
}

TEST_F(OutlierManager, MaxEjectedIsAtLeastOneOfASingleEndpoint) {
  OutlierConfig o;
  o.max_ejection_percent = 10;
  start(o, 1);
  report(0, Outcome::kGatewayFailure, 5);
  EXPECT_TRUE(ejected(0));
}

}  // namespace
}  // namespace sluice::upstream::health
