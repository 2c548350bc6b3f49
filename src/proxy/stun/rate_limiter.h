// SourceRateLimiter: a token bucket per client IP address in a table of bounded size. When
// the table is full the least recently seen address is forgotten, so a flood of spoofed
// sources costs `max_sources` entries, never more. Loop thread only.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>

#include "base/clock.h"
#include "proxy/udp/datagram_socket.h"

namespace sluice::proxy::stun {

class SourceRateLimiter {
 public:
  // `per_second` 0: every request passes.
  SourceRateLimiter(uint32_t per_second, uint32_t burst, size_t max_sources)
      : per_second_(per_second), burst_(burst), max_sources_(max_sources) {}

  // Whether `source` may be answered now (takes a token).
  bool allow(const udp::AddressKey& source, MonoTime now);
  size_t tracked() const { return table_.size(); }

 private:
  struct Bucket {
    double tokens;
    MonoTime updated;
    std::list<udp::AddressKey>::iterator lru;
  };
  uint32_t per_second_;
  uint32_t burst_;
  size_t max_sources_;
  std::list<udp::AddressKey> lru_;  // most recently seen first
  std::unordered_map<udp::AddressKey, Bucket, udp::AddressKeyHash> table_;
};

}  // namespace sluice::proxy::stun
