#include "probe/report.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "probe/json_writer.h"

namespace sluice::probe {
namespace {

constexpr int kBarColumns = 50;
// TCP_INFINITE_SSTHRESH: the connection never left slow start.
constexpr uint32_t kInfiniteSsthresh = 0x7fffffff;

struct Phase {
  const char* name;
  int64_t RunResult::*field;
};
constexpr Phase kPhases[] = {
    {"dns", &RunResult::dns_us},
    {"connect", &RunResult::connect_us},
    {"tls", &RunResult::tls_us},  // https only
    {"request_sent", &RunResult::request_sent_us},
    {"first_byte", &RunResult::first_byte_us},
    {"body", &RunResult::body_us},
};

// The response fields worth a glance; the JSON form carries them all.
constexpr const char* kKeyHeaders[] = {"content-type", "content-length", "transfer-encoding",
                                       "connection",   "location",       "server"};

std::string ms(int64_t us) {
  return fmt::format("{:.3f}", static_cast<double>(us) / 1000.0);
}

std::string chain_text(const std::string& name, const std::vector<std::string>& chain) {
  std::string s = name;
  for (const auto& c : chain) s += " -> " + c;
  return s;
}

std::string rate_text(uint64_t bytes_per_second) {
  double v = static_cast<double>(bytes_per_second);
  if (v >= 1e9) return fmt::format("{:.1f} GB/s", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB/s", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} kB/s", v / 1e3);
  return fmt::format("{} B/s", bytes_per_second);
}

std::string bar(int64_t offset, int64_t duration, int64_t total) {
  if (total <= 0 || duration <= 0) return "";
  auto col = [&](int64_t us) {
    return static_cast<int>(std::lround(static_cast<double>(us) * kBarColumns / total));
  };
  int start = std::clamp(col(offset), 0, kBarColumns - 1);
  int len = std::clamp(col(duration), 1, kBarColumns - start);
  return std::string(static_cast<size_t>(start), ' ') + std::string(static_cast<size_t>(len), '#');
}

std::string dns_lines(const RunResult& run) {
  const DnsPhase& d = run.dns;
  if (d.skipped == "literal") return "dns        skipped (IP literal)\n";
  std::string addrs;
  for (const auto& a : d.addresses) {
    if (!addrs.empty()) addrs += ", ";
    addrs += a.ip_string();
  }
  if (d.skipped == "--resolve") return fmt::format("dns        skipped (--resolve {})\n", addrs);
  std::string out;
  std::string source = d.from_hosts_file ? "the hosts file"
                       : d.from_cache    ? "the resolver's cache (" + d.server + ")"
                                         : d.server;
  out += fmt::format("dns        {} via {} ({} ms)\n", d.name, source, ms(run.dns_us));
  if (!d.cname_chain.empty()) out += "           cname " + chain_text(d.name, d.cname_chain) + "\n";
  if (!addrs.empty()) {
    out += fmt::format("           {}", addrs);
    if (!d.from_hosts_file) {
      out += fmt::format("  ttl {} s as sent, cached for {}", d.record_ttl, format_duration(d.ttl));
    }
    if (d.stale) out += "  (stale: a refresh failed)";
    out += "\n";
  }
  return out;
}

std::string connect_lines(const RunResult& run) {
  std::string out;
  bool first = true;
  for (const auto& at : run.attempts) {
    out += fmt::format("{:<11}{}  {}  {} ms", first ? "connect" : "", at.address.to_string(),
                       at.result, ms(at.us));
    if (at.result == "connected" && run.local) out += "  local " + run.local->to_string();
    out += "\n";
    first = false;
  }
  return out;
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

std::string verify_text(const TlsPhase& t) {
  if (t.verify_skipped) {
    return t.verified() ? "skipped (--insecure); it would have passed"
                        : "skipped (--insecure); it would have failed: " + t.verify_error;
  }
  return t.verified() ? "ok" : t.verify_error;
}

std::string ocsp_text(const OcspSummary& o) {
  if (o.status == "none") return "none (no response stapled)";
  std::string out = o.status;
  if (!o.detail.empty()) out += ", " + o.detail;
  if (o.status == "invalid") return out;
  out += o.signature_ok ? ", signature ok" : ", signature not verified";
  if (!o.next_update.empty()) out += ", next update " + o.next_update;
  return out;
}

std::string tls_lines(const RunResult& run) {
  const TlsPhase& t = *run.tls;
  std::string out;
  if (t.version.empty()) {
    out += fmt::format("tls        handshake with {} failed", t.checked);
    if (run.tls_us >= 0) out += fmt::format(" ({} ms)", ms(run.tls_us));
    return out + "\n";
  }
  out += fmt::format("tls        {}  {}  alpn {}  {}  ({} ms)\n", t.version, t.cipher,
                     or_dash(t.alpn), t.resumed ? "resumed" : "new session", ms(run.tls_us));
  out += fmt::format("           sni {}  certificate checked against {}\n",
                     t.sni.empty() ? "- (IP host)" : t.sni, t.checked);
  out += fmt::format("verify     {}\n", verify_text(t));
  out += fmt::format("ocsp       {}\n", ocsp_text(t.ocsp));
  // A resumed handshake carries no certificate: these are the original handshake's.
  if (t.resumed && !t.chain.empty()) out += "certs      of the resumed session (not sent again)\n";
  for (size_t i = 0; i < t.chain.size(); ++i) {
    const CertSummary& c = t.chain[i];
    out += fmt::format("cert {:<6}{}\n", i, c.subject);
    out += fmt::format("           issuer {}  not after {}\n", c.issuer, c.not_after);
    if (!c.dns.empty() || !c.ips.empty()) {
      std::string names;
      for (const auto& d : c.dns) names += (names.empty() ? "dns " : "  dns ") + d;
      for (const auto& ip : c.ips) names += (names.empty() ? "ip " : "  ip ") + ip;
      out += fmt::format("           {}\n", names);
    }
  }
  return out;
}

std::string protocol_line(const RunResult& run) {
  std::string out = fmt::format("protocol   {}", to_string(*run.protocol));
  if (run.http2) {
    out += fmt::format("  stream {}", run.http2->stream_id);
    if (const auto& ps = run.http2->peer_settings) {
      out += fmt::format("  server max_concurrent_streams {}  initial_window_size {}",
                         ps->max_concurrent_streams ? std::to_string(*ps->max_concurrent_streams)
                                                    : std::string("unlimited"),
                         ps->initial_window_size);
    } else {
      out += "  (no SETTINGS from the server)";
    }
  }
  return out + "\n";
}

void write_http2(JsonWriter& j, const RunResult& run) {
  if (!run.http2) {
    j.null();
    return;
  }
  j.begin_object().key("stream_id").num(run.http2->stream_id).key("peer_settings");
  if (const auto& ps = run.http2->peer_settings) {
    j.begin_object().key("max_concurrent_streams");
    if (ps->max_concurrent_streams) {
      j.num(*ps->max_concurrent_streams);
    } else {
      j.null();  // not sent: no limit
    }
    j.key("initial_window_size").num(ps->initial_window_size).end_object();
  } else {
    j.null();
  }
  j.end_object();
}

// One row: name, start and duration in ms, and the bar (no trailing blanks without one).
std::string waterfall_row(const char* name, int64_t offset, int64_t duration, int64_t total) {
  std::string row = fmt::format("{:<14}{:>10}{:>13}", name, ms(offset), ms(duration));
  std::string b = bar(offset, duration, total);
  if (!b.empty()) row += "  " + b;
  return row + "\n";
}

std::string waterfall(const RunResult& run) {
  std::string out =
      fmt::format("{:<14}{:>10}{:>13}  {}\n", "phase", "start ms", "duration ms", "0 .. total");
  int64_t total = run.total_us;
  int64_t offset = 0;
  for (const Phase& p : kPhases) {
    int64_t v = run.*p.field;
    if (v < 0 && p.field == &RunResult::tls_us && !run.tls) continue;  // http
    if (v < 0) break;
    out += waterfall_row(p.name, offset, v, total);
    offset += v;
  }
  if (total >= 0) out += waterfall_row("total", 0, total, total);
  return out;
}

std::string tcp_info_line(const net::TcpInfo& ti) {
  return fmt::format(
      "tcp_info   rtt {} ms  rttvar {} ms  retransmits {}  total retransmits {}  cwnd {}  "
      "ssthresh {}  delivery rate {}  congestion {}\n",
      ms(ti.rtt_us), ms(ti.rttvar_us), ti.retransmits, ti.total_retrans, ti.snd_cwnd,
      ti.snd_ssthresh >= kInfiniteSsthresh ? std::string("inf (slow start)")
                                           : std::to_string(ti.snd_ssthresh),
      rate_text(ti.delivery_rate), ti.congestion.empty() ? "?" : ti.congestion);
}

void write_tcp_info(JsonWriter& j, const net::TcpInfo& ti) {
  j.begin_object()
      .key("rtt_us")
      .num(ti.rtt_us)
      .key("rttvar_us")
      .num(ti.rttvar_us)
      .key("min_rtt_us")
      .num(ti.min_rtt_us)
      .key("retransmits")
      .num(ti.retransmits)
      .key("total_retrans")
      .num(ti.total_retrans)
      .key("lost")
      .num(ti.lost)
      .key("cwnd")
      .num(ti.snd_cwnd)
      .key("ssthresh")
      .num(ti.snd_ssthresh)
      .key("mss")
      .num(ti.snd_mss)
      .key("delivery_rate")
      .num(static_cast<int64_t>(ti.delivery_rate))
      .key("bytes_acked")
      .num(static_cast<int64_t>(ti.bytes_acked))
      .key("bytes_received")
      .num(static_cast<int64_t>(ti.bytes_received))
      .key("congestion")
      .str(ti.congestion)
      .end_object();
}

void write_answers(JsonWriter& j, const std::vector<net::Address>& addresses, bool with_ttl,
                   uint32_t ttl) {
  j.begin_array();
  for (const auto& a : addresses) {
    j.begin_object().key("address").str(a.ip_string()).key("ttl");
    if (with_ttl) {
      j.num(ttl);
    } else {
      j.null();
    }
    j.end_object();
  }
  j.end_array();
}

void write_strings(JsonWriter& j, const std::vector<std::string>& v) {
  j.begin_array();
  for (const auto& s : v) j.str(s);
  j.end_array();
}

int64_t ms_of(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

void str_or_null(JsonWriter& j, const std::string& s) {
  if (s.empty()) {
    j.null();
  } else {
    j.str(s);
  }
}

void write_tls(JsonWriter& j, const RunResult& run) {
  if (!run.tls) {
    j.null();
    return;
  }
  const TlsPhase& t = *run.tls;
  j.begin_object().key("sni");
  str_or_null(j, t.sni);
  j.key("checked_name").str(t.checked).key("version");
  str_or_null(j, t.version);
  j.key("cipher");
  str_or_null(j, t.cipher);
  j.key("alpn");
  str_or_null(j, t.alpn);
  j.key("resumed").boolean(t.resumed).key("certificates").begin_array();
  for (const CertSummary& c : t.chain) {
    j.begin_object().key("subject").str(c.subject).key("issuer").str(c.issuer);
    j.key("dns");
    write_strings(j, c.dns);
    j.key("ip");
    write_strings(j, c.ips);
    j.key("not_after").str(c.not_after).end_object();
  }
  j.end_array();
  j.key("ocsp").begin_object().key("status").str(t.ocsp.status).key("detail");
  str_or_null(j, t.ocsp.detail);
  j.key("signature_ok").boolean(t.ocsp.signature_ok).key("this_update");
  str_or_null(j, t.ocsp.this_update);
  j.key("next_update");
  str_or_null(j, t.ocsp.next_update);
  j.end_object();
  j.key("verify").begin_object();
  if (t.version.empty()) {  // the handshake did not complete: nothing was verified
    j.key("ok").null().key("result").null();
  } else {
    j.key("ok").boolean(t.verified()).key("result").str(t.verified() ? "ok" : t.verify_error);
  }
  j.key("enforced").boolean(!t.verify_skipped).end_object();
  j.key("us").num_or_null(run.tls_us).end_object();
}

void write_run(JsonWriter& j, const ProbeOptions& options, const RunResult& run) {
  const DnsPhase& d = run.dns;
  j.begin_object().key("url").str(options.url.text).key("method").str(options.method);
  j.key("dns").begin_object().key("name").str(d.name).key("server");
  if (d.skipped.empty()) {
    j.str(d.server);
  } else {
    j.null();
  }
  j.key("skipped");
  if (d.skipped.empty()) {
    j.null();
  } else {
    j.str(d.skipped);
  }
  j.key("answers");
  write_answers(j, d.addresses, d.skipped.empty() && !d.from_hosts_file, d.record_ttl);
  j.key("cname_chain");
  write_strings(j, d.cname_chain);
  j.key("record_ttl").num(d.record_ttl).key("cached_ttl_ms").num(ms_of(d.ttl));
  j.key("from_cache").boolean(d.from_cache).key("from_hosts_file").boolean(d.from_hosts_file);
  j.key("stale").boolean(d.stale).key("us").num_or_null(run.dns_us).end_object();

  j.key("connect").begin_object().key("attempts").begin_array();
  for (const auto& at : run.attempts) {
    j.begin_object().key("address").str(at.address.to_string()).key("result").str(at.result);
    j.key("us").num(at.us).end_object();
  }
  j.end_array().key("remote");
  if (run.remote) {
    j.str(run.remote->to_string());
  } else {
    j.null();
  }
  j.key("local");
  if (run.local) {
    j.str(run.local->to_string());
  } else {
    j.null();
  }
  j.key("us").num_or_null(run.connect_us).end_object();
  j.key("tls");
  write_tls(j, run);
  j.key("protocol");
  if (run.protocol) {
    j.str(to_string(*run.protocol));
  } else {
    j.null();
  }
  j.key("http2");
  write_http2(j, run);

  j.key("request_sent_us").num_or_null(run.request_sent_us);
  j.key("first_byte_us").num_or_null(run.first_byte_us);
  j.key("body_us").num_or_null(run.body_us);
  j.key("total_us").num_or_null(run.total_us);
  j.key("tcp_info");
  if (run.tcp_info) {
    write_tcp_info(j, *run.tcp_info);
  } else {
    j.null();
  }
  j.key("status");
  if (run.status) {
    j.num(run.status);
  } else {
    j.null();
  }
  j.key("reason").str(run.reason);
  // Lower-case names; repeated fields joined with ", " (RFC 9110 §5.3).
  std::map<std::string, std::string> headers;
  std::vector<std::string> order;
  for (const auto& h : run.headers) {
    std::string name = h.name;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto [it, inserted] = headers.emplace(name, h.value);
    if (inserted) {
      order.push_back(name);
    } else {
      it->second += ", " + h.value;
    }
  }
  j.key("headers").begin_object();
  for (const auto& name : order) j.key(name).str(headers[name]);
  j.end_object();
  j.key("body_bytes").num(static_cast<int64_t>(run.body_bytes));
  if (!run.ok()) {
    j.key("error").begin_object().key("kind").str(to_string(run.failure));
    j.key("message").str(run.error).end_object();
  }
  j.key("exit_status").num(exit_status(run.failure));
  j.end_object();
}

std::vector<int64_t> phase_values(const std::vector<RunResult>& runs, int64_t RunResult::*field) {
  std::vector<int64_t> v;
  for (const auto& r : runs) {
    if (r.ok() && r.*field >= 0) v.push_back(r.*field);
  }
  std::sort(v.begin(), v.end());
  return v;
}

struct Counts {
  std::map<int, int> statuses;
  std::map<std::string, int> errors;  // by kind
  std::map<std::string, int> protocols;
  int ok = 0;
  int dns_asked = 0;
  int dns_cached = 0;
  int dns_hosts_file = 0;
  int dns_skipped = 0;
  int tls_handshakes = 0;  // completed
  int tls_resumed = 0;
};

Counts count(const std::vector<RunResult>& runs) {
  Counts c;
  for (const auto& r : runs) {
    if (r.ok()) {
      ++c.ok;
      ++c.statuses[r.status];
    } else {
      ++c.errors[to_string(r.failure)];
    }
    if (r.protocol) ++c.protocols[to_string(*r.protocol)];
    if (r.tls && !r.tls->version.empty()) {
      ++c.tls_handshakes;
      if (r.tls->resumed) ++c.tls_resumed;
    }
    if (!r.dns.skipped.empty()) {
      ++c.dns_skipped;
    } else if (r.dns.from_hosts_file) {
      ++c.dns_hosts_file;
    } else if (r.dns.from_cache) {
      ++c.dns_cached;
    } else if (r.dns_us >= 0) {
      ++c.dns_asked;
    }
  }
  return c;
}

}  // namespace

int64_t percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string text_report(const ProbeOptions& options, const RunResult& run) {
  std::string out = fmt::format("{} {}", options.method, options.url.text);
  if (run.remote) {
    out += " -> " + run.remote->to_string();
  } else if (run.ok() == false) {
    out += " (failed)";
  }
  out += "\n";
  if (run.dns_us >= 0) out += dns_lines(run);
  out += connect_lines(run);
  if (run.tls) out += tls_lines(run);
  if (run.protocol) out += protocol_line(run);
  out += '\n';
  out += waterfall(run);
  if (run.tcp_info) {
    out += '\n';
    out += tcp_info_line(*run.tcp_info);
  }
  if (run.status) {
    if (run.protocol == HttpVersion::kHttp2) {
      out += fmt::format("\nHTTP/2 {}\n", run.status);
    } else {
      out += fmt::format("\nHTTP/1.{} {} {}\n", run.version_minor, run.status, run.reason);
    }
    for (const char* name : kKeyHeaders) {
      for (const auto& h : run.headers) {
        if (http::iequals(h.name, name)) out += fmt::format("  {}: {}\n", h.name, h.value);
      }
    }
    out += fmt::format("body       {} bytes\n", run.body_bytes);
  }
  if (!run.ok()) out += fmt::format("\nerror      {} ({})\n", run.error, to_string(run.failure));
  return out;
}

std::string text_summary(const ProbeOptions& options, const std::vector<RunResult>& runs) {
  Counts c = count(runs);
  std::map<std::string, int> remotes;
  for (const auto& r : runs) {
    if (r.remote) ++remotes[r.remote->to_string()];
  }
  std::string out = fmt::format("{} {} x{}", options.method, options.url.text, runs.size());
  for (const auto& [addr, n] : remotes) out += fmt::format(" -> {} (x{})", addr, n);
  out += "\n\n";
  out += fmt::format("{:<14}{:>10}{:>10}{:>10}{:>10}{:>10}\n", "phase", "min ms", "p50 ms",
                     "p90 ms", "p99 ms", "max ms");
  auto row = [&](const char* name, int64_t RunResult::*field) {
    auto v = phase_values(runs, field);
    if (v.empty()) return;
    out += fmt::format("{:<14}{:>10}{:>10}{:>10}{:>10}{:>10}\n", name, ms(v.front()),
                       ms(percentile(v, 50)), ms(percentile(v, 90)), ms(percentile(v, 99)),
                       ms(v.back()));
  };
  for (const Phase& p : kPhases) row(p.name, p.field);
  row("total", &RunResult::total_us);
  out += fmt::format("({} successful runs)\n\n", c.ok);
  std::string statuses;
  for (const auto& [status, n] : c.statuses) statuses += fmt::format("  {} x{}", status, n);
  out += fmt::format("status    {}\n", statuses.empty() ? "  none" : statuses);
  if (!c.protocols.empty()) {
    std::string protocols;
    for (const auto& [name, n] : c.protocols) protocols += fmt::format("  {} x{}", name, n);
    out += fmt::format("protocol  {}\n", protocols);
  }
  if (!c.errors.empty()) {
    std::string errors;
    for (const auto& [kind, n] : c.errors) errors += fmt::format("  {} x{}", kind, n);
    out += fmt::format("errors    {}\n", errors);
    for (const auto& r : runs) {
      if (!r.ok()) {
        out += fmt::format("          first: {}\n", r.error);
        break;
      }
    }
  }
  if (c.dns_skipped == static_cast<int>(runs.size())) {
    out += "dns        skipped (IP literal or --resolve)\n";
  } else if (c.dns_hosts_file == static_cast<int>(runs.size())) {
    out += "dns        answered from the hosts file every time\n";
  } else {
    out += fmt::format(
        "dns        {} lookup(s) asked the servers, {} answered from the resolver's cache "
        "(one resolver serves every run, as in a long-running client)\n",
        c.dns_asked, c.dns_cached);
  }
  if (options.url.https) {
    out += fmt::format(
        "tls        {} of {} handshakes resumed a session (each run after the first offers the "
        "session of the run before)\n",
        c.tls_resumed, c.tls_handshakes);
  }
  return out;
}

std::string json_report(const ProbeOptions& options, const RunResult& run) {
  JsonWriter j;
  write_run(j, options, run);
  return j.text() + "\n";
}

std::string json_summary(const ProbeOptions& options, const std::vector<RunResult>& runs) {
  Counts c = count(runs);
  JsonWriter j;
  j.begin_object().key("url").str(options.url.text).key("runs").begin_array();
  for (const auto& r : runs) write_run(j, options, r);
  j.end_array();
  j.key("summary").begin_object();
  j.key("runs").num(static_cast<int64_t>(runs.size())).key("ok").num(c.ok);
  j.key("failed").num(static_cast<int64_t>(runs.size()) - c.ok);
  j.key("statuses").begin_object();
  for (const auto& [status, n] : c.statuses) j.key(std::to_string(status)).num(n);
  j.end_object().key("errors").begin_object();
  for (const auto& [kind, n] : c.errors) j.key(kind).num(n);
  j.end_object().key("protocols").begin_object();
  for (const auto& [name, n] : c.protocols) j.key(name).num(n);
  j.end_object();
  j.key("dns_asked").num(c.dns_asked).key("dns_from_cache").num(c.dns_cached);
  j.key("dns_from_hosts_file").num(c.dns_hosts_file).key("dns_skipped").num(c.dns_skipped);
  if (options.url.https) {
    j.key("tls_handshakes").num(c.tls_handshakes).key("tls_resumed").num(c.tls_resumed);
  }
  j.key("phases").begin_object();
  auto stats = [&](const char* name, int64_t RunResult::*field) {
    auto v = phase_values(runs, field);
    j.key(fmt::format("{}_us", name)).begin_object();
    j.key("min").num(v.empty() ? 0 : v.front()).key("p50").num(percentile(v, 50));
    j.key("p90").num(percentile(v, 90)).key("p99").num(percentile(v, 99));
    j.key("max").num(v.empty() ? 0 : v.back()).end_object();
  };
  for (const Phase& p : kPhases) {
    if (p.field != &RunResult::tls_us || options.url.https) stats(p.name, p.field);
  }
  stats("total", &RunResult::total_us);
  j.end_object().end_object().end_object();
  return j.text() + "\n";
}

std::string text_dns_report(const std::string& name, const DnsLookup& lookup) {
  const dns::Answer& a = lookup.answer;
  std::string out;
  out += fmt::format("resolver   {}\n", lookup.server.empty() ? "-" : lookup.server);
  out += fmt::format("name       {}\n", name);
  if (!a.cname_chain.empty()) out += "cname      " + chain_text(a.name, a.cname_chain) + "\n";
  for (const auto& addr : a.addresses) out += fmt::format("answer     {}\n", addr.ip_string());
  if (a.ok()) {
    if (a.from_hosts_file) {
      out += "source     the hosts file\n";
    } else if (!a.addresses.empty() && net::Address::parse_ip(name, 0)) {
      out += "source     an IP literal (no query)\n";
    } else {
      out += fmt::format("ttl        {} s as sent, cached for {}\n", a.record_ttl,
                         format_duration(a.ttl));
    }
  } else if (a.negative()) {
    out += fmt::format("negative   {}\n", a.error_text);
    out += fmt::format("ttl        {} s as sent (negative TTL), cached for {}\n", a.record_ttl,
                       format_duration(a.ttl));
  } else {
    out += fmt::format("error      {}\n", a.error_text);
  }
  out += fmt::format("time       {} ms\n", ms(lookup.us));
  return out;
}

std::string json_dns_report(const std::string& name, const DnsLookup& lookup) {
  const dns::Answer& a = lookup.answer;
  JsonWriter j;
  j.begin_object().key("name").str(name).key("server").str(lookup.server);
  j.key("answers");
  write_answers(j, a.addresses, !a.from_hosts_file, a.record_ttl);
  j.key("cname_chain");
  write_strings(j, a.cname_chain);
  j.key("record_ttl").num(a.record_ttl).key("cached_ttl_ms").num(ms_of(a.ttl));
  j.key("from_hosts_file").boolean(a.from_hosts_file);
  j.key("negative");
  if (a.negative()) {
    j.begin_object().key("rcode").str(dns::to_string(a.error)).key("record_ttl").num(a.record_ttl);
    j.key("cached_ttl_ms").num(ms_of(a.ttl)).end_object();
  } else {
    j.null();
  }
  j.key("us").num(lookup.us);
  if (lookup.failure != FailureKind::kNone) {
    j.key("error").begin_object().key("kind").str(to_string(lookup.failure));
    j.key("message").str(lookup.error).end_object();
  }
  j.key("exit_status").num(exit_status(lookup.failure));
  j.end_object();
  return j.text() + "\n";
}

}  // namespace sluice::probe
