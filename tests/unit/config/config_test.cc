#include "config/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/log.h"
#include "tls/test_pki.h"

namespace sluice::config {
namespace {

// A valid configuration; the tests below each break one thing.
constexpr const char* kGood = R"(workers: 2
listeners:
  - name: tcp_in
    address: 127.0.0.1:7000
    protocol: tcp
    cluster: backends
    idle_timeout: 300s
clusters:
  - name: backends
    connect_timeout: 1s
    endpoints:
      - address: 127.0.0.1:8081
      - address: 127.0.0.1:8082
        weight: 2
)";

std::string error_of(const std::string& yaml) {
  auto r = load_string(yaml, "test.yaml");
  if (r.is_ok()) return "(loaded fine)";
  return r.status().message();
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(Config, LoadsTheDocumentedShapeWithDefaults) {
  auto r = load_string(kGood, "test.yaml");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const Config& c = **r;
  EXPECT_EQ(c.workers, 2u);
  EXPECT_EQ(c.drain_timeout, std::chrono::seconds(30));
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0]->address.to_string(), "127.0.0.1:7000");
  EXPECT_EQ(c.listeners[0]->idle_timeout, std::chrono::seconds(300));
  EXPECT_EQ(c.listeners[0]->max_connections, 10000u);
  EXPECT_TRUE(c.listeners[0]->splice);
  ASSERT_EQ(c.clusters.size(), 1u);
  EXPECT_EQ(c.clusters[0]->connect_timeout, std::chrono::seconds(1));
  EXPECT_EQ(c.clusters[0]->max_connect_attempts, 3u);
  ASSERT_EQ(c.clusters[0]->endpoints.size(), 2u);
  EXPECT_EQ(c.clusters[0]->endpoints[0].weight, 1u);
  EXPECT_EQ(c.clusters[0]->endpoints[1].weight, 2u);
}

TEST(Config, WorkersDefaultToTheNumberOfCores) {
  auto r = load_string(replace(kGood, "workers: 2\n", ""), "test.yaml");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_GE((*r)->workers, 1u);
}

TEST(Config, UnknownKey) {
  EXPECT_EQ(error_of(replace(kGood, "    idle_timeout: 300s", "    idle_timeot: 300s")),
            "test.yaml:7:5: listeners[0].idle_timeot: unknown key (expected one of: name, "
            "address, protocol, cluster, backlog, max_connections, socket_options, "
            "idle_timeout, max_duration, splice, http, virtual_hosts, hash_key, access_log, tls, "
            "sni_routes, sni_timeout, http2, udp, stun)");
}

TEST(Config, Registration) {
  auto loaded = load_string(std::string(kGood) + R"(registration:
  endpoints: [127.0.0.1:2379, 127.0.0.2:2379]
  key: /services/web/a
  address: 10.0.0.5:8080
  ttl: 15s
)",
                            "test.yaml");
  ASSERT_TRUE(loaded) << loaded.status().message();
  const auto& r = *(*loaded)->registration;
  ASSERT_EQ(r.endpoints.size(), 2u);
  EXPECT_EQ(r.endpoints[1].to_string(), "127.0.0.2:2379");
  EXPECT_EQ(r.key, "/services/web/a");
  EXPECT_EQ(r.value, R"({"address":"10.0.0.5:8080"})");
  EXPECT_EQ(r.ttl, std::chrono::seconds(15));

  std::string base = std::string(kGood) + "registration:\n  endpoints: [127.0.0.1:2379]\n";
  EXPECT_EQ(error_of(base + "  key: /k\n  value: x\n  ttl: 1s\n"),
            "test.yaml:19:8: registration.ttl: expected a duration from 3s to 86400s, got 1s");
  EXPECT_EQ(error_of(base + "  key: /k\n  value: x\n  address: 10.0.0.5:80\n"),
            "test.yaml:19:12: registration.address: either value or address, not both");
  EXPECT_EQ(error_of(base + "  key: /k\n  address: nowhere\n"),
            "test.yaml:18:12: registration.address: expected IP:PORT such as 10.0.0.5:8080, got "
            "'nowhere'");
  EXPECT_EQ(error_of(std::string(kGood) + "registration:\n  key: /k\n  value: x\n"),
            "test.yaml:16:3: registration: missing required key 'endpoints'");
}

TEST(Config, WrongType) {
  EXPECT_EQ(error_of(replace(kGood, "workers: 2", "workers: many")),
            "test.yaml:1:10: workers: expected an integer, got 'many'");
  EXPECT_EQ(error_of(replace(kGood, "  - name: backends", "  - name: [a, b]")),
            "test.yaml:9:11: clusters[0].name: expected a string");
}

TEST(Config, AdminDashboardDefaultsToOnOnlyOnLoopback) {
  auto dashboard = [](const std::string& admin) {
    auto r = load_string(replace(kGood, "workers: 2", "workers: 2\nadmin: " + admin), "test.yaml");
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r.is_ok() && (*r)->dashboard_enabled();
  };
  EXPECT_TRUE(dashboard("{address: 127.0.0.1:9901}"));
  EXPECT_TRUE(dashboard("{address: '[::1]:9901'}"));
  EXPECT_FALSE(dashboard("{address: 0.0.0.0:9901}"));
  EXPECT_TRUE(dashboard("{address: 0.0.0.0:9901, dashboard: true}"));
  EXPECT_FALSE(dashboard("{address: 127.0.0.1:9901, dashboard: false}"));
  EXPECT_FALSE((*load_string(kGood, "test.yaml"))->dashboard_enabled());  // no admin at all
  EXPECT_EQ(error_of(replace(kGood, "workers: 2", "workers: 2\nadmin: {dashboard: maybe}")),
            "test.yaml:2:20: admin.dashboard: expected true or false, got 'maybe'");
}

