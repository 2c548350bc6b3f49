#include "config/config_diff.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tls/test_pki.h"

namespace sluice::config {
namespace {

using Lines = std::vector<std::string>;
using tls::testing::TestPki;

// The configuration the tests below change.
constexpr const char* kBase = R"(workers: 2
drain_timeout: 5s
admin:
  address: 127.0.0.1:9901
listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
    virtual_hosts:
      - name: main
        domains: ["example.com"]
        routes:
          - match: {prefix: /static}
            cluster: api
          - match: {prefix: /api}
            cluster: api
            timeout: 15s
  - name: old
    address: 127.0.0.1:7000
    protocol: tcp
    cluster: api
clusters:
  - name: api
    endpoints:
      - address: 10.0.0.5:8080
      - address: 10.0.0.6:8080
    pool:
      max_connections: 1024
  - name: api_v2
    endpoints:
      - address: 10.0.0.9:8080
)";

std::shared_ptr<const Config> load(const std::string& yaml) {
  auto r = load_string(yaml, "test.yaml");
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? r.value() : std::make_shared<Config>();
}

Lines diff(const std::string& before, const std::string& after) {
  Lines out;
  for (const auto& c : diff_configs(*load(before), *load(after))) out.push_back(c.text);
  return out;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at == std::string::npos) return s;
  return s.replace(at, from.size(), to);
}

TEST(ConfigDiff, IdenticalConfigurationsHaveNoChanges) {
  EXPECT_EQ(diff(kBase, kBase), Lines{});
}

TEST(ConfigDiff, ListenersRoutesClustersAndWorkersInThatOrder) {
  std::string after = kBase;
  after = replace(after, "workers: 2", "workers: 4");
  after = replace(after, "            cluster: api\n            timeout: 15s",
                  "            cluster: api_v2\n            timeout: 15s");
  after = replace(after, "  - name: old\n    address: 127.0.0.1:7000\n",
                  "  - name: tcp_api\n    address: 0.0.0.0:9000\n");
  after = replace(after, "      - address: 10.0.0.5:8080\n      - address: 10.0.0.6:8080\n",
                  "      - address: 10.0.0.6:8080\n      - address: 10.0.0.7:8080\n");
  after = replace(after, "max_connections: 1024", "max_connections: 512");
  after = replace(
      after, "  - name: api\n    endpoints:", "  - name: api\n    protocol: http2\n    endpoints:");
  EXPECT_EQ(diff(kBase, after),
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "listener tcp_api: added on 0.0.0.0:9000: will bind",
                "listener old: removed from 127.0.0.1:7000: stops accepting, its connections "
                "drain (drain_timeout 5s)",
                "listener web: route main/1 (prefix /api) cluster api -> api_v2 (new requests "
                "only)",
                "cluster api: protocol http1 -> http2 (new connections only)",
                "cluster api: endpoint 10.0.0.7:8080 added; endpoint 10.0.0.5:8080 removed "
                "(drains)",
                "cluster api: pool.max_connections 1024 -> 512 (new connections only)",
                "workers 2 -> 4: cannot change in place (needs a restart or a binary upgrade)",
            }));
}

TEST(ConfigDiff, EventBackendNeedsARestart) {
  EXPECT_EQ(diff(kBase, "event:\n  backend: io_uring\n" + std::string(kBase)),
            (Lines{"event.backend auto -> io_uring: cannot change in place (needs a restart or a "
                   "binary upgrade)"}));
}

TEST(ConfigDiff, EventReceiveNeedsARestart) {
  EXPECT_EQ(diff(kBase, "event:\n  receive: readiness\n" + std::string(kBase)),
            (Lines{"event.receive completion -> readiness: cannot change in place (needs a "
                   "restart or a binary upgrade)"}));
}

TEST(ConfigDiff, BgpNeedsARestart) {
  std::string bgp = R"(bgp:
  local_as: 65001
  router_id: 192.0.2.1
  peers: [{address: 192.0.2.2, remote_as: 65000}]
  announce: [{prefix: 198.51.100.1/32, when: {cluster: api}}]
)";
  const Lines kRestart = {"bgp: cannot change in place (needs a restart or a binary upgrade)"};
  EXPECT_EQ(diff(kBase, bgp + kBase), kRestart);
  EXPECT_EQ(diff(bgp + kBase, bgp + kBase), Lines{});
  EXPECT_EQ(diff(bgp + kBase, replace(bgp, "65000", "65002") + kBase), kRestart);
}

