// Session: one BGP-4 session to one configured peer, active side only (RFC 4271 §8, without
// the passive Active state: sluice always opens the connection). States Idle → Connect →
// OpenSent → OpenConfirm → Established, each change through transition() with its reason;
// the hold timer and keepalives once established; after any failure Idle again, and a new
// connection after a backoff that doubles from the peer's connect_retry up to 30 times it
// (back to the start once a session was established). Errors send the NOTIFICATION their
// RFC section names. Routes are what the owner (the Speaker) says; received UPDATEs are
// only counted. Owned by the Speaker, on the main thread's loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/metric.h"
#include "bgp/config.h"
#include "bgp/handover.h"
#include "bgp/message.h"
#include "event/loop.h"
#include "event/timer.h"
#include "net/socket.h"

namespace sluice::bgp {

// The state numbers of the BGP4-MIB's bgpPeerState (RFC 4273), as exported.
enum class SessionState : uint8_t {
  kIdle = 1,
  kConnect = 2,
  kOpenSent = 4,
  kOpenConfirm = 5,
  kEstablished = 6,
};
const char* to_string(SessionState s);

// One peer's counters and levels (main thread), declared once (base/metric.h says how to add
// one); exported with a peer label.
// clang-format off
#define SLUICE_BGP_PEER_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                         \
  GAUGE(state, "sluice_bgp_peer_state", "", "state",                                               \
        "The session's state as the BGP4-MIB numbers it: 1 idle, 2 connect, 4 open sent, "         \
        "5 open confirm, 6 established.")                                                          \
  GAUGE(uptime_ns, "sluice_bgp_peer_uptime_seconds", "", "uptime",                                 \
        "How long the session has been established (0 while it is not).")                          \
  GAUGE(received_prefixes, "sluice_bgp_peer_received_prefixes", "", "received prefixes",           \
        "Prefixes the peer announces to sluice (counted, never installed).")                       \
  COUNTER(established, "sluice_bgp_peer_established_total", "", "established",                     \
          "Times the session reached the established state.")                                      \
  COUNTER(updates_sent, "sluice_bgp_peer_updates_sent_total", "", "updates sent",                  \
          "UPDATE messages sent to the peer.")                                                     \
  COUNTER(updates_received, "sluice_bgp_peer_updates_received_total", "", "updates received",      \
          "UPDATE messages received from the peer.")                                               \
  COUNTER(notifications_sent, "sluice_bgp_peer_notifications_sent_total", "",                      \
          "notifications sent", "NOTIFICATION messages sent to the peer.")                         \
  COUNTER(notifications_received, "sluice_bgp_peer_notifications_received_total", "",              \
          "notifications received", "NOTIFICATION messages received from the peer.")
// clang-format on

struct PeerStats {
  SLUICE_METRIC_MEMBERS(SLUICE_BGP_PEER_STATS)
};

class SessionCallbacks {
 public:
  // The session is established, or the peer asked for every route again (ROUTE-REFRESH):
  // send it every announced route.
  virtual void on_established(class Session& session) = 0;
  // A binary upgrade's new process carries on a session the old one let go of: make the
  // peer's routes (session.sent()) what the speaker announces, sending only the difference.
  virtual void on_taken_over(class Session& session) = 0;

 protected:
  ~SessionCallbacks() = default;
};

class Session final : public event::IoHandler {
 public:
  static constexpr uint32_t kMaxBackoffFactor = 30;
  // Received prefixes remembered for the count; past this only the count of UPDATEs moves.
  static constexpr size_t kMaxReceivedPrefixes = 100'000;
  // Bytes read per wake-up before the loop serves others (the rest on the next turn).
  static constexpr size_t kReadBudget = 256 * 1024;

  Session(event::Loop& loop, const BgpConfig& bgp, const PeerConfig& peer,
          SessionCallbacks& callbacks);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Connects now.
  void start();
  // Sends a Cease NOTIFICATION (`subcode`) if a connection is open, closes it, and stays
  // Idle: no reconnection.
  void stop(uint8_t subcode, const std::string& why);

