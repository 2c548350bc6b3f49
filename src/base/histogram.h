// Histogram: counts of observations in fixed buckets (microseconds), with their sum, for
// latency metrics. Plain counters: one per worker, merged when exported.
#pragma once

#include <array>
#include <cstdint>

namespace sluice {

class Histogram {
 public:
  // Upper bounds of the buckets, in microseconds (the last bucket, +Inf, is implicit).
  static constexpr std::array<uint64_t, 16> kBoundsUs = {
      100,    250,     500,     1'000,   2'500,     5'000,     10'000,    25'000,
      50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000};

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    ++counts_[i];
    sum_us_ += us;
  }
  void add(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    sum_us_ += o.sum_us_;
  }
  // Non-cumulative count of bucket i (i == kBoundsUs.size(): above the last bound).
  uint64_t bucket(size_t i) const { return counts_[i]; }
  uint64_t count() const {
    uint64_t n = 0;
    for (uint64_t c : counts_) n += c;
    return n;
  }
  uint64_t sum_us() const { return sum_us_; }

 private:
  std::array<uint64_t, kBoundsUs.size() + 1> counts_{};
  uint64_t sum_us_ = 0;
};

}  // namespace sluice
