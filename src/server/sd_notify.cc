#include "server/sd_notify.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "base/log.h"

namespace sluice::server {

namespace {

// STATUS is one line: a newline would start another KEY=VALUE pair.
std::string one_line(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

namespace sd_message {

std::string ready(std::string_view status) {
  return fmt::format("READY=1\nSTATUS={}", one_line(status));
}

std::string stopping(std::string_view status) {
  return fmt::format("STOPPING=1\nSTATUS={}", one_line(status));
}

std::string status(std::string_view status) {
  return fmt::format("STATUS={}", one_line(status));
}

std::string reloading(std::chrono::microseconds monotonic, std::string_view status) {
  return fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}", monotonic.count(),
                     one_line(status));
}

std::string main_pid(pid_t pid) {
  return fmt::format("MAINPID={}", pid);
}

std::string watchdog() {
  return "WATCHDOG=1";
}

}  // namespace sd_message

Result<NotifyAddress> parse_notify_address(std::string_view value) {
  NotifyAddress out;
  out.text = std::string(value);
  out.address.sun_family = AF_UNIX;
  if (value.empty() || (value[0] != '/' && value[0] != '@')) {
    return Status::error(fmt::format(
        "NOTIFY_SOCKET={}: not an absolute path or an abstract name starting with '@'", value));
  }
  // A path needs room for its terminating NUL; an abstract name's length is exact.
  size_t room = sizeof(out.address.sun_path) - (value[0] == '/' ? 1 : 0);
  if (value.size() < 2 || value.size() > room) {
    return Status::error(
        fmt::format("NOTIFY_SOCKET={}: the name must be 2 to {} bytes long", value, room));
  }
  std::memcpy(out.address.sun_path, value.data(), value.size());
  if (value[0] == '@') out.address.sun_path[0] = '\0';
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size() +
                                      (value[0] == '/' ? 1 : 0));
  return out;
}

std::optional<Duration> parse_watchdog(const char* usec, const char* watchdog_pid, pid_t pid) {
  if (usec == nullptr) return std::nullopt;
  if (watchdog_pid != nullptr) {
    std::string_view p(watchdog_pid);
    pid_t meant_for = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), meant_for);
    if (ec != std::errc() || end != p.data() + p.size() || meant_for != pid) return std::nullopt;
  }
  std::string_view u(usec);
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(u.data(), u.data() + u.size(), value);
  if (ec != std::errc() || end != u.data() + u.size() || value == 0) return std::nullopt;
  // Beyond a year the watchdog is as good as off; the bound keeps the nanoseconds in range.
  constexpr uint64_t kYearUsec = 365ULL * 24 * 3600 * 1000000;
  if (value > kYearUsec) return std::nullopt;
  return std::chrono::duration_cast<Duration>(std::chrono::microseconds(value));
}

std::chrono::microseconds monotonic_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::nanoseconds(ts.tv_nsec));
}

SdNotifier::SdNotifier(NotifyAddress address) : address_(std::move(address)) {
  fd_ = net::Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_.valid()) socket_errno_ = errno;
}

SdNotifier SdNotifier::from_environment() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket == nullptr) return SdNotifier();
  auto address = parse_notify_address(socket);
  std::optional<Duration> watchdog =
      parse_watchdog(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), ::getpid());
  // The values are copied; a child started later must not find them (it would answer for us).
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  if (!address) {
    LOG_WARN("systemd: {}; no notifications are sent", address.status().message());
    return SdNotifier();
  }
  SdNotifier notifier(std::move(address.value()));
  notifier.watchdog_ = watchdog;
  LOG_DEBUG("systemd: notifications go to {}", notifier.address_->text);
  return notifier;
}

void SdNotifier::send(std::string_view message) {
  if (!address_) return;
  int err = socket_errno_;
  if (fd_.valid()) {
    ssize_t n = ::sendto(fd_.get(), message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                         reinterpret_cast<const sockaddr*>(&address_->address), address_->length);
    if (n >= 0) {
      LOG_DEBUG("systemd: sent {}", one_line(message));
      return;
    }
    err = errno;
  }
  if (failure_logged_) return;
  failure_logged_ = true;
  LOG_WARN(
      "systemd: a notification to NOTIFY_SOCKET={} was not sent ({}); further failures are "
      "not logged",
      address_->text, std::strerror(err));
}

}  // namespace sluice::server
