// Stream: one request and its response as the client sees them, whatever carries them. It
// routes the request, asks RetryState whether a failed try goes again, runs one
// UpstreamExchange at a time, streams the request body up and the response down, or answers
// itself (a local reply), and ends in one RequestLog record.
// States: ReceivingHead → Routing → WaitingForUpstream (pool wait, retry backoff) →
// Forwarding (request body flowing) → AwaitingResponse → SendingResponse → Done; side exits
// Tunnel (Upgrade, CONNECT) and Reset. A local reply is SendingResponse without an exchange.
// Every state change goes through transition(). Timers: the body-idle timer runs while the
// request body is being received; the retry timer belongs to WaitingForUpstream; the route
// timeout covers the upstream phase (WaitingForUpstream to the end of SendingResponse); all
// are disarmed by the transitions into Done, Reset and Tunnel.
// Owned by its DownstreamConnection, which it calls back through StreamCallbacks; destroyed
// through deferred deletion. Loop thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/buffer.h"
#include "base/recycled.h"
#include "event/loop.h"
#include "http/codec.h"
#include "http/http1/parser.h"
#include "http/message.h"
#include "net/address.h"
#include "proxy/http/proxy_error.h"
#include "proxy/http/request_log.h"
#include "proxy/http/retry_state.h"
#include "proxy/http/route_config.h"
#include "proxy/http/upstream_exchange.h"
#include "proxy/listener_config.h"
#include "proxy/tls_info.h"

namespace sluice::proxy::http {

class HttpProxy;

// What a Stream needs of the connection that carries it.
class StreamCallbacks {
 public:
  // Where the response goes: the connection's codec, which frames it.
  virtual sluice::http::ServerCodec& codec() = 0;
  virtual bool downstream_above_high_watermark() const = 0;
  // Backpressure on the request: stop or resume reading the client.
  virtual void set_downstream_read_enabled(bool enabled) = 0;
  virtual bool downstream_read_enabled() const = 0;
  // Whether the connection may carry another request after this one (not draining, under
  // max_requests_per_connection).
  virtual bool keep_alive_allowed() const = 0;
  // The response is complete; `close_connection`: the connection ends after it.
  virtual void on_stream_done(bool close_connection) = 0;
  // The stream cannot go on and no response can be sent: reset the client's connection.
  virtual void on_stream_reset(const char* reason) = 0;
  // A 101 or a CONNECT 2xx went out: the connection becomes a tunnel to the exchange's
  // upstream connection.
  virtual void on_stream_tunnel(UpstreamExchange& exchange) = 0;
  // The client connection's TLS (null: cleartext, or its handshake is not complete).
  virtual const DownstreamTls* downstream_tls() const = 0;
  // Whether the client connection's TLS handshake is complete (always, on cleartext).
  virtual bool downstream_secured() const = 0;

