#include "probe/cli.h"

#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "base/log.h"
#include "base/units.h"
#include "probe/probe.h"
#include "probe/report.h"
#include "probe/stun_probe.h"
#include "probe/url.h"
#include "tls/cert_store.h"

namespace sluice::probe {

const char kUsage[] =
    "usage: sluice probe URL [-n N] [--json] [-H 'Name: value']... [-X METHOD]\n"
    "                        [--resolve HOST:PORT:ADDR[,ADDR]] [--connect-to "
    "HOST:PORT:HOST2:PORT2]\n"
    "                        [--dns-server IP[:PORT]]... [--timeout DUR]\n"
    "                        [--cacert FILE] [--sni NAME] [--insecure] [--http2 | --http1.1]\n"
    "       sluice probe --dns NAME [--dns-server IP[:PORT]]... [--timeout DUR] [--json]\n"
    "       sluice probe stun[+tcp]://HOST[:PORT] [-n N] [--timeout DUR] [--json]\n"
    "  Times one HTTP request phase by phase (dns, connect, tls, request_sent,\n"
    "  first_byte, body, total) and shows TCP_INFO; URL is http[s]://host[:port]/path?query.\n"
    "  -n N (1-10000) repeats it on new connections and prints min/p50/p90/p99/max;\n"
    "  https runs after the first resume the session of the run before.\n"
    "  --timeout (default 5s) bounds each phase, and each address's connect.\n"
    "  https: --cacert FILE trusts these CAs instead of the system's; --sni NAME is sent\n"
    "  and checked instead of the URL's host; --insecure (-k) shows what verification\n"
    "  says but goes on when it fails. ALPN offers h2 and http/1.1; the protocol the\n"
    "  server selects is spoken and shown.\n"
    "  --http2: HTTP/2 only (http: with prior knowledge; https: ALPN offers h2 alone);\n"
    "  --http1.1: HTTP/1.1 only. http:// URLs speak HTTP/1.1 otherwise.\n"
    "  exit status: 0 a response (any HTTP status), 2 usage or bad URL,\n"
    "    3 NXDOMAIN/NODATA, 4 DNS timeout or other DNS failure, 5 connection refused,\n"
    "    6 connect timeout, 7 reset or closed before a complete response,\n"
    "    8 malformed response, 9 response timeout (no first byte, or the body stalled),\n"
    "    10 TLS handshake failed, 11 TLS certificate verification failed,\n"
    "    12 --http2 and the server does not speak HTTP/2\n"
    "  stun://: N STUN Binding requests (RFC 8489, port 3478 by default) from one socket,\n"
    "  each retransmitted after 500 ms, 1 s, 2 s... until --timeout; shows the mapped\n"
    "  address, the round trip and transmissions of each; against a server that offers\n"
    "  RFC 5780's OTHER-ADDRESS, the NAT's mapping and filtering behaviour (a test without\n"
    "  an answer waits --timeout). stun+tcp://: the requests on one TCP connection, each\n"
    "  sent once, no NAT tests. exit status: 0 every request answered, 2 usage or bad\n"
    "    URL, 4 the host does not resolve, 13 no answer (over TCP: no connection, or\n"
    "    closed before an answer), 14 an error response,\n"
    "    15 a malformed answer\n";

namespace {

constexpr int kUsageStatus = 2;

int usage_error(const std::string& why) {
  std::fprintf(stderr, "sluice probe: %s\n", why.c_str());  // one line; --help has the rest
  return kUsageStatus;
}

void fail_line(const std::string& why) {
  std::fprintf(stderr, "sluice probe: %s\n", why.c_str());
}

bool is_token_char(char c) {
  // RFC 9110 §5.6.2 tchar.
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

Result<std::pair<std::string, std::string>> parse_header(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Status::error(fmt::format("-H '{}': expected 'Name: value'", text));
  }
  std::string_view name = text.substr(0, colon);
  std::string_view value = text.substr(colon + 1);
  if (!is_token(name)) {
    return Status::error(fmt::format("-H '{}': '{}' is not a valid field name", text, name));
  }
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {  // RFC 9110 §5.5: no CR, LF, NUL
      return Status::error(fmt::format("-H: the value of '{}' holds a control character", name));
    }
  }
  return std::make_pair(std::string(name), std::string(value));
}

Result<std::vector<net::Address>> parse_dns_servers(std::string_view text) {
  std::vector<net::Address> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    auto a = net::Address::parse(item);
    if (!a) a = net::Address::parse_ip(item, 53);
    if (!a) {
      return Status::error(
          fmt::format("--dns-server '{}': expected IP, IP:PORT or [IPv6]:PORT", item));
    }
    out.push_back(*a);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (out.empty()) return Status::error("--dns-server: no address");
  return out;
}

struct Args {
  ProbeOptions options;
  std::string url;
  std::string dns_name;
  int count = 1;
  bool json = false;
  bool help = false;
  bool tls_option = false;  // --cacert, --sni or --insecure was given
  std::optional<StunTarget> stun;
};

Result<Args> parse_args(int argc, char** argv) {
  Args args;
  bool have_url = false;
  bool have_dns = false;
  for (int i = 0; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view inline_value;
    bool has_inline = false;
    if (arg.starts_with("--") && arg.find('=') != std::string_view::npos) {
      has_inline = true;
      inline_value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
    }
    auto value = [&]() -> Result<std::string_view> {
      if (has_inline) return inline_value;
      if (i + 1 >= argc) return Status::error(fmt::format("{} needs a value", arg));
      return std::string_view(argv[++i]);
    };
    if (arg == "-h" || arg == "--help") {
      args.help = true;
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "-n") {
      auto v = value();
      if (!v) return v.status();
      int n = 0;
      auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
      if (ec != std::errc() || end != v->data() + v->size() || n < 1 || n > 10000) {
        return Status::error(fmt::format("-n '{}': expected a count in 1-10000", *v));
      }
      args.count = n;
    } else if (arg == "-H" || arg == "--header") {
      auto v = value();
      if (!v) return v.status();
      auto h = parse_header(*v);
      if (!h) return h.status();
      args.options.headers.push_back(std::move(h.value()));
    } else if (arg == "-X" || arg == "--request") {
      auto v = value();
      if (!v) return v.status();
      if (!is_token(*v)) return Status::error(fmt::format("-X '{}': not a valid method", *v));
      args.options.method = std::string(*v);
    } else if (arg == "--resolve") {
      auto v = value();
      if (!v) return v.status();
      auto r = parse_resolve(*v);
      if (!r) return r.status();
      args.options.resolve.push_back(std::move(r.value()));
    } else if (arg == "--connect-to") {
      auto v = value();
      if (!v) return v.status();
      auto c = parse_connect_to(*v);
      if (!c) return c.status();
      args.options.connect_to.push_back(std::move(c.value()));
    } else if (arg == "--dns-server") {
      auto v = value();
      if (!v) return v.status();
      auto servers = parse_dns_servers(*v);
      if (!servers) return servers.status();
      for (const auto& s : *servers) args.options.dns_servers.push_back(s);
    } else if (arg == "--timeout") {
      auto v = value();
      if (!v) return v.status();
      auto d = parse_duration(*v);
      if (!d || d->count() <= 0) {
        return Status::error(
            fmt::format("--timeout '{}': expected a positive duration such as 500ms or 5s", *v));
      }
      args.options.timeout = *d;
    } else if (arg == "--http2" || arg == "--http1.1") {
      HttpVersion v = arg == "--http2" ? HttpVersion::kHttp2 : HttpVersion::kHttp11;
      if (args.options.http_version && *args.options.http_version != v) {
        return Status::error("--http2 and --http1.1 exclude each other");
      }
      args.options.http_version = v;
    } else if (arg == "--insecure" || arg == "-k") {
      args.options.insecure = true;
      args.tls_option = true;
    } else if (arg == "--cacert") {
      auto v = value();
      if (!v) return v.status();
      if (v->empty()) return Status::error("--cacert needs a file");
      args.options.cacert = std::string(*v);
      args.tls_option = true;
    } else if (arg == "--sni") {
      auto v = value();
      if (!v) return v.status();
      if (!valid_host(*v) || net::Address::parse_ip(*v, 0)) {
        return Status::error(fmt::format("--sni '{}': expected a DNS name", *v));
      }
      args.options.sni = std::string(*v);
      args.tls_option = true;
    } else if (arg == "--dns") {
      auto v = value();
      if (!v) return v.status();
      if (!valid_host(*v)) return Status::error(fmt::format("--dns '{}': not a host name", *v));
      args.dns_name = std::string(*v);
      have_dns = true;
    } else if (!arg.empty() && arg.front() == '-' && arg != "-") {
      return Status::error(fmt::format("unknown option '{}' (see sluice probe --help)", arg));
    } else if (have_url) {
      return Status::error(fmt::format("unexpected argument '{}' (one URL only)", arg));
    } else {
      args.url = std::string(arg);
      have_url = true;
    }
  }
  if (args.help) return args;
  if (have_dns && have_url) return Status::error("--dns NAME takes no URL");
  if (have_dns) return args;
  if (!have_url) return Status::error("missing URL");
  if (is_stun_url(args.url)) {
    auto t = parse_stun_url(args.url);
    if (!t) return t.status();
    bool http_only =
        !args.options.headers.empty() || args.options.method != ProbeOptions{}.method ||
        !args.options.resolve.empty() || !args.options.connect_to.empty() ||
        !args.options.dns_servers.empty() || args.options.http_version || args.tls_option;
    if (http_only) return Status::error("stun:// takes only -n, --timeout and --json");
    args.stun = *t;
    return args;
  }
  auto url = parse_url(args.url);
  if (!url) return url.status();
  args.options.url = std::move(url.value());
  if (args.tls_option && !args.options.url.https) {
    return Status::error("--cacert, --sni and --insecure apply to https:// URLs only");
  }
  if (!args.options.cacert.empty()) {
    if (Status s = tls::check_ca_file(args.options.cacert); !s) {
      return Status::error(fmt::format("--cacert: {}", s.message()));
    }
  }
  return args;
}

int run_dns(const Args& args) {
  DnsLookup lookup = lookup_name(args.dns_name, args.options.dns_servers, args.options.timeout);
  std::string out =
      args.json ? json_dns_report(args.dns_name, lookup) : text_dns_report(args.dns_name, lookup);
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  if (lookup.failure != FailureKind::kNone) fail_line(lookup.error);
  return exit_status(lookup.failure);
}

int run_stun(const Args& args) {
  StunReport r = run_stun_probe(args.url, *args.stun, args.count, args.options.timeout);
  std::string out = args.json ? json_stun_report(r) : text_stun_report(r);
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  if (r.failure == StunFailure::kNone) return 0;
  fail_line(r.error);
  switch (r.failure) {
    case StunFailure::kResolve:
      return 4;
    case StunFailure::kNoAnswer:
      return 13;
    case StunFailure::kErrorResponse:
      return 14;
    default:
      return 15;
  }
}

int run_url(const Args& args) {
  std::vector<RunResult> runs;
  runs.reserve(static_cast<size_t>(args.count));
  Status started =
      run_probes(args.options, args.count, [&](const RunResult& r) { runs.push_back(r); });
  if (!started) return usage_error(started.message());
  std::string out;
  if (args.count == 1) {
    out = args.json ? json_report(args.options, runs[0]) : text_report(args.options, runs[0]);
  } else {
    out = args.json ? json_summary(args.options, runs) : text_summary(args.options, runs);
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  // With -n the first failure decides the status: the percentiles cover the runs that
  // succeeded, the errors line counts the others.
  size_t failed = 0;
  const RunResult* first = nullptr;
  for (const auto& r : runs) {
    if (r.ok()) continue;
    ++failed;
    if (!first) first = &r;
  }
  if (!first) return 0;
  if (args.count == 1) {
    fail_line(first->error);
  } else {
    fail_line(
        fmt::format("{} of {} runs failed; the first: {}", failed, runs.size(), first->error));
  }
  return exit_status(first->failure);
}

}  // namespace

int probe_main(int argc, char** argv) {
  // The resolver logs serve-stale warnings; the probe reports everything itself.
  log::set_level(log::Level::kError);
  auto args = parse_args(argc, argv);
  if (!args) return usage_error(args.status().message());
  if (args->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!args->dns_name.empty()) return run_dns(*args);
  if (args->stun) return run_stun(*args);
  return run_url(*args);
}

}  // namespace sluice::probe
