#include "proxy/tcp/tcp_proxy.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/json.h"
#include "base/log.h"
#include "net/connect.h"
#include "net/connect_race.h"
#include "net/port_exhaustion.h"
#include "net/tcp_info.h"
#include "proxy/tls_info.h"
#include "tls/client_hello.h"

namespace sluice::proxy::tcp {

// One proxied connection: a downstream socket, an upstream socket, and a Pump each way.
// Owned by its TcpProxy through an intrusive list; destroyed through the loop's deferred
// deletion so that events already queued for it in this iteration are ignored safely.
class TcpSession final : public event::DeferredDeletable, public net::ConnectRaceCallbacks {
 public:
  // kReadingHello: waiting for the ClientHello (listeners with sni_routes only);
  // kHandshaking: the client's TLS handshake (a TLS listener); kSecuring: the upstream's (a
  // TLS cluster), after its TCP connect.
  enum class State { kReadingHello, kHandshaking, kConnecting, kSecuring, kProxying, kClosed };

  TcpSession(TcpProxy& proxy, net::Fd downstream, const net::Address& peer)
      : proxy_(proxy),
        cluster_(&proxy.cluster_),
        downstream_(std::move(downstream)),
        peer_(peer),
        down_side_(*this, false),
        up_side_(*this, true),
        timer_(proxy.loop_.timers(), [this] { on_timer(); }),
        to_upstream_(proxy.transfer_pool_, proxy.config_->splice),
        to_downstream_(proxy.transfer_pool_, proxy.config_->splice) {}

  void start() {
    started_ = proxy_.loop_.now();
    generation_ = proxy_.generation();
    if (proxy_.access_log_) wall_start_ = std::chrono::system_clock::now();
    Status s = proxy_.loop_.poller().add(
        downstream_.get(), event::kReadable | event::kWritable | event::kPeerClosed, &down_side_);
    if (!s) {
      close(fmt::format("cannot watch downstream: {}", s.message()), false);
      return;
    }
    if (proxy_.tls_) {
      down_tls_ = proxy_.tls_->new_session(downstream_.get(), /*early_data=*/false);
      if (!down_tls_) return close("cannot make a TLS session", false);
      state_ = State::kHandshaking;
      timer_.arm_at(proxy_.loop_.now() + proxy_.tls_->config().handshake_timeout);
      return drive_downstream_handshake();
    }
    if (!proxy_.config_->sni_routes.empty()) {
      state_ = State::kReadingHello;
      timer_.arm_at(started_ + proxy_.config_->sni_timeout);
      return read_hello();
    }
    connect_next();
  }

  void close(const std::string& reason, bool reset) {
    if (state_ == State::kClosed) return;
    if (counted_) cluster_->request_finished(endpoint_);
    counted_ = false;
    state_before_close_ = state_;
    state_ = State::kClosed;
    timer_.cancel();
    end_race();
    LOG_DEBUG("tcp {}: {} closed after {}ms: {} (to upstream {} bytes, to downstream {} bytes)",
              proxy_.config_->name, peer_.to_string(),
              std::chrono::duration_cast<std::chrono::milliseconds>(proxy_.loop_.now() - started_)
                  .count(),
              reason, to_upstream_.bytes(), to_downstream_.bytes());
    proxy_.stats_.bytes_to_upstream += to_upstream_.bytes();
    proxy_.stats_.bytes_to_downstream += to_downstream_.bytes();
    if (proxy_.access_log_) write_access_log(reason);
    if (!reset) {
      // An orderly end says so in TLS too (close_notify), so the peer sees no truncation.
      if (down_tls_) down_tls_->shutdown();
      if (up_tls_) up_tls_->shutdown();
    }
    for (net::Fd* fd : {&downstream_, &upstream_}) {
      if (!fd->valid()) continue;
      proxy_.loop_.poller().remove(fd->get());
      if (reset) net::set_reset_on_close(fd->get());
      fd->reset();
    }
    proxy_.remove(this);
  }

  TcpSession* prev = nullptr;
  TcpSession* next = nullptr;

