// Server: the main thread, as a lifecycle (admin::Lifecycle: starting → ready → draining →
// stopped). run() goes through named steps: prepare (socket options, access logs), bind the
// listeners (one SO_REUSEPORT socket per worker, so a bind error stops startup with a clear
// message), start discovery, the admin API and the workers, then wait for the first DNS and
// health answers before ready. SIGTERM/SIGINT drain (stop accepting, let connections finish
// for drain_timeout, then close them); a second one closes everything at once. SIGHUP and
// POST /reload read the configuration file again and apply what changed (reload.cc). Every
// step's
// state lives here, not in the locals of one long function. Under systemd (Type=notify) each
// step is also told to the service manager: READY=1 at ready, STOPPING=1 when the drain
// begins, STATUS= lines in between, WATCHDOG=1 while the main loop and every worker answer.
// Main thread only.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "admin/admin_api.h"
#include "admin/lifecycle.h"
#include "admin/metrics.h"
#include "base/status.h"
#include "config/config.h"
#include "event/loop.h"
#include "net/socket.h"
#include "server/handover.h"
#include "server/sd_notify.h"

namespace sluice {
namespace bgp {
class Speaker;
struct SourceState;
struct AnnounceConfig;
}  // namespace bgp
namespace admin {
class AdminServer;
class DashboardEvents;
}  // namespace admin
namespace discovery {
class EtcdRegistration;
class Sources;
}  // namespace discovery
namespace event {
class SignalSet;
class Timer;
}  // namespace event
namespace proxy {
class AccessLog;
}
namespace upstream::health {
class HealthManager;
}
}  // namespace sluice

namespace sluice::tls {
class CertStore;
class CertWatcher;
class ClientContext;
class TicketKeys;
class ReplayGuard;
}  // namespace sluice::tls

