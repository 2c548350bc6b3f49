#include "upstream/pool/conn_pool.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

#include "event/loop.h"
#include "net/listener.h"
#include "net/socket.h"

namespace sluice::upstream::pool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using State = PooledConnection::State;

// A request's side of the pool: what it was lent, or why not.
class Borrower final : public PoolCallbacks {
 public:
  void on_pool_ready(PooledConnection& conn) override {
    ready = &conn;
    ++ready_count;
  }
  void on_pool_failure(PoolFailure reason, const std::string& text) override {
    failure = reason;
    detail = text;
  }
  PooledConnection* ready = nullptr;
  int ready_count = 0;
  std::optional<PoolFailure> failure;
  std::string detail;
};

// A pool on a manual clock, whose endpoint is a listening socket on loopback. The upstream
// never answers; it only accepts, and closes when told.
class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fd = net::bind_listener(*net::Address::parse("127.0.0.1:0"), 64, net::SocketOptions{},
                                 /*reuse_port=*/false);
    ASSERT_TRUE(fd.is_ok()) << fd.status().message();
    listen_fd_ = std::move(fd.value());
    auto local = net::local_address(listen_fd_.get());
    ASSERT_TRUE(local.is_ok());
    endpoint_ = local.value();
  }
  void make_pool(const PoolConfig& config) {
    pool_.emplace(loop_, endpoint_, config, net::SocketOptions{}, std::nullopt, seconds(5));
  }
  // Runs what is ready, and accepts what reached the upstream (so it can close them).
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
  uint64_t in_state(State s) const { return pool_->stats().state_count[static_cast<int>(s)]; }
  size_t open_connections() const {
    size_t n = 0;
    pool_->for_each_connection([&](int, const char*) { ++n; });
    return n;
  }
  // Borrows a connection for `b` through `w` and runs until it is lent.
  PooledConnection& borrow(Waiter& w, Borrower& b) {
    pool_->acquire(w, false);
    run();
    EXPECT_NE(b.ready, nullptr);
    return *b.ready;
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  net::Fd listen_fd_;
  net::Address endpoint_;
  std::vector<net::Fd> accepted_;
  std::optional<ConnPool> pool_;
};

TEST_F(PoolTest, LendsANewConnectionThenReusesItOnceReleased) {
  make_pool(PoolConfig{});
  Borrower b1;
  Waiter w1(*pool_, b1);
  pool_->acquire(w1, false);
  run();
  ASSERT_NE(b1.ready, nullptr);
  EXPECT_EQ(b1.ready->state(), State::kBusy);
  EXPECT_EQ(b1.ready->requests(), 1u);
  EXPECT_FALSE(b1.ready->reused());
  EXPECT_EQ(b1.ready->peer(), endpoint_);
  EXPECT_EQ(in_state(State::kBusy), 1u);
  EXPECT_EQ(in_state(State::kConnecting), 0u);
  EXPECT_EQ(pool_->stats().connects, 1u);
  EXPECT_EQ(accepted_.size(), 1u);
  const uint64_t id = b1.ready->id();

  pool_->release(*b1.ready, true);
  run();
  EXPECT_EQ(in_state(State::kIdle), 1u);
  EXPECT_EQ(in_state(State::kBusy), 0u);

  Borrower b2;
  Waiter w2(*pool_, b2);
  PooledConnection& again = borrow(w2, b2);
  EXPECT_EQ(again.id(), id);
  EXPECT_TRUE(again.reused());
  EXPECT_EQ(again.requests(), 2u);
  EXPECT_EQ(pool_->stats().reuses, 1u);
  EXPECT_EQ(pool_->stats().connects, 1u);
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(in_state(State::kBusy), 1u);
}

TEST_F(PoolTest, AFreshAcquireOpensANewConnectionBesideAnIdleOne) {
  make_pool(PoolConfig{});
  Borrower b1;
  Waiter w1(*pool_, b1);
  pool_->release(borrow(w1, b1), true);
  run();
  Borrower b2;
  Waiter w2(*pool_, b2);
  pool_->acquire(w2, /*fresh=*/true);
  run();
  ASSERT_NE(b2.ready, nullptr);
  EXPECT_NE(b2.ready->id(), b1.ready->id());
  EXPECT_EQ(pool_->stats().connects, 2u);
  EXPECT_EQ(in_state(State::kIdle), 1u);
  EXPECT_EQ(in_state(State::kBusy), 1u);
}

TEST_F(PoolTest, AnIdleConnectionClosesAfterIdleTimeout) {
  PoolConfig config;
  config.idle_timeout = seconds(60);
  make_pool(config);
  Borrower b;
  Waiter w(*pool_, b);
  pool_->release(borrow(w, b), true);
  run();
  advance(seconds(59) + milliseconds(999));
  EXPECT_EQ(in_state(State::kIdle), 1u);
  EXPECT_EQ(open_connections(), 1u);
  advance(milliseconds(1));
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(in_state(State::kClosed), 1u);
  EXPECT_EQ(open_connections(), 0u);
}