 protected:
  ~StreamCallbacks() = default;
};

class Stream final : public ExchangeCallbacks,
                     public event::DeferredDeletable,
                     public Recycled<Stream> {
 public:
  enum class State {
    kReceivingHead,
    kRouting,
    kWaitingForUpstream,
    kForwarding,
    kAwaitingResponse,
    kSendingResponse,
    kDone,
    kTunnel,
    kReset,
  };

  // `first_byte_in`: when the request's first byte was read (zero: now).
  Stream(HttpProxy& proxy, StreamCallbacks& callbacks, sluice::http::StreamId id,
         const net::Address& peer, MonoTime first_byte_in);
  ~Stream() override;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // From the codec.
  // The request came in TLS early data (it carries Early-Data: 1 upstream); before
  // on_request_head().
  void set_early_data() { early_data_ = true; }
  // The request came on an HTTP/2 stream (for the log); before on_request_head().
  void set_http2() {
    log_.protocol = "HTTP/2";
    log_.stream = id_;
  }
  // The client's handshake completed: a request an upstream refused as too early goes again.
  void on_downstream_secured();
  void on_request_head(sluice::http::MessageHead& head);
  void on_request_data(std::string_view data);
  void on_request_complete(sluice::http::HeaderMap& trailers);
  // The request is malformed (a parse error after its head, or a head sluice refuses).
  void on_protocol_error(const sluice::http::http1::ParseError& error);

  // From the connection.
  // The client closed or reset before the whole request, or failed.
  void on_downstream_reset();
  // The client half-closed after a complete request: answer, then close.
  void set_close_after() { close_after_ = true; }
  // The client took the response bytes queued for it.
  void on_downstream_drained();
  // The connection closes: timers off, the exchange dropped, an unfinished request logged
  // as incomplete.
  void on_connection_closed();
  // Answers with the local reply `error` maps to (`body` instead of its own when given).
  void send_error_reply(const ProxyError& error, bool close_connection, std::string_view body = {});

  State state() const { return state_; }
  bool request_complete() const { return request_complete_; }
  // The response head went out: a failure now can only reset the connection.
  bool committed() const { return committed_; }
  // The upstream side of a tunnel (null when there is none).
  net::Connection* upstream_connection() { return exchange_ ? exchange_->connection() : nullptr; }

  // ExchangeCallbacks
  void on_exchange_ready(UpstreamExchange& exchange) override;
  void on_exchange_failed(UpstreamExchange& exchange, const ProxyError& error) override;
  bool on_response_head(UpstreamExchange& exchange, sluice::http::MessageHead& head) override;
  void on_response_data(UpstreamExchange& exchange, std::string_view data) override;
  void on_response_complete(UpstreamExchange& exchange, sluice::http::HeaderMap& trailers) override;
  void on_upstream_drained(UpstreamExchange& exchange) override;

 private:
  void transition(State to);
  // The target the client asked for (what the log shows).
  const std::string& target() const {
    return client_target_.empty() ? request_.target : client_target_;
  }
  void route();
  void start_exchange(bool fresh);
  void send_body_upstream(std::string_view data);
  // The cluster's retry breakers (max_active_retries, budget) allow one more retry.
  bool retry_admitted();
  RetryDecision decide_retry(const TryOutcome& t);
  void schedule_retry(std::string_view why, Duration after);
  // Gives the exchange's connection back (not reusable) and retires the exchange.
  void drop_exchange();
  void retire(std::unique_ptr<UpstreamExchange> exchange);
  // Answers when the request has been read (a route's direct response, a refusal).
  void reply_after_request(int status, std::string body, std::optional<ResponseFlag> flag);
  void send_local_reply(int status, std::string_view body, bool close_connection,
                        std::optional<ResponseFlag> flag);
  // The local reply to a gRPC call: a gRPC status instead of an HTTP one.
  void send_grpc_reply(int status, std::string_view body, bool close);
  void on_body_timeout();
  void on_route_timeout();
  void finish();
  void reset(const char* reason);
  void record_end();
  bool will_log();
  void write_access_log();
  // Appends the access-log record of the request as it ends (one JSON object).
  void append_record(std::string& line);
  // Keeps the request among the proxy's recent ones when it failed or is among the slowest.
  void offer_recent(uint64_t us);
  // The upstream connection's TCP_INFO figures into the log record (cached per connection).
  void read_upstream_tcp_info(UpstreamExchange& x);
  void count_status(int status);
  uint64_t max_body_bytes() const;

  HttpProxy& proxy_;
  // The listener's configuration when the stream began: a reload does not change the routes
  // (or limits) of a request already under way.
  std::shared_ptr<const proxy::ListenerConfig> config_;
  StreamCallbacks& callbacks_;
  sluice::http::StreamId id_;  // on the connection's codec
  const net::Address& peer_;
  State state_ = State::kReceivingHead;
  sluice::http::MessageHead request_;
  const Route* route_ = nullptr;
  upstream::Cluster* cluster_ = nullptr;
  bool grpc_ = false;                   // a gRPC call: local replies are gRPC statuses
  bool early_data_ = false;             // the request came in TLS early data
  bool early_retried_ = false;          // an upstream's 425 was answered by sending it again
  bool waiting_for_handshake_ = false;  // to send it again once the handshake is done
  // Once routed, request_.target is the upstream's; this is the client's.
  std::string client_target_;
  Buffer pending_body_;                       // body bytes not yet sent upstream
  Buffer replay_body_;                        // body bytes kept for a retry (while replayable)
  sluice::http::HeaderMap request_trailers_;  // kept for a retry
  bool request_complete_ = false;
  bool upgrade_ = false;
  bool expect_continue_ = false;
  bool sent_100_continue_ = false;
  // A reply decided before the request was read, sent once it has been.
  struct PendingReply {
    int status = 0;
    std::string body;
    std::optional<ResponseFlag> flag;
  };
  std::optional<PendingReply> pending_reply_;
  std::unique_ptr<UpstreamExchange> exchange_;
  std::vector<size_t> tried_;
  std::optional<uint64_t> hash_;  // ring_hash / maglev key, computed when routed
  std::optional<RetryState> retry_;
  // Circuit-breaker slots this request holds in `cluster_` (given back when it ends).
  bool holds_request_slot_ = false;
  bool host_added_ = false;  // the upstream head got a Host the client did not send
  bool holds_retry_slot_ = false;
  // The response towards the client.
  bool committed_ = false;
  bool response_no_body_ = false;
  bool close_after_ = false;
  MonoTime started_{};          // the request head was complete
  size_t endpoint_ = SIZE_MAX;  // of the last exchange
  MonoTime last_body_activity_{};
  RequestLog log_;
  event::Timer body_timer_;
  event::Timer route_timer_;
  event::Timer retry_timer_;
};

const char* to_string(Stream::State s);

}  // namespace sluice::proxy::http
