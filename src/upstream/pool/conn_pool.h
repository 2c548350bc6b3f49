// ConnPool: the upstream HTTP/1 connections of one endpoint on one worker. It lends a ready
// connection (checking first that the upstream has not closed it while it sat idle), opens
// a new one within max_connections, or queues the request with a timeout. Idle connections
// are closed the moment the upstream closes them, after idle_timeout, before a learned
// Keep-Alive timeout runs out, and at max_lifetime.
// Every connection state change goes through PooledConnection::transition(), which keeps a
// count per state, logs the change at debug and (debug builds) asserts it is legal. Time is
// the loop's, so a ManualClock drives every timeout. Loop thread only.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/metric.h"
#include "base/units.h"
#include "base/validation.h"
#include "event/loop.h"
#include "net/address.h"
#include "net/connect_race.h"
#include "net/connection.h"
#include "net/socket_options.h"
#include "tls/context.h"

namespace sluice::upstream::pool {

struct PoolConfig {
  uint32_t max_connections = 1024;  // per endpoint on each worker
  uint32_t max_pending = 1024;      // requests waiting for a connection
  Duration pending_timeout = std::chrono::seconds(5);
  Duration idle_timeout = std::chrono::seconds(60);
  Duration max_lifetime{0};                  // 0 = none
  uint32_t max_requests_per_connection = 0;  // 0 = none
  uint32_t min_idle = 0;                     // connections kept open and ready per worker

  ConfigIssues validate() const;

  bool operator==(const PoolConfig&) const = default;
};

enum class PoolFailure {
  kConnectFailure,
  kConnectTimeout,
  kOverflow,
  kPendingTimeout,
  // The connect failed with EADDRNOTAVAIL: no ephemeral port left towards the endpoint
  // (TIME_WAIT holds them). The detail says how many and what to change.
  kPortsExhausted,
};
// What becomes of connections to an address the endpoint no longer has.
enum class Departed { kDrain, kClose };
const char* to_string(PoolFailure f);

class ConnPool;

// One upstream connection. While lent out, its connection events go to the borrower's
// callbacks.
class PooledConnection final : public net::ConnectionCallbacks,
                               public net::ConnectRaceCallbacks,
                               public event::DeferredDeletable {
 public:
  enum class State { kConnecting, kIdle, kBusy, kDraining, kClosed };
  static constexpr int kStates = 5;
  static const char* to_string(State s);

  PooledConnection(ConnPool& pool, uint64_t id);
  ~PooledConnection() override;

  net::Connection& connection() { return conn_; }
  State state() const { return state_; }
  uint64_t id() const { return id_; }
  uint32_t requests() const { return requests_; }
  // Connection events go to `borrower` until the connection is released.
  void set_borrower(net::ConnectionCallbacks* borrower) { borrower_ = borrower; }
  // When max_lifetime (or the upstream's keep-alive timeout) retires it.
  MonoTime expires() const { return expires_; }
  // Whether this connection served a request before the current one.
  bool reused() const { return requests_ > 1; }
  // Opened ahead of demand (min_idle) rather than for a waiting request.
  bool warm() const { return warm_; }
  // The address it is connected (or connecting) to: the endpoint's, or the one that won a
  // race of its addresses.
  const net::Address& peer() const { return peer_; }
  // How long the TCP connect took (zero until connected).
  Duration connect_time() const {
    return connected_at_ == MonoTime{} ? Duration(0) : connected_at_ - created_;
  }
  // How long the TLS handshake took after the connect (zero without TLS).
  Duration tls_time() const {
    return secured_at_ == MonoTime{} ? Duration(0) : secured_at_ - connected_at_;
  }
  // The upstream said Keep-Alive: timeout=N: retire the connection before it.
  void learn_keepalive_timeout(Duration d);
  // The last TCP_INFO figures the access log read on this connection (`read_at` zero: none),
  // kept so that a request need not read them again when they cannot tell anything new.
  struct TcpInfoCache {
    MonoTime read_at{};
    uint32_t rtt_us = 0;
    uint32_t total_retrans = 0;
  };
  TcpInfoCache& tcp_info_cache() { return tcp_info_cache_; }

  void on_connected() override;
  void on_secured() override;
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;
  // ConnectRaceCallbacks (an endpoint with fallback addresses)
  void on_race_won(net::Fd fd, const net::Address& address) override;
  void on_race_lost(int err, const std::string& detail) override;

 private:
  friend class ConnPool;
  friend class Waiter;
  void transition(State to);
  // `err`: the errno of the failure (0: none, such as a timeout).
  void connect_failed(PoolFailure reason, const std::string& detail, int err = 0);
  // Connected (and secured, with TLS): lend it to its waiter or keep it idle.
  void ready();
  // Puts the pool's TLS session on the socket about to be adopted.
  bool start_tls(int fd);

  ConnPool& pool_;
  uint64_t id_;
  net::Connection conn_;
  std::unique_ptr<net::ConnectRace> race_;  // while racing the endpoint's addresses
  net::Address peer_;
  // Set while connecting when addresses departed: once connected, the peer must be current.
  std::optional<Departed> recheck_;
  bool drain_after_use_ = false;  // connected to a departed address: one request, then close
  State state_ = State::kConnecting;
  event::Timer timer_;  // connect timeout, then idle expiry
  MonoTime created_{};
  MonoTime connected_at_{};
  MonoTime secured_at_{};
  MonoTime expires_ = MonoTime::max();  // max_lifetime or the upstream's keep-alive timeout
  uint32_t requests_ = 0;
  TcpInfoCache tcp_info_cache_;
  bool warm_ = false;
  net::ConnectionCallbacks* borrower_ = nullptr;
  // The pool's idle list (intrusive: going idle and back allocates nothing).
  PooledConnection* idle_prev_ = nullptr;
  PooledConnection* idle_next_ = nullptr;
  bool in_idle_ = false;
  class Waiter* waiter_ = nullptr;  // the request it was opened for, while connecting
};

class PoolCallbacks {
 public:
  virtual void on_pool_ready(PooledConnection& conn) = 0;
  virtual void on_pool_failure(PoolFailure reason, const std::string& detail) = 0;

