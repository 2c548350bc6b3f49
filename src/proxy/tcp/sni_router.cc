#include "proxy/tcp/sni_router.h"

#include <fmt/format.h>

#include "tls/client_hello.h"

namespace sluice::proxy::tcp {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

SniRouter::SniRouter(const std::vector<SniRoute>& routes) {
  for (size_t i = 0; i < routes.size(); ++i) {
    for (const std::string& name : routes[i].names) {
      std::string key = lower(name);
      if (key.starts_with("*.")) {
        wildcard_.emplace(key.substr(2), i);
      } else {
        exact_.emplace(std::move(key), i);
      }
    }
  }
}

std::optional<size_t> SniRouter::match(std::string_view server_name) const {
  if (server_name.empty()) return std::nullopt;
  if (auto it = exact_.find(server_name); it != exact_.end()) return it->second;
  size_t dot = server_name.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  if (auto it = wildcard_.find(server_name.substr(dot + 1)); it != wildcard_.end()) {
    return it->second;
  }
  return std::nullopt;
}

bool valid_sni_pattern(std::string_view name) {
  if (name.starts_with("*.")) name.remove_prefix(2);
  return tls::valid_server_name(lower(name));
}

ConfigIssues validate_sni_routes(const std::vector<SniRoute>& routes) {
  ConfigChecker c;
  std::map<std::string, std::string> first_at;  // lower-cased name → its path
  for (size_t i = 0; i < routes.size(); ++i) {
    const SniRoute& route = routes[i];
    std::string at = fmt::format("[{}]", i);
    if (route.names.empty()) {
      c.error(at + ".names", "expected a non-empty list of server names");
    }
    for (size_t k = 0; k < route.names.size(); ++k) {
      const std::string& name = route.names[k];
      std::string name_at = fmt::format("{}.names[{}]", at, k);
      if (!valid_sni_pattern(name)) {
        c.error(name_at,
                fmt::format("'{}' is not a server name (a DNS name such as api.example.com, or "
                            "*.example.com for one label under a domain)",
                            name));
        continue;
      }
      auto [it, fresh] = first_at.emplace(lower(name), name_at);
      if (!fresh) {
        c.duplicate(name_at, fmt::format("duplicate server name '{}'", name), it->second);
      }
    }
    if (route.cluster.empty()) c.missing(at + ".cluster");
  }
  return c.take();
}

}  // namespace sluice::proxy::tcp
