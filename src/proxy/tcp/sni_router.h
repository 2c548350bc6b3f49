// SniRouter: a tcp listener's sni_routes as a lookup from a ClientHello's server name to the
// route that takes it: an exact name first, then a wildcard of one leftmost label
// ("*.example.com"), else none (the listener's own cluster). Built once per listener per
// worker from a validated ListenerConfig; immutable, so any thread may match.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/validation.h"
#include "proxy/listener_config.h"

namespace sluice::proxy::tcp {

class SniRouter {
 public:
  explicit SniRouter(const std::vector<SniRoute>& routes);

  // The index in sni_routes of the route for `server_name` (lower case, as
  // tls::parse_client_hello() gives it), or nullopt: no route names it, or it is "".
  std::optional<size_t> match(std::string_view server_name) const;

  bool empty() const { return exact_.empty() && wildcard_.empty(); }

 private:
  // Keyed by the name, and for wildcards by what follows "*." ("example.com").
  std::map<std::string, size_t, std::less<>> exact_;
  std::map<std::string, size_t, std::less<>> wildcard_;
};

// Whether `name` may be written in sni_routes: a server name (tls::valid_server_name(), in
// any case) or "*." followed by one.
bool valid_sni_pattern(std::string_view name);

// The rules of sni_routes (each route has names and a cluster, each name is valid, no name
// appears twice in the listener), with paths below "sni_routes". Whether the clusters exist
// is config::Config::validate()'s to check.
ConfigIssues validate_sni_routes(const std::vector<SniRoute>& routes);

}  // namespace sluice::proxy::tcp
