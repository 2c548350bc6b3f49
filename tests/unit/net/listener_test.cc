#include "net/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "event/backend.h"

#include "base/clock.h"
#include "net/connect.h"

namespace sluice::net {
namespace {

using std::chrono::seconds;

Address loopback() {
  return Address::parse_ip("127.0.0.1", 0).value();
}

int int_option(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(getsockopt(fd, level, name, &v, &len), 0);
  return v;
}

// Connections the kernel completed and queued on a listening socket (TCP_INFO of a
// listening socket reports its accept queue in tcpi_unacked).
uint32_t accept_queue(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
  return ti.tcpi_unacked;
}

struct Counter final : ListenerCallbacks {
  void on_accept(Fd fd, const Address& peer) override {
    accepted.push_back(std::move(fd));
    peers.push_back(peer.to_string());
  }
  std::vector<Fd> accepted;
  std::vector<std::string> peers;
};

TEST(BindListener, SetsDeferAcceptAndNotsentLowatOnTheListeningSocket) {
  SocketOptions o;
  o.defer_accept = seconds(5);
  o.notsent_lowat = 32 * 1024;
  Fd fd = bind_listener(loopback(), 16, o, false).value();
  // The kernel keeps SYN-ACK retransmissions: 5 s rounds up to 1 + 2 + 4.
  EXPECT_EQ(int_option(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT), 7);
  EXPECT_EQ(int_option(fd.get(), IPPROTO_TCP, TCP_NOTSENT_LOWAT), 32 * 1024);

  SocketOptions off;
  off.notsent_lowat = 0;
  Fd plain = bind_listener(loopback(), 16, off, false).value();
  EXPECT_EQ(int_option(plain.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT), 0);
  EXPECT_EQ(int_option(plain.get(), IPPROTO_TCP, TCP_NOTSENT_LOWAT), 0);  // the kernel's default
}

TEST(Listener, AcceptsABatchPerWakeUpThenTheRestAfterOtherEvents) {
  event::Loop loop;
  SocketOptions o;
  o.notsent_lowat = 16 * 1024;
  Fd lfd = bind_listener(loopback(), 512, o, false).value();
  Address address = local_address(lfd.get()).value();
  int raw = lfd.get();
  constexpr int kConnections = 150;
  std::vector<Fd> clients;
  for (int i = 0; i < kConnections; ++i) {
    Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));  // blocking: connected on return
    ASSERT_TRUE(c.valid());
    ASSERT_EQ(::connect(c.get(), address.sockaddr_ptr(), address.length()), 0);
    clients.push_back(std::move(c));
  }
  // The last handshakes may still be on their way into the queue: bounded wait.
  for (int i = 0; i < 1000 && accept_queue(raw) < kConnections; ++i) {
    ::usleep(1000);
  }
  ASSERT_EQ(accept_queue(raw), static_cast<uint32_t>(kConnections));

  Counter counter;
  Listener listener(loop, std::move(lfd), "test", counter);
  // One wake-up takes one batch; the rest wait in the kernel's queue.
  listener.on_io(event::kReadable);
  EXPECT_EQ(counter.accepted.size(), 64u);
  EXPECT_EQ(accept_queue(raw), static_cast<uint32_t>(kConnections - 64));
  // The loop goes on with them without a new readiness edge.
  loop.run_until_idle();
  EXPECT_EQ(counter.accepted.size(), static_cast<size_t>(kConnections));
  EXPECT_EQ(accept_queue(raw), 0u);
  // Accepted sockets inherit the listening socket's options: no system call each.
  EXPECT_EQ(int_option(counter.accepted.front().get(), IPPROTO_TCP, TCP_NOTSENT_LOWAT), 16 * 1024);
  EXPECT_EQ(int_option(counter.accepted.back().get(), IPPROTO_TCP, TCP_NODELAY), 1);
}

TEST(SocketOptionsValidate, DeferAcceptAndNotsentLowat) {
  SocketOptions o;
  o.defer_accept = std::chrono::milliseconds(1500);
  ConfigIssues issues = o.validate(true);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "defer_accept");
  EXPECT_EQ(issues[0].message, "the kernel counts whole seconds: write 1s, 2s... (or 0 for off)");

  o.defer_accept = seconds(3);
  EXPECT_TRUE(o.validate(true).empty());
  issues = o.validate(false);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "defer_accept");
  EXPECT_EQ(issues[0].message, "only for listeners");

  SocketOptions low;
  low.notsent_lowat = 100;
  issues = low.validate(false);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "notsent_lowat");
  low.notsent_lowat = 0;  // off
  EXPECT_TRUE(low.validate(false).empty());
  EXPECT_EQ(SocketOptions{}.notsent_lowat, kDefaultNotsentLowat);
}

TEST(Listener, OnIoUringTheKernelAcceptsAndTheListenerHandsOver) {
  if (Status s = event::probe_io_uring(); !s) GTEST_SKIP() << "io_uring: " << s.message();
  ::setenv("SLUICE_IO_URING_ACCEPT", "multishot", 1);  // opt-in for now
  event::Loop loop(Clock::steady(), event::Backend::kIoUring);
  SocketOptions o;
  o.notsent_lowat = 16 * 1024;
  Fd lfd = bind_listener(loopback(), 512, o, false).value();
  Address address = local_address(lfd.get()).value();
  Counter counter;
  Listener listener(loop, std::move(lfd), "test", counter);
  ASSERT_TRUE(listener.start().is_ok());
  constexpr int kConnections = 100;
  std::vector<Fd> clients;
  std::vector<std::string> want;
  for (int i = 0; i < kConnections; ++i) {
    Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));  // blocking: connected on return
    ASSERT_EQ(::connect(c.get(), address.sockaddr_ptr(), address.length()), 0);
    want.push_back(local_address(c.get()).value().to_string());
    clients.push_back(std::move(c));
  }
  // Bounded: about 5 s.
  for (int i = 0; i < 5000 && counter.accepted.size() < kConnections; ++i) {
    loop.run_until_idle();
    if (counter.accepted.size() < kConnections) ::usleep(1000);
  }
  ASSERT_EQ(counter.accepted.size(), static_cast<size_t>(kConnections));
  // Each with its peer's address (getpeername: a multishot accept gives none), in order.
  EXPECT_EQ(counter.peers, want);
  // The same inherited options as from accept4(), non-blocking.
  EXPECT_EQ(int_option(counter.accepted.front().get(), IPPROTO_TCP, TCP_NOTSENT_LOWAT), 16 * 1024);
  EXPECT_EQ(int_option(counter.accepted.back().get(), IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_TRUE(::fcntl(counter.accepted.back().get(), F_GETFL) & O_NONBLOCK);
  // Closed: the port refuses at once.
  listener.close();
  Fd late(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_NE(::connect(late.get(), address.sockaddr_ptr(), address.length()), 0);
  EXPECT_EQ(errno, ECONNREFUSED);
  ::unsetenv("SLUICE_IO_URING_ACCEPT");
}

}  // namespace
}  // namespace sluice::net