  // The endpoint left the DNS answer (`removed`), or some of its addresses did, and its
  // cluster closes connections to departed addresses at once. A session still connecting
  // moves on to another endpoint instead (a race is judged when it wins).
  void close_if_to(const upstream::Cluster& cluster, size_t endpoint, bool removed) {
    if (&cluster != cluster_) return;
    if (state_ == State::kClosed || endpoint_ != endpoint || !counted_) return;
    bool current = !removed && upstream::has_address(cluster_->endpoint(endpoint), peer_address_);
    if (state_ == State::kConnecting) {
      if (race_ || current) return;
      return connect_failed("its address left the DNS answer while connecting", false);
    }
    if (current) return;
    close("its address left the DNS answer (on_address_change: close)", true);
  }

  void report(std::vector<net::ConnectionReport>& out) const {
    const char* state = state_ == State::kProxying       ? "proxying"
                        : state_ == State::kReadingHello ? "client_hello"
                        : state_ == State::kHandshaking  ? "handshaking"
                                                         : "connecting";
    if (downstream_.valid()) {
      out.push_back(
          net::describe_connection(downstream_.get(), "downstream", proxy_.config_->name, state));
      out.back().sni = sni_;
      if (tls_) {
        out.back().sni = tls_->sni;
        out.back().tls_version = tls_->version;
        out.back().tls_cipher = tls_->cipher;
        out.back().tls_resumed = tls_->resumed;
      }
    }
    if (upstream_.valid()) {
      out.push_back(net::describe_connection(upstream_.get(), "upstream", cluster().name, state));
    }
  }

 private:
  struct Side final : event::IoHandler {
    Side(TcpSession& s, bool up) : session(s), upstream(up) {}
    void on_io(uint32_t events) override { session.on_io(upstream, events); }
    TcpSession& session;
    bool upstream;
  };

  const upstream::ClusterConfig& cluster() const { return cluster_->config(); }

  // The ClientHello is peeked at (MSG_PEEK), not read: its bytes stay in the socket for the
  // pumps to move upstream like any others, by splice where they can, and nothing is held
  // per session meanwhile. Each new segment is looked at again from the start, which the
  // 16 KiB bound keeps cheap; a ClientHello is usually one segment.
  void read_hello() {
    std::vector<uint8_t>& scratch = proxy_.hello_scratch_;
    if (scratch.empty()) scratch.resize(tls::kMaxClientHelloBytes);
    ssize_t n = ::recv(downstream_.get(), scratch.data(), scratch.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      ++proxy_.stats_.downstream_resets;
      return close(fmt::format("downstream reset: {}", net::error_text(errno)), false);
    }
    tls::HelloParse hello =
        tls::parse_client_hello(std::span<const uint8_t>(scratch.data(), static_cast<size_t>(n)));
    using Outcome = tls::HelloParse::Outcome;
    switch (hello.outcome) {
      case Outcome::kNeedMore:
        // Peeked bytes are never consumed, so the client's FIN shows as the event
        // (EPOLLRDHUP), or as recv() returning 0 when it sent nothing at all.
        if (n == 0) {
          return refuse_hello(SniRefusal::kMalformed,
                              "downstream closed before sending a ClientHello");
        }
        if (downstream_closed_) {
          return refuse_hello(SniRefusal::kMalformed,
                              "downstream closed before its ClientHello was complete");
        }
        return;
      case Outcome::kNotTls:
        return refuse_hello(SniRefusal::kNotTls, fmt::format("not TLS: {}", hello.reason));
      case Outcome::kMalformed:
        return refuse_hello(SniRefusal::kMalformed,
                            fmt::format("malformed ClientHello: {}", hello.reason));
      case Outcome::kComplete:
        break;
    }
    timer_.cancel();
    sni_ = std::move(hello.hello.server_name);
    if (std::optional<size_t> route = proxy_.sni_router_.match(sni_)) {
      cluster_ = proxy_.sni_clusters_[*route];
      ++proxy_.stats_.sni_routed;
    } else {
      ++proxy_.stats_.sni_default;
    }
    LOG_DEBUG("tcp {}: {}: server name '{}': cluster {}", proxy_.config_->name, peer_.to_string(),
              sni_, cluster().name);
    state_ = State::kConnecting;
    connect_next();
  }

