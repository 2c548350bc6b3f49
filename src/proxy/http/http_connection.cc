#include "proxy/http/http_connection.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <random>

#include <fmt/format.h>

#include "base/json.h"
#include "base/log.h"
#include "http/http1/encoder.h"
#include "net/connect.h"
#include "net/socket.h"
#include "net/tcp_info.h"
#include "proxy/http/header_mutation.h"
#include "proxy/http/router.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::http1::Parser;
namespace h1 = sluice::http::http1;

namespace {

// Request body bytes buffered while no upstream connection is ready; past this, stop reading.
constexpr size_t kPendingBodyHighWatermark = 256 * 1024;
// After a response that closes the connection, how long to wait for the client's FIN
// before closing (so unread bytes do not turn our FIN into a RST).
constexpr auto kLingerTime = std::chrono::seconds(2);

// A uniformly distributed value in [0, 1): the jitter of a retry's backoff.
double random_unit() {
  return static_cast<double>(thread_random() >> 11) * 0x1.0p-53;
}

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

// Reused for serialising heads and chunks: one per worker thread rather than one per
// connection, so an idle connection keeps no such memory.
std::string& scratch() {
  thread_local std::string s;
  return s;
}

// The body of an error reply, before it is serialised into scratch().
std::string& scratch_body() {
  thread_local std::string s;
  return s;
}

}  // namespace

// After a 101, the upstream connection's events: bytes go straight to the client.
struct HttpConnection::Tunnel final : net::ConnectionCallbacks {
  HttpConnection& c;
  explicit Tunnel(HttpConnection& hc) : c(hc) {}
  void on_read() override {
    net::Connection* u = c.stream_->attempt->connection();
    c.conn_.write(u->input().view());
    u->input().consume(u->input().size());
    if (c.conn_.above_high_watermark()) u->set_read_enabled(false);
  }
  void on_read_closed() override {
    upstream_done = true;
    c.conn_.shutdown_write();
    if (downstream_done) c.close("tunnel finished");
  }
  void on_write_drained() override { c.conn_.set_read_enabled(true); }
  void on_error(int) override { c.abort("tunnel upstream failed"); }
  bool upstream_done = false;
  bool downstream_done = false;
};

// --- Attempt ---------------------------------------------------------------------------

Attempt::Attempt(HttpConnection& owner, upstream::Cluster& cluster, size_t endpoint, bool fresh)
    : owner_(owner),
      cluster_(cluster),
      pool_(cluster.pool(endpoint)),
      waiter_(pool_, *this),
      parser_(Parser::Kind::kResponse, Parser::kDefaultLimits, *this),
      endpoint_(endpoint),
      fresh_(fresh),
      timer_(pool_.loop().timers(), [this] {
        const Route& r = *owner_.stream_->route;
        MonoTime due = MonoTime::max();
        if (r.per_try_timeout.count() > 0) due = started_ + r.per_try_timeout;
        if (r.upstream_idle_timeout.count() > 0) {
          due = std::min(due, last_activity_ + r.upstream_idle_timeout);
        }
        if (pool_.loop().now() < due) {
          timer_.arm_at(due);
          return;
        }
        std::string why = fmt::format("upstream {} timed out", pool_.endpoint().to_string());
        release(false);
        owner_.on_attempt_failed(ProxyError::upstream(ErrorKind::kTimeout, 0, why));
      }) {
  cluster_.request_started(endpoint_);
}

Attempt::~Attempt() {
  release(false);
  cluster_.request_finished(endpoint_);
}

void Attempt::start() {
  started_ = pool_.loop().now();
  owner_.stream_->log.attempt_started = started_;
  owner_.stream_->endpoint = endpoint_;
  last_activity_ = started_;
  const std::string& method = owner_.stream_->request.method;
  parser_.set_no_body_expected(method == "HEAD");
  // RFC 9110 §9.3.6: a 2xx answer to CONNECT has no body: the tunnel follows.
  parser_.set_connect_request(method == "CONNECT");
  pool_.acquire(waiter_, fresh_);
}

void Attempt::release(bool reusable) {
  waiter_.cancel();
  timer_.cancel();
  if (!conn_) return;
  auto* c = conn_;
  conn_ = nullptr;
  pool_.release(*c, reusable);
}

void Attempt::send(std::string_view bytes) {
  if (conn_) conn_->connection().write(bytes);
}

void Attempt::on_pool_ready(upstream::pool::PooledConnection& conn) {
  conn_ = &conn;
  reused_ = conn.reused();
  RequestLog& log = owner_.stream_->log;
  log.pool_ready = pool_.loop().now();
  cluster_.stats().pool_wait.observe(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(log.pool_ready - started_).count()));
  bool opened_for_us = conn.requests() <= 1 && !conn.warm();
  log.upstream_connect = opened_for_us ? conn.connect_time() : Duration(0);
  if (opened_for_us) ++cluster_.stats().connect_attempts;
  conn.set_borrower(this);
  last_activity_ = pool_.loop().now();
  const Route& r = *owner_.stream_->route;
  MonoTime due = MonoTime::max();
  if (r.per_try_timeout.count() > 0) due = started_ + r.per_try_timeout;
  if (r.upstream_idle_timeout.count() > 0) {
    due = std::min(due, last_activity_ + r.upstream_idle_timeout);
  }
  if (due != MonoTime::max()) timer_.arm_at(due);
  owner_.on_attempt_ready();
}

void Attempt::on_pool_failure(upstream::pool::PoolFailure reason, const std::string& detail) {
  using upstream::pool::PoolFailure;
  switch (reason) {
    case PoolFailure::kConnectFailure:
      return owner_.on_attempt_failed(
          ProxyError::upstream(ErrorKind::kConnectFailure, errno_named_in(detail), detail));
    case PoolFailure::kConnectTimeout:
      return owner_.on_attempt_failed(
          ProxyError::upstream(ErrorKind::kConnectTimeout, ETIMEDOUT, detail));
    case PoolFailure::kOverflow:
      return owner_.on_attempt_failed(ProxyError::upstream(ErrorKind::kPoolOverflow, 0, detail));
    case PoolFailure::kPendingTimeout:
      return owner_.on_attempt_failed(ProxyError::upstream(ErrorKind::kPoolTimeout, 0, detail));
  }
}

