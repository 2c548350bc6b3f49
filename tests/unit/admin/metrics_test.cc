// The metrics registry: every declared line is exported with its HELP and TYPE and the
// workers' values merged exactly, lines sharing a family agree, and the JSON views and the
// exit summary come from the same declarations.
#include "admin/metrics.h"

#include "admin/dashboard.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "event/loop.h"
#include "upstream/health/health_manager.h"

namespace sluice::admin {
namespace {

using metric::Desc;
using metric::Kind;

// One struct kind of the registry, and the labels its samples carry (where it lives).
struct Component {
  std::string what;
  std::vector<Desc> lines;
  std::string scope;  // the labels the renderer adds in the fixture below
};

template <typename Stats>
Component component(std::string what, std::string scope) {
  Component c{std::move(what), {}, std::move(scope)};
  Stats{}.visit([&c](const Desc& d, const auto&) { c.lines.push_back(d); });
  return c;
}

const std::string kWeb = "listener=\"web\"";
const std::string kTcp = "listener=\"tcp_in\"";
const std::string kUdp = "listener=\"udp_in\"";
const std::string kStun = "listener=\"stun_in\"";
const std::string kRoute = "listener=\"web\",route=\"all/0\"";
const std::string kCluster = "cluster=\"app\"";
const std::string kEndpoint = "cluster=\"app\",endpoint=\"127.0.0.1:8080\"";
const std::string kSource = "cluster=\"app\",source=\"file\"";

// Every struct of the registry. A new stats struct belongs here (and in render_prometheus).
std::vector<Component> registry() {
  return {
      component<ListenerGauges>("listener gauges", kWeb),
      component<proxy::tcp::TcpProxyStats>("tcp listener", kTcp),
      component<proxy::http::HttpProxyStats>("http listener", kWeb),
      component<proxy::udp::UdpProxyStats>("udp listener", kUdp),
      component<proxy::stun::StunStats>("stun listener", kStun),
      component<proxy::http::HttpRouteStats>("route", kRoute),
      component<upstream::ClusterStats>("cluster", kCluster),
      component<ClusterGauges>("cluster gauges", kCluster),
      component<EndpointHealthGauges>("endpoint health", kEndpoint),
      component<upstream::pool::PoolStats>("pool", kEndpoint),
      component<EndpointLoadGauges>("endpoint load", kEndpoint),
      component<upstream::health::HealthStats>("health", ""),
      component<upstream::SourceStats>("endpoint source", kSource),
      component<ProcessGauges>("process", ""),
      component<dns::ResolverStats>("dns", ""),
      component<event::LoopStats>("worker loop", "worker=\"1\""),
      component<bgp::PeerStats>("bgp peer", "peer=\"192.0.2.2:179\""),
      component<bgp::PrefixStats>("bgp prefix", "prefix=\"192.0.2.1/32\""),
      component<DashboardEventStats>("dashboard events", ""),
      component<upstream::RegistrationStats>("registration", ""),
  };
}

std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "," + b;
}

// The exposition text, parsed: HELP and TYPE per family, value per sample `name{labels}`.
struct Parsed {
  std::map<std::string, std::string> help, type;
  std::map<std::string, std::string> samples;
  std::vector<std::string> order;  // families in the order written
};

Parsed parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      auto sp = line.find(' ', 7);
      std::string name = line.substr(7, sp - 7);
      EXPECT_EQ(p.help.count(name), 0u) << "two HELP lines for " << name;
      p.help[name] = line.substr(sp + 1);
      p.order.push_back(name);
    } else if (line.rfind("# TYPE ", 0) == 0) {
      auto sp = line.find(' ', 7);
      p.type[line.substr(7, sp - 7)] = line.substr(sp + 1);
    } else {
      auto sp = line.rfind(' ');
      EXPECT_NE(sp, std::string::npos) << line;
      if (sp == std::string::npos) continue;
      EXPECT_EQ(p.samples.count(line.substr(0, sp)), 0u) << "sample twice: " << line;
      p.samples[line.substr(0, sp)] = line.substr(sp + 1);
    }
  }
  return p;
}

std::string key(const std::string& name, const std::string& labels) {
  return labels.empty() ? name : name + "{" + labels + "}";
}

