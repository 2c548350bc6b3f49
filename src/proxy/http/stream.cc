#include "proxy/http/stream.h"

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "http/http1/encoder.h"
#include "net/tcp_info.h"
#include "proxy/http/grpc.h"
#include "proxy/http/header_mutation.h"
#include "proxy/http/http_proxy.h"
#include "proxy/http/router.h"
#include "proxy/http/stream_scratch.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
namespace h1 = sluice::http::http1;

namespace {

// Request body bytes buffered while no upstream connection is ready; past this, stop reading.
constexpr size_t kPendingBodyHighWatermark = 256 * 1024;

// A uniformly distributed value in [0, 1): the jitter of a retry's backoff.
double random_unit(RandomSource random) {
  return static_cast<double>(random() >> 11) * 0x1.0p-53;
}

[[maybe_unused]] bool legal(Stream::State from, Stream::State to) {
  using S = Stream::State;
  if (from == S::kDone || from == S::kReset) return false;
  if (to == S::kReset || to == S::kDone) return true;
  if (from == S::kTunnel) return false;
  switch (to) {
    case S::kRouting:
      return from == S::kReceivingHead;
    case S::kWaitingForUpstream:
      return from == S::kRouting || from == S::kForwarding || from == S::kAwaitingResponse ||
             from == S::kWaitingForUpstream;
    case S::kForwarding:
      return from == S::kWaitingForUpstream;
    case S::kAwaitingResponse:
      return from == S::kWaitingForUpstream || from == S::kForwarding;
    case S::kSendingResponse:
      return true;  // a local reply may come from any live state
    case S::kTunnel:
      return from == S::kSendingResponse;  // the 101 (or CONNECT 2xx) went out
    default:
      return false;
  }
}

}  // namespace

const char* to_string(Stream::State s) {
  switch (s) {
    case Stream::State::kReceivingHead:
      return "receiving-head";
    case Stream::State::kRouting:
      return "routing";
    case Stream::State::kWaitingForUpstream:
      return "waiting-for-upstream";
    case Stream::State::kForwarding:
      return "forwarding";
    case Stream::State::kAwaitingResponse:
      return "awaiting-response";
    case Stream::State::kSendingResponse:
      return "sending-response";
    case Stream::State::kDone:
      return "done";
    case Stream::State::kTunnel:
      return "tunnel";
    case Stream::State::kReset:
      return "reset";
  }
  return "?";
}

Stream::Stream(HttpProxy& proxy, StreamCallbacks& callbacks, sluice::http::StreamId id,
               const net::Address& peer, MonoTime first_byte_in)
    : proxy_(proxy),
      config_(proxy.config_ptr()),
      callbacks_(callbacks),
      id_(id),
      peer_(peer),
      body_timer_(proxy.loop().timers(), [this] { on_body_timeout(); }),
      route_timer_(proxy.loop().timers(), [this] { on_route_timeout(); }),
      retry_timer_(proxy.loop().timers(), [this] { start_exchange(false); }) {
  started_ = proxy_.loop().now();
  log_.config_generation = proxy_.generation();
  log_.head_done = started_;
  log_.first_byte_in = first_byte_in == MonoTime{} ? started_ : first_byte_in;
}

Stream::~Stream() {
  if (exchange_) exchange_->release(false);
  exchange_.reset();
  if (holds_request_slot_) cluster_->finish_request();
  if (holds_retry_slot_) cluster_->finish_retry();
}

void Stream::transition(State to) {
  if (to == state_) return;
  LOG_DEBUG("http {}: {}: stream {} -> {}", config_->name, peer_.to_string(), to_string(state_),
            to_string(to));
  SLUICE_ASSERT(legal(state_, to));
  if (state_ == State::kWaitingForUpstream) retry_timer_.cancel();
  state_ = to;
  if (to == State::kDone || to == State::kReset || to == State::kTunnel) {
    body_timer_.cancel();
    route_timer_.cancel();
    retry_timer_.cancel();
  }
  if (to == State::kSendingResponse && !exchange_) {
    // A local reply: nothing upstream is waited for any more.
    route_timer_.cancel();
    retry_timer_.cancel();
  }
}

// --- the request -----------------------------------------------------------------------

void Stream::on_request_head(MessageHead& head) {
  request_ = std::move(head);
  if (log_.stream == 0 && request_.version_minor == 0) log_.protocol = "HTTP/1.0";
  // gRPC runs over HTTP/2 only; an HTTP/1 request that says it is gRPC gets HTTP answers.
  grpc_ = log_.stream != 0 && is_grpc_request(request_);
  ++proxy_.stats().requests;
  if (proxy_.access_log()) {
    log_.wall_start = std::chrono::system_clock::now();
  }
  last_body_activity_ = started_;
  if (config_->http.body_idle_timeout.count() > 0) {
    body_timer_.arm_at(started_ + config_->http.body_idle_timeout);
  }
  transition(State::kRouting);
  route();
}

