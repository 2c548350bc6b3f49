#include "stun/message.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstring>

namespace sluice::stun {
namespace {

uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

// Slicing by 8: table k holds the CRC of a byte followed by k zero bytes, so that eight
// bytes take eight independent look-ups instead of a chain of eight.
using CrcTables = std::array<std::array<uint32_t, 256>, 8>;
constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (uint32_t i = 0; i < 256; ++i) t[k][i] = t[0][t[k - 1][i] & 0xFF] ^ (t[k - 1][i] >> 8);
  }
  return t;
}
constexpr CrcTables kCrcTables = make_crc_tables();

constexpr size_t kFingerprintSize = 8;  // attribute header and CRC
constexpr size_t kIntegritySize = 24;   // attribute header and HMAC-SHA1

}  // namespace

const char* to_string(ParseError e) {
  switch (e) {
    case ParseError::kTooShort:
      return "shorter than a STUN header";
    case ParseError::kNotStun:
      return "first two bits not zero";
    case ParseError::kBadCookie:
      return "no magic cookie";
    case ParseError::kBadLength:
      return "length not a multiple of 4 or not the datagram's";
    case ParseError::kAttributeOverrun:
      return "attribute past the end";
    case ParseError::kBadFingerprint:
      return "bad FINGERPRINT";
  }
  return "?";
}

uint32_t crc32(std::span<const uint8_t> bytes) {
  const auto& t = kCrcTables;
  uint32_t c = 0xFFFFFFFFu;
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  for (; n >= 8; n -= 8, p += 8) {
    // Little-endian order of the bytes, whatever the host's.
    uint32_t lo =
        c ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint16_t message_type(uint16_t method, MessageClass cls) {
  auto c = static_cast<uint16_t>(cls);
  // M0-M3 | C0 | M4-M6 | C1 | M7-M11 (RFC 8489 §5, figure 3).
  return static_cast<uint16_t>((method & 0x000F) | ((c & 1) << 4) | ((method & 0x0070) << 1) |
                               ((c & 2) << 7) | ((method & 0x0F80) << 2));
}

const Attribute* Message::find(uint16_t type) const {
  for (const auto& a : attributes) {
    if (a.type == type) return &a;
  }
  return nullptr;
}

ParseResult parse(std::span<const uint8_t> d) {
  ParseResult r;
  auto fail = [&r](ParseError e) {
    r.error = e;
    return r;
  };
  if (d.size() < kHeaderSize) return fail(ParseError::kTooShort);
  if ((d[0] & 0xC0) != 0) return fail(ParseError::kNotStun);
  if (get32(&d[4]) != kMagicCookie) return fail(ParseError::kBadCookie);
  size_t length = get16(&d[2]);
  if (length % 4 != 0 || kHeaderSize + length != d.size()) return fail(ParseError::kBadLength);

  Message m;
  uint16_t type = get16(&d[0]);
  m.message_class = static_cast<MessageClass>(((type >> 4) & 1) | ((type >> 7) & 2));
  m.method =
      static_cast<uint16_t>((type & 0x000F) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0F80));
  std::memcpy(m.transaction_id.data(), &d[8], m.transaction_id.size());
  m.size = d.size();
  size_t at = kHeaderSize;
  while (at < d.size()) {
    if (d.size() - at < 4) return fail(ParseError::kAttributeOverrun);
    uint16_t atype = get16(&d[at]);
    size_t alen = get16(&d[at + 2]);
    size_t padded = (alen + 3) & ~size_t{3};
    if (padded > d.size() - at - 4) return fail(ParseError::kAttributeOverrun);
    if (m.has_fingerprint) return fail(ParseError::kBadFingerprint);  // §14.7: it is last
    if (atype == attr::kFingerprint) {
      if (alen != 4) return fail(ParseError::kBadFingerprint);
      uint32_t want = crc32(d.first(at)) ^ kFingerprintXor;
      if (get32(&d[at + 4]) != want) return fail(ParseError::kBadFingerprint);
      m.has_fingerprint = true;
    }
    if (m.attributes.size() >= 64) return fail(ParseError::kAttributeOverrun);
    m.attributes.push_back(Attribute{atype, d.subspan(at + 4, alen), at});
    at += 4 + padded;
  }
  r.message = std::move(m);
  return r;
}

std::optional<net::Address> read_address(std::span<const uint8_t> v, const TransactionId* id) {
  // RFC 8489 §14.1/§14.2: reserved byte, family, port, address.
  if (v.size() < 4) return std::nullopt;
  uint8_t family = v[1];
  uint16_t port = get16(&v[2]);
  if (id) port ^= static_cast<uint16_t>(kMagicCookie >> 16);
  if (family == 0x01 && v.size() == 8) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    uint32_t ip = get32(&v[4]);
    if (id) ip ^= kMagicCookie;
    sin.sin_addr.s_addr = htonl(ip);
    return net::Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
  }
  if (family == 0x02 && v.size() == 20) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    uint8_t mask[16];
    put32(mask, kMagicCookie);
    if (id) std::memcpy(mask + 4, id->data(), 12);
    for (size_t i = 0; i < 16; ++i) {
      sin6.sin6_addr.s6_addr[i] = static_cast<uint8_t>(v[4 + i] ^ (id ? mask[i] : 0));
    }
    return net::Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
  }
  return std::nullopt;
}

MessageWriter::MessageWriter(uint16_t method, MessageClass cls, const TransactionId& id)
    : MessageWriter(method, cls, id, {}) {}

