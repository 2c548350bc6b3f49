#include "proxy/http/router.h"

#include <re2/re2.h>

namespace sluice::proxy::http {
namespace {

// Calls fn(name, value) for each "name=value" of a query string until fn returns true.
template <typename Fn>
bool find_in_query(std::string_view query, Fn fn) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (fn(pair.substr(0, eq), value)) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

bool query_has(std::string_view query, const QueryMatch& m) {
  return find_in_query(query, [&](std::string_view name, std::string_view value) {
    return name == m.name && (!m.value || value == *m.value);
  });
}

bool path_matches(const RouteMatch& m, std::string_view path) {
  switch (m.path_kind) {
    case RouteMatch::PathKind::kPrefix:
      return path.substr(0, m.path.size()) == m.path;
    case RouteMatch::PathKind::kExact:
      return path == m.path;
    case RouteMatch::PathKind::kRegex:
      return RE2::FullMatch(re2::StringPiece(path.data(), path.size()), *m.regex);
  }
  return false;
}

}  // namespace

std::optional<std::string_view> find_query_parameter(std::string_view query,
                                                     std::string_view name) {
  std::optional<std::string_view> found;
  find_in_query(query, [&](std::string_view n, std::string_view value) {
    if (n != name) return false;
    found = value;
    return true;
  });
  return found;
}

std::optional<std::string_view> find_cookie(const sluice::http::HeaderMap& headers,
                                            std::string_view name) {
  const std::string* cookie = headers.get("cookie");
  if (!cookie) return std::nullopt;
  std::string_view rest = *cookie;
  while (!rest.empty()) {
    size_t semi = rest.find(';');
    std::string_view pair = rest.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) return pair.substr(eq + 1);
    if (semi == std::string_view::npos) break;
    rest.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

void split_target(std::string_view target, std::string_view* path, std::string_view* query,
                  std::string_view* authority) {
  if (authority) *authority = {};
  if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) {
    size_t start = target.find("://") + 3;
    size_t end = target.find_first_of("/?", start);
    if (authority) {
      *authority = target.substr(start, end == std::string_view::npos ? target.npos : end - start);
    }
    if (end == std::string_view::npos) {
      target = "/";
    } else if (target[end] == '?') {
      // "http://h?q": the path is empty, which means "/".
      *path = "/";
      *query = target.substr(end + 1);
      return;
    } else {
      target = target.substr(end);
    }
  }
  size_t q = target.find('?');
  *path = target.substr(0, q);
  *query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

std::string_view host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  size_t colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

const VirtualHost* match_virtual_host(const HttpOptions& options, std::string_view host) {
  const VirtualHost* wildcard = nullptr;
  const VirtualHost* best_suffix = nullptr;
  size_t best_len = 0;
  for (const auto& vh : options.virtual_hosts) {
    for (const auto& d : vh.domains) {
      if (d == "*") {
        if (!wildcard) wildcard = &vh;
      } else if (d.size() > 2 && d[0] == '*' && d[1] == '.') {
        std::string_view suffix = std::string_view(d).substr(1);  // ".example.com"
        if (host.size() > suffix.size() &&
            sluice::http::iequals(host.substr(host.size() - suffix.size()), suffix) &&
            suffix.size() > best_len) {
          best_suffix = &vh;
          best_len = suffix.size();
        }
      } else if (sluice::http::iequals(d, host)) {
        return &vh;
      }
    }
  }
  return best_suffix ? best_suffix : wildcard;
}

const Route* match_route(const VirtualHost& vhost, const RequestView& r) {
  for (const auto& route : vhost.routes) {
    const RouteMatch& m = route.match;
    if (!path_matches(m, r.path)) continue;
    if (!m.methods.empty()) {
      bool ok = false;
      for (const auto& method : m.methods) ok = ok || method == r.method;
      if (!ok) continue;
    }
    bool headers_ok = true;
    for (const auto& h : m.headers) {
      const std::string* v = r.headers->get(h.name);
      if (!v || (h.value && *v != *h.value)) {
        headers_ok = false;
        break;
      }
    }
    if (!headers_ok) continue;
    bool query_ok = true;
    for (const auto& q : m.query) {
      if (!query_has(r.query, q)) {
        query_ok = false;
        break;
      }
    }
    if (!query_ok) continue;
    return &route;
  }
  return nullptr;
}

std::optional<uint64_t> request_hash(const Route& route, upstream::lb::Policy policy,
                                     const sluice::http::MessageHead& request,
                                     const net::Address& peer) {
  if (policy != upstream::lb::Policy::kRingHash && policy != upstream::lb::Policy::kMaglev) {
    return std::nullopt;
  }
  using Kind = HashPolicy::Kind;
  for (const HashPolicy& h : route.hash_policy) {
    switch (h.kind) {
      case Kind::kHeader:
        if (const std::string* v = request.headers.get(h.name)) return upstream::lb::hash_key(*v);
        break;
      case Kind::kCookie:
        if (auto v = find_cookie(request.headers, h.name)) return upstream::lb::hash_key(*v);
        break;
      case Kind::kQueryParameter: {
        std::string_view path, query;
        split_target(request.target, &path, &query);
        if (auto v = find_query_parameter(query, h.name)) return upstream::lb::hash_key(*v);
        break;
      }
      case Kind::kSourceIp:
        return upstream::lb::hash_key(peer.ip_string());
    }
  }
  return std::nullopt;
}

}  // namespace sluice::proxy::http