TEST(ConfigDiff, RegistrationNeedsARestart) {
  std::string reg = R"(registration:
  endpoints: [127.0.0.1:2379]
  key: /services/web/a
  address: 10.0.0.5:8080
)";
  const Lines kRestart = {
      "registration: cannot change in place (needs a restart or a binary upgrade)"};
  EXPECT_EQ(diff(kBase, reg + kBase), kRestart);
  EXPECT_EQ(diff(reg + kBase, reg + kBase), Lines{});
  EXPECT_EQ(diff(reg + kBase, replace(reg, "/services/web/a", "/services/web/b") + kBase),
            kRestart);
}

TEST(ConfigDiff, AListenerOnAnotherAddressIsRemovedAndAdded) {
  std::string after = replace(kBase, "127.0.0.1:7000", "127.0.0.1:7001");
  after = replace(after, "drain_timeout: 5s", "drain_timeout: 10s");
  EXPECT_EQ(diff(kBase, after),
            (Lines{
                "listener old: removed from 127.0.0.1:7000: stops accepting, its connections "
                "drain (drain_timeout 10s)",
                "listener old: added on 127.0.0.1:7001: will bind",
                "drain_timeout 5s -> 10s (applies to the next drain)",
            }));
}

TEST(ConfigDiff, ListenerSettingsKeepTheSockets) {
  std::string after = replace(kBase, "    protocol: tcp\n    cluster: api\n",
                              "    protocol: tcp\n    cluster: api_v2\n    idle_timeout: 60s\n"
                              "    backlog: 4096\n    socket_options: {tcp_nodelay: false}\n");
  after = replace(after, "    protocol: http\n",
                  "    protocol: http\n    http:\n      max_headers: 50\n"
                  "      local_reply_detail: full\n    http2: {prior_knowledge: true}\n");
  EXPECT_EQ(diff(kBase, after),
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "listener web: http.max_headers 100 -> 50 (new connections only)",
                "listener web: http.local_reply_detail summary -> full (new connections only)",
                "listener web: http2 enabled (new connections only)",
                "listener old (127.0.0.1:7000): unchanged address: keeps its sockets",
                "listener old: cluster api -> api_v2 (new connections only)",
                "listener old: backlog 1024 -> 4096 (applied to its listening sockets)",
                "listener old: socket_options changed (new connections only)",
                "listener old: idle_timeout 300s -> 60s (new connections only)",
            }));
  std::string streams = replace(after, "http2: {prior_knowledge: true}",
                                "http2: {prior_knowledge: true, max_concurrent_streams: 10}");
  EXPECT_EQ(diff(after, streams),
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "listener web: http2.max_concurrent_streams 100 -> 10 (new connections only)",
            }));
}

TEST(ConfigDiff, DatagramListenerSettings) {
  std::string before = replace(kBase, "  - name: old\n",
                               "  - name: dns\n    address: 127.0.0.1:5353\n    protocol: udp\n"
                               "    cluster: api\n  - name: stun\n    address: 127.0.0.1:3478\n"
                               "    protocol: stun\n  - name: old\n");
  std::string after = replace(before, "    protocol: udp\n    cluster: api\n",
                              "    protocol: udp\n    cluster: api\n"
                              "    udp: {max_responses: 1, session_key: source_ip}\n");
  after = replace(after, "    protocol: stun\n", "    protocol: stun\n    stun: {rate_limit: 5}\n");
  EXPECT_EQ(diff(before, after),
            (Lines{
                "listener dns (127.0.0.1:5353): unchanged address: keeps its sockets",
                "listener dns: udp.session_key source_ip_port -> source_ip (new sessions only)",
                "listener dns: udp.max_responses 0 -> 1 (new sessions only)",
                "listener stun (127.0.0.1:3478): unchanged address: keeps its sockets",
                "listener stun: stun.rate_limit 20 -> 5 (applies at once; the rate-limit table "
                "starts afresh)",
            }));
  // Another protocol on a UDP socket is another socket.
  std::string tcp = replace(before, "    protocol: udp\n", "    protocol: tcp\n");
  EXPECT_EQ(diff(before, tcp),
            (Lines{
                "listener dns: removed from 127.0.0.1:5353: stops accepting, its connections "
                "drain (drain_timeout 5s)",
                "listener dns: added on 127.0.0.1:5353: will bind",
            }));
}

