#include "upstream/cluster.h"

#include <algorithm>
#include "base/log.h"
#include "base/random.h"

namespace sluice::upstream {

health::HealthSnapshot initial_health(const ClusterConfig& config) {
  health::HealthSnapshot s;
  s.endpoints = std::make_shared<const std::vector<EndpointConfig>>(config.endpoints);
  uint8_t flag = 0;
  if (config.health_check.type != health::HealthCheckConfig::Type::kNone &&
      !config.health_check.initially_healthy) {
    flag = health::kFailedActiveCheck;
  }
  s.flags.assign(config.endpoints.size(), flag);
  s.removals.assign(config.endpoints.size(), 0);
  s.panic = below_panic_threshold(s, config.panic_threshold);
  return s;
}

bool has_address(const EndpointConfig& e, const net::Address& a) {
  return a == e.address ||
         std::find(e.fallbacks.begin(), e.fallbacks.end(), a) != e.fallbacks.end();
}

bool below_panic_threshold(const health::HealthSnapshot& snapshot, uint32_t threshold) {
  size_t members = 0, usable = 0;
  for (uint8_t f : snapshot.flags) {
    if (f & health::kRemoved) continue;
    ++members;
    usable += (f == 0);
  }
  if (threshold == 0 || members == 0) return false;
  return usable * 100 < static_cast<size_t>(threshold) * members;
}

Cluster::Cluster(event::Loop& loop, std::shared_ptr<const ClusterConfig> config, uint32_t workers,
                 size_t index, health::ClusterShared& shared, health::OutcomeSink* sink)
    : loop_(loop),
      config_(std::move(config)),
      index_(index),
      shared_(shared),
      sink_(sink),
      workers_(workers),
      lb_seed_(thread_rng().next_u64() | 1),
      release_timer_(loop.timers(), [this] { release_departed(); }) {
  set_worker_pool_config();
  set_health(std::make_shared<const health::HealthSnapshot>(initial_health(*config_)));
}

Cluster::~Cluster() = default;

void Cluster::set_worker_pool_config() {
  worker_pool_config_ = config_->pool;
  if (workers_ > 1) {
    // Round up: each worker gets its share, and every worker at least one connection.
    worker_pool_config_.max_connections = (config_->pool.max_connections + workers_ - 1) / workers_;
  }
}

void Cluster::reconfigure(std::shared_ptr<const ClusterConfig> config, health::OutcomeSink* sink,
                          std::shared_ptr<tls::ClientContext> tls) {
  const ClusterConfig& before = *config_;
  bool new_kind = before.protocol != config->protocol || before.tls != config->tls ||
                  before.http2 != config->http2 ||
                  before.socket_options != config->socket_options ||
                  before.source_address != config->source_address;
  config_ = std::move(config);
  sink_ = sink;
  tls_ = std::move(tls);
  set_worker_pool_config();
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (!pools_[i]) continue;
    pool::ConnPool& p = *pools_[i];
    p.reconfigure(worker_pool_config_, config_->socket_options, config_->source_address,
                  config_->connect_timeout);
    p.set_fallbacks(endpoint(i).fallbacks, config_->connection_attempt_delay);
    if (tls_) {
      p.set_tls(tls_, tls_host());
    } else {
      p.set_tls(nullptr, {});
    }
    if (!new_kind) continue;
    if (http2_pools_[i]) {
      http2_pools_[i]->drain();
      retired_http2_pools_.push_back(std::move(http2_pools_[i]));
    }
    uint8_t flags = health_->flags[i];
    p.drain();
    if (!(flags & (health::kDraining | health::kRemoved))) p.undrain();
  }
  rebuild_balancer();
  warm_up_pools();
}