namespace sluice::server {

class Worker;
struct ListenerHandoff;
struct ClusterHandoff;
struct WorkerReload;

class Server {
 public:
  // `path`: the file `config` was read from, read again on a reload ("" : no reloads).
  explicit Server(std::shared_ptr<const config::Config> config, std::string path = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Runs until drained. Returns the process exit code.
  int run();
  // This process is a binary upgrade's new one: the hand-over comes on `fd`.
  void set_upgrade_fd(int fd);

  const admin::Lifecycle& lifecycle() const { return lifecycle_; }

 private:
  // The steps of run(), in order. A step that fails stops startup with a logged reason.
  Status prepare();
  Status bind_listeners(std::vector<std::vector<ListenerHandoff>>& per_worker);
  // One listener's sockets, one per worker, appended to `per_worker`.
  // `dups` gets a copy of each socket, for a later hand-over (listener_fds_ at startup; a
  // reload's plan, committed once applied).
  Status bind_listener(const std::shared_ptr<const proxy::ListenerConfig>& l,
                       std::vector<std::vector<ListenerHandoff>>& per_worker,
                       std::map<std::string, HandedListener>& dups);
  // Reads the certificate and CA files and makes each worker's TLS contexts.
  Status prepare_tls(std::vector<std::vector<ListenerHandoff>>& per_worker);
  // A TLS listener's contexts, one per worker (its ticket keys made once per listener name,
  // so that sessions resume across reloads).
  Status make_listener_tls(const proxy::ListenerConfig& l);
  // Each worker's and the main thread's TLS context for a cluster (null: no `tls:`).
  Status make_cluster_tls(const upstream::ClusterConfig& c, size_t index);
  // Watches a TLS listener's files; a complete, valid new set replaces the old one for new
  // handshakes on every worker, an invalid one is logged and the last good set kept.
  void watch_certificates(std::shared_ptr<const proxy::ListenerConfig> listener);
  void reload_certificates(const proxy::ListenerConfig& listener);
  // Every cluster of the configuration, as workers get them.
  std::vector<ClusterHandoff> cluster_handoffs(size_t worker);
  ClusterHandoff cluster_handoff(size_t worker, size_t index);

  // Reloading (reload.cc). A request (SIGHUP, POST /reload) is applied at once, or, within
  // kReloadCoalesce of the last one, once that long after it, together with every request
  // that came meanwhile.
  void request_reload(bool dry_run, std::function<void(admin::ReloadOutcome)> done);
  void start_reload();
  // Reads and checks the file and works out the changes; `plan` is null when there is
  // nothing to apply (the outcome says why).
  struct ReloadPlan;
  admin::ReloadOutcome plan_reload(std::unique_ptr<ReloadPlan>* plan);
  // Applies the plan on the main thread (what can fail first); then, once the clusters new to
  // the workers have answered, posts each worker its part.
  Status apply_reload(ReloadPlan& plan);
  void post_reload_when_answered();
  void post_reload(ReloadPlan& plan);
  void finish_reload(admin::ReloadOutcome outcome);
  admin::ConfigView config_view() const;

  // Binary upgrade (upgrade.cc). The old process: starts the new one and hands it the
  // sockets; drains once it is ready.
  void request_upgrade(std::function<void(admin::UpgradeOutcome)> done);
  void poll_upgrade();
  void upgrade_finished(bool ok, std::string error);
  // The new process: reads the hand-over (before binding), takes the sockets of a listener,
  // and tells the old process "ready <pid>" or "failed <why>".
  Status receive_inherited();
  // The sockets handed over for `l` (none: bind them); its other sockets (parts) too.
  HandedListener take_inherited(const proxy::ListenerConfig& l);
  // One listening socket of a listener with the sockets that go with it (a stun listener's
  // alternate-address sockets, in StunListener's order, and its TCP socket).
  struct SocketSet {
    net::Fd fd;
    std::vector<net::Fd> alternates;
    net::Fd tcp;
  };
  // The sets handed over for `l`, with the other sockets it still has at the same addresses;
  // `address` becomes the one bound (its port), as does `alternate`'s.
  void adopt_inherited(const proxy::ListenerConfig& l, net::Address& address,
                       std::optional<net::Address>& alternate, std::vector<SocketSet>& sets);
  // A copy of every socket of `sets`, for a later hand-over.
  static HandedListener copy_for_handover(const std::string& name, const net::Address& address,
                                          const std::vector<SocketSet>& sets);
  // The old process: once every worker accepts by polling (listener.h says why), sends the
  // hand-over to the new process.
  void send_handover_when_polling(pid_t pid);
  void send_handover_now(pid_t pid);
  void tell_predecessor(const std::string& line);
  Status start_discovery();
  Status start_admin();
  void start_workers(std::vector<std::vector<ListenerHandoff>> per_worker);
  // Resolves the DNS clusters, then runs the first health round; ready follows.
  void wait_ready();
  // Ready once every worker has applied the snapshots published so far: a client that
  // connects the moment sluice says ready must find the endpoints in place.
  void on_first_answers();
  void on_signal(int sig);
  // The BGP speaker (bgp.cc): its sessions open at startup; it announces once ready.
  void start_bgp();
  // Binary upgrade: the old process lets go of its BGP sessions once the new one is ready;
  // the new one takes them over (bgp/handover.h).
  void release_bgp();
  void take_over_bgp();
  bgp::SourceState bgp_source(const bgp::AnnounceConfig& a) const;
  // Each peer's and prefix's counters, for /metrics and the exit summary.
  void add_bgp_stats(admin::MetricsInput& in) const;
  // sluice's own key in etcd (registration.cc): put once ready; on a stop signal, revoked
  // before the drain (true: the revoke is under way and calls on_signal(sig) again when done).
  void start_registration();
  bool withdraw_registration(int sig);
  void add_registration_stats(admin::MetricsInput& in) const;
  std::string registration_json() const;
  void drain(const std::string& why, bool for_upgrade = false);
  void on_drain_deadline();
  // While draining under systemd: "draining: N connections left" when N changed.
  void report_drain_progress();
  // WATCHDOG=1 at half of $WATCHDOG_USEC, held back while a worker does not answer.
  void start_watchdog();
  void on_watchdog_tick();
  // Joins the workers (once) and logs what they did.
  void stop();
  void log_summary();

  void gather(admin::GatherScope scope, std::function<void(admin::MetricsInput&)> render);
  uint64_t open_connections() const;

  std::shared_ptr<const config::Config> config_;
  std::string config_path_;
  admin::Lifecycle lifecycle_;
  event::Loop main_loop_;
  std::map<std::string, std::shared_ptr<proxy::AccessLog>> access_logs_;  // by path
  std::vector<std::pair<std::string, std::string>> listener_addresses_;   // name, bound address
  // Per listener name: open connections across workers (max_connections).
  std::map<std::string, std::shared_ptr<std::atomic<uint32_t>>> connection_counts_;
  // Those of listeners a reload removed or re-bound, while their connections drain.
  std::vector<std::shared_ptr<std::atomic<uint32_t>>> retired_counts_;
  std::vector<std::unique_ptr<Worker>> workers_;
  // Per TLS listener: the certificates in force and the ticket keys all workers share.
  std::map<std::string, std::shared_ptr<const tls::CertStore>> cert_stores_;
  std::map<std::string, std::unique_ptr<tls::CertWatcher>> cert_watchers_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> cert_reloads_;  // (done, failed)
  std::map<std::string, std::shared_ptr<tls::TicketKeys>> ticket_keys_;
  std::map<std::string, std::shared_ptr<tls::ReplayGuard>> replay_guards_;
  // Per TLS listener: each worker's server context.
  std::map<std::string, std::vector<std::shared_ptr<tls::ServerContext>>> listener_tls_;
  std::vector<std::unique_ptr<event::Timer>> ticket_rotations_;
  std::vector<std::unique_ptr<tls::CertWatcher>> ticket_watchers_;  // ticket_key_files
  // Per worker (the last: the main thread's, for health checks), per cluster index: its TLS
  // context, null without `tls:`.
  std::vector<std::vector<std::shared_ptr<tls::ClientContext>>> cluster_tls_;
  std::unique_ptr<upstream::health::HealthManager> health_;
  // Every cluster's endpoint source, and the resolver of the DNS clusters.
  std::unique_ptr<discovery::Sources> sources_;
  std::unique_ptr<admin::AdminServer> admin_;
  // The dashboard's event streams (with the dashboard only).
  std::unique_ptr<admin::DashboardEvents> dashboard_events_;
  std::unique_ptr<bgp::Speaker> bgp_;
  std::unique_ptr<discovery::EtcdRegistration> registration_;
  int64_t inherited_lease_ = 0;  // new process: the registration lease handed over
  std::unique_ptr<event::Timer> drain_deadline_;
  std::unique_ptr<event::SignalSet> signals_;
  SdNotifier systemd_;
  std::unique_ptr<event::Timer> drain_progress_;
  uint64_t reported_connections_ = UINT64_MAX;  // last "N connections left" sent
  std::unique_ptr<event::Timer> watchdog_;
  uint64_t watchdog_round_ = 0;
  size_t watchdog_answers_ = 0;  // workers that answered watchdog_round_
  bool watchdog_stall_logged_ = false;
  size_t drained_workers_ = 0;
  bool workers_joined_ = false;

  admin::ReloadStats reload_stats_;
  // Clusters a reload changes, between apply_reload() and post_reload(): their snapshots go
  // with the reload's message.
  std::set<size_t> held_publishes_;

  // Binary upgrade.
  std::string exe_path_;  // the executable as started, run again by an upgrade
  // Per listener name: a copy of every listening socket (and the other sockets of a stun
  // listener), to hand over.
  std::map<std::string, HandedListener> listener_fds_;
  net::Fd upgrade_fd_;                 // new process: towards the old one
  std::optional<Handover> inherited_;  // new process: what the old one handed over
  pid_t predecessor_ = 0;              // new process: the old one
  net::Fd upgrade_sock_;               // old process: towards the new one
  pid_t successor_ = 0;                // old process: the new one, while it starts
  MonoTime upgrade_deadline_{};
  std::unique_ptr<event::Timer> upgrade_poll_;
  std::vector<std::function<void(admin::UpgradeOutcome)>> upgrade_waiters_;
  std::unique_ptr<event::Timer> reload_timer_;
  std::unique_ptr<event::Timer> reload_gate_;
  std::unique_ptr<ReloadPlan> reload_plan_;  // applied on the main thread, not yet posted
  MonoTime last_reload_{};
  // Waiting for the next reload, and waiting for the one under way.
  std::vector<std::function<void(admin::ReloadOutcome)>> reload_waiters_;
  std::vector<std::function<void(admin::ReloadOutcome)>> reloading_waiters_;
  MonoTime reload_started_{};
};

}  // namespace sluice::server
