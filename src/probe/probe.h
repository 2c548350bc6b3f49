// Probe: one HTTP request timed phase by phase for `sluice probe` — DNS through the
// dns::Resolver, TCP connect to each address in order (no Happy Eyeballs), the TLS handshake
// for https (tls::Session under the net::Connection, ALPN choosing HTTP/2 or HTTP/1.1), writing
// the request, waiting for the first response byte, reading the body — and the kernel's TCP_INFO
// for the connection once the body is complete. HTTP/1.1 goes through the llhttp parser, HTTP/2
// through an Http2Exchange (one stream of an http2::ClientCodec). Every phase is bounded by the
// timeout; nothing blocks: a Probe lives on one event::Loop (loop thread only), owned by
// run_probes(), which runs one after another and stops the loop when the last is done.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/units.h"
#include "dns/resolver.h"
#include "event/loop.h"
#include "event/timer.h"
#include "http/http1/parser.h"
#include "http/message.h"
#include "net/address.h"
#include "net/connection.h"
#include "net/tcp_info.h"
#include "probe/http2_exchange.h"
#include "probe/tls_info.h"
#include "probe/url.h"
#include "tls/context.h"

namespace sluice::probe {

// What went wrong; each kind has its own exit status (see exit_status()).
enum class FailureKind {
  kNone,
  kDnsNegative,        // 3: NXDOMAIN or NODATA
  kDnsFailure,         // 4: timeout, SERVFAIL, REFUSED, no resolver...
  kConnectRefused,     // 5: every address refused (or was unreachable)
  kConnectTimeout,     // 6: an address timed out and none connected
  kConnectionClosed,   // 7: reset or closed before a complete response
  kMalformedResponse,  // 8: the parser rejected the response
  kResponseTimeout,    // 9: no first byte, or the body stalled, within the timeout
  kTlsHandshake,       // 10: the TLS handshake failed or timed out
  kTlsVerify,          // 11: the server's certificate did not verify (chain or name)
  kNoHttp2,            // 12: --http2, and the server does not speak it (or ALPN chose another)
};
const char* to_string(FailureKind kind);  // "dns_negative", ... (the JSON error kind)
int exit_status(FailureKind kind);

enum class HttpVersion { kHttp11, kHttp2 };
const char* to_string(HttpVersion version);  // "HTTP/1.1", "HTTP/2"

struct ProbeOptions {
  Url url;
  std::string method = "GET";
  // -H fields in order. One named like a default (Host, User-Agent, Accept, Connection)
  // replaces it; an empty value removes it.
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<ResolveOverride> resolve;
  std::vector<ConnectTo> connect_to;
  std::vector<net::Address> dns_servers;       // empty: /etc/resolv.conf
  Duration timeout = std::chrono::seconds(5);  // per phase, and per address for connect
  // https only.
  bool insecure = false;  // verify, report, but do not enforce
  std::string cacert;     // PEM CA file; "" = the system's store
  std::string sni;        // "" = the URL's host when it is a name
  // --http1.1 or --http2; unset: HTTP/1.1 for http, for https what ALPN chooses among h2 and
  // http/1.1. kHttp2 on http is prior knowledge (RFC 9113 §3.3); on https ALPN offers h2 only.
  std::optional<HttpVersion> http_version;
};

// What an HTTP/2 run adds.
struct Http2Phase {
  uint32_t stream_id = 0;
  std::optional<PeerSettings> peer_settings;  // once the server's SETTINGS arrived
};

struct DnsPhase {
  std::string name;     // what was resolved (the --connect-to host when one applies)
  std::string skipped;  // "literal" or "--resolve"; empty when the resolver answered
  std::string server;   // the resolver's servers
  std::vector<net::Address> addresses;
  std::vector<std::string> cname_chain;
  uint32_t record_ttl = 0;  // as the server sent it
  Duration ttl{0};          // how long the resolver caches it (clamped; what is left if cached)
  bool from_cache = false;
  bool from_hosts_file = false;
  bool stale = false;
  dns::ErrorKind error = dns::ErrorKind::kNone;
};

struct ConnectAttempt {
  net::Address address;
  std::string result;  // "connected", "connection refused", "timed out after 5s", ...
  int64_t us = 0;
};

// The outcome of one run. Phase durations in microseconds; -1 for a phase never reached.
// A failed phase lasts until the failure was noticed.
struct RunResult {
  std::string host;   // the URL's
  uint16_t port = 0;  // where we connect (after --connect-to)
  DnsPhase dns;
  std::vector<ConnectAttempt> attempts;
  std::optional<net::Address> remote;
  std::optional<net::Address> local;
  int64_t dns_us = -1;
  int64_t connect_us = -1;
  int64_t tls_us = -1;  // https only
  int64_t request_sent_us = -1;
  int64_t first_byte_us = -1;
  int64_t body_us = -1;
  int64_t total_us = -1;
  std::optional<TlsPhase> tls;  // https, once the handshake started
  std::optional<net::TcpInfo> tcp_info;
  std::optional<HttpVersion> protocol;  // once chosen (after the handshake for https)
  std::optional<Http2Phase> http2;      // when it is HTTP/2
  int status = 0;                       // the final response's; 0 if none
  int version_minor = 1;                // HTTP/1's
  std::string reason;                   // HTTP/1's; HTTP/2 has none
  http::HeaderMap headers;
  uint64_t body_bytes = 0;
  FailureKind failure = FailureKind::kNone;
  std::string error;  // one line
  bool ok() const { return failure == FailureKind::kNone; }
};

class Probe final : public event::DeferredDeletable,
                    public net::ConnectionCallbacks,
                    public http::http1::ParserCallbacks {
 public:
  using DoneFn = std::function<void(Probe&)>;
  // `resolver` may be null (it could not start, `resolver_error` says why): runs that need
  // DNS then fail. `tls` is the context of an https URL (null for http); it keeps the last
  // session, so a later run resumes it. `done` is called once, from a loop callback; it
  // must not destroy the Probe (defer_delete it).
  Probe(event::Loop& loop, dns::Resolver* resolver, std::string resolver_error,
        tls::ClientContext* tls, const ProbeOptions& options, DoneFn done);
  ~Probe() override;

  void start();
  const RunResult& result() const { return result_; }

  // net::ConnectionCallbacks
  void on_connected() override;
  void on_secured() override;
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;
  // http::http1::ParserCallbacks
  bool on_head(http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_message_complete(http::HeaderMap& trailers) override;

 private:
  enum class State {
    kIdle,
    kResolving,
    kConnecting,
    kHandshaking,
    kSending,
    kWaitingFirstByte,
    kReadingBody,
    kDone,
  };
  void transition(State next);
  void on_answer(const dns::Answer& answer);
  void connect_next();
  void attempt_failed(std::string why);
  void send_request();
  void request_sent();
  void on_read_http2();
  void http2_outcome(Http2Exchange::Outcome outcome);
  void on_timeout();
  void fail(FailureKind kind, std::string message);
  void finish();
  http::MessageHead build_request() const;
  int64_t us_since(MonoTime t) const;

  event::Loop& loop_;
  dns::Resolver* resolver_;
  std::string resolver_error_;
  tls::ClientContext* tls_;
  const ProbeOptions& options_;
  DoneFn done_;
  State state_ = State::kIdle;
  event::Timer timer_;
  // The resolver may answer after this Probe is gone (its own timeout fired first).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  std::string connect_host_;
  std::vector<net::Address> addresses_;
  size_t next_address_ = 0;
  MonoTime t_start_{}, t_dns_{}, t_connected_{}, t_secured_{}, t_sent_{}, t_first_byte_{},
      t_attempt_{};
  std::unique_ptr<net::Connection> conn_;
  tls::Session* session_ = nullptr;  // conn_'s transport, for https
  // Connections given up on from inside their own callbacks: destroyed with the Probe.
  std::vector<std::unique_ptr<net::Connection>> retired_;
  std::unique_ptr<http::http1::Parser> parser_;
  std::unique_ptr<Http2Exchange> h2_;  // borrows conn_: declared after it, destroyed first
  bool final_complete_ = false;
  RunResult result_;
};

// Runs `count` probes one after another on a fresh loop (new connection each time; one
// resolver for all, so later runs may be answered from its cache; one TLS context for all,
// so later https runs resume the session of the one before). `on_result` sees each result
// as it completes. Fails before any run when the TLS context cannot be made (the CA file).
Status run_probes(const ProbeOptions& options, int count,
                  const std::function<void(const RunResult&)>& on_result);

// `sluice probe --dns NAME`: one lookup, nothing else.
struct DnsLookup {
  std::string server;
  dns::Answer answer;
  int64_t us = 0;
  FailureKind failure = FailureKind::kNone;
  std::string error;
};
DnsLookup lookup_name(const std::string& name, const std::vector<net::Address>& servers,
                      Duration timeout);

}  // namespace sluice::probe
