// UdpSession: one client's traffic through a UDP listener on one worker: its own upstream
// socket connected to the endpoint the cluster's balancer picked (registered with the
// worker's Poller), its counters, and its end (idle timeout, max_responses, an upstream
// error, drain, shutdown), logged as one access-log line. Owned by its UdpProxy; loop
// thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "base/recycled.h"
#include "event/loop.h"
#include "event/timer.h"
#include "net/address.h"
#include "net/socket.h"
#include "proxy/access_log.h"
#include "proxy/listener_config.h"
#include "proxy/udp/datagram_socket.h"
#include "proxy/udp/socket_pool.h"
#include "proxy/udp/udp_offload.h"
#include "proxy/udp/udp_stats.h"
#include "upstream/cluster.h"

namespace sluice::proxy::udp {

// Why a session ended (the access log's close_reason; a counter each).
// kUpgrade: whatever ended it, the session was open when a binary upgrade handed the
// listener's socket to a new process (its client's next datagrams open a session there).
enum class CloseReason {
  kIdleTimeout,
  kMaxResponses,
  kUpstreamError,
  kDrainDeadline,
  kShutdown,
  kUpgrade
};
const char* to_string(CloseReason r);

class UdpSession;

// What a session needs from the listener that owns it.
class SessionCallbacks {
 public:
  // Queues a datagram to the client on the listener socket, from `from` when known (a
  // wildcard-bound listener: the address the client sent to); false when it was dropped.
  virtual bool send_downstream(const net::Address& to, std::span<const uint8_t> data,
                               const PacketInfo& from) = 0;
  // Where a session reads its endpoint's datagrams (shared by the listener's sessions:
  // what it holds is used before the next session reads).
  virtual DatagramBatch& upstream_batch() = 0;
  // Where sessions get their upstream sockets and give them back.
  virtual UpstreamSocketPool& socket_pool() = 0;
  // Where finished sessions are logged (null: nowhere).
  virtual AccessLog* access_log() = 0;
  // The session closed (already logged and counted): forget it.
  virtual void on_session_closed(UdpSession& session, CloseReason reason) = 0;

 protected:
  ~SessionCallbacks() = default;
};

// Sessions come and go at the rate of requests (DNS: one per query): a loop thread keeps
// the memory of up to 256 it ended for the next ones instead of handing it back to malloc,
// and the listener keeps their sockets for the next ones (socket_pool.h).
class UdpSession final : public event::IoHandler,
                         public event::DeferredDeletable,
                         public Recycled<UdpSession, 256> {
 public:
  UdpSession(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
             upstream::Cluster& cluster, size_t endpoint, std::unique_ptr<UpstreamSocket> upstream,
             const net::Address& client, AddressKey key, uint64_t generation, UdpProxyStats& stats,
             SessionCallbacks& owner);
  ~UdpSession() override;

  Status start();
  // A datagram from the client is on its way (it may have come from a new port under
  // session_key source_ip: answers go there from now on). `local`: where the client sent
  // it (answers leave from there). The listener then queues it and hands the session all
  // it queued from one read at once (send_upstream).
  void from_downstream(const net::Address& client, const PacketInfo& local);
  // Writes the client's datagrams of one read to the endpoint: one sendmmsg, runs of one
  // size joined (GSO) when allowed.
  void send_upstream(std::span<const std::span<const uint8_t>> datagrams);
  // Datagrams queued by the listener and not yet handed over by send_upstream.
  uint32_t& queued() { return queued_; }
  // udp.proxy_protocol: each datagram to the upstream starts with this header (the session
  // remakes it when the client's port changes).
  void set_listener_address(const net::Address& listener) { listener_ = listener; }
  void on_io(uint32_t events) override;
  void close(CloseReason reason);
  // A binary upgrade handed the listener's socket over: the session carries answers already
  // on their way until it ends, then counts as ended by the upgrade.
  void mark_upgraded() { upgraded_ = true; }

  // The listener counted it in its per-source table (max_sessions_per_source).
  void set_counted_per_source() { counted_per_source_ = true; }
  bool counted_per_source() const { return counted_per_source_; }
  const AddressKey& key() const { return key_; }
  int upstream_fd() const { return upstream_ ? upstream_->fd() : -1; }
  // Its socket has nothing set but its peer (no source bind, no UDP_GRO): it may serve
  // another session after this one.
  void set_plain_socket() { plain_socket_ = true; }
  const net::Address& client() const { return client_; }
  bool closed() const { return closed_; }

  struct Counts {
    uint64_t datagrams_to_upstream = 0, datagrams_to_downstream = 0;
    uint64_t bytes_to_upstream = 0, bytes_to_downstream = 0;
  };
  const Counts& counts() const { return counts_; }

 private:
  void read_upstream(bool until_eagain);
  void on_timer();
  void write_access_log(CloseReason reason);

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  upstream::Cluster& cluster_;
  size_t endpoint_;
  std::unique_ptr<UpstreamSocket> upstream_;
  net::Address client_;
  PacketInfo local_;
  std::optional<net::Address> listener_;
  std::vector<uint8_t> proxy_header_;
  AddressKey key_;
  uint64_t generation_;
  UdpProxyStats& stats_;
  SessionCallbacks& owner_;
  event::Timer idle_timer_;
  MonoTime started_;
  MonoTime last_activity_;
  std::chrono::system_clock::time_point wall_start_;
  Counts counts_;
  uint32_t responses_ = 0;
  uint32_t queued_ = 0;
  GsoState gso_;
  bool plain_socket_ = false;
  bool upstream_empty_ = true;  // the last read of the upstream socket found it empty
  bool closed_ = false;
  bool upgraded_ = false;
  bool counted_per_source_ = false;
};

}  // namespace sluice::proxy::udp
