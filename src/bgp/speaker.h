// Speaker: sluice's announce-only BGP speaker. It owns one Session per configured peer and
// decides, for every configured prefix, whether it is announced: only once sluice is ready,
// and only while the listener or cluster the prefix follows has enough usable endpoints.
// A prefix whose source drops below its threshold is withdrawn at once (a black hole costs
// more than a withdrawal); one that was withdrawn is announced again only after its source
// has stayed above the threshold for `hold_down`, so a flapping cluster cannot flap the
// route faster than that. At a stop, shutdown() re-announces every announced prefix with
// the GRACEFUL_SHUTDOWN community (RFC 8326), waits `shutdown_delay`, withdraws them and
// only then lets sluice stop accepting. Every decision is logged with its reason. Main
// thread only, on the main thread's loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/metric.h"
#include "bgp/config.h"
#include "bgp/session.h"
#include "event/loop.h"
#include "event/timer.h"

namespace sluice::bgp {

// One prefix's counters and levels, declared once (base/metric.h says how to add one);
// exported with a prefix label.
// clang-format off
#define SLUICE_BGP_PREFIX_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                       \
  GAUGE(announced, "sluice_bgp_prefix_announced", "", "announced",                                 \
        "Whether sluice announces the prefix (1) or not (0).")                                     \
  GAUGE(graceful_shutdown, "sluice_bgp_prefix_graceful_shutdown", "", "graceful shutdown",         \
        "Whether the prefix is announced with the GRACEFUL_SHUTDOWN community (stopping).")        \
  COUNTER(transitions, "sluice_bgp_prefix_transitions_total", "", "transitions",                   \
          "Times the prefix was announced or withdrawn.")
// clang-format on

struct PrefixStats {
  SLUICE_METRIC_MEMBERS(SLUICE_BGP_PREFIX_STATS)
};

// What a prefix's source has: usable endpoints of how many (a listener: 1 of 1 while sluice
// accepts on it), and words for the log when it has none ("draining").
struct SourceState {
  size_t usable = 0;
  size_t total = 0;
  std::string note;
};

// Binary upgrade, new process: ends a handed session whose peer the configuration no longer
// has (Cease, peer de-configured), after what the old process left queued (`released`).
void close_deconfigured(SessionTransfer& handed, const SessionTransfer* released);

class Speaker final : private SessionCallbacks {
 public:
  using Probe = std::function<SourceState(const AnnounceConfig&)>;

  Speaker(event::Loop& loop, std::shared_ptr<const BgpConfig> config, Probe probe);
  ~Speaker();
  Speaker(const Speaker&) = delete;
  Speaker& operator=(const Speaker&) = delete;

  // Opens the sessions. Nothing is announced before set_ready(true).
  void start();
  // sluice is ready (its first health answers are in): prefixes may be announced.
  void set_ready();
  // A source may have changed (health published, a listener drained): decides again.
  void evaluate();
  // The stop: GRACEFUL_SHUTDOWN, shutdown_delay, withdrawal, then `done` (at once when no
  // session is established or nothing is announced). `why` is logged ("SIGTERM").
  void shutdown(const std::string& why, std::function<void()> done);
  // Skips what is left of the shutdown delay (a second stop signal): withdraws now.
  void hurry();
  // Closes every session with a Cease NOTIFICATION (administrative shutdown).
  void stop();

  // Binary upgrade (bgp/handover.h), old process. Step 1: every established session.
  std::vector<SessionTransfer> hand_over();
  // Step 2, once the new process is ready: lets go of the sessions handed over (closes the
  // others: the new process connects to those peers itself) and decides nothing more.
  std::vector<SessionTransfer> release();
  // New process, before start(): holds the handed sessions dormant; start() does not
  // connect to their peers.
  void adopt(std::map<std::string, SessionTransfer> sessions);
  bool adopted() const;
  // Once ready and the old process let go (`released`: what it passed; null when it did
  // not answer): carries the sessions on and sends each peer only what changed. Sessions
  // of peers no longer configured are closed (Cease, peer de-configured).
  void take_over(std::map<std::string, SessionTransfer>* released);

  bool shutting_down() const { return shutting_down_; }
  const BgpConfig& config() const { return *config_; }

  struct PrefixView {
    const AnnounceConfig* config;
    SourceState source;
    bool announced;
    bool graceful;
    std::string reason;  // the last decision's
    PrefixStats stats;
  };
  std::vector<PrefixView> prefixes() const;
  const std::vector<std::unique_ptr<Session>>& sessions() const { return sessions_; }
  // GET /bgp.
  std::string render_json() const;

 private:
  struct PrefixState {
    std::unique_ptr<event::Timer> hold_down;  // announce once the source stayed enough
    std::optional<MonoTime> enough_since;
    bool ever_withdrawn = false;  // the hold-down applies from the first withdrawal on
    bool announced = false;
    bool graceful = false;
    SourceState source;
    std::string reason;
    PrefixStats stats;
  };

  void on_established(Session& session) override;
  void on_taken_over(Session& session) override;
  Route route(size_t i) const;
  void announce(size_t i, const std::string& why);
  void withdraw(size_t i, const std::string& why);
  std::string describe(size_t i, const SourceState& s) const;
  void finish_shutdown();

  event::Loop& loop_;
  std::shared_ptr<const BgpConfig> config_;
  Probe probe_;
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<PrefixState> prefixes_;
  bool ready_ = false;
  bool shutting_down_ = false;
  bool released_ = false;  // old process of an upgrade: the new one runs the sessions
  // New process: handed sessions of peers the configuration no longer has.
  std::vector<SessionTransfer> orphans_;
  event::Timer shutdown_timer_;
  std::function<void()> shutdown_done_;
};

}  // namespace sluice::bgp
