#include "config/config_diff.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <concepts>
#include <string_view>

namespace sluice::config {
namespace {

using proxy::ListenerConfig;
using proxy::http::Route;
using proxy::http::VirtualHost;
using upstream::ClusterConfig;

// What a reload does about a change, as the line's closing words.
constexpr std::string_view kNewConnections = "new connections only";
constexpr std::string_view kNewRequests = "new requests only";
constexpr std::string_view kAtOnce = "applies at once";

// ---- How values read in a line. Every overload is declared before the templates that call
// them, so that the templates find them.

std::string show(const std::string& s) {
  return s.empty() ? "none" : s;
}
std::string show(bool b) {
  return b ? "true" : "false";
}
std::string show(Duration d) {
  return format_duration(d);
}
template <std::integral I>
std::string show(I v) {
  return std::to_string(v);
}
std::string show(const net::Address& a) {
  return a.to_string();
}
std::string show(log::Level l) {
  constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
  return kNames[static_cast<int>(l)];
}
std::string show(proxy::Protocol p) {
  return proxy::to_string(p);
}
std::string show(proxy::udp::UdpOptions::SessionKey k) {
  return proxy::udp::kSessionKeyNames[static_cast<size_t>(k)];
}
std::string show(ListenerConfig::HashKey k) {
  return k == ListenerConfig::HashKey::kSourceIp ? "source_ip" : "source_ip_port";
}
std::string show(proxy::AccessLogConfig::Mode m) {
  constexpr const char* kNames[] = {"all", "errors_and_slow", "sample"};
  return kNames[static_cast<int>(m)];
}
std::string show(ClusterConfig::Type t) {
  return upstream::to_string(t);
}
std::string show(ClusterConfig::Protocol p) {
  return upstream::to_string(p);
}
std::string show(ClusterConfig::OnAddressChange c) {
  constexpr const char* kNames[] = {"drain", "keep", "close"};
  return kNames[static_cast<int>(c)];
}
std::string show(upstream::lb::Policy p) {
  return upstream::lb::to_string(p);
}
std::string show(upstream::health::HealthCheckConfig::Type t) {
  constexpr const char* kNames[] = {"none", "tcp", "http", "grpc"};
  return kNames[static_cast<int>(t)];
}
std::string show(tls::Version v) {
  return tls::to_string(v);
}
std::string show(tls::ClientVerify v) {
  return tls::kClientVerifyNames[static_cast<int>(v)];
}
std::string show(dns::Family f) {
  constexpr const char* kNames[] = {"v4", "v6", "both"};
  return kNames[static_cast<int>(f)];
}
std::string show(const tls::CertificateConfig& c) {
  std::string s = fmt::format("{} (key {}", c.certificate_chain, c.private_key);
  if (!c.ocsp_response.empty()) s += ", ocsp " + c.ocsp_response;
  return s + ")";
}
std::string show(const proxy::http::RouteMatch& m) {
  using Kind = proxy::http::RouteMatch::PathKind;
  std::string s = m.path_kind == Kind::kPrefix  ? "prefix "
                  : m.path_kind == Kind::kExact ? "path "
                                                : "regex ";
  s += m.path;
  auto pairs = [](const auto& list) {
    std::vector<std::string> out;
    for (const auto& p : list) out.push_back(p.value ? p.name + "=" + *p.value : p.name);
    return fmt::format("[{}]", fmt::join(out, ", "));
  };
  if (!m.methods.empty()) s += fmt::format(" methods [{}]", fmt::join(m.methods, ", "));
  if (!m.headers.empty()) s += " headers " + pairs(m.headers);
  if (!m.query.empty()) s += " query " + pairs(m.query);
  return s;
}
std::string show(Route::Action a) {
  constexpr const char* kNames[] = {"forward", "redirect", "direct_response"};
  return kNames[static_cast<int>(a)];
}
std::string show(const upstream::DnsTarget& t) {
  return fmt::format("{}:{}", t.host, t.port);
}

template <typename T>
std::string show(const std::optional<T>& o);
template <typename T>
std::string show(const std::vector<T>& v);

template <typename T>
std::string show(const std::optional<T>& o) {
  return o ? show(*o) : "none";
}
template <typename T>
std::string show(const std::vector<T>& v) {
  std::vector<std::string> items;
  for (const auto& x : v) items.push_back(show(x));
  return fmt::format("[{}]", fmt::join(items, ", "));
}

// The lines found so far.
class Report {
 public:
  void add(ChangeSection section, std::string text) {
    changes_.push_back({section, std::move(text)});
  }
  // Grouped by section, each group in the order the lines were added.
  std::vector<ConfigChange> take() {
    std::stable_sort(changes_.begin(), changes_.end(),
                     [](const auto& a, const auto& b) { return a.section < b.section; });
    return std::move(changes_);
  }

