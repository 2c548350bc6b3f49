#include "bgp/speaker.h"

#include <arpa/inet.h>

#include <cstring>

#include <fmt/format.h>

#include "base/json.h"
#include "base/log.h"

namespace sluice::bgp {

Speaker::Speaker(event::Loop& loop, std::shared_ptr<const BgpConfig> config, Probe probe)
    : loop_(loop),
      config_(std::move(config)),
      probe_(std::move(probe)),
      shutdown_timer_(loop.timers(), [this] { finish_shutdown(); }) {
  for (const PeerConfig& p : config_->peers) {
    SessionCallbacks& callbacks = *this;
    sessions_.push_back(std::make_unique<Session>(loop_, *config_, p, callbacks));
  }
  prefixes_.resize(config_->announce.size());
  for (auto& p : prefixes_) {
    p.hold_down = std::make_unique<event::Timer>(loop_.timers(), [this] { evaluate(); });
    p.reason = "waiting for sluice to be ready";
  }
}

Speaker::~Speaker() = default;

void Speaker::start() {
  for (auto& s : sessions_) {
    if (!s->dormant()) s->start();
  }
}

void Speaker::set_ready() {
  ready_ = true;
  evaluate();
}

std::string Speaker::describe(size_t i, const SourceState& s) const {
  const AnnounceConfig& a = config_->announce[i];
  if (a.source == AnnounceConfig::Source::kListener) {
    return s.usable > 0 ? fmt::format("listener {} is accepting", a.target)
                        : fmt::format("listener {} is not accepting ({})", a.target,
                                      s.note.empty() ? "closed" : s.note);
  }
  return fmt::format("{} has {} of {} endpoints usable (min {})", a.source_name(), s.usable,
                     s.total, a.min_healthy_text());
}

void Speaker::evaluate() {
  if (!ready_ || shutting_down_ || released_) return;
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    PrefixState& p = prefixes_[i];
    const AnnounceConfig& a = config_->announce[i];
    p.source = probe_(a);
    bool enough = a.enough(p.source.usable, p.source.total);
    if (!enough) {
      p.enough_since.reset();
      p.hold_down->cancel();
      if (p.announced) {
        withdraw(i, describe(i, p.source));
      } else {
        p.reason = "not announced: " + describe(i, p.source);
      }
      continue;
    }
    if (p.announced) continue;
    if (!p.enough_since) p.enough_since = loop_.now();
    MonoTime at = *p.enough_since + config_->hold_down;
    if (p.ever_withdrawn && loop_.now() < at) {
      if (!p.hold_down->armed()) {
        LOG_INFO("bgp: {} is back: {}; announcing after the hold-down of {}", a.prefix.to_string(),
                 describe(i, p.source), format_duration(config_->hold_down));
        p.reason = fmt::format("hold-down: {}", describe(i, p.source));
        p.hold_down->arm_at(at);
      }
      continue;
    }
    announce(i, describe(i, p.source));
  }
}

Route Speaker::route(size_t i) const {
  const AnnounceConfig& a = config_->announce[i];
  Route r;
  r.prefix = a.prefix;
  r.communities = a.communities;
  if (prefixes_[i].graceful) r.communities.push_back(kGracefulShutdown);
  r.med = a.med;
  if (a.next_hop) {
    const sockaddr* sa = a.next_hop->sockaddr_ptr();
    if (sa->sa_family == AF_INET) {
      std::memcpy(r.next_hop.data(), &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    } else {
      std::memcpy(r.next_hop.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    }
  }
  return r;
}

void Speaker::announce(size_t i, const std::string& why) {
  PrefixState& p = prefixes_[i];
  if (!p.announced) {
    p.announced = true;
    ++p.stats.transitions;
    p.reason = why;
    LOG_INFO("bgp: announcing {}: {}", config_->announce[i].prefix.to_string(), why);
  }
  Route r = route(i);
  for (auto& s : sessions_) s->announce(r);
}

void Speaker::withdraw(size_t i, const std::string& why) {
  PrefixState& p = prefixes_[i];
  if (!p.announced) return;
  p.announced = false;
  p.graceful = false;
  p.ever_withdrawn = true;
  ++p.stats.transitions;
  p.reason = "withdrawn: " + why;
  LOG_WARN("bgp: withdrawing {}: {}", config_->announce[i].prefix.to_string(), why);
  for (auto& s : sessions_) s->withdraw(config_->announce[i].prefix);
}

void Speaker::on_established(Session& session) {
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    if (prefixes_[i].announced) session.announce(route(i));
  }
}

void Speaker::shutdown(const std::string& why, std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  bool any_announced = false;
  for (const auto& p : prefixes_) any_announced |= p.announced;
  bool any_session = false;
  for (const auto& s : sessions_) any_session |= s->established();
  for (auto& p : prefixes_) p.hold_down->cancel();
  if (!any_announced || !any_session) {
    LOG_INFO("bgp: stopping ({}): nothing announced to an established peer", why);
    return finish_shutdown();
  }
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    PrefixState& p = prefixes_[i];
    if (!p.announced) continue;
    p.graceful = true;
    p.reason = fmt::format("graceful shutdown: sluice is stopping ({})", why);
    LOG_INFO(
        "bgp: announcing {} with GRACEFUL_SHUTDOWN: sluice is stopping ({}); withdrawing "
        "in {}",
        config_->announce[i].prefix.to_string(), why, format_duration(config_->shutdown_delay));
    announce(i, p.reason);
  }
  shutdown_timer_.arm_at(loop_.now() + config_->shutdown_delay);
}

