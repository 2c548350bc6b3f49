#include "dns/message.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace sluice::dns {
namespace {

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> p) : p_(p) {}

  bool u8(uint8_t& v) {
    if (pos_ + 1 > p_.size()) return false;
    v = p_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (pos_ + 2 > p_.size()) return false;
    v = static_cast<uint16_t>(p_[pos_] << 8 | p_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(uint32_t& v) {
    if (pos_ + 4 > p_.size()) return false;
    v = static_cast<uint32_t>(p_[pos_]) << 24 | static_cast<uint32_t>(p_[pos_ + 1]) << 16 |
        static_cast<uint32_t>(p_[pos_ + 2]) << 8 | p_[pos_ + 3];
    pos_ += 4;
    return true;
  }
  bool skip(size_t n) {
    if (pos_ + n > p_.size()) return false;
    pos_ += n;
    return true;
  }
  // A possibly compressed name (RFC 1035 §4.1.4). Pointers must point backwards, which
  // also rules out loops.
  bool name(std::string& out) {
    out.clear();
    size_t pos = pos_;
    bool jumped = false;
    size_t limit = pos_;  // a pointer must go before the place it was read from
    int labels = 0;
    for (int steps = 0; steps < 256; ++steps) {
      if (pos >= p_.size()) return false;
      uint8_t len = p_[pos];
      if ((len & 0xC0) == 0xC0) {
        if (pos + 1 >= p_.size()) return false;
        size_t target = static_cast<size_t>(len & 0x3F) << 8 | p_[pos + 1];
        if (!jumped) pos_ = pos + 2;
        if (target >= limit) return false;
        limit = target;
        jumped = true;
        pos = target;
        continue;
      }
      if (len & 0xC0) return false;  // reserved label types
      if (len == 0) {
        if (!jumped) pos_ = pos + 1;
        // RFC 1035 limits the wire form to 255 octets: the dotted text to 253.
        return out.size() <= 253;
      }
      if (++labels > 127) return false;
      if (pos + 1 + len > p_.size()) return false;
      if (!out.empty()) out += '.';
      for (size_t i = 0; i < len; ++i) {
        char c = static_cast<char>(p_[pos + 1 + i]);
        // A dot inside a label could not be told from a label boundary in the text form
        // names are compared and resolved in (and no host name has one).
        if (c == '.') return false;
        out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      }
      pos += 1 + len;
    }
    return false;
  }
  size_t pos() const { return pos_; }
  size_t size() const { return p_.size(); }
  const uint8_t* at(size_t pos) const { return p_.data() + pos; }

 private:
  std::span<const uint8_t> p_;
  size_t pos_ = 0;
};

bool read_record(Reader& r, Record& rec, bool& known) {
  uint16_t cls = 0, rdlen = 0;
  if (!r.name(rec.name) || !r.u16(rec.type) || !r.u16(cls) || !r.u32(rec.ttl) || !r.u16(rdlen)) {
    return false;
  }
  // RFC 2181 §8: a TTL with the top bit set is treated as zero.
  if (rec.ttl & 0x80000000u) rec.ttl = 0;
  size_t end = r.pos() + rdlen;
  if (end > r.size()) return false;  // rdata runs past the packet
  known = cls == 1;                  // IN
  if (known) {
    switch (rec.type) {
      case kTypeA: {
        if (rdlen != 4) return false;
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        std::memcpy(&sa.sin_addr, r.at(r.pos()), 4);
        rec.address =
            net::Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
        break;
      }
      case kTypeAaaa: {
        if (rdlen != 16) return false;
        sockaddr_in6 sa{};
        sa.sin6_family = AF_INET6;
        std::memcpy(&sa.sin6_addr, r.at(r.pos()), 16);
        rec.address =
            net::Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
        break;
      }
      case kTypeCname: {
        Reader sub = r;
        if (!sub.name(rec.target) || sub.pos() > end) return false;
        break;
      }
      case kTypeSrv: {
        Reader sub = r;
        if (!sub.u16(rec.priority) || !sub.u16(rec.weight) || !sub.u16(rec.port) ||
            !sub.name(rec.target) || sub.pos() > end) {
          return false;
        }
        break;
      }
      case kTypeSoa: {
        Reader sub = r;
        std::string mname, rname;
        uint32_t serial, refresh, retry, expire;
        if (!sub.name(mname) || !sub.name(rname) || !sub.u32(serial) || !sub.u32(refresh) ||
            !sub.u32(retry) || !sub.u32(expire) || !sub.u32(rec.soa_minimum) || sub.pos() > end) {
          return false;
        }
        break;
      }
      default:
        known = false;
    }
  }
  return r.skip(end - r.pos());
}

}  // namespace

std::string normalize_name(std::string_view name) {
  std::string out(name);
  while (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Result<Message> parse_message(std::span<const uint8_t> packet) {
  Reader r(packet);
  uint16_t id, flags, qd, an, ns, ar;
  if (!r.u16(id) || !r.u16(flags) || !r.u16(qd) || !r.u16(an) || !r.u16(ns) || !r.u16(ar)) {
    return Status::error("malformed DNS response: short header");
  }
  Message m;
  m.rcode = flags & 0xF;
  m.truncated = flags & 0x0200;
  std::string name;
  for (uint16_t i = 0; i < qd; ++i) {
    if (!r.name(name) || !r.skip(4)) return Status::error("malformed DNS response: question");
  }
  for (int section = 0; section < 2; ++section) {
    uint16_t count = section == 0 ? an : ns;
    auto& out = section == 0 ? m.answers : m.authority;
    for (uint16_t i = 0; i < count; ++i) {
      Record rec;
      bool known = false;
      if (!read_record(r, rec, known)) {
        return Status::error(section == 0 ? "malformed DNS response: answer record"
                                          : "malformed DNS response: authority record");
      }
      if (known) out.push_back(std::move(rec));
    }
  }
  return m;
}

}  // namespace sluice::dns