TEST(Config, AdminEventsSettingsAndTheirBounds) {
  auto load = [](const std::string& admin) {
    return load_string(replace(kGood, "workers: 2", "workers: 2\nadmin: " + admin), "test.yaml");
  };
  auto defaults = load("{address: 127.0.0.1:9901}");
  ASSERT_TRUE(defaults.is_ok());
  EXPECT_EQ((*defaults)->admin_events.interval, std::chrono::seconds(1));
  EXPECT_EQ((*defaults)->admin_events.max_subscribers, 8u);
  auto set = load("{address: 127.0.0.1:9901, events: {interval: 250ms, max_subscribers: 0}}");
  ASSERT_TRUE(set.is_ok()) << set.status().message();
  EXPECT_EQ((*set)->admin_events.interval, std::chrono::milliseconds(250));
  EXPECT_EQ((*set)->admin_events.max_subscribers, 0u);
  EXPECT_EQ(
      error_of(replace(kGood, "workers: 2",
                       "workers: 2\nadmin: {events: {interval: 10ms, max_subscribers: 5000}}")),
      "test.yaml:2:28: admin.events.interval: expected a duration from 100ms to 60s, got "
      "10ms\n"
      "test.yaml:2:51: admin.events.max_subscribers: expected an integer from 0 to 1024, got "
      "5000");
  EXPECT_EQ(error_of(replace(kGood, "workers: 2", "workers: 2\nadmin: {events: {often: 1s}}")),
            "test.yaml:2:18: admin.events.often: unknown key (expected one of: interval, "
            "max_subscribers)");
}

TEST(Config, DurationWithoutUnit) {
  EXPECT_EQ(error_of(replace(kGood, "idle_timeout: 300s", "idle_timeout: 300")),
            "test.yaml:7:19: listeners[0].idle_timeout: expected a duration with a unit (ms, s, "
            "m, h) such as 250ms, 1s or 5m, got '300'");
}

TEST(Config, OutOfRange) {
  EXPECT_EQ(error_of(replace(kGood, "workers: 2", "workers: 0")),
            "test.yaml:1:10: workers: expected an integer from 1 to 256, got 0");
  EXPECT_EQ(error_of(replace(kGood, "weight: 2", "weight: 5000")),
            "test.yaml:14:17: clusters[0].endpoints[1].weight: expected an integer from 1 to "
            "1000, got 5000");
}

TEST(Config, DuplicateName) {
  std::string two = replace(kGood, "clusters:\n",
                            "clusters:\n  - name: backends\n    endpoints:\n      - address: "
                            "127.0.0.1:9\n");
  EXPECT_EQ(error_of(two),
            "test.yaml:12:11: clusters[1].name: duplicate cluster name 'backends' (first "
            "defined at line 9)");
}

TEST(Config, ListenerNamesMissingCluster) {
  EXPECT_EQ(error_of(replace(kGood, "cluster: backends", "cluster: nowhere")),
            "test.yaml:6:14: listeners[0].cluster: no cluster named 'nowhere' (defined "
            "clusters: backends)");
}

TEST(Config, AddressThatDoesNotParse) {
  EXPECT_EQ(error_of(replace(kGood, "127.0.0.1:7000", "127.0.0.1")),
            "test.yaml:4:14: listeners[0].address: '127.0.0.1' is not an address of the form "
            "IP:PORT or [IPv6]:PORT");
  EXPECT_EQ(error_of(replace(kGood, "127.0.0.1:8081", "backend.local:8081")),
            "test.yaml:12:18: clusters[0].endpoints[0].address: 'backend.local:8081': "
            "'backend.local' is not an IP address (names are not resolved here)");
  EXPECT_EQ(error_of(replace(kGood, "127.0.0.1:8081", "127.0.0.1:70000")),
            "test.yaml:12:18: clusters[0].endpoints[0].address: '127.0.0.1:70000' has an "
            "invalid port (expected 0-65535)");
}

TEST(Config, MissingRequiredKey) {
  EXPECT_EQ(error_of(replace(kGood, "    address: 127.0.0.1:7000\n", "")),
            "test.yaml:3:5: listeners[0]: missing required key 'address'");
}

TEST(Config, UnknownProtocolAndLogLevel) {
  EXPECT_EQ(
      error_of(replace(kGood, "protocol: tcp", "protocol: sctp")),
      "test.yaml:5:15: listeners[0].protocol: expected one of: tcp, http, udp, stun, got 'sctp'");
  EXPECT_EQ(error_of(std::string("log_level: loud\n") + kGood),
            "test.yaml:1:12: log_level: expected one of: debug, info, warn, error, got 'loud'");
}

TEST(Config, EventBackend) {
  auto plain = load_string(kGood, "test.yaml");
  ASSERT_TRUE(plain.is_ok()) << plain.status().message();
  EXPECT_EQ((*plain)->event.backend, event::Backend::kAuto);
  for (auto [text, backend] :
       {std::pair{"epoll", event::Backend::kEpoll}, std::pair{"io_uring", event::Backend::kIoUring},
        std::pair{"auto", event::Backend::kAuto}}) {
    auto r = load_string(std::string("event:\n  backend: ") + text + "\n" + kGood, "test.yaml");
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ((*r)->event.backend, backend) << text;
  }
  EXPECT_EQ(error_of(std::string("event:\n  backend: kqueue\n") + kGood),
            "test.yaml:2:12: event.backend: expected one of: epoll, io_uring, auto, got 'kqueue'");
  EXPECT_EQ(error_of(std::string("event:\n  ring: 4\n") + kGood),
            "test.yaml:2:3: event.ring: unknown key (expected one of: backend, receive)");
}