 private:
  std::vector<ConfigChange> changes_;
};

// One block compared field by field: each field named here that differs gives the line
// "PREFIX KEY OLD -> NEW (EFFECT)". `rest_` is the old block with every named field taken
// from the new one, so whatever differs beyond them still gives one line ("other settings
// changed"): a field added to a struct is reported, if only in general words, without
// being listed here.
template <typename T>
class FieldDiff {
 public:
  FieldDiff(Report& report, ChangeSection section, std::string prefix, const T& before,
            const T& after)
      : report_(report),
        section_(section),
        prefix_(std::move(prefix)),
        before_(before),
        after_(after),
        rest_(before) {}

  // A value shown as OLD -> NEW. `get` reaches the field: [](auto& t) -> auto& {...}.
  template <typename Get>
  void value(std::string_view key, Get get, std::string_view effect) {
    const auto& a = get(before_);
    const auto& b = get(after_);
    get(rest_) = b;
    if (!(a == b)) line(fmt::format("{} {} -> {}", key, show(a), show(b)), effect);
  }
  // A block shown only as changed: in what the fields named before it do not cover.
  template <typename Get>
  void block(std::string_view key, Get get, std::string_view effect) {
    bool changed = !(get(rest_) == get(after_));
    get(rest_) = get(after_);
    if (changed) line(fmt::format("{} changed", key), effect);
  }
  // A field the caller reports in its own words.
  template <typename Get>
  void skip(Get get) {
    get(rest_) = get(after_);
  }
  // Call last.
  void rest(std::string_view effect) {
    if (!(rest_ == after_)) line("other settings changed", effect);
  }
  void line(std::string_view what, std::string_view effect) {
    report_.add(section_, effect.empty() ? fmt::format("{}{}", prefix_, what)
                                         : fmt::format("{}{} ({})", prefix_, what, effect));
  }

