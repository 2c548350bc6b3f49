// Completion-based send (Poller::send): the bytes go in order, in as many pieces as the
// socket takes; the backend keeps them until the kernel let go of them, a removal included.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/buffer.h"
#include "base/clock.h"
#include "event/loop.h"
#include "event/poller.h"

namespace sluice::event {
namespace {

struct SendRecorder final : RecvHandler {
  void on_io(uint32_t) override {}
  void on_received(const char*, size_t) override {}
  void on_receive_failed(int) override {}
  void on_sent(size_t size) override {
    sent += size;
    ++pieces;
  }
  void on_send_failed(int err) override { failures.push_back(err); }
  size_t sent = 0;
  int pieces = 0;
  std::vector<int> failures;
};

// A connected, non-blocking AF_UNIX stream pair; `a` is the sender.
struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    a = fds[0];
    b = fds[1];
  }
  ~SocketPair() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  int a = -1;
  int b = -1;
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('A' + static_cast<char>(i % 41));
  return s;
}

class PollerSend : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Status s = probe_io_uring(); !s) GTEST_SKIP() << "io_uring: " << s.message();
    loop_ = std::make_unique<Loop>(Clock::steady(), Backend::kIoUring);
    if (!loop_->poller().can_send()) GTEST_SKIP() << "no completion-based send";
  }
  Poller& poller() { return loop_->poller(); }

  // Runs the loop and reads `fd` until the end (or `want` bytes), 30 s at most.
  bool read_to_end(int fd, std::string& got, size_t want = SIZE_MAX) {
    const MonoTime deadline = MonoClock::now() + std::chrono::seconds(30);
    char buf[64 * 1024];
    while (MonoClock::now() < deadline && got.size() < want) {
      loop_->run_until_idle();
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        return true;
      } else if (errno != EAGAIN) {
        return false;
      }
    }
    return got.size() >= want;
  }

  std::unique_ptr<Loop> loop_;
};

TEST(PollerSendEpoll, NoneOnEpoll) {
  Loop loop{Clock::steady(), Backend::kEpoll};
  EXPECT_FALSE(loop.poller().can_send());
  SocketPair p;
  SendRecorder r;
  ASSERT_TRUE(loop.poller().add(p.a, kReadable, &r).is_ok());
  Buffer bytes;
  bytes.append("x");
  EXPECT_EQ(loop.poller().send(p.a, bytes, 0).sys_errno(), EOPNOTSUPP);
  EXPECT_EQ(bytes.size(), 1u) << "refused: the caller keeps its bytes";
  loop.poller().remove(p.a);
}

TEST_F(PollerSend, BytesGoInOrderInAsManyPiecesAsTheSocketTakes) {
  SocketPair p;
  SendRecorder r;
  ASSERT_TRUE(poller().add_receiver(p.a, &r).is_ok());
  const std::string data = pattern(4 * 1024 * 1024);  // far more than the socket holds
  Buffer bytes;
  bytes.append(data);
  ASSERT_TRUE(poller().send(p.a, bytes, 0).is_ok());
  EXPECT_TRUE(bytes.empty());
  EXPECT_EQ(bytes.capacity(), 0u) << "the backend took the storage itself";
  Buffer more;
  more.append("more");
  EXPECT_EQ(poller().send(p.a, more, 0).sys_errno(), EBUSY) << "one send at a time";
  EXPECT_EQ(more.size(), 4u);
  std::string got;
  ASSERT_TRUE(read_to_end(p.b, got, data.size()));
  EXPECT_TRUE(got == data) << "every byte once, in order";
  // The last completion may come a little after the bytes.
  const MonoTime deadline = MonoClock::now() + std::chrono::seconds(10);
  while (r.sent < data.size() && MonoClock::now() < deadline) loop_->run_until_idle();
  EXPECT_EQ(r.sent, data.size());
  EXPECT_GT(r.pieces, 1) << "short sends went on from where they stopped";
  EXPECT_TRUE(r.failures.empty());
  ASSERT_TRUE(poller().send(p.a, more, 0).is_ok()) << "the next, once the last was told";
  got.clear();
  ASSERT_TRUE(read_to_end(p.b, got, 4));
  EXPECT_EQ(got, "more");
  poller().remove(p.a);
}

TEST_F(PollerSend, ASendRemovedBeforeTheWaitNeverReachesTheSocket) {
  SocketPair p;
  SendRecorder r;
  ASSERT_TRUE(poller().add_receiver(p.a, &r).is_ok());
  Buffer bytes;
  bytes.append("never");
  ASSERT_TRUE(poller().send(p.a, bytes, 0).is_ok());
  poller().remove(p.a);
  ::close(p.a);
  p.a = -1;
  std::string got;
  EXPECT_TRUE(read_to_end(p.b, got)) << "the end came";
  EXPECT_EQ(got, "");
  EXPECT_EQ(r.sent, 0u);
  EXPECT_TRUE(r.failures.empty());
}

