#include "proxy/http/upstream_exchange.h"

#include <algorithm>
#include <cerrno>
#include <charconv>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "http/http1/encoder.h"
#include "net/connect.h"
#include "net/socket_options.h"
#include "proxy/http/stream_scratch.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::http1::Parser;

namespace {

// Request bytes an HTTP/2 stream may hold for the upstream's window before the client is
// read no further.
constexpr size_t kStreamHighWatermark = 256 * 1024;

// The errno a connect failure's text names, for the client's body (0: none known).
int errno_named_in(std::string_view detail) {
  for (int err : {ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ECONNRESET, EADDRNOTAVAIL,
                  EADDRINUSE, EACCES, EPERM}) {
    if (detail.find(net::error_text(err)) != std::string_view::npos) return err;
  }
  return 0;
}

std::optional<Duration> keepalive_timeout(const HeaderMap& headers) {
  const std::string* v = headers.get("keep-alive");
  if (!v) return std::nullopt;
  std::optional<Duration> out;
  sluice::http::for_each_token(*v, [&](std::string_view t) {
    if (t.rfind("timeout=", 0) != 0) return;
    t.remove_prefix(8);
    unsigned seconds = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), seconds);
    if (ec == std::errc() && end == t.data() + t.size()) out = std::chrono::seconds(seconds);
  });
  return out;
}

[[maybe_unused]] bool legal(UpstreamExchange::State from, UpstreamExchange::State to) {
  using S = UpstreamExchange::State;
  if (to == S::kDone || to == S::kFailed) return from != S::kDone && from != S::kFailed;
  switch (from) {
    case S::kAcquiring:
      return to == S::kSendingRequest;
    case S::kSendingRequest:
      return to == S::kAwaitingHead || to == S::kReceivingBody;
    case S::kAwaitingHead:
      return to == S::kReceivingBody;
    default:
      return false;
  }
}

}  // namespace

const char* to_string(UpstreamExchange::State s) {
  switch (s) {
    case UpstreamExchange::State::kAcquiring:
      return "acquiring";
    case UpstreamExchange::State::kSendingRequest:
      return "sending-request";
    case UpstreamExchange::State::kAwaitingHead:
      return "awaiting-head";
    case UpstreamExchange::State::kReceivingBody:
      return "receiving-body";
    case UpstreamExchange::State::kDone:
      return "done";
    case UpstreamExchange::State::kFailed:
      return "failed";
  }
  return "?";
}

UpstreamExchange::UpstreamExchange(ExchangeCallbacks& callbacks, upstream::Cluster& cluster,
                                   size_t endpoint, bool fresh, const ExchangeSettings& settings)
    : callbacks_(callbacks),
      cluster_(cluster),
      pool_(cluster.pool(endpoint)),
      settings_(settings),
      waiter_(pool_, *this),
      codec_(*this),
      endpoint_(endpoint),
      fresh_(fresh),
      timer_(pool_.loop().timers(), [this] { on_deadline(); }) {
  if (!settings.upgrade && cluster.speaks_http2(endpoint)) {
    http2_pool_ = &cluster.http2_pool(endpoint);
  }
  cluster_.request_started(endpoint_);
}

UpstreamExchange::~UpstreamExchange() {
  release(false);
  cluster_.request_finished(endpoint_);
}

void UpstreamExchange::transition(State to) {
  if (to == state_) return;
  LOG_DEBUG("upstream exchange with {}: {} -> {}", pool_.endpoint().to_string(), to_string(state_),
            to_string(to));
  SLUICE_ASSERT(legal(state_, to));
  state_ = to;
  // The deadline belongs to the states that wait on the upstream.
  if (to == State::kDone || to == State::kFailed) timer_.cancel();
}

MonoTime UpstreamExchange::deadline() const {
  MonoTime due = MonoTime::max();
  if (settings_.per_try_timeout.count() > 0) due = started_ + settings_.per_try_timeout;
  if (settings_.idle_timeout.count() > 0 && ready_at_ != MonoTime{}) {
    due = std::min(due, last_activity_ + settings_.idle_timeout);
  }
  return due;
}

