// EndpointConfig: one upstream endpoint (an address and its balancing weight), whether it
// comes from the configuration or from discovery. A logical_dns endpoint also carries the
// rest of its name's answer: connects race them after `address` (RFC 8305).
#pragma once

#include <cstdint>
#include <vector>

#include "net/address.h"

namespace sluice::upstream {

struct EndpointConfig {
  static constexpr uint32_t kMaxWeight = 1000;
  net::Address address;
  uint32_t weight = 1;
  std::vector<net::Address> fallbacks;  // tried after `address`, in this order
  bool operator==(const EndpointConfig&) const = default;
};

}  // namespace sluice::upstream