TEST(Config, EventReceive) {
  auto plain = load_string(kGood, "test.yaml");
  ASSERT_TRUE(plain.is_ok()) << plain.status().message();
  EXPECT_EQ((*plain)->event.receive, event::Receive::kCompletion);
  for (auto [text, receive] : {std::pair{"completion", event::Receive::kCompletion},
                               std::pair{"readiness", event::Receive::kReadiness}}) {
    auto r = load_string(std::string("event:\n  receive: ") + text + "\n" + kGood, "test.yaml");
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ((*r)->event.receive, receive) << text;
  }
  EXPECT_EQ(error_of(std::string("event:\n  backend: io_uring\n  receive: poll\n") + kGood),
            "test.yaml:3:12: event.receive: expected one of: completion, readiness, got 'poll'");
}

TEST(Config, ClusterProtocolRules) {
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n", "    protocol: h3\n")),
            "test.yaml:10:15: clusters[0].protocol: expected one of: http1, http2, auto, got 'h3'");
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n",
                             "    protocol: http2\n    pool: {min_idle: 2}\n")),
            "test.yaml:11:22: clusters[0].pool.min_idle: keeps HTTP/1.1 connections open ahead of "
            "demand; not with protocol: http2");
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n",
                             "    http2: {initial_stream_window: 64KiB}\n")),
            "test.yaml:10:12: clusters[0].http2: only with protocol: http2 or auto");
  auto r = load_string(
      replace(kGood, "    connect_timeout: 1s\n", "    protocol: auto\n    tls: {verify: false}\n"),
      "test.yaml");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r.value()->clusters[0]->tls->alpn, (std::vector<std::string>{"h2", "http/1.1"}));
}

TEST(Config, CongestionControlTheKernelLacks) {
  std::string msg = error_of(replace(kGood, "    idle_timeout: 300s",
                                     "    idle_timeout: 300s\n    socket_options:\n"
                                     "      congestion: warpdrive"));
  EXPECT_EQ(msg.rfind("test.yaml:9:19: listeners[0].socket_options.congestion: congestion "
                      "control 'warpdrive' is not available in this kernel "
                      "(net.ipv4.tcp_available_congestion_control: ",
                      0),
            0u)
      << msg;
  EXPECT_NE(msg.find("cubic"), std::string::npos) << msg;
}

TEST(Config, SameAddressTwice) {
  std::string two = replace(kGood, "clusters:\n",
                            "  - name: other\n    address: 127.0.0.1:7000\n    cluster: "
                            "backends\nclusters:\n");
  EXPECT_EQ(error_of(two),
            "test.yaml:9:14: listeners[1].address: 127.0.0.1:7000 is already used by "
            "listener 'tcp_in'");
}

TEST(Config, InvalidYamlIsLocated) {
  EXPECT_EQ(error_of("listeners: [\n"),
            "test.yaml:2:1: invalid YAML: end of sequence flow not found");
}

TEST(Config, EveryErrorIsReportedOnItsOwnLine) {
  std::string bad = replace(replace(kGood, "workers: 2", "workers: x"), "weight: 2", "weight: 0");
  EXPECT_EQ(error_of(bad),
            "test.yaml:1:10: workers: expected an integer, got 'x'\n"
            "test.yaml:14:17: clusters[0].endpoints[1].weight: expected an integer from 1 to "
            "1000, got 0");
}

TEST(Config, OutlierStatisticalEjection) {
  std::string yaml = replace(kGood, "    connect_timeout: 1s\n",
                             "    connect_timeout: 1s\n"
                             "    outlier_detection:\n"
                             "      success_rate: {minimum_hosts: 3, request_volume: 20, "
                             "stdev_factor: 2.5}\n"
                             "      failure_percentage: {threshold: 60}\n");
  auto r = load_string(yaml, "test.yaml");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const auto& o = *(*r)->clusters[0]->outlier;
  ASSERT_TRUE(o.success_rate.has_value());
  EXPECT_EQ(o.success_rate->minimum_hosts, 3u);
  EXPECT_EQ(o.success_rate->request_volume, 20u);
  EXPECT_DOUBLE_EQ(o.success_rate->stdev_factor, 2.5);
  ASSERT_TRUE(o.failure_percentage.has_value());
  EXPECT_EQ(o.failure_percentage->threshold, 60u);
  EXPECT_EQ(o.failure_percentage->minimum_hosts, 5u);
  EXPECT_EQ(error_of(replace(yaml, "stdev_factor: 2.5", "stdev_factor: 0")),
            "test.yaml:12:74: clusters[0].outlier_detection.success_rate.stdev_factor: expected a "
            "number from 0.1 to 10, got 0");
  EXPECT_EQ(error_of(replace(yaml, "stdev_factor: 2.5", "stdev_factor: lots")),
            "test.yaml:12:74: clusters[0].outlier_detection.success_rate.stdev_factor: expected a "
            "number, got 'lots'");
  EXPECT_EQ(error_of(replace(yaml, "threshold: 60", "threshold: 0")),
            "test.yaml:13:39: clusters[0].outlier_detection.failure_percentage.threshold: expected "
            "an integer from 1 to 100, got 0");
}

