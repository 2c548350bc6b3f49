// One BGP session against a fake peer on loopback, on a manual clock: the OPEN exchange, the
// hold timer and keepalives, the NOTIFICATION each error sends, reconnection with backoff.
#include "bgp/session.h"
#include "bgp/speaker.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "net/listener.h"

namespace sluice::bgp {
namespace {

using std::chrono::seconds;

class FakeCallbacks final : public SessionCallbacks {
 public:
  void on_established(Session&) override { ++established; }
  void on_taken_over(Session&) override { ++taken_over; }
  int established = 0;
  int taken_over = 0;
};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fd = net::bind_listener(*net::Address::parse("127.0.0.1:0"), 16, net::SocketOptions{},
                                 /*reuse_port=*/false);
    ASSERT_TRUE(fd.is_ok()) << fd.status().message();
    listen_fd_ = std::move(fd.value());
    bgp_.local_as = 65001;
    bgp_.router_id = 0xC000020A;
    peer_.address = net::local_address(listen_fd_.get()).value();
    peer_.remote_as = 65000;
    peer_.hold_time = seconds(9);
    peer_.connect_retry = seconds(1);
    session_ = std::make_unique<Session>(loop_, bgp_, peer_, callbacks_);
  }

  // Waits (bounded) for sluice's connection and accepts it.
  bool accept() {
    loop_.run_until_idle();
    pollfd p{listen_fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return false;
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return false;
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    conn_ = net::Fd(fd);
    return true;
  }
  // One whole message from sluice (bounded by the receive timeout).
  Message receive() {
    std::string buf;
    for (;;) {
      Message m;
      ParseError e;
      size_t used = read_message({reinterpret_cast<const uint8_t*>(buf.data()), buf.size()}, m, e);
      if (used == SIZE_MAX) ADD_FAILURE() << "sluice sent a malformed message: " << e.detail;
      if (used != 0) {
        EXPECT_EQ(used, buf.size()) << "more than one message";
        return m;
      }
      char c[4096];
      size_t want =
          buf.size() < kHeaderSize
              ? kHeaderSize - buf.size()
              : ((static_cast<uint8_t>(buf[16]) << 8) | static_cast<uint8_t>(buf[17])) - buf.size();
      ssize_t n = ::recv(conn_.get(), c, std::min(want, sizeof c), 0);
      if (n <= 0) {
        ADD_FAILURE() << "no message from sluice";
        return {};
      }
      buf.append(c, static_cast<size_t>(n));
    }
  }
  void send(const std::string& bytes) {
    ASSERT_EQ(::send(conn_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    loop_.run_until_idle();
  }
  std::string open_from(uint32_t as, uint16_t hold) {
    std::string out;
    write_open(OpenParams{.as = as, .hold_time = hold, .router_id = 0x0A000001}, out);
    return out;
  }
  void establish() {
    session_->start();
    handshake();
    ASSERT_EQ(session_->state(), SessionState::kEstablished);
  }
  // The peer's side of the OPEN exchange, from the accept on.
  void handshake() {
    ASSERT_TRUE(accept());
    EXPECT_EQ(receive().type, MessageType::kOpen);
    std::string ka;
    write_keepalive(ka);
    send(open_from(65000, 9));
    EXPECT_EQ(receive().type, MessageType::kKeepalive);  // OpenConfirm's
    send(ka);
    EXPECT_EQ(receive().type, MessageType::kKeepalive);  // the first of Established
  }
  void advance(Duration d) {
    clock_.advance(d);
    loop_.run_until_idle();
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  net::Fd listen_fd_;
  net::Fd conn_;
  BgpConfig bgp_;
  PeerConfig peer_;
  FakeCallbacks callbacks_;
  std::unique_ptr<Session> session_;
};

TEST_F(SessionTest, OpenExchangeEstablishesAndAnnounces) {
  session_->start();
  ASSERT_TRUE(accept());
  Message open = receive();
  ASSERT_EQ(open.type, MessageType::kOpen);
  EXPECT_EQ(open.open.as, 65001u);
  EXPECT_EQ(open.open.hold_time, 9);
  EXPECT_EQ(open.open.router_id, 0xC000020Au);
  EXPECT_TRUE(open.open.four_octet_as);
  EXPECT_TRUE(open.open.ipv4_unicast);
  EXPECT_FALSE(open.open.ipv6_unicast);
  EXPECT_EQ(session_->state(), SessionState::kOpenSent);

  send(open_from(65000, 30));
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  EXPECT_EQ(session_->state(), SessionState::kOpenConfirm);
  EXPECT_EQ(session_->hold_time(), seconds(9));  // the smaller of the two
  std::string ka;
  write_keepalive(ka);
  send(ka);
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  EXPECT_EQ(session_->state(), SessionState::kEstablished);
  EXPECT_EQ(callbacks_.established, 1);

  Route r;
  r.prefix = Prefix::parse("192.0.2.1/32").value();
  r.med = 5;
  session_->announce(r);
  // The next hop is the session's own address.
  std::string expected;
  r.next_hop = {127, 0, 0, 1};
  write_announce(UpdateParams{.local_as = 65001, .ebgp = true, .four_octet_as = true}, r, expected);
  Message update = receive();
  ASSERT_EQ(update.type, MessageType::kUpdate);
  ASSERT_EQ(update.update.announced.size(), 1u);
  EXPECT_EQ(update.update.announced[0].to_string(), "192.0.2.1/32");
  session_->withdraw(r.prefix);
  update = receive();
  ASSERT_EQ(update.update.withdrawn.size(), 1u);
  EXPECT_EQ(session_->stats().updates_sent, 2u);
  EXPECT_EQ(session_->stats().state, 6u);
}

TEST_F(SessionTest, KeepalivesEveryThirdOfTheHoldTimeAndHoldTimerExpiry) {
  establish();
  advance(seconds(3));
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  advance(seconds(3));
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  advance(seconds(3));  // 9 s without a word from the peer
  Message m = receive();
  // A keepalive may come first, at the same instant.
  if (m.type == MessageType::kKeepalive) m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kHoldTimerExpired);
  EXPECT_EQ(session_->state(), SessionState::kIdle);
  EXPECT_EQ(session_->last_error(),
            "hold timer expired: nothing from the peer for 9s (NOTIFICATION sent: hold timer "
            "expired)");
  EXPECT_EQ(session_->next_retry_in(), seconds(1));
  advance(seconds(1));
  ASSERT_TRUE(accept());  // reconnects
  EXPECT_EQ(receive().type, MessageType::kOpen);
}

TEST_F(SessionTest, WrongPeerAsIsRefusedWithBadPeerAs) {
  session_->start();
  ASSERT_TRUE(accept());
  receive();
  send(open_from(65099, 9));
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kOpen);
  EXPECT_EQ(m.notification.subcode, err::kBadPeerAs);
  EXPECT_EQ(session_->state(), SessionState::kIdle);
  EXPECT_EQ(session_->last_error(),
            "OPEN from AS 65099, expected AS 65000 (NOTIFICATION sent: OPEN message error / bad "
            "peer AS)");
  EXPECT_EQ(session_->stats().notifications_sent, 1u);
}

TEST_F(SessionTest, UnacceptableHoldTime) {
  session_->start();
  ASSERT_TRUE(accept());
  receive();
  send(open_from(65000, 2));
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kOpen);
  EXPECT_EQ(m.notification.subcode, err::kUnacceptableHoldTime);
}

TEST_F(SessionTest, HoldTimeZeroStillBoundsTheOpenExchange) {
  session_->start();
  ASSERT_TRUE(accept());
  receive();
  send(open_from(65000, 0));
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  EXPECT_EQ(session_->state(), SessionState::kOpenConfirm);
  advance(seconds(59));
  EXPECT_EQ(session_->state(), SessionState::kOpenConfirm);
  advance(seconds(1));  // no KEEPALIVE from the peer within the OPEN exchange's bound
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kHoldTimerExpired);
  EXPECT_EQ(session_->state(), SessionState::kIdle);
  EXPECT_EQ(session_->last_error(),
            "no KEEPALIVE from the peer in time (NOTIFICATION sent: hold timer expired)");
}