 private:
  Report& report_;
  ChangeSection section_;
  std::string prefix_;
  const T& before_;
  const T& after_;
  T rest_;
};

#define AT(member)       \
  [](auto& t) -> auto& { \
    return t.member;     \
  }

// ---- Listeners

// What was configured: the certificates the loader read are not part of it.
bool same_listener(ListenerConfig a, ListenerConfig b) {
  a.cert_store = nullptr;
  b.cert_store = nullptr;
  return a == b;
}

void diff_server_tls(Report& report, const std::string& who, const tls::ServerConfig& a,
                     const tls::ServerConfig& b) {
  FieldDiff<tls::ServerConfig> d(report, ChangeSection::kTls, who + ": tls.", a, b);
  d.value("certificates", AT(certificates), kNewConnections);
  d.value("alpn", AT(alpn), kNewConnections);
  d.value("min_version", AT(min_version), kNewConnections);
  d.value("max_version", AT(max_version), kNewConnections);
  d.value("require_sni", AT(require_sni), kNewConnections);
  d.value("handshake_timeout", AT(handshake_timeout), kNewConnections);
  d.value("session_tickets", AT(session_tickets), kNewConnections);
  d.value("ticket_key_rotation", AT(ticket_key_rotation), kNewConnections);
  d.value("ticket_key_files", AT(ticket_key_files), kNewConnections);
  d.value("early_data.enabled", AT(early_data.enabled), kNewConnections);
  d.value("early_data.reject_unsafe", AT(early_data.reject_unsafe), kNewConnections);
  d.value("early_data.max_early_data", AT(early_data.max_early_data), kNewConnections);
  d.value("client_ca", AT(client_ca), kNewConnections);
  d.value("verify", AT(verify), kNewConnections);
  d.value("verify_depth", AT(verify_depth), kNewConnections);
  d.value("ktls", AT(ktls), kNewConnections);
  d.rest(kNewConnections);
}

void diff_http2(Report& report, FieldDiff<ListenerConfig>& d, const ListenerConfig& a,
                const ListenerConfig& b) {
  d.skip(AT(http.http2));
  if (!a.http.http2 && !b.http.http2) return;
  if (!a.http.http2 || !b.http.http2) {
    d.line(b.http.http2 ? "http2 enabled" : "http2 disabled", kNewConnections);
    return;
  }
  FieldDiff<proxy::http::Http2Options> h(report, ChangeSection::kListener,
                                         "listener " + b.name + ": http2.", *a.http.http2,
                                         *b.http.http2);
  h.value("prior_knowledge", AT(prior_knowledge), kNewConnections);
  h.value("max_concurrent_streams", AT(codec.max_concurrent_streams), kNewConnections);
  h.value("initial_stream_window", AT(codec.initial_stream_window), kNewConnections);
  h.value("initial_connection_window", AT(codec.initial_connection_window), kNewConnections);
  h.value("max_header_list_size", AT(codec.max_header_list_size), kNewConnections);
  h.value("max_frame_size", AT(codec.max_frame_size), kNewConnections);
  h.value("max_abuse_score", AT(max_abuse_score), kNewConnections);
  h.value("ping_interval", AT(ping_interval), kNewConnections);
  h.value("ping_timeout", AT(ping_timeout), kNewConnections);
  h.value("max_connection_age", AT(max_connection_age), kNewConnections);
  h.value("send_stall_timeout", AT(send_stall_timeout), kNewConnections);
  h.rest(kNewConnections);
}

// A route in lines: its configured name, or where it stands ("main/1"), and its match.
std::string route_label(const std::string& listener, const std::string& name,
                        const proxy::http::RouteMatch& match) {
  return fmt::format("listener {}: route {} ({})", listener, name, show(match));
}

// The name the loader gives an unnamed route: its virtual host, then its index.
std::string default_route_name(const std::string& vhost, size_t index) {
  return fmt::format("{}/{}", vhost, index);
}

// `a` at index `ai` of the old virtual host, `b` at `bi` of the new one.
void diff_route(Report& report, const std::string& listener, const std::string& vhost,
                const Route& a, size_t ai, const Route& b, size_t bi) {
  Route x = a;
  x.id = b.id;  // its slot in per-route counters: the loader's, not the operator's
  // An unnamed route that moved is not renamed.
  if (a.name == default_route_name(vhost, ai) && b.name == default_route_name(vhost, bi)) {
    x.name = b.name;
  }
  if (x == b) return;
  FieldDiff<Route> d(report, ChangeSection::kRoute, route_label(listener, b.name, a.match) + " ", x,
                     b);
  d.value("name", AT(name), kNewRequests);
  d.value("match", AT(match), kNewRequests);
  d.value("action", AT(action), kNewRequests);
  d.value("cluster", AT(cluster), kNewRequests);
  d.value("prefix_rewrite", AT(prefix_rewrite), kNewRequests);
  d.value("timeout", AT(timeout), kNewRequests);
  d.value("per_try_timeout", AT(per_try_timeout), kNewRequests);
  d.value("upstream_idle_timeout", AT(upstream_idle_timeout), kNewRequests);
  d.value("max_body_size", AT(max_body_bytes), kNewRequests);
  d.value("retries.num_retries", AT(retry.num_retries), kNewRequests);
  d.value("retries.backoff.base", AT(retry.backoff_base), kNewRequests);
  d.value("retries.backoff.max", AT(retry.backoff_max), kNewRequests);
  d.value("retries.retriable_status_codes", AT(retry.statuses), kNewRequests);
  d.value("retries.allow_non_idempotent", AT(retry.allow_non_idempotent), kNewRequests);
  d.value("retries.replay_buffer", AT(retry.replay_buffer_bytes), kNewRequests);
  d.block("retries.retry_on", AT(retry), kNewRequests);
  d.block("hash_policy", AT(hash_policy), kNewRequests);
  d.value("redirect.status", AT(redirect_status), kNewRequests);
  d.value("redirect.location", AT(redirect_location), kNewRequests);
  d.value("direct_response.status", AT(direct_status), kNewRequests);
  d.block("direct_response.body", AT(direct_body), kNewRequests);
  d.block("request_headers_to_add", AT(request_headers_to_add), kNewRequests);
  d.value("request_headers_to_remove", AT(request_headers_to_remove), kNewRequests);
  d.block("response_headers_to_add", AT(response_headers_to_add), kNewRequests);
  d.value("response_headers_to_remove", AT(response_headers_to_remove), kNewRequests);
  d.rest(kNewRequests);
}

std::string vhost_name(const VirtualHost& vh, size_t index) {
  return vh.name.empty() ? std::to_string(index) : vh.name;
}

// The routes of one virtual host in both versions. Their order is part of what they mean
// (the first match wins), so routes are paired in order: the longest run of routes whose
// match is the same in both anchors the pairing; between two anchors, routes pair by
// position (an edited match is a change of that route) and what is left over was added or
// removed. Inserting a route thus reports one route added, not every later route changed.
void diff_routes(Report& report, const std::string& listener, const std::string& vhost,
                 const std::vector<Route>& a, const std::vector<Route>& b) {
  const size_t n = a.size();
  const size_t m = b.size();
  std::vector<std::pair<size_t, size_t>> anchors;
  // The table is (n + 1) * (m + 1) counters: beyond a few million (thousands of routes in
  // one virtual host), routes pair by position alone.
  constexpr size_t kMaxCells = size_t{1} << 22;
  if ((n + 1) * (m + 1) <= kMaxCells) {
    // common[i][j]: the longest run of equal matches in a[i..] and b[j..], in order.
    std::vector<std::vector<uint32_t>> common(n + 1, std::vector<uint32_t>(m + 1, 0));
    for (size_t i = n; i-- > 0;) {
      for (size_t j = m; j-- > 0;) {
        common[i][j] = a[i].match == b[j].match ? common[i + 1][j + 1] + 1
                                                : std::max(common[i + 1][j], common[i][j + 1]);
      }
    }
    for (size_t i = 0, j = 0; i < n && j < m;) {
      if (a[i].match == b[j].match && common[i][j] == common[i + 1][j + 1] + 1) {
        anchors.emplace_back(i++, j++);
      } else if (common[i + 1][j] >= common[i][j + 1]) {
        ++i;
      } else {
        ++j;
      }
    }
  }
  anchors.emplace_back(n, m);  // the end

  auto added = [&](size_t j) {
    const Route& r = b[j];
    std::string to = r.action == Route::Action::kForward ? "forwards to cluster " + r.cluster
                     : r.action == Route::Action::kRedirect
                         ? "redirects to " + r.redirect_location
                         : fmt::format("answers {}", r.direct_status);
    report.add(
        ChangeSection::kRoute,
        fmt::format("{} added: {} ({})", route_label(listener, r.name, r.match), to, kNewRequests));
  };
  auto removed = [&](size_t i) {
    report.add(
        ChangeSection::kRoute,
        fmt::format("{} removed ({})", route_label(listener, a[i].name, a[i].match), kNewRequests));
  };
  size_t i = 0;
  size_t j = 0;
  for (auto [ai, bj] : anchors) {
    for (; i < ai && j < bj; ++i, ++j) diff_route(report, listener, vhost, a[i], i, b[j], j);
    for (; j < bj; ++j) added(j);
    for (; i < ai; ++i) removed(i);
    if (ai < n) diff_route(report, listener, vhost, a[ai], ai, b[bj], bj);
    i = ai + 1;
    j = bj + 1;
  }
}

void diff_virtual_hosts(Report& report, const std::string& listener,
                        const std::vector<VirtualHost>& a, const std::vector<VirtualHost>& b) {
  auto find = [](const std::vector<VirtualHost>& list, const std::string& name) {
    for (size_t i = 0; i < list.size(); ++i) {
      if (vhost_name(list[i], i) == name) return &list[i];
    }
    return static_cast<const VirtualHost*>(nullptr);
  };
  for (size_t i = 0; i < b.size(); ++i) {
    std::string name = vhost_name(b[i], i);
    const VirtualHost* old = find(a, name);
    if (!old) {
      report.add(ChangeSection::kRoute,
                 fmt::format("listener {}: virtual host {} added: domains {}, {} routes ({})",
                             listener, name, show(b[i].domains), b[i].routes.size(), kNewRequests));
      continue;
    }
    if (old->domains != b[i].domains) {
      report.add(ChangeSection::kRoute,
                 fmt::format("listener {}: virtual host {} domains {} -> {} ({})", listener, name,
                             show(old->domains), show(b[i].domains), kNewRequests));
    }
    diff_routes(report, listener, name, old->routes, b[i].routes);
  }
  for (size_t i = 0; i < a.size(); ++i) {
    std::string name = vhost_name(a[i], i);
    if (!find(b, name)) {
      report.add(ChangeSection::kRoute, fmt::format("listener {}: virtual host {} removed ({})",
                                                    listener, name, kNewRequests));
    }
  }
}

void diff_listener(Report& report, const ListenerConfig& a, const ListenerConfig& b) {
  const std::string who = "listener " + b.name;
  report.add(ChangeSection::kListener,
             fmt::format("{} ({}): unchanged address: keeps its sockets", who, show(b.address)));
  FieldDiff<ListenerConfig> d(report, ChangeSection::kListener, who + ": ", a, b);
  d.skip(AT(cert_store));
  d.value("protocol", AT(protocol), kNewConnections);
  d.value("cluster", AT(cluster), kNewConnections);
  d.value("backlog", AT(backlog), "applied to its listening sockets");
  d.value("max_connections", AT(max_connections), kAtOnce);
  d.block("socket_options", AT(socket_options), kNewConnections);
  d.value("access_log.path", AT(access_log.path), kNewRequests);
  d.value("access_log.mode", AT(access_log.mode), kNewRequests);
  d.value("access_log.slow_threshold", AT(access_log.slow), kNewRequests);
  d.value("access_log.sample_percent", AT(access_log.sample_percent), kNewRequests);
  d.value("idle_timeout", AT(idle_timeout), kNewConnections);
  d.value("max_duration", AT(max_duration), kNewConnections);
  d.value("splice", AT(splice), kNewConnections);
  d.value("hash_key", AT(hash_key), kNewConnections);
  d.block("sni_routes", AT(sni_routes), kNewConnections);
  d.value("sni_timeout", AT(sni_timeout), kNewConnections);
  d.value("http.max_request_head", AT(http.max_head_bytes), kNewConnections);
  d.value("http.max_headers", AT(http.max_headers), kNewConnections);
  d.value("http.max_uri_length", AT(http.max_uri_bytes), kNewConnections);
  d.value("http.max_body_size", AT(http.max_body_bytes), kNewConnections);
  d.value("http.header_read_timeout", AT(http.header_read_timeout), kNewConnections);
  d.value("http.body_idle_timeout", AT(http.body_idle_timeout), kNewConnections);
  d.value("http.keepalive_timeout", AT(http.keepalive_timeout), kNewConnections);
  d.value("http.max_requests_per_connection", AT(http.max_requests_per_connection),
          kNewConnections);
  d.value("http.trust_forwarded_headers", AT(http.trust_forwarded_headers), kNewConnections);
  d.value("http.generate_request_id", AT(http.generate_request_id), kNewConnections);
  d.value("http.allow_connect", AT(http.allow_connect), kNewConnections);
  d.skip(AT(http.local_reply_detail_full));
  if (a.http.local_reply_detail_full != b.http.local_reply_detail_full) {
    d.line(b.http.local_reply_detail_full ? "http.local_reply_detail summary -> full"
                                          : "http.local_reply_detail full -> summary",
           kNewConnections);
  }
  diff_http2(report, d, a, b);
  // Datagram listeners: sessions (udp) keep the settings they started with.
  constexpr std::string_view kNewSessions = "new sessions only";
  d.value("udp.session_key", AT(udp.session_key), kNewSessions);
  d.value("udp.idle_timeout", AT(udp.idle_timeout), kNewSessions);
  d.value("udp.max_responses", AT(udp.max_responses), kNewSessions);
  d.value("udp.max_sessions", AT(udp.max_sessions), kNewSessions);
  d.value("udp.max_sessions_per_source", AT(udp.max_sessions_per_source), kNewSessions);
  d.value("udp.max_datagram_size", AT(udp.max_datagram_size), kNewSessions);
  d.value("udp.proxy_protocol", AT(udp.proxy_protocol), kNewSessions);
  d.value("udp.gro", AT(udp.gro), "the listener's socket at once; new sessions only");
  d.value("udp.gso", AT(udp.gso), "the listener's socket at once; new sessions only");
  d.value("stun.software", AT(stun.software), kAtOnce);
  d.value("stun.rate_limit", AT(stun.rate_limit),
          "applies at once; the rate-limit table starts afresh");
  d.value("stun.rate_burst", AT(stun.rate_burst),
          "applies at once; the rate-limit table starts afresh");
  d.value("stun.max_sources", AT(stun.max_sources),
          "applies at once; the rate-limit table starts afresh");
  d.skip(AT(stun.credentials));
  if (a.stun.credentials != b.stun.credentials) {
    d.line(fmt::format("stun.credentials: {} -> {} users", a.stun.credentials.size(),
                       b.stun.credentials.size()),
           kAtOnce);
  }
  d.value("stun.max_tcp_connections", AT(stun.max_tcp_connections), kAtOnce);
  d.value("stun.tcp_idle_timeout", AT(stun.tcp_idle_timeout), kNewConnections);
  // Another alternate address or tcp is other sockets: reported as the listener removed and
  // added.
  d.skip(AT(stun.alternate_address));
  d.skip(AT(stun.tcp));
  // Reported in their own sections.
  d.skip(AT(http.virtual_hosts));
  d.skip(AT(tls));
  d.rest(kNewConnections);

  diff_virtual_hosts(report, b.name, a.http.virtual_hosts, b.http.virtual_hosts);
  if (a.tls && b.tls) {
    diff_server_tls(report, who, *a.tls, *b.tls);
  } else if (a.tls || b.tls) {
    report.add(
        ChangeSection::kTls,
        fmt::format("{}: tls {} ({})", who, b.tls ? "added: terminates TLS" : "removed: plain TCP",
                    kNewConnections));
  }
}

const ListenerConfig* find_listener(const Config& c, const std::string& name) {
  for (const auto& l : c.listeners) {
    if (l->name == name) return l.get();
  }
  return nullptr;
}

void diff_listeners(Report& report, const Config& before, const Config& after) {
  auto added = [&](const ListenerConfig& l) {
    report.add(ChangeSection::kListener,
               fmt::format("listener {}: added on {}: will bind", l.name, show(l.address)));
  };
  auto removed = [&](const ListenerConfig& l) {
    report.add(ChangeSection::kListener,
               fmt::format("listener {}: removed from {}: stops accepting, its connections "
                           "drain (drain_timeout {})",
                           l.name, show(l.address), show(after.drain_timeout)));
  };
  for (const auto& b : after.listeners) {
    const ListenerConfig* a = find_listener(before, b->name);
    if (!a) {
      added(*b);
    } else if (!(a->address == b->address) ||
               a->stun.alternate_address != b->stun.alternate_address ||
               a->stun.tcp != b->stun.tcp ||
               (a->protocol != b->protocol &&
                (proxy::is_datagram(a->protocol) || proxy::is_datagram(b->protocol)))) {
      // Another address is another socket; so is a UDP socket for a TCP one, and a udp
      // listener's for a stun listener's.
      removed(*a);
      added(*b);
    } else if (!same_listener(*a, *b)) {
      diff_listener(report, *a, *b);
    }
  }
  for (const auto& a : before.listeners) {
    if (!find_listener(after, a->name)) removed(*a);
  }
}

// ---- Clusters

std::string endpoint_source(const ClusterConfig& c) {
  switch (c.type) {
    case ClusterConfig::Type::kStatic:
      return fmt::format("{} endpoints", c.endpoints.size());
    case ClusterConfig::Type::kStrictDns:
    case ClusterConfig::Type::kLogicalDns:
      return "resolves " + show(c.dns_targets);
    case ClusterConfig::Type::kDnsSrv:
      return "resolves SRV " + c.srv_name;
    case ClusterConfig::Type::kFile:
      return "reads " + c.file_path;
    case ClusterConfig::Type::kEtcd:
      return "watches etcd " + c.etcd.prefix;
  }
  return "";
}

// Endpoints by address: the ones added, removed, and the ones whose weight or fallbacks
// changed, in one line. Only the order changed: said so (it matters to round robin's start).
void diff_endpoints(FieldDiff<ClusterConfig>& d, const std::vector<upstream::EndpointConfig>& a,
                    const std::vector<upstream::EndpointConfig>& b) {
  d.skip(AT(endpoints));
  if (a == b) return;
  auto find = [](const auto& list, const net::Address& address) {
    auto it =
        std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.address == address; });
    return it == list.end() ? nullptr : &*it;
  };
  std::vector<std::string> parts;
  for (const auto& e : b) {
    const auto* old = find(a, e.address);
    if (!old) {
      parts.push_back(fmt::format("endpoint {} added", show(e.address)));
      continue;
    }
    if (old->weight != e.weight) {
      parts.push_back(fmt::format("endpoint {} weight {} -> {} ({})", show(e.address), old->weight,
                                  e.weight, kAtOnce));
    }
    if (old->fallbacks != e.fallbacks) {
      parts.push_back(fmt::format("endpoint {} fallbacks {} -> {} ({})", show(e.address),
                                  show(old->fallbacks), show(e.fallbacks), kNewConnections));
    }
  }
  for (const auto& e : a) {
    if (!find(b, e.address)) {
      parts.push_back(fmt::format("endpoint {} removed (drains)", show(e.address)));
    }
  }
  if (parts.empty()) parts.push_back("endpoints reordered");
  d.line(fmt::format("{}", fmt::join(parts, "; ")), "");
}

