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
#include "event/timer.h"
#include "net/listener.h"
#include "proxy/http/http_proxy.h"
#include "proxy/stun/stun_listener.h"
#include "proxy/tcp/tcp_proxy.h"
#include "proxy/udp/udp_proxy.h"
#include "upstream/health/health.h"

namespace sluice::server {

// What the main thread prepares for each listener before workers start.
struct ListenerHandoff {
  std::shared_ptr<const proxy::ListenerConfig> config;
  net::Fd fd;  // this worker's bound, listening socket
  std::shared_ptr<std::atomic<uint32_t>> active_connections;
  std::shared_ptr<proxy::AccessLog> access_log;  // null: none
  std::shared_ptr<tls::ServerContext> tls;       // null: no `tls:`
  // More listening sockets of the same listener (a binary upgrade from a process with more
  // workers hands over more sockets than this one has workers: each is served). TCP only: a
  // datagram listener's extra socket comes as a ListenerHandoff of its own, served by a proxy
  // of its own.
  std::vector<net::Fd> extra_fds;
  // A stun listener with an alternate address (RFC 5780): its three other sockets, in the
  // order proxy::stun::StunListener takes them.
  std::vector<net::Fd> alternate_fds;
  // A stun listener with `stun.tcp`: its listening TCP socket.
  net::Fd stun_tcp_fd;
};

// A cluster as the main thread hands it to a worker: by its index in the HealthManager
// (stable for the process's life; a reload appends new clusters and never reuses an index).
struct ClusterHandoff {
  size_t index = 0;
  std::shared_ptr<const upstream::ClusterConfig> config;  // null: the cluster was removed
  std::shared_ptr<tls::ClientContext> tls;                // this worker's; null: no `tls:`
  std::shared_ptr<const upstream::health::HealthSnapshot> health;
  upstream::health::ClusterShared* shared = nullptr;
  upstream::health::OutcomeSink* sink = nullptr;  // null: no outlier detection
};

// What a reload changes on one worker, applied at once between two events.
struct WorkerReload {
  std::shared_ptr<const config::Config> config;
  uint64_t generation = 0;
  std::vector<ClusterHandoff> clusters;  // new, changed and removed ones
  std::vector<ListenerHandoff> added;    // with this worker's new listening socket
  std::vector<ListenerHandoff> changed;  // same socket (no fd), new settings
  std::vector<std::string> removed;      // listener names
};

class Worker {
 public:
  // `clusters`: every cluster, in index order.
  Worker(size_t index, std::shared_ptr<const config::Config> config,
         std::vector<ListenerHandoff> listeners, std::vector<ClusterHandoff> clusters);
  ~Worker();

  // Applies `reload` on the worker's thread, then runs `applied` there.
  void reload(WorkerReload reload, std::function<void()> applied);

  // Copies this worker's counters on its own thread and hands them to `done` there.
  // With `connections`, also lists every open connection with its TCP_INFO.
  void collect(admin::GatherScope scope, std::function<void(admin::WorkerReport)> done);
  // A new health snapshot for the config's `cluster`-th cluster.
  void set_health(size_t cluster, std::shared_ptr<const upstream::health::HealthSnapshot> s);
  // New handshakes on listener `name` use `context` from now on (new certificates).
  void set_listener_tls(const std::string& name, std::shared_ptr<tls::ServerContext> context);
  // Runs `fn` on the worker's thread once everything handed to it before (snapshots) is in
  // force.
  void after_pending(std::function<void()> fn) { loop_.post(std::move(fn)); }

  void start();
  // Before start(): listening sockets are served but not accepted from until
  // start_accepting() (a binary upgrade's new process, before it is ready).
  void accept_later() { accept_later_ = true; }
  void start_accepting();
  // Any thread: the listeners accept on readiness from now on (net::Listener); then `done`
  // runs on the worker's thread.
  void accept_by_polling(std::function<void()> done);
  // How long accept_by_polling() waits, at most, for all the worker's accepts to end.
  static constexpr Duration kAcceptByPollingBudget = std::chrono::seconds(1);
  // Stops accepting; `on_drained` runs on the worker thread once no connection is open.
  // `keep_idle`: a drain for a binary upgrade (ProxyListener::drain_for_upgrade).
  void drain(std::function<void()> on_drained, bool keep_idle = false);
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
  const std::map<std::string, proxy::udp::UdpProxyStats>& final_udp_stats() const {
    return final_udp_stats_;
  }
  const std::map<std::string, proxy::stun::StunStats>& final_stun_stats() const {
    return final_stun_stats_;
  }
  // By cluster index.
  const std::vector<upstream::ClusterStats>& final_cluster_stats() const {
    return final_cluster_stats_;
  }

