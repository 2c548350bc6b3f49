#include "server/handover.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
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

// The BGP section: step 1 with the listeners (the session's socket attached), then step 2
// after "ready", its buffers larger than one packet.
TEST(Handover, BgpSessionsArriveIntactInBothSteps) {
  Handover h;
  bgp::SessionTransfer t;
  t.peer = "192.0.2.2:179";
  t.fd = plain_socket();
  t.remote_as = 65000;
  t.local_as = 4200000001;
  t.router_id = 0xC0000201;
  t.md5 = true;
  t.peer_open.as = 65000;
  t.peer_open.router_id = 0xC0000202;
  t.peer_open.hold_time = 9;
  t.peer_open.four_octet_as = true;
  t.peer_open.ipv6_unicast = true;
  t.hold = std::chrono::seconds(9);
  t.uptime = milliseconds(123456);
  bgp::Route r;
  r.prefix = bgp::Prefix::parse("2001:db8:1::/48").value();
  r.next_hop = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  r.communities = {bgp::kGracefulShutdown, 65001u << 16 | 100};
  bgp::Route plain;
  plain.prefix = bgp::Prefix::parse("198.51.100.1/32").value();
  plain.med = 0;
  t.sent = {r, plain};
  auto socket_inode = inode(t.fd.get());
  h.bgp.emplace(t.peer, std::move(t));
  h.listeners.push_back(listener("web", "127.0.0.1:8080", 1));
  auto got = exchange(h);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->listeners.size(), 1u);
  ASSERT_EQ(got->bgp.size(), 1u);
  bgp::SessionTransfer& g = got->bgp.at("192.0.2.2:179");
  EXPECT_EQ(inode(g.fd.get()), socket_inode);
  EXPECT_EQ(std::tie(g.remote_as, g.local_as, g.router_id, g.md5),
            std::make_tuple(65000u, 4200000001u, 0xC0000201u, true));
  EXPECT_EQ(std::tie(g.peer_open.as, g.peer_open.router_id, g.peer_open.hold_time),
            std::make_tuple(65000u, 0xC0000202u, uint16_t{9}));
  EXPECT_EQ(std::make_tuple(g.peer_open.four_octet_as, g.peer_open.route_refresh,
                            g.peer_open.ipv4_unicast, g.peer_open.ipv6_unicast),
            std::make_tuple(true, false, false, true));
  EXPECT_EQ(g.hold, std::chrono::seconds(9));
  EXPECT_EQ(g.uptime, milliseconds(123456));
  ASSERT_EQ(g.sent.size(), 2u);
  EXPECT_TRUE(g.sent[0] == r);
  EXPECT_TRUE(g.sent[1] == plain);

  bgp::SessionTransfer released;
  released.peer = "192.0.2.2:179";
  released.released = true;
  released.hold_left = milliseconds(8500);
  released.keepalive_left = milliseconds(2100);
  released.in = std::string("\xff\xff\x00\x13", 4);
  for (int i = 0; i < 5000; ++i) released.out += static_cast<char>(i % 251);
  released.sent = {plain};
  for (int i = 0; i < 600; ++i) {
    released.received.push_back(
        bgp::Prefix::parse(fmt::format("10.{}.{}.0/24", i / 256, i % 256)).value());
  }
  released.stats = {1, 7, 3, 0, 2};
  std::vector<bgp::SessionTransfer> list;
  list.push_back(std::move(released));
  const bgp::SessionTransfer& expected = list.front();
  Pair p;
  Status sent = Status::ok();
  std::thread sender([&] { sent = send_bgp_release(p.old_end.get(), list); });
  auto step2 = receive_bgp_release(p.new_end.get(), kWait);
  sender.join();
  ASSERT_TRUE(sent) << sent.message();
  ASSERT_TRUE(step2) << step2.status().message();
  const bgp::SessionTransfer& s2 = step2->at("192.0.2.2:179");
  EXPECT_TRUE(s2.released);
  EXPECT_TRUE(s2.established);
  EXPECT_EQ(s2.hold_left, milliseconds(8500));
  EXPECT_EQ(s2.keepalive_left, milliseconds(2100));
  EXPECT_EQ(s2.in, expected.in);
  EXPECT_EQ(s2.out, expected.out);
  ASSERT_EQ(s2.sent.size(), 1u);
  EXPECT_TRUE(s2.sent[0] == plain);
  EXPECT_EQ(s2.received, expected.received);
  EXPECT_EQ(s2.stats, expected.stats);
}

