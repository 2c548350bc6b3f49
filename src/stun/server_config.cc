#include "stun/server_config.h"

#include <fmt/format.h>

namespace sluice::stun {

ConfigIssues ServerOptions::validate() const {
  ConfigChecker c;
  if (software.size() >= kMaxSoftware) {
    c.error("software",
            fmt::format("expected fewer than {} bytes, got {}", kMaxSoftware, software.size()));
  }
  c.check_uint("rate_limit", rate_limit, 0, 1'000'000);
  if (rate_limit > 0) c.check_uint("rate_burst", rate_burst, 1, 1'000'000);
  c.check_uint("max_sources", max_sources, 16, 10'000'000);
  c.check_uint("max_tcp_connections", max_tcp_connections, 1, 1'000'000);
  c.check_duration("tcp_idle_timeout", tcp_idle_timeout, std::chrono::seconds(1),
                   std::chrono::hours(1));
  return c.take();
}

}  // namespace sluice::stun
