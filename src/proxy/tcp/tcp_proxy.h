// TcpProxy: the L4 proxy of one listener on one worker. Each accepted downstream connection
// becomes a TcpSession that connects upstream (failing over between endpoints), then pumps
// bytes both ways, propagating half-closes and resets, until both directions end, a timeout
// fires, or the worker drains. With sni_routes, a session first waits for the client's TLS
// ClientHello and picks the cluster by its server name. Loop thread only; one instance per
// listener per worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "event/loop.h"
#include "net/listener.h"
#include "net/tcp_info.h"
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "proxy/tcp/pump.h"
#include "proxy/tcp/sni_router.h"
#include "proxy/tcp/tcp_stats.h"
#include "tls/context.h"
#include "tls/stats.h"
#include "upstream/cluster.h"

namespace sluice::proxy::tcp {

class TcpSession;

// Why a connection was closed before its ClientHello routed it.
enum class SniRefusal { kNotTls, kMalformed, kTimeout };

class TcpProxy final : public ProxyListener {
 public:
  // `active_connections` is shared by this listener's instances on every worker and
  // enforces max_connections across them. `sni_clusters`: the cluster of each of the
  // config's sni_routes, in their order (`cluster` is the default).
  TcpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
           upstream::Cluster& cluster, std::vector<upstream::Cluster*> sni_clusters,
           TransferPool& transfer_pool, std::shared_ptr<std::atomic<uint32_t>> active_connections,
           std::shared_ptr<tls::ServerContext> tls = nullptr);
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
    if (tls_) sink.on_tls_stats(config_->name, tls_stats_);
  }
  const TcpProxyStats& stats() const { return stats_; }
  void set_tls(std::shared_ptr<tls::ServerContext> context) override { tls_ = std::move(context); }
  const ListenerConfig& config() const override { return *config_; }

 private:
  friend class TcpSession;
  void remove(TcpSession* session);
  // Whether to log a connection refused for its ClientHello: kSniLogsPerSecond lines a second
  // per kind at most; `suppressed` is set to how many were not logged before this one.
  bool should_log_sni_refusal(SniRefusal kind, uint64_t* suppressed);

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  upstream::Cluster& cluster_;
  std::vector<upstream::Cluster*> sni_clusters_;
  SniRouter sni_router_;
  // Where sessions peek at ClientHellos: one at a time, so one buffer per listener, made
  // with the first connection that needs it.
  std::vector<uint8_t> hello_scratch_;
  static constexpr uint32_t kSniLogsPerSecond = 10;
  struct LogWindow {
    MonoTime start{};
    uint32_t logged = 0;
    uint64_t suppressed = 0;
  };
  LogWindow sni_log_windows_[3];
  TransferPool& transfer_pool_;
  std::shared_ptr<tls::ServerContext> tls_;
  tls::ListenerTlsStats tls_stats_;
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
