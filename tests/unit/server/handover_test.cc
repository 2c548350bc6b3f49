#include "server/handover.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace sluice::server {
namespace {

using std::chrono::milliseconds;

constexpr auto kWait = std::chrono::seconds(5);

// Both ends of a SOCK_SEQPACKET pair, as the upgrade makes them.
struct Pair {
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    old_end = net::Fd(sv[0]);
    new_end = net::Fd(sv[1]);
  }
  net::Fd old_end;
  net::Fd new_end;
};

// A listening TCP socket on 127.0.0.1 (an ephemeral port).
net::Fd listening_socket() {
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd.get(), 16), 0);
  return fd;
}

// A TCP socket that is not bound: enough to tell descriptors apart by inode.
net::Fd plain_socket() {
  net::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  return fd;
}

std::pair<dev_t, ino_t> inode(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return {st.st_dev, st.st_ino};
}

net::Address address(const char* text) {
  auto a = net::Address::parse(text);
  EXPECT_TRUE(a) << text;
  return *a;
}

HandedListener listener(std::string name, const char* addr, size_t sockets,
                        net::Fd (*make)() = plain_socket) {
  HandedListener l{std::move(name), address(addr), {}};
  for (size_t i = 0; i < sockets; ++i) l.fds.push_back(make());
  return l;
}

// Raises the soft descriptor limit for tests that pass hundreds of sockets (both copies are
// open at once).
void want_descriptors(rlim_t n) {
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  if (r.rlim_cur >= n) return;
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < n) GTEST_SKIP() << "RLIMIT_NOFILE hard limit";
  r.rlim_cur = n;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &r), 0);
}

// Sends from a thread: a blocking sender waits for the reader once the peer's queue of
// packets is full.
Result<Handover> exchange(const Handover& sent) {
  Pair p;
  Status send_status = Status::ok();
  std::thread sender([&] { send_status = send_handover(p.old_end.get(), sent); });
  auto got = receive_handover(p.new_end.get(), kWait);
  sender.join();
  EXPECT_TRUE(send_status) << send_status.message();
  return got;
}

void expect_same_sockets(const HandedListener& sent, const HandedListener& got) {
  EXPECT_EQ(got.name, sent.name);
  EXPECT_EQ(got.address, sent.address);
  ASSERT_EQ(got.fds.size(), sent.fds.size()) << sent.name;
  for (size_t i = 0; i < sent.fds.size(); ++i) {
    // A new descriptor in this process, for the same socket, in the same order.
    EXPECT_NE(got.fds[i].get(), sent.fds[i].get()) << sent.name << " socket " << i;
    EXPECT_EQ(inode(got.fds[i].get()), inode(sent.fds[i].get())) << sent.name << " socket " << i;
    // Close-on-exec: a process the new one starts does not inherit the listeners.
    EXPECT_EQ(::fcntl(got.fds[i].get(), F_GETFD), FD_CLOEXEC) << sent.name << " socket " << i;
  }
}

TEST(Handover, ListenersWithZeroOneAndThreeHundredSocketsArriveIntact) {
  want_descriptors(2048);
  Handover sent;
  sent.listeners.push_back(listener("none", "127.0.0.1:8080", 0));
  sent.listeners.push_back(listener("one", "127.0.0.1:8081", 1, listening_socket));
  // More than the kernel passes in one message (253): sent in two packets, read as one.
  sent.listeners.push_back(listener("many", "[::1]:8443", 300));
  sent.listeners.push_back(listener("after", "10.0.0.1:9000", 2));
  auto got = exchange(sent);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_EQ(got->version, kHandoverVersion);
  ASSERT_EQ(got->listeners.size(), 4u);
  for (size_t i = 0; i < sent.listeners.size(); ++i) {
    expect_same_sockets(sent.listeners[i], got->listeners[i]);
  }
  EXPECT_EQ(got->listeners[2].address.to_string(), "[::1]:8443");
  EXPECT_FALSE(got->admin.has_value());
}

TEST(Handover, ExactlyTwoPacketsWorthOfSockets) {
  want_descriptors(2048);
  Handover sent;
  sent.listeners.push_back(listener("full", "127.0.0.1:1", 253));
  sent.listeners.push_back(listener("twice", "127.0.0.1:2", 506));
  auto got = exchange(sent);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->listeners.size(), 2u);
  expect_same_sockets(sent.listeners[0], got->listeners[0]);
  expect_same_sockets(sent.listeners[1], got->listeners[1]);
}

