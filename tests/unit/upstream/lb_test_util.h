// Helpers shared by the load balancer tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "upstream/lb/load_balancer.h"

namespace sluice::upstream::lb::testing {

// Hosts with cluster indices 0..n-1 (plus `index_offset`, to catch a balancer returning
// positions instead of cluster indices) and keys "10.0.0.<i>:8080".
inline std::vector<LbHost> hosts_with_weights(const std::vector<uint32_t>& weights,
                                              size_t index_offset = 0) {
  std::vector<LbHost> hosts;
  for (size_t i = 0; i < weights.size(); ++i) {
    hosts.push_back(LbHost{i + index_offset, weights[i], "10.0.0." + std::to_string(i) + ":8080"});
  }
  return hosts;
}

inline std::vector<LbHost> equal_hosts(size_t n) {
  return hosts_with_weights(std::vector<uint32_t>(n, 1));
}

// A well-spread request hash for the i-th test key.
inline uint64_t key_hash(uint64_t i) {
  return hash_key("request-" + std::to_string(i));
}

// The cluster index each of the first `keys` test keys maps to.
inline std::vector<size_t> mapping(LoadBalancer& lb, int keys) {
  std::vector<size_t> out;
  out.reserve(keys);
  for (int i = 0; i < keys; ++i) out.push_back(lb.pick({.hash = key_hash(i)}));
  return out;
}

// Fraction of `picks` calls of `pick_one(i)` that returned each cluster index 0..n-1.
template <typename PickOne>
std::vector<double> shares(size_t n, int picks, PickOne pick_one) {
  std::vector<double> counts(n);
  for (int i = 0; i < picks; ++i) counts.at(pick_one(i)) += 1;
  for (double& c : counts) c /= picks;
  return counts;
}

// The weights as fractions of their sum.
inline std::vector<double> expected_shares(const std::vector<uint32_t>& weights) {
  double total = 0;
  for (uint32_t w : weights) total += w;
  std::vector<double> out;
  for (uint32_t w : weights) out.push_back(w / total);
  return out;
}

}  // namespace sluice::upstream::lb::testing
