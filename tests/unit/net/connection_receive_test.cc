// Connection receiving by completion (io_uring, Poller::add_receiver): what its owner sees is
// what it sees reading on readiness, backpressure included.
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "net/completion_test_support.h"
#include "net/connection.h"

namespace sluice::net {
namespace {

using ConnectionReceive = CompletionConnectionTest;

TEST_F(ConnectionReceive, BytesThenTheFinReachTheOwnerAndAnIdleConnectionKeepsNoBuffer) {
  send_all(p_.client.get(), "GET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == 18; }));
  EXPECT_EQ(rec_.got, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(conn_.input().capacity(), 0u) << "consumed: the input buffer went back";
  EXPECT_FALSE(conn_.drained_this_iteration()) << "bytes may wait in the loop's batch";
  EXPECT_EQ(rec_.closes, 0);
  ASSERT_EQ(::shutdown(p_.client.get(), SHUT_WR), 0);
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.closes == 1; }));
  EXPECT_TRUE(conn_.peer_closed());
  EXPECT_TRUE(conn_.open()) << "half-closed: the connection may still answer";
  conn_.write("bye");
  conn_.shutdown_write();
  loop_.run_until_idle();
  char buf[8];
  EXPECT_EQ(::recv(p_.client.get(), buf, sizeof buf, 0), 3);
  EXPECT_EQ(std::string(buf, 3), "bye");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionReceive, BytesTakenWhileReadingIsOffWaitForItAndComeInOrder) {
  const std::string data = pattern(64 * 1024);
  // Everything arrived before the loop runs: the receive took a buffer's worth at a time,
  // and the pieces wait in one batch (or the socket).
  send_all(p_.client.get(), data);
  ASSERT_EQ(::shutdown(p_.client.get(), SHUT_WR), 0);
  ASSERT_TRUE(wait_delivered(p_.client.get()));
  rec_.on_read_hook = [&] {
    if (rec_.reads == 1) conn_.set_read_enabled(false);
  };
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.reads >= 1; }));
  // Reading is off: several iterations hand over nothing more, nor the FIN.
  for (int i = 0; i < 20; ++i) loop_.run_until_idle();
  EXPECT_EQ(rec_.reads, 1);
  EXPECT_EQ(rec_.closes, 0);
  EXPECT_FALSE(conn_.peer_closed());
  const size_t first = rec_.got.size();
  EXPECT_GT(first, 0u);
  // Some of it may wait in input(), the rest in the socket (its receive was cancelled).
  EXPECT_EQ(first + conn_.input().size() + static_cast<size_t>(unread(server_fd_)), data.size());
  conn_.set_read_enabled(true);
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.closes == 1; }));
  EXPECT_EQ(rec_.got.size(), data.size());
  EXPECT_TRUE(rec_.got == data) << "none lost, none reordered";
  EXPECT_EQ(rec_.closed_after, data.size()) << "the FIN after every byte";
  EXPECT_EQ(conn_.input().capacity(), 0u);
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionReceive, PausedTheSocketKeepsWhatArrivesSoThePeersWindowCloses) {
  rec_.on_read_hook = [&] { conn_.set_read_enabled(false); };
  send_all(p_.client.get(), "first");
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.reads == 1; }));
  loop_.run_until_idle();  // the cancellation goes to the kernel
  loop_.run_until_idle();
  send_all(p_.client.get(), "second");
  ASSERT_TRUE(wait_unread(server_fd_, 6));
  for (int i = 0; i < 20; ++i) loop_.run_until_idle();
  EXPECT_EQ(unread(server_fd_), 6) << "nobody receives while reading is off";
  EXPECT_EQ(rec_.reads, 1);
  rec_.on_read_hook = nullptr;
  conn_.set_read_enabled(true);
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got == "firstsecond"; }));
}

TEST_F(ConnectionReceive, CloseIfQuietCountsBytesWaitingInTheLoopsBatch) {
  const std::string data = pattern(32 * 1024);
  send_all(p_.client.get(), data);
  ASSERT_TRUE(wait_delivered(p_.client.get()));
  int quiet = -1;
  rec_.on_read_hook = [&] {
    // The first piece: the rest is in the batch or the socket, either way unread.
    if (rec_.reads == 1) quiet = conn_.close_if_quiet() ? 1 : 0;
  };
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == data.size(); }));
  EXPECT_EQ(quiet, 0);
  EXPECT_TRUE(conn_.open());
  EXPECT_TRUE(rec_.got == data);
}