void Attempt::on_read() {
  parse_response();
}

void Attempt::parse_response() {
  while (conn_) {
    net::Connection& c = conn_->connection();
    if (c.input().empty()) return;
    last_activity_ = pool_.loop().now();
    if (response_bytes_ == 0) owner_.stream_->log.upstream_first_byte = last_activity_;
    response_bytes_ += c.input().size();
    size_t consumed = 0;
    Parser::Outcome o = parser_.execute(c.input().view(), &consumed);
    c.input().consume(consumed);
    if (!conn_) return;  // a callback released or failed the attempt
    if (owner_.tunnel_) {
      // The 101 switched protocols: what follows its head belongs to the tunnel.
      if (!c.input().empty()) owner_.tunnel_callbacks_->on_read();
      return;
    }
    switch (o) {
      case Parser::Outcome::kNeedMore:
        return;
      case Parser::Outcome::kMessageComplete:
        if (response_complete_) return deliver_completion();
        parser_.resume();  // an interim (1xx) response: the final one follows
        continue;
      case Parser::Outcome::kUpgrade:
        return;  // the owner switched to a tunnel
      case Parser::Outcome::kStopped:
        return;
      case Parser::Outcome::kError: {
        std::string why =
            "invalid response from " + pool_.endpoint().to_string() + ": " + parser_.error().reason;
        release(false);
        owner_.on_attempt_failed(ProxyError::upstream(ErrorKind::kProtocol, 0, why));
        return;
      }
    }
  }
}

void Attempt::on_read_closed() {
  if (!conn_) return;
  // A response delimited by the close of the connection ends here.
  if (parser_.mid_message() && !parser_.in_head()) {
    if (parser_.finish() == Parser::Outcome::kMessageComplete && response_complete_) {
      return deliver_completion();
    }
  }
  if (response_complete_) return;
  std::string why =
      fmt::format("upstream {} closed the connection {}", pool_.endpoint().to_string(),
                  response_started() ? "mid-response" : "before responding");
  release(false);
  owner_.on_attempt_failed(ProxyError::upstream(ErrorKind::kReset, 0, why));
}

void Attempt::on_write_drained() {
  // The upstream took the body bytes we queued: read more from the client.
  if (owner_.conn_.open() && !owner_.tunnel_) owner_.conn_.set_read_enabled(true);
  if (owner_.tunnel_ && owner_.conn_.open()) owner_.conn_.set_read_enabled(true);
}

void Attempt::on_error(int err) {
  if (!conn_) return;
  aborted_by_sluice_ = err == ECONNABORTED;
  // ECONNABORTED comes from sluice itself: the pool closed the connection because its
  // address left the DNS answer (on_address_change: close).
  std::string why =
      err == ECONNABORTED
          ? fmt::format(
                "upstream connection to {} closed: its address left the DNS answer "
                "(on_address_change: close)",
                conn_->peer().to_string())
          : fmt::format("upstream {} {}: {}", conn_->peer().to_string(),
                        response_started() ? "failed mid-response" : "reset", net::error_text(err));
  release(false);
  // A connection sluice closed itself names no network error to the client.
  owner_.on_attempt_failed(
      ProxyError::upstream(ErrorKind::kReset, aborted_by_sluice_ ? 0 : err, why));
}

bool Attempt::on_head(MessageHead& head) {
  interim_ = head.status >= 100 && head.status < 200 && head.status != 101;
  return owner_.on_response_head(head);
}
void Attempt::on_body(std::string_view data) {
  if (!discard_response_) owner_.on_response_body(data);
}
void Attempt::on_message_complete(HeaderMap& trailers) {
  if (interim_) {
    interim_ = false;
    return;
  }
  if (discard_response_) return;
  // Delivered once the parser has returned and the bytes are consumed: the owner may hand
  // the connection back to the pool, where the next request must find a clean input.
  response_complete_ = true;
  trailers_ = std::move(trailers);
}

void Attempt::deliver_completion() {
  if (completion_delivered_) return;
  completion_delivered_ = true;
  owner_.on_response_complete(trailers_);
}

// --- HttpConnection --------------------------------------------------------------------

HttpConnection::HttpConnection(HttpProxy& proxy, const net::Address& peer)
    : proxy_(proxy),
      peer_(peer),
      conn_(proxy.loop_, *this),
      parser_(Parser::Kind::kRequest, proxy.parser_limits_, *this),
      timer_(proxy.loop_.timers(), [this] { on_timer(); }) {}

HttpConnection::~HttpConnection() = default;

void HttpConnection::start(net::Fd fd) {
  if (Status s = conn_.adopt(std::move(fd)); !s) {
    LOG_WARN("http {}: {}: {}", proxy_.config_->name, peer_.to_string(), s.message());
    close("cannot watch connection");
    return;
  }
  // A new connection must send its first request head within header_read_timeout.
  arm_timer(TimerMode::kHead, proxy_.config_->http.header_read_timeout);
  conn_.flush();
}

void HttpConnection::arm_timer(TimerMode mode, Duration d) {
  timer_mode_ = mode;
  if (d.count() <= 0) {
    timer_.cancel();
    return;
  }
  timer_.arm_at(proxy_.loop_.now() + d);
}

void HttpConnection::on_timer() {
  const HttpOptions& o = proxy_.config_->http;
  switch (timer_mode_) {
    case TimerMode::kNone:
      return;
    case TimerMode::kKeepalive:
      return close("keep-alive idle timeout");
    case TimerMode::kHead:
      LOG_INFO("http {}: {}: no complete request head within {}", proxy_.config_->name,
               peer_.to_string(), format_duration(o.header_read_timeout));
      if (stream_) return abort("header read timeout");
      return send_error_reply(ProxyError::downstream(ErrorKind::kHeaderTimeout), true);
    case TimerMode::kBody: {
      MonoTime due = last_body_activity_ + o.body_idle_timeout;
      if (proxy_.loop_.now() < due) {
        timer_.arm_at(due);
        return;
      }
      if (stream_ && !stream_->committed) {
        drop_attempt();
        return send_error_reply(ProxyError::downstream(ErrorKind::kBodyTimeout), true);
      }
      return abort("request body idle timeout");
    }
  }
}