TEST_F(PoolTest, ReuseRestartsTheIdleTimeout) {
  PoolConfig config;
  config.idle_timeout = seconds(60);
  make_pool(config);
  Borrower b1;
  Waiter w1(*pool_, b1);
  pool_->release(borrow(w1, b1), true);
  run();
  advance(seconds(50));
  Borrower b2;
  Waiter w2(*pool_, b2);
  pool_->release(borrow(w2, b2), true);
  run();
  advance(seconds(50));  // 100 s after the first release, 50 s after the second
  EXPECT_EQ(in_state(State::kIdle), 1u);
  advance(seconds(10));
  EXPECT_EQ(in_state(State::kIdle), 0u);
}

TEST_F(PoolTest, MaxLifetimeClosesAnIdleConnectionInItsLastTenth) {
  PoolConfig config;
  config.idle_timeout = seconds(3600);
  config.max_lifetime = seconds(100);
  make_pool(config);
  Borrower b;
  Waiter w(*pool_, b);
  pool_->release(borrow(w, b), true);
  run();
  // Retired up to 10% early, at random, so that connections opened together spread out.
  advance(seconds(90));
  EXPECT_EQ(in_state(State::kIdle), 1u);
  advance(seconds(10));
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(open_connections(), 0u);
}

TEST_F(PoolTest, ABusyConnectionPastItsLifetimeClosesWhenReleased) {
  PoolConfig config;
  config.idle_timeout = seconds(3600);
  config.max_lifetime = seconds(100);
  make_pool(config);
  Borrower b;
  Waiter w(*pool_, b);
  PooledConnection& c = borrow(w, b);
  advance(seconds(100));
  EXPECT_EQ(c.state(), State::kBusy);  // a request in flight is never cut
  pool_->release(c, true);
  run();
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(in_state(State::kBusy), 0u);
  EXPECT_EQ(open_connections(), 0u);
}

TEST_F(PoolTest, ALearnedKeepAliveTimeoutRetiresTheConnectionBeforeTheUpstreamDoes) {
  PoolConfig config;
  config.idle_timeout = seconds(3600);
  make_pool(config);
  Borrower b;
  Waiter w(*pool_, b);
  PooledConnection& c = borrow(w, b);
  c.learn_keepalive_timeout(seconds(10));  // margin max(200 ms, 1 s): retired at 9 s
  pool_->release(c, true);
  run();
  advance(seconds(9) - milliseconds(1));
  EXPECT_EQ(in_state(State::kIdle), 1u);
  advance(milliseconds(1));
  EXPECT_EQ(in_state(State::kIdle), 0u);
}

TEST_F(PoolTest, MaxRequestsPerConnectionRetiresIt) {
  PoolConfig config;
  config.max_requests_per_connection = 2;
  make_pool(config);
  Borrower b1;
  Waiter w1(*pool_, b1);
  pool_->release(borrow(w1, b1), true);
  run();
  Borrower b2;
  Waiter w2(*pool_, b2);
  PooledConnection& c = borrow(w2, b2);
  EXPECT_EQ(c.requests(), 2u);
  pool_->release(c, true);
  run();
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(open_connections(), 0u);
}

TEST_F(PoolTest, AQueuedRequestFailsAfterPendingTimeout) {
  PoolConfig config;
  config.max_connections = 1;
  config.pending_timeout = seconds(5);
  make_pool(config);
  Borrower b1;
  Waiter w1(*pool_, b1);
  borrow(w1, b1);
  Borrower b2;
  Waiter w2(*pool_, b2);
  pool_->acquire(w2, false);
  run();
  EXPECT_EQ(b2.ready, nullptr);
  EXPECT_FALSE(b2.failure.has_value());
  advance(seconds(5) - milliseconds(1));
  EXPECT_FALSE(b2.failure.has_value());
  advance(milliseconds(1));
  ASSERT_TRUE(b2.failure.has_value());
  EXPECT_EQ(*b2.failure, PoolFailure::kPendingTimeout);
  EXPECT_EQ(b2.detail, "no connection to " + endpoint_.to_string() + " became free within 5s");
  EXPECT_EQ(pool_->stats().pending_timeouts, 1u);
  EXPECT_EQ(b2.ready, nullptr);
}

