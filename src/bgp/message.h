// BGP-4 messages (RFC 4271 §4): a strict, bounds-checked reader of one message and writers
// for the messages an announce-only speaker sends: OPEN with capabilities (RFC 5492; 4-octet
// AS RFC 6793, multiprotocol RFC 4760, route refresh RFC 2918), KEEPALIVE, UPDATE (announce
// and withdraw, IPv4 in the NLRI field and IPv6 in MP_REACH_NLRI / MP_UNREACH_NLRI), and
// NOTIFICATION. No I/O; any thread.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sluice::bgp {

inline constexpr size_t kHeaderSize = 19;
inline constexpr size_t kMaxMessageSize = 4096;  // RFC 4271 §4.1
inline constexpr uint16_t kAsTrans = 23456;      // RFC 6793 §9

enum class MessageType : uint8_t {
  kOpen = 1,
  kUpdate = 2,
  kNotification = 3,
  kKeepalive = 4,
  kRouteRefresh = 5,  // RFC 2918
};
const char* to_string(MessageType t);

// NOTIFICATION error codes (RFC 4271 §4.5) and the subcodes sluice sends.
namespace err {
inline constexpr uint8_t kHeader = 1;
inline constexpr uint8_t kOpen = 2;
inline constexpr uint8_t kUpdate = 3;
inline constexpr uint8_t kHoldTimerExpired = 4;
inline constexpr uint8_t kFsm = 5;
inline constexpr uint8_t kCease = 6;
// kHeader
inline constexpr uint8_t kNotSynchronized = 1;
inline constexpr uint8_t kBadLength = 2;
inline constexpr uint8_t kBadType = 3;
// kOpen
inline constexpr uint8_t kUnsupportedVersion = 1;
inline constexpr uint8_t kBadPeerAs = 2;
inline constexpr uint8_t kBadBgpIdentifier = 3;
inline constexpr uint8_t kUnsupportedOptionalParameter = 4;
inline constexpr uint8_t kUnacceptableHoldTime = 6;
// kUpdate
inline constexpr uint8_t kMalformedAttributeList = 1;
inline constexpr uint8_t kAttributeLengthError = 5;
inline constexpr uint8_t kInvalidNetworkField = 10;
// kCease (RFC 4486)
inline constexpr uint8_t kAdministrativeShutdown = 2;
inline constexpr uint8_t kPeerDeconfigured = 3;
inline constexpr uint8_t kOtherConfigurationChange = 6;
}  // namespace err

// "OPEN message error / bad peer AS": the words of a code and subcode, for logs.
std::string describe_error(uint8_t code, uint8_t subcode);

// Well-known communities (RFC 1997, RFC 8326).
inline constexpr uint32_t kGracefulShutdown = 0xFFFF0000;  // 65535:0

// An IPv4 or IPv6 prefix, host bits zero.
struct Prefix {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};
  uint8_t length = 0;

  // "192.0.2.1/32", "2001:db8::/48"; host bits must be zero.
  static Result<Prefix> parse(std::string_view text);
  std::string to_string() const;
  size_t max_length() const { return family == AF_INET6 ? 128 : 32; }
  bool operator==(const Prefix& o) const {
    return family == o.family && length == o.length && addr == o.addr;
  }
  bool operator<(const Prefix& o) const {
    if (family != o.family) return family < o.family;
    if (addr != o.addr) return addr < o.addr;
    return length < o.length;
  }
};

// "65535:0" → 0xFFFF0000; also the names graceful_shutdown, no_export, no_advertise.
std::optional<uint32_t> parse_community(std::string_view text);
std::string community_to_string(uint32_t c);

struct OpenMessage {
  uint8_t version = 4;
  uint32_t as = 0;  // the 4-octet AS capability's when present, else the 2-octet field
  uint16_t hold_time = 0;
  uint32_t router_id = 0;  // host order
  bool four_octet_as = false;
  bool route_refresh = false;
  bool ipv4_unicast = false;
  bool ipv6_unicast = false;
  std::vector<uint8_t> unknown_capabilities;  // codes, ignored (RFC 5492 §5)
};

// One route to announce: the prefix with its attributes.
struct Route {
  Prefix prefix;
  std::array<uint8_t, 16> next_hop{};  // of the prefix's family
  std::vector<uint32_t> communities;
  std::optional<uint32_t> med;
  bool operator==(const Route&) const = default;
};

// What a received UPDATE carries, as far as an announce-only speaker counts it.
struct UpdateMessage {
  std::vector<Prefix> withdrawn;
  std::vector<Prefix> announced;
};

struct NotificationMessage {
  uint8_t code = 0;
  uint8_t subcode = 0;
  std::string data;
};

// One parsed message.
struct Message {
  MessageType type = MessageType::kKeepalive;
  OpenMessage open;
  UpdateMessage update;
  NotificationMessage notification;
};

// Why a message was refused: the NOTIFICATION to send (RFC 4271 §6) and a log line.
struct ParseError {
  uint8_t code = 0;
  uint8_t subcode = 0;
  std::string data;
  std::string detail;
};

// Reads one message from the front of `in`. Returns the message's length and fills `out`;
// 0 when `in` does not hold a whole message yet; fills `error` (and returns SIZE_MAX) when
// it is malformed. Received path attributes other than MP_(UN)REACH_NLRI are not looked into.
size_t read_message(std::span<const uint8_t> in, Message& out, ParseError& error);

// Writers: each appends one whole message to `out`.
struct OpenParams {
  uint32_t as = 0;
  uint16_t hold_time = 90;
  uint32_t router_id = 0;  // host order
  bool ipv4_unicast = true;
  bool ipv6_unicast = false;
};
void write_open(const OpenParams& p, std::string& out);
void write_keepalive(std::string& out);
void write_notification(uint8_t code, uint8_t subcode, std::string_view data, std::string& out);
// An UPDATE announcing `route` from `local_as` to an eBGP peer (AS_PATH = local_as) or an
// iBGP one (empty AS_PATH, LOCAL_PREF 100). Without `four_octet_as` the AS_PATH has 2-octet
// ASes (AS_TRANS and AS4_PATH for a 4-octet local AS, RFC 6793 §4.2.2).
struct UpdateParams {
  uint32_t local_as = 0;
  bool ebgp = true;
  bool four_octet_as = true;
};
void write_announce(const UpdateParams& p, const Route& route, std::string& out);
void write_withdraw(const Prefix& prefix, std::string& out);

}  // namespace sluice::bgp
