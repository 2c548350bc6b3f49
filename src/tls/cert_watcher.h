// CertWatcher: tells its owner that certificate files may have changed, so that it can read
// them again (a new CertStore). It watches, with inotify, the directories of the files and
// of every symlink met on the way to them, so it sees a file rewritten or replaced
// (editor, cp, mv), and the flip of a symlinked directory such as the `..data` link
// Kubernetes swaps when it updates a mounted Secret. Changes to other entries of those
// directories are ignored.
// Owned by the main thread and called on its loop only (it reads no certificate itself).
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/units.h"
#include "event/loop.h"
#include "event/timer.h"

namespace sluice::tls {

class CertWatcher final : public event::IoHandler {
 public:
  // How long the watcher waits after a change for more changes before it calls on_change.
  static constexpr Duration kDefaultSettle = std::chrono::milliseconds(200);

  // Starts watching `files` (paths as configured; relative ones are taken from the current
  // directory). on_change runs on `loop` once a burst of changes has settled: `settle` after
  // the last relevant change, or at most 10 × `settle` after the first one. A missing
  // directory is waited for from its nearest existing parent. Fails when inotify is
  // unavailable or an existing directory cannot be watched. on_change must not destroy the
  // watcher (post that to the loop instead).
  static Result<std::unique_ptr<CertWatcher>> create(event::Loop& loop,
                                                     std::vector<std::string> files,
                                                     std::function<void()> on_change,
                                                     Duration settle = kDefaultSettle);
  ~CertWatcher();
  CertWatcher(const CertWatcher&) = delete;
  CertWatcher& operator=(const CertWatcher&) = delete;

  void on_io(uint32_t events) override;

  // The directories watched now, sorted (for logs and tests).
  std::vector<std::string> directories() const;

 private:
  CertWatcher(event::Loop& loop, std::vector<std::string> files, std::function<void()> on_change,
              Duration settle);
  // Resolves every file again (symlinks may point elsewhere now) and adjusts the watches.
  Status rewatch();
  void changed();
  void on_settled();

  event::Loop& loop_;
  std::vector<std::string> files_;
  std::function<void()> on_change_;
  Duration settle_;
  int fd_ = -1;
  std::unordered_map<int, std::string> directory_of_;  // watch descriptor → directory
  // The (directory, entry) pairs whose change matters.
  std::set<std::pair<std::string, std::string>> entries_;
  event::Timer settle_timer_;
  MonoTime first_change_{};
};

}  // namespace sluice::tls
