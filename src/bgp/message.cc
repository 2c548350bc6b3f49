#include "bgp/message.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace sluice::bgp {
namespace {

// Path attribute type codes (RFC 4271 §5, RFC 1997, RFC 4760, RFC 6793).
constexpr uint8_t kOrigin = 1;
constexpr uint8_t kAsPath = 2;
constexpr uint8_t kNextHop = 3;
constexpr uint8_t kMed = 4;
constexpr uint8_t kLocalPref = 5;
constexpr uint8_t kCommunities = 8;
constexpr uint8_t kMpReach = 14;
constexpr uint8_t kMpUnreach = 15;
constexpr uint8_t kAs4Path = 17;

// Attribute flags (RFC 4271 §4.3).
constexpr uint8_t kOptional = 0x80;
constexpr uint8_t kTransitive = 0x40;
constexpr uint8_t kExtendedLength = 0x10;

constexpr uint8_t kAsSequence = 2;
constexpr uint16_t kAfiIpv4 = 1;
constexpr uint16_t kAfiIpv6 = 2;
constexpr uint8_t kSafiUnicast = 1;

// Capability codes (RFC 5492 §4).
constexpr uint8_t kCapMultiprotocol = 1;
constexpr uint8_t kCapRouteRefresh = 2;
constexpr uint8_t kCapFourOctetAs = 65;
constexpr uint8_t kParamCapabilities = 2;

void put8(std::string& out, uint8_t v) {
  out.push_back(static_cast<char>(v));
}
void put16(std::string& out, uint16_t v) {
  put8(out, static_cast<uint8_t>(v >> 8));
  put8(out, static_cast<uint8_t>(v));
}
void put32(std::string& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Starts a message: the marker, a length patched by finish(), the type.
size_t begin(std::string& out, MessageType type) {
  size_t at = out.size();
  out.append(16, '\xff');
  put16(out, 0);
  put8(out, static_cast<uint8_t>(type));
  return at;
}
void finish(std::string& out, size_t at) {
  size_t len = out.size() - at;
  out[at + 16] = static_cast<char>(len >> 8);
  out[at + 17] = static_cast<char>(len);
}

void put_prefix(std::string& out, const Prefix& p) {
  put8(out, p.length);
  out.append(reinterpret_cast<const char*>(p.addr.data()), (p.length + 7u) / 8u);
}

// An attribute header; the length is one octet unless `extended`.
void put_attribute(std::string& out, uint8_t flags, uint8_t type, std::string_view value) {
  bool extended = value.size() > 255;
  put8(out, static_cast<uint8_t>(flags | (extended ? kExtendedLength : 0)));
  put8(out, type);
  if (extended) {
    put16(out, static_cast<uint16_t>(value.size()));
  } else {
    put8(out, static_cast<uint8_t>(value.size()));
  }
  out.append(value);
}

// Reads the prefixes of `family` packed in [p, end) (RFC 4271 §4.3). False when one runs
// past the end or is longer than the family allows.
bool read_prefixes(const uint8_t* p, const uint8_t* end, int family, std::vector<Prefix>& out) {
  size_t max = family == AF_INET6 ? 128 : 32;
  while (p < end) {
    Prefix prefix;
    prefix.family = family;
    prefix.length = *p++;
    if (prefix.length > max) return false;
    size_t bytes = (prefix.length + 7u) / 8u;
    if (static_cast<size_t>(end - p) < bytes) return false;
    std::copy(p, p + bytes, prefix.addr.begin());
    // Host bits are not ours to keep (RFC 4271 §4.3 says they are irrelevant).
    if (prefix.length % 8 != 0) {
      prefix.addr[bytes - 1] &= static_cast<uint8_t>(0xff << (8 - prefix.length % 8));
    }
    p += bytes;
    out.push_back(prefix);
  }
  return true;
}

bool fail(ParseError& e, uint8_t code, uint8_t subcode, std::string detail, std::string data = {}) {
  e.code = code;
  e.subcode = subcode;
  e.detail = std::move(detail);
  e.data = std::move(data);
  return false;
}

std::string length_data(size_t len) {
  std::string d;
  put16(d, static_cast<uint16_t>(len));
  return d;
}

bool read_open(const uint8_t* p, const uint8_t* end, OpenMessage& o, ParseError& e) {
  o.version = p[0];
  o.as = get16(p + 1);
  o.hold_time = get16(p + 3);
  o.router_id = get32(p + 5);
  size_t opt_len = p[9];
  p += 10;
  if (static_cast<size_t>(end - p) != opt_len) {
    return fail(e, err::kOpen, 0,
                fmt::format("OPEN optional parameters length {} does not match the {} octets left",
                            opt_len, end - p));
  }
  while (p < end) {
    if (end - p < 2) return fail(e, err::kOpen, 0, "OPEN optional parameter truncated");
    uint8_t type = p[0];
    size_t len = p[1];
    p += 2;
    if (static_cast<size_t>(end - p) < len) {
      return fail(e, err::kOpen, 0, "OPEN optional parameter runs past the message");
    }
    if (type != kParamCapabilities) {
      return fail(e, err::kOpen, err::kUnsupportedOptionalParameter,
                  fmt::format("OPEN optional parameter type {} is not supported", type));
    }
    const uint8_t* cap = p;
    const uint8_t* cap_end = p + len;
    while (cap < cap_end) {
      if (cap_end - cap < 2) return fail(e, err::kOpen, 0, "OPEN capability truncated");
      uint8_t code = cap[0];
      size_t clen = cap[1];
      cap += 2;
      if (static_cast<size_t>(cap_end - cap) < clen) {
        return fail(e, err::kOpen, 0, "OPEN capability runs past its parameter");
      }
      if (code == kCapMultiprotocol && clen == 4) {
        uint16_t afi = get16(cap);
        uint8_t safi = cap[3];
        if (afi == kAfiIpv4 && safi == kSafiUnicast) o.ipv4_unicast = true;
        if (afi == kAfiIpv6 && safi == kSafiUnicast) o.ipv6_unicast = true;
      } else if (code == kCapRouteRefresh && clen == 0) {
        o.route_refresh = true;
      } else if (code == kCapFourOctetAs && clen == 4) {
        o.four_octet_as = true;
        o.as = get32(cap);
      } else {
        o.unknown_capabilities.push_back(code);  // RFC 5492 §5: ignored
      }
      cap += clen;
    }
    p = cap_end;
  }
  return true;
}

bool read_update(const uint8_t* p, const uint8_t* end, UpdateMessage& u, ParseError& e) {
  size_t withdrawn_len = get16(p);
  p += 2;
  // RFC 4271 §6.3: lengths that do not add up are a malformed attribute list.
  if (static_cast<size_t>(end - p) < withdrawn_len + 2) {
    return fail(
        e, err::kUpdate, err::kMalformedAttributeList,
        fmt::format("UPDATE withdrawn routes length {} runs past the message", withdrawn_len));
  }
  if (!read_prefixes(p, p + withdrawn_len, AF_INET, u.withdrawn)) {
    return fail(e, err::kUpdate, err::kMalformedAttributeList,
                "UPDATE withdrawn routes hold a malformed prefix");
  }
  p += withdrawn_len;
  size_t attrs_len = get16(p);
  p += 2;
  if (static_cast<size_t>(end - p) < attrs_len) {
    return fail(e, err::kUpdate, err::kMalformedAttributeList,
                fmt::format("UPDATE path attributes length {} runs past the message", attrs_len));
  }
  const uint8_t* attrs_end = p + attrs_len;
  while (p < attrs_end) {
    if (attrs_end - p < 3) {
      return fail(e, err::kUpdate, err::kMalformedAttributeList, "UPDATE attribute truncated");
    }
    uint8_t flags = p[0];
    uint8_t type = p[1];
    size_t len;
    if (flags & kExtendedLength) {
      if (attrs_end - p < 4) {
        return fail(e, err::kUpdate, err::kMalformedAttributeList, "UPDATE attribute truncated");
      }
      len = get16(p + 2);
      p += 4;
    } else {
      len = p[2];
      p += 3;
    }
    if (static_cast<size_t>(attrs_end - p) < len) {
      return fail(e, err::kUpdate, err::kAttributeLengthError,
                  fmt::format("UPDATE attribute {} length {} runs past the attributes", type, len));
    }
    if (type == kMpReach || type == kMpUnreach) {
      size_t head = type == kMpReach ? 5 : 3;
      if (len < head) {
        return fail(e, err::kUpdate, err::kAttributeLengthError,
                    fmt::format("UPDATE attribute {} is too short ({} octets)", type, len));
      }
      uint16_t afi = get16(p);
      uint8_t safi = p[2];
      const uint8_t* nlri = p + 3;
      if (type == kMpReach) {
        size_t nh_len = p[3];
        if (len < 5 + nh_len) {
          return fail(e, err::kUpdate, err::kAttributeLengthError,
                      "UPDATE MP_REACH_NLRI next hop runs past the attribute");
        }
        nlri = p + 4 + nh_len + 1;
      }
      if ((afi == kAfiIpv6 || afi == kAfiIpv4) && safi == kSafiUnicast) {
        int family = afi == kAfiIpv6 ? AF_INET6 : AF_INET;
        auto& into = type == kMpReach ? u.announced : u.withdrawn;
        if (!read_prefixes(nlri, p + len, family, into)) {
          return fail(e, err::kUpdate, err::kInvalidNetworkField,
                      fmt::format("UPDATE attribute {} holds a malformed prefix", type));
        }
      }
    }
    p += len;
  }
  if (!read_prefixes(p, end, AF_INET, u.announced)) {
    return fail(e, err::kUpdate, err::kInvalidNetworkField, "UPDATE NLRI holds a malformed prefix");
  }
  return true;
}

}  // namespace

const char* to_string(MessageType t) {
  switch (t) {
    case MessageType::kOpen:
      return "OPEN";
    case MessageType::kUpdate:
      return "UPDATE";
    case MessageType::kNotification:
      return "NOTIFICATION";
    case MessageType::kKeepalive:
      return "KEEPALIVE";
    case MessageType::kRouteRefresh:
      return "ROUTE-REFRESH";
  }
  return "?";
}

std::string describe_error(uint8_t code, uint8_t subcode) {
  static constexpr const char* kCodes[] = {"",
                                           "message header error",
                                           "OPEN message error",
                                           "UPDATE message error",
                                           "hold timer expired",
                                           "finite state machine error",
                                           "cease"};
  std::string what =
      code < std::size(kCodes) && code > 0 ? kCodes[code] : fmt::format("error code {}", code);
  const char* sub = nullptr;
  if (code == err::kHeader) {
    static constexpr const char* k[] = {nullptr, "connection not synchronized",
                                        "bad message length", "bad message type"};
    if (subcode < std::size(k)) sub = k[subcode];
  } else if (code == err::kOpen) {
    static constexpr const char* k[] = {nullptr,
                                        "unsupported version number",
                                        "bad peer AS",
                                        "bad BGP identifier",
                                        "unsupported optional parameter",
                                        nullptr,
                                        "unacceptable hold time",
                                        "unsupported capability"};
    if (subcode < std::size(k)) sub = k[subcode];
  } else if (code == err::kUpdate) {
    static constexpr const char* k[] = {nullptr,
                                        "malformed attribute list",
                                        "unrecognized well-known attribute",
                                        "missing well-known attribute",
                                        "attribute flags error",
                                        "attribute length error",
                                        "invalid ORIGIN attribute",
                                        nullptr,
                                        "invalid NEXT_HOP attribute",
                                        "optional attribute error",
                                        "invalid network field",
                                        "malformed AS_PATH"};
    if (subcode < std::size(k)) sub = k[subcode];
  } else if (code == err::kCease) {
    static constexpr const char* k[] = {nullptr,
                                        "maximum number of prefixes reached",
                                        "administrative shutdown",
                                        "peer de-configured",
                                        "administrative reset",
                                        "connection rejected",
                                        "other configuration change",
                                        "connection collision resolution",
                                        "out of resources",
                                        "hard reset"};
    if (subcode < std::size(k)) sub = k[subcode];
  }
  if (sub) return what + " / " + sub;
  if (subcode == 0) return what;
  return fmt::format("{} / subcode {}", what, subcode);
}

Result<Prefix> Prefix::parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Status::error(fmt::format("expected ADDRESS/LENGTH, got '{}'", text));
  }
  std::string ip(text.substr(0, slash));
  std::string_view len_text = text.substr(slash + 1);
  Prefix p;
  if (::inet_pton(AF_INET, ip.c_str(), p.addr.data()) == 1) {
    p.family = AF_INET;
  } else if (::inet_pton(AF_INET6, ip.c_str(), p.addr.data()) == 1) {
    p.family = AF_INET6;
  } else {
    return Status::error(fmt::format("'{}' is not an IPv4 or IPv6 address", ip));
  }
  unsigned len = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (ec != std::errc() || end != len_text.data() + len_text.size() || len_text.empty() ||
      len > p.max_length()) {
    return Status::error(
        fmt::format("prefix length '{}' is not 0 to {}", len_text, p.max_length()));
  }
  p.length = static_cast<uint8_t>(len);
  for (size_t bit = len; bit < p.max_length(); ++bit) {
    if (p.addr[bit / 8] & (0x80 >> (bit % 8))) {
      return Status::error(fmt::format("'{}' has host bits set past /{}", text, len));
    }
  }
  return p;
}

