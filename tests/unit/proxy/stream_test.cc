// The HTTP request path on a manual clock: a real HttpProxy, DownstreamConnection, Stream and
// UpstreamExchange on one event loop, the client on one end of a socket pair and the
// upstream a loopback listening socket the test answers by hand. Time moves only with
// clock.advance(), so timeouts and backoffs are checked to the millisecond.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "event/loop.h"
#include "proxy/http/http_proxy.h"
#include "upstream/cluster.h"
#include "upstream/health/health.h"

namespace sluice::proxy::http {
namespace {

using std::chrono::milliseconds;

// Reads what is there (nothing if nothing is) without blocking.
std::string read_available(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    s.remove_prefix(static_cast<size_t>(n));
  }
}

uint64_t zero_random() {
  return 0;  // jitter 0: a backoff is exactly half its base
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream_listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(upstream_listener_, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(upstream_listener_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ASSERT_EQ(::listen(upstream_listener_, 16), 0);
    socklen_t len = sizeof sa;
    ASSERT_EQ(::getsockname(upstream_listener_, reinterpret_cast<sockaddr*>(&sa), &len), 0);
    upstream_address_ = net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), len);
  }

  void TearDown() override {
    proxy_.reset();
    loop_->delete_deferred_now();
    cluster_.reset();
    loop_.reset();
    for (int fd : {client_, upstream_, upstream_listener_}) {
      if (fd >= 0) ::close(fd);
    }
  }

  // Starts the proxy with one route to the upstream socket; `edit` adjusts the config.
  template <typename Edit>
  void start(Edit edit) {
    auto cc = std::make_shared<upstream::ClusterConfig>();
    cc->name = "app";
    cc->endpoints.push_back(upstream::EndpointConfig{upstream_address_, 1, {}});
    auto lc = std::make_shared<ListenerConfig>();
    lc->name = "web";
    lc->protocol = Protocol::kHttp;
    Route r;
    r.name = "all";
    r.cluster = "app";
    lc->http.virtual_hosts.push_back(VirtualHost{"all", {"*"}, {r}});
    edit(*lc, *cc);
    loop_ = std::make_unique<event::Loop>(clock_);
    cluster_ = std::make_unique<upstream::Cluster>(*loop_, cc, 1, 0, shared_, nullptr);
    ClusterMap clusters{{"app", cluster_.get()}};
    proxy_ = std::make_unique<HttpProxy>(*loop_, lc, clusters,
                                         std::make_shared<std::atomic<uint32_t>>(0));
    proxy_->set_random(zero_random);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    client_ = sv[0];
    proxy_->on_accept(net::Fd(sv[1]), net::Address::parse("127.0.0.1:40000").value());
    loop_->run_until_idle();
  }

  // Runs the loop until `done` holds, waiting (bounded) for sockets to become ready.
  template <typename Done>
  bool run_until(Done done) {
    for (int i = 0; i < 200; ++i) {
      loop_->run_until_idle();
      if (done()) return true;
      pollfd p{upstream_ >= 0 ? upstream_ : upstream_listener_, POLLIN, 0};
      ::poll(&p, 1, 5);
    }
    return false;
  }

  // Accepts the upstream connection sluice opened and returns the request bytes it sent
  // once they contain `until`.
  std::string upstream_request(std::string_view until = "\r\n\r\n") {
    std::string got;
    run_until([&] {
      if (upstream_ < 0) upstream_ = ::accept4(upstream_listener_, nullptr, nullptr, SOCK_NONBLOCK);
      if (upstream_ >= 0) got += read_available(upstream_);
      return got.find(until) != std::string::npos;
    });
    return got;
  }

  // The client's bytes once they contain `until` (or what arrived when the wait ran out).
  std::string client_response(std::string_view until) {
    std::string got;
    run_until([&] {
      got += read_available(client_);
      return got.find(until) != std::string::npos;
    });
    return got;
  }

  void advance(Duration d) {
    clock_.advance(d);
    loop_->run_until_idle();
  }

  ManualClock clock_;
  std::unique_ptr<event::Loop> loop_;
  upstream::health::ClusterShared shared_;
  std::unique_ptr<upstream::Cluster> cluster_;
  std::unique_ptr<HttpProxy> proxy_;
  net::Address upstream_address_;
  int upstream_listener_ = -1;
  int upstream_ = -1;
  int client_ = -1;
};

TEST_F(StreamTest, HeaderReadTimeout) {
  start([](ListenerConfig& l, upstream::ClusterConfig&) {
    l.http.header_read_timeout = milliseconds(500);
  });
  write_all(client_, "GET / HTTP/1.1\r\nHost: a\r\n");
  advance(milliseconds(499));
  EXPECT_EQ(read_available(client_), "");
  advance(milliseconds(1));
  std::string r = client_response("\r\n\r\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 408") << r;
  EXPECT_NE(r.find("request head not received in time\n"), std::string::npos) << r;
}