namespace validate_test {

std::shared_ptr<upstream::ClusterConfig> cluster(const std::string& name, uint32_t weight) {
  auto c = std::make_shared<upstream::ClusterConfig>();
  c->name = name;
  c->connect_timeout = std::chrono::seconds(1);
  upstream::EndpointConfig a;
  a.address = *net::Address::parse("127.0.0.1:8081");
  upstream::EndpointConfig b;
  b.address = *net::Address::parse("127.0.0.1:8082");
  b.weight = weight;
  c->endpoints = {a, b};
  return c;
}

std::shared_ptr<proxy::ListenerConfig> tcp_listener() {
  auto l = std::make_shared<proxy::ListenerConfig>();
  l->name = "tcp_in";
  l->address = *net::Address::parse("127.0.0.1:7000");
  l->cluster = "backends";
  return l;
}

// kGood, built in code.
Config good_in_code() {
  Config c;
  c.workers = 2;
  c.listeners.push_back(tcp_listener());
  c.clusters.push_back(cluster("backends", 2));
  return c;
}

std::string issues_text(const ConfigIssues& issues) {
  std::string all;
  for (const auto& i : issues) {
    if (!all.empty()) all += '\n';
    all += i.text();
  }
  return all;
}

TEST(ConfigValidate, TheDocumentedShapeBuiltInCodeHasNoIssue) {
  EXPECT_EQ(issues_text(good_in_code().validate()), "");
}

TEST(ConfigValidate, CodeAndYamlBreakTheSameRuleWithTheSameMessage) {
  Config c = good_in_code();
  c.clusters[0] = cluster("backends", 5000);
  EXPECT_EQ(issues_text(c.validate()),
            "clusters[0].endpoints[1].weight: expected an integer from 1 to 1000, got 5000");
  EXPECT_EQ(error_of(replace(kGood, "weight: 2", "weight: 5000")),
            "test.yaml:14:17: clusters[0].endpoints[1].weight: expected an integer from 1 to "
            "1000, got 5000");
}

TEST(ConfigValidate, YamlShowsTheValueAsWritten) {
  Config c = good_in_code();
  auto cl = cluster("backends", 2);
  cl->connect_timeout = std::chrono::hours(2);
  c.clusters[0] = cl;
  EXPECT_EQ(issues_text(c.validate()),
            "clusters[0].connect_timeout: expected a duration from 1ms to 3600s, got 7200s");
  EXPECT_EQ(error_of(replace(kGood, "connect_timeout: 1s", "connect_timeout: 2h")),
            "test.yaml:10:22: clusters[0].connect_timeout: expected a duration from 1ms to "
            "3600s, got 2h");
}

TEST(ConfigValidate, MissingKeyIsNamedAtItsBlock) {
  Config c = good_in_code();
  auto l = tcp_listener();
  l->address = net::Address();
  c.listeners[0] = l;
  EXPECT_EQ(issues_text(c.validate()), "listeners[0]: missing required key 'address'");
  EXPECT_EQ(error_of(replace(kGood, "    address: 127.0.0.1:7000\n", "")),
            "test.yaml:3:5: listeners[0]: missing required key 'address'");
}

TEST(ConfigValidate, ReferencesAndDuplicatesAcrossBlocks) {
  Config c = good_in_code();
  c.clusters.push_back(cluster("backends", 1));
  auto l = tcp_listener();
  l->cluster = "nowhere";
  c.listeners[0] = l;
  EXPECT_EQ(issues_text(c.validate()),
            "clusters[1].name: duplicate cluster name 'backends' (first defined at "
            "clusters[0].name)\n"
            "warning: clusters[0]: not used: no listener or route names cluster 'backends'\n"
            "warning: clusters[1]: not used: no listener or route names cluster 'backends'\n"
            "listeners[0].cluster: no cluster named 'nowhere' (defined clusters: backends)");
}

TEST(ConfigValidate, RoutesBreakingForwardOnlyRules) {
  proxy::http::Route redirect;
  redirect.action = proxy::http::Route::Action::kRedirect;
  redirect.redirect_location = "https://example.com/";
  redirect.prefix_rewrite = "/v2/";
  EXPECT_EQ(issues_text(redirect.validate()),
            "prefix_rewrite: only for a route with a cluster (a redirect or direct_response "
            "sends nothing upstream)");
  proxy::http::Route exact;
  exact.cluster = "backends";
  exact.match.path_kind = proxy::http::RouteMatch::PathKind::kExact;
  exact.match.path = "/v1";
  exact.prefix_rewrite = "/v2";
  EXPECT_EQ(issues_text(exact.validate()),
            "prefix_rewrite: only with match: prefix (a path or regex match has no prefix to "
            "replace)");
}

TEST(ConfigValidate, HashPolicyOnAClusterThatDoesNotHashIsAWarning) {
  Config c = good_in_code();
  auto l = std::make_shared<proxy::ListenerConfig>();
  l->name = "web";
  l->address = *net::Address::parse("127.0.0.1:7001");
  l->protocol = proxy::Protocol::kHttp;
  proxy::http::VirtualHost vh;
  vh.domains = {"*"};
  proxy::http::Route route;
  route.cluster = "backends";
  route.hash_policy.push_back(
      proxy::http::HashPolicy{proxy::http::HashPolicy::Kind::kHeader, "x-user"});
  vh.routes.push_back(route);
  l->http.virtual_hosts.push_back(vh);
  c.listeners.push_back(l);
  ConfigIssues issues = c.validate();
  EXPECT_FALSE(has_errors(issues));
  EXPECT_EQ(issues_text(issues),
            "warning: listeners[1].virtual_hosts[0].routes[0].hash_policy: ignored: cluster "
            "'backends' balances with lb_policy: round_robin (hash_policy steers ring_hash and "
            "maglev only)");
}

}  // namespace validate_test

