// Weighted round robin: over any window of W consecutive picks (W = the sum of weights)
// each endpoint is picked exactly its weight times, interleaved rather than in bursts.
//
// Implemented as stride scheduling rather than nginx's "smooth" scan, so a pick costs
// O(log n) instead of O(n). Host p (of n) with weight w has its k-th turn of a cycle at the
// virtual deadline (k - 1 + (2p + 1) / 2n) / w, and the earliest deadline goes next. Each
// host has exactly w deadlines per cycle, so the sequence repeats every W picks, which gives
// the exact per-window counts; the per-host phase (2p + 1) / 2n staggers hosts whose turns
// would otherwise coincide, so light hosts are spread between a heavy host's turns (weights
// {5, 1, 1} give 0 0 0 1 0 0 2) and equal weights give plain rotation.
//
// Owned by one Cluster on one worker; loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "upstream/lb/host_set.h"
#include "upstream/lb/load_balancer.h"

namespace sluice::upstream::lb {

class RoundRobin final : public LoadBalancer {
 public:
  // Starts at a seed-chosen point of the cycle so that workers do not move in lockstep.
  // `seed` 0 draws a random one.
  explicit RoundRobin(std::vector<LbHost> hosts, uint64_t seed = 0);
  size_t pick(const PickContext& ctx) override;

 private:
  // A host's next turn: deadline = cycle + (k - 1 + phase) / w, 1 <= k <= w, 0 < phase < 1,
  // so it lies strictly inside (cycle, cycle + 1).
  struct Turn {
    uint64_t cycle;
    uint32_t k;
    uint32_t pos;
  };
  // Heap order: true when `a` is due after `b` (std heaps keep the greatest on top).
  bool later(const Turn& a, const Turn& b) const;
  void advance(Turn& t) const;

  HostSet hosts_;
  std::vector<Turn> heap_;     // one Turn per host
  std::vector<Turn> skipped_;  // scratch for tried hosts set aside in pick(); capacity n
};

}  // namespace sluice::upstream::lb
