// Fuzz target for sluice's STUN server: what anyone on the internet can send to a STUN
// listener, with any source address. Whatever the bytes, the message reader and the Binding
// answer must not crash nor read outside the datagram, and must keep their promises: what is
// dropped gets no bytes; what is answered parses as a STUN message of the error or success
// class with the request's transaction id and a correct FINGERPRINT; and no answer is larger
// than the request unless it is the minimal success answer (with the integrity an
// authenticated request gets) or the request carries PADDING.
// Any violated invariant traps.
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "stun/binding.h"
#include "stun/message.h"

namespace {

void require(bool cond) {
  if (!cond) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::stun;
  std::span<const uint8_t> in(data, size);
  ParseResult r = parse(in);
  if (r.message) {
    require(r.message->size == size);
    for (const auto& a : r.message->attributes) {
      require(a.value.data() >= data && a.value.data() + a.value.size() <= data + size);
      (void)read_address(a.value, &r.message->transaction_id);
      (void)read_address(a.value, nullptr);
    }
  }
  // The first byte picks the source's family, so both XOR-MAPPED-ADDRESS forms are tried.
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(5000);
  sin6.sin6_addr.s6_addr[15] = 1;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(6000);
  sin.sin_addr.s_addr = htonl(0x7f000001);
  bool v6 = size > 0 && (data[size - 1] & 1);
  auto source =
      v6 ? sluice::net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&sin6), sizeof sin6)
         : sluice::net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  ServerOptions options;
  options.software = "sluice fuzz";
  // The last byte's second bit: a listener with an alternate address (RFC 5780).
  static const NatDiscovery nat{*sluice::net::Address::parse("192.0.2.1:3478"),
                                *sluice::net::Address::parse("192.0.2.2:3479")};
  bool discovery = size > 0 && (data[size - 1] & 2);
  // The third bit: short-term credentials (user "u", password "p").
  bool authenticated = size > 0 && (data[size - 1] & 4);
  if (authenticated) options.credentials = {{"u", "p"}};
  Answer a = answer_binding(in, source, options, discovery ? &nat : nullptr);
  require(discovery || (a.change == 0 && a.response_port == 0));
  if (!answered(a.outcome)) {
    require(a.response.empty());
    return 0;
  }
  require(r.message.has_value());
  ParseResult back = parse(a.response);
  require(back.message.has_value());
  require(back.message->transaction_id == r.message->transaction_id);
  require(back.message->has_fingerprint);
  require(back.message->message_class ==
          (a.outcome == Outcome::kSuccess ? MessageClass::kSuccess : MessageClass::kError));
  size_t minimal = v6 ? 52 : 40;
  bool padded = r.message->find(attr::kPadding) != nullptr;
  if (a.outcome == Outcome::kSuccess) {
    // An authenticated answer carries its integrity attribute (at most 36 bytes) as well.
    require(padded || a.response.size() <= std::max(size, minimal + (authenticated ? 36 : 0)));
  } else {
    // An error answer carries ERROR-CODE (8 bytes without a reason phrase), UNKNOWN-ATTRIBUTES
    // (at most half the attributes it lists) and FINGERPRINT: at most 20 bytes over the
    // request unless PADDING asked for more.
    require(back.message->find(attr::kErrorCode) != nullptr);
    require(padded || a.response.size() <= size + 20);
  }
  return 0;
}
