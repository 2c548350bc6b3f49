// STUN messages: RFC 5769's sample messages (FINGERPRINT, MESSAGE-INTEGRITY, the IPv4 and
// IPv6 XOR-MAPPED-ADDRESS) read and rebuilt byte for byte, and the reader's header checks.
#include "stun/message.h"

#include <gtest/gtest.h>

#include "stun/binding.h"

#include <string>
#include <vector>

namespace sluice::stun {
namespace {

std::span<const uint8_t> key(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// RFC 5769 §2.1: a request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
// MESSAGE-INTEGRITY and FINGERPRINT (the SOFTWARE value is padded with spaces).
const std::vector<uint8_t> kSampleRequest = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

// RFC 5769 §2.2: the IPv4 response (192.0.2.1:32853).
const std::vector<uint8_t> kSampleResponseV4 = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

// RFC 5769 §2.3: the IPv6 response ([2001:db8:1234:5678:11:2233:4455:6677]:32853).
const std::vector<uint8_t> kSampleResponseV6 = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c};

const std::string kPassword = "VOkJxbRl1RmTxUk/WvJxBt";

TEST(StunMessage, ReadsTheSampleRequest) {
  ParseResult r = parse(kSampleRequest);
  ASSERT_TRUE(r.message) << to_string(r.error);
  const Message& m = *r.message;
  EXPECT_EQ(m.method, kBinding);
  EXPECT_EQ(m.message_class, MessageClass::kRequest);
  EXPECT_TRUE(m.has_fingerprint);
  std::vector<uint16_t> types;
  for (const auto& a : m.attributes) types.push_back(a.type);
  EXPECT_EQ(types,
            (std::vector<uint16_t>{attr::kSoftware, attr::kPriority, attr::kIceControlled,
                                   attr::kUsername, attr::kMessageIntegrity, attr::kFingerprint}));
  const Attribute* user = m.find(attr::kUsername);
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(std::string(user->value.begin(), user->value.end()), "evtj:h6vY");
  EXPECT_TRUE(check_message_integrity(kSampleRequest, m, key(kPassword)));
  EXPECT_FALSE(check_message_integrity(kSampleRequest, m, key("wrong password")));
}

TEST(StunMessage, ReadsTheSampleResponses) {
  for (const auto* sample : {&kSampleResponseV4, &kSampleResponseV6}) {
    ParseResult r = parse(*sample);
    ASSERT_TRUE(r.message) << to_string(r.error);
    const Message& m = *r.message;
    EXPECT_EQ(m.message_class, MessageClass::kSuccess);
    EXPECT_TRUE(check_message_integrity(*sample, m, key(kPassword)));
    const Attribute* x = m.find(attr::kXorMappedAddress);
    ASSERT_NE(x, nullptr);
    auto address = read_address(x->value, &m.transaction_id);
    ASSERT_TRUE(address);
    EXPECT_EQ(address->to_string(), sample == &kSampleResponseV4
                                        ? "192.0.2.1:32853"
                                        : "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
  }
}

TEST(StunMessage, WritesTheSampleResponsesByteForByte) {
  ParseResult request = parse(kSampleRequest);
  ASSERT_TRUE(request.message);
  struct Case {
    const std::vector<uint8_t>* want;
    const char* mapped;
  } cases[] = {{&kSampleResponseV4, "192.0.2.1:32853"},
               {&kSampleResponseV6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.mapped);
    MessageWriter w(kBinding, MessageClass::kSuccess, request.message->transaction_id);
    w.set_padding(' ');
    w.add_string(attr::kSoftware, "test vector");
    w.add_address(attr::kXorMappedAddress, *net::Address::parse(c.mapped), true);
    w.add_message_integrity(key(kPassword));
    auto bytes = w.finish(true);
    EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()), *c.want);
  }
}

TEST(StunMessage, HeaderChecksRefuseWhatIsNotAWellFormedMessage) {
  auto with = [](std::vector<uint8_t> bytes, size_t at, uint8_t value) {
    bytes[at] = value;
    return bytes;
  };
  std::vector<uint8_t> minimal = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                                  3,    4,    5,    6,    7,    8,    9,    10,   11, 12};
  EXPECT_TRUE(parse(minimal).message);
  EXPECT_EQ(parse(std::span(minimal).first(19)).error, ParseError::kTooShort);
  EXPECT_EQ(parse(with(minimal, 0, 0x80)).error, ParseError::kNotStun);
  EXPECT_EQ(parse(with(minimal, 4, 0x22)).error, ParseError::kBadCookie);
  EXPECT_EQ(parse(with(minimal, 3, 0x02)).error, ParseError::kBadLength);
  std::vector<uint8_t> longer = minimal;
  longer.insert(longer.end(), {0x80, 0x22, 0x00, 0x08, 'a', 'b', 'c', 'd'});
  longer[3] = 8;
  EXPECT_EQ(parse(longer).error, ParseError::kAttributeOverrun);
  EXPECT_EQ(parse(kSampleRequest).message.has_value(), true);
  std::vector<uint8_t> bad_crc = with(kSampleRequest, kSampleRequest.size() - 1, 0xce);
  EXPECT_EQ(parse(bad_crc).error, ParseError::kBadFingerprint);
  std::vector<uint8_t> flipped = with(kSampleRequest, 30, 0x00);  // a SOFTWARE byte
  EXPECT_EQ(parse(flipped).error, ParseError::kBadFingerprint);
}

