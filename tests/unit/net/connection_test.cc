#include "net/connection.h"

#include <linux/tcp.h>  // the full struct tcp_info (glibc's is older)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "net/listener.h"
#include "net/tcp_pair.h"

namespace sluice::net {
namespace {

struct Callbacks final : ConnectionCallbacks {
  void on_read() override {}
  void on_read_closed() override {}
  void on_error(int) override {}
};

// Everything the client receives up to the server's FIN (blocking reads).
std::string read_to_end(int fd) {
  std::string got;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
}

uint32_t segments_in(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
  return ti.tcpi_segs_in;
}

TEST(Connection, CloseIfQuietSendsTheLastBytesAndTheFinInOneSegment) {
  event::Loop loop;
  Callbacks cb;
  TcpPair p = connected_pair();
  // The handshake brought the client one segment (the SYN-ACK).
  EXPECT_EQ(segments_in(p.client.get()), 1u);
  Connection conn(loop, cb);
  ASSERT_TRUE(conn.adopt(std::move(p.server)));
  conn.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
  ASSERT_TRUE(conn.close_if_quiet());
  EXPECT_FALSE(conn.open());
  EXPECT_EQ(read_to_end(p.client.get()),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
  // The response and the FIN came together: one segment more, not two.
  EXPECT_EQ(segments_in(p.client.get()), 2u);
}

TEST(Connection, CloseIfQuietLeavesAConnectionWithUnreadBytesOpenAndItsResponseGoesOut) {
  event::Loop loop;
  Callbacks cb;
  TcpPair p = connected_pair();
  int server = p.server.get();
  ASSERT_EQ(::send(p.client.get(), "more", 4, 0), 4);
  // Loopback delivers at once; the bound only guards a slow machine.
  char peek[8];
  for (int i = 0; i < 1000 && ::recv(server, peek, sizeof peek, MSG_PEEK) != 4; ++i) ::usleep(1000);
  ASSERT_EQ(::recv(server, peek, sizeof peek, MSG_PEEK), 4);
  Connection conn(loop, cb);
  ASSERT_TRUE(conn.adopt(std::move(p.server)));
  conn.write("bye");
  // Closing with the client's bytes unread would answer them with a reset.
  EXPECT_FALSE(conn.close_if_quiet());
  EXPECT_TRUE(conn.open());
  // The half-close pushes out what close_if_quiet() held back for its FIN.
  conn.shutdown_write();
  EXPECT_EQ(read_to_end(p.client.get()), "bye");
}

}  // namespace
}  // namespace sluice::net
