#include "admin/metrics.h"

#include "admin/exemplars.h"
#include "admin/json_views.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <type_traits>
#include <unordered_map>

#include "base/check.h"
#include "base/histogram.h"
#include "http/headers.h"
#include "net/socket_options.h"

namespace sluice::admin {
namespace {

using metric::Desc;
using metric::Kind;

// Label values: backslash, double quote and newline escaped.
std::string escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string label(const char* k, std::string_view v) {
  return fmt::format("{}=\"{}\"", k, escape(v));
}

// `a,b` without empty parts.
std::string join_labels(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  return fmt::format("{},{}", a, b);
}

// `k="v",k2="v2"` (as label() and join_labels() write them) as a JSON object.
nlohmann::json parse_labels(std::string_view text) {
  nlohmann::json out = nlohmann::json::object();
  size_t i = 0;
  while (i < text.size()) {
    size_t eq = text.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') break;
    std::string key(text.substr(i, eq - i));
    std::string value;
    size_t j = eq + 2;
    for (; j < text.size() && text[j] != '"'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
        value += text[j] == 'n' ? '\n' : text[j];
      } else {
        value += text[j];
      }
    }
    out[key] = std::move(value);
    i = j + 2;  // past the closing quote and the comma
  }
  return out;
}

// The declared metrics, as the Prometheus text or as JSON: families in the order first
// declared, each with its HELP and TYPE once and all its samples together, whichever struct
// they came from.
class Exposition {
 public:
  enum class Format { kText, kJson };
  explicit Exposition(Format format = Format::kText) : format_(format) {}

  // A bucket's exemplar (OpenMetrics): a value observed, its trace id and when it was seen.
  struct Exemplar {
    double seconds;
    std::string trace_id;
    double timestamp;  // seconds since the epoch
  };
  // Exemplars for the histogram `name` with the labels `labels` (as the samples carry them).
  void add_exemplar(std::string_view name, std::string_view labels, Exemplar e) {
    exemplars_[fmt::format("{}{{{}}}", name, labels)].push_back(std::move(e));
  }

