#include "probe/probe.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "base/check.h"
#include "http/headers.h"
#include "http/http1/encoder.h"
#include "net/connect.h"
#include "net/socket_options.h"

namespace sluice::probe {
namespace {

using http::http1::Parser;

int64_t us_between(MonoTime from, MonoTime to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

dns::ResolverConfig resolver_config(const std::vector<net::Address>& servers, Duration timeout) {
  dns::ResolverConfig config;
  config.servers = servers;
  config.family = dns::Family::kBoth;  // show every address; they are tried in order
  // The phase timer bounds the lookup and says so; c-ares retries once within it (two
  // tries of two thirds each outlast the timer, whose message names the --timeout).
  config.attempts = 2;
  config.timeout =
      std::max<Duration>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout * 2 / 3),
                         std::chrono::milliseconds(10));
  return config;
}

// OpenSSL's text for the alert a server sends when ALPN finds no common protocol, as
// tls::Session reports a failed handshake.
std::string_view no_application_protocol() {
  const char* text =
      ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL));
  return text ? text : "";
}

}  // namespace

const char* to_string(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone:
      return "none";
    case FailureKind::kDnsNegative:
      return "dns_negative";
    case FailureKind::kDnsFailure:
      return "dns_failure";
    case FailureKind::kConnectRefused:
      return "connect_refused";
    case FailureKind::kConnectTimeout:
      return "connect_timeout";
    case FailureKind::kConnectionClosed:
      return "connection_closed";
    case FailureKind::kMalformedResponse:
      return "malformed_response";
    case FailureKind::kResponseTimeout:
      return "response_timeout";
    case FailureKind::kTlsHandshake:
      return "tls_handshake";
    case FailureKind::kTlsVerify:
      return "tls_verify";
    case FailureKind::kNoHttp2:
      return "no_http2";
  }
  return "unknown";
}

const char* to_string(HttpVersion version) {
  return version == HttpVersion::kHttp2 ? "HTTP/2" : "HTTP/1.1";
}

int exit_status(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone:
      return 0;
    case FailureKind::kDnsNegative:
      return 3;
    case FailureKind::kDnsFailure:
      return 4;
    case FailureKind::kConnectRefused:
      return 5;
    case FailureKind::kConnectTimeout:
      return 6;
    case FailureKind::kConnectionClosed:
      return 7;
    case FailureKind::kMalformedResponse:
      return 8;
    case FailureKind::kResponseTimeout:
      return 9;
    case FailureKind::kTlsHandshake:
      return 10;
    case FailureKind::kTlsVerify:
      return 11;
    case FailureKind::kNoHttp2:
      return 12;
  }
  return 1;
}

Probe::Probe(event::Loop& loop, dns::Resolver* resolver, std::string resolver_error,
             tls::ClientContext* tls, const ProbeOptions& options, DoneFn done)
    : loop_(loop),
      resolver_(resolver),
      resolver_error_(std::move(resolver_error)),
      tls_(tls),
      options_(options),
      done_(std::move(done)),
      timer_(loop.timers(), [this] { on_timeout(); }) {}

Probe::~Probe() {
  *alive_ = false;
  timer_.cancel();
}

int64_t Probe::us_since(MonoTime t) const {
  return us_between(t, MonoClock::now());
}

void Probe::transition(State next) {
  // Phases only move forward; kDone is final.
  SLUICE_CHECK(state_ != State::kDone && static_cast<int>(next) > static_cast<int>(state_));
  state_ = next;
  timer_.cancel();
  switch (next) {
    case State::kResolving:
    case State::kHandshaking:
    case State::kSending:
    case State::kWaitingFirstByte:
    case State::kReadingBody:
      timer_.arm_at(MonoClock::now() + options_.timeout);
      break;
    case State::kConnecting:  // armed per address by connect_next()
    case State::kIdle:
    case State::kDone:
      break;
  }
}

