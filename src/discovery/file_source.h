// FileSource: a cluster's endpoints listed in a JSON file (discovery/endpoint_json.h says
// the format), read again whenever it changes. The file's directory is watched with inotify
// (tls::CertWatcher), so a rewrite in place, an atomic rename over it and a Kubernetes
// ConfigMap's symlink flip are all seen; changes within `batch_window` of each other are read
// as one. Without inotify the file is read every kPollInterval instead.
// A file that is missing, unreadable or not valid JSON keeps the last good set (kStale,
// logged once per failure streak); entries that are not endpoints are logged and skipped.
// Main thread only.
#pragma once

#include <memory>
#include <string>

#include "discovery/endpoint_source.h"
#include "event/loop.h"
#include "event/timer.h"
#include "tls/cert_watcher.h"

namespace sluice::discovery {

// The whole of a regular file of at most `limit` bytes, opened without blocking (a FIFO at the
// path is refused, not waited on). The error is the reason (strerror, "not a regular file").
Result<std::string> read_regular_file(const std::string& path, size_t limit);

class FileSource final : public EndpointSource {
 public:
  static constexpr Duration kPollInterval = std::chrono::seconds(1);
  // Larger files are refused (and the last good set kept).
  static constexpr size_t kMaxFileSize = 16 << 20;

  FileSource(event::Loop& loop, std::string cluster, std::string path, Duration batch_window,
             OnUpdate on_update);
  ~FileSource() override;

  void start() override;
  void stop() override;
  const char* kind() const override { return "file"; }
  std::string target() const override { return path_; }
  upstream::SourceState state() const override { return state_; }
  const upstream::SourceStats& stats() const override { return stats_; }

 private:
  void read();
  void failed(const std::string& why);
  void set_state(upstream::SourceState s);

  event::Loop& loop_;
  std::string cluster_;
  std::string path_;
  Duration batch_window_;
  OnUpdate on_update_;
  std::unique_ptr<tls::CertWatcher> watcher_;
  event::Timer poll_timer_;  // only without inotify
  upstream::SourceState state_ = upstream::SourceState::kStarting;
  upstream::SourceStats stats_;
  std::string last_failure_;  // logged once while it repeats
};

}  // namespace sluice::discovery