namespace tls_test {

using validate_test::issues_text;

using tls::testing::TestPki;

// Certificates for the TLS tests, made once.
class ConfigTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki();
    www_ = pki_->issue("www", {.dns_names = {"www.example.com"}});
    api_ = pki_->issue("api", {.dns_names = {"api.example.com"}, .key = TestPki::Key::kRsa});
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  // kGood with a TLS listener in front of the same cluster; `tls` is the listener's tls
  // block without indentation, one key per line.
  static std::string with_listener_tls(const std::string& tls) {
    std::string block;
    size_t i = 0;
    while (i < tls.size()) {
      size_t j = tls.find('\n', i);
      if (j == std::string::npos) j = tls.size();
      block += "      " + tls.substr(i, j - i) + "\n";
      i = j + 1;
    }
    return replace(kGood, "    idle_timeout: 300s\n", "    idle_timeout: 300s\n    tls:\n" + block);
  }
  static std::string certs(const TestPki::Leaf& leaf) {
    return "certificates:\n  - certificate_chain: " + leaf.chain + "\n    private_key: " + leaf.key;
  }

  static TestPki* pki_;
  static TestPki::Leaf www_, api_;
};

TestPki* ConfigTls::pki_ = nullptr;
TestPki::Leaf ConfigTls::www_, ConfigTls::api_;

TEST_F(ConfigTls, ListenerAndClusterTlsBlocksLoad) {
  std::string yaml = with_listener_tls(
      certs(www_) + "\n  - certificate_chain: " + api_.chain + "\n    private_key: " + api_.key +
      "\nalpn: [h2, http/1.1]\nmin_version: 1.3\n"
      "require_sni: true\nhandshake_timeout: 5s\n"
      "ticket_key_rotation: 2h\n"
      "client_ca: " +
      pki_->root_cert() + "\nverify: required\nverify_depth: 2\nktls: true");
  yaml = replace(
      yaml, "    connect_timeout: 1s\n",
      "    connect_timeout: 1s\n    tls:\n      verify: true\n      ca: " + pki_->root_cert() +
          "\n      sni: api.example.com\n      alpn: [http/1.1]\n"
          "      certificate_chain: " +
          www_.chain + "\n      private_key: " + www_.key +
          "\n      min_version: \"1.3\"\n      max_version: \"1.3\"\n"
          "      session_resumption: false\n      ktls: true\n");
  std::vector<std::string> warnings;
  auto r = load_string(yaml, "test.yaml", &warnings);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(warnings, std::vector<std::string>{});
  const proxy::ListenerConfig& l = *(*r)->listeners[0];
  ASSERT_TRUE(l.tls.has_value());
  const tls::ServerConfig& t = *l.tls;
  ASSERT_EQ(t.certificates.size(), 2u);
  EXPECT_EQ(t.certificates[1].certificate_chain, api_.chain);
  EXPECT_EQ(t.certificates[1].private_key, api_.key);
  EXPECT_EQ(t.certificates[1].ocsp_response, "");
  EXPECT_EQ(t.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(t.min_version, tls::Version::kTls13);
  EXPECT_EQ(t.max_version, tls::Version::kTls13);
  EXPECT_TRUE(t.require_sni);
  EXPECT_EQ(t.handshake_timeout, std::chrono::seconds(5));
  EXPECT_TRUE(t.session_tickets);
  EXPECT_EQ(t.ticket_key_rotation, std::chrono::hours(2));
  // early data cannot go with client certificates (its own test below)
  EXPECT_FALSE(t.early_data.enabled);
  EXPECT_EQ(t.client_ca, pki_->root_cert());
  EXPECT_EQ(t.verify, tls::ClientVerify::kRequired);
  EXPECT_EQ(t.verify_depth, 2u);
  EXPECT_TRUE(t.ktls);
  // The certificates were read at load.
  ASSERT_NE(l.cert_store, nullptr);
  ASSERT_EQ(l.cert_store->groups().size(), 2u);
  EXPECT_EQ(l.cert_store->select("api.example.com", true), &l.cert_store->groups()[1]);

  const upstream::ClusterConfig& c = *(*r)->clusters[0];
  ASSERT_TRUE(c.tls.has_value());
  EXPECT_TRUE(c.tls->verify);
  EXPECT_EQ(c.tls->ca, pki_->root_cert());
  EXPECT_EQ(c.tls->sni, "api.example.com");
  EXPECT_EQ(c.tls->alpn, std::vector<std::string>{"http/1.1"});
  EXPECT_EQ(c.tls->certificate_chain, www_.chain);
  EXPECT_EQ(c.tls->private_key, www_.key);
  EXPECT_EQ(c.tls->min_version, tls::Version::kTls13);
  EXPECT_FALSE(c.tls->session_resumption);
  EXPECT_TRUE(c.tls->ktls);
}

TEST_F(ConfigTls, WithoutTlsBlocksNothingIsRead) {
  auto r = load_string(kGood, "test.yaml");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_FALSE((*r)->listeners[0]->tls.has_value());
  EXPECT_EQ((*r)->listeners[0]->cert_store, nullptr);
  EXPECT_FALSE((*r)->clusters[0]->tls.has_value());
}

TEST_F(ConfigTls, SettingsAreCheckedAtTheirKeys) {
  EXPECT_EQ(error_of(with_listener_tls(certs(www_) + "\nmin_version: 1.4")),
            "test.yaml:12:20: listeners[0].tls.min_version: expected one of: 1.2, 1.3, got '1.4'");
  EXPECT_EQ(error_of(with_listener_tls(certs(www_) + "\nmin_version: 1.3\nmax_version: 1.2")),
            "test.yaml:12:20: listeners[0].tls.min_version: must not be above max_version (1.2), "
            "got 1.3");
  EXPECT_EQ(error_of(with_listener_tls(certs(www_) + "\nverify: required")),
            "test.yaml:9:7: listeners[0].tls.client_ca: needed by verify: required (the CAs "
            "client certificates must chain to)");
  EXPECT_EQ(error_of(with_listener_tls(certs(www_) + "\nhandshake_timeout: 10m")),
            "test.yaml:12:26: listeners[0].tls.handshake_timeout: expected a duration from 100ms "
            "to 300s, got 10m");
  EXPECT_EQ(
      error_of(with_listener_tls("certificates:\n  - certificate_chain: " + www_.chain)),
      "test.yaml:10:11: listeners[0].tls.certificates[0]: missing required key 'private_key'");
  EXPECT_EQ(error_of(with_listener_tls("alpn: [h2]")),
            "test.yaml:9:7: listeners[0].tls: missing required key 'certificates'");
  EXPECT_EQ(error_of(with_listener_tls(certs(www_) + "\nverify: sometimes")),
            "test.yaml:12:15: listeners[0].tls.verify: expected one of: none, optional, "
            "required, got 'sometimes'");
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n",
                             "    connect_timeout: 1s\n    tls:\n      sni: \"bad name\"\n")),
            "test.yaml:12:12: clusters[0].tls.sni: 'bad name' is not a DNS name such as "
            "api.example.com");
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n",
                             "    connect_timeout: 1s\n    tls:\n      verifi: false\n")),
            "test.yaml:12:7: clusters[0].tls.verifi: unknown key (expected one of: verify, ca, "
            "sni, alpn, certificate_chain, private_key, min_version, max_version, "
            "session_resumption, ktls)");
}

