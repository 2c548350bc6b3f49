#include "proxy/http/downstream_connection.h"
#include "net/socket_options.h"

#include "base/check.h"
#include "base/log.h"
#include "net/connect.h"
#include "proxy/http/http_proxy.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::http1::Parser;

namespace {

// After a response that closes the connection, how long to wait for the client's FIN
// before closing (so unread bytes do not turn our FIN into a RST).
constexpr auto kLingerTime = std::chrono::seconds(2);

// RFC 9113 §3.4: what an HTTP/2 client sends first.
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

[[maybe_unused]] bool legal(DownstreamConnection::State from, DownstreamConnection::State to) {
  using S = DownstreamConnection::State;
  switch (to) {
    case S::kDraining:
      return from == S::kActive;
    case S::kClosing:
      return from == S::kActive || from == S::kDraining;
    case S::kClosed:
      return from != S::kClosed;
    case S::kActive:
      return false;
  }
  return false;
}

}  // namespace

// An idle keep-alive connection is this object alone: keep it from growing back.
static_assert(sizeof(DownstreamConnection) <= 488,
              "DownstreamConnection grew: move what idle connections do not use into Extras");

const char* to_string(DownstreamConnection::State s) {
  switch (s) {
    case DownstreamConnection::State::kActive:
      return "active";
    case DownstreamConnection::State::kDraining:
      return "draining";
    case DownstreamConnection::State::kClosing:
      return "closing";
    case DownstreamConnection::State::kClosed:
      return "closed";
  }
  return "?";
}

// After a 101, the upstream connection's events: bytes go straight to the client, and the
// client's straight to the upstream (DownstreamConnection::on_read).
class DownstreamConnection::Tunnel final : public net::ConnectionCallbacks {
 public:
  Tunnel(DownstreamConnection& c, net::Connection& upstream) : c_(c), upstream_(upstream) {}
  void on_read() override {
    c_.conn_.write(upstream_.input().view());
    upstream_.input().consume(upstream_.input().size());
    if (c_.conn_.above_high_watermark()) upstream_.set_read_enabled(false);
  }
  void on_read_closed() override {
    upstream_done_ = true;
    c_.conn_.shutdown_write();
    if (downstream_done_) c_.close("tunnel finished");
  }
  void on_write_drained() override { c_.conn_.set_read_enabled(true); }
  void on_error(int) override { c_.abort("tunnel upstream failed"); }

  net::Connection& upstream() { return upstream_; }
  // The client closed its side.
  void downstream_closed() {
    upstream_.shutdown_write();
    downstream_done_ = true;
    if (upstream_done_) c_.close("tunnel finished");
  }

 private:
  DownstreamConnection& c_;
  net::Connection& upstream_;
  bool upstream_done_ = false;
  bool downstream_done_ = false;
};

// What only some connections use: TLS, HTTP/2, a tunnel, a lingering close.
struct DownstreamConnection::Extras final : public Http2SessionOwner {
  explicit Extras(DownstreamConnection& c) : connection(c) {}
  // Http2SessionOwner
  void on_session_finished(const char* reason) override { connection.on_session_finished(reason); }
  const DownstreamTls* session_tls() const override { return tls.get(); }

  DownstreamConnection& connection;
  MonoTime accepted_at{};  // TLS: the handshake's duration is measured from here
  size_t linger_queued = 0;
  std::unique_ptr<DownstreamTls> tls;  // once the TLS handshake is done
  // The TLS handshake's own deadline: requests in early data may run (and re-arm timer_)
  // before the handshake is done. TLS listeners only.
  std::unique_ptr<event::Timer> handshake_timer;
  // Made when a lingering close starts (most connections close without one).
  std::unique_ptr<event::Timer> linger;
  // Last: they go first, while the rest is still there.
  std::unique_ptr<Http2Session> h2;
  std::unique_ptr<Tunnel> tunnel;
};

DownstreamConnection::DownstreamConnection(HttpProxy& proxy, const net::Address& peer)
    : proxy_(proxy),
      peer_(peer),
      conn_(proxy.loop(), *this),
      codec_(conn_, proxy.parser_limits(), *this),
      timer_(proxy.loop().timers(), [this] { on_timer(); }) {}

DownstreamConnection::~DownstreamConnection() = default;

DownstreamConnection::Extras& DownstreamConnection::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>(*this);
  return *extras_;
}

Http2Session* DownstreamConnection::h2() const {
  return extras_ ? extras_->h2.get() : nullptr;
}

DownstreamConnection::Tunnel* DownstreamConnection::tunnel() const {
  return extras_ ? extras_->tunnel.get() : nullptr;
}

