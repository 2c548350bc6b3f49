// The pool's counters against real loopback sockets and a manual clock: a connection the
// upstream closed while idle, one found closed at checkout, a refused connect and a connect
// that times out are each counted once, in the pool and (for a waiting request) in the
// cluster's counters.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "event/loop.h"
#include "net/address.h"
#include "upstream/pool/conn_pool.h"

namespace sluice::upstream::pool {
namespace {

constexpr int kIdle = static_cast<int>(PooledConnection::State::kIdle);

// A TCP socket bound to 127.0.0.1 on a free port, listening with `backlog` unless negative.
struct LocalSocket {
  explicit LocalSocket(int backlog) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    if (backlog >= 0) {
      EXPECT_EQ(::listen(fd, backlog), 0);
    }
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    address = net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&sa), len);
  }
  ~LocalSocket() { ::close(fd); }
  int fd = -1;
  net::Address address;
};

struct Recorder final : PoolCallbacks {
  void on_pool_ready(PooledConnection& c) override { ready = &c; }
  void on_pool_failure(PoolFailure reason, const std::string&) override { failure = reason; }
  PooledConnection* ready = nullptr;
  std::optional<PoolFailure> failure;
};

// Waits (up to 2 s) until the kernel has the upstream's FIN for the pool's one connection.
bool wait_peer_closed(const ConnPool& pool) {
  int fd = -1;
  pool.for_each_connection([&fd](int f, const char*) { fd = f; });
  pollfd p{fd, POLLRDHUP, 0};
  return fd >= 0 && ::poll(&p, 1, 2000) == 1 && (p.revents & POLLRDHUP);
}

class PoolStatsTest : public ::testing::Test {
 protected:
  // Runs the loop until `done` holds: between rounds, waits (up to 200 ms) for one of the
  // pool's sockets to have something to say. At most 50 rounds; loopback needs one or two.
  template <typename Pred>
  bool run_until(const ConnPool& pool, Pred done) {
    for (int i = 0; i < 50; ++i) {
      loop_.run_until_idle();
      if (done()) return true;
      std::vector<pollfd> fds;
      pool.for_each_connection([&fds](int fd, const char*) {
        fds.push_back(pollfd{fd, POLLIN | POLLOUT | POLLRDHUP, 0});
      });
      ::poll(fds.data(), fds.size(), 200);
    }
    return done();
  }

  std::unique_ptr<ConnPool> make_pool(const net::Address& to) {
    auto p = std::make_unique<ConnPool>(loop_, to, PoolConfig{}, net::SocketOptions{}, std::nullopt,
                                        std::chrono::seconds(1));
    p->set_connect_error_counters({&cluster_timeouts_, &cluster_refused_});
    return p;
  }

  // Borrows a new connection through `pool`, has `server` accept it, and gives it back idle.
  int lend_and_return(ConnPool& pool, LocalSocket& server) {
    Recorder r;
    Waiter w(pool, r);
    pool.acquire(w, false);
    EXPECT_TRUE(run_until(pool, [&] { return r.ready != nullptr; }));
    int accepted = ::accept(server.fd, nullptr, nullptr);
    EXPECT_GE(accepted, 0);
    if (r.ready) pool.release(*r.ready, true);
    return accepted;
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  uint64_t cluster_timeouts_ = 0;
  uint64_t cluster_refused_ = 0;
};

TEST_F(PoolStatsTest, UpstreamCloseWhileIdleIsCountedOnce) {
  LocalSocket server(16);
  auto pool = make_pool(server.address);
  int accepted = lend_and_return(*pool, server);
  ASSERT_EQ(pool->stats().state_count[kIdle], 1u);
  ::close(accepted);
  ASSERT_TRUE(wait_peer_closed(*pool));
  EXPECT_TRUE(run_until(*pool, [&] { return pool->stats().state_count[kIdle] == 0; }));
  EXPECT_EQ(pool->stats().closed_by_upstream_while_idle, 1u);
  EXPECT_EQ(pool->stats().stale_at_checkout, 0u);
  EXPECT_EQ(pool->stats().connects, 1u);
}

TEST_F(PoolStatsTest, ConnectionClosedBeforeTheLoopSawItIsStaleAtCheckout) {
  LocalSocket server(16);
  auto pool = make_pool(server.address);
  int accepted = lend_and_return(*pool, server);
  ::close(accepted);
  // The FIN is in the kernel, the loop has not run: the next request finds it at checkout.
  ASSERT_TRUE(wait_peer_closed(*pool));
  Recorder r;
  Waiter w(*pool, r);
  pool->acquire(w, false);
  EXPECT_EQ(pool->stats().stale_at_checkout, 1u);
  EXPECT_EQ(pool->stats().closed_by_upstream_while_idle, 0u);
  EXPECT_EQ(pool->stats().reuses, 0u);
  EXPECT_EQ(pool->stats().connects, 2u);  // a new one for the request
  EXPECT_TRUE(run_until(*pool, [&] { return r.ready != nullptr; }));
  int second = ::accept(server.fd, nullptr, nullptr);
  EXPECT_GE(second, 0);
  pool->release(*r.ready, false);
  ::close(second);
}

TEST_F(PoolStatsTest, RefusedConnectIsCountedInThePoolAndTheCluster) {
  LocalSocket closed_port(-1);  // bound, not listening: connects are refused
  auto pool = make_pool(closed_port.address);
  Recorder r;
  Waiter w(*pool, r);
  pool->acquire(w, false);
  ASSERT_TRUE(run_until(*pool, [&] { return r.failure.has_value(); }));
  EXPECT_EQ(*r.failure, PoolFailure::kConnectFailure);
  EXPECT_EQ(pool->stats().connect_failures, 1u);
  EXPECT_EQ(pool->stats().connect_refused, 1u);
  EXPECT_EQ(pool->stats().connect_timeouts, 0u);
  EXPECT_EQ(cluster_refused_, 1u);
  EXPECT_EQ(cluster_timeouts_, 0u);
}

TEST_F(PoolStatsTest, ConnectTimeoutIsCountedInThePoolAndTheCluster) {
  // A listener whose accept queue is full drops new SYNs: the pool's connect hangs.
  LocalSocket server(0);
  int filler = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_storage ss{};
  std::memcpy(&ss, server.address.sockaddr_ptr(), server.address.length());
  ASSERT_EQ(::connect(filler, reinterpret_cast<sockaddr*>(&ss), server.address.length()), 0);
  auto pool = make_pool(server.address);
  Recorder r;
  Waiter w(*pool, r);
  pool->acquire(w, false);
  loop_.run_until_idle();
  ASSERT_FALSE(r.failure.has_value());
  ASSERT_EQ(r.ready, nullptr) << "the connect was expected to hang";
  clock_.advance(std::chrono::milliseconds(1001));
  loop_.run_until_idle();
  ASSERT_TRUE(r.failure.has_value());
  EXPECT_EQ(*r.failure, PoolFailure::kConnectTimeout);
  EXPECT_EQ(pool->stats().connect_failures, 1u);
  EXPECT_EQ(pool->stats().connect_timeouts, 1u);
  EXPECT_EQ(pool->stats().connect_refused, 0u);
  EXPECT_EQ(cluster_timeouts_, 1u);
  EXPECT_EQ(cluster_refused_, 0u);
  ::close(filler);
}

}  // namespace
}  // namespace sluice::upstream::pool
