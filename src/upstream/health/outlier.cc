#include "upstream/health/outlier.h"

#include <algorithm>
#include <cmath>

namespace sluice::upstream::health {

namespace {

std::vector<size_t> with_volume(std::span<const RateSample> samples, uint32_t volume) {
  std::vector<size_t> v;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].requests >= volume) v.push_back(i);
  }
  return v;
}

}  // namespace

SuccessRateVerdict judge_success_rate(std::span<const RateSample> samples,
                                      const SuccessRateEjection& config) {
  SuccessRateVerdict out;
  std::vector<size_t> v = with_volume(samples, config.request_volume);
  out.hosts = v.size();
  if (v.empty() || v.size() < config.minimum_hosts) return out;
  out.judged = true;
  for (size_t i : v) out.mean += samples[i].success_percent();
  out.mean /= static_cast<double>(v.size());
  double variance = 0;
  for (size_t i : v) {
    double d = samples[i].success_percent() - out.mean;
    variance += d * d;
  }
  out.stdev = std::sqrt(variance / static_cast<double>(v.size()));
  out.threshold = out.mean - config.stdev_factor * out.stdev;
  for (size_t i : v) {
    double rate = samples[i].success_percent();
    // Endpoints failing alike differ by chance (where an interval's requests happened to
    // fall), which can make the spread tiny: a gap smaller than one of the endpoint's own
    // requests is not evidence of anything.
    double one_request = 100.0 / samples[i].requests;
    if (rate < out.threshold && out.mean - rate > one_request) out.outliers.push_back(i);
  }
  return out;
}

std::vector<size_t> judge_failure_percentage(std::span<const RateSample> samples,
                                             const FailurePercentageEjection& config) {
  std::vector<size_t> out;
  std::vector<size_t> v = with_volume(samples, config.request_volume);
  if (v.empty() || v.size() < config.minimum_hosts) return out;
  for (size_t i : v) {
    double failed = 100.0 - samples[i].success_percent();
    if (failed >= config.threshold) out.push_back(i);
  }
  return out;
}

Duration ejection_time(const OutlierConfig& config, uint32_t n) {
  return std::min(config.base_ejection_time * n, config.max_ejection_time);
}

size_t max_ejected(const OutlierConfig& config, size_t members) {
  return std::max<size_t>(1, members * config.max_ejection_percent / 100);
}

}  // namespace sluice::upstream::health