TEST(ConfigDiff, VirtualHostsAndRoutes) {
  std::string after = replace(kBase, R"(domains: ["example.com"])",
                              R"(domains: ["example.com", "www.example.com"])");
  // The first route's match changes; the second is removed; a redirect is added after it.
  after = replace(after, "match: {prefix: /static}", "match: {path: /static/index.html}");
  after = replace(after,
                  "          - match: {prefix: /api}\n            cluster: api\n"
                  "            timeout: 15s\n",
                  "          - match: {prefix: /api, methods: [GET]}\n            cluster: api\n"
                  "            timeout: 30s\n            retries: {num_retries: 3}\n"
                  "          - match: {prefix: /old}\n"
                  "            redirect: {location: https://example.com/new}\n"
                  "      - name: admin\n        domains: [admin.example.com]\n"
                  "        routes:\n          - match: {prefix: /}\n            cluster: api\n");
  EXPECT_EQ(
      diff(kBase, after),
      (Lines{
          "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
          "listener web: virtual host main domains [example.com] -> [example.com, "
          "www.example.com] (new requests only)",
          "listener web: route main/0 (prefix /static) match prefix /static -> path "
          "/static/index.html (new requests only)",
          "listener web: route main/1 (prefix /api) match prefix /api -> prefix /api methods "
          "[GET] (new requests only)",
          "listener web: route main/1 (prefix /api) timeout 15s -> 30s (new requests only)",
          "listener web: route main/1 (prefix /api) retries.num_retries 1 -> 3 (new requests "
          "only)",
          "listener web: route main/2 (prefix /old) added: redirects to "
          "https://example.com/new (new requests only)",
          "listener web: virtual host admin added: domains [admin.example.com], 1 routes (new "
          "requests only)",
      }));
  // And back: the redirect and the virtual host go.
  Lines back = diff(after, kBase);
  ASSERT_EQ(back.size(), 8u);
  EXPECT_EQ(back[6], "listener web: route main/2 (prefix /old) removed (new requests only)");
  EXPECT_EQ(back[7], "listener web: virtual host admin removed (new requests only)");
}

TEST(ConfigDiff, ARouteInsertedIsOneRouteAdded) {
  std::string after = replace(kBase,
                              "          - match: {prefix: /api}\n            cluster: api\n"
                              "            timeout: 15s\n",
                              "          - match: {path: /health}\n"
                              "            direct_response: {status: 200, body: ok}\n"
                              "          - match: {prefix: /api}\n            cluster: api\n"
                              "            timeout: 30s\n");
  EXPECT_EQ(diff(kBase, after),
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "listener web: route main/1 (path /health) added: answers 200 (new requests "
                "only)",
                "listener web: route main/2 (prefix /api) timeout 15s -> 30s (new requests "
                "only)",
            }));
  // Taken out again, and the other route named.
  std::string named = replace(kBase, "          - match: {prefix: /static}\n",
                              "          - name: assets\n            match: {prefix: /static}\n");
  EXPECT_EQ(diff(after, named),
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "listener web: route assets (prefix /static) name main/0 -> assets (new requests "
                "only)",
                "listener web: route main/1 (path /health) removed (new requests only)",
                "listener web: route main/1 (prefix /api) timeout 30s -> 15s (new requests "
                "only)",
            }));
}

TEST(ConfigDiff, ClusterSettings) {
  std::string after = replace(kBase, "      - address: 10.0.0.9:8080\n",
                              "      - address: 10.0.0.9:8080\n        weight: 3\n"
                              "    lb_policy: least_request\n"
                              "    health_check: {type: tcp, interval: 2s}\n"
                              "    outlier_detection: {consecutive_5xx: 3}\n"
                              "    circuit_breakers: {max_active_requests: 100}\n"
                              "    connect_timeout: 1s\n"
                              "  - name: extra\n    type: strict_dns\n"
                              "    endpoints:\n      - address: backend.internal:80\n");
  EXPECT_EQ(diff(kBase, after),
            (Lines{
                "cluster api_v2: connect_timeout 5s -> 1s (new connections only)",
                "cluster api_v2: endpoint 10.0.0.9:8080 weight 1 -> 3 (applies at once)",
                "cluster api_v2: lb_policy round_robin -> least_request (the balancer is "
                "rebuilt at once)",
                "cluster api_v2: health_check.type none -> tcp (checks start over with it)",
                "cluster api_v2: health_check.interval 5s -> 2s (checks start over with it)",
                "cluster api_v2: outlier_detection enabled (applies at once)",
                "cluster api_v2: circuit_breakers.max_active_requests 0 -> 100 (applies at "
                "once)",
                "cluster extra: added (strict_dns, resolves [backend.internal:80])",
            }));
  Lines back = diff(after, kBase);
  ASSERT_EQ(back.size(), 8u);
  EXPECT_EQ(back[7], "cluster extra: removed: its connections drain");

  // Blocks without a line per field say they changed, in what the named fields leave out.
  std::string checks = replace(after, "health_check: {type: tcp, interval: 2s}",
                               "health_check: {type: http, interval: 2s, http: {path: /ready}}");
  checks = replace(checks, "    connect_timeout: 1s\n",
                   "    connect_timeout: 1s\n    socket_options: {tcp_nodelay: false}\n");
  EXPECT_EQ(diff(after, checks),
            (Lines{
                "cluster api_v2: socket_options changed (new connections only)",
                "cluster api_v2: health_check.type tcp -> http (checks start over with it)",
                "cluster api_v2: health_check changed (checks start over with it)",
            }));
}