TEST_F(ConfigTls, CertificateProblemsAreErrorsAtTheTlsBlock) {
  std::string mismatch =
      "certificates:\n  - certificate_chain: " + www_.chain + "\n    private_key: " + api_.key;
  EXPECT_EQ(error_of(with_listener_tls(mismatch)),
            "test.yaml:9:7: listeners[0].tls: " + api_.key +
                ": the private key does not match the certificate in " + www_.chain +
                " (CN=www.example.com)");
  std::string missing = pki_->dir() + "/nothing.pem";
  std::string two = "certificates:\n  - certificate_chain: " + missing +
                    "\n    private_key: " + www_.key + "\n  - certificate_chain: " + www_.chain +
                    "\n    private_key: " + api_.key;
  EXPECT_EQ(error_of(with_listener_tls(two)),
            "test.yaml:9:7: listeners[0].tls: " + missing +
                ": cannot read: No such file or directory\n"
                "test.yaml:9:7: listeners[0].tls: " +
                api_.key + ": the private key does not match the certificate in " + www_.chain +
                " (CN=www.example.com)");
}

TEST_F(ConfigTls, CertificateWarningsAreLocated) {
  auto soon = pki_->issue("soon", {.dns_names = {"soon.example.com"}, .days = 2});
  std::vector<std::string> warnings;
  auto r = load_string(with_listener_tls(certs(soon)), "test.yaml", &warnings);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_NE((*r)->listeners[0]->cert_store, nullptr);
  std::string at = log::format_time((*r)->listeners[0]->cert_store->certificates()[0]->not_after);
  EXPECT_EQ(warnings,
            std::vector<std::string>{"test.yaml:9:7: warning: listeners[0].tls: " + soon.chain +
                                     ": the certificate (CN=soon.example.com) expires "
                                     "at " +
                                     at + ", in less than 14 days"});
}

TEST_F(ConfigTls, AClusterClientCertificateIsCheckedAtLoad) {
  auto client = pki_->issue("client", {.common_name = "service-a", .client_auth = true});
  std::string block =
      "    connect_timeout: 1s\n    tls:\n      certificate_chain: " + client.chain +
      "\n      private_key: " + client.key + "\n";
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n", block)), "(loaded fine)");
  block = "    connect_timeout: 1s\n    tls:\n      certificate_chain: " + client.chain +
          "\n      private_key: " + www_.key + "\n";
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n", block)),
            "test.yaml:12:7: clusters[0].tls: " + www_.key +
                ": the private key does not match the certificate in " + client.chain +
                " (CN=service-a)");
}

TEST_F(ConfigTls, CaFilesMustHoldCaCertificates) {
  EXPECT_EQ(
      error_of(with_listener_tls(certs(www_) + "\nclient_ca: " + www_.cert + "\nverify: optional")),
      "test.yaml:12:18: listeners[0].tls.client_ca: " + www_.cert +
          ": certificate 1 (CN=www.example.com) is not a CA certificate (no "
          "basicConstraints CA:TRUE)");
  std::string missing = pki_->dir() + "/no-ca.pem";
  EXPECT_EQ(error_of(replace(kGood, "    connect_timeout: 1s\n",
                             "    connect_timeout: 1s\n    tls:\n      ca: " + missing + "\n")),
            "test.yaml:12:11: clusters[0].tls.ca: " + missing +
                ": cannot read: No such file or directory");
}

