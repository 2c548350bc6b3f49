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
  for (size_t i = 0; i < credentials.size(); ++i) {
    const Credential& cr = credentials[i];
    std::string at = fmt::format("credentials[{}]", i);
    if (cr.username.empty()) c.missing(at + ".username");
    if (cr.username.size() > 513) {  // RFC 8489 §14.3
      c.error(at + ".username",
              fmt::format("expected at most 513 bytes, got {}", cr.username.size()));
    }
    if (cr.password.empty()) c.missing(at + ".password");
    for (size_t j = 0; j < i; ++j) {
      if (credentials[j].username == cr.username) {
        c.duplicate(at + ".username", fmt::format("username '{}' defined twice", cr.username),
                    fmt::format("credentials[{}].username", j));
      }
    }
  }
  c.check_uint("max_tcp_connections", max_tcp_connections, 1, 1'000'000);
  c.check_duration("tcp_idle_timeout", tcp_idle_timeout, std::chrono::seconds(1),
                   std::chrono::hours(1));
  return c.take();
}

}  // namespace sluice::stun
