// The BGP speaker's place in the server: what each announced prefix follows.
#include "admin/metrics.h"
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
    } else if (!lifecycle_.serving()) {  // a reload or an upgrade still serves
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

void Server::add_bgp_stats(admin::MetricsInput& in) const {
  if (!bgp_) return;
  for (const auto& session : bgp_->sessions()) {
    in.bgp_peers.emplace_back(session->name(), session->stats());
  }
  for (const auto& p : bgp_->prefixes()) {
    in.bgp_prefixes.emplace_back(p.config->prefix.to_string(), p.stats);
  }
}

}  // namespace sluice::server