TEST(TlsValidate, ServerRules) {
  tls::ServerConfig c;
  c.certificates.push_back({"a.pem", "a.key", ""});
  EXPECT_EQ(issues_text(c.validate()), "");
  c.certificates.push_back({"", "", ""});
  c.alpn = {"h2", "", std::string(256, 'x'), "h 2", "h2"};
  c.ticket_key_rotation = std::chrono::seconds(30);
  c.session_tickets = false;
  c.ticket_key_files = {"k1"};
  c.early_data.enabled = true;
  c.max_version = tls::Version::kTls12;
  c.min_version = tls::Version::kTls13;
  c.client_ca = "ca.pem";
  c.verify_depth = 0;
  c.handshake_timeout = std::chrono::milliseconds(50);
  EXPECT_EQ(issues_text(c.validate()),
            "certificates[1]: missing required key 'certificate_chain'\n"
            "certificates[1]: missing required key 'private_key'\n"
            "alpn[1]: expected a protocol name of 1 to 255 printable characters such as h2 or "
            "http/1.1\n"
            "alpn[2]: expected a protocol name of 1 to 255 printable characters such as h2 or "
            "http/1.1\n"
            "alpn[3]: expected a protocol name of 1 to 255 printable characters such as h2 or "
            "http/1.1\n"
            "alpn[4]: 'h2' is listed twice\n"
            "min_version: must not be above max_version (1.2), got 1.3\n"
            "handshake_timeout: expected a duration from 100ms to 300s, got 50ms\n"
            "ticket_key_rotation: expected a duration from 60s to 604800s, got 30s\n"
            "ticket_key_files: only with session_tickets: true\n"
            "early_data.enabled: needs session_tickets: true\n"
            "early_data.enabled: needs max_version: 1.3\n"
            "warning: client_ca: not used: verify is none (set verify: optional or required)\n"
            "verify_depth: expected an integer from 1 to 16, got 0");
  tls::ServerConfig none;
  EXPECT_EQ(issues_text(none.validate()), "(top): missing required key 'certificates'");
  // Early data comes before the client's certificate: not with client verification.
  tls::ServerConfig early;
  early.certificates.push_back({"a.pem", "a.key", ""});
  early.early_data.enabled = true;
  early.client_ca = "ca.pem";
  early.verify = tls::ClientVerify::kOptional;
  EXPECT_EQ(issues_text(early.validate()),
            "early_data.enabled: cannot be used with verify: optional or required");
}

TEST(TlsValidate, ClientRules) {
  tls::ClientConfig c;
  EXPECT_EQ(issues_text(c.validate()), "");
  c.certificate_chain = "client.pem";
  c.sni = "10.0.0.1";
  c.verify = false;
  c.ca = "ca.pem";
  EXPECT_EQ(issues_text(c.validate()),
            "(top): missing required key 'private_key'\n"
            "sni: '10.0.0.1' is an IP address; SNI takes a DNS name\n"
            "warning: ca: not used: verify is false");
  tls::ClientConfig key_only;
  key_only.private_key = "client.key";
  key_only.sni = "API.example.com.";
  EXPECT_EQ(issues_text(key_only.validate()), "(top): missing required key 'certificate_chain'");
}

}  // namespace tls_test

// A tcp listener routing by SNI to two more clusters.
constexpr const char* kSni = R"(listeners:
  - name: tls_in
    address: 127.0.0.1:7443
    protocol: tcp
    cluster: fallback
    sni_routes:
      - names: [a.example.com, "*.Example.org"]
        cluster: app_a
      - names: [B.example.com]
        cluster: app_b
    sni_timeout: 2s
clusters:
  - name: fallback
    endpoints: [{address: 127.0.0.1:8081}]
  - name: app_a
    endpoints: [{address: 127.0.0.1:8082}]
  - name: app_b
    endpoints: [{address: 127.0.0.1:8083}]
)";

TEST(Config, SniRoutes) {
  std::vector<std::string> warnings;
  auto r = load_string(kSni, "test.yaml", &warnings);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(warnings, std::vector<std::string>{});  // every cluster counts as used
  const proxy::ListenerConfig& l = *(*r)->listeners[0];
  ASSERT_EQ(l.sni_routes.size(), 2u);
  EXPECT_EQ(l.sni_routes[0].names, (std::vector<std::string>{"a.example.com", "*.Example.org"}));
  EXPECT_EQ(l.sni_routes[0].cluster, "app_a");
  EXPECT_EQ(l.sni_routes[1].names, std::vector<std::string>{"B.example.com"});
  EXPECT_EQ(l.sni_routes[1].cluster, "app_b");
  EXPECT_EQ(l.sni_timeout, std::chrono::seconds(2));

  auto plain = load_string(kGood, "test.yaml");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_TRUE((*plain)->listeners[0]->sni_routes.empty());
  EXPECT_EQ((*plain)->listeners[0]->sni_timeout, std::chrono::seconds(5));
}

TEST(Config, SniRoutesErrorsAreLocated) {
  EXPECT_EQ(error_of(replace(kSni, "cluster: app_b", "cluster: app_c")),
            "test.yaml:10:18: listeners[0].sni_routes[1].cluster: no cluster named 'app_c' "
            "(defined clusters: app_a, app_b, fallback)");
  EXPECT_EQ(error_of(replace(kSni, "[B.example.com]", "[b.example.com, A.Example.com]")),
            "test.yaml:9:32: listeners[0].sni_routes[1].names[1]: duplicate server name "
            "'A.Example.com' (first defined at line 7)");
  EXPECT_EQ(error_of(replace(kSni, "[B.example.com]", "[\"b..example\"]")),
            "test.yaml:9:17: listeners[0].sni_routes[1].names[0]: 'b..example' is not a server "
            "name (a DNS name such as api.example.com, or *.example.com for one label under a "
            "domain)");
  EXPECT_EQ(error_of(replace(kSni, "[B.example.com]", "[\"a.*.example\", 10.0.0.1]")),
            "test.yaml:9:17: listeners[0].sni_routes[1].names[0]: 'a.*.example' is not a "
            "server name (a DNS name such as api.example.com, or *.example.com for one label "
            "under a domain)\n"
            "test.yaml:9:32: listeners[0].sni_routes[1].names[1]: '10.0.0.1' is not a server "
            "name (a DNS name such as api.example.com, or *.example.com for one label under a "
            "domain)");
  EXPECT_EQ(error_of(replace(kSni, "names: [B.example.com]", "names: []")),
            "test.yaml:9:16: listeners[0].sni_routes[1].names: expected a non-empty list of "
            "server names");
  EXPECT_EQ(error_of(replace(kSni, "        cluster: app_b\n", "")),
            "test.yaml:9:9: listeners[0].sni_routes[1]: missing required key 'cluster'");
  EXPECT_EQ(error_of(replace(kSni, "sni_timeout: 2s", "sni_timeout: 0s")),
            "test.yaml:11:18: listeners[0].sni_timeout: expected a duration from 1ms to 3600s, "
            "got 0s");
  EXPECT_EQ(error_of(replace(kSni, "      - names: [B", "      - nmes: [B")),
            "test.yaml:9:9: listeners[0].sni_routes[1].nmes: unknown key (expected one of: "
            "names, cluster)");
  EXPECT_EQ(error_of(replace(kGood, "    idle_timeout: 300s", "    sni_timeout: 1s")),
            "test.yaml:7:18: listeners[0].sni_timeout: only with sni_routes");
  EXPECT_EQ(error_of(replace(kGood, "    idle_timeout: 300s", "    sni_routes: {}")),
            "test.yaml:7:17: listeners[0].sni_routes: expected a non-empty list of {names, "
            "cluster}");
}

