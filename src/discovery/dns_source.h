// DnsSource: the endpoints of one DNS cluster (strict_dns, logical_dns, dns_srv), kept in
// step with DNS through the resolver Sources owns, on the main thread. A good answer is asked
// for again shortly before its TTL runs out (a tenth of the TTL early, at most 30 s),
// bypassing the cache, so a cluster never waits on an expired name; a negative answer when
// its negative TTL has run out. Each round's set goes to on_update (the HealthManager diffs
// it: new addresses join, departed ones drain). A failed or empty answer never empties a
// cluster: each name keeps its last good addresses, the failure is logged, and the state is
// kStale until a round answers well again.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "discovery/endpoint_source.h"
#include "dns/resolver.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/cluster.h"

namespace sluice::discovery {

class DnsSource final : public EndpointSource {
 public:
  // `on_round` runs after each round of answers (good or not, a set reported or not): a round
  // that only failed reports no set, yet it ends kStarting.
  DnsSource(event::Loop& loop, dns::Resolver& resolver,
            std::shared_ptr<const upstream::ClusterConfig> config, OnUpdate on_update,
            std::function<void()> on_round);
  ~DnsSource() override;

  // Resolves now, then whenever the answers' TTLs say.
  void start() override;
  void stop() override;
  // A reload that leaves the names (and the type) as they are: the answers in hand stay, the
  // rest of the settings (dns_failure_refresh) apply from the next round.
  void set_config(std::shared_ptr<const upstream::ClusterConfig> config);
  // The cluster's type: "strict_dns", "logical_dns" or "dns_srv".
  const char* kind() const override { return upstream::to_string(config_->type); }
  // The names ("api.example:8080, b.example:8080"), or the SRV name.
  std::string target() const override;
  upstream::SourceState state() const override { return state_; }
  const upstream::SourceStats& stats() const override { return stats_; }

 private:
  struct Target {
    std::string host;
    uint16_t port = 0;
    uint32_t weight = 1;
    std::vector<net::Address> last;  // the last good addresses
    bool resolved = false;
    MonoTime refresh_at{};  // a good answer's refresh time: ask the servers, not the cache
  };

  void refresh();
  void keep_refresh_time(MonoTime& refresh_at, const dns::Answer& a) const;
  bool due(MonoTime refresh_at) const {
    return refresh_at != MonoTime{} && loop_.now() >= refresh_at;
  }
  void on_srv(uint64_t round, const dns::Answer& a);
  void resolve_targets();
  void on_target(uint64_t round, size_t t, const dns::Answer& a);
  void finish_round();
  void set_state(upstream::SourceState s);
  // Whether an answer for `round` still matters (the source lives, is running, same round).
  bool current(uint64_t round) const { return !stopped_ && round == round_; }

  event::Loop& loop_;
  dns::Resolver& resolver_;
  std::shared_ptr<const upstream::ClusterConfig> config_;
  OnUpdate on_update_;
  std::function<void()> on_round_;
  std::vector<Target> targets_;  // strict/logical: the configured names; dns_srv: SRV targets
  event::Timer timer_;
  uint64_t round_ = 0;  // answers of an older round are ignored
  size_t pending_ = 0;
  Duration next_{0};
  MonoTime srv_refresh_at_{};  // dns_srv: as Target::refresh_at, for the SRV records
  bool round_failed_ = false;  // a name of this round failed (or was served stale)
  bool stopped_ = true;
  upstream::SourceState state_ = upstream::SourceState::kStarting;
  upstream::SourceStats stats_;
  // The resolver has no cancel: an answer arriving after this source is gone finds this
  // expired (the callbacks hold a weak_ptr to it).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::discovery
