#include "dns/message.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::dns {
namespace {

constexpr uint16_t kFlagsResponse = 0x8180;  // QR, RD, RA
constexpr uint16_t kFlagTruncated = 0x0200;
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kClassCh = 3;
constexpr uint16_t kTypeTxt = 16;

// Builds DNS packets byte by byte. Names are written label by label, optionally ending in a
// compression pointer instead of the root label.
class Builder {
 public:
  Builder& header(uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar = 0) {
    u16(0x1234);
    u16(flags);
    u16(qd);
    u16(an);
    u16(ns);
    u16(ar);
    return *this;
  }
  Builder& u8(uint8_t v) {
    b_.push_back(v);
    return *this;
  }
  Builder& u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    return u8(static_cast<uint8_t>(v));
  }
  Builder& u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    return u16(static_cast<uint16_t>(v));
  }
  Builder& bytes(const std::vector<uint8_t>& v) {
    b_.insert(b_.end(), v.begin(), v.end());
    return *this;
  }
  Builder& label(std::string_view l) {
    u8(static_cast<uint8_t>(l.size()));
    b_.insert(b_.end(), l.begin(), l.end());
    return *this;
  }
  Builder& pointer(uint16_t offset) { return u16(static_cast<uint16_t>(0xC000 | offset)); }
  // "www.example.com" → labels + root; with `ptr`, the labels are followed by a pointer.
  Builder& name(std::string_view dotted, std::optional<uint16_t> ptr = std::nullopt) {
    while (!dotted.empty()) {
      size_t dot = dotted.find('.');
      label(dotted.substr(0, dot));
      dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
    }
    return ptr ? pointer(*ptr) : u8(0);
  }
  Builder& question(std::string_view qname, uint16_t type = kTypeA) {
    name(qname);
    u16(type);
    return u16(kClassIn);
  }
  // The fixed part of a record after its owner name; rdlength is patched by end_rdata().
  Builder& rr(uint16_t type, uint32_t ttl, uint16_t cls = kClassIn) {
    u16(type);
    u16(cls);
    u32(ttl);
    rdlength_at_ = b_.size();
    return u16(0);
  }
  Builder& end_rdata() {
    size_t len = b_.size() - rdlength_at_ - 2;
    b_[rdlength_at_] = static_cast<uint8_t>(len >> 8);
    b_[rdlength_at_ + 1] = static_cast<uint8_t>(len);
    return *this;
  }
  // Record with explicit rdlength and raw rdata (may disagree on purpose).
  Builder& raw_rr(uint16_t type, uint32_t ttl, uint16_t rdlength, const std::vector<uint8_t>& rd,
                  uint16_t cls = kClassIn) {
    u16(type);
    u16(cls);
    u32(ttl);
    u16(rdlength);
    return bytes(rd);
  }
  Builder& a(uint32_t ttl, std::vector<uint8_t> ip) {
    rr(kTypeA, ttl);
    bytes(ip);
    return end_rdata();
  }
  Builder& soa(uint32_t ttl, uint32_t minimum) {
    rr(kTypeSoa, ttl);
    name("ns1.example.com");
    name("hostmaster.example.com");
    u32(2024010101);  // serial
    u32(7200);        // refresh
    u32(900);         // retry
    u32(1209600);     // expire
    u32(minimum);
    return end_rdata();
  }

  size_t size() const { return b_.size(); }
  const std::vector<uint8_t>& packet() const { return b_; }

 private:
  std::vector<uint8_t> b_;
  size_t rdlength_at_ = 0;
};

constexpr uint16_t kQuestionName = 12;  // offset of the first question's name

// Parses from an exactly sized heap copy, so ASan catches any read past the end.
Result<Message> parse(const std::vector<uint8_t>& bytes, size_t len) {
  auto copy = std::make_unique<uint8_t[]>(len);
  std::copy(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(len), copy.get());
  return parse_message(std::span<const uint8_t>(copy.get(), len));
}
Result<Message> parse(const std::vector<uint8_t>& bytes) {
  return parse(bytes, bytes.size());
}
Result<Message> parse(const Builder& b) {
  return parse(b.packet());
}

std::string repeat(char c, size_t n) {
  return std::string(n, c);
}