TEST(ConfigValidate, EarlyDataOnlyOnHttpListeners) {
  proxy::ListenerConfig l;
  l.name = "tls_in";
  l.address = *net::Address::parse("127.0.0.1:7443");
  l.cluster = "app";
  l.tls.emplace();
  l.tls->certificates.push_back({"a.pem", "a.key", ""});
  l.tls->early_data.enabled = true;
  EXPECT_EQ(validate_test::issues_text(l.validate()),
            "tls.early_data: only for protocol: http (a TCP stream cannot tell what is safe to "
            "replay)");
}

TEST(ConfigValidate, SniRoutesInCode) {
  proxy::ListenerConfig l;
  l.name = "tls_in";
  l.address = *net::Address::parse("127.0.0.1:7443");
  l.cluster = "fallback";
  l.sni_routes = {
      {{"a.example.com", "*.example.com"}, "app"}, {{"A.EXAMPLE.COM", "*"}, ""}, {{}, "app"}};
  EXPECT_EQ(validate_test::issues_text(l.validate()),
            "sni_routes[1].names[0]: duplicate server name 'A.EXAMPLE.COM' (first defined at "
            "sni_routes[0].names[0])\n"
            "sni_routes[1].names[1]: '*' is not a server name (a DNS name such as "
            "api.example.com, or *.example.com for one label under a domain)\n"
            "sni_routes[1]: missing required key 'cluster'\n"
            "sni_routes[2].names: expected a non-empty list of server names");
  l.protocol = proxy::Protocol::kHttp;
  l.cluster.clear();
  l.sni_routes.resize(1);
  EXPECT_EQ(validate_test::issues_text(l.validate()),
            "sni_routes: only for protocol: tcp\n"
            "virtual_hosts: expected a non-empty list of virtual hosts");
}

// The `bgp:` block: what it loads to, and a located error for each thing it refuses.
constexpr const char* kBgpBase = R"(listeners:
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
constexpr const char* kBgpBlock = R"(bgp:
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

// The error of kBgpBase followed by a `bgp:` block.
std::string bgp_error_of(const std::string& bgp) {
  return error_of(std::string(kBgpBase) + bgp);
}

TEST(BgpConfig, LoadsWithDefaults) {
  auto r = load_string(std::string(kBgpBase) + kBgpBlock, "test.yaml");
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
  EXPECT_FALSE(load_string(kBgpBase, "test.yaml").value()->bgp);
}

TEST(BgpConfig, LocatedErrors) {
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "198.51.100.1/32", "198.51.100.1/24")),
            "test.yaml:20:15: bgp.announce[0].prefix: '198.51.100.1/24' has host bits set past "
            "/24");
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "cluster: api", "cluster: web")),
            "test.yaml:21:23: bgp.announce[0].when.cluster: no cluster named 'web'");
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "cluster: api", "listener: web")),
            "test.yaml:21:24: bgp.announce[0].when.listener: no listener named 'web'");
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "min_healthy: 50%", "min_healthy: 150%")),
            "test.yaml:21:41: bgp.announce[0].when.min_healthy: expected a count from 1 to 4096 "
            "or a percentage from 1% to 100%, got '150%'");
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "\"65001:100\"", "\"65536:1\"")),
            "test.yaml:22:21: bgp.announce[0].communities[0]: expected a community such as "
            "65000:100 (each part 0 to 65535) or graceful_shutdown, no_export, no_advertise");
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "router_id: 192.0.2.10", "router_id: me")),
            "test.yaml:12:14: bgp.router_id: expected an IPv4 address such as 192.0.2.10, got "
            "'me'");
  EXPECT_EQ(
      bgp_error_of(replace(kBgpBlock, "    - address: 192.0.2.2\n", "    - address: nowhere\n")),
      "test.yaml:15:16: bgp.peers[0].address: expected an IP address such as 192.0.2.1 or "
      "[2001:db8::1]:179, got 'nowhere'");
  EXPECT_EQ(bgp_error_of(replace(kBgpBlock, "      remote_as: 65000\n", "")),
            "test.yaml:15:7: bgp.peers[0]: missing required key 'remote_as'");
  EXPECT_EQ(
      bgp_error_of(replace(kBgpBlock, "  hold_down: 20s\n", "  hold_down: 20s\n  hold_time: 3s\n")),
      "test.yaml:14:3: bgp.hold_time: unknown key (expected one of: local_as, router_id, "
      "peers, announce, hold_down, shutdown_delay)");
  EXPECT_EQ(
      bgp_error_of(replace(kBgpBlock, "remote_as: 65000", "remote_as: 65000\n      hold_time: 2s")),
      "test.yaml:18:18: bgp.peers[0].hold_time: expected a duration from 3s to 65535s, got "
      "2s");
}

}  // namespace
}  // namespace sluice::config
