#include "discovery/endpoint_json.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::discovery {
namespace {

TEST(EndpointJson, AnObjectWithAddressWeightAndOtherMembers) {
  auto e = parse_endpoint_json(R"({"address": "10.0.0.5:8080", "weight": 10, "zone": "a"})");
  ASSERT_TRUE(e.is_ok()) << e.status().message();
  EXPECT_EQ(e->address.to_string(), "10.0.0.5:8080");
  EXPECT_EQ(e->weight, 10u);
  auto v6 = parse_endpoint_json(R"({"address": "[2001:db8::1]:443"})");
  ASSERT_TRUE(v6.is_ok());
  EXPECT_EQ(v6->address.to_string(), "[2001:db8::1]:443");
  EXPECT_EQ(v6->weight, 1u);
}

TEST(EndpointJson, WhatIsNotAnEndpointSaysWhy) {
  struct Case {
    const char* text;
    const char* why;
  };
  const Case cases[] = {
      {"{not json", "not JSON"},
      {"[1]", "expected an object such as {\"address\": \"10.0.0.5:8080\"}"},
      {"{}", "no \"address\""},
      {R"({"address": 5})", "\"address\" is not a string"},
      {R"({"address": "api:80"})",
       "\"address\" 'api:80' is not IP:PORT or [IPv6]:PORT with a port from 1 to 65535"},
      {R"({"address": "10.0.0.1:0"})",
       "\"address\" '10.0.0.1:0' is not IP:PORT or [IPv6]:PORT with a port from 1 to 65535"},
      {R"({"address": "10.0.0.1:80", "weight": 0})",
       "\"weight\" is not a whole number from 1 to 1000"},
      {R"({"address": "10.0.0.1:80", "weight": 1001})",
       "\"weight\" is not a whole number from 1 to 1000"},
      {R"({"address": "10.0.0.1:80", "weight": "2"})",
       "\"weight\" is not a whole number from 1 to 1000"},
  };
  for (const auto& c : cases) {
    auto e = parse_endpoint_json(c.text);
    ASSERT_FALSE(e.is_ok()) << c.text;
    EXPECT_EQ(e.status().message(), c.why) << c.text;
  }
  std::string huge = R"({"address": "10.0.0.1:80", "pad": ")" + std::string(5000, 'x') + "\"}";
  auto e = parse_endpoint_json(huge);
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().message(), std::to_string(huge.size()) + " bytes, more than 4096");
}

TEST(EndpointJson, AListKeepsItsGoodEntriesAndNamesTheOthers) {
  auto l = parse_endpoint_list_json(
      R"({"endpoints": [{"address": "10.0.0.1:80"}, {"address": "x"},
                        {"address": "10.0.0.2:80", "weight": 3}, {"address": "10.0.0.1:80"}]})");
  ASSERT_TRUE(l.is_ok());
  ASSERT_EQ(l->endpoints.size(), 2u);
  EXPECT_EQ(l->endpoints[1].weight, 3u);
  ASSERT_EQ(l->invalid.size(), 2u);
  EXPECT_EQ(l->invalid[0],
            "endpoints[1]: \"address\" 'x' is not IP:PORT or [IPv6]:PORT with a port from 1 to "
            "65535");
  EXPECT_EQ(l->invalid[1], "endpoints[3]: 10.0.0.1:80 is listed already");
  EXPECT_TRUE(parse_endpoint_list_json("[]").is_ok());
  auto bad = parse_endpoint_list_json("{\"servers\": []}");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message(), "expected {\"endpoints\": [...]} or a list");
}

TEST(EndpointJson, AListThatCannotBeReadIsAnErrorNotACrash) {
  // A number beyond a double is an out-of-range error from the JSON reader, not a parse error.
  auto huge = parse_endpoint_list_json(R"([{"address": "10.0.0.1:80", "weight": 1e400}])");
  ASSERT_FALSE(huge.is_ok());
  EXPECT_EQ(huge.status().message(), "number overflow parsing '1e400'");
  // More entries than four endpoint tables is refused whole, before any is looked at.
  std::string many = "[";
  for (size_t i = 0; i <= kMaxListed; ++i) many += i ? ",1" : "1";
  many += "]";
  auto refused = parse_endpoint_list_json(many);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().message(), "16385 endpoints listed, more than 16384");
}

}  // namespace
}  // namespace sluice::discovery
