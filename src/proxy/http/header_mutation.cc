#include "proxy/http/header_mutation.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include <cstring>

#include "base/random.h"
#include "proxy/http/router.h"

namespace sluice::proxy::http {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;

namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The field names the Connection fields of `headers` list (RFC 9110 §7.6.1), read once per
// head rather than once per field judged. A head naming more than a few (rare) is read again
// for each field instead. The views point into `headers`: judge before changing it.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const HeaderMap& headers) : headers_(headers) {
    for (const auto& c : headers) {
      if (!sluice::http::iequals(c.name, "connection")) continue;
      sluice::http::for_each_token(c.value, [&](std::string_view t) {
        if (count_ < kFew) {
          tokens_[count_++] = t;
        } else {
          many_ = true;
        }
      });
    }
  }
  bool names(std::string_view name) const {
    if (many_) {
      bool found = false;
      for (const auto& c : headers_) {
        if (!sluice::http::iequals(c.name, "connection")) continue;
        sluice::http::for_each_token(
            c.value, [&](std::string_view t) { found = found || sluice::http::iequals(t, name); });
      }
      return found;
    }
    for (size_t i = 0; i < count_; ++i) {
      if (sluice::http::iequals(tokens_[i], name)) return true;
    }
    return false;
  }

 private:
  static constexpr size_t kFew = 8;
  const HeaderMap& headers_;
  std::string_view tokens_[kFew];
  size_t count_ = 0;
  bool many_ = false;
};

// Removes the fields `drop` selects, judging every field before removing any (a judgement
// may read other fields). No heap allocation for a header section of ordinary size.
template <typename Pred>
void erase_judged(std::vector<sluice::http::Header>& fields, Pred drop) {
  constexpr size_t kOnStack = 256;
  bool on_stack[kOnStack];
  std::vector<bool> on_heap;
  size_t n = fields.size();
  if (n > kOnStack) on_heap.resize(n);
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    bool d = drop(fields[i]);
    any |= d;
    if (n > kOnStack) {
      on_heap[i] = d;
    } else {
      on_stack[i] = d;
    }
  }
  if (!any) return;
  size_t out = 0;
  for (size_t i = 0; i < n; ++i) {
    if (n > kOnStack ? on_heap[i] : on_stack[i]) continue;
    if (out != i) fields[out] = std::move(fields[i]);
    ++out;
  }
  fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(out), fields.end());
}

}  // namespace

uint64_t thread_random() {
  return thread_rng().next_u64();
}

void remove_hop_by_hop(HeaderMap& headers, bool keep_upgrade) {
  static constexpr std::string_view kHopByHop[] = {"connection", "keep-alive", "proxy-connection",
                                                   "te",         "trailer",    "transfer-encoding"};
  ConnectionTokens named(headers);
  erase_judged(headers.fields(), [&](const sluice::http::Header& h) {
    for (std::string_view n : kHopByHop) {
      if (sluice::http::iequals(h.name, n)) return true;
    }
    if (sluice::http::iequals(h.name, "upgrade")) return !keep_upgrade;
    return named.names(h.name);
  });
}

std::string upstream_target(const Route& r, const MessageHead& request) {
  if (request.method == "CONNECT") return request.target;  // authority-form stays
  std::string_view path, query;
  split_target(request.target, &path, &query);
  std::string target;
  if (r.prefix_rewrite && r.match.path_kind == RouteMatch::PathKind::kPrefix) {
    std::string_view rest = path.substr(std::min(r.match.path.size(), path.size()));
    target.reserve(r.prefix_rewrite->size() + rest.size() + 2 + query.size());
    target = *r.prefix_rewrite;
    target += rest;
    if (target.empty() || target[0] != '/') target.insert(target.begin(), '/');
  } else {
    target.reserve(path.size() + 1 + query.size());
    target = path;
  }
  if (!query.empty()) {
    target += '?';
    target += query;
  }
  return target;
}

namespace {
// Writes the low `digits` nibbles of v as lower-case hex at p; returns the end. (fmt's `{:x}`
// costs about ten times as many instructions, once per request.)
char* put_hex(char* p, uint64_t v, int digits) {
  constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) p[i] = kHex[(v >> (4 * (digits - 1 - i))) & 0xf];
  return p + digits;
}
}  // namespace

std::string random_request_id(RandomSource random) {
  uint64_t a = random();
  uint64_t b = random();
  a = (a & 0xffffffffffff0fffull) | 0x0000000000004000ull;
  b = (b & 0x3fffffffffffffffull) | 0x8000000000000000ull;
  // 8-4-4-4-12 hex digits (RFC 9562 §4)
  char buf[36];
  char* p = put_hex(buf, a >> 32, 8);
  *p++ = '-';
  p = put_hex(p, (a >> 16) & 0xffff, 4);
  *p++ = '-';
  p = put_hex(p, a & 0xffff, 4);
  *p++ = '-';
  p = put_hex(p, b >> 48, 4);
  *p++ = '-';
  p = put_hex(p, b, 12);
  return std::string(buf, static_cast<size_t>(p - buf));
}

