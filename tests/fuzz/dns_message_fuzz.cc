// Fuzz target for sluice's DNS response parser: what a DNS server (or anyone who can spoof
// one) sends. Whatever the bytes, parsing must not crash, must not read outside the packet,
// and what it accepts must keep the parser's promises: names in lower case without a
// trailing dot and at most 253 bytes, addresses of the record's family, the same result
// when parsed twice. Any violated invariant traps.
#include <sys/socket.h>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "dns/message.h"

namespace {

using sluice::dns::Message;
using sluice::dns::Record;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

void check_name(const std::string& name) {
  require(name.size() <= 253);
  require(name.empty() || name.back() != '.');
  for (char c : name) require(!(c >= 'A' && c <= 'Z'));
  require(sluice::dns::normalize_name(name) == name);
}

void check_record(const Record& r) {
  check_name(r.name);
  switch (r.type) {
    case sluice::dns::kTypeA:
      require(r.address.family() == AF_INET);
      break;
    case sluice::dns::kTypeAaaa:
      require(r.address.family() == AF_INET6);
      break;
    case sluice::dns::kTypeCname:
    case sluice::dns::kTypeSrv:
      check_name(r.target);
      break;
    default:
      break;
  }
}

bool same(const Message& a, const Message& b) {
  if (a.rcode != b.rcode || a.truncated != b.truncated || a.answers.size() != b.answers.size() ||
      a.authority.size() != b.authority.size()) {
    return false;
  }
  for (size_t i = 0; i < a.answers.size(); ++i) {
    const Record& x = a.answers[i];
    const Record& y = b.answers[i];
    if (x.name != y.name || x.type != y.type || x.ttl != y.ttl || x.target != y.target)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> packet(data, size);
  auto first = sluice::dns::parse_message(packet);
  auto second = sluice::dns::parse_message(packet);
  require(static_cast<bool>(first) == static_cast<bool>(second));
  if (first) {
    require(same(*first, *second));
    for (const Record& r : first->answers) check_record(r);
    for (const Record& r : first->authority) check_record(r);
  }
  // Names as a configuration or a caller gives them: normalizing is idempotent.
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string once = sluice::dns::normalize_name(text);
  require(sluice::dns::normalize_name(once) == once);
  return 0;
}