void HttpConnection::close(const char* reason) {
  if (closed_) return;
  closed_ = true;
  LOG_DEBUG("http {}: {} closed: {}", proxy_.config_->name, peer_.to_string(), reason);
  timer_.cancel();
  if (linger_) linger_->cancel();
  if (stream_) {
    if (stream_->deadline) stream_->deadline->cancel();
    if (stream_->retry_timer) stream_->retry_timer->cancel();
    drop_attempt();
    // A request cut short (client gone, upstream failed mid-response, a tunnel ending) is
    // still timed and logged, with what it got to.
    if (!stream_->log.recorded) {
      add_flag(ResponseFlag::kIncomplete);
      record_end(*stream_);
    }
  }
  conn_.close();
  proxy_.remove(this);
}

void HttpConnection::record_end(Stream& s) {
  if (s.log.recorded) return;
  s.log.recorded = true;
  auto us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(proxy_.loop_.now() - s.started)
          .count());
  proxy_.stats_.request_duration.observe(us);
  if (s.route) {
    auto& routes = proxy_.stats_.routes;
    if (routes.size() <= s.route->id) routes.resize(s.route->id + 1);
    auto& rs = routes[s.route->id];
    if (s.log.status >= 100 && s.log.status < 600) ++rs.responses[s.log.status / 100 - 1];
    rs.duration.observe(us);
  }
  if (proxy_.access_log_) write_access_log(s);
}

void HttpConnection::abort(const char* reason) {
  LOG_INFO("http {}: {}: aborting: {}", proxy_.config_->name, peer_.to_string(), reason);
  drop_attempt();
  conn_.close(true);
  close(reason);
}

void HttpConnection::drain() {
  if (!stream_ && !closed_) close("draining");
}

bool HttpConnection::will_log(Stream& s) {
  RequestLog& log = s.log;
  if (log.log_decided) return log.log;
  log.log_decided = true;
  log.log = should_log(proxy_.config_->access_log, log.status, log.failed(),
                       proxy_.loop_.now() - log.first_byte_in);
  return log.log;
}

void HttpConnection::write_access_log(Stream& s) {
  if (!will_log(s)) return;
  std::string endpoint = s.cluster && s.endpoint < s.cluster->endpoint_count()
                             ? s.cluster->endpoint(s.endpoint).address.to_string()
                             : std::string();
  std::string peer = peer_.to_string();
  RequestLog::Names names{proxy_.config_->name,
                          peer,
                          s.request.method,
                          s.request.target,
                          s.cluster ? std::string_view(s.cluster->config().name) : "",
                          endpoint};
  std::string line;
  line.reserve(512);
  s.log.append_json(names, proxy_.loop_.now(), line);
  proxy_.access_log_->write(line);
}

void HttpConnection::add_flag(ResponseFlag flag) {
  if (stream_) stream_->log.add(flag);
}

// --- downstream input ------------------------------------------------------------------

void HttpConnection::on_read() {
  if (closing_) {
    conn_.input().clear();  // after the last response: read and drop until the client's FIN
    return;
  }
  if (tunnel_) {
    Attempt* a = stream_ ? stream_->attempt.get() : nullptr;
    if (a && a->connection()) {
      a->connection()->write(conn_.input().view());
      conn_.input().consume(conn_.input().size());
      if (a->connection()->above_high_watermark()) conn_.set_read_enabled(false);
    }
    return;
  }
  process_input();
}

void HttpConnection::process_input() {
  while (!closed_ && conn_.open() && !closing_ && !tunnel_) {
    // One request at a time: the next waits, parser paused, until this response is done.
    if (stream_ && stream_->request_complete) return;
    // A client that sends requests without reading the answers: stop reading it until the
    // responses queued for it drain (on_write_drained), instead of queueing without bound.
    if (!stream_ && conn_.above_high_watermark()) {
      conn_.set_read_enabled(false);
      return;
    }
    if (conn_.input().empty()) return;
    bool was_idle = !parser_.mid_message();
    if (was_idle && !stream_) request_first_byte_ = proxy_.loop_.now();
    size_t consumed = 0;
    in_parser_ = true;
    Parser::Outcome o = parser_.execute(conn_.input().view(), &consumed);
    in_parser_ = false;
    if (closed_) return;
    conn_.input().consume(consumed);
    if (resume_after_parse_) {
      // The request was answered from inside the parser (a local reply): go on with the next.
      resume_after_parse_ = false;
      parser_.resume();
    }
    if (was_idle && parser_.in_head() && timer_mode_ == TimerMode::kKeepalive) {
      arm_timer(TimerMode::kHead, proxy_.config_->http.header_read_timeout);
    }
    switch (o) {
      case Parser::Outcome::kNeedMore:
        return;
      case Parser::Outcome::kMessageComplete:
        continue;
      case Parser::Outcome::kUpgrade:
        return;
      case Parser::Outcome::kStopped:
        return;
      case Parser::Outcome::kError: {
        ++proxy_.stats_.parse_errors;
        const auto& e = parser_.error();
        LOG_INFO("http {}: {}: rejecting request ({}): {}", proxy_.config_->name, peer_.to_string(),
                 e.status, e.reason);
        if (stream_ && stream_->committed) return abort("invalid request body");
        drop_attempt();
        std::string body = e.reason + "\n";
        send_error_reply(ProxyError::downstream(ErrorKind::kBadRequest, e.status, e.reason), true,
                         body);
        return;
      }
    }
  }
}

void HttpConnection::on_read_closed() {
  if (tunnel_) {
    Attempt* a = stream_ ? stream_->attempt.get() : nullptr;
    if (a && a->connection()) a->connection()->shutdown_write();
    tunnel_callbacks_->downstream_done = true;
    if (tunnel_callbacks_->upstream_done) close("tunnel finished");
    return;
  }
  // After the last response: close once it has gone out (else the linger timer decides).
  if (linger_) {
    if (conn_.queued() == 0) close("client closed after the last response");
    return;
  }
  if (!stream_) {
    if (parser_.mid_message()) LOG_DEBUG("http: client closed mid-request-head");
    return close("client closed");
  }
  if (!stream_->request_complete) {
    add_flag(ResponseFlag::kDownstreamReset);
    return abort("client closed before sending the whole request");
  }
  // The client half-closed after a complete request: answer, then close.
  stream_->close_after = true;
}