 protected:
  ~PoolCallbacks() = default;
};

// A request waiting for a connection; cancel() it if the request goes away first.
class Waiter {
 public:
  Waiter(ConnPool& pool, PoolCallbacks& callbacks);
  ~Waiter();
  void cancel();

 private:
  friend class ConnPool;
  friend class PooledConnection;
  ConnPool& pool_;
  PoolCallbacks* callbacks_;
  event::Timer timer_;
  bool queued_ = false;
  PooledConnection* connecting_ = nullptr;
  std::list<Waiter*>::iterator pos_;
};

// The states a pool's connections are counted by (PoolStats::state_count); closed ones are
// not connections of the pool any more.
inline constexpr const char* kOpenStates[] = {"connecting", "idle", "busy", "draining"};
inline constexpr metric::Dimension kOpenStateDimension{"state", kOpenStates};

// Counters for one endpoint's pool on one worker, declared once (base/metric.h says how to add
// one); merged across workers when exported.
// clang-format off
#define SLUICE_POOL_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                             \
  GAUGES(state_count, ::sluice::upstream::pool::PooledConnection::kStates,                         \
         "sluice_endpoint_connections", ::sluice::upstream::pool::kOpenStateDimension,             \
         "connections", "Pooled upstream connections by state.")                                   \
  COUNTER(connects, "sluice_endpoint_connects_total", "", "connects",                              \
          "Pool connections opened.")                                                              \
  COUNTER(connect_failures, "sluice_endpoint_connect_failures_total", "", "connect failures",      \
          "Pool connects that failed.")                                                            \
  COUNTER(connect_timeouts, "sluice_endpoint_connect_timeouts_total", "", "connect timeouts",      \
          "Pool connects that timed out (counted in the connect failures too).")                   \
  COUNTER(connect_refused, "sluice_endpoint_connect_refused_total", "", "connects refused",        \
          "Pool connects the endpoint refused (counted in the connect failures too).")             \
  COUNTER(reuses, "sluice_endpoint_connection_reuses_total", "", "reuses",                         \
          "Requests sent on a reused pooled connection.")                                          \
  COUNTER(closed_by_upstream_while_idle, "sluice_endpoint_idle_closed_by_upstream_total", "",      \
          "closed by the upstream while idle",                                                     \
          "Idle pooled connections the upstream closed.")                                          \
  COUNTER(stale_at_checkout, "sluice_endpoint_stale_at_checkout_total", "",                        \
          "stale at checkout",                                                                     \
          "Idle pooled connections found closed or expired when a request came for them.")         \
  COUNTER(overflows, "sluice_endpoint_pool_overflows_total", "", "overflows",                      \
          "Requests refused because the pool's queue was full.")                                   \
  COUNTER(pending_timeouts, "sluice_endpoint_pool_timeouts_total", "", "pending timeouts",         \
          "Requests that waited longer than pending_timeout for a connection.")                  \
  COUNTER(ports_exhausted, "sluice_endpoint_ports_exhausted_total", "", "ports exhausted",         \
          "Pool connects that found no free local port towards the endpoint (EADDRNOTAVAIL).")     \
  COUNTER(tls_handshakes, "sluice_endpoint_tls_handshakes_total", "", "TLS handshakes",            \
          "TLS handshakes completed with the endpoint.")                                           \
  COUNTER(tls_resumed, "sluice_endpoint_tls_resumed_total", "", "TLS sessions resumed",            \
          "TLS handshakes with the endpoint that resumed an earlier session.")                     \
  COUNTER(tls_failures, "sluice_endpoint_tls_failures_total", "", "TLS handshake failures",        \
          "TLS handshakes with the endpoint that failed (verification included).")                 \
  COUNTER(http2_streams, "sluice_endpoint_http2_streams_total", "", "HTTP/2 streams",              \
          "HTTP/2 streams opened to the endpoint (one per request sent over HTTP/2).")             \
  COUNTER(http2_goaways, "sluice_endpoint_http2_goaways_received_total", "",                      \
          "HTTP/2 GOAWAYs received", "HTTP/2 connections the endpoint sent a GOAWAY on.")
// clang-format on

struct PoolStats {
  SLUICE_METRIC_MEMBERS(SLUICE_POOL_STATS)
  SLUICE_METRIC_MERGE(PoolStats, SLUICE_POOL_STATS)
  void add(const PoolStats& o) { add_declared(o); }
};

// Where a pool also counts the connect errors of connections opened for a request: the
// cluster's counters, so that they cover HTTP as well as TCP.
struct ConnectErrorCounters {
  uint64_t* timeouts = nullptr;
  uint64_t* refused = nullptr;
};

class ConnPool {
 public:
  ConnPool(event::Loop& loop, net::Address endpoint, const PoolConfig& config,
           const net::SocketOptions& socket_options, std::optional<net::Address> source,
           Duration connect_timeout);
  ~ConnPool();