 private:
  // A listener on this worker: its socket and the proxy accepted connections go to. A
  // datagram listener (udp, stun) has no net::Listener: its proxy reads the socket itself, and
  // a worker given several of its sockets (a binary upgrade from a process with more workers)
  // serves it as several Served of the same name.
  struct Served {
    ListenerHandoff handoff;  // fd moved into the listener
    std::unique_ptr<proxy::ProxyListener> proxy;
    std::unique_ptr<net::Listener> listener;
    std::vector<std::unique_ptr<net::Listener>> extra;  // ListenerHandoff::extra_fds
  };

  void thread_main();
  void check_drained();
  void apply(WorkerReload& reload);
  void set_cluster(ClusterHandoff& h);
  std::unique_ptr<proxy::ProxyListener> make_proxy(const ListenerHandoff& h);
  void serve(ListenerHandoff h);
  void serve_datagram(ListenerHandoff h);
  void start_datagram(Served& s);
  void reconfigure_datagram(Served& s, const ListenerHandoff& h);
  // A reload changed the settings of the listener `s` serves (same sockets).
  void change(Served& s, const ListenerHandoff& h);
  // The proxy stops taking connections; it is deleted once its last one closes, and its
  // connections still open at `close_at` are closed then.
  void retire(std::unique_ptr<proxy::ProxyListener> proxy, MonoTime close_at = MonoTime::max());
  void reap_retired();
  void close_overdue();
  // A listening socket that stops: deleted on a later iteration (the current one may still
  // hold an event for it).
  void discard(std::unique_ptr<net::Listener> listener);
  proxy::http::ClusterMap cluster_map() const;
  void warm_up(const proxy::ListenerConfig& listener);

  size_t index_;
  std::shared_ptr<const config::Config> config_;
  std::vector<ListenerHandoff> handoffs_;
  std::vector<ClusterHandoff> initial_clusters_;
  event::Loop loop_;
  std::thread thread_;

  // Worker-thread state.
  proxy::tcp::TransferPool transfer_pool_;
  std::vector<std::unique_ptr<upstream::Cluster>> clusters_;        // by index; never shrinks
  std::vector<bool> removed_;                                       // by index
  std::map<std::string, upstream::Cluster*, std::less<>> by_name_;  // removed ones too
  std::vector<Served> served_;
  // Proxies of removed or replaced listeners, with connections still open.
  struct Retired {
    std::unique_ptr<proxy::ProxyListener> proxy;
    MonoTime close_at;
  };
  std::vector<Retired> retired_;
  // Counters of retired proxies that are gone, so that listener counters never go back.
  std::map<std::string, proxy::tcp::TcpProxyStats> gone_tcp_;
  std::map<std::string, proxy::http::HttpProxyStats> gone_http_;
  std::map<std::string, tls::ListenerTlsStats> gone_tls_;
  std::map<std::string, proxy::udp::UdpProxyStats> gone_udp_;
  std::map<std::string, proxy::stun::StunStats> gone_stun_;
  std::function<void()> on_drained_;
  bool accept_later_ = false;
  event::Timer retire_timer_;  // the earliest Retired::close_at
  std::map<std::string, proxy::tcp::TcpProxyStats> final_stats_;
  std::map<std::string, proxy::http::HttpProxyStats> final_http_stats_;
  std::map<std::string, tls::ListenerTlsStats> final_tls_stats_;
  std::map<std::string, proxy::udp::UdpProxyStats> final_udp_stats_;
  std::map<std::string, proxy::stun::StunStats> final_stun_stats_;
  std::vector<upstream::ClusterStats> final_cluster_stats_;
};

}  // namespace sluice::server
