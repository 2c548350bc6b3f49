// What a reload from one validated configuration to another would change, in words an
// operator reads before applying it (`sluice check -c NEW --diff OLD`). Pure: no I/O, no
// clock; the two configurations are compared as loaded.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace sluice::config {

// The groups changes are listed in, in this order.
enum class ChangeSection { kListener, kRoute, kCluster, kTls, kOther };

struct ConfigChange {
  ChangeSection section;
  // One line: what changed and what a reload does about it, e.g.
  // "cluster api: pool.max_connections 1024 -> 512 (new connections only)".
  std::string text;

  bool operator==(const ConfigChange&) const = default;
};

// Every difference from `before` to `after`, grouped by section (listeners, their routes,
// clusters, TLS, the rest) and within a section in the order of the configuration. Empty:
// the two configurations mean the same.
std::vector<ConfigChange> diff_configs(const Config& before, const Config& after);

}  // namespace sluice::config
