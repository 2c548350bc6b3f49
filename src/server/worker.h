// Worker: one data-plane thread. It owns an event Loop, its own listening socket for each
// listener (SO_REUSEPORT: the kernel spreads connections across workers), a Cluster (load
// balancer state) per cluster and a proxy (TCP or HTTP) per listener. Nothing is shared with other
// workers except the per-listener connection count behind max_connections.
// The public methods are called from the main thread; they post to the worker's loop.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/metrics.h"
#include "config/config.h"
#include "event/loop.h"
#include "net/listener.h"
#include "proxy/http/http_proxy.h"
#include "proxy/tcp/tcp_proxy.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {

// What the main thread prepares for each listener before workers start.
struct ListenerHandoff {
  std::shared_ptr<const proxy::ListenerConfig> config;
  net::Fd fd;  // this worker's bound, listening socket
  std::shared_ptr<std::atomic<uint32_t>> active_connections;
  std::shared_ptr<proxy::AccessLog> access_log;  // null: none
  std::shared_ptr<tls::ServerContext> tls;       // null: no `tls:`
};

class Worker {
 public:
  // `health` outlives the worker; its cluster order is the config's.
  // `cluster_tls`: this worker's TLS context per cluster, in config order (null: no `tls:`).
  Worker(size_t index, std::shared_ptr<const config::Config> config,
         std::vector<ListenerHandoff> listeners, upstream::health::HealthManager& health,
         std::vector<std::shared_ptr<tls::ClientContext>> cluster_tls);
  ~Worker();

  // Copies this worker's counters on its own thread and hands them to `done` there.
  // With `connections`, also lists every open connection with its TCP_INFO.
  void collect(bool connections, std::function<void(admin::WorkerReport)> done);
  // A new health snapshot for the config's `cluster`-th cluster.
  void set_health(size_t cluster, std::shared_ptr<const upstream::health::HealthSnapshot> s);
  // New handshakes on listener `name` use `context` from now on (new certificates).
  void set_listener_tls(const std::string& name, std::shared_ptr<tls::ServerContext> context);
  // Runs `fn` on the worker's thread once everything handed to it before (snapshots) is in
  // force.
  void after_pending(std::function<void()> fn) { loop_.post(std::move(fn)); }

  void start();
  // Stops accepting; `on_drained` runs on the worker thread once no connection is open.
  void drain(std::function<void()> on_drained);
  // Closes every open connection now (drain deadline).
  void close_all();
  void stop_and_join();

  // Valid after stop_and_join(): per listener name, this worker's counters.
  const std::map<std::string, proxy::tcp::TcpProxyStats>& final_stats() const {
    return final_stats_;
  }
  const std::map<std::string, proxy::http::HttpProxyStats>& final_http_stats() const {
    return final_http_stats_;
  }
  const std::map<std::string, tls::ListenerTlsStats>& final_tls_stats() const {
    return final_tls_stats_;
  }
  // By the config's cluster order.
  const std::vector<upstream::ClusterStats>& final_cluster_stats() const {
    return final_cluster_stats_;
  }

 private:
  void thread_main();
  void check_drained();

  size_t index_;
  std::shared_ptr<const config::Config> config_;
  std::vector<ListenerHandoff> handoffs_;
  upstream::health::HealthManager& health_;
  event::Loop loop_;
  std::thread thread_;

  // Worker-thread state.
  proxy::tcp::TransferPool transfer_pool_;
  std::map<std::string, std::unique_ptr<upstream::Cluster>> clusters_;
  std::vector<upstream::Cluster*> cluster_by_index_;  // the config's order
  // One per listener, TCP or HTTP.
  std::vector<std::unique_ptr<proxy::ProxyListener>> proxies_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::function<void()> on_drained_;
  std::map<std::string, proxy::tcp::TcpProxyStats> final_stats_;
  std::map<std::string, proxy::http::HttpProxyStats> final_http_stats_;
  std::map<std::string, tls::ListenerTlsStats> final_tls_stats_;
  std::vector<std::shared_ptr<tls::ClientContext>> cluster_tls_;
  std::vector<upstream::ClusterStats> final_cluster_stats_;
};

}  // namespace sluice::server