void UpstreamExchange::on_deadline() {
  MonoTime due = deadline();
  if (pool_.loop().now() < due) {
    timer_.arm_at(due);
    return;
  }
  std::string why = fmt::format("upstream {} timed out", pool_.endpoint().to_string());
  fail(ProxyError::upstream(ErrorKind::kTimeout, 0, why));
}

void UpstreamExchange::start() {
  started_ = pool_.loop().now();
  last_activity_ = started_;
  // RFC 9110 §9.3.6: a 2xx answer to CONNECT has no body: the tunnel follows.
  codec_.expect(settings_.head_request, settings_.connect_request);
  if (http2_pool_) {
    http2_waiter_.emplace(*http2_pool_, *this);
    http2_pool_->acquire(*http2_waiter_);
    return;
  }
  pool_.acquire(waiter_, fresh_, settings_.resendable);
}

void UpstreamExchange::give_back(bool reusable) {
  waiter_.cancel();
  if (http2_waiter_) http2_waiter_->cancel();
  codec_.attach(nullptr);
  if (http2_conn_) {
    auto* c = http2_conn_;
    http2_conn_ = nullptr;
    c->stream_done(http2_stream_, reusable && completion_delivered_);
  }
  if (!conn_) return;
  auto* c = conn_;
  conn_ = nullptr;
  pool_.release(*c, reusable);
}

void UpstreamExchange::release(bool reusable) {
  timer_.cancel();
  if (state_ != State::kFailed) state_ = State::kDone;
  give_back(reusable);
}

void UpstreamExchange::fail(const ProxyError& error) {
  give_back(false);
  transition(State::kFailed);
  callbacks_.on_exchange_failed(*this, error);
}

bool UpstreamExchange::ready() const {
  if (http2_pool_) return http2_conn_ != nullptr;
  return conn_ && !conn_->connection().connecting();
}

bool UpstreamExchange::congested() const {
  if (http2_conn_) return http2_conn_->codec().buffered(http2_stream_) >= kStreamHighWatermark;
  return conn_ && conn_->connection().above_high_watermark();
}

void UpstreamExchange::pause_response() {
  if (http2_conn_) return http2_conn_->codec().pause(http2_stream_);
  if (conn_) conn_->connection().set_read_enabled(false);
}

void UpstreamExchange::resume_response() {
  if (http2_conn_) return http2_conn_->codec().resume(http2_stream_);
  if (conn_) conn_->connection().set_read_enabled(true);
}

upstream::pool::PooledConnection* UpstreamExchange::pooled_transport() {
  if (http2_conn_) return http2_conn_->pooled();
  return conn_;
}

net::Connection* UpstreamExchange::transport() {
  if (http2_conn_ && http2_conn_->pooled()) return &http2_conn_->pooled()->connection();
  return connection();
}

void UpstreamExchange::send_head(const MessageHead& head, bool end_stream) {
  if (http2_conn_) {
    http2_conn_->codec().send_head(http2_stream_, head, end_stream);
  } else if (conn_) {
    chunked_request_ = head.chunked;
    codec_.send_head(sluice::http::http1::ClientCodec::kStream, head);
  }
  if (end_stream) request_sent();
}

void UpstreamExchange::send_body(std::string_view data) {
  if (data.empty() || request_ended_) return;
  if (http2_conn_) return http2_conn_->codec().send_data(http2_stream_, data);
  if (!conn_) return;
  if (!chunked_request_) return codec_.send_data(sluice::http::http1::ClientCodec::kStream, data);
  std::string& out = scratch();
  out.clear();
  sluice::http::http1::encode_chunk(data, out);
  codec_.send_data(sluice::http::http1::ClientCodec::kStream, out);
}

void UpstreamExchange::send_end(const HeaderMap& trailers) {
  if (request_ended_) return;
  if (http2_conn_) {
    http2_conn_->codec().send_trailers(http2_stream_, trailers);
  } else if (conn_ && chunked_request_) {
    std::string& out = scratch();
    out.clear();
    sluice::http::http1::encode_last_chunk(trailers, out);
    codec_.send_data(sluice::http::http1::ClientCodec::kStream, out);
  }
  request_sent();
}

