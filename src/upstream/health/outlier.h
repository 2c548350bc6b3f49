// Outlier judgement as pure functions of counts and settings: the statistics the
// HealthManager applies once per interval (success rate, failure percentage), how long an
// ejection lasts, and how many endpoints may be out at once. No time, no I/O: the manager
// owns the timers and the endpoint state, these decide. Any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/units.h"
#include "upstream/health/health.h"

namespace sluice::upstream::health {

// One endpoint's requests over the last interval.
struct RateSample {
  size_t endpoint = 0;
  uint32_t requests = 0;
  uint32_t failures = 0;  // at most `requests`
  double success_percent() const {
    return requests == 0 ? 100.0 : 100.0 * (requests - failures) / requests;
  }
};

// The success-rate judgement: endpoints whose success rate falls below
// mean - stdev_factor x stdev (population standard deviation) of the endpoints with at least
// request_volume requests, when at least minimum_hosts such endpoints exist.
struct SuccessRateVerdict {
  bool judged = false;  // enough endpoints with enough requests
  size_t hosts = 0;     // endpoints with at least request_volume requests
  double mean = 0;      // percent
  double stdev = 0;     // percent
  double threshold = 0;
  std::vector<size_t> outliers;  // indices into the samples, in sample order
};
SuccessRateVerdict judge_success_rate(std::span<const RateSample> samples,
                                      const SuccessRateEjection& config);

// The failure-percentage judgement: indices into the samples of endpoints (with at least
// request_volume requests, when at least minimum_hosts have that many) whose failed share
// reaches threshold percent.
std::vector<size_t> judge_failure_percentage(std::span<const RateSample> samples,
                                             const FailurePercentageEjection& config);

// How long the n-th ejection (n >= 1, after decay) keeps an endpoint out:
// base_ejection_time x n, at most max_ejection_time.
Duration ejection_time(const OutlierConfig& config, uint32_t n);

// How many of `members` endpoints may be ejected at once: max_ejection_percent of them,
// rounded down, but always at least one.
size_t max_ejected(const OutlierConfig& config, size_t members);

}  // namespace sluice::upstream::health