// Sets every line of `s` to a value of its own (`base` + its position), and gives each
// histogram `base` observations of 1 ms.
template <typename Stats>
void fill(Stats& s, uint64_t base) {
  uint64_t n = 0;
  s.visit([&](const Desc&, auto&& v) {
    using V = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<V, uint64_t>) {
      v = base + n++;
    } else if constexpr (std::is_same_v<V, Histogram>) {
      for (uint64_t i = 0; i < base; ++i) v.observe(1000);
    } else {
      for (auto& x : v) x = base + n++;
    }
  });
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest() {
    auto app = std::make_shared<upstream::ClusterConfig>();
    app->name = "app";
    app->endpoints.push_back({*net::Address::parse("127.0.0.1:8080"), 1, {}});
    clusters_.push_back(app);
    health_ = std::make_unique<upstream::health::HealthManager>(
        loop_, clusters_, [](size_t, std::shared_ptr<const upstream::health::HealthSnapshot>) {});

    auto web = std::make_shared<proxy::ListenerConfig>();
    web->name = "web";
    web->protocol = proxy::Protocol::kHttp;
    proxy::http::VirtualHost vh;
    vh.name = "all";
    vh.routes.emplace_back();
    vh.routes.back().id = 0;
    vh.routes.back().name = "all/0";
    web->http.virtual_hosts.push_back(std::move(vh));
    listeners_.push_back(web);

    // Two workers, each line of each struct with its own value: 1, 2, ... on worker 0 and
    // 1000, 1001, ... on worker 1.
    for (uint64_t base : {1u, 1000u}) {
      WorkerReport r;
      fill(r.tcp["tcp_in"], base);
      fill(r.udp["udp_in"], base);
      fill(r.stun["stun_in"], base);
      auto& h = r.http["web"];
      fill(h, base);
      h.routes.resize(1);
      fill(h.routes[0], base);
      WorkerReport::Cluster c;
      fill(c.stats, base);
      c.pools.resize(1);
      fill(c.pools[0], base);
      c.active_requests = {static_cast<uint32_t>(base)};
      r.clusters.push_back(c);
      fill(r.loop, base);
      in_.workers.push_back(std::move(r));
    }
    fill(dns_, 7);
    in_.active_connections = {{"web", 3}, {"tcp_in", 0}};
    in_.clusters = &clusters_;
    in_.listeners = &listeners_;
    in_.health = health_.get();
    in_.dns = &dns_;
    bgp::PeerStats peer;
    fill(peer, 20);
    in_.bgp_peers.emplace_back("192.0.2.2:179", peer);
    bgp::PrefixStats prefix;
    fill(prefix, 30);
    in_.bgp_prefixes.emplace_back("192.0.2.1/32", prefix);
    fill(in_.dashboard_events, 40);
    upstream::RegistrationStats registration;
    fill(registration, 40);
    registration.set_state(upstream::RegistrationState::kRegistered);
    in_.registration = registration;
    MetricsInput::Source source{"file", "/etc/sluice/app.json", upstream::SourceState::kSynced, {}};
    source.stats.set_state(upstream::SourceState::kSynced);
    source.stats.endpoints = 3;
    source.stats.updates = 4;
    source.stats.failures = 5;
    source.stats.invalid_entries = 6;
    source.stats.auth_renewals = 8;
    in_.sources["app"] = source;
  }

  event::Loop loop_;
  std::vector<std::shared_ptr<const upstream::ClusterConfig>> clusters_;
  std::vector<std::shared_ptr<const proxy::ListenerConfig>> listeners_;
  std::unique_ptr<upstream::health::HealthManager> health_;
  dns::ResolverStats dns_;
  MetricsInput in_;
};