void Cluster::set_health(std::shared_ptr<const health::HealthSnapshot> snapshot) {
  const size_t n = snapshot->flags.size();
  if (pools_.size() < n) {
    pools_.resize(n);
    http2_pools_.resize(n);
    active_.resize(n, 0);
    released_.resize(n, 0);
    quiet_since_.resize(n, 0);
  } else if (pools_.size() > n) {
    // Free slots left the end of the table: this worker released them, so nothing is there.
    for (size_t i = n; i < pools_.size(); ++i) SLUICE_CHECK(!pools_[i] && active_[i] == 0);
    pools_.resize(n);
    http2_pools_.resize(n);
    active_.resize(n);
    released_.resize(n);
    quiet_since_.resize(n);
  }
  constexpr uint8_t kLeaving = health::kDraining | health::kRemoved;
  using Change = ClusterConfig::OnAddressChange;
  bool drain_removed = config_->on_address_change != Change::kKeep;
  bool close_removed = config_->on_address_change == Change::kClose;
  std::vector<size_t> closing;
  using Departed = pool::ConnPool::Departed;
  for (size_t i = 0; i < n; ++i) {
    uint8_t before = health_ && i < health_->flags.size() ? health_->flags[i] : 0;
    uint8_t now = snapshot->flags[i];
    // A logical_dns endpoint keeps its index while its name's addresses change (or only
    // their order, with DNS round robin).
    const EndpointConfig& ep = (*snapshot->endpoints)[i];
    bool moved = false, departed = false;
    // A slot that was free holds a new endpoint: nothing here refers to the old one.
    bool reused = before & health::kFree;
    if (health_ && i < health_->endpoints->size() && !reused) {
      const EndpointConfig& old = (*health_->endpoints)[i];
      moved = old.address != ep.address || old.fallbacks != ep.fallbacks;
      if (moved)
        departed = !has_address(ep, old.address) ||
                   std::any_of(old.fallbacks.begin(), old.fallbacks.end(),
                               [&](const net::Address& a) { return !has_address(ep, a); });
    }
    bool newly_removed = (now & health::kRemoved) && !(before & health::kRemoved);
    if (close_removed && (newly_removed || departed)) closing.push_back(i);
    if (!pools_[i]) continue;
    if (moved) pools_[i]->set_addresses(ep.address, ep.fallbacks);
    // Draining touches no borrower: done now. Closing waits for the new snapshot (below).
    if (departed && drain_removed && !close_removed) {
      pools_[i]->retire_departed(Departed::kDrain);
      // HTTP/2 connections are busy for life: drained as a whole (new ones go to the new
      // addresses).
      if (http2_pools_[i]) http2_pools_[i]->drain();
    }
    bool drain_before =
        (before & health::kDraining) || (drain_removed && (before & health::kRemoved));
    bool drain_now = (now & health::kDraining) || (drain_removed && (now & health::kRemoved));
    if (drain_now && !drain_before) {
      pools_[i]->drain();
      if (http2_pools_[i]) http2_pools_[i]->drain();
    }
    if (!drain_now && drain_before && !(now & kLeaving)) pools_[i]->undrain();
    // Connections kept ready ahead of demand only where new requests may go.
    pools_[i]->set_warm_up(snapshot->panic ? !(now & kLeaving) : now == 0);
  }
  health_ = std::move(snapshot);
  rebuild_balancer();
  release_departed();
  // Last, with the new snapshot in force: what the closed connections' owners do next
  // (a retry, a new pick) must not choose the departed endpoint again.
  for (size_t i : closing) {
    // A removed endpoint loses every connection; one whose addresses changed only those to
    // the departed addresses (set_addresses did the pool's).
    bool removed = health_->flags[i] & health::kRemoved;
    if (pools_[i] && removed) pools_[i]->close_all();
    if (pools_[i] && !removed) pools_[i]->retire_departed(Departed::kClose);
    for (auto& l : close_listeners_) l.second(i, removed);
  }
}

bool Cluster::unused(size_t i) const {
  if (active_[i] != 0) return false;
  if (pools_[i] && !pools_[i]->empty()) return false;
  if (http2_pools_[i] && !http2_pools_[i]->empty()) return false;
  return std::none_of(retired_http2_pools_.begin(), retired_http2_pools_.end(), [&](const auto& p) {
    return &p->transport() == pools_[i].get() && !p->empty();
  });
}

void Cluster::release_departed() {
  if (!shared_.release) return;
  bool waiting = false;
  const auto& flags = health_->flags;
  const uint64_t iteration = loop_.stats().iterations;
  for (size_t i = 0; i < flags.size(); ++i) {
    if (!(flags[i] & health::kRemoved) || (flags[i] & health::kFree)) continue;
    uint32_t removal = health_->removals[i];
    if (released_[i] == removal) continue;
    waiting = true;
    if (!unused(i)) {
      quiet_since_[i] = 0;
      continue;
    }
    // Seen unused in an earlier loop iteration, and still: the objects that iteration
    // deferred the deletion of (a closed connection, which may still name its pool) are
    // gone, and nothing made new ones since, as no new request goes to a removed endpoint.
    if (quiet_since_[i] == 0 || quiet_since_[i] > iteration) {
      if (quiet_since_[i] == 0) quiet_since_[i] = iteration + 1;
      continue;
    }
    quiet_since_[i] = 0;
    std::erase_if(retired_http2_pools_,
                  [&](const auto& p) { return pools_[i] && &p->transport() == pools_[i].get(); });
    http2_pools_[i].reset();
    pools_[i].reset();
    released_[i] = removal;
    shared_.release(i, removal);
  }
  // Connections of departed endpoints close as their requests end or their idle time
  // runs out: look again in a while.
  if (waiting && !release_timer_.armed()) release_timer_.arm_at(loop_.now() + kReleaseRecheck);
}

void Cluster::rebuild_balancer() {
  std::vector<lb::LbHost> hosts;
  const auto& table = *health_->endpoints;
  uint64_t total_weight = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    uint8_t f = health_->flags[i];
    if (f & health::kRemoved) continue;
    total_weight += table[i].weight;
    // In panic mode only draining keeps an endpoint out: it is leaving on purpose.
    bool usable = health_->panic ? !(f & health::kDraining) : f == 0;
    if (!usable) continue;
    hosts.push_back(lb::LbHost{i, table[i].weight, table[i].address.to_string()});
  }
  lb_.reset();
  if (hosts.empty()) return;
  lb::LbConfig lb_config = config_->lb;
  lb_config.ring_total_weight = total_weight;
  lb_ = lb::make_load_balancer(lb_config, std::move(hosts), &active_, lb_seed_);
}

