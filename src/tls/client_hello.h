// The ClientHello of a TLS connection, read from the first bytes a client sent, without
// terminating TLS: what a TCP listener routes by (the server_name) before it proxies the
// bytes on unchanged. parse_client_hello() is a pure function over a prefix of the record
// stream: call it again with a longer prefix while it answers kNeedMore. It copies nothing
// while the ClientHello is incomplete, and reassembles only a ClientHello that spans
// several records. Any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::tls {

// The most of the record stream parse_client_hello() examines: a ClientHello that does not
// end within this many bytes (record headers included) is refused. Real ones are a few
// hundred bytes, under 2 KiB with post-quantum key shares.
inline constexpr size_t kMaxClientHelloBytes = 16 * 1024;

// What a ClientHello offers, as far as routing needs it.
struct ClientHello {
  // The host_name of the server_name extension (RFC 6066 §3), lower-cased: a DNS name
  // without a trailing dot. "" when the client sent none.
  std::string server_name;
  // The protocols of the ALPN extension (RFC 7301 §3.1), in the client's order.
  std::vector<std::string> alpn;
  // The supported_versions extension (RFC 8446 §4.2.1), in the client's order, GREASE values
  // included (0x0304 is TLS 1.3). Empty when absent (a TLS 1.2-only client).
  std::vector<uint16_t> supported_versions;
  uint16_t legacy_version = 0;  // ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3)
};

struct HelloParse {
  enum class Outcome {
    kNeedMore,   // a prefix of a ClientHello: read more and call again
    kNotTls,     // the bytes are not a TLS handshake record (e.g. "GET / HTTP/1.1")
    kMalformed,  // a TLS handshake record, but no valid ClientHello: `reason` says why
    kComplete,   // `hello` holds the ClientHello
  };
  Outcome outcome = Outcome::kNeedMore;
  // Why kNotTls or kMalformed (a static string); "" otherwise.
  std::string_view reason;
  // kComplete: the bytes up to the end of the record that holds the ClientHello's last byte.
  // Otherwise: the bytes looked at before deciding.
  size_t bytes_examined = 0;
  ClientHello hello;  // kComplete only
};

// Parses the start of what a client sent on a TLS connection. Only the first
// kMaxClientHelloBytes of `data` are looked at.
HelloParse parse_client_hello(std::span<const uint8_t> data);

// Whether `name` is a host name as server_name carries it (RFC 6066 §3): a DNS name of
// letters, digits, '-' and '_' in labels of 1-63 bytes, 253 in all, without a trailing dot,
// and not an IPv4 address literal (a last label of digits only).
bool valid_server_name(std::string_view name);

}  // namespace sluice::tls
