// BGP message codec: the exact bytes of what sluice sends, and the NOTIFICATION each
// malformed input earns (RFC 4271 §6).
#include "bgp/message.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::bgp {
namespace {

// "ff ff 00 13 04" → bytes.
std::string hex(std::string_view text) {
  std::string out;
  int hi = -1;
  for (char ch : text) {
    int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi << 4 | v));
      hi = -1;
    }
  }
  return out;
}

const std::string kMarker(16, '\xff');

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Prefix prefix(std::string_view text) {
  auto p = Prefix::parse(text);
  EXPECT_TRUE(p.is_ok()) << p.status().message();
  return p.value();
}

TEST(BgpMessage, KeepaliveIsAHeaderAlone) {
  std::string out;
  write_keepalive(out);
  EXPECT_EQ(out, kMarker + hex("00 13 04"));
}

TEST(BgpMessage, OpenCarriesFourOctetAsMultiprotocolAndRouteRefresh) {
  std::string out;
  write_open(OpenParams{.as = 65001, .hold_time = 90, .router_id = 0xC000020A}, out);
  EXPECT_EQ(out, kMarker + hex("00 2d 01"              // length 45, OPEN
                               "04 fd e9 00 5a"        // version 4, AS 65001, hold 90
                               "c0 00 02 0a 10"        // 192.0.2.10, 16 octets of parameters
                               "02 0e"                 // capabilities, 14 octets
                               "01 04 00 01 00 01"     // multiprotocol IPv4 unicast
                               "02 00"                 // route refresh
                               "41 04 00 00 fd e9"));  // 4-octet AS 65001
}

TEST(BgpMessage, OpenWithAFourOctetAsPutsAsTransInTheTwoOctetField) {
  std::string out;
  write_open(OpenParams{.as = 4200000000u,
                        .hold_time = 30,
                        .router_id = 1,
                        .ipv4_unicast = true,
                        .ipv6_unicast = true},
             out);
  EXPECT_EQ(out, kMarker + hex("00 33 01 04 5b a0 00 1e 00 00 00 01 16 02 14"
                               "01 04 00 01 00 01 01 04 00 02 00 01 02 00"
                               "41 04 fa 56 ea 00"));
  Message m;
  ParseError e;
  ASSERT_EQ(read_message(bytes(out), m, e), out.size());
  EXPECT_EQ(m.open.as, 4200000000u);
  EXPECT_TRUE(m.open.four_octet_as);
  EXPECT_TRUE(m.open.ipv6_unicast);
  EXPECT_TRUE(m.open.route_refresh);
  EXPECT_EQ(m.open.hold_time, 30);
}

TEST(BgpMessage, AnnounceToAnEbgpPeer) {
  Route r;
  r.prefix = prefix("192.0.2.1/32");
  r.next_hop = {192, 0, 2, 5};
  r.communities = {65001u << 16 | 100};
  r.med = 10;
  std::string out;
  write_announce(UpdateParams{.local_as = 65001, .ebgp = true, .four_octet_as = true}, r, out);
  EXPECT_EQ(out, kMarker + hex("00 3e 02 00 00 00 22"
                               "40 01 01 00"                 // ORIGIN IGP
                               "40 02 06 02 01 00 00 fd e9"  // AS_PATH 65001
                               "40 03 04 c0 00 02 05"        // NEXT_HOP 192.0.2.5
                               "80 04 04 00 00 00 0a"        // MED 10
                               "c0 08 04 fd e9 00 64"        // COMMUNITIES 65001:100
                               "20 c0 00 02 01"));           // 192.0.2.1/32
}

TEST(BgpMessage, AnnounceToAnIbgpPeerHasAnEmptyPathAndLocalPref) {
  Route r;
  r.prefix = prefix("198.51.100.0/24");
  r.next_hop = {192, 0, 2, 5};
  r.communities = {kGracefulShutdown};
  std::string out;
  write_announce(UpdateParams{.local_as = 65001, .ebgp = false}, r, out);
  EXPECT_EQ(out, kMarker + hex("00 37 02 00 00 00 1c"
                               "40 01 01 00 40 02 00 40 03 04 c0 00 02 05"
                               "40 05 04 00 00 00 64"  // LOCAL_PREF 100
                               "c0 08 04 ff ff 00 00"  // GRACEFUL_SHUTDOWN
                               "18 c6 33 64"));
}