TEST(Handover, TheAdminSocket) {
  Handover sent;
  sent.listeners.push_back(listener("web", "127.0.0.1:8080", 2, listening_socket));
  sent.admin = HandedListener{"admin", address("127.0.0.1:9901"), {}};
  sent.admin->fds.push_back(listening_socket());
  auto got = exchange(sent);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->listeners.size(), 1u);
  expect_same_sockets(sent.listeners[0], got->listeners[0]);
  ASSERT_TRUE(got->admin.has_value());
  EXPECT_EQ(got->admin->name, "admin");
  expect_same_sockets(*sent.admin, *got->admin);
}

TEST(Handover, AnAdminWithoutASocketIsNotSent) {
  Handover sent;
  sent.admin = HandedListener{"admin", address("127.0.0.1:9901"), {}};
  auto got = exchange(sent);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_TRUE(got->listeners.empty());
  EXPECT_FALSE(got->admin.has_value());
}

TEST(Handover, ManyListenersWithASenderThatBlocks) {
  // More packets than a Unix socket queues before its reader reads.
  Handover sent;
  for (int i = 0; i < 40; ++i) {
    sent.listeners.push_back(listener(fmt::format("l{}", i), "127.0.0.1:7000", 1));
  }
  auto got = exchange(sent);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->listeners.size(), 40u);
  for (size_t i = 0; i < 40; ++i) expect_same_sockets(sent.listeners[i], got->listeners[i]);
}

TEST(Handover, TicketKeysAndEndpointStatesArriveIntact) {
  Pair p;
  Handover h;
  tls::TicketKey k{};
  for (size_t i = 0; i < k.name.size(); ++i) k.name[i] = static_cast<unsigned char>(i);
  for (size_t i = 0; i < k.aes_key.size(); ++i) k.aes_key[i] = static_cast<unsigned char>(0xa0 + i);
  for (size_t i = 0; i < k.hmac_key.size(); ++i)
    k.hmac_key[i] = static_cast<unsigned char>(0xff - i);
  h.ticket_keys["web"] = {k, tls::TicketKey{}};
  h.endpoints.push_back({"app", "10.0.0.1:80", true, 0, -1});
  h.endpoints.push_back({"app", "10.0.0.2:80", false, 3, 12345});
  ASSERT_TRUE(send_handover(p.old_end.get(), h));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->ticket_keys.size(), 1u);
  const auto& keys = got->ticket_keys.at("web");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].name, k.name);
  EXPECT_EQ(keys[0].aes_key, k.aes_key);
  EXPECT_EQ(keys[0].hmac_key, k.hmac_key);
  EXPECT_EQ(keys[1].name, tls::TicketKey{}.name);
  ASSERT_EQ(got->endpoints.size(), 2u);
  EXPECT_EQ(got->endpoints[0].cluster, "app");
  EXPECT_EQ(got->endpoints[0].address, "10.0.0.1:80");
  EXPECT_TRUE(got->endpoints[0].draining);
  EXPECT_EQ(got->endpoints[0].ejected_ms_left, -1);
  EXPECT_EQ(got->endpoints[1].address, "10.0.0.2:80");
  EXPECT_FALSE(got->endpoints[1].draining);
  EXPECT_EQ(got->endpoints[1].ejections, 3u);
  EXPECT_EQ(got->endpoints[1].ejected_ms_left, 12345);
}

// The registration lease is a full int64 (etcd's ids use the high bits): no rounding.
TEST(Handover, TheRegistrationLeaseArrivesIntact) {
  Pair p;
  Handover h;
  h.registration_lease = 0x694d9a2b1e3f5c07;
  ASSERT_TRUE(send_handover(p.old_end.get(), h));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_EQ(got->registration_lease, 0x694d9a2b1e3f5c07);
}

TEST(Handover, NoRegistrationLeaseIsNotSent) {
  Pair p;
  ASSERT_TRUE(send_handover(p.old_end.get(), Handover{}));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_EQ(got->registration_lease, 0);
}

TEST(Handover, CachedDnsAnswersArriveIntact) {
  Pair p;
  Handover h;
  dns::Cache::Saved a;
  a.key = "addr:api.example";
  a.answer.name = "api.example";
  a.answer.record_ttl = 30;
  a.answer.addresses = {*net::Address::parse_ip("10.0.0.1", 0), *net::Address::parse_ip("::1", 0)};
  a.left = std::chrono::milliseconds(12500);
  dns::Cache::Saved s;
  s.key = "srv:_http._tcp.example";
  s.answer.name = "_http._tcp.example";
  s.answer.record_ttl = 60;
  s.answer.srv = {{"a.example", 8080, 10, 5}, {"b.example", 8081, 20, 0}};
  s.left = std::chrono::milliseconds(59000);
  h.dns = {a, s};
  ASSERT_TRUE(send_handover(p.old_end.get(), h));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->dns.size(), 2u);
  EXPECT_EQ(got->dns[0].key, "addr:api.example");
  EXPECT_EQ(got->dns[0].answer.name, "api.example");
  EXPECT_EQ(got->dns[0].answer.record_ttl, 30u);
  EXPECT_EQ(got->dns[0].answer.addresses, a.answer.addresses);
  EXPECT_EQ(got->dns[0].left, std::chrono::milliseconds(12500));
  EXPECT_EQ(got->dns[1].key, "srv:_http._tcp.example");
  ASSERT_EQ(got->dns[1].answer.srv.size(), 2u);
  EXPECT_EQ(got->dns[1].answer.srv[0].target, "a.example");
  EXPECT_EQ(got->dns[1].answer.srv[0].port, 8080);
  EXPECT_EQ(got->dns[1].answer.srv[0].priority, 10);
  EXPECT_EQ(got->dns[1].answer.srv[0].weight, 5);
  EXPECT_EQ(got->dns[1].answer.srv[1].target, "b.example");
  EXPECT_EQ(got->dns[1].left, std::chrono::milliseconds(59000));
}

