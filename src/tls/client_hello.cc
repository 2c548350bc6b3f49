#include "tls/client_hello.h"

#include <algorithm>

#include "base/validation.h"

namespace sluice::tls {
namespace {

using Outcome = HelloParse::Outcome;

constexpr uint8_t kContentHandshake = 22;  // RFC 8446 §5.1 ContentType.handshake
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kHandshakeHeader = 4;
constexpr size_t kMaxFragment = 1 << 14;  // RFC 8446 §5.1: TLSPlaintext.length <= 2^14

constexpr uint16_t kExtServerName = 0;  // RFC 6066 §3
constexpr uint16_t kExtAlpn = 16;       // RFC 7301 §3.1
constexpr uint16_t kExtSupportedVersions = 43;
constexpr uint8_t kNameTypeHostName = 0;

constexpr std::string_view kTooLarge = "ClientHello larger than 16 KiB";

HelloParse fail(Outcome outcome, std::string_view reason, size_t examined) {
  HelloParse p;
  p.outcome = outcome;
  p.reason = reason;
  p.bytes_examined = examined;
  return p;
}

uint16_t u16_at(std::span<const uint8_t> d, size_t at) {
  return static_cast<uint16_t>(d[at] << 8 | d[at + 1]);
}

// Reads the fields of a contiguous handshake body; any read past the end sets `short_`.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> d) : d_(d) {}
  size_t left() const { return d_.size() - at_; }
  bool ok() const { return !short_; }
  uint8_t u8() {
    if (!need(1)) return 0;
    return d_[at_++];
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    uint16_t v = u16_at(d_, at_);
    at_ += 2;
    return v;
  }
  std::span<const uint8_t> bytes(size_t n) {
    if (!need(n)) return {};
    auto s = d_.subspan(at_, n);
    at_ += n;
    return s;
  }