std::string next_traceparent(const std::string* incoming, RandomSource random) {
  constexpr std::string_view kZeroTrace = "00000000000000000000000000000000";
  constexpr std::string_view kZeroParent = "0000000000000000";
  char buf[56];
  if (incoming && incoming->size() == 55) {
    std::string_view v = *incoming;
    if (v.substr(0, 3) == "00-" && v[35] == '-' && v[52] == '-' && lower_hex(v.substr(3, 32)) &&
        lower_hex(v.substr(36, 16)) && lower_hex(v.substr(53, 2)) &&
        v.substr(3, 32) != kZeroTrace && v.substr(36, 16) != kZeroParent) {
      // The incoming trace id and flags, with a parent id of our own.
      std::memcpy(buf, v.data(), 36);  // "00-" trace id "-"
      char* p = put_hex(buf + 36, random() | 1, 16);
      *p++ = '-';
      std::memcpy(p, v.data() + 53, 2);
      return std::string(buf, 55);
    }
  }
  uint64_t hi = random();
  uint64_t lo = random() | 1;
  uint64_t parent = random() | 1;
  std::memcpy(buf, "00-", 3);
  char* p = put_hex(buf + 3, hi, 16);
  p = put_hex(p, lo, 16);
  *p++ = '-';
  p = put_hex(p, parent, 16);
  std::memcpy(p, "-01", 3);
  return std::string(buf, 55);
}

void to_upstream(const Route& r, MessageHead& request, const DownstreamInfo& d, bool upgrade,
                 RandomSource random, UpstreamIds& ids) {
  HeaderMap& hs = request.headers;
  remove_hop_by_hop(hs, upgrade);
  hs.remove("expect");  // sluice answers 100-continue itself
  // RFC 9113 §3.2.1 (RFC 7540): connection-specific, and sluice never upgrades to h2c.
  hs.remove("http2-settings");
  if (upgrade && request.method != "CONNECT") hs.set("Connection", "upgrade");
  // X-Forwarded-*: appended to when the previous hop is trusted, else replaced.
  const std::string* xff = hs.get("x-forwarded-for");
  if (d.trust_forwarded_headers && xff) {
    std::string v;
    v.reserve(xff->size() + 2 + d.peer_ip.size());
    v = *xff;
    v += ", ";
    v += d.peer_ip;
    hs.set("X-Forwarded-For", std::move(v));
  } else {
    hs.set("X-Forwarded-For", std::string(d.peer_ip));
  }
  if (!d.trust_forwarded_headers || !hs.get("x-forwarded-proto")) {
    hs.set("X-Forwarded-Proto", d.secure ? "https" : "http");
  }
  // The client's identity is what its certificate proved, never what it says about itself.
  hs.remove("x-forwarded-client-cert");
  if (!d.client_cert.empty()) hs.add("x-forwarded-client-cert", std::string(d.client_cert));
  if (!d.trust_forwarded_headers || !hs.get("x-forwarded-host")) {
    if (const std::string* host = hs.get("host")) hs.set("X-Forwarded-Host", *host);
  }
  if (const std::string* rid = hs.get("x-request-id")) {
    ids.request_id = *rid;
  } else if (d.generate_request_id) {
    ids.request_id = random_request_id(random);
    hs.add("X-Request-Id", ids.request_id);
  }
  // W3C Trace Context: keep the caller's trace (sluice is a hop: a new parent id), or start
  // one. Either way the upstream and the access log see the same traceparent.
  ids.traceparent = next_traceparent(hs.get("traceparent"), random);
  hs.set("traceparent", ids.traceparent);
  // We speak HTTP/1.1 upstream, which needs a Host: an HTTP/1.0 client may have sent none.
  if (!hs.get("host")) hs.add("Host", r.cluster);
  for (const auto& name : r.request_headers_to_remove) hs.remove(name);
  for (const auto& h : r.request_headers_to_add) hs.add(h.name, h.value);
  if (request.chunked) {
    hs.add("Transfer-Encoding", "chunked");
  } else if (request.content_length) {
    // Kept as parsed (a single, valid value).
    hs.set("Content-Length", std::to_string(*request.content_length));
  }
}

void interim_to_downstream(MessageHead& response) {
  remove_hop_by_hop(response.headers, false);
}

void to_downstream(const Route& r, MessageHead& response, bool upgrade) {
  remove_hop_by_hop(response.headers, upgrade);
  for (const auto& name : r.response_headers_to_remove) response.headers.remove(name);
  for (const auto& h : r.response_headers_to_add) response.headers.add(h.name, h.value);
}

size_t remove_forbidden_trailers(HeaderMap& trailers) {
  static constexpr std::string_view kForbidden[] = {
      // framing
      "content-length",
      "transfer-encoding",
      "content-encoding",
      "content-type",
      "content-range",
      "trailer",
      // routing
      "host",
      // connection control (RFC 9110 §7.6.1)
      "connection",
      "keep-alive",
      "proxy-connection",
      "te",
      "upgrade",
      // authentication
      "authorization",
      "proxy-authorization",
      "proxy-authenticate",
      "www-authenticate",
      "cookie",
      "set-cookie",
      // request and response control
      "expect",
      "max-forwards",
      "cache-control",
  };
  if (trailers.empty()) return 0;
  size_t before = trailers.size();
  ConnectionTokens named(trailers);
  erase_judged(trailers.fields(), [&](const sluice::http::Header& h) {
    for (std::string_view f : kForbidden) {
      if (sluice::http::iequals(h.name, f)) return true;
    }
    // Fields a Connection trailer names are connection-specific too.
    return named.names(h.name);
  });
  return before - trailers.size();
}

}  // namespace sluice::proxy::http
