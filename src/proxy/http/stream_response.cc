// The response side of a Stream: the upstream's response towards the client, local
// replies, and the request's end (its counters and access-log line).
#include "proxy/http/stream.h"

#include <fmt/format.h>

#include "base/log.h"
#include "http/http1/encoder.h"
#include "net/tcp_info.h"
#include "proxy/http/grpc.h"
#include "proxy/http/header_mutation.h"
#include "proxy/http/http_proxy.h"
#include "proxy/http/stream_scratch.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
namespace h1 = sluice::http::http1;

// --- the response ----------------------------------------------------------------------

bool Stream::on_response_head(UpstreamExchange& x, MessageHead& head) {
  if (head.status >= 100 && head.status < 200 && head.status != 101) {
    // Interim responses go to HTTP/1.1 clients; our own 100 Continue already went out.
    if (request_.version_minor >= 1 && !(head.status == 100 && sent_100_continue_)) {
      interim_to_downstream(head);
      callbacks_.codec().send_interim(id_, head);
    }
    return true;
  }
  log_.upstream_first_byte = x.first_byte_at();
  bool connect = request_.method == "CONNECT";
  // The parser expected a switch that did not happen: the connection cannot carry on.
  if (upgrade_ && head.status != 101 && !(connect && head.status / 100 == 2)) close_after_ = true;
  cluster_->report(x.endpoint(), head.status < 500 ? upstream::health::Outcome::kSuccess
                                 : (head.status >= 502 && head.status <= 504)
                                     ? upstream::health::Outcome::kGatewayFailure
                                     : upstream::health::Outcome::kError5xx);
  if (head.status == 425 && early_data_ && !early_retried_) {
    // RFC 8470 §5.2: the upstream will not act on early data; send the request again once the
    // client's handshake is complete, without Early-Data.
    early_retried_ = true;
    drop_exchange();
    request_.headers.remove("early-data");
    std::string why = fmt::format("425 Too Early from {}: again after the handshake",
                                  x.endpoint_address().to_string());
    if (callbacks_.downstream_secured()) {
      schedule_retry(why, Duration(0));
    } else {
      waiting_for_handshake_ = true;
      transition(State::kWaitingForUpstream);
    }
    return false;
  }
  if (!upgrade_) {
    TryOutcome t{ProxyError::upstream(ErrorKind::kRetryableStatus, head.status), x.reused(), true,
                 false};
    // A gRPC call answered trailers-only: its status is in the head, nothing was sent yet.
    const std::string* grpc_status = grpc_ ? head.headers.get("grpc-status") : nullptr;
    if (grpc_status) t.grpc_status = parse_grpc_status(*grpc_status);
    if (retry_->policy_allows(t)) {
      RetryDecision d = decide_retry(t);
      if (d.verdict == RetryVerdict::kRetry) {
        std::string why = grpc_status ? fmt::format("grpc-status {} from {}", *grpc_status,
                                                    x.endpoint_address().to_string())
                                      : fmt::format("status {} from {}", head.status,
                                                    x.endpoint_address().to_string());
        drop_exchange();
        schedule_retry(why, d.after);
        return false;
      }
    }
  }
  x.learn_keepalive(head);

  log_.status = head.status;
  committed_ = true;
  transition(State::kSendingResponse);
  count_status(head.status);
  bool upgrade = upgrade_ && (head.status == 101 || (connect && head.status / 100 == 2));
  // A gRPC answer with its status in the head is trailers-only: it ends with its HEADERS,
  // as gRPC clients require (a status followed by an empty DATA would be no status at all).
  bool trailers_only = grpc_ && head.headers.get("grpc-status") != nullptr;
  response_no_body_ = request_.method == "HEAD" || head.status == 204 || head.status == 304 ||
                      upgrade || trailers_only;
  to_downstream(*route_, head, upgrade);

  bool close = close_after_ || !request_.keep_alive || !callbacks_.keep_alive_allowed() ||
               !request_complete_;
  // The codec frames the response (and may need the connection's end to delimit it).
  bool closes = callbacks_.codec().send_head(
      id_, head, sluice::http::ResponseOptions{response_no_body_, upgrade, connect, close});
  if (closes) close_after_ = true;
  if (upgrade) {
    transition(State::kTunnel);
    callbacks_.on_stream_tunnel(x);
    return false;
  }
  return true;
}

void Stream::on_response_data(UpstreamExchange& x, std::string_view data) {
  if (response_no_body_) return;
  log_.response_body_bytes += data.size();
  callbacks_.codec().send_data(id_, data);
  if (callbacks_.downstream_above_high_watermark()) x.pause_response();
}