TEST(BgpMessage, TwoOctetPeerGetsAsTransAndAs4Path) {
  Route r;
  r.prefix = prefix("192.0.2.0/24");
  r.next_hop = {192, 0, 2, 5};
  std::string out;
  write_announce(UpdateParams{.local_as = 4200000000u, .ebgp = true, .four_octet_as = false}, r,
                 out);
  EXPECT_EQ(out, kMarker + hex("00 36 02 00 00 00 1b"
                               "40 01 01 00 40 02 04 02 01 5b a0 40 03 04 c0 00 02 05"
                               "c0 11 06 02 01 fa 56 ea 00"  // AS4_PATH 4200000000
                               "18 c0 00 02"));
}

TEST(BgpMessage, Ipv6GoesInMpReachAndMpUnreach) {
  Route r;
  r.prefix = prefix("2001:db8::/32");
  r.next_hop = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::string out;
  write_announce(UpdateParams{.local_as = 65001}, r, out);
  EXPECT_EQ(out, kMarker + hex("00 41 02 00 00 00 2a"
                               "40 01 01 00 40 02 06 02 01 00 00 fd e9"
                               "80 0e 1a 00 02 01 10 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 "
                               "00 01 00 20 20 01 0d b8"));
  Message m;
  ParseError e;
  ASSERT_EQ(read_message(bytes(out), m, e), out.size()) << e.detail;
  ASSERT_EQ(m.update.announced.size(), 1u);
  EXPECT_EQ(m.update.announced[0].to_string(), "2001:db8::/32");

  out.clear();
  write_withdraw(r.prefix, out);
  EXPECT_EQ(out, kMarker + hex("00 22 02 00 00 00 0b 80 0f 08 00 02 01 20 20 01 0d b8"));
  ASSERT_EQ(read_message(bytes(out), m, e), out.size()) << e.detail;
  ASSERT_EQ(m.update.withdrawn.size(), 1u);
  EXPECT_EQ(m.update.withdrawn[0].to_string(), "2001:db8::/32");
}

TEST(BgpMessage, WithdrawIpv4) {
  std::string out;
  write_withdraw(prefix("192.0.2.1/32"), out);
  EXPECT_EQ(out, kMarker + hex("00 1c 02 00 05 20 c0 00 02 01 00 00"));
  Message m;
  ParseError e;
  ASSERT_EQ(read_message(bytes(out), m, e), out.size());
  ASSERT_EQ(m.update.withdrawn.size(), 1u);
  EXPECT_EQ(m.update.withdrawn[0].to_string(), "192.0.2.1/32");
}

TEST(BgpMessage, Notification) {
  std::string out;
  write_notification(err::kCease, err::kAdministrativeShutdown, {}, out);
  EXPECT_EQ(out, kMarker + hex("00 15 03 06 02"));
  Message m;
  ParseError e;
  ASSERT_EQ(read_message(bytes(out), m, e), out.size());
  EXPECT_EQ(m.type, MessageType::kNotification);
  EXPECT_EQ(m.notification.code, 6);
  EXPECT_EQ(m.notification.subcode, 2);
  EXPECT_EQ(describe_error(6, 2), "cease / administrative shutdown");
  EXPECT_EQ(describe_error(2, 2), "OPEN message error / bad peer AS");
  EXPECT_EQ(describe_error(4, 0), "hold timer expired");
}

TEST(BgpMessage, AnIncompleteMessageWaitsForMore) {
  std::string out;
  write_keepalive(out);
  Message m;
  ParseError e;
  EXPECT_EQ(read_message(bytes(out.substr(0, 18)), m, e), 0u);
  EXPECT_EQ(read_message(bytes(kMarker + hex("00 2d 01 04")), m, e), 0u);
}

struct BadInput {
  std::string name;
  std::string bytes;
  uint8_t code;
  uint8_t subcode;
  std::string data;
};

