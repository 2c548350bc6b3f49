// STUN messages (RFC 8489): a strict, bounds-checked reader of one message held in a
// datagram, and a writer that appends attributes and finishes with FINGERPRINT. No I/O, no
// allocation beyond the attribute list; any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/address.h"

namespace sluice::stun {

inline constexpr uint32_t kMagicCookie = 0x2112A442;
inline constexpr size_t kHeaderSize = 20;
inline constexpr uint32_t kFingerprintXor = 0x5354554e;  // "STUN", RFC 8489 §14.7

// RFC 8489 §5: the two class bits.
enum class MessageClass : uint8_t { kRequest = 0, kIndication = 1, kSuccess = 2, kError = 3 };
inline constexpr uint16_t kBinding = 0x001;

// Attribute types (RFC 8489 §18.3, RFC 5780 §7, RFC 8445 §16.1).
namespace attr {
inline constexpr uint16_t kMappedAddress = 0x0001;
inline constexpr uint16_t kChangeRequest = 0x0003;
inline constexpr uint16_t kUsername = 0x0006;
inline constexpr uint16_t kMessageIntegrity = 0x0008;
inline constexpr uint16_t kErrorCode = 0x0009;
inline constexpr uint16_t kUnknownAttributes = 0x000A;
inline constexpr uint16_t kRealm = 0x0014;
inline constexpr uint16_t kNonce = 0x0015;
inline constexpr uint16_t kMessageIntegritySha256 = 0x001C;
inline constexpr uint16_t kPasswordAlgorithm = 0x001D;
inline constexpr uint16_t kUserhash = 0x001E;
inline constexpr uint16_t kXorMappedAddress = 0x0020;
inline constexpr uint16_t kPriority = 0x0024;
inline constexpr uint16_t kUseCandidate = 0x0025;
inline constexpr uint16_t kPadding = 0x0026;
inline constexpr uint16_t kResponsePort = 0x0027;
inline constexpr uint16_t kPasswordAlgorithms = 0x8002;
inline constexpr uint16_t kAlternateDomain = 0x8003;
inline constexpr uint16_t kSoftware = 0x8022;
inline constexpr uint16_t kAlternateServer = 0x8023;
inline constexpr uint16_t kFingerprint = 0x8028;
inline constexpr uint16_t kIceControlled = 0x8029;
inline constexpr uint16_t kIceControlling = 0x802A;
inline constexpr uint16_t kResponseOrigin = 0x802B;
inline constexpr uint16_t kOtherAddress = 0x802C;
// RFC 8489 §14: types 0x0000-0x7FFF must be understood, 0x8000-0xFFFF may be ignored.
constexpr bool comprehension_required(uint16_t type) {
  return type < 0x8000;
}
}  // namespace attr

using TransactionId = std::array<uint8_t, 12>;

struct Attribute {
  uint16_t type = 0;
  std::span<const uint8_t> value;  // into the parsed datagram
  size_t offset = 0;               // of the attribute header in the message
};

// Why a datagram is not a STUN message to act on. Each is dropped without an answer.
enum class ParseError {
  kTooShort,          // fewer than 20 bytes
  kNotStun,           // the first two bits are not zero
  kBadCookie,         // no magic cookie (an RFC 3489 client, or not STUN)
  kBadLength,         // not a multiple of 4, or not the datagram's size
  kAttributeOverrun,  // an attribute runs past the end
  kBadFingerprint,    // FINGERPRINT wrong, malformed or not last
};
const char* to_string(ParseError e);

struct Message {
  uint16_t method = 0;
  MessageClass message_class = MessageClass::kRequest;
  TransactionId transaction_id{};
  // Every attribute in order, including MESSAGE-INTEGRITY and FINGERPRINT.
  std::vector<Attribute> attributes;
  bool has_fingerprint = false;
  size_t size = 0;  // header and attributes

