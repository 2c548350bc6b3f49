// The BGP speaker's place in the server: what each announced prefix follows.
#include "bgp/speaker.h"
#include "server/server.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {

void Server::start_bgp() {
  if (!config_->bgp) return;
  bgp_ = std::make_unique<bgp::Speaker>(
      main_loop_, config_->bgp, [this](const bgp::AnnounceConfig& a) { return bgp_source(a); });
  bgp_->start();
}

bgp::SourceState Server::bgp_source(const bgp::AnnounceConfig& a) const {
  bgp::SourceState s;
  if (a.source == bgp::AnnounceConfig::Source::kListener) {
    s.total = 1;
    bool configured = false;
    for (const auto& l : config_->listeners) configured |= l->name == a.target;
    if (!configured) {
      s.note = "not in the configuration";
    } else if (!lifecycle_.is(admin::LifecycleState::kReady)) {
      s.note = std::string(admin::to_string(lifecycle_.state()));
    } else {
      s.usable = 1;
    }
    return s;
  }
  auto index = health_->find_cluster(a.target);
  if (!index || health_->retired(*index)) return s;
  const upstream::health::HealthSnapshot& snap = health_->snapshot(*index);
  for (uint8_t flags : snap.flags) {
    if (flags & upstream::health::kRemoved) continue;
    ++s.total;
    if (flags == 0) ++s.usable;
  }
  return s;
}

}  // namespace sluice::server
