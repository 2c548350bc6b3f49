// Http2Pool: the HTTP/2 connections of one endpoint on one worker, and the streams requests
// borrow on them. It keeps few connections and many streams: a request gets a stream on an
// open connection that has room under the peer's SETTINGS_MAX_CONCURRENT_STREAMS, and a new
// connection is opened only when none has. Connections come from the endpoint's ConnPool,
// which keeps its meaning (connect, TLS, max_connections, min_idle, counters); each is
// borrowed for its whole life and never goes back to the pool's idle list.
// Http2Connection states: Connecting (waiting for its pooled connection) → Ready (streams may
// open) → Draining (a GOAWAY came or went, the pool drains, max_lifetime passed: streams in
// flight finish, no new ones) → Closed. A ready connection without streams closes after the
// pool's idle_timeout. Loop thread only.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "event/loop.h"
#include "http/http2/client_codec.h"
#include "upstream/pool/conn_pool.h"

namespace sluice::upstream::pool {

class Http2Pool;
class Http2Waiter;

// The reason its streams are reset with when sluice itself closed the connection (its address
// left the DNS answer, on_address_change: close): not the endpoint's doing.
inline constexpr std::string_view kClosedBySluice = "closed by sluice";

// What a request waiting for a stream hears.
class Http2Callbacks {
 public:
  // A connection with room for one more stream: open it now (before returning).
  virtual void on_stream_ready(class Http2Connection& conn) = 0;
  // The wait failed: the pool is full or timed out (`counted` true), or the connection the
  // request waited for failed to open, where `counted` is true for one of the requests that
  // waited only, so that one failure is counted once.
  virtual void on_stream_failure(PoolFailure reason, const std::string& detail, bool counted) = 0;

 protected:
  ~Http2Callbacks() = default;
};

class Http2Connection final : public PoolCallbacks,
                              public net::ConnectionCallbacks,
                              public event::DeferredDeletable {
 public:
  enum class State { kConnecting, kReady, kDraining, kClosed };
  static const char* to_string(State s);

  Http2Connection(Http2Pool& pool, uint64_t id);
  ~Http2Connection() override;

  State state() const { return state_; }
  uint64_t id() const { return id_; }
  // Ready, the codec can open a stream, the pool is not draining it.
  bool can_open() const;
  http::http2::ClientCodec& codec() { return *codec_; }
  // The pooled connection under it (null while connecting and once closed).
  PooledConnection* pooled() { return pooled_; }
  // Streams opened on it so far (the first one is not a reuse).
  uint64_t streams_opened() const { return streams_opened_; }
  // A stream was opened with codec().open_stream() by a borrower.
  void stream_opened();
  // A borrower is done with `stream`; `complete`: its response ended (else it is reset).
  void stream_done(http::StreamId stream, bool complete);

  // PoolCallbacks
  void on_pool_ready(PooledConnection& conn) override;
  void on_pool_failure(PoolFailure reason, const std::string& detail) override;
  // ConnectionCallbacks
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;

 private:
  friend class Http2Pool;
  void transition(State to);
  // The server's SETTINGS came: streams may open.
  void became_ready();
  // No new streams; closes once the last one ends.
  void drain();
  // Closes now: open streams hear on_reset (refused when their head never left).
  // `failure`: what the requests waiting for it hear, when it closes before it was ready.
  void close(std::string_view reason, PoolFailure failure = PoolFailure::kConnectFailure);
  // Closes when no stream is open, else waits for the last to end.
  void close_if_idle();
  void arm_idle();
  void on_timer();
  void handle(http::http2::ClientCodec::Outcome o);

  Http2Pool& pool_;
  uint64_t id_;
  State state_ = State::kConnecting;
  Waiter waiter_;
  PooledConnection* pooled_ = nullptr;
  std::unique_ptr<http::http2::ClientCodec> codec_;
  uint64_t streams_opened_ = 0;
  bool goaway_counted_ = false;
  MonoTime idle_since_{};
  event::Timer timer_;  // idle expiry and max_lifetime
  std::list<std::unique_ptr<Http2Connection>>::iterator pos_;
};

// A request waiting for a stream; cancel() it if the request goes away first.
class Http2Waiter {
 public:
  Http2Waiter(Http2Pool& pool, Http2Callbacks& callbacks);
  ~Http2Waiter();
  void cancel();

 private:
  friend class Http2Pool;
  Http2Pool& pool_;
  Http2Callbacks& callbacks_;
  event::Timer timer_;
  bool queued_ = false;
  std::list<Http2Waiter*>::iterator pos_;
};

class Http2Pool {
 public:
  // `scheme` is every request's :scheme ("https" over TLS).
  Http2Pool(ConnPool& transport, const http::http2::ClientOptions& options, std::string scheme);
  ~Http2Pool();

  // Asks for a stream: on_stream_ready or on_pool_failure follow, maybe before this returns.
  void acquire(Http2Waiter& waiter);
  // The endpoint drains or leaves: no new streams on today's connections.
  void drain();
  // A connection of the pool whose TLS handshake agreed on h2 (protocol auto) becomes one
  // of ours; from now on the endpoint is known to speak HTTP/2.
  Http2Connection& adopt(PooledConnection& conn);
  bool learned() const { return learned_; }
  // Whether TLS on `conn` agreed on HTTP/2 by ALPN.
  static bool agreed_h2(PooledConnection& conn);
  ConnPool& transport() { return transport_; }
  event::Loop& loop() { return transport_.loop(); }
  size_t connections() const { return connections_.size(); }
  // No connection and no request waiting for a stream.
  bool empty() const { return connections_.empty() && queue_.empty(); }

 private:
  friend class Http2Connection;
  friend class Http2Waiter;
  // Hands streams to waiters while a connection has room; opens a connection when the
  // waiters outnumber what the connections being opened can take.
  void serve_queue();
  void serve_once();
  void open_connection();
  void connection_failed(PoolFailure reason, const std::string& detail);
  // A waiter about to hear a failure went away first (its request ended).
  void forget_failing(Http2Waiter* w) {
    if (!failing_) return;
    for (auto& f : *failing_) {
      if (f == w) f = nullptr;
    }
  }
  void remove(Http2Connection& conn);

  ConnPool& transport_;
  http::http2::ClientOptions options_;
  std::string scheme_;
  std::list<std::unique_ptr<Http2Connection>> connections_;
  std::list<Http2Waiter*> queue_;
  uint64_t next_id_ = 1;
  bool serving_ = false;
  bool serve_again_ = false;
  std::vector<Http2Waiter*>* failing_ = nullptr;  // while connection_failed() reports
  // How many streams a connection takes: the last SETTINGS_MAX_CONCURRENT_STREAMS of the
  // endpoint, 100 before any (RFC 9113 §6.5.2 recommends no fewer).
  size_t streams_per_connection_ = 100;
  bool learned_ = false;
};

}  // namespace sluice::upstream::pool
