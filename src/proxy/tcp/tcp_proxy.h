// TcpProxy: the L4 proxy of one listener on one worker. Each accepted downstream connection
// becomes a TcpSession that connects upstream (failing over between endpoints), then pumps
// bytes both ways, propagating half-closes and resets, until both directions end, a timeout
// fires, or the worker drains. Loop thread only; one instance per listener per worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "event/loop.h"
#include "net/listener.h"
#include "net/tcp_info.h"
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "proxy/tcp/pump.h"
#include "upstream/cluster.h"

namespace sluice::proxy::tcp {

class TcpSession;

// Counters for one listener on one worker; merged across workers when exported.
struct TcpProxyStats {
  uint64_t accepted = 0;
  uint64_t refused_max_connections = 0;
  uint64_t active = 0;
  uint64_t completed = 0;
  uint64_t idle_timeouts = 0;
  uint64_t max_duration_reached = 0;
  uint64_t downstream_resets = 0;
  uint64_t upstream_resets = 0;
  uint64_t no_endpoint_reachable = 0;
  uint64_t drain_closed = 0;
  uint64_t bytes_to_upstream = 0;
  uint64_t bytes_to_downstream = 0;

  void add(const TcpProxyStats& o) {
    accepted += o.accepted;
    refused_max_connections += o.refused_max_connections;
    active += o.active;
    completed += o.completed;
    idle_timeouts += o.idle_timeouts;
    max_duration_reached += o.max_duration_reached;
    downstream_resets += o.downstream_resets;
    upstream_resets += o.upstream_resets;
    no_endpoint_reachable += o.no_endpoint_reachable;
    drain_closed += o.drain_closed;
    bytes_to_upstream += o.bytes_to_upstream;
    bytes_to_downstream += o.bytes_to_downstream;
  }
};

class TcpProxy final : public ProxyListener {
 public:
  // `active_connections` is shared by this listener's instances on every worker and
  // enforces max_connections across them.
  TcpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
           upstream::Cluster& cluster, TransferPool& transfer_pool,
           std::shared_ptr<std::atomic<uint32_t>> active_connections);
  ~TcpProxy();

  void on_accept(net::Fd fd, const net::Address& peer) override;

  // Sessions run on until they end or the drain deadline closes them.
  void drain() override {}
  // Closes every open session now: at the drain deadline, or at shutdown.
  void close_all(bool drain_deadline) override;
  size_t active() const override { return sessions_; }
  // Called whenever the last open session closes.
  void set_on_idle(std::function<void()> fn) override { on_idle_ = std::move(fn); }
  // Appends this worker's connections of this listener, both sides.
  void report_connections(std::vector<net::ConnectionReport>& out) const override;
  // Where finished connections are logged (null: nowhere).
  void set_access_log(std::shared_ptr<AccessLog> log) override { access_log_ = std::move(log); }
  void report_stats(ListenerStatsSink& sink) const override {
    sink.on_tcp_stats(config_->name, stats_);
  }
  const TcpProxyStats& stats() const { return stats_; }
  const ListenerConfig& config() const override { return *config_; }

 private:
  friend class TcpSession;
  void remove(TcpSession* session);

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  upstream::Cluster& cluster_;
  TransferPool& transfer_pool_;
  std::shared_ptr<std::atomic<uint32_t>> active_connections_;
  TcpSession* head_ = nullptr;  // intrusive list of open sessions
  size_t sessions_ = 0;
  std::function<void()> on_idle_;
  TcpProxyStats stats_;
  std::shared_ptr<AccessLog> access_log_;
  MonoTime last_refusal_log_{};
  MonoTime last_unhealthy_log_{};
  uint64_t refusals_since_log_ = 0;
};

}  // namespace sluice::proxy::tcp
