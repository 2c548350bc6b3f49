// The STUN server's answers (stun/binding.h): what is answered, with what, and how large,
// for requests built here byte by byte.
#include "stun/binding.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::stun {
namespace {

const TransactionId kId = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

// A Binding request (or `type`) with `attributes` (type, value) and FINGERPRINT if asked.
std::vector<uint8_t> request(std::vector<std::pair<uint16_t, std::vector<uint8_t>>> attributes = {},
                             bool fingerprint = false, uint16_t method = kBinding,
                             MessageClass cls = MessageClass::kRequest) {
  MessageWriter w(method, cls, kId);
  for (const auto& [type, value] : attributes) w.add(type, value);
  auto bytes = w.finish(fingerprint);
  return {bytes.begin(), bytes.end()};
}

net::Address v4() {
  return *net::Address::parse("198.51.100.7:40000");
}

Message parsed(const Answer& a) {
  ParseResult r = parse(a.response);
  EXPECT_TRUE(r.message) << to_string(r.error);
  return r.message ? *r.message : Message{};
}

TEST(StunBinding, AMinimalRequestGetsTheMinimalAnswer) {
  ServerOptions o;
  o.software = "sluice";
  Answer a = answer_binding(request(), v4(), o);
  ASSERT_EQ(a.outcome, Outcome::kSuccess);
  // Header, XOR-MAPPED-ADDRESS (12) and FINGERPRINT (8): no SOFTWARE for a 20-byte request.
  EXPECT_EQ(a.response.size(), 40u);
  Message m = parsed(a);
  EXPECT_EQ(m.message_class, MessageClass::kSuccess);
  EXPECT_EQ(m.transaction_id, kId);
  EXPECT_TRUE(m.has_fingerprint);
  EXPECT_EQ(m.find(attr::kSoftware), nullptr);
  auto mapped = read_address(m.find(attr::kXorMappedAddress)->value, &m.transaction_id);
  ASSERT_TRUE(mapped);
  EXPECT_EQ(mapped->to_string(), "198.51.100.7:40000");

  Answer a6 = answer_binding(request(), *net::Address::parse("[2001:db8::5]:3478"), o);
  ASSERT_EQ(a6.outcome, Outcome::kSuccess);
  EXPECT_EQ(a6.response.size(), 52u);
  Message m6 = parsed(a6);
  EXPECT_EQ(read_address(m6.find(attr::kXorMappedAddress)->value, &m6.transaction_id)->to_string(),
            "[2001:db8::5]:3478");
}

TEST(StunBinding, SoftwareOnlyWhenTheRequestPaysForItPaddingIncluded) {
  ServerOptions o;
  o.software = "sluice";  // 4 + 8 bytes
  // 52 bytes with SOFTWARE: a 52-byte request gets it, a 48-byte one not.
  std::vector<uint8_t> filler28(28, 0);
  Answer big = answer_binding(request({{0x8050, filler28}}), v4(), o);
  ASSERT_EQ(big.outcome, Outcome::kSuccess);
  EXPECT_EQ(big.response.size(), 52u);
  ASSERT_NE(parsed(big).find(attr::kSoftware), nullptr);
  Answer smaller = answer_binding(request({{0x8050, std::vector<uint8_t>(20, 0)}}), v4(), o);
  EXPECT_EQ(smaller.response.size(), 40u);
  // PADDING pays by its size, like any attribute: an empty one unlocks nothing.
  Answer empty = answer_binding(request({{attr::kPadding, {}}}), v4(), o);
  ASSERT_EQ(empty.outcome, Outcome::kSuccess);
  EXPECT_EQ(empty.response.size(), 40u);
  Answer padded = answer_binding(request({{attr::kPadding, filler28}}), v4(), o);
  ASSERT_EQ(padded.outcome, Outcome::kSuccess);
  EXPECT_EQ(padded.response.size(), 52u);
}

TEST(StunBinding, UnknownComprehensionRequiredAttributesGet420ListingEachOnce) {
  ServerOptions o;
  Answer a = answer_binding(request({{0x0031, {1, 2, 3, 4}},
                                     {0x8031, {}},
                                     {0x0031, {}},
                                     {attr::kChangeRequest, {0, 0, 0, 6}}}),
                            v4(), o);
  ASSERT_EQ(a.outcome, Outcome::kUnknownAttribute);
  Message m = parsed(a);
  EXPECT_EQ(m.message_class, MessageClass::kError);
  EXPECT_EQ(m.transaction_id, kId);
  const Attribute* code = m.find(attr::kErrorCode);
  ASSERT_NE(code, nullptr);
  ASSERT_GE(code->value.size(), 4u);
  EXPECT_EQ(code->value[2] * 100 + code->value[3], 420);
  const Attribute* unknown = m.find(attr::kUnknownAttributes);
  ASSERT_NE(unknown, nullptr);
  // 0x0031 once, then CHANGE-REQUEST (no second address: not honoured); 0x8031 is optional.
  EXPECT_EQ(std::vector<uint8_t>(unknown->value.begin(), unknown->value.end()),
            (std::vector<uint8_t>{0x00, 0x31, 0x00, 0x03}));
  // The 48-byte request: the reason phrase fits only when the answer stays within it.
  EXPECT_LE(a.response.size(), request({{0x0031, {1, 2, 3, 4}},
                                        {0x8031, {}},
                                        {0x0031, {}},
                                        {attr::kChangeRequest, {0, 0, 0, 6}}})
                                   .size());
}

TEST(StunBinding, WellFormedButInvalidRequestsGet400) {
  ServerOptions o;
  Answer bad_priority = answer_binding(request({{attr::kPriority, {1, 2}}}), v4(), o);
  EXPECT_EQ(bad_priority.outcome, Outcome::kBadRequest);
  Message m = parsed(bad_priority);
  EXPECT_EQ(m.find(attr::kErrorCode)->value[2] * 100 + m.find(attr::kErrorCode)->value[3], 400);
  EXPECT_EQ(
      answer_binding(request({{attr::kXorMappedAddress, std::vector<uint8_t>(8, 0)}}), v4(), o)
          .outcome,
      Outcome::kBadRequest);
  EXPECT_EQ(answer_binding(request({}, false, 0x003), v4(), o).outcome, Outcome::kBadRequest);
}

TEST(StunBinding, WhatFailsTheHeaderChecksOrIsNoRequestIsDropped) {
  ServerOptions o;
  std::vector<uint8_t> ok = request({}, true);
  EXPECT_EQ(answer_binding(ok, v4(), o).outcome, Outcome::kSuccess);
  std::vector<uint8_t> bad_fp = ok;
  bad_fp.back() ^= 1;
  EXPECT_EQ(answer_binding(bad_fp, v4(), o).outcome, Outcome::kDropBadFingerprint);
  std::vector<uint8_t> cookie = ok;
  cookie[5] = 0;
  EXPECT_EQ(answer_binding(cookie, v4(), o).outcome, Outcome::kDropNotStun);
  std::vector<uint8_t> odd = ok;
  odd.push_back(0);
  EXPECT_EQ(answer_binding(odd, v4(), o).outcome, Outcome::kDropMalformed);
  EXPECT_EQ(
      answer_binding(request({}, false, kBinding, MessageClass::kIndication), v4(), o).outcome,
      Outcome::kDropNotRequest);
  EXPECT_EQ(answer_binding(request({}, false, kBinding, MessageClass::kSuccess), v4(), o).outcome,
            Outcome::kDropNotRequest);
  for (Outcome out : {Outcome::kDropBadFingerprint, Outcome::kDropNotStun}) {
    EXPECT_FALSE(answered(out));
  }
  EXPECT_TRUE(answer_binding(bad_fp, v4(), o).response.empty());
}

// RFC 5780 with an alternate address: the request came in on 192.0.2.1:3478; the listener's
// other IP and port is 192.0.2.2:3479.
NatDiscovery nat() {
  return {*net::Address::parse("192.0.2.1:3478"), *net::Address::parse("192.0.2.2:3479")};
}

std::string address_of(const Message& m, uint16_t type) {
  const Attribute* a = m.find(type);
  if (!a) return "none";
  auto addr = read_address(a->value, type == attr::kXorMappedAddress ? &m.transaction_id : nullptr);
  return addr ? addr->to_string() : "malformed";
}

TEST(StunBinding, ChangeRequestPicksTheOriginAndBothAddressesAreAdvertised) {
  ServerOptions o;
  NatDiscovery n = nat();
  std::vector<uint8_t> padding(48, 0);
  struct Case {
    uint8_t flags;
    const char* origin;
  } cases[] = {{0, "192.0.2.1:3478"},
               {kChangeIp, "192.0.2.2:3478"},
               {kChangePort, "192.0.2.1:3479"},
               {kChangeIp | kChangePort, "192.0.2.2:3479"}};
  for (const Case& c : cases) {
    Answer a = answer_binding(
        request({{attr::kChangeRequest, {0, 0, 0, c.flags}}, {attr::kPadding, padding}}), v4(), o,
        &n);
    ASSERT_EQ(a.outcome, Outcome::kSuccess);
    EXPECT_EQ(a.change, c.flags);
    EXPECT_EQ(a.response_port, 0);
    Message m = parsed(a);
    EXPECT_EQ(address_of(m, attr::kXorMappedAddress), "198.51.100.7:40000");
    EXPECT_EQ(address_of(m, attr::kOtherAddress), "192.0.2.2:3479");
    EXPECT_EQ(address_of(m, attr::kResponseOrigin), c.origin);
  }
  // Flags beyond the two are ignored.
  EXPECT_EQ(answer_binding(request({{attr::kChangeRequest, {0xff, 0xff, 0xff, 0xff}}}), v4(), o, &n)
                .change,
            kChangeIp | kChangePort);
}

TEST(StunBinding, NatAttributesOnlyWhenTheRequestPaysForThem) {
  ServerOptions o;
  o.software = "sluice";
  NatDiscovery n = nat();
  // 20 bytes: the minimal answer, CHANGE-REQUEST still honoured.
  Answer small = answer_binding(request({{attr::kChangeRequest, {0, 0, 0, 6}}}), v4(), o, &n);
  EXPECT_EQ(small.response.size(), 40u);
  EXPECT_EQ(small.change, 6);
  EXPECT_EQ(address_of(parsed(small), attr::kOtherAddress), "none");
  // 64 bytes: room for OTHER-ADDRESS and RESPONSE-ORIGIN (20 + 12 + 12 + 12 + 8) but not
  // SOFTWARE as well.
  Answer fits = answer_binding(request({{0x8031, std::vector<uint8_t>(36, 0)}}, true), v4(), o, &n);
  ASSERT_EQ(fits.outcome, Outcome::kSuccess);
  EXPECT_EQ(fits.response.size(), 64u);
  EXPECT_EQ(address_of(parsed(fits), attr::kOtherAddress), "192.0.2.2:3479");
  EXPECT_EQ(parsed(fits).find(attr::kSoftware), nullptr);
}

TEST(StunBinding, ResponsePortAndMalformedNatAttributes) {
  ServerOptions o;
  NatDiscovery n = nat();
  Answer a = answer_binding(request({{attr::kResponsePort, {0x9c, 0x40, 0, 0}}}), v4(), o, &n);
  EXPECT_EQ(a.outcome, Outcome::kSuccess);
  EXPECT_EQ(a.response_port, 40000);
  EXPECT_EQ(answer_binding(request({{attr::kChangeRequest, {0, 6}}}), v4(), o, &n).outcome,
            Outcome::kBadRequest);
  EXPECT_EQ(answer_binding(request({{attr::kResponsePort, {1, 2, 3}}}), v4(), o, &n).outcome,
            Outcome::kBadRequest);
  // Without an alternate address both are unknown: 420.
  EXPECT_EQ(answer_binding(request({{attr::kResponsePort, {0x9c, 0x40, 0, 0}}}), v4(), o).outcome,
            Outcome::kUnknownAttribute);
}

TEST(StunBinding, NatAttributesAfterMessageIntegrityAreNotHonoured) {
  ServerOptions o;
  o.credentials = {{"user", "secret-password"}};
  const std::string password = "secret-password";
  auto key = std::span(reinterpret_cast<const uint8_t*>(password.data()), password.size());
  NatDiscovery n = nat();
  // A signed request, then RESPONSE-PORT and CHANGE-REQUEST appended after its integrity.
  MessageWriter w(kBinding, MessageClass::kRequest, kId);
  w.add(attr::kUsername, std::vector<uint8_t>{'u', 's', 'e', 'r'});
  w.add_message_integrity(key);
  w.add(attr::kResponsePort, std::vector<uint8_t>{0x9c, 0x40, 0, 0});
  w.add(attr::kChangeRequest, std::vector<uint8_t>{0, 0, 0, 6});
  auto bytes = w.finish(false);
  Answer a = answer_binding(std::vector<uint8_t>(bytes.begin(), bytes.end()), v4(), o, &n);
  ASSERT_EQ(a.outcome, Outcome::kSuccess);
  EXPECT_EQ(a.response_port, 0);
  EXPECT_EQ(a.change, 0);
}

}  // namespace
}  // namespace sluice::stun
