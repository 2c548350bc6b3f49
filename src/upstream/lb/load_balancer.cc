#include "upstream/lb/load_balancer.h"

#include "base/check.h"
#include "upstream/lb/least_request.h"
#include "upstream/lb/maglev.h"
#include "upstream/lb/ring_hash.h"
#include "upstream/lb/round_robin.h"
#include "upstream/lb/weighted_random.h"

namespace sluice::upstream::lb {

std::unique_ptr<LoadBalancer> make_load_balancer(const LbConfig& config, std::vector<LbHost> hosts,
                                                 const std::vector<uint32_t>* active_requests,
                                                 uint64_t seed) {
  switch (config.policy) {
    case Policy::kRoundRobin:
      return std::make_unique<RoundRobin>(std::move(hosts), seed);
    case Policy::kLeastRequest:
      return std::make_unique<LeastRequest>(std::move(hosts), active_requests, config.choice_count,
                                            seed);
    case Policy::kRandom:
      return std::make_unique<WeightedRandom>(std::move(hosts), seed);
    case Policy::kRingHash:
      return std::make_unique<RingHash>(std::move(hosts), config.ring_size,
                                        config.ring_total_weight, seed);
    case Policy::kMaglev:
      return std::make_unique<Maglev>(std::move(hosts), config.maglev_table_size, seed);
  }
  SLUICE_CHECK(false);  // every Policy is handled above
  return nullptr;
}

}  // namespace sluice::upstream::lb