TEST_F(ConnectionReceive, AnUploadIsReadOnReadinessInLargeReadsAndSmallRequestsComeBack) {
  // The receive takes what arrives at once, in pieces, until the stop reaches the kernel;
  // then the connection reads for itself.
  const std::string first = pattern(1024 * 1024);
  std::thread sender([&] { send_all(p_.client.get(), first); });
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == first.size(); }));
  sender.join();
  EXPECT_TRUE(rec_.got == first) << "none lost, none reordered";
  EXPECT_FALSE(conn_.receiving_by_completion()) << "full pieces: back to reading itself";
  // The next large request is read on readiness from the start, in large reads.
  rec_.reads = 0;
  std::string data = first;
  std::reverse(data.begin(), data.end());
  sender = std::thread([&] { send_all(p_.client.get(), data); });
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == first.size() + data.size(); }));
  sender.join();
  EXPECT_TRUE(rec_.got.substr(first.size()) == data) << "none lost, none reordered";
  EXPECT_FALSE(conn_.receiving_by_completion());
  EXPECT_LT(rec_.reads, 128) << "1 MiB in 4 KiB pieces would be 256 reads";
  rec_.got.erase(0, first.size());
  send_all(p_.client.get(), "GET /next HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == data.size() + 22; }));
  EXPECT_TRUE(conn_.receiving_by_completion()) << "a small request: the loop receives again";
  send_all(p_.client.get(), "GET /last HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.got.size() == data.size() + 44; }));
  EXPECT_EQ(rec_.got.substr(data.size()), "GET /next HTTP/1.1\r\n\r\nGET /last HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(rec_.errors.empty());
}

TEST_F(ConnectionReceive, AResetIsAnError) {
  send_all(p_.client.get(), "x");
  ASSERT_TRUE(run_until(loop_, [&] { return rec_.reads == 1; }));
  linger l{1, 0};
  ASSERT_EQ(::setsockopt(p_.client.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  p_.client.reset();
  ASSERT_TRUE(run_until(loop_, [&] { return !rec_.errors.empty(); }));
  EXPECT_EQ(rec_.errors, std::vector<int>{ECONNRESET});
  EXPECT_FALSE(conn_.open());
  EXPECT_EQ(rec_.closes, 0);
}

TEST(ConnectionReceiveChoice, AConnectionReadOnceAndClosedNeverArmsAReceive) {
  event::Loop loop{Clock::steady(), event::Backend::kIoUring};
  if (loop.backend() != event::Backend::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  loop.set_receive(event::Receive::kCompletion);
  Recorder rec;
  Connection conn(loop, rec);
  rec.conn = &conn;
  TcpPair p = connected_pair();
  // As with TCP_DEFER_ACCEPT: the request is there when the connection is taken.
  send_all(p.client.get(), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(wait_unread(p.server.get(), 37));
  ASSERT_TRUE(conn.adopt(std::move(p.server)));
  EXPECT_FALSE(conn.receiving_by_completion()) << "not before the first bytes were read";
  rec.on_read_hook = [&] {
    conn.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  };
  ASSERT_TRUE(run_until(loop, [&] { return rec.reads == 1; }));
  EXPECT_FALSE(conn.receiving_by_completion()) << "one wake-up to read: read on readiness";
  EXPECT_FALSE(conn.sending_by_completion()) << "and its answer goes with send(2)";
  EXPECT_TRUE(conn.close_if_quiet());
  loop.run_until_idle();  // the poll's cancellation lets go of the socket
  timeval wait{10, 0};
  ASSERT_EQ(::setsockopt(p.client.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait), 0);
  char buf[128];
  EXPECT_EQ(::recv(p.client.get(), buf, sizeof buf, 0), 57);
  EXPECT_EQ(::recv(p.client.get(), buf, sizeof buf, 0), 0) << "closed after the answer";
  EXPECT_TRUE(rec.errors.empty());
}

TEST(ConnectionReceiveChoice, ReadinessWhenAskedOnEpollAndThroughATransport) {
  event::Loop epoll{Clock::steady(), event::Backend::kEpoll};
  epoll.set_receive(event::Receive::kCompletion);
  EXPECT_FALSE(epoll.receive_by_completion()) << "epoll has no completion-based receive";
  event::Loop uring{Clock::steady(), event::Backend::kIoUring};
  if (uring.backend() != event::Backend::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  uring.set_receive(event::Receive::kReadiness);
  Recorder rec;
  Connection conn(uring, rec);
  TcpPair p = connected_pair();
  ASSERT_TRUE(conn.adopt(std::move(p.server)));
  rec.conn = &conn;
  for (size_t i = 1; i <= 3; ++i) {
    send_all(p.client.get(), std::to_string(i));
    ASSERT_TRUE(run_until(uring, [&] { return rec.got.size() == i; }));
  }
  EXPECT_FALSE(conn.receiving_by_completion()) << "three wake-ups to read, all on readiness";
  EXPECT_FALSE(conn.sending_by_completion()) << "and sends with send(2)";
  EXPECT_EQ(rec.got, "123");
}

}  // namespace
}  // namespace sluice::net
