#include "discovery/registration_config.h"

namespace sluice::discovery {

ConfigIssues RegistrationConfig::validate() const {
  ConfigChecker c;
  if (endpoints.empty()) c.missing("endpoints");
  if (key.empty()) c.missing("key");
  if (value.empty()) c.error("value", "expected a value or an address");
  // etcd grants no lease shorter than its own minimum (about 2 s by default) and sluice renews
  // at a third of the TTL: below 3 s a renewal could not be late once.
  c.check_duration("ttl", ttl, std::chrono::seconds(3), std::chrono::hours(24));
  if (tls) c.nested("tls", tls->validate());
  if (username.empty() != password.empty()) {
    c.error(username.empty() ? "password" : "username", "username and password go together");
  }
  return c.take();
}

}  // namespace sluice::discovery
