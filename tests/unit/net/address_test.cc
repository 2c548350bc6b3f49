#include "net/address.h"

#include <gtest/gtest.h>

namespace sluice::net {
namespace {

TEST(Address, ParsesIpv4AndIpv6) {
  auto v4 = Address::parse("127.0.0.1:8080");
  ASSERT_TRUE(v4.is_ok());
  EXPECT_EQ(v4->family(), AF_INET);
  EXPECT_EQ(v4->port(), 8080);
  EXPECT_EQ(v4->to_string(), "127.0.0.1:8080");

  auto v6 = Address::parse("[::1]:443");
  ASSERT_TRUE(v6.is_ok());
  EXPECT_EQ(v6->family(), AF_INET6);
  EXPECT_EQ(v6->port(), 443);
  EXPECT_EQ(v6->to_string(), "[::1]:443");
}

TEST(Address, RejectsWhatIsNotAnAddress) {
  for (const char* bad : {"127.0.0.1", "::1:80", "[::1]80", "[::1]:", "1.2.3.4:-1", "1.2.3.4:65536",
                          "1.2.3.4:80x", "localhost:80", ":80", ""}) {
    EXPECT_FALSE(Address::parse(bad).is_ok()) << bad;
  }
}

TEST(Address, SetPortAndCompare) {
  auto a = Address::parse("10.0.0.1:1");
  auto b = Address::parse("10.0.0.1:2");
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_FALSE(*a == *b);
  a->set_port(2);
  EXPECT_TRUE(*a == *b);
}

TEST(Address, IpStringOfEveryOctetWidth) {
  for (const char* ip : {"0.0.0.0", "1.2.3.4", "10.0.0.1", "127.0.0.1", "99.100.101.255",
                         "255.255.255.255", "192.168.10.9"}) {
    auto a = Address::parse_ip(ip, 80);
    ASSERT_TRUE(static_cast<bool>(a)) << ip;
    EXPECT_EQ(a->ip_string(), ip);
    EXPECT_EQ(a->to_string(), std::string(ip) + ":80");
  }
  EXPECT_EQ(Address::parse_ip("::1", 80)->ip_string(), "::1");
}

}  // namespace
}  // namespace sluice::net