// A response exercising every record type, with compression in owners and rdata.
std::vector<uint8_t> rich_packet() {
  Builder b;
  b.header(kFlagsResponse, 1, 5, 1).question("WWW.Example.com");
  b.pointer(kQuestionName).rr(kTypeCname, 300).name("edge", kQuestionName + 4).end_rdata();
  b.name("edge", kQuestionName + 4).a(60, {192, 0, 2, 1});
  b.name("edge", kQuestionName + 4).rr(kTypeAaaa, 61);
  b.bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}).end_rdata();
  b.name("_http._tcp", kQuestionName + 4).rr(kTypeSrv, 62);
  b.u16(10).u16(20).u16(8080).name("srv", kQuestionName + 4).end_rdata();
  b.name("txt", kQuestionName + 4).rr(kTypeTxt, 5).bytes({3, 'a', 'b', 'c'}).end_rdata();
  b.name("example.com").soa(3600, 30);
  return b.packet();
}

TEST(DnsMessage, ParsesAAndAaaaWithTtls) {
  Builder b;
  b.header(kFlagsResponse, 1, 2, 0).question("host.example.com");
  b.pointer(kQuestionName).a(300, {10, 1, 2, 3});
  b.pointer(kQuestionName).rr(kTypeAaaa, 7);
  b.bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42}).end_rdata();
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m->rcode, kNoError);
  EXPECT_FALSE(m->truncated);
  ASSERT_EQ(m->answers.size(), 2u);
  EXPECT_TRUE(m->authority.empty());
  EXPECT_EQ(m->answers[0].name, "host.example.com");
  EXPECT_EQ(m->answers[0].type, kTypeA);
  EXPECT_EQ(m->answers[0].ttl, 300u);
  EXPECT_EQ(m->answers[0].address.family(), AF_INET);
  EXPECT_EQ(m->answers[0].address.ip_string(), "10.1.2.3");
  EXPECT_EQ(m->answers[0].address.port(), 0);
  EXPECT_EQ(m->answers[1].type, kTypeAaaa);
  EXPECT_EQ(m->answers[1].ttl, 7u);
  EXPECT_EQ(m->answers[1].address.family(), AF_INET6);
  EXPECT_EQ(m->answers[1].address.ip_string(), "2001:db8::42");
}

TEST(DnsMessage, ParsesCnameChainLowerCased) {
  Builder b;
  b.header(kFlagsResponse, 1, 3, 0).question("Api.EXAMPLE.com");
  b.pointer(kQuestionName).rr(kTypeCname, 120).name("LB.Example.NET").end_rdata();
  b.name("lb.example.net").rr(kTypeCname, 60).name("Edge-1.CDN.example.net").end_rdata();
  b.name("EDGE-1.cdn.example.net").a(20, {192, 0, 2, 7});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 3u);
  EXPECT_EQ(m->answers[0].name, "api.example.com");
  EXPECT_EQ(m->answers[0].type, kTypeCname);
  EXPECT_EQ(m->answers[0].ttl, 120u);
  EXPECT_EQ(m->answers[0].target, "lb.example.net");
  EXPECT_EQ(m->answers[1].name, "lb.example.net");
  EXPECT_EQ(m->answers[1].target, "edge-1.cdn.example.net");
  EXPECT_EQ(m->answers[1].ttl, 60u);
  EXPECT_EQ(m->answers[2].name, "edge-1.cdn.example.net");
  EXPECT_EQ(m->answers[2].address.ip_string(), "192.0.2.7");
}

TEST(DnsMessage, ParsesSrv) {
  Builder b;
  b.header(kFlagsResponse, 1, 2, 0).question("_grpc._tcp.svc.local", kTypeSrv);
  b.pointer(kQuestionName).rr(kTypeSrv, 45).u16(1).u16(50).u16(9000);
  b.name("Node-A.svc.local").end_rdata();
  b.pointer(kQuestionName).rr(kTypeSrv, 46).u16(2).u16(0).u16(65535);
  b.name("node-b", kQuestionName + 11).end_rdata();  // "node-b" + pointer to "svc.local"
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 2u);
  const Record& r0 = m->answers[0];
  EXPECT_EQ(r0.name, "_grpc._tcp.svc.local");
  EXPECT_EQ(r0.type, kTypeSrv);
  EXPECT_EQ(r0.ttl, 45u);
  EXPECT_EQ(r0.priority, 1);
  EXPECT_EQ(r0.weight, 50);
  EXPECT_EQ(r0.port, 9000);
  EXPECT_EQ(r0.target, "node-a.svc.local");
  const Record& r1 = m->answers[1];
  EXPECT_EQ(r1.priority, 2);
  EXPECT_EQ(r1.weight, 0);
  EXPECT_EQ(r1.port, 65535);
  EXPECT_EQ(r1.target, "node-b.svc.local");
}

