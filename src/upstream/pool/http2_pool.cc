#include "upstream/pool/http2_pool.h"

#include <vector>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "net/connect.h"
#include "tls/session.h"

namespace sluice::upstream::pool {

using http::http2::ClientCodec;

namespace {

// What one connection being opened is expected to take before its SETTINGS say (RFC 9113
// §6.5.2 recommends no fewer than 100).
constexpr size_t kAssumedStreamsPerConnection = 100;

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
      std::string detail =
          fmt::format("upstream {} did not agree to HTTP/2: ALPN {}", conn.peer().to_string(),
                      alpn.empty() ? std::string("none") : fmt::format("\"{}\"", alpn));
      close(detail);
      pool_.connection_failed(PoolFailure::kConnectFailure, detail);
      return;
    }
  }
  codec_ = std::make_unique<ClientCodec>(conn.connection(), pool_.options_, pool_.scheme_,
                                         pool_.loop().clock());
  codec_->start();
  transition(State::kReady);
  conn.connection().set_read_enabled(true);
  if (conn.expires() != MonoTime::max()) timer_.arm_at(conn.expires());
  arm_idle();
  pool_.serve_queue();
}

void Http2Connection::on_pool_failure(PoolFailure reason, const std::string& detail) {
  transition(State::kClosed);
  pool_.connection_failed(reason, detail);
  pool_.remove(*this);
}

void Http2Connection::arm_idle() {
  if (state_ != State::kReady || codec_->open_streams() > 0) return;
  idle_since_ = pool_.loop().now();
  MonoTime due = idle_since_ + pool_.transport_.config().idle_timeout;
  if (pooled_) due = std::min(due, pooled_->expires());
  timer_.arm_at(due);
}

void Http2Connection::on_timer() {
  if (state_ == State::kClosed) return;
  MonoTime now = pool_.loop().now();
  if (pooled_ && now >= pooled_->expires()) {
    LOG_DEBUG("http2 pool {}: connection {} reached max_lifetime",
              pool_.transport_.endpoint().to_string(), id_);
    return drain();
  }
  if (codec_ && codec_->open_streams() == 0 &&
      now >= idle_since_ + pool_.transport_.config().idle_timeout) {
    return close("idle");
  }
  if (pooled_ && pooled_->expires() != MonoTime::max()) timer_.arm_at(pooled_->expires());
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

void Http2Connection::close(std::string_view reason) {
  if (state_ == State::kClosed) return;
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
}

void Http2Connection::stream_opened() {
  ++streams_opened_;
  ++pool_.transport_.stats().http2_streams;
}

void Http2Connection::stream_done(http::StreamId stream, bool complete) {
  if (!codec_) return;
  if (!complete) codec_->reset(stream, 8 /* CANCEL */);
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
      if (state_ == State::kReady && codec_->goaway_received()) {
        ++pool_.transport_.stats().http2_goaways;
        drain();
      }
      if (state_ == State::kReady) pool_.serve_queue();
      return;
    case ClientCodec::Outcome::kFinished:
      if (state_ == State::kReady && codec_->goaway_received())
        ++pool_.transport_.stats().http2_goaways;
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
  close(err == ECONNABORTED ? "closed by sluice" : net::error_text(err));
}

// --- Http2Waiter -----------------------------------------------------------------------

Http2Waiter::Http2Waiter(Http2Pool& pool, Http2Callbacks& callbacks)
    : pool_(pool), callbacks_(callbacks), timer_(pool.loop().timers(), [this] {
        cancel();
        callbacks_.on_pool_failure(
            PoolFailure::kPendingTimeout,
            fmt::format("no HTTP/2 stream to {} became free within {}",
                        pool_.transport_.endpoint().to_string(),
                        format_duration(pool_.transport_.config().pending_timeout)));
      }) {}

Http2Waiter::~Http2Waiter() {
  cancel();
}

void Http2Waiter::cancel() {
  timer_.cancel();
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
    waiter.callbacks_.on_pool_failure(
        PoolFailure::kOverflow,
        fmt::format("{} HTTP/2 connections to {} full and {} requests queued", connections_.size(),
                    transport_.endpoint().to_string(), queue_.size()));
    return;
  }
  waiter.pos_ = queue_.insert(queue_.end(), &waiter);
  waiter.queued_ = true;
  waiter.timer_.arm_at(loop().now() + config.pending_timeout);
  serve_queue();
}

void Http2Pool::serve_queue() {
  if (serving_) return;  // a stream handed out below asked again
  serving_ = true;
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
  if (queue_.size() > connecting * kAssumedStreamsPerConnection) open_connection();
  serving_ = false;
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
  size_t connecting = 0;
  for (auto& c : connections_) connecting += c->state() == Http2Connection::State::kConnecting;
  size_t keep = connecting * kAssumedStreamsPerConnection;
  while (queue_.size() > keep) {
    Http2Waiter* w = queue_.back();
    w->cancel();
    w->callbacks_.on_pool_failure(reason, detail);
  }
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
