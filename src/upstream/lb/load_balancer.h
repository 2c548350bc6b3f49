// LoadBalancer: picks an endpoint index of a cluster. One instance per cluster per worker,
// so implementations keep plain (unsynchronised) state. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace sluice::upstream::lb {

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // Picks an endpoint, preferring one not in `tried` (the endpoints this request or
  // connection already failed on) while any is left. Requires at least one endpoint.
  virtual size_t pick(std::span<const size_t> tried) = 0;
};

}  // namespace sluice::upstream::lb
