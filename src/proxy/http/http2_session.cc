#include "proxy/http/http2_session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>

#include "base/check.h"
#include "base/log.h"
#include "net/tcp_info.h"
#include "proxy/http/http_proxy.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::StreamId;
using sluice::http::http2::FrameCounts;

namespace {

// A stream's response bytes the client's window has not taken yet: past this the stream's
// upstream is not read; below the low mark it is again.
constexpr size_t kStreamHighWatermark = 256 * 1024;
constexpr size_t kStreamLowWatermark = 64 * 1024;
// Streams a connection opens before the share of them its client reset is judged.
constexpr uint64_t kMinStreamsForRatio = 100;

uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

// The frames of the client that count against it: resets it sent or caused, and control
// frames a request-less connection has little use for.
uint64_t abuse_events(const FrameCounts& n) {
  // (A frame nghttp2 refused is counted by the reset or GOAWAY it caused, not again.)
  return n.resets_received + minus(n.resets_sent, n.owner_resets) + n.empty_data +
         minus(n.priority, n.free_priority) + n.unknown + minus(n.ping, n.free_pings) +
         minus(n.settings, 1);
}

}  // namespace

class Http2Session::Slot final : public StreamCallbacks, public event::DeferredDeletable {
 public:
  Slot(Http2Session& session, StreamId id) : session_(session), id_(id) {}

  StreamId id() const { return id_; }
  std::unique_ptr<Stream> stream;
  // The Stream stopped its upstream (it asked while the output was over the high
  // watermark): told when the output drains.
  mutable bool blocked = false;
  bool ended = false;  // done or reset: no more callbacks reach the Stream

  // StreamCallbacks
  sluice::http::ServerCodec& codec() override { return session_.codec_; }
  bool downstream_above_high_watermark() const override {
    // The Stream asks after each piece of the response it hands the codec.
    session_.arm_stall();
    bool above = session_.conn_.above_high_watermark() ||
                 session_.codec_.buffered(id_) >= kStreamHighWatermark;
    if (above) {
      blocked = true;
      session_.blocked_streams_ = true;
    }
    return above;
  }
  void set_downstream_read_enabled(bool enabled) override {
    read_paused_ = !enabled;
    if (enabled) {
      session_.codec_.resume(id_);
    } else {
      session_.codec_.pause(id_);
    }
  }
  bool downstream_read_enabled() const override { return !read_paused_; }
  // Each stream ends on its own; the connection's end is the session's to decide.
  bool keep_alive_allowed() const override { return true; }
  void on_stream_done(bool) override { session_.on_stream_done(*this); }
  void on_stream_reset(const char* reason) override { session_.on_stream_reset(*this, reason); }
  void on_stream_tunnel(UpstreamExchange&) override {
    session_.on_stream_reset(*this, "CONNECT is not tunnelled over HTTP/2");
  }
  const DownstreamTls* downstream_tls() const override { return session_.owner_.session_tls(); }
  bool downstream_secured() const override { return true; }

 private:
  Http2Session& session_;
  StreamId id_;
  bool read_paused_ = false;
};

Http2Session::Http2Session(HttpProxy& proxy, net::Connection& conn, Http2SessionOwner& owner,
                           const net::Address& peer)
    : proxy_(proxy),
      conn_(conn),
      owner_(owner),
      peer_(peer),
      options_(*proxy.config().http.http2),
      codec_(conn, options_.codec, *this),
      idle_timer_(proxy.loop().timers(), [this] { on_idle_timer(); }),
      ping_timer_(proxy.loop().timers(), [this] { on_ping_timer(); }),
      age_timer_(proxy.loop().timers(), [this] { drain(); }),
      goaway_timer_(proxy.loop().timers(), [this] { on_goaway_timer(); }),
      stall_timer_(proxy.loop().timers(), [this] { on_stall_timer(); }) {}

Http2Session::~Http2Session() = default;

void Http2Session::start() {
  ++proxy_.stats().http2_connections;
  MonoTime now = proxy_.loop().now();
  last_read_ = now;
  codec_.start();
  if (options_.max_connection_age.count() > 0) {
    // Up to 10% later, so that connections opened together do not all end together.
    auto age = options_.max_connection_age;
    auto jitter = Duration(
        static_cast<Duration::rep>(static_cast<double>(age.count()) * 0.1 *
                                   (static_cast<double>(proxy_.random()() >> 11) * 0x1.0p-53)));
    age_timer_.arm_at(now + age + jitter);
  }
  if (options_.ping_interval.count() > 0) ping_timer_.arm_at(now + options_.ping_interval);
  arm_idle();
  on_read();
}