void UpstreamExchange::request_sent() {
  request_ended_ = true;
  if (state_ == State::kSendingRequest) transition(State::kAwaitingHead);
}

net::Connection* UpstreamExchange::hand_over_to_tunnel(net::ConnectionCallbacks& tunnel) {
  timer_.cancel();  // per-try and idle limits are for requests, not for tunnels
  if (!conn_) return nullptr;
  tunnel_ = &tunnel;
  conn_->set_borrower(&tunnel);
  return &conn_->connection();
}

void UpstreamExchange::learn_keepalive(const MessageHead& head) {
  if (!conn_) return;
  if (auto ka = keepalive_timeout(head.headers)) conn_->learn_keepalive_timeout(*ka);
  if (!head.keep_alive) conn_->learn_keepalive_timeout(Duration(0));
}

void UpstreamExchange::on_pool_ready(upstream::pool::PooledConnection& conn) {
  if (cluster_.may_speak_http2() && upstream::pool::Http2Pool::agreed_h2(conn)) {
    // protocol auto: the handshake chose HTTP/2; the connection joins the endpoint's HTTP/2
    // pool and this request takes a stream on it.
    if (settings_.upgrade) {
      // Not kept: an HTTP/2 connection opened for a request that cannot use it would be held
      // for nothing.
      pool_.release(conn, false);
      std::string why = fmt::format(
          "upstream {} chose HTTP/2 by ALPN; an Upgrade or CONNECT needs HTTP/1.1 (protocol: auto)",
          pool_.endpoint().to_string());
      return fail(ProxyError::upstream(ErrorKind::kProtocol, 0, why));
    }
    upstream::pool::Http2Connection& c = cluster_.http2_pool(endpoint_).adopt(conn);
    http2_pool_ = &cluster_.http2_pool(endpoint_);
    if (c.can_open()) return on_stream_ready(c);
    http2_waiter_.emplace(*http2_pool_, *this);
    return http2_pool_->acquire(*http2_waiter_);
  }
  conn_ = &conn;
  reused_ = conn.reused();
  conn.set_borrower(this);
  codec_.attach(&conn.connection());
  became_ready(conn.requests() <= 1 && !conn.warm(), conn.connect_time(), conn.tls_time());
}

void UpstreamExchange::on_stream_failure(upstream::pool::PoolFailure reason,
                                         const std::string& detail, bool counted) {
  counted_elsewhere_ = !counted;
  on_pool_failure(reason, detail);
}

void UpstreamExchange::on_stream_ready(upstream::pool::Http2Connection& conn) {
  http2_stream_ = conn.codec().open_stream(*this);
  SLUICE_ASSERT(http2_stream_ != 0);
  http2_conn_ = &conn;
  conn.stream_opened();
  reused_ = conn.streams_opened() > 1;
  upstream::pool::PooledConnection* p = conn.pooled();
  bool opened_for_us = !reused_ && p && !p->warm();
  became_ready(opened_for_us, p ? p->connect_time() : Duration(0), p ? p->tls_time() : Duration(0));
}

void UpstreamExchange::became_ready(bool opened_for_us, Duration connect_time, Duration tls_time) {
  ready_at_ = pool_.loop().now();
  cluster_.stats().pool_wait.observe(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(ready_at_ - started_).count()));
  connect_time_ = opened_for_us ? connect_time : Duration(0);
  tls_time_ = opened_for_us ? tls_time : Duration(0);
  if (opened_for_us) ++cluster_.stats().connect_attempts;
  last_activity_ = ready_at_;
  if (MonoTime due = deadline(); due != MonoTime::max()) timer_.arm_at(due);
  transition(State::kSendingRequest);
  callbacks_.on_exchange_ready(*this);
}