TEST_F(PollerSend, ARemovedSendKeepsItsBytesUntilTheKernelLetGoAndIsNeverReported) {
  SocketPair p;
  SendRecorder r;
  ASSERT_TRUE(poller().add_receiver(p.a, &r).is_ok());
  const std::string data = pattern(4 * 1024 * 1024);
  Buffer bytes;
  bytes.append(data);
  ASSERT_TRUE(poller().send(p.a, bytes, 0).is_ok());
  // The first piece went; the rest waits in the kernel for room.
  for (int i = 0; i < 100 && r.sent == 0; ++i) loop_->run_until_idle();
  ASSERT_GT(r.sent, 0u);
  ASSERT_LT(r.sent, data.size());
  const size_t told = r.sent;
  poller().remove(p.a);
  ::close(p.a);
  p.a = -1;
  // Memory freed since is written over: had the backend let go of the bytes early, the
  // reader would see this.
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int i = 0; i < 32; ++i) {
    blocks.push_back(std::make_unique<char[]>(512 * 1024));
    std::fill_n(blocks.back().get(), 512 * 1024, 'Z');
  }
  std::string got;
  EXPECT_TRUE(read_to_end(p.b, got)) << "the end came";
  EXPECT_LT(got.size(), data.size());
  EXPECT_TRUE(got == data.substr(0, got.size())) << "what came is what was given, in order";
  EXPECT_EQ(r.sent, told) << "nothing told after the removal";
  EXPECT_TRUE(r.failures.empty());
}

TEST_F(PollerSend, AFailedSendIsReportedOnce) {
  SocketPair p;
  SendRecorder r;
  ASSERT_TRUE(poller().add_receiver(p.a, &r).is_ok());
  ::close(p.b);
  p.b = -1;
  Buffer bytes;
  bytes.append("to nobody");
  ASSERT_TRUE(poller().send(p.a, bytes, 0).is_ok());
  const MonoTime deadline = MonoClock::now() + std::chrono::seconds(10);
  while (r.failures.empty() && MonoClock::now() < deadline) loop_->run_until_idle();
  for (int i = 0; i < 5; ++i) loop_->run_until_idle();
  EXPECT_EQ(r.failures, std::vector<int>{EPIPE});
  EXPECT_EQ(r.sent, 0u);
  poller().remove(p.a);
}

TEST(PollerSendMoved, ASendTheOldRingHadFailsWhenTheLoopMovesToAnotherThread) {
  // Single-issuer rings only: a loop run by another thread gets a new ring. How much of a
  // send the old ring made cannot be known, so it fails; its bytes stay until the poller goes.
  ::setenv("SLUICE_IO_URING_SETUP", "single_issuer", 1);
  std::unique_ptr<Loop> loop;
  const std::string setup = io_uring_ring_setup();
  if (setup.starts_with("single issuer")) {
    loop = std::make_unique<Loop>(Clock::steady(), Backend::kIoUring);
  }
  ::unsetenv("SLUICE_IO_URING_SETUP");
  if (!loop) GTEST_SKIP() << "io_uring ring: " << setup;
  if (!loop->poller().can_send()) GTEST_SKIP() << "no completion-based send";
  SocketPair p;
  SendRecorder r;
  ASSERT_TRUE(loop->poller().add_receiver(p.a, &r).is_ok());
  Buffer bytes;
  bytes.append(pattern(4 * 1024 * 1024));
  ASSERT_TRUE(loop->poller().send(p.a, bytes, 0).is_ok());
  // The first thread stays (idle, away from the loop) until the second ran it: a thread
  // that ended may leave its id to the next one.
  std::promise<void> first_ran;
  std::promise<void> second_ran;
  std::thread first([&] {
    for (int i = 0; i < 100 && r.sent == 0; ++i) loop->run_until_idle();
    first_ran.set_value();
    second_ran.get_future().wait();
  });
  first_ran.get_future().wait();
  const size_t sent_before = r.sent;
  std::thread second([&] {
    const MonoTime deadline = MonoClock::now() + std::chrono::seconds(10);
    while (r.failures.empty() && MonoClock::now() < deadline) loop->run_until_idle();
    second_ran.set_value();
  });
  second.join();
  first.join();
  ASSERT_GT(sent_before, 0u) << "the first piece went; the rest waited for room";
  EXPECT_EQ(r.sent, sent_before);
  EXPECT_EQ(r.failures, std::vector<int>{ECANCELED});
  loop->poller().remove(p.a);
  loop.reset();
}

}  // namespace
}  // namespace sluice::event