TEST(DnsMessage, NxDomainWithSoaInAuthority) {
  Builder b;
  b.header(kFlagsResponse | kNxDomain, 1, 0, 1).question("missing.example.com");
  b.pointer(kQuestionName + 8).soa(3600, 300);  // owner "example.com" via pointer
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m->rcode, kNxDomain);
  EXPECT_TRUE(m->answers.empty());
  ASSERT_EQ(m->authority.size(), 1u);
  EXPECT_EQ(m->authority[0].name, "example.com");
  EXPECT_EQ(m->authority[0].type, kTypeSoa);
  EXPECT_EQ(m->authority[0].ttl, 3600u);
  EXPECT_EQ(m->authority[0].soa_minimum, 300u);
}

TEST(DnsMessage, NoDataAnswerWithCompressedSoa) {
  // NOERROR/NODATA: SOA whose mname and rname are themselves compressed.
  Builder b;
  b.header(kFlagsResponse, 1, 0, 1).question("www.example.com", kTypeAaaa);
  b.pointer(kQuestionName + 4).rr(kTypeSoa, 900);
  b.name("ns1", kQuestionName + 4).name("hostmaster", kQuestionName + 4);
  b.u32(1).u32(2).u32(3).u32(4).u32(60).end_rdata();
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m->rcode, kNoError);
  ASSERT_EQ(m->authority.size(), 1u);
  EXPECT_EQ(m->authority[0].soa_minimum, 60u);
  EXPECT_EQ(m->authority[0].ttl, 900u);
}

TEST(DnsMessage, ReportsRcodeAndTruncatedFlag) {
  for (uint8_t rcode : {kNoError, kFormErr, kServFail, kNxDomain, kNotImp, kRefused}) {
    for (bool tc : {false, true}) {
      Builder b;
      b.header(static_cast<uint16_t>(kFlagsResponse | (tc ? kFlagTruncated : 0) | rcode), 1, 0, 0);
      b.question("example.com");
      auto m = parse(b);
      ASSERT_TRUE(m.is_ok()) << m.status().message();
      EXPECT_EQ(m->rcode, rcode);
      EXPECT_EQ(m->truncated, tc) << "rcode " << int(rcode);
    }
  }
  // Other header bits (AA, AD, CD, opcode) do not leak into rcode or truncated.
  Builder b;
  b.header(0x8000 | 0x0400 | 0x0020 | 0x0010, 0, 0, 0);
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->rcode, 0);
  EXPECT_FALSE(m->truncated);
}

TEST(DnsMessage, TruncatedResponseWithNoRecords) {
  Builder b;
  b.header(kFlagsResponse | kFlagTruncated, 1, 0, 0).question("big.example.com");
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok());
  EXPECT_TRUE(m->truncated);
  EXPECT_TRUE(m->answers.empty());
}

TEST(DnsMessage, FollowsCompressionPointers) {
  Builder b;
  b.header(kFlagsResponse, 1, 2, 0).question("www.example.com");
  b.pointer(kQuestionName).a(1, {1, 1, 1, 1});           // whole name
  b.name("mail", kQuestionName + 4).a(2, {2, 2, 2, 2});  // suffix "example.com"
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 2u);
  EXPECT_EQ(m->answers[0].name, "www.example.com");
  EXPECT_EQ(m->answers[1].name, "mail.example.com");
}

