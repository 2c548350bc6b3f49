#include "upstream/lb/round_robin.h"

#include <algorithm>
#include <random>

#include "base/check.h"

namespace sluice::upstream::lb {

RoundRobin::RoundRobin(std::vector<uint32_t> weights, uint64_t seed)
    : weights_(std::move(weights)), current_(weights_.size(), 0) {
  SLUICE_CHECK(!weights_.empty());
  for (uint32_t w : weights_) total_ += w;
  if (seed == 0) seed = std::random_device{}();
  uint64_t skip = seed % static_cast<uint64_t>(total_);
  for (uint64_t i = 0; i < skip; ++i) next();
}

size_t RoundRobin::next() {
  size_t best = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    current_[i] += weights_[i];
    if (current_[i] > current_[best]) best = i;
  }
  current_[best] -= total_;
  return best;
}

size_t RoundRobin::pick(std::span<const size_t> tried) {
  size_t choice = next();
  if (tried.size() >= weights_.size()) return choice;  // everything failed once: go around again
  for (size_t guard = 0; guard < static_cast<size_t>(total_); ++guard) {
    if (std::find(tried.begin(), tried.end(), choice) == tried.end()) return choice;
    choice = next();
  }
  return choice;
}

}  // namespace sluice::upstream::lb
