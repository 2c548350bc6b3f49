#include "http/http1/parser.h"

#include <gtest/gtest.h>

#include "http/authority.h"

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

// Between keep-alive messages the parser holds no llhttp state (an idle connection carries
// none): the next message starts from a fresh one that behaves as llhttp's own would, empty
// lines before it skipped (RFC 9112 §2.2), its own head parsed whole.
TEST(Http1Parser, KeepAliveMessagesOneAfterAnother) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  ASSERT_EQ(parse(p, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok").outcome,
            Parser::Outcome::kMessageComplete);
  p.resume();
  EXPECT_FALSE(p.mid_message());
  EXPECT_EQ(p.finish(), Parser::Outcome::kNeedMore);  // a close here cuts nothing short
  ParseRun next = parse(p, "\r\nGET /b HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(next.outcome, Parser::Outcome::kMessageComplete);
  ASSERT_EQ(r.heads.size(), 2u);
  EXPECT_EQ(r.heads[1].target, "/b");
  EXPECT_EQ(r.heads[1].version_minor, 0);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(r.completed, 2);
}

// After a message that closes the connection, llhttp's state stays and refuses what follows.
TEST(Http1Parser, NothingAfterAMessageThatCloses) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  std::string bytes = "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(parse(p, bytes).outcome, Parser::Outcome::kMessageComplete);
  p.resume();
  EXPECT_EQ(parse(p, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n").outcome, Parser::Outcome::kError);
  EXPECT_EQ(r.heads.size(), 1u);
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

// The obs-fold check looks at the byte after each LF of a head, wherever the reads split it.
TEST(Http1Parser, ObsFoldIsFoundAtEverySplitAndOnlyInTheHead) {
  const std::string folded = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n";
  // A body may hold "\n " (after the head, nothing is a fold); leading empty lines are skipped.
  const std::string plain = "\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\na\n b\n\t";
  for (size_t cut = 0; cut <= folded.size(); ++cut) {
    Recorder r;
    Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
    ParseRun first = parse(p, std::string_view(folded).substr(0, cut));
    if (first.outcome == Parser::Outcome::kNeedMore) {
      ASSERT_EQ(first.consumed, cut);
      ParseRun rest = parse(p, std::string_view(folded).substr(cut));
      ASSERT_EQ(rest.outcome, Parser::Outcome::kError) << "cut at " << cut;
    } else {
      ASSERT_EQ(first.outcome, Parser::Outcome::kError) << "cut at " << cut;
    }
    EXPECT_EQ(p.error().status, 400) << "cut at " << cut;
    EXPECT_EQ(p.error().reason, "obsolete line folding in a header") << "cut at " << cut;
  }
  for (size_t cut = 0; cut <= plain.size(); ++cut) {
    Recorder r;
    Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
    ParseRun first = parse(p, std::string_view(plain).substr(0, cut));
    if (first.outcome == Parser::Outcome::kNeedMore) {
      ParseRun rest = parse(p, std::string_view(plain).substr(first.consumed));
      ASSERT_EQ(rest.outcome, Parser::Outcome::kMessageComplete) << "cut at " << cut;
    } else {
      ASSERT_EQ(first.outcome, Parser::Outcome::kMessageComplete) << "cut at " << cut;
    }
    EXPECT_EQ(r.body, "a\n b\n\t") << "cut at " << cut;
  }
}

TEST(Headers, TokenCharactersAreRfc9110Tchar) {
  const std::string_view specials = "!#$%&'*+-.^_`|~";
  for (int c = 0; c < 256; ++c) {
    bool expected = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c != 0 && specials.find(static_cast<char>(c)) != std::string_view::npos);
    EXPECT_EQ(is_tchar(static_cast<unsigned char>(c)), expected) << c;
  }
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(iequals("content-length", "content-lengths"));
  EXPECT_FALSE(iequals("te", "tf"));
  EXPECT_TRUE(iequals("", ""));
}

// Every byte value at every position of values long enough for the word-at-a-time check,
// among valid bytes (including obs-text, whose high bit the check must not mistake).
TEST(Headers, InvalidFieldValueBytesAreFoundWhereverTheyAre) {
  for (int c = 0; c < 256; ++c) {
    bool valid = c == '\t' || (c >= 0x20 && c != 0x7f);
    for (size_t len : {1u, 7u, 8u, 9u, 16u, 23u}) {
      for (size_t at = 0; at < len; ++at) {
        std::string v(len, at % 2 ? 'a' : '\xe9');
        v[at] = static_cast<char>(c);
        size_t want = valid ? std::string_view::npos : at;
        ASSERT_EQ(find_invalid_field_value_char(v), want)
            << "byte " << c << " at " << at << "/" << len;
      }
    }
  }
  // A HTAB sends a word to the byte-by-byte check; a bad byte after it is still found.
  EXPECT_EQ(find_invalid_field_value_char("a\tbcdefghijklm\x01nop"), 14u);
  EXPECT_EQ(find_invalid_field_value_char(""), std::string_view::npos);
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

// RFC 9113 §3.1: sluice never upgrades to h2c, so such a request is an ordinary one: its
// body is read and the next request follows on the same connection.
TEST(Http1Parser, UpgradeToH2cIsAnOrdinaryRequest) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  std::string bytes =
      "POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
      "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello";
  ParseRun run = parse(p, bytes);
  EXPECT_EQ(run.outcome, Parser::Outcome::kMessageComplete);
  EXPECT_EQ(run.consumed, bytes.size());
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_FALSE(r.heads[0].upgrade);
  EXPECT_EQ(r.body, "hello");
}

TEST(Http1Parser, UpgradeToWebSocketStaysAnUpgrade) {
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  std::string bytes =
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  parse(p, bytes);
  ASSERT_EQ(r.heads.size(), 1u);
  EXPECT_TRUE(r.heads[0].upgrade);
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

// RFC 3986 §3.2 authorities: host (IP-literal / IPv4address / reg-name) and an optional port.
struct AuthorityCase {
  std::string value;
  PortRule rule;
  std::string error;  // empty: accepted
};

class AuthorityGrammar : public ::testing::TestWithParam<AuthorityCase> {};

TEST_P(AuthorityGrammar, AcceptsOrSaysWhy) {
  const AuthorityCase& c = GetParam();
  Status s = check_authority(c.value, c.rule);
  if (c.error.empty()) {
    EXPECT_TRUE(s) << "'" << c.value << "': " << s.message();
  } else {
    EXPECT_FALSE(s) << "'" << c.value << "'";
    EXPECT_EQ(s.message(), c.error) << "'" << c.value << "'";
  }
}

constexpr PortRule kOpt = PortRule::kOptional;
constexpr PortRule kReq = PortRule::kRequired;

INSTANTIATE_TEST_SUITE_P(
    Rfc3986, AuthorityGrammar,
    ::testing::Values(
        AuthorityCase{"example.com", kOpt, ""}, AuthorityCase{"example.com:8080", kOpt, ""},
        AuthorityCase{"EXAMPLE.com:0", kOpt, ""}, AuthorityCase{"10.0.0.1:80", kOpt, ""},
        AuthorityCase{"a_b-c~d.e", kOpt, ""}, AuthorityCase{"sub!$&'()*+,;=delims", kOpt, ""},
        AuthorityCase{"caf%C3%A9.example", kOpt, ""}, AuthorityCase{"[::1]", kOpt, ""},
        AuthorityCase{"[::1]:443", kOpt, ""}, AuthorityCase{"[2001:db8::7:1.2.3.4]", kOpt, ""},
        AuthorityCase{"[v1.fe80::a+en1]", kOpt, ""}, AuthorityCase{"", kOpt, ""},
        AuthorityCase{"example.com:", kOpt, ""}, AuthorityCase{"example.com:65535", kOpt, ""},
        AuthorityCase{"example.com:443", kReq, ""}, AuthorityCase{"[::1]:443", kReq, ""},
        AuthorityCase{"exa mple.com", kOpt, "character 0x20 is not allowed in a host"},
        AuthorityCase{"example.com/", kOpt, "character '/' is not allowed in a host"},
        AuthorityCase{"exa\"mple", kOpt, "character '\"' is not allowed in a host"},
        AuthorityCase{"ex\x80"
                      "ample",
                      kOpt, "character 0x80 is not allowed in a host"},
        AuthorityCase{"user@example.com", kOpt, "userinfo ('@') is not allowed"},
        AuthorityCase{"ex%4", kOpt, "'%' in the host is not followed by two hex digits"},
        AuthorityCase{"ex%zzample", kOpt, "'%' in the host is not followed by two hex digits"},
        AuthorityCase{"example.com:80a", kOpt, "the port is not a number"},
        AuthorityCase{"example.com:80:81", kOpt, "the port is not a number"},
        AuthorityCase{"example.com:-1", kOpt, "the port is not a number"},
        AuthorityCase{"example.com:65536", kOpt, "the port is above 65535"},
        AuthorityCase{"example.com:99999999999999999999", kOpt, "the port is above 65535"},
        AuthorityCase{"::1", kOpt, "the port is not a number"},
        AuthorityCase{"[::1", kOpt, "the IP literal has no ']'"},
        AuthorityCase{"[::g]", kOpt, "the IP literal is not an IPv6 address"},
        AuthorityCase{"[127.0.0.1]", kOpt, "the IP literal is not an IPv6 address"},
        AuthorityCase{"[]", kOpt, "the IP literal is not an IPv6 address"},
        AuthorityCase{"[::1]x", kOpt, "character 'x' after the IP literal"},
        AuthorityCase{"[v.x]", kOpt, "malformed IPvFuture literal"},
        AuthorityCase{"[v1.]", kOpt, "malformed IPvFuture literal"},
        AuthorityCase{"example.com", kReq, "there is no port"},
        AuthorityCase{"example.com:", kReq, "the port is empty"},
        AuthorityCase{":443", kReq, "the host is empty"}));

// The parser answers 400 with the reason, for Host and for a target's authority.
struct HostCase {
  std::string name;
  std::string request;
  std::string reason;  // empty: accepted
};

class Http1ParserAuthority : public ::testing::TestWithParam<HostCase> {};

TEST_P(Http1ParserAuthority, Checks) {
  const HostCase& c = GetParam();
  Recorder r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  ParseRun run = parse(p, c.request);
  if (c.reason.empty()) {
    EXPECT_NE(run.outcome, Parser::Outcome::kError) << p.error().reason;
  } else {
    ASSERT_EQ(run.outcome, Parser::Outcome::kError);
    EXPECT_EQ(p.error().status, 400);
    EXPECT_EQ(p.error().reason, c.reason);
  }
}

INSTANTIATE_TEST_SUITE_P(
    HostAndTarget, Http1ParserAuthority,
    ::testing::Values(
        HostCase{"host_name_port", "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", ""},
        HostCase{"host_ipv6", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", ""},
        HostCase{"host_empty_http10", "GET / HTTP/1.0\r\nHost: \r\n\r\n", ""},
        HostCase{"host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                 "invalid Host header: character 0x20 is not allowed in a host"},
        HostCase{"host_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
                 "invalid Host header: character '/' is not allowed in a host"},
        HostCase{"host_userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
                 "invalid Host header: userinfo ('@') is not allowed"},
        HostCase{"host_bad_port", "GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n",
                 "invalid Host header: the port is not a number"},
        HostCase{"host_bad_literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
                 "invalid Host header: the IP literal has no ']'"},
        HostCase{"absolute_form",
                 "GET http://a.example:81/x HTTP/1.1\r\nHost: a.example:81\r\n\r\n", ""},
        HostCase{"absolute_form_userinfo", "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n",
                 "invalid authority in the request target: userinfo ('@') is not allowed"},
        HostCase{"absolute_form_empty_host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
                 "invalid authority in the request target: the host is empty"},
        HostCase{"connect_port_not_digits",
                 "CONNECT example.com:4422222:2 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                 "invalid CONNECT target: the port is not a number"},
        HostCase{"connect_no_port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
                 "invalid CONNECT target: there is no port"}),
    [](const ::testing::TestParamInfo<HostCase>& i) { return i.param.name; });

// An owner that stops at the head and resumes later gets chunk extensions checked the same way.
TEST(Http1Parser, ChunkExtensionsAfterAStopAtTheHead) {
  struct Stopper final : ParserCallbacks {
    std::string body;
    int completed = 0;
    bool on_head(MessageHead&) override { return false; }
    void on_body(std::string_view data) override { body.append(data); }
    void on_message_complete(HeaderMap&) override { ++completed; }
  } r;
  Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
  std::string bytes =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;a=b;q=\"x\\\"y\"\r\nabc\r\n0\r\n\r\n";
  ParseRun head = parse(p, bytes);
  ASSERT_EQ(head.outcome, Parser::Outcome::kStopped);
  p.resume();
  ParseRun rest = parse(p, std::string_view(bytes).substr(head.consumed));
  EXPECT_EQ(rest.outcome, Parser::Outcome::kMessageComplete) << p.error().reason;
  EXPECT_EQ(head.consumed + rest.consumed, bytes.size());
  EXPECT_EQ(r.body, "abc");
  EXPECT_EQ(r.completed, 1);
}

// RFC 9112 §7.1.1 chunk extensions: accepted forms reach the body unchanged however the
// bytes are cut into reads; whitespace around ';' and '=' (BWS) is refused with 400.
struct ChunkExtCase {
  std::string name;
  std::string ext;     // what follows the chunk size "5"
  std::string reason;  // empty: accepted
};

class Http1ParserChunkExt : public ::testing::TestWithParam<ChunkExtCase> {};

TEST_P(Http1ParserChunkExt, AcceptedOrRefused) {
  const ChunkExtCase& c = GetParam();
  std::string bytes = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5" + c.ext +
                      "\r\nhe;lo\r\n3" + c.ext + "\r\n;;;\r\n0" + c.ext + "\r\nX-T: a;b\r\n\r\n";
  // Whole, then cut at every byte: the outcome must not depend on the reads.
  for (size_t step : {bytes.size(), size_t{1}, size_t{3}, size_t{7}}) {
    Recorder r;
    Parser p(Parser::Kind::kRequest, Parser::kDefaultLimits, r);
    std::string pending;
    Parser::Outcome last = Parser::Outcome::kNeedMore;
    for (size_t off = 0; off < bytes.size() && last == Parser::Outcome::kNeedMore; off += step) {
      pending += bytes.substr(off, step);
      size_t consumed = 0;
      last = p.execute(pending, &consumed);
      pending.erase(0, consumed);
    }
    if (c.reason.empty()) {
      ASSERT_EQ(last, Parser::Outcome::kMessageComplete)
          << "step " << step << ": " << p.error().reason;
      EXPECT_EQ(r.body, "he;lo;;;") << "step " << step;
      ASSERT_NE(r.trailers.get("x-t"), nullptr);
      EXPECT_EQ(*r.trailers.get("x-t"), "a;b");
      EXPECT_EQ(pending, "");
    } else {
      ASSERT_EQ(last, Parser::Outcome::kError) << "step " << step;
      EXPECT_EQ(p.error().status, 400);
      EXPECT_EQ(p.error().reason, c.reason) << "step " << step;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Rfc9112, Http1ParserChunkExt,
    ::testing::Values(
        ChunkExtCase{"none", "", ""}, ChunkExtCase{"name", ";foo", ""},
        ChunkExtCase{"token_value", ";foo=bar", ""},
        ChunkExtCase{"quoted_value", ";foo=\"a b;c=d\"", ""},
        ChunkExtCase{"escaped_quote", ";foo=\"say \\\"hi\\\"\"", ""},
        ChunkExtCase{"escaped_backslash", ";foo=\"a\\\\\";bar", ""},
        ChunkExtCase{"several", ";a;b=1;c=\"x\";d=e", ""},
        ChunkExtCase{"tab_in_quotes", ";a=\"x\ty\"", ""},
        ChunkExtCase{"space_before_semicolon", " ;a",
                     "HPE_INVALID_CHUNK_SIZE: Invalid character in chunk size"},
        ChunkExtCase{"space_after_semicolon", "; a",
                     "whitespace in chunk extensions (around ';' or '=') is not accepted"},
        ChunkExtCase{"space_before_equals", ";a =b",
                     "whitespace in chunk extensions (around ';' or '=') is not accepted"},
        ChunkExtCase{"space_after_equals", ";a= b",
                     "whitespace in chunk extensions (around ';' or '=') is not accepted"},
        ChunkExtCase{"trailing_space", ";a=b ",
                     "whitespace in chunk extensions (around ';' or '=') is not accepted"},
        ChunkExtCase{"no_name", ";=b", "chunk extension without a name"},
        ChunkExtCase{"empty", ";", "chunk extension without a name"},
        ChunkExtCase{"no_value", ";a=", "chunk extension '=' without a value"},
        ChunkExtCase{"unterminated_quote", ";a=\"b",
                     "invalid character 0x0d in a quoted chunk extension value"},
        ChunkExtCase{"after_quote", ";a=\"b\"c",
                     "invalid character 0x63 after a quoted chunk extension value"},
        ChunkExtCase{"bad_name_char", ";a@b", "invalid character 0x40 in a chunk extension name"},
        ChunkExtCase{"escaped_ctl", ";a=\"\\\x01\"",
                     "invalid escaped character 0x01 in a chunk extension value"},
        ChunkExtCase{"too_long", ";a=" + std::string(ChunkExtScanner::kMaxBytes, 'v'),
                     "chunk extensions longer than 4096 bytes"}),
    [](const ::testing::TestParamInfo<ChunkExtCase>& i) { return i.param.name; });

}  // namespace
}  // namespace sluice::http::http1
