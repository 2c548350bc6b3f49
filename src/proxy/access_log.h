// AccessLog: one JSON line per HTTP request or TCP connection, written to a file (or
// stdout) by a background thread, so a slow disk never stalls a worker. Workers format the
// line and hand it over under a short lock, without waking the writer: the writer thread
// appends what has gathered with one write(2) once kFlushBytes are pending or kFlushInterval
// after the oldest pending line, so a busy proxy pays one write and one wake-up per batch,
// not per line. Nothing pending is lost: a reopen() writes what was handed over before it to
// the old file first, and the destructor writes everything before it returns.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "base/status.h"
#include "base/units.h"
#include "base/validation.h"

namespace sluice::proxy {

struct AccessLogConfig {
  std::string path;  // empty: no access log; "-": standard output
  // kAll: every request; kErrorsAndSlow: 5xx, failures and requests slower than `slow`;
  // kSample: `sample_percent` of requests at random (errors always).
  enum class Mode { kAll, kErrorsAndSlow, kSample };
  Mode mode = Mode::kAll;
  Duration slow = std::chrono::seconds(1);
  uint32_t sample_percent = 100;

  ConfigIssues validate() const;

  bool operator==(const AccessLogConfig&) const = default;
};

class AccessLog {
 public:
  static Result<std::shared_ptr<AccessLog>> open(const std::string& path);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Lines waiting for the writer beyond this are dropped (and counted) rather than held:
  // a stuck disk or a stdout nobody reads must not grow the proxy without bound.
  static constexpr size_t kMaxPending = 64 << 20;
  // A batch is written once this much is pending, or this long after its first line.
  static constexpr size_t kFlushBytes = 128 << 10;
  static constexpr Duration kFlushInterval = std::chrono::milliseconds(100);

  // Any thread. `line` is one JSON object without the newline.
  void write(std::string_view line);
  uint64_t dropped() const;
  // Opens the file again by its path (after a log rotation moved it away: a reload asks for
  // this); lines from the next batch on go to the new file. Not for standard output.
  Status reopen();

 private:
  AccessLog(int fd, bool owned, std::string path);
  void run();

  int fd_;
  bool owned_;
  std::string path_;
  int reopened_fd_ = -1;     // under mu_: the writer switches to it within its next batch
  size_t reopen_split_ = 0;  // under mu_: bytes of pending_ from before the reopen
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  uint64_t dropped_ = 0;
  bool stopping_ = false;
  bool writer_idle_ = false;  // under mu_: the writer waits for a first line, with no deadline
  std::thread thread_;
};

// Whether a finished request is logged under `config`.
bool should_log(const AccessLogConfig& config, int status, bool failed, Duration duration);

}  // namespace sluice::proxy
