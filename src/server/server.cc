#include "server/server.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "admin/admin_api.h"
#include "admin/admin_server.h"
#include "admin/dashboard.h"
#include "admin/metrics.h"
#include "base/log.h"
#include "bgp/speaker.h"
#include "discovery/etcd_registration.h"
#include "discovery/sources.h"
#include "dns/resolver.h"
#include "event/signals.h"
#include "event/timer.h"
#include "proxy/stun/stun_listener.h"
#include "proxy/udp/datagram_socket.h"
#include "server/reload_plan.h"
#include "server/worker.h"
#include "tls/cert_store.h"
#include "tls/cert_watcher.h"
#include "tls/context.h"
#include "tls/ticket_keys.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {

using admin::LifecycleState;

Server::Server(std::shared_ptr<const config::Config> config, std::string path)
    : config_(std::move(config)), config_path_(std::move(path)), exe_path_(own_executable()) {}

Server::~Server() {
  // Workers report to the health manager and read its shared cluster state until they are
  // joined: join them before it goes, on every way out of run().
  stop();
}

namespace {
// How often a drain under systemd reports the connections left.
constexpr auto kDrainStatusInterval = std::chrono::seconds(1);
}  // namespace

int Server::run() {
  // First, while this is the only thread: the environment is read and changed here.
  systemd_ = SdNotifier::from_environment();
  // Before any thread starts, so that every thread inherits the mask and only the main
  // loop's signalfd sees these.
  event::block_process_signals({SIGTERM, SIGINT, SIGHUP, SIGUSR2});
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<std::vector<ListenerHandoff>> per_worker(config_->workers);
  Status started = receive_inherited();
  if (started) started = prepare();
  if (started) started = bind_listeners(per_worker);
  if (started) started = prepare_tls(per_worker);
  if (started) {
    health_ = std::make_unique<upstream::health::HealthManager>(
        main_loop_, config_->clusters,
        [this](size_t cluster, std::shared_ptr<const upstream::health::HealthSnapshot> s) {
          // While a reload is applied, snapshots wait for the reload's message: a worker
          // must not see the new endpoints with the old routes.
          if (held_publishes_.count(cluster)) return;
          for (auto& w : workers_) w->set_health(cluster, s);
          if (bgp_) bgp_->evaluate();
        });
    health_->set_tls(cluster_tls_.back());
    health_->set_worker_count(config_->workers);
    if (inherited_ && !inherited_->endpoints.empty()) {
      // A binary upgrade: endpoints drained by an operator, or ejected, stay so.
      size_t n = health_->import_state(inherited_->endpoints);
      LOG_INFO("upgrade: {} drained or ejected endpoints carried over", n);
    }
    started = start_discovery();
  }
  if (started) {
    start_bgp();
    started = start_admin();
  }
  if (!started) {
    LOG_ERROR("{}", started.message());
    tell_predecessor("failed " + started.message());
    lifecycle_.transition(LifecycleState::kStopped, "startup failed");
    return 1;
  }
  start_workers(std::move(per_worker));
  reload_timer_ = std::make_unique<event::Timer>(main_loop_.timers(), [this] { start_reload(); });
  upgrade_poll_ = std::make_unique<event::Timer>(main_loop_.timers(), [this] { poll_upgrade(); });
  reload_gate_ =
      std::make_unique<event::Timer>(main_loop_.timers(), [this] { post_reload_when_answered(); });
  drain_deadline_ =
      std::make_unique<event::Timer>(main_loop_.timers(), [this] { on_drain_deadline(); });
  drain_progress_ =
      std::make_unique<event::Timer>(main_loop_.timers(), [this] { report_drain_progress(); });
  start_watchdog();
  systemd_.send(
      sd_message::status("starting: waiting for the first DNS answers and health checks"));
  signals_ = std::make_unique<event::SignalSet>(
      main_loop_, std::initializer_list<int>{SIGTERM, SIGINT, SIGHUP, SIGUSR2},
      [this](int sig) { on_signal(sig); });
  wait_ready();

  main_loop_.run();

  drain_deadline_->cancel();
  drain_progress_->cancel();
  reload_timer_->cancel();
  upgrade_poll_->cancel();
  reload_gate_->cancel();
  if (watchdog_) watchdog_->cancel();
  health_->stop();
  if (bgp_) bgp_->stop();
  stop();
  log_summary();
  lifecycle_.transition(LifecycleState::kStopped, "drained; exiting");
  return 0;
}

