// Exemplars (OpenMetrics): the recent requests the workers keep (proxy/http/recent_requests.h)
// linked to the histogram buckets they fall in, by their trace id. Main thread, at scrape.
#pragma once

#include <string>
#include <vector>

#include "admin/metrics.h"

namespace sluice::admin {

struct RecentExemplar {
  const char* family;       // the histogram
  const char* label_key;    // the label that tells its samples apart ("listener", "cluster")
  std::string label_value;  // e.g. the listener's name
  double seconds;           // the value the request gave the histogram
  std::string trace_id;     // 32 hex digits, from its traceparent
  double timestamp;         // when it ended, seconds since the epoch
};

// Of every recent request (GatherScope::recent) with a trace id: its request duration for
// sluice_http_request_duration_seconds{listener}, and, when it waited for an upstream
// connection, its pool wait (connect included, as the histogram counts it) for
// sluice_cluster_pool_wait_seconds{cluster}. Each histogram's largest value comes first, so
// that a bucket shows its slowest request.
std::vector<RecentExemplar> recent_exemplars(const MetricsInput& in);

}  // namespace sluice::admin