std::string Prefix::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family, addr.data(), buf, sizeof buf);
  return fmt::format("{}/{}", buf, length);
}

std::optional<uint32_t> parse_community(std::string_view text) {
  if (text == "graceful_shutdown") return kGracefulShutdown;
  if (text == "no_export") return 0xFFFFFF01;
  if (text == "no_advertise") return 0xFFFFFF02;
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view s) -> std::optional<uint32_t> {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v > 65535) {
      return std::nullopt;
    }
    return v;
  };
  auto hi = number(text.substr(0, colon));
  auto lo = number(text.substr(colon + 1));
  if (!hi || !lo) return std::nullopt;
  return *hi << 16 | *lo;
}

std::string community_to_string(uint32_t c) {
  return fmt::format("{}:{}", c >> 16, c & 0xffff);
}

size_t read_message(std::span<const uint8_t> in, Message& out, ParseError& error) {
  if (in.size() < kHeaderSize) return 0;
  const uint8_t* p = in.data();
  // RFC 4271 §6.1: the marker must be all ones, the length 19..4096, the type known.
  if (!std::all_of(p, p + 16, [](uint8_t b) { return b == 0xff; })) {
    fail(error, err::kHeader, err::kNotSynchronized, "message marker is not all ones");
    return SIZE_MAX;
  }
  size_t len = get16(p + 16);
  if (len < kHeaderSize || len > kMaxMessageSize) {
    fail(error, err::kHeader, err::kBadLength,
         fmt::format("message length {} is outside 19..4096", len), length_data(len));
    return SIZE_MAX;
  }
  uint8_t type = p[18];
  size_t min = 0;
  size_t max = kMaxMessageSize;
  switch (type) {
    case 1:
      min = 29;
      break;
    case 2:
      min = 23;
      break;
    case 3:
      min = 21;
      break;
    case 4:
      min = max = 19;
      break;
    case 5:
      min = max = 23;
      break;
    default:
      fail(error, err::kHeader, err::kBadType, fmt::format("unknown message type {}", type),
           std::string(1, static_cast<char>(type)));
      return SIZE_MAX;
  }
  if (len < min || len > max) {
    fail(error, err::kHeader, err::kBadLength,
         fmt::format("{} of length {}", to_string(static_cast<MessageType>(type)), len),
         length_data(len));
    return SIZE_MAX;
  }
  if (in.size() < len) return 0;
  out = Message{};
  out.type = static_cast<MessageType>(type);
  const uint8_t* body = p + kHeaderSize;
  const uint8_t* end = p + len;
  bool ok = true;
  switch (out.type) {
    case MessageType::kOpen:
      ok = read_open(body, end, out.open, error);
      break;
    case MessageType::kUpdate:
      ok = read_update(body, end, out.update, error);
      break;
    case MessageType::kNotification:
      out.notification.code = body[0];
      out.notification.subcode = body[1];
      out.notification.data.assign(reinterpret_cast<const char*>(body + 2), end - body - 2);
      break;
    case MessageType::kKeepalive:
    case MessageType::kRouteRefresh:
      break;
  }
  return ok ? len : SIZE_MAX;
}