TEST(Handover, AnOlderVersionIsRead) {
  Pair p;
  ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 0"));
  ASSERT_TRUE(send_line(p.old_end.get(), "end"));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_EQ(got->version, 0u);
  EXPECT_TRUE(got->listeners.empty());
}

TEST(Handover, ANewerVersionIsRefused) {
  Pair p;
  Handover sent;
  sent.version = kHandoverVersion + 1;
  sent.listeners.push_back(listener("web", "127.0.0.1:8080", 1));
  ASSERT_TRUE(send_handover(p.old_end.get(), sent));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.status().message(), "hand-over: version " + std::to_string(kHandoverVersion + 1) +
                                        " is newer than this binary's " +
                                        std::to_string(kHandoverVersion) +
                                        ": upgrade to a binary at least as new as the running one");
}

TEST(Handover, GarbageIsRefused) {
  {
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "GET / HTTP/1.1"));
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: not a sluice hand-over ('GET / HTTP/1.1')");
  }
  {
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover x"));
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: not a sluice hand-over ('sluice-handover x')");
  }
  {
    // A listener line saying more sockets than came with it.
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 1"));
    ASSERT_TRUE(send_line(p.old_end.get(), "listener web 127.0.0.1:80 2"));
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(),
              "hand-over: unexpected 'listener web 127.0.0.1:80 2' with 0 sockets");
  }
  {
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 1"));
    ASSERT_TRUE(send_line(p.old_end.get(), "listener web nowhere 0"));
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: listener web: bad address 'nowhere'");
  }
  {
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 1"));
    ASSERT_TRUE(send_line(p.old_end.get(), "admin 127.0.0.1:9901 1"));  // no socket attached
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: unexpected 'admin 127.0.0.1:9901 1'");
  }
  {
    // A packet larger than a line may be.
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 1"));
    ASSERT_TRUE(send_line(p.old_end.get(), "listener " + std::string(5000, 'x') + " 1.2.3.4:5 0"));
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: a packet was larger than expected");
  }
}

TEST(Handover, AClosedPeerIsReported) {
  {
    Pair p;
    p.old_end.reset();
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: the other process closed the connection");
  }
  {
    // Closed half-way: after a listener, before "end".
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 1"));
    ASSERT_TRUE(send_line(p.old_end.get(), "listener web 127.0.0.1:80 0"));
    p.old_end.reset();
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.status().message(), "hand-over: the other process closed the connection");
  }
  {
    // The sender sees its peer gone.
    Pair p;
    p.new_end.reset();
    Status s = send_handover(p.old_end.get(), Handover{});
    EXPECT_FALSE(s);
    EXPECT_EQ(s.message().rfind("hand-over: send: ", 0), 0u) << s.message();
  }
}

TEST(Handover, NothingSentInTime) {
  Pair p;
  auto got = receive_handover(p.new_end.get(), milliseconds(20));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.status().message(), "hand-over: nothing received in time");
}

TEST(Handover, AnswerLines) {
  Pair p;
  ASSERT_TRUE(send_line(p.new_end.get(), "ready 4242"));
  ASSERT_TRUE(send_line(p.new_end.get(), "failed sluice.yaml:3:5: workers: must be at least 1"));
  char buf[256];
  ssize_t n = ::recv(p.old_end.get(), buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "ready 4242");
  n = ::recv(p.old_end.get(), buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)),
            "failed sluice.yaml:3:5: workers: must be at least 1");
}

TEST(Handover, OwnExecutableIsThisBinary) {
  std::string exe = own_executable();
  ASSERT_FALSE(exe.empty());
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat(exe.c_str(), &a), 0) << exe;
  ASSERT_EQ(::stat("/proc/self/exe", &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_dev, b.st_dev);
}

}  // namespace
}  // namespace sluice::server
