// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
// Load Balancer", NSDI 2016, §3.4). Each host has a preference permutation of the M table
// slots, offset = h1(key) % M, skip = h2(key) % (M - 1) + 1 (M prime, so every skip
// visits every slot), and the hosts take turns claiming their next still-free preferred
// slot until the table is full. A request hash maps to table[hash % M].
//
// Weights: per round every host adds its weight to a credit and takes a turn only when the
// credit reaches the largest weight (then pays that back). The heaviest host thus claims a
// slot every round and a host of weight w in w / max_weight of the rounds, so the shares of
// the table follow the weights. With equal weights this is exactly the paper's algorithm.
//
// The table depends only on the hosts' keys and weights (turns go in key order), so every
// worker and every restart map a key alike. Building is O(M log M) expected (O(M log n) for
// the turns plus the paper's probing), whatever the weights; pick() is O(1). Without a request hash
// a random slot is used; a host in `tried` is passed over for the following slots' hosts while any
// untried host is left. Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "upstream/lb/host_set.h"
#include "upstream/lb/load_balancer.h"
#include "upstream/lb/rng.h"

namespace sluice::upstream::lb {

class Maglev final : public LoadBalancer {
 public:
  // `table_size` must be prime (validated by the config loader, checked here). `seed` 0
  // draws a random one (used only for picks without a hash).
  Maglev(std::vector<LbHost> hosts, uint32_t table_size, uint64_t seed = 0);
  size_t pick(const PickContext& ctx) override;

 private:
  HostSet hosts_;
  std::vector<uint32_t> table_;  // slot -> host position
  Rng rng_;
};

}  // namespace sluice::upstream::lb
