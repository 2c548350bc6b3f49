// The `registration:` block → discovery::RegistrationConfig.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/yaml_map.h"

namespace sluice::config {

std::shared_ptr<discovery::RegistrationConfig> read_registration(YamlReader& r,
                                                                 const YAML::Node& node) {
  auto c = std::make_shared<discovery::RegistrationConfig>();
  MapReader m(r, node, "registration",
              {"endpoints", "key", "value", "address", "ttl", "tls", "username", "password"});
  if (!m.ok()) return c;
  read_etcd_endpoints(r, m, c->endpoints);
  if (m.require("key")) m.read_string("key", c->key);
  if (m.has("value") && m.has("address")) {
    r.error(m.get("address"), m.path("address"), "either value or address, not both");
    r.failed("registration.value");
  } else if (m.has("value")) {
    m.read_string("value", c->value);
  } else if (m.has("address")) {
    std::string text;
    m.read_string("address", text);
    auto a = net::Address::parse(text);
    if (!a || a->port() == 0) {
      r.error(m.get("address"), m.path("address"),
              fmt::format("expected IP:PORT such as 10.0.0.5:8080, got '{}'", text));
      r.failed("registration.value");
    } else {
      // The schema the etcd source reads (discovery/endpoint_json.h).
      c->value = nlohmann::json{{"address", a->to_string()}}.dump();
    }
  }
  m.read_duration("ttl", c->ttl);
  m.read_string("username", c->username);
  m.read_string("password", c->password);
  if (m.has("tls")) {
    c->tls.emplace();
    read_client_tls(r, m.get("tls"), m.path("tls"), *c->tls);
  }
  return c;
}

}  // namespace sluice::config