void HttpConnection::on_write_drained() {
  if (linger_ || closed_) return;
  Attempt* a = stream_ ? stream_->attempt.get() : nullptr;
  if (a && a->connection()) a->connection()->set_read_enabled(true);
  // Reading may have stopped for a client that did not read its responses.
  if (!stream_ && !tunnel_ && !closing_ && !conn_.read_enabled()) conn_.set_read_enabled(true);
}

void HttpConnection::on_error(int err) {
  if (stream_) add_flag(ResponseFlag::kDownstreamReset);
  LOG_DEBUG("http {}: {}: {}", proxy_.config_->name, peer_.to_string(), net::error_text(err));
  close("downstream error");
}

// --- request ---------------------------------------------------------------------------

bool HttpConnection::on_head(MessageHead& head) {
  const HttpOptions& o = proxy_.config_->http;
  stream_ = std::make_unique<Stream>();
  Stream& s = *stream_;
  s.started = proxy_.loop_.now();
  s.log.head_done = s.started;
  s.log.first_byte_in = request_first_byte_ == MonoTime{} ? s.started : request_first_byte_;
  s.request = std::move(head);
  if (proxy_.access_log_) {
    s.log.wall_start = std::chrono::system_clock::now();
    // The Host as received: the head itself becomes the upstream head.
    if (const std::string* host = s.request.headers.get("host")) s.log.host = *host;
  }
  ++requests_;
  ++proxy_.stats_.requests;
  last_body_activity_ = s.started;
  arm_timer(TimerMode::kBody, o.body_idle_timeout);
  route_request(s);
  return !closing_ && !closed_;
}

void HttpConnection::route_request(Stream& s) {
  const HttpOptions& o = proxy_.config_->http;
  MessageHead& req = s.request;
  if (req.method == "CONNECT" && !o.allow_connect) {
    s.local_reply_pending = true;
    s.local_status = 405;
    s.local_body = "CONNECT is not enabled on this listener\n";
    s.local_flag = std::nullopt;
    return;
  }
  std::string_view path, query, authority;
  bool connect = req.method == "CONNECT";
  if (connect) {
    // RFC 9110 §9.3.6: the target is host:port. It selects the virtual host, and the
    // route is matched as if the path were "/"; a 2xx answer turns into a tunnel.
    authority = req.target;
    path = "/";
  } else {
    split_target(req.target, &path, &query, &authority);
  }
  // RFC 9112 §3.2.2: with an absolute-form target, its authority is the host; Host is
  // replaced by it.
  if (!authority.empty()) {
    req.headers.set("Host", std::string(authority));
    if (proxy_.access_log_) s.log.host = authority;
  }
  const std::string* host = req.headers.get("host");
  std::string_view host_name = host ? host_without_port(*host) : std::string_view();
  const VirtualHost* vh = match_virtual_host(o, host_name);
  const Route* route = nullptr;
  if (vh) {
    RequestView view{host_name, req.method, path, query, &req.headers};
    route = match_route(*vh, view);
  }
  if (!route) {
    s.local_reply_pending = true;
    s.local_status = 404;
    s.local_body = "no route matches this request\n";
    s.local_flag = ResponseFlag::kNoRoute;
    return;
  }
  s.route = route;
  uint64_t max_body = route->max_body_bytes ? route->max_body_bytes : o.max_body_bytes;
  if (max_body && req.content_length && *req.content_length > max_body) {
    send_error_reply(ProxyError::downstream(ErrorKind::kBodyTooLarge), true,
                     fmt::format("request body larger than {} bytes\n", max_body));
    return;
  }
  s.expect_continue = req.version_minor >= 1 && req.headers.has_token("expect", "100-continue");
  switch (route->action) {
    case Route::Action::kDirectResponse:
      s.local_reply_pending = true;
      s.local_status = route->direct_status;
      s.local_body = route->direct_body;
      s.local_flag = ResponseFlag::kDirectResponse;
      return;
    case Route::Action::kRedirect:
      s.local_reply_pending = true;
      s.local_status = route->redirect_status;
      s.location = route->redirect_location;
      s.local_flag = ResponseFlag::kRedirect;
      return;
    case Route::Action::kForward:
      break;
  }
  auto it = proxy_.clusters_.find(route->cluster);
  s.cluster = it == proxy_.clusters_.end() ? nullptr : it->second;
  if (!s.cluster) {
    s.local_reply_pending = true;
    s.local_status = 503;
    s.local_body = "the route's cluster is unknown\n";
    s.local_flag = std::nullopt;
    return;
  }
  if (!s.cluster->try_start_request()) {
    s.local_reply_pending = true;
    s.local_status = 503;
    s.local_body = fmt::format("cluster {}: max_active_requests {} reached\n", route->cluster,
                               s.cluster->config().circuit_breakers.max_active_requests);
    s.local_flag = ResponseFlag::kOverflowActiveRequests;
    return;
  }
  s.holds_request_slot = true;
  s.upgrade = connect || (req.upgrade && req.headers.has_token("connection", "upgrade"));
  s.retry.emplace(route->retry, sluice::http::is_idempotent(req.method));
  // The hash key reads the request as received: before its head is rewritten.
  compute_hash(s);
  build_upstream_head(s);
  if (route->timeout.count() > 0) {
    s.deadline = std::make_unique<event::Timer>(proxy_.loop_.timers(), [this] {
      ++proxy_.stats_.upstream_timeouts;
      add_flag(ResponseFlag::kUpstreamTimeout);
      if (!stream_) return;
      if (stream_->committed) return abort("route timeout after the response started");
      drop_attempt();
      if (stream_->retry_timer) stream_->retry_timer->cancel();
      send_error_reply(ProxyError::local(ErrorKind::kRouteTimeout), !stream_->request_complete);
    });
    s.deadline->arm_at(s.started + route->timeout);
  }
  start_attempt(false);
}