void diff_dns_targets(FieldDiff<ClusterConfig>& d, const std::vector<upstream::DnsTarget>& a,
                      const std::vector<upstream::DnsTarget>& b) {
  d.skip(AT(dns_targets));
  if (a == b) return;
  auto find = [](const auto& list, const upstream::DnsTarget& t) {
    auto it = std::find_if(list.begin(), list.end(),
                           [&](const auto& x) { return x.host == t.host && x.port == t.port; });
    return it == list.end() ? nullptr : &*it;
  };
  std::vector<std::string> parts;
  for (const auto& t : b) {
    const auto* old = find(a, t);
    if (!old) {
      parts.push_back(fmt::format("dns target {} added", show(t)));
    } else if (old->weight != t.weight) {
      parts.push_back(fmt::format("dns target {} weight {} -> {} ({})", show(t), old->weight,
                                  t.weight, kAtOnce));
    }
  }
  for (const auto& t : a) {
    if (!find(b, t))
      parts.push_back(fmt::format("dns target {} removed (its endpoints drain)", show(t)));
  }
  if (parts.empty()) parts.push_back("dns targets reordered");
  d.line(fmt::format("{}", fmt::join(parts, "; ")), "");
}

void diff_client_tls(Report& report, const ClusterConfig& ca, const ClusterConfig& cb) {
  const std::string who = "cluster " + cb.name;
  if (!ca.tls && !cb.tls) return;
  if (!ca.tls || !cb.tls) {
    report.add(ChangeSection::kTls,
               fmt::format("{}: tls {} ({})", who, cb.tls ? "added" : "removed", kNewConnections));
    return;
  }
  const tls::ClientConfig& a = *ca.tls;
  const tls::ClientConfig& b = *cb.tls;
  FieldDiff<tls::ClientConfig> d(report, ChangeSection::kTls, who + ": tls.", a, b);
  d.value("verify", AT(verify), kNewConnections);
  d.value("ca", AT(ca), kNewConnections);
  d.value("sni", AT(sni), kNewConnections);
  // A change of protocol sets the ALPN list; the protocol's own line says so.
  if (ca.protocol == cb.protocol) {
    d.value("alpn", AT(alpn), kNewConnections);
  } else {
    d.skip(AT(alpn));
  }
  d.value("certificate_chain", AT(certificate_chain), kNewConnections);
  d.value("private_key", AT(private_key), kNewConnections);
  d.value("min_version", AT(min_version), kNewConnections);
  d.value("max_version", AT(max_version), kNewConnections);
  d.value("session_resumption", AT(session_resumption), kNewConnections);
  d.value("ktls", AT(ktls), kNewConnections);
  d.rest(kNewConnections);
}