TEST(BgpMessage, MalformedInputEarnsTheRightNotification) {
  std::vector<BadInput> cases = {
      {"marker", std::string(15, '\xff') + hex("fe 00 13 04"), 1, 1, ""},
      {"short length", kMarker + hex("00 12 04"), 1, 2, hex("00 12")},
      {"long length", kMarker + hex("10 01 02"), 1, 2, hex("10 01")},
      {"unknown type", kMarker + hex("00 13 07"), 1, 3, hex("07")},
      {"long keepalive", kMarker + hex("00 14 04 00"), 1, 2, hex("00 14")},
      {"short open", kMarker + hex("00 1c 01 04 fd e9 00 5a c0 00 02 0a 00"), 1, 2, hex("00 1c")},
      {"open parameter length", kMarker + hex("00 1e 01 04 fd e9 00 5a c0 00 02 0a 02 02"), 2, 0,
       ""},
      {"open parameter type", kMarker + hex("00 1f 01 04 fd e9 00 5a c0 00 02 0a 02 01 00"), 2, 4,
       ""},
      {"withdrawn length", kMarker + hex("00 17 02 00 05 00 00"), 3, 1, ""},
      {"attributes length", kMarker + hex("00 17 02 00 00 00 04"), 3, 1, ""},
      {"attribute length", kMarker + hex("00 1a 02 00 00 00 03 40 01 05"), 3, 5, ""},
      {"nlri prefix length", kMarker + hex("00 18 02 00 00 00 00 21"), 3, 10, ""},
      {"nlri truncated", kMarker + hex("00 19 02 00 00 00 00 20 c0"), 3, 10, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Message m;
    ParseError e;
    EXPECT_EQ(read_message(bytes(c.bytes), m, e), SIZE_MAX);
    EXPECT_EQ(e.code, c.code);
    EXPECT_EQ(e.subcode, c.subcode);
    EXPECT_EQ(e.data, c.data);
    EXPECT_FALSE(e.detail.empty());
  }
}

TEST(BgpMessage, UnknownCapabilitiesAreIgnored) {
  // RFC 5492 §5: capability 0x80 (unknown here) between two known ones.
  std::string open = kMarker + hex("00 2b 01 04 fd e8 00 09 0a 00 00 01 0e 02 0c"
                                   "80 02 ab cd 02 00 41 04 00 00 fd e8");
  Message m;
  ParseError e;
  ASSERT_EQ(read_message(bytes(open), m, e), open.size()) << e.detail;
  EXPECT_EQ(m.open.unknown_capabilities, std::vector<uint8_t>{0x80});
  EXPECT_TRUE(m.open.route_refresh);
  EXPECT_EQ(m.open.as, 65000u);
  EXPECT_EQ(m.open.hold_time, 9);
}

TEST(BgpPrefix, ParsesAndRefusesHostBits) {
  EXPECT_EQ(prefix("192.0.2.1/32").to_string(), "192.0.2.1/32");
  EXPECT_EQ(prefix("2001:db8::/48").to_string(), "2001:db8::/48");
  EXPECT_EQ(Prefix::parse("192.0.2.1/24").status().message(),
            "'192.0.2.1/24' has host bits set past /24");
  EXPECT_EQ(Prefix::parse("192.0.2.1/33").status().message(), "prefix length '33' is not 0 to 32");
  EXPECT_EQ(Prefix::parse("192.0.2.1").status().message(),
            "expected ADDRESS/LENGTH, got '192.0.2.1'");
  EXPECT_EQ(Prefix::parse("web/1").status().message(), "'web' is not an IPv4 or IPv6 address");
}

TEST(BgpCommunity, ParsesNumbersAndNames) {
  EXPECT_EQ(parse_community("65535:0"), kGracefulShutdown);
  EXPECT_EQ(parse_community("graceful_shutdown"), kGracefulShutdown);
  EXPECT_EQ(parse_community("65001:100"), 65001u << 16 | 100);
  EXPECT_EQ(parse_community("65536:1"), std::nullopt);
  EXPECT_EQ(parse_community("1"), std::nullopt);
  EXPECT_EQ(community_to_string(65001u << 16 | 100), "65001:100");
}

}  // namespace
}  // namespace sluice::bgp
