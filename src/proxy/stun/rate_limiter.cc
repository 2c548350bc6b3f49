#include "proxy/stun/rate_limiter.h"

#include <algorithm>

namespace sluice::proxy::stun {

bool SourceRateLimiter::allow(const udp::AddressKey& source, MonoTime now) {
  if (per_second_ == 0) return true;
  auto it = table_.find(source);
  if (it == table_.end()) {
    if (table_.size() >= max_sources_) {
      table_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(source);
    it = table_.emplace(source, Bucket{static_cast<double>(burst_), now, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    double elapsed = std::chrono::duration<double>(now - it->second.updated).count();
    it->second.tokens = std::min<double>(burst_, it->second.tokens + elapsed * per_second_);
    it->second.updated = now;
  }
  if (it->second.tokens < 1) return false;
  it->second.tokens -= 1;
  return true;
}

}  // namespace sluice::proxy::stun
