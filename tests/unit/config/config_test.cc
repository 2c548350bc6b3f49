#include "config/config.h"

#include <gtest/gtest.h>

#include <string>

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
            "idle_timeout, max_duration, splice, http, virtual_hosts, hash_key, access_log, "
            "sni_routes, sni_timeout)");
}

TEST(Config, WrongType) {
  EXPECT_EQ(error_of(replace(kGood, "workers: 2", "workers: many")),
            "test.yaml:1:10: workers: expected an integer, got 'many'");
  EXPECT_EQ(error_of(replace(kGood, "  - name: backends", "  - name: [a, b]")),
            "test.yaml:9:11: clusters[0].name: expected a string");
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
  EXPECT_EQ(error_of(replace(kGood, "protocol: tcp", "protocol: sctp")),
            "test.yaml:5:15: listeners[0].protocol: expected one of: tcp, http, got 'sctp'");
  EXPECT_EQ(error_of(std::string("log_level: loud\n") + kGood),
            "test.yaml:1:12: log_level: expected one of: debug, info, warn, error, got 'loud'");
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

}  // namespace
}  // namespace sluice::config
