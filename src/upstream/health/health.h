// Endpoint health: the settings of active checks and outlier detection, the snapshot of
// endpoint states the health manager publishes to the workers, and the outcomes the workers
// report back.
//
// Data flow. Workers never decide health on their own: they report outcomes (a failure, or
// a success after a failure streak) to the HealthManager on the main thread, which runs the
// active checks, counts streaks across all workers, ejects, computes panic mode, and posts a
// new immutable HealthSnapshot to every worker. Each worker rebuilds its load balancer from
// the snapshot; so every worker ejects the same endpoint at the same time and the request
// path only reads worker-local state.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"
#include "upstream/endpoint.h"

namespace sluice::upstream::health {

struct HttpCheckConfig {
  std::string method = "GET";
  std::string path = "/";
  std::string host;  // empty: the cluster name
  // Inclusive [first, last] ranges of statuses that count as healthy.
  std::vector<std::pair<int, int>> expected_statuses{{200, 399}};
  std::string body_contains;  // empty: the body is not inspected
  bool operator==(const HttpCheckConfig&) const = default;
};

// The gRPC health-checking protocol (grpc.health.v1.Health/Check).
struct GrpcCheckConfig {
  std::string service;    // empty: the server as a whole
  std::string authority;  // empty: the cluster's host name, else the endpoint's address
  bool operator==(const GrpcCheckConfig&) const = default;
};

struct HealthCheckConfig {
  enum class Type { kNone, kTcp, kHttp, kGrpc };
  Type type = Type::kNone;
  Duration interval = std::chrono::seconds(5);
  Duration jitter = std::chrono::milliseconds(500);  // up to this much is added at random
  Duration timeout = std::chrono::seconds(1);
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  // The state before the first check answers. The first answer sets the state at once;
  // after that the thresholds apply.
  bool initially_healthy = false;
  HttpCheckConfig http;
  GrpcCheckConfig grpc;

  ConfigIssues validate() const;

  bool operator==(const HealthCheckConfig&) const = default;
};

// Success rate: eject an endpoint whose success rate is below the mean of the endpoints with
// at least `request_volume` requests minus stdev_factor standard deviations, when at least
// `minimum_hosts` such endpoints exist.
struct SuccessRateEjection {
  uint32_t minimum_hosts = 5;
  uint32_t request_volume = 100;
  double stdev_factor = 1.9;
  bool operator==(const SuccessRateEjection&) const = default;
};

// Failure percentage: eject an endpoint whose share of failures reaches `threshold`.
struct FailurePercentageEjection {
  uint32_t threshold = 85;
  uint32_t minimum_hosts = 5;
  uint32_t request_volume = 50;
  bool operator==(const FailurePercentageEjection&) const = default;
};

struct OutlierConfig {
  uint32_t consecutive_5xx = 5;                  // 0 disables
  uint32_t consecutive_gateway_failure = 5;      // connect failure, reset, timeout, 502/503/504
  Duration interval = std::chrono::seconds(10);  // an endpoint in service earns back one ejection
  Duration base_ejection_time = std::chrono::seconds(30);
  Duration max_ejection_time = std::chrono::seconds(300);
  uint32_t max_ejection_percent = 50;  // at least one endpoint may always be ejected
  // Statistical ejection, judged once per interval over the requests of that interval.
  std::optional<SuccessRateEjection> success_rate;              // absent: off
  std::optional<FailurePercentageEjection> failure_percentage;  // absent: off
  bool counts_requests() const { return success_rate || failure_percentage; }

  ConfigIssues validate() const;

  bool operator==(const OutlierConfig&) const = default;
};

// Per endpoint, why it does not take new requests (0: it does).
enum EndpointFlag : uint8_t {
  kFailedActiveCheck = 1,
  kEjected = 2,
  kDraining = 4,
  kRemoved = 8,  // discovery no longer lists it; not counted as part of the cluster
  // Removed, and no worker refers to it any more: the slot waits for the next new endpoint.
  kFree = 16,
};

struct HealthSnapshot {
  // The cluster's endpoint table, by slot. An endpoint that leaves is flagged kRemoved and
  // keeps its slot (and comes back to it) while any worker still refers to it: requests in
  // flight, pooled connections, TCP or UDP sessions. Once every worker has released it
  // (ClusterShared::release), the slot is flagged kFree and a new endpoint may take it, so
  // the table follows any amount of churn with as many slots as endpoints live at once.
  std::shared_ptr<const std::vector<EndpointConfig>> endpoints;
  std::vector<uint8_t> flags;  // EndpointFlag bits, by endpoint index
  // By slot: the number of the slot's last removal, unique in the cluster (never reused for
  // another slot or endpoint). A worker's release names the removal it saw, so a release that
  // crosses a return and a new removal counts for nothing, and a worker that did not see a
  // slot go free and come back (snapshots it skipped) cannot mistake a new removal for one it
  // released already.
  std::vector<uint32_t> removals;
  // Too few endpoints are healthy: balance over all that are not draining.
  bool panic = false;
};

enum class Outcome : uint8_t {
  kSuccess,         // a response below 500, or an L4 connect that succeeded
  kError5xx,        // the upstream answered 500-599 (other than a gateway status)
  kGatewayFailure,  // connect failure, reset, timeout, or 502/503/504 from the upstream
};

// State of one cluster shared by every worker and the health manager. The request path
// touches it only for the circuit breakers that are configured, and reads the streak flags
// only after a success.
struct ClusterShared {
  // Discovery may grow the endpoint table up to this size (endpoints listed at once, plus
  // departed ones some worker still uses).
  static constexpr size_t kMaxEndpoints = 4096;
  // Set by the health manager; any thread. A worker no longer refers to the removed endpoint
  // in `slot` (removal number `removal` of that slot): its pools are gone, nothing in flight.
  std::function<void(size_t slot, uint32_t removal)> release;
  ClusterShared() : streak(std::make_unique<std::atomic<bool>[]>(kMaxEndpoints)) {}
  std::atomic<uint32_t> active_requests{0};
  std::atomic<uint32_t> active_retries{0};
  // Set by the manager while an endpoint has a failure streak: a worker that sees a success
  // there reports it, so that a streak is only "consecutive" across all workers.
  std::unique_ptr<std::atomic<bool>[]> streak;
  // Requests and failures per endpoint since the manager last looked; allocated (and
  // counted) only for success-rate or failure-percentage ejection.
  std::unique_ptr<std::atomic<uint32_t>[]> requests;
  std::unique_ptr<std::atomic<uint32_t>[]> failures;
};

// Where workers send outcomes; implemented by the HealthManager. Thread-safe.
class OutcomeSink {
 public:
  virtual void report(size_t cluster, size_t endpoint, Outcome outcome) = 0;

 protected:
  ~OutcomeSink() = default;
};

}  // namespace sluice::upstream::health