void Http2Session::on_read() {
  if (finished_) {
    conn_.input().clear();
    return;
  }
  if (conn_.input().empty()) return;
  last_read_ = proxy_.loop().now();
  in_dispatch_ = true;
  auto outcome = codec_.dispatch();
  in_dispatch_ = false;
  if (finish_reason_ && !finished_) {
    // Decided while nghttp2 was parsing: its frames (a GOAWAY) are queued now.
    return finish(finish_reason_);
  }
  if (finished_) return;
  if (outcome == sluice::http::http2::ServerCodec::Outcome::kError) {
    sync_counts();
    ++proxy_.stats().http2_protocol_errors;
    LOG_INFO("http {}: {}: HTTP/2 connection error ({}): {}", proxy_.config().name,
             peer_.to_string(), nghttp2_http2_strerror(codec_.goaway_code()),
             codec_.error().reason);
    return finish("HTTP/2 connection error");
  }
  after_codec();
}

void Http2Session::on_write_drained() {
  if (finished_) return;
  codec_.on_write_drained();
  after_codec();
}

void Http2Session::sync_counts() {
  const FrameCounts& n = codec_.counts();
  HttpProxyStats& st = proxy_.stats();
  st.http2_resets_by_client += n.resets_received - seen_.resets_received;
  st.http2_resets_by_sluice += n.resets_sent - seen_.resets_sent;
  st.http2_goaways_sent += n.goaways_sent - seen_.goaways_sent;
  uint64_t now_events = abuse_events(n), before = abuse_events(seen_);
  if (now_events > before) score_ += now_events - before;
  if (n.ping_acks != seen_.ping_acks) ping_outstanding_ = false;
  seen_ = n;
}

void Http2Session::after_codec() {
  if (finished_) return;
  sync_counts();
  if (score_ > options_.max_abuse_score) return abuse_close();
  // Rapid Reset paced by cheap answers: when at least half of many streams were reset by
  // the client before their response, the connection is one. "Many" is more than two full
  // windows of concurrent streams: a browser stopping a page cancels at most one window's
  // worth at once, and must not be taken for an attack.
  uint64_t judged_after =
      std::max<uint64_t>(kMinStreamsForRatio, 2 * uint64_t{options_.codec.max_concurrent_streams});
  if (streams_ >= judged_after && 2 * premature_resets_ >= streams_) return abuse_close();
  if (blocked_streams_) {
    // Streams whose output went over the high watermark: read their upstreams again once
    // the client's windows took enough of it.
    blocked_streams_ = false;
    bool conn_above = conn_.above_high_watermark();
    std::vector<Slot*> ready;
    for (auto& [id, slot] : slots_) {
      if (!slot->blocked) continue;
      if (conn_above || codec_.buffered(id) > kStreamLowWatermark) {
        blocked_streams_ = true;
        continue;
      }
      slot->blocked = false;
      ready.push_back(slot.get());
    }
    for (Slot* s : ready) {
      if (!s->ended && s->stream) s->stream->on_downstream_drained();
    }
  }
  arm_stall();
  check_finished();
}

void Http2Session::arm_stall() {
  if (codec_.buffered_total() > 0 && !stall_timer_.armed() && !finished_ &&
      options_.send_stall_timeout.count() > 0) {
    stall_mark_ = codec_.counts().data_bytes_sent;
    stall_timer_.arm_at(proxy_.loop().now() + options_.send_stall_timeout);
  }
}

void Http2Session::on_stall_timer() {
  if (finished_ || codec_.buffered_total() == 0) return;
  uint64_t sent = codec_.counts().data_bytes_sent;
  if (sent != stall_mark_) {
    stall_mark_ = sent;
    stall_timer_.arm_at(proxy_.loop().now() + options_.send_stall_timeout);
    return;
  }
  size_t waiting = codec_.buffered_total();
  std::vector<StreamId> ids = codec_.reset_stalled();
  LOG_INFO(
      "http {}: {}: HTTP/2 response bytes stalled for {} ({} bytes waiting for the client's "
      "window): {} streams reset",
      proxy_.config().name, peer_.to_string(), format_duration(options_.send_stall_timeout),
      waiting, ids.size());
  for (StreamId id : ids) {
    if (Slot* slot = find(id)) {
      slot->stream->on_downstream_reset();
      slot->stream->on_connection_closed();
      remove(*slot, false);
    }
  }
  after_codec();
}

