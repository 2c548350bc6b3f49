#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "event/loop.h"
#include "net/address.h"
#include "upstream/cluster.h"
#include "upstream/health/health.h"

namespace sluice::upstream {
namespace {

using health::Outcome;

// What the health manager would be told, in order.
class RecordingSink final : public health::OutcomeSink {
 public:
  void report(size_t, size_t endpoint, Outcome outcome) override {
    got.emplace_back(endpoint, outcome);
  }
  std::vector<std::pair<size_t, Outcome>> got;
};

class ClusterReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cc = std::make_shared<ClusterConfig>();
    cc->name = "app";
    cc->endpoints.push_back(EndpointConfig{*net::Address::parse("127.0.0.1:1"), 1, {}});
    cc->endpoints.push_back(EndpointConfig{*net::Address::parse("127.0.0.1:2"), 1, {}});
    cluster_ = std::make_unique<Cluster>(loop_, cc, 1, 0, shared_, &sink_);
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  health::ClusterShared shared_;
  RecordingSink sink_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ClusterReportTest, SuccessesAreNotReportedWhileNothingFailed) {
  cluster_->report(0, Outcome::kSuccess);
  cluster_->report(1, Outcome::kSuccess);
  EXPECT_TRUE(sink_.got.empty());
}

// The health manager sets the streak flag only once it handled the failure: a success that
// comes before that must still reach it, or 500, 200, 500, 500 would read as three in a row.
TEST_F(ClusterReportTest, ASuccessAfterAFailureIsReportedBeforeTheStreakFlagIsSet) {
  cluster_->report(1, Outcome::kError5xx);
  cluster_->report(1, Outcome::kError5xx);
  cluster_->report(1, Outcome::kSuccess);
  cluster_->report(1, Outcome::kSuccess);  // the streak is broken already: not again
  cluster_->report(1, Outcome::kGatewayFailure);
  cluster_->report(0, Outcome::kSuccess);
  cluster_->report(1, Outcome::kSuccess);
  std::vector<std::pair<size_t, Outcome>> want = {{1, Outcome::kError5xx},
                                                  {1, Outcome::kError5xx},
                                                  {1, Outcome::kSuccess},
                                                  {1, Outcome::kGatewayFailure},
                                                  {1, Outcome::kSuccess}};
  EXPECT_EQ(sink_.got, want);
}

// Another worker's failures show in the streak flag: this worker's successes break them.
TEST_F(ClusterReportTest, ASuccessIsReportedWhileTheManagerSaysAStreakRuns) {
  shared_.streak[0].store(true);
  cluster_->report(0, Outcome::kSuccess);
  shared_.streak[0].store(false);
  cluster_->report(0, Outcome::kSuccess);
  std::vector<std::pair<size_t, Outcome>> want = {{0, Outcome::kSuccess}};
  EXPECT_EQ(sink_.got, want);
}

}  // namespace
}  // namespace sluice::upstream