Status Server::prepare() {
  // A configuration built in code has not been through config::load_file(): hold it to the
  // same rules before anything starts.
  std::string invalid;
  for (const ConfigIssue& issue : config_->validate()) {
    if (issue.severity != ConfigIssue::Severity::kError) continue;
    invalid += "\n  ";
    invalid += issue.text();
  }
  if (!invalid.empty()) return Status::error("invalid configuration:" + invalid);

  // Upstream socket options are applied on every connect; try them once now so that a value
  // the kernel refuses stops startup with a clear message instead of failing each connect.
  for (const auto& c : config_->clusters) {
    int family = c->endpoints.empty() ? AF_INET : c->endpoints.front().address.family();
    auto probe = net::tcp_socket(family);
    if (!probe)
      return Status::error(fmt::format("cluster {}: {}", c->name, probe.status().message()));
    if (Status s = net::apply_socket_options(probe->get(), c->socket_options); !s) {
      return Status::error(fmt::format("cluster {}: socket_options: {}", c->name, s.message()));
    }
  }

  net::ephemeral_port_count();  // read the port range now, off the workers' path

  // Access logs, one writer per file however many listeners share it.
  for (const auto& l : config_->listeners) {
    const std::string& path = l->access_log.path;
    if (path.empty() || access_logs_.count(path)) continue;
    auto log = proxy::AccessLog::open(path);
    if (!log) return Status::error(fmt::format("listener {}: {}", l->name, log.status().message()));
    access_logs_.emplace(path, std::move(log.value()));
  }
  return Status::ok();
}

Status Server::bind_listeners(std::vector<std::vector<ListenerHandoff>>& per_worker) {
  for (const auto& l : config_->listeners) {
    if (Status st = bind_listener(l, per_worker, listener_fds_); !st) return st;
  }
  return Status::ok();
}

