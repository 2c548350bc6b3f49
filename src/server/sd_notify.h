// The service manager's readiness protocol (systemd's sd_notify), spoken directly: each
// message is one datagram of newline-separated KEY=VALUE lines, sent to the AF_UNIX socket
// named by $NOTIFY_SOCKET (a filesystem path, or an abstract name written with a leading '@').
// See sd_notify(3) for the keys; docs/systemd.md for what sluice sends and when.
//
// sd_message::* format the messages (pure, unit-tested); SdNotifier sends them. The Server owns
// one SdNotifier on the main thread; send() never blocks and never fails the caller.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "base/units.h"
#include "net/socket.h"

namespace sluice::server {

namespace sd_message {

// "READY=1\nSTATUS=<status>": startup (or a reload) is complete.
std::string ready(std::string_view status);
// "STOPPING=1\nSTATUS=<status>": the process has begun to shut down.
std::string stopping(std::string_view status);
// "STATUS=<status>": free text `systemctl status` shows.
std::string status(std::string_view status);
// "RELOADING=1\nMONOTONIC_USEC=<µs>\nSTATUS=<status>": a reload began at `monotonic` on
// CLOCK_MONOTONIC; READY=1 follows when it is complete (Type=notify-reload needs both).
std::string reloading(std::chrono::microseconds monotonic, std::string_view status);
// "MAINPID=<pid>": the service's main process is now `pid` (a binary upgrade's new process).
std::string main_pid(pid_t pid);
// "WATCHDOG=1": the process is alive (sent at half of $WATCHDOG_USEC).
std::string watchdog();

}  // namespace sd_message

// Where the messages go: $NOTIFY_SOCKET's value as a socket address.
struct NotifyAddress {
  sockaddr_un address{};
  socklen_t length = 0;
  std::string text;  // as written in the environment, for log lines
};

// An absolute path ("/run/systemd/notify") or an abstract name ("@name": the '@' becomes the
// leading NUL byte). Anything else, or a name too long for sun_path, is an error.
Result<NotifyAddress> parse_notify_address(std::string_view value);

// $WATCHDOG_USEC when it is meant for this process ($WATCHDOG_PID unset or equal to `pid`):
// the interval within which the service manager expects WATCHDOG=1. nullopt when unset, 0, or
// not a number (the watchdog is then off).
std::optional<Duration> parse_watchdog(const char* usec, const char* watchdog_pid, pid_t pid);

// CLOCK_MONOTONIC now, in microseconds: what MONOTONIC_USEC carries.
std::chrono::microseconds monotonic_now();

// Sends sd_notify messages to one address. Disabled (every send() a no-op) when the process was
// not started by a service manager that asked for them. Main thread only.
class SdNotifier {
 public:
  SdNotifier() = default;  // disabled
  explicit SdNotifier(NotifyAddress address);

  // Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and removes them from the
  // environment, so that no child process believes the messages are its to send; the address
  // is kept for every later message. Call before any other thread starts (unsetenv is not
  // thread-safe). A value that is not a usable address is logged and leaves the notifier
  // disabled.
  static SdNotifier from_environment();

  bool enabled() const { return address_.has_value(); }
  // $NOTIFY_SOCKET as it was ("" when disabled): a binary upgrade's new process gets it back,
  // as it becomes the service's main process.
  std::string socket_text() const { return address_ ? address_->text : std::string(); }
  const std::optional<Duration>& watchdog_interval() const { return watchdog_; }

  // Sends one message without blocking (a full receive queue drops it). A failure is logged
  // once, at the first one, and never stops the caller.
  void send(std::string_view message);

 private:
  std::optional<NotifyAddress> address_;
  std::optional<Duration> watchdog_;
  net::Fd fd_;
  int socket_errno_ = 0;  // why fd_ could not be made
  bool failure_logged_ = false;
};

}  // namespace sluice::server