TEST(DnsMessage, FollowsNestedCompressionPointers) {
  Builder b;
  b.header(kFlagsResponse, 1, 3, 0).question("Example.COM");
  // "b.example.com" as label + pointer to the question.
  size_t b_name = b.size();
  b.name("B", kQuestionName).a(1, {10, 0, 0, 1});
  // "a.b.example.com": label + pointer to a name that itself ends in a pointer.
  size_t a_name = b.size();
  b.name("a", static_cast<uint16_t>(b_name)).a(2, {10, 0, 0, 2});
  // Three levels deep, in a CNAME target: "x.a.b.example.com".
  b.pointer(static_cast<uint16_t>(a_name)).rr(kTypeCname, 3);
  b.name("X", static_cast<uint16_t>(a_name)).end_rdata();
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 3u);
  EXPECT_EQ(m->answers[0].name, "b.example.com");
  EXPECT_EQ(m->answers[1].name, "a.b.example.com");
  EXPECT_EQ(m->answers[2].name, "a.b.example.com");
  EXPECT_EQ(m->answers[2].target, "x.a.b.example.com");
}

TEST(DnsMessage, ParsesARichResponse) {
  auto m = parse(rich_packet());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 4u);  // the TXT record is skipped
  EXPECT_EQ(m->answers[0].target, "edge.example.com");
  EXPECT_EQ(m->answers[1].address.ip_string(), "192.0.2.1");
  EXPECT_EQ(m->answers[2].address.ip_string(), "2001:db8::1");
  EXPECT_EQ(m->answers[3].target, "srv.example.com");
  EXPECT_EQ(m->answers[3].name, "_http._tcp.example.com");
  ASSERT_EQ(m->authority.size(), 1u);
  EXPECT_EQ(m->authority[0].soa_minimum, 30u);
}

TEST(DnsMessage, TtlWithTopBitSetIsZero) {
  Builder b;
  b.header(kFlagsResponse, 1, 4, 0).question("t.example");
  b.pointer(kQuestionName).a(0x80000000u, {1, 0, 0, 1});
  b.pointer(kQuestionName).a(0xFFFFFFFFu, {1, 0, 0, 2});
  b.pointer(kQuestionName).a(0x7FFFFFFFu, {1, 0, 0, 3});
  b.pointer(kQuestionName).a(0, {1, 0, 0, 4});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 4u);
  EXPECT_EQ(m->answers[0].ttl, 0u);
  EXPECT_EQ(m->answers[1].ttl, 0u);
  EXPECT_EQ(m->answers[2].ttl, 0x7FFFFFFFu);
  EXPECT_EQ(m->answers[3].ttl, 0u);
}

TEST(DnsMessage, SkipsUnknownTypes) {
  Builder b;
  b.header(kFlagsResponse, 1, 4, 1).question("example.com");
  b.pointer(kQuestionName).rr(kTypeTxt, 10).bytes({5, 'h', 'e', 'l', 'l', 'o'}).end_rdata();
  b.pointer(kQuestionName).a(11, {198, 51, 100, 1});
  b.pointer(kQuestionName).rr(15, 12).u16(10).name("mx", kQuestionName).end_rdata();  // MX
  b.pointer(kQuestionName).rr(65000, 13).end_rdata();  // private type, empty rdata
  b.pointer(kQuestionName).rr(2, 14).name("ns", kQuestionName).end_rdata();  // NS in authority
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].type, kTypeA);
  EXPECT_EQ(m->answers[0].ttl, 11u);
  EXPECT_TRUE(m->authority.empty());
}

TEST(DnsMessage, SkipsClassesOtherThanIn) {
  Builder b;
  b.header(kFlagsResponse, 1, 3, 0).question("example.com");
  // CH-class "A" with rdata that would be malformed as an IN A: skipped, not an error.
  b.pointer(kQuestionName).raw_rr(kTypeA, 10, 5, {1, 2, 3, 4, 5}, kClassCh);
  b.pointer(kQuestionName).raw_rr(kTypeCname, 10, 2, {0xFF, 0xFF}, 255);  // ANY class
  b.pointer(kQuestionName).a(12, {203, 0, 113, 9});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].address.ip_string(), "203.0.113.9");
}

TEST(DnsMessage, AdditionalSectionIsIgnored) {
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0, 1).question("example.com");
  b.pointer(kQuestionName).a(5, {1, 2, 3, 4});
  b.u8(0).raw_rr(41, 0, 0, {});  // OPT
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m->answers.size(), 1u);
}