TEST_F(MetricsTest, EveryDeclaredLineIsExportedWithItsHelpTypeAndSamples) {
  Parsed p = parse(render_prometheus(in_));
  size_t checked = 0;
  for (const auto& c : registry()) {
    for (const Desc& d : c.lines) {
      SCOPED_TRACE(c.what + ": " + d.field + " (" + d.name + ")");
      ASSERT_EQ(p.help.count(d.name), 1u) << "declared but not exported";
      EXPECT_EQ(p.help[d.name], d.help);
      EXPECT_EQ(p.type[d.name], metric::to_string(d.kind));
      std::string labels = join(c.scope, d.labels);
      if (d.kind == Kind::kHistogram) {
        EXPECT_EQ(p.samples.count(key(d.name + std::string("_count"), labels)), 1u);
        EXPECT_EQ(p.samples.count(key(d.name + std::string("_sum"), labels)), 1u);
        EXPECT_EQ(
            p.samples.count(key(d.name + std::string("_bucket"), join(labels, "le=\"+Inf\""))), 1u);
      } else if (d.dimension) {
        for (const char* v : d.dimension->values) {
          std::string l = join(labels, std::string(d.dimension->key) + "=\"" + v + "\"");
          EXPECT_EQ(p.samples.count(key(d.name, l)), 1u) << l;
        }
      } else {
        EXPECT_EQ(p.samples.count(key(d.name, labels)), 1u) << labels;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 60u);
}

TEST_F(MetricsTest, MergedCountersAreExactlyTheSumOfTheWorkers) {
  Parsed p = parse(render_prometheus(in_));
  // The per-worker structs: worker 0 holds base 1 + position, worker 1 base 1000 + position.
  for (const auto& c : registry()) {
    bool per_worker = c.what == "tcp listener" || c.what == "http listener" || c.what == "route" ||
                      c.what == "cluster" || c.what == "pool" || c.what == "udp listener" ||
                      c.what == "stun listener";
    if (!per_worker) continue;
    uint64_t n = 0;
    for (const Desc& d : c.lines) {
      SCOPED_TRACE(c.what + ": " + d.field);
      std::string labels = join(c.scope, d.labels);
      if (d.kind == Kind::kHistogram) {
        EXPECT_EQ(p.samples[key(d.name + std::string("_count"), labels)], "1001");
        EXPECT_EQ(p.samples[key(d.name + std::string("_sum"), labels)], "1.001");
      } else if (d.dimension) {
        for (const char* v : d.dimension->values) {
          std::string l = join(labels, std::string(d.dimension->key) + "=\"" + v + "\"");
          EXPECT_EQ(p.samples[key(d.name, l)], std::to_string(1 + n + 1000 + n)) << l;
          ++n;
        }
      } else {
        EXPECT_EQ(p.samples[key(d.name, labels)], std::to_string(1 + n + 1000 + n));
        ++n;
      }
    }
  }
  // Computed gauges and the main thread's structs.
  EXPECT_EQ(p.samples[key("sluice_listener_connections_active", kWeb)], "3");
  EXPECT_EQ(p.samples[key("sluice_endpoint_active_requests", kEndpoint)], "1001");
  EXPECT_EQ(p.samples[key("sluice_endpoint_usable", kEndpoint)], "1");
  EXPECT_EQ(p.samples[key("sluice_endpoint_state", kEndpoint + ",state=\"ejected\"")], "0");
  EXPECT_EQ(p.samples[key("sluice_cluster_panic", kCluster)], "0");
  EXPECT_EQ(p.samples[key("sluice_cluster_endpoint_slots", kCluster)], "1");
  EXPECT_EQ(p.samples[key("sluice_discovery_source_state", kSource + ",state=\"synced\"")], "1");
  EXPECT_EQ(p.samples[key("sluice_discovery_source_state", kSource + ",state=\"stale\"")], "0");
  EXPECT_EQ(p.samples[key("sluice_discovery_endpoints", kSource)], "3");
  EXPECT_EQ(p.samples[key("sluice_discovery_updates_total", kSource)], "4");
  EXPECT_EQ(p.samples[key("sluice_discovery_failures_total", kSource)], "5");
  EXPECT_EQ(p.samples[key("sluice_discovery_invalid_entries_total", kSource)], "6");
  EXPECT_EQ(p.samples[key("sluice_discovery_auth_renewals_total", kSource)], "8");
  EXPECT_EQ(p.samples["sluice_dns_lookups_total"], "7");
  // The speaker's levels and counters, as it reports them (uptime in seconds).
  EXPECT_EQ(p.samples["sluice_bgp_peer_state{peer=\"192.0.2.2:179\"}"], "20");
  EXPECT_EQ(p.samples["sluice_bgp_peer_uptime_seconds{peer=\"192.0.2.2:179\"}"], "2.1e-08");
  EXPECT_EQ(p.samples["sluice_bgp_peer_updates_sent_total{peer=\"192.0.2.2:179\"}"], "24");
  EXPECT_EQ(p.samples["sluice_bgp_prefix_announced{prefix=\"192.0.2.1/32\"}"], "30");
  EXPECT_EQ(p.samples["sluice_registration_state{state=\"registered\"}"], "1");
  EXPECT_EQ(p.samples["sluice_registration_state{state=\"granting\"}"], "0");
  EXPECT_EQ(p.samples["sluice_registration_grants_total"], "46");
  EXPECT_EQ(p.samples["sluice_registration_leases_lost_total"], "49");
  EXPECT_EQ(p.samples["sluice_registration_lease_ttl_seconds"], "5.1e-08");
  EXPECT_EQ(p.samples["sluice_registration_auth_renewals_total"], "52");
  EXPECT_EQ(p.samples["sluice_bgp_prefix_transitions_total{prefix=\"192.0.2.1/32\"}"], "32");
  EXPECT_EQ(p.samples["sluice_dns_stale_answers_total"], "15");
  // The dashboard's event streams (main thread: one copy, not merged).
  EXPECT_EQ(p.samples["sluice_dashboard_event_subscribers"], "40");
  EXPECT_EQ(p.samples["sluice_dashboard_event_subscriptions_total{result=\"accepted\"}"], "41");
  EXPECT_EQ(p.samples["sluice_dashboard_event_subscriptions_total{result=\"refused_full\"}"], "42");
  EXPECT_EQ(p.samples["sluice_dashboard_event_subscriptions_total{result=\"refused_draining\"}"],
            "43");
  EXPECT_EQ(p.samples["sluice_dashboard_event_builds_total"], "44");
  EXPECT_EQ(p.samples["sluice_dashboard_event_frames_total{result=\"sent\"}"], "45");
  EXPECT_EQ(p.samples["sluice_dashboard_event_frames_total{result=\"dropped\"}"], "46");
  EXPECT_EQ(p.samples["sluice_dashboard_event_ends_total{reason=\"client\"}"], "47");
  EXPECT_EQ(p.samples["sluice_dashboard_event_ends_total{reason=\"not_reading\"}"], "48");
  EXPECT_EQ(p.samples["sluice_dashboard_event_ends_total{reason=\"draining\"}"], "49");
  EXPECT_EQ(p.samples["sluice_dns_resolution_seconds_count"], "7");
  // Units: the resolver's slowest resolution (microseconds, position 9) in seconds; the
  // loop's busy time (nanoseconds, position 0) per worker, not merged.
  EXPECT_EQ(p.samples["sluice_dns_resolution_seconds_max"], "1.6e-05");
  EXPECT_EQ(p.samples[key("sluice_worker_busy_seconds_total", "worker=\"0\"")], "1e-09");
  EXPECT_EQ(p.samples[key("sluice_worker_busy_seconds_total", "worker=\"1\"")], "1e-06");
  EXPECT_EQ(p.samples[key("sluice_worker_events_total", "worker=\"1\"")], "1001");
}

TEST_F(MetricsTest, LinesSharingAFamilyAgreeAndNamesFollowTheirKind) {
  std::map<std::string, Desc> first;
  for (const auto& c : registry()) {
    std::set<std::string> fields;
    for (const Desc& d : c.lines) {
      SCOPED_TRACE(c.what + ": " + d.field + " (" + d.name + ")");
      EXPECT_TRUE(fields.insert(d.field).second) << "field declared twice";
      std::string name = d.name;
      EXPECT_EQ(name.rfind("sluice_", 0), 0u);
      bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
      EXPECT_EQ(total, d.kind == Kind::kCounter) << "counters, and only they, end in _total";
      bool seconds = name.find("_seconds") != std::string::npos;
      EXPECT_EQ(seconds, d.kind == Kind::kHistogram || metric::divisor(d.field) != 1)
          << "a _seconds family needs a field in _ns or _us (or a histogram)";
      EXPECT_NE(std::string(d.help), "");
      EXPECT_NE(std::string(d.summary), "");
      auto [it, added] = first.try_emplace(name, d);
      if (!added) {
        EXPECT_EQ(std::string(it->second.help), d.help) << "one family, one help";
        EXPECT_EQ(it->second.kind, d.kind) << "one family, one kind";
      }
    }
  }
}

// The bytes of the declared lines of `s`: equal to sizeof(Stats) when every field is one.
template <typename Stats>
size_t declared_bytes() {
  size_t bytes = 0;
  Stats{}.visit([&bytes](const Desc& d, const auto& v) {
    using V = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<V, Histogram>) {
      bytes += sizeof(Histogram);
    } else if constexpr (std::is_same_v<V, uint64_t>) {
      bytes += sizeof(uint64_t);
    } else {
      bytes += d.extent * sizeof(uint64_t);
    }
  });
  return bytes;
}

TEST(MetricDeclarations, NoStatsStructHoldsAFieldOutsideItsDeclarations) {
  // A counter added as a plain member would be counted and never exported: the structs hold
  // their declared lines and nothing else (HttpProxyStats: and its routes).
  EXPECT_EQ(sizeof(proxy::tcp::TcpProxyStats), declared_bytes<proxy::tcp::TcpProxyStats>());
  EXPECT_EQ(sizeof(proxy::udp::UdpProxyStats), declared_bytes<proxy::udp::UdpProxyStats>());
  EXPECT_EQ(sizeof(proxy::stun::StunStats), declared_bytes<proxy::stun::StunStats>());
  EXPECT_EQ(sizeof(proxy::http::HttpProxyStats),
            declared_bytes<proxy::http::HttpProxyStats>() +
                sizeof(std::vector<proxy::http::HttpRouteStats>));
  EXPECT_EQ(sizeof(proxy::http::HttpRouteStats), declared_bytes<proxy::http::HttpRouteStats>());
  EXPECT_EQ(sizeof(upstream::ClusterStats), declared_bytes<upstream::ClusterStats>());
  EXPECT_EQ(sizeof(upstream::pool::PoolStats), declared_bytes<upstream::pool::PoolStats>());
  EXPECT_EQ(sizeof(upstream::health::HealthStats), declared_bytes<upstream::health::HealthStats>());
  EXPECT_EQ(sizeof(dns::ResolverStats), declared_bytes<dns::ResolverStats>());
  EXPECT_EQ(sizeof(event::LoopStats), declared_bytes<event::LoopStats>());
}

TEST_F(MetricsTest, FamiliesAreWrittenWithoutSamplesExceptDnsWithoutAResolver) {
  MetricsInput empty;
  Parsed p = parse(render_prometheus(empty));
  for (const auto& c : registry()) {
    for (const Desc& d : c.lines) {
      EXPECT_EQ(p.help.count(d.name), c.what == "dns" ? 0u : 1u) << d.name;
    }
  }
}

TEST_F(MetricsTest, JsonViewsShowEveryDeclaredCounterAndGauge) {
  auto clusters = nlohmann::json::parse(render_clusters_json(in_));
  ASSERT_EQ(clusters.size(), 1u);
  const auto& app = clusters[0];
  EXPECT_EQ(app["lb_policy"], "round_robin");
  EXPECT_EQ(app["type"], "static");
  EXPECT_EQ(app["connect_attempts"], 1001);  // position 0 on both workers
  EXPECT_EQ(app["connect_refused"], 1 + 6 + 1000 + 6);
  const auto& ep = app["endpoints"][0];
  EXPECT_EQ(ep["active_requests"], 1001);
  EXPECT_EQ(ep["pool"]["connecting"], 1001);
  EXPECT_EQ(ep["pool"]["draining"], 1 + 3 + 1000 + 3);
  EXPECT_EQ(ep["pool"]["stale_at_checkout"], 1 + 10 + 1000 + 10);
  std::vector<std::pair<std::string, const nlohmann::json*>> views = {
      {"cluster", &app}, {"pool", &ep["pool"]}, {"endpoint load", &ep}};
  auto listeners = nlohmann::json::parse(
      render_listeners_json(in_, {{"web", "127.0.0.1:80"}, {"tcp_in", "127.0.0.1:81"}}));
  ASSERT_EQ(listeners.size(), 2u);
  EXPECT_EQ(listeners[0]["protocol"], "http");
  EXPECT_EQ(listeners[0]["responses_2xx"], 1 + 4 + 1000 + 4);
  EXPECT_EQ(listeners[1]["protocol"], "tcp");
  EXPECT_EQ(listeners[1]["bytes_to_downstream"], 1 + 12 + 1000 + 12);
  EXPECT_FALSE(listeners[1].contains("requests"));
  views.push_back({"http listener", &listeners[0]});
  views.push_back({"tcp listener", &listeners[1]});
  for (const auto& c : registry()) {
    for (const auto& [what, j] : views) {
      if (c.what != what) continue;
      for (const Desc& d : c.lines) {
        if (d.kind == Kind::kHistogram) continue;
        if (d.dimension) {
          for (const char* v : d.dimension->values) EXPECT_TRUE(j->contains(v)) << what << v;
        } else {
          EXPECT_TRUE(j->contains(d.field)) << what << ": " << d.field;
        }
      }
    }
  }
}

// The samples of the dashboard's JSON as the text writes them: `name{labels}` (labels in
// sorted order) -> value.
std::map<std::string, double> json_samples(const nlohmann::json& families) {
  std::map<std::string, double> out;
  auto put = [&out](const std::string& name, std::map<std::string, std::string> labels,
                    double value) {
    std::string l;
    for (const auto& [k, v] : labels) l = join(l, k + "=\"" + v + "\"");
    EXPECT_EQ(out.count(key(name, l)), 0u) << key(name, l);
    out[key(name, l)] = value;
  };
  for (const auto& f : families) {
    std::string name = f["name"];
    for (const auto& x : f["samples"]) {
      std::map<std::string, std::string> labels = x["labels"];
      if (f["type"] != "histogram") {
        put(name, labels, x["value"].get<double>());
        continue;
      }
      for (const auto& b : x["buckets"]) {
        auto l = labels;
        if (b[0].is_null()) {
          l["le"] = "+Inf";
        } else {
          std::ostringstream le;
          le << b[0].get<double>();
          l["le"] = le.str();
        }
        put(name + "_bucket", l, b[1].get<double>());
      }
      put(name + "_sum", labels, x["sum"].get<double>());
      put(name + "_count", labels, x["count"].get<double>());
    }
  }
  return out;
}

// `name{b="2",a="1"}` -> `name{a="1",b="2"}`.
std::string sorted_labels(const std::string& sample) {
  size_t open = sample.find('{');
  if (open == std::string::npos) return sample;
  std::vector<std::string> parts;
  std::string body = sample.substr(open + 1, sample.size() - open - 2);
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\",", at);  // label values here hold no `",`
    if (end == std::string::npos) end = body.size() - 1;
    parts.push_back(body.substr(at, end + 1 - at));
    at = end + 2;
  }
  std::sort(parts.begin(), parts.end());
  std::string out = sample.substr(0, open) + "{";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "," : "") + parts[i];
  return out + "}";
}

