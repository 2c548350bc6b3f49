// HostSet: the hosts a balancer was built over, with the weighted sampling and `tried`
// bookkeeping every policy needs. Built once per balancer (allocates); every query is
// allocation-free. Positions (0..size()-1) are internal to a balancer; LbHost::index is
// what leaves it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "upstream/lb/load_balancer.h"
#include "upstream/lb/rng.h"

namespace sluice::upstream::lb {

class HostSet {
 public:
  // Requires at least one host, weights >= 1 and distinct cluster indices.
  explicit HostSet(std::vector<LbHost> hosts);

  size_t size() const { return hosts_.size(); }
  const LbHost& operator[](size_t pos) const { return hosts_[pos]; }
  const std::vector<LbHost>& hosts() const { return hosts_; }
  uint64_t total_weight() const { return cumulative_.back(); }

  // A position drawn in proportion to weight. O(log n).
  size_t pick_weighted(Rng& rng) const;
  // As pick_weighted(), but never a host in `tried` unless every host is in it. Exact
  // (proportional to weight among the untried hosts). Rejection sampling first, so the
  // common case stays O(log n); only when the tried hosts hold nearly all the weight does it
  // fall back to an O(n * |tried|) pass.
  size_t pick_weighted_untried(Rng& rng, std::span<const size_t> tried) const;

  bool is_tried(size_t pos, std::span<const size_t> tried) const;
  // True when every host of this set appears in `tried` (which may hold duplicates and
  // indices of endpoints outside the set). O(|tried|^2 + |tried| log n); `tried` is short.
  bool all_tried(std::span<const size_t> tried) const;

 private:
  std::vector<LbHost> hosts_;
  std::vector<uint64_t> cumulative_;  // cumulative_[i] = weight of hosts 0..i
  std::vector<size_t> sorted_indices_;
};

}  // namespace sluice::upstream::lb