  // Makes sure the families of Stats' lines are written, samples or not.
  template <typename Stats>
  void declare() {
    Stats{}.visit([this](const Desc& d, const auto&) { family(d); });
  }
  // The samples of every line of `s`, with the labels saying where it lives (`scope`).
  template <typename Stats>
  void put(const Stats& s, std::string_view scope) {
    s.visit([&](const Desc& d, const auto& v) { put_line(d, scope, v); });
  }
  std::string text() const {
    std::string out;
    for (const auto& f : families_) {
      fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", f.name, f.help,
                     f.name, metric::to_string(f.kind));
      out += f.samples;
    }
    return out;
  }
  // [{"name", "help", "type", "samples": [{"labels": {...}, "value"} or, for a histogram,
  // {"labels", "buckets": [[le seconds, cumulative count], ..., [null, count]], "sum",
  // "count"}]}]
  nlohmann::json json() const {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : families_) {
      out.push_back({{"name", f.name},
                     {"help", f.help},
                     {"type", metric::to_string(f.kind)},
                     {"samples", f.json.is_null() ? nlohmann::json::array() : f.json}});
    }
    return out;
  }

 private:
  struct Family {
    const char* name;
    const char* help;
    Kind kind;
    std::string samples;
    nlohmann::json json;
  };

  Family& family(const Desc& d) {
    auto [it, added] = index_.try_emplace(d.name, families_.size());
    if (added) families_.push_back(Family{d.name, d.help, d.kind, {}, {}});
    Family& f = families_[it->second];
    // Lines sharing a family agree on its kind (metrics_test checks the help too).
    SLUICE_CHECK(f.kind == d.kind);
    return f;
  }

  template <typename Value>
  void sample(Family& f, std::string_view suffix, std::string_view labels, Value value) {
    if (format_ == Format::kJson) {
      f.json.push_back({{"labels", parse_labels(labels)}, {"value", value}});
      return;
    }
    f.samples += f.name;
    f.samples += suffix;
    if (!labels.empty()) {
      f.samples += '{';
      f.samples += labels;
      f.samples += '}';
    }
    fmt::format_to(std::back_inserter(f.samples), " {}\n", value);
  }

  void value(Family& f, const Desc& d, const std::string& labels, uint64_t v) {
    double divisor = metric::divisor(d.field);
    if (divisor == 1) {
      sample(f, "", labels, v);
    } else {
      sample(f, "", labels, static_cast<double>(v) / divisor);
    }
  }

  void put_line(const Desc& d, std::string_view scope, uint64_t v) {
    value(family(d), d, join_labels(scope, d.labels), v);
  }

  void put_line(const Desc& d, std::string_view scope, std::span<const uint64_t> values) {
    Family& f = family(d);
    std::string base = join_labels(scope, d.labels);
    for (size_t i = 0; i < values.size(); ++i) {
      value(f, d, join_labels(base, label(d.dimension->key, d.dimension->values[i])), values[i]);
    }
  }

  void put_line(const Desc& d, std::string_view scope, const Histogram& h) {
    Family& f = family(d);
    std::string labels = join_labels(scope, d.labels);
    if (format_ == Format::kJson) {
      nlohmann::json buckets = nlohmann::json::array();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < Histogram::kBoundsUs.size(); ++i) {
        cumulative += h.bucket(i);
        buckets.push_back({static_cast<double>(Histogram::kBoundsUs[i]) / 1e6, cumulative});
      }
      cumulative += h.bucket(Histogram::kBoundsUs.size());
      buckets.push_back({nullptr, cumulative});
      f.json.push_back({{"labels", parse_labels(labels)},
                        {"buckets", std::move(buckets)},
                        {"sum", static_cast<double>(h.sum_us()) / 1e6},
                        {"count", cumulative}});
      return;
    }
    auto ex = exemplars_.find(fmt::format("{}{{{}}}", d.name, labels));
    // The exemplar of the bucket (lower, upper], if one was seen there.
    auto exemplar = [&](double lower, double upper) {
      if (ex == exemplars_.end()) return;
      for (const auto& e : ex->second) {
        if (e.seconds > lower && e.seconds <= upper) {
          f.samples.pop_back();  // the newline
          fmt::format_to(std::back_inserter(f.samples), " # {{trace_id=\"{}\"}} {} {:.3f}\n",
                         e.trace_id, e.seconds, e.timestamp);
          return;
        }
      }
    };
    uint64_t cumulative = 0;
    double lower = -1;
    for (size_t i = 0; i < Histogram::kBoundsUs.size(); ++i) {
      cumulative += h.bucket(i);
      double upper = static_cast<double>(Histogram::kBoundsUs[i]) / 1e6;
      sample(f, "_bucket", join_labels(labels, fmt::format("le=\"{}\"", upper)), cumulative);
      exemplar(lower, upper);
      lower = upper;
    }
    cumulative += h.bucket(Histogram::kBoundsUs.size());
    sample(f, "_bucket", join_labels(labels, "le=\"+Inf\""), cumulative);
    exemplar(lower, std::numeric_limits<double>::infinity());
    sample(f, "_sum", labels, static_cast<double>(h.sum_us()) / 1e6);
    sample(f, "_count", labels, cumulative);
  }

  Format format_;
  std::vector<Family> families_;
  std::unordered_map<std::string_view, size_t> index_;
  std::map<std::string, std::vector<Exemplar>> exemplars_;
};

// The counters and gauges of `s` as JSON members named after their fields (an array field:
// one member per label value). Histograms are left to /metrics.
template <typename Stats>
void put_json(nlohmann::json& j, const Stats& s) {
  s.visit([&j](const Desc& d, const auto& v) {
    using V = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<V, uint64_t>) {
      j[d.field] = v;
    } else if constexpr (std::is_same_v<V, std::span<const uint64_t>>) {
      for (size_t i = 0; i < v.size(); ++i) j[d.dimension->values[i]] = v[i];
    }
  });
}

