// Configuration reload in place. The file is read and checked first: any error leaves the
// running configuration untouched. Then what changed is applied as new snapshots:
//   - clusters keep their index, endpoints, health and pools; new settings apply from now on
//     (Cluster::reconfigure); a static cluster's endpoint list goes through the same path as
//     a DNS answer (HealthManager::update_cluster), so unchanged endpoints keep everything;
//   - listeners whose address and socket settings are unchanged keep their sockets (nothing
//     is re-bound, no accept queue is lost) and take the new settings for new requests; a new
//     listener binds; a removed one accepts what is queued, stops, and its connections drain;
//   - settings that cannot change while running (workers, the admin address, the resolver)
//     stay as they are, and the reply says so.
// Each worker applies its part in one step between two events; the reload is done once every
// worker has.
#include <fmt/format.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "config/config_diff.h"
#include "discovery/sources.h"
#include "net/listener.h"
#include "server/reload_plan.h"
#include "server/server.h"
#include "server/worker.h"
#include "tls/cert_store.h"
#include "tls/cert_watcher.h"
#include "tls/context.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {

using admin::LifecycleState;
using admin::ReloadOutcome;

namespace {

// Reload requests closer together than this are applied together.
constexpr auto kReloadCoalesce = std::chrono::milliseconds(100);
// How often a reload waiting for new clusters' first answers looks again.
constexpr auto kGatePoll = std::chrono::milliseconds(5);

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// What was configured, the certificates the loader read aside.
bool same_listener(const proxy::ListenerConfig& a, const proxy::ListenerConfig& b) {
  proxy::ListenerConfig x = a, y = b;
  x.cert_store = nullptr;
  y.cert_store = nullptr;
  return x == y;
}

// Whether the listening sockets can stay: what they were bound and set up with is the same.
// (A new backlog is applied to the same sockets: listen() again; so are defer_accept and
// notsent_lowat: net::apply_listening_options.)
bool same_sockets(const proxy::ListenerConfig& a, const proxy::ListenerConfig& b) {
  // A UDP listener's sockets are not a TCP listener's, nor a STUN listener's a UDP proxy's.
  bool same_kind = proxy::is_datagram(a.protocol) == proxy::is_datagram(b.protocol) &&
                   (!proxy::is_datagram(a.protocol) || a.protocol == b.protocol);
  return same_kind && a.address == b.address &&
         a.stun.alternate_address == b.stun.alternate_address && a.stun.tcp == b.stun.tcp &&
         net::same_listening_socket(a.socket_options, b.socket_options);
}

template <typename T>
const std::shared_ptr<const T>* find_named(const std::vector<std::shared_ptr<const T>>& list,
                                           const std::string& name) {
  for (const auto& item : list) {
    if (item->name == name) return &item;
  }
  return nullptr;
}

}  // namespace

admin::ConfigView Server::config_view() const {
  admin::ConfigView v;
  v.keep = config_;
  v.settings = {config_->workers, config_->drain_timeout, config_->ready_timeout};
  v.settings.event_backend = config_->event.backend;
  // The main loop's; a worker's differs only when the kernel refused it a ring (logged).
  v.settings.event_in_use = main_loop_.backend();
  v.listeners = &config_->listeners;
  v.clusters = &config_->clusters;
  // In the configuration's order.
  for (const auto& l : config_->listeners) {
    for (const auto& a : listener_addresses_) {
      if (a.first == l->name) v.listener_addresses.push_back(a);
    }
  }
  return v;
}

void Server::request_reload(bool dry_run, std::function<void(ReloadOutcome)> done) {
  // During an upgrade the new process reads the file: reload that one.
  if (!lifecycle_.serving() || lifecycle_.is(LifecycleState::kUpgrading)) {
    ReloadOutcome o;
    o.result = ReloadOutcome::Result::kFailed;
    o.dry_run = dry_run;
    o.generation = reload_stats_.generation;
    o.errors.push_back(
        lifecycle_.is(LifecycleState::kUpgrading)
            ? std::string("an upgrade is under way: the new process reads the file as it starts")
            : fmt::format("sluice is {}, not serving: nothing is reloaded",
                          admin::to_string(lifecycle_.state())));
    LOG_WARN("reload refused: {}", o.errors.back());
    if (done) done(std::move(o));
    return;
  }
  if (dry_run) {
    std::unique_ptr<ReloadPlan> plan;
    ReloadOutcome o = plan_reload(&plan);
    o.dry_run = true;
    if (done) done(std::move(o));
    return;
  }
  reload_waiters_.push_back(std::move(done));
  // One under way or one due soon takes this request along.
  if (lifecycle_.is(LifecycleState::kReloading) || reload_timer_->armed()) return;
  MonoTime at = last_reload_ + kReloadCoalesce;
  if (last_reload_ == MonoTime{} || main_loop_.now() >= at) {
    start_reload();
  } else {
    reload_timer_->arm_at(at);
  }
}