TEST(StunMessage, MessageTypeEncodesMethodAndClass) {
  EXPECT_EQ(message_type(kBinding, MessageClass::kRequest), 0x0001);
  EXPECT_EQ(message_type(kBinding, MessageClass::kIndication), 0x0011);
  EXPECT_EQ(message_type(kBinding, MessageClass::kSuccess), 0x0101);
  EXPECT_EQ(message_type(kBinding, MessageClass::kError), 0x0111);
  EXPECT_EQ(crc32(std::span<const uint8_t>()), 0u);
  const std::string check = "123456789";
  EXPECT_EQ(crc32(key(check)), 0xCBF43926u);  // the CRC-32 check value
}

// Short-term credentials (RFC 8489 §9.1) in the Binding answer, starting from RFC 5769's
// sample request (user "evtj:h6vY").
ServerOptions with_credentials(const std::string& password = kPassword) {
  ServerOptions o;
  o.credentials = {{"someone", "else"}, {"evtj:h6vY", password}};
  return o;
}

net::Address source() {
  return *net::Address::parse("192.0.2.1:32853");
}

TEST(StunCredentials, TheSampleRequestIsAnsweredWithMessageIntegrity) {
  Answer a = answer_binding(kSampleRequest, source(), with_credentials());
  ASSERT_EQ(a.outcome, Outcome::kSuccess);
  ParseResult r = parse(a.response);
  ASSERT_TRUE(r.message);
  std::vector<uint16_t> types;
  for (const auto& at : r.message->attributes) types.push_back(at.type);
  EXPECT_EQ(types, (std::vector<uint16_t>{attr::kXorMappedAddress, attr::kMessageIntegrity,
                                          attr::kFingerprint}));
  EXPECT_TRUE(check_message_integrity(a.response, *r.message, key(kPassword)));
  EXPECT_FALSE(check_message_integrity(a.response, *r.message, key("wrong password")));
}

TEST(StunCredentials, WrongPasswordUnknownUserAndMissingIntegrity) {
  auto code_of = [](const Answer& a) {
    ParseResult r = parse(a.response);
    const Attribute* e = r.message ? r.message->find(attr::kErrorCode) : nullptr;
    return e ? e->value[2] * 100 + e->value[3] : 0;
  };
  Answer wrong = answer_binding(kSampleRequest, source(), with_credentials("not it"));
  EXPECT_EQ(wrong.outcome, Outcome::kUnauthenticated);
  EXPECT_EQ(code_of(wrong), 401);
  EXPECT_EQ(parse(wrong.response).message->find(attr::kMessageIntegrity), nullptr);
  ServerOptions other;
  other.credentials = {{"someone", kPassword}};
  EXPECT_EQ(answer_binding(kSampleRequest, source(), other).outcome, Outcome::kUnauthenticated);
  // No USERNAME nor MESSAGE-INTEGRITY: 400 (§9.1.3).
  std::vector<uint8_t> bare = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                               3,    4,    5,    6,    7,    8,    9,    10,   11, 12};
  Answer a = answer_binding(bare, source(), with_credentials());
  EXPECT_EQ(a.outcome, Outcome::kBadRequest);
  EXPECT_EQ(code_of(a), 400);
  // Without credentials configured the sample is answered without checking, and without
  // MESSAGE-INTEGRITY.
  Answer open = answer_binding(kSampleRequest, source(), ServerOptions{});
  EXPECT_EQ(open.outcome, Outcome::kSuccess);
  EXPECT_EQ(parse(open.response).message->find(attr::kMessageIntegrity), nullptr);
}

TEST(StunCredentials, MessageIntegritySha256CutToTheRequestsLength) {
  const TransactionId id = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2};
  auto request = [&](const std::string& password, size_t size, bool also_sha1) {
    MessageWriter w(kBinding, MessageClass::kRequest, id);
    w.add_string(attr::kUsername, "evtj:h6vY");
    if (also_sha1) w.add_message_integrity(key("a wrong password"));
    w.add_message_integrity_sha256(key(password), size);
    auto b = w.finish(true);
    return std::vector<uint8_t>(b.begin(), b.end());
  };
  for (size_t size : {16u, 32u}) {
    std::vector<uint8_t> req = request(kPassword, size, false);
    ParseResult rr = parse(req);
    ASSERT_TRUE(rr.message);
    EXPECT_TRUE(check_message_integrity_sha256(req, *rr.message, key(kPassword)));
    EXPECT_FALSE(check_message_integrity_sha256(req, *rr.message, key("x")));
    Answer a = answer_binding(req, source(), with_credentials());
    ASSERT_EQ(a.outcome, Outcome::kSuccess) << size;
    ParseResult r = parse(a.response);
    const Attribute* mi = r.message->find(attr::kMessageIntegritySha256);
    ASSERT_NE(mi, nullptr);
    EXPECT_EQ(mi->value.size(), size);
    EXPECT_EQ(r.message->find(attr::kMessageIntegrity), nullptr);
    EXPECT_TRUE(check_message_integrity_sha256(a.response, *r.message, key(kPassword)));
  }
  // With both, MESSAGE-INTEGRITY-SHA256 is the one checked (§9.1.3).
  EXPECT_EQ(answer_binding(request(kPassword, 32, true), source(), with_credentials()).outcome,
            Outcome::kSuccess);
  EXPECT_EQ(answer_binding(request("wrong", 32, false), source(), with_credentials()).outcome,
            Outcome::kUnauthenticated);
}

}  // namespace
}  // namespace sluice::stun