// "accepted 3, refused (max_connections) 0, ...": the counters of `s` by their summary words.
template <typename Stats>
std::string summary(const Stats& s) {
  std::string out;
  s.visit([&out](const Desc& d, const auto& v) {
    using V = std::decay_t<decltype(v)>;
    if (d.kind != Kind::kCounter) return;
    if constexpr (std::is_same_v<V, uint64_t>) {
      fmt::format_to(std::back_inserter(out), "{}{} {}", out.empty() ? "" : ", ", d.summary, v);
    } else if constexpr (std::is_same_v<V, std::span<const uint64_t>>) {
      for (size_t i = 0; i < v.size(); ++i) {
        fmt::format_to(std::back_inserter(out), "{}{} {} {}", out.empty() ? "" : ", ", d.summary,
                       d.dimension->values[i], v[i]);
      }
    }
  });
  return out;
}

// The workers' copies merged.
struct Merged {
  std::map<std::string, proxy::tcp::TcpProxyStats> tcp;
  std::map<std::string, proxy::http::HttpProxyStats> http;
  std::map<std::string, tls::ListenerTlsStats> tls;
  std::map<std::string, proxy::udp::UdpProxyStats> udp;
  std::map<std::string, proxy::stun::StunStats> stun;
  std::vector<upstream::ClusterStats> clusters;
  // Per cluster, per endpoint index.
  std::vector<std::vector<upstream::pool::PoolStats>> pools;
  std::vector<std::vector<EndpointLoadGauges>> load;
};

Merged merge(const MetricsInput& in) {
  Merged m;
  size_t nclusters = in.clusters ? in.clusters->size() : 0;
  m.clusters.resize(nclusters);
  m.pools.resize(nclusters);
  m.load.resize(nclusters);
  for (const auto& r : in.workers) {
    for (const auto& [name, s] : r.tcp) m.tcp[name].add(s);
    for (const auto& [name, s] : r.http) m.http[name].add(s);
    for (const auto& [name, s] : r.tls) m.tls[name].add(s);
    for (const auto& [name, s] : r.udp) m.udp[name].add(s);
    for (const auto& [name, s] : r.stun) m.stun[name].add(s);
    for (size_t i = 0; i < nclusters; ++i) {
      if (in.index_of(i) >= r.clusters.size()) continue;
      const auto& c = r.clusters[in.index_of(i)];
      m.clusters[i].add(c.stats);
      size_t n = std::max(c.pools.size(), c.active_requests.size());
      if (m.pools[i].size() < n) {
        m.pools[i].resize(n);
        m.load[i].resize(n);
      }
      for (size_t e = 0; e < c.pools.size(); ++e) m.pools[i][e].add(c.pools[e]);
      for (size_t e = 0; e < c.active_requests.size(); ++e) {
        m.load[i][e].active_requests += c.active_requests[e];
      }
    }
  }
  return m;
}

