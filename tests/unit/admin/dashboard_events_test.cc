// The dashboard's event streams on a real AdminServer over loopback, time moved by hand:
// one build per interval whatever the number of streams, a frame of this interval for a
// stream that joins, the bound, a client that leaves, the end on a drain, no builds for
// nobody.
#include "admin/dashboard_events.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "base/clock.h"
#include "event/loop.h"

namespace sluice::admin {
namespace {

class DashboardEventsTest : public ::testing::Test {
 protected:
  DashboardEventsTest() : loop_(clock_), server_(loop_), events_(loop_, config()) {
    events_.set_build([this](std::function<void(std::string)> done) {
      ++builds_;
      done("{\"n\":" + std::to_string(builds_) + "}\n");
    });
    server_.handle("/dashboard/events", [this](const AdminRequest& r, AdminServer::Respond s) {
      events_.subscribe(r, std::move(s));
    });
    auto bound = server_.start(*net::Address::parse("127.0.0.1:0"));
    EXPECT_TRUE(bound.is_ok());
    port_ = bound->port();
  }
  ~DashboardEventsTest() override {
    for (int fd : fds_) ::close(fd);
  }

  static DashboardEventsConfig config() {
    DashboardEventsConfig c;
    c.max_subscribers = 2;
    return c;
  }

  // A client that sent `requests` in one write.
  int connect_and_send(const std::string& requests, int receive_buffer = 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS);
    loop_.run_until_idle();
    EXPECT_EQ(::send(fd, requests.data(), requests.size(), 0),
              static_cast<ssize_t>(requests.size()));
    loop_.run_until_idle();
    fds_.push_back(fd);
    return fd;
  }
  // A client that asked for the stream.
  int subscribe() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS);
    loop_.run_until_idle();
    std::string req = "GET /dashboard/events HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    loop_.run_until_idle();
    fds_.push_back(fd);
    return fd;
  }
  // What the client has received since the last call.
  std::string received(int fd) {
    loop_.run_until_idle();
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, n);
    return out;
  }
  bool closed_by_peer(int fd) {
    loop_.run_until_idle();
    char c;
    return ::recv(fd, &c, 1, 0) == 0;
  }

  static constexpr const char* kHead =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: "
      "no-store\r\nConnection: close\r\n\r\nretry: 2000\n\n";

  ManualClock clock_;
  event::Loop loop_;
  AdminServer server_;
  DashboardEvents events_;
  uint16_t port_ = 0;
  int builds_ = 0;
  std::vector<int> fds_;
};

TEST_F(DashboardEventsTest, OneBuildPerIntervalForEveryStream) {
  int a = subscribe();
  int b = subscribe();
  // The first stream started a build; the second joined within the interval and got its
  // frame without one.
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(received(a), std::string(kHead) + "data: {\"n\":1}\n\n");
  EXPECT_EQ(received(b), std::string(kHead) + "data: {\"n\":1}\n\n");
  clock_.advance(std::chrono::seconds(1));
  EXPECT_EQ(received(a), "data: {\"n\":2}\n\n");
  EXPECT_EQ(received(b), "data: {\"n\":2}\n\n");
  EXPECT_EQ(builds_, 2);
  const DashboardEventStats& s = events_.stats();
  EXPECT_EQ(s.subscribers, 2u);
  EXPECT_EQ(s.accepted, 2u);
  EXPECT_EQ(s.builds, 2u);
  EXPECT_EQ(s.frames_sent, 4u);
  EXPECT_EQ(s.frames_dropped, 0u);
}

TEST_F(DashboardEventsTest, PastTheBoundA503) {
  subscribe();
  subscribe();
  int c = subscribe();
  std::string body =
      "too many event streams open (2, admin.events.max_subscribers); poll GET /dashboard/data "
      "instead\n";
  EXPECT_EQ(received(c),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
            "charset=utf-8\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\nCache-Control: no-store\r\n\r\n" + body);
  EXPECT_EQ(events_.stats().refused_full, 1u);
  EXPECT_EQ(events_.stats().subscribers, 2u);
}

