// What a DNS lookup answers: the addresses or SRV records of a name, or why there are none,
// with the TTL it is good for and where it came from. Plain value types; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/units.h"
#include "net/address.h"

namespace sluice::dns {

enum class ErrorKind {
  kNone,
  kNxDomain,
  kNoData,
  kTimeout,
  kServFail,
  kRefused,
  kCnameLoop,
  kCnameChainTooLong,
  kMalformed,
  kOther,
};
const char* to_string(ErrorKind kind);

struct SrvTarget {
  std::string target;
  uint16_t port = 0;
  uint16_t priority = 0;
  uint16_t weight = 0;
};

enum class QueryType { kAddress, kSrv };

struct Answer {
  std::string name;
  ErrorKind error = ErrorKind::kNone;
  std::string error_text;                // what failed, for logs and `sluice probe`
  std::vector<net::Address> addresses;   // kAddress; port 0
  std::vector<SrvTarget> srv;            // kSrv
  std::vector<std::string> cname_chain;  // the names after `name`, in the order followed
  uint32_t record_ttl = 0;               // as received: the smallest along the chain
  Duration ttl{0};                       // how long it is cached (clamped)
  bool from_cache = false;
  bool from_hosts_file = false;
  bool stale = false;           // a refresh failed: this is the last good answer, expired
  bool refresh_failed = false;  // a refresh failed before expiry: the cached answer, still good
  Duration latency{0};          // time to resolve (0 from the cache)
  bool ok() const { return error == ErrorKind::kNone; }
  // Negative answers: authoritative "no such name / no such record".
  bool negative() const { return error == ErrorKind::kNxDomain || error == ErrorKind::kNoData; }
};

}  // namespace sluice::dns