void Server::start_reload() {
  if (!lifecycle_.is(LifecycleState::kReady)) {
    // Draining (or upgrading) began meanwhile: every waiter hears it.
    ReloadOutcome o;
    o.result = ReloadOutcome::Result::kFailed;
    o.generation = reload_stats_.generation;
    o.errors.push_back(fmt::format("sluice is {}, not serving: nothing is reloaded",
                                   admin::to_string(lifecycle_.state())));
    auto waiters = std::move(reload_waiters_);
    reload_waiters_.clear();
    for (auto& done : waiters) {
      if (done) done(o);
    }
    return;
  }
  reloading_waiters_ = std::move(reload_waiters_);
  reload_waiters_.clear();
  last_reload_ = main_loop_.now();
  reload_started_ = main_loop_.now();
  lifecycle_.transition(LifecycleState::kReloading, "reading " + config_path_);
  systemd_.send(sd_message::reloading(monotonic_now(), "reloading: reading " + config_path_));

  std::unique_ptr<ReloadPlan> plan;
  ReloadOutcome outcome = plan_reload(&plan);
  if (!plan) return finish_reload(std::move(outcome));
  if (Status s = apply_reload(*plan); !s) {
    outcome.result = ReloadOutcome::Result::kFailed;
    outcome.errors.push_back(s.message());
    return finish_reload(std::move(outcome));
  }
  plan->outcome = std::move(outcome);
  plan->gate_deadline = main_loop_.now() + config_->ready_timeout;
  reload_plan_ = std::move(plan);
  post_reload_when_answered();
}

