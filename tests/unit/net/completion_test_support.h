// What the tests of connections receiving (and sending) by completion share: a recording
// owner, a loopback pair, and a Connection brought to receive by completion as a listener's
// would be (its first bytes read on readiness, the loop receiving from its second wake-up).
#pragma once

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "event/loop.h"
#include "net/connection.h"
#include "net/tcp_pair.h"

namespace sluice::net {

struct Recorder final : ConnectionCallbacks {
  void on_read() override {
    ++reads;
    if (on_read_hook) on_read_hook();
    if (consume) {
      got.append(conn->input().view());
      conn->input().consume(conn->input().size());
    }
  }
  void on_read_closed() override {
    ++closes;
    closed_after = got.size();
  }
  void on_write_drained() override {
    ++drains;
    if (on_drained_hook) on_drained_hook();
  }
  void on_error(int err) override { errors.push_back(err); }

  Connection* conn = nullptr;
  bool consume = true;
  std::function<void()> on_read_hook;
  std::function<void()> on_drained_hook;
  std::string got;
  int reads = 0;
  int closes = 0;
  int drains = 0;
  size_t closed_after = 0;
  std::vector<int> errors;
};

inline std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + static_cast<char>(i % 23));
  return s;
}

inline void send_all(int fd, const std::string& data) {
  ASSERT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
}

// Bytes waiting in the socket's receive queue.
inline int unread(int fd) {
  int n = -1;
  EXPECT_EQ(::ioctl(fd, SIOCINQ, &n), 0);
  return n;
}

// Runs the loop until `done` (10 s at most: a sanitizer build on a busy machine).
inline bool run_until(event::Loop& loop, const std::function<bool()>& done) {
  const MonoTime deadline = MonoClock::now() + std::chrono::seconds(10);
  while (!done() && MonoClock::now() < deadline) loop.run_until_idle();
  return done();
}

// Waits (without the loop) until everything the sender wrote reached the other socket
// (which may have handed it to the loop's receive already).
inline bool wait_delivered(int sender) {
  const MonoTime deadline = MonoClock::now() + std::chrono::seconds(10);
  int n = -1;
  while ((::ioctl(sender, SIOCOUTQ, &n) != 0 || n != 0) && MonoClock::now() < deadline) {
    ::usleep(1000);
  }
  return n == 0;
}

// Waits (without the loop) until the socket holds `n` unread bytes.
inline bool wait_unread(int fd, int n) {
  const MonoTime deadline = MonoClock::now() + std::chrono::seconds(10);
  while (unread(fd) != n && MonoClock::now() < deadline) ::usleep(1000);
  return unread(fd) == n;
}

// Adopts `server` into `conn` and brings it to receive by completion: the first bytes are
// read on readiness; the second wake-up to read hands the connection to the loop's receive.
// `rec` is left as if nothing had been read. False (with the reason in `why`) when the loop
// cannot receive by completion here.
inline void start_receiving(event::Loop& loop, Connection& conn, Recorder& rec, Fd server,
                            int client, std::string* why) {
  rec.conn = &conn;
  ASSERT_TRUE(conn.adopt(std::move(server)));
  ASSERT_NO_FATAL_FAILURE(send_all(client, "1"));
  ASSERT_TRUE(run_until(loop, [&] { return rec.reads == 1; }));
  ASSERT_FALSE(conn.receiving_by_completion());
  ASSERT_NO_FATAL_FAILURE(send_all(client, "2"));
  ASSERT_TRUE(run_until(loop, [&] { return rec.reads == 2; }));
  if (!conn.receiving_by_completion()) {
    *why = "no completion-based receive";
    return;
  }
  ASSERT_EQ(rec.got, "12");
  rec.got.clear();
  rec.reads = 0;
}

class CompletionConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (loop_.backend() != event::Backend::kIoUring) GTEST_SKIP() << "io_uring unavailable";
    loop_.set_receive(event::Receive::kCompletion);
    p_ = connected_pair();
    server_fd_ = p_.server.get();
    std::string why;
    ASSERT_NO_FATAL_FAILURE(
        start_receiving(loop_, conn_, rec_, std::move(p_.server), p_.client.get(), &why));
    if (!why.empty()) GTEST_SKIP() << why;
  }

  event::Loop loop_{Clock::steady(), event::Backend::kIoUring};
  Recorder rec_;
  Connection conn_{loop_, rec_};
  TcpPair p_;
  int server_fd_ = -1;
};

}  // namespace sluice::net
