// EndpointConfig: one upstream endpoint (an address and its balancing weight), whether it
// comes from the configuration or from discovery.
#pragma once

#include <cstdint>

#include "net/address.h"

namespace sluice::upstream {

struct EndpointConfig {
  static constexpr uint32_t kMaxWeight = 1000;
  net::Address address;
  uint32_t weight = 1;
};

}  // namespace sluice::upstream