  // While established: sends one UPDATE (a zero next hop means the session's own address).
  void announce(const Route& route);
  void withdraw(const Prefix& prefix);

  SessionState state() const { return state_; }
  bool established() const { return state_ == SessionState::kEstablished; }
  const PeerConfig& peer() const { return peer_; }
  std::string name() const { return peer_.address.to_string(); }
  // The stats with the levels (state, uptime) filled as of now.
  PeerStats stats() const;
  // Why the session last went down ("" : never).
  const std::string& last_error() const { return last_error_; }
  // The hold time agreed with the peer (0 before the OPEN exchange).
  Duration hold_time() const { return negotiated_hold_; }
  Duration next_retry_in() const;
  // Bytes read per wake-up (kReadBudget; a test makes it small to see the rest read later).
  void set_read_budget(size_t bytes) { read_budget_ = bytes; }
  // The routes the peer has from sluice (Adj-RIB-Out), by prefix, as the speaker gave them.
  const std::map<Prefix, Route>& sent() const { return sent_; }

  // Binary upgrade (bgp/handover.h), old process. Step 1: an established session's state
  // and a duplicate of its socket; nullopt when not established. Nothing changes here.
  std::optional<SessionTransfer> hand_over();
  bool handed_over() const { return handed_over_; }
  // Step 2: lets go without a word to the peer (no NOTIFICATION, no FIN: the new process
  // holds the socket too) and says what was in flight. Idle and stopped afterwards.
  SessionTransfer release();
  // New process. Step 1: holds the session dormant (established for the views, but not
  // read, written or timed; announce() and withdraw() wait for take_over()).
  void adopt(SessionTransfer t);
  bool dormant() const { return dormant_; }
  // Step 2: carries on from `t` (released by the old process), or, with none (the old
  // process did not answer), from the adopted state with empty buffers.
  void take_over(SessionTransfer* t);

  void on_io(uint32_t events) override;

 private:
  void transition(SessionState to, const std::string& why);
  void connect();
  void on_connected();
  // The session's own addresses, the next hop of a route that names none.
  void learn_local_addresses();
  void read_available();
  // Parses and handles every whole message in in_; false when the session went down.
  bool handle_buffered();
  void handle(const Message& m);
  void handle_open(const OpenMessage& open);
  // Sends NOTIFICATION code/subcode (with data), then closes and schedules a reconnection.
  void fail(uint8_t code, uint8_t subcode, const std::string& data, const std::string& why);
  // Closes the connection and schedules a reconnection.
  void reset(const std::string& why);
  void close_connection();
  void send(std::string bytes);
  void flush();
  void arm_hold_timer();
  void on_hold_timer();
  void on_keepalive_timer();
  bool family_negotiated(int family) const;

  event::Loop& loop_;
  const BgpConfig& bgp_;
  const PeerConfig& peer_;
  SessionCallbacks& callbacks_;
  SessionState state_ = SessionState::kIdle;
  net::Fd fd_;
  std::string out_;
  std::vector<uint8_t> in_;
  event::Timer retry_timer_;
  event::Timer hold_timer_;  // also bounds the connect and the OPEN exchange
  event::Timer keepalive_timer_;
  event::Timer read_more_;  // the read budget ran out: the next turn reads on
  size_t read_budget_ = kReadBudget;
  uint32_t failures_ = 0;  // since the last established session
  bool stopped_ = true;
  bool dormant_ = false;
  bool handed_over_ = false;  // old process: step 1 went out for this session
  bool handed_lost_ = false;  // ... and that connection closed since
  std::string stale_config_;  // new process: why the adopted session cannot go on
  OpenMessage peer_open_;
  Duration negotiated_hold_{0};
  std::array<uint8_t, 16> local_v4_{};
  std::array<uint8_t, 16> local_v6_{};
  MonoTime established_at_{};
  std::set<Prefix> received_;
  std::map<Prefix, Route> sent_;
  std::string last_error_;
  PeerStats stats_;
};

}  // namespace sluice::bgp