TEST_F(SessionTest, GarbageEarnsAHeaderError) {
  establish();
  send(std::string(19, '\x00'));
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kHeader);
  EXPECT_EQ(m.notification.subcode, err::kNotSynchronized);
  EXPECT_EQ(session_->state(), SessionState::kIdle);
}

TEST_F(SessionTest, ReceivedRoutesAreCountedAndRouteRefreshResends) {
  establish();
  Route r;
  r.prefix = Prefix::parse("203.0.113.0/24").value();
  r.next_hop = {10, 0, 0, 1};
  std::string update;
  write_announce(UpdateParams{.local_as = 65000}, r, update);
  send(update);
  EXPECT_EQ(session_->stats().received_prefixes, 1u);
  EXPECT_EQ(session_->stats().updates_received, 1u);
  std::string refresh(16, '\xff');
  refresh += std::string("\x00\x17\x05\x00\x01\x00\x01", 7);
  send(refresh);
  EXPECT_EQ(callbacks_.established, 2);
}

// More than a read budget at once (a peer sending its table): the session reads it over
// several turns of the loop, and all of it, with no new readiness to wake it.
TEST_F(SessionTest, MoreThanAReadBudgetIsReadOverSeveralTurns) {
  establish();
  std::string table;
  constexpr int kRoutes = 3000;
  for (int i = 0; i < kRoutes; ++i) {
    Route r;
    r.prefix = Prefix::parse(fmt::format("10.{}.{}.0/24", i / 256, i % 256)).value();
    r.next_hop = {10, 0, 0, 1};
    write_announce(UpdateParams{.local_as = 65000}, r, table);
  }
  // All of it queued before the session reads (the kernel's buffers hold it): one wake-up,
  // many budgets.
  session_->set_read_budget(1000);
  ASSERT_GT(table.size(), 10u * 1000);
  int big = 4 << 20;
  ::setsockopt(conn_.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  size_t at = 0;
  while (at < table.size()) {
    ssize_t n =
        ::send(conn_.get(), table.data() + at, table.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
    ASSERT_GT(n, 0) << "the kernel's buffers are smaller than the test's table";
    at += static_cast<size_t>(n);
  }
  for (int turn = 0; turn < 1000 && session_->stats().updates_received < kRoutes; ++turn) {
    ::poll(nullptr, 0, turn == 0 ? 0 : 1);
    loop_.run_until_idle();
  }
  EXPECT_EQ(session_->stats().updates_received, static_cast<uint64_t>(kRoutes));
  EXPECT_EQ(session_->stats().received_prefixes, static_cast<uint64_t>(kRoutes));
  EXPECT_EQ(session_->state(), SessionState::kEstablished);
}

TEST_F(SessionTest, NotificationFromThePeerClosesAndRetries) {
  establish();
  std::string n;
  write_notification(err::kCease, err::kAdministrativeShutdown, {}, n);
  send(n);
  EXPECT_EQ(session_->state(), SessionState::kIdle);
  EXPECT_EQ(session_->last_error(), "NOTIFICATION received: cease / administrative shutdown");
  EXPECT_EQ(session_->stats().notifications_received, 1u);
  // Established before: the backoff starts again from connect_retry.
  EXPECT_EQ(session_->next_retry_in(), seconds(1));
}

TEST_F(SessionTest, BackoffDoublesWhileThePeerRefuses) {
  listen_fd_.reset();  // nothing listens: every connect is refused
  session_->start();
  loop_.run_until_idle();
  // The refusal comes back from the kernel; give it a bounded number of turns.
  for (int i = 0; i < 100 && session_->state() != SessionState::kIdle; ++i) {
    ::poll(nullptr, 0, 10);
    loop_.run_until_idle();
  }
  ASSERT_EQ(session_->state(), SessionState::kIdle);
  EXPECT_EQ(session_->next_retry_in(), seconds(1));
  for (Duration expected : {seconds(2), seconds(4), seconds(8)}) {
    advance(session_->next_retry_in());
    for (int i = 0; i < 100 && session_->state() != SessionState::kIdle; ++i) {
      ::poll(nullptr, 0, 10);
      loop_.run_until_idle();
    }
    EXPECT_EQ(session_->next_retry_in(), expected);
  }
  EXPECT_EQ(session_->last_error(), "connect: connection refused");
}

TEST_F(SessionTest, StopSendsCease) {
  establish();
  session_->stop(err::kAdministrativeShutdown, "sluice stopped");
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kCease);
  EXPECT_EQ(m.notification.subcode, err::kAdministrativeShutdown);
  EXPECT_FALSE(session_->next_retry_in() > Duration(0));
}

// A binary upgrade between two Session objects standing for the two processes: the peer sees
// neither a NOTIFICATION nor a new OPEN, a message read in part by the first is finished by
// the second, and the second carries on with the keepalives and the routes the peer has.
TEST_F(SessionTest, HandedOverSessionCarriesOnUnseen) {
  establish();
  Route r;
  r.prefix = Prefix::parse("192.0.2.1/32").value();
  r.communities = {65001u << 16 | 100};
  r.med = 7;
  session_->announce(r);
  EXPECT_EQ(receive().type, MessageType::kUpdate);

  auto handed = session_->hand_over();
  ASSERT_TRUE(handed.has_value());
  EXPECT_TRUE(session_->handed_over());
  // Through the hand-over's text, as the new process reads it.
  HandoverReader reader;
  for (const auto& line : write_session_lines(*handed)) {
    std::vector<net::Fd> fds;
    if (line.find(" session ") != std::string::npos) fds.push_back(std::move(handed->fd));
    ASSERT_TRUE(reader.add(line, fds).is_ok()) << line;
  }
  ASSERT_EQ(reader.sessions().size(), 1u);
  FakeCallbacks next_callbacks;
  Session next(loop_, bgp_, peer_, next_callbacks);
  next.adopt(std::move(reader.sessions().begin()->second));
  EXPECT_TRUE(next.dormant());
  EXPECT_EQ(next.state(), SessionState::kEstablished);
  next.announce(r);  // dormant: waits for the take-over

  // Half a KEEPALIVE reaches the old session before it lets go.
  std::string ka;
  write_keepalive(ka);
  send(ka.substr(0, 7));
  SessionTransfer released = session_->release();
  EXPECT_EQ(session_->state(), SessionState::kIdle);
  EXPECT_EQ(released.in, ka.substr(0, 7));
  ASSERT_EQ(released.sent.size(), 1u);
  EXPECT_TRUE(released.sent[0] == r);
  HandoverReader step2;
  for (const auto& line : write_release_lines(released)) {
    std::vector<net::Fd> none;
    ASSERT_TRUE(step2.add(line, none).is_ok()) << line;
  }
  SessionTransfer& t = step2.sessions().begin()->second;
  EXPECT_EQ(t.in, ka.substr(0, 7));
  EXPECT_EQ(t.stats[1], 1u);  // the UPDATE sent

  next.take_over(&t);
  EXPECT_FALSE(next.dormant());
  EXPECT_EQ(next_callbacks.taken_over, 1);
  EXPECT_EQ(next.sent().size(), 1u);
  EXPECT_EQ(next.stats().updates_sent, 1u);
  send(ka.substr(7));  // the rest of the KEEPALIVE: read whole by the new session
  EXPECT_EQ(next.state(), SessionState::kEstablished);
  // The next thing the peer gets is the new session's KEEPALIVE (no NOTIFICATION, no OPEN).
  advance(seconds(3));
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  EXPECT_EQ(next.stats().notifications_sent, 0u);
  next.withdraw(r.prefix);
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kUpdate);
  EXPECT_EQ(m.update.withdrawn.size(), 1u);
  EXPECT_TRUE(next.sent().empty());
}

