// Session's part of a binary upgrade (bgp/handover.h says the steps).
#include <fcntl.h>

#include <cerrno>

#include <fmt/format.h>

#include "base/log.h"
#include "bgp/session.h"
#include "net/connect.h"

namespace sluice::bgp {
namespace {

Duration left(const event::Timer& t, MonoTime now) {
  return t.armed() ? std::max(Duration(0), t.deadline() - now) : Duration(0);
}

}  // namespace

std::optional<SessionTransfer> Session::hand_over() {
  handed_over_ = false;
  handed_lost_ = false;
  if (!established() || dormant_ || !fd_.valid()) return std::nullopt;
  int dup = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    LOG_WARN("bgp peer {}: not handed over: dup: {}", name(), net::error_text(errno));
    return std::nullopt;
  }
  SessionTransfer t;
  t.peer = name();
  t.fd = net::Fd(dup);
  t.remote_as = peer_.remote_as;
  t.local_as = bgp_.local_as;
  t.router_id = bgp_.router_id;
  t.md5 = !peer_.password.empty();
  t.peer_open = peer_open_;
  t.hold = negotiated_hold_;
  t.uptime = std::chrono::duration_cast<Duration>(loop_.clock().now() - established_at_);
  for (const auto& [prefix, route] : sent_) t.sent.push_back(route);
  handed_over_ = true;
  return t;
}

SessionTransfer Session::release() {
  SessionTransfer t;
  t.peer = name();
  t.released = true;
  // Down since step 1 (and perhaps up again on another connection): the new process
  // connects itself.
  t.established = established() && fd_.valid() && !dormant_ && !handed_lost_;
  t.stats = {stats_.established, stats_.updates_sent, stats_.updates_received,
             stats_.notifications_sent, stats_.notifications_received};
  if (t.established) {
    t.hold_left = left(hold_timer_, loop_.now());
    t.keepalive_left = left(keepalive_timer_, loop_.now());
    t.in.assign(in_.begin(), in_.end());
    t.out = out_;
    for (const auto& [prefix, route] : sent_) t.sent.push_back(route);
    t.received.assign(received_.begin(), received_.end());
  }
  stopped_ = true;
  handed_over_ = false;
  handed_lost_ = false;
  retry_timer_.cancel();
  hold_timer_.cancel();
  keepalive_timer_.cancel();
  read_more_.cancel();
  if (fd_.valid() && !dormant_) loop_.poller().remove(fd_.get());
  // Closing our descriptor sends nothing: the new process holds the same socket.
  fd_.reset();
  dormant_ = false;
  in_.clear();
  out_.clear();
  sent_.clear();
  received_.clear();
  negotiated_hold_ = Duration(0);
  if (state_ != SessionState::kIdle) {
    LOG_INFO("bgp peer {}: handed over to the new process ({})", name(),
             t.established ? "established" : to_string(state_));
    transition(SessionState::kIdle, "handed over");
  }
  return t;
}

void Session::adopt(SessionTransfer t) {
  close_connection();
  retry_timer_.cancel();
  fd_ = std::move(t.fd);
  dormant_ = true;
  stopped_ = false;
  peer_open_ = t.peer_open;
  negotiated_hold_ = t.hold;
  established_at_ = loop_.clock().now() - t.uptime;
  for (Route& r : t.sent) sent_[r.prefix] = std::move(r);
  learn_local_addresses();
  // The session was agreed under the old settings: if they changed, it starts again.
  stale_config_.clear();
  if (t.remote_as != peer_.remote_as) {
    stale_config_ = fmt::format("remote AS {} → {}", t.remote_as, peer_.remote_as);
  } else if (t.local_as != bgp_.local_as) {
    stale_config_ = fmt::format("local AS {} → {}", t.local_as, bgp_.local_as);
  } else if (t.router_id != bgp_.router_id) {
    stale_config_ = "router id changed";
  } else if (t.md5 != !peer_.password.empty()) {
    stale_config_ = t.md5 ? "TCP-MD5 password removed" : "TCP-MD5 password added";
  }
  transition(SessionState::kEstablished,
             fmt::format("adopted from the previous process (established {} ago, {} routes); "
                         "it runs the session until this process is ready",
                         format_duration(t.uptime), sent_.size()));
}

void Session::take_over(SessionTransfer* t) {
  if (!dormant_) return;
  dormant_ = false;
  if (t && !t->established) {
    fd_.reset();
    sent_.clear();
    negotiated_hold_ = Duration(0);
    LOG_INFO(
        "bgp peer {}: the session went down in the previous process before it let go; "
        "connecting",
        name());
    transition(SessionState::kIdle, "went down in the previous process");
    connect();
    return;
  }
  if (t) {
    in_.assign(t->in.begin(), t->in.end());
    out_ = std::move(t->out);
    sent_.clear();
    for (Route& r : t->sent) sent_[r.prefix] = std::move(r);
    received_.clear();
    for (const Prefix& p : t->received) {
      if (received_.size() < kMaxReceivedPrefixes) received_.insert(p);
    }
    stats_.established = t->stats[0];
    stats_.updates_sent = t->stats[1];
    stats_.updates_received = t->stats[2];
    stats_.notifications_sent = t->stats[3];
    stats_.notifications_received = t->stats[4];
  }
  if (auto s = loop_.poller().add(fd_.get(), event::kReadable | event::kWritable, this); !s) {
    return reset("taking the session over: " + s.message());
  }
  if (negotiated_hold_ > Duration(0)) {
    hold_timer_.arm_at(loop_.now() + (t ? t->hold_left : negotiated_hold_));
    keepalive_timer_.arm_at(loop_.now() + (t ? t->keepalive_left : Duration(0)));
  }
  LOG_INFO("bgp peer {}: taken over from the previous process{}", name(),
           t ? "" : " (it did not say what was in flight: carrying on without it)");
  if (!stale_config_.empty()) {
    std::string why = std::exchange(stale_config_, {});
    return fail(err::kCease, err::kOtherConfigurationChange, {},
                "the peer's settings changed in the upgrade: " + why);
  }
  flush();
  if (!fd_.valid() || !handle_buffered()) return;
  callbacks_.on_taken_over(*this);
}

}  // namespace sluice::bgp
