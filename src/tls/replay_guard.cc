#include "tls/replay_guard.h"

namespace sluice::tls {

bool ReplayGuard::first_use(std::string_view key, Clock::time_point now) {
  std::lock_guard lock(mu_);
  while (!order_.empty() && now - order_.front().first > window_) {
    seen_.erase(order_.front().second);
    order_.pop_front();
  }
  std::string k(key);
  if (seen_.count(k)) {
    ++replays_;
    return false;
  }
  if (seen_.size() >= capacity_) return false;
  seen_.insert(k);
  order_.emplace_back(now, std::move(k));
  return true;
}

uint64_t ReplayGuard::replays() const {
  std::lock_guard lock(mu_);
  return replays_;
}

size_t ReplayGuard::size() const {
  std::lock_guard lock(mu_);
  return seen_.size();
}

}  // namespace sluice::tls
