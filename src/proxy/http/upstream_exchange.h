// UpstreamExchange: one try of a request against one endpoint. It borrows a connection from
// the endpoint's pool (HTTP/1.1), or a stream on one of its HTTP/2 connections, sends the
// request its Stream gives it (a head, body bytes and trailers, framed here for the protocol
// spoken), takes the response and hands it up through ExchangeCallbacks; a failure is one
// ProxyError. Its timer is the try's deadline:
// the per-try timeout and the upstream idle timeout, whichever comes first.
// States: Acquiring (the pool connects or lends one; a connect is part of this wait) →
// SendingRequest → AwaitingHead → ReceivingBody → Done | Failed; a response may begin before
// the request is fully sent (SendingRequest → ReceivingBody).
// Owned by its Stream, destroyed through deferred deletion (a callback of it may be
// running). Loop thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/recycled.h"
#include "event/loop.h"
#include "http/http1/codec.h"
#include "proxy/http/proxy_error.h"
#include "upstream/cluster.h"
#include "upstream/pool/conn_pool.h"
#include "upstream/pool/http2_pool.h"

namespace sluice::proxy::http {

class UpstreamExchange;

// What the Stream hears from its exchange.
class ExchangeCallbacks {
 public:
  // A connection is lent: send the request.
  virtual void on_exchange_ready(UpstreamExchange& exchange) = 0;
  // The try failed; the exchange has given its connection back.
  virtual void on_exchange_failed(UpstreamExchange& exchange, const ProxyError& error) = 0;
  // Return false to stop reading the response (a retry, or a tunnel took over).
  virtual bool on_response_head(UpstreamExchange& exchange, sluice::http::MessageHead& head) = 0;
  virtual void on_response_data(UpstreamExchange& exchange, std::string_view data) = 0;
  virtual void on_response_complete(UpstreamExchange& exchange,
                                    sluice::http::HeaderMap& trailers) = 0;
  // The upstream took the bytes queued for it: more request body may follow.
  virtual void on_upstream_drained(UpstreamExchange& exchange) = 0;

