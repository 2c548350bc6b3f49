#include "upstream/health/grpc_health.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace sluice::upstream::health::grpc {
namespace {

using namespace std::string_literals;

TEST(GrpcHealthTest, CheckRequestEncoding) {
  // The whole server: the default string is not written, the message is empty.
  EXPECT_EQ(encode_check_request(""), "");
  EXPECT_EQ(encode_check_request("app"),
            "\x0a\x03"
            "app"s);
  // A name of 300 bytes: the length is a two-byte varint (300 = 0xac 0x02).
  std::string name(300, 'x');
  EXPECT_EQ(encode_check_request(name), "\x0a\xac\x02"s + name);
}

TEST(GrpcHealthTest, MessageFraming) {
  EXPECT_EQ(frame_message(""), "\0\0\0\0\0"s);
  EXPECT_EQ(frame_message("\x0a\x03"
                          "app"s),
            "\0\0\0\0\x05\x0a\x03"
            "app"s);
  std::string big(0x010203, 'b');
  EXPECT_EQ(frame_message(big).substr(0, 5), "\0\x00\x01\x02\x03"s);
}

TEST(GrpcHealthTest, UnframeOneMessage) {
  // The message is a view into the body.
  const std::string body = "\0\0\0\0\x02\x08\x01"s;
  auto m = unframe_message(body);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m.value(), "\x08\x01"s);
  const std::string empty_body = "\0\0\0\0\0"s;
  auto empty = unframe_message(empty_body);
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(empty.value(), "");
}

TEST(GrpcHealthTest, UnframeRejectsWhatIsNotOneMessage) {
  struct Case {
    std::string body;
    std::string error;
  };
  const Case cases[] = {
      {"", "no response message"},
      {"\0\0\0"s, "truncated message prefix (3 bytes)"},
      {"\x01\0\0\0\x02\x08\x01"s, "compressed response message (none was accepted)"},
      {"\x07\0\0\0\x02\x08\x01"s, "invalid message flag 7"},
      {"\0\0\0\0\x03\x08\x01"s, "truncated message (2 of 3 bytes)"},
      {"\0\0\0\0\x02\x08\x01\0"s, "more than one response message"},
      {"\0\xff\xff\xff\xff"s, "response message of 4294967295 bytes is too large"},
      {"\0\0\0\x10\x01"s, "response message of 4097 bytes is too large"},
  };
  for (const auto& c : cases) {
    auto m = unframe_message(c.body);
    ASSERT_FALSE(m.is_ok()) << c.error;
    EXPECT_EQ(m.status().message(), c.error);
  }
}

TEST(GrpcHealthTest, DecodeServingStatus) {
  struct Case {
    std::string message;
    ServingStatus status;
  };
  const Case cases[] = {
      {"", ServingStatus::kUnknown},  // the default is not written
      {"\x08\x01"s, ServingStatus::kServing},
      {"\x08\x02"s, ServingStatus::kNotServing},
      {"\x08\x03"s, ServingStatus::kServiceUnknown},
      {"\x08\x00"s, ServingStatus::kUnknown},
      // Repeated: the last one wins.
      {"\x08\x02\x08\x01"s, ServingStatus::kServing},
      // A redundant (but valid) varint encoding of 1.
      {"\x08\x81\x80\x00"s, ServingStatus::kServing},
      // Unknown fields of every wire type are skipped: varint 2, fixed64 3, length 4,
      // fixed32 5.
      {"\x10\x96\x01\x08\x01\x19"
       "12345678\x22\x03xyz\x2d"
       "abcd"s,
       ServingStatus::kServing},
      // A value the protocol does not define.
      {"\x08\x07"s, static_cast<ServingStatus>(7)},
  };
  for (const auto& c : cases) {
    auto s = decode_check_response(c.message);
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    EXPECT_EQ(static_cast<uint64_t>(s.value()), static_cast<uint64_t>(c.status));
  }
}

TEST(GrpcHealthTest, DecodeRejectsMalformedInput) {
  struct Case {
    std::string message;
    std::string error;
  };
  const Case cases[] = {
      {"\x08"s, "malformed HealthCheckResponse: field 1 at byte 0 is cut"},
      {"\x08\x80"s, "malformed HealthCheckResponse: field 1 at byte 0 is cut"},
      {"\x80"s, "malformed HealthCheckResponse: bad field key at byte 0"},
      {"\x00\x01"s, "malformed HealthCheckResponse: field number 0 at byte 0"},
      {"\x0a\x01x"s, "malformed HealthCheckResponse: status has wire type 2"},
      {"\x08\x01\x12\x05xy"s, "malformed HealthCheckResponse: field 2 at byte 2 is cut"},
      {"\x12\xff\xff\xff\xff\x0f"s, "malformed HealthCheckResponse: field 2 at byte 0 is cut"},
      {"\x19"
       "1234567"s,
       "malformed HealthCheckResponse: field 3 at byte 0 is cut"},
      {"\x1d"
       "123"s,
       "malformed HealthCheckResponse: field 3 at byte 0 is cut"},
      {"\x13"s, "malformed HealthCheckResponse: wire type 3 of field 2 at byte 0"},
      {"\x16"s, "malformed HealthCheckResponse: wire type 6 of field 2 at byte 0"},
      {"\x08\x01\x17"s, "malformed HealthCheckResponse: wire type 7 of field 2 at byte 2"},
      // An eleven-byte varint.
      {"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"s,
       "malformed HealthCheckResponse: field 1 at byte 0 is cut"},
  };
  for (const auto& c : cases) {
    auto s = decode_check_response(c.message);
    ASSERT_FALSE(s.is_ok()) << c.error;
    EXPECT_EQ(s.status().message(), c.error);
  }
}

