// PersistedSet: a cluster's last applied endpoint set kept in a file (`etcd.persist`), so that a
// cold start while the registry cannot be reached serves that set (stale) instead of nothing.
//
// save() hands the set to a writer thread of its own and returns at once: the main loop never
// waits for a disk. The writer puts the document in a temporary file beside the path, fsyncs
// it, renames it over the path and fsyncs the directory, so a crash or a power cut leaves the
// old file or the new one, never a part of one. Sets handed over faster than the disk takes
// them are coalesced: only the newest is written. A failed write is logged once per reason
// (from the writer thread) and the next set tries again.
//
// The document is the file source's format with a header:
//   {"cluster": "api", "written_unix": 1764861729, "revision": 42,
//    "endpoints": [{"address": "10.0.0.5:8080", "weight": 10}, ...]}
// so a persisted set can also be read by a `type: file` cluster. load() reads it back (main
// thread, at start; a small file).
//
// Owned by its source on the main thread; save() and load() are main-thread calls.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "upstream/endpoint.h"

namespace sluice::discovery {

class PersistedSet {
 public:
  // A persisted file larger than this is not read.
  static constexpr size_t kMaxFileSize = 16 << 20;

  struct Loaded {
    std::vector<upstream::EndpointConfig> endpoints;
    std::vector<std::string> invalid;  // entries skipped, as "endpoints[3]: <why>"
    int64_t written_unix = 0;          // when it was written (seconds since the epoch; 0: unsaid)
    int64_t revision = 0;              // the registry's revision it came from (0: unsaid)
  };

  PersistedSet(std::string cluster, std::string path);
  // Writes what is still pending, then returns.
  ~PersistedSet();
  PersistedSet(const PersistedSet&) = delete;
  PersistedSet& operator=(const PersistedSet&) = delete;

  const std::string& path() const { return path_; }
  // Hands the set over to the writer (the newest replaces one not written yet).
  void save(std::vector<upstream::EndpointConfig> endpoints, int64_t revision);
  // The file as last written; an error says why it cannot be used (missing, unreadable, not
  // a persisted set), without its contents.
  Result<Loaded> load() const;
  // The document save() writes (for tests).
  static std::string render(const std::string& cluster,
                            const std::vector<upstream::EndpointConfig>& endpoints,
                            int64_t revision, int64_t written_unix);

 private:
  struct Pending {
    std::vector<upstream::EndpointConfig> endpoints;
    int64_t revision = 0;
  };
  void run();
  Status write(const std::string& text) const;

  std::string cluster_;
  std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Pending> pending_;  // under mu_
  bool stopping_ = false;           // under mu_
  std::string last_error_;          // writer thread only
  std::thread thread_;
};

}  // namespace sluice::discovery