ReloadOutcome Server::plan_reload(std::unique_ptr<ReloadPlan>* out) {
  ReloadOutcome o;
  o.generation = reload_stats_.generation;
  std::vector<std::string> load_warnings;
  auto loaded = config::load_file(config_path_, &load_warnings);
  if (!loaded) {
    o.result = ReloadOutcome::Result::kFailed;
    o.errors = lines_of(loaded.status().message());
    return o;
  }
  for (auto& w : load_warnings) o.warnings.push_back(std::move(w));
  auto next = std::make_shared<config::Config>(**loaded);

  // What only a restart changes stays as it is.
  auto keep = [&](bool differs, std::string what) {
    if (differs) o.warnings.push_back(std::move(what));
  };
  keep(next->workers != config_->workers,
       fmt::format(
           "warning: workers: {} in the file, {} running: the number of workers changes only with "
           "a restart; it stays {}",
           next->workers, config_->workers, config_->workers));
  next->workers = config_->workers;
  keep(next->admin_address != config_->admin_address,
       "warning: admin: the admin address changes only with a restart; it stays as it is");
  next->admin_address = config_->admin_address;
  keep(next->dashboard_enabled() != config_->dashboard_enabled(),
       "warning: admin: admin.dashboard changes only with a restart; it stays as it is");
  next->admin_dashboard = config_->admin_dashboard;
  keep(!(next->admin_events == config_->admin_events),
       "warning: admin: admin.events changes only with a restart; it stays as it is");
  next->admin_events = config_->admin_events;
  keep(!(next->dns == config_->dns),
       "warning: dns: the resolver's settings change only with a restart; they stay as they are");
  next->dns = config_->dns;
  keep(next->event.backend != config_->event.backend,
       fmt::format("warning: event: the event backend changes only with a restart or a binary "
                   "upgrade; it stays {}",
                   event::backend_name(config_->event.backend)));
  keep(next->event.receive != config_->event.receive,
       fmt::format("warning: event: event.receive changes only with a restart or a binary "
                   "upgrade; it stays {}",
                   event::receive_name(config_->event.receive)));
  next->event = config_->event;
  keep(!(next->bgp == config_->bgp || (next->bgp && config_->bgp && *next->bgp == *config_->bgp)),
       "warning: bgp: the BGP speaker's settings change only with a restart or a binary upgrade; "
       "they stay as they are");
  next->bgp = config_->bgp;
  keep(!(next->registration == config_->registration ||
         (next->registration && config_->registration &&
          *next->registration == *config_->registration)),
       "warning: registration: sluice's own etcd key changes only with a restart or a binary "
       "upgrade; it stays as it is");
  next->registration = config_->registration;

  auto plan = std::make_unique<ReloadPlan>();
  // Unchanged blocks keep the running objects: identity then says "unchanged" everywhere.
  for (auto& c : next->clusters) {
    const auto* old = find_named(config_->clusters, c->name);
    if (old && **old == *c) {
      c = *old;
    } else {
      plan->clusters.push_back(c);
    }
  }
  for (const auto& c : config_->clusters) {
    if (!find_named(next->clusters, c->name)) plan->removed_clusters.push_back(c->name);
  }
  for (auto& l : next->listeners) {
    const auto* old = find_named(config_->listeners, l->name);
    if (old && same_listener(**old, *l)) {
      l = *old;
    } else if (old && same_sockets(**old, *l)) {
      plan->changed.push_back(l);
    } else {
      if (old) plan->stop.push_back(l->name);
      plan->bind.push_back(l);
    }
  }
  for (const auto& l : config_->listeners) {
    if (!find_named(next->listeners, l->name)) plan->stop.push_back(l->name);
  }

  for (const auto& change : config::diff_configs(*config_, *next)) o.changes.push_back(change.text);
  if (o.changes.empty()) {
    o.result = ReloadOutcome::Result::kUnchanged;
    return o;
  }
  // What startup would refuse, refused before anything changes.
  for (const auto& c : plan->clusters) {
    int family = c->endpoints.empty() ? AF_INET : c->endpoints.front().address.family();
    auto probe = net::tcp_socket(family);
    Status s = probe ? net::apply_socket_options(probe->get(), c->socket_options) : probe.status();
    if (!s) {
      o.result = ReloadOutcome::Result::kFailed;
      o.errors.push_back(fmt::format("cluster {}: socket_options: {}", c->name, s.message()));
      return o;
    }
  }
  o.result = ReloadOutcome::Result::kApplied;
  o.generation = reload_stats_.generation + 1;
  plan->next = std::move(next);
  plan->generation = o.generation;
  *out = std::move(plan);
  return o;
}

Status Server::apply_reload(ReloadPlan& plan) {
  const config::Config& next = *plan.next;
  // First everything that can fail: access logs, sockets and TLS contexts. Nothing the
  // workers see has changed yet.
  for (const auto& l : next.listeners) {
    const std::string& path = l->access_log.path;
    if (path.empty() || access_logs_.count(path)) continue;
    auto log = proxy::AccessLog::open(path);
    if (!log) return Status::error(fmt::format("listener {}: {}", l->name, log.status().message()));
    access_logs_.emplace(path, std::move(log.value()));
  }
  // bind_listener() records each listener's count and address: put them back on a failure.
  auto counts = connection_counts_;
  auto retired = retired_counts_;
  auto addresses = listener_addresses_;
  auto undo = [&](Status s) {
    connection_counts_ = std::move(counts);
    retired_counts_ = std::move(retired);
    listener_addresses_ = std::move(addresses);
    return s;
  };
  plan.bound.clear();
  plan.bound.resize(workers_.size());
  for (const auto& l : plan.bind) {
    if (Status s = bind_listener(l, plan.bound, plan.dups); !s) return undo(s);
  }
  auto tls_changed = [&](const proxy::ListenerConfig& l) {
    const auto* old = find_named(config_->listeners, l.name);
    return !old || (*old)->tls != l.tls;
  };
  for (const auto* list : {&plan.bind, &plan.changed}) {
    for (const auto& l : *list) {
      if (!l->tls) continue;
      if (!tls_changed(*l) && listener_tls_.count(l->name)) continue;
      if (Status s = make_listener_tls(*l); !s) return undo(s);
      watch_certificates(l);
    }
  }
  // Clusters: indices for new ones (a name seen before gets its old index back).
  size_t next_index = health_->cluster_count();
  for (const auto& c : plan.clusters) {
    std::optional<size_t> index = health_->find_cluster(c->name);
    const auto* old = find_named(config_->clusters, c->name);
    size_t at = index ? *index : next_index++;
    if (!(old && (*old)->tls == c->tls)) {
      if (Status s = make_cluster_tls(*c, at); !s) return undo(s);
    }
  }
  // Nothing fails from here on.
  for (const auto& c : plan.clusters) {
    std::optional<size_t> index = health_->find_cluster(c->name);
    held_publishes_.insert(index ? *index : health_->cluster_count());
  }
  for (const auto& c : plan.clusters) {
    std::optional<size_t> index = health_->find_cluster(c->name);
    size_t at = index ? *index : health_->cluster_count();
    plan.touched.push_back(at);
    if (!index || health_->retired(*index)) plan.fresh.push_back(at);
    if (index) {
      health_->update_cluster(at, c, cluster_tls_.back()[at]);
    } else {
      health_->add_cluster(c, cluster_tls_.back()[at]);
    }
  }
  for (const auto& name : plan.removed_clusters) {
    size_t index = *health_->find_cluster(name);
    health_->retire_cluster(index);
    plan.removed.push_back(index);
    sources_->remove_cluster(index);
  }
  // A DNS cluster new to this process makes the resolver the first time (Sources).
  for (size_t i = 0; i < plan.clusters.size(); ++i) {
    sources_->set_cluster(plan.touched[i], plan.clusters[i]);
  }
  std::erase_if(retired_counts_,
                [](const auto& c) { return c->load() == 0 && c.use_count() == 1; });
  // Only when the file changed it: a --log-level given on the command line stays otherwise.
  if (next.log_level != config_->log_level) log::set_level(next.log_level);
  return Status::ok();
}

