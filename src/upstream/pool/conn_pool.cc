#include "upstream/pool/conn_pool.h"

#include <algorithm>
#include <cerrno>
#include "base/log.h"
#include "base/random.h"
#include "net/connect.h"
#include "net/port_exhaustion.h"

namespace sluice::upstream::pool {

const char* to_string(PoolFailure f) {
  switch (f) {
    case PoolFailure::kConnectFailure:
      return "connect failure";
    case PoolFailure::kConnectTimeout:
      return "connect timeout";
    case PoolFailure::kOverflow:
      return "pool overflow";
    case PoolFailure::kPendingTimeout:
      return "timed out waiting for a pooled connection";
    case PoolFailure::kPortsExhausted:
      return "ephemeral ports exhausted";
  }
  return "?";
}

// --- PooledConnection ------------------------------------------------------------------

const char* PooledConnection::to_string(State s) {
  static constexpr const char* kNames[] = {"connecting", "idle", "busy", "draining", "closed"};
  return kNames[static_cast<int>(s)];
}

PooledConnection::PooledConnection(ConnPool& pool, uint64_t id)
    : pool_(pool), id_(id), conn_(pool.loop(), *this), timer_(pool.loop().timers(), [this] {
        if (state_ == State::kConnecting) {
          connect_failed(PoolFailure::kConnectTimeout,
                         fmt::format("upstream connect error: timed out after {} ({})",
                                     format_duration(pool_.connect_timeout_),
                                     race_ ? race_->tried() : pool_.endpoint_.to_string()));
        } else if (state_ == State::kIdle) {
          pool_.destroy(*this);
        }
      }) {
  ++pool_.stats_.state_count[static_cast<int>(state_)];
}

PooledConnection::~PooledConnection() = default;

namespace {

// Connecting -> idle (opened ahead of demand) | busy | draining (lent, to close after its
// request) | closed; idle -> busy | draining | closed; busy -> idle | draining | closed;
// draining -> closed. Nothing leaves closed, and nothing returns to connecting.
[[maybe_unused]] bool legal(PooledConnection::State from, PooledConnection::State to) {
  using S = PooledConnection::State;
  switch (from) {
    case S::kConnecting:
    case S::kIdle:
    case S::kBusy:
      return to != S::kConnecting;
    case S::kDraining:
      return to == S::kClosed;
    case S::kClosed:
      return false;
  }
  return false;
}

}  // namespace

void PooledConnection::transition(State to) {
  if (to == state_) return;
  SLUICE_ASSERT(legal(state_, to));
  LOG_DEBUG("pool {}: connection {} {} -> {}", pool_.endpoint_.to_string(), id_, to_string(state_),
            to_string(to));
  --pool_.stats_.state_count[static_cast<int>(state_)];
  ++pool_.stats_.state_count[static_cast<int>(to)];
  state_ = to;
}

void PooledConnection::learn_keepalive_timeout(Duration d) {
  // Retire a little before the upstream would, so our request never crosses its close.
  Duration margin = std::max<Duration>(std::chrono::milliseconds(200), d / 10);
  MonoTime at = pool_.loop().now() + (d > margin ? d - margin : Duration(0));
  expires_ = std::min(expires_, at);
}

void PooledConnection::on_connected() {
  connected_at_ = pool_.loop().now();
  // With TLS, the connection is ready once its handshake completes (on_secured), still
  // within the connect timeout.
  if (!conn_.transport()) ready();
}

void PooledConnection::on_secured() {
  secured_at_ = pool_.loop().now();
  ++pool_.stats_.tls_handshakes;
  const auto* session = static_cast<const tls::Session*>(conn_.transport());
  if (session->resumed()) ++pool_.stats_.tls_resumed;
  LOG_DEBUG("pool {}: connection {} secured: {} {}{}", pool_.endpoint_.to_string(), id_,
            session->version(), session->cipher(), session->resumed() ? " resumed" : "");
  ready();
}

void PooledConnection::ready() {
  timer_.cancel();
  if (recheck_ && !pool_.has_address(peer_)) {
    // It connected to an address that left the answer while it was connecting.
    if (*recheck_ == Departed::kClose) {
      return connect_failed(
          PoolFailure::kConnectFailure,
          "upstream connect error: " + peer_.to_string() + " left the DNS answer while connecting");
    }
    drain_after_use_ = true;
  }
  recheck_.reset();
  // The pool started draining while this connected: it serves its request, then closes.
  if (pool_.draining_) drain_after_use_ = true;
  Waiter* w = waiter_;
  waiter_ = nullptr;
  if (w) {
    w->connecting_ = nullptr;
    pool_.lend(*this, *w);
  } else if (pool_.draining_) {
    pool_.destroy(*this);  // nobody waits for it, and the pool keeps nothing
  } else {
    pool_.make_idle(*this);  // its request went away: keep it for the next one
    pool_.serve_queue();
  }
}

bool PooledConnection::start_tls(int fd) {
  if (!pool_.tls_) return true;
  auto session = pool_.tls_->new_session(fd, pool_.tls_host_, peer_);
  if (!session) return false;
  conn_.set_transport(std::move(session));
  return true;
}

void PooledConnection::on_read() {
  if (borrower_) return borrower_->on_read();
  // Bytes on an idle connection: nothing asked for them, so the connection cannot be
  // trusted with a request any more.
  pool_.destroy(*this);
}

void PooledConnection::on_read_closed() {
  if (borrower_) return borrower_->on_read_closed();
  if (state_ == State::kIdle) ++pool_.stats_.closed_by_upstream_while_idle;
  pool_.destroy(*this);
}

void PooledConnection::on_write_drained() {
  if (borrower_) borrower_->on_write_drained();
}

void PooledConnection::on_error(int err) {
  if (borrower_) return borrower_->on_error(err);
  if (state_ == State::kConnecting) {
    const net::Transport* t = conn_.transport();
    if (t && connected_at_ != MonoTime{} && !t->failure().empty()) {
      // The TCP connect worked and the TLS handshake did not.
      ++pool_.stats_.tls_failures;
      return connect_failed(
          PoolFailure::kConnectFailure,
          fmt::format("upstream TLS error: {} ({})", t->failure(), pool_.endpoint_.to_string()),
          err);
    }
    std::string detail = fmt::format("upstream connect error: {} ({})", net::error_text(err),
                                     pool_.endpoint_.to_string());
    PoolFailure kind = pool_.classify_connect_error(err, &detail);
    return connect_failed(kind, detail, err);
  }
  pool_.destroy(*this);
}

void PooledConnection::connect_failed(PoolFailure reason, const std::string& detail, int err) {
  ++pool_.stats_.connect_failures;
  pool_.count_connect_error(reason == PoolFailure::kConnectTimeout, err, waiter_ != nullptr);
  pool_.next_warm_at_ = pool_.loop().now() + std::chrono::seconds(1);
  Waiter* w = waiter_;
  waiter_ = nullptr;
  pool_.destroy(*this);
  if (w) {
    w->connecting_ = nullptr;
    w->callbacks_->on_pool_failure(reason, detail);
  }
}

void PooledConnection::on_race_won(net::Fd fd, const net::Address& address) {
  pool_.loop().defer_delete(std::move(race_));
  peer_ = address;
  if (address != pool_.endpoint_) {
    LOG_DEBUG("pool {}: connection {} went to {}", pool_.endpoint_.to_string(), id_,
              address.to_string());
  }
  if (!start_tls(fd.get())) {
    return connect_failed(PoolFailure::kConnectFailure,
                          "upstream TLS error: cannot make a session");
  }
  if (Status s = conn_.adopt_connecting(std::move(fd), true); !s) {
    return connect_failed(PoolFailure::kConnectFailure, s.message());
  }
  on_connected();
}

void PooledConnection::on_race_lost(int err, const std::string& detail) {
  pool_.loop().defer_delete(std::move(race_));
  std::string text = "upstream connect error: " + detail;
  PoolFailure kind = pool_.classify_connect_error(err, &text);
  connect_failed(kind, text, err);
}

// --- Waiter ----------------------------------------------------------------------------

Waiter::Waiter(ConnPool& pool, PoolCallbacks& callbacks)
    : pool_(pool), callbacks_(&callbacks), timer_(pool.loop().timers(), [this] {
        cancel();
        ++pool_.stats_.pending_timeouts;
        callbacks_->on_pool_failure(PoolFailure::kPendingTimeout,
                                    "no connection to " + pool_.endpoint_.to_string() +
                                        " became free within " +
                                        format_duration(pool_.config_.pending_timeout));
      }) {}

Waiter::~Waiter() {
  cancel();
}

void Waiter::cancel() {
  timer_.cancel();
  if (queued_) {
    pool_.queue_.erase(pos_);
    queued_ = false;
  }
  if (connecting_) {
    connecting_->waiter_ = nullptr;
    connecting_ = nullptr;
  }
}

// --- ConnPool --------------------------------------------------------------------------

ConnPool::ConnPool(event::Loop& loop, net::Address endpoint, const PoolConfig& config,
                   const net::SocketOptions& socket_options, std::optional<net::Address> source,
                   Duration connect_timeout)
    : loop_(loop),
      endpoint_(endpoint),
      config_(config),
      socket_options_(socket_options),
      source_(std::move(source)),
      connect_timeout_(connect_timeout) {}

ConnPool::~ConnPool() {
  tearing_down_ = true;
  while (!queue_.empty()) queue_.front()->cancel();
  for (auto& c : connections_) {
    if (c->waiter_) {
      c->waiter_->connecting_ = nullptr;
      c->waiter_ = nullptr;
    }
  }
  while (!connections_.empty()) destroy(*connections_.front());
}

void ConnPool::acquire(Waiter& waiter, bool fresh, bool resendable) {
  waiter.cancel();
  if (!fresh) {
    while (idle_head_) {
      PooledConnection* c = idle_head_;
      // The upstream may have closed it a moment ago, with the FIN not yet seen: look now,
      // without waiting, rather than find out when a request that must not be sent twice
      // fails. Not for a request the stale-connection resend would send again on a new
      // connection, nor when a read in this very iteration emptied the socket (the response
      // it just served): a close cannot have slipped by unseen since, but for one racing in
      // now, which a look would miss as well.
      bool alive = resendable || c->conn_.drained_this_iteration()
                       ? c->conn_.open() && !c->conn_.peer_closed() && c->conn_.input().empty()
                       : c->conn_.check_alive();
      if (loop_.now() >= c->expires_ || !alive) {
        LOG_DEBUG("pool {}: connection {} is stale at checkout (expired {})", endpoint_.to_string(),
                  c->id_, loop_.now() >= c->expires_);
        ++stats_.stale_at_checkout;
        destroy(*c);
        continue;
      }
      ++stats_.reuses;
      lend(*c, waiter);
      return;
    }
  }
  if (connections_.size() < config_.max_connections) return open_for(&waiter);
  if (queue_.size() >= config_.max_pending) {
    ++stats_.overflows;
    waiter.callbacks_->on_pool_failure(
        PoolFailure::kOverflow,
        fmt::format("{} connections to {} busy and {} requests queued", connections_.size(),
                    endpoint_.to_string(), queue_.size()));
    return;
  }
  waiter.pos_ = queue_.insert(queue_.end(), &waiter);
  waiter.queued_ = true;
  waiter.timer_.arm_at(loop_.now() + config_.pending_timeout);
}

void ConnPool::count_connect_error(bool timeout, int err, bool for_request) {
  bool refused = err == ECONNREFUSED;
  stats_.connect_timeouts += timeout;
  stats_.connect_refused += refused;
  // The cluster counts the connects made for requests (as its connect failures do).
  if (!for_request) return;
  if (timeout && cluster_counters_.timeouts) ++*cluster_counters_.timeouts;
  if (refused && cluster_counters_.refused) ++*cluster_counters_.refused;
}

void ConnPool::open_for(Waiter* waiter) {
  ++stats_.connects;
  check_connect_rate();
  auto owned = std::make_unique<PooledConnection>(*this, next_id_++);
  PooledConnection& c = *owned;
  connections_.push_back(std::move(owned));
  c.created_ = loop_.now();
  c.warm_ = waiter == nullptr;
  c.peer_ = endpoint_;
  if (config_.max_lifetime.count() > 0) {
    // Up to 10% earlier, at random, so connections opened together do not all retire together.
    auto span = config_.max_lifetime.count() / 10;
    Duration jitter(span > 0 ? static_cast<int64_t>(thread_rng().below(static_cast<uint64_t>(span)))
                             : 0);
    c.expires_ = c.created_ + config_.max_lifetime - jitter;
  }
  if (!fallbacks_.empty()) {
    // Several addresses for one endpoint: race them (RFC 8305).
    std::vector<net::Address> targets{endpoint_};
    targets.insert(targets.end(), fallbacks_.begin(), fallbacks_.end());
    c.race_ = std::make_unique<net::ConnectRace>(loop_, std::move(targets), socket_options_,
                                                 source_, attempt_delay_, c);
    c.waiter_ = waiter;
    if (waiter) waiter->connecting_ = &c;
    c.timer_.arm_at(loop_.now() + connect_timeout_);
    c.race_->start();
    return;
  }
  // HTTP clients speak first: the request is ready as soon as the connection is.
  auto pending = net::start_connect(endpoint_, socket_options_, source_, true);
  if (!pending) {
    ++stats_.connect_failures;
    count_connect_error(false, pending.status().sys_errno(), waiter != nullptr);
    next_warm_at_ = loop_.now() + std::chrono::seconds(1);
    std::string detail = fmt::format("upstream connect error: {} ({})", pending.status().message(),
                                     endpoint_.to_string());
    PoolFailure kind = classify_connect_error(pending.status().sys_errno(), &detail);
    destroy(c);
    if (waiter) waiter->callbacks_->on_pool_failure(kind, detail);
    return;
  }
  bool connected = pending->connected;
  if (!c.start_tls(pending->fd.get())) {
    destroy(c);
    if (waiter)
      waiter->callbacks_->on_pool_failure(PoolFailure::kConnectFailure,
                                          "upstream TLS error: cannot make a session");
    return;
  }
  if (Status s = c.conn_.adopt_connecting(std::move(pending->fd), connected); !s) {
    destroy(c);
    if (waiter) waiter->callbacks_->on_pool_failure(PoolFailure::kConnectFailure, s.message());
    return;
  }
  if (connected && c.conn_.transport()) c.connected_at_ = loop_.now();
  if (connected && !c.conn_.transport()) {
    if (waiter) {
      lend(c, *waiter);
    } else {
      make_idle(c);
    }
    return;
  }
  c.waiter_ = waiter;
  if (waiter) waiter->connecting_ = &c;
  c.timer_.arm_at(loop_.now() + connect_timeout_);
}

PoolFailure ConnPool::classify_connect_error(int err, std::string* detail) {
  if (err != EADDRNOTAVAIL) return PoolFailure::kConnectFailure;
  ++stats_.ports_exhausted;
  *detail = "upstream connect error: " +
            net::ports_exhausted_detail(
                endpoint_, loop_.now(),
                "widen net.ipv4.ip_local_port_range, reuse connections longer (raise "
                "pool.max_requests_per_connection and pool.idle_timeout), or enable "
                "net.ipv4.tcp_tw_reuse");
  return PoolFailure::kPortsExhausted;
}

void ConnPool::check_connect_rate() {
  // Each closed connection holds its local port in TIME_WAIT for 60 s (Linux's fixed
  // TCP_TIMEWAIT_LEN) on the side that closed first. Opening connections faster than
  // ports / 60 s ends in EADDRNOTAVAIL ("Cannot assign requested address").
  constexpr auto kWindow = std::chrono::seconds(10);
  constexpr int kTimeWaitSeconds = 60;
  MonoTime now = loop_.now();
  if (rate_window_start_ == MonoTime{} || now - rate_window_start_ >= kWindow) {
    rate_window_start_ = now;
    rate_window_connects_ = 0;
  }
  ++rate_window_connects_;
  // The measured rate: connects in this window over the time they took, at least a second
  // (so a short burst is not taken for a longer rate), and at least two connects (one is
  // not a rate).
  if (rate_window_connects_ < 2) return;
  double elapsed = std::chrono::duration<double>(now - rate_window_start_).count();
  double per_second = rate_window_connects_ / std::max(1.0, elapsed);
  uint32_t ports = net::ephemeral_port_count();
  // Warn at half the range: other endpoints and other processes use ports too.
  if (per_second <= 0 || per_second * kTimeWaitSeconds < ports / 2.0) return;
  if (last_port_warning_ != MonoTime{} && now - last_port_warning_ < std::chrono::seconds(60)) {
    return;
  }
  last_port_warning_ = now;
  net::PortRange range = net::ephemeral_port_range();
  Result<uint64_t> time_wait = net::count_time_wait_towards(endpoint_);
  LOG_WARN(
      "pool {}: opened {} new connections in {:.2f}s on this worker (at least {:.1f}/s); at that "
      "rate "
      "the {} ephemeral ports (net.ipv4.ip_local_port_range {}-{}) fill with TIME_WAIT in "
      "{:.0f}s (TIME_WAIT lasts {}s; {} towards it now). Raise "
      "pool.max_requests_per_connection or pool.idle_timeout so connections are reused, "
      "widen the port range, or enable net.ipv4.tcp_tw_reuse",
      endpoint_.to_string(), rate_window_connects_, elapsed, per_second, ports, range.low,
      range.high, ports / per_second, kTimeWaitSeconds,
      time_wait ? fmt::format("{}", *time_wait) : std::string("unknown"));
}

void ConnPool::lend(PooledConnection& c, Waiter& waiter) {
  leave_idle(c);
  c.timer_.cancel();
  c.transition(c.drain_after_use_ ? PooledConnection::State::kDraining
                                  : PooledConnection::State::kBusy);
  ++c.requests_;
  PoolCallbacks* cb = waiter.callbacks_;
  waiter.cancel();
  cb->on_pool_ready(c);
}

void ConnPool::leave_idle(PooledConnection& c) {
  if (!c.in_idle_) return;
  if (c.idle_prev_) {
    c.idle_prev_->idle_next_ = c.idle_next_;
  } else {
    idle_head_ = c.idle_next_;
  }
  if (c.idle_next_) c.idle_next_->idle_prev_ = c.idle_prev_;
  c.idle_prev_ = c.idle_next_ = nullptr;
  c.in_idle_ = false;
  --idle_count_;
}

void ConnPool::make_idle(PooledConnection& c) {
  c.transition(PooledConnection::State::kIdle);
  c.borrower_ = nullptr;
  c.idle_prev_ = nullptr;
  c.idle_next_ = idle_head_;
  if (idle_head_) idle_head_->idle_prev_ = &c;
  idle_head_ = &c;
  c.in_idle_ = true;
  ++idle_count_;
  MonoTime at = std::min(loop_.now() + config_.idle_timeout, c.expires_);
  c.timer_.arm_at(at);
  // Last: reading again may deliver a FIN or stray bytes at once, and the connection then
  // destroys itself (leaving idle_ as it goes), so nothing may touch it after this.
  c.conn_.set_read_enabled(true);
}

void ConnPool::release(PooledConnection& c, bool reusable) {
  c.borrower_ = nullptr;
  // Bytes past the end of the response would be read as the next request's response.
  bool keep = reusable && !draining_ && c.conn_.open() && !c.conn_.peer_closed() &&
              c.conn_.input().empty() && c.state_ == PooledConnection::State::kBusy &&
              loop_.now() < c.expires_ &&
              (config_.max_requests_per_connection == 0 ||
               c.requests_ < config_.max_requests_per_connection);
  if (keep) {
    make_idle(c);
    serve_queue();
    return;
  } else {
    LOG_DEBUG(
        "pool {}: retiring connection {} after {} requests (reusable {}, open {}, upstream "
        "closed {}, expired {})",
        endpoint_.to_string(), c.id_, c.requests_, reusable, c.conn_.open(), c.conn_.peer_closed(),
        loop_.now() >= c.expires_);
    destroy(c);
  }
  serve_queue();
}

void ConnPool::serve_queue() {
  while (!queue_.empty() && (idle_head_ || connections_.size() < config_.max_connections)) {
    Waiter* w = queue_.front();
    w->cancel();
    acquire(*w, false);
  }
}

void ConnPool::warm_up() {
  // Not while draining, not re-entered from a connect that failed at once, and not again
  // within a second of a failed connect (a dead endpoint must not be hammered).
  if (draining_ || !warm_allowed_ || warming_ || loop_.now() < next_warm_at_) return;
  warming_ = true;
  size_t ready =
      idle_count_ + stats_.state_count[static_cast<int>(PooledConnection::State::kConnecting)];
  while (ready < config_.min_idle && connections_.size() < config_.max_connections) {
    open_for(nullptr);
    ++ready;
  }
  warming_ = false;
}

void ConnPool::reconfigure(const PoolConfig& config, const net::SocketOptions& socket_options,
                           std::optional<net::Address> source, Duration connect_timeout) {
  config_ = config;
  socket_options_ = socket_options;
  source_ = std::move(source);
  connect_timeout_ = connect_timeout;
  // A larger max_connections may let queued requests go now.
  serve_queue();
}

void ConnPool::drain() {
  draining_ = true;
  while (idle_head_) destroy(*idle_head_);
  for (auto& c : connections_) {
    if (c->state_ == PooledConnection::State::kBusy) {
      c->transition(PooledConnection::State::kDraining);
    }
  }
}

void ConnPool::destroy(PooledConnection& c) {
  destroy_only(c);
  // Keep min_idle warm; not from the destructor, and not while draining.
  if (config_.min_idle > 0 && !tearing_down_) warm_up();
}

bool ConnPool::has_address(const net::Address& a) const {
  return a == endpoint_ || std::find(fallbacks_.begin(), fallbacks_.end(), a) != fallbacks_.end();
}

void ConnPool::retire_departed(Departed how) {
  // Aborting calls into borrowers, which release (destroy) their connection: collect first.
  std::vector<PooledConnection*> gone;
  for (auto& c : connections_) {
    if (c->state_ == PooledConnection::State::kConnecting) {
      c->recheck_ = how;  // where it lands is known once it connects
    } else if (!has_address(c->peer_)) {
      gone.push_back(c.get());
    }
  }
  for (PooledConnection* c : gone) {
    if (c->state_ == PooledConnection::State::kClosed) continue;
    LOG_DEBUG("pool {}: connection {} to {}: the address left the answer", endpoint_.to_string(),
              c->id_, c->peer_.to_string());
    if (c->state_ == PooledConnection::State::kIdle) {
      destroy(*c);
    } else if (how == Departed::kClose && c->borrower_) {
      c->conn_.abort(ECONNABORTED);
    } else if (c->state_ == PooledConnection::State::kBusy) {
      c->transition(PooledConnection::State::kDraining);
    }
  }
}

void ConnPool::close_all() {
  drain();
  const std::string why =
      "upstream connect error: the endpoint left the DNS answer (" + endpoint_.to_string() + ")";
  // Requests queued for a connection here go elsewhere (or fail) now, not at their timeout.
  while (!queue_.empty()) {
    Waiter* w = queue_.front();
    w->cancel();
    w->callbacks_->on_pool_failure(PoolFailure::kConnectFailure, why);
  }
  // Aborting calls into borrowers, which release (destroy) their connection: collect first.
  std::vector<PooledConnection*> busy;
  for (auto& c : connections_) busy.push_back(c.get());
  for (PooledConnection* c : busy) {
    if (c->state_ == PooledConnection::State::kClosed) continue;
    if (c->borrower_) {
      c->conn_.abort(ECONNABORTED);
    } else if (c->state_ == PooledConnection::State::kConnecting) {
      c->connect_failed(PoolFailure::kConnectFailure, why);
    } else {
      destroy_only(*c);
    }
  }
}

void ConnPool::destroy_only(PooledConnection& c) {
  if (c.state_ == PooledConnection::State::kClosed) return;
  c.timer_.cancel();
  if (c.race_) c.race_->cancel();
  c.transition(PooledConnection::State::kClosed);
  c.conn_.close();
  leave_idle(c);
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->get() == &c) {
      loop_.defer_delete(std::move(*it));
      connections_.erase(it);
      break;
    }
  }
}

}  // namespace sluice::upstream::pool
