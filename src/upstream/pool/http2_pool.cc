#include "upstream/pool/http2_pool.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "net/connect.h"
#include "tls/session.h"

namespace sluice::upstream::pool {

using http::http2::ClientCodec;

namespace {

[[maybe_unused]] bool legal(Http2Connection::State from, Http2Connection::State to) {
  using S = Http2Connection::State;
  switch (from) {
    case S::kConnecting:
      return to == S::kReady || to == S::kClosed;
    case S::kReady:
      return to == S::kDraining || to == S::kClosed;
    case S::kDraining:
      return to == S::kClosed;
    case S::kClosed:
      return false;
  }
  return false;
}

}  // namespace

// --- Http2Connection -------------------------------------------------------------------

const char* Http2Connection::to_string(State s) {
  switch (s) {
    case State::kConnecting:
      return "connecting";
    case State::kReady:
      return "ready";
    case State::kDraining:
      return "draining";
    case State::kClosed:
      return "closed";
  }
  return "?";
}

Http2Connection::Http2Connection(Http2Pool& pool, uint64_t id)
    : pool_(pool),
      id_(id),
      waiter_(pool.transport_, *this),
      timer_(pool.loop().timers(), [this] { on_timer(); }) {}

Http2Connection::~Http2Connection() {
  timer_.cancel();
  waiter_.cancel();
  if (pooled_) {
    pooled_->set_borrower(nullptr);
    pool_.transport_.release(*pooled_, false);
    pooled_ = nullptr;
  }
}

void Http2Connection::transition(State to) {
  if (to == state_) return;
  LOG_DEBUG("http2 pool {}: connection {}: {} -> {}", pool_.transport_.endpoint().to_string(), id_,
            to_string(state_), to_string(to));
  SLUICE_ASSERT(legal(state_, to));
  state_ = to;
}

bool Http2Connection::can_open() const {
  return state_ == State::kReady && pooled_ && pooled_->state() == PooledConnection::State::kBusy &&
         codec_->can_open();
}

void Http2Connection::on_pool_ready(PooledConnection& conn) {
  pooled_ = &conn;
  conn.set_borrower(this);
  if (const net::Transport* t = conn.connection().transport()) {
    // Over TLS the upstream must have agreed to HTTP/2 (RFC 9113 §3.2).
    std::string_view alpn = static_cast<const tls::Session*>(t)->alpn();
    if (alpn != "h2") {
      pool_.learned_ = false;
      return close(fmt::format("ALPN chose {}, not h2",
                               alpn.empty() ? std::string("none") : fmt::format("\"{}\"", alpn)));
    }
  }
  codec_ = std::make_unique<ClientCodec>(conn.connection(), pool_.options_, pool_.scheme_,
                                         pool_.loop().clock());
  codec_->start();
  conn.connection().set_read_enabled(true);
  // Ready once the server's SETTINGS say what it takes, within the connect timeout (a server
  // that accepts and stays silent must not swallow requests).
  timer_.arm_at(pool_.loop().now() + pool_.transport_.connect_timeout());
}

void Http2Connection::became_ready() {
  if (codec_->peer_max_concurrent_streams() == 0) {
    // It would take no request; opening another would fare no better.
    return close("the endpoint allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)");
  }
  transition(State::kReady);
  // What the endpoint's next connections will take too, until one of them says otherwise.
  pool_.streams_per_connection_ = std::max<size_t>(1, codec_->peer_max_concurrent_streams());
  timer_.cancel();
  // The endpoint started draining while this one was opening.
  if (pooled_ && pooled_->state() != PooledConnection::State::kBusy) return drain();
  arm_idle();
  pool_.serve_queue();
}

void Http2Connection::on_pool_failure(PoolFailure reason, const std::string& detail) {
  transition(State::kClosed);
  pool_.connection_failed(reason, detail);
  pool_.remove(*this);
}

void Http2Connection::arm_idle() {
  if (state_ != State::kReady) return;
  MonoTime now = pool_.loop().now();
  Duration idle = pool_.transport_.config().idle_timeout;
  // While streams are open the timer looks again an idle period later; the idle period
  // itself starts when the last stream ends.
  if (codec_->open_streams() == 0) {
    if (idle_since_ == MonoTime{}) idle_since_ = now;
  } else {
    idle_since_ = MonoTime{};
  }
  MonoTime due = (idle_since_ == MonoTime{} ? now : idle_since_) + idle;
  if (pooled_) due = std::min(due, pooled_->expires());
  if (!timer_.armed() || timer_.deadline() > due) timer_.arm_at(due);
}

void Http2Connection::on_timer() {
  if (state_ == State::kClosed) return;
  MonoTime now = pool_.loop().now();
  if (state_ == State::kConnecting) {
    return close(
        fmt::format("no SETTINGS within {}", format_duration(pool_.transport_.connect_timeout())),
        PoolFailure::kConnectTimeout);
  }
  if (pooled_ && now >= pooled_->expires()) {
    LOG_DEBUG("http2 pool {}: connection {} reached max_lifetime",
              pool_.transport_.endpoint().to_string(), id_);
    return drain();
  }
  if (state_ == State::kReady && codec_->open_streams() == 0 && idle_since_ != MonoTime{} &&
      now >= idle_since_ + pool_.transport_.config().idle_timeout) {
    codec_->go_away(0);  // RFC 9113 §6.8: say so before closing
    return close("idle");
  }
  arm_idle();
}

void Http2Connection::drain() {
  if (state_ != State::kReady) return;
  transition(State::kDraining);
  codec_->go_away(0);
  close_if_idle();
}

void Http2Connection::close_if_idle() {
  if (state_ == State::kDraining && codec_->open_streams() == 0) close("drained");
}

void Http2Connection::close(std::string_view reason, PoolFailure failure) {
  if (state_ == State::kClosed) return;
  bool opening = state_ == State::kConnecting;
  LOG_DEBUG("http2 pool {}: connection {} closes: {}", pool_.transport_.endpoint().to_string(), id_,
            reason);
  transition(State::kClosed);
  timer_.cancel();
  if (codec_) codec_->fail_streams(reason);
  if (pooled_) {
    // Frames still queued (a GOAWAY) go out before the socket closes, when they can.
    pooled_->connection().flush();
    pooled_->set_borrower(nullptr);
    pool_.transport_.release(*pooled_, false);
    pooled_ = nullptr;
  }
  pool_.remove(*this);
  if (opening) {
    // It never became usable: the requests waiting for it fail with the reason.
    pool_.connection_failed(failure,
                            fmt::format("upstream {} did not open an HTTP/2 connection: {}",
                                        pool_.transport_.endpoint().to_string(), reason));
  }
}

void Http2Connection::stream_opened() {
  ++streams_opened_;
  ++pool_.transport_.stats().http2_streams;
  if (streams_opened_ > 1) ++pool_.transport_.stats().reuses;
}

void Http2Connection::stream_done(http::StreamId stream, bool complete) {
  if (!codec_) return;
  // A stream whose request is still going out (its response came early) or was cut short
  // would otherwise hold a concurrency slot until the server ends it.
  if (!complete || codec_->buffered(stream) > 0) codec_->reset(stream, 8 /* CANCEL */);
  // The endpoint is draining (or left): the pool marked its connection to close after use.
  if (state_ == State::kReady && pooled_ && pooled_->state() != PooledConnection::State::kBusy) {
    drain();
  }
  if (state_ == State::kReady) {
    arm_idle();
    pool_.serve_queue();
  } else {
    close_if_idle();
  }
}

void Http2Connection::handle(ClientCodec::Outcome o) {
  switch (o) {
    case ClientCodec::Outcome::kContinue:
      if (state_ == State::kConnecting && codec_->settings_received()) became_ready();
      if (state_ != State::kConnecting && state_ != State::kClosed && codec_->goaway_received() &&
          !goaway_counted_) {
        goaway_counted_ = true;
        ++pool_.transport_.stats().http2_goaways;
        if (state_ == State::kReady) drain();
      }
      if (state_ == State::kReady) {
        arm_idle();
        pool_.serve_queue();
      }
      close_if_idle();
      return;
    case ClientCodec::Outcome::kFinished:
      if (codec_->goaway_received() && !goaway_counted_) ++pool_.transport_.stats().http2_goaways;
      return close("GOAWAY and no stream left");
    case ClientCodec::Outcome::kError:
      return close(codec_->error().reason);
  }
}

void Http2Connection::on_read() {
  if (!codec_) return;
  handle(codec_->dispatch());
}

void Http2Connection::on_read_closed() {
  close("the upstream closed the connection");
}

void Http2Connection::on_write_drained() {
  if (codec_) codec_->on_write_drained();
}

void Http2Connection::on_error(int err) {
  close(err == ECONNABORTED ? std::string(kClosedBySluice) : net::error_text(err));
}

// --- Http2Waiter -----------------------------------------------------------------------

Http2Waiter::Http2Waiter(Http2Pool& pool, Http2Callbacks& callbacks)
    : pool_(pool), callbacks_(callbacks), timer_(pool.loop().timers(), [this] {
        cancel();
        ++pool_.transport_.stats().pending_timeouts;
        callbacks_.on_stream_failure(
            PoolFailure::kPendingTimeout,
            fmt::format("no HTTP/2 stream to {} became free within {}",
                        pool_.transport_.endpoint().to_string(),
                        format_duration(pool_.transport_.config().pending_timeout)),
            true);
      }) {}

Http2Waiter::~Http2Waiter() {
  cancel();
}

void Http2Waiter::cancel() {
  timer_.cancel();
  pool_.forget_failing(this);
  if (!queued_) return;
  pool_.queue_.erase(pos_);
  queued_ = false;
}

// --- Http2Pool -------------------------------------------------------------------------

Http2Pool::Http2Pool(ConnPool& transport, const http::http2::ClientOptions& options,
                     std::string scheme)
    : transport_(transport), options_(options), scheme_(std::move(scheme)) {}

Http2Pool::~Http2Pool() {
  while (!queue_.empty()) queue_.front()->cancel();
  connections_.clear();
}

void Http2Pool::acquire(Http2Waiter& waiter) {
  waiter.cancel();
  for (auto& c : connections_) {
    if (c->can_open()) return waiter.callbacks_.on_stream_ready(*c);
  }
  const PoolConfig& config = transport_.config();
  if (queue_.size() >= config.max_pending) {
    ++transport_.stats().overflows;
    waiter.callbacks_.on_stream_failure(
        PoolFailure::kOverflow,
        fmt::format("{} HTTP/2 connections to {} full and {} requests queued", connections_.size(),
                    transport_.endpoint().to_string(), queue_.size()),
        true);
    return;
  }
  waiter.pos_ = queue_.insert(queue_.end(), &waiter);
  waiter.queued_ = true;
  waiter.timer_.arm_at(loop().now() + config.pending_timeout);
  serve_queue();
}

void Http2Pool::serve_queue() {
  if (serving_) {
    serve_again_ = true;  // a connection became ready (or a stream ended) meanwhile
    return;
  }
  serving_ = true;
  do {
    serve_again_ = false;
    serve_once();
  } while (serve_again_);
  serving_ = false;
}

void Http2Pool::serve_once() {
  // A stream handed out may end at once and close its connection: walk a copy.
  std::vector<Http2Connection*> all;
  all.reserve(connections_.size());
  for (auto& c : connections_) all.push_back(c.get());
  for (Http2Connection* c : all) {
    while (!queue_.empty() && c->can_open()) {
      Http2Waiter* w = queue_.front();
      w->cancel();
      w->callbacks_.on_stream_ready(*c);
    }
  }
  // Waiters beyond what the connections being opened will take: open one more.
  size_t connecting = 0;
  for (auto& c : connections_) connecting += c->state() == Http2Connection::State::kConnecting;
  while (queue_.size() > connecting * streams_per_connection_) {
    open_connection();
    ++connecting;
  }
}

void Http2Pool::open_connection() {
  auto owned = std::make_unique<Http2Connection>(*this, next_id_++);
  Http2Connection& c = *owned;
  c.pos_ = connections_.insert(connections_.end(), std::move(owned));
  // The pool answers now or later (a connect, a queue within max_connections).
  transport_.acquire(c.waiter_, false);
}

void Http2Pool::connection_failed(PoolFailure reason, const std::string& detail) {
  // The requests waiting had counted on it; those that another connection being opened
  // will take keep waiting.
  // (Ready connections already took all they could when they became ready or a stream ended.)
  size_t connecting = 0;
  for (auto& c : connections_) connecting += c->state() == Http2Connection::State::kConnecting;
  size_t keep = connecting * streams_per_connection_;
  // Taken off the queue first: a failure's callback may start another request, which must
  // wait for a connection of its own, not inherit this failure.
  std::vector<Http2Waiter*> failing;
  while (queue_.size() > keep) {
    Http2Waiter* w = queue_.back();
    w->cancel();
    failing.push_back(w);
  }
  // Those whose request is gone meanwhile have left `failing` through `dropped_`.
  failing_ = &failing;
  bool first = true;
  for (size_t i = 0; i < failing.size(); ++i) {
    if (!failing[i]) continue;
    // One connect failed: the first request counts it (connect failures, outlier detection),
    // the others only fail with it.
    failing[i]->callbacks_.on_stream_failure(reason, detail, first);
    first = false;
  }
  failing_ = nullptr;
}

void Http2Pool::remove(Http2Connection& conn) {
  auto owned = std::move(*conn.pos_);
  connections_.erase(conn.pos_);
  // Its callback may be running.
  loop().defer_delete(std::move(owned));
}

bool Http2Pool::agreed_h2(PooledConnection& conn) {
  const net::Transport* t = conn.connection().transport();
  return t && static_cast<const tls::Session*>(t)->alpn() == "h2";
}

Http2Connection& Http2Pool::adopt(PooledConnection& conn) {
  learned_ = true;
  auto owned = std::make_unique<Http2Connection>(*this, next_id_++);
  Http2Connection& c = *owned;
  c.pos_ = connections_.insert(connections_.end(), std::move(owned));
  c.on_pool_ready(conn);
  return c;
}

void Http2Pool::drain() {
  std::vector<Http2Connection*> all;
  for (auto& c : connections_) all.push_back(c.get());
  for (Http2Connection* c : all) c->drain();
}

}  // namespace sluice::upstream::pool
