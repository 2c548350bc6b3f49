#include "proxy/udp/udp_config.h"

namespace sluice::proxy::udp {

ConfigIssues UdpOptions::validate() const {
  ConfigChecker c;
  c.check_duration("idle_timeout", idle_timeout, std::chrono::milliseconds(1),
                   std::chrono::hours(24));
  c.check_uint("max_responses", max_responses, 0, 1'000'000);
  c.check_uint("max_sessions", max_sessions, 1, 1'000'000);
  c.check_uint("max_sessions_per_source", max_sessions_per_source, 0, 1'000'000);
  c.check_size("max_datagram_size", max_datagram_size, 1, kMaxDatagram);
  return c.take();
}

}  // namespace sluice::proxy::udp