void Http2Session::check_finished() {
  if (finished_) return;
  if (codec_.finished()) finish("HTTP/2 session ended");
}

void Http2Session::finish(const char* reason) {
  if (finished_) return;
  if (in_dispatch_) {
    finish_reason_ = reason;
    return;
  }
  on_connection_closed();
  codec_.send_final();
  owner_.on_session_finished(reason);
}

void Http2Session::abuse_close() {
  const FrameCounts& n = codec_.counts();
  ++proxy_.stats().http2_abuse_closed;
  LOG_INFO(
      "http {}: {}: HTTP/2 abuse score {} (limit {}): {} streams, {} responses, resets {} received "
      "and {} caused, {} empty DATA, {} PRIORITY ({} paid for by streams), {} PING, {} SETTINGS, "
      "{} invalid frames; "
      "GOAWAY ENHANCE_YOUR_CALM",
      proxy_.config().name, peer_.to_string(), score_, options_.max_abuse_score, streams_,
      completed_, n.resets_received, minus(n.resets_sent, n.owner_resets), n.empty_data, n.priority,
      n.free_priority, n.ping, n.settings, n.invalid);
  codec_.go_away(NGHTTP2_ENHANCE_YOUR_CALM);
  sync_counts();
  score_ = 0;  // said once
  premature_resets_ = 0;
  finish("HTTP/2 abuse score");
}

const char* Http2Session::goaway_state() const {
  if (codec_.counts().goaways_sent == 0) return "";
  return drain_step_ == DrainStep::kNoticeSent ? "notice sent" : "sent";
}

// --- timers ----------------------------------------------------------------------------

void Http2Session::arm_idle() {
  Duration t = proxy_.config().http.keepalive_timeout;
  if (slots_.empty() && t.count() > 0 && !finished_) {
    idle_timer_.arm_at(proxy_.loop().now() + t);
  } else {
    idle_timer_.cancel();
  }
}

void Http2Session::on_idle_timer() {
  if (!slots_.empty()) return;
  if (codec_.open_streams() > 0 || codec_.buffered_total() > 0) {
    // A finished response is still on its way to the client: not idle yet.
    arm_idle();
    return;
  }
  LOG_DEBUG("http {}: {}: HTTP/2 connection idle", proxy_.config().name, peer_.to_string());
  codec_.go_away(NGHTTP2_NO_ERROR);
  sync_counts();
  finish("keep-alive idle timeout");
}

void Http2Session::on_ping_timer() {
  MonoTime now = proxy_.loop().now();
  if (ping_outstanding_) {
    LOG_INFO("http {}: {}: no HTTP/2 PING ACK within {}", proxy_.config().name, peer_.to_string(),
             format_duration(options_.ping_timeout));
    codec_.go_away(NGHTTP2_NO_ERROR);
    sync_counts();
    return finish("HTTP/2 PING timeout");
  }
  MonoTime due = last_read_ + options_.ping_interval;
  if (now < due) {
    ping_timer_.arm_at(due);
    return;
  }
  ping_outstanding_ = true;
  codec_.ping();
  ping_timer_.arm_at(now + options_.ping_timeout);
}

void Http2Session::drain() {
  if (finished_ || drain_step_ != DrainStep::kNone) return;
  drain_step_ = DrainStep::kNoticeSent;
  codec_.shutdown_notice();
  sync_counts();
  // The final GOAWAY names the last stream processed; streams the client opened before the
  // notice reached it are still on their way for about a round trip.
  Duration wait = std::chrono::milliseconds(100);
  if (auto ti = net::read_tcp_info(conn_.fd(), /*congestion=*/false)) {
    wait = std::clamp(Duration(std::chrono::microseconds(2 * uint64_t{ti->rtt_us})),
                      Duration(std::chrono::milliseconds(10)), Duration(std::chrono::seconds(1)));
  }
  goaway_timer_.arm_at(proxy_.loop().now() + wait);
}