// Every declared metric of `in` into `x`.
void expose(const MetricsInput& in, Exposition& x) {
  Merged m = merge(in);
  size_t nclusters = m.clusters.size();
  // Every family, in this order, whether it has samples or not.
  x.declare<ListenerGauges>();
  x.declare<proxy::tcp::TcpProxyStats>();
  x.declare<proxy::http::HttpProxyStats>();
  x.declare<proxy::http::HttpRouteStats>();
  x.declare<tls::ListenerTlsStats>();
  x.declare<proxy::udp::UdpProxyStats>();
  x.declare<proxy::stun::StunStats>();
  x.declare<upstream::ClusterStats>();
  x.declare<ClusterGauges>();
  x.declare<EndpointHealthGauges>();
  x.declare<upstream::pool::PoolStats>();
  x.declare<EndpointLoadGauges>();
  x.declare<upstream::health::HealthStats>();
  x.declare<upstream::SourceStats>();
  x.declare<ProcessGauges>();
  x.declare<CertificateGauges>();
  if (in.dns) x.declare<dns::ResolverStats>();
  x.declare<event::LoopStats>();
  x.declare<bgp::PeerStats>();
  x.declare<bgp::PrefixStats>();
  x.declare<DashboardEventStats>();
  x.declare<upstream::RegistrationStats>();

  for (const auto& [name, n] : in.active_connections) {
    x.put(ListenerGauges{.connections_active = n}, label("listener", name));
  }
  for (const auto& [name, s] : m.tcp) x.put(s, label("listener", name));
  for (const auto& [name, s] : m.http) x.put(s, label("listener", name));
  for (const auto& [name, s] : m.tls) x.put(s, label("listener", name));
  for (const auto& [name, s] : m.udp) x.put(s, label("listener", name));
  for (const auto& [name, s] : m.stun) x.put(s, label("listener", name));
  if (in.listeners) {
    // Per route, labelled with the route's name (configured, or "<virtual host>/<index>").
    for (const auto& l : *in.listeners) {
      auto it = m.http.find(l->name);
      if (it == m.http.end()) continue;
      for (const auto& vh : l->http.virtual_hosts) {
        for (const auto& r : vh.routes) {
          if (r.id < it->second.routes.size()) {
            x.put(it->second.routes[r.id],
                  label("listener", l->name) + "," + label("route", r.name));
          }
        }
      }
    }
  }

  auto endpoint_name = [&](size_t i, size_t e) {
    if (in.health) {
      const auto& snap = in.health->snapshot(in.index_of(i));
      if (e < snap.endpoints->size()) return (*snap.endpoints)[e].address.to_string();
    }
    return std::string("?");
  };
  for (size_t i = 0; i < nclusters; ++i) {
    const std::string cl = label("cluster", (*in.clusters)[i]->name);
    x.put(m.clusters[i], cl);
    if (in.health) {
      const auto& snap = in.health->snapshot(in.index_of(i));
      x.put(ClusterGauges{.panic = snap.panic, .endpoint_slots = snap.flags.size()}, cl);
      for (size_t e = 0; e < snap.flags.size(); ++e) {
        uint8_t f = snap.flags[e];
        if (f & upstream::health::kRemoved) continue;
        x.put(
            EndpointHealthGauges{
                .usable = f == 0,
                .health_check_failed = (f & upstream::health::kFailedActiveCheck) != 0,
                .ejected = (f & upstream::health::kEjected) != 0,
                .draining = (f & upstream::health::kDraining) != 0,
                .ejections = in.health->ejections(in.index_of(i), e),
            },
            cl + "," + label("endpoint", (*snap.endpoints)[e].address.to_string()));
      }
    }
    for (size_t e = 0; e < m.pools[i].size(); ++e) {
      if (in.health) {
        // A free slot has no endpoint (its last one's address may be listed in another).
        const auto& snap = in.health->snapshot(in.index_of(i));
        if (e >= snap.flags.size() || (snap.flags[e] & upstream::health::kFree)) continue;
      }
      std::string l = cl + "," + label("endpoint", endpoint_name(i, e));
      x.put(m.pools[i][e], l);
      x.put(m.load[i][e], l);
    }
  }
  if (in.health) x.put(in.health->stats(), "");
  for (const auto& [cluster, s] : in.sources) {
    x.put(s.stats, label("cluster", cluster) + "," + label("source", s.kind));
  }
  x.put(ProcessGauges{.ephemeral_ports = net::ephemeral_port_count()}, "");
  auto wall_now = std::chrono::system_clock::now();
  for (const auto& cert : in.certificates) {
    auto left = std::chrono::duration_cast<std::chrono::seconds>(cert.not_after - wall_now);
    x.put(CertificateGauges{.expiry_seconds =
                                left.count() > 0 ? static_cast<uint64_t>(left.count()) : 0,
                            .reloads = cert.reloads,
                            .reload_failures = cert.reload_failures},
          label("listener", cert.listener) + "," + label("certificate", cert.file));
  }
  if (in.dns) x.put(*in.dns, "");
  for (size_t i = 0; i < in.workers.size(); ++i) {
    x.put(in.workers[i].loop, fmt::format("worker=\"{}\"", i));
  }
  for (const auto& [peer, s] : in.bgp_peers) x.put(s, label("peer", peer));
  for (const auto& [prefix, s] : in.bgp_prefixes) x.put(s, label("prefix", prefix));
  x.put(in.dashboard_events, "");
  if (in.registration) x.put(*in.registration, "");
}

}  // namespace