TEST(DnsMessage, ZeroQuestionsAndRootOwner) {
  Builder b;
  b.header(kFlagsResponse, 0, 1, 0);
  b.u8(0).a(5, {9, 9, 9, 9});  // owner is the root
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].name, "");
}

TEST(DnsMessage, AcceptsNamesUpTo255Octets) {
  // 63+63+63+61 label bytes: 4 length octets + 250 + root = 255 octets on the wire.
  std::string longest =
      repeat('a', 63) + "." + repeat('b', 63) + "." + repeat('c', 63) + "." + repeat('d', 61);
  ASSERT_EQ(longest.size(), 253u);
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question(longest);
  b.pointer(kQuestionName).a(1, {1, 2, 3, 4});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].name, longest);
}

// A 127-label name (255 octets) is valid, also when an owner refers to it by a pointer.
TEST(DnsMessage, Accepts127LabelNames) {
  std::string many;
  for (int i = 0; i < 127; ++i) many += i ? ".a" : "a";
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question(many);
  b.pointer(kQuestionName).a(1, {1, 2, 3, 4});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m->answers[0].name, many);
}

TEST(DnsMessage, Accepts127LabelNameWhoseTailIsCompressed) {
  // 126 labels + pointer to "z." : 127 labels, 255 octets once expanded. Valid per RFC 1035.
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question("z");
  std::string prefix;
  for (int i = 0; i < 126; ++i) prefix += i ? ".a" : "a";
  b.name(prefix, kQuestionName).a(1, {1, 2, 3, 4});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].name, prefix + ".z");
}

// ---- Malformed input: must fail cleanly.

TEST(DnsMessage, RejectsShortHeader) {
  std::vector<uint8_t> header = Builder().header(kFlagsResponse, 0, 0, 0).packet();
  for (size_t len = 0; len < 12; ++len) {
    auto m = parse(header, len);
    EXPECT_FALSE(m.is_ok()) << "length " << len;
  }
  EXPECT_TRUE(parse(header).is_ok());
}

TEST(DnsMessage, RejectsTruncatedQuestion) {
  Builder b;
  b.header(kFlagsResponse, 1, 0, 0).question("example.com");
  for (size_t len = 12; len < b.size(); ++len) {
    EXPECT_FALSE(parse(b.packet(), len).is_ok()) << "length " << len;
  }
  // More questions announced than present.
  Builder two;
  two.header(kFlagsResponse, 2, 0, 0).question("example.com");
  EXPECT_FALSE(parse(two).is_ok());
}

TEST(DnsMessage, RejectsMissingRecords) {
  Builder b;
  b.header(kFlagsResponse, 1, 2, 0).question("example.com");
  b.pointer(kQuestionName).a(1, {1, 2, 3, 4});
  EXPECT_FALSE(parse(b).is_ok());
  Builder ns;
  ns.header(kFlagsResponse, 1, 0, 1).question("example.com");
  EXPECT_FALSE(parse(ns).is_ok());
}

TEST(DnsMessage, RejectsRdlengthPastTheEnd) {
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question("example.com");
  b.pointer(kQuestionName).raw_rr(kTypeTxt, 1, 10, {3, 'a', 'b', 'c'});
  EXPECT_FALSE(parse(b).is_ok());
  Builder b2;
  b2.header(kFlagsResponse, 1, 1, 0).question("example.com");
  b2.pointer(kQuestionName).raw_rr(kTypeA, 1, 0xFFFF, {1, 2, 3, 4});
  EXPECT_FALSE(parse(b2).is_ok());
}

TEST(DnsMessage, RejectsAddressRecordsOfTheWrongLength) {
  for (uint16_t len : {0, 3, 5, 16}) {
    Builder b;
    b.header(kFlagsResponse, 1, 1, 0).question("example.com");
    b.pointer(kQuestionName).raw_rr(kTypeA, 1, len, std::vector<uint8_t>(len, 7));
    EXPECT_FALSE(parse(b).is_ok()) << "A rdlength " << len;
  }
  for (uint16_t len : {0, 4, 15, 17}) {
    Builder b;
    b.header(kFlagsResponse, 1, 1, 0).question("example.com");
    b.pointer(kQuestionName).raw_rr(kTypeAaaa, 1, len, std::vector<uint8_t>(len, 7));
    EXPECT_FALSE(parse(b).is_ok()) << "AAAA rdlength " << len;
  }
}