// A BGP section newer than this binary's: the hand-over is refused with the reason.
TEST(Handover, ANewerBgpSectionIsRefused) {
  Pair p;
  ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 1"));
  ASSERT_TRUE(send_line(p.old_end.get(), "bgp 2 release 192.0.2.2:179 established=1"));
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.status().message(),
            "hand-over: BGP section version 2 is newer than this binary's 1: upgrade to a "
            "binary at least as new as the running one");
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

HandedSockets part(SocketRole role, const char* addr, size_t sockets) {
  HandedSockets p{role, address(addr), {}};
  for (size_t i = 0; i < sockets; ++i) p.fds.push_back(plain_socket());
  return p;
}

void expect_same_part(const HandedSockets& sent, const HandedSockets& got) {
  EXPECT_EQ(got.role, sent.role);
  EXPECT_EQ(got.address, sent.address);
  ASSERT_EQ(got.fds.size(), sent.fds.size()) << to_string(sent.role);
  for (size_t i = 0; i < sent.fds.size(); ++i) {
    EXPECT_EQ(inode(got.fds[i].get()), inode(sent.fds[i].get()))
        << to_string(sent.role) << " socket " << i;
  }
}

// A stun listener with its RFC 5780 sockets and its TCP sockets, one of each per worker.
HandedListener stun_listener(size_t workers) {
  HandedListener l = listener("stun", "127.0.0.1:3478", workers);
  l.parts.push_back(part(SocketRole::kStunAlternatePort, "127.0.0.1:3479", workers));
  l.parts.push_back(part(SocketRole::kStunAlternateIp, "127.0.0.2:3478", workers));
  l.parts.push_back(part(SocketRole::kStunAlternateBoth, "127.0.0.2:3479", workers));
  l.parts.push_back(part(SocketRole::kStunTcp, "127.0.0.1:3478", workers));
  return l;
}

TEST(Handover, AListenersOtherSocketsArriveWithIt) {
  want_descriptors(4096);
  Handover sent;
  sent.listeners.push_back(listener("web", "127.0.0.1:8080", 2));
  sent.listeners.push_back(stun_listener(3));
  // More than one packet's worth of each.
  sent.listeners.push_back(stun_listener(300));
  sent.listeners.back().name = "big";
  auto got = exchange(sent);
  ASSERT_TRUE(got) << got.status().message();
  ASSERT_EQ(got->listeners.size(), 3u);
  EXPECT_TRUE(got->listeners[0].parts.empty());
  for (size_t l = 1; l < 3; ++l) {
    expect_same_sockets(sent.listeners[l], got->listeners[l]);
    ASSERT_EQ(got->listeners[l].parts.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
      expect_same_part(sent.listeners[l].parts[i], got->listeners[l].parts[i]);
    }
  }
}

TEST(Handover, SocketsOfAnUnknownListenerOrRoleAreRefused) {
  for (const char* line :
       {"sockets web stun-tcp 127.0.0.1:80 0", "sockets stun stun-udp 127.0.0.1:80 0",
        "sockets stun stun-tcp 127.0.0.1:80 1"}) {
    Pair p;
    ASSERT_TRUE(send_line(p.old_end.get(), "sluice-handover 2"));
    ASSERT_TRUE(send_line(p.old_end.get(), "listener stun 127.0.0.1:80 0"));
    ASSERT_TRUE(send_line(p.old_end.get(), line));
    auto got = receive_handover(p.new_end.get(), kWait);
    ASSERT_FALSE(got) << line;
    EXPECT_EQ(got.status().message(),
              std::string(line).ends_with(" 1")
                  ? fmt::format("hand-over: unexpected '{}' with 0 sockets", line)
                  : fmt::format("hand-over: unexpected '{}'", line));
  }
}

