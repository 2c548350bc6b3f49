#include "probe/url.h"

#include <gtest/gtest.h>

namespace sluice::probe {
namespace {

TEST(ProbeUrl, HttpsDefaultsToPort443) {
  auto u = parse_url("https://api.example/v1?x=1");
  ASSERT_TRUE(u.is_ok()) << u.status().message();
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->host, "api.example");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/v1?x=1");
  EXPECT_EQ(u->authority(), "api.example");
}

TEST(ProbeUrl, HostFieldNamesThePortOnlyWhenNotTheSchemesDefault) {
  EXPECT_EQ(parse_url("https://h:8443/")->authority(), "h:8443");
  EXPECT_EQ(parse_url("https://h:80/")->authority(), "h:80");
  EXPECT_EQ(parse_url("http://h:443/")->authority(), "h:443");
  EXPECT_EQ(parse_url("http://h/")->authority(), "h");
  EXPECT_EQ(parse_url("HTTPS://[::1]/")->authority(), "[::1]");
  EXPECT_FALSE(parse_url("http://h/")->https);
}

TEST(ProbeUrl, OtherSchemesAreRefusedNamingBoth) {
  auto u = parse_url("ftp://h/");
  ASSERT_FALSE(u.is_ok());
  EXPECT_EQ(u.status().message(),
            "bad URL: scheme 'ftp' is not supported (only http:// and https://)");
  auto bare = parse_url("h/");
  ASSERT_FALSE(bare.is_ok());
  EXPECT_EQ(bare.status().message(), "bad URL 'h/': it must start with http:// or https://");
}

}  // namespace
}  // namespace sluice::probe
