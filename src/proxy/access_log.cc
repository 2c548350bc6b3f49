#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <fmt/format.h>

#include "base/random.h"

namespace sluice::proxy {

Result<std::shared_ptr<AccessLog>> AccessLog::open(const std::string& path) {
  if (path == "-") return std::shared_ptr<AccessLog>(new AccessLog(STDOUT_FILENO, false, path));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Status::from_errno(fmt::format("access log {}", path), errno);
  return std::shared_ptr<AccessLog>(new AccessLog(fd, true, path));
}

Status AccessLog::reopen() {
  if (!owned_) return Status::ok();
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Status::from_errno(fmt::format("access log {}", path_), errno);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (reopened_fd_ >= 0) {
      ::close(reopened_fd_);  // the writer had not switched yet: the split stays where it was
    } else {
      reopen_split_ = pending_.size();
    }
    reopened_fd_ = fd;
  }
  // At once: lines handed over before the reopen go to the old file, the next to the new.
  cv_.notify_one();
  return Status::ok();
}

AccessLog::AccessLog(int fd, bool owned, std::string path)
    : fd_(fd), owned_(owned), path_(std::move(path)) {
  thread_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (owned_) ::close(fd_);
  if (reopened_fd_ >= 0) ::close(reopened_fd_);
}

void AccessLog::write(std::string_view line) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t before = pending_.size();
    if (before + line.size() + 1 > kMaxPending) {
      ++dropped_;
      return;
    }
    pending_.append(line);
    pending_ += '\n';
    // The writer is woken for the first line after it went idle (it then times the batch
    // itself) and when a batch is full; every other line costs no system call.
    wake =
        (before == 0 && writer_idle_) || (before < kFlushBytes && pending_.size() >= kFlushBytes);
  }
  if (wake) cv_.notify_one();
}

uint64_t AccessLog::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

void AccessLog::run() {
  std::string batch;
  auto write_all = [this](std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // a full disk drops the batch rather than blocking the proxy
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  };
  for (;;) {
    int next_fd = -1;
    size_t split = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (pending_.empty() && !stopping_ && reopened_fd_ < 0) {
        writer_idle_ = true;
        cv_.wait(lock, [this] { return stopping_ || !pending_.empty() || reopened_fd_ >= 0; });
        writer_idle_ = false;
      }
      // Lines gather until the batch is full or old enough, unless the file changes or the
      // log closes: then what is pending goes out now.
      cv_.wait_for(lock, kFlushInterval, [this] {
        return stopping_ || reopened_fd_ >= 0 || pending_.size() >= kFlushBytes;
      });
      if (pending_.empty() && stopping_) return;
      batch.swap(pending_);
      next_fd = std::exchange(reopened_fd_, -1);
      split = next_fd >= 0 ? std::exchange(reopen_split_, 0) : batch.size();
    }
    // Lines handed over before the reopen go to the old file, the rest to the new one. Only
    // this thread writes to fd_: the switch happens here.
    write_all(std::string_view(batch).substr(0, split));
    if (next_fd >= 0) {
      ::close(fd_);
      fd_ = next_fd;
      write_all(std::string_view(batch).substr(split));
    }
    batch.clear();
  }
}

bool should_log(const AccessLogConfig& config, int status, bool failed, Duration duration) {
  bool error = failed || status == 0 || status >= 500;
  switch (config.mode) {
    case AccessLogConfig::Mode::kAll:
      return true;
    case AccessLogConfig::Mode::kErrorsAndSlow:
      return error || duration >= config.slow;
    case AccessLogConfig::Mode::kSample: {
      if (error) return true;
      return thread_rng().chance_percent(config.sample_percent);
    }
  }
  return true;
}

}  // namespace sluice::proxy
