// validate() of the HTTP listener's settings and route table.
#include "proxy/http/route_config.h"

#include <fmt/format.h>

#include <re2/re2.h>

#include <map>

namespace sluice::proxy::http {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
constexpr Duration kZero{0};

constexpr const char* kOnlyForward =
    "only for a route with a cluster (a redirect or direct_response sends nothing upstream)";

template <typename T>
void check_name_values(ConfigChecker& c, const std::string& key, const std::vector<T>& list) {
  for (size_t i = 0; i < list.size(); ++i) {
    std::string at = fmt::format("{}[{}]", key, i);
    if (list[i].name.empty()) {
      c.missing(at + ".name");
    } else if (!valid_header_name(list[i].name)) {
      c.error(at + ".name", fmt::format("'{}' is not a valid name", list[i].name));
    }
    const auto& value = list[i].value;
    bool bad = false;
    if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::string>) {
      bad = !valid_header_value(value);
    } else {
      bad = value && !valid_header_value(*value);
    }
    if (bad) c.error(at + ".value", "control characters are not allowed");
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

// Matches every request: nothing listed after it in the same virtual host can match.
bool matches_everything(const RouteMatch& m) {
  return m.path_kind == RouteMatch::PathKind::kPrefix && m.path == "/" && m.methods.empty() &&
         m.headers.empty() && m.query.empty();
}

}  // namespace

ConfigIssues RetryPolicy::validate() const {
  ConfigChecker c;
  c.check_uint("num_retries", num_retries, 0, 10);
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (statuses[i] < 100 || statuses[i] > 599) {
      c.error(fmt::format("retriable_status_codes[{}]", i),
              "expected a status code from 100 to 599");
    }
  }
  c.check_duration("backoff.base", backoff_base, milliseconds(1), seconds(60));
  c.check_duration("backoff.max", backoff_max, milliseconds(1), seconds(600));
  c.check_size("replay_buffer", replay_buffer_bytes, 0, 64ull << 20);
  return c.take();
}

ConfigIssues Route::validate() const {
  ConfigChecker c;
  switch (match.path_kind) {
    case RouteMatch::PathKind::kPrefix:
    case RouteMatch::PathKind::kExact: {
      const char* key =
          match.path_kind == RouteMatch::PathKind::kPrefix ? "match.prefix" : "match.path";
      if (match.path.empty() || match.path[0] != '/') c.error(key, "must start with '/'");
      break;
    }
    case RouteMatch::PathKind::kRegex:
      if (!match.regex) {
        c.error("match.regex", "the expression is not compiled (RouteMatch::regex is unset)");
      } else if (!match.regex->ok()) {
        c.error("match.regex", fmt::format("invalid regular expression: {}", match.regex->error()));
      }
      break;
  }
  check_name_values(c, "match.headers", match.headers);
  check_name_values(c, "match.query", match.query);

  switch (action) {
    case Action::kForward:
      if (cluster.empty()) c.missing("cluster");
      if (prefix_rewrite && match.path_kind != RouteMatch::PathKind::kPrefix) {
        c.error("prefix_rewrite",
                "only with match: prefix (a path or regex match has no prefix to replace)");
      }
      break;
    case Action::kRedirect:
      if (redirect_status != 301 && redirect_status != 302 && redirect_status != 303 &&
          redirect_status != 307 && redirect_status != 308) {
        c.error("redirect.status", "expected 301, 302, 303, 307 or 308");
      }
      if (redirect_location.empty()) c.missing("redirect.location");
      if (!valid_header_value(redirect_location)) {
        c.error("redirect.location", "control characters are not allowed");
      }
      break;
    case Action::kDirectResponse:
      c.check_uint("direct_response.status", static_cast<uint64_t>(std::max(direct_status, 0)), 200,
                   599);
      break;
  }
  if (action != Action::kForward) {
    // What only a forwarded request uses would be silently ignored here.
    if (prefix_rewrite) c.error("prefix_rewrite", kOnlyForward);
    if (!hash_policy.empty()) c.error("hash_policy", kOnlyForward);
    if (!request_headers_to_add.empty()) c.error("request_headers_to_add", kOnlyForward);
    if (!request_headers_to_remove.empty()) c.error("request_headers_to_remove", kOnlyForward);
    if (!response_headers_to_remove.empty()) {
      c.error("response_headers_to_remove",
              "only for a route with a cluster (a redirect or direct_response has no upstream "
              "headers to remove)");
    }
  }

  c.check_duration("timeout", timeout, kZero, hours(24));
  c.check_duration("per_try_timeout", per_try_timeout, kZero, hours(24));
  c.check_duration("upstream_idle_timeout", upstream_idle_timeout, kZero, hours(24));
  c.check_size("max_body_size", max_body_bytes, 0, 0xffffffffull);
  c.nested("retries", retry.validate());
  for (size_t i = 0; i < hash_policy.size(); ++i) {
    if (hash_policy[i].kind != HashPolicy::Kind::kSourceIp && hash_policy[i].name.empty()) {
      c.error(fmt::format("hash_policy[{}]", i), "needs a non-empty name");
    }
  }
  check_name_values(c, "request_headers_to_add", request_headers_to_add);
  check_name_values(c, "response_headers_to_add", response_headers_to_add);
  return c.take();
}

