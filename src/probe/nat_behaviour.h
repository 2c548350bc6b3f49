// RFC 5780 NAT behaviour discovery for `sluice probe stun://`: against a STUN server with a
// second address (it advertises OTHER-ADDRESS), tells the NAT's mapping behaviour (§4.3)
// and filtering behaviour (§4.4) from the mapped addresses and the answers that come back,
// and says why when it cannot tell. Main thread; blocking (a command-line tool).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "net/address.h"

namespace sluice::probe {

enum class NatBehaviour {
  kUnknown,
  kEndpointIndependent,
  kAddressDependent,
  kAddressAndPortDependent
};
// "endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown".
const char* to_string(NatBehaviour b);

// One of RFC 5780's tests: what was sent where, and what came back.
struct NatTest {
  std::string name;  // "mapping I", "filtering II" ...
  net::Address to;
  std::string change;  // the CHANGE-REQUEST flags: "", "ip and port", "port"
  std::optional<net::Address> mapped;
  std::optional<net::Address> answer_from;
  std::string result;  // "mapped A:P", "no answer within 3000 ms", "error response 420 ..."
};

struct NatReport {
  bool ran = false;  // false: the server offers no OTHER-ADDRESS (or no binding succeeded)
  std::optional<net::Address> other_address;
  std::optional<bool> behind_nat;  // the mapped address is not this host's own
  NatBehaviour mapping = NatBehaviour::kUnknown;
  NatBehaviour filtering = NatBehaviour::kUnknown;
  // Why, in a sentence: the evidence for a behaviour, or why it cannot be told.
  std::string mapping_detail;
  std::string filtering_detail;
  std::vector<NatTest> tests;
};

// Runs the mapping tests (from one socket: the server, its other IP, its other IP and port)
// and the filtering tests (from another socket, so that the mapping tests opened no hole:
// CHANGE-REQUEST for the other IP and port, then for the other port), the tests of each
// phase at once. A test that gets no answer waits `timeout`.
NatReport discover_nat(const net::Address& server, Duration timeout);

// The report's lines for the text output (each starting with two spaces) and its JSON object.
std::string text_nat_report(const NatReport& r);
std::string json_nat_report(const NatReport& r);

}  // namespace sluice::probe