  // Asks for a connection: `waiter.callbacks` hears on_pool_ready or on_pool_failure, maybe
  // before this returns. `fresh` skips idle connections (a retry after a stale one failed).
  // `resendable`: the request can go again on a new connection should the one lent turn out
  // closed (a stale-connection resend), so an idle connection is lent without a look at its
  // socket; otherwise the socket is looked at (a system call) unless a read emptied it in
  // this loop iteration.
  void acquire(Waiter& waiter, bool fresh, bool resendable = false);
  // The borrower is done. `reusable`: the exchange ended cleanly and both sides keep alive.
  void release(PooledConnection& conn, bool reusable);
  // Closes idle connections and marks busy ones to close after their request.
  void drain();
  // Closes every connection now; the borrowers of busy ones hear an error (ECONNABORTED).
  void close_all();
  // New settings (a reload): limits and timeouts apply from now on, to connections opened
  // and requests queued from now on; connections already open keep their lifetime.
  void reconfigure(const PoolConfig& config, const net::SocketOptions& socket_options,
                   std::optional<net::Address> source, Duration connect_timeout);
  // Addresses raced after the endpoint's own when connecting (RFC 8305), and how long an
  // attempt may go unanswered before the next one starts.
  void set_fallbacks(std::vector<net::Address> fallbacks, Duration attempt_delay) {
    fallbacks_ = std::move(fallbacks);
    attempt_delay_ = attempt_delay;
  }
  // The endpoint's addresses changed (a logical_dns name's answer): new connections race
  // `address` then `fallbacks`.
  void set_addresses(const net::Address& address, std::vector<net::Address> fallbacks) {
    endpoint_ = address;
    fallbacks_ = std::move(fallbacks);
  }
  bool has_address(const net::Address& a) const;
  using Departed = pool::Departed;
  // Drains (idle ones closed now, busy ones after their request) or closes now the
  // connections to addresses the endpoint no longer has. One still connecting is judged when
  // it connects: drained after its first request, or failed (its request goes elsewhere).
  void retire_departed(Departed how);
  // The endpoint is back: connections may be pooled again (those already marked to close
  // after their request still do).
  void undrain() { draining_ = false; }
  // Whether min_idle connections are kept open ahead of demand (not for an endpoint that
  // takes no new requests).
  void set_warm_up(bool allowed) {
    warm_allowed_ = allowed;
    if (allowed) warm_up();
  }
  // Opens connections until min_idle are idle or connecting (within max_connections).
  void warm_up();

