#include "proxy/http/grpc.h"

#include <gtest/gtest.h>

namespace sluice::proxy::http {
namespace {

using namespace std::chrono_literals;

sluice::http::MessageHead with_content_type(const char* ct) {
  sluice::http::MessageHead h;
  h.method = "POST";
  if (ct) h.headers.add("content-type", ct);
  return h;
}

TEST(Grpc, WhichRequestsAreCalls) {
  EXPECT_TRUE(is_grpc_request(with_content_type("application/grpc")));
  EXPECT_TRUE(is_grpc_request(with_content_type("application/grpc+proto")));
  EXPECT_TRUE(is_grpc_request(with_content_type("Application/GRPC;charset=utf-8")));
  EXPECT_FALSE(is_grpc_request(with_content_type("application/grpc-web")));
  EXPECT_FALSE(is_grpc_request(with_content_type("application/json")));
  EXPECT_FALSE(is_grpc_request(with_content_type(nullptr)));
}

TEST(Grpc, StatusOfALocalReply) {
  EXPECT_EQ(grpc_status_for_http(503), GrpcStatus::kUnavailable);
  EXPECT_EQ(grpc_status_for_http(502), GrpcStatus::kUnavailable);
  EXPECT_EQ(grpc_status_for_http(504), GrpcStatus::kDeadlineExceeded);
  EXPECT_EQ(grpc_status_for_http(404), GrpcStatus::kUnimplemented);
  EXPECT_EQ(grpc_status_for_http(413), GrpcStatus::kResourceExhausted);
  EXPECT_EQ(grpc_status_for_http(400), GrpcStatus::kInternal);
  EXPECT_EQ(grpc_status_for_http(418), GrpcStatus::kUnknown);
}

TEST(Grpc, Timeout) {
  EXPECT_EQ(parse_grpc_timeout("100m"), Duration(100ms));
  EXPECT_EQ(parse_grpc_timeout("5S"), Duration(5s));
  EXPECT_EQ(parse_grpc_timeout("2M"), Duration(120s));
  EXPECT_EQ(parse_grpc_timeout("1H"), Duration(3600s));
  EXPECT_EQ(parse_grpc_timeout("250u"), Duration(250us));
  EXPECT_EQ(parse_grpc_timeout("99999999n"), Duration(99999999ns));
  EXPECT_EQ(parse_grpc_timeout("123456789S"), std::nullopt);                          // nine digits
  EXPECT_EQ(parse_grpc_timeout("99999999H"), Duration(std::chrono::hours(30 * 24)));  // held there
  EXPECT_EQ(parse_grpc_timeout("10"), std::nullopt);
  EXPECT_EQ(parse_grpc_timeout("m"), std::nullopt);
  EXPECT_EQ(parse_grpc_timeout("1x"), std::nullopt);
  EXPECT_EQ(parse_grpc_timeout("-1S"), std::nullopt);
}

TEST(Grpc, MessageIsPercentEncoded) {
  std::string out;
  append_grpc_message("no healthy endpoint: 100% down\n\xc3\xa9", out);
  EXPECT_EQ(out, "no healthy endpoint: 100%25 down%0A%C3%A9");
}

TEST(Grpc, ParsesStatus) {
  EXPECT_EQ(parse_grpc_status("0"), 0);
  EXPECT_EQ(parse_grpc_status("14"), 14);
  EXPECT_EQ(parse_grpc_status(""), -1);
  EXPECT_EQ(parse_grpc_status("140"), -1);
  EXPECT_EQ(parse_grpc_status("1a"), -1);
  EXPECT_EQ(parse_grpc_status("-1"), -1);
}

}  // namespace
}  // namespace sluice::proxy::http
