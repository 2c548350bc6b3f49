#include "bgp/session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/log.h"
#include "net/connect.h"

namespace sluice::bgp {
namespace {

// RFC 4271 §8.2.2: a large hold time while the OPEN exchange is under way (4 minutes is
// suggested; the connect and the exchange get less, as nothing else bounds them here).
constexpr Duration kOpenHoldTime = std::chrono::seconds(60);
constexpr size_t kReadChunk = 16384;

}  // namespace

const char* to_string(SessionState s) {
  switch (s) {
    case SessionState::kIdle:
      return "idle";
    case SessionState::kConnect:
      return "connect";
    case SessionState::kOpenSent:
      return "open sent";
    case SessionState::kOpenConfirm:
      return "open confirm";
    case SessionState::kEstablished:
      return "established";
  }
  return "?";
}

Session::Session(event::Loop& loop, const BgpConfig& bgp, const PeerConfig& peer,
                 SessionCallbacks& callbacks)
    : loop_(loop),
      bgp_(bgp),
      peer_(peer),
      callbacks_(callbacks),
      retry_timer_(loop.timers(), [this] { connect(); }),
      hold_timer_(loop.timers(), [this] { on_hold_timer(); }),
      keepalive_timer_(loop.timers(), [this] { on_keepalive_timer(); }),
      read_more_(loop.timers(), [this] {
        if (fd_.valid() && !dormant_) read_available();
      }) {}

Session::~Session() {
  close_connection();
}

void Session::start() {
  stopped_ = false;
  connect();
}

void Session::stop(uint8_t subcode, const std::string& why) {
  stopped_ = true;
  retry_timer_.cancel();
  if (dormant_) {
    // The previous process still runs this session: not a word to the peer.
    close_connection();
    transition(SessionState::kIdle, why);
    return;
  }
  if (fd_.valid() && state_ != SessionState::kConnect) {
    std::string msg;
    write_notification(err::kCease, subcode, {}, msg);
    ++stats_.notifications_sent;
    send(std::move(msg));
  }
  close_connection();
  if (state_ != SessionState::kIdle) {
    LOG_INFO("bgp peer {}: closed ({}): {}", name(), to_string(state_), why);
    transition(SessionState::kIdle, why);
  }
}

PeerStats Session::stats() const {
  PeerStats s = stats_;
  s.state = static_cast<uint64_t>(state_);
  s.uptime_ns = established()
                    ? static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                loop_.clock().now() - established_at_)
                                                .count())
                    : 0;
  s.received_prefixes = received_.size();
  return s;
}

Duration Session::next_retry_in() const {
  if (!retry_timer_.armed()) return Duration(0);
  return std::max(Duration(0), retry_timer_.deadline() - loop_.now());
}

void Session::transition(SessionState to, const std::string& why) {
  SessionState from = state_;
  state_ = to;
  // Going down is logged by reset() and stop(), with what comes next.
  if (to == SessionState::kEstablished) {
    LOG_INFO("bgp peer {}: {} → {}: {}", name(), to_string(from), to_string(to), why);
  } else {
    LOG_DEBUG("bgp peer {}: {} → {}: {}", name(), to_string(from), to_string(to), why);
  }
}

void Session::connect() {
  if (stopped_) return;
  close_connection();
  in_.clear();
  out_.clear();
  auto fail_now = [this](const std::string& why) { reset(why); };
  auto fd = net::tcp_socket(peer_.address.family());
  if (!fd) return fail_now(fd.status().message());
  int one = 1;
  ::setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!peer_.password.empty()) {
    // RFC 2385: every segment to and from the peer carries the MD5 signature.
    tcp_md5sig md5{};
    std::memcpy(&md5.tcpm_addr, peer_.address.sockaddr_ptr(), peer_.address.length());
    md5.tcpm_keylen = static_cast<uint16_t>(peer_.password.size());
    std::memcpy(md5.tcpm_key, peer_.password.data(), peer_.password.size());
    if (::setsockopt(fd->get(), IPPROTO_TCP, TCP_MD5SIG, &md5, sizeof md5) != 0) {
      return fail_now("TCP-MD5 password: " + net::error_text(errno));
    }
  }
  if (peer_.local_address &&
      ::bind(fd->get(), peer_.local_address->sockaddr_ptr(), peer_.local_address->length()) != 0) {
    return fail_now(
        fmt::format("bind {}: {}", peer_.local_address->ip_string(), net::error_text(errno)));
  }
  if (::connect(fd->get(), peer_.address.sockaddr_ptr(), peer_.address.length()) != 0 &&
      errno != EINPROGRESS) {
    return fail_now("connect: " + net::error_text(errno));
  }
  fd_ = std::move(*fd);
  if (auto s = loop_.poller().add(fd_.get(), event::kReadable | event::kWritable, this); !s) {
    fd_.reset();
    return fail_now(s.message());
  }
  hold_timer_.arm_at(loop_.now() + kOpenHoldTime);
  transition(SessionState::kConnect, "connecting");
}