Status Server::bind_listener(const std::shared_ptr<const proxy::ListenerConfig>& l,
                             std::vector<std::vector<ListenerHandoff>>& per_worker,
                             std::map<std::string, HandedListener>& all_dups) {
  auto count = std::make_shared<std::atomic<uint32_t>>(0);
  net::Address address = l->address;
  const size_t workers = per_worker.size();
  const bool stun = l->protocol == proxy::Protocol::kStun;
  std::optional<net::Address> alternate = stun ? l->stun.alternate_address : std::nullopt;
  // STUN over TCP on port 0: a port free for UDP and TCP alike (the kernel picks the UDP one,
  // which TCP may already use).
  const bool stun_tcp_on = stun && l->stun.tcp;
  // A binary upgrade hands over the sockets of the listeners this process keeps: adopted, not
  // bound again, so that their accept queues (and datagrams queued on a UDP socket) carry
  // over. Worker w takes socket w (and w + N, w + 2N... when the old process had more
  // workers); workers beyond them bind their own.
  std::vector<SocketSet> sets;
  adopt_inherited(*l, address, alternate, sets);
  net::Fd first_tcp;
  for (int attempt = 0; stun_tcp_on && address.port() == 0 && sets.empty() && attempt < 16;
       ++attempt) {
    auto udp = proxy::udp::bind_udp_socket(address);
    if (!udp) return Status::error(fmt::format("listener {}: {}", l->name, udp.status().message()));
    auto bound = net::local_address(udp->get());
    if (!bound)
      return Status::error(fmt::format("listener {}: {}", l->name, bound.status().message()));
    auto tcp = net::bind_listener(*bound, 128, l->socket_options);
    if (!tcp) continue;
    address = *bound;
    sets.push_back(SocketSet{std::move(udp.value()), {}, std::move(tcp.value())});
  }
  while (sets.size() < workers) {
    auto fd = proxy::is_datagram(l->protocol)
                  ? proxy::udp::bind_udp_socket(address)
                  : net::bind_listener(address, l->backlog, l->socket_options);
    if (!fd) return Status::error(fmt::format("listener {}: {}", l->name, fd.status().message()));
    if (address.port() == 0) {
      // Port 0: the first socket picks the port; every other worker binds that same port.
      auto bound = net::local_address(fd->get());
      if (!bound) {
        return Status::error(fmt::format("listener {}: {}", l->name, bound.status().message()));
      }
      address = *bound;
    }
    sets.push_back(SocketSet{std::move(fd.value()), {}, {}});
  }
  // A stun listener's alternate address (RFC 5780): three more sockets per main one, those
  // handed over or bound here.
  if (alternate) {
    size_t missing = 0;
    for (const auto& set : sets) missing += set.alternates.empty() ? 1 : 0;
    auto bound = proxy::stun::bind_alternate_sockets(address, *alternate, missing);
    if (!bound) {
      return Status::error(fmt::format("listener {}: alternate address {}: {}", l->name,
                                       alternate->to_string(), bound.status().message()));
    }
    size_t next = 0;
    for (auto& set : sets) {
      if (set.alternates.empty()) set.alternates = std::move(bound.value()[next++]);
    }
  }
  // STUN over TCP: a listening socket per main one on the same address and port.
  if (stun_tcp_on) {
    for (auto& set : sets) {
      if (set.tcp.valid()) continue;
      auto bound = net::bind_listener(address, 128, l->socket_options);
      if (!bound) {
        return Status::error(
            fmt::format("listener {}: tcp: {}", l->name, bound.status().message()));
      }
      set.tcp = std::move(bound.value());
    }
  }
  // Only once every socket is bound: a failure above leaves nothing half made.
  if (auto old = connection_counts_.find(l->name); old != connection_counts_.end()) {
    retired_counts_.push_back(old->second);
  }
  connection_counts_[l->name] = count;
  std::shared_ptr<proxy::AccessLog> access_log;
  if (!l->access_log.path.empty()) access_log = access_logs_.at(l->access_log.path);
  // The hand-over's copies, one per socket (a worker closes its own on a drain).
  all_dups[l->name] = copy_for_handover(l->name, address, sets);
  for (size_t i = 0; i < sets.size(); ++i) {
    SocketSet& set = sets[i];
    std::vector<ListenerHandoff>& worker = per_worker[i % workers];
    if (i >= workers && !proxy::is_datagram(l->protocol)) {
      // More sockets than workers: a worker accepts from several.
      worker[worker.size() - 1].extra_fds.push_back(std::move(set.fd));
      continue;
    }
    // A datagram socket is read by a proxy of its own (its sessions answer through it): a
    // worker with several serves the listener several times over.
    ListenerHandoff h{l, std::move(set.fd), count, access_log};
    h.alternate_fds = std::move(set.alternates);
    h.stun_tcp_fd = std::move(set.tcp);
    worker.push_back(std::move(h));
  }
  std::erase_if(listener_addresses_, [&](const auto& a) { return a.first == l->name; });
  listener_addresses_.emplace_back(l->name, address.to_string());
  if (l->protocol == proxy::Protocol::kHttp) {
    LOG_INFO("listener {} listening on {} (http, {} virtual hosts)", l->name, address.to_string(),
             l->http.virtual_hosts.size());
  } else if (l->protocol == proxy::Protocol::kStun) {
    if (alternate) {
      LOG_INFO("listener {} listening on {} (stun{}, alternate address {})", l->name,
               address.to_string(), l->stun.tcp ? ", udp and tcp" : "", alternate->to_string());
    } else if (l->stun.tcp) {
      LOG_INFO("listener {} listening on {} (stun, udp and tcp)", l->name, address.to_string());
    } else {
      LOG_INFO("listener {} listening on {} (stun)", l->name, address.to_string());
    }
  } else {
    LOG_INFO("listener {} listening on {} ({}, cluster {})", l->name, address.to_string(),
             proxy::to_string(l->protocol), l->cluster);
  }
  return Status::ok();
}

