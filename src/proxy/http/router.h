// Router: picks the route for a request. Virtual hosts are matched on Host (exact first,
// then the longest "*.suffix", then "*"); within the host, routes in order, first match
// wins. Built once from the configuration; read-only afterwards, so workers share it.
#pragma once

#include <optional>
#include <string_view>

#include "http/message.h"
#include "net/address.h"
#include "proxy/http/route_config.h"
#include "upstream/lb/load_balancer.h"

namespace sluice::proxy::http {

struct RequestView {
  std::string_view host;  // without port
  std::string_view method;
  std::string_view path;   // without query
  std::string_view query;  // without '?'
  const sluice::http::HeaderMap* headers = nullptr;
};

// Splits a request target into path and query; absolute-form targets lose their authority,
// which goes to *authority when asked for (empty for other forms).
void split_target(std::string_view target, std::string_view* path, std::string_view* query,
                  std::string_view* authority = nullptr);
// "example.com:8080" → "example.com"; "[::1]:80" → "[::1]".
std::string_view host_without_port(std::string_view host);

// The first value of a query parameter ("a=1&b=2", "b" → "2"), or nullopt.
std::optional<std::string_view> find_query_parameter(std::string_view query, std::string_view name);
// A cookie's value from the Cookie header, or nullopt.
std::optional<std::string_view> find_cookie(const sluice::http::HeaderMap& headers,
                                            std::string_view name);

const VirtualHost* match_virtual_host(const HttpOptions& options, std::string_view host);
const Route* match_route(const VirtualHost& vhost, const RequestView& request);

// The key a ring_hash or maglev cluster balances `request` on, from the route's hash
// policies (the first that yields a value); nullopt for other policies or when none does.
std::optional<uint64_t> request_hash(const Route& route, upstream::lb::Policy policy,
                                     const sluice::http::MessageHead& request,
                                     const net::Address& peer);

}  // namespace sluice::proxy::http
