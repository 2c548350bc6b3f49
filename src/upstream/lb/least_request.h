// Least request, weighted power of N choices: draw `choice_count` candidates in proportion to
// weight (with replacement) and take the one with the fewest active requests per unit of
// weight, the first drawn on a tie.
//
// Sampling by weight rather than uniformly is what makes the weights hold at both ends:
// with no load every comparison ties, so picks follow the weights exactly like random; under
// load the comparison of active/weight steers towards equal active/weight, i.e. towards
// in-flight requests in proportion to weight. (Uniform sampling would ignore weights when
// idle.) Candidates avoid `tried` while any other host is left. O(choice_count * log n).
// Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "upstream/lb/host_set.h"
#include "upstream/lb/load_balancer.h"
#include "upstream/lb/rng.h"

namespace sluice::upstream::lb {

class LeastRequest final : public LoadBalancer {
 public:
  // `active_requests` is indexed by cluster endpoint index (LbHost::index), owned by the
  // caller and outlives the balancer. `choice_count` >= 1. `seed` 0 draws a random one.
  LeastRequest(std::vector<LbHost> hosts, const std::vector<uint32_t>* active_requests,
               uint32_t choice_count = 2, uint64_t seed = 0);
  size_t pick(const PickContext& ctx) override;

 private:
  HostSet hosts_;
  const std::vector<uint32_t>* active_;  // not owned
  uint32_t choice_count_;
  Rng rng_;
};

}  // namespace sluice::upstream::lb