Status Server::start_discovery() {
  auto s = discovery::Sources::create(main_loop_, *health_, config_->clusters, config_->dns);
  if (!s) return s.status();
  sources_ = std::move(s.value());
  if (sources_->resolver() && inherited_ && !inherited_->dns.empty()) {
    // A binary upgrade: the answers the old process had, for the rest of their TTLs.
    sources_->resolver()->restore_cache(inherited_->dns);
    LOG_INFO("upgrade: {} cached DNS answers carried over", inherited_->dns.size());
  }
  return Status::ok();
}

Status Server::start_admin() {
  if (!config_->admin_address) return Status::ok();
  admin_ = std::make_unique<admin::AdminServer>(main_loop_);
  admin::AdminContext context;
  context.lifecycle = &lifecycle_;
  context.reloads = &reload_stats_;
  context.view = [this] { return config_view(); };
  context.health = health_.get();
  if (!config_path_.empty()) {
    context.reload = [this](bool dry_run, std::function<void(admin::ReloadOutcome)> done) {
      request_reload(dry_run, std::move(done));
    };
  }
  context.upgrade = [this](std::function<void(admin::UpgradeOutcome)> done) {
    request_upgrade(std::move(done));
  };
  if (bgp_) context.bgp = [this] { return bgp_->render_json(); };
  if (config_->registration) context.registration = [this] { return registration_json(); };
  context.not_ready = [this] { return sources_ ? sources_->staleness_problem() : std::string(); };
  context.gather = [this](admin::GatherScope scope,
                          std::function<void(admin::MetricsInput&)> render) {
    gather(scope, std::move(render));
  };
  std::string token;
  if (config_->dashboard_enabled()) {
    token = admin::make_action_token();
    dashboard_events_ = std::make_unique<admin::DashboardEvents>(main_loop_, config_->admin_events);
    admin::register_dashboard(*admin_, context, token, dashboard_events_.get());
  }
  admin::register_admin_api(*admin_, std::move(context));
  auto log_dashboard = [&token](const net::Address& bound) {
    if (token.empty()) return;
    LOG_INFO("admin dashboard on http://{}/ (its actions need the token {})", bound.to_string(),
             token);
  };
  const net::Address& wanted = *config_->admin_address;
  auto same_admin = [&](const net::Address& handed) {
    // Port 0 in the file: the port the old process was given.
    return handed == wanted || (wanted.port() == 0 && handed.ip_string() == wanted.ip_string());
  };
  if (inherited_ && inherited_->admin && !inherited_->admin->fds.empty() &&
      same_admin(inherited_->admin->address)) {
    // A binary upgrade: the old process answers on this socket until this one is ready
    // (on_first_answers() starts it), so /ready never says "starting" during an upgrade.
    LOG_INFO("admin will listen on {} once ready (handed over)",
             inherited_->admin->address.to_string());
    log_dashboard(inherited_->admin->address);
    return Status::ok();
  }
  auto bound = admin_->start(*config_->admin_address);
  if (!bound) return Status::error(fmt::format("admin: {}", bound.status().message()));
  LOG_INFO("admin listening on {}", bound->to_string());
  log_dashboard(*bound);
  return Status::ok();
}

void Server::start_workers(std::vector<std::vector<ListenerHandoff>> per_worker) {
  for (size_t w = 0; w < per_worker.size(); ++w) {
    workers_.push_back(
        std::make_unique<Worker>(w, config_, std::move(per_worker[w]), cluster_handoffs(w)));
    if (upgrade_fd_.valid()) workers_.back()->accept_later();
    workers_.back()->start();
  }
}