void UpstreamExchange::on_pool_failure(upstream::pool::PoolFailure reason,
                                       const std::string& detail) {
  using upstream::pool::PoolFailure;
  switch (reason) {
    case PoolFailure::kConnectFailure:
      return fail(ProxyError::upstream(ErrorKind::kConnectFailure, errno_named_in(detail), detail));
    case PoolFailure::kConnectTimeout:
      return fail(ProxyError::upstream(ErrorKind::kConnectTimeout, ETIMEDOUT, detail));
    case PoolFailure::kOverflow:
      return fail(ProxyError::upstream(ErrorKind::kPoolOverflow, 0, detail));
    case PoolFailure::kPendingTimeout:
      return fail(ProxyError::upstream(ErrorKind::kPoolTimeout, 0, detail));
    case PoolFailure::kPortsExhausted:
      return fail(ProxyError::upstream(ErrorKind::kPortsExhausted, EADDRNOTAVAIL, detail));
  }
}

void UpstreamExchange::on_read() {
  parse_response();
}

void UpstreamExchange::parse_response() {
  while (conn_ && !stopped_) {
    net::Connection& c = conn_->connection();
    if (c.input().empty()) return;
    last_activity_ = pool_.loop().now();
    if (response_bytes_ == 0) first_byte_at_ = last_activity_;
    size_t got = c.input().size();
    response_bytes_ += got;
    if (body_awaited_since_ != MonoTime{}) {
      // The first bytes after a head that came alone: a gap in Linux's delayed-ACK band
      // (40-200 ms) on a reused connection is a Nagle-bound upstream waiting for our ACK.
      Duration gap = last_activity_ - body_awaited_since_;
      body_awaited_since_ = MonoTime{};
      using std::chrono::milliseconds;
      if (reused_ && gap >= milliseconds(35) && gap <= milliseconds(250)) delayed_ack_stall_ = true;
    }
    bool had_head = state_ == State::kReceivingBody;
    Parser::Outcome o = codec_.dispatch();
    if (!conn_) return;  // a callback released or failed the exchange
    if (tunnel_) {
      // The 101 switched protocols: what follows its head belongs to the tunnel.
      if (!c.input().empty()) tunnel_->on_read();
      return;
    }
    switch (o) {
      case Parser::Outcome::kNeedMore: {
        // A small read that left the response incomplete: the upstream may be holding the
        // rest until this is acknowledged (Nagle's algorithm against our delayed ACK).
        bool ack_at_once = got < net::kQuickAckReadBytes && codec_.mid_message() &&
                           cluster_.config().socket_options.quickack;
        if (ack_at_once) {
          net::ack_now(c.fd());
          ++cluster_.stats().quick_acks;
        }
        // Acknowledged at once, a late body is the upstream's own pace (or a busy machine's),
        // not a delayed ACK: only a head left waiting for the kernel's timer starts the clock.
        if (!had_head && !ack_at_once && state_ == State::kReceivingBody && codec_.mid_message()) {
          body_awaited_since_ = last_activity_;
        }
        return;
      }
      case Parser::Outcome::kMessageComplete:
        if (response_complete_) return deliver_completion();
        codec_.resume_next();  // an interim (1xx) response: the final one follows
        continue;
      case Parser::Outcome::kUpgrade:
      case Parser::Outcome::kStopped:
        return;
      case Parser::Outcome::kError: {
        std::string why =
            "invalid response from " + pool_.endpoint().to_string() + ": " + codec_.error().reason;
        return fail(ProxyError::upstream(ErrorKind::kProtocol, 0, why));
      }
    }
  }
}

void UpstreamExchange::on_read_closed() {
  if (!conn_) return;
  // A response delimited by the close of the connection ends here.
  if (codec_.mid_message() && !codec_.in_head()) {
    if (codec_.finish() == Parser::Outcome::kMessageComplete && response_complete_) {
      return deliver_completion();
    }
  }
  if (response_complete_) return;
  std::string why =
      fmt::format("upstream {} closed the connection {}", pool_.endpoint().to_string(),
                  response_started() ? "mid-response" : "before responding");
  fail(ProxyError::upstream(ErrorKind::kReset, 0, why));
}

void UpstreamExchange::on_write_drained() {
  callbacks_.on_upstream_drained(*this);
}

