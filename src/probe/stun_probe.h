// `sluice probe stun://HOST[:PORT]`: sends STUN Binding requests (RFC 8489) over UDP (or one
// TCP connection: stun+tcp://) and
// reports, per request, the mapped address the server saw, the round trip and the
// transmissions it took (retransmitted on the RFC 8489 §6.2.1 schedule: 500 ms, doubling),
// and, against a server that offers RFC 5780's OTHER-ADDRESS, the NAT's mapping and
// filtering behaviour (probe/nat_behaviour.h). Main thread; blocking with poll() (a
// command-line tool, not the data plane).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/units.h"
#include "net/address.h"
#include "probe/nat_behaviour.h"

namespace sluice::probe {

struct StunTarget {
  std::string host;  // without the brackets of an IPv6 literal
  uint16_t port = 3478;
  bool tcp = false;  // stun+tcp://: over one TCP connection (RFC 8489 §6.2.2)
};
// stun://HOST[:PORT] or stun+tcp://HOST[:PORT] (3478 by default).
Result<StunTarget> parse_stun_url(std::string_view text);
bool is_stun_url(std::string_view text);

// How a STUN probe ended (each its own exit status, see probe/cli.cc).
enum class StunFailure { kNone, kResolve, kNoAnswer, kErrorResponse, kMalformedAnswer };

struct StunAttempt {
  std::optional<net::Address> mapped;
  Duration rtt{0};        // from the first transmission to the answer
  int transmissions = 0;  // requests sent (1 + retransmissions)
  int error_code = 0;     // an error response's code
  std::string error;      // empty on success
  StunFailure failure = StunFailure::kNone;
  std::optional<net::Address> other_address;  // RFC 5780 OTHER-ADDRESS, when offered
  std::optional<net::Address> response_origin;
  std::optional<net::Address> responder;  // where the answer came from
};

// One Binding request of an exchange: sent from `fd` (a UDP socket) to `to`, with RFC 5780's
// CHANGE-REQUEST flags `change` (stun::kChangeIp, stun::kChangePort).
struct StunRequest {
  int fd = -1;
  net::Address to;
  uint8_t change = 0;
};

// Sends every request at once and retransmits each on the RFC 8489 §6.2.1 schedule until it
// is answered or `timeout` passes. The results are in the order of `requests`. Each request
// carries PADDING, so that a server that keeps its answers no larger than its requests may
// add OTHER-ADDRESS and RESPONSE-ORIGIN.
std::vector<StunAttempt> exchange_bindings(std::span<const StunRequest> requests, Duration timeout);

struct StunReport {
  std::string url;
  bool tcp = false;
  std::optional<net::Address> server;
  std::vector<StunAttempt> attempts;
  NatReport nat;
  StunFailure failure = StunFailure::kNone;  // the first attempt's that failed
  std::string error;
};

// `count` requests, one after the other; each given up after `timeout`. Over TCP they share
// one connection, each is sent once (TCP retransmits), and RFC 5780's tests (UDP only) are
// not run.
StunReport run_stun_probe(const std::string& url, const StunTarget& target, int count,
                          Duration timeout);
std::string text_stun_report(const StunReport& r);
std::string json_stun_report(const StunReport& r);

}  // namespace sluice::probe