ClusterHandoff Server::cluster_handoff(size_t worker, size_t index) {
  ClusterHandoff h;
  h.index = index;
  if (health_->retired(index)) return h;
  h.config = health_->cluster_config(index);
  if (index < cluster_tls_[worker].size()) h.tls = cluster_tls_[worker][index];
  h.health = health_->snapshot_ptr(index);
  h.shared = &health_->shared(index);
  h.sink = health_->sink_for(index);
  return h;
}

std::vector<ClusterHandoff> Server::cluster_handoffs(size_t worker) {
  std::vector<ClusterHandoff> all;
  for (size_t i = 0; i < health_->cluster_count(); ++i) all.push_back(cluster_handoff(worker, i));
  return all;
}

void Server::wait_ready() {
  // Every cluster's source has its first read or answer, then the health checks run.
  sources_->start(
      [this] { health_->start(config_->ready_timeout, [this] { on_first_answers(); }); });
}

void Server::on_first_answers() {
  auto pending = std::make_shared<size_t>(workers_.size());
  for (auto& w : workers_) {
    // A binary upgrade's new process takes connections only now (the old one serves them
    // meanwhile): not before its first DNS and health answers.
    if (upgrade_fd_.valid()) w->start_accepting();
    w->after_pending([this, pending] {
      main_loop_.post([this, pending] {
        if (--*pending != 0) return;
        // A signal may have started the drain while the workers caught up.
        if (!lifecycle_.is(LifecycleState::kStarting)) return;
        std::string detail =
            fmt::format("{} workers, {} listeners", workers_.size(), config_->listeners.size());
        lifecycle_.transition(LifecycleState::kReady, detail);
        if (bgp_) bgp_->set_ready();
        start_registration();
        if (upgrade_fd_.valid()) {
          // A binary upgrade: this process is the service's main one from now on.
          if (inherited_ && inherited_->admin && !inherited_->admin->fds.empty() &&
              !admin_->listening()) {
            if (auto a = admin_->start(std::move(inherited_->admin->fds.front())); a) {
              LOG_INFO("admin listening on {}", a->to_string());
            } else {
              LOG_ERROR("admin: {}", a.status().message());
            }
          }
          systemd_.send(sd_message::main_pid(::getpid()));
          tell_predecessor(fmt::format("ready {}", ::getpid()));
        }
        systemd_.send(sd_message::ready("ready: " + detail));
      });
    });
  }
}

void Server::on_signal(int sig) {
  if (sig == SIGHUP) {
    // The reload signal (the unit's ExecReload).
    if (config_path_.empty()) {
      LOG_WARN("SIGHUP: no configuration file to read again; the running configuration stays");
      return;
    }
    request_reload(false, nullptr);
    return;
  }
  if (sig == SIGUSR2) {
    // (refused with the reason while draining: not a second stop signal)
    request_upgrade(nullptr);
    return;
  }
  if (withdraw_registration(sig)) return;
  if (bgp_ && bgp_->shutting_down() && !lifecycle_.is(LifecycleState::kDraining)) {
    LOG_WARN("{} again: withdrawing the BGP announcements now", strsignal(sig));
    bgp_->hurry();
    return;
  }
  if (bgp_ && !lifecycle_.is(LifecycleState::kDraining)) {
    // Peers move traffic away first (RFC 8326), then the prefixes are withdrawn; only then
    // does sluice stop accepting.
    std::string why = strsignal(sig);
    bgp_->shutdown(why, [this, why] { drain(why); });
    return;
  }
  if (lifecycle_.is(LifecycleState::kDraining)) {
    LOG_WARN("{} again: closing every connection now", strsignal(sig));
    systemd_.send(sd_message::status(
        fmt::format("draining: closing every connection now ({} again)", strsignal(sig))));
    for (auto& w : workers_) w->close_all();
    return;
  }
  drain(strsignal(sig));
}

