// The `registration:` block: sluice puts its own key in etcd, under a lease it keeps alive,
// while it is ready (discovery/etcd_registration.h). The YAML layer fills it
// (config/config.cc); validate() holds the rules about its values.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"
#include "net/address.h"
#include "tls/config.h"

namespace sluice::discovery {

struct RegistrationConfig {
  std::vector<net::Address> endpoints;  // etcd members (host:port), tried in turn
  std::string key;                      // "/services/web/host-1"
  // What the key holds: as written, or {"address": "..."} from `address:` (the schema the
  // etcd source reads, docs/discovery.md).
  std::string value;
  // The lease's time to live: the key goes this long after sluice stops renewing it.
  Duration ttl = std::chrono::seconds(10);
  std::optional<tls::ClientConfig> tls;  // HTTPS to the members; absent: plain HTTP
  std::string username;                  // empty: no auth (with auth on, etcd refuses writes)
  std::string password;

  ConfigIssues validate() const;
  bool operator==(const RegistrationConfig&) const = default;
};

}  // namespace sluice::discovery