void Cluster::report(size_t endpoint, health::Outcome outcome) {
  if (!sink_) return;
  if (shared_.requests) {
    shared_.requests[endpoint].fetch_add(1, std::memory_order_relaxed);
    if (outcome != health::Outcome::kSuccess) {
      shared_.failures[endpoint].fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Successes matter only to break a streak: on the common path this is one relaxed load.
  bool failed = outcome != health::Outcome::kSuccess;
  bool was_failing = endpoint < failed_last_.size() && failed_last_[endpoint];
  if (!failed && !was_failing && !shared_.streak[endpoint].load(std::memory_order_relaxed)) {
    return;
  }
  if (failed || was_failing) {
    if (endpoint >= failed_last_.size()) failed_last_.resize(endpoint + 1, false);
    failed_last_[endpoint] = failed;
  }
  sink_->report(index_, endpoint, outcome);
}

bool Cluster::try_start_request() {
  const CircuitBreakers& cb = config_->circuit_breakers;
  if (cb.max_active_requests == 0 && cb.budget_percent == 0) return true;
  uint32_t now = shared_.active_requests.fetch_add(1, std::memory_order_relaxed) + 1;
  if (cb.max_active_requests != 0 && now > cb.max_active_requests) {
    shared_.active_requests.fetch_sub(1, std::memory_order_relaxed);
    ++stats_.overflow_active_requests;
    return false;
  }
  return true;
}

void Cluster::finish_request() {
  const CircuitBreakers& cb = config_->circuit_breakers;
  if (cb.max_active_requests == 0 && cb.budget_percent == 0) return;
  shared_.active_requests.fetch_sub(1, std::memory_order_relaxed);
}

bool Cluster::try_start_retry() {
  const CircuitBreakers& cb = config_->circuit_breakers;
  if (cb.max_active_retries == 0 && cb.budget_percent == 0) return true;
  uint32_t now = shared_.active_retries.fetch_add(1, std::memory_order_relaxed) + 1;
  bool over = cb.max_active_retries != 0 && now > cb.max_active_retries;
  if (!over && cb.budget_percent != 0) {
    uint64_t active = shared_.active_requests.load(std::memory_order_relaxed);
    uint64_t budget =
        std::max<uint64_t>(cb.min_retry_concurrency, active * cb.budget_percent / 100);
    over = now > budget;
  }
  if (over) {
    shared_.active_retries.fetch_sub(1, std::memory_order_relaxed);
    ++stats_.overflow_retries;
    return false;
  }
  return true;
}

void Cluster::finish_retry() {
  const CircuitBreakers& cb = config_->circuit_breakers;
  if (cb.max_active_retries == 0 && cb.budget_percent == 0) return;
  shared_.active_retries.fetch_sub(1, std::memory_order_relaxed);
}

pool::ConnPool& Cluster::pool(size_t index) {
  auto& p = pools_.at(index);
  if (!p) {
    p = std::make_unique<pool::ConnPool>(loop_, endpoint(index).address, worker_pool_config_,
                                         config_->socket_options, config_->source_address,
                                         config_->connect_timeout);
    p->set_fallbacks(endpoint(index).fallbacks, config_->connection_attempt_delay);
    p->set_connect_error_counters({&stats_.connect_timeouts, &stats_.connect_refused});
    if (tls_) p->set_tls(tls_, tls_host());
    if (health_->flags[index] & (health::kDraining | health::kRemoved)) {
      p->drain();
    } else {
      p->warm_up();
    }
  }
  return *p;
}

pool::Http2Pool& Cluster::http2_pool(size_t index) {
  auto& p = http2_pools_.at(index);
  if (!p) {
    p = std::make_unique<pool::Http2Pool>(pool(index), config_->http2,
                                          config_->tls ? "https" : "http");
  }
  return *p;
}

std::string default_tls_host(const ClusterConfig& config) {
  bool dns = config.type == ClusterConfig::Type::kStrictDns ||
             config.type == ClusterConfig::Type::kLogicalDns;
  if (dns && config.dns_targets.size() == 1) return config.dns_targets[0].host;
  return {};
}

std::string Cluster::tls_host() const {
  return default_tls_host(*config_);
}

void Cluster::warm_up_pools() {
  if (config_->pool.min_idle == 0) return;
  for (size_t i = 0; i < health_->flags.size(); ++i) {
    if (!(health_->flags[i] & health::kRemoved)) pool(i);
  }
}

void Cluster::undrain_pools() {
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i] && !(health_->flags[i] & (health::kDraining | health::kRemoved))) {
      pools_[i]->undrain();
    }
  }
}

void Cluster::drain_pools() {
  for (auto& p : pools_) {
    if (p) p->drain();
  }
  for (auto& p : http2_pools_) {
    if (p) p->drain();
  }
}

}  // namespace sluice::upstream
