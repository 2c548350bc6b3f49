// Ring hash (ketama-style consistent hashing). A host of weight w owns
// round(ring_size * w / total_weight) virtual nodes (at least one), where total_weight is
// the weight of every endpoint of the cluster, usable or not: a host's node count does not
// change when others leave or return, so only the keys of a host that leaves move (1/N of
// them for N equal hosts), and they come back with it. Host `key`'s i-th node sits at
// hash_key(key + "_" + i); a request hash maps to the first node at or after it, wrapping
// around. The ring depends only on the hosts' keys and weights — not on their order, the
// seed, the worker or the process — so every worker maps a key alike.
//
// pick() is a binary search, O(log ring_size). Without a request hash it picks a random
// point of the ring. A host in `tried` is passed over for the next node of another host
// while any untried host is left. Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "upstream/lb/host_set.h"
#include "upstream/lb/load_balancer.h"
#include "upstream/lb/rng.h"

namespace sluice::upstream::lb {

class RingHash final : public LoadBalancer {
 public:
  // `ring_size` >= 1. `total_weight`: of all the cluster's endpoints (0: of `hosts`). `seed`
  // 0 draws a random one (used only for picks without a hash).
  RingHash(std::vector<LbHost> hosts, uint32_t ring_size, uint64_t total_weight = 0,
           uint64_t seed = 0);
  size_t pick(const PickContext& ctx) override;

 private:
  HostSet hosts_;
  std::vector<uint64_t> hashes_;  // node positions, ascending
  std::vector<uint32_t> owners_;  // owners_[i]: host position of the node at hashes_[i]
  Rng rng_;
};

}  // namespace sluice::upstream::lb