ConfigIssues VirtualHost::validate() const {
  ConfigChecker c;
  if (domains.empty()) c.error("domains", "expected a non-empty list of domains");
  for (size_t d = 0; d < domains.size(); ++d) {
    const std::string& dom = domains[d];
    if (dom.empty() || (dom.find('*') != std::string::npos && dom != "*" &&
                        !(dom.rfind("*.", 0) == 0 && dom.find('*', 1) == std::string::npos))) {
      c.error(fmt::format("domains[{}]", d),
              fmt::format("'{}': expected a host name, '*.suffix' or '*'", dom));
    }
  }
  if (routes.empty()) c.error("routes", "expected a non-empty list of routes");
  for (size_t k = 0; k < routes.size(); ++k) {
    c.nested(fmt::format("routes[{}]", k), routes[k].validate());
  }
  // Routes are tried in order: a route that matches every request hides the rest.
  for (size_t k = 0; k + 1 < routes.size(); ++k) {
    if (!matches_everything(routes[k].match)) continue;
    for (size_t later = k + 1; later < routes.size(); ++later) {
      c.warning(fmt::format("routes[{}]", later),
                fmt::format("never used: routes[{}] before it matches every request", k));
    }
    break;
  }
  return c.take();
}

ConfigIssues HttpOptions::validate() const {
  ConfigChecker c;
  c.check_size("max_request_head", max_head_bytes, 1024, 1ull << 20);
  c.check_uint("max_headers", max_headers, 1, 10000);
  c.check_size("max_uri_length", max_uri_bytes, 64, 1ull << 20);
  c.check_size("max_body_size", max_body_bytes, 0, 0xffffffffull);
  c.check_duration("header_read_timeout", header_read_timeout, milliseconds(1), hours(1));
  c.check_duration("body_idle_timeout", body_idle_timeout, milliseconds(1), hours(1));
  c.check_duration("keepalive_timeout", keepalive_timeout, kZero, hours(24));
  c.check_uint("max_requests_per_connection", max_requests_per_connection, 0, 100'000'000);
  return c.take();
}

ConfigIssues Http2Options::validate() const {
  ConfigChecker c;
  c.nested("", codec.validate());
  c.check_uint("max_abuse_score", max_abuse_score, 1, 1'000'000);
  c.check_duration("ping_interval", ping_interval, kZero, hours(24));
  c.check_duration("ping_timeout", ping_timeout, milliseconds(1), hours(1));
  c.check_duration("max_connection_age", max_connection_age, kZero, hours(24 * 365));
  c.check_duration("send_stall_timeout", send_stall_timeout, kZero, hours(24));
  return c.take();
}

ConfigIssues validate_virtual_hosts(const std::vector<VirtualHost>& virtual_hosts) {
  ConfigChecker c;
  if (virtual_hosts.empty()) c.error("", "expected a non-empty list of virtual hosts");
  // A domain listed by two virtual hosts: requests for it only ever reach the first.
  std::map<std::string, size_t> owner;
  for (size_t i = 0; i < virtual_hosts.size(); ++i) {
    std::string at = fmt::format("[{}]", i);
    c.nested(at, virtual_hosts[i].validate());
    const auto& domains = virtual_hosts[i].domains;
    for (size_t d = 0; d < domains.size(); ++d) {
      auto [it, fresh] = owner.emplace(lower(domains[d]), i);
      if (!fresh && it->second != i) {
        c.error(fmt::format("{}.domains[{}]", at, d),
                fmt::format("'{}' is already a domain of virtual_hosts[{}], which gets all its "
                            "requests",
                            domains[d], it->second));
      }
    }
  }
  return c.take();
}

}  // namespace sluice::proxy::http