  void refuse_hello(SniRefusal kind, const std::string& reason) {
    ++(kind == SniRefusal::kNotTls      ? proxy_.stats_.sni_not_tls
       : kind == SniRefusal::kMalformed ? proxy_.stats_.sni_malformed
                                        : proxy_.stats_.sni_timeouts);
    uint64_t suppressed = 0;
    if (proxy_.should_log_sni_refusal(kind, &suppressed)) {
      LOG_WARN("tcp {}: closing downstream {}: {}{}", proxy_.config_->name, peer_.to_string(),
               reason,
               suppressed ? fmt::format(" ({} more before it not logged)", suppressed) : "");
    }
    // Take what was only peeked at: closing a socket with unread bytes would send a reset.
    std::vector<uint8_t>& scratch = proxy_.hello_scratch_;
    if (!scratch.empty())
      (void)::recv(downstream_.get(), scratch.data(), scratch.size(), MSG_DONTWAIT);
    close(reason, false);
  }

  void connect_next() {
    const auto& cfg = cluster();
    upstream::Cluster& cl = *cluster_;
    auto& stats = cl.stats();
    if (!cl.has_endpoints()) {
      ++stats.no_healthy_endpoint;
      ++proxy_.stats_.no_endpoint_reachable;
      // Once a second at most: every connection fails the same way until one comes back.
      if (proxy_.loop_.now() - proxy_.last_unhealthy_log_ >= std::chrono::seconds(1)) {
        proxy_.last_unhealthy_log_ = proxy_.loop_.now();
        LOG_WARN("tcp {}: closing downstream {}: no healthy endpoint in cluster {}",
                 proxy_.config_->name, peer_.to_string(), cfg.name);
      }
      return close("no healthy endpoint", false);
    }
    if (!connecting_) connecting_ = std::make_unique<ConnectAttempts>();
    upstream::lb::PickContext ctx{connecting_->tried, std::nullopt};
    if (cfg.lb.policy == upstream::lb::Policy::kRingHash ||
        cfg.lb.policy == upstream::lb::Policy::kMaglev) {
      ctx.hash = proxy_.config_->hash_key == ListenerConfig::HashKey::kSourceIpPort
                     ? upstream::lb::hash_key(peer_.to_string())
                     : upstream::lb::hash_key(peer_.ip_string());
    }
    size_t index = cl.pick(ctx);
    ++attempts_;
    connecting_->tried.push_back(index);
    endpoint_ = index;
    cl.request_started(index);
    counted_ = true;
    const upstream::EndpointConfig& ep = cl.endpoint(index);
    const net::Address& target = ep.address;
    ++stats.connect_attempts;
    if (!ep.fallbacks.empty()) {
      // One endpoint, several addresses: race them (RFC 8305).
      std::vector<net::Address> targets{target};
      targets.insert(targets.end(), ep.fallbacks.begin(), ep.fallbacks.end());
      race_ = std::make_unique<net::ConnectRace>(proxy_.loop_, std::move(targets),
                                                 cfg.socket_options, cfg.source_address,
                                                 cfg.connection_attempt_delay, *this);
      timer_.arm_at(proxy_.loop_.now() + cfg.connect_timeout);
      race_->start();
      return;
    }

    // Fast Open only when the client already sent bytes for the SYN to carry: with a
    // protocol where the server speaks first, a deferred SYN would never leave.
    bool fastopen = false;
    if (cfg.socket_options.fastopen_connect) {
      char byte;
      fastopen = ::recv(downstream_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
    auto pending = net::start_connect(target, cfg.socket_options, cfg.source_address, fastopen);
    if (!pending) {
      count_connect_error(pending.status().sys_errno());
      return connect_failed(
          connect_error(pending.status().sys_errno(), target, pending.status().message()));
    }
    upstream_ = std::move(pending->fd);
    peer_address_ = target;
    Status s = proxy_.loop_.poller().add(
        upstream_.get(), event::kReadable | event::kWritable | event::kPeerClosed, &up_side_);
    if (!s) return connect_failed(s.message());
    // Connected at once: loopback, or a Fast Open connect that defers its SYN.
    if (pending->connected) return on_connected();
    timer_.arm_at(proxy_.loop_.now() + cfg.connect_timeout);
  }

  void on_race_won(net::Fd fd, const net::Address& address) override {
    end_race();
    upstream_ = std::move(fd);
    peer_address_ = address;
    if (cluster().on_address_change == upstream::ClusterConfig::OnAddressChange::kClose &&
        !upstream::has_address(cluster_->endpoint(endpoint_), address)) {
      return connect_failed("its address left the DNS answer while connecting", false);
    }
    LOG_DEBUG("tcp {}: {}: connecting to {} by way of {}", proxy_.config_->name, peer_.to_string(),
              cluster_->endpoint(endpoint_).address.to_string(), address.to_string());
    Status s = proxy_.loop_.poller().add(
        upstream_.get(), event::kReadable | event::kWritable | event::kPeerClosed, &up_side_);
    if (!s) return connect_failed(s.message());
    on_connected();
  }

  void on_race_lost(int err, const std::string& detail) override {
    end_race();
    count_connect_error(err);
    connect_failed(connect_error(err, cluster_->endpoint(endpoint_).address, detail));
  }

  // What a connect error says in the log: `plain`, or for EADDRNOTAVAIL (counted) that the
  // ephemeral ports towards `target` are exhausted, with their number and TIME_WAIT count.
  std::string connect_error(int err, const net::Address& target, const std::string& plain) {
    if (err != EADDRNOTAVAIL) return plain;
    ++cluster_->stats().ports_exhausted;
    return net::ports_exhausted_detail(
        target, proxy_.loop_.now(),
        "widen net.ipv4.ip_local_port_range or enable net.ipv4.tcp_tw_reuse");
  }

  void end_race() {
    if (!race_) return;
    race_->cancel();
    proxy_.loop_.defer_delete(std::move(race_));
  }

  // A connect failed with `err`: the cluster counts refusals apart (nothing listens there).
  void count_connect_error(int err) {
    if (err == ECONNREFUSED) ++cluster_->stats().connect_refused;
  }

  // `report`: the endpoint failed (fed to outlier detection), rather than sluice giving up
  // on an address that left the DNS answer.
  void connect_failed(const std::string& reason, bool report = true) {
    const auto& cfg = cluster();
    auto& stats = cluster_->stats();
    ++stats.connect_failures;
    cluster_->request_finished(endpoint_);
    counted_ = false;
    if (report) cluster_->report(endpoint_, upstream::health::Outcome::kGatewayFailure);
    timer_.cancel();
    end_race();
    up_tls_.reset();
    if (upstream_.valid()) {
      proxy_.loop_.poller().remove(upstream_.get());
      upstream_.reset();
    }
    const std::string ep = cluster_->endpoint(endpoint_).address.to_string();
    LOG_DEBUG("tcp {}: {}: connect to {} failed: {} (attempt {}/{})", proxy_.config_->name,
              peer_.to_string(), ep, reason, connecting_->tried.size(), cfg.max_connect_attempts);
    std::string& failures = connecting_->failures;
    if (!failures.empty()) failures += "; ";
    failures += ep + ": " + reason;
    if (connecting_->tried.size() < cfg.max_connect_attempts) return connect_next();
    ++stats.no_endpoint_reachable;
    ++proxy_.stats_.no_endpoint_reachable;
    LOG_WARN(
        "tcp {}: closing downstream {}: no endpoint reachable in cluster {} after {} "
        "attempts ({})",
        proxy_.config_->name, peer_.to_string(), cfg.name, connecting_->tried.size(), failures);
    close("no endpoint reachable", false);
  }

  void write_access_log(const std::string& reason) {
    MonoTime now = proxy_.loop_.now();
    const AccessLogConfig& cfg = proxy_.config_->access_log;
    bool failed = connected_at_ == MonoTime{};
    if (!should_log(cfg, 0, failed, now - started_)) return;
    auto us = [](Duration d) {
      return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    };
    std::string line = "{\"time\":";
    append_json_string(log::format_time(wall_start_), line);
    line += ",\"listener\":";
    append_json_string(proxy_.config_->name, line);
    fmt::format_to(std::back_inserter(line), ",\"config_generation\":{}", generation_);
    line += ",\"downstream\":";
    append_json_string(peer_.to_string(), line);
    line += ",\"cluster\":";
    // A connection refused for its ClientHello never had one.
    append_json_string(state_before_close_ == State::kReadingHello ? "" : cluster().name, line);
    if (!proxy_.config_->sni_routes.empty()) {
      line += ",\"sni\":";
      append_json_string(sni_, line);
    }
    line += ",\"endpoint\":";
    append_json_string(
        attempts_ == 0 && failed ? "" : cluster_->endpoint(endpoint_).address.to_string(), line);
    line += ",\"close_reason\":";
    append_json_string(reason, line);
    fmt::format_to(std::back_inserter(line),
                   ",\"bytes_to_upstream\":{},\"bytes_to_downstream\":{},\"attempts\":{},"
                   "\"timings_us\":{{\"upstream_connect\":{},\"duration\":{}}}",
                   to_upstream_.bytes(), to_downstream_.bytes(), attempts_,
                   failed ? -1 : us(connected_at_ - started_), us(now - started_));
    if (tls_) append_tls_json(*tls_, line);
    if (upstream_.valid() && !cluster_->endpoint(endpoint_).fallbacks.empty()) {
      // An endpoint with several addresses: say which one this connection went to.
      line += ",\"upstream_address\":";
      append_json_string(peer_address_.to_string(), line);
    }
    if (upstream_.valid()) {
      if (auto ti = net::read_tcp_info(upstream_.get())) {
        fmt::format_to(std::back_inserter(line),
                       ",\"upstream_tcp\":{{\"rtt_us\":{},\"retransmits\":{}}}", ti->rtt_us,
                       ti->total_retrans);
      }
    }
    line += '}';
    proxy_.access_log_->write(line);
  }

  void drive_downstream_handshake() {
    switch (down_tls_->handshake()) {
      case net::Transport::Step::kWantRead:
      case net::Transport::Step::kWantWrite:
        return;
      case net::Transport::Step::kFailed: {
        auto& stats = proxy_.tls_stats_;
        (down_tls_->closed_in_handshake() ? stats.failed_closed : stats.failed_protocol)++;
        LOG_INFO("tcp {}: {}: TLS handshake failed: {}", proxy_.config_->name, peer_.to_string(),
                 down_tls_->failure());
        return close(fmt::format("TLS handshake failed: {}", down_tls_->failure()), true);
      }
      case net::Transport::Step::kDone:
        break;
    }
    timer_.cancel();
    tls_ = std::make_unique<DownstreamTls>(describe_tls(*down_tls_, proxy_.loop_.now() - started_));
    auto& stats = proxy_.tls_stats_;
    ++stats.handshakes;
    stats.resumed += tls_->resumed;
    stats.client_certificates += !tls_->client_subject.empty();
    stats.handshake_duration.observe(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(tls_->handshake).count()));
    // Application data may have come with the handshake's last flight.
    to_upstream_.source_readable = true;
    state_ = State::kConnecting;
    connect_next();
  }

  void drive_upstream_handshake() {
    switch (up_tls_->handshake()) {
      case net::Transport::Step::kWantRead:
      case net::Transport::Step::kWantWrite:
        return;
      case net::Transport::Step::kFailed:
        return connect_failed(fmt::format("TLS: {}", up_tls_->failure()));
      case net::Transport::Step::kDone:
        break;
    }
    to_downstream_.source_readable = true;
    on_ready();
  }

  void on_connected() {
    if (tls::ClientContext* ctx = cluster_->tls_context()) {
      up_tls_ = ctx->new_session(upstream_.get(), cluster_->tls_host(), peer_address_);
      if (!up_tls_) return connect_failed("TLS: cannot make a session");
      tcp_connected_at_ = proxy_.loop_.now();
      state_ = State::kSecuring;
      return drive_upstream_handshake();
    }
    on_ready();
  }

  void on_ready() {
    timer_.cancel();
    state_ = State::kProxying;
    connected_at_ = proxy_.loop_.now();
    cluster_->report(endpoint_, upstream::health::Outcome::kSuccess);
    // The connect attempts' bookkeeping is not needed any more: give its memory back.
    connecting_.reset();
    LOG_DEBUG("tcp {}: {} connected to {}", proxy_.config_->name, peer_.to_string(),
              cluster_->endpoint(endpoint_).address.to_string());
    last_activity_ = proxy_.loop_.now();
    arm_activity_timer();
    pump();
  }

  void on_io(bool upstream, uint32_t events) {
    if (state_ == State::kClosed) return;
    if (!upstream && state_ == State::kHandshaking) return drive_downstream_handshake();
    if (upstream && state_ == State::kSecuring) return drive_upstream_handshake();
    if (state_ == State::kReadingHello) {
      if (upstream) return;
      if (events & event::kPeerClosed) downstream_closed_ = true;
      if (events & (event::kReadable | event::kPeerClosed | event::kError)) read_hello();
      return;
    }
    if (upstream && state_ == State::kConnecting) {
      if (!(events & (event::kWritable | event::kError))) return;
      int err = 0;
      switch (net::check_connect(upstream_.get(), &err)) {
        case net::ConnectState::kConnected:
          return on_connected();
        case net::ConnectState::kFailed:
          count_connect_error(err);
          return connect_failed(connect_error(err, peer_address_, net::error_text(err)));
        case net::ConnectState::kInProgress:
          return;
      }
      return;
    }
    bool ready_in = events & (event::kReadable | event::kPeerClosed | event::kError);
    bool ready_out = events & (event::kWritable | event::kError);
    Pump& reader = upstream ? to_downstream_ : to_upstream_;
    Pump& writer = upstream ? to_upstream_ : to_downstream_;
    if (ready_in) reader.source_readable = true;
    if (ready_out) writer.dest_writable = true;
    if (state_ == State::kProxying) pump();
  }

  void pump() {
    uint64_t before = to_upstream_.bytes() + to_downstream_.bytes();
    if (!run_pump(to_upstream_, downstream_, upstream_, "downstream", "upstream")) return;
    if (!run_pump(to_downstream_, upstream_, downstream_, "upstream", "downstream")) return;
    if (state_ == State::kClosed) return;
    if (to_upstream_.bytes() + to_downstream_.bytes() != before) {
      last_activity_ = proxy_.loop_.now();
    }
    if (to_upstream_.finished() && to_downstream_.finished()) {
      ++proxy_.stats_.completed;
      close("both sides finished", false);
    }
  }

  // Returns false when the session closed.
  bool run_pump(Pump& p, net::Fd& src, net::Fd& dst, const char* src_name, const char* dst_name) {
    if (p.finished()) return true;
    int err = 0;
    net::Transport* src_t = &src == &downstream_ ? down_tls_.get() : up_tls_.get();
    net::Transport* dst_t = &dst == &downstream_ ? down_tls_.get() : up_tls_.get();
    switch (p.run(src.get(), dst.get(), &err, src_t, dst_t)) {
      case Pump::Outcome::kWaiting:
        return true;
      case Pump::Outcome::kFinished:
        // Half-close: the source's FIN becomes our FIN towards the destination, while the
        // other direction keeps flowing. Through TLS, close_notify goes first.
        if (dst_t) dst_t->shutdown();
        ::shutdown(dst.get(), SHUT_WR);
        return true;
      case Pump::Outcome::kSourceReset:
        (&src == &downstream_ ? proxy_.stats_.downstream_resets : proxy_.stats_.upstream_resets)++;
        // Propagate the reset: the destination gets a RST, not a FIN.
        net::set_reset_on_close(dst.get());
        close(fmt::format("{} reset: {}", src_name, net::error_text(err)), false);
        return false;
      case Pump::Outcome::kDestReset:
        (&dst == &downstream_ ? proxy_.stats_.downstream_resets : proxy_.stats_.upstream_resets)++;
        net::set_reset_on_close(src.get());
        close(fmt::format("{} reset: {}", dst_name, net::error_text(err)), false);
        return false;
    }
    return true;
  }

  void arm_activity_timer() {
    const auto& cfg = *proxy_.config_;
    MonoTime deadline = MonoTime::max();
    if (cfg.idle_timeout.count() > 0) deadline = last_activity_ + cfg.idle_timeout;
    if (cfg.max_duration.count() > 0) deadline = std::min(deadline, started_ + cfg.max_duration);
    if (deadline != MonoTime::max()) timer_.arm_at(deadline);
  }

  void on_timer() {
    const auto& cfg = *proxy_.config_;
    if (state_ == State::kHandshaking) {
      ++proxy_.tls_stats_.failed_timeout;
      LOG_INFO("tcp {}: {}: TLS handshake not finished within {}", proxy_.config_->name,
               peer_.to_string(), format_duration(proxy_.tls_->config().handshake_timeout));
      return close("TLS handshake timeout", true);
    }
    if (state_ == State::kReadingHello) {
      return refuse_hello(SniRefusal::kTimeout,
                          fmt::format("no complete ClientHello within sni_timeout {}",
                                      format_duration(cfg.sni_timeout)));
    }
    if (state_ == State::kConnecting || state_ == State::kSecuring) {
      ++cluster_->stats().connect_timeouts;
      return connect_failed(fmt::format("timed out after {}{}",
                                        format_duration(cluster().connect_timeout),
                                        race_ ? " (tried " + race_->tried() + ")" : ""));
    }
    MonoTime now = proxy_.loop_.now();
    if (cfg.max_duration.count() > 0 && now >= started_ + cfg.max_duration) {
      ++proxy_.stats_.max_duration_reached;
      return close(fmt::format("max_duration {} reached", format_duration(cfg.max_duration)),
                   false);
    }
    if (cfg.idle_timeout.count() > 0 && now >= last_activity_ + cfg.idle_timeout) {
      ++proxy_.stats_.idle_timeouts;
      return close(fmt::format("idle timeout after {}", format_duration(cfg.idle_timeout)), false);
    }
    // Activity moved the deadline since the timer was armed: re-arm, instead of touching the
    // timer on every read.
    arm_activity_timer();
  }

  TcpProxy& proxy_;
  upstream::Cluster* cluster_;  // the listener's, or the one its ClientHello's name chose
  net::Fd downstream_;
  net::Fd upstream_;
  net::Address peer_;
  Side down_side_;
  Side up_side_;
  event::Timer timer_;
  Pump to_upstream_;
  Pump to_downstream_;
  State state_ = State::kConnecting;
  MonoTime started_{};
  uint64_t generation_ = 0;  // the configuration the session started on
  MonoTime connected_at_{};
  MonoTime tcp_connected_at_{};  // with upstream TLS: before its handshake
  std::chrono::system_clock::time_point wall_start_{};
  std::unique_ptr<tls::Session> down_tls_;  // a TLS listener's session with the client
  std::unique_ptr<tls::Session> up_tls_;    // a TLS cluster's session with the endpoint
  // Once the client's handshake is done; on the heap, as most sessions are not TLS.
  std::unique_ptr<DownstreamTls> tls_;
  uint32_t attempts_ = 0;
  MonoTime last_activity_{};
  size_t endpoint_ = 0;
  std::unique_ptr<net::ConnectRace> race_;  // while racing an endpoint's addresses
  net::Address peer_address_;               // where upstream_ goes
  bool counted_ = false;                    // endpoint_'s active count includes this session
  // While connecting: the endpoints tried and why each failed (freed once connected, so an
  // idle session does not carry them).
  struct ConnectAttempts {
    std::vector<size_t> tried;
    std::string failures;
  };
  std::unique_ptr<ConnectAttempts> connecting_;
  std::string sni_;                 // the ClientHello's server name ("" = none sent)
  bool downstream_closed_ = false;  // kReadingHello: the client sent its FIN
  State state_before_close_ = State::kConnecting;
};

// An idle proxied connection costs its session and little else (buffers and pipes are taken
// only while bytes move): keep it within budget, so 100,000 idle connections stay near 50 MiB.
// The figure is libstdc++'s on x86-64 (other standard libraries lay out std::function and
// std::string differently).
#if defined(__GLIBCXX__) && defined(__x86_64__)
static_assert(sizeof(TcpSession) <= 512, "TcpSession grew: move what idle sessions do not use out");
#endif

TcpProxy::TcpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                   upstream::Cluster& cluster, std::vector<upstream::Cluster*> sni_clusters,
                   TransferPool& transfer_pool,
                   std::shared_ptr<std::atomic<uint32_t>> active_connections,
                   std::shared_ptr<tls::ServerContext> tls)
    : loop_(loop),
      config_(std::move(config)),
      cluster_(cluster),
      sni_clusters_(std::move(sni_clusters)),
      sni_router_(config_->sni_routes),
      transfer_pool_(transfer_pool),
      tls_(std::move(tls)),
      active_connections_(std::move(active_connections)) {
  SLUICE_CHECK(sni_clusters_.size() == config_->sni_routes.size());
  std::vector<upstream::Cluster*> watched{&cluster_};
  for (upstream::Cluster* c : sni_clusters_) {
    if (std::find(watched.begin(), watched.end(), c) != watched.end()) continue;
    watched.push_back(c);
  }
  for (upstream::Cluster* c : watched) {
    c->add_close_listener(this, [this, c](size_t endpoint, bool removed) {
      for (TcpSession* s = head_; s;) {
        TcpSession* next = s->next;  // closing unlinks s
        s->close_if_to(*c, endpoint, removed);
        s = next;
      }
    });
  }
}

TcpProxy::~TcpProxy() {
  cluster_.remove_close_listeners(this);
  for (upstream::Cluster* c : sni_clusters_) c->remove_close_listeners(this);
  on_idle_ = nullptr;
  close_all(false);
}

void TcpProxy::on_accept(net::Fd fd, const net::Address& peer) {
  uint32_t now_active = active_connections_->fetch_add(1, std::memory_order_relaxed) + 1;
  if (config_->max_connections != 0 && now_active > config_->max_connections) {
    active_connections_->fetch_sub(1, std::memory_order_relaxed);
    ++stats_.refused_max_connections;
    ++refusals_since_log_;
    // At most one line a second however fast connections arrive.
    if (loop_.now() - last_refusal_log_ >= std::chrono::seconds(1)) {
      LOG_WARN(
          "listener {}: refusing {}: max_connections {} reached ({} refused since last "
          "report)",
          config_->name, peer.to_string(), config_->max_connections, refusals_since_log_);
      last_refusal_log_ = loop_.now();
      refusals_since_log_ = 0;
    }
    return;  // fd closes here
  }
  ++stats_.accepted;
  auto* session = new TcpSession(*this, std::move(fd), peer);
  session->next = head_;
  if (head_) head_->prev = session;
  head_ = session;
  ++sessions_;
  session->start();
}

void TcpProxy::remove(TcpSession* session) {
  if (session->prev) {
    session->prev->next = session->next;
  } else {
    head_ = session->next;
  }
  if (session->next) session->next->prev = session->prev;
  --sessions_;
  active_connections_->fetch_sub(1, std::memory_order_relaxed);
  loop_.defer_delete(std::unique_ptr<event::DeferredDeletable>(session));
  if (sessions_ == 0 && on_idle_) on_idle_();
}

bool TcpProxy::should_log_sni_refusal(SniRefusal kind, uint64_t* suppressed) {
  auto k = static_cast<size_t>(kind);
  MonoTime now = loop_.now();
  if (sni_log_windows_[k].start == MonoTime{} ||
      now - sni_log_windows_[k].start >= std::chrono::seconds(1)) {
    *suppressed = std::exchange(sni_log_windows_[k].suppressed, 0);
    sni_log_windows_[k] = {now, 0, 0};
  }
  LogWindow& w = sni_log_windows_[k];
  if (w.logged == kSniLogsPerSecond) {
    ++w.suppressed;
    return false;
  }
  ++w.logged;
  return true;
}

void TcpProxy::report_connections(std::vector<net::ConnectionReport>& out) const {
  for (const TcpSession* s = head_; s; s = s->next) s->report(out);
}

void TcpProxy::close_all(bool drain_deadline) {
  while (head_) {
    if (drain_deadline) ++stats_.drain_closed;
    head_->close(drain_deadline ? "drain timeout" : "shutdown", false);
  }
}

}  // namespace sluice::proxy::tcp
