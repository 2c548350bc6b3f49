#include "upstream/lb/least_request.h"

#include "base/check.h"

namespace sluice::upstream::lb {

LeastRequest::LeastRequest(std::vector<LbHost> hosts, const std::vector<uint32_t>* active_requests,
                           uint32_t choice_count, uint64_t seed)
    : hosts_(std::move(hosts)), active_(active_requests), choice_count_(choice_count), rng_(seed) {
  SLUICE_CHECK(active_ != nullptr);
  SLUICE_CHECK(choice_count_ >= 1);
  for (const LbHost& h : hosts_.hosts()) SLUICE_CHECK(h.index < active_->size());
}

size_t LeastRequest::pick(const PickContext& ctx) {
  const std::vector<uint32_t>& active = *active_;
  size_t best = hosts_.pick_weighted_untried(rng_, ctx.tried);
  for (uint32_t i = 1; i < choice_count_; ++i) {
    const size_t c = hosts_.pick_weighted_untried(rng_, ctx.tried);
    // active[c] / weight[c] < active[best] / weight[best], cross-multiplied (32 x 32 bits).
    if (uint64_t{active[hosts_[c].index]} * hosts_[best].weight <
        uint64_t{active[hosts_[best].index]} * hosts_[c].weight) {
      best = c;
    }
  }
  return hosts_[best].index;
}

}  // namespace sluice::upstream::lb