const DownstreamTls* DownstreamConnection::downstream_tls() const {
  return extras_ ? extras_->tls.get() : nullptr;
}

bool DownstreamConnection::busy() const {
  return stream_ != nullptr || tunnel() != nullptr || (h2() && h2()->open_streams() > 0);
}

void DownstreamConnection::transition(State to) {
  if (to == state_) return;
  LOG_DEBUG("http {}: {}: connection {} -> {}", proxy_.config().name, peer_.to_string(),
            to_string(state_), to_string(to));
  SLUICE_ASSERT(legal(state_, to));
  state_ = to;
  if (to == State::kClosing) arm_timer(TimerMode::kNone, Duration(0));
  if (to == State::kClosed) {
    timer_.cancel();
    if (extras_ && extras_->linger) extras_->linger->cancel();
    if (extras_ && extras_->handshake_timer) extras_->handshake_timer->cancel();
  }
}

void DownstreamConnection::start(net::Fd fd) {
  tls::ServerContext* tls = proxy_.tls();
  if (tls) {
    extras().accepted_at = proxy_.loop().now();
    auto session = tls->new_session(fd.get());
    if (!session) {
      LOG_WARN("http {}: {}: cannot make a TLS session", proxy_.config().name, peer_.to_string());
      close("no TLS session");
      return;
    }
    conn_.set_transport(std::move(session));
  }
  if (Status s = conn_.adopt(std::move(fd)); !s) {
    LOG_WARN("http {}: {}: {}", proxy_.config().name, peer_.to_string(), s.message());
    close("cannot watch connection");
    return;
  }
  if (tls) {
    // A ClientHello that is slow, silent or endless costs this timer, nothing more.
    auto& timer = extras().handshake_timer;
    timer =
        std::make_unique<event::Timer>(proxy_.loop().timers(), [this] { on_handshake_timeout(); });
    timer->arm_at(proxy_.loop().now() + tls->config().handshake_timeout);
    return;
  }
  // A new connection must send its first request head within header_read_timeout.
  arm_timer(TimerMode::kHead, proxy_.config().http.header_read_timeout);
  conn_.flush();
}

bool DownstreamConnection::early_request_allowed() {
  std::string_view in = conn_.input().view();
  size_t sp = in.find(' ');
  if (sp == std::string_view::npos) {
    if (in.size() < 8) return false;  // the method is not complete yet
    sp = in.size();
  }
  std::string_view method = in.substr(0, sp);
  if (method == "GET" || method == "HEAD" || method == "OPTIONS") return true;
  if (proxy_.tls()->config().early_data.reject_unsafe) {
    ++proxy_.tls_stats().early_data_rejected;
    stream_for_reply().send_error_reply(ProxyError::local(ErrorKind::kTooEarly), true);
    return false;
  }
  // Held: it is parsed and served once the handshake proves the client is live.
  held_early_ = true;
  return false;
}

void DownstreamConnection::on_handshake_timeout() {
  ++proxy_.tls_stats().failed_timeout;
  LOG_INFO("http {}: {}: TLS handshake not finished within {}", proxy_.config().name,
           peer_.to_string(), format_duration(proxy_.tls()->config().handshake_timeout));
  abort("TLS handshake timeout");
}

void DownstreamConnection::on_secured() {
  Extras& x = extras();
  x.handshake_timer.reset();
  auto& session = *static_cast<const tls::Session*>(conn_.transport());
  x.tls =
      std::make_unique<DownstreamTls>(describe_tls(session, proxy_.loop().now() - x.accepted_at));
  const DownstreamTls* tls = x.tls.get();
  auto& stats = proxy_.tls_stats();
  ++stats.handshakes;
  stats.resumed += tls->resumed;
  stats.client_certificates += !tls->client_subject.empty();
  stats.handshake_duration.observe(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(tls->handshake).count()));
  LOG_DEBUG("http {}: {}: {} {} sni '{}' alpn '{}'{}", proxy_.config().name, peer_.to_string(),
            tls->version, tls->cipher, tls->sni, tls->alpn, tls->resumed ? " resumed" : "");
  if (tls->alpn == "h2" && proxy_.config().http.http2) return start_http2();
  if (stream_) {
    stream_->on_downstream_secured();
    return;
  }
  arm_timer(TimerMode::kHead, proxy_.config().http.header_read_timeout);
  if (held_early_) {
    held_early_ = false;
    ++proxy_.tls_stats().early_data_held;
    process_input();
  }
}