void Speaker::hurry() {
  if (shutdown_timer_.armed()) {
    shutdown_timer_.cancel();
    finish_shutdown();
  }
}

void Speaker::finish_shutdown() {
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    withdraw(i, "sluice is stopping");
  }
  if (auto done = std::move(shutdown_done_)) {
    shutdown_done_ = nullptr;
    done();
  }
}

void Speaker::stop() {
  for (auto& s : sessions_) s->stop(err::kAdministrativeShutdown, "sluice stopped");
}

std::vector<Speaker::PrefixView> Speaker::prefixes() const {
  std::vector<PrefixView> out;
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    const PrefixState& p = prefixes_[i];
    PrefixStats stats = p.stats;
    stats.announced = p.announced;
    stats.graceful_shutdown = p.graceful;
    out.push_back(
        PrefixView{&config_->announce[i], p.source, p.announced, p.graceful, p.reason, stats});
  }
  return out;
}

std::string Speaker::render_json() const {
  std::string out = fmt::format("{{\"local_as\":{},\"router_id\":", config_->local_as);
  append_json_string(config_->router_id_text, out);
  out += ",\"peers\":[";
  for (size_t i = 0; i < sessions_.size(); ++i) {
    const Session& s = *sessions_[i];
    PeerStats st = s.stats();
    if (i) out += ',';
    out += "{\"address\":";
    append_json_string(s.name(), out);
    out += fmt::format(",\"remote_as\":{},\"state\":", s.peer().remote_as);
    append_json_string(to_string(s.state()), out);
    out += fmt::format(
        ",\"uptime_seconds\":{},\"hold_time_seconds\":{},\"updates_sent\":{},"
        "\"updates_received\":{},\"notifications_sent\":{},\"notifications_received\":{},"
        "\"received_prefixes\":{},\"md5\":{},\"last_error\":",
        st.uptime_ns / 1'000'000'000,
        std::chrono::duration_cast<std::chrono::seconds>(s.hold_time()).count(), st.updates_sent,
        st.updates_received, st.notifications_sent, st.notifications_received, st.received_prefixes,
        s.peer().password.empty() ? "false" : "true");
    append_json_string(s.last_error(), out);
    out += '}';
  }
  out += "],\"prefixes\":[";
  auto views = prefixes();
  for (size_t i = 0; i < views.size(); ++i) {
    const PrefixView& v = views[i];
    if (i) out += ',';
    out += "{\"prefix\":";
    append_json_string(v.config->prefix.to_string(), out);
    out += ",\"source\":";
    append_json_string(v.config->source_name(), out);
    out += fmt::format(",\"usable\":{},\"total\":{},\"min_healthy\":", v.source.usable,
                       v.source.total);
    append_json_string(v.config->min_healthy_text(), out);
    out += fmt::format(",\"announced\":{},\"graceful_shutdown\":{},\"transitions\":{},",
                       v.announced, v.graceful, v.stats.transitions);
    out += "\"communities\":[";
    for (size_t k = 0; k < v.config->communities.size(); ++k) {
      if (k) out += ',';
      append_json_string(community_to_string(v.config->communities[k]), out);
    }
    out += "],\"reason\":";
    append_json_string(v.reason, out);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace sluice::bgp