void write_open(const OpenParams& p, std::string& out) {
  size_t at = begin(out, MessageType::kOpen);
  put8(out, 4);
  put16(out, p.as > 0xffff ? kAsTrans : static_cast<uint16_t>(p.as));
  put16(out, p.hold_time);
  put32(out, p.router_id);
  std::string caps;
  auto multiprotocol = [&caps](uint16_t afi) {
    put8(caps, kCapMultiprotocol);
    put8(caps, 4);
    put16(caps, afi);
    put8(caps, 0);
    put8(caps, kSafiUnicast);
  };
  if (p.ipv4_unicast) multiprotocol(kAfiIpv4);
  if (p.ipv6_unicast) multiprotocol(kAfiIpv6);
  put8(caps, kCapRouteRefresh);
  put8(caps, 0);
  put8(caps, kCapFourOctetAs);
  put8(caps, 4);
  put32(caps, p.as);
  put8(out, static_cast<uint8_t>(caps.size() + 2));
  put8(out, kParamCapabilities);
  put8(out, static_cast<uint8_t>(caps.size()));
  out += caps;
  finish(out, at);
}

void write_keepalive(std::string& out) {
  finish(out, begin(out, MessageType::kKeepalive));
}

void write_notification(uint8_t code, uint8_t subcode, std::string_view data, std::string& out) {
  size_t at = begin(out, MessageType::kNotification);
  put8(out, code);
  put8(out, subcode);
  out.append(data.substr(0, kMaxMessageSize - 21));
  finish(out, at);
}

