#include "http/http1/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::http::http1 {
namespace {

// Records what the parser reports.
struct Recorder final : ParserCallbacks {
  std::vector<MessageHead> heads;
  std::string body;
  int completed = 0;
  HeaderMap trailers;
  bool on_head(MessageHead& head) override {
    heads.push_back(head);
    return true;
  }
  void on_body(std::string_view data) override { body.append(data); }
  void on_message_complete(HeaderMap& t) override {
    ++completed;
    trailers = t;
  }
};

struct ParseRun {
  Parser::Outcome outcome;
  size_t consumed;
};

ParseRun parse(Parser& p, std::string_view bytes) {
  size_t consumed = 0;
  Parser::Outcome o = p.execute(bytes, &consumed);
  return {o, consumed};
}

TEST(Http1Parser, ParsesARequestAndStopsAfterIt) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  std::string two =
      "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Y: z \r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  ParseRun first = parse(p, two);
  ASSERT_EQ(first.outcome, Parser::Outcome::kMessageComplete);
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].method, "GET");
  EXPECT_EQ(r.heads[0].target, "/a?x=1");
  EXPECT_EQ(*r.heads[0].headers.get("x-y"), "z");  // trailing whitespace is not part of a value
  p.resume();
  ParseRun second = parse(p, std::string_view(two).substr(first.consumed));
  EXPECT_EQ(second.outcome, Parser::Outcome::kMessageComplete);
  ASSERT_EQ(r.heads.size(), 2u);
  EXPECT_EQ(r.heads[1].target, "/b");
}

TEST(Http1Parser, ChunkedBodyAndTrailers) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  ParseRun run = parse(p,
                       "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n2;name=v\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n");
  EXPECT_EQ(run.outcome, Parser::Outcome::kMessageComplete);
  EXPECT_TRUE(r.heads.at(0).chunked);
  EXPECT_EQ(r.body, "abcde");
  ASSERT_NE(r.trailers.get("x-sum"), nullptr);
  EXPECT_EQ(*r.trailers.get("x-sum"), "5");
}

// A CONNECT head ends the HTTP message: Content-Length: 0 says so too and is accepted, and
// the bytes behind the head are left for the tunnel.
TEST(Http1Parser, ConnectEndsAtItsHead) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  std::string bytes =
      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 0\r\n\r\n"
      "tunnel";
  ParseRun run = parse(p, bytes);
  EXPECT_EQ(run.outcome, Parser::Outcome::kMessageComplete);
  EXPECT_EQ(run.consumed, bytes.size() - 6);
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_EQ(r.heads[0].content_length, 0u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.completed, 1);
}

struct Rejection {
  std::string name;
  std::string bytes;
  int status;
};

const ParserLimits& ParserLimitsForTest() {
  static const ParserLimits limits{/*max_head_bytes=*/4096, /*max_headers=*/3,
                                   /*max_uri_bytes=*/64};
  return limits;
}

class Http1ParserRejects : public ::testing::TestWithParam<Rejection> {};

TEST_P(Http1ParserRejects, WithTheRightStatus) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, ParserLimitsForTest(), r);
  ParseRun run = parse(p, GetParam().bytes);
  ASSERT_EQ(run.outcome, Parser::Outcome::kError) << GetParam().name;
  EXPECT_EQ(p.error().status, GetParam().status) << GetParam().name << ": " << p.error().reason;
}

INSTANTIATE_TEST_SUITE_P(
    Smuggling, Http1ParserRejects,
    ::testing::Values(
        Rejection{
            "cl_and_te",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400},
        Rejection{"two_cl",
                  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                  400},
        Rejection{"te_not_chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                  400},
        Rejection{"obs_fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
        Rejection{"space_before_colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
        Rejection{"nul_in_value", std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 35),
                  400},
        Rejection{"no_host", "GET / HTTP/1.1\r\n\r\n", 400},
        Rejection{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        Rejection{"http09", "GET /\r\n\r\n", 400},
        Rejection{"http2_version", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        Rejection{"nameless_chunk_ext",
                  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;=x\r\nabc\r\n",
                  400},
        // What follows a CONNECT head is the tunnel: a body announced by Content-Length or
        // Transfer-Encoding would be taken out of it by an upstream that honours it.
        Rejection{"connect_with_content_length",
                  "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                  "Content-Length: 4\r\n\r\nabcd",
                  400},
        Rejection{"connect_with_transfer_encoding",
                  "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
                  400},
        Rejection{"uri_too_long",
                  "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
                  "HTTP/1.1\r\nHost: h\r\n\r\n",
                  414},
        Rejection{"too_many_headers",
                  "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431}),
    [](const ::testing::TestParamInfo<Rejection>& i) { return i.param.name; });

}  // namespace
}  // namespace sluice::http::http1