  const PoolStats& stats() const { return stats_; }
  // For the HTTP/2 pool over this one, which counts its streams here.
  PoolStats& stats() { return stats_; }
  const PoolConfig& config() const { return config_; }
  Duration connect_timeout() const { return connect_timeout_; }
  // Connections speak TLS made by `context` (the worker's for the cluster), with `host` as
  // the name to send and check ("" for an IP-literal endpoint: its IP is checked).
  void set_tls(std::shared_ptr<tls::ClientContext> context, std::string host) {
    tls_ = std::move(context);
    tls_host_ = std::move(host);
  }
  // Connect errors of connections opened for a request are counted there too.
  void set_connect_error_counters(ConnectErrorCounters counters) { cluster_counters_ = counters; }
  // Calls fn(fd, state name) for each open connection.
  template <typename Fn>
  void for_each_connection(Fn fn) const {
    for (const auto& c : connections_) {
      if (c->conn_.open()) fn(c->conn_.fd(), PooledConnection::to_string(c->state_));
    }
  }
  const net::Address& endpoint() const { return endpoint_; }
  event::Loop& loop() { return loop_; }
  // No connection (in any state) and no request waiting for one.
  bool empty() const { return connections_.empty() && queue_.empty(); }

 private:
  friend class PooledConnection;
  friend class Waiter;
  // Opens a connection for `waiter`, or (nullptr) one that goes idle when connected.
  void open_for(Waiter* waiter);
  void destroy_only(PooledConnection& conn);
  void lend(PooledConnection& conn, Waiter& waiter);
  void destroy(PooledConnection& conn);
  void serve_queue();
  void make_idle(PooledConnection& conn);
  void leave_idle(PooledConnection& conn);  // O(1): each idle connection knows its place
  void check_connect_rate();
  // A connect failed with `err`: kPortsExhausted (counted, with its explanation) for
  // EADDRNOTAVAIL, else kConnectFailure with `detail`.
  PoolFailure classify_connect_error(int err, std::string* detail);
  // A connect failed (timed out, or with `err`); `for_request`: a request was waiting for it.
  void count_connect_error(bool timeout, int err, bool for_request);

  event::Loop& loop_;
  net::Address endpoint_;
  PoolConfig config_;
  net::SocketOptions socket_options_;
  std::optional<net::Address> source_;
  Duration connect_timeout_;
  std::vector<net::Address> fallbacks_;
  std::shared_ptr<tls::ClientContext> tls_;
  std::string tls_host_;
  Duration attempt_delay_{0};
  std::list<std::unique_ptr<PooledConnection>> connections_;
  PooledConnection* idle_head_ = nullptr;  // most recently used first
  size_t idle_count_ = 0;
  std::list<Waiter*> queue_;
  uint64_t next_id_ = 1;
  // New-connection rate, against the ephemeral ports a TIME_WAIT window can hold: connects
  // counted since rate_window_start_ (a new window every 10 s).
  MonoTime rate_window_start_{};
  uint32_t rate_window_connects_ = 0;
  MonoTime last_port_warning_{};
  bool draining_ = false;
  bool warm_allowed_ = true;
  bool tearing_down_ = false;
  bool warming_ = false;
  MonoTime next_warm_at_{};
  PoolStats stats_;
  ConnectErrorCounters cluster_counters_;
};

}  // namespace sluice::upstream::pool
