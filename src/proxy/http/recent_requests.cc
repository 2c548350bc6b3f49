#include "proxy/http/recent_requests.h"

#include <algorithm>

namespace sluice::proxy::http {

void RecentRequests::add_slow(RecentRequest r, MonoTime now) {
  std::erase_if(slow_, [now](const Slow& s) { return now - s.at >= kWindow; });
  if (slow_.size() < kSlowest) {
    slow_.push_back(Slow{std::move(r), now});
  } else {
    auto fastest = std::min_element(slow_.begin(), slow_.end(), [](const Slow& a, const Slow& b) {
      return a.request.duration_us < b.request.duration_us;
    });
    if (fastest->request.duration_us >= r.duration_us) return;
    *fastest = Slow{std::move(r), now};
  }
  refresh();
}

void RecentRequests::refresh() {
  fastest_us_ = UINT64_MAX;
  oldest_ = MonoTime::max();
  for (const auto& s : slow_) {
    fastest_us_ = std::min(fastest_us_, s.request.duration_us);
    oldest_ = std::min(oldest_, s.at);
  }
}

void RecentRequests::add_failed(RecentRequest r) {
  if (failed_.size() < kFailed) {
    failed_.push_back(std::move(r));
  } else {
    failed_[next_failed_] = std::move(r);
  }
  next_failed_ = (next_failed_ + 1) % kFailed;
}

void RecentRequests::report(std::vector<RecentRequest>& slow, std::vector<RecentRequest>& failed,
                            MonoTime now) const {
  for (const auto& s : slow_) {
    if (now - s.at < kWindow) slow.push_back(s.request);
  }
  failed.insert(failed.end(), failed_.begin(), failed_.end());
}

}  // namespace sluice::proxy::http
