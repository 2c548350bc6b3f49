#include "upstream/health/health_manager.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/log.h"
#include "upstream/cluster.h"
#include "upstream/health/outlier.h"

namespace sluice::upstream::health {

HealthManager::HealthManager(event::Loop& loop,
                             std::vector<std::shared_ptr<const ClusterConfig>> clusters,
                             Publish publish)
    : loop_(loop), publish_(std::move(publish)), first_round_timer_(loop.timers(), [this] {
        if (!on_first_round_) return;
        LOG_WARN("health: not every endpoint answered its first check in time; starting anyway");
        first_round_done();
      }) {
  for (auto& c : clusters) add_cluster(std::move(c), nullptr);
}

size_t HealthManager::add_cluster(std::shared_ptr<const ClusterConfig> config,
                                  std::shared_ptr<tls::ClientContext> tls) {
  size_t ci = clusters_.size();
  auto c = std::make_unique<ClusterState>();
  c->config = std::move(config);
  c->shared = std::make_unique<ClusterShared>();
  c->tls = std::move(tls);
  if (c->tls) c->tls_host = default_tls_host(*c->config);
  HealthSnapshot initial = initial_health(*c->config);
  c->panic = initial.panic;
  c->last = std::make_shared<const HealthSnapshot>(initial);
  c->shared->release = [this, ci](size_t slot, uint32_t removal) {
    loop_.post([this, ci, slot, removal] { on_release(ci, slot, removal); });
  };
  clusters_.push_back(std::move(c));
  for (const auto& e : clusters_.back()->config->endpoints) add_endpoint(ci, e);
  for (uint8_t f : initial.flags) clusters_.back()->usable += (f == 0);
  clusters_.back()->members = initial.flags.size();
  prepare_outlier(ci);
  return ci;
}

void HealthManager::prepare_outlier(size_t ci) {
  ClusterState& c = *clusters_[ci];
  if (!c.config->outlier) return;
  if (c.config->outlier->counts_requests() && !c.shared->requests) {
    c.shared->requests = std::make_unique<std::atomic<uint32_t>[]>(ClusterShared::kMaxEndpoints);
    c.shared->failures = std::make_unique<std::atomic<uint32_t>[]>(ClusterShared::kMaxEndpoints);
  }
  if (!c.decay_timer) {
    c.decay_timer = std::make_unique<event::Timer>(loop_.timers(), [this, ci] { decay(ci); });
    if (started_) c.decay_timer->arm_at(loop_.now() + c.config->outlier->interval);
  }
  for (size_t ei = 0; ei < c.endpoints.size(); ++ei) {
    Endpoint& e = c.endpoints[ei];
    if (!e.return_timer) {
      e.return_timer =
          std::make_unique<event::Timer>(loop_.timers(), [this, ci, ei] { end_ejection(ci, ei); });
    }
  }
}

void HealthManager::update_cluster(size_t ci, std::shared_ptr<const ClusterConfig> config,
                                   std::shared_ptr<tls::ClientContext> tls) {
  ClusterState& c = *clusters_[ci];
  const ClusterConfig& before = *c.config;
  bool checks_changed = c.retired || before.health_check != config->health_check ||
                        before.tls != config->tls ||
                        before.source_address != config->source_address ||
                        before.connection_attempt_delay != config->connection_attempt_delay;
  bool outlier_dropped = before.outlier && !config->outlier;
  c.config = std::move(config);
  c.tls = std::move(tls);
  c.tls_host = c.tls ? default_tls_host(*c.config) : std::string();
  c.retired = false;
  if (checks_changed) {
    // New checkers with the new settings; each endpoint keeps its standing until they answer.
    for (size_t ei = 0; ei < c.endpoints.size(); ++ei) {
      Endpoint& e = c.endpoints[ei];
      if (e.checker) e.checker->stop();
      e.checker.reset();
      if (c.config->health_check.type == HealthCheckConfig::Type::kNone) {
        e.failed_check = false;
        continue;
      }
      e.checker = make_checker(ci, ei);
      if (started_ && !e.removed) e.checker->start();
    }
  }
  if (outlier_dropped) {
    // Without outlier detection nothing would end an ejection: every ejected endpoint
    // returns now.
    c.decay_timer.reset();
    for (auto& e : c.endpoints) {
      e.return_timer.reset();
      e.ejected = false;
      e.consecutive_5xx = e.consecutive_gateway = 0;
    }
  }
  prepare_outlier(ci);
  publish(ci);
}

void HealthManager::retire_cluster(size_t ci) {
  ClusterState& c = *clusters_[ci];
  c.retired = true;
  for (auto& e : c.endpoints) {
    if (e.checker) e.checker->stop();
    if (e.return_timer) e.return_timer->cancel();
  }
  if (c.decay_timer) c.decay_timer->cancel();
}

bool HealthManager::checked(size_t ci) const {
  const ClusterState& c = *clusters_[ci];
  for (const auto& e : c.endpoints) {
    if (e.checker && !e.removed && !e.answered) return false;
  }
  return true;
}

std::vector<HealthManager::EndpointState> HealthManager::export_state() const {
  std::vector<EndpointState> out;
  for (const auto& c : clusters_) {
    if (c->retired) continue;
    for (size_t ei = 0; ei < c->endpoints.size(); ++ei) {
      const Endpoint& e = c->endpoints[ei];
      if (e.removed || (!e.draining && !e.ejected && e.ejections == 0)) continue;
      EndpointState s{c->config->name, c->table[ei].address.to_string(), e.draining, e.ejections};
      if (e.ejected && e.return_timer && e.return_timer->armed()) {
        s.ejected_ms_left =
            std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                     e.return_timer->deadline() - loop_.now())
                                     .count());
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

size_t HealthManager::import_state(const std::vector<EndpointState>& states) {
  size_t applied = 0;
  std::vector<bool> changed(clusters_.size(), false);
  for (const auto& s : states) {
    auto found = find_endpoint(s.cluster, s.address);
    if (!found) continue;
    auto [ci, ei] = *found;
    ClusterState& c = *clusters_[ci];
    Endpoint& e = c.endpoints[ei];
    e.draining = s.draining;
    if (c.config->outlier && e.return_timer) {
      e.ejections = s.ejections;
      if (s.ejected_ms_left >= 0) {
        e.ejected = true;
        e.return_timer->arm_at(loop_.now() + std::chrono::milliseconds(s.ejected_ms_left));
      }
    }
    changed[ci] = true;
    ++applied;
  }
  for (size_t ci = 0; ci < changed.size(); ++ci) {
    if (changed[ci]) publish(ci);
  }
  return applied;
}

std::optional<size_t> HealthManager::find_cluster(std::string_view name) const {
  for (size_t ci = 0; ci < clusters_.size(); ++ci) {
    if (clusters_[ci]->config->name == name) return ci;
  }
  return std::nullopt;
}

namespace {

// The Host of an HTTP check (default: the cluster's name), or the :authority of a gRPC check
// (default: the cluster's host name and port, else the endpoint's address).
std::string check_host(const ClusterConfig& cfg, const EndpointConfig& endpoint) {
  const HealthCheckConfig& hc = cfg.health_check;
  if (hc.type != HealthCheckConfig::Type::kGrpc) {
    return hc.http.host.empty() ? cfg.name : hc.http.host;
  }
  if (!hc.grpc.authority.empty()) return hc.grpc.authority;
  std::string name = default_tls_host(cfg);
  if (!name.empty()) return fmt::format("{}:{}", name, endpoint.address.port());
  return endpoint.address.to_string();
}

}  // namespace

std::unique_ptr<HealthChecker> HealthManager::make_checker(size_t ci, size_t ei) {
  ClusterState& c = *clusters_[ci];
  const ClusterConfig& cfg = *c.config;
  const EndpointConfig& endpoint = c.table[ei];
  auto checker = std::make_unique<HealthChecker>(
      loop_, cfg.health_check, check_host(cfg, endpoint), endpoint.address, cfg.source_address,
      [this, ci, ei](bool passed, const std::string& detail) { on_check(ci, ei, passed, detail); });
  checker->set_target(endpoint.address, endpoint.fallbacks, cfg.connection_attempt_delay);
  if (c.tls) checker->set_tls(c.tls, c.tls_host);
  return checker;
}

size_t HealthManager::add_endpoint(size_t ci, const EndpointConfig& endpoint) {
  ClusterState& c = *clusters_[ci];
  const ClusterConfig& cfg = *c.config;
  size_t ei = 0;
  while (ei < c.endpoints.size() && !c.endpoints[ei].free) ++ei;
  if (ei == c.endpoints.size()) {
    c.table.push_back(endpoint);
    c.endpoints.emplace_back();
  } else {
    // A slot every worker released: nothing anywhere still names its last endpoint.
    c.table[ei] = endpoint;
    c.endpoints[ei] = Endpoint{};
    c.shared->streak[ei].store(false, std::memory_order_relaxed);
    if (c.shared->requests) {
      c.shared->requests[ei].store(0, std::memory_order_relaxed);
      c.shared->failures[ei].store(0, std::memory_order_relaxed);
    }
  }
  Endpoint& e = c.endpoints[ei];
  e.failed_check = cfg.health_check.type != HealthCheckConfig::Type::kNone &&
                   !cfg.health_check.initially_healthy;
  if (cfg.health_check.type != HealthCheckConfig::Type::kNone) {
    e.checker = make_checker(ci, ei);
    if (started_) e.checker->start();
  }
  if (cfg.outlier) {
    e.return_timer =
        std::make_unique<event::Timer>(loop_.timers(), [this, ci, ei] { end_ejection(ci, ei); });
  }
  return ei;
}

void HealthManager::mark_removed(ClusterState& c, size_t ei) {
  Endpoint& e = c.endpoints[ei];
  e.removed = true;
  // Numbered across the cluster, not per slot: a slot that left the end of the table and
  // came back starts afresh here, while a worker may still hold the number it released.
  e.removals = ++c.last_removal;
  e.releases = 0;
  if (e.checker) e.checker->stop();
}

void HealthManager::on_release(size_t ci, size_t ei, uint32_t removal) {
  ClusterState& c = *clusters_[ci];
  if (ei >= c.endpoints.size()) return;
  Endpoint& e = c.endpoints[ei];
  // A release of an earlier removal (the endpoint came back since) counts for nothing.
  if (!e.removed || e.free || e.removals != removal) return;
  if (++e.releases < workers_) return;
  e.free = true;
  e.checker.reset();
  e.return_timer.reset();
  e.ejected = false;
  e.draining = false;
  ++stats_.slots_reclaimed;
  LOG_DEBUG("cluster {}: slot {} of endpoint {} is free", c.config->name, ei,
            c.table[ei].address.to_string());
  // Free slots at the end leave the table: its size follows the endpoints in use.
  while (!c.endpoints.empty() && c.endpoints.back().free) {
    c.endpoints.pop_back();
    c.table.pop_back();
  }
  // A worker frees every quiet slot in one pass, each release a posted call: one snapshot
  // for all of them, not one per slot (a churning cluster frees dozens at a time, and each
  // snapshot costs every worker a new balancer).
  c.release_pending = true;
  loop_.at_iteration_end(this);
}

void HealthManager::on_iteration_end() {
  for (size_t ci = 0; ci < clusters_.size(); ++ci) {
    if (clusters_[ci]->release_pending) publish(ci);
  }
}

namespace {

std::string address_list(const EndpointConfig& e) {
  std::string s = e.address.to_string();
  for (const auto& a : e.fallbacks) s += ", " + a.to_string();
  return s;
}

}  // namespace

bool HealthManager::set_endpoints(size_t ci, const std::vector<EndpointConfig>& endpoints) {
  ClusterState& c = *clusters_[ci];
  if (c.config->type == ClusterConfig::Type::kLogicalDns && c.table.size() == 1 &&
      endpoints.size() == 1) {
    // A logical_dns endpoint stands for its name: it keeps its identity (health, ejections,
    // pools) while the name's addresses change; connections to departed addresses follow
    // on_address_change in each worker's pool.
    EndpointConfig& e = c.table.front();
    const EndpointConfig& now = endpoints.front();
    if (e.address == now.address && e.fallbacks == now.fallbacks && e.weight == now.weight) {
      return true;
    }
    auto in = [](const EndpointConfig& set, const net::Address& a) {
      return a == set.address ||
             std::find(set.fallbacks.begin(), set.fallbacks.end(), a) != set.fallbacks.end();
    };
    std::string departed;
    bool joined = !in(e, now.address);
    if (!in(now, e.address)) departed = e.address.to_string();
    for (const auto& a : e.fallbacks) {
      if (!in(now, a)) departed += (departed.empty() ? "" : ", ") + a.to_string();
    }
    for (const auto& a : now.fallbacks) joined = joined || !in(e, a);
    using Change = ClusterConfig::OnAddressChange;
    std::string fate;
    if (!departed.empty()) {
      fate = fmt::format("; connections to {} {}", departed,
                         c.config->on_address_change == Change::kDrain ? "drain"
                         : c.config->on_address_change == Change::kClose
                             ? "close"
                             : "are kept (on_address_change: keep)");
    }
    // The same addresses in another order (DNS round robin) only changes which one new
    // connections try first: not worth an info line on every refresh.
    if (departed.empty() && !joined) {
      LOG_DEBUG("cluster {}: addresses now {} (same set, new order)", c.config->name,
                address_list(now));
    } else {
      LOG_INFO("cluster {}: addresses now {} (were {}){}", c.config->name, address_list(now),
               address_list(e), fate);
    }
    e = now;
    if (c.endpoints.front().checker) {
      c.endpoints.front().checker->set_target(now.address, now.fallbacks,
                                              c.config->connection_attempt_delay);
    }
    publish(ci);
    return true;
  }
  // The slot of each address the table holds (free slots hold none), not taken yet by an
  // earlier entry of the set: a static cluster may list one address twice, and each entry
  // keeps its own slot (the other sources list an address once).
  auto slot_of = [&c](const net::Address& a,
                      const std::vector<bool>& taken) -> std::optional<size_t> {
    for (size_t ei = 0; ei < c.table.size(); ++ei) {
      if (!c.endpoints[ei].free && c.table[ei].address == a && !(ei < taken.size() && taken[ei]))
        return ei;
    }
    return std::nullopt;
  };
  size_t added = 0;
  size_t free_slots = 0;
  for (const auto& e : c.endpoints) free_slots += e.free;
  std::vector<bool> taken(c.table.size(), false);
  for (const auto& ep : endpoints) {
    std::optional<size_t> slot = slot_of(ep.address, taken);
    if (slot) taken[*slot] = true;
    added += !slot;
  }
  if (c.table.size() - free_slots + added > ClusterShared::kMaxEndpoints) {
    ++stats_.endpoint_sets_refused;
    LOG_ERROR(
        "cluster {}: discovery lists {} new endpoints, and {} slots of {} are in use (listed, "
        "or departed with connections or requests left); keeping the current set",
        c.config->name, added, c.table.size() - free_slots, ClusterShared::kMaxEndpoints);
    return false;
  }
  bool changed = false;
  std::vector<bool> listed(c.table.size(), false);
  for (const auto& ep : endpoints) {
    std::optional<size_t> slot = slot_of(ep.address, listed);
    if (!slot) {
      size_t ei = add_endpoint(ci, ep);
      listed.resize(c.table.size(), false);
      listed[ei] = true;
      changed = true;
      LOG_INFO("cluster {}: endpoint {} added (weight {})", c.config->name, ep.address.to_string(),
               ep.weight);
      continue;
    }
    size_t ei = *slot;
    listed[ei] = true;
    if (c.table[ei].weight != ep.weight) {
      c.table[ei].weight = ep.weight;
      changed = true;
    }

    if (c.endpoints[ei].removed) {
      c.endpoints[ei].removed = false;
      changed = true;
      if (c.endpoints[ei].checker) {
        // Checked again from scratch: its first answer decides, as for a new endpoint.
        c.endpoints[ei].answered = false;
        c.endpoints[ei].check_passes = c.endpoints[ei].check_failures = 0;
        if (started_) c.endpoints[ei].checker->start();
      }
      LOG_INFO("cluster {}: endpoint {} is back in the answer", c.config->name,
               ep.address.to_string());
    }
  }
  for (size_t ei = 0; ei < c.table.size(); ++ei) {
    if (listed[ei] || c.endpoints[ei].removed) continue;
    mark_removed(c, ei);
    changed = true;
    LOG_INFO("cluster {}: endpoint {} left the answer: {}", c.config->name,
             c.table[ei].address.to_string(),
             c.config->on_address_change == ClusterConfig::OnAddressChange::kDrain
                 ? "draining (no new requests; pooled connections close)"
             : c.config->on_address_change == ClusterConfig::OnAddressChange::kKeep
                 ? "no new requests (on_address_change: keep)"
                 : "closing its connections (on_address_change: close)");
  }
  if (changed) publish(ci);
  return true;
}

std::optional<std::pair<size_t, size_t>> HealthManager::find_endpoint(
    std::string_view cluster, std::string_view address) const {
  for (size_t ci = 0; ci < clusters_.size(); ++ci) {
    const ClusterState& c = *clusters_[ci];
    if (c.retired || c.config->name != cluster) continue;
    for (size_t ei = 0; ei < c.table.size(); ++ei) {
      if (!c.endpoints[ei].free && c.table[ei].address.to_string() == address)
        return std::make_pair(ci, ei);
    }
  }
  return std::nullopt;
}

HealthManager::~HealthManager() {
  loop_.cancel_iteration_end(this);
  stop();
}

void HealthManager::set_tls(std::vector<std::shared_ptr<tls::ClientContext>> contexts) {
  for (size_t ci = 0; ci < clusters_.size() && ci < contexts.size(); ++ci) {
    ClusterState& c = *clusters_[ci];
    if (!contexts[ci]) continue;
    c.tls = std::move(contexts[ci]);
    c.tls_host = default_tls_host(*c.config);
    for (auto& e : c.endpoints) {
      if (e.checker) e.checker->set_tls(c.tls, c.tls_host);
    }
  }
}

void HealthManager::start(Duration timeout, std::function<void()> on_first_round) {
  started_ = true;
  on_first_round_ = std::move(on_first_round);
  for (auto& c : clusters_) {
    for (auto& e : c->endpoints) {
      if (e.checker) e.checker->start();
    }
    if (c->decay_timer) c->decay_timer->arm_at(loop_.now() + c->config->outlier->interval);
  }
  first_round_timer_.arm_at(loop_.now() + timeout);
  check_first_round();
}

void HealthManager::stop() {
  first_round_timer_.cancel();
  for (auto& c : clusters_) {
    for (auto& e : c->endpoints) {
      if (e.checker) e.checker->stop();
      if (e.return_timer) e.return_timer->cancel();
    }
    if (c->decay_timer) c->decay_timer->cancel();
  }
}

void HealthManager::check_first_round() {
  if (!on_first_round_) return;
  for (const auto& c : clusters_) {
    for (const auto& e : c->endpoints) {
      if (e.checker && !e.answered) return;
    }
  }
  first_round_done();
}

void HealthManager::first_round_done() {
  first_round_timer_.cancel();
  auto fn = std::move(on_first_round_);
  on_first_round_ = nullptr;
  for (const auto& c : clusters_) {
    if (c->panic) log_panic(*c);
  }
  fn();
}

std::string HealthManager::endpoint_name(const ClusterState& c, size_t endpoint) const {
  return c.table[endpoint].address.to_string();
}

void HealthManager::report(size_t cluster, size_t endpoint, Outcome outcome) {
  loop_.post([this, cluster, endpoint, outcome] { on_outcome(cluster, endpoint, outcome); });
}

void HealthManager::on_outcome(size_t cluster, size_t endpoint, Outcome outcome) {
  ClusterState& c = *clusters_[cluster];
  // Sent before a reload turned outlier detection off or removed the cluster.
  if (c.retired || !c.config->outlier || endpoint >= c.endpoints.size()) return;
  Endpoint& e = c.endpoints[endpoint];
  const OutlierConfig& o = *c.config->outlier;
  switch (outcome) {
    case Outcome::kSuccess:
      e.consecutive_5xx = 0;
      e.consecutive_gateway = 0;
      break;
    case Outcome::kError5xx:
      ++e.consecutive_5xx;
      break;
    case Outcome::kGatewayFailure:
      ++e.consecutive_5xx;
      ++e.consecutive_gateway;
      break;
  }
  if (!e.ejected) {
    if (o.consecutive_gateway_failure != 0 &&
        e.consecutive_gateway >= o.consecutive_gateway_failure) {
      eject(cluster, endpoint,
            fmt::format("{} consecutive gateway failures", e.consecutive_gateway));
    } else if (o.consecutive_5xx != 0 && e.consecutive_5xx >= o.consecutive_5xx) {
      eject(cluster, endpoint, fmt::format("{} consecutive 5xx", e.consecutive_5xx));
    }
  }
  set_streak(c, endpoint);
}

void HealthManager::set_streak(ClusterState& c, size_t endpoint) {
  const Endpoint& e = c.endpoints[endpoint];
  c.shared->streak[endpoint].store(e.consecutive_5xx != 0 || e.consecutive_gateway != 0,
                                   std::memory_order_relaxed);
}

void HealthManager::eject(size_t cluster, size_t endpoint, const std::string& why) {
  ClusterState& c = *clusters_[cluster];
  Endpoint& e = c.endpoints[endpoint];
  const OutlierConfig& o = *c.config->outlier;
  size_t ejected = 0, members = 0;
  for (const auto& other : c.endpoints) {
    ejected += other.ejected && !other.removed;
    members += !other.removed;
  }
  size_t allowed = max_ejected(o, members);
  // The streak starts over either way, so one bad run is one decision.
  e.consecutive_5xx = 0;
  e.consecutive_gateway = 0;
  if (ejected >= allowed) {
    ++stats_.ejections_refused_max_percent;
    LOG_WARN(
        "cluster {}: endpoint {} not ejected ({}): {} of {} endpoints already are "
        "(max_ejection_percent {})",
        c.config->name, endpoint_name(c, endpoint), why, ejected, members, o.max_ejection_percent);
    return;
  }
  ++e.ejections;
  ++stats_.ejections;
  Duration d = ejection_time(o, e.ejections);
  e.ejected = true;
  e.return_timer->arm_at(loop_.now() + d);
  // The snapshot goes to the workers before the line is written, so whoever reads the line
  // knows the ejection is already on its way to every worker.
  publish(cluster);
  LOG_WARN("cluster {}: endpoint {} ejected for {} ({}; ejection {})", c.config->name,
           endpoint_name(c, endpoint), format_duration(d), why, e.ejections);
}

void HealthManager::end_ejection(size_t cluster, size_t endpoint) {
  ClusterState& c = *clusters_[cluster];
  Endpoint& e = c.endpoints[endpoint];
  if (!e.ejected) return;
  e.ejected = false;
  e.consecutive_5xx = 0;
  e.consecutive_gateway = 0;
  set_streak(c, endpoint);
  publish(cluster);
  LOG_INFO("cluster {}: endpoint {} back in service after its ejection", c.config->name,
           endpoint_name(c, endpoint));
}

void HealthManager::decay(size_t cluster) {
  ClusterState& c = *clusters_[cluster];
  // An endpoint that stays in service for a whole interval earns back one ejection: a
  // single bad day does not make every later ejection long.
  for (auto& e : c.endpoints) {
    if (!e.ejected && e.ejections > 0) --e.ejections;
  }
  if (c.shared->requests) judge_rates(cluster);
  c.decay_timer->arm_at(loop_.now() + c.config->outlier->interval);
}

void HealthManager::judge_rates(size_t cluster) {
  ClusterState& c = *clusters_[cluster];
  const OutlierConfig& o = *c.config->outlier;
  std::vector<RateSample> samples;
  for (size_t ei = 0; ei < c.endpoints.size(); ++ei) {
    uint32_t requests = c.shared->requests[ei].exchange(0, std::memory_order_relaxed);
    uint32_t failures = c.shared->failures[ei].exchange(0, std::memory_order_relaxed);
    const Endpoint& e = c.endpoints[ei];
    if (requests == 0 || e.ejected || e.removed) continue;
    // A failure counted between the two exchanges belongs to the next interval's request.
    samples.push_back({ei, requests, std::min(failures, requests)});
  }
  if (o.success_rate) {
    SuccessRateVerdict v = judge_success_rate(samples, *o.success_rate);
    if (v.judged) {
      LOG_DEBUG(
          "cluster {}: success rates of {} endpoints: mean {:.1f}%, stdev {:.1f}%, "
          "ejection below {:.1f}%",
          c.config->name, v.hosts, v.mean, v.stdev, v.threshold);
    }
    for (size_t i : v.outliers) {
      const RateSample& s = samples[i];
      if (c.endpoints[s.endpoint].ejected) continue;
      eject(cluster, s.endpoint,
            fmt::format("success rate {:.1f}% over {} requests, below the cluster's {:.1f}% "
                        "(mean {:.1f}% - {} x stdev {:.1f}%)",
                        s.success_percent(), s.requests, v.threshold, v.mean,
                        o.success_rate->stdev_factor, v.stdev));
    }
  }
  if (o.failure_percentage) {
    for (size_t i : judge_failure_percentage(samples, *o.failure_percentage)) {
      const RateSample& s = samples[i];
      if (c.endpoints[s.endpoint].ejected) continue;
      eject(cluster, s.endpoint,
            fmt::format("{:.1f}% of {} requests failed (failure_percentage threshold {}%)",
                        100.0 - s.success_percent(), s.requests, o.failure_percentage->threshold));
    }
  }
}

void HealthManager::on_check(size_t cluster, size_t endpoint, bool passed,
                             const std::string& detail) {
  ClusterState& c = *clusters_[cluster];
  Endpoint& e = c.endpoints[endpoint];
  const HealthCheckConfig& hc = c.config->health_check;
  if (!passed) ++stats_.active_check_failures;
  e.last_check = detail;
  bool was_failed = e.failed_check;
  bool first = !e.answered;
  if (!e.answered) {
    // The first answer decides at once: waiting for the thresholds would keep a healthy
    // fleet out of service (or a dead endpoint in it) for several intervals at startup.
    e.answered = true;
    e.failed_check = !passed;
    e.check_passes = passed;
    e.check_failures = !passed;
  } else if (passed) {
    ++e.check_passes;
    e.check_failures = 0;
    if (e.failed_check && e.check_passes >= hc.healthy_threshold) e.failed_check = false;
  } else {
    ++e.check_failures;
    e.check_passes = 0;
    if (!e.failed_check && e.check_failures >= hc.unhealthy_threshold) e.failed_check = true;
  }
  if (e.failed_check != was_failed || first) {
    if (e.failed_check) {
      LOG_WARN("cluster {}: endpoint {} is unhealthy: {} (health check)", c.config->name,
               endpoint_name(c, endpoint), detail);
    } else {
      LOG_INFO("cluster {}: endpoint {} is healthy: {} (health check)", c.config->name,
               endpoint_name(c, endpoint), detail);
    }
    publish(cluster);
  } else if (!passed) {
    LOG_DEBUG("cluster {}: endpoint {} health check failed: {}", c.config->name,
              endpoint_name(c, endpoint), detail);
  }
  check_first_round();
}

void HealthManager::set_draining(size_t cluster, size_t endpoint, bool draining) {
  ClusterState& c = *clusters_[cluster];
  Endpoint& e = c.endpoints[endpoint];
  if (e.draining == draining) return;
  e.draining = draining;
  if (draining) {
    LOG_INFO("cluster {}: endpoint {} draining: no new requests", c.config->name,
             endpoint_name(c, endpoint));
  } else {
    LOG_INFO("cluster {}: endpoint {} no longer draining: takes new requests again", c.config->name,
             endpoint_name(c, endpoint));
  }
  publish(cluster);
}

void HealthManager::publish(size_t cluster) {
  ClusterState& c = *clusters_[cluster];
  c.release_pending = false;  // this snapshot has the freed slots too
  auto snapshot = std::make_shared<HealthSnapshot>();
  snapshot->endpoints = std::make_shared<const std::vector<EndpointConfig>>(c.table);
  snapshot->flags.reserve(c.endpoints.size());
  snapshot->removals.reserve(c.endpoints.size());
  size_t usable = 0;
  c.members = 0;
  for (const auto& e : c.endpoints) {
    uint8_t f = (e.failed_check ? kFailedActiveCheck : 0) | (e.ejected ? kEjected : 0) |
                (e.draining ? kDraining : 0) | (e.removed ? kRemoved : 0) | (e.free ? kFree : 0);
    usable += (f == 0);
    c.members += !e.removed;
    snapshot->flags.push_back(f);
    snapshot->removals.push_back(e.removals);
  }
  snapshot->panic = below_panic_threshold(*snapshot, c.config->panic_threshold);
  c.usable = usable;
  if (snapshot->panic != c.panic) {
    c.panic = snapshot->panic;
    // While the first checks are still answering, endpoints not heard from yet count as
    // unusable: the state is logged once that round is over.
    if (!on_first_round_) log_panic(c);
  }
  c.last = snapshot;
  publish_(cluster, std::move(snapshot));
}

void HealthManager::log_panic(const ClusterState& c) {
  if (c.panic) {
    ++stats_.panic_entered;
    LOG_WARN(
        "cluster {}: panic mode: {} of {} endpoints usable, below panic_threshold {}%; "
        "balancing over all endpoints",
        c.config->name, c.usable, c.members, c.config->panic_threshold);
  } else {
    LOG_INFO("cluster {}: leaving panic mode: {} of {} endpoints usable", c.config->name, c.usable,
             c.members);
  }
}

}  // namespace sluice::upstream::health
