#include "bgp/config.h"

#include <sys/socket.h>

#include <set>

#include <fmt/format.h>

namespace sluice::bgp {

ConfigIssues PeerConfig::validate() const {
  ConfigChecker c;
  if (address.length() == 0) c.missing("address");
  if (remote_as == 0) c.missing("remote_as");
  // RFC 4271 §4.2: zero (no keepalives) or at least three seconds.
  if (hold_time != Duration(0)) {
    c.check_duration("hold_time", hold_time, std::chrono::seconds(3), std::chrono::seconds(65535));
  }
  if (password.size() > kMaxPasswordLength) {
    c.error("password",
            fmt::format("expected at most {} bytes, got {}", kMaxPasswordLength, password.size()));
  }
  if (local_address && address.length() != 0 && local_address->family() != address.family()) {
    c.error("local_address", "expected an address of the same family as address");
  }
  c.check_duration("connect_retry", connect_retry, std::chrono::milliseconds(100),
                   std::chrono::seconds(3600));
  return c.take();
}

bool AnnounceConfig::enough(size_t usable, size_t total) const {
  if (usable == 0) return false;
  if (!min_healthy_percent) return usable >= min_healthy;
  return usable * 100 >= static_cast<uint64_t>(min_healthy) * total;
}

ConfigIssues AnnounceConfig::validate() const {
  ConfigChecker c;
  if (prefix.family == 0) c.missing("prefix");
  if (target.empty()) c.missing("when");
  if (min_healthy_percent) {
    c.check_uint("when.min_healthy", min_healthy, 1, 100);
  } else {
    c.check_uint("when.min_healthy", min_healthy, 1, 4096);
  }
  if (next_hop && prefix.family != 0 && next_hop->family() != prefix.family) {
    c.error("next_hop", "expected an address of the prefix's family");
  }
  if (communities.size() > 64) {
    c.error("communities", fmt::format("expected at most 64, got {}", communities.size()));
  }
  return c.take();
}

ConfigIssues BgpConfig::validate() const {
  ConfigChecker c;
  if (local_as == 0) c.missing("local_as");
  if (router_id == 0) c.error("router_id", "expected a non-zero IPv4 address");
  if (peers.empty()) c.error("peers", "expected a non-empty list of peers");
  std::set<std::string> seen;
  for (size_t i = 0; i < peers.size(); ++i) {
    std::string at = fmt::format("peers[{}]", i);
    c.nested(at, peers[i].validate());
    if (peers[i].address.length() != 0 && !seen.insert(peers[i].address.to_string()).second) {
      c.error(at + ".address", fmt::format("duplicate peer {}", peers[i].address.to_string()));
    }
  }
  if (announce.empty()) c.error("announce", "expected a non-empty list of prefixes");
  std::set<Prefix> prefixes;
  for (size_t i = 0; i < announce.size(); ++i) {
    std::string at = fmt::format("announce[{}]", i);
    c.nested(at, announce[i].validate());
    const AnnounceConfig& a = announce[i];
    for (const PeerConfig& p : peers) {
      if (a.prefix.family == 0 || a.next_hop || p.address.length() == 0 ||
          p.address.family() == a.prefix.family) {
        continue;
      }
      // The session's own address cannot be the next hop of another family.
      c.error(at + ".prefix",
              fmt::format("needs next_hop: peer {} is reached over IPv{}, so the session's own "
                          "address cannot be its next hop",
                          p.address.to_string(), p.address.family() == AF_INET ? 4 : 6));
      break;
    }
    if (announce[i].prefix.family != 0 && !prefixes.insert(announce[i].prefix).second) {
      c.error(at + ".prefix", fmt::format("duplicate prefix {}", announce[i].prefix.to_string()));
    }
  }
  c.check_duration("hold_down", hold_down, Duration(0), std::chrono::seconds(3600));
  c.check_duration("shutdown_delay", shutdown_delay, Duration(0), std::chrono::seconds(600));
  return c.take();
}

}  // namespace sluice::bgp