void HttpConnection::build_upstream_head(Stream& s) {
  const HttpOptions& o = proxy_.config_->http;
  // The request's own head is rewritten in place (no copy of its fields) and serialised
  // once; what the access log and the hash need of the original was taken before.
  std::string ip = peer_.ip_string();
  UpstreamIds ids;
  to_upstream(*s.route, s.request,
              DownstreamInfo{ip, o.trust_forwarded_headers, o.generate_request_id}, s.upgrade,
              thread_random, ids);
  s.log.request_id = std::move(ids.request_id);
  s.log.traceparent = std::move(ids.traceparent);
  std::string target = upstream_target(*s.route, s.request);
  s.upstream_head.clear();
  std::swap(target, s.request.target);
  h1::encode_request_head(s.request, s.upstream_head);
  std::swap(target, s.request.target);
}

HttpConnection::Stream::~Stream() {
  if (holds_request_slot) cluster->finish_request();
  if (holds_retry_slot) cluster->finish_retry();
}

void HttpConnection::compute_hash(Stream& s) {
  auto policy = s.cluster->config().lb.policy;
  if (policy != upstream::lb::Policy::kRingHash && policy != upstream::lb::Policy::kMaglev) return;
  using Kind = HashPolicy::Kind;
  for (const HashPolicy& h : s.route->hash_policy) {
    switch (h.kind) {
      case Kind::kHeader:
        if (const std::string* v = s.request.headers.get(h.name)) {
          s.hash = upstream::lb::hash_key(*v);
          return;
        }
        break;
      case Kind::kCookie:
        if (auto v = find_cookie(s.request.headers, h.name)) {
          s.hash = upstream::lb::hash_key(*v);
          return;
        }
        break;
      case Kind::kQueryParameter: {
        std::string_view path, query;
        split_target(s.request.target, &path, &query);
        if (auto v = find_query_parameter(query, h.name)) {
          s.hash = upstream::lb::hash_key(*v);
          return;
        }
        break;
      }
      case Kind::kSourceIp:
        s.hash = upstream::lb::hash_key(peer_.ip_string());
        return;
    }
  }
}

void HttpConnection::start_attempt(bool fresh) {
  Stream& s = *stream_;
  auto& cluster = *s.cluster;
  if (!cluster.has_endpoints()) {
    ++cluster.stats().no_healthy_endpoint;
    std::string body = fmt::format("no healthy endpoint in cluster {}\n", cluster.config().name);
    if (s.log.attempts == 0 && !s.request_complete && !s.upgrade) {
      // Still inside the request head: answer once the body has been read (an upgrade has
      // no body to wait for: it is answered below, and the connection closed).
      s.local_reply_pending = true;
      s.local_status = 503;
      s.local_body = std::move(body);
      s.local_flag = ResponseFlag::kNoHealthyUpstream;
      return;
    }
    return send_error_reply(ProxyError::local(ErrorKind::kNoHealthyUpstream), !s.request_complete,
                            body);
  }
  size_t ep = cluster.pick(upstream::lb::PickContext{s.tried, s.hash});
  if (!fresh) s.tried.push_back(ep);
  ++s.log.attempts;
  s.attempt = std::make_unique<Attempt>(*this, cluster, ep, fresh);
  s.attempt->start();
}

void HttpConnection::on_attempt_ready() {
  Stream& s = *stream_;
  if (s.log.attempts > 1 && !s.retry->replayable()) {
    // The body outgrew the replay buffer while the retry waited: it cannot be re-sent whole.
    drop_attempt();
    return send_error_reply(ProxyError::local(ErrorKind::kNotReplayable), true);
  }
  Attempt& a = *s.attempt;
  a.send(s.upstream_head);
  // A first attempt sends what queued up while it connected; a retry re-sends everything
  // (a retry only happens while every byte sent is still in replay_body).
  a.send(s.log.attempts == 1 ? s.pending_body.view() : s.replay_body.view());
  s.pending_body.clear();
  s.pending_body.release();
  if (s.request_complete) s.log.request_sent = proxy_.loop_.now();
  if (s.expect_continue && !s.sent_100_continue && !s.request_complete) {
    s.sent_100_continue = true;
    conn_.write("HTTP/1.1 100 Continue\r\n\r\n");
  }
  if (a.connection() && !conn_.read_enabled() && !a.connection()->above_high_watermark()) {
    conn_.set_read_enabled(true);
  }
}

void HttpConnection::send_body_upstream(std::string_view framed) {
  Stream& s = *stream_;
  if (s.retry->replayable()) {
    // Bodies up to the route's replay buffer are kept until the response starts, so that a
    // failed attempt can be re-sent; larger ones stream without a copy and are not re-sent.
    if (s.replay_body.size() + framed.size() <= s.route->retry.replay_buffer_bytes) {
      s.replay_body.append(framed);
    } else {
      s.retry->set_not_replayable();
      s.replay_body.clear();
      s.replay_body.release();
    }
  }
  Attempt* a = s.attempt.get();
  if (a && a->connection() && !a->connection()->connecting()) {
    a->send(framed);
    if (a->connection() && a->connection()->above_high_watermark()) conn_.set_read_enabled(false);
  } else {
    s.pending_body.append(framed);
    if (s.pending_body.size() >= kPendingBodyHighWatermark) conn_.set_read_enabled(false);
  }
}

void HttpConnection::on_body(std::string_view data) {
  if (!stream_) return;
  Stream& s = *stream_;
  s.log.request_body_bytes += data.size();
  last_body_activity_ = proxy_.loop_.now();
  const HttpOptions& o = proxy_.config_->http;
  uint64_t max_body =
      s.route && s.route->max_body_bytes ? s.route->max_body_bytes : o.max_body_bytes;
  if (max_body && s.log.request_body_bytes > max_body) {
    if (s.committed) return abort("request body too large");
    drop_attempt();
    send_error_reply(ProxyError::downstream(ErrorKind::kBodyTooLarge), true,
                     fmt::format("request body larger than {} bytes\n", max_body));
    return;
  }
  if (s.local_reply_pending || !s.cluster) return;  // discarded
  if (s.request.chunked) {
    scratch().clear();
    h1::encode_chunk(data, scratch());
    send_body_upstream(scratch());
  } else {
    send_body_upstream(data);
  }
}

