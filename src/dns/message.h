// DNS messages (RFC 1035): the parts of a response sluice reads: the header's rcode and the
// answer and authority records it understands (A, AAAA, CNAME, SRV, SOA), with their TTLs.
// c-ares moves the packets; reading them here keeps the TTLs, the CNAME chain and the SOA
// of a negative answer (RFC 2308), which c-ares' own helpers drop.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "net/address.h"

namespace sluice::dns {

enum RecordType : uint16_t {
  kTypeA = 1,
  kTypeCname = 5,
  kTypeSoa = 6,
  kTypeAaaa = 28,
  kTypeSrv = 33,
};

enum Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

struct Record {
  std::string name;  // owner, lower case, without the trailing dot
  uint16_t type = 0;
  uint32_t ttl = 0;
  net::Address address;                         // A, AAAA (port 0)
  std::string target;                           // CNAME, SRV (lower case, no trailing dot)
  uint16_t priority = 0, weight = 0, port = 0;  // SRV
  uint32_t soa_minimum = 0;                     // SOA
};

struct Message {
  uint8_t rcode = 0;
  bool truncated = false;
  std::vector<Record> answers;
  std::vector<Record> authority;
};

// Parses a response; records of other types are skipped. Fails on a malformed packet.
Result<Message> parse_message(std::span<const uint8_t> packet);

// Lower case, without a trailing dot: how names are compared and cached.
std::string normalize_name(std::string_view name);

}  // namespace sluice::dns
