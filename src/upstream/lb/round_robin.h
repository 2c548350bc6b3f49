// Smooth weighted round robin: over any window of W picks (W = the sum of weights) each
// endpoint is picked exactly its weight times, interleaved rather than in bursts.
#pragma once

#include <cstdint>
#include <vector>

#include "upstream/lb/load_balancer.h"

namespace sluice::upstream::lb {

class RoundRobin final : public LoadBalancer {
 public:
  // Starts at a random point of the cycle so that workers do not move in lockstep.
  explicit RoundRobin(std::vector<uint32_t> weights, uint64_t seed = 0);
  size_t pick(std::span<const size_t> tried) override;

 private:
  size_t next();

  std::vector<uint32_t> weights_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
};

}  // namespace sluice::upstream::lb