TEST_F(PoolTest, AReleasedConnectionGoesToTheQueuedRequest) {
  PoolConfig config;
  config.max_connections = 1;
  config.pending_timeout = seconds(5);
  make_pool(config);
  Borrower b1;
  Waiter w1(*pool_, b1);
  PooledConnection& c = borrow(w1, b1);
  Borrower b2;
  Waiter w2(*pool_, b2);
  pool_->acquire(w2, false);
  run();
  advance(seconds(4));
  pool_->release(c, true);
  run();
  ASSERT_EQ(b2.ready, &c);
  EXPECT_EQ(c.state(), State::kBusy);
  EXPECT_EQ(c.requests(), 2u);
  advance(seconds(10));  // its pending timer was cancelled
  EXPECT_FALSE(b2.failure.has_value());
  EXPECT_EQ(pool_->stats().pending_timeouts, 0u);
}

TEST_F(PoolTest, ACancelledWaiterLeavesTheQueue) {
  PoolConfig config;
  config.max_connections = 1;
  make_pool(config);
  Borrower b1;
  Waiter w1(*pool_, b1);
  PooledConnection& c = borrow(w1, b1);
  Borrower b2;
  Waiter w2(*pool_, b2);
  pool_->acquire(w2, false);
  w2.cancel();
  pool_->release(c, true);
  run();
  EXPECT_EQ(b2.ready, nullptr);
  EXPECT_EQ(in_state(State::kIdle), 1u);
  advance(seconds(10));
  EXPECT_FALSE(b2.failure.has_value());
}

TEST_F(PoolTest, PastMaxPendingARequestOverflowsAtOnce) {
  PoolConfig config;
  config.max_connections = 1;
  config.max_pending = 1;
  make_pool(config);
  Borrower b1, b2, b3;
  Waiter w1(*pool_, b1), w2(*pool_, b2), w3(*pool_, b3);
  borrow(w1, b1);
  pool_->acquire(w2, false);
  pool_->acquire(w3, false);
  ASSERT_TRUE(b3.failure.has_value());
  EXPECT_EQ(*b3.failure, PoolFailure::kOverflow);
  EXPECT_EQ(b3.detail, "1 connections to " + endpoint_.to_string() + " busy and 1 requests queued");
  EXPECT_EQ(pool_->stats().overflows, 1u);
  EXPECT_FALSE(b2.failure.has_value());
}

TEST_F(PoolTest, AnUpstreamCloseWhileIdleRemovesTheConnection) {
  make_pool(PoolConfig{});
  Borrower b;
  Waiter w(*pool_, b);
  pool_->release(borrow(w, b), true);
  run();
  ASSERT_EQ(accepted_.size(), 1u);
  accepted_.clear();  // the upstream closes its side
  run();
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(pool_->stats().closed_by_upstream_while_idle, 1u);
  EXPECT_EQ(open_connections(), 0u);
  // The next request gets a new connection.
  Borrower b2;
  Waiter w2(*pool_, b2);
  borrow(w2, b2);
  EXPECT_EQ(pool_->stats().connects, 2u);
  EXPECT_EQ(pool_->stats().reuses, 0u);
}

TEST_F(PoolTest, ACloseNotYetSeenIsFoundByALookUnlessTheRequestCanBeResent) {
  make_pool(PoolConfig{});
  auto idle_then_closed_unseen = [&] {
    Borrower b;
    Waiter w(*pool_, b);
    pool_->release(borrow(w, b), true);
    run();
    EXPECT_EQ(accepted_.size(), 1u);
    accepted_.clear();  // the upstream closes its side; the loop does not run
    return b.ready->id();
  };

  // A request that could go again on a new connection is lent the idle one without a look
  // (the stale-connection resend answers the close when the request meets it).
  const uint64_t id = idle_then_closed_unseen();
  Borrower resendable;
  Waiter w1(*pool_, resendable);
  pool_->acquire(w1, false, /*resendable=*/true);
  ASSERT_NE(resendable.ready, nullptr);
  EXPECT_EQ(resendable.ready->id(), id);
  EXPECT_EQ(pool_->stats().stale_at_checkout, 0u);
  pool_->release(*resendable.ready, false);
  run();

  // One that must not be sent twice gets its socket looked at: the FIN is found, and a new
  // connection opened for it.
  const uint64_t id2 = idle_then_closed_unseen();
  Borrower once;
  Waiter w3(*pool_, once);
  pool_->acquire(w3, false);
  EXPECT_EQ(pool_->stats().stale_at_checkout, 1u);
  run();
  ASSERT_NE(once.ready, nullptr);
  EXPECT_NE(once.ready->id(), id2);
  EXPECT_EQ(pool_->stats().connects, 3u);
}