// The peer's settings changed in the upgrade: the new session ends the old one with a Cease
// (other configuration change) and connects again.
TEST_F(SessionTest, TakenOverSessionWithChangedSettingsStartsAgain) {
  establish();
  auto handed = session_->hand_over();
  ASSERT_TRUE(handed.has_value());
  PeerConfig changed = peer_;
  changed.remote_as = 65002;
  FakeCallbacks next_callbacks;
  Session next(loop_, bgp_, changed, next_callbacks);
  next.adopt(std::move(*handed));
  SessionTransfer released = session_->release();
  next.take_over(&released);
  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, err::kCease);
  EXPECT_EQ(m.notification.subcode, err::kOtherConfigurationChange);
  EXPECT_EQ(next.state(), SessionState::kIdle);
  EXPECT_EQ(next_callbacks.taken_over, 0);
}

// The connection handed over closed before the old process let go: the release says so, and
// the new session connects anew instead of carrying on a dead socket.
TEST_F(SessionTest, ConnectionLostBeforeTheReleaseIsNotCarriedOn) {
  establish();
  auto handed = session_->hand_over();
  ASSERT_TRUE(handed.has_value());
  FakeCallbacks next_callbacks;
  Session next(loop_, bgp_, peer_, next_callbacks);
  next.adopt(std::move(*handed));
  conn_.reset();  // the peer goes away
  for (int i = 0; i < 100 && session_->state() != SessionState::kIdle; ++i) {
    ::poll(nullptr, 0, 10);
    loop_.run_until_idle();
  }
  ASSERT_EQ(session_->state(), SessionState::kIdle);
  SessionTransfer released = session_->release();
  EXPECT_FALSE(released.established);
  next.take_over(&released);
  EXPECT_EQ(next.state(), SessionState::kConnect);
  EXPECT_TRUE(accept());  // a new connection from the new session
  EXPECT_EQ(receive().type, MessageType::kOpen);
  EXPECT_EQ(next_callbacks.taken_over, 0);
}