MessageWriter::MessageWriter(uint16_t method, MessageClass cls, const TransactionId& id,
                             std::vector<uint8_t> storage)
    : bytes_(std::move(storage)) {
  // bytes_ holds the room (its size), size_ the message: growing within the room is a
  // pointer move, not a vector call per attribute.
  if (bytes_.size() < 128) bytes_.resize(128);
  extend(kHeaderSize);
  put16(&bytes_[0], message_type(method, cls));
  put32(&bytes_[4], kMagicCookie);
  std::memcpy(&bytes_[8], id.data(), id.size());
}

uint8_t* MessageWriter::extend(size_t n) {
  size_t at = size_;
  if (at + n > bytes_.size()) bytes_.resize(std::max(at + n, 2 * bytes_.size()));
  size_ = at + n;
  return bytes_.data() + at;
}

void MessageWriter::add(uint16_t type, std::span<const uint8_t> value) {
  size_t n = attribute_size(value.size());
  uint8_t* p = extend(n);
  put16(p, type);
  put16(p + 2, static_cast<uint16_t>(value.size()));
  if (!value.empty()) std::memcpy(p + 4, value.data(), value.size());
  std::memset(p + 4 + value.size(), padding_, n - 4 - value.size());
}

void MessageWriter::add_address(uint16_t type, const net::Address& address, bool xor_value) {
  uint8_t v[20] = {};
  uint16_t port = address.port();
  if (xor_value) port ^= static_cast<uint16_t>(kMagicCookie >> 16);
  put16(&v[2], port);
  const sockaddr* sa = address.sockaddr_ptr();
  if (address.family() == AF_INET) {
    v[1] = 0x01;
    uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr);
    if (xor_value) ip ^= kMagicCookie;
    put32(&v[4], ip);
    add(type, std::span(v, 8));
    return;
  }
  v[1] = 0x02;
  uint8_t mask[16];
  put32(mask, kMagicCookie);
  std::memcpy(mask + 4, &bytes_[8], 12);
  const uint8_t* ip = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
  for (size_t i = 0; i < 16; ++i)
    v[4 + i] = static_cast<uint8_t>(ip[i] ^ (xor_value ? mask[i] : 0));
  add(type, std::span(v, 20));
}

void MessageWriter::add_error(int code, std::string_view reason) {
  std::vector<uint8_t> v(4 + reason.size());
  v[2] = static_cast<uint8_t>(code / 100);
  v[3] = static_cast<uint8_t>(code % 100);
  std::memcpy(v.data() + 4, reason.data(), reason.size());
  add(attr::kErrorCode, v);
}

void MessageWriter::add_unknown(std::span<const uint16_t> types) {
  std::vector<uint8_t> v(types.size() * 2);
  for (size_t i = 0; i < types.size(); ++i) put16(&v[2 * i], types[i]);
  add(attr::kUnknownAttributes, v);
}

void MessageWriter::set_length(size_t attributes_bytes) {
  put16(&bytes_[2], static_cast<uint16_t>(attributes_bytes));
}

void MessageWriter::add_message_integrity(std::span<const uint8_t> key) {
  // §14.5: the length counts MESSAGE-INTEGRITY itself (and nothing after it) while hashing.
  set_length(size_ - kHeaderSize + kIntegritySize);
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), bytes_.data(), size_, mac, &mac_len);
  add(attr::kMessageIntegrity, std::span(mac, mac_len));
}

void MessageWriter::add_message_integrity_sha256(std::span<const uint8_t> key, size_t size) {
  // §14.6: as for MESSAGE-INTEGRITY, with the (possibly cut) attribute counted.
  set_length(size_ - kHeaderSize + 4 + size);
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes_.data(), size_, mac, &mac_len);
  add(attr::kMessageIntegritySha256, std::span(mac, std::min<size_t>(size, mac_len)));
}

std::span<const uint8_t> MessageWriter::finish(bool fingerprint) {
  if (fingerprint) {
    set_length(size_ - kHeaderSize + kFingerprintSize);
    uint8_t v[4];
    put32(v, crc32(std::span(bytes_.data(), size_)) ^ kFingerprintXor);
    add(attr::kFingerprint, v);
  }
  set_length(size_ - kHeaderSize);
  return {bytes_.data(), size_};
}

namespace {

// Whether the attribute `type` of `message` holds the HMAC (`md`) under `key` of the message
// up to it, with the header's length counting it (§14.5, §14.6); a shorter value (16-32
// bytes, SHA-256 only) is compared with the HMAC's first bytes.
bool check_hmac(std::span<const uint8_t> datagram, const Message& message,
                std::span<const uint8_t> key, uint16_t type, const EVP_MD* md, size_t min,
                size_t max) {
  const Attribute* mi = message.find(type);
  if (!mi || mi->value.size() < min || mi->value.size() > max || mi->offset > datagram.size() ||
      mi->offset < kHeaderSize) {
    return false;
  }
  std::vector<uint8_t> copy(datagram.begin(), datagram.begin() + mi->offset);
  put16(&copy[2], static_cast<uint16_t>(mi->offset - kHeaderSize + 4 + mi->value.size()));
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), copy.data(), copy.size(), mac, &mac_len);
  return mac_len >= mi->value.size() && CRYPTO_memcmp(mac, mi->value.data(), mi->value.size()) == 0;
}

}  // namespace

bool check_message_integrity(std::span<const uint8_t> datagram, const Message& message,
                             std::span<const uint8_t> key) {
  return check_hmac(datagram, message, key, attr::kMessageIntegrity, EVP_sha1(), 20, 20);
}

bool check_message_integrity_sha256(std::span<const uint8_t> datagram, const Message& message,
                                    std::span<const uint8_t> key) {
  const Attribute* mi = message.find(attr::kMessageIntegritySha256);
  if (mi && mi->value.size() % 4 != 0) return false;
  return check_hmac(datagram, message, key, attr::kMessageIntegritySha256, EVP_sha256(), 16, 32);
}

}  // namespace sluice::stun