// --- version 1, the format before listeners had other sockets -------------------------------

// The packets of a hand-over as they travel: each line, with as many descriptors as came.
std::vector<std::pair<std::string, size_t>> capture(const Handover& sent) {
  Pair p;
  Status send_status = Status::ok();
  std::thread sender([&] { send_status = send_handover(p.old_end.get(), sent); });
  std::vector<std::pair<std::string, size_t>> out;
  for (;;) {
    char buf[4096];
    std::vector<char> control(CMSG_SPACE(sizeof(int) * 253));
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = ::recvmsg(p.new_end.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) break;
    size_t fds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        ::close(fd);
      }
      fds += count;
    }
    out.emplace_back(std::string(buf, static_cast<size_t>(n)), fds);
    if (out.back().first == "end") break;
  }
  sender.join();
  EXPECT_TRUE(send_status) << send_status.message();
  return out;
}

// tests/unit/server/handover_v1.txt: a version-1 hand-over, one packet per line, as the last
// binary of that version wrote it. A packet carries the descriptors its line counts.
std::vector<std::pair<std::string, size_t>> version_1_fixture() {
  std::ifstream in(std::string(SLUICE_TEST_SOURCE_DIR) + "/unit/server/handover_v1.txt");
  EXPECT_TRUE(in) << "handover_v1.txt";
  std::vector<std::pair<std::string, size_t>> out;
  for (std::string line; std::getline(in, line);) {
    size_t fds = 0;
    if (line.starts_with("listener ") || line.starts_with("admin ")) {
      fds = std::stoul(line.substr(line.rfind(' ') + 1));
    }
    out.emplace_back(line, fds);
  }
  return out;
}

// The state the fixture holds, sent as version 1.
Handover version_1_state() {
  Handover h;
  h.version = 1;
  h.listeners.push_back(listener("web", "127.0.0.1:8080", 2));
  h.listeners.push_back(listener("resolver", "[::1]:5353", 1));
  tls::TicketKey k{};
  for (size_t i = 0; i < k.name.size(); ++i) k.name[i] = static_cast<unsigned char>(i);
  for (size_t i = 0; i < k.aes_key.size(); ++i) k.aes_key[i] = static_cast<unsigned char>(0xa0 + i);
  for (size_t i = 0; i < k.hmac_key.size(); ++i)
    k.hmac_key[i] = static_cast<unsigned char>(0xff - i);
  h.ticket_keys["web"] = {k};
  h.endpoints.push_back({"app", "10.0.0.1:80", true, 0, -1});
  h.endpoints.push_back({"app", "10.0.0.2:80", false, 3, 12345});
  dns::Cache::Saved a;
  a.key = "addr:api.example";
  a.answer.name = "api.example";
  a.answer.record_ttl = 30;
  a.answer.addresses = {*net::Address::parse_ip("10.0.0.1", 0), *net::Address::parse_ip("::1", 0)};
  a.left = std::chrono::milliseconds(12500);
  h.dns = {a};
  h.admin = HandedListener{"admin", address("127.0.0.1:9901"), {}, {}};
  h.admin->fds.push_back(listening_socket());
  return h;
}

TEST(Handover, Version1IsWrittenAsTheFixtureSays) {
  // Asked for version 1 (what a reader of that version takes), the writer sends no line a
  // version-1 reader does not know: the fixture's packets, byte for byte.
  Handover h = version_1_state();
  h.listeners[0].parts.push_back(part(SocketRole::kStunTcp, "127.0.0.1:8080", 2));
  EXPECT_EQ(capture(h), version_1_fixture());
}

