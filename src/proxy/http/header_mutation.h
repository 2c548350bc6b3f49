// HeaderMutation: how a request head becomes the head sent upstream, and a response head
// the head sent downstream: hop-by-hop fields removed (RFC 9110 §7.6.1), X-Forwarded-*,
// X-Request-Id and traceparent, the route's own edits, the framing of the forwarded body.
// Also the trailer fields a proxy must not forward (RFC 9110 §6.5.1). Pure functions over
// heads; no I/O. Any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.h"
#include "proxy/http/route_config.h"

namespace sluice::proxy::http {

// Where the randomness of request ids and trace ids comes from (tests pass their own).
using RandomSource = uint64_t (*)();
uint64_t thread_random();  // the thread's generator (base/random.h)

// What the forwarded headers say about the downstream side.
struct DownstreamInfo {
  std::string_view peer_ip;
  bool trust_forwarded_headers = false;
  bool generate_request_id = true;
  bool secure = false;  // the client connection is TLS
  // The verified client certificate as x-forwarded-client-cert ("" none). A client's own
  // copy of that header is never forwarded.
  std::string_view client_cert;
};

// RFC 9110 §7.6.1: fields that describe one connection, never forwarded. With
// `keep_upgrade`, Upgrade (and the Connection token naming it) survive for a tunnel.
void remove_hop_by_hop(sluice::http::HeaderMap& headers, bool keep_upgrade);

// The request-target sent upstream: the route's prefix rewrite applied, the query kept; a
// CONNECT's authority-form target as it came.
std::string upstream_target(const Route& route, const sluice::http::MessageHead& request);

// The W3C traceparent sent upstream: the incoming trace (a valid version 00 header) with a
// new parent id, or a new sampled trace.
std::string next_traceparent(const std::string* incoming, RandomSource random);
// A version 4 UUID.
std::string random_request_id(RandomSource random);

struct UpstreamIds {
  std::string request_id;   // as sent (empty: none)
  std::string traceparent;  // as sent
};

// Rewrites `request.headers` in place into the header section sent upstream (the caller
// keeps what it needs of the original first). `upgrade`: the request asks for a tunnel
// (Upgrade accepted, or CONNECT).
void to_upstream(const Route& route, sluice::http::MessageHead& request,
                 const DownstreamInfo& downstream, bool upgrade, RandomSource random,
                 UpstreamIds& ids);

// Rewrites a final response head's fields for the client: hop-by-hop removed (Upgrade kept
// for a 101), then the route's response edits.
void to_downstream(const Route& route, sluice::http::MessageHead& response, bool upgrade);
// An interim (1xx) response: hop-by-hop removed only.
void interim_to_downstream(sluice::http::MessageHead& response);

// RFC 9110 §6.5.1: removes trailer fields that frame, route, authenticate or control a
// message, which a proxy must not forward as trailers. Returns how many were removed.
size_t remove_forbidden_trailers(sluice::http::HeaderMap& trailers);

}  // namespace sluice::proxy::http
