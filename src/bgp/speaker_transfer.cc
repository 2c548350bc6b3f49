// Speaker's part of a binary upgrade (bgp/handover.h says the steps).
#include <sys/socket.h>

#include <fmt/format.h>

#include "base/log.h"
#include "bgp/speaker.h"

namespace sluice::bgp {

void close_deconfigured(SessionTransfer& handed, const SessionTransfer* released) {
  if (released && !released->established) return;
  // What the old process queued goes first, then the NOTIFICATION (RFC 4486 §4); the
  // socket is non-blocking: as much as it takes now, and the close.
  std::string bytes = released ? released->out : std::string();
  write_notification(err::kCease, err::kPeerDeconfigured, {}, bytes);
  (void)::send(handed.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  handed.fd.reset();
  LOG_INFO("bgp peer {}: no longer configured: session closed (NOTIFICATION sent: {})", handed.peer,
           describe_error(err::kCease, err::kPeerDeconfigured));
}

std::vector<SessionTransfer> Speaker::hand_over() {
  std::vector<SessionTransfer> out;
  for (auto& s : sessions_) {
    if (auto t = s->hand_over()) out.push_back(std::move(*t));
  }
  return out;
}

std::vector<SessionTransfer> Speaker::release() {
  released_ = true;
  for (auto& p : prefixes_) p.hold_down->cancel();
  std::vector<SessionTransfer> out;
  for (auto& s : sessions_) {
    if (s->handed_over()) {
      out.push_back(s->release());
    } else {
      s->stop(err::kAdministrativeShutdown, "the new process connects to this peer itself");
    }
  }
  return out;
}

void Speaker::adopt(std::map<std::string, SessionTransfer> sessions) {
  for (auto& s : sessions_) {
    auto it = sessions.find(s->name());
    if (it == sessions.end()) continue;
    s->adopt(std::move(it->second));
    sessions.erase(it);
  }
  for (auto& [peer, t] : sessions) orphans_.push_back(std::move(t));
}

bool Speaker::adopted() const {
  if (!orphans_.empty()) return true;
  for (const auto& s : sessions_) {
    if (s->dormant()) return true;
  }
  return false;
}

void Speaker::take_over(std::map<std::string, SessionTransfer>* released) {
  for (auto& s : sessions_) {
    if (!s->dormant()) continue;
    SessionTransfer* t = nullptr;
    if (released) {
      auto it = released->find(s->name());
      if (it != released->end() && it->second.released) t = &it->second;
    }
    s->take_over(t);
  }
  for (SessionTransfer& o : std::exchange(orphans_, {})) {
    const SessionTransfer* t = nullptr;
    if (released) {
      auto it = released->find(o.peer);
      if (it != released->end() && it->second.released) t = &it->second;
    }
    close_deconfigured(o, t);
  }
}

void Speaker::on_taken_over(Session& session) {
  // The peer has session.sent(); it should have what this process announces.
  std::map<Prefix, Route> have = session.sent();
  size_t kept = 0, announced = 0, withdrawn = 0;
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    const Prefix& prefix = config_->announce[i].prefix;
    auto it = have.find(prefix);
    if (prefixes_[i].announced) {
      Route want = route(i);
      if (it != have.end() && it->second == want) {
        ++kept;
      } else {
        session.announce(want);
        ++announced;
      }
    } else if (it != have.end()) {
      session.withdraw(prefix);
      ++withdrawn;
    }
    if (it != have.end()) have.erase(it);
  }
  for (const auto& [prefix, r] : have) {
    LOG_INFO("bgp: withdrawing {} from {}: no longer in the configuration", prefix.to_string(),
             session.name());
    session.withdraw(prefix);
    ++withdrawn;
  }
  LOG_INFO(
      "bgp peer {}: after the upgrade: {} routes kept as they were, {} announced, {} "
      "withdrawn",
      session.name(), kept, announced, withdrawn);
}

}  // namespace sluice::bgp