TEST_F(DashboardEventsTest, AClientThatLeavesIsForgottenAndNobodyMeansNoBuilds) {
  int a = subscribe();
  received(a);
  ::close(a);
  std::erase(fds_, a);
  loop_.run_until_idle();
  EXPECT_EQ(events_.stats().subscribers, 0u);
  EXPECT_EQ(events_.stats().ended_client, 1u);
  // Coming back within the interval: the last frame, no build.
  int b = subscribe();
  EXPECT_EQ(received(b), std::string(kHead) + "data: {\"n\":1}\n\n");
  ::close(b);
  std::erase(fds_, b);
  loop_.run_until_idle();
  clock_.advance(std::chrono::seconds(5));
  loop_.run_until_idle();
  EXPECT_EQ(builds_, 1);
}

TEST_F(DashboardEventsTest, ADrainEndsTheStreamsAndRefusesNewOnes) {
  int a = subscribe();
  received(a);
  events_.close_all("draining");
  EXPECT_EQ(received(a), "event: end\ndata: {\"reason\":\"draining\"}\n\n");
  EXPECT_TRUE(closed_by_peer(a));
  int b = subscribe();
  std::string body =
      "sluice is draining: no new event streams; GET /dashboard/data still answers\n";
  EXPECT_EQ(received(b),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
            "charset=utf-8\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\nCache-Control: no-store\r\n\r\n" + body);
  EXPECT_EQ(events_.stats().ended_draining, 1u);
  EXPECT_EQ(events_.stats().refused_draining, 1u);
  EXPECT_EQ(events_.stats().subscribers, 0u);
  clock_.advance(std::chrono::seconds(5));
  loop_.run_until_idle();
  EXPECT_EQ(builds_, 1);
}

TEST_F(DashboardEventsTest, RequestsPipelinedBehindAStreamAreDropped) {
  std::string req = "GET /dashboard/events HTTP/1.1\r\nHost: a\r\n\r\n";
  int a = connect_and_send(req + req + req);
  // One head, one frame, one stream: the requests after the first are not answered.
  EXPECT_EQ(received(a), std::string(kHead) + "data: {\"n\":1}\n\n");
  EXPECT_EQ(events_.stats().subscribers, 1u);
  EXPECT_EQ(events_.stats().accepted, 1u);
  clock_.advance(std::chrono::seconds(1));
  EXPECT_EQ(received(a), "data: {\"n\":2}\n\n");
  ::close(a);
  std::erase(fds_, a);
  loop_.run_until_idle();
  EXPECT_EQ(events_.stats().subscribers, 0u);
  EXPECT_EQ(events_.stats().ended_client, 1u);
  // Its slot is free again: two more streams fit under the bound of two.
  int b = subscribe();
  int c = subscribe();
  EXPECT_EQ(received(b), std::string(kHead) + "data: {\"n\":2}\n\n");
  EXPECT_EQ(received(c), std::string(kHead) + "data: {\"n\":2}\n\n");
  EXPECT_EQ(events_.stats().refused_full, 0u);
}

TEST_F(DashboardEventsTest, ABuildThatNeverEndsHoldsBackAFewIntervalsWithHeartbeats) {
  std::vector<std::function<void(std::string)>> pending;
  events_.set_build([&](std::function<void(std::string)> done) {
    ++builds_;
    pending.push_back(std::move(done));
  });
  int a = subscribe();
  EXPECT_EQ(received(a), kHead);
  EXPECT_EQ(builds_, 1);
  // Every interval without a frame: a comment saying the stream lives. After
  // kStaleBuildIntervals the build is given up on and another starts.
  for (uint32_t i = 1; i <= DashboardEvents::kStaleBuildIntervals; ++i) {
    clock_.advance(std::chrono::seconds(1));
    EXPECT_EQ(received(a), ":\n\n");
    EXPECT_EQ(builds_, i < DashboardEvents::kStaleBuildIntervals ? 1 : 2);
  }
  ASSERT_EQ(pending.size(), 2u);
  pending[1]("{\"n\":2}");
  EXPECT_EQ(received(a), "data: {\"n\":2}\n\n");
  // The build given up on ends after all: its older data is not shown.
  pending[0]("{\"n\":1}");
  EXPECT_EQ(received(a), "");
  // The next interval starts a build at once (the last one is done).
  clock_.advance(std::chrono::seconds(1));
  EXPECT_EQ(received(a), "");
  EXPECT_EQ(builds_, 3);
  EXPECT_EQ(events_.stats().builds, 1u);
}