void Probe::start() {
  t_start_ = MonoClock::now();
  const Url& url = options_.url;
  result_.host = url.host;
  connect_host_ = url.host;
  uint16_t port = url.port;
  for (const ConnectTo& c : options_.connect_to) {
    if (!c.host.empty() && !http::iequals(c.host, url.host)) continue;
    if (c.port && *c.port != url.port) continue;
    if (!c.target_host.empty()) connect_host_ = c.target_host;
    if (c.target_port) port = *c.target_port;
    break;  // the first match applies, as with curl
  }
  result_.port = port;
  result_.dns.name = connect_host_;
  transition(State::kResolving);

  for (const ResolveOverride& r : options_.resolve) {
    if (r.port == port && http::iequals(r.host, connect_host_)) {
      result_.dns.skipped = "--resolve";
      result_.dns.addresses = r.addresses;
      break;
    }
  }
  if (result_.dns.skipped.empty()) {
    if (auto literal = net::Address::parse_ip(connect_host_, 0)) {
      result_.dns.skipped = "literal";
      result_.dns.addresses.push_back(*literal);
    }
  }
  if (!result_.dns.skipped.empty()) {
    t_dns_ = t_start_;  // no DNS phase: 0 µs by definition
    result_.dns_us = 0;
    transition(State::kConnecting);
    return connect_next();
  }
  if (!resolver_) {
    return fail(FailureKind::kDnsFailure,
                fmt::format("{}: cannot start the resolver: {}", connect_host_, resolver_error_));
  }
  result_.dns.server = resolver_->servers_text();
  std::weak_ptr<bool> alive = alive_;
  // May answer before returning (cache, hosts file).
  resolver_->resolve(connect_host_, dns::QueryType::kAddress, [this, alive](const dns::Answer& a) {
    if (auto p = alive.lock(); p && *p) on_answer(a);
  });
}

void Probe::on_answer(const dns::Answer& a) {
  if (state_ != State::kResolving) return;  // our own timeout fired first
  t_dns_ = MonoClock::now();
  result_.dns_us = us_between(t_start_, t_dns_);
  DnsPhase& d = result_.dns;
  d.addresses = a.addresses;
  d.cname_chain = a.cname_chain;
  d.record_ttl = a.record_ttl;
  d.ttl = a.ttl;
  d.from_cache = a.from_cache;
  d.from_hosts_file = a.from_hosts_file;
  d.stale = a.stale;
  d.error = a.error;
  if (!a.ok()) {
    return fail(a.negative() ? FailureKind::kDnsNegative : FailureKind::kDnsFailure,
                fmt::format("{}: {}", connect_host_, a.error_text));
  }
  if (a.addresses.empty()) {
    return fail(FailureKind::kDnsFailure, fmt::format("{}: no addresses", connect_host_));
  }
  transition(State::kConnecting);
  connect_next();
}

void Probe::connect_next() {
  if (next_address_ >= result_.dns.addresses.size()) {
    // Every address failed. One that timed out says more than the refusals around it.
    bool any_timeout =
        std::any_of(result_.attempts.begin(), result_.attempts.end(),
                    [](const ConnectAttempt& a) { return a.result.starts_with("timed out"); });
    std::string message;
    if (result_.attempts.size() == 1) {
      message = fmt::format("{}: {}", result_.attempts[0].address.to_string(),
                            result_.attempts[0].result);
    } else {
      message = fmt::format("all {} addresses failed:", result_.attempts.size());
      for (const auto& at : result_.attempts) {
        message += fmt::format(" {} {};", at.address.to_string(), at.result);
      }
      message.pop_back();
    }
    return fail(any_timeout ? FailureKind::kConnectTimeout : FailureKind::kConnectRefused, message);
  }
  net::Address target = result_.dns.addresses[next_address_++];
  target.set_port(result_.port);
  result_.attempts.push_back({target, "", 0});
  t_attempt_ = MonoClock::now();
  timer_.arm_at(t_attempt_ + options_.timeout);
  net::SocketOptions plain;  // a probe measures the default socket, no tuning
  auto pending = net::start_connect(target, plain, std::nullopt, false);
  if (!pending) return attempt_failed(pending.status().message());
  conn_ = std::make_unique<net::Connection>(loop_, *this);
  session_ = nullptr;
  if (tls_) {
    // The certificate is checked against the URL's host (not a --connect-to target), or
    // against the IP SANs when the host is an IP literal (no SNI is sent then).
    const Url& url = options_.url;
    bool literal = static_cast<bool>(net::Address::parse_ip(url.host, 0));
    auto session = tls_->new_session(pending->fd.get(), literal ? "" : url.host, target);
    if (!session) return attempt_failed("cannot make a TLS session");
    SSL* ssl = session->ssl();
    // The handshake always completes, so that the report shows the chain and what
    // verification said; on_secured() goes no further when it failed (unless --insecure).
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
    session_ = session.get();
    conn_->set_transport(std::move(session));
  }
  if (Status s = conn_->adopt_connecting(std::move(pending->fd), pending->connected); !s) {
    return attempt_failed(s.message());
  }
  if (pending->connected) on_connected();
}

