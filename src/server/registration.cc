// sluice's own key in etcd (`registration:`, discovery/etcd_registration.h) in the server's
// lifecycle: put once ready, revoked before a stop drains, handed over by a binary upgrade.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/metrics.h"
#include "discovery/etcd_registration.h"
#include "server/server.h"

namespace sluice::server {

void Server::start_registration() {
  if (!config_->registration || registration_) return;
  registration_ = std::make_unique<discovery::EtcdRegistration>(main_loop_, *config_->registration);
  registration_->start(inherited_lease_);
  inherited_lease_ = 0;
}

bool Server::withdraw_registration(int sig) {
  if (!registration_ || lifecycle_.is(admin::LifecycleState::kDraining)) return false;
  auto state = registration_->state();
  if (state == upstream::RegistrationState::kRevoking) {
    // Asked again: no more waiting for etcd.
    LOG_WARN("{} again: not waiting for etcd to revoke the registration", strsignal(sig));
    registration_->release(false);
    return false;
  }
  if (state == upstream::RegistrationState::kIdle || state == upstream::RegistrationState::kDone) {
    return false;
  }
  // Peers that read the registry stop sending first; sluice stops accepting after.
  registration_->revoke([this, sig] {
    main_loop_.post([this, sig] {
      if (!lifecycle_.is(admin::LifecycleState::kDraining)) on_signal(sig);
    });
  });
  return true;
}

void Server::add_registration_stats(admin::MetricsInput& in) const {
  if (registration_) in.registration = registration_->stats();
}

std::string Server::registration_json() const {
  if (!config_->registration) return {};
  nlohmann::json j = {
      {"key", config_->registration->key},
      {"value", config_->registration->value},
      {"ttl_seconds",
       std::chrono::duration_cast<std::chrono::seconds>(config_->registration->ttl).count()}};
  if (!registration_) {
    j["state"] = "idle";
    j["lease"] = "0";
    return j.dump();
  }
  j["state"] = upstream::to_string(registration_->state());
  // Lease ids are int64: as a string, as etcd's own JSON writes them, and in hex as etcdctl.
  j["lease"] = std::to_string(registration_->lease());
  j["lease_hex"] = fmt::format("{:x}", registration_->lease());
  j["etcd"] = registration_->endpoint();
  const auto& s = registration_->stats();
  j["grants"] = s.grants;
  j["puts"] = s.puts;
  j["keepalives"] = s.keepalives;
  j["leases_lost"] = s.leases_lost;
  j["failures"] = s.failures;
  j["auth_renewals"] = s.auth_renewals;
  return j.dump();
}

}  // namespace sluice::server
