// LoadBalancer: picks an endpoint of a cluster. One instance per cluster per worker, so
// implementations keep plain (unsynchronised) state; loop thread only.
//
// A balancer is built over the endpoints currently eligible (healthy, not ejected, not
// draining — or all of them in panic mode) and rebuilt, off the request path, whenever that
// set changes. It returns cluster endpoint indices (LbHost::index), so callers never see
// the subset it was built from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/validation.h"

namespace sluice::upstream::lb {

enum class Policy { kRoundRobin, kLeastRequest, kRandom, kRingHash, kMaglev };
// The names of the policies, in Policy's order: the config's lb_policy values, and how /config
// and /clusters show them. The only copy.
inline constexpr const char* kPolicyNames[] = {"round_robin", "least_request", "random",
                                               "ring_hash", "maglev"};
static_assert(std::size(kPolicyNames) == static_cast<size_t>(Policy::kMaglev) + 1);
constexpr const char* to_string(Policy p) {
  return kPolicyNames[static_cast<size_t>(p)];
}

struct LbConfig {
  Policy policy = Policy::kRoundRobin;
  // ring_hash: virtual nodes on the ring, spread over the hosts in proportion to weight.
  uint32_t ring_size = 1024;
  // Not configured: set by the cluster to the weight of all its endpoints, usable or not,
  // so that a host's share of the ring stays put while others come and go (0: the hosts').
  uint64_t ring_total_weight = 0;
  // maglev: lookup table size; must be prime.
  uint32_t maglev_table_size = 65537;
  // least_request: how many random candidates are compared (2 = power of two choices).
  uint32_t choice_count = 2;

  // Paths are the cluster's keys (ring_hash.ring_size, maglev.table_size, ...).
  ConfigIssues validate() const;

  bool operator==(const LbConfig&) const = default;
};

struct LbHost {
  size_t index = 0;     // the endpoint's index in the cluster
  uint32_t weight = 1;  // >= 1
  // Stable identity hashed by ring_hash and maglev ("10.0.0.1:8080"): the same on every
  // worker and after a restart, so a key maps to the same endpoint everywhere.
  std::string key;
};

struct PickContext {
  // Cluster indices this request or connection already failed on; avoided while any other
  // eligible endpoint is left.
  std::span<const size_t> tried;
  // The request's hash key (ring_hash, maglev); without one those policies pick at random.
  std::optional<uint64_t> hash;
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // Returns an LbHost::index. Requires a non-empty host set.
  virtual size_t pick(const PickContext& ctx) = 0;
};

// `active_requests` (indexed by cluster endpoint index, owned by the caller and outliving
// the balancer) feeds least_request. `seed` 0 draws a random seed.
std::unique_ptr<LoadBalancer> make_load_balancer(const LbConfig& config, std::vector<LbHost> hosts,
                                                 const std::vector<uint32_t>* active_requests,
                                                 uint64_t seed = 0);

// The stable 64-bit hash used for hash keys and host keys (not randomised per process).
uint64_t hash_key(std::string_view data);

}  // namespace sluice::upstream::lb
