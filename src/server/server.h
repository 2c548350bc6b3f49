// Server: the main thread, as a lifecycle (admin::Lifecycle: starting → ready → draining →
// stopped). run() goes through named steps: prepare (socket options, access logs), bind the
// listeners (one SO_REUSEPORT socket per worker, so a bind error stops startup with a clear
// message), start discovery, the admin API and the workers, then wait for the first DNS and
// health answers before ready. SIGTERM/SIGINT drain (stop accepting, let connections finish
// for drain_timeout, then close them); a second one closes everything at once. SIGHUP (the
// reload signal) is logged and otherwise ignored until reloading exists. Every step's
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
#include <string>
#include <utility>
#include <vector>

#include "admin/lifecycle.h"
#include "admin/metrics.h"
#include "base/status.h"
#include "config/config.h"
#include "event/loop.h"
#include "server/sd_notify.h"

namespace sluice {
namespace admin {
class AdminServer;
}
namespace discovery {
class DnsDiscovery;
}
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

class Server {
 public:
  explicit Server(std::shared_ptr<const config::Config> config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Runs until drained. Returns the process exit code.
  int run();

  const admin::Lifecycle& lifecycle() const { return lifecycle_; }

 private:
  // The steps of run(), in order. A step that fails stops startup with a logged reason.
  Status prepare();
  Status bind_listeners(std::vector<std::vector<ListenerHandoff>>& per_worker);
  // Reads the certificate and CA files and makes each worker's TLS contexts.
  Status prepare_tls(std::vector<std::vector<ListenerHandoff>>& per_worker);
  // Watches a TLS listener's files; a complete, valid new set replaces the old one for new
  // handshakes on every worker, an invalid one is logged and the last good set kept.
  void watch_certificates(const proxy::ListenerConfig& listener);
  void reload_certificates(const proxy::ListenerConfig& listener);
  Status start_discovery();
  Status start_admin();
  void start_workers(std::vector<std::vector<ListenerHandoff>> per_worker);
  // Resolves the DNS clusters, then runs the first health round; ready follows.
  void wait_ready();
  // Ready once every worker has applied the snapshots published so far: a client that
  // connects the moment sluice says ready must find the endpoints in place.
  void on_first_answers();
  void on_signal(int sig);
  void drain(int sig);
  void on_drain_deadline();
  // While draining under systemd: "draining: N connections left" when N changed.
  void report_drain_progress();
  // WATCHDOG=1 at half of $WATCHDOG_USEC, held back while a worker does not answer.
  void start_watchdog();
  void on_watchdog_tick();
  // Joins the workers (once) and logs what they did.
  void stop();
  void log_summary();

  void gather(bool connections, std::function<void(admin::MetricsInput&)> render);
  uint64_t open_connections() const;

  std::shared_ptr<const config::Config> config_;
  admin::Lifecycle lifecycle_;
  event::Loop main_loop_;
  std::map<std::string, std::shared_ptr<proxy::AccessLog>> access_logs_;   // by path
  std::vector<std::pair<std::string, std::string>> listener_addresses_;    // name, bound address
  std::vector<std::shared_ptr<std::atomic<uint32_t>>> connection_counts_;  // per listener
  std::vector<std::unique_ptr<Worker>> workers_;
  // Per TLS listener: the certificates in force and the ticket keys all workers share.
  std::map<std::string, std::shared_ptr<const tls::CertStore>> cert_stores_;
  std::map<std::string, std::unique_ptr<tls::CertWatcher>> cert_watchers_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> cert_reloads_;  // (done, failed)
  std::map<std::string, std::shared_ptr<tls::TicketKeys>> ticket_keys_;
  std::map<std::string, std::shared_ptr<tls::ReplayGuard>> replay_guards_;
  std::vector<std::unique_ptr<event::Timer>> ticket_rotations_;
  std::vector<std::unique_ptr<tls::CertWatcher>> ticket_watchers_;  // ticket_key_files
  // Per worker, per cluster (config order): its TLS context, null without `tls:`.
  std::vector<std::vector<std::shared_ptr<tls::ClientContext>>> cluster_tls_;
  std::unique_ptr<upstream::health::HealthManager> health_;
  std::unique_ptr<dns::Resolver> resolver_;
  std::unique_ptr<discovery::DnsDiscovery> dns_discovery_;
  std::unique_ptr<admin::AdminServer> admin_;
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
};

}  // namespace sluice::server
