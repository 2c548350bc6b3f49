#include "discovery/dns_discovery.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/log.h"
#include "net/connect_race.h"

namespace sluice::discovery {

using upstream::ClusterConfig;

// A logical_dns endpoint keeps at most this many addresses of its answer (connects race the
// first net::ConnectRace::kMaxAttempts of them).
constexpr size_t kMaxAddresses = 64;

DnsDiscovery::DnsDiscovery(
    event::Loop& loop, dns::Resolver& resolver, upstream::health::HealthManager& health,
    const std::vector<std::shared_ptr<const upstream::ClusterConfig>>& clusters)
    : loop_(loop), resolver_(resolver), health_(health) {
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (!upstream::is_dns(clusters[i]->type)) continue;
    auto c = std::make_unique<ClusterState>();
    c->index = i;
    c->config = clusters[i];
    set_targets(*c);
    ClusterState* raw = c.get();
    c->timer = std::make_unique<event::Timer>(loop_.timers(), [this, raw] { refresh(*raw); });
    clusters_.push_back(std::move(c));
  }
}

void DnsDiscovery::set_targets(ClusterState& c) {
  c.targets.clear();
  for (const auto& t : c.config->dns_targets) {
    Target target;
    target.host = t.host;
    target.port = t.port;
    target.weight = t.weight;
    c.targets.push_back(std::move(target));
  }
}

DnsDiscovery::ClusterState* DnsDiscovery::find(size_t index) {
  for (auto& c : clusters_) {
    if (c->index == index) return c.get();
  }
  return nullptr;
}

void DnsDiscovery::set_cluster(size_t index, std::shared_ptr<const ClusterConfig> config) {
  ClusterState* c = find(index);
  if (!upstream::is_dns(config->type)) {
    if (c) remove_cluster(index);
    return;
  }
  if (c && !c->removed && c->config->type == config->type &&
      c->config->dns_targets == config->dns_targets && c->config->srv_name == config->srv_name) {
    c->config = std::move(config);  // same names: the answers in hand stay
    return;
  }
  if (!c) {
    auto made = std::make_unique<ClusterState>();
    made->index = index;
    c = made.get();
    c->timer = std::make_unique<event::Timer>(loop_.timers(), [this, c] { refresh(*c); });
    clusters_.push_back(std::move(made));
  }
  c->config = std::move(config);
  c->removed = false;
  c->answered = false;
  c->srv_refresh_at = MonoTime{};
  set_targets(*c);
  c->timer->cancel();
  refresh(*c);  // a new round: answers of the old names are ignored
}

bool DnsDiscovery::answered(size_t index) const {
  for (const auto& c : clusters_) {
    if (c->index == index) return c->answered || c->removed;
  }
  return true;
}

void DnsDiscovery::remove_cluster(size_t index) {
  ClusterState* c = find(index);
  if (!c) return;
  c->removed = true;
  c->answered = true;
  ++c->round;  // answers still on their way are ignored
  c->timer->cancel();
}

DnsDiscovery::~DnsDiscovery() {
  stop();
}

void DnsDiscovery::start(std::function<void()> on_first_round) {
  on_first_round_ = std::move(on_first_round);
  for (auto& c : clusters_) refresh(*c);
  check_first_round();
}

void DnsDiscovery::stop() {
  stopped_ = true;
  for (auto& c : clusters_) c->timer->cancel();
}

void DnsDiscovery::check_first_round() {
  if (!on_first_round_) return;
  for (const auto& c : clusters_) {
    if (!c->answered) return;
  }
  auto fn = std::move(on_first_round_);
  on_first_round_ = nullptr;
  fn();
}

void DnsDiscovery::keep_refresh_time(MonoTime& refresh_at, const dns::Answer& a) const {
  // From the cache, the TTL is what is left of it: the refresh time set when the answer came
  // from the servers still holds (recomputing it from the rest would push it ever later).
  if (a.from_cache && refresh_at != MonoTime{} && refresh_at > loop_.now()) return;
  // An early refresh that failed is tried again when the answer expires (then stale rules).
  refresh_at = loop_.now() + (a.refresh_failed ? a.ttl : dns::refresh_after(a.ttl));
}

