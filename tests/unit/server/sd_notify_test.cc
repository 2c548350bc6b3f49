#include "server/sd_notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <string>

namespace sluice::server {
namespace {

TEST(SdMessage, FormatsEachMessage) {
  EXPECT_EQ(sd_message::ready("ready: 2 workers, 1 listeners"),
            "READY=1\nSTATUS=ready: 2 workers, 1 listeners");
  EXPECT_EQ(sd_message::stopping("draining: 3 open connections"),
            "STOPPING=1\nSTATUS=draining: 3 open connections");
  EXPECT_EQ(sd_message::status("draining: 0 connections left"),
            "STATUS=draining: 0 connections left");
  EXPECT_EQ(sd_message::reloading(std::chrono::microseconds(123456789), "reloading sluice.yaml"),
            "RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading sluice.yaml");
  EXPECT_EQ(sd_message::main_pid(4242), "MAINPID=4242");
  EXPECT_EQ(sd_message::watchdog(), "WATCHDOG=1");
}

TEST(SdMessage, StatusStaysOneLine) {
  // A newline would start a second KEY=VALUE pair the service manager would act on.
  EXPECT_EQ(sd_message::status("bad\nREADY=1\r\nx"), "STATUS=bad READY=1  x");
  EXPECT_EQ(sd_message::ready("a\nb"), "READY=1\nSTATUS=a b");
}

TEST(SdMessage, MonotonicNowIsClockMonotonic) {
  // steady_clock is CLOCK_MONOTONIC on Linux: the two agree to well within a second.
  auto steady = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now().time_since_epoch());
  auto mono = monotonic_now();
  EXPECT_GE(mono, steady);
  EXPECT_LT(mono - steady, std::chrono::seconds(1));
}

TEST(NotifyAddress, Path) {
  auto a = parse_notify_address("/run/systemd/notify");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->address.sun_family, AF_UNIX);
  EXPECT_STREQ(a->address.sun_path, "/run/systemd/notify");
  EXPECT_EQ(a->length, offsetof(sockaddr_un, sun_path) + 20);  // 19 bytes and the NUL
  EXPECT_EQ(a->text, "/run/systemd/notify");
}

TEST(NotifyAddress, Abstract) {
  auto a = parse_notify_address("@sluice/notify");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->address.sun_path[0], '\0');
  EXPECT_EQ(std::string(a->address.sun_path + 1, 13), "sluice/notify");
  EXPECT_EQ(a->length, offsetof(sockaddr_un, sun_path) + 14);  // NUL and 13 bytes, no terminator
  EXPECT_EQ(a->text, "@sluice/notify");
}

TEST(NotifyAddress, LongestNames) {
  constexpr size_t kPath = sizeof(sockaddr_un::sun_path);  // 108
  EXPECT_TRUE(parse_notify_address("/" + std::string(kPath - 2, 'p')));
  EXPECT_FALSE(parse_notify_address("/" + std::string(kPath - 1, 'p')));
  EXPECT_TRUE(parse_notify_address("@" + std::string(kPath - 1, 'a')));
  EXPECT_FALSE(parse_notify_address("@" + std::string(kPath, 'a')));
}

TEST(NotifyAddress, Rejected) {
  for (const char* bad : {"", "relative/notify", "@", "/", "vsock:2:1234"}) {
    auto a = parse_notify_address(bad);
    EXPECT_FALSE(a) << bad;
  }
  EXPECT_EQ(parse_notify_address("notify").status().message(),
            "NOTIFY_SOCKET=notify: not an absolute path or an abstract name starting with '@'");
  EXPECT_EQ(parse_notify_address("@").status().message(),
            "NOTIFY_SOCKET=@: the name must be 2 to 108 bytes long");
}

