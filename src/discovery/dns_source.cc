#include "discovery/dns_source.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "net/connect_race.h"

namespace sluice::discovery {

using upstream::ClusterConfig;

// A logical_dns endpoint keeps at most this many addresses of its answer (connects race the
// first net::ConnectRace::kMaxAttempts of them).
constexpr size_t kMaxAddresses = 64;

DnsSource::DnsSource(event::Loop& loop, dns::Resolver& resolver,
                     std::shared_ptr<const ClusterConfig> config, OnUpdate on_update,
                     std::function<void()> on_round)
    : loop_(loop),
      resolver_(resolver),
      config_(std::move(config)),
      on_update_(std::move(on_update)),
      on_round_(std::move(on_round)),
      timer_(loop.timers(), [this] { refresh(); }) {
  for (const auto& t : config_->dns_targets) {
    Target target;
    target.host = t.host;
    target.port = t.port;
    target.weight = t.weight;
    targets_.push_back(std::move(target));
  }
  set_state(upstream::SourceState::kStarting);
}

DnsSource::~DnsSource() {
  stop();
}

std::string DnsSource::target() const {
  if (config_->type == ClusterConfig::Type::kDnsSrv) return config_->srv_name;
  std::string out;
  for (const auto& t : config_->dns_targets) {
    out += fmt::format("{}{}:{}", out.empty() ? "" : ", ", t.host, t.port);
  }
  return out;
}

void DnsSource::set_config(std::shared_ptr<const ClusterConfig> config) {
  SLUICE_ASSERT(config->type == config_->type && config->dns_targets == config_->dns_targets &&
                config->srv_name == config_->srv_name);
  config_ = std::move(config);
}

void DnsSource::start() {
  stopped_ = false;
  refresh();
}

void DnsSource::stop() {
  stopped_ = true;
  ++round_;  // answers still on their way are ignored
  timer_.cancel();
}

void DnsSource::set_state(upstream::SourceState s) {
  state_ = s;
  stats_.set_state(s);
}

void DnsSource::keep_refresh_time(MonoTime& refresh_at, const dns::Answer& a) const {
  // From the cache, the TTL is what is left of it: the refresh time set when the answer came
  // from the servers still holds (recomputing it from the rest would push it ever later).
  if (a.from_cache && refresh_at != MonoTime{} && refresh_at > loop_.now()) return;
  // An early refresh that failed is tried again when the answer expires (then stale rules).
  refresh_at = loop_.now() + (a.refresh_failed ? a.ttl : dns::refresh_after(a.ttl));
}

void DnsSource::refresh() {
  if (stopped_) return;
  ++round_;
  next_ = std::chrono::hours(24);
  round_failed_ = false;
  if (config_->type != ClusterConfig::Type::kDnsSrv) return resolve_targets();
  uint64_t round = round_;
  pending_ = 1;
  resolver_.resolve(
      config_->srv_name, dns::QueryType::kSrv,
      [this, alive = std::weak_ptr<bool>(alive_), round](const dns::Answer& a) {
        if (!alive.expired()) on_srv(round, a);
      },
      due(srv_refresh_at_));
}

void DnsSource::on_srv(uint64_t round, const dns::Answer& a) {
  if (!current(round)) return;
  if (a.ok() && !a.stale) {
    keep_refresh_time(srv_refresh_at_, a);
    next_ = std::min(next_, srv_refresh_at_ - loop_.now());
  } else {
    srv_refresh_at_ = MonoTime{};
    next_ = std::min(next_, a.ok() ? a.ttl : config_->dns_failure_refresh);
    round_failed_ = true;
  }
  if (!a.ok() || a.srv.empty()) {
    LOG_WARN("cluster {}: SRV {}: {}; keeping the last known endpoints", config_->name,
             config_->srv_name, a.ok() ? "no records" : a.error_text);
    round_failed_ = true;
    pending_ = 0;
    return finish_round();
  }
  // The lowest priority value is preferred (RFC 2782); its weights become the endpoints'
  // weights.
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
    for (const auto& old : targets_) {
      if (old.host == t.host && old.port == t.port) {
        t.last = old.last;
        t.resolved = old.resolved;
        t.refresh_at = old.refresh_at;
      }
    }
    targets.push_back(std::move(t));
  }
  targets_ = std::move(targets);
  pending_ = 0;
  resolve_targets();
}