void Server::post_reload_when_answered() {
  // A cluster new to the workers gets routes only once its names have answered and its
  // endpoints their first health check (as at startup), or after ready_timeout.
  ReloadPlan& plan = *reload_plan_;
  if (!lifecycle_.is(LifecycleState::kReloading)) {
    // A drain began while new clusters were answering: the workers stop as they are.
    plan.outcome.result = ReloadOutcome::Result::kFailed;
    plan.outcome.errors.push_back("sluice began draining before the reload was applied");
    ReloadOutcome outcome = std::move(plan.outcome);
    reload_plan_.reset();
    return finish_reload(std::move(outcome));
  }
  bool answered = std::all_of(plan.fresh.begin(), plan.fresh.end(), [&](size_t index) {
    return sources_->answered(index) && health_->checked(index);
  });
  if (!answered && main_loop_.now() < plan.gate_deadline) {
    reload_gate_->arm_at(main_loop_.now() + kGatePoll);
    return;
  }
  if (!answered) {
    LOG_WARN("reload {}: new clusters have not all answered within ready_timeout {}; applying",
             plan.outcome.generation, format_duration(config_->ready_timeout));
  }
  post_reload(plan);
  // Done once every worker runs on the new configuration.
  auto waiting = std::make_shared<size_t>(workers_.size());
  auto shared = std::make_shared<ReloadOutcome>(std::move(plan.outcome));
  reload_plan_.reset();
  for (auto& w : workers_) {
    w->after_pending([this, waiting, shared] {
      main_loop_.post([this, waiting, shared] {
        if (--*waiting == 0) finish_reload(std::move(*shared));
      });
    });
  }
}