std::string UpstreamExchange::error_text(int err) const {
  // A TLS alert (the upstream refused our certificate after the handshake, say) says more
  // than "protocol error".
  const net::Transport* t = conn_->connection().transport();
  if (err == EPROTO && t && !t->failure().empty()) return fmt::format("TLS: {}", t->failure());
  return net::error_text(err);
}

void UpstreamExchange::on_error(int err) {
  if (!conn_) return;
  // ECONNABORTED comes from sluice itself: the pool closed the connection because its
  // address left the DNS answer (on_address_change: close).
  closed_by_sluice_ = err == ECONNABORTED;
  std::string why =
      closed_by_sluice_
          ? fmt::format(
                "upstream connection to {} closed: its address left the DNS answer "
                "(on_address_change: close)",
                conn_->peer().to_string())
          : fmt::format("upstream {} {}: {}", conn_->peer().to_string(),
                        response_started() ? "failed mid-response" : "reset", error_text(err));
  // A connection sluice closed itself names no network error to the client.
  fail(ProxyError::upstream(ErrorKind::kReset, closed_by_sluice_ ? 0 : err, why));
}

bool UpstreamExchange::on_head(sluice::http::StreamId, MessageHead& head) {
  if (http2_conn_) {
    last_activity_ = pool_.loop().now();
    if (first_byte_at_ == MonoTime{}) first_byte_at_ = last_activity_;
  }
  interim_ = head.status >= 100 && head.status < 200 && head.status != 101;
  if (!interim_ && state_ != State::kReceivingBody) transition(State::kReceivingBody);
  bool go_on = callbacks_.on_response_head(*this, head);
  if (!go_on) stopped_ = true;
  return go_on;
}

void UpstreamExchange::on_data(sluice::http::StreamId, std::string_view data, bool end) {
  if (http2_conn_) {
    last_activity_ = pool_.loop().now();
    if (response_bytes_ == 0) first_byte_at_ = last_activity_;
    response_bytes_ += data.size();
    // The window reopens as the bytes are passed on; pause_response() holds it shut.
    if (!data.empty()) http2_conn_->codec().consumed(http2_stream_, data.size());
  }
  if (!data.empty() && !stopped_) callbacks_.on_response_data(*this, data);
  if (end) {
    HeaderMap none;
    on_message_complete(none);
  }
}

void UpstreamExchange::on_trailers(sluice::http::StreamId, HeaderMap& trailers) {
  on_message_complete(trailers);
}

void UpstreamExchange::on_message_complete(HeaderMap& trailers) {
  if (interim_) {
    interim_ = false;
    return;
  }
  if (stopped_) return;
  // Delivered once the parser has returned and the bytes are consumed: the Stream may hand
  // the connection back to the pool, where the next request must find a clean input.
  response_complete_ = true;
  trailers_ = std::move(trailers);
  // HTTP/2: the stream is done with; nothing of the connection's input is ours to clean.
  if (http2_conn_) deliver_completion();
}

void UpstreamExchange::on_reset(sluice::http::StreamId, const sluice::http::StreamReset& r) {
  if (!http2_conn_ || completion_delivered_) return;
  refused_ = r.refused;
  closed_by_sluice_ = r.reason == upstream::pool::kClosedBySluice;
  std::string_view reason = r.reason.empty() ? std::string_view("no reason given") : r.reason;
  std::string why =
      r.refused
          ? fmt::format("upstream {} refused the HTTP/2 stream: {}", endpoint_address().to_string(),
                        reason)
          : fmt::format("HTTP/2 stream to upstream {} ended{}: {}", endpoint_address().to_string(),
                        response_started() ? " mid-response" : " before a response", reason);
  fail(ProxyError::upstream(ErrorKind::kReset, 0, why));
}

void UpstreamExchange::on_stream_drained(sluice::http::StreamId) {
  callbacks_.on_upstream_drained(*this);
}

void UpstreamExchange::deliver_completion() {
  if (completion_delivered_) return;
  completion_delivered_ = true;
  callbacks_.on_response_complete(*this, trailers_);
}

}  // namespace sluice::proxy::http
