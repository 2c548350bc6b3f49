// The BGP speaker's place in the server: what each announced prefix follows.
#include "admin/metrics.h"
#include "base/log.h"
#include "bgp/speaker.h"
#include "server/handover.h"
#include "server/server.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {
namespace {

// How long the new process waits for the old one to let go of the BGP sessions once it
// said ready (the old one answers within its poll interval).
constexpr auto kBgpReleaseTimeout = std::chrono::seconds(5);

}  // namespace

void Server::start_bgp() {
  if (!config_->bgp) return;
  bgp_ = std::make_unique<bgp::Speaker>(
      main_loop_, config_->bgp, [this](const bgp::AnnounceConfig& a) { return bgp_source(a); });
  if (inherited_ && !inherited_->bgp.empty()) bgp_->adopt(std::move(inherited_->bgp));
  bgp_->start();
}

void Server::release_bgp() {
  if (!bgp_ || !upgrade_sock_.valid()) return;
  std::vector<bgp::SessionTransfer> released = bgp_->release();
  if (released.empty()) return;
  if (Status s = send_bgp_release(upgrade_sock_.get(), released); !s) {
    LOG_WARN("upgrade: bgp: could not tell pid {} what was in flight: {}", successor_, s.message());
  }
}

void Server::take_over_bgp() {
  if (!upgrade_fd_.valid()) return;
  // Without a bgp: block now, sessions handed over are only closed, properly.
  bool orphans = !bgp_ && inherited_ && !inherited_->bgp.empty();
  if (!orphans && (!bgp_ || !bgp_->adopted())) return;
  auto released = receive_bgp_release(upgrade_fd_.get(), kBgpReleaseTimeout);
  if (!released) LOG_WARN("upgrade: bgp: {}", released.status().message());
  auto* got = released ? &released.value() : nullptr;
  if (bgp_) return bgp_->take_over(got);
  for (auto& [peer, handed] : inherited_->bgp) {
    const bgp::SessionTransfer* t = nullptr;
    if (got) {
      auto it = got->find(peer);
      if (it != got->end() && it->second.released) t = &it->second;
    }
    bgp::close_deconfigured(handed, t);
  }
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