TEST(Handover, TheLowestVersionIsWrittenWhenNothingNeedsTheNewer) {
  // No listener with other sockets: version 1, which a binary of that version reads (a
  // roll-back), byte for byte the fixture.
  Handover h = version_1_state();
  h.version = lowest_handover_version(h);
  EXPECT_EQ(h.version, 1u);
  EXPECT_EQ(capture(h), version_1_fixture());
  // A listener's other sockets need version 2; parts without sockets do not.
  h.listeners[1].parts.push_back(part(SocketRole::kStunTcp, "[::1]:5353", 0));
  EXPECT_EQ(lowest_handover_version(h), 1u);
  h.listeners[0].parts.push_back(part(SocketRole::kStunTcp, "127.0.0.1:8080", 2));
  EXPECT_EQ(lowest_handover_version(h), 2u);
}

TEST(Handover, BgpSessionsGoInVersion1Too) {
  // The BGP section has its own version: sessions need no hand-over version 2, and their
  // lines are sent (a binary that knows no BGP refuses the first, as any unknown line).
  Handover h = version_1_state();
  bgp::SessionTransfer t;
  t.peer = "192.0.2.2:179";
  t.fd = plain_socket();
  h.bgp.emplace(t.peer, std::move(t));
  h.version = lowest_handover_version(h);
  EXPECT_EQ(h.version, 1u);
  auto packets = capture(h);
  ASSERT_FALSE(packets.empty());
  EXPECT_EQ(packets.front().first, "sluice-handover 1");
  size_t with_socket = 0;
  for (const auto& [line, fds] : packets) {
    if (line.starts_with("bgp 1 ") && fds == 1) ++with_socket;
  }
  EXPECT_EQ(with_socket, 1u);
}

TEST(Handover, Version1FromTheFixtureIsRead) {
  Pair p;
  std::vector<net::Fd> keep;  // the sender's copies
  for (const auto& [line, count] : version_1_fixture()) {
    std::vector<int> raw;
    for (size_t i = 0; i < count; ++i) raw.push_back(keep.emplace_back(plain_socket()).get());
    iovec iov{const_cast<char*>(line.data()), line.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<size_t>(count, 1)));
    if (count > 0) {
      msg.msg_control = control.data();
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * count);
      std::memcpy(CMSG_DATA(c), raw.data(), sizeof(int) * count);
    }
    ASSERT_EQ(::sendmsg(p.old_end.get(), &msg, 0), static_cast<ssize_t>(line.size())) << line;
  }
  auto got = receive_handover(p.new_end.get(), kWait);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_EQ(got->version, 1u);
  ASSERT_EQ(got->listeners.size(), 2u);
  EXPECT_EQ(got->listeners[0].name, "web");
  EXPECT_EQ(got->listeners[0].address.to_string(), "127.0.0.1:8080");
  ASSERT_EQ(got->listeners[0].fds.size(), 2u);
  EXPECT_EQ(inode(got->listeners[0].fds[1].get()), inode(keep[1].get()));
  EXPECT_TRUE(got->listeners[0].parts.empty());
  EXPECT_EQ(got->listeners[1].address.to_string(), "[::1]:5353");
  ASSERT_EQ(got->endpoints.size(), 2u);
  EXPECT_EQ(got->endpoints[1].ejected_ms_left, 12345);
  ASSERT_EQ(got->dns.size(), 1u);
  EXPECT_EQ(got->dns[0].answer.addresses.size(), 2u);
  ASSERT_EQ(got->ticket_keys.at("web").size(), 1u);
  EXPECT_EQ(got->ticket_keys.at("web")[0].hmac_key[0], 0xff);
  ASSERT_TRUE(got->admin.has_value());
  EXPECT_EQ(inode(got->admin->fds[0].get()), inode(keep[3].get()));
}

}  // namespace
}  // namespace sluice::server