void DownstreamConnection::arm_timer(TimerMode mode, Duration d) {
  timer_mode_ = mode;
  if (mode == TimerMode::kNone || d.count() <= 0) {
    timer_.cancel();
    return;
  }
  timer_.arm_at(proxy_.loop().now() + d);
}

void DownstreamConnection::on_timer() {
  switch (timer_mode_) {
    case TimerMode::kNone:
      return;
    case TimerMode::kKeepalive:
      return close("keep-alive idle timeout");
    case TimerMode::kHead:
      LOG_INFO("http {}: {}: no complete request head within {}", proxy_.config().name,
               peer_.to_string(), format_duration(proxy_.config().http.header_read_timeout));
      if (stream_) return abort("header read timeout");
      return stream_for_reply().send_error_reply(ProxyError::downstream(ErrorKind::kHeaderTimeout),
                                                 true);
  }
}

Stream& DownstreamConnection::stream_for_reply() {
  if (!stream_) {
    stream_ = std::make_unique<Stream>(proxy_, *this, codec_.current_stream(), peer_,
                                       request_first_byte_);
  }
  return *stream_;
}

void DownstreamConnection::close(const char* reason) {
  if (state_ == State::kClosed) return;
  transition(State::kClosed);
  LOG_DEBUG("http {}: {} closed: {}", proxy_.config().name, peer_.to_string(), reason);
  if (stream_) stream_->on_connection_closed();
  if (Http2Session* h2 = this->h2()) h2->on_connection_closed();
  conn_.close();
  proxy_.remove(this);
}

void DownstreamConnection::abort(const char* reason) {
  LOG_INFO("http {}: {}: aborting: {}", proxy_.config().name, peer_.to_string(), reason);
  conn_.close(true);
  close(reason);
}

void DownstreamConnection::drain() {
  if (state_ != State::kActive) return;
  if (Http2Session* h2 = this->h2()) return h2->drain();
  if (!stream_) return close("draining");
  transition(State::kDraining);
}

bool DownstreamConnection::keep_alive_allowed() const {
  uint32_t max = proxy_.config().http.max_requests_per_connection;
  return state_ == State::kActive && !proxy_.draining() && !(max && requests_ >= max);
}

void DownstreamConnection::set_downstream_read_enabled(bool enabled) {
  if (conn_.open()) conn_.set_read_enabled(enabled);
}

// --- input -----------------------------------------------------------------------------

void DownstreamConnection::on_read() {
  if (state_ == State::kClosing) {
    conn_.input().clear();  // after the last response: read and drop until the client's FIN
    return;
  }
  if (Tunnel* tunnel = this->tunnel()) {
    net::Connection& up = tunnel->upstream();
    up.write(conn_.input().view());
    conn_.input().consume(conn_.input().size());
    if (up.above_high_watermark()) conn_.set_read_enabled(false);
    return;
  }
  if (Http2Session* h2 = this->h2()) return h2->on_read();
  process_input();
}

DownstreamConnection::Preface DownstreamConnection::sniff_preface() {
  std::string_view in = conn_.input().view();
  size_t n = std::min(in.size(), kHttp2Preface.size());
  if (in.substr(0, n) != kHttp2Preface.substr(0, n)) return Preface::kNo;
  return n == kHttp2Preface.size() ? Preface::kYes : Preface::kUndecided;
}

void DownstreamConnection::start_http2() {
  arm_timer(TimerMode::kNone, Duration(0));
  // Streams share this connection: with the kernel's unsent bytes bounded, bound ours too,
  // or a download's frames queued here would delay every other stream's response instead.
  if (uint32_t lowat = proxy_.config().socket_options.notsent_lowat; lowat != 0) {
    conn_.set_high_watermark(std::max<size_t>(lowat, net::kMinHttp2HighWatermark));
  }
  Extras& x = extras();
  x.h2 = std::make_unique<Http2Session>(proxy_, conn_, x, peer_);
  x.h2->start();
}

void DownstreamConnection::on_session_finished(const char* reason) {
  if (state_ == State::kClosing || state_ == State::kClosed) return;
  LOG_DEBUG("http {}: {}: {}", proxy_.config().name, peer_.to_string(), reason);
  close_after_flush();
}

void DownstreamConnection::close_after_flush() {
  transition(State::kClosing);
  // A request read to its end with nothing after it: close as soon as the response is in
  // the kernel, without waiting for the client's FIN (below).
  if (!h2() && !tunnel() && !codec_.mid_message() && conn_.close_if_quiet()) {
    return close("response sent");
  }
  if (state_ == State::kClosed) return;  // the flush failed: closed already
  conn_.shutdown_write();
  // Lingering close: wait (briefly) for the client's FIN so bytes it already sent do not
  // make the kernel answer our FIN with a RST that could destroy the response in flight.
  // The response may still be queued for a slow reader: the time runs out only when a
  // whole linger period passes without the queue shrinking.
  extras().linger_queued = conn_.queued();
  arm_linger();
}

