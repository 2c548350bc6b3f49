#include "upstream/health/health_checker.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "event/loop.h"
#include "net/listener.h"
#include "net/socket.h"
#include "upstream/health/health_manager.h"

namespace sluice::upstream::health {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct CheckResult {
  bool passed;
  std::string detail;
};

// Active checks on a manual clock against a loopback listener the test controls.
class ActiveCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listen(*net::Address::parse("127.0.0.1:0"));
    endpoint_ = net::local_address(listen_fd_.get()).value();
    config_.interval = seconds(5);
    config_.jitter = Duration(0);
    config_.timeout = seconds(1);
  }
  void listen(const net::Address& at) {
    auto fd = net::bind_listener(at, 16, net::SocketOptions{}, /*reuse_port=*/false);
    ASSERT_TRUE(fd.is_ok()) << fd.status().message();
    listen_fd_ = std::move(fd.value());
  }
  void make_checker() {
    checker_ = std::make_unique<HealthChecker>(loop_, config_, "api", endpoint_, std::nullopt,
                                               [this](bool passed, const std::string& detail) {
                                                 results_.push_back({passed, detail});
                                               });
  }
  void run() {
    loop_.run_until_idle();
    for (;;) {
      int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      accepted_.emplace_back(fd);
    }
  }
  void advance(Duration d) {
    clock_.advance(d);
    run();
  }
  // What the check sent on the last accepted connection.
  std::string request() {
    char buf[1024];
    ssize_t n = ::recv(accepted_.back().get(), buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
  void respond(std::string_view bytes) {
    ASSERT_EQ(::send(accepted_.back().get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    run();
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  net::Fd listen_fd_;
  net::Address endpoint_;
  std::vector<net::Fd> accepted_;
  HealthCheckConfig config_;
  std::unique_ptr<HealthChecker> checker_;
  std::vector<CheckResult> results_;
};

TEST_F(ActiveCheckTest, TcpCheckPassesOnConnectAndRunsEveryInterval) {
  config_.type = HealthCheckConfig::Type::kTcp;
  make_checker();
  checker_->start();
  run();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_TRUE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "connected");
  advance(seconds(5) - milliseconds(1));
  EXPECT_EQ(results_.size(), 1u);
  advance(milliseconds(1));
  EXPECT_EQ(results_.size(), 2u);
  EXPECT_EQ(accepted_.size(), 2u);  // a new connection per check
}

TEST_F(ActiveCheckTest, TcpCheckFailsWhenRefused) {
  config_.type = HealthCheckConfig::Type::kTcp;
  listen_fd_.reset();
  make_checker();
  checker_->start();
  run();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "connection refused");
}

TEST_F(ActiveCheckTest, HttpCheckSendsItsRequestAndPassesOnAnExpectedStatus) {
  config_.type = HealthCheckConfig::Type::kHttp;
  config_.http.path = "/healthz";
  make_checker();
  checker_->start();
  run();
  ASSERT_EQ(accepted_.size(), 1u);
  EXPECT_EQ(request(),
            "GET /healthz HTTP/1.1\r\nHost: api\r\nUser-Agent: sluice-health\r\n"
            "Connection: close\r\n\r\n");
  EXPECT_TRUE(results_.empty());
  respond("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_TRUE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "status 204");
}

TEST_F(ActiveCheckTest, HttpCheckFailsOnAnUnexpectedStatus) {
  config_.type = HealthCheckConfig::Type::kHttp;
  make_checker();
  checker_->start();
  run();
  respond("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "status 503");
}

TEST_F(ActiveCheckTest, AnUnansweredCheckTimesOutAfterTimeoutAndTheNextRunsAnIntervalLater) {
  config_.type = HealthCheckConfig::Type::kHttp;
  make_checker();
  checker_->start();
  run();
  ASSERT_EQ(accepted_.size(), 1u);
  advance(seconds(1) - milliseconds(1));
  EXPECT_TRUE(results_.empty());
  advance(milliseconds(1));
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "timed out after 1s");
  // The next check: interval after the end of this one.
  advance(seconds(5) - milliseconds(1));
  EXPECT_EQ(accepted_.size(), 1u);
  advance(milliseconds(1));
  EXPECT_EQ(accepted_.size(), 2u);
}

TEST_F(ActiveCheckTest, TheFirstCheckStartsWithinOneJitter) {
  config_.type = HealthCheckConfig::Type::kTcp;
  config_.jitter = milliseconds(500);
  make_checker();
  checker_->start();
  run();
  size_t before = results_.size();  // 0, or 1 if the jitter drawn was 0
  advance(milliseconds(500));
  EXPECT_EQ(results_.size(), 1u);
  EXPECT_LE(before, 1u);
}

TEST_F(ActiveCheckTest, GrpcCheckOpensWithTheHttp2PrefaceAndFailsOnAnHttp1Answer) {
  config_.type = HealthCheckConfig::Type::kGrpc;
  make_checker();
  checker_->start();
  run();
  ASSERT_EQ(accepted_.size(), 1u);
  // RFC 9113 §3.4: prior knowledge; the preface, then frames (SETTINGS first).
  std::string sent = request();
  ASSERT_GE(sent.size(), 24u + 9u);
  EXPECT_EQ(sent.substr(0, 24), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_EQ(static_cast<uint8_t>(sent[24 + 3]), 0x4);  // a SETTINGS frame
  EXPECT_TRUE(results_.empty());
  respond("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "no HTTP/2: the upstream answered in HTTP/1, not HTTP/2");
}

TEST_F(ActiveCheckTest, AnUnansweredGrpcCheckTimesOut) {
  config_.type = HealthCheckConfig::Type::kGrpc;
  config_.timeout = milliseconds(250);
  make_checker();
  checker_->start();
  run();
  ASSERT_EQ(accepted_.size(), 1u);
  advance(milliseconds(249));
  EXPECT_TRUE(results_.empty());
  advance(milliseconds(1));
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "timed out after 250ms");
  advance(seconds(5));
  EXPECT_EQ(accepted_.size(), 2u);  // the next check, on a new connection
}

TEST(HealthCheckConfigTest, GrpcKeys) {
  auto issues = [](const HealthCheckConfig& c) {
    std::vector<std::string> out;
    for (const auto& i : c.validate()) out.push_back(i.path + ": " + i.message);
    return out;
  };
  HealthCheckConfig c;
  c.type = HealthCheckConfig::Type::kGrpc;
  EXPECT_TRUE(issues(c).empty());
  c.grpc.service = "my.package.Orders";
  c.grpc.authority = "orders.internal:50051";
  EXPECT_TRUE(issues(c).empty());
  c.grpc.authority = "[::1]:50051";
  EXPECT_TRUE(issues(c).empty());
  c.grpc.authority = "user@host";
  EXPECT_EQ(issues(c), std::vector<std::string>{"authority: expected host or host:port without "
                                                "spaces, '/', '@' or control characters"});
  c.grpc.authority = "";
  c.grpc.service = "a\nb";
  EXPECT_EQ(issues(c), std::vector<std::string>{
                           "service: expected a name of at most 1024 bytes without control "
                           "characters"});
  c.grpc.service = std::string(1025, 's');
  EXPECT_EQ(issues(c).size(), 1u);
  // Only a gRPC check takes them.
  c.grpc.service = "x";
  c.grpc.authority = "y";
  c.type = HealthCheckConfig::Type::kHttp;
  EXPECT_EQ(issues(c), (std::vector<std::string>{"service: only for type: grpc",
                                                 "authority: only for type: grpc"}));
  c.type = HealthCheckConfig::Type::kTcp;
  EXPECT_EQ(issues(c), (std::vector<std::string>{"service: only for type: grpc",
                                                 "authority: only for type: grpc"}));
}

// The HealthManager's thresholds over the checker's answers.
TEST_F(ActiveCheckTest, TheFirstAnswerDecidesThenTheThresholdsApply) {
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = "api";
  cluster->panic_threshold = 0;
  cluster->endpoints.push_back(EndpointConfig{endpoint_});
  cluster->health_check = config_;
  cluster->health_check.type = HealthCheckConfig::Type::kTcp;
  cluster->health_check.healthy_threshold = 2;
  cluster->health_check.unhealthy_threshold = 3;
  HealthManager manager(loop_, {cluster}, [](size_t, std::shared_ptr<const HealthSnapshot>) {});
  auto flags = [&] { return manager.snapshot(0).flags[0]; };
  EXPECT_EQ(flags(), kFailedActiveCheck);  // not initially_healthy: out until it answers
  bool first_round = false;
  manager.start(seconds(10), [&] { first_round = true; });
  run();
  EXPECT_TRUE(first_round);
  EXPECT_EQ(flags(), 0);

  listen_fd_.reset();  // the endpoint goes away: three failed checks make it unhealthy
  advance(seconds(5));
  advance(seconds(5));
  EXPECT_EQ(flags(), 0);
  EXPECT_EQ(manager.stats().active_check_failures, 2u);
  advance(seconds(5));
  EXPECT_EQ(flags(), kFailedActiveCheck);

  listen(endpoint_);  // back: two passing checks make it healthy again
  advance(seconds(5));
  EXPECT_EQ(flags(), kFailedActiveCheck);
  advance(seconds(5));
  EXPECT_EQ(flags(), 0);
  manager.stop();
}

}  // namespace
}  // namespace sluice::upstream::health