TEST(Watchdog, ParsesForThisProcess) {
  EXPECT_EQ(parse_watchdog("30000000", nullptr, 100), std::chrono::seconds(30));
  EXPECT_EQ(parse_watchdog("1500", "100", 100), std::chrono::microseconds(1500));
  EXPECT_EQ(parse_watchdog(nullptr, "100", 100), std::nullopt);
  // Meant for another process (a parent that did not clear it).
  EXPECT_EQ(parse_watchdog("30000000", "99", 100), std::nullopt);
  EXPECT_EQ(parse_watchdog("30000000", "x", 100), std::nullopt);
  EXPECT_EQ(parse_watchdog("0", nullptr, 100), std::nullopt);
  EXPECT_EQ(parse_watchdog("", nullptr, 100), std::nullopt);
  EXPECT_EQ(parse_watchdog("30s", nullptr, 100), std::nullopt);
  EXPECT_EQ(parse_watchdog("-5", nullptr, 100), std::nullopt);
  EXPECT_EQ(parse_watchdog("99999999999999999999999", nullptr, 100), std::nullopt);
}

// A datagram socket bound to an abstract name, as the service manager's.
class Receiver {
 public:
  Receiver() {
    name_ = "@sluice-sd-notify-test-" + std::to_string(::getpid());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto a = parse_notify_address(name_);
    ::bind(fd_, reinterpret_cast<const sockaddr*>(&a->address), a->length);
    timeval tv{5, 0};  // a message that never comes fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Receiver() { ::close(fd_); }
  const std::string& name() const { return name_; }
  std::string receive() {
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n < 0 ? std::string("<nothing>") : std::string(buf, static_cast<size_t>(n));
  }
  bool empty() {
    char c;
    return ::recv(fd_, &c, 1, MSG_DONTWAIT) < 0;
  }

 private:
  std::string name_;
  int fd_ = -1;
};

TEST(SdNotifier, SendsOneDatagramPerMessage) {
  Receiver r;
  auto address = parse_notify_address(r.name());
  ASSERT_TRUE(address);
  SdNotifier n(std::move(address.value()));
  EXPECT_TRUE(n.enabled());
  n.send(sd_message::ready("ready: 1 workers, 1 listeners"));
  n.send(sd_message::main_pid(77));
  EXPECT_EQ(r.receive(), "READY=1\nSTATUS=ready: 1 workers, 1 listeners");
  EXPECT_EQ(r.receive(), "MAINPID=77");
  EXPECT_TRUE(r.empty());
}

TEST(SdNotifier, FailureDoesNotStopTheCaller) {
  auto address = parse_notify_address("/nonexistent-sluice-dir/notify");
  ASSERT_TRUE(address);
  SdNotifier n(std::move(address.value()));
  n.send(sd_message::ready("ready"));
  n.send(sd_message::stopping("draining"));
  EXPECT_TRUE(n.enabled());
}

TEST(SdNotifier, DisabledSendsNothing) {
  SdNotifier n;
  EXPECT_FALSE(n.enabled());
  n.send(sd_message::ready("ready"));
}

TEST(SdNotifier, FromEnvironmentTakesTheVariables) {
  Receiver r;
  ::setenv("NOTIFY_SOCKET", r.name().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "4000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  SdNotifier n = SdNotifier::from_environment();
  // Gone from the environment, so no child process inherits them...
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  EXPECT_EQ(std::getenv("WATCHDOG_PID"), nullptr);
  // ...but kept for every later message.
  EXPECT_TRUE(n.enabled());
  EXPECT_EQ(n.watchdog_interval(), std::chrono::seconds(4));
  n.send(sd_message::status("one"));
  n.send(sd_message::status("two"));
  EXPECT_EQ(r.receive(), "STATUS=one");
  EXPECT_EQ(r.receive(), "STATUS=two");
}

TEST(SdNotifier, FromEnvironmentWithoutVariables) {
  ::unsetenv("NOTIFY_SOCKET");
  ::setenv("WATCHDOG_USEC", "4000000", 1);
  SdNotifier n = SdNotifier::from_environment();
  EXPECT_FALSE(n.enabled());
  EXPECT_EQ(n.watchdog_interval(), std::nullopt);
  ::unsetenv("WATCHDOG_USEC");
}

TEST(SdNotifier, FromEnvironmentWithAnUnusableAddress) {
  ::setenv("NOTIFY_SOCKET", "not-a-path", 1);
  SdNotifier n = SdNotifier::from_environment();
  EXPECT_FALSE(n.enabled());
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
}

}  // namespace
}  // namespace sluice::server
