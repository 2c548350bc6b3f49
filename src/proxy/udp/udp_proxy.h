// UdpProxy: a `protocol: udp` listener on one worker. It reads its own SO_REUSEPORT socket
// with recvmmsg, keeps a session per client (address and port, or address alone) each with
// an upstream socket of its own (udp_session.h), and writes the upstreams' answers back in
// sendmmsg batches flushed at the end of each loop iteration. Limits: max_sessions across
// workers, max_sessions_per_source per worker, max_datagram_size; a datagram over a limit is
// dropped and counted, so a flood of spoofed sources costs at most max_sessions sessions.
// Loop thread only; one instance per listener per worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "event/loop.h"
#include "net/socket.h"
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "proxy/udp/datagram_socket.h"
#include "proxy/udp/socket_pool.h"
#include "proxy/udp/udp_session.h"
#include "proxy/udp/udp_stats.h"
#include "upstream/cluster.h"

namespace sluice::proxy::udp {

class UdpProxy final : public ProxyListener,
                       public event::IoHandler,
                       public event::EndOfIteration,
                       private SessionCallbacks {
 public:
  // `socket`: this worker's bound UDP socket. `active_sessions` is shared by this
  // listener's instances on every worker and enforces max_sessions across them.
  UdpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
           upstream::Cluster& cluster, net::Fd socket,
           std::shared_ptr<std::atomic<uint32_t>> active_sessions);
  ~UdpProxy() override;

  // Starts reading the socket.
  Status start();
  // A reload changed the listener (same socket): sessions opened from now on use `config`
  // and `cluster`; open ones keep theirs.
  void reconfigure(std::shared_ptr<const ListenerConfig> config, upstream::Cluster& cluster);

  // Datagram listeners accept nothing.
  void on_accept(net::Fd, const net::Address&) override {}
  void on_io(uint32_t events) override;
  void on_iteration_end() override { flush(); }

  // Stops reading the socket (a binary upgrade's new process reads its copy); open sessions
  // still send their answers on it until they end.
  void drain() override;
  // The sessions open now end in this process (reason "upgrade"); their clients' next
  // datagrams open sessions in the new process.
  void drain_for_upgrade() override;
  void close_all(bool drain_deadline) override;
  size_t active() const override { return sessions_.size(); }
  void set_on_idle(std::function<void()> fn) override { on_idle_ = std::move(fn); }
  void set_access_log(std::shared_ptr<AccessLog> log) override { access_log_ = std::move(log); }
  void report_connections(std::vector<net::ConnectionReport>&) const override {}
  void report_stats(ListenerStatsSink& sink) const override {
    sink.on_udp_stats(config_->name, stats_);
  }
  void set_tls(std::shared_ptr<tls::ServerContext>) override {}
  const ListenerConfig& config() const override { return *config_; }
  const UdpProxyStats& stats() const { return stats_; }

 private:
  // SessionCallbacks
  bool send_downstream(const net::Address& to, std::span<const uint8_t> data,
                       const PacketInfo& from) override;
  DatagramBatch& upstream_batch() override { return from_upstream_; }
  UpstreamSocketPool& socket_pool() override { return pool_; }
  AccessLog* access_log() override { return access_log_.get(); }
  void on_session_closed(UdpSession& session, CloseReason reason) override;

  void on_datagram(const net::Address& source, std::span<const uint8_t> data,
                   const PacketInfo& local);
  UdpSession* open_session(const net::Address& source, const AddressKey& key);
  void flush();
  // Hands each session the datagrams queued for it from the last read (one call each).
  void flush_upstream();
  void stop_reading();
  // The listener socket's UDP_GRO and the batches, as config_ asks.
  void apply_offloads();

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  upstream::Cluster* cluster_;
  net::Fd socket_;
  net::Address local_;  // the socket's address (the PROXY header's destination)
  std::shared_ptr<std::atomic<uint32_t>> active_sessions_;
  bool reading_ = false;
  bool draining_ = false;
  DatagramBatch in_;
  DatagramBatch out_;
  DatagramBatch from_upstream_;
  GsoState gso_;  // the listener socket's
  // The clients' datagrams of the last read, in order, each for its session; they point
  // into in_ and are sent before it is read again.
  struct Queued {
    UdpSession* session;
    std::span<const uint8_t> data;
  };
  std::vector<Queued> to_upstream_;
  std::vector<std::span<const uint8_t>> run_;
  // Declared before the sessions: they give their sockets back to it.
  UpstreamSocketPool pool_;
  std::unordered_map<AddressKey, std::unique_ptr<UdpSession>, AddressKeyHash> sessions_;
  std::unordered_map<AddressKey, uint32_t, AddressKeyHash> per_source_;
  std::function<void()> on_idle_;
  std::shared_ptr<AccessLog> access_log_;
  UdpProxyStats stats_;
  MonoTime last_refusal_log_{};
};

}  // namespace sluice::proxy::udp