TEST(GrpcHealthTest, VarintBounds) {
  size_t pos = 0;
  uint64_t v = 0;
  std::string max = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s;
  ASSERT_TRUE(read_varint(max, pos, v));
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_EQ(pos, 10u);
  // Bit 64 and beyond: overflow.
  pos = 0;
  EXPECT_FALSE(read_varint("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"s, pos, v));
  EXPECT_EQ(pos, 0u);
  // Cut short: pos stays.
  pos = 1;
  EXPECT_FALSE(read_varint("\x08\x96"s, pos, v));
  EXPECT_EQ(pos, 1u);
  pos = 1;
  ASSERT_TRUE(read_varint("\x08\x96\x01"s, pos, v));
  EXPECT_EQ(v, 150u);
  EXPECT_EQ(pos, 3u);
  pos = 3;
  EXPECT_FALSE(read_varint("abc", pos, v));
}

TEST(GrpcHealthTest, EveryPrefixOfAResponseDecodesOrFailsCleanly) {
  // A response with unknown fields around the status, cut at every length: no prefix reads
  // past its end (the sanitizer build checks), each either decodes or says it is cut.
  std::string full =
      "\x22\x03xyz\x08\x01\x19"
      "12345678\x10\x96\x01"s;
  for (size_t n = 0; n <= full.size(); ++n) {
    std::string prefix = full.substr(0, n);
    auto s = decode_check_response(prefix);
    bool whole_field_boundary = n == 0 || n == 5 || n == 7 || n == 16 || n == 19;
    EXPECT_EQ(s.is_ok(), whole_field_boundary) << "prefix of " << n << " bytes";
  }
}

TEST(GrpcHealthTest, RandomInput) {
  // Fixed seed: the same 20000 inputs every run. The sanitizer build catches any read past
  // an input; what is accepted must hold up: an accepted message stays well-formed with one
  // more status field, which then wins (protobuf's last-one-wins).
  std::mt19937 rng(20261203);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string in(rng() % 24, '\0');
    for (char& c : in) {
      // Biased towards the bytes that matter: keys of fields 1-3, continuation bits, small
      // lengths.
      static constexpr char kInteresting[] = {0x08, 0x0a, 0x10, 0x12,   0x19,   0x1d,
                                              0x01, 0x02, 0x7f, '\x80', '\xff', 0x00};
      c = (rng() % 2) ? kInteresting[rng() % sizeof(kInteresting)] : static_cast<char>(rng());
    }
    auto framed = unframe_message(in, 16);
    if (framed.is_ok()) {
      EXPECT_EQ(in[0], '\0');
      EXPECT_EQ(framed.value().data(), in.data() + 5);
      EXPECT_EQ(framed.value().size(), in.size() - 5);
    }
    auto status = decode_check_response(in);
    if (!status.is_ok()) continue;
    ++accepted;
    std::string more = in + "\x08\x02"s;
    auto then = decode_check_response(more);
    ASSERT_TRUE(then.is_ok()) << then.status().message();
    EXPECT_EQ(then.value(), ServingStatus::kNotServing);
  }
  EXPECT_GT(accepted, 1000);  // the inputs reach past the first field
}

TEST(GrpcHealthTest, Names) {
  EXPECT_EQ(to_string(ServingStatus::kServing), "SERVING");
  EXPECT_EQ(to_string(ServingStatus::kNotServing), "NOT_SERVING");
  EXPECT_EQ(to_string(ServingStatus::kServiceUnknown), "SERVICE_UNKNOWN");
  EXPECT_EQ(to_string(ServingStatus::kUnknown), "UNKNOWN");
  EXPECT_EQ(to_string(static_cast<ServingStatus>(9)), "");
  EXPECT_EQ(status_code_name(0), "OK");
  EXPECT_EQ(status_code_name(5), "NOT_FOUND");
  EXPECT_EQ(status_code_name(12), "UNIMPLEMENTED");
  EXPECT_EQ(status_code_name(14), "UNAVAILABLE");
  EXPECT_EQ(status_code_name(16), "UNAUTHENTICATED");
  EXPECT_EQ(status_code_name(17), "");
}

TEST(GrpcHealthTest, GrpcMessageDecoding) {
  EXPECT_EQ(decode_grpc_message("unknown service"), "unknown service");
  EXPECT_EQ(decode_grpc_message("Method%20not%20found%3A%20x"), "Method not found: x");
  // Control characters would break a log line; a broken escape stays as it is.
  EXPECT_EQ(decode_grpc_message("a%0Ab%0d"), "a?b?");
  EXPECT_EQ(decode_grpc_message("100%"), "100%");
  EXPECT_EQ(decode_grpc_message("%4"), "%4");
  EXPECT_EQ(decode_grpc_message("%zz"), "%zz");
  EXPECT_EQ(decode_grpc_message(std::string(500, 'm'), 200), std::string(200, 'm'));
}

}  // namespace
}  // namespace sluice::upstream::health::grpc