void Server::drain(const std::string& why, bool for_upgrade) {
  // Copies kept for a hand-over: the sockets must close with the workers' (or the kernel
  // would go on queueing connections nobody accepts).
  listener_fds_.clear();
  // After an upgrade the new process keeps the lease alive; after a stop it is revoked
  // already (on_signal), or expires by its TTL (a drain asked for otherwise).
  if (registration_) registration_->release(for_upgrade);
  health_->stop();
  if (sources_) sources_->stop();
  // One count for the message and the progress reports: a connection that closes right after
  // must show as a change.
  reported_connections_ = open_connections();
  std::string detail =
      fmt::format("stopped accepting, waiting up to {} for {} open connections ({})",
                  format_duration(config_->drain_timeout), reported_connections_, why);
  lifecycle_.transition(LifecycleState::kDraining, detail);
  // The dashboard's streams end (a browser's page polls, or follows the new process).
  if (dashboard_events_) dashboard_events_->close_all(for_upgrade ? "upgrade" : "draining");
  // A new process still starting must not serve beside a stopping one.
  if (successor_ > 0) upgrade_finished(false, "sluice began draining");
  // After an upgrade the service goes on in the new process: not a stop.
  systemd_.send(for_upgrade ? sd_message::status("draining: " + detail)
                            : sd_message::stopping("draining: " + detail));
  drain_deadline_->arm_at(main_loop_.now() + config_->drain_timeout);
  if (systemd_.enabled()) {
    drain_progress_->arm_at(main_loop_.now() + kDrainStatusInterval);
  }
  size_t n = workers_.size();
  for (auto& w : workers_) {
    w->drain(
        [this, n] {
          main_loop_.post([this, n] {
            if (++drained_workers_ == n) main_loop_.stop();
          });
        },
        for_upgrade);
  }
}

void Server::on_drain_deadline() {
  std::string detail = fmt::format("drain timeout after {}: closing {} open connections",
                                   format_duration(config_->drain_timeout), open_connections());
  LOG_WARN("{}", detail);
  systemd_.send(sd_message::status("draining: " + detail));
  for (auto& w : workers_) w->close_all();
}

void Server::report_drain_progress() {
  uint64_t open = open_connections();
  if (open != reported_connections_) {
    reported_connections_ = open;
    systemd_.send(sd_message::status(fmt::format("draining: {} connections left", open)));
  }
  drain_progress_->arm_at(main_loop_.now() + kDrainStatusInterval);
}

void Server::start_watchdog() {
  if (!systemd_.enabled() || !systemd_.watchdog_interval()) return;
  // The first tick finds every worker "answered" and sends at once.
  watchdog_answers_ = workers_.size();
  watchdog_ = std::make_unique<event::Timer>(main_loop_.timers(), [this] { on_watchdog_tick(); });
  LOG_INFO("systemd: watchdog every {} (WatchdogSec {})",
           format_duration(*systemd_.watchdog_interval() / 2),
           format_duration(*systemd_.watchdog_interval()));
  on_watchdog_tick();
}

void Server::on_watchdog_tick() {
  // A stuck worker holds WATCHDOG=1 back, so the service manager restarts a process whose
  // data plane stopped, not only one whose main thread did.
  if (watchdog_answers_ < workers_.size()) {
    if (!watchdog_stall_logged_) {
      LOG_WARN("systemd: {} of {} workers have not answered for {}; WATCHDOG=1 is held back",
               workers_.size() - watchdog_answers_, workers_.size(),
               format_duration(*systemd_.watchdog_interval() / 2));
      watchdog_stall_logged_ = true;
    }
  } else {
    watchdog_stall_logged_ = false;
    systemd_.send(sd_message::watchdog());
    uint64_t round = ++watchdog_round_;
    watchdog_answers_ = 0;
    for (auto& w : workers_) {
      w->after_pending([this, round] {
        main_loop_.post([this, round] {
          if (round == watchdog_round_) ++watchdog_answers_;
        });
      });
    }
  }
  watchdog_->arm_at(main_loop_.now() + *systemd_.watchdog_interval() / 2);
}

