#include "proxy/tcp/sni_router.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace sluice::proxy::tcp {
namespace {

TEST(SniRouter, ExactNamesThenOneLabelWildcardsThenTheDefault) {
  SniRouter router({
      {{"api.example.com", "*.example.com"}, "wild"},
      {{"WWW.Example.com", "example.com"}, "www"},
      {{"*.b.example.com", "localhost"}, "deeper"},
  });
  struct Case {
    const char* name;
    std::optional<size_t> route;
  };
  const Case cases[] = {
      {"api.example.com", 0},     // exact
      {"www.example.com", 1},     // exact beats the wildcard; configured in capitals
      {"example.com", 1},         // the wildcard needs a label of its own
      {"a.example.com", 0},       // one label under the wildcard's domain
      {"a.b.example.com", 2},     // the deeper wildcard
      {"x.a.example.com", {}},    // two labels: no wildcard covers them
      {"b.example.com", 0},       // one label under *.example.com, not under *.b.example.com
      {"localhost", 2},           // a one-label exact name
      {"example.org", {}},        // nothing: the listener's cluster
      {"", {}},                   // no server_name sent
      {"api.example.com.x", {}},  // only whole names match
  };
  for (const Case& c : cases) EXPECT_EQ(router.match(c.name), c.route) << c.name;
  EXPECT_FALSE(router.empty());
  EXPECT_TRUE(SniRouter({}).empty());
}

TEST(SniRouter, Patterns) {
  for (const char* ok : {"a.example", "*.example.com", "*.com", "API.Example.COM", "x"}) {
    EXPECT_TRUE(valid_sni_pattern(ok)) << ok;
  }
  for (const char* bad : {"", "*", "*.", "**.example", "a.*.example", "*example.com",
                          "example.com.", "10.1.2.3", "*.10.1.2.3", "a b", "-.example/"}) {
    EXPECT_FALSE(valid_sni_pattern(bad)) << bad;
  }
}

}  // namespace
}  // namespace sluice::proxy::tcp