std::string render_prometheus(const MetricsInput& in) {
  Exposition x;
  expose(in, x);
  return x.text();
}

std::string render_openmetrics(const MetricsInput& in) {
  Exposition x;
  for (auto& e : recent_exemplars(in)) {
    x.add_exemplar(e.family, label(e.label_key, e.label_value),
                   {e.seconds, std::move(e.trace_id), e.timestamp});
  }
  expose(in, x);
  return x.text();
}

std::string to_openmetrics(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  // The counter families: their HELP line comes before their TYPE line.
  std::set<std::string, std::less<>> counters;
  for (size_t at = text.find("# TYPE "); at != std::string_view::npos;
       at = text.find("# TYPE ", at + 1)) {
    size_t end = text.find('\n', at);
    std::string_view line = text.substr(at + 7, end - at - 7);
    size_t sp = line.find(' ');
    if (line.substr(sp + 1) == "counter") counters.emplace(line.substr(0, sp));
  }
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end == std::string_view::npos ? text.size() : end + 1);
    text.remove_prefix(line.size());
    for (std::string_view meta : {"# HELP ", "# TYPE "}) {
      if (line.substr(0, meta.size()) != meta) continue;
      std::string_view rest = line.substr(meta.size());
      std::string_view name = rest.substr(0, rest.find(' '));
      if (counters.count(name) && name.ends_with("_total")) {
        out += meta;
        out += name.substr(0, name.size() - 6);
        line = rest.substr(name.size());
      }
    }
    out += line;
  }
  out += "# EOF\n";
  return out;
}

bool wants_openmetrics(std::string_view accept) {
  bool wants = false;
  http::for_each_token(accept, [&wants](std::string_view range) {
    size_t semi = range.find(';');
    std::string_view type = range.substr(0, semi);
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    if (type != "application/openmetrics-text") return;
    // A q of 0 refuses it.
    size_t q = range.find("q=", semi == std::string_view::npos ? range.size() : semi);
    if (q != std::string_view::npos && range.substr(q + 2, 1) == "0" &&
        range.substr(q + 2).find_first_of("123456789") == std::string_view::npos) {
      return;
    }
    wants = true;
  });
  return wants;
}

nlohmann::json metrics_json(const MetricsInput& in) {
  Exposition x(Exposition::Format::kJson);
  expose(in, x);
  return x.json();
}

