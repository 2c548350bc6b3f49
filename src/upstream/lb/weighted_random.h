// Weighted random: each pick is an independent draw in proportion to weight, avoiding hosts
// in `tried` while any other is left. O(log n) per pick. Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "upstream/lb/host_set.h"
#include "upstream/lb/load_balancer.h"
#include "upstream/lb/rng.h"

namespace sluice::upstream::lb {

class WeightedRandom final : public LoadBalancer {
 public:
  // `seed` 0 draws a random one.
  explicit WeightedRandom(std::vector<LbHost> hosts, uint64_t seed = 0);
  size_t pick(const PickContext& ctx) override;

 private:
  HostSet hosts_;
  Rng rng_;
};

}  // namespace sluice::upstream::lb