void Http2Session::on_goaway_timer() {
  drain_step_ = DrainStep::kGoawaySent;
  codec_.go_away(NGHTTP2_NO_ERROR);
  after_codec();
}

// --- streams ---------------------------------------------------------------------------

Http2Session::Slot* Http2Session::find(StreamId id) {
  auto it = slots_.find(id);
  return it == slots_.end() ? nullptr : it->second.get();
}

bool Http2Session::on_head(StreamId id, MessageHead& head) {
  if (finished_) return false;
  ++streams_;
  ++proxy_.stats().http2_streams;
  auto owned = std::make_unique<Slot>(*this, id);
  Slot& slot = *owned;
  slots_.emplace(id, std::move(owned));
  idle_timer_.cancel();
  slot.stream = std::make_unique<Stream>(proxy_, slot, id, peer_, proxy_.loop().now());
  slot.stream->set_http2();
  uint32_t max = proxy_.config().http.max_requests_per_connection;
  if (max && streams_ >= max) drain();
  // The stream may be answered (and gone) before this returns.
  slot.stream->on_request_head(head);
  return true;
}

void Http2Session::on_data(StreamId id, std::string_view data, bool end) {
  Slot* slot = find(id);
  if (!slot) {
    // The response was complete before the request: what is left of it is dropped.
    codec_.consumed(id, data.size());
    return;
  }
  if (!data.empty()) {
    slot->stream->on_request_data(data);
    // Acknowledged now unless the Stream paused the client (then on resume()).
    codec_.consumed(id, data.size());
  }
  if (end) {
    slot = find(id);
    if (!slot) return;
    HeaderMap none;
    slot->stream->on_request_complete(none);
  }
}

void Http2Session::on_trailers(StreamId id, HeaderMap& trailers) {
  if (Slot* slot = find(id)) slot->stream->on_request_complete(trailers);
}

void Http2Session::on_reset(StreamId id, std::string_view reason) {
  Slot* slot = find(id);
  if (!slot) return;
  LOG_DEBUG("http {}: {}: HTTP/2 stream {} reset: {}", proxy_.config().name, peer_.to_string(), id,
            reason);
  ++premature_resets_;
  slot->stream->on_downstream_reset();
  slot->stream->on_connection_closed();
  remove(*slot, false);
}

void Http2Session::on_stream_done(Slot& slot) {
  if (!slot.stream->request_complete()) codec_.stop_request_after_response(slot.id());
  remove(slot, true);
  if (score_ > 0) --score_;
  ++completed_;
  after_codec();
}

void Http2Session::on_stream_reset(Slot& slot, const char* reason) {
  LOG_INFO("http {}: {}: HTTP/2 stream {} reset: {}", proxy_.config().name, peer_.to_string(),
           slot.id(), reason);
  StreamId id = slot.id();
  slot.stream->on_connection_closed();
  remove(slot, false);
  codec_.reset(id, NGHTTP2_INTERNAL_ERROR);
  sync_counts();
}

void Http2Session::remove(Slot& slot, bool) {
  if (slot.ended) return;
  slot.ended = true;
  auto it = slots_.find(slot.id());
  SLUICE_ASSERT(it != slots_.end() && it->second.get() == &slot);
  std::unique_ptr<Slot> owned = std::move(it->second);
  slots_.erase(it);
  // A request window the Stream held shut opens again for the bytes still on their way.
  if (!owned->downstream_read_enabled()) codec_.resume(owned->id());
  // Its Stream's timers or exchange callbacks may be running: both go once the iteration
  // ends (the Stream first: it refers to the slot).
  proxy_.loop().defer_delete(std::move(owned->stream));
  proxy_.loop().defer_delete(std::move(owned));
  arm_idle();
}

void Http2Session::on_client_gone() {
  for (auto& [id, slot] : slots_) {
    if (!slot->ended) slot->stream->on_downstream_reset();
  }
}

void Http2Session::on_connection_closed() {
  finished_ = true;
  idle_timer_.cancel();
  ping_timer_.cancel();
  age_timer_.cancel();
  goaway_timer_.cancel();
  stall_timer_.cancel();
  std::vector<Slot*> open;
  open.reserve(slots_.size());
  for (auto& [id, slot] : slots_) open.push_back(slot.get());
  for (Slot* s : open) {
    if (s->ended) continue;
    s->stream->on_connection_closed();
    remove(*s, false);
  }
}

}  // namespace sluice::proxy::http