  // The first attribute of `type` (RFC 8489 §14: later copies are ignored), or null.
  const Attribute* find(uint16_t type) const;
};

struct ParseResult {
  std::optional<Message> message;
  ParseError error = ParseError::kTooShort;  // when !message
};

// Reads the message that fills `datagram` exactly (UDP framing, RFC 8489 §6.2.1) and checks
// the header rules and FINGERPRINT (§6.3). The attributes point into `datagram`.
ParseResult parse(std::span<const uint8_t> datagram);

// The message type field of `method` and `cls` (§5: class bits C1 at 8, C0 at 4).
uint16_t message_type(uint16_t method, MessageClass cls);

// CRC-32 (ISO-HDLC, as in RFC 1952) of `bytes`.
uint32_t crc32(std::span<const uint8_t> bytes);

// An address attribute's value (MAPPED-ADDRESS style; XOR-MAPPED-ADDRESS when `xor_with`
// is given the transaction id): nullopt when malformed.
std::optional<net::Address> read_address(std::span<const uint8_t> value,
                                         const TransactionId* xor_with);

// Builds one message: header, then attributes appended in order, then finish() which writes
// FINGERPRINT (optional) and the length.
class MessageWriter {
 public:
  MessageWriter(uint16_t method, MessageClass cls, const TransactionId& id);
  // Writes into `storage` (its bytes overwritten), so that a caller answering many messages reuses
  // one buffer's capacity: take() gives it back.
  MessageWriter(uint16_t method, MessageClass cls, const TransactionId& id,
                std::vector<uint8_t> storage);

  // The byte attribute values are padded with (RFC 8489 §14 leaves it free; 0 unless set:
  // RFC 5769's samples pad with spaces).
  void set_padding(uint8_t byte) { padding_ = byte; }
  void add(uint16_t type, std::span<const uint8_t> value);
  void add_string(uint16_t type, std::string_view value) {
    add(type, std::span(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
  }
  // XOR-MAPPED-ADDRESS (`xor` true) or an address attribute in the plain form.
  void add_address(uint16_t type, const net::Address& address, bool xor_value);
  // ERROR-CODE (RFC 8489 §14.8).
  void add_error(int code, std::string_view reason);
  // UNKNOWN-ATTRIBUTES (§14.9).
  void add_unknown(std::span<const uint16_t> types);
  // Appends MESSAGE-INTEGRITY (HMAC-SHA1 keyed by `key`, §14.5) over what is written so far.
  void add_message_integrity(std::span<const uint8_t> key);
  // Appends MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, §14.6), its first `size` bytes (16-32, a
  // multiple of 4).
  void add_message_integrity_sha256(std::span<const uint8_t> key, size_t size = 32);
  // Writes the length, and FINGERPRINT when `fingerprint`. Returns the message.
  std::span<const uint8_t> finish(bool fingerprint);
  // The message's bytes (after finish()), leaving the writer empty.
  std::vector<uint8_t> take() {
    bytes_.resize(size_);
    size_ = 0;
    return std::move(bytes_);
  }

  // The bytes an attribute of a `value_size`-byte value takes.
  static size_t attribute_size(size_t value_size) { return 4 + ((value_size + 3) & ~size_t{3}); }
  size_t size() const { return size_; }

 private:
  void set_length(size_t attributes_bytes);
  // Makes room for n more bytes at the end of the message; returns where they start.
  uint8_t* extend(size_t n);
  std::vector<uint8_t> bytes_;  // the room; the message is its first size_ bytes
  size_t size_ = 0;
  uint8_t padding_ = 0;
};

// Whether MESSAGE-INTEGRITY of `message` (parsed from `datagram`) is the HMAC-SHA1 under
// `key` (§14.5: over the message up to the attribute, with the length counting it). False
// when it has none.
bool check_message_integrity(std::span<const uint8_t> datagram, const Message& message,
                             std::span<const uint8_t> key);
// The same for MESSAGE-INTEGRITY-SHA256 (§14.6: HMAC-SHA256, possibly cut to 16-32 bytes).
bool check_message_integrity_sha256(std::span<const uint8_t> datagram, const Message& message,
                                    std::span<const uint8_t> key);

}  // namespace sluice::stun