void HttpConnection::on_message_complete(HeaderMap& trailers) {
  if (!stream_) return;
  Stream& s = *stream_;
  s.request_complete = true;
  if (timer_mode_ == TimerMode::kBody || timer_mode_ == TimerMode::kHead) {
    arm_timer(TimerMode::kNone, Duration(0));
  }
  if (s.upgrade) return;  // the tunnel starts with the 101
  if (s.local_reply_pending) {
    s.local_reply_pending = false;
    return send_local_reply(s.local_status, s.local_body, false, s.local_flag);
  }
  if (s.request.chunked && s.cluster) {
    scratch().clear();
    h1::encode_last_chunk(trailers, scratch());
    send_body_upstream(scratch());
  }
  if (s.attempt && s.attempt->connection() && !s.attempt->connection()->connecting()) {
    s.log.request_sent = proxy_.loop_.now();
  }
}

// --- attempts, retries ----------------------------------------------------------------

bool HttpConnection::retry_admitted() {
  Stream& s = *stream_;
  if (s.holds_retry_slot) return true;  // one slot covers all of a request's retries
  if (!s.cluster->try_start_retry()) {
    add_flag(ResponseFlag::kRetryOverflow);
    return false;
  }
  s.holds_retry_slot = true;
  return true;
}

RetryDecision HttpConnection::decide_retry(const TryOutcome& t) {
  Stream& s = *stream_;
  RetryState& r = *s.retry;
  // The budget is asked only for a retry the policy wants (a refusal is flagged).
  bool admitted =
      !r.stale_resend_allowed(t) && !s.upgrade && r.policy_allows(t) && retry_admitted();
  return r.on_failure(t, admitted, random_unit());
}

void HttpConnection::schedule_retry(std::string_view why, Duration after) {
  Stream& s = *stream_;
  ++proxy_.stats_.retries;
  add_flag(ResponseFlag::kRetried);
  LOG_DEBUG("http {}: {}: retry {} of {} in {}us: {}", proxy_.config_->name, peer_.to_string(),
            s.retry->retries(), s.route->retry.num_retries,
            std::chrono::duration_cast<std::chrono::microseconds>(after).count(), why);
  if (!s.retry_timer) {
    s.retry_timer = std::make_unique<event::Timer>(proxy_.loop_.timers(), [this] {
      if (stream_) start_attempt(false);
    });
  }
  s.retry_timer->arm_at(proxy_.loop_.now() + after);
}

void HttpConnection::on_attempt_failed(const ProxyError& e) {
  if (!stream_) return;
  Stream& s = *stream_;
  std::unique_ptr<Attempt> failed = std::move(s.attempt);
  TryOutcome t{e, failed && failed->reused(), failed && failed->response_started(),
               failed && failed->aborted_by_sluice()};
  size_t endpoint = failed ? failed->endpoint() : 0;
  bool failed_endpoint = failed != nullptr;
  if (failed) {
    failed->release(false);
    retire(std::move(failed));
  }
  bool connect = e.kind == ErrorKind::kConnectFailure || e.kind == ErrorKind::kConnectTimeout;
  if (connect) {
    ++s.cluster->stats().connect_attempts;
    ++s.cluster->stats().connect_failures;
  }
  bool stale = t.reused_connection && !t.response_started && e.kind == ErrorKind::kReset &&
               !t.closed_by_sluice;
  // Connect failures, resets, timeouts and malformed responses are the endpoint's doing; a
  // full pool, a keep-alive race or a connection sluice closed are not.
  if (failed_endpoint && !stale && !t.closed_by_sluice && e.retryable &&
      e.kind != ErrorKind::kRetryableStatus) {
    s.cluster->report(endpoint, upstream::health::Outcome::kGatewayFailure);
  }
  if (s.committed) {
    LOG_INFO("http {}: {}: {}", proxy_.config_->name, peer_.to_string(), e.detail);
    return abort("upstream failed mid-response");
  }
  RetryDecision d = decide_retry(t);
  switch (d.verdict) {
    case RetryVerdict::kResendFresh:
      ++s.log.attempts;
      ++proxy_.stats_.stale_connection_retries;
      add_flag(ResponseFlag::kStaleConnectionRetried);
      LOG_DEBUG("http {}: {}: re-sending on a fresh connection: {}", proxy_.config_->name,
                peer_.to_string(), e.detail);
      s.attempt = std::make_unique<Attempt>(*this, *s.cluster, endpoint, true);
      s.attempt->start();
      return;
    case RetryVerdict::kRetry:
      return schedule_retry(e.detail, d.after);
    case RetryVerdict::kGiveUp:
      break;
  }
  LOG_WARN("http {}: {}: {} {}: {}", proxy_.config_->name, peer_.to_string(), s.request.method,
           s.request.target, e.detail);
  if (e.kind == ErrorKind::kTimeout) ++proxy_.stats_.upstream_timeouts;
  send_error_reply(e, !s.request_complete);
}

void HttpConnection::send_error_reply(const ProxyError& e, bool close_connection,
                                      std::string_view body) {
  if (!stream_) {
    stream_ = std::make_unique<Stream>();
    stream_->started = proxy_.loop_.now();
  }
  if (!e.detail.empty() && proxy_.access_log_) stream_->log.detail = e.detail;
  if (!body.empty()) return send_local_reply(e.status(), body, close_connection, e.flag());
  std::string& text = scratch_body();
  text.clear();
  e.append_client_body(proxy_.config_->http.local_reply_detail_full, text);
  send_local_reply(e.status(), text, close_connection, e.flag());
}

void HttpConnection::drop_attempt() {
  if (!stream_ || !stream_->attempt) return;
  auto a = std::move(stream_->attempt);
  a->release(false);
  retire(std::move(a));
}

void HttpConnection::retire(std::unique_ptr<Attempt> attempt) {
  struct Holder : event::DeferredDeletable {
    std::unique_ptr<Attempt> a;
  };
  auto h = std::make_unique<Holder>();
  h->a = std::move(attempt);
  proxy_.loop_.defer_delete(std::move(h));
}

// --- response --------------------------------------------------------------------------

