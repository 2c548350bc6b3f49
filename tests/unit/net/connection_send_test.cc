// Connection sending by completion (io_uring, Poller::send): what it flushes goes with the
// loop's next wait(), in flight until its completion; what its owner and its peer see does
// not change: every byte once and in order, the watermark, the half-close after the last
// byte, one error for a reset.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/buffer.h"
#include "base/clock.h"
#include "net/completion_test_support.h"
#include "net/connection.h"

namespace sluice::net {
namespace {

using ConnectionSend = CompletionConnectionTest;

// What the client reads: runs the loop and reads at most `per_round` bytes after each of
// its rounds (a slow reader), until `want` bytes came, or the end (or an error) if `to_end`.
// Returns whether the end was seen.
bool read_while_running(event::Loop& loop, int client, std::string& got, size_t want,
                        size_t per_round, bool to_end) {
  const MonoTime deadline = MonoClock::now() + std::chrono::seconds(30);
  std::vector<char> buf(per_round);
  while (MonoClock::now() < deadline) {
    loop.run_until_idle();
    ssize_t n = ::recv(client, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      got.append(buf.data(), static_cast<size_t>(n));
      if (!to_end && got.size() >= want) return false;
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    pollfd pfd{client, POLLIN, 0};
    ::poll(&pfd, 1, 1);
  }
  return false;
}

// Bytes the kernel holds in a socket's send queue.
int unsent(int fd) {
  int n = -1;
  EXPECT_EQ(::ioctl(fd, SIOCOUTQ, &n), 0);
  return n;
}

// Small socket buffers, so that a few MiB cannot all fit in the kernel.
void small_buffers(int client, int server) {
  int size = 64 * 1024;
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
  ASSERT_EQ(::setsockopt(server, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
}

// Runs the loop until a send of `conn` waits for the peer's window: its in-flight bytes stay.
bool wait_until_stuck(event::Loop& loop, Connection& conn) {
  size_t before = SIZE_MAX;
  for (int i = 0; i < 1000; ++i) {
    loop.run_until_idle();
    size_t now = conn.queued();
    if (now > 0 && now == before) return true;
    before = now;
    ::usleep(1000);
  }
  return false;
}

TEST_F(ConnectionSend, AnAnswerGoesWithTheNextWaitWholeAndInOrder) {
  ASSERT_TRUE(conn_.sending_by_completion());
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n";
  const std::string body = pattern(20000);
  conn_.write(head);
  conn_.flush();
  // Handed to the loop: in flight, not in the socket yet, and the output buffer went with it.
  EXPECT_EQ(conn_.queued(), head.size());
  EXPECT_EQ(unsent(server_fd_), 0);
  EXPECT_EQ(conn_.output().capacity(), 0u);
  // Written meanwhile: behind it.
  conn_.write(body.substr(0, 5000));
  conn_.write(body.substr(5000));
  EXPECT_EQ(conn_.queued(), head.size() + body.size());
  std::string got;
  read_while_running(loop_, p_.client.get(), got, head.size() + body.size(), 64 * 1024, false);
  EXPECT_TRUE(got == head + body) << "every byte once, in order";
  // The last completion may come a little after the bytes.
  EXPECT_TRUE(run_until(loop_, [&] { return conn_.queued() == 0; }));
  EXPECT_EQ(conn_.output().capacity(), 0u) << "an idle connection keeps no output buffer";
  EXPECT_TRUE(conn_.open());
  EXPECT_TRUE(rec_.errors.empty());
  // The next answer goes the same way.
  conn_.write("again");
  got.clear();
  read_while_running(loop_, p_.client.get(), got, 5, 64 * 1024, false);
  EXPECT_EQ(got, "again");
}

TEST_F(ConnectionSend, ALargeAnswerKeepsToTheWatermarkAndDrainsOnceInFlightBytesAreSent) {
  constexpr size_t kWatermark = 256 * 1024;
  constexpr size_t kPiece = 48 * 1024;
  small_buffers(p_.client.get(), server_fd_);
  conn_.set_high_watermark(kWatermark);
  const std::string data = pattern(4 * 1024 * 1024);
  size_t produced = 0;
  size_t most_queued = 0;
  std::vector<size_t> queued_at_drain;
  // A writer that stops at the watermark and goes on when told the queue drained.
  auto produce = [&] {
    while (produced < data.size() && !conn_.above_high_watermark()) {
      size_t n = std::min(kPiece, data.size() - produced);
      conn_.write(std::string_view(data).substr(produced, n));
      produced += n;
      most_queued = std::max(most_queued, conn_.queued());
    }
  };
  rec_.on_drained_hook = [&] {
    queued_at_drain.push_back(conn_.queued());
    produce();
  };
  produce();
  EXPECT_TRUE(conn_.above_high_watermark());
  std::string got;
  read_while_running(loop_, p_.client.get(), got, data.size(), 16 * 1024, false);
  ASSERT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data) << "every byte once, in order";
  EXPECT_LE(most_queued, kWatermark + kPiece) << "the writer stopped at the watermark";
  EXPECT_GE(queued_at_drain.size(), 2u) << "the writer was held back and resumed";
  for (size_t q : queued_at_drain) EXPECT_EQ(q, 0u) << "drained: nothing queued nor in flight";
  EXPECT_TRUE(run_until(loop_, [&] { return conn_.queued() == 0; }));
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionSend, AnUploadWhileASendIsInFlightLosesNeitherWay) {
  // Both ways at once (a tunnel, a large answer to a client that uploads meanwhile): the
  // answer waits in the kernel for the client's window when a full receive piece makes the
  // connection read for itself; the answer's completions still come, and then what follows.
  small_buffers(p_.client.get(), server_fd_);
  const std::string answer = pattern(2 * 1024 * 1024);
  conn_.write(answer);
  ASSERT_TRUE(wait_until_stuck(loop_, conn_));
  ASSERT_GT(conn_.queued(), 0u);
  const std::string upload = pattern(256 * 1024);
  send_all(p_.client.get(), upload);
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == upload.size(); }));
  EXPECT_TRUE(rec_.got == upload);
  EXPECT_FALSE(conn_.receiving_by_completion()) << "full pieces: it reads for itself";
  std::string got;
  read_while_running(loop_, p_.client.get(), got, answer.size(), 64 * 1024, false);
  ASSERT_EQ(got.size(), answer.size());
  EXPECT_TRUE(got == answer);
  ASSERT_TRUE(run_until(loop_, [&] { return conn_.queued() == 0; }))
      << "the send's completions reached the connection";
  conn_.write("after");
  got.clear();
  read_while_running(loop_, p_.client.get(), got, 5, 64, false);
  EXPECT_EQ(got, "after");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionSend, TheHalfCloseComesAfterEveryByteInFlight) {
  const std::string data = pattern(3 * 1024 * 1024);
  conn_.write("head");
  conn_.flush();
  ASSERT_EQ(conn_.queued(), 4u) << "in flight";
  conn_.write(data);  // behind it, though large
  conn_.shutdown_write();
  EXPECT_EQ(conn_.queued(), 4 + data.size());
  std::string got;
  EXPECT_TRUE(read_while_running(loop_, p_.client.get(), got, 0, 32 * 1024, true))
      << "the FIN came";
  EXPECT_EQ(got.size(), 4 + data.size());
  EXPECT_TRUE(got == "head" + data) << "the FIN after every byte, none reordered";
  EXPECT_TRUE(conn_.open()) << "half-closed";
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionSend, CloseIfQuietWithBytesInFlightLeavesTheCloseToTheHalfClose) {
  const std::string answer = pattern(1000);
  int quiet = -1;
  rec_.consume = false;
  rec_.on_read_hook = [&] {
    conn_.input().consume(conn_.input().size());
    conn_.write(answer);
    conn_.flush();  // in flight
    conn_.write("tail");
    quiet = conn_.close_if_quiet() ? 1 : 0;
    if (quiet == 0) conn_.shutdown_write();
  };
  send_all(p_.client.get(), "last request");
  std::string got;
  EXPECT_TRUE(read_while_running(loop_, p_.client.get(), got, 0, 64 * 1024, true));
  EXPECT_EQ(quiet, 0) << "bytes in flight: not closed";
  EXPECT_EQ(got, answer + "tail") << "the whole answer, then the FIN";
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionSend, CloseIfQuietWithNothingInFlightSendsAtOnceAndCloses) {
  const std::string answer = pattern(1000);
  int quiet = -1;
  rec_.consume = false;
  rec_.on_read_hook = [&] {
    conn_.input().consume(conn_.input().size());
    conn_.write(answer);
    quiet = conn_.close_if_quiet() ? 1 : 0;
  };
  send_all(p_.client.get(), "last request");
  std::string got;
  EXPECT_TRUE(read_while_running(loop_, p_.client.get(), got, 0, 64 * 1024, true));
  EXPECT_EQ(quiet, 1);
  EXPECT_EQ(got, answer) << "the answer, then the FIN";
  EXPECT_FALSE(conn_.open());
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionSend, APeerResetWhileASendIsInFlightIsOneError) {
  small_buffers(p_.client.get(), server_fd_);
  conn_.write("x");
  conn_.flush();
  conn_.write(pattern(8 * 1024 * 1024));
  ASSERT_TRUE(wait_until_stuck(loop_, conn_));
  ASSERT_GT(conn_.queued(), 0u) << "a send waits for the client's window";
  linger l{1, 0};
  ASSERT_EQ(::setsockopt(p_.client.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  p_.client.reset();
  ASSERT_TRUE(run_until(loop_, [&] { return !rec_.errors.empty(); }));
  for (int i = 0; i < 20; ++i) loop_.run_until_idle();
  ASSERT_EQ(rec_.errors.size(), 1u) << "reported once";
  EXPECT_TRUE(rec_.errors[0] == ECONNRESET || rec_.errors[0] == EPIPE) << rec_.errors[0];
  EXPECT_FALSE(conn_.open());
  EXPECT_EQ(conn_.queued(), 0u);
}

TEST(ConnectionSendLifetime, ClosedAndDestroyedWithASendInFlight) {
  event::Loop loop{Clock::steady(), event::Backend::kIoUring};
  if (loop.backend() != event::Backend::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  loop.set_receive(event::Receive::kCompletion);
  TcpPair p = connected_pair();
  small_buffers(p.client.get(), p.server.get());
  Recorder rec;
  auto conn = std::make_unique<Connection>(loop, rec);
  std::string why;
  ASSERT_NO_FATAL_FAILURE(
      start_receiving(loop, *conn, rec, std::move(p.server), p.client.get(), &why));
  if (!why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(conn->sending_by_completion());
  const std::string data = "x" + pattern(8 * 1024 * 1024);
  conn->write(data.substr(0, 1));
  conn->flush();
  conn->write(std::string_view(data).substr(1));
  ASSERT_TRUE(wait_until_stuck(loop, *conn));
  // The kernel has the send (waiting for the client's window) when the owner lets go.
  conn->close();
  conn.reset();
  // Memory freed since is written over: had the loop let go of the bytes in flight, the
  // client would read this.
  for (int i = 0; i < 64; ++i) {
    Buffer junk;
    junk.append(std::string(16 * 1024, 'Z'));
  }
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(std::make_unique<char[]>(256 * 1024));
    std::fill_n(blocks.back().get(), 256 * 1024, 'Z');
  }
  std::string got;
  EXPECT_TRUE(read_while_running(loop, p.client.get(), got, 0, 64 * 1024, true)) << "the end came";
  EXPECT_LT(got.size(), data.size()) << "the cancelled send's rest was dropped";
  EXPECT_TRUE(got == data.substr(0, got.size())) << "what came is what was written, in order";
  EXPECT_TRUE(rec.errors.empty());
}

TEST(ConnectionSendChoice, DirectWhereTheLoopCannotSendByCompletion) {
  ::setenv("SLUICE_IO_URING_SEND", "direct", 1);
  event::Loop loop{Clock::steady(), event::Backend::kIoUring};
  ::unsetenv("SLUICE_IO_URING_SEND");
  if (loop.backend() != event::Backend::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  EXPECT_FALSE(loop.poller().can_send());
  loop.set_receive(event::Receive::kCompletion);
  TcpPair p = connected_pair();
  Recorder rec;
  Connection conn(loop, rec);
  std::string why;
  ASSERT_NO_FATAL_FAILURE(
      start_receiving(loop, conn, rec, std::move(p.server), p.client.get(), &why));
  if (!why.empty()) GTEST_SKIP() << why;
  EXPECT_FALSE(conn.sending_by_completion()) << "receives by completion, sends with send(2)";
  conn.write("answer");
  conn.flush();
  EXPECT_EQ(conn.queued(), 0u) << "in the socket at once";
  EXPECT_TRUE(wait_unread(p.client.get(), 6));
}

TEST(ConnectionSendChoice, AnUpstreamConnectionSendsDirectly) {
  event::Loop loop{Clock::steady(), event::Backend::kIoUring};
  if (loop.backend() != event::Backend::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  loop.set_receive(event::Receive::kCompletion);
  TcpPair p = connected_pair();
  Recorder rec;
  Connection conn(loop, rec);
  rec.conn = &conn;
  ASSERT_TRUE(conn.adopt_connecting(std::move(p.server), true));
  for (int i = 0; i < 3; ++i) {
    send_all(p.client.get(), "r");
    ASSERT_TRUE(run_until(loop, [&] { return rec.reads == i + 1; }));
  }
  EXPECT_FALSE(conn.receiving_by_completion());
  EXPECT_FALSE(conn.sending_by_completion());
  conn.write("request");
  conn.flush();
  EXPECT_EQ(conn.queued(), 0u) << "in the socket at once";
}

}  // namespace
}  // namespace sluice::net