void DnsDiscovery::refresh(ClusterState& c) {
  if (stopped_) return;
  ++c.round;
  c.next = std::chrono::hours(24);
  if (c.config->type != ClusterConfig::Type::kDnsSrv) return resolve_targets(c);
  uint64_t round = c.round;
  c.pending = 1;
  bool fresh = due(c.srv_refresh_at);
  resolver_.resolve(
      c.config->srv_name, dns::QueryType::kSrv,
      [this, &c, round](const dns::Answer& a) {
        if (stopped_ || round != c.round) return;
        if (a.ok() && !a.stale) {
          keep_refresh_time(c.srv_refresh_at, a);
          c.next = std::min(c.next, c.srv_refresh_at - loop_.now());
        } else {
          c.srv_refresh_at = MonoTime{};
          c.next = std::min(c.next, a.ok() ? a.ttl : c.config->dns_failure_refresh);
        }
        if (!a.ok() || a.srv.empty()) {
          LOG_WARN("cluster {}: SRV {}: {}; keeping the last known endpoints", c.config->name,
                   c.config->srv_name, a.ok() ? "no records" : a.error_text);
          c.pending = 0;
          return finish_round(c);
        }
        // The lowest priority value is preferred (RFC 2782); its weights
        // become the endpoints' weights.
        uint16_t best = UINT16_MAX;
        for (const auto& r : a.srv) best = std::min(best, r.priority);
        std::vector<Target> targets;
        for (const auto& r : a.srv) {
          if (r.priority != best || r.target.empty() || r.target == ".") continue;
          Target t;
          t.host = r.target;
          t.port = r.port;
          t.weight = std::clamp<uint32_t>(r.weight, 1, ClusterConfig::kMaxWeight);
          // Keep what is known of a target that stays.
          for (const auto& old : c.targets) {
            if (old.host == t.host && old.port == t.port) {
              t.last = old.last;
              t.resolved = old.resolved;
              t.refresh_at = old.refresh_at;
            }
          }
          targets.push_back(std::move(t));
        }
        c.targets = std::move(targets);
        c.pending = 0;
        resolve_targets(c);
      },
      fresh);
}

void DnsDiscovery::resolve_targets(ClusterState& c) {
  uint64_t round = c.round;
  c.pending = c.targets.size();
  if (c.pending == 0) return finish_round(c);
  // Copy the names first: an answer from the cache arrives before resolve() returns.
  std::vector<std::pair<std::string, bool>> hosts;
  for (const auto& t : c.targets) hosts.emplace_back(t.host, due(t.refresh_at));
  for (size_t i = 0; i < hosts.size(); ++i) {
    resolver_.resolve(
        hosts[i].first, dns::QueryType::kAddress,
        [this, &c, round, i](const dns::Answer& a) { on_target(c, round, i, a); }, hosts[i].second);
  }
}

void DnsDiscovery::on_target(ClusterState& c, uint64_t round, size_t t, const dns::Answer& a) {
  if (stopped_ || round != c.round || t >= c.targets.size()) return;
  Target& target = c.targets[t];
  if (a.ok() && !a.addresses.empty()) {
    if (!target.resolved) {
      std::string list;
      for (const auto& addr : a.addresses) list += (list.empty() ? "" : ", ") + addr.ip_string();
      LOG_INFO("cluster {}: {} resolved to {} (ttl {}{})", c.config->name, target.host, list,
               format_duration(a.ttl), a.stale ? ", stale" : "");
    }
    target.last = a.addresses;
    target.resolved = true;
    if (a.stale) {
      target.refresh_at = MonoTime{};  // expired already: the next lookup asks the servers
      c.next = std::min(c.next, a.ttl);
    } else {
      keep_refresh_time(target.refresh_at, a);
      c.next = std::min(c.next, target.refresh_at - loop_.now());
    }
  } else {
    std::string why = a.ok() ? "no addresses" : a.error_text;
    if (target.resolved) {
      LOG_WARN("cluster {}: {}: {}; keeping its last known addresses", c.config->name, target.host,
               why);
    } else {
      LOG_WARN("cluster {}: {}: {}", c.config->name, target.host, why);
    }
    target.refresh_at = MonoTime{};
    // A negative answer is retried when its negative TTL runs out; a failure sooner.
    c.next = std::min(c.next, a.negative() ? a.ttl : c.config->dns_failure_refresh);
  }
  if (--c.pending == 0) finish_round(c);
}

void DnsDiscovery::finish_round(ClusterState& c) {
  std::vector<upstream::EndpointConfig> set;
  auto add = [&](const Target& t, const net::Address& ip) {
    net::Address a = ip;
    a.set_port(t.port);
    for (const auto& e : set) {
      if (e.address == a) return;
    }
    set.push_back(upstream::EndpointConfig{a, t.weight});
  };
  for (const auto& t : c.targets) {
    if (c.config->type == ClusterConfig::Type::kLogicalDns) {
      // One endpoint: the first address of the answer in RFC 8305 order (IPv6 first, the
      // families alternating); new connections race the others after it.
      if (t.last.empty()) break;
      std::vector<net::Address> ordered = net::interleave_families(t.last);
      if (ordered.size() > kMaxAddresses) ordered.resize(kMaxAddresses);
      for (auto& a : ordered) a.set_port(t.port);
      upstream::EndpointConfig e{ordered.front(), t.weight, {}};
      e.fallbacks.assign(ordered.begin() + 1, ordered.end());
      set.push_back(std::move(e));
      break;
    }
    for (const auto& ip : t.last) add(t, ip);
  }
  if (!set.empty()) health_.set_endpoints(c.index, set);
  Duration next = std::max<Duration>(c.next, std::chrono::milliseconds(100));
  c.timer->arm_at(loop_.now() + next);
  c.answered = true;
  check_first_round();
}

}  // namespace sluice::discovery