void diff_cluster(Report& report, const ClusterConfig& a, const ClusterConfig& b) {
  FieldDiff<ClusterConfig> d(report, ChangeSection::kCluster, "cluster " + b.name + ": ", a, b);
  d.value("type", AT(type), "its endpoints are replaced, the old ones drain");
  d.value("protocol", AT(protocol), kNewConnections);
  d.value("http2.initial_stream_window", AT(http2.initial_stream_window), kNewConnections);
  d.value("http2.initial_connection_window", AT(http2.initial_connection_window), kNewConnections);
  d.value("http2.max_header_list_size", AT(http2.max_header_list_size), kNewConnections);
  d.value("http2.max_frame_size", AT(http2.max_frame_size), kNewConnections);
  d.value("connect_timeout", AT(connect_timeout), kNewConnections);
  d.value("max_connect_attempts", AT(max_connect_attempts), kNewConnections);
  d.value("source_address", AT(source_address), kNewConnections);
  d.block("socket_options", AT(socket_options), kNewConnections);
  diff_endpoints(d, a.endpoints, b.endpoints);
  diff_dns_targets(d, a.dns_targets, b.dns_targets);
  d.value("srv_name", AT(srv_name), "resolved again at once");
  d.value("on_address_change", AT(on_address_change), kAtOnce);
  d.value("connection_attempt_delay", AT(connection_attempt_delay), kNewConnections);
  d.value("dns_failure_refresh", AT(dns_failure_refresh), kAtOnce);
  d.value("pool.max_connections", AT(pool.max_connections), kNewConnections);
  d.value("pool.max_pending_requests", AT(pool.max_pending), kNewRequests);
  d.value("pool.pending_timeout", AT(pool.pending_timeout), kNewRequests);
  d.value("pool.idle_timeout", AT(pool.idle_timeout), kNewConnections);
  d.value("pool.max_lifetime", AT(pool.max_lifetime), kNewConnections);
  d.value("pool.max_requests_per_connection", AT(pool.max_requests_per_connection),
          kNewConnections);
  d.value("pool.min_idle", AT(pool.min_idle), kAtOnce);
  constexpr std::string_view kRebuilt = "the balancer is rebuilt at once";
  d.value("lb_policy", AT(lb.policy), kRebuilt);
  d.value("ring_hash.ring_size", AT(lb.ring_size), kRebuilt);
  d.value("maglev.table_size", AT(lb.maglev_table_size), kRebuilt);
  d.value("least_request.choice_count", AT(lb.choice_count), kRebuilt);
  d.skip(AT(lb.ring_total_weight));  // set by the cluster, not configured
  constexpr std::string_view kChecks = "checks start over with it";
  d.value("health_check.type", AT(health_check.type), kChecks);
  d.value("health_check.interval", AT(health_check.interval), kChecks);
  d.value("health_check.timeout", AT(health_check.timeout), kChecks);
  d.value("health_check.healthy_threshold", AT(health_check.healthy_threshold), kChecks);
  d.value("health_check.unhealthy_threshold", AT(health_check.unhealthy_threshold), kChecks);
  d.block("health_check", AT(health_check), kChecks);
  constexpr std::string_view kOutlier = "ejections are judged by it from now on";
  if (a.outlier.has_value() != b.outlier.has_value()) {
    d.skip(AT(outlier));
    d.line(b.outlier ? "outlier_detection enabled" : "outlier_detection disabled", kAtOnce);
  } else if (a.outlier) {
    auto o = [](auto get) {
      return [get](auto& c) -> auto& {
        return get(*c.outlier);
      };
    };
    d.value("outlier_detection.consecutive_5xx", o(AT(consecutive_5xx)), kOutlier);
    d.value("outlier_detection.consecutive_gateway_failure", o(AT(consecutive_gateway_failure)),
            kOutlier);
    d.value("outlier_detection.base_ejection_time", o(AT(base_ejection_time)), kOutlier);
    d.value("outlier_detection.max_ejection_percent", o(AT(max_ejection_percent)), kOutlier);
    d.block("outlier_detection", AT(outlier), kOutlier);
  }
  d.value("panic_threshold", AT(panic_threshold), kAtOnce);
  d.value("circuit_breakers.max_active_requests", AT(circuit_breakers.max_active_requests),
          kAtOnce);
  d.value("circuit_breakers.max_active_retries", AT(circuit_breakers.max_active_retries), kAtOnce);
  d.value("circuit_breakers.retry_budget.budget_percent", AT(circuit_breakers.budget_percent),
          kAtOnce);
  d.value("circuit_breakers.retry_budget.min_retry_concurrency",
          AT(circuit_breakers.min_retry_concurrency), kAtOnce);
  d.skip(AT(tls));  // its own section
  d.rest(kNewConnections);
}

