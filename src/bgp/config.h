// The `bgp:` block: the local AS and router id, the peers to open sessions to, and the
// prefixes to announce with what each announcement follows. The YAML layer fills it
// (config/map_bgp.cc); validate() holds the rules about its values. Main thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"
#include "bgp/message.h"
#include "net/address.h"

namespace sluice::bgp {

struct PeerConfig {
  static constexpr uint16_t kDefaultPort = 179;
  static constexpr size_t kMaxPasswordLength = 80;  // TCP_MD5SIG_MAXKEYLEN

  net::Address address;                       // with the port (179 unless configured)
  std::optional<net::Address> local_address;  // the source address (port 0)
  uint32_t remote_as = 0;
  Duration hold_time = std::chrono::seconds(90);
  // TCP-MD5 signature key (RFC 2385); "" = none.
  std::string password;
  // The first reconnection delay; it doubles on each failure up to 30 times as long.
  Duration connect_retry = std::chrono::seconds(1);

  ConfigIssues validate() const;
  bool operator==(const PeerConfig&) const = default;
};

struct AnnounceConfig {
  enum class Source { kListener, kCluster };

  Prefix prefix;
  Source source = Source::kCluster;
  std::string target;  // the listener's or the cluster's name
  // How many of the cluster's endpoints must be usable: a percentage of its endpoints or a
  // count. A listener counts as one endpoint, usable while sluice accepts on it.
  uint32_t min_healthy = 1;
  bool min_healthy_percent = false;
  std::vector<uint32_t> communities;
  std::optional<uint32_t> med;
  // The NEXT_HOP; absent: the session's own address (next-hop-self).
  std::optional<net::Address> next_hop;

  // "cluster api", "listener web".
  std::string source_name() const {
    return (source == Source::kCluster ? "cluster " : "listener ") + target;
  }
  // "50%", "2".
  std::string min_healthy_text() const {
    return std::to_string(min_healthy) + (min_healthy_percent ? "%" : "");
  }
  // Whether `usable` of `total` endpoints are enough.
  bool enough(size_t usable, size_t total) const;
  ConfigIssues validate() const;
  bool operator==(const AnnounceConfig&) const = default;
};

struct BgpConfig {
  uint32_t local_as = 0;
  uint32_t router_id = 0;  // host order
  std::string router_id_text;
  std::vector<PeerConfig> peers;
  std::vector<AnnounceConfig> announce;
  // How long a prefix's source must stay above (below) its threshold before the prefix is
  // announced again (withdrawn): a flapping cluster does not flap the route.
  Duration hold_down = std::chrono::seconds(10);
  // Between the GRACEFUL_SHUTDOWN re-announcement and the withdrawal at a stop.
  Duration shutdown_delay = std::chrono::seconds(5);

  ConfigIssues validate() const;
  bool operator==(const BgpConfig&) const = default;
};

}  // namespace sluice::bgp