void Session::on_io(uint32_t events) {
  if (!fd_.valid()) return;
  if (state_ == SessionState::kConnect) {
    int err = 0;
    switch (net::check_connect(fd_.get(), &err)) {
      case net::ConnectState::kInProgress:
        return;
      case net::ConnectState::kFailed:
        return reset("connect: " + net::error_text(err));
      case net::ConnectState::kConnected:
        on_connected();
        break;
    }
  }
  if (events & event::kWritable) flush();
  if (fd_.valid() && (events & (event::kReadable | event::kPeerClosed | event::kError))) {
    read_available();
  }
}

void Session::learn_local_addresses() {
  if (auto local = net::local_address(fd_.get()); local) {
    const sockaddr* sa = local->sockaddr_ptr();
    if (sa->sa_family == AF_INET) {
      std::memcpy(local_v4_.data(), &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    } else {
      std::memcpy(local_v6_.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    }
  }
}

void Session::on_connected() {
  learn_local_addresses();
  OpenParams p;
  p.as = bgp_.local_as;
  p.hold_time = static_cast<uint16_t>(
      std::chrono::duration_cast<std::chrono::seconds>(peer_.hold_time).count());
  p.router_id = bgp_.router_id;
  p.ipv6_unicast = std::any_of(bgp_.announce.begin(), bgp_.announce.end(),
                               [](const AnnounceConfig& a) { return a.prefix.family == AF_INET6; });
  std::string open;
  write_open(p, open);
  transition(SessionState::kOpenSent, "connected, OPEN sent");
  send(std::move(open));
}

bool Session::handle_buffered() {
  size_t at = 0;
  while (fd_.valid()) {
    Message m;
    ParseError e;
    size_t used = read_message(std::span(in_).subspan(at), m, e);
    if (used == 0) break;
    if (used == SIZE_MAX) {
      fail(e.code, e.subcode, e.data, e.detail);
      return false;
    }
    at += used;
    handle(m);
  }
  if (!fd_.valid()) return false;
  in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(at));
  return true;
}

void Session::read_available() {
  uint8_t buf[kReadChunk];
  size_t budget = read_budget_;
  for (;;) {
    if (budget == 0) {
      // Edge-triggered: nothing wakes this again for what is still queued but the timer.
      read_more_.arm_at(loop_.now());
      return;
    }
    ssize_t n = ::recv(fd_.get(), buf, std::min(sizeof buf, budget), 0);
    if (n > 0) {
      budget -= static_cast<size_t>(n);
      in_.insert(in_.end(), buf, buf + n);
      // Whole messages first: a NOTIFICATION followed by the close must be read as such.
      if (!handle_buffered()) return;
      continue;
    }
    if (n == 0) return reset("the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    return reset("read: " + net::error_text(errno));
  }
}

void Session::handle(const Message& m) {
  switch (m.type) {
    case MessageType::kOpen:
      if (state_ != SessionState::kOpenSent) {
        return fail(err::kFsm, 0, {}, fmt::format("OPEN in state {}", to_string(state_)));
      }
      return handle_open(m.open);
    case MessageType::kKeepalive:
      if (state_ == SessionState::kOpenConfirm) {
        failures_ = 0;
        established_at_ = loop_.clock().now();
        ++stats_.established;
        transition(SessionState::kEstablished,
                   fmt::format("hold time {}", format_duration(negotiated_hold_)));
        arm_hold_timer();
        on_keepalive_timer();
        callbacks_.on_established(*this);
        return;
      }
      if (state_ != SessionState::kEstablished) {
        return fail(err::kFsm, 0, {}, fmt::format("KEEPALIVE in state {}", to_string(state_)));
      }
      arm_hold_timer();
      return;
    case MessageType::kUpdate:
      if (state_ != SessionState::kEstablished) {
        return fail(err::kFsm, 0, {}, fmt::format("UPDATE in state {}", to_string(state_)));
      }
      ++stats_.updates_received;
      arm_hold_timer();
      for (const Prefix& p : m.update.withdrawn) received_.erase(p);
      for (const Prefix& p : m.update.announced) {
        if (received_.size() < kMaxReceivedPrefixes) received_.insert(p);
      }
      return;
    case MessageType::kRouteRefresh:
      if (state_ != SessionState::kEstablished) {
        return fail(err::kFsm, 0, {}, fmt::format("ROUTE-REFRESH in state {}", to_string(state_)));
      }
      arm_hold_timer();
      // While earlier routes still wait in the send queue, a refresh would only queue them
      // again: a peer asking in a loop must not grow it.
      if (!out_.empty()) return;
      LOG_INFO("bgp peer {}: route refresh asked: sending every announced route again", name());
      callbacks_.on_established(*this);
      return;
    case MessageType::kNotification: {
      ++stats_.notifications_received;
      std::string why = fmt::format("NOTIFICATION received: {}",
                                    describe_error(m.notification.code, m.notification.subcode));
      LOG_WARN("bgp peer {}: {}", name(), why);
      return reset(why);
    }
  }
}

void Session::handle_open(const OpenMessage& open) {
  // RFC 4271 §6.2.
  if (open.version != 4) {
    return fail(err::kOpen, err::kUnsupportedVersion, std::string("\x00\x04", 2),
                fmt::format("OPEN version {} (sluice speaks 4)", open.version));
  }
  if (open.as != peer_.remote_as) {
    return fail(err::kOpen, err::kBadPeerAs, {},
                fmt::format("OPEN from AS {}, expected AS {}", open.as, peer_.remote_as));
  }
  if (open.hold_time == 1 || open.hold_time == 2) {
    return fail(err::kOpen, err::kUnacceptableHoldTime, {},
                fmt::format("OPEN hold time {}s (0 or at least 3)", open.hold_time));
  }
  bool ibgp = peer_.remote_as == bgp_.local_as;
  if (open.router_id == 0 || (ibgp && open.router_id == bgp_.router_id)) {
    return fail(err::kOpen, err::kBadBgpIdentifier, {},
                fmt::format("OPEN BGP identifier {}.{}.{}.{}", open.router_id >> 24,
                            (open.router_id >> 16) & 0xff, (open.router_id >> 8) & 0xff,
                            open.router_id & 0xff));
  }
  for (uint8_t code : open.unknown_capabilities) {
    LOG_DEBUG("bgp peer {}: ignoring capability {}", name(), code);
  }
  peer_open_ = open;
  negotiated_hold_ = std::min<Duration>(peer_.hold_time, std::chrono::seconds(open.hold_time));
  std::string ka;
  write_keepalive(ka);
  transition(SessionState::kOpenConfirm, fmt::format("OPEN from AS {} received", open.as));
  send(std::move(ka));
  arm_hold_timer();
}

bool Session::family_negotiated(int family) const {
  bool any_mp = peer_open_.ipv4_unicast || peer_open_.ipv6_unicast;
  if (family == AF_INET) return peer_open_.ipv4_unicast || !any_mp;
  return peer_open_.ipv6_unicast;
}

void Session::announce(const Route& route) {
  if (!established() || dormant_) return;
  if (!family_negotiated(route.prefix.family)) {
    LOG_WARN("bgp peer {}: not announcing {}: the peer did not offer its address family", name(),
             route.prefix.to_string());
    return;
  }
  Route r = route;
  if (r.next_hop == std::array<uint8_t, 16>{}) {
    r.next_hop = route.prefix.family == AF_INET ? local_v4_ : local_v6_;
    if (r.next_hop == std::array<uint8_t, 16>{}) {
      LOG_WARN("bgp peer {}: not announcing {}: no next hop of its family (set next_hop)", name(),
               route.prefix.to_string());
      return;
    }
  }
  sent_[route.prefix] = route;
  UpdateParams p;
  p.local_as = bgp_.local_as;
  p.ebgp = peer_.remote_as != bgp_.local_as;
  p.four_octet_as = peer_open_.four_octet_as;
  std::string msg;
  write_announce(p, r, msg);
  ++stats_.updates_sent;
  send(std::move(msg));
}

void Session::withdraw(const Prefix& prefix) {
  if (!established() || dormant_ || !family_negotiated(prefix.family)) return;
  sent_.erase(prefix);
  std::string msg;
  write_withdraw(prefix, msg);
  ++stats_.updates_sent;
  send(std::move(msg));
}

void Session::fail(uint8_t code, uint8_t subcode, const std::string& data, const std::string& why) {
  std::string text = fmt::format("{} (NOTIFICATION sent: {})", why, describe_error(code, subcode));
  if (fd_.valid() && state_ != SessionState::kConnect) {
    std::string msg;
    write_notification(code, subcode, data, msg);
    ++stats_.notifications_sent;
    send(std::move(msg));
    if (!fd_.valid()) return;  // the send failed and reset the session already
  }
  reset(text);
}

void Session::reset(const std::string& why) {
  last_error_ = why;
  bool was_established = established();
  close_connection();
  Duration delay = peer_.connect_retry * (1u << std::min<uint32_t>(failures_, 5));
  delay = std::min(delay, peer_.connect_retry * kMaxBackoffFactor);
  ++failures_;
  if (was_established) {
    LOG_WARN("bgp peer {}: session down: {}; reconnecting in {}", name(), why,
             format_duration(delay));
  } else {
    LOG_INFO("bgp peer {}: {}; retrying in {}", name(), why, format_duration(delay));
  }
  transition(SessionState::kIdle, why);
  if (!stopped_) retry_timer_.arm_at(loop_.now() + delay);
}

void Session::close_connection() {
  hold_timer_.cancel();
  keepalive_timer_.cancel();
  read_more_.cancel();
  sent_.clear();
  // A later connection is not the one the new process holds.
  if (handed_over_ && fd_.valid()) handed_lost_ = true;
  if (dormant_) {
    // Adopted and not taken over: the previous process still runs the session.
    dormant_ = false;
    fd_.reset();
    return;
  }
  if (!fd_.valid()) return;
  // What is queued (a NOTIFICATION) goes out first, as far as the socket takes it.
  flush();
  if (fd_.valid()) {
    loop_.poller().remove(fd_.get());
    fd_.reset();
  }
  out_.clear();
  received_.clear();
  negotiated_hold_ = Duration(0);
}

void Session::send(std::string bytes) {
  if (!fd_.valid()) return;
  if (out_.size() + bytes.size() > 16 * 1024 * 1024) {
    // The peer has not read for long: its hold timer ends this anyway.
    return reset("the peer does not read: 16 MiB queued");
  }
  out_ += bytes;
  flush();
}

void Session::flush() {
  while (!out_.empty()) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // EAGAIN: the next writable event resumes. An error shows on the next read.
    return;
  }
}

void Session::arm_hold_timer() {
  if (state_ == SessionState::kEstablished || state_ == SessionState::kOpenConfirm) {
    if (negotiated_hold_ == Duration(0)) {
      // No hold timer once established (RFC 4271 §4.2); until then the OPEN exchange's
      // bound stays, or a peer that never confirms would hold the session forever.
      if (state_ == SessionState::kEstablished) hold_timer_.cancel();
      return;
    }
    hold_timer_.arm_at(loop_.now() + negotiated_hold_);
  }
}

void Session::on_hold_timer() {
  if (state_ == SessionState::kConnect) return reset("connect timed out");
  if (state_ == SessionState::kOpenSent) {
    return fail(err::kHoldTimerExpired, 0, {}, "no OPEN from the peer in time");
  }
  if (state_ == SessionState::kOpenConfirm && negotiated_hold_ == Duration(0)) {
    return fail(err::kHoldTimerExpired, 0, {}, "no KEEPALIVE from the peer in time");
  }
  fail(err::kHoldTimerExpired, 0, {},
       fmt::format("hold timer expired: nothing from the peer for {}",
                   format_duration(negotiated_hold_)));
}

void Session::on_keepalive_timer() {
  if (!established() || negotiated_hold_ == Duration(0)) return;
  std::string ka;
  write_keepalive(ka);
  send(std::move(ka));
  // RFC 4271 §10: a third of the hold time.
  keepalive_timer_.arm_at(loop_.now() + negotiated_hold_ / 3);
}

}  // namespace sluice::bgp