bool HttpConnection::on_response_head(MessageHead& head) {
  Stream& s = *stream_;
  Attempt& a = *s.attempt;
  if (head.status >= 100 && head.status < 200 && head.status != 101) {
    // Interim responses go to HTTP/1.1 clients; our own 100 Continue already went out.
    if (s.request.version_minor >= 1 && !(head.status == 100 && s.sent_100_continue)) {
      interim_to_downstream(head);
      scratch().clear();
      h1::encode_response_head(head, scratch());
      conn_.write(scratch());
    }
    return true;
  }
  bool connect = s.request.method == "CONNECT";
  // The parser expected a switch that did not happen: the connection cannot carry on.
  if (s.upgrade && head.status != 101 && !(connect && head.status / 100 == 2)) {
    s.close_after = true;
  }
  s.cluster->report(a.endpoint_, head.status < 500 ? upstream::health::Outcome::kSuccess
                                 : (head.status >= 502 && head.status <= 504)
                                     ? upstream::health::Outcome::kGatewayFailure
                                     : upstream::health::Outcome::kError5xx);
  if (!s.upgrade) {
    TryOutcome t{ProxyError::upstream(ErrorKind::kRetryableStatus, head.status), a.reused(), true,
                 false};
    if (s.retry->policy_allows(t)) {
      RetryDecision d = decide_retry(t);
      if (d.verdict == RetryVerdict::kRetry) {
        a.discard_response_ = true;
        schedule_retry(
            fmt::format("status {} from {}", head.status, a.pool_.endpoint().to_string()), d.after);
        auto failed = std::move(s.attempt);
        failed->release(false);
        retire(std::move(failed));
        return false;
      }
    }
  }
  if (auto ka = keepalive_timeout(head.headers); ka && a.conn_)
    a.conn_->learn_keepalive_timeout(*ka);
  if (!head.keep_alive && a.conn_) a.conn_->learn_keepalive_timeout(Duration(0));

  s.log.status = head.status;
  s.committed = true;
  count_status(head.status);
  bool upgrade = s.upgrade && (head.status == 101 || (connect && head.status / 100 == 2));
  bool client_11 = s.request.version_minor >= 1;
  s.response_no_body =
      s.request.method == "HEAD" || head.status == 204 || head.status == 304 || upgrade;
  to_downstream(*s.route, head, upgrade);

  const HttpOptions& o = proxy_.config_->http;
  bool close = s.close_after || !s.request.keep_alive || proxy_.draining_ ||
               (o.max_requests_per_connection && requests_ >= o.max_requests_per_connection) ||
               !s.request_complete;
  if (!s.response_no_body) {
    if (head.content_length) {
      head.headers.set("Content-Length", std::to_string(*head.content_length));
    } else if (client_11) {
      s.response_chunked = true;
      head.headers.add("Transfer-Encoding", "chunked");
    } else {
      // An HTTP/1.0 client without a length: the body ends when we close.
      s.response_close_delimited = true;
      close = true;
    }
  }
  if (upgrade) {
    if (!connect) head.headers.set("Connection", "upgrade");
  } else if (close) {
    s.close_after = true;
    head.headers.add("Connection", "close");
  } else if (!client_11) {
    head.headers.add("Connection", "keep-alive");
  }
  scratch().clear();
  h1::encode_response_head(head, scratch());
  conn_.write(scratch());
  if (upgrade) {
    enter_tunnel();
    return false;
  }
  return true;
}

void HttpConnection::on_response_body(std::string_view data) {
  Stream& s = *stream_;
  if (s.response_no_body) return;
  s.log.response_body_bytes += data.size();
  if (s.response_chunked) {
    scratch().clear();
    h1::encode_chunk(data, scratch());
    conn_.write(scratch());
  } else {
    conn_.write(data);
  }
  Attempt* a = s.attempt.get();
  if (conn_.above_high_watermark() && a && a->connection()) {
    a->connection()->set_read_enabled(false);
  }
}

void HttpConnection::on_response_complete(HeaderMap& trailers) {
  Stream& s = *stream_;
  Attempt& a = *s.attempt;
  if (s.response_chunked) {
    scratch().clear();
    h1::encode_last_chunk(trailers, scratch());
    conn_.write(scratch());
  }
  bool reusable = s.request_complete && a.parser_.error().reason.empty();
  if (proxy_.access_log_ && a.connection() && will_log(s)) {
    // The upstream connection's transport view as the response ends: a slow answer with
    // retransmissions points at the network, one without at the upstream itself.
    if (auto ti = net::read_tcp_info(a.connection()->fd(), /*congestion=*/false)) {
      s.log.have_tcp_info = true;
      s.log.upstream_rtt_us = ti->rtt_us;
      s.log.upstream_retransmits = ti->total_retrans;
    }
    // An endpoint with several addresses: say which one this connection went to.
    if (s.cluster && s.endpoint < s.cluster->endpoint_count() &&
        !s.cluster->endpoint(s.endpoint).fallbacks.empty()) {
      if (auto peer = net::peer_address(a.connection()->fd())) {
        s.log.upstream_address = peer->to_string();
      }
    }
  }
  auto done = std::move(s.attempt);
  done->release(reusable);
  retire(std::move(done));
  finish_stream();
}

void HttpConnection::enter_tunnel() {
  Stream& s = *stream_;
  tunnel_ = true;
  arm_timer(TimerMode::kNone, Duration(0));
  if (s.deadline) s.deadline->cancel();
  Attempt& a = *s.attempt;
  a.timer_.cancel();  // per-try and idle limits are for requests, not for tunnels
  net::Connection* up = a.connection();
  if (!up) return abort("upstream gone at upgrade");
  // Whatever followed the 101 in the upstream's input belongs to the tunnel.
  // (The parser stopped right after the head.)
  tunnel_callbacks_ = std::make_unique<Tunnel>(*this);
  a.conn_->set_borrower(tunnel_callbacks_.get());
  if (!conn_.input().empty()) on_read();
}

// --- replies and the end of a request --------------------------------------------------

void HttpConnection::count_status(int status) {
  auto& st = proxy_.stats_;
  if (status < 200)
    ++st.responses_1xx;
  else if (status < 300)
    ++st.responses_2xx;
  else if (status < 400)
    ++st.responses_3xx;
  else if (status < 500)
    ++st.responses_4xx;
  else
    ++st.responses_5xx;
}