 private:
  bool need(size_t n) {
    if (short_ || left() < n) {
      short_ = true;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> d_;
  size_t at_ = 0;
  bool short_ = false;
};

std::string_view as_text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, each a NameType and, for
// host_name, a HostName<1..2^16-1>.
std::string_view read_server_name(std::span<const uint8_t> ext, std::string& out) {
  Reader r(ext);
  uint16_t list = r.u16();
  if (!r.ok() || list != r.left() || list == 0) return "server_name list length is inconsistent";
  while (r.left() > 0) {
    uint8_t type = r.u8();
    uint16_t len = r.u16();
    auto name = r.bytes(len);
    if (!r.ok()) return "server_name entry overruns its extension";
    if (type != kNameTypeHostName) return "server_name of a type other than host_name";
    if (!out.empty()) return "server_name has two host_names";
    if (len == 0) return "server_name host_name is empty";
    out.assign(as_text(name));
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (!valid_server_name(out)) return "server_name is not a valid DNS host name";
  }
  return {};
}

// RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, each opaque<1..2^8-1>.
std::string_view read_alpn(std::span<const uint8_t> ext, std::vector<std::string>& out) {
  Reader r(ext);
  uint16_t list = r.u16();
  if (!r.ok() || list != r.left() || list < 2) return "ALPN list length is inconsistent";
  while (r.left() > 0) {
    uint8_t len = r.u8();
    auto name = r.bytes(len);
    if (!r.ok()) return "ALPN protocol overruns its extension";
    if (len == 0) return "ALPN protocol name is empty";
    out.emplace_back(as_text(name));
  }
  return {};
}

// RFC 8446 §4.2.1: ProtocolVersion versions<2..254> in a ClientHello.
std::string_view read_versions(std::span<const uint8_t> ext, std::vector<uint16_t>& out) {
  Reader r(ext);
  uint8_t len = r.u8();
  if (!r.ok() || len != r.left() || len < 2 || len % 2 != 0) {
    return "supported_versions length is inconsistent";
  }
  out.reserve(len / 2);
  while (r.left() > 0) out.push_back(r.u16());
  return {};
}

// The ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for TLS 1.2, where the
// extensions may be absent altogether).
std::string_view read_body(std::span<const uint8_t> body, ClientHello& hello) {
  Reader r(body);
  hello.legacy_version = r.u16();
  r.bytes(32);  // random
  uint8_t session_id = r.u8();
  if (!r.ok()) return "ClientHello is cut short before its session id";
  if (session_id > 32) return "session id longer than 32 bytes";
  r.bytes(session_id);
  uint16_t suites = r.u16();
  if (r.ok() && (suites < 2 || suites % 2 != 0)) return "cipher suites length is invalid";
  r.bytes(suites);
  uint8_t compressions = r.u8();
  if (r.ok() && compressions < 1) return "no compression method";
  r.bytes(compressions);
  if (!r.ok()) return "ClientHello is cut short before its extensions";
  if (r.left() == 0) return {};
  uint16_t extensions = r.u16();
  if (!r.ok() || extensions != r.left()) return "extensions length does not match the ClientHello";
  bool seen_name = false;
  bool seen_alpn = false;
  bool seen_versions = false;
  while (r.left() > 0) {
    uint16_t type = r.u16();
    uint16_t len = r.u16();
    auto data = r.bytes(len);
    if (!r.ok()) return "extension overruns the ClientHello";
    std::string_view error;
    // RFC 8446 §4.2: at most one extension of each type.
    auto once = [&error](bool& seen, std::string_view duplicate) {
      if (seen) error = duplicate;
      seen = true;
      return error.empty();
    };
    switch (type) {
      case kExtServerName:
        if (once(seen_name, "two server_name extensions")) {
          error = read_server_name(data, hello.server_name);
        }
        break;
      case kExtAlpn:
        if (once(seen_alpn, "two ALPN extensions")) error = read_alpn(data, hello.alpn);
        break;
      case kExtSupportedVersions:
        if (once(seen_versions, "two supported_versions extensions")) {
          error = read_versions(data, hello.supported_versions);
        }
        break;
      default:
        break;
    }
    if (!error.empty()) return error;
  }
  return {};
}

}  // namespace

bool valid_server_name(std::string_view name) {
  if (name.empty() || name.back() == '.' || !valid_host_name(name)) return false;
  std::string_view last = name.substr(name.rfind('.') + 1);  // npos + 1 == 0: the whole name
  return !std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
}

HelloParse parse_client_hello(std::span<const uint8_t> data) {
  if (data.size() > kMaxClientHelloBytes) data = data.first(kMaxClientHelloBytes);
  // Whether the stream starts as TLS does: a handshake record of version 3.x.
  if (data.empty()) return fail(Outcome::kNeedMore, {}, 0);
  if (data[0] != kContentHandshake) return fail(Outcome::kNotTls, "not a TLS handshake record", 1);
  if (data.size() < 2) return fail(Outcome::kNeedMore, {}, 1);
  if (data[1] != 3) return fail(Outcome::kNotTls, "not a TLS handshake record", 2);

  // Walk the records holding the handshake message, without copying: its 4-byte header may
  // itself be split between records (RFC 8446 §5.1 allows any fragmentation).
  uint8_t header[kHandshakeHeader];
  size_t header_have = 0;
  size_t message_size = 0;  // header included; known once the header is complete
  size_t message_have = 0;
  size_t records = 0;
  size_t pos = 0;
  for (;;) {
    if (pos + kRecordHeader > kMaxClientHelloBytes) {
      return fail(Outcome::kMalformed, kTooLarge, pos);
    }
    if (data.size() < pos + kRecordHeader) return fail(Outcome::kNeedMore, {}, data.size());
    if (data[pos] != kContentHandshake) {
      return fail(Outcome::kMalformed, "a record other than handshake inside the ClientHello", pos);
    }
    if (data[pos + 1] != 3 || data[pos + 2] > 4) {
      return fail(Outcome::kMalformed, "record version is not TLS", pos + 3);
    }
    size_t len = u16_at(data, pos + 3);
    if (len == 0) return fail(Outcome::kMalformed, "empty handshake record", pos + kRecordHeader);
    if (len > kMaxFragment) {
      return fail(Outcome::kMalformed, "record longer than 2^14 bytes", pos + kRecordHeader);
    }
    size_t begin = pos + kRecordHeader;
    size_t end = begin + len;
    ++records;
    if (message_size != 0 && message_have + len > message_size) {
      return fail(Outcome::kMalformed, "bytes after the ClientHello in its record", begin);
    }
    if (end > kMaxClientHelloBytes) return fail(Outcome::kMalformed, kTooLarge, begin);
    size_t available = std::min(end, data.size());
    // The handshake header, as far as this record and the bytes at hand go.
    for (size_t i = begin; i < available && header_have < kHandshakeHeader; ++i) {
      header[header_have++] = data[i];
      if (header_have == 1 && header[0] != kHandshakeClientHello) {
        return fail(Outcome::kMalformed, "the first handshake message is not a ClientHello", i + 1);
      }
      if (header_have == kHandshakeHeader) {
        message_size = kHandshakeHeader +
                       (size_t{header[1]} << 16 | size_t{header[2]} << 8 | size_t{header[3]});
        // Each record adds its header: the message alone must leave room for the first.
        if (kRecordHeader + message_size > kMaxClientHelloBytes) {
          return fail(Outcome::kMalformed, kTooLarge, i + 1);
        }
        if (message_size == kHandshakeHeader) {
          return fail(Outcome::kMalformed, "ClientHello is empty", i + 1);
        }
        if (message_have + len > message_size) {
          return fail(Outcome::kMalformed, "bytes after the ClientHello in its record", i + 1);
        }
      }
    }
    if (available < end) return fail(Outcome::kNeedMore, {}, data.size());
    message_have += len;
    pos = end;
    if (message_size != 0 && message_have == message_size) break;
  }

  // The whole message is at hand. One record (the usual case): parse it in place; several:
  // join their fragments first.
  std::span<const uint8_t> message;
  std::vector<uint8_t> joined;
  if (records == 1) {
    message = data.subspan(kRecordHeader, message_size);
  } else {
    joined.reserve(message_size);
    for (size_t at = 0; at < pos;) {
      size_t len = u16_at(data, at + 3);
      auto fragment = data.subspan(at + kRecordHeader, len);
      joined.insert(joined.end(), fragment.begin(), fragment.end());
      at += kRecordHeader + len;
    }
    message = joined;
  }
  HelloParse p;
  p.bytes_examined = pos;
  std::string_view error = read_body(message.subspan(kHandshakeHeader), p.hello);
  if (!error.empty()) {
    p.outcome = Outcome::kMalformed;
    p.reason = error;
    p.hello = {};
    return p;
  }
  p.outcome = Outcome::kComplete;
  return p;
}

}  // namespace sluice::tls
