#include "upstream/lb/host_set.h"

#include <algorithm>

#include "base/check.h"

namespace sluice::upstream::lb {

namespace {
// Draws before pick_weighted_untried() gives up on rejection sampling. Reaching the limit
// needs the tried hosts to hold most of the weight: (tried share)^8, 0.4% at one half.
constexpr int kMaxRejections = 8;
}  // namespace

HostSet::HostSet(std::vector<LbHost> hosts) : hosts_(std::move(hosts)) {
  SLUICE_CHECK(!hosts_.empty());
  cumulative_.reserve(hosts_.size());
  sorted_indices_.reserve(hosts_.size());
  uint64_t sum = 0;
  for (const LbHost& h : hosts_) {
    SLUICE_CHECK(h.weight >= 1);
    sum += h.weight;
    cumulative_.push_back(sum);
    sorted_indices_.push_back(h.index);
  }
  std::sort(sorted_indices_.begin(), sorted_indices_.end());
  SLUICE_CHECK(std::adjacent_find(sorted_indices_.begin(), sorted_indices_.end()) ==
               sorted_indices_.end());
}

size_t HostSet::pick_weighted(Rng& rng) const {
  uint64_t r = rng.below(total_weight());
  return static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), r) -
                             cumulative_.begin());
}

size_t HostSet::pick_weighted_untried(Rng& rng, std::span<const size_t> tried) const {
  size_t pos = pick_weighted(rng);
  if (tried.empty() || !is_tried(pos, tried)) return pos;
  if (all_tried(tried)) return pos;  // everything failed once: go around again
  for (int i = 1; i < kMaxRejections; ++i) {
    pos = pick_weighted(rng);
    if (!is_tried(pos, tried)) return pos;
  }
  uint64_t untried_weight = 0;
  for (size_t p = 0; p < hosts_.size(); ++p) {
    if (!is_tried(p, tried)) untried_weight += hosts_[p].weight;
  }
  uint64_t r = rng.below(untried_weight);
  for (size_t p = 0; p < hosts_.size(); ++p) {
    if (is_tried(p, tried)) continue;
    if (r < hosts_[p].weight) return p;
    r -= hosts_[p].weight;
  }
  SLUICE_CHECK(false);  // all_tried() said an untried host exists
  return pos;
}

bool HostSet::is_tried(size_t pos, std::span<const size_t> tried) const {
  return std::find(tried.begin(), tried.end(), hosts_[pos].index) != tried.end();
}

bool HostSet::all_tried(std::span<const size_t> tried) const {
  if (tried.size() < hosts_.size()) return false;
  size_t distinct_members = 0;
  for (size_t j = 0; j < tried.size(); ++j) {
    if (!std::binary_search(sorted_indices_.begin(), sorted_indices_.end(), tried[j])) continue;
    if (std::find(tried.begin(), tried.begin() + j, tried[j]) != tried.begin() + j) continue;
    ++distinct_members;
  }
  return distinct_members == hosts_.size();
}

}  // namespace sluice::upstream::lb