void HttpConnection::send_local_reply(int status, std::string_view body, bool close_connection,
                                      std::optional<ResponseFlag> flag) {
  if (closed_) return;
  if (!stream_) {
    stream_ = std::make_unique<Stream>();
    stream_->started = proxy_.loop_.now();
  }
  Stream& s = *stream_;
  if (flag) add_flag(*flag);
  if (s.committed) return abort("local reply after the response started");
  ++proxy_.stats_.local_replies;
  s.committed = true;
  s.log.status = status;
  count_status(status);
  if (s.deadline) s.deadline->cancel();
  if (s.retry_timer) s.retry_timer->cancel();
  bool close = close_connection || s.close_after || !s.request.keep_alive || proxy_.draining_ ||
               (proxy_.config_->http.max_requests_per_connection &&
                requests_ >= proxy_.config_->http.max_requests_per_connection);
  MessageHead head;
  head.status = status;
  if (!s.location.empty()) head.headers.add("Location", s.location);
  if (s.route && s.route->action != Route::Action::kForward) {
    for (const auto& h : s.route->response_headers_to_add) head.headers.add(h.name, h.value);
  }
  head.headers.add("Content-Length", std::to_string(body.size()));
  if (!body.empty()) head.headers.add("Content-Type", "text/plain");
  if (close) head.headers.add("Connection", "close");
  scratch().clear();
  h1::encode_response_head(head, scratch());
  if (s.request.method != "HEAD") {
    scratch().append(body);
    s.log.response_body_bytes += body.size();
  }
  conn_.write(scratch());
  s.close_after = close;
  finish_stream();
}

void HttpConnection::finish_stream() {
  if (closed_) return;
  Stream& s = *stream_;
  record_end(s);
  if (log::enabled(log::Level::kDebug)) {
    std::string flags;
    s.log.flags.append_names(flags);
    LOG_DEBUG("http {}: {} \"{} {}\" {} flags={} in {}us", proxy_.config_->name, peer_.to_string(),
              s.request.method, s.request.target, s.log.status, flags,
              std::chrono::duration_cast<std::chrono::microseconds>(proxy_.loop_.now() - s.started)
                  .count());
  }
  bool close_conn = s.close_after || s.response_close_delimited;
  if (s.deadline) s.deadline->cancel();
  if (s.retry_timer) s.retry_timer->cancel();
  drop_attempt();
  // Keep the stream's timers alive until the iteration ends: one of them may be running.
  struct Holder : event::DeferredDeletable {
    std::unique_ptr<Stream> s;
  };
  auto h = std::make_unique<Holder>();
  h->s = std::move(stream_);
  proxy_.loop_.defer_delete(std::move(h));

  if (close_conn) {
    closing_ = true;
    arm_timer(TimerMode::kNone, Duration(0));
    conn_.shutdown_write();
    // Lingering close: wait (briefly) for the client's FIN so bytes it already sent do not
    // make the kernel answer our FIN with a RST that could destroy the response in flight.
    // The response may still be queued for a slow reader: the time runs out only when a
    // whole linger period passes without the queue shrinking.
    linger_queued_ = conn_.queued();
    linger_ = std::make_unique<event::Timer>(proxy_.loop_.timers(), [this] {
      size_t queued = conn_.queued();
      if (queued > 0 && queued < linger_queued_) {
        linger_queued_ = queued;
        linger_->arm_at(proxy_.loop_.now() + kLingerTime);
        return;
      }
      close(queued > 0 ? "client stopped reading the last response" : "linger time over");
    });
    linger_->arm_at(proxy_.loop_.now() + kLingerTime);
    return;
  }
  arm_timer(TimerMode::kKeepalive, proxy_.config_->http.keepalive_timeout);
  if (in_parser_) {
    resume_after_parse_ = true;  // process_input() resumes once the parser returns
    return;
  }
  parser_.resume();
  if (!conn_.read_enabled()) conn_.set_read_enabled(true);
  process_input();
}

// --- HttpProxy -------------------------------------------------------------------------

HttpProxy::HttpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                     ClusterMap clusters, std::shared_ptr<std::atomic<uint32_t>> active_connections)
    : loop_(loop),
      config_(std::move(config)),
      clusters_(std::move(clusters)),
      active_connections_(std::move(active_connections)),
      parser_limits_{config_->http.max_head_bytes, config_->http.max_headers,
                     config_->http.max_uri_bytes} {
  size_t routes = 0;
  for (const auto& vh : config_->http.virtual_hosts) routes += vh.routes.size();
  stats_.routes.resize(routes);
}

HttpProxy::~HttpProxy() {
  on_idle_ = nullptr;
  close_all();
}

void HttpProxy::on_accept(net::Fd fd, const net::Address& peer) {
  uint32_t now_active = active_connections_->fetch_add(1, std::memory_order_relaxed) + 1;
  if (config_->max_connections != 0 && now_active > config_->max_connections) {
    active_connections_->fetch_sub(1, std::memory_order_relaxed);
    ++stats_.refused_max_connections;
    if (loop_.now() - last_refusal_log_ >= std::chrono::seconds(1)) {
      LOG_WARN("listener {}: refusing {}: max_connections {} reached", config_->name,
               peer.to_string(), config_->max_connections);
      last_refusal_log_ = loop_.now();
    }
    return;
  }
  if (draining_) {
    active_connections_->fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  ++stats_.accepted;
  auto* c = new HttpConnection(*this, peer);
  c->next = head_;
  if (head_) head_->prev = c;
  head_ = c;
  ++connections_;
  c->start(std::move(fd));
}

void HttpProxy::remove(HttpConnection* c) {
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    head_ = c->next;
  }
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --connections_;
  active_connections_->fetch_sub(1, std::memory_order_relaxed);
  loop_.defer_delete(std::unique_ptr<event::DeferredDeletable>(c));
  if (connections_ == 0 && on_idle_) on_idle_();
}

void HttpProxy::report_connections(std::vector<net::ConnectionReport>& out) const {
  for (const HttpConnection* c = head_; c; c = c->next) {
    if (c->fd() < 0) continue;
    out.push_back(net::describe_connection(c->fd(), "downstream", config_->name,
                                           c->busy() ? "request" : "idle"));
  }
}

void HttpProxy::drain() {
  draining_ = true;
  HttpConnection* c = head_;
  while (c) {
    HttpConnection* next = c->next;
    c->drain();
    c = next;
  }
}

void HttpProxy::close_all() {
  while (head_) head_->close("shutdown");
}

}  // namespace sluice::proxy::http
