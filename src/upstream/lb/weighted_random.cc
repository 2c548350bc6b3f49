#include "upstream/lb/weighted_random.h"

namespace sluice::upstream::lb {

WeightedRandom::WeightedRandom(std::vector<LbHost> hosts, uint64_t seed)
    : hosts_(std::move(hosts)), rng_(seed) {}

size_t WeightedRandom::pick(const PickContext& ctx) {
  return hosts_[hosts_.pick_weighted_untried(rng_, ctx.tried)].index;
}

}  // namespace sluice::upstream::lb
