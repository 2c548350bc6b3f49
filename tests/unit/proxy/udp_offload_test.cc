// UDP segmentation offloads on loopback sockets: runs of datagrams joined into one GSO send
// and cut back into the same datagrams by the kernel; a GRO read cut apart by DatagramBatch;
// the runs a send may not join (a larger size, an empty datagram, another destination, a
// size over what the path took).
#include "proxy/udp/udp_offload.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>

#include <cstring>

#include <string>
#include <vector>

#include "proxy/udp/datagram_socket.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace sluice::proxy::udp {
namespace {

net::Fd bound() {
  auto fd = bind_udp_socket(*net::Address::parse("127.0.0.1:0"));
  EXPECT_TRUE(static_cast<bool>(fd));
  return std::move(*fd);
}

net::Address address_of(const net::Fd& fd) {
  return *net::local_address(fd.get());
}

std::vector<std::string> datagrams(const std::vector<size_t>& sizes) {
  std::vector<std::string> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    out.emplace_back(sizes[i], static_cast<char>('a' + i % 26));
  }
  return out;
}

// Everything `fd` holds, one datagram each (a socket without GRO: the kernel cuts).
std::vector<std::string> drain(int fd, size_t want) {
  std::vector<std::string> got;
  char buf[70000];
  while (got.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n >= 0) got.emplace_back(buf, static_cast<size_t>(n));
  }
  return got;
}

SendCounts send_all(int fd, const net::Address& to, const std::vector<std::string>& data,
                    GsoState& gso) {
  sockaddr_storage storage{};
  std::memcpy(&storage, to.sockaddr_ptr(), to.length());
  std::vector<Outgoing> out;
  for (const auto& d : data) {
    out.push_back(
        {{}, {reinterpret_cast<const uint8_t*>(d.data()), d.size()}, &storage, to.length(), {}});
  }
  return send_datagrams(fd, out, gso);
}

TEST(UdpOffload, JoinedRunsArriveAsTheSameDatagrams) {
  if (!offload_support().gso) GTEST_SKIP() << "no UDP_SEGMENT here";
  net::Fd from = bound(), to = bound();
  // Runs: 4 × 100 + 37 (joined), 0 (alone), 3 × 512 (joined), 600 (larger: a new run), 1.
  auto sent = datagrams({100, 100, 100, 100, 37, 0, 512, 512, 512, 600, 1});
  GsoState gso{true};
  SendCounts c = send_all(from.get(), address_of(to), sent, gso);
  EXPECT_EQ(c.sent, sent.size());
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(c.gso_datagrams, 5u + 3u + 2u) << "100×4+37, 512×3, 600+1 joined";
  EXPECT_EQ(c.calls, 1u) << "one sendmmsg";
  EXPECT_EQ(drain(to.get(), sent.size()), sent);
}

TEST(UdpOffload, WithoutGsoEveryDatagramIsItsOwnMessage) {
  net::Fd from = bound(), to = bound();
  auto sent = datagrams({100, 100, 100, 5});
  GsoState off;
  SendCounts c = send_all(from.get(), address_of(to), sent, off);
  EXPECT_EQ(c.sent, 4u);
  EXPECT_EQ(c.gso_datagrams, 0u);
  EXPECT_EQ(drain(to.get(), sent.size()), sent);
}

TEST(UdpOffload, DatagramsToTwoDestinationsAreNotJoined) {
  if (!offload_support().gso) GTEST_SKIP() << "no UDP_SEGMENT here";
  net::Fd from = bound(), a = bound(), b = bound();
  sockaddr_storage sa{}, sb{};
  std::memcpy(&sa, address_of(a).sockaddr_ptr(), sizeof(sockaddr_in));
  std::memcpy(&sb, address_of(b).sockaddr_ptr(), sizeof(sockaddr_in));
  std::string d(50, 'x');
  std::span<const uint8_t> body(reinterpret_cast<const uint8_t*>(d.data()), d.size());
  std::vector<Outgoing> out = {{{}, body, &sa, sizeof(sockaddr_in), {}},
                               {{}, body, &sa, sizeof(sockaddr_in), {}},
                               {{}, body, &sb, sizeof(sockaddr_in), {}}};
  GsoState gso{true};
  SendCounts c = send_datagrams(from.get(), out, gso);
  EXPECT_EQ(c.sent, 3u);
  EXPECT_EQ(c.gso_datagrams, 2u) << "the two to a joined, the one to b alone";
  EXPECT_EQ(drain(a.get(), 2).size(), 2u);
  EXPECT_EQ(drain(b.get(), 1).size(), 1u);
}

TEST(UdpOffload, DatagramsOverTheLearnedSegmentSizeAreSentUnjoined) {
  if (!offload_support().gso) GTEST_SKIP() << "no UDP_SEGMENT here";
  net::Fd from = bound(), to = bound();
  // What a path that refused 2,000-byte segments (EINVAL) leaves: max_segment below them.
  auto sent = datagrams({2000, 2000});
  GsoState gso{true};
  gso.max_segment = 1999;
  SendCounts c = send_all(from.get(), address_of(to), sent, gso);
  EXPECT_EQ(c.sent, 2u);
  EXPECT_EQ(c.gso_datagrams, 0u) << "over max_segment: not joined";
  EXPECT_EQ(drain(to.get(), 2), sent);
}

TEST(UdpOffload, GroReadIsCutIntoTheSentDatagrams) {
  if (!offload_support().gro || !offload_support().gso) GTEST_SKIP() << "no UDP_GRO here";
  net::Fd from = bound(), to = bound();
  ASSERT_TRUE(set_gro(to.get(), true));
  // On loopback a GSO send reaches a GRO socket joined: one read of 4 datagrams.
  auto sent = datagrams({300, 300, 300, 10});
  GsoState gso{true};
  ASSERT_EQ(send_all(from.get(), address_of(to), sent, gso).gso_datagrams, 4u);
  DatagramBatch batch(1000, true);
  pollfd p{to.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  auto n = batch.receive(to.get());
  ASSERT_TRUE(static_cast<bool>(n));
  ASSERT_EQ(*n, 4u);
  EXPECT_EQ(batch.gro_datagrams(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    auto d = batch.data(i);
    EXPECT_EQ(std::string(d.begin(), d.end()), sent[i]) << i;
    EXPECT_FALSE(batch.too_large(i));
    EXPECT_EQ(batch.source(i), address_of(from));
  }
}

TEST(UdpOffload, GroSegmentsOverTheLimitAreTooLargeEach) {
  if (!offload_support().gro || !offload_support().gso) GTEST_SKIP() << "no UDP_GRO here";
  net::Fd from = bound(), to = bound();
  ASSERT_TRUE(set_gro(to.get(), true));
  auto sent = datagrams({300, 300, 200});
  GsoState gso{true};
  send_all(from.get(), address_of(to), sent, gso);
  DatagramBatch batch(250, true);
  pollfd p{to.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  auto n = batch.receive(to.get());
  ASSERT_TRUE(static_cast<bool>(n));
  ASSERT_EQ(*n, 3u);
  EXPECT_TRUE(batch.too_large(0));
  EXPECT_TRUE(batch.too_large(1));
  EXPECT_FALSE(batch.too_large(2)) << "the 200-byte last one fits";
  EXPECT_EQ(batch.data(2).size(), 200u);
}

}  // namespace
}  // namespace sluice::proxy::udp
