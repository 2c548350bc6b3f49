// HttpConnection: one downstream HTTP/1.x connection and the request being served on it.
// Requests are handled one at a time in order (pipelined requests wait in the input buffer
// with the parser paused). For a forwarded request an Attempt borrows an upstream
// connection from the endpoint's pool; a failed attempt may be retried on another endpoint
// (route policy), and a request that fails on a reused connection before any response byte
// is re-sent once on a fresh connection. Loop thread only; deleted through deferred deletion.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/buffer.h"
#include "event/loop.h"
#include "http/http1/parser.h"
#include "net/connection.h"
#include "proxy/http/http_proxy.h"
#include "proxy/http/proxy_error.h"
#include "proxy/http/request_log.h"
#include "proxy/http/retry_state.h"
#include "proxy/http/route_config.h"
#include "upstream/pool/conn_pool.h"

namespace sluice::proxy::http {

class HttpConnection;

// One try of a request against one endpoint.
class Attempt final : public upstream::pool::PoolCallbacks,
                      public net::ConnectionCallbacks,
                      public sluice::http::http1::ParserCallbacks {
 public:
  Attempt(HttpConnection& owner, upstream::Cluster& cluster, size_t endpoint, bool fresh);
  ~Attempt();

  void start();
  // Sends request body bytes (already framed) once the connection is ready.
  void send(std::string_view bytes);
  // Gives the connection back (reusable or not) and forgets it.
  void release(bool reusable);

  // PoolCallbacks
  void on_pool_ready(upstream::pool::PooledConnection& conn) override;
  void on_pool_failure(upstream::pool::PoolFailure reason, const std::string& detail) override;
  // ConnectionCallbacks
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;
  // ParserCallbacks (the response)
  bool on_head(sluice::http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_message_complete(sluice::http::HeaderMap& trailers) override;

  net::Connection* connection() { return conn_ ? &conn_->connection() : nullptr; }
  size_t endpoint() const { return endpoint_; }
  bool response_started() const { return response_bytes_ > 0; }
  bool reused() const { return reused_; }
  // sluice itself closed the connection (its address left the DNS answer).
  bool aborted_by_sluice() const { return aborted_by_sluice_; }

 private:
  friend class HttpConnection;
  void parse_response();
  void deliver_completion();

  HttpConnection& owner_;
  upstream::Cluster& cluster_;
  upstream::pool::ConnPool& pool_;
  upstream::pool::Waiter waiter_;
  upstream::pool::PooledConnection* conn_ = nullptr;
  sluice::http::http1::Parser parser_;
  size_t endpoint_;
  bool fresh_;
  bool reused_ = false;
  bool aborted_by_sluice_ = false;
  uint64_t response_bytes_ = 0;
  bool discard_response_ = false;  // a retryable status: read nothing further
  bool response_complete_ = false;
  bool interim_ = false;  // the head being parsed is a 1xx
  bool completion_delivered_ = false;
  sluice::http::HeaderMap trailers_;
  MonoTime started_{};
  MonoTime last_activity_{};
  event::Timer timer_;  // per-try timeout and upstream idle timeout
};

class HttpConnection final : public net::ConnectionCallbacks,
                             public sluice::http::http1::ParserCallbacks,
                             public event::DeferredDeletable {
 public:
  HttpConnection(HttpProxy& proxy, const net::Address& peer);
  ~HttpConnection() override;

  void start(net::Fd fd);
  void close(const char* reason);
  // The listener drains: close if idle, else after the current response.
  void drain();

  // ConnectionCallbacks (downstream)
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;
  // ParserCallbacks (the request)
  bool on_head(sluice::http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_message_complete(sluice::http::HeaderMap& trailers) override;

  HttpConnection* prev = nullptr;
  HttpConnection* next = nullptr;
  int fd() const { return conn_.fd(); }
  bool busy() const { return stream_ != nullptr || tunnel_; }

 private:
  friend class Attempt;
  enum class TimerMode { kNone, kKeepalive, kHead, kBody };

  // The request being served.
  struct Stream {
    ~Stream();
    sluice::http::MessageHead request;
    const Route* route = nullptr;
    upstream::Cluster* cluster = nullptr;
    std::string upstream_head;  // serialised once, re-sent on retries
    Buffer pending_body;        // framed body bytes not yet sent upstream
    Buffer replay_body;         // framed body bytes kept for a retry (while replayable)
    bool request_complete = false;
    bool local_reply_pending = false;  // answer when the request has been read
    int local_status = 0;
    std::string local_body;
    std::string location;
    std::optional<ResponseFlag> local_flag;
    std::unique_ptr<Attempt> attempt;
    std::vector<size_t> tried;
    std::optional<uint64_t> hash;  // ring_hash / maglev key, computed when routed
    // Circuit-breaker slots this request holds in `cluster` (given back when it ends).
    bool holds_request_slot = false;
    bool holds_retry_slot = false;
    std::optional<RetryState> retry;  // from the route
    bool sent_100_continue = false;
    bool expect_continue = false;
    // Response towards the client.
    bool committed = false;  // response head written to the client
    bool response_chunked = false;
    bool response_close_delimited = false;
    bool response_no_body = false;
    bool close_after = false;
    bool upgrade = false;
    MonoTime started{};          // the request head was complete
    size_t endpoint = SIZE_MAX;  // of the last attempt
    RequestLog log;
    std::unique_ptr<event::Timer> deadline;  // route timeout
    std::unique_ptr<event::Timer> retry_timer;
  };

  void process_input();
  void arm_timer(TimerMode mode, Duration d);
  void on_timer();
  void route_request(Stream& s);
  void build_upstream_head(Stream& s);
  void start_attempt(bool fresh);
  void send_body_upstream(std::string_view framed);
  // Attempt outcomes.
  void on_attempt_ready();
  void on_attempt_failed(const ProxyError& error);
  // Keeps an Attempt (possibly the one whose callback is running) alive until the loop
  // iteration ends.
  void retire(std::unique_ptr<Attempt> attempt);
  // Releases the current attempt's connection (not reusable) and retires the attempt. An
  // Attempt is never destroyed directly: its callback may be running.
  void drop_attempt();
  bool on_response_head(sluice::http::MessageHead& head);
  void on_response_body(std::string_view data);
  void on_response_complete(sluice::http::HeaderMap& trailers);
  void on_upstream_activity_timeout();
  // The cluster's retry breakers (max_active_retries, budget) allow one more retry.
  bool retry_admitted();
  void compute_hash(Stream& s);
  // Asks the stream's RetryState about a failed try; returns its decision, admitted.
  RetryDecision decide_retry(const TryOutcome& t);
  void schedule_retry(std::string_view why, Duration after);
  void add_flag(ResponseFlag flag);
  // Times the request and writes its access-log line, once.
  void record_end(Stream& s);
  // Whether the request gets an access-log line (decided once, at its end).
  bool will_log(Stream& s);
  void write_access_log(Stream& s);

  void send_local_reply(int status, std::string_view body, bool close_connection,
                        std::optional<ResponseFlag> flag);
  // The local reply `error` maps to (its status, flag and client body; `body` instead when
  // given); its detail goes to the access log.
  void send_error_reply(const ProxyError& error, bool close_connection, std::string_view body = {});
  void finish_stream();
  void abort(const char* reason);
  void enter_tunnel();
  void count_status(int status);

  HttpProxy& proxy_;
  net::Address peer_;
  net::Connection conn_;
  sluice::http::http1::Parser parser_;
  std::unique_ptr<Stream> stream_;
  event::Timer timer_;
  TimerMode timer_mode_ = TimerMode::kNone;
  MonoTime last_body_activity_{};
  MonoTime request_first_byte_{};  // of the request being read
  uint32_t requests_ = 0;
  bool closing_ = false;
  bool in_parser_ = false;  // inside parser_.execute(): the parser must not be re-entered
  bool resume_after_parse_ = false;
  bool tunnel_ = false;
  bool closed_ = false;
  std::unique_ptr<event::Timer> linger_;
  size_t linger_queued_ = 0;
  struct Tunnel;
  std::unique_ptr<Tunnel> tunnel_callbacks_;
};

}  // namespace sluice::proxy::http