std::vector<std::string> exit_summary(const MetricsInput& in) {
  Merged m = merge(in);
  std::vector<std::string> lines;
  for (const auto& [name, s] : m.http)
    lines.push_back(fmt::format("listener {}: {}", name, summary(s)));
  for (const auto& [name, s] : m.tcp)
    lines.push_back(fmt::format("listener {}: {}", name, summary(s)));
  for (const auto& [name, s] : m.tls)
    lines.push_back(fmt::format("listener {} tls: {}", name, summary(s)));
  for (const auto& [name, s] : m.udp)
    lines.push_back(fmt::format("listener {}: {}", name, summary(s)));
  for (const auto& [name, s] : m.stun)
    lines.push_back(fmt::format("listener {}: {}", name, summary(s)));
  for (size_t i = 0; i < m.clusters.size(); ++i) {
    lines.push_back(fmt::format("cluster {}: {}", (*in.clusters)[i]->name, summary(m.clusters[i])));
  }
  if (in.health) lines.push_back("health: " + summary(in.health->stats()));
  if (in.dns) lines.push_back("dns: " + summary(*in.dns));
  for (const auto& [peer, s] : in.bgp_peers)
    lines.push_back("bgp peer " + peer + ": " + summary(s));
  for (const auto& [prefix, s] : in.bgp_prefixes) {
    lines.push_back("bgp prefix " + prefix + ": " + summary(s));
  }
  if (in.dashboard_events.accepted || in.dashboard_events.refused_full ||
      in.dashboard_events.refused_draining) {
    lines.push_back("dashboard events: " + summary(in.dashboard_events));
  }
  if (in.registration) lines.push_back("registration: " + summary(*in.registration));
  return lines;
}

namespace {

nlohmann::json tcp_json(const net::TcpInfo& t) {
  return {{"rtt_us", t.rtt_us},
          {"rttvar_us", t.rttvar_us},
          {"min_rtt_us", t.min_rtt_us},
          {"retransmits", t.retransmits},
          {"total_retransmits", t.total_retrans},
          {"lost", t.lost},
          {"cwnd", t.snd_cwnd},
          {"ssthresh", t.snd_ssthresh},
          {"mss", t.snd_mss},
          {"delivery_rate_bytes_per_s", t.delivery_rate},
          {"bytes_acked", t.bytes_acked},
          {"bytes_received", t.bytes_received},
          {"congestion", t.congestion}};
}

}  // namespace

std::string render_clusters_json(const MetricsInput& in) {
  return clusters_json(in).dump(2) + "\n";
}

nlohmann::json clusters_json(const MetricsInput& in) {
  Merged m = merge(in);
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < m.clusters.size(); ++i) {
    const auto& cfg = *(*in.clusters)[i];
    nlohmann::json c;
    c["name"] = cfg.name;
    c["type"] = upstream::to_string(cfg.type);
    c["lb_policy"] = upstream::lb::to_string(cfg.lb.policy);
    c["protocol"] = upstream::to_string(cfg.protocol);
    put_json(c, m.clusters[i]);
    if (auto s = in.sources.find(cfg.name); s != in.sources.end()) {
      nlohmann::json source;
      source["type"] = s->second.kind;
      source["target"] = s->second.target;
      source["state"] = upstream::to_string(s->second.state);
      source["endpoints"] = s->second.stats.endpoints;
      source["updates"] = s->second.stats.updates;
      source["failures"] = s->second.stats.failures;
      source["invalid_entries"] = s->second.stats.invalid_entries;
      c["source"] = std::move(source);
    }
    nlohmann::json eps = nlohmann::json::array();
    if (in.health) {
      const auto& snap = in.health->snapshot(in.index_of(i));
      c["panic"] = snap.panic;
      c["endpoint_slots"] = snap.flags.size();
      for (size_t e = 0; e < snap.flags.size(); ++e) {
        uint8_t f = snap.flags[e];
        if (f & upstream::health::kFree) continue;  // no endpoint there
        nlohmann::json ep;
        ep["address"] = (*snap.endpoints)[e].address.to_string();
        ep["weight"] = (*snap.endpoints)[e].weight;
        if (!(*snap.endpoints)[e].fallbacks.empty()) {
          // logical_dns: the rest of the answer, raced after `address` by each connect.
          nlohmann::json fb = nlohmann::json::array();
          for (const auto& a : (*snap.endpoints)[e].fallbacks) fb.push_back(a.to_string());
          ep["fallbacks"] = std::move(fb);
        }
        ep["usable"] = f == 0;
        ep["health_check_failed"] = (f & upstream::health::kFailedActiveCheck) != 0;
        if (cfg.health_check.type != upstream::health::HealthCheckConfig::Type::kNone) {
          ep["last_check"] = in.health->last_check(in.index_of(i), e);
        }
        ep["ejected"] = (f & upstream::health::kEjected) != 0;
        ep["ejections"] = in.health->ejections(in.index_of(i), e);
        ep["draining"] = (f & upstream::health::kDraining) != 0;
        ep["removed"] = (f & upstream::health::kRemoved) != 0;
        bool known = e < m.pools[i].size();
        put_json(ep, known ? m.load[i][e] : EndpointLoadGauges{});
        nlohmann::json pool = nlohmann::json::object();
        put_json(pool, known ? m.pools[i][e] : upstream::pool::PoolStats{});
        ep["pool"] = std::move(pool);
        eps.push_back(std::move(ep));
      }
    }
    c["endpoints"] = std::move(eps);
    out.push_back(std::move(c));
  }
  return out;
}

