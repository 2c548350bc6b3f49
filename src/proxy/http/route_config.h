// The HTTP listener's configuration: limits, timeouts, forwarding headers, and the route
// table (virtual hosts → routes → actions). Immutable once loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "base/validation.h"
#include "http/http2/server_codec.h"

namespace re2 {
class RE2;
}

namespace sluice::proxy::http {

struct HeaderMatch {
  std::string name;
  std::optional<std::string> value;  // absent: the header must be present
  bool operator==(const HeaderMatch&) const = default;
};

struct QueryMatch {
  std::string name;
  std::optional<std::string> value;
  bool operator==(const QueryMatch&) const = default;
};

struct RouteMatch {
  enum class PathKind { kPrefix, kExact, kRegex };
  PathKind path_kind = PathKind::kPrefix;
  std::string path = "/";
  std::shared_ptr<const re2::RE2> regex;  // kRegex
  std::vector<std::string> methods;       // empty: any
  std::vector<HeaderMatch> headers;
  std::vector<QueryMatch> query;

  // By meaning: `regex` is compiled from `path`, so the pattern text stands for it.
  bool operator==(const RouteMatch& o) const {
    return path_kind == o.path_kind && path == o.path && methods == o.methods &&
           headers == o.headers && query == o.query;
  }
};

struct RetryPolicy {
  bool on_connect_failure = true;
  bool on_reset = false;  // reset-before-response
  bool on_5xx = false;
  bool on_gateway_error = false;  // 502, 503, 504
  std::vector<int> statuses;
  // gRPC statuses (cancelled 1, deadline-exceeded 4, resource-exhausted 8, internal 13,
  // unavailable 14) that retry a gRPC call answered trailers-only, whatever its method.
  std::vector<int> grpc_statuses;
  uint32_t num_retries = 1;
  Duration backoff_base = std::chrono::milliseconds(25);
  Duration backoff_max = std::chrono::milliseconds(250);
  bool allow_non_idempotent = false;
  // A request body is kept for a re-send only while it fits here (0: bodies are never
  // re-sent once sent).
  uint32_t replay_buffer_bytes = 64 * 1024;

  ConfigIssues validate() const;

  bool operator==(const RetryPolicy&) const = default;
};

// Where ring_hash and maglev take a request's key from. The policies are tried in order; the
// first that yields a value decides (none: the balancer picks at random).
struct HashPolicy {
  enum class Kind { kHeader, kCookie, kQueryParameter, kSourceIp };
  Kind kind = Kind::kHeader;
  std::string name;  // header, cookie or parameter name
  bool operator==(const HashPolicy&) const = default;
};

struct HeaderToAdd {
  std::string name;
  std::string value;
  bool operator==(const HeaderToAdd&) const = default;
};

struct Route {
  enum class Action { kForward, kRedirect, kDirectResponse };

  // Set when the listener's routes are loaded: the route's position among all of them
  // (its slot in per-route counters) and its label in metrics.
  uint32_t id = 0;
  std::string name;  // configured, or "<virtual host>/<index>"

  RouteMatch match;
  Action action = Action::kForward;
  // kForward
  std::string cluster;
  std::optional<std::string> prefix_rewrite;
  Duration timeout = std::chrono::seconds(15);  // whole request → 504; 0 = none
  Duration per_try_timeout{0};                  // 0 = none
  Duration upstream_idle_timeout = std::chrono::seconds(60);
  uint64_t max_body_bytes = 0;  // 0 = the listener's default
  RetryPolicy retry;
  std::vector<HashPolicy> hash_policy;
  // kRedirect
  int redirect_status = 302;
  std::string redirect_location;
  // kDirectResponse
  int direct_status = 200;
  std::string direct_body;

  std::vector<HeaderToAdd> request_headers_to_add;
  std::vector<std::string> request_headers_to_remove;
  std::vector<HeaderToAdd> response_headers_to_add;
  std::vector<std::string> response_headers_to_remove;

  ConfigIssues validate() const;  // route_config.cc

  bool operator==(const Route&) const = default;
};

struct VirtualHost {
  std::string name;
  std::vector<std::string> domains;  // "example.com", "*.example.com", "*"
  std::vector<Route> routes;

  ConfigIssues validate() const;

  bool operator==(const VirtualHost&) const = default;
};

// HTTP/2 towards clients: ALPN h2 on TLS listeners, the client preface on cleartext ones
// with prior_knowledge. Present on a listener: HTTP/2 is served.
struct Http2Options {
  // Cleartext connections that begin with the HTTP/2 connection preface are HTTP/2 (RFC 9113
  // §3.3); others are HTTP/1.1 as before.
  bool prior_knowledge = false;
  // SETTINGS and limits (windows larger than HTTP/2's 64 KiB default so that one upload over
  // a long path is not throttled by the window).
  sluice::http::http2::ServerOptions codec{100, 1024 * 1024, 4 * 1024 * 1024, 64 * 1024, 16 * 1024};
  // A connection whose abuse score passes this gets GOAWAY ENHANCE_YOUR_CALM and closes. The
  // score counts streams the client reset before their response completed, streams sluice
  // reset for the client's error, empty DATA frames, PRIORITY frames, and PING and SETTINGS
  // frames after the first; each completed response takes one point off.
  uint32_t max_abuse_score = 200;
  // Keep-alive PING when the connection has been silent this long (0: none), and how long
  // its ACK may take before the connection is closed.
  Duration ping_interval{0};
  Duration ping_timeout = std::chrono::seconds(20);
  // After this long (plus up to 10% jitter) the connection is drained with GOAWAY (0: never).
  Duration max_connection_age{0};
  // A stream whose response cannot be sent for this long (the client's window stays shut)
  // is reset (0: never).
  Duration send_stall_timeout = std::chrono::seconds(60);

  ConfigIssues validate() const;

  bool operator==(const Http2Options&) const = default;
};

struct HttpOptions {
  uint32_t max_head_bytes = 64 * 1024;
  uint32_t max_headers = 100;
  uint32_t max_uri_bytes = 8 * 1024;
  uint64_t max_body_bytes = 0;  // default for routes; 0 = unlimited
  Duration header_read_timeout = std::chrono::seconds(10);
  Duration body_idle_timeout = std::chrono::seconds(60);
  Duration keepalive_timeout = std::chrono::seconds(60);
  uint32_t max_requests_per_connection = 0;  // 0 = unlimited
  bool trust_forwarded_headers = false;
  bool generate_request_id = true;
  bool allow_connect = false;
  // Local replies for upstream failures name the endpoint and the exact reason (internal
  // deployments); by default the client only learns the kind of failure and its cause.
  bool local_reply_detail_full = false;

  std::vector<VirtualHost> virtual_hosts;

  // Absent: HTTP/1.x only.
  std::optional<Http2Options> http2;

  // The limits (paths are the listener's http.* keys); the virtual hosts are checked by
  // validate_virtual_hosts().
  ConfigIssues validate() const;

  bool operator==(const HttpOptions&) const = default;
};

// The listener's virtual_hosts list: each host and route, and domains served twice.
ConfigIssues validate_virtual_hosts(const std::vector<VirtualHost>& virtual_hosts);

}  // namespace sluice::proxy::http
