// The BGP speaker's part of a binary upgrade: what the old process passes to the new one so
// that an established session survives the upgrade unseen by the peer (no new OPEN, no
// NOTIFICATION, no withdrawal). Two steps, both lines of the server's hand-over (server/
// handover.h carries them and the descriptors; this file writes and reads the lines):
//
//   1. with the listeners, each established session's socket (its TCP-MD5 key is on it
//      already) and what the OPEN exchange agreed. The new process keeps the session
//      dormant: it neither reads, writes nor times it, and does not connect to that peer.
//   2. once the new process said "ready", the old one lets go: it stops reading and writing
//      and passes what was in flight (the bytes of a message read in part, the bytes queued
//      and not yet sent), when its hold and keepalive timers were due, the routes the peer
//      has from it and the prefixes it counts from the peer. The new process carries on.
//
// Lines, each "bgp <section version> <kind> <peer> ...", the peer as "192.0.2.2:179":
//
//   bgp 1 session <peer> <key=value...>   step 1, the socket attached: remote_as, local_as,
//                                          router_id (ours), md5, peer_id, peer_hold, caps
//                                          (as4,rr,v4,v6), hold_ms (agreed), uptime_ms
//   bgp 1 release <peer> <key=value...>   step 2, first for its peer: established (0: the
//                                          session went down meanwhile), hold_left_ms,
//                                          keepalive_left_ms, stats (five counters)
//   bgp 1 route <peer> <prefix> <key=value...>
//                                          a route the peer has from sluice (step 2's list
//                                          replaces step 1's): nh (hex, 0 = own address),
//                                          med, c (communities)
//   bgp 1 in|out <peer> <hex>              step 2: bytes read in part / queued (in pieces)
//   bgp 1 received <peer> <prefix...>      step 2: prefixes the peer announces (in pieces)
//
// A reader refuses a section version newer than its own (the upgrade fails; the old process
// keeps its sessions). Main thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/units.h"
#include "bgp/message.h"
#include "net/socket.h"

namespace sluice::bgp {

inline constexpr uint32_t kHandoverSectionVersion = 1;

// One session as handed over (step 1) and let go of (step 2).
struct SessionTransfer {
  std::string peer;
  net::Fd fd;  // step 1
  // What the OPEN exchange agreed (step 1).
  uint32_t remote_as = 0;
  uint32_t local_as = 0;
  uint32_t router_id = 0;
  bool md5 = false;
  OpenMessage peer_open;
  Duration hold{0};
  Duration uptime{0};
  std::vector<Route> sent;  // the peer's routes from sluice (Adj-RIB-Out)
  // Step 2.
  bool released = false;
  bool established = true;
  Duration hold_left{0};
  Duration keepalive_left{0};
  std::string in;
  std::string out;
  std::vector<Prefix> received;
  // established, updates sent and received, notifications sent and received
  std::array<uint64_t, 5> stats{};
};

// Whether a hand-over line belongs to the BGP section.
bool is_handover_line(std::string_view line);
// Step 1's lines for one session; the first carries the socket.
std::vector<std::string> write_session_lines(const SessionTransfer& t);
// Step 2's lines for one session.
std::vector<std::string> write_release_lines(const SessionTransfer& t);

// Reads both steps' lines, in order, into one SessionTransfer per peer.
class HandoverReader {
 public:
  // `fds`: the descriptors that came with the line (a session line's one is taken).
  Status add(std::string_view line, std::vector<net::Fd>& fds);
  std::map<std::string, SessionTransfer>& sessions() { return sessions_; }

 private:
  std::map<std::string, SessionTransfer> sessions_;
};

}  // namespace sluice::bgp