void DownstreamConnection::process_input() {
  while (conn_.open() && (state_ == State::kActive || state_ == State::kDraining) && !tunnel()) {
    // One request at a time: the next waits, parser paused, until this response is done.
    if (stream_ && stream_->request_complete()) return;
    // A client that sends requests without reading the answers: stop reading it until the
    // responses queued for it drain (on_write_drained), instead of queueing without bound.
    if (!stream_ && conn_.above_high_watermark()) {
      conn_.set_read_enabled(false);
      return;
    }
    if (conn_.input().empty()) return;
    if (requests_ == 0 && !stream_ && !codec_.mid_message()) {
      const auto& h2 = proxy_.config().http.http2;
      if (h2 && h2->prior_knowledge && !conn_.transport()) {
        Preface p = sniff_preface();
        if (p == Preface::kUndecided) return;
        if (p == Preface::kYes) return start_http2();
      }
      // HTTP/2 in TLS early data waits for the handshake (which starts the session).
      if (!conn_.secured() && h2 &&
          static_cast<const tls::Session*>(conn_.transport())->alpn() == "h2") {
        return;
      }
    }
    if (!conn_.secured() && !stream_ && !codec_.mid_message() && !early_request_allowed()) return;
    bool was_idle = !codec_.mid_message();
    if (was_idle && !stream_) request_first_byte_ = proxy_.loop().now();
    size_t got = conn_.input().size();
    in_parser_ = true;
    Parser::Outcome o = codec_.dispatch();
    in_parser_ = false;
    if (state_ == State::kClosed) return;
    if (resume_after_parse_) {
      // The request was answered from inside the parser (a local reply): go on with the next.
      resume_after_parse_ = false;
      codec_.resume_next();
    }
    if (was_idle && codec_.in_head() && timer_mode_ == TimerMode::kKeepalive) {
      arm_timer(TimerMode::kHead, proxy_.config().http.header_read_timeout);
    }
    switch (o) {
      case Parser::Outcome::kNeedMore:
        // A request body still to come after a small read: a client that wrote the head and
        // the body separately, Nagle on, waits for our ACK of the head.
        if (got < net::kQuickAckReadBytes && stream_ && !codec_.in_head() && codec_.mid_message() &&
            proxy_.config().socket_options.quickack && conn_.open()) {
          net::ack_now(conn_.fd());
          ++proxy_.stats().quick_acks;
        }
        return;
      case Parser::Outcome::kMessageComplete:
        continue;
      case Parser::Outcome::kUpgrade:
      case Parser::Outcome::kStopped:
        return;
      case Parser::Outcome::kError: {
        ++proxy_.stats().parse_errors;
        const auto& e = codec_.error();
        LOG_INFO("http {}: {}: rejecting request ({}): {}", proxy_.config().name, peer_.to_string(),
                 e.status, e.reason);
        stream_for_reply().on_protocol_error(e);
        return;
      }
    }
  }
}

bool DownstreamConnection::on_head(sluice::http::StreamId id, MessageHead& head) {
  // The Stream times the request from here on (its body-idle timer).
  arm_timer(TimerMode::kNone, Duration(0));
  stream_ = std::make_unique<Stream>(proxy_, *this, id, peer_, request_first_byte_);
  ++requests_;
  if (!conn_.secured()) {
    // RFC 8470 §5.1: the upstream learns the request came in early data (and may say 425).
    head.headers.remove("early-data");
    head.headers.add("Early-Data", "1");
    stream_->set_early_data();
    ++proxy_.tls_stats().early_data_requests;
  }
  // The stream may be answered (and gone) before this returns.
  stream_->on_request_head(head);
  return state_ == State::kActive || state_ == State::kDraining;
}

void DownstreamConnection::on_data(sluice::http::StreamId, std::string_view data, bool end) {
  if (stream_ && !data.empty()) stream_->on_request_data(data);
  if (stream_ && end) {
    HeaderMap none;
    stream_->on_request_complete(none);
  }
}

void DownstreamConnection::on_trailers(sluice::http::StreamId, HeaderMap& trailers) {
  if (stream_) stream_->on_request_complete(trailers);
}