void Probe::attempt_failed(std::string why) {
  ConnectAttempt& at = result_.attempts.back();
  at.result = std::move(why);
  at.us = us_since(t_attempt_);
  timer_.cancel();
  if (conn_) {
    conn_->close();
    retired_.push_back(std::move(conn_));  // maybe inside its own callback
  }
  connect_next();
}

void Probe::on_connected() {
  if (state_ != State::kConnecting) return;
  t_connected_ = MonoClock::now();
  ConnectAttempt& at = result_.attempts.back();
  at.result = "connected";
  at.us = us_between(t_attempt_, t_connected_);
  result_.connect_us = us_between(t_dns_, t_connected_);
  result_.remote = at.address;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(conn_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    result_.local = net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  if (session_) {
    TlsPhase& t = result_.tls.emplace();
    t.verify_skipped = options_.insecure;
    if (const char* sni = SSL_get_servername(session_->ssl(), TLSEXT_NAMETYPE_host_name)) {
      t.sni = sni;
    }
    // As tls::ClientContext checks it: --sni, else the URL's host name, else its IP.
    bool literal = static_cast<bool>(net::Address::parse_ip(options_.url.host, 0));
    t.checked = !options_.sni.empty() ? options_.sni
                : literal             ? at.address.ip_string()
                                      : options_.url.host;
    transition(State::kHandshaking);  // the Connection drives it; on_secured() follows
    return;
  }
  t_secured_ = t_connected_;
  result_.protocol = options_.http_version.value_or(HttpVersion::kHttp11);
  send_request();
}

void Probe::on_secured() {
  if (state_ != State::kHandshaking) return;
  TlsPhase& t = *result_.tls;
  describe_handshake(session_->ssl(), t);
  // Reading the chain and checking the OCSP signature is the client's TLS work too: it
  // counts in this phase, not in request_sent.
  t_secured_ = MonoClock::now();
  result_.tls_us = us_between(t_connected_, t_secured_);
  if (!t.verified() && !options_.insecure) {
    // Nothing is sent to a server that could not prove who it is.
    return fail(FailureKind::kTlsVerify, t.verify_error);
  }
  if (t.alpn == "h2") {
    result_.protocol = HttpVersion::kHttp2;
  } else if (options_.http_version == HttpVersion::kHttp2) {
    // RFC 9113 §3.2: over TLS, HTTP/2 is only what ALPN agreed on.
    return fail(FailureKind::kNoHttp2,
                fmt::format("the server does not speak HTTP/2: ALPN selected {}",
                            t.alpn.empty() ? "no protocol" : t.alpn));
  } else {
    result_.protocol = HttpVersion::kHttp11;
  }
  send_request();
}

void Probe::send_request() {
  transition(State::kSending);
  if (result_.protocol == HttpVersion::kHttp2) {
    result_.http2.emplace();
    h2_ = std::make_unique<Http2Exchange>(*conn_, options_.url.https ? "https" : "http");
    h2_->start(build_request());
    result_.http2->stream_id = h2_->stream_id();
  } else {
    parser_ = std::make_unique<Parser>(Parser::Kind::kResponse, Parser::kDefaultLimits, *this);
    parser_->set_no_body_expected(options_.method == "HEAD");
    parser_->set_connect_request(options_.method == "CONNECT");
    std::string out;
    http::http1::encode_request_head(build_request(), out);
    conn_->write(out);
  }
  conn_->flush();
  if (state_ != State::kSending) return;  // the write failed: on_error reported it
  // A request head fits the socket buffer: it is on its way now. Should it not fit, it
  // counts as sent when the first response byte arrives (the Connection does not say
  // when its queue drains below the high watermark).
  if (conn_->queued() == 0) request_sent();
}

http::MessageHead Probe::build_request() const {
  const Url& url = options_.url;
  http::MessageHead head;
  head.method = options_.method;
  head.target = url.target;
  head.headers.add("Host", url.authority());
  head.headers.add("User-Agent", "sluice-probe/" SLUICE_VERSION);
  head.headers.add("Accept", "*/*");
  head.headers.add("Connection", "close");
  for (const auto& [name, value] : options_.headers) {
    if (http::iequals(name, "Host") || http::iequals(name, "User-Agent") ||
        http::iequals(name, "Accept") || http::iequals(name, "Connection")) {
      head.headers.remove(name);
      if (value.empty()) continue;  // an empty value removes the default, as with curl
    }
    head.headers.add(name, value);
  }
  return head;
}

void Probe::request_sent() {
  t_sent_ = MonoClock::now();
  result_.request_sent_us = us_between(t_secured_, t_sent_);
  transition(State::kWaitingFirstByte);
}

void Probe::on_read() {
  if (h2_) return on_read_http2();
  Buffer& in = conn_->input();
  if (state_ == State::kSending) request_sent();
  if (state_ == State::kWaitingFirstByte) {
    t_first_byte_ = MonoClock::now();
    result_.first_byte_us = us_between(t_sent_, t_first_byte_);
    transition(State::kReadingBody);
  } else if (state_ == State::kReadingBody) {
    timer_.arm_at(MonoClock::now() + options_.timeout);  // the body stalls after this long
  } else {
    in.clear();
    return;
  }
  while (state_ == State::kReadingBody && !in.empty()) {
    size_t used = 0;
    Parser::Outcome outcome = parser_->execute(in.view(), &used);
    in.consume(used);
    switch (outcome) {
      case Parser::Outcome::kNeedMore:
        break;
      case Parser::Outcome::kError:
        return fail(FailureKind::kMalformedResponse,
                    "malformed response: " + parser_->error().reason);
      case Parser::Outcome::kMessageComplete:
        if (final_complete_) return finish();
        parser_->resume();  // an interim 1xx ended; the final response follows
        break;
      case Parser::Outcome::kUpgrade:  // 101 or a CONNECT tunnel: the HTTP part is over
      case Parser::Outcome::kStopped:
        return finish();
    }
  }
}

void Probe::on_read_http2() {
  // The read that carries the response's first head is its first byte, as for HTTP/1; what
  // comes before (the server's SETTINGS and acknowledgements) is the connection's, not the
  // response's.
  MonoTime now = MonoClock::now();
  if (state_ == State::kSending) request_sent();
  if (state_ != State::kWaitingFirstByte && state_ != State::kReadingBody) {
    conn_->input().clear();
    return;
  }
  Http2Exchange::Outcome outcome = h2_->on_read();
  if (state_ == State::kWaitingFirstByte && h2_->head_received()) {
    t_first_byte_ = now;
    result_.first_byte_us = us_between(t_sent_, t_first_byte_);
    transition(State::kReadingBody);
  } else if (state_ == State::kReadingBody) {
    timer_.arm_at(now + options_.timeout);  // the body stalls after this long
  }
  http2_outcome(outcome);
}

void Probe::http2_outcome(Http2Exchange::Outcome outcome) {
  if (h2_->preface().state() == ServerPreface::State::kSettings) {
    result_.http2->peer_settings = h2_->preface().settings();
  }
  const http::MessageHead& response = h2_->response();
  if (response.status != 0 && result_.status == 0) {
    result_.status = response.status;
    result_.headers = response.headers;
  }
  result_.body_bytes = h2_->body_bytes();
  switch (outcome) {
    case Http2Exchange::Outcome::kContinue:
      return;
    case Http2Exchange::Outcome::kComplete:
      return finish();
    case Http2Exchange::Outcome::kFailed:
      break;
  }
  switch (h2_->failure()) {
    case Http2Exchange::Failure::kNotHttp2:
      return fail(FailureKind::kNoHttp2, h2_->error());
    case Http2Exchange::Failure::kProtocol:
      return fail(FailureKind::kMalformedResponse, h2_->error());
    case Http2Exchange::Failure::kReset:
    case Http2Exchange::Failure::kClosed:
    case Http2Exchange::Failure::kNone:
      return fail(FailureKind::kConnectionClosed, h2_->error());
  }
}

void Probe::on_write_drained() {
  if (h2_) h2_->on_write_drained();
}

void Probe::on_read_closed() {
  if (h2_ && (state_ == State::kWaitingFirstByte || state_ == State::kReadingBody ||
              state_ == State::kSending)) {
    return http2_outcome(h2_->on_read_closed());
  }
  if (state_ == State::kReadingBody && parser_->finish() == Parser::Outcome::kMessageComplete &&
      final_complete_) {
    return finish();  // a body delimited by the close
  }
  if (state_ == State::kDone) return;
  if (state_ == State::kReadingBody && result_.status != 0) {
    return fail(FailureKind::kConnectionClosed,
                fmt::format("connection closed before a complete response (HTTP {}, {} bytes of "
                            "body received)",
                            result_.status, result_.body_bytes));
  }
  fail(FailureKind::kConnectionClosed,
       state_ == State::kReadingBody
           ? "connection closed before a complete response (in the response head)"
           : "connection closed before a complete response (no response)");
}

void Probe::on_error(int err) {
  if (state_ == State::kConnecting) return attempt_failed(net::error_text(err));
  if (state_ == State::kDone) return;
  if (state_ == State::kHandshaking) {
    std::string why(session_ ? session_->failure() : std::string_view());
    if (options_.http_version == HttpVersion::kHttp2 && !why.empty() &&
        why == no_application_protocol()) {
      // RFC 7301 §3.2: the server shares no protocol with our ALPN list, which is h2 alone.
      return fail(FailureKind::kNoHttp2,
                  fmt::format("the server does not speak HTTP/2: it refused ALPN h2 ({})", why));
    }
    return fail(FailureKind::kTlsHandshake,
                fmt::format("TLS handshake failed: {}", why.empty() ? net::error_text(err) : why));
  }
  fail(FailureKind::kConnectionClosed,
       fmt::format("{} before a complete response", net::error_text(err)));
}

bool Probe::on_head(http::MessageHead& head) {
  if (head.status < 200) return true;  // interim
  result_.status = head.status;
  result_.reason = head.reason;
  result_.version_minor = head.version_minor;
  result_.headers = head.headers;
  return true;
}

void Probe::on_body(std::string_view data) {
  if (result_.status != 0) result_.body_bytes += data.size();
}

void Probe::on_message_complete(http::HeaderMap&) {
  if (result_.status != 0) final_complete_ = true;
}

void Probe::on_timeout() {
  std::string t = format_duration(options_.timeout);
  switch (state_) {
    case State::kResolving:
      return fail(FailureKind::kDnsFailure,
                  fmt::format("{}: no answer from {} within {} (DNS timeout)", connect_host_,
                              result_.dns.server, t));
    case State::kConnecting:
      return attempt_failed("timed out after " + t);
    case State::kHandshaking:
      return fail(FailureKind::kTlsHandshake, "TLS handshake: no progress within " + t);
    case State::kSending:
      return fail(FailureKind::kResponseTimeout, "the request could not be sent within " + t);
    case State::kWaitingFirstByte:
      return fail(FailureKind::kResponseTimeout,
                  fmt::format("no response within {} after the request was sent", t));
    case State::kReadingBody:
      return fail(FailureKind::kResponseTimeout,
                  result_.status == 0
                      ? fmt::format("the response head stalled: nothing for {}", t)
                      : fmt::format("the response body stalled: nothing for {} after {} bytes", t,
                                    result_.body_bytes));
    case State::kIdle:
    case State::kDone:
      return;
  }
}

void Probe::fail(FailureKind kind, std::string message) {
  if (state_ == State::kDone) return;
  result_.failure = kind;
  result_.error = std::move(message);
  // The failed phase lasts until now.
  MonoTime now = MonoClock::now();
  switch (state_) {
    case State::kResolving:
      result_.dns_us = us_between(t_start_, now);
      break;
    case State::kConnecting:
      result_.connect_us = us_between(t_dns_, now);
      break;
    case State::kHandshaking:
      result_.tls_us = us_between(t_connected_, now);
      break;
    case State::kSending:
      result_.request_sent_us = us_between(t_secured_, now);
      break;
    case State::kWaitingFirstByte:
      result_.first_byte_us = us_between(t_sent_, now);
      break;
    case State::kReadingBody:
      result_.body_us = us_between(t_first_byte_, now);
      break;
    case State::kIdle:
    case State::kDone:
      break;
  }
  finish();
}

void Probe::finish() {
  MonoTime now = MonoClock::now();
  if (result_.ok()) result_.body_us = us_between(t_first_byte_, now);
  result_.total_us = us_between(t_start_, now);
  if (conn_ && conn_->open() && !conn_->connecting()) {
    // Right after the body: what the kernel learned over the whole exchange.
    if (auto ti = net::read_tcp_info(conn_->fd())) result_.tcp_info = std::move(ti.value());
  }
  // Before the goodbye below, which may fail the connection: on_error() then ignores it.
  transition(State::kDone);
  if (h2_) {
    // An HTTP/2 server keeps the connection open: say goodbye (GOAWAY) after a response,
    // or reset the stream, then close.
    h2_->end(result_.ok());
    if (result_.ok()) conn_->flush();
  }
  if (conn_) conn_->close(!result_.ok());
  done_(*this);
}

Status run_probes(const ProbeOptions& options, int count,
                  const std::function<void(const RunResult&)>& on_result) {
  std::shared_ptr<tls::ClientContext> tls;
  if (options.url.https) {
    tls::ClientConfig config;
    config.verify = true;  // each session turns enforcement off; see connect_next()
    config.ca = options.cacert;
    config.sni = options.sni;
    // RFC 7301: in order of preference.
    if (options.http_version == HttpVersion::kHttp11) {
      config.alpn = {"http/1.1"};
    } else if (options.http_version == HttpVersion::kHttp2) {
      config.alpn = {"h2"};
    } else {
      config.alpn = {"h2", "http/1.1"};
    }
    config.session_resumption = true;
    auto made = tls::ClientContext::create(config);
    if (!made) return made.status();
    tls = std::move(made.value());
  }
  event::Loop loop;
  auto resolver =
      dns::Resolver::create(loop, resolver_config(options.dns_servers, options.timeout));
  dns::Resolver* r = resolver ? resolver->get() : nullptr;
  std::string resolver_error = resolver ? "" : resolver.status().message();
  int started = 0;
  std::unique_ptr<Probe> current;
  std::function<void()> start_next = [&] {
    ++started;
    current = std::make_unique<Probe>(loop, r, resolver_error, tls.get(), options, [&](Probe& p) {
      on_result(p.result());
      // Called from inside the connection's (or the resolver's) callbacks: the loop
      // destroys the probe after this iteration, and the next run starts in a later one.
      loop.defer_delete(std::move(current));
      if (started < count) {
        loop.post(start_next);
      } else {
        loop.stop();
      }
    });
    current->start();  // `current` may be gone when this returns
  };
  loop.post(start_next);
  loop.run();
  loop.delete_deferred_now();
  return Status::ok();
}

DnsLookup lookup_name(const std::string& name, const std::vector<net::Address>& servers,
                      Duration timeout) {
  DnsLookup out;
  event::Loop loop;
  auto resolver = dns::Resolver::create(loop, resolver_config(servers, timeout));
  if (!resolver) {
    out.failure = FailureKind::kDnsFailure;
    out.error = "cannot start the resolver: " + resolver.status().message();
    return out;
  }
  out.server = (*resolver)->servers_text();
  out.answer.name = name;
  MonoTime start = MonoClock::now();
  bool done = false;
  event::Timer guard(loop.timers(), [&] {
    done = true;
    out.answer.error = dns::ErrorKind::kTimeout;
    out.answer.error_text =
        fmt::format("no answer from {} within {}", out.server, format_duration(timeout));
    loop.stop();
  });
  guard.arm_at(start + timeout);
  loop.post([&] {
    (*resolver)->resolve(name, dns::QueryType::kAddress, [&](const dns::Answer& a) {
      if (done) return;
      done = true;
      out.answer = a;
      guard.cancel();
      loop.stop();
    });
  });
  loop.run();
  out.us = us_between(start, MonoClock::now());
  if (!out.answer.ok()) {
    out.failure = out.answer.negative() ? FailureKind::kDnsNegative : FailureKind::kDnsFailure;
    out.error = fmt::format("{}: {}", name, out.answer.error_text);
  }
  return out;
}

}  // namespace sluice::probe
