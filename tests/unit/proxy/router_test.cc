#include "proxy/http/router.h"

#include <gtest/gtest.h>
#include <re2/re2.h>

namespace sluice::proxy::http {
namespace {

TEST(Router, SplitsTargets) {
  std::string_view path, query, authority;
  split_target("/a/b?x=1&y", &path, &query, &authority);
  EXPECT_EQ(path, "/a/b");
  EXPECT_EQ(query, "x=1&y");
  EXPECT_TRUE(authority.empty());
  split_target("http://Example.com:8080/p?q", &path, &query, &authority);
  EXPECT_EQ(authority, "Example.com:8080");
  EXPECT_EQ(path, "/p");
  EXPECT_EQ(query, "q");
  split_target("http://h?only", &path, &query, &authority);
  EXPECT_EQ(path, "/");
  EXPECT_EQ(query, "only");
  EXPECT_EQ(host_without_port("example.com:80"), "example.com");
  EXPECT_EQ(host_without_port("[::1]:80"), "[::1]");
}

TEST(Router, VirtualHostPrecedence) {
  HttpOptions o;
  o.virtual_hosts = {{"wild", {"*"}, {}},
                     {"suffix", {"*.example.com"}, {}},
                     {"deeper", {"*.api.example.com"}, {}},
                     {"exact", {"www.example.com"}, {}}};
  EXPECT_EQ(match_virtual_host(o, "www.example.com")->name, "exact");
  EXPECT_EQ(match_virtual_host(o, "WWW.Example.COM")->name, "exact");
  EXPECT_EQ(match_virtual_host(o, "x.api.example.com")->name, "deeper");
  EXPECT_EQ(match_virtual_host(o, "shop.example.com")->name, "suffix");
  EXPECT_EQ(match_virtual_host(o, "example.com")->name, "wild");  // "*.example.com" needs a label
  EXPECT_EQ(match_virtual_host(o, "other.org")->name, "wild");
}

TEST(Router, FirstMatchingRouteWins) {
  VirtualHost vh;
  Route api;
  api.match.path = "/api/";
  api.match.methods = {"GET"};
  api.match.headers = {{"x-canary", std::string("1")}};
  api.cluster = "canary";
  Route regex;
  regex.match.path_kind = RouteMatch::PathKind::kRegex;
  regex.match.regex = std::make_shared<re2::RE2>("/v[0-9]+/.*");
  regex.cluster = "versioned";
  Route query;
  query.match.path = "/";
  query.match.query = {{"debug", std::nullopt}};
  query.cluster = "debug";
  Route exact;
  exact.match.path_kind = RouteMatch::PathKind::kExact;
  exact.match.path = "/health";
  exact.cluster = "health";
  Route rest;
  rest.cluster = "default";
  vh.routes = {api, regex, query, exact, rest};

  sluice::http::HeaderMap canary;
  canary.add("X-Canary", "1");
  sluice::http::HeaderMap none;
  auto pick = [&](std::string_view method, std::string_view path, std::string_view q,
                  const sluice::http::HeaderMap& h) {
    const Route* r = match_route(vh, RequestView{"h", method, path, q, &h});
    return r ? r->cluster : std::string("none");
  };
  EXPECT_EQ(pick("GET", "/api/x", "", canary), "canary");
  EXPECT_EQ(pick("POST", "/api/x", "", canary), "default");  // method does not match
  EXPECT_EQ(pick("GET", "/api/x", "", none), "default");     // header does not match
  EXPECT_EQ(pick("GET", "/v2/items", "", none), "versioned");
  EXPECT_EQ(pick("GET", "/v2", "", none), "default");  // regex must match the whole path
  EXPECT_EQ(pick("GET", "/x", "a=1&debug", none), "debug");
  EXPECT_EQ(pick("GET", "/health", "", none), "health");
  EXPECT_EQ(pick("GET", "/healthz", "", none), "default");
}

}  // namespace
}  // namespace sluice::proxy::http