TEST(ConfigDiff, ClusterTlsIsInTheTlsSection) {
  std::string after = replace(kBase, "      - address: 10.0.0.9:8080\n",
                              "      - address: 10.0.0.9:8080\n"
                              "    tls: {sni: api.internal}\n");
  std::string more = replace(after, "tls: {sni: api.internal}",
                             "tls: {sni: api2.internal, verify: false, min_version: \"1.3\"}");
  EXPECT_EQ(diff(kBase, after), (Lines{"cluster api_v2: tls added (new connections only)"}));
  EXPECT_EQ(diff(after, more),
            (Lines{
                "cluster api_v2: tls.verify true -> false (new connections only)",
                "cluster api_v2: tls.sni api.internal -> api2.internal (new connections only)",
                "cluster api_v2: tls.min_version 1.2 -> 1.3 (new connections only)",
            }));
}

TEST(ConfigDiff, ListenerTlsIsInTheTlsSectionAfterClusters) {
  TestPki pki;
  auto web = pki.issue("web", {.dns_names = {"example.com"}});
  auto renewed = pki.issue("web2", {.dns_names = {"example.com"}});
  auto with_tls = [&](const TestPki::Leaf& leaf, const std::string& extra) {
    return replace(kBase, "    protocol: http\n",
                   "    protocol: http\n    tls:\n      certificates:\n"
                   "        - {certificate_chain: " +
                       leaf.chain + ", private_key: " + leaf.key + "}\n" + extra);
  };
  std::string before = with_tls(web, "");
  // Two loads of the same files read the certificates twice: no change for all that.
  EXPECT_EQ(diff(before, before), Lines{});
  EXPECT_EQ(diff(kBase, before),
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "listener web: tls added: terminates TLS (new connections only)",
            }));
  std::string after = with_tls(renewed, "      alpn: [http/1.1]\n");
  after = replace(after, "    pool:\n", "    panic_threshold: 0\n    pool:\n");
  auto changes = diff_configs(*load(before), *load(after));
  Lines lines;
  for (const auto& c : changes) lines.push_back(c.text);
  EXPECT_EQ(lines,
            (Lines{
                "listener web (127.0.0.1:8080): unchanged address: keeps its sockets",
                "cluster api: panic_threshold 50 -> 0 (applies at once)",
                "listener web: tls.certificates [" + web.chain + " (key " + web.key + ")] -> [" +
                    renewed.chain + " (key " + renewed.key + ")] (new connections only)",
                "listener web: tls.alpn [] -> [http/1.1] (new connections only)",
            }));
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(changes[0].section, ChangeSection::kListener);
  EXPECT_EQ(changes[1].section, ChangeSection::kCluster);
  EXPECT_EQ(changes[2].section, ChangeSection::kTls);
  EXPECT_EQ(changes[3].section, ChangeSection::kTls);
}

TEST(ConfigDiff, TopLevelSettings) {
  std::string after = replace(kBase, "drain_timeout: 5s\n",
                              "drain_timeout: 5s\nlog_level: debug\nready_timeout: 30s\n"
                              "dns:\n  servers: [127.0.0.1:5353]\n  attempts: 4\n");
  after = replace(after, "127.0.0.1:9901", "127.0.0.1:9902");
  EXPECT_EQ(diff(kBase, after),
            (Lines{
                "log_level info -> debug (applies at once)",
                "ready_timeout 10s -> 30s (used at startup only)",
                "admin.address 127.0.0.1:9901 -> 127.0.0.1:9902: binds the new address, closes "
                "the old one",
                "dns.servers [] -> [127.0.0.1:5353] (new lookups only)",
                "dns.attempts 2 -> 4 (new lookups only)",
            }));
  std::string no_admin = replace(kBase, "admin:\n  address: 127.0.0.1:9901\n", "");
  EXPECT_EQ(diff(kBase, no_admin),
            (Lines{"admin.address 127.0.0.1:9901 -> none: stops serving the admin API"}));
  EXPECT_EQ(diff(no_admin, kBase), (Lines{"admin.address none -> 127.0.0.1:9901: will bind"}));
}

}  // namespace
}  // namespace sluice::config