void write_announce(const UpdateParams& p, const Route& route, std::string& out) {
  size_t at = begin(out, MessageType::kUpdate);
  put16(out, 0);  // no withdrawn routes
  std::string attrs;
  put_attribute(attrs, kTransitive, kOrigin, std::string_view("\0", 1));  // IGP
  std::string path;
  bool as4_path = false;
  if (p.ebgp) {
    put8(path, kAsSequence);
    put8(path, 1);
    if (p.four_octet_as) {
      put32(path, p.local_as);
    } else {
      as4_path = p.local_as > 0xffff;
      put16(path, as4_path ? kAsTrans : static_cast<uint16_t>(p.local_as));
    }
  }
  put_attribute(attrs, kTransitive, kAsPath, path);
  bool v6 = route.prefix.family == AF_INET6;
  if (!v6) {
    put_attribute(attrs, kTransitive, kNextHop,
                  std::string_view(reinterpret_cast<const char*>(route.next_hop.data()), 4));
  }
  std::string v;
  if (route.med) {
    put32(v, *route.med);
    put_attribute(attrs, kOptional, kMed, v);
  }
  if (!p.ebgp) {
    v.clear();
    put32(v, 100);
    put_attribute(attrs, kTransitive, kLocalPref, v);
  }
  if (!route.communities.empty()) {
    v.clear();
    for (uint32_t c : route.communities) put32(v, c);
    put_attribute(attrs, kOptional | kTransitive, kCommunities, v);
  }
  if (v6) {
    v.clear();
    put16(v, kAfiIpv6);
    put8(v, kSafiUnicast);
    put8(v, 16);
    v.append(reinterpret_cast<const char*>(route.next_hop.data()), 16);
    put8(v, 0);  // reserved
    put_prefix(v, route.prefix);
    put_attribute(attrs, kOptional, kMpReach, v);
  }
  if (as4_path) {
    v.clear();
    put8(v, kAsSequence);
    put8(v, 1);
    put32(v, p.local_as);
    put_attribute(attrs, kOptional | kTransitive, kAs4Path, v);
  }
  put16(out, static_cast<uint16_t>(attrs.size()));
  out += attrs;
  if (!v6) put_prefix(out, route.prefix);
  finish(out, at);
}

void write_withdraw(const Prefix& prefix, std::string& out) {
  size_t at = begin(out, MessageType::kUpdate);
  if (prefix.family == AF_INET6) {
    put16(out, 0);
    std::string v;
    put16(v, kAfiIpv6);
    put8(v, kSafiUnicast);
    put_prefix(v, prefix);
    std::string attrs;
    put_attribute(attrs, kOptional, kMpUnreach, v);
    put16(out, static_cast<uint16_t>(attrs.size()));
    out += attrs;
  } else {
    std::string w;
    put_prefix(w, prefix);
    put16(out, static_cast<uint16_t>(w.size()));
    out += w;
    put16(out, 0);
  }
  finish(out, at);
}

}  // namespace sluice::bgp