TEST_F(DashboardEventsTest, AStreamThatFailsDuringAPublishDoesNotMakeTheNextMissIt) {
  std::vector<std::function<void(std::string)>> pending;
  events_.set_build([&](std::function<void(std::string)> done) {
    ++builds_;
    pending.push_back(std::move(done));
  });
  int a = subscribe();
  int b = subscribe();
  ASSERT_EQ(pending.size(), 1u);
  pending[0]("{\"n\":1}");
  EXPECT_EQ(received(a), std::string(kHead) + "data: {\"n\":1}\n\n");
  EXPECT_EQ(received(b), std::string(kHead) + "data: {\"n\":1}\n\n");
  clock_.advance(std::chrono::seconds(1));
  loop_.run_until_idle();
  ASSERT_EQ(pending.size(), 2u);
  // The first client resets its connection; the loop has not seen it when the frame, large
  // enough to be written at once, goes out: the write to it fails inside the publish.
  linger reset{1, 0};
  ::setsockopt(a, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(a);
  std::erase(fds_, a);
  std::string big(40 * 1024, 'x');
  pending[1]("{\"x\":\"" + big + "\"}");
  EXPECT_EQ(events_.stats().subscribers, 1u);
  EXPECT_EQ(events_.stats().ended_client, 1u);
  std::string want = "data: {\"x\":\"" + big + "\"}\n\n";
  std::string got;
  for (int i = 0; i < 1000 && got.size() < want.size(); ++i) got += received(b);
  EXPECT_EQ(got, want);
}

TEST_F(DashboardEventsTest, AClientThatStopsReadingMissesFramesAndIsClosed) {
  std::string big(100 * 1024, 'x');
  events_.set_build([&](std::function<void(std::string)> done) {
    ++builds_;
    done("{\"x\":\"" + big + "\"}");
  });
  int a = connect_and_send("GET /dashboard/events HTTP/1.1\r\nHost: a\r\n\r\n",
                           /*receive_buffer=*/4096);
  EXPECT_EQ(events_.stats().subscribers, 1u);
  // The client never reads: the socket's buffers fill within a few frames, then every frame
  // is missed, and the kMaxMissed-th in a row closes the stream.
  int tick = 0;
  for (; tick < 100 && events_.stats().frames_dropped == 0; ++tick) {
    clock_.advance(std::chrono::seconds(1));
    loop_.run_until_idle();
  }
  ASSERT_EQ(events_.stats().frames_dropped, 1u);
  uint64_t sent = events_.stats().frames_sent;
  for (uint32_t i = 1; i < DashboardEvents::kMaxMissed; ++i) {
    EXPECT_EQ(events_.stats().ended_slow, 0u);
    EXPECT_EQ(events_.stats().subscribers, 1u);
    clock_.advance(std::chrono::seconds(1));
    loop_.run_until_idle();
  }
  const DashboardEventStats& s = events_.stats();
  EXPECT_EQ(s.frames_dropped, DashboardEvents::kMaxMissed);
  EXPECT_EQ(s.frames_sent, sent);
  EXPECT_EQ(s.ended_slow, 1u);
  EXPECT_EQ(s.ended_client, 0u);
  EXPECT_EQ(s.subscribers, 0u);
  // Nobody left: no more builds.
  int builds = builds_;
  clock_.advance(std::chrono::seconds(5));
  loop_.run_until_idle();
  EXPECT_EQ(builds_, builds);
  (void)a;
}

}  // namespace
}  // namespace sluice::admin
