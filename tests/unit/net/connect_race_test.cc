#include "net/connect_race.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "event/timer.h"
#include "net/connect.h"
#include "net/listener.h"

namespace sluice::net {
namespace {

Address ip(const char* text, uint16_t port = 80) {
  return Address::parse_ip(text, port).value();
}

TEST(InterleaveFamilies, Ipv6FirstThenTakingTurnsKeepingEachFamilysOrder) {
  std::vector<Address> in = {ip("127.0.0.1"), ip("127.0.0.2"), ip("::1"), ip("::2"),
                             ip("127.0.0.3")};
  std::vector<Address> want = {ip("::1"), ip("127.0.0.1"), ip("::2"), ip("127.0.0.2"),
                               ip("127.0.0.3")};
  EXPECT_EQ(interleave_families(in), want);
  std::vector<Address> v4 = {ip("127.0.0.2"), ip("127.0.0.1")};
  EXPECT_EQ(interleave_families(v4), v4);
  EXPECT_TRUE(interleave_families({}).empty());
}

// A listening socket on 127.0.0.1 with an ephemeral port.
struct TestListener {
  TestListener(int backlog = 16) {
    fd = bind_listener(ip("127.0.0.1", 0), backlog, SocketOptions{}, false).value();
    address = local_address(fd.get()).value();
  }
  Fd fd;
  Address address;
};

// A port nothing listens on: connects are refused.
Address refused_address() {
  TestListener l;
  Address a = l.address;
  return a;  // the listener closes here
}

struct Outcome final : ConnectRaceCallbacks {
  explicit Outcome(event::Loop& l) : loop(l) {}
  void on_race_won(Fd fd, const Address& a) override {
    won = std::move(fd);
    winner = a;
    loop.stop();
  }
  void on_race_lost(int e, const std::string& d) override {
    lost = true;
    err = e;
    detail = d;
    loop.stop();
  }
  event::Loop& loop;
  Fd won;
  std::optional<Address> winner;
  bool lost = false;
  int err = 0;
  std::string detail;
};

// Runs the loop until the race ends, or fails the test after `limit`.
void run(event::Loop& loop, Duration limit = std::chrono::seconds(10)) {
  bool expired = false;
  event::Timer watchdog(loop.timers(), [&] {
    expired = true;
    loop.stop();
  });
  watchdog.arm_at(loop.now() + limit);
  loop.run();
  ASSERT_FALSE(expired) << "the race did not end";
}

TEST(ConnectRace, ARefusedAttemptStartsTheNextAtOnce) {
  event::Loop loop;
  TestListener good;
  Outcome out(loop);
  // An attempt delay far longer than the watchdog: only the refusal can start attempt 2.
  ConnectRace race(loop, {refused_address(), good.address}, SocketOptions{}, std::nullopt,
                   std::chrono::seconds(60), out);
  race.start();
  run(loop);
  ASSERT_TRUE(out.winner.has_value());
  EXPECT_EQ(*out.winner, good.address);
  EXPECT_TRUE(out.won.valid());
  EXPECT_EQ(race.attempts_started(), 2u);
  int err = 0;
  EXPECT_EQ(check_connect(out.won.get(), &err), ConnectState::kConnected);
}

TEST(ConnectRace, AnUnansweredAttemptIsJoinedByTheNextAfterTheDelay) {
  event::Loop loop;
  // A full accept queue drops further SYNs: the first address never answers.
  TestListener silent(0);
  std::vector<Fd> fillers;
  for (int i = 0; i < 4; ++i) {
    auto pc = start_connect(silent.address, SocketOptions{}, std::nullopt, false);
    ASSERT_TRUE(static_cast<bool>(pc));
    fillers.push_back(std::move(pc->fd));
  }
  TestListener good;
  Outcome out(loop);
  ConnectRace race(loop, {silent.address, good.address}, SocketOptions{}, std::nullopt,
                   std::chrono::milliseconds(50), out);
  race.start();
  run(loop);
  ASSERT_TRUE(out.winner.has_value()) << out.detail;
  EXPECT_EQ(*out.winner, good.address);
  EXPECT_EQ(race.attempts_started(), 2u);
}

TEST(ConnectRace, EveryAddressFailingReportsEachReasonAndNeverFromStart) {
  event::Loop loop;
  Address a = refused_address();
  Address b = refused_address();
  Outcome out(loop);
  ConnectRace race(loop, {a, b}, SocketOptions{}, std::nullopt, std::chrono::seconds(60), out);
  race.start();
  EXPECT_FALSE(out.lost);
  EXPECT_FALSE(out.winner.has_value());
  run(loop);
  ASSERT_TRUE(out.lost);
  EXPECT_EQ(out.err, ECONNREFUSED);
  EXPECT_EQ(out.detail,
            a.to_string() + ": connection refused; " + b.to_string() + ": connection refused");
}

TEST(ConnectRace, AnAddressThatFailsAtOnceIsPassedOver) {
  event::Loop loop;
  TestListener good;
  Outcome out(loop);
  // An IPv6 target with an IPv4 source address cannot even bind: passed over at once.
  ConnectRace race(loop, {ip("::1", good.address.port()), good.address}, SocketOptions{},
                   ip("127.0.0.1", 0), std::chrono::seconds(60), out);
  race.start();
  EXPECT_FALSE(out.winner.has_value());
  run(loop);
  ASSERT_TRUE(out.winner.has_value()) << out.detail;
  EXPECT_EQ(*out.winner, good.address);
}

TEST(ConnectRace, CancelledRaceCallsNothing) {
  event::Loop loop;
  TestListener good;
  Outcome out(loop);
  ConnectRace race(loop, {good.address}, SocketOptions{}, std::nullopt, std::chrono::seconds(1),
                   out);
  race.start();
  race.cancel();
  event::Timer later(loop.timers(), [&] { loop.stop(); });
  later.arm_at(loop.now() + std::chrono::milliseconds(100));
  loop.run();
  EXPECT_FALSE(out.winner.has_value());
  EXPECT_FALSE(out.lost);
  EXPECT_TRUE(race.finished());
}

}  // namespace
}  // namespace sluice::net