void Server::post_reload(ReloadPlan& plan) {
  // The workers' part, in one message each.
  for (size_t w = 0; w < workers_.size(); ++w) {
    WorkerReload r;
    r.config = plan.next;
    r.generation = plan.generation;
    for (size_t index : plan.touched) r.clusters.push_back(cluster_handoff(w, index));
    for (size_t index : plan.removed) r.clusters.push_back(ClusterHandoff{.index = index});
    r.added = std::move(plan.bound[w]);
    for (auto& h : r.added) {
      if (h.config->tls) h.tls = listener_tls_.at(h.config->name)[w];
    }
    for (const auto& l : plan.changed) {
      ListenerHandoff h{l, net::Fd(), connection_counts_.at(l->name), nullptr, nullptr};
      if (!l->access_log.path.empty()) h.access_log = access_logs_.at(l->access_log.path);
      if (l->tls) h.tls = listener_tls_.at(l->name)[w];
      r.changed.push_back(std::move(h));
    }
    r.removed = plan.stop;
    workers_[w]->reload(std::move(r), [] {});
  }
  for (const auto& l : plan.changed) {
    const auto* old = find_named(config_->listeners, l->name);
    if (old && (*old)->socket_options != l->socket_options) {
      for (const auto& fd : listener_fds_[l->name].fds) {
        if (Status s = net::apply_listening_options(fd.get(), l->socket_options); !s) {
          LOG_WARN("listener {}: {}", l->name, s.message());
        }
      }
    }
    if (!old || (*old)->backlog == l->backlog) continue;
    for (const auto& fd : listener_fds_[l->name].fds) {
      if (::listen(fd.get(), l->backlog) != 0) {
        LOG_WARN("listener {}: backlog {}: {}", l->name, l->backlog, std::strerror(errno));
      }
    }
  }
  // The main thread's own view.
  for (const auto& name : plan.stop) {
    bool rebound = std::any_of(plan.bind.begin(), plan.bind.end(),
                               [&](const auto& l) { return l->name == name; });
    if (rebound) continue;  // bind_listener moved its count aside already
    if (auto it = connection_counts_.find(name); it != connection_counts_.end()) {
      retired_counts_.push_back(it->second);
      connection_counts_.erase(it);
    }
    std::erase_if(listener_addresses_, [&](const auto& a) { return a.first == name; });
    cert_watchers_.erase(name);
    listener_fds_.erase(name);  // else the kernel would queue connections nobody accepts
  }
  for (auto& [name, fds] : plan.dups) listener_fds_[name] = std::move(fds);
  config_ = plan.next;
  held_publishes_.clear();  // their latest snapshots went with the message
  // A prefix that follows a removed listener is withdrawn now, not at the next health news.
  if (bgp_) bgp_->evaluate();
  // Access logs no listener names any more close once the proxies still writing them go.
  std::erase_if(access_logs_, [&](const auto& entry) {
    return std::none_of(config_->listeners.begin(), config_->listeners.end(),
                        [&](const auto& l) { return l->access_log.path == entry.first; });
  });
}

void Server::finish_reload(ReloadOutcome outcome) {
  using R = ReloadOutcome::Result;
  if (outcome.result != R::kFailed) {
    // After a log rotation moved them away, a reload starts the access logs' files anew.
    for (const auto& [path, log] : access_logs_) {
      if (Status s = log->reopen(); !s) LOG_WARN("reload: {}", s.message());
    }
  }
  outcome.apply_seconds = std::chrono::duration<double>(main_loop_.now() - reload_started_).count();
  switch (outcome.result) {
    case R::kApplied:
      ++reload_stats_.applied;
      reload_stats_.generation = outcome.generation;
      reload_stats_.last_apply_seconds = outcome.apply_seconds;
      for (const auto& w : outcome.warnings) LOG_WARN("reload {}: {}", outcome.generation, w);
      for (const auto& c : outcome.changes) LOG_INFO("reload {}: {}", outcome.generation, c);
      LOG_INFO("reload {} applied in {:.1f} ms: {} changes", outcome.generation,
               outcome.apply_seconds * 1000, outcome.changes.size());
      break;
    case R::kUnchanged:
      ++reload_stats_.unchanged;
      for (const auto& w : outcome.warnings) LOG_WARN("reload: {}", w);
      LOG_INFO("reload: {} has no changes; generation {} stays", config_path_,
               reload_stats_.generation);
      break;
    case R::kFailed:
      ++reload_stats_.failed;
      LOG_ERROR("reload failed, the running configuration stays: {} error(s)",
                outcome.errors.size());
      for (const auto& e : outcome.errors) LOG_ERROR("  {}", e);
      break;
  }
  if (lifecycle_.is(LifecycleState::kReloading)) {
    lifecycle_.transition(LifecycleState::kReady,
                          fmt::format("generation {}", reload_stats_.generation));
    systemd_.send(sd_message::ready(
        fmt::format("ready: configuration generation {}", reload_stats_.generation)));
  }
  auto waiters = std::move(reloading_waiters_);
  reloading_waiters_.clear();
  for (auto& done : waiters) {
    if (done) done(outcome);
  }
  // Requests that came while this one ran: one more reload, kReloadCoalesce after this one.
  if (!reload_waiters_.empty() && lifecycle_.is(LifecycleState::kReady) &&
      !reload_timer_->armed()) {
    reload_timer_->arm_at(last_reload_ + kReloadCoalesce);
  }
}

}  // namespace sluice::server