void DnsSource::resolve_targets() {
  uint64_t round = round_;
  pending_ = targets_.size();
  if (pending_ == 0) return finish_round();
  // Copy the names first: an answer from the cache arrives before resolve() returns.
  std::vector<std::pair<std::string, bool>> hosts;
  for (const auto& t : targets_) hosts.emplace_back(t.host, due(t.refresh_at));
  for (size_t i = 0; i < hosts.size(); ++i) {
    resolver_.resolve(
        hosts[i].first, dns::QueryType::kAddress,
        [this, alive = std::weak_ptr<bool>(alive_), round, i](const dns::Answer& a) {
          if (!alive.expired()) on_target(round, i, a);
        },
        hosts[i].second);
  }
}

void DnsSource::on_target(uint64_t round, size_t t, const dns::Answer& a) {
  if (!current(round) || t >= targets_.size()) return;
  Target& target = targets_[t];
  if (a.ok() && !a.addresses.empty()) {
    if (!target.resolved) {
      std::string list;
      for (const auto& addr : a.addresses) list += (list.empty() ? "" : ", ") + addr.ip_string();
      LOG_INFO("cluster {}: {} resolved to {} (ttl {}{})", config_->name, target.host, list,
               format_duration(a.ttl), a.stale ? ", stale" : "");
    }
    target.last = a.addresses;
    target.resolved = true;
    if (a.stale) {
      target.refresh_at = MonoTime{};  // expired already: the next lookup asks the servers
      next_ = std::min(next_, a.ttl);
      round_failed_ = true;  // the servers did not answer: this is the last good answer
    } else {
      keep_refresh_time(target.refresh_at, a);
      next_ = std::min(next_, target.refresh_at - loop_.now());
    }
  } else {
    std::string why = a.ok() ? "no addresses" : a.error_text;
    if (target.resolved) {
      LOG_WARN("cluster {}: {}: {}; keeping its last known addresses", config_->name, target.host,
               why);
    } else {
      LOG_WARN("cluster {}: {}: {}", config_->name, target.host, why);
    }
    target.refresh_at = MonoTime{};
    // A negative answer is retried when its negative TTL runs out; a failure sooner.
    next_ = std::min(next_, a.negative() ? a.ttl : config_->dns_failure_refresh);
    round_failed_ = true;
  }
  if (--pending_ == 0) finish_round();
}

void DnsSource::finish_round() {
  std::vector<upstream::EndpointConfig> set;
  auto add = [&](const Target& t, const net::Address& ip) {
    net::Address a = ip;
    a.set_port(t.port);
    for (const auto& e : set) {
      if (e.address == a) return;
    }
    set.push_back(upstream::EndpointConfig{a, t.weight});
  };
  for (const auto& t : targets_) {
    if (config_->type == ClusterConfig::Type::kLogicalDns) {
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
  // An empty set is never applied: the cluster keeps what it has, and that is not what DNS
  // says now.
  if (set.empty()) round_failed_ = true;
  if (round_failed_) ++stats_.failures;
  set_state(round_failed_ ? upstream::SourceState::kStale : upstream::SourceState::kSynced);
  Duration next = std::max<Duration>(next_, std::chrono::milliseconds(100));
  timer_.arm_at(loop_.now() + next);
  if (!set.empty()) {
    ++stats_.updates;
    stats_.endpoints = set.size();
    on_update_(std::move(set));
  }
  on_round_();
}

}  // namespace sluice::discovery