// The packet ends right after an A record's rdlength, which is correct (4). The parse must
// fail without reading the missing address bytes (ASan reports the overread).
TEST(DnsMessage, RejectsARdataCutOffWithoutOverread) {
  Builder a;
  a.header(kFlagsResponse, 1, 1, 0).question("example.com");
  a.pointer(kQuestionName).raw_rr(kTypeA, 1, 4, {});
  EXPECT_FALSE(parse(a).is_ok());
  Builder a2;
  a2.header(kFlagsResponse, 1, 1, 0).question("example.com");
  a2.pointer(kQuestionName).raw_rr(kTypeA, 1, 4, {10, 0});  // two of four bytes
  EXPECT_FALSE(parse(a2).is_ok());
}

// The same for AAAA (rdlength 16, two bytes present).
TEST(DnsMessage, RejectsAaaaRdataCutOffWithoutOverread) {
  Builder aaaa;
  aaaa.header(kFlagsResponse, 1, 1, 0).question("example.com");
  aaaa.pointer(kQuestionName).raw_rr(kTypeAaaa, 1, 16, {0x20, 0x01});
  EXPECT_FALSE(parse(aaaa).is_ok());
}

// Rdata names must lie inside the record's rdlength, not run on into the next record.
TEST(DnsMessage, RejectsRdataNamesRunningPastRdlength) {
  Builder cname;
  cname.header(kFlagsResponse, 1, 1, 0).question("example.com");
  cname.pointer(kQuestionName).rr(kTypeCname, 1).name("target.example.com");
  cname.end_rdata();
  // Shrink rdlength to 3 (the name is 20 octets): the packet is malformed.
  std::vector<uint8_t> p = cname.packet();
  size_t rdlength_at = p.size() - 20 - 2;
  p[rdlength_at] = 0;
  p[rdlength_at + 1] = 3;
  EXPECT_FALSE(parse(p).is_ok());

  Builder srv;
  srv.header(kFlagsResponse, 1, 1, 0).question("example.com");
  srv.pointer(kQuestionName).raw_rr(kTypeSrv, 1, 6, {0, 1, 0, 2, 0x1F, 0x90});
  srv.name("node.example.com");  // after the record, outside its rdata
  EXPECT_FALSE(parse(srv).is_ok());
}

TEST(DnsMessage, RejectsForwardPointer) {
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question("example.com");
  size_t at = b.size();
  b.pointer(static_cast<uint16_t>(at + 2)).a(1, {1, 2, 3, 4});  // points at its own type field
  EXPECT_FALSE(parse(b).is_ok());
  // In the question, pointing past the end of the packet.
  Builder q;
  q.header(kFlagsResponse, 1, 0, 0).pointer(0x3FFF).u16(kTypeA).u16(kClassIn);
  EXPECT_FALSE(parse(q).is_ok());
}

TEST(DnsMessage, RejectsSelfPointer) {
  Builder b;
  b.header(kFlagsResponse, 1, 0, 0).pointer(kQuestionName).u16(kTypeA).u16(kClassIn);
  EXPECT_FALSE(parse(b).is_ok());
  // A label followed by a pointer back to the start of the same name.
  Builder l;
  l.header(kFlagsResponse, 1, 0, 0).name("www", kQuestionName).u16(kTypeA).u16(kClassIn);
  EXPECT_FALSE(parse(l).is_ok());
}

TEST(DnsMessage, RejectsPointerLoops) {
  // Record owner → "a" + ptr(X); X: "b" + ptr(back to the owner's label): a two-name cycle.
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question("example.com");
  size_t first = b.size();
  size_t second = first + 4;  // "1a" + pointer
  b.name("a", static_cast<uint16_t>(second));
  b.name("b", static_cast<uint16_t>(first));
  b.a(1, {1, 2, 3, 4});
  EXPECT_FALSE(parse(b).is_ok());
  // A CNAME target pointing at itself.
  Builder c;
  c.header(kFlagsResponse, 1, 1, 0).question("example.com");
  c.pointer(kQuestionName).rr(kTypeCname, 1);
  c.pointer(static_cast<uint16_t>(c.size())).end_rdata();
  EXPECT_FALSE(parse(c).is_ok());
}

