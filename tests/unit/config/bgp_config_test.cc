// The `bgp:` block: what it loads to, and a located error for each thing it refuses.
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"

namespace sluice::config {
namespace {

constexpr const char* kBase = R"(listeners:
  - name: tcp_in
    address: 127.0.0.1:7000
    protocol: tcp
    cluster: api
clusters:
  - name: api
    endpoints:
      - address: 127.0.0.1:8081
)";

// Lines 10-23.
constexpr const char* kBgp = R"(bgp:
  local_as: 4200000001
  router_id: 192.0.2.10
  hold_down: 20s
  peers:
    - address: 192.0.2.2
      local_address: 192.0.2.1
      remote_as: 65000
      password: secret
  announce:
    - prefix: 198.51.100.1/32
      when: {cluster: api, min_healthy: 50%}
      communities: ["65001:100", no_export]
      med: 10
)";

std::string error_of(const std::string& bgp) {
  auto r = load_string(std::string(kBase) + bgp, "test.yaml");
  if (r.is_ok()) return "(loaded fine)";
  return r.status().message();
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(BgpConfig, LoadsWithDefaults) {
  auto r = load_string(std::string(kBase) + kBgp, "test.yaml");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const bgp::BgpConfig& b = *(*r)->bgp;
  EXPECT_EQ(b.local_as, 4200000001u);
  EXPECT_EQ(b.router_id, 0xC000020Au);
  EXPECT_EQ(b.hold_down, std::chrono::seconds(20));
  EXPECT_EQ(b.shutdown_delay, std::chrono::seconds(5));
  ASSERT_EQ(b.peers.size(), 1u);
  EXPECT_EQ(b.peers[0].address.to_string(), "192.0.2.2:179");
  EXPECT_EQ(b.peers[0].local_address->ip_string(), "192.0.2.1");
  EXPECT_EQ(b.peers[0].hold_time, std::chrono::seconds(90));
  EXPECT_EQ(b.peers[0].password, "secret");
  ASSERT_EQ(b.announce.size(), 1u);
  const bgp::AnnounceConfig& a = b.announce[0];
  EXPECT_EQ(a.prefix.to_string(), "198.51.100.1/32");
  EXPECT_EQ(a.source_name(), "cluster api");
  EXPECT_EQ(a.min_healthy_text(), "50%");
  EXPECT_EQ(a.communities, (std::vector<uint32_t>{65001u << 16 | 100, 0xFFFFFF01}));
  EXPECT_EQ(a.med, 10u);
  EXPECT_FALSE(load_string(kBase, "test.yaml").value()->bgp);
}

TEST(BgpConfig, LocatedErrors) {
  EXPECT_EQ(error_of(replace(kBgp, "198.51.100.1/32", "198.51.100.1/24")),
            "test.yaml:20:15: bgp.announce[0].prefix: '198.51.100.1/24' has host bits set past "
            "/24");
  EXPECT_EQ(error_of(replace(kBgp, "cluster: api", "cluster: web")),
            "test.yaml:21:23: bgp.announce[0].when.cluster: no cluster named 'web'");
  EXPECT_EQ(error_of(replace(kBgp, "cluster: api", "listener: web")),
            "test.yaml:21:24: bgp.announce[0].when.listener: no listener named 'web'");
  EXPECT_EQ(error_of(replace(kBgp, "min_healthy: 50%", "min_healthy: 150%")),
            "test.yaml:21:41: bgp.announce[0].when.min_healthy: expected a count from 1 to 4096 "
            "or a percentage from 1% to 100%, got '150%'");
  EXPECT_EQ(error_of(replace(kBgp, "\"65001:100\"", "\"65536:1\"")),
            "test.yaml:22:21: bgp.announce[0].communities[0]: expected a community such as "
            "65000:100 (each part 0 to 65535) or graceful_shutdown, no_export, no_advertise");
  EXPECT_EQ(error_of(replace(kBgp, "router_id: 192.0.2.10", "router_id: me")),
            "test.yaml:12:14: bgp.router_id: expected an IPv4 address such as 192.0.2.10, got "
            "'me'");
  EXPECT_EQ(error_of(replace(kBgp, "    - address: 192.0.2.2\n", "    - address: nowhere\n")),
            "test.yaml:15:16: bgp.peers[0].address: expected an IP address such as 192.0.2.1 or "
            "[2001:db8::1]:179, got 'nowhere'");
  EXPECT_EQ(error_of(replace(kBgp, "      remote_as: 65000\n", "")),
            "test.yaml:15:7: bgp.peers[0]: missing required key 'remote_as'");
  EXPECT_EQ(error_of(replace(kBgp, "  hold_down: 20s\n", "  hold_down: 20s\n  hold_time: 3s\n")),
            "test.yaml:14:3: bgp.hold_time: unknown key (expected one of: local_as, router_id, "
            "peers, announce, hold_down, shutdown_delay)");
  EXPECT_EQ(error_of(replace(kBgp, "remote_as: 65000", "remote_as: 65000\n      hold_time: 2s")),
            "test.yaml:18:18: bgp.peers[0].hold_time: expected a duration from 3s to 65535s, got "
            "2s");
}

}  // namespace
}  // namespace sluice::config