uint64_t Stream::max_body_bytes() const {
  return route_ && route_->max_body_bytes ? route_->max_body_bytes : config_->http.max_body_bytes;
}

void Stream::reply_after_request(int status, std::string body, std::optional<ResponseFlag> flag) {
  pending_reply_.emplace(PendingReply{status, std::move(body), flag});
}

void Stream::route() {
  const HttpOptions& o = config_->http;
  MessageHead& req = request_;
  // RFC 9113 §3.1: the upgrade to h2c is obsolete. The parser reads such a request as an
  // ordinary one (req.upgrade is false); Upgrade and HTTP2-Settings are not forwarded.
  if (req.method == "CONNECT" && log_.stream != 0) {
    // An HTTP/2 CONNECT stream never ends its request: answered now.
    return send_local_reply(501, "CONNECT is not supported over HTTP/2\n", false, std::nullopt);
  }
  if (req.method == "CONNECT" && !o.allow_connect) {
    return reply_after_request(405, "CONNECT is not enabled on this listener\n", std::nullopt);
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
  if (!authority.empty()) req.headers.set("Host", std::string(authority));
  const std::string* host = req.headers.get("host");
  std::string_view host_name = host ? host_without_port(*host) : std::string_view();
  const VirtualHost* vh = match_virtual_host(o, host_name);
  const Route* route = nullptr;
  if (vh) {
    RequestView view{host_name, req.method, path, query, &req.headers};
    route = match_route(*vh, view);
  }
  if (!route) {
    return reply_after_request(404, "no route matches this request\n", ResponseFlag::kNoRoute);
  }
  route_ = route;
  uint64_t max_body = max_body_bytes();
  if (max_body && req.content_length && *req.content_length > max_body) {
    return send_error_reply(ProxyError::downstream(ErrorKind::kBodyTooLarge), true,
                            fmt::format("request body larger than {} bytes\n", max_body));
  }
  expect_continue_ = req.version_minor >= 1 && req.headers.has_token("expect", "100-continue");
  switch (route->action) {
    case Route::Action::kDirectResponse:
      return reply_after_request(route->direct_status, route->direct_body,
                                 ResponseFlag::kDirectResponse);
    case Route::Action::kRedirect:
      return reply_after_request(route->redirect_status, "", ResponseFlag::kRedirect);
    case Route::Action::kForward:
      break;
  }
  cluster_ = proxy_.cluster(route->cluster);
  if (!cluster_) return reply_after_request(503, "the route's cluster is unknown\n", std::nullopt);
  bool upgrade = connect || (req.upgrade && req.headers.has_token("connection", "upgrade"));
  if (upgrade && cluster_->speaks_http2()) {
    // An HTTP/2 upstream would need extended CONNECT (RFC 8441), which sluice does not speak.
    cluster_ = nullptr;
    return reply_after_request(501,
                               fmt::format("{} is not proxied to the HTTP/2 cluster {}\n",
                                           connect ? "CONNECT" : "an Upgrade", route->cluster),
                               std::nullopt);
  }
  if (!cluster_->try_start_request()) {
    std::string body = fmt::format("cluster {}: max_active_requests {} reached\n", route->cluster,
                                   cluster_->config().circuit_breakers.max_active_requests);
    return reply_after_request(503, std::move(body), ResponseFlag::kOverflowActiveRequests);
  }
  holds_request_slot_ = true;
  upgrade_ = upgrade;
  retry_.emplace(route->retry, sluice::http::is_idempotent(req.method));
  // The hash key reads the request as received: before its head is rewritten.
  hash_ = request_hash(*route, cluster_->config().lb.policy, req, peer_);
  // The request's own head is rewritten in place (no copy of its fields) and serialised
  // once; what the access log needs of the original was taken before.
  std::string ip = peer_.ip_string();
  UpstreamIds ids;
  // Host is the one field of the log the rewrite may change (it adds one when missing).
  host_added_ = req.headers.get("host") == nullptr;
  const DownstreamTls* tls = callbacks_.downstream_tls();
  // In early data the handshake (and what it proves) is not complete yet, but it is TLS.
  bool secure = tls != nullptr || !callbacks_.downstream_secured();
  DownstreamInfo info{ip, o.trust_forwarded_headers, o.generate_request_id, secure,
                      tls ? std::string_view(tls->client_cert_header) : std::string_view()};
  // gRPC needs TE: trailers on HTTP/2 (RFC 9113 §8.2.2 allows it there, and only it).
  bool te_trailers = (cluster_->speaks_http2() || cluster_->may_speak_http2()) &&
                     req.headers.has_token("te", "trailers");
  to_upstream(*route, req, info, upgrade_, proxy_.random(), ids);
  if (te_trailers) req.headers.add("te", "trailers");
  log_.request_id = std::move(ids.request_id);
  log_.traceparent = std::move(ids.traceparent);
  // From here on the head carries the upstream's target; the log keeps the client's.
  client_target_ = upstream_target(*route, req);
  std::swap(client_target_, req.target);
  Duration timeout = route->timeout;
  if (grpc_) {
    // The call's own deadline, when it is sooner than the route's.
    if (const std::string* t = request_.headers.get("grpc-timeout")) {
      if (auto d = parse_grpc_timeout(*t); d && (timeout.count() <= 0 || *d < timeout)) {
        timeout = std::max(*d, Duration(std::chrono::milliseconds(1)));
      }
    }
  }
  if (timeout.count() > 0) route_timer_.arm_at(started_ + timeout);
  transition(State::kWaitingForUpstream);
  start_exchange(false);
}

void Stream::start_exchange(bool fresh) {
  if (state_ != State::kWaitingForUpstream) return;
  auto& cluster = *cluster_;
  if (!cluster.has_endpoints()) {
    ++cluster.stats().no_healthy_endpoint;
    std::string body = fmt::format("no healthy endpoint in cluster {}\n", cluster.config().name);
    if (log_.attempts == 0 && !request_complete_ && !upgrade_) {
      // Still inside the request: answer once the body has been read (an upgrade has no
      // body to wait for: it is answered now, and the connection closed).
      route_timer_.cancel();
      return reply_after_request(503, std::move(body), ResponseFlag::kNoHealthyUpstream);
    }
    return send_error_reply(ProxyError::local(ErrorKind::kNoHealthyUpstream), !request_complete_,
                            body);
  }
  size_t ep = cluster.pick(upstream::lb::PickContext{tried_, hash_});
  if (!fresh) tried_.push_back(ep);
  ++log_.attempts;
  endpoint_ = ep;
  // Whether a stale connection would be answered by sending the request again: it has no
  // body (or all of it is here and kept) and may be sent twice.
  bool bodyless = log_.stream == 0 && !request_.chunked && request_.content_length.value_or(0) == 0;
  bool resendable = !upgrade_ && (bodyless || request_complete_) && retry_->stale_resend_possible();
  ExchangeSettings settings{route_->per_try_timeout,
                            route_->upstream_idle_timeout,
                            request_.method == "HEAD",
                            request_.method == "CONNECT",
                            upgrade_,
                            resendable};
  exchange_ = std::make_unique<UpstreamExchange>(*this, cluster, ep, fresh, settings);
  log_.attempt_started = proxy_.loop().now();
  exchange_->start();
}

void Stream::on_exchange_ready(UpstreamExchange& x) {
  log_.pool_ready = x.ready_at();
  log_.upstream_connect = x.connect_time();
  log_.upstream_tls = x.tls_time();
  if (log_.attempts > 1 && !retry_->replayable()) {
    // The body outgrew the replay buffer while the retry waited: it cannot be re-sent whole.
    drop_exchange();
    return send_error_reply(ProxyError::local(ErrorKind::kNotReplayable), true);
  }
  // A first try sends what queued up while it connected; a retry re-sends everything (a
  // retry only happens while every byte sent is still in replay_body_).
  std::string_view body = log_.attempts == 1 ? pending_body_.view() : replay_body_.view();
  // Each send may fail the try at once (the codec refused the head, the connection broke)
  // and the failure may already have answered or started another try: then this one is over.
  bool no_body = request_complete_ && body.empty() && !request_.chunked;
  x.send_head(request_, no_body);
  if (exchange_.get() != &x) return;
  if (!no_body) x.send_body(body);
  if (exchange_.get() != &x) return;
  pending_body_.clear();
  pending_body_.release();
  if (request_complete_) {
    if (!no_body) x.send_end(request_trailers_);
    if (exchange_.get() != &x) return;
    log_.request_sent = proxy_.loop().now();
    transition(State::kAwaitingResponse);
  } else {
    transition(State::kForwarding);
  }
  if (expect_continue_ && !sent_100_continue_ && !request_complete_) {
    sent_100_continue_ = true;
    MessageHead interim;
    interim.status = 100;
    callbacks_.codec().send_interim(id_, interim);
  }
  if (x.ready() && !callbacks_.downstream_read_enabled() && !x.congested()) {
    callbacks_.set_downstream_read_enabled(true);
  }
}

void Stream::send_body_upstream(std::string_view data) {
  if (retry_->replayable()) {
    // Bodies up to the route's replay buffer are kept until the response starts, so that a
    // failed try can be re-sent; larger ones stream without a copy and are not re-sent.
    if (replay_body_.size() + data.size() <= route_->retry.replay_buffer_bytes) {
      replay_body_.append(data);
    } else {
      retry_->set_not_replayable();
      replay_body_.clear();
      replay_body_.release();
    }
  }
  UpstreamExchange* x = exchange_.get();
  if (x && x->ready()) {
    x->send_body(data);
    if (exchange_ && exchange_->congested()) callbacks_.set_downstream_read_enabled(false);
  } else {
    pending_body_.append(data);
    if (pending_body_.size() >= kPendingBodyHighWatermark) {
      callbacks_.set_downstream_read_enabled(false);
    }
  }
}

void Stream::on_request_data(std::string_view data) {
  log_.request_body_bytes += data.size();
  last_body_activity_ = proxy_.loop().now();
  uint64_t max_body = max_body_bytes();
  if (max_body && log_.request_body_bytes > max_body) {
    if (committed_) return reset("request body too large");
    drop_exchange();
    return send_error_reply(ProxyError::downstream(ErrorKind::kBodyTooLarge), true,
                            fmt::format("request body larger than {} bytes\n", max_body));
  }
  if (pending_reply_ || !cluster_) return;  // discarded
  send_body_upstream(data);
}

void Stream::on_request_complete(HeaderMap& trailers) {
  request_complete_ = true;
  body_timer_.cancel();
  if (upgrade_) return;  // the tunnel starts with the 101
  if (pending_reply_) {
    PendingReply r = std::move(*pending_reply_);
    pending_reply_.reset();
    return send_local_reply(r.status, r.body, false, r.flag);
  }
  if (!cluster_ || state_ == State::kDone) return;
  if (size_t n = remove_forbidden_trailers(trailers)) {
    proxy_.stats().trailers_dropped += n;
    log_.add(ResponseFlag::kTrailerDropped);
  }
  // Kept for a retry's re-send.
  request_trailers_ = std::move(trailers);
  if (exchange_ && exchange_->ready()) {
    log_.request_sent = proxy_.loop().now();
    UpstreamExchange* x = exchange_.get();
    x->send_end(request_trailers_);
    if (exchange_.get() == x && state_ == State::kForwarding) {
      transition(State::kAwaitingResponse);
    }
  }
}

void Stream::on_protocol_error(const sluice::http::http1::ParseError& e) {
  if (committed_) return reset("invalid request body");
  drop_exchange();
  std::string body = e.reason + "\n";
  send_error_reply(ProxyError::downstream(ErrorKind::kBadRequest, e.status, e.reason), true, body);
}

void Stream::on_body_timeout() {
  const HttpOptions& o = config_->http;
  MonoTime due = last_body_activity_ + o.body_idle_timeout;
  if (proxy_.loop().now() < due) {
    body_timer_.arm_at(due);
    return;
  }
  if (committed_) return reset("request body idle timeout");
  drop_exchange();
  send_error_reply(ProxyError::downstream(ErrorKind::kBodyTimeout), true);
}

void Stream::on_route_timeout() {
  ++proxy_.stats().upstream_timeouts;
  log_.add(ResponseFlag::kUpstreamTimeout);
  if (committed_) return reset("route timeout after the response started");
  drop_exchange();
  send_error_reply(ProxyError::local(ErrorKind::kRouteTimeout), !request_complete_);
}

void Stream::on_downstream_reset() {
  log_.add(ResponseFlag::kDownstreamReset);
}

void Stream::on_downstream_drained() {
  if (exchange_) exchange_->resume_response();
}

void Stream::on_upstream_drained(UpstreamExchange&) {
  // The upstream took the body bytes we queued: read more from the client.
  callbacks_.set_downstream_read_enabled(true);
}

// --- tries and retries -----------------------------------------------------------------

bool Stream::retry_admitted() {
  if (holds_retry_slot_) return true;  // one slot covers all of a request's retries
  if (!cluster_->try_start_retry()) {
    log_.add(ResponseFlag::kRetryOverflow);
    return false;
  }
  holds_retry_slot_ = true;
  return true;
}

RetryDecision Stream::decide_retry(const TryOutcome& t) {
  RetryState& r = *retry_;
  // The budget is asked only for a retry the policy wants (a refusal is flagged).
  bool admitted = !r.stale_resend_allowed(t) && !upgrade_ && r.policy_allows(t) && retry_admitted();
  return r.on_failure(t, admitted, random_unit(proxy_.random()));
}

void Stream::on_downstream_secured() {
  if (!waiting_for_handshake_) return;
  waiting_for_handshake_ = false;
  schedule_retry("the handshake is complete", Duration(0));
}

void Stream::schedule_retry(std::string_view why, Duration after) {
  ++proxy_.stats().retries;
  log_.add(ResponseFlag::kRetried);
  LOG_DEBUG("http {}: {}: retry {} of {} in {}us: {}", config_->name, peer_.to_string(),
            retry_->retries(), route_->retry.num_retries,
            std::chrono::duration_cast<std::chrono::microseconds>(after).count(), why);
  transition(State::kWaitingForUpstream);
  retry_timer_.arm_at(proxy_.loop().now() + after);
}

void Stream::on_exchange_failed(UpstreamExchange& x, const ProxyError& e) {
  std::unique_ptr<UpstreamExchange> failed = std::move(exchange_);
  SLUICE_ASSERT(failed.get() == &x);
  // A reset stream of a shared HTTP/2 connection is no keep-alive race: not "stale".
  TryOutcome t{
      e,          x.reused() && !x.http2(), x.response_started(), x.closed_by_sluice(), committed_,
      x.refused()};
  size_t endpoint = x.endpoint();
  if (x.first_byte_at() != MonoTime{}) log_.upstream_first_byte = x.first_byte_at();
  retire(std::move(failed));
  bool connect = e.kind == ErrorKind::kConnectFailure || e.kind == ErrorKind::kConnectTimeout;
  bool counted_elsewhere = x.failure_counted_elsewhere();
  if (connect && !counted_elsewhere) {
    ++cluster_->stats().connect_attempts;
    ++cluster_->stats().connect_failures;
  }
  bool stale = (t.reused_connection && !t.response_started && e.kind == ErrorKind::kReset &&
                !t.closed_by_sluice) ||
               t.refused;
  // Connect failures, resets, timeouts and malformed responses are the endpoint's doing; a
  // full pool, a keep-alive race or a connection sluice closed are not.
  if (!stale && !t.closed_by_sluice && !counted_elsewhere && e.retryable &&
      e.kind != ErrorKind::kRetryableStatus) {
    cluster_->report(endpoint, upstream::health::Outcome::kGatewayFailure);
  }
  if (committed_) {
    if (auto f = e.flag()) log_.add(*f);  // why the response was cut short
    LOG_INFO("http {}: {}: {}", config_->name, peer_.to_string(), e.detail);
    return reset("upstream failed mid-response");
  }
  RetryDecision d = decide_retry(t);
  switch (d.verdict) {
    case RetryVerdict::kResendFresh:
      ++log_.attempts;
      if (t.refused) {
        ++proxy_.stats().refused_stream_resends;
        log_.add(ResponseFlag::kRefusedStreamResent);
      } else {
        ++proxy_.stats().stale_connection_retries;
        log_.add(ResponseFlag::kStaleConnectionRetried);
      }
      LOG_DEBUG("http {}: {}: re-sending: {}", config_->name, peer_.to_string(), e.detail);
      transition(State::kWaitingForUpstream);
      exchange_ = std::make_unique<UpstreamExchange>(
          *this, *cluster_, endpoint, true,
          ExchangeSettings{route_->per_try_timeout, route_->upstream_idle_timeout,
                           request_.method == "HEAD", request_.method == "CONNECT", upgrade_});
      log_.attempt_started = proxy_.loop().now();
      exchange_->start();
      return;
    case RetryVerdict::kRetry:
      return schedule_retry(e.detail, d.after);
    case RetryVerdict::kGiveUp:
      break;
  }
  LOG_WARN("http {}: {}: {} {}: {}", config_->name, peer_.to_string(), request_.method, target(),
           e.detail);
  if (e.kind == ErrorKind::kTimeout) ++proxy_.stats().upstream_timeouts;
  send_error_reply(e, !request_complete_);
}

void Stream::drop_exchange() {
  if (!exchange_) return;
  auto x = std::move(exchange_);
  x->release(false);
  retire(std::move(x));
}

void Stream::retire(std::unique_ptr<UpstreamExchange> exchange) {
  // Its callback may be running: deleted once the loop iteration ends.
  proxy_.loop().defer_delete(std::move(exchange));
}

}  // namespace sluice::proxy::http