void Stream::on_response_complete(UpstreamExchange& x, HeaderMap& trailers) {
  if (size_t n = remove_forbidden_trailers(trailers)) {
    proxy_.stats().trailers_dropped += n;
    log_.add(ResponseFlag::kTrailerDropped);
  }
  if (!response_no_body_) callbacks_.codec().send_trailers(id_, trailers);
  bool reusable = request_complete_ && x.response_clean();
  if (x.delayed_ack_stall()) {
    log_.add(ResponseFlag::kDelayedAckStall);
    ++cluster_->stats().delayed_ack_stalls;
  }
  // A request the dashboard may keep among the slowest gets the same figures.
  bool recent = proxy_.recent().wants_slow(
      static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(proxy_.loop().now() - started_)
              .count()),
      proxy_.loop().now());
  if (x.transport() && (recent || (proxy_.access_log() && will_log()))) {
    // The upstream connection's transport view as the response ends: a slow answer with
    // retransmissions points at the network, one without at the upstream itself.
    read_upstream_tcp_info(x);
    // An endpoint with several addresses: say which one this connection went to.
    if (cluster_ && endpoint_ < cluster_->endpoint_count() &&
        !cluster_->endpoint(endpoint_).fallbacks.empty()) {
      if (auto peer = net::peer_address(x.transport()->fd())) {
        log_.upstream_address = peer->to_string();
      }
    }
  }
  auto done = std::move(exchange_);
  done->release(reusable);
  retire(std::move(done));
  finish();
}

namespace {
// How old a connection's TCP_INFO figures may be before a logged request reads them again,
// and how long an exchange may take before its request reads them again whatever their age.
constexpr auto kTcpInfoMaxAge = std::chrono::seconds(1);
constexpr auto kTcpInfoSlowExchange = std::chrono::milliseconds(10);
}  // namespace

void Stream::read_upstream_tcp_info(UpstreamExchange& x) {
  // The figures logged (the smoothed RTT, the retransmissions so far) move slowly on a
  // connection serving request after request, and a system call per logged request is a
  // large part of what logging costs. So they are read once per connection per
  // kTcpInfoMaxAge, and again at once for an exchange slow enough to have lost a segment
  // (a retransmission waits for a timeout or for duplicate ACKs): the line that explains a
  // slow answer reads them fresh.
  MonoTime now = proxy_.loop().now();
  upstream::pool::PooledConnection* pooled = x.pooled_transport();
  upstream::pool::PooledConnection::TcpInfoCache* cache =
      pooled ? &pooled->tcp_info_cache() : nullptr;
  bool fresh = cache && cache->read_at != MonoTime{} && now - cache->read_at < kTcpInfoMaxAge &&
               now - x.started_at() < kTcpInfoSlowExchange;
  if (!fresh) {
    auto ti = net::read_tcp_info(x.transport()->fd(), /*congestion=*/false);
    if (!ti) return;
    if (!cache) {
      log_.have_tcp_info = true;
      log_.upstream_rtt_us = ti->rtt_us;
      log_.upstream_retransmits = ti->total_retrans;
      return;
    }
    *cache = {now, ti->rtt_us, ti->total_retrans};
  }
  log_.have_tcp_info = true;
  log_.upstream_rtt_us = cache->rtt_us;
  log_.upstream_retransmits = cache->total_retrans;
}

// --- local replies and the end ---------------------------------------------------------

