// UpstreamSocketPool on loopback sockets and a manual clock: a socket given back is lent
// again only after its quarantine, connected to the new peer and reporting to its new user;
// what the last session left unread never reaches the next; a socket with an error, one the
// session does not give for keeping, and those of a stopped pool are closed; kept sockets go
// after a second unused.
#include "proxy/udp/socket_pool.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "base/clock.h"
#include "proxy/udp/datagram_socket.h"

namespace sluice::proxy::udp {
namespace {

using std::chrono::milliseconds;

// A peer: a bound loopback socket.
struct Peer {
  Peer() : fd(std::move(*bind_udp_socket(*net::Address::parse("127.0.0.1:0")))) {}
  net::Address address() const { return *net::local_address(fd.get()); }
  void send_to(const net::Address& to, const std::string& data) const {
    ASSERT_EQ(::sendto(fd.get(), data.data(), data.size(), 0, to.sockaddr_ptr(), to.length()),
              static_cast<ssize_t>(data.size()));
  }
  // The next datagram within 2 s, or "" (a test bound, not a synchronisation).
  std::string receive() const {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return "";
    char buf[2048];
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
  }
  net::Fd fd;
};

// A session's side: reads what its socket reports, if asked to.
struct User final : event::IoHandler {
  void on_io(uint32_t) override {
    ++reports;
    if (!read) return;
    char buf[2048];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0) {
      got.emplace_back(buf, static_cast<size_t>(n));
    }
  }
  int fd = -1;
  bool read = true;
  int reports = 0;
  std::vector<std::string> got;
};

net::Address local_of(const UpstreamSocket& s) {
  return *net::local_address(s.fd());
}

net::Address peer_of(const UpstreamSocket& s) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  EXPECT_EQ(::getpeername(s.fd(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  return net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&a), len);
}

class SocketPoolTest : public ::testing::Test {
 protected:
  // Moves time and runs the loop: two iterations at least, so that the previous one began
  // after the move too.
  void advance(Duration d) {
    clock.advance(d);
    loop.run_until_idle();
    loop.run_until_idle();
  }
  ManualClock clock;
  event::Loop loop{clock};
  UpstreamSocketPool pool{loop};
};

TEST_F(SocketPoolTest, AGivenBackSocketServesTheNextSessionAfterItsQuarantine) {
  Peer a, b;
  User first;
  auto s = pool.connect(a.address(), std::nullopt, &first);
  ASSERT_TRUE(static_cast<bool>(s));
  int fd = (*s)->fd();
  first.fd = fd;
  net::Address old_local = local_of(**s);
  EXPECT_EQ(peer_of(**s), a.address());
  ASSERT_EQ(::send(fd, "q1", 2, 0), 2);
  EXPECT_EQ(a.receive(), "q1");
  a.send_to(old_local, "a1");
  loop.run_until_idle();
  EXPECT_EQ(first.got, std::vector<std::string>({"a1"}));
  pool.give_back(std::move(*s), true, true);
  EXPECT_EQ(pool.kept(), 1u);

  // In quarantine: the next session gets a new socket.
  User second;
  auto fresh = pool.connect(b.address(), std::nullopt, &second);
  ASSERT_TRUE(static_cast<bool>(fresh));
  EXPECT_NE((*fresh)->fd(), fd);
  EXPECT_EQ(pool.reused(), 0u);
  pool.give_back(std::move(*fresh), false, true);
  EXPECT_EQ(pool.kept(), 1u);

  advance(UpstreamSocketPool::kQuarantine);
  User third;
  auto again = pool.connect(b.address(), std::nullopt, &third);
  ASSERT_TRUE(static_cast<bool>(again));
  third.fd = (*again)->fd();
  EXPECT_EQ((*again)->fd(), fd);
  EXPECT_EQ(pool.reused(), 1u);
  EXPECT_EQ(pool.kept(), 0u);
  EXPECT_EQ(peer_of(**again), b.address());
  net::Address new_local = local_of(**again);
  EXPECT_NE(new_local.port(), 0);
  ASSERT_EQ(::send(third.fd, "q2", 2, 0), 2);
  EXPECT_EQ(b.receive(), "q2");
  b.send_to(new_local, "b2");
  loop.run_until_idle();
  EXPECT_EQ(third.got, std::vector<std::string>({"b2"}));
  EXPECT_EQ(first.got, std::vector<std::string>({"a1"}));
  pool.give_back(std::move(*again), false, true);
  EXPECT_EQ(pool.kept(), 0u);
}

TEST_F(SocketPoolTest, WhatTheLastSessionLeftUnreadNeverReachesTheNext) {
  Peer a;
  User first;
  first.read = false;  // as a session that stopped at max_responses
  auto s = pool.connect(a.address(), std::nullopt, &first);
  ASSERT_TRUE(static_cast<bool>(s));
  net::Address old_local = local_of(**s);
  a.send_to(old_local, "answer");
  a.send_to(old_local, "second answer");
  loop.run_until_idle();
  EXPECT_GE(first.reports, 1);
  pool.give_back(std::move(*s), true, false);
  EXPECT_EQ(pool.kept(), 1u);
  // Disconnected: what is sent to the old port does not reach it.
  a.send_to(old_local, "late");

  advance(UpstreamSocketPool::kQuarantine);
  User next;
  auto again = pool.connect(a.address(), std::nullopt, &next);
  ASSERT_TRUE(static_cast<bool>(again));
  EXPECT_EQ(pool.reused(), 1u);
  next.fd = (*again)->fd();
  a.send_to(local_of(**again), "yours");
  loop.run_until_idle();
  EXPECT_EQ(next.got, std::vector<std::string>({"yours"}));
  pool.give_back(std::move(*again), false, true);
}

TEST_F(SocketPoolTest, ASocketWithAnErrorIsClosedNotLent) {
  // Nothing listens at `gone`: the send draws an ICMP port unreachable, held by the socket.
  net::Address gone = Peer().address();
  User first;
  first.read = false;
  auto s = pool.connect(gone, std::nullopt, &first);
  ASSERT_TRUE(static_cast<bool>(s));
  ASSERT_EQ(::send((*s)->fd(), "q", 1, 0), 1);
  pool.give_back(std::move(*s), true, true);
  advance(UpstreamSocketPool::kQuarantine);
  EXPECT_EQ(pool.kept(), 0u);
  Peer a;
  User next;
  auto other = pool.connect(a.address(), std::nullopt, &next);
  ASSERT_TRUE(static_cast<bool>(other));
  EXPECT_EQ(pool.reused(), 0u);
  pool.give_back(std::move(*other), false, true);
}

TEST_F(SocketPoolTest, AnotherFamilyOrASourceAddressGetsANewSocket) {
  Peer a;
  User u;
  auto s = pool.connect(a.address(), std::nullopt, &u);
  ASSERT_TRUE(static_cast<bool>(s));
  pool.give_back(std::move(*s), true, true);
  advance(UpstreamSocketPool::kQuarantine);
  auto bound = pool.connect(a.address(),
                            std::optional<net::Address>(*net::Address::parse("127.0.0.1:0")), &u);
  ASSERT_TRUE(static_cast<bool>(bound));
  EXPECT_EQ(pool.reused(), 0u);
  EXPECT_EQ(pool.kept(), 1u);
  pool.give_back(std::move(*bound), false, true);
  auto v6 = pool.connect(*net::Address::parse("[::1]:9"), std::nullopt, &u);
  if (v6) {
    EXPECT_EQ(pool.reused(), 0u);
    EXPECT_EQ(pool.kept(), 1u);
    pool.give_back(std::move(*v6), false, true);
  }
}

TEST_F(SocketPoolTest, IdleAndStoppedPoolsKeepNothing) {
  Peer a;
  User u;
  for (int i = 0; i < 3; ++i) {
    auto s = pool.connect(a.address(), std::nullopt, &u);
    ASSERT_TRUE(static_cast<bool>(s));
    pool.give_back(std::move(*s), true, true);
  }
  EXPECT_EQ(pool.kept(), 3u);
  advance(UpstreamSocketPool::kIdle);
  EXPECT_EQ(pool.kept(), 0u);

  auto s = pool.connect(a.address(), std::nullopt, &u);
  ASSERT_TRUE(static_cast<bool>(s));
  pool.give_back(std::move(*s), true, true);
  EXPECT_EQ(pool.kept(), 1u);
  pool.stop();
  EXPECT_EQ(pool.kept(), 0u);
  auto t = pool.connect(a.address(), std::nullopt, &u);
  ASSERT_TRUE(static_cast<bool>(t));
  pool.give_back(std::move(*t), true, true);
  EXPECT_EQ(pool.kept(), 0u);
}

}  // namespace
}  // namespace sluice::proxy::udp
