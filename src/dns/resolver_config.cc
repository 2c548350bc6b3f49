// ResolverConfig::validate().
#include <fmt/format.h>

#include "dns/resolver.h"

namespace sluice::dns {

ConfigIssues ResolverConfig::validate() const {
  using std::chrono::hours;
  using std::chrono::seconds;
  constexpr Duration kZero{0};
  ConfigChecker c;
  for (size_t i = 0; i < servers.size(); ++i) {
    if (servers[i].port() == 0) {
      c.error(fmt::format("servers[{}]", i),
              fmt::format("'{}': expected an address such as 127.0.0.1:53 or [::1]:53",
                          servers[i].to_string()));
    }
  }
  c.check_duration("timeout", timeout, std::chrono::milliseconds(10), std::chrono::minutes(1));
  c.check_uint("attempts", attempts, 1, 10);
  c.check_duration("min_ttl", min_ttl, kZero, hours(24));
  c.check_duration("max_ttl", max_ttl, seconds(1), hours(24 * 7));
  c.check_duration("negative_min_ttl", negative_min_ttl, kZero, hours(24));
  c.check_duration("negative_max_ttl", negative_max_ttl, seconds(1), hours(24));
  c.check_duration("stale_ttl", stale_ttl, kZero, hours(24 * 7));
  c.check_uint("max_cname_chain", max_cname_chain, 1, 32);
  if (min_ttl > max_ttl) c.error("min_ttl", "must not be longer than max_ttl");
  if (negative_min_ttl > negative_max_ttl) {
    c.error("negative_min_ttl", "must not be longer than negative_max_ttl");
  }
  return c.take();
}

}  // namespace sluice::dns