TEST(DnsMessage, RejectsPointerCutOff) {
  Builder b;
  b.header(kFlagsResponse, 1, 0, 0).u8(0xC0);  // first byte of a pointer, then the end
  EXPECT_FALSE(parse(b).is_ok());
}

TEST(DnsMessage, RejectsReservedLabelTypes) {
  for (uint8_t bits : {0x40, 0x80}) {
    Builder b;
    b.header(kFlagsResponse, 1, 0, 0).u8(static_cast<uint8_t>(bits | 3)).bytes({'w', 'w', 'w'});
    b.u8(0).u16(kTypeA).u16(kClassIn);
    EXPECT_FALSE(parse(b).is_ok()) << "label bits " << int(bits);
  }
  // A 64-octet label has the 0x40 bit set in its length: too long.
  Builder b;
  b.header(kFlagsResponse, 1, 0, 0).question(repeat('x', 64));
  EXPECT_FALSE(parse(b).is_ok());
  // 63 is fine.
  Builder ok;
  ok.header(kFlagsResponse, 1, 0, 0).question(repeat('x', 63));
  EXPECT_TRUE(parse(ok).is_ok());
}

TEST(DnsMessage, RejectsLabelRunningPastTheEnd) {
  Builder b;
  b.header(kFlagsResponse, 1, 0, 0).u8(10).bytes({'a', 'b', 'c'});
  EXPECT_FALSE(parse(b).is_ok());
}

TEST(DnsMessage, RejectsNamesLongerThan255Octets) {
  // 128 one-octet labels: 257 octets, and more labels than fit.
  std::string many;
  for (int i = 0; i < 128; ++i) many += i ? ".a" : "a";
  Builder m;
  m.header(kFlagsResponse, 1, 0, 0).question(many);
  EXPECT_FALSE(parse(m).is_ok());
  // 4 * 63 + 1: 259 octets on the wire, 257 characters.
  Builder far;
  far.header(kFlagsResponse, 1, 0, 0)
      .question(repeat('a', 63) + "." + repeat('b', 63) + "." + repeat('c', 63) + "." +
                repeat('d', 63) + ".e");
  EXPECT_FALSE(parse(far).is_ok());
}

// RFC 1035 §2.3.4 / §3.1: a name is at most 255 octets on the wire (length octets and the
// root included), i.e. at most 253 characters in dotted form.
TEST(DnsMessage, Rejects256And257OctetNames) {
  // 63+63+63+62 label bytes: 4 + 251 + 1 = 256 octets on the wire (254 characters).
  std::string n256 =
      repeat('a', 63) + "." + repeat('b', 63) + "." + repeat('c', 63) + "." + repeat('d', 62);
  Builder b;
  b.header(kFlagsResponse, 1, 0, 0).question(n256);
  EXPECT_FALSE(parse(b).is_ok()) << "256-octet name accepted";
  // 64 labels of 3 octets: 64 * 4 + 1 = 257 octets on the wire (255 characters).
  std::string n257;
  for (int i = 0; i < 64; ++i) n257 += i ? ".abc" : "abc";
  Builder c;
  c.header(kFlagsResponse, 1, 0, 0).question(n257);
  EXPECT_FALSE(parse(c).is_ok()) << "257-octet name accepted";
}

TEST(DnsMessage, RejectsNamesMadeTooLongByCompression) {
  // Each piece is short; joined through pointers the name exceeds 255 octets.
  std::string base = repeat('a', 63) + "." + repeat('b', 63) + "." + repeat('c', 63);  // 193
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question(base);
  b.name(repeat('x', 63) + "." + repeat('y', 10), kQuestionName).a(1, {1, 2, 3, 4});
  EXPECT_FALSE(parse(b).is_ok());
}

// ---- Robustness: mutations of a valid packet never crash, hang or read out of bounds.