TEST_F(MetricsTest, DashboardJsonHasEverySampleOfMetricsWithTheSameValue) {
  Parsed text = parse(render_prometheus(in_));
  auto data = nlohmann::json::parse(render_dashboard_json(in_, DashboardInfo{}));
  std::map<std::string, double> json = json_samples(data["metrics"]);
  std::map<std::string, double> want;
  for (const auto& [sample, value] : text.samples) want[sorted_labels(sample)] = std::stod(value);
  ASSERT_GT(want.size(), 100u);
  EXPECT_EQ(json, want);
  std::vector<std::string> order;
  for (const auto& f : data["metrics"]) order.push_back(f["name"]);
  EXPECT_EQ(order, text.order);
}

TEST_F(MetricsTest, DashboardMergesTheWorkersRecentRequests) {
  in_.workers[0].recent["web"].slow = {{5000, 10, false, R"({"status":200,"target":"/a"})"}};
  in_.workers[1].recent["web"].slow = {{9000, 11, true, R"({"status":502,"target":"/b"})"},
                                       {7000, 12, false, R"({"status":200,"target":"/c"})"}};
  in_.workers[0].recent["web"].failed = {{9000, 11, true, R"({"status":502})"}};
  in_.workers[1].recent["web"].failed = {{100, 13, true, R"({"status":503})"}};
  auto data = nlohmann::json::parse(render_dashboard_json(in_, DashboardInfo{}));
  ASSERT_EQ(data["slow"].size(), 3u);
  EXPECT_EQ(data["slow"][0]["duration_us"], 9000);  // the slowest first
  EXPECT_EQ(data["slow"][0]["worker"], 1);
  EXPECT_EQ(data["slow"][0]["listener"], "web");
  EXPECT_EQ(data["slow"][0]["record"]["target"], "/b");
  EXPECT_EQ(data["slow"][1]["record"]["target"], "/c");
  EXPECT_EQ(data["slow"][2]["record"]["target"], "/a");
  ASSERT_EQ(data["failed"].size(), 2u);
  EXPECT_EQ(data["failed"][0]["record"]["status"], 503);  // the latest first
  EXPECT_EQ(data["failed"][1]["record"]["status"], 502);
  EXPECT_EQ(data["dns"], nlohmann::json::array());
}

