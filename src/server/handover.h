// The binary upgrade's hand-over: what a running sluice passes to the new process it starts,
// over a Unix SOCK_SEQPACKET socket pair. Each packet is one line of text, with descriptors
// attached (SCM_RIGHTS) where the line says so:
//
//   sluice-handover <version>                 first; a newer version than ours is refused
//   listener <name> <address> <count>         then <count> listening sockets attached
//   sockets <name> <role> <address> <count>   (2) more sockets of the listener just sent,
//                                             <count> attached: role stun-alternate-port,
//                                             stun-alternate-ip, stun-alternate-both (the
//                                             RFC 5780 sockets) or stun-tcp (STUN over TCP)
//   admin <address> 1                         the admin endpoint's socket attached
//   endpoint <cluster> <address> <draining> <ejections> <ejected ms left, -1: not ejected>
//                                             an endpoint an operator drained or outlier
//                                             detection ejected
//   dns <key> <ms left> <record ttl> <name> <A|S> <values...>
//                                             a cached DNS answer (addresses, or SRV records
//                                             as target/port/priority/weight)
//   registration <lease id>                   the lease sluice's own etcd key is under
//                                             (decimal); the new process keeps it alive
//   tickets <listener> <hex>                  a TLS listener's session-ticket keys (80 bytes
//                                             each: name, AES key, HMAC key), the encrypting
//                                             one first
//   bgp <section version> ...                 the BGP speaker's established sessions, each
//                                             with its socket (bgp/handover.h); optional
//   end                                       last
//
// and back, from the new process to the old one:
//
//   ready <pid>                               the new process serves: the old one may drain
//   failed <reason>                           the new process could not start; it exits
//
// and, after "ready" when BGP sessions were handed over, the old process's last word: the
// sessions let go of (bgp/handover.h's step 2), then "end".
//
// Sockets travel as descriptors, so the kernel's accept queues go with them: a connection
// queued while the processes change hands is accepted by the new one, never reset.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/units.h"
#include "bgp/handover.h"
#include "dns/cache.h"
#include "net/address.h"
#include "net/socket.h"
#include "tls/ticket_keys.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {

// The hand-over format this binary writes. A reader accepts every version up to its own.
// 1: listeners, admin, endpoints, dns, tickets. 2: sockets (a listener's other sockets).
inline constexpr uint32_t kHandoverVersion = 2;

// What a listener's other sockets are for, beside its main ones.
enum class SocketRole {
  kStunAlternatePort,  // RFC 5780: the listener's IP, the alternate port
  kStunAlternateIp,    // the alternate IP, the listener's port
  kStunAlternateBoth,  // the alternate IP and port
  kStunTcp,            // STUN over TCP, on the listener's address
};
const char* to_string(SocketRole role);

// More sockets of a listener, one per socket of HandedListener::fds, in the same order.
struct HandedSockets {
  SocketRole role = SocketRole::kStunTcp;
  net::Address address;
  std::vector<net::Fd> fds;
};

struct HandedListener {
  std::string name;
  net::Address address;
  std::vector<net::Fd> fds;          // listening sockets, one per worker of the old process
  std::vector<HandedSockets> parts;  // version 2 on; none from an older sender
};

struct Handover {
  uint32_t version = kHandoverVersion;
  std::vector<HandedListener> listeners;
  std::optional<HandedListener> admin;  // name "admin", one socket
  // Per TLS listener name: its session-ticket keys, so that clients resume on the new process.
  std::map<std::string, std::vector<tls::TicketKey>> ticket_keys;
  std::vector<upstream::health::HealthManager::EndpointState> endpoints;
  std::vector<dns::Cache::Saved> dns;
  // The BGP speaker's established sessions by peer (bgp/handover.h's step 1).
  std::map<std::string, bgp::SessionTransfer> bgp;
  int64_t registration_lease = 0;  // 0: none
};

// The lowest version that carries `handover`: 1 unless a listener has other sockets, so
// that a binary of version 1 can take over (a roll-back) when nothing needs version 2. The
// BGP section is optional in every version: a reader that knows no BGP refuses its lines.
uint32_t lowest_handover_version(const Handover& handover);

// Writes `handover` (descriptors are duplicated into the receiver by the kernel; the
// caller keeps its own). Blocking; `sock` is one end of a SOCK_SEQPACKET pair.
Status send_handover(int sock, const Handover& handover);
// Reads a hand-over, waiting at most `timeout` for each packet.
Result<Handover> receive_handover(int sock, Duration timeout);

// The path of the running executable (as started: a binary replaced on disk since is the
// one an upgrade runs). "" when /proc is not there.
std::string own_executable();

// The BGP sessions let go of, after "ready" (bgp/handover.h's step 2), then "end".
Status send_bgp_release(int sock, const std::vector<bgp::SessionTransfer>& released);
Result<std::map<std::string, bgp::SessionTransfer>> receive_bgp_release(int sock, Duration timeout);

// One line of the new process's answer ("ready <pid>", "failed <reason>").
Status send_line(int sock, const std::string& line);

}  // namespace sluice::server