void DownstreamConnection::on_read_closed() {
  if (Tunnel* tunnel = this->tunnel()) return tunnel->downstream_closed();
  if (Http2Session* h2 = this->h2(); h2 && state_ != State::kClosing) {
    // An HTTP/2 client ends with GOAWAY, not a half-close: streams left open are cut.
    if (h2->open_streams() > 0) LOG_DEBUG("http: HTTP/2 client closed with streams open");
    h2->on_client_gone();
    return close("client closed");
  }
  // After the last response: close once it has gone out (else the linger timer decides).
  if (state_ == State::kClosing) {
    if (conn_.queued() == 0) close("client closed after the last response");
    return;
  }
  if (!stream_) {
    if (codec_.mid_message()) LOG_DEBUG("http: client closed mid-request-head");
    if (conn_.queued() > 0) {
      // An answer made at once is still on its way: let it go out, then close.
      transition(State::kClosing);
      conn_.shutdown_write();
      extras().linger_queued = conn_.queued();
      arm_linger();
      return;
    }
    return close("client closed");
  }
  if (!stream_->request_complete()) {
    stream_->on_downstream_reset();
    return abort("client closed before sending the whole request");
  }
  // The client half-closed after a complete request: answer, then close.
  stream_->set_close_after();
}

void DownstreamConnection::on_write_drained() {
  if (state_ == State::kClosing || state_ == State::kClosed) return;
  if (Http2Session* h2 = this->h2()) return h2->on_write_drained();
  if (stream_) stream_->on_downstream_drained();
  // Reading may have stopped for a client that did not read its responses.
  if (!stream_ && !tunnel() && !conn_.read_enabled()) conn_.set_read_enabled(true);
}

void DownstreamConnection::on_error(int err) {
  if (const auto* t = static_cast<const tls::Session*>(conn_.transport()); t && !t->established()) {
    auto& stats = proxy_.tls_stats();
    if (t->closed_in_handshake()) {
      // Often a TCP health check of a load balancer in front: not worth a line each.
      ++stats.failed_closed;
      LOG_DEBUG("http {}: {}: TLS handshake failed: {}", proxy_.config().name, peer_.to_string(),
                t->failure());
    } else {
      ++stats.failed_protocol;
      LOG_INFO("http {}: {}: TLS handshake failed: {}", proxy_.config().name, peer_.to_string(),
               t->failure());
    }
    return close("TLS handshake failed");
  }
  if (stream_) stream_->on_downstream_reset();
  if (Http2Session* h2 = this->h2()) h2->on_client_gone();
  LOG_DEBUG("http {}: {}: {}", proxy_.config().name, peer_.to_string(), net::error_text(err));
  close("downstream error");
}

// --- the stream's end ------------------------------------------------------------------

void DownstreamConnection::on_stream_done(bool close_connection) {
  if (state_ == State::kClosed) return;
  // Its timers or its exchange's callback may be running: deleted once the iteration ends.
  proxy_.loop().defer_delete(std::move(stream_));
  if (close_connection || state_ == State::kDraining) return close_after_flush();
  arm_timer(TimerMode::kKeepalive, proxy_.config().http.keepalive_timeout);
  if (in_parser_) {
    resume_after_parse_ = true;  // process_input() resumes once the parser returns
    return;
  }
  codec_.resume_next();
  if (!conn_.read_enabled()) conn_.set_read_enabled(true);
  process_input();
}

void DownstreamConnection::arm_linger() {
  auto& linger = extras().linger;
  if (!linger) {
    linger = std::make_unique<event::Timer>(proxy_.loop().timers(), [this] { on_linger_timer(); });
  }
  linger->arm_at(proxy_.loop().now() + kLingerTime);
}

void DownstreamConnection::on_linger_timer() {
  size_t queued = conn_.queued();
  if (size_t& before = extras().linger_queued; queued > 0 && queued < before) {
    before = queued;
    arm_linger();
    return;
  }
  close(queued > 0 ? "client stopped reading the last response" : "linger time over");
}

void DownstreamConnection::on_stream_reset(const char* reason) {
  abort(reason);
}

void DownstreamConnection::on_stream_tunnel(UpstreamExchange& exchange) {
  arm_timer(TimerMode::kNone, Duration(0));
  net::Connection* up = exchange.connection();
  if (!up) return abort("upstream gone at upgrade");
  // Whatever followed the 101 in the upstream's input belongs to the tunnel (the exchange
  // hands it over once its parser returns).
  Extras& x = extras();
  x.tunnel = std::make_unique<Tunnel>(*this, *up);
  exchange.hand_over_to_tunnel(*x.tunnel);
  if (!conn_.input().empty()) on_read();
}

}  // namespace sluice::proxy::http