void Stream::count_status(int status) {
  auto& st = proxy_.stats();
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

void Stream::send_error_reply(const ProxyError& e, bool close_connection, std::string_view body) {
  // The record keeps the cause for the access log and for the dashboard's failed requests.
  if (!e.detail.empty()) log_.detail = e.detail;
  if (!body.empty()) return send_local_reply(e.status(), body, close_connection, e.flag());
  std::string& text = scratch_body();
  text.clear();
  e.append_client_body(config_->http.local_reply_detail_full, text);
  send_local_reply(e.status(), text, close_connection, e.flag());
}

void Stream::send_local_reply(int status, std::string_view body, bool close_connection,
                              std::optional<ResponseFlag> flag) {
  if (state_ == State::kDone || state_ == State::kReset) return;
  if (flag) log_.add(*flag);
  if (committed_) return reset("local reply after the response started");
  ++proxy_.stats().local_replies;
  committed_ = true;
  log_.status = status;
  count_status(status);
  transition(State::kSendingResponse);
  // A request that asked to switch protocols and gets a local reply instead cannot be
  // followed on this connection: what the client sent after it is not HTTP.
  bool close = close_connection || close_after_ || request_.upgrade || !request_.keep_alive ||
               !callbacks_.keep_alive_allowed();
  MessageHead head;
  head.status = status;
  if (grpc_) return send_grpc_reply(status, body, close);
  if (route_ && route_->action == Route::Action::kRedirect) {
    head.headers.add("Location", route_->redirect_location);
  }
  if (route_ && route_->action != Route::Action::kForward) {
    for (const auto& h : route_->response_headers_to_add) head.headers.add(h.name, h.value);
  }
  head.content_length = body.size();
  head.headers.add("Content-Length", std::to_string(body.size()));
  if (!body.empty()) head.headers.add("Content-Type", "text/plain");
  bool head_request = request_.method == "HEAD";
  sluice::http::ServerCodec& codec = callbacks_.codec();
  close_after_ =
      codec.send_head(id_, head, sluice::http::ResponseOptions{head_request, false, false, close});
  if (!head_request) {
    codec.send_data(id_, body);
    log_.response_body_bytes += body.size();
    // The end of the response (HTTP/2: END_STREAM; HTTP/1 needs none after Content-Length).
    codec.send_trailers(id_, sluice::http::HeaderMap{});
  }
  finish();
}

void Stream::send_grpc_reply(int status, std::string_view body, bool close) {
  // A trailers-only response (gRPC over HTTP/2): HTTP 200, the call's status in the head.
  MessageHead head;
  head.status = 200;
  head.headers.add("content-type", "application/grpc");
  GrpcStatus g = grpc_status_for_http(status);
  head.headers.add("grpc-status", std::to_string(static_cast<int>(g)));
  while (!body.empty() && body.back() == '\n') body.remove_suffix(1);
  std::string message;
  append_grpc_message(body, message);
  if (!message.empty()) head.headers.add("grpc-message", std::move(message));
  log_.grpc_status = static_cast<int>(g);
  close_after_ = callbacks_.codec().send_head(
      id_, head, sluice::http::ResponseOptions{true, false, false, close});
  finish();
}

void Stream::finish() {
  record_end();
  if (log::enabled(log::Level::kDebug)) {
    std::string flags;
    log_.flags.append_names(flags);
    LOG_DEBUG("http {}: {} \"{} {}\" {} flags={} in {}us", config_->name, peer_.to_string(),
              request_.method, target(), log_.status, flags,
              std::chrono::duration_cast<std::chrono::microseconds>(proxy_.loop().now() - started_)
                  .count());
  }
  drop_exchange();
  transition(State::kDone);
  callbacks_.on_stream_done(close_after_);
}

void Stream::reset(const char* reason) {
  drop_exchange();
  transition(State::kReset);
  callbacks_.on_stream_reset(reason);
}

void Stream::on_connection_closed() {
  body_timer_.cancel();
  route_timer_.cancel();
  retry_timer_.cancel();
  drop_exchange();
  // A request cut short (client gone, upstream failed mid-response, a tunnel ending) is
  // still timed and logged, with what it got to.
  if (!log_.recorded) {
    log_.add(ResponseFlag::kIncomplete);
    record_end();
  }
  if (state_ != State::kDone && state_ != State::kReset) transition(State::kReset);
}

void Stream::record_end() {
  if (log_.recorded) return;
  log_.recorded = true;
  auto us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(proxy_.loop().now() - started_)
          .count());
  HttpProxyStats& stats = proxy_.stats();
  stats.request_duration.observe(us);
  if (route_) {
    auto& routes = stats.routes;
    if (routes.size() <= route_->id) routes.resize(route_->id + 1);
    auto& rs = routes[route_->id];
    if (log_.status >= 100 && log_.status < 600) ++rs.responses[log_.status / 100 - 1];
    rs.duration.observe(us);
  }
  offer_recent(us);
  if (proxy_.access_log()) write_access_log();
}

void Stream::offer_recent(uint64_t us) {
  RecentRequests& recent = proxy_.recent();
  MonoTime now = proxy_.loop().now();
  bool failed = log_.failed() || log_.status >= 500;
  bool slow = recent.wants_slow(us, now);
  if (!failed && !slow) return;
  RecentRequest r;
  r.duration_us = us;
  r.ended_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  r.failed = failed;
  append_record(r.record);
  if (!slow) return recent.add_failed(std::move(r));  // failed only: no copy
  if (failed) recent.add_failed(r);
  recent.add_slow(std::move(r), now);
}

bool Stream::will_log() {
  if (log_.log_decided) return log_.log;
  log_.log_decided = true;
  log_.log = should_log(config_->access_log, log_.status, log_.failed(),
                        proxy_.loop().now() - log_.first_byte_in);
  return log_.log;
}

void Stream::write_access_log() {
  if (!will_log()) return;
  // One buffer per worker thread, reused line after line.
  thread_local std::string line;
  line.clear();
  append_record(line);
  proxy_.access_log()->write(line);
}

void Stream::append_record(std::string& line) {
  std::string endpoint = cluster_ && endpoint_ < cluster_->endpoint_count()
                             ? cluster_->endpoint(endpoint_).address.to_string()
                             : std::string();
  std::string peer = peer_.to_string();
  // The head was rewritten in place for the upstream, leaving Host as received (or as the
  // absolute-form target named it) unless it had none.
  const std::string* host = host_added_ ? nullptr : request_.headers.get("host");
  RequestLog::Names names{config_->name,
                          peer,
                          request_.method,
                          target(),
                          host ? std::string_view(*host) : std::string_view(),
                          cluster_ ? std::string_view(cluster_->config().name) : "",
                          endpoint,
                          callbacks_.downstream_tls()};
  log_.append_json(names, proxy_.loop().now(), line);
}

}  // namespace sluice::proxy::http