TEST(DnsMessage, EveryTruncationFailsCleanly) {
  std::vector<uint8_t> p = rich_packet();
  ASSERT_TRUE(parse(p).is_ok());
  for (size_t len = 0; len < p.size(); ++len) {
    EXPECT_FALSE(parse(p, len).is_ok()) << "prefix of " << len << " of " << p.size();
  }
}

TEST(DnsMessage, ByteFlipsNeverCrash) {
  std::vector<std::vector<uint8_t>> seeds = {rich_packet()};
  {
    Builder b;
    b.header(kFlagsResponse | kNxDomain, 1, 0, 1).question("missing.example.com");
    b.pointer(kQuestionName + 8).soa(3600, 300);
    seeds.push_back(b.packet());
  }
  size_t ok = 0, failed = 0;
  for (const auto& seed : seeds) {
    for (size_t i = 0; i < seed.size(); ++i) {
      uint8_t orig = seed[i];
      for (uint8_t v : {uint8_t(0x00), uint8_t(0xFF), uint8_t(0xC0), uint8_t(0x3F), uint8_t(0x40),
                        uint8_t(0x80), uint8_t(0x0C), uint8_t(orig ^ 0x01), uint8_t(orig + 1),
                        uint8_t(orig - 1)}) {
        if (v == orig) continue;
        std::vector<uint8_t> p = seed;
        p[i] = v;
        auto m = parse(p);
        (m.is_ok() ? ok : failed)++;
        if (m.is_ok()) {
          EXPECT_LE(m->answers.size(), 65535u);
          for (const Record& r : m->answers) EXPECT_LE(r.name.size(), 255u);
        }
        // Also every truncation of a few mutants.
        if (i % 7 == 0) {
          for (size_t len = 0; len < p.size(); ++len) (void)parse(p, len);
        }
      }
    }
  }
  EXPECT_GT(ok, 0u);
  EXPECT_GT(failed, 0u);
}

TEST(DnsMessage, DoubleByteFlipsNeverCrash) {
  std::vector<uint8_t> seed = rich_packet();
  for (size_t i = 0; i < seed.size(); ++i) {
    for (size_t j = i + 1; j < seed.size(); j += 3) {
      std::vector<uint8_t> p = seed;
      p[i] = 0xC0;
      p[j] = static_cast<uint8_t>(i);
      (void)parse(p);
    }
  }
}

TEST(DnsMessage, RejectsADotInsideALabel) {
  // "a.b" as one label would read as two labels, a different name.
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question("api.example.com", kTypeCname);
  b.pointer(kQuestionName).rr(kTypeCname, 60).label("a.b").name("example.com").end_rdata();
  EXPECT_FALSE(parse(b));
  Builder ok;
  ok.header(kFlagsResponse, 1, 1, 0).question("api.example.com", kTypeCname);
  ok.pointer(kQuestionName).rr(kTypeCname, 60).label("a-b").name("example.com").end_rdata();
  auto m = parse(ok);
  ASSERT_TRUE(m) << m.status().message();
  EXPECT_EQ(m->answers.at(0).target, "a-b.example.com");
}

TEST(DnsNormalizeName, StripsTrailingDotsAndLowerCases) {
  EXPECT_EQ(normalize_name("WWW.Example.COM."), "www.example.com");
  EXPECT_EQ(normalize_name("www.example.com"), "www.example.com");
  EXPECT_EQ(normalize_name("a.."), "a");
  EXPECT_EQ(normalize_name("."), "");
  EXPECT_EQ(normalize_name(""), "");
  EXPECT_EQ(normalize_name("Mixed-Case_1.Z"), "mixed-case_1.z");
  EXPECT_EQ(normalize_name(".leading"), ".leading");
  EXPECT_EQ(normalize_name("caf\xC3\x89"), "caf\xC3\x89");  // only ASCII is folded
}

TEST(DnsNormalizeName, MatchesParsedNames) {
  Builder b;
  b.header(kFlagsResponse, 1, 1, 0).question("Foo.Example.Org");
  b.pointer(kQuestionName).a(1, {1, 2, 3, 4});
  auto m = parse(b);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->answers[0].name, normalize_name("FOO.example.ORG."));
}

}  // namespace
}  // namespace sluice::dns
