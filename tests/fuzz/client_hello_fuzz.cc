// Fuzz target for sluice's ClientHello reader: the first bytes any client sends to a TCP
// listener that routes by SNI. Whatever the bytes, parsing must not crash or read past the
// input, and its answers must keep their promises: the same answer twice; a need-more answer
// only below the 16 KiB bound; a complete ClientHello ends exactly at bytes_examined (every
// shorter prefix needs more, that prefix alone gives the same ClientHello); a server name
// in lower case that passes valid_server_name(). Any violated invariant traps.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tls/client_hello.h"

namespace {

using sluice::tls::HelloParse;
using Outcome = HelloParse::Outcome;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

bool same(const HelloParse& a, const HelloParse& b) {
  return a.outcome == b.outcome && a.reason == b.reason && a.bytes_examined == b.bytes_examined &&
         a.hello.server_name == b.hello.server_name && a.hello.alpn == b.hello.alpn &&
         a.hello.supported_versions == b.hello.supported_versions &&
         a.hello.legacy_version == b.hello.legacy_version;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  HelloParse first = sluice::tls::parse_client_hello(input);
  require(same(first, sluice::tls::parse_client_hello(input)));
  size_t looked_at = std::min(size, sluice::tls::kMaxClientHelloBytes);
  require(first.bytes_examined <= looked_at);
  switch (first.outcome) {
    case Outcome::kNeedMore:
      require(first.bytes_examined == size && size < sluice::tls::kMaxClientHelloBytes);
      require(first.reason.empty());
      break;
    case Outcome::kNotTls:
    case Outcome::kMalformed:
      require(!first.reason.empty());
      require(first.hello.server_name.empty() && first.hello.alpn.empty());
      break;
    case Outcome::kComplete: {
      require(first.reason.empty());
      const std::string& name = first.hello.server_name;
      require(name.empty() || sluice::tls::valid_server_name(name));
      for (char c : name) require(!(c >= 'A' && c <= 'Z'));
      for (const std::string& p : first.hello.alpn) require(!p.empty() && p.size() <= 255);
      auto exact = input.first(first.bytes_examined);
      require(same(first, sluice::tls::parse_client_hello(exact)));
      auto shorter = sluice::tls::parse_client_hello(input.first(first.bytes_examined - 1));
      require(shorter.outcome == Outcome::kNeedMore);
      break;
    }
  }
  // Names as a configuration gives them: the check never reads past the view.
  std::string_view text(reinterpret_cast<const char*>(data), std::min<size_t>(size, 300));
  (void)sluice::tls::valid_server_name(text);
  return 0;
}