void diff_clusters(Report& report, const Config& before, const Config& after) {
  for (const auto& b : after.clusters) {
    const ClusterConfig* a = before.find_cluster(b->name);
    if (!a) {
      report.add(ChangeSection::kCluster, fmt::format("cluster {}: added ({}, {})", b->name,
                                                      show(b->type), endpoint_source(*b)));
      continue;
    }
    if (*a == *b) continue;
    diff_cluster(report, *a, *b);
    diff_client_tls(report, *a, *b);
  }
  for (const auto& a : before.clusters) {
    if (!after.find_cluster(a->name)) {
      report.add(ChangeSection::kCluster,
                 fmt::format("cluster {}: removed: its connections drain", a->name));
    }
  }
}

// ---- The rest

void diff_settings(Report& report, const Config& a, const Config& b) {
  auto add = [&](std::string text) { report.add(ChangeSection::kOther, std::move(text)); };
  if (a.workers != b.workers) {
    add(
        fmt::format("workers {} -> {}: cannot change in place (needs a restart or a binary "
                    "upgrade)",
                    a.workers, b.workers));
  }
  if (a.event.receive != b.event.receive) {
    add(
        fmt::format("event.receive {} -> {}: cannot change in place (needs a restart or a "
                    "binary upgrade)",
                    event::receive_name(a.event.receive), event::receive_name(b.event.receive)));
  }
  if (a.event.backend != b.event.backend) {
    add(
        fmt::format("event.backend {} -> {}: cannot change in place (needs a restart or a "
                    "binary upgrade)",
                    event::backend_name(a.event.backend), event::backend_name(b.event.backend)));
  }
  if (!(a.bgp == b.bgp || (a.bgp && b.bgp && *a.bgp == *b.bgp))) {
    add("bgp: cannot change in place (needs a restart or a binary upgrade)");
  }
  if (!(a.registration == b.registration ||
        (a.registration && b.registration && *a.registration == *b.registration))) {
    add("registration: cannot change in place (needs a restart or a binary upgrade)");
  }
  if (a.log_level != b.log_level) {
    add(fmt::format("log_level {} -> {} ({})", show(a.log_level), show(b.log_level), kAtOnce));
  }
  if (a.drain_timeout != b.drain_timeout) {
    add(fmt::format("drain_timeout {} -> {} (applies to the next drain)", show(a.drain_timeout),
                    show(b.drain_timeout)));
  }
  if (a.ready_timeout != b.ready_timeout) {
    add(fmt::format("ready_timeout {} -> {} (used at startup only)", show(a.ready_timeout),
                    show(b.ready_timeout)));
  }
  if (!(a.admin_address == b.admin_address)) {
    std::string effect = !b.admin_address   ? "stops serving the admin API"
                         : !a.admin_address ? "will bind"
                                            : "binds the new address, closes the old one";
    add(fmt::format("admin.address {} -> {}: {}", show(a.admin_address), show(b.admin_address),
                    effect));
  }
  constexpr std::string_view kLookups = "new lookups only";
  FieldDiff<dns::ResolverConfig> d(report, ChangeSection::kOther, "dns.", a.dns, b.dns);
  d.value("servers", AT(servers), kLookups);
  d.value("timeout", AT(timeout), kLookups);
  d.value("attempts", AT(attempts), kLookups);
  d.value("rotate", AT(rotate), kLookups);
  d.value("hosts_file", AT(hosts_file), kLookups);
  d.value("family", AT(family), kLookups);
  d.value("min_ttl", AT(min_ttl), kLookups);
  d.value("max_ttl", AT(max_ttl), kLookups);
  d.value("negative_min_ttl", AT(negative_min_ttl), kLookups);
  d.value("negative_max_ttl", AT(negative_max_ttl), kLookups);
  d.value("stale_ttl", AT(stale_ttl), kLookups);
  d.value("max_cname_chain", AT(max_cname_chain), kLookups);
  d.rest(kLookups);
}

#undef AT

}  // namespace

std::vector<ConfigChange> diff_configs(const Config& before, const Config& after) {
  Report report;
  diff_listeners(report, before, after);
  diff_clusters(report, before, after);
  diff_settings(report, before, after);
  return report.take();
}

}  // namespace sluice::config
