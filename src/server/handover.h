// The binary upgrade's hand-over: what a running sluice passes to the new process it starts,
// over a Unix SOCK_SEQPACKET socket pair. Each packet is one line of text, with descriptors
// attached (SCM_RIGHTS) where the line says so:
//
//   sluice-handover <version>                 first; a newer version than ours is refused
//   listener <name> <address> <count>         then <count> listening sockets attached
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
//   end                                       last
//
// and back, from the new process to the old one:
//
//   ready <pid>                               the new process serves: the old one may drain
//   failed <reason>                           the new process could not start; it exits
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
#include "dns/cache.h"
#include "net/address.h"
#include "net/socket.h"
#include "tls/ticket_keys.h"
#include "upstream/health/health_manager.h"

namespace sluice::server {

// The hand-over format this binary writes. A reader accepts every version up to its own.
inline constexpr uint32_t kHandoverVersion = 1;

struct HandedListener {
  std::string name;
  net::Address address;
  std::vector<net::Fd> fds;  // listening sockets, one per worker of the old process
};

struct Handover {
  uint32_t version = kHandoverVersion;
  std::vector<HandedListener> listeners;
  std::optional<HandedListener> admin;  // name "admin", one socket
  // Per TLS listener name: its session-ticket keys, so that clients resume on the new process.
  std::map<std::string, std::vector<tls::TicketKey>> ticket_keys;
  std::vector<upstream::health::HealthManager::EndpointState> endpoints;
  std::vector<dns::Cache::Saved> dns;
  int64_t registration_lease = 0;  // 0: none
};

// Writes `handover` (descriptors are duplicated into the receiver by the kernel; the
// caller keeps its own). Blocking; `sock` is one end of a SOCK_SEQPACKET pair.
Status send_handover(int sock, const Handover& handover);
// Reads a hand-over, waiting at most `timeout` for each packet.
Result<Handover> receive_handover(int sock, Duration timeout);

// The path of the running executable (as started: a binary replaced on disk since is the
// one an upgrade runs). "" when /proc is not there.
std::string own_executable();

// One line of the new process's answer ("ready <pid>", "failed <reason>").
Status send_line(int sock, const std::string& line);

}  // namespace sluice::server