uint64_t Server::open_connections() const {
  uint64_t open = 0;
  for (const auto& [name, c] : connection_counts_) open += c->load();
  for (const auto& c : retired_counts_) open += c->load();
  return open;
}

void Server::gather(admin::GatherScope scope, std::function<void(admin::MetricsInput&)> render) {
  struct Pending {
    admin::MetricsInput input;
    size_t waiting = 0;
    std::function<void(admin::MetricsInput&)> render;
  };
  auto pending = std::make_shared<Pending>();
  pending->render = std::move(render);
  pending->input.workers.resize(workers_.size());
  pending->input.clusters = &config_->clusters;
  pending->input.listeners = &config_->listeners;
  pending->input.keep = config_;
  for (const auto& c : config_->clusters) {
    pending->input.cluster_index.push_back(*health_->find_cluster(c->name));
  }
  pending->input.health = health_.get();
  const dns::Resolver* resolver = sources_->resolver();
  pending->input.dns = resolver ? &resolver->stats() : nullptr;
  if (dashboard_events_) pending->input.dashboard_events = dashboard_events_->stats();
  if (scope.dns && resolver) pending->input.dns_names = resolver->report_cache();
  for (const auto& c : config_->clusters) {
    const discovery::EndpointSource* s = sources_->source(*health_->find_cluster(c->name));
    if (!s) continue;
    pending->input.sources[c->name] = {s->kind(), s->target(), s->state(), s->stats()};
  }
  for (const auto& [listener, store] : cert_stores_) {
    auto counts = cert_reloads_[listener];
    for (const auto& cert : store->certificates()) {
      pending->input.certificates.push_back(admin::CertificateReport{
          listener, cert->chain_file, cert->subject, cert->names, cert->not_after,
          !cert->ocsp_der.empty(), counts.first, counts.second});
    }
  }
  for (const auto& l : config_->listeners) {
    pending->input.active_connections[l->name] = connection_counts_.at(l->name)->load();
  }
  add_bgp_stats(pending->input);
  add_registration_stats(pending->input);
  pending->waiting = workers_.size();
  for (size_t i = 0; i < workers_.size(); ++i) {
    workers_[i]->collect(scope, [this, pending, i](admin::WorkerReport r) {
      main_loop_.post([pending, i, r = std::move(r)]() mutable {
        pending->input.workers[i] = std::move(r);
        if (--pending->waiting == 0) pending->render(pending->input);
      });
    });
  }
}

void Server::stop() {
  if (workers_joined_) return;
  workers_joined_ = true;
  for (auto& w : workers_) w->stop_and_join();
}

void Server::log_summary() {
  // The exit summary: every declared counter, merged over the workers (stopped by now).
  admin::MetricsInput totals;
  totals.clusters = &config_->clusters;
  for (const auto& c : config_->clusters) {
    totals.cluster_index.push_back(*health_->find_cluster(c->name));
  }
  totals.health = health_.get();
  const dns::Resolver* resolver = sources_ ? sources_->resolver() : nullptr;
  totals.dns = resolver ? &resolver->stats() : nullptr;
  add_bgp_stats(totals);
  if (dashboard_events_) totals.dashboard_events = dashboard_events_->stats();
  add_registration_stats(totals);
  for (auto& w : workers_) {
    admin::WorkerReport& r = totals.workers.emplace_back();
    r.tcp = w->final_stats();
    r.http = w->final_http_stats();
    r.tls = w->final_tls_stats();
    r.udp = w->final_udp_stats();
    r.stun = w->final_stun_stats();
    for (const auto& c : w->final_cluster_stats()) r.clusters.push_back({.stats = c});
  }
  for (const auto& line : admin::exit_summary(totals)) LOG_INFO("{}", line);
  for (const auto& [path, log] : access_logs_) {
    if (uint64_t dropped = log->dropped()) {
      LOG_WARN("access log {}: {} lines dropped (the writer could not keep up)", path, dropped);
    }
  }
}

}  // namespace sluice::server