std::string render_listeners_json(
    const MetricsInput& in, const std::vector<std::pair<std::string, std::string>>& addresses) {
  return listeners_json(in, addresses).dump(2) + "\n";
}

nlohmann::json listeners_json(const MetricsInput& in,
                              const std::vector<std::pair<std::string, std::string>>& addresses) {
  Merged m = merge(in);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, address] : addresses) {
    nlohmann::json l;
    l["name"] = name;
    l["address"] = address;
    auto it = in.active_connections.find(name);
    l["active_connections"] = it == in.active_connections.end() ? 0u : it->second;
    if (auto h = m.http.find(name); h != m.http.end()) {
      l["protocol"] = "http";
      put_json(l, h->second);
    } else if (auto u = m.udp.find(name); u != m.udp.end()) {
      l["protocol"] = "udp";
      put_json(l, u->second);
    } else if (auto st = m.stun.find(name); st != m.stun.end()) {
      l["protocol"] = "stun";
      put_json(l, st->second);
    } else {
      auto t = m.tcp.find(name);
      l["protocol"] = "tcp";
      put_json(l, t != m.tcp.end() ? t->second : proxy::tcp::TcpProxyStats{});
    }
    out.push_back(std::move(l));
  }
  return out;
}

std::string render_connections_json(const MetricsInput& in, std::string_view cluster,
                                    std::string_view listener) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t w = 0; w < in.workers.size(); ++w) {
    for (const auto& c : in.workers[w].connections) {
      if (!cluster.empty() && (c.role != "upstream" || c.owner != cluster)) continue;
      if (!listener.empty() && (c.role != "downstream" || c.owner != listener)) continue;
      nlohmann::json j;
      j["worker"] = w;
      j["role"] = c.role;
      j[c.role == "upstream" ? "cluster" : "listener"] = c.owner;
      j["state"] = c.state;
      if (!c.sni.empty()) j["sni"] = c.sni;
      if (!c.tls_version.empty()) {
        j["tls"] = {
            {"version", c.tls_version}, {"cipher", c.tls_cipher}, {"resumed", c.tls_resumed}};
      }
      if (c.http2) {
        j["http2"] = {{"streams", c.streams},
                      {"abuse_score", c.abuse_score},
                      {"goaway", c.goaway},
                      {"send_window", c.send_window},
                      {"receive_window", c.receive_window}};
      }
      j["local"] = c.local.to_string();
      j["peer"] = c.peer.to_string();
      if (c.tcp) j["tcp_info"] = tcp_json(*c.tcp);
      if (c.queues) {
        j["kernel_queue"] = {{"unsent_bytes", c.queues->unsent},
                             {"unacked_bytes", c.queues->unacked},
                             {"unread_bytes", c.queues->unread}};
      }
      out.push_back(std::move(j));
    }
  }
  return out.dump(2) + "\n";
}

}  // namespace sluice::admin
