// Fuzz target for the BGP message reader: what a peer (or anyone who reaches the session's
// TCP connection) can send. The input is read as a stream of messages, as the session reads
// its connection. Whatever the bytes, the reader must not crash nor read outside the input,
// and must keep its promises: a message it takes is 19..4096 octets; a refusal names a
// NOTIFICATION code of RFC 4271 §4.5; every prefix it returns fits its family, has no host
// bits, and survives a round trip through the writer. Any violated invariant traps.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "bgp/message.h"

namespace {

void require(bool cond) {
  if (!cond) __builtin_trap();
}

void check_prefix(const sluice::bgp::Prefix& p) {
  using namespace sluice::bgp;
  require(p.length <= p.max_length());
  for (size_t bit = p.length; bit < p.max_length(); ++bit) {
    require((p.addr[bit / 8] & (0x80 >> (bit % 8))) == 0);
  }
  std::string out;
  write_withdraw(p, out);
  Message m;
  ParseError e;
  require(read_message({reinterpret_cast<const uint8_t*>(out.data()), out.size()}, m, e) ==
          out.size());
  require(m.update.withdrawn.size() == 1 && m.update.withdrawn[0] == p);
  require(Prefix::parse(p.to_string()).is_ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::bgp;
  std::span<const uint8_t> in(data, size);
  while (!in.empty()) {
    Message m;
    ParseError e;
    size_t used = read_message(in, m, e);
    if (used == 0) break;
    if (used == SIZE_MAX) {
      require(e.code >= 1 && e.code <= 6);
      require(!e.detail.empty());
      break;
    }
    require(used >= kHeaderSize && used <= kMaxMessageSize && used <= in.size());
    for (const Prefix& p : m.update.announced) check_prefix(p);
    for (const Prefix& p : m.update.withdrawn) check_prefix(p);
    in = in.subspan(used);
  }
  return 0;
}