TEST_F(StreamTest, BodyIdleTimeout) {
  start([](ListenerConfig& l, upstream::ClusterConfig&) {
    l.http.body_idle_timeout = milliseconds(300);
  });
  write_all(client_, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12");
  upstream_request();
  advance(milliseconds(200));
  write_all(client_, "34");  // activity moves the deadline
  loop_->run_until_idle();
  advance(milliseconds(299));
  EXPECT_EQ(read_available(client_), "");
  advance(milliseconds(1));
  std::string r = client_response("stalled\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 408") << r;
  EXPECT_NE(r.find("request body stalled\n"), std::string::npos) << r;
}

TEST_F(StreamTest, RouteTimeoutIs504) {
  start([](ListenerConfig& l, upstream::ClusterConfig&) {
    l.http.virtual_hosts[0].routes[0].timeout = milliseconds(1000);
  });
  write_all(client_, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string req = upstream_request();
  EXPECT_EQ(req.substr(0, 24), "GET /slow HTTP/1.1\r\nHost") << req;
  advance(milliseconds(999));
  EXPECT_EQ(read_available(client_), "");
  advance(milliseconds(1));
  std::string r = client_response("in time\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 504") << r;
  EXPECT_NE(r.find("upstream did not answer in time\n"), std::string::npos) << r;
}

TEST_F(StreamTest, RetryFiresExactlyAtItsBackoff) {
  start([](ListenerConfig& l, upstream::ClusterConfig&) {
    RetryPolicy& p = l.http.virtual_hosts[0].routes[0].retry;
    p.on_gateway_error = true;
    p.num_retries = 1;
    p.backoff_base = milliseconds(100);
    p.backoff_max = milliseconds(100);
  });
  write_all(client_, "GET /r HTTP/1.1\r\nHost: a\r\n\r\n");
  upstream_request();
  write_all(upstream_, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  // The 503 is read and its connection closed; the retry waits 50 ms (jitter 0).
  ASSERT_TRUE(run_until([&] {
    char c;
    return ::recv(upstream_, &c, 1, MSG_DONTWAIT) == 0;
  }));
  ::close(upstream_);
  upstream_ = -1;
  advance(milliseconds(49));
  EXPECT_LT(::accept4(upstream_listener_, nullptr, nullptr, SOCK_NONBLOCK), 0)
      << "no retry before its backoff";
  advance(milliseconds(1));
  std::string again = upstream_request();
  EXPECT_EQ(again.substr(0, 18), "GET /r HTTP/1.1\r\nH") << again;
  write_all(upstream_, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  std::string r = client_response("ok");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 200") << r;
}

TEST_F(StreamTest, PipelinedRequestsAnsweredInOrder) {
  start([](ListenerConfig&, upstream::ClusterConfig&) {});
  write_all(client_, "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string first = upstream_request();
  EXPECT_EQ(first.substr(0, 9), "GET /one ") << first;
  EXPECT_EQ(first.find("/two"), std::string::npos) << "one request at a time";
  write_all(upstream_, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
  std::string second;
  run_until([&] {
    second += read_available(upstream_);
    return second.find("\r\n\r\n") != std::string::npos;
  });
  EXPECT_EQ(second.substr(0, 9), "GET /two ") << second;
  write_all(upstream_, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
  std::string r = client_response("two");
  size_t one = r.find("one");
  size_t two = r.find("two");
  ASSERT_NE(one, std::string::npos) << r;
  ASSERT_NE(two, std::string::npos) << r;
  EXPECT_LT(one, two) << r;
}

TEST_F(StreamTest, RecentRequestsKeepTheFailedAndTheSlowWithTheirRecords) {
  start([](ListenerConfig& l, upstream::ClusterConfig&) {
    l.http.virtual_hosts[0].routes[0].timeout = milliseconds(1000);
  });
  // A request answered after 250 ms: among the slowest, not failed.
  write_all(client_, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
  upstream_request();
  advance(milliseconds(250));
  write_all(upstream_, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(client_response("\r\n\r\n").substr(0, 12), "HTTP/1.1 200");
  // One the upstream never answers: 504 after the route's timeout, failed.
  write_all(client_, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  upstream_request("/slow");
  advance(milliseconds(1000));
  EXPECT_EQ(client_response("in time\n").substr(0, 12), "HTTP/1.1 504");

  std::vector<RecentRequest> slow, failed;
  proxy_->report_recent(slow, failed);
  ASSERT_EQ(slow.size(), 2u);
  EXPECT_EQ(slow[0].duration_us, 250'000u);
  EXPECT_FALSE(slow[0].failed);
  EXPECT_EQ(nlohmann::json::parse(slow[0].record)["target"], "/ok");
  EXPECT_EQ(slow[1].duration_us, 1'000'000u);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].duration_us, 1'000'000u);
  EXPECT_TRUE(failed[0].failed);
  auto record = nlohmann::json::parse(failed[0].record);
  EXPECT_EQ(record["target"], "/slow");
  EXPECT_EQ(record["status"], 504);
  EXPECT_EQ(record["flags"], nlohmann::json::array({"upstream_timeout"}));
  EXPECT_EQ(record["timings_us"]["response_done"], 1'000'000);
}

}  // namespace
}  // namespace sluice::proxy::http