TEST_F(PoolTest, DrainClosesIdleConnectionsAndBusyOnesAfterTheirRequest) {
  make_pool(PoolConfig{});
  Borrower b1, b2;
  Waiter w1(*pool_, b1), w2(*pool_, b2);
  PooledConnection& busy = borrow(w1, b1);
  pool_->acquire(w2, /*fresh=*/true);
  run();
  pool_->release(*b2.ready, true);
  run();
  EXPECT_EQ(in_state(State::kIdle), 1u);
  EXPECT_EQ(in_state(State::kBusy), 1u);

  pool_->drain();
  EXPECT_EQ(in_state(State::kIdle), 0u);
  EXPECT_EQ(in_state(State::kDraining), 1u);
  EXPECT_EQ(busy.state(), State::kDraining);
  pool_->release(busy, true);
  run();
  EXPECT_EQ(in_state(State::kDraining), 0u);
  EXPECT_EQ(open_connections(), 0u);
}

TEST_F(PoolTest, MinIdleOpensConnectionsAheadOfDemandAndReplacesClosedOnes) {
  PoolConfig config;
  config.min_idle = 2;
  config.idle_timeout = seconds(60);
  make_pool(config);
  pool_->warm_up();
  run();
  EXPECT_EQ(in_state(State::kIdle), 2u);
  EXPECT_EQ(pool_->stats().connects, 2u);
  // Idle ones that time out are replaced by new ones.
  advance(seconds(60));
  EXPECT_EQ(in_state(State::kIdle), 2u);
  EXPECT_EQ(pool_->stats().connects, 4u);
  // A request takes a warm one.
  Borrower b;
  Waiter w(*pool_, b);
  PooledConnection& c = borrow(w, b);
  EXPECT_TRUE(c.warm());
  EXPECT_EQ(pool_->stats().reuses, 1u);
  pool_->set_warm_up(false);
  pool_->drain();
  EXPECT_EQ(in_state(State::kIdle), 0u);
}

// An upstream whose accept queue is full drops new SYNs: the connect never completes.
TEST(PoolConnectTimeout, AConnectThatNeverCompletesFailsAfterConnectTimeout) {
  ManualClock clock;
  event::Loop loop(clock);
  auto fd = net::bind_listener(*net::Address::parse("127.0.0.1:0"), /*backlog=*/0,
                               net::SocketOptions{}, /*reuse_port=*/false);
  ASSERT_TRUE(fd.is_ok()) << fd.status().message();
  net::Address endpoint = net::local_address(fd.value().get()).value();
  PoolConfig config;
  ConnPool pool(loop, endpoint, config, net::SocketOptions{}, std::nullopt, seconds(5));
  // The first connection fills the accept queue (never accepted).
  Borrower b1;
  Waiter w1(pool, b1);
  pool.acquire(w1, false);
  loop.run_until_idle();
  ASSERT_NE(b1.ready, nullptr);

  Borrower b2;
  Waiter w2(pool, b2);
  pool.acquire(w2, /*fresh=*/true);
  loop.run_until_idle();
  EXPECT_EQ(pool.stats().state_count[static_cast<int>(State::kConnecting)], 1u);
  clock.advance(seconds(5) - milliseconds(1));
  loop.run_until_idle();
  EXPECT_FALSE(b2.failure.has_value());
  clock.advance(milliseconds(1));
  loop.run_until_idle();
  ASSERT_TRUE(b2.failure.has_value());
  EXPECT_EQ(*b2.failure, PoolFailure::kConnectTimeout);
  EXPECT_EQ(b2.detail, "upstream connect error: timed out after 5s (" + endpoint.to_string() + ")");
  EXPECT_EQ(b2.ready, nullptr);
  EXPECT_EQ(pool.stats().connect_failures, 1u);
  EXPECT_EQ(pool.stats().state_count[static_cast<int>(State::kConnecting)], 0u);
}

TEST(PoolConnectFailure, ARefusedConnectFailsTheRequest) {
  ManualClock clock;
  event::Loop loop(clock);
  // A port nobody listens on: bind one, note it, close it.
  net::Address endpoint;
  {
    auto fd = net::bind_listener(*net::Address::parse("127.0.0.1:0"), 1, net::SocketOptions{},
                                 /*reuse_port=*/false);
    ASSERT_TRUE(fd.is_ok());
    endpoint = net::local_address(fd.value().get()).value();
  }
  ConnPool pool(loop, endpoint, PoolConfig{}, net::SocketOptions{}, std::nullopt, seconds(5));
  Borrower b;
  Waiter w(pool, b);
  pool.acquire(w, false);
  loop.run_until_idle();
  ASSERT_TRUE(b.failure.has_value());
  EXPECT_EQ(*b.failure, PoolFailure::kConnectFailure);
  EXPECT_EQ(b.detail, "upstream connect error: connection refused (" + endpoint.to_string() + ")");
  EXPECT_EQ(pool.stats().connect_failures, 1u);
}

}  // namespace
}  // namespace sluice::upstream::pool
