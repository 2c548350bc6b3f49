#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "base/check.h"
#include "base/status.h"

namespace sluice {

namespace log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
thread_local char t_name[16] = "main";

const char* level_name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level l) {
  g_level.store(static_cast<int>(l), std::memory_order_relaxed);
}
Level level() {
  return static_cast<Level>(g_level.load(std::memory_order_relaxed));
}

bool parse_level(std::string_view name, Level* out) {
  static constexpr Level kAll[] = {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError};
  for (Level l : kAll) {
    if (name == level_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

void set_thread_name(std::string_view name) {
  size_t n = std::min(name.size(), sizeof(t_name) - 1);
  std::memcpy(t_name, name.data(), n);
  t_name[n] = '\0';
}

std::string format_time(std::chrono::system_clock::time_point t) {
  auto since = t.time_since_epoch();
  time_t secs =
      static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(since).count());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since).count() % 1000;
  tm utc{};
  gmtime_r(&secs, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, ms);
}

void write(Level l, std::string_view message) {
  fmt::memory_buffer buf;
  fmt::format_to(std::back_inserter(buf), "{} {} [{}] {}\n",
                 format_time(std::chrono::system_clock::now()), level_name(l), t_name, message);
  const char* p = buf.data();
  size_t left = buf.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere left to report a failure to log
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace log

Status Status::from_errno(const std::string& what, int sys_errno) {
  return error(fmt::format("{}: {}", what, std::strerror(sys_errno)), sys_errno);
}

namespace detail {
void check_failed(const char* expr, const char* file, int line) {
  log::write(log::Level::kError, fmt::format("check failed: {} at {}:{}", expr, file, line));
  std::abort();
}
}  // namespace detail

}  // namespace sluice