 protected:
  ~ExchangeCallbacks() = default;
};

struct ExchangeSettings {
  Duration per_try_timeout{0};   // 0: none
  Duration idle_timeout{0};      // 0: none
  bool head_request = false;     // the response has no body
  bool connect_request = false;  // a 2xx is followed by a tunnel
  bool upgrade = false;          // Upgrade or CONNECT: HTTP/1.1 only
  bool resendable = false;       // may go again should the pooled connection be stale
};

class UpstreamExchange final : public upstream::pool::PoolCallbacks,
                               public upstream::pool::Http2Callbacks,
                               public net::ConnectionCallbacks,
                               public sluice::http::ClientCodecCallbacks,
                               public event::DeferredDeletable,
                               public Recycled<UpstreamExchange> {
 public:
  enum class State { kAcquiring, kSendingRequest, kAwaitingHead, kReceivingBody, kDone, kFailed };

  UpstreamExchange(ExchangeCallbacks& callbacks, upstream::Cluster& cluster, size_t endpoint,
                   bool fresh, const ExchangeSettings& settings);
  ~UpstreamExchange() override;

  // Asks the pool for a connection (on_exchange_ready or on_exchange_failed follow, maybe
  // before this returns).
  void start();
  // The request, once ready: its head (the target already the upstream's); `end_stream`:
  // no body follows. Then body bytes (unframed: chunked here for HTTP/1.1 when the head
  // says so), and the end of the request with its trailers.
  void send_head(const sluice::http::MessageHead& head, bool end_stream);
  void send_body(std::string_view data);
  void send_end(const sluice::http::HeaderMap& trailers);
  // A connection (or stream) is lent and connected: the request may be sent.
  bool ready() const;
  // Request bytes wait for the upstream beyond the high watermark: stop reading the client.
  bool congested() const;
  // Response backpressure: stop and resume taking response bytes from the upstream.
  void pause_response();
  void resume_response();
  // The request goes out on an HTTP/2 stream.
  bool http2() const { return http2_pool_ != nullptr; }
  // Gives the connection back (reusable or not) and ends the exchange.
  void release(bool reusable);
  // After a 101 or a CONNECT 2xx: the connection's events go to `tunnel` from now on, with
  // no deadline; the exchange keeps the connection until released.
  net::Connection* hand_over_to_tunnel(net::ConnectionCallbacks& tunnel);

  State state() const { return state_; }
  // The HTTP/1.1 connection lent to this exchange (null for HTTP/2, whose connection is
  // shared): what a tunnel takes over.
  net::Connection* connection() { return conn_ ? &conn_->connection() : nullptr; }
  // The connection the request went out on, either protocol (its TCP_INFO, its peer).
  net::Connection* transport();
  // The pooled connection under transport() (null when there is none).
  upstream::pool::PooledConnection* pooled_transport();
  size_t endpoint() const { return endpoint_; }
  const net::Address& endpoint_address() const { return pool_.endpoint(); }
  bool reused() const { return reused_; }
  bool response_started() const { return response_bytes_ > 0; }
  // sluice itself closed the connection (its address left the DNS answer).
  bool closed_by_sluice() const { return closed_by_sluice_; }
  // The upstream did not process the request (HTTP/2 REFUSED_STREAM, or a stream above a
  // GOAWAY's last stream id): it may go again whatever its method (RFC 9113 §8.7).
  bool refused() const { return refused_; }
  // The rest of the response followed its head after a delayed-ACK-sized gap (35-250 ms) on
  // a reused connection: the Nagle / delayed-ACK stall.
  bool delayed_ack_stall() const { return delayed_ack_stall_; }
  // The failure was a connect another request's failure already counted (an HTTP/2
  // connection that several requests waited for): not to be counted, or reported, again.
  bool failure_counted_elsewhere() const { return counted_elsewhere_; }
  // The upstream asked to keep or not keep the connection (Keep-Alive: timeout=, close).
  void learn_keepalive(const sluice::http::MessageHead& head);
  // The response parsed cleanly so far (the connection may be reused after it).
  bool response_clean() const { return http2() || codec_.error().reason.empty(); }
  // Timings (zero: did not happen).
  MonoTime started_at() const { return started_; }
  MonoTime ready_at() const { return ready_at_; }
  MonoTime first_byte_at() const { return first_byte_at_; }
  // How long opening the connection took, when it was opened for this exchange.
  Duration connect_time() const { return connect_time_; }
  // The TLS handshake of a connection opened for this try (zero otherwise).
  Duration tls_time() const { return tls_time_; }

  // PoolCallbacks
  void on_pool_ready(upstream::pool::PooledConnection& conn) override;
  void on_pool_failure(upstream::pool::PoolFailure reason, const std::string& detail) override;
  // Http2Callbacks
  void on_stream_ready(upstream::pool::Http2Connection& conn) override;
  void on_stream_failure(upstream::pool::PoolFailure reason, const std::string& detail,
                         bool counted) override;
  // ConnectionCallbacks
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;
  // The errno text of a failure, or the TLS reason behind a protocol error.
  std::string error_text(int err) const;
  // ClientCodecCallbacks (the response)
  bool on_head(sluice::http::StreamId stream, sluice::http::MessageHead& head) override;
  void on_data(sluice::http::StreamId stream, std::string_view data, bool end) override;
  void on_trailers(sluice::http::StreamId stream, sluice::http::HeaderMap& trailers) override;
  void on_reset(sluice::http::StreamId stream, const sluice::http::StreamReset& reset) override;
  void on_stream_drained(sluice::http::StreamId stream) override;

 private:
  // A connection or a stream is in hand: time it, arm the deadline, tell the Stream.
  void became_ready(bool opened_for_us, Duration connect_time, Duration tls_time);
  // Gives back what the exchange holds (the connection, or the stream on a shared one).
  void give_back(bool reusable);
  // The request is complete on our side.
  void request_sent();
  void transition(State to);
  // When the try runs out of time: the earlier of the per-try and the idle deadline.
  MonoTime deadline() const;
  void on_deadline();
  void parse_response();
  void deliver_completion();
  void on_message_complete(sluice::http::HeaderMap& trailers);
  void fail(const ProxyError& error);

  ExchangeCallbacks& callbacks_;
  upstream::Cluster& cluster_;
  upstream::pool::ConnPool& pool_;
  ExchangeSettings settings_;
  upstream::pool::Waiter waiter_;
  upstream::pool::PooledConnection* conn_ = nullptr;
  sluice::http::http1::ClientCodec codec_;
  // HTTP/2: the endpoint's streams, the wait for one, the stream held.
  upstream::pool::Http2Pool* http2_pool_ = nullptr;
  std::optional<upstream::pool::Http2Waiter> http2_waiter_;
  upstream::pool::Http2Connection* http2_conn_ = nullptr;
  sluice::http::StreamId http2_stream_ = 0;
  size_t endpoint_;
  State state_ = State::kAcquiring;
  bool fresh_;
  bool reused_ = false;
  bool closed_by_sluice_ = false;
  bool refused_ = false;
  bool delayed_ack_stall_ = false;
  MonoTime body_awaited_since_{};  // a read ended with the head and the body still to come
  bool counted_elsewhere_ = false;
  bool chunked_request_ = false;  // HTTP/1.1: the body goes out in chunks
  bool request_ended_ = false;
  bool interim_ = false;  // the head being parsed is a 1xx
  bool response_complete_ = false;
  bool completion_delivered_ = false;
  bool stopped_ = false;  // the Stream wants no more of the response
  net::ConnectionCallbacks* tunnel_ = nullptr;
  uint64_t response_bytes_ = 0;
  sluice::http::HeaderMap trailers_;
  MonoTime started_{};
  MonoTime ready_at_{};
  MonoTime first_byte_at_{};
  MonoTime last_activity_{};
  Duration connect_time_{0};
  Duration tls_time_{0};
  event::Timer timer_;
};

const char* to_string(UpstreamExchange::State s);

}  // namespace sluice::proxy::http