// Two speakers standing for the two processes of an upgrade, the new one with other prefixes:
// the peer gets exactly the difference (a changed route again, a new one, a removed one
// withdrawn) and nothing for the prefix that stayed the same.
TEST_F(SessionTest, SpeakerTakingOverSendsOnlyTheDifference) {
  auto announce = [](const char* prefix, std::optional<uint32_t> med) {
    AnnounceConfig a;
    a.prefix = Prefix::parse(prefix).value();
    a.target = "api";
    a.med = med;
    return a;
  };
  auto old_config = std::make_shared<BgpConfig>(bgp_);
  old_config->peers = {peer_};
  old_config->announce = {announce("192.0.2.1/32", 5), announce("192.0.2.2/32", 5),
                          announce("192.0.2.4/32", std::nullopt)};
  auto new_config = std::make_shared<BgpConfig>(*old_config);
  new_config->announce = {announce("192.0.2.1/32", 5), announce("192.0.2.2/32", 9),
                          announce("192.0.2.3/32", std::nullopt)};
  auto usable = [](const AnnounceConfig&) { return SourceState{1, 1, ""}; };
  Speaker old_speaker(loop_, old_config, usable);
  old_speaker.start();
  handshake();
  old_speaker.set_ready();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(receive().type, MessageType::kUpdate);

  std::map<std::string, SessionTransfer> handed;
  for (auto& t : old_speaker.hand_over()) {
    std::string peer = t.peer;
    handed.emplace(peer, std::move(t));
  }
  ASSERT_EQ(handed.size(), 1u);
  Speaker new_speaker(loop_, new_config, usable);
  new_speaker.adopt(std::move(handed));
  EXPECT_TRUE(new_speaker.adopted());
  new_speaker.start();
  new_speaker.set_ready();  // dormant: nothing goes out yet
  std::map<std::string, SessionTransfer> released;
  for (auto& t : old_speaker.release()) {
    std::string peer = t.peer;
    released.emplace(peer, std::move(t));
  }
  new_speaker.take_over(&released);
  EXPECT_FALSE(new_speaker.adopted());

  Message m = receive();
  ASSERT_EQ(m.type, MessageType::kUpdate);
  ASSERT_EQ(m.update.announced.size(), 1u);
  EXPECT_EQ(m.update.announced[0].to_string(), "192.0.2.2/32");  // MED 5 → 9
  m = receive();
  ASSERT_EQ(m.update.announced.size(), 1u);
  EXPECT_EQ(m.update.announced[0].to_string(), "192.0.2.3/32");  // new
  m = receive();
  ASSERT_EQ(m.update.withdrawn.size(), 1u);
  EXPECT_EQ(m.update.withdrawn[0].to_string(), "192.0.2.4/32");  // gone from the file
  // Then only the keepalives: the unchanged 192.0.2.1/32 is not sent again.
  advance(seconds(3));
  EXPECT_EQ(receive().type, MessageType::kKeepalive);
  EXPECT_EQ(new_speaker.sessions().at(0)->sent().size(), 3u);
  EXPECT_EQ(new_speaker.sessions().at(0)->stats().updates_sent, 6u);
}

// A newer section version is refused with the reason.
TEST(BgpHandoverTest, NewerSectionVersionIsRefused) {
  HandoverReader reader;
  std::vector<net::Fd> none;
  Status s = reader.add("bgp 99 release 192.0.2.2:179 established=1", none);
  EXPECT_EQ(s.message(),
            "hand-over: BGP section version 99 is newer than this binary's 1: upgrade to a "
            "binary at least as new as the running one");
  EXPECT_FALSE(reader.add("bgp 1 route 192.0.2.2:179 10.0.0.0/8 nh=00", none).is_ok());
}

}  // namespace
}  // namespace sluice::bgp
