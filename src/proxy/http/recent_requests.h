// RecentRequests: the slowest and the failed recent requests of one listener on one worker,
// each kept with its full access-log record, for the admin dashboard. A request is offered as
// it ends; the record is written only for one that is kept, so a request that is neither
// failed nor among the slowest costs one comparison. The admin endpoint merges the copies of
// every worker on demand. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/units.h"

namespace sluice::proxy::http {

// One request as the dashboard lists it.
struct RecentRequest {
  uint64_t duration_us = 0;  // from its complete request head to its end
  int64_t ended_ms = 0;      // wall clock, milliseconds since the epoch
  bool failed = false;
  std::string record;  // the access-log record: one JSON object
};

class RecentRequests {
 public:
  // How many of each are kept, and how long a slow request stays among the slowest.
  static constexpr size_t kSlowest = 16;
  static constexpr size_t kFailed = 16;
  static constexpr Duration kWindow = std::chrono::seconds(60);

  // Whether a request of `us` ending at `now` would be kept among the slowest.
  bool wants_slow(uint64_t us, MonoTime now) const {
    return slow_.size() < kSlowest || us > fastest_us_ || now - oldest_ >= kWindow;
  }
  // Keeps `r` among the slowest of the window (when wants_slow()), ending at `now`.
  void add_slow(RecentRequest r, MonoTime now);
  // Keeps `r` among the last kFailed failed requests.
  void add_failed(RecentRequest r);
  // Appends the slowest still within the window to `slow`, and the failed to `failed`.
  void report(std::vector<RecentRequest>& slow, std::vector<RecentRequest>& failed,
              MonoTime now) const;

 private:
  struct Slow {
    RecentRequest request;
    MonoTime at;
  };
  void refresh();

  std::vector<Slow> slow_;
  uint64_t fastest_us_ = 0;  // the fastest of slow_
  MonoTime oldest_{};        // the oldest of slow_
  std::vector<RecentRequest> failed_;
  size_t next_failed_ = 0;
};

}  // namespace sluice::proxy::http