TEST(OpenMetrics, NegotiatedByTheAcceptHeader) {
  EXPECT_TRUE(wants_openmetrics(
      "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
      "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
  EXPECT_TRUE(wants_openmetrics("text/plain, application/openmetrics-text ; q=0.5"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text;q=0"));
  EXPECT_FALSE(wants_openmetrics("application/openmetrics-text;q=0.0"));
  EXPECT_FALSE(wants_openmetrics("text/plain;version=0.0.4"));
  EXPECT_FALSE(wants_openmetrics("*/*"));
  EXPECT_FALSE(wants_openmetrics(""));
}

TEST(OpenMetrics, CounterFamiliesLoseTheirTotalSuffixAndTheTextEnds) {
  EXPECT_EQ(to_openmetrics("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
                           "# HELP b_total B.\n# TYPE b_total gauge\nb_total 1\n"),
            "# HELP a A.\n# TYPE a counter\na_total{x=\"1\"} 3\n"
            "# HELP b_total B.\n# TYPE b_total gauge\nb_total 1\n# EOF\n");
}

TEST_F(MetricsTest, OpenMetricsBucketsCarryTheRecentRequestsAsExemplars) {
  in_.workers[1].recent["web"].slow = {
      {300'000, 1'700'000'000'123, false,
       R"({"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})"}};
  std::string text = render_openmetrics(in_);
  EXPECT_NE(text.find("sluice_http_request_duration_seconds_bucket{listener=\"web\",le=\"0.5\"} "
                      "1001 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.3 "
                      "1700000000.123\n"),
            std::string::npos)
      << text.substr(text.find("sluice_http_request_duration_seconds_bucket"), 2000);
  // One exemplar in all, and none in the 0.0.4 text.
  EXPECT_EQ(text.find(" # {"), text.rfind(" # {"));
  EXPECT_EQ(render_prometheus(in_).find(" # {"), std::string::npos);
}

TEST_F(MetricsTest, OpenMetricsPoolWaitBucketsCarryExemplarsOfTheirCluster) {
  // Waited 2 ms for the pool, then 40 ms to connect: 42 ms, as the histogram counts it.
  in_.workers[0].recent["web"].slow = {
      {900'000, 1'700'000'000'500, false,
       R"({"cluster":"app","traceparent":"00-11111111111111111111111111111111-b7ad6b7169203331-01",)"
       R"("timings_us":{"pool_wait":2000,"upstream_connect":40000,"upstream_tls":-1}})"},
      // No upstream connection: no pool wait.
      {800'000, 1'700'000'000'600, true,
       R"({"cluster":"app","traceparent":"00-22222222222222222222222222222222-b7ad6b7169203331-01",)"
       R"("timings_us":{"pool_wait":-1,"upstream_connect":-1,"upstream_tls":-1}})"}};
  std::string text = render_openmetrics(in_);
  size_t at = text.find("sluice_cluster_pool_wait_seconds_bucket{cluster=\"app\",le=\"0.05\"} ");
  ASSERT_NE(at, std::string::npos) << text;
  std::string line = text.substr(at, text.find('\n', at) - at);
  // 1 + 1000 observations (the fixture's two workers), all at or below 0.05 s.
  EXPECT_EQ(line,
            "sluice_cluster_pool_wait_seconds_bucket{cluster=\"app\",le=\"0.05\"} 1001 # "
            "{trace_id=\"11111111111111111111111111111111\"} 0.042 1700000000.500");
  // Two in all: the listener's bucket le=1 shows the slower of its two requests, the
  // cluster's le=0.05 the one that waited.
  size_t count = 0;
  for (size_t p = text.find(" # {"); p != std::string::npos; p = text.find(" # {", p + 1)) ++count;
  EXPECT_EQ(count, 2u) << text;
  EXPECT_NE(
      text.find("sluice_http_request_duration_seconds_bucket{listener=\"web\",le=\"1\"} 1001 # "
                "{trace_id=\"11111111111111111111111111111111\"} 0.9 1700000000.500"),
      std::string::npos);
}

TEST(Dashboard, PercentDecodesQueryValues) {
  EXPECT_EQ(percent_decode("127.0.0.1%3A8080"), "127.0.0.1:8080");
  EXPECT_EQ(percent_decode("%5B%3A%3A1%5D%3a80"), "[::1]:80");
  EXPECT_EQ(percent_decode("a%2"), "a%2");
  EXPECT_EQ(percent_decode("a%zz+b"), "a%zz+b");
}

TEST(Dashboard, ActionTokensAreRandomHex) {
  std::string a = make_action_token(), b = make_action_token();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
}

TEST_F(MetricsTest, ExitSummaryNamesEveryCounterInDeclarationOrder) {
  MetricsInput totals;
  totals.clusters = &clusters_;
  totals.health = health_.get();
  for (int w = 0; w < 2; ++w) {
    WorkerReport r;
    auto& t = r.tcp["tcp_in"];
    t.accepted = 2;
    t.completed = 1;
    t.upstream_resets = 1;
    auto& h = r.http["web"];
    h.accepted = 3;
    h.requests = 4;
    h.responses_2xx = 4;
    h.request_duration.observe(5);  // histograms are not summarised
    upstream::ClusterStats c;
    c.connect_attempts = 5;
    c.connect_failures = 2;
    c.connect_refused = 2;
    r.clusters.push_back({.stats = c});
    totals.workers.push_back(std::move(r));
  }
  bgp::PeerStats peer;
  peer.state = 6;  // gauges are not summarised
  peer.established = 1;
  peer.updates_sent = 3;
  totals.bgp_peers.emplace_back("192.0.2.2:179", peer);
  bgp::PrefixStats prefix;
  prefix.transitions = 2;
  totals.bgp_prefixes.emplace_back("198.51.100.1/32", prefix);
  totals.dashboard_events.subscribers = 1;  // gauges are not summarised
  totals.dashboard_events.accepted = 3;
  totals.dashboard_events.refused_full = 1;
  totals.dashboard_events.builds = 5;
  totals.dashboard_events.frames_sent = 9;
  totals.dashboard_events.ended_client = 2;
  std::vector<std::string> want = {
      "listener web: accepted 6, refused (max_connections) 0, requests 8, 1xx 0, 2xx 8, 3xx 0, "
      "4xx 0, 5xx 0, answered by sluice 0, retries 0, stale-connection re-sends 0, "
      "refused-stream re-sends 0, upstream "
      "timeouts 0, rejected requests 0, trailer fields dropped 0, quick ACKs 0, HTTP/2 "
      "connections 0, HTTP/2 "
      "streams 0, HTTP/2 streams reset by clients 0, HTTP/2 streams reset by sluice 0, HTTP/2 "
      "GOAWAYs sent 0, HTTP/2 connection errors 0, HTTP/2 connections closed for abuse 0",
      "listener tcp_in: accepted 4, refused (max_connections) 0, routed by SNI 0, SNI default "
      "cluster 0, not TLS 0, malformed ClientHello 0, ClientHello timeouts 0, completed 2, idle "
      "timeouts 0, no endpoint reachable 0, closed at drain deadline 0, bytes to upstream 0, "
      "bytes to downstream 0, max duration reached 0, downstream resets 0, upstream resets 2",
      "cluster app: connect attempts 10, connect failures 4, no healthy endpoint 0, overflow "
      "(max_active_requests) 0, retries refused (breaker or budget) 0, connect timeouts 0, "
      "connects refused 4, no endpoint reachable 0, ports exhausted 0, quick ACKs 0, delayed-ACK "
      "stalls 0",
      "health: ejections 0, ejections refused (max_ejection_percent) 0, failed checks 0, panic "
      "mode entered 0, endpoint sets refused (table full) 0, endpoint slots reclaimed 0",
      "bgp peer 192.0.2.2:179: established 1, updates sent 3, updates received 0, notifications "
      "sent 0, notifications received 0",
      "bgp prefix 198.51.100.1/32: transitions 2",
      "dashboard events: accepted 3, refused (full) 1, refused (draining) 0, data builds 5, "
      "frames sent 9, frames dropped 0, ended by the client 2, closed (not reading) 0, ended "
      "(draining) 0",
  };
  EXPECT_EQ(exit_summary(totals), want);
}

TEST(PolicyNames, OneTableNamesEveryPolicyInItsOrder) {
  using upstream::lb::Policy;
  EXPECT_STREQ(upstream::lb::to_string(Policy::kRoundRobin), "round_robin");
  EXPECT_STREQ(upstream::lb::to_string(Policy::kLeastRequest), "least_request");
  EXPECT_STREQ(upstream::lb::to_string(Policy::kRandom), "random");
  EXPECT_STREQ(upstream::lb::to_string(Policy::kRingHash), "ring_hash");
  EXPECT_STREQ(upstream::lb::to_string(Policy::kMaglev), "maglev");
  EXPECT_STREQ(upstream::to_string(upstream::ClusterConfig::Type::kLogicalDns), "logical_dns");
}

}  // namespace
}  // namespace sluice::admin
